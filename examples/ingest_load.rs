//! Load generator for the ingest benchmark (`make bench`, `bench/ingest.sh`):
//! N concurrent phones, each uploading a clip in real time (looped, with
//! continuous capture timestamps) through the client SDK.
//!
//! Prints one line of JSON: sessions, seconds, frames, bytes, ingest Mbit/s,
//! p50/p99/max acknowledgement latency (send → durable ack) of the frames
//! sent after each phone's first `--warm` seconds (the steady state, default
//! 0), the same over the whole run including the start-up (`*_all_ms`: every
//! phone connecting and every recording starting within the first second),
//! and how many sessions fell behind real time (more than 1 s of media
//! waiting at the end, or a failed upload).
//!
//! Usage: ingest_load --server HOST:PORT --token T --pin SHA256 --input CLIP
//!        --sessions N --seconds S [--warm S]

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use sharecast_client_sdk::{Trust, Uploader, UploaderConfig};
use sharecast_formats::media::MediaFrame;
use sharecast_transcoder::source::FileSource;

/// N concurrent phones uploading a clip in real time.
#[derive(Parser)]
struct Load {
    /// The ingest server, HOST:PORT.
    #[arg(long)]
    server: String,
    /// A device token.
    #[arg(long)]
    token: String,
    /// SHA-256 fingerprint of the server's certificate.
    #[arg(long)]
    pin: String,
    /// The clip every phone uploads, looped.
    #[arg(long)]
    input: PathBuf,
    #[arg(long)]
    sessions: usize,
    #[arg(long)]
    seconds: f64,
    /// Seconds of each phone's start-up left out of the steady state.
    #[arg(long, default_value_t = 0.0)]
    warm: f64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let Load {
        server,
        token,
        pin,
        input,
        sessions,
        seconds,
        warm,
    } = Load::parse();

    let mut src = FileSource::open(&input)?;
    let tracks = src.tracks.clone();
    let frames: Vec<MediaFrame> = src.by_ref().collect::<Result<_>>()?;
    let clip_us = frames
        .iter()
        .map(|f| f.pts_us + f.duration_us as i64)
        .max()
        .unwrap_or(1)
        .max(1);
    let frames = Arc::new(frames);

    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let (server, token, pin, tracks, frames) = (
            server.clone(),
            token.clone(),
            pin.clone(),
            tracks.clone(),
            frames.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Stagger starts over the first second.
            tokio::time::sleep(Duration::from_millis(
                (i as u64 * 1000) / sessions.max(1) as u64,
            ))
            .await;
            let mut cfg = UploaderConfig::new(server, token, Trust::PinSha256(pin));
            cfg.server_name = Some("localhost".into());
            let up = Uploader::start(cfg, tracks, 0).await?;
            let t0 = Instant::now();
            let mut bytes = 0u64;
            let mut n = 0u64;
            let mut start_lat = Vec::new();
            let mut warm_taken = warm <= 0.0;
            'outer: for lap in 0.. {
                for f in frames.iter() {
                    let mut f = f.clone();
                    let off = lap as i64 * clip_us;
                    f.pts_us += off;
                    f.dts_us += off;
                    let due = Duration::from_micros(f.dts_us.max(0) as u64);
                    if due.as_secs_f64() >= seconds {
                        break 'outer;
                    }
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    if !warm_taken && t0.elapsed().as_secs_f64() >= warm {
                        // Latencies of the start-up so far; the steady
                        // state's are what is left at the end.
                        start_lat = up.take_ack_latencies();
                        warm_taken = true;
                    }
                    bytes += f.data.len() as u64;
                    n += 1;
                    up.send(f).await?;
                }
            }
            let backlog = up.stats().backlog_bytes;
            let lat = up.take_ack_latencies();
            up.finish().await?;
            Ok::<_, anyhow::Error>((n, bytes, backlog, lat, start_lat))
        }));
    }
    let mut frames_total = 0u64;
    let mut bytes_total = 0u64;
    let mut behind = 0usize;
    let mut failed = 0usize;
    let mut lat: Vec<u32> = Vec::new();
    let mut lat_all: Vec<u32> = Vec::new();
    let mut first_error = None;
    for t in tasks {
        match t.await? {
            Ok((n, b, backlog, l, start)) => {
                frames_total += n;
                bytes_total += b;
                // More than ~1 s of a 2 Mbit/s stream still waiting.
                if backlog > 250_000 {
                    behind += 1;
                }
                lat_all.extend(&start);
                lat_all.extend(&l);
                lat.extend(l);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(format!("{e:#}"));
            }
        }
    }
    lat.sort_unstable();
    lat_all.sort_unstable();
    let pct_of = |lat: &[u32], p: f64| -> f64 {
        if lat.is_empty() {
            return 0.0;
        }
        lat[((lat.len() - 1) as f64 * p) as usize] as f64 / 1000.0
    };
    let pct = |p: f64| pct_of(&lat, p);
    let pct_all = |p: f64| pct_of(&lat_all, p);
    let wall = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "sessions": sessions,
            "seconds": seconds,
            "wall_seconds": wall,
            "frames": frames_total,
            "bytes": bytes_total,
            "ingest_mbit_s": bytes_total as f64 * 8.0 / 1e6 / seconds,
            "ack_p50_ms": pct(0.50),
            "ack_p99_ms": pct(0.99),
            "ack_max_ms": pct(1.0),
            "warm_seconds": warm,
            "ack_p50_all_ms": pct_all(0.50),
            "ack_p99_all_ms": pct_all(0.99),
            "ack_max_all_ms": pct_all(1.0),
            "behind": behind,
            "failed": failed,
            "first_error": first_error,
        })
    );
    Ok(())
}
