//! The SDK benchmark's helper (`bench/sdk.sh`; prints numbers, asserts
//! nothing):
//!
//! - `sdk_bench dump CLIP DIR`: write a clip's frames as MediaCodec gives
//!   them (`sharecast_testkit::mediacodec`) for the Kotlin program;
//! - `sdk_bench rust DIR SERVER TOKEN PIN ROUNDS`: push those frames ROUNDS
//!   times through the Rust API, the same loop as the Kotlin program's
//!   `bench`, and print the process CPU time it took;
//! - `sdk_bench blackout SERVER TOKEN PIN SECONDS BPS SPOOL_DIR`: film at
//!   BPS for SECONDS while the network is gone (the server stopped by the
//!   caller), printing memory and spool bytes every second; then kill
//!   nothing, exit (the spool stays for `resume`);
//! - `sdk_bench resume SERVER TOKEN PIN SPOOL_DIR`: `resume_pending` and
//!   the time to the first frame resent.

use sharecast_testkit::mediacodec;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sharecast_client_sdk::codec;
use sharecast_client_sdk::{SpoolConfig, Trust, Uploader, UploaderConfig};
use sharecast_formats::media::{Codec, MediaFrame, TrackInfo};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, from /proc (clock ticks of 100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let tick = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (tick(11) + tick(12)) / 100.0
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Read back what `dump` wrote, as the SDK's FFI turns it into frames:
/// Annex B video to 4-byte lengths, codec configuration from csd-0/csd-1.
fn load(dir: &Path) -> Result<(Vec<TrackInfo>, Vec<MediaFrame>)> {
    let mut tracks = Vec::new();
    for line in std::fs::read_to_string(dir.join("tracks.txt"))?.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let id: u8 = f[1].parse()?;
        if f[0] == "video" {
            let c = if f[2] == "video/avc" {
                sharecast_formats::media::Codec::H264
            } else {
                sharecast_formats::media::Codec::H265
            };
            let cfg = codec::VideoConfig::MediaCodec {
                csd0: hex::decode(f[6])?,
                csd1: (f[7] != "-").then(|| hex::decode(f[7])).transpose()?,
            };
            tracks.push(TrackInfo {
                id,
                codec: c.as_str().into(),
                codec_data: codec::video_config(c, &cfg)?,
                width: Some(f[3].parse()?),
                height: Some(f[4].parse()?),
                framerate: Some((f[5].parse()?, 1)),
                sample_rate: None,
                channels: None,
                rotation: 0,
            });
        } else {
            tracks.push(TrackInfo {
                id,
                codec: "aac".into(),
                codec_data: hex::decode(f[5])?,
                width: None,
                height: None,
                framerate: None,
                sample_rate: Some(f[3].parse()?),
                channels: Some(f[4].parse()?),
                rotation: 0,
            });
        }
    }
    let bin = std::fs::read(dir.join("frames.bin"))?;
    let mut frames = Vec::new();
    let mut at = 0;
    while at + 22 <= bin.len() {
        let track = bin[at];
        let key = bin[at + 1] == 1;
        let pts = i64::from_be_bytes(bin[at + 2..at + 10].try_into()?);
        let dts = i64::from_be_bytes(bin[at + 10..at + 18].try_into()?);
        let len = u32::from_be_bytes(bin[at + 18..at + 22].try_into()?) as usize;
        let data = bin
            .get(at + 22..at + 22 + len)
            .context("frames.bin cut short")?;
        at += 22 + len;
        let Some(info) = tracks.iter().find(|t| t.id == track) else {
            bail!("frames.bin names track {track}, not in tracks.txt");
        };
        let video = info.width.is_some();
        let data = if video {
            codec::video_frame(data, codec::NalFormat::AnnexB)?
        } else {
            data.to_vec()
        };
        // As the FFI layer does: MediaCodec gives no durations.
        let duration_us = codec::frame_duration_us(
            info.codec().unwrap_or(sharecast_formats::media::Codec::Aac),
            &data,
            info.sample_rate.unwrap_or(0),
            info.framerate.map_or(0, |(n, d)| n / d.max(1)),
        );
        frames.push(MediaFrame {
            track,
            seq: 0,
            pts_us: pts,
            dts_us: dts,
            duration_us,
            keyframe: key,
            data: data.into(),
        });
    }
    Ok((tracks, frames))
}

