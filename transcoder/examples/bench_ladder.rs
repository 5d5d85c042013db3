//! Transcoder benchmark (run by `make bench` through `bench/transcoder.sh`;
//! prints numbers, asserts nothing).
//!
//! ```text
//! bench_ladder ladder  INPUT     # CPU seconds of the 480p ladder per minute of input
//! bench_ladder remux   INPUT     # passthrough remux throughput (MB/s) and VOD-ready latency
//! ```
//!
//! The input is read into memory first, so only the recording is timed.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};
use sharecast_formats::media::MediaFrame;
use sharecast_transcoder::source::FileSource;
use sharecast_transcoder::{Transcoder, TranscoderConfig};

/// CPU seconds (user + system) used by this process so far.
fn cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    let after = stat.rsplit_once(')').map(|(_, s)| s).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (11 and 12 after ")").
    let ticks: f64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<f64>().ok()? + s.parse::<f64>().ok()?))
        .context("parsing /proc/self/stat")?;
    Ok(ticks / 100.0)
}

fn read(
    path: &Path,
) -> anyhow::Result<(Vec<sharecast_formats::media::TrackInfo>, Vec<MediaFrame>)> {
    let mut src = FileSource::open(path)?;
    let mut frames = Vec::new();
    while let Some(f) = src.next_frame() {
        frames.push(f?);
    }
    Ok((src.tracks.clone(), frames))
}

struct Run {
    cpu_s: f64,
    wall_s: f64,
    finish_s: f64,
}

/// Records `path`; with `caught_up`, waits until the muxer has caught up
/// with the pushed frames (as when the phone uploads in real time) before
/// stopping, so that `finish_s` is the VOD-ready latency.
fn record(
    cfg: TranscoderConfig,
    path: &Path,
    dir: &Path,
    caught_up: bool,
) -> anyhow::Result<(Run, f64, u64)> {
    let (tracks, frames) = read(path)?;
    let media_s = frames
        .iter()
        .map(|f| f.pts_us + i64::from(f.duration_us))
        .max()
        .unwrap_or(0) as f64
        / 1e6;
    let bytes: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
    let transcoder = Transcoder::new(cfg)?;
    let cpu0 = cpu_seconds()?;
    let t0 = Instant::now();
    let recording = transcoder.start("bench", &tracks, dir)?;
    for f in &frames {
        recording.push(f)?;
    }
    if caught_up {
        while recording.backlog_bytes() > 0 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // The last index update of a real-time session is at most one
        // fragment duration old when the phone stops.
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
    let stop = Instant::now();
    let produced = recording.finish()?;
    let finish_s = stop.elapsed().as_secs_f64();
    let run = Run {
        cpu_s: cpu_seconds()? - cpu0,
        wall_s: t0.elapsed().as_secs_f64(),
        finish_s,
    };
    for p in &produced {
        println!(
            "  {:<7} {:>5}x{:<5} {:>8.1} MB {:>9} bit/s {:?}",
            p.rendition,
            p.attributes.width,
            p.attributes.height,
            p.attributes.size_bytes as f64 / 1e6,
            p.attributes.bitrate,
            p.attributes.codecs
        );
    }
    Ok((run, media_s, bytes))
}

fn main() -> anyhow::Result<()> {
    // Timing breakdown of `finish` (finalise, compaction, probe, poster) in
    // the "source rendition finished" / "poster written" log lines.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("sharecast_transcoder=info")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    let (Some(mode), Some(input)) = (args.get(1), args.get(2)) else {
        bail!("usage: bench_ladder ladder|remux INPUT");
    };
    let input = Path::new(input);
    let dir = tempfile_dir()?;
    match mode.as_str() {
        "ladder" => {
            let source_only = TranscoderConfig {
                renditions: vec![],
                ..TranscoderConfig::default()
            };
            let (base, media_s, _) = record(source_only, input, &dir.join("a"), false)?;
            let (full, _, _) = record(TranscoderConfig::default(), input, &dir.join("b"), false)?;
            let ladder_cpu = (full.cpu_s - base.cpu_s).max(0.0);
            println!("input: {:.1} s of media", media_s);
            println!(
                "source only: {:.2} CPU s, {:.2} s wall; with 480p ladder: {:.2} CPU s, {:.2} s wall ({:.2} s after the stop)",
                base.cpu_s, base.wall_s, full.cpu_s, full.wall_s, full.finish_s
            );
            println!(
                "ladder_cpu_s_per_min_input {:.2}",
                ladder_cpu * 60.0 / media_s.max(0.001)
            );
        }
        "remux" => {
            let source_only = TranscoderConfig {
                renditions: vec![],
                ..TranscoderConfig::default()
            };
            let (run, media_s, bytes) = record(source_only.clone(), input, &dir.join("r"), false)?;
            println!(
                "input: {:.1} s of media, {:.1} MB",
                media_s,
                bytes as f64 / 1e6
            );
            println!(
                "remux_throughput_mb_s {:.1} (all frames pushed at once, until the file is final)",
                bytes as f64 / 1e6 / run.wall_s.max(1e-9)
            );
            let (run, _, _) = record(source_only, input, &dir.join("l"), true)?;
            println!(
                "vod_ready_ms {:.0} (stop of a caught-up session to the finalised, probed source rendition, poster included)",
                run.finish_s * 1000.0
            );
        }
        other => bail!("unknown mode {other}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sharecast-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
