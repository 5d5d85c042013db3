//! `sharecast push`: a phone simulator. It demuxes a clip with GStreamer into
//! encoded frames (no re-encoding), stamps capture timestamps and uploads them
//! through the client SDK, in real time with `--realtime`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sharecast_client_sdk::{Trust, Uploader, UploaderConfig};
use crate::sim::demux::FileSource;

/// Arguments of `sharecast push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// Ingest server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: String,
    /// Device token (`sharecast device add`, or the demo token `serve` prints).
    #[arg(long, env = "SHARECAST_TOKEN")]
    token: String,
    /// Clip to upload (MP4 / M4A with H.264, H.265, AAC or Opus).
    #[arg(long)]
    input: PathBuf,
    /// Send frames at their capture pace instead of as fast as possible.
    #[arg(long)]
    realtime: bool,
    /// SHA-256 fingerprint of the server certificate to pin (printed by
    /// `serve`). Default: the fingerprint of `./data/tls/cert.pem` if present.
    #[arg(long)]
    pin: Option<String>,
    /// PEM file of CA certificates to verify the server against, instead of a pin.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Title of the recording.
    #[arg(long)]
    title: Option<String>,
    /// TLS server name (default: the host of --server).
    #[arg(long)]
    server_name: Option<String>,
    /// Testing aid: close the connection after this many frames (repeatable
    /// with a comma list, e.g. 40,80,120) to exercise resume.
    #[arg(long, value_delimiter = ',')]
    drop_after: Vec<u64>,
    /// Testing aid: move to a new local UDP port after this many frames.
    #[arg(long)]
    rebind_after: Option<u64>,
}

fn trust(a: &PushArgs) -> Result<Trust> {
    if let Some(ca) = &a.ca {
        let pem = std::fs::read(ca).with_context(|| format!("reading CA file {}", ca.display()))?;
        return Ok(Trust::CaPem(pem));
    }
    if let Some(p) = &a.pin {
        return Ok(Trust::PinSha256(p.clone()));
    }
    let local = std::path::Path::new("data/tls/cert.pem");
    if local.exists() {
        let pem = std::fs::read(local).with_context(|| format!("reading {}", local.display()))?;
        let der = rustls_pemfile_first(&pem).context("parsing data/tls/cert.pem")?;
        return Ok(Trust::PinSha256(sha256_hex(&der)));
    }
    anyhow::bail!("give --pin FINGERPRINT (printed by `sharecast serve`) or --ca FILE")
}

fn rustls_pemfile_first(pem: &[u8]) -> Result<Vec<u8>> {
    // Minimal PEM reader for one CERTIFICATE block.
    let text = std::str::from_utf8(pem).context("certificate is not text")?;
    let start = text.find("-----BEGIN CERTIFICATE-----").context("no certificate")? + 27;
    let end = text[start..].find("-----END CERTIFICATE-----").context("unterminated certificate")? + start;
    let b64: String = text[start..end].chars().filter(|c| !c.is_whitespace()).collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .context("certificate base64")
}

fn sha256_hex(der: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(der))
}

fn now_unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// Run the push.
pub async fn run(a: PushArgs) -> Result<()> {
    let trust = trust(&a)?;
    let input = a.input.clone();
    let mut source = tokio::task::spawn_blocking(move || FileSource::open(&input))
        .await
        .context("demuxer task")?
        .with_context(|| format!("opening {}", a.input.display()))?;
    let tracks = source.tracks.clone();
    for t in &tracks {
        eprintln!(
            "track {}: {}{}",
            t.id,
            t.codec,
            match (t.width, t.height) {
                (Some(w), Some(h)) => format!(" {w}x{h}"),
                _ => String::new(),
            }
        );
    }
    let mut cfg = UploaderConfig::new(a.server.clone(), a.token.clone(), trust);
    cfg.title = a.title.clone();
    cfg.server_name = a.server_name.clone();
    let uploader = Uploader::start(cfg, tracks, now_unix_us()).await?;
    println!("session {}", uploader.session_id());
    for u in uploader.live_urls() {
        println!("live {u}");
    }

    // Demux on a blocking thread, upload here.
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    std::thread::spawn(move || {
        for f in source.by_ref() {
            if tx.blocking_send(f).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut first_dts: Option<i64> = None;
    let mut n = 0u64;
    let mut last_report = Instant::now();
    while let Some(f) = rx.recv().await {
        let f = f.context("reading the input clip")?;
        if a.realtime {
            let base = *first_dts.get_or_insert(f.dts_us);
            let due = Duration::from_micros((f.dts_us - base).max(0) as u64);
            let elapsed = start.elapsed();
            if due > elapsed {
                tokio::time::sleep(due - elapsed).await;
            }
        }
        uploader.send(f).await?;
        n += 1;
        if a.drop_after.contains(&n) {
            // Give the frames a moment to be in flight, then cut.
            tokio::time::sleep(Duration::from_millis(20)).await;
            eprintln!("dropping the connection after {n} frames");
            uploader.drop_connection();
        }
        if a.rebind_after == Some(n) {
            let before = uploader.local_addr();
            let after = uploader.rebind()?;
            eprintln!("rebound local socket {before:?} -> {after}");
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let s = uploader.stats();
            eprintln!(
                "sent {} acked {} backlog {} frames rtt {:.1} ms throughput {} kbit/s",
                s.frames_sent,
                s.frames_acked,
                s.backlog_frames,
                s.rtt_ms,
                s.acked_bps / 1000
            );
        }
    }
    let last_frame_at = Instant::now();
    let resumes = uploader.stats().resumes;
    let attrs = uploader.finish().await?;
    let ready_ms = last_frame_at.elapsed().as_secs_f64() * 1000.0;
    println!("frames {n}");
    println!("resumes {resumes}");
    if let Some(v) = &attrs.vod_url {
        println!("vod {v}");
    }
    println!("ready_after_last_frame_ms {ready_ms:.0}");
    println!("attributes {}", serde_json::to_string(&attrs)?);
    Ok(())
}