fn config(server: &str, token: &str, pin: &str) -> UploaderConfig {
    UploaderConfig::new(server, token, Trust::PinSha256(pin.into()))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

async fn rust_rounds(a: &[String]) -> Result<()> {
    let (tracks, frames) = load(Path::new(&a[0]))?;
    let rounds: u32 = a[4].parse()?;
    let bytes: u64 = frames.iter().map(|f| f.data.len() as u64).sum::<u64>() * u64::from(rounds);
    // One round not measured, as the Kotlin program warms its JIT.
    let up = Uploader::start(config(&a[1], &a[2], &a[3]), tracks.clone(), now_us()).await?;
    for f in &frames {
        up.send(f.clone()).await?;
    }
    up.finish().await?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    for _ in 0..rounds {
        let up = Uploader::start(config(&a[1], &a[2], &a[3]), tracks.clone(), now_us()).await?;
        for f in &frames {
            up.send(f.clone()).await?;
        }
        up.finish().await?;
    }
    println!(
        "bench rounds={rounds} bytes={bytes} wall_s={:.3} cpu_s={:.3}",
        t0.elapsed().as_secs_f64(),
        cpu_seconds() - cpu0
    );
    Ok(())
}

async fn blackout(a: &[String]) -> Result<()> {
    let secs: u64 = a[3].parse()?;
    let bps: u64 = a[4].parse()?;
    let mut cfg = config(&a[0], &a[1], &a[2]);
    cfg.spool = Some(SpoolConfig::new(&a[5]));
    cfg.reconnect_deadline = Duration::from_secs(secs + 120);
    let avcc = codec::avc_decoder_config(
        &[&[
            0x67, 0x64, 0x00, 0x1e, 0xac, 0xb4, 0x05, 0x01, 0x7f, 0xcb, 0x80,
        ][..]],
        &[&[0x68, 0xef, 0x3c, 0xb0][..]],
    )
    .unwrap_or_default();
    let tracks = vec![TrackInfo::video(0, Codec::H264, avcc, (640, 360), (30, 1))];
    let up = Uploader::start(cfg, tracks, now_us()).await?;
    println!("session {}", up.session_id());
    println!("ready");
    // The caller stops the server now; frames of BPS/30 bytes at 30 fps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let size = (bps / 8 / 30) as usize;
    let start = Instant::now();
    let mut n = 0u64;
    let mut next_report = 1;
    while start.elapsed() < Duration::from_secs(secs) {
        let due = Duration::from_micros(n * 33_333);
        if due > start.elapsed() {
            tokio::time::sleep(due - start.elapsed()).await;
        }
        let data = vec![(n % 251) as u8; size];
        up.send(MediaFrame {
            track: 0,
            seq: 0,
            pts_us: (n * 33_333) as i64,
            dts_us: (n * 33_333) as i64,
            duration_us: 33_333,
            keyframe: n % 30 == 0,
            data: data.into(),
        })
        .await?;
        n += 1;
        if start.elapsed() >= Duration::from_secs(next_report) {
            let s = up.stats();
            println!(
                "blackout t_s={next_report} frames={n} backlog_bytes={} resident_bytes={} spool_bytes={} rss_bytes={}",
                s.backlog_bytes,
                s.resident_bytes,
                up.spool_bytes(),
                rss_bytes()
            );
            next_report += 1;
        }
    }
    println!("blackout done frames={n}");
    // Exit without finishing: the spool holds the session for `resume`.
    std::process::exit(0);
}

async fn resume(a: &[String]) -> Result<()> {
    let mut cfg = config(&a[0], &a[1], &a[2]);
    cfg.spool = Some(SpoolConfig::new(&a[3]));
    let t0 = Instant::now();
    let report = Uploader::resume_pending(cfg).await?;
    let resumed_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let Some(up) = report.resumed.into_iter().next() else {
        bail!("nothing resumed: {:?}", report.failed);
    };
    loop {
        if up.stats().frames_transmitted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    let first_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let backlog = up.stats().backlog_frames;
    println!(
        "resume resume_pending_ms={resumed_ms:.1} first_resent_frame_ms={first_ms:.1} backlog_frames={backlog}"
    );
    // The blackout's frames are synthetic (not decodable video): the
    // server may fail to make a VOD of them; the upload itself is what is
    // measured.
    let (r, s) = up.finish_with_stats().await;
    println!(
        "resume all_acked_ms={:.0} acked={} outcome={}",
        t0.elapsed().as_secs_f64() * 1000.0,
        s.frames_acked,
        r.map_or_else(|e| e.code_name().to_string(), |_| "finished".into())
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("dump") => {
            let d = mediacodec::dump(Path::new(&args[1]), Path::new(&args[2]))?;
            println!("dumped frames={} bytes={}", d.frames, d.bytes);
            Ok(())
        }
        Some("rust") => rt.block_on(rust_rounds(&args[1..])),
        Some("blackout") => rt.block_on(blackout(&args[1..])),
        Some("resume") => rt.block_on(resume(&args[1..])),
        _ => bail!("usage: sdk_bench dump|rust|blackout|resume ..."),
    }
}
