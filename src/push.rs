//! `sharecast push`: a phone simulator. It demuxes a clip with GStreamer into
//! encoded frames (no re-encoding), stamps capture timestamps and uploads them
//! through the client SDK, in real time with `--realtime`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::sim::demux::FileSource;
use crate::sim::testsrc::{Controls, TestSource};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sharecast_client_sdk::{Trust, Uploader, UploaderConfig};
use sharecast_formats::media::{MediaFrame, TrackInfo};

/// Arguments of `sharecast push`.
#[derive(clap::Args, Debug)]
pub(crate) struct PushArgs {
    /// Ingest server, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:4433")]
    server: String,
    /// Device token (`sharecast device add`, or the demo token `serve` prints).
    #[arg(long, env = "SHARECAST_TOKEN")]
    token: String,
    /// Clip to upload (MP4 / M4A with H.264, H.265, AAC or Opus), or
    /// `testsrc` for a live test pattern encoded on the fly whose bitrate and
    /// frame rate follow the SDK's advice (always real time).
    #[arg(long)]
    input: PathBuf,
    /// With `--input testsrc`: seconds to film. Default 10.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// With `--input testsrc`: initial encoder bitrate, bit/s. Default 2 Mbit/s.
    #[arg(long, default_value_t = 2_000_000)]
    bitrate: u64,
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
    /// Milliseconds between two progress updates on standard error: a
    /// progress bar when it is a terminal, else a line (`sent … acked …
    /// backlog …`). Default 1000.
    #[arg(long, default_value_t = 1000)]
    stats_interval_ms: u64,
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
    let start = text
        .find("-----BEGIN CERTIFICATE-----")
        .context("no certificate")?
        + 27;
    let end = text[start..]
        .find("-----END CERTIFICATE-----")
        .context("unterminated certificate")?
        + start;
    let b64: String = text[start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
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
pub(crate) async fn run(a: PushArgs) -> Result<()> {
    let trust = trust(&a)?;
    let testsrc = a.input.as_os_str() == "testsrc";
    let (tracks, frames, controls, total) = open_input(&a, testsrc).await?;
    let mut cfg = UploaderConfig::new(a.server.clone(), a.token.clone(), trust);
    cfg.initial_bitrate_bps = a.bitrate;
    cfg.title = a.title.clone();
    cfg.server_name = a.server_name.clone();
    let uploader = Uploader::start(cfg, tracks, now_unix_us()).await?;
    println!("session {}", uploader.session_id());
    for u in uploader.live_urls() {
        println!("live {u}");
    }
    follow_advice(&uploader, controls);

    let uploader = Arc::new(uploader);
    let position = Arc::new(AtomicU64::new(0));
    let every = Duration::from_millis(a.stats_interval_ms.max(10));
    let monitor = Monitor::spawn(uploader.clone(), every, Progress::new(total, &position));
    // Read frames on a blocking thread, upload here.
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    std::thread::spawn(move || frames.run(tx));
    // The test source films in real time already.
    let pace = a.realtime && !testsrc;
    let n = upload(&a, &uploader, rx, pace, &position).await?;
    // Every frame of the input is queued.
    position.store(u64::MAX, Ordering::Relaxed);
    let last_frame_at = Instant::now();
    // Wall clock of the last frame, for measuring how soon the VOD is served
    // (bench/vod_ready.sh); printed now, before the session ends.
    out(format!("last_frame_unix_ms {}", now_unix_us() / 1000));
    let per_track = uploader.frames_per_track();
    // The statistics once the session has ended: a resume may happen after
    // the last frame was queued (a drop near the end, a long blackout).
    let (attrs, stats) = uploader.end().await;
    let measured = monitor.stop().await;
    let attrs = attrs?;
    let ready_ms = last_frame_at.elapsed().as_secs_f64() * 1000.0;
    println!("frames {n}");
    println!("frames_per_track {}", serde_json::to_string(&per_track)?);
    println!("resumes {}", stats.resumes);
    println!("ack_latency_ms {}", measured.latency_summary());
    println!("peak_held_bytes {}", measured.peak_held_bytes);
    if let Some(v) = &attrs.vod_url {
        println!("vod {v}");
    }
    println!("ready_after_last_frame_ms {ready_ms:.0}");
    println!("attributes {}", serde_json::to_string(&attrs)?);
    Ok(())
}

/// The input's tracks and frames: the clip demuxed, or the live test
/// pattern (with the controls of its encoder).
async fn open_input(
    a: &PushArgs,
    testsrc: bool,
) -> Result<(Vec<TrackInfo>, Frames, Option<Controls>, Option<Duration>)> {
    if testsrc {
        let (w, h, fps, bps) = (640, 360, 30, a.bitrate);
        let src = tokio::task::spawn_blocking(move || TestSource::start(w, h, fps, bps))
            .await
            .context("test source task")??;
        let controls = src.controls();
        let total = Duration::try_from_secs_f64(a.duration).ok();
        return Ok((
            src.tracks.clone(),
            Frames::Test(src, a.duration),
            Some(controls),
            total,
        ));
    }
    let input = a.input.clone();
    let src = tokio::task::spawn_blocking(move || FileSource::open(&input))
        .await
        .context("demuxer task")?
        .with_context(|| format!("opening {}", a.input.display()))?;
    let total = src.duration();
    Ok((src.tracks.clone(), Frames::File(src), None, total))
}

/// Print the encoder advice as it changes; a live encoder follows it.
fn follow_advice(uploader: &Uploader, controls: Option<Controls>) {
    let started = Instant::now();
    let mut advice = uploader.advice_watch();
    tokio::spawn(async move {
        loop {
            let a = *advice.borrow_and_update();
            out(format!(
                "advice t_ms={} bitrate={} fps={} reason={}",
                started.elapsed().as_millis(),
                a.target_bps,
                a.target_fps,
                a.reason
            ));
            if let Some(c) = &controls {
                c.set_target(a.target_bps, a.target_fps);
            }
            if advice.changed().await.is_err() {
                break;
            }
        }
    });
}

/// Send every frame from `rx` (at its capture pace with `pace`), applying
/// the testing aids' drops and rebinds. Returns how many frames were sent.
async fn upload(
    a: &PushArgs,
    uploader: &Uploader,
    mut rx: tokio::sync::mpsc::Receiver<Result<MediaFrame>>,
    pace: bool,
    position: &AtomicU64,
) -> Result<u64> {
    let start = Instant::now();
    let mut first_dts: Option<i64> = None;
    let mut first_pts: Option<i64> = None;
    let mut n = 0u64;
    while let Some(f) = rx.recv().await {
        let f = f.context("reading the input clip")?;
        let from = *first_pts.get_or_insert(f.pts_us);
        let at_ms = (f.pts_us.saturating_sub(from).max(0) / 1000) as u64;
        position.fetch_max(at_ms, Ordering::Relaxed);
        if pace {
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
            err(format!("dropping the connection after {n} frames"));
            uploader.drop_connection();
        }
        if a.rebind_after == Some(n) {
            let before = uploader.local_addr();
            let after = uploader.rebind()?;
            err(format!("rebound local socket {before:?} -> {after}"));
        }
    }
    Ok(n)
}

/// What the push measured of its upload: every acknowledgement latency and
/// the most frame bytes the SDK held at once.
#[derive(Default)]
struct Measured {
    latencies_us: Vec<u32>,
    peak_held_bytes: u64,
}

impl Measured {
    /// Takes a look at the uploader: its new acknowledgement latencies and
    /// the frame bytes it holds now.
    fn sample(&mut self, uploader: &Uploader) -> sharecast_client_sdk::UploadStats {
        let s = uploader.stats();
        self.latencies_us.extend(uploader.take_ack_latencies());
        self.peak_held_bytes = self.peak_held_bytes.max(s.resident_bytes);
        s
    }

    /// `p50 A p99 B max C` (milliseconds), or `none` when nothing was
    /// acknowledged.
    fn latency_summary(&self) -> String {
        let mut v = self.latencies_us.clone();
        if v.is_empty() {
            return "none".into();
        }
        v.sort_unstable();
        let at = |p: f64| {
            let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            f64::from(v[i]) / 1000.0
        };
        format!("p50 {:.1} p99 {:.1} max {:.1}", at(0.5), at(0.99), at(1.0))
    }
}

/// The progress bar, while one is drawn.
static BAR: OnceLock<ProgressBar> = OnceLock::new();

/// A line on standard output, above the progress bar if one is drawn.
fn out(line: String) {
    match BAR.get().filter(|b| !b.is_finished()) {
        Some(bar) => bar.suspend(|| println!("{line}")),
        None => println!("{line}"),
    }
}

/// A line on standard error, above the progress bar if one is drawn.
fn err(line: String) {
    match BAR.get().filter(|b| !b.is_finished()) {
        Some(bar) => bar.suspend(|| eprintln!("{line}")),
        None => eprintln!("{line}"),
    }
}

/// The progress bar on a terminal: how far into the input the frames
/// queued so far reach, and the upload's counts.
struct Progress {
    bar: ProgressBar,
    position: Arc<AtomicU64>,
}

impl Progress {
    /// A bar over `total` when standard error is a terminal; `None`
    /// otherwise (the progress lines are printed instead).
    fn new(total: Option<Duration>, position: &Arc<AtomicU64>) -> Option<Progress> {
        if !std::io::stderr().is_terminal() {
            return None;
        }
        let len = total.map_or(0, |t| t.as_millis() as u64);
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let template =
            "{elapsed_precise} [{bar:24}] {percent:>3}% of the input queued · {wide_msg}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let _ = BAR.set(bar.clone());
        Some(Progress {
            bar,
            position: position.clone(),
        })
    }

    fn show(&self, s: &sharecast_client_sdk::UploadStats) {
        let len = self.bar.length().unwrap_or(0);
        self.bar
            .set_position(self.position.load(Ordering::Relaxed).min(len));
        self.bar.set_message(format!(
            "sent {} acked {} backlog {} · {} kbit/s · rtt {:.1} ms · resumes {}",
            s.frames_sent,
            s.frames_acked,
            s.backlog_frames,
            s.acked_bps / 1000,
            s.rtt_ms,
            s.resumes
        ));
    }
}

/// Shows progress every interval while the upload runs (during a blackout
/// and the drain after the last frame too): a bar on a terminal, a line
/// otherwise; and gathers [`Measured`].
struct Monitor {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Measured>,
}

/// One progress line (`sent … acked … backlog …`).
fn progress_line(s: &sharecast_client_sdk::UploadStats) {
    eprintln!(
        "sent {} acked {} backlog {} frames rtt {:.1} ms throughput {} kbit/s held {} KiB resumes {}",
        s.frames_sent,
        s.frames_acked,
        s.backlog_frames,
        s.rtt_ms,
        s.acked_bps / 1000,
        s.resident_bytes / 1024,
        s.resumes
    );
}

impl Monitor {
    fn spawn(uploader: Arc<Uploader>, every: Duration, progress: Option<Progress>) -> Monitor {
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut m = Measured::default();
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                let s = m.sample(&uploader);
                match &progress {
                    Some(p) => p.show(&s),
                    None => progress_line(&s),
                }
            }
            let s = m.sample(&uploader);
            if let Some(p) = &progress {
                p.show(&s);
                p.bar.finish();
                // The summary goes below the finished bar.
                eprintln!();
            }
            m
        });
        Monitor { stop, task }
    }

    /// Stops the progress lines; what was measured.
    async fn stop(self) -> Measured {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// Where frames come from.
enum Frames {
    File(FileSource),
    Test(TestSource, f64),
}

impl Frames {
    /// Produce every frame into `tx` (blocking; run on its own thread).
    fn run(self, tx: tokio::sync::mpsc::Sender<Result<MediaFrame>>) {
        match self {
            Frames::File(mut src) => {
                for f in src.by_ref() {
                    if tx.blocking_send(f).is_err() {
                        break;
                    }
                }
            }
            Frames::Test(mut src, secs) => {
                let end = Instant::now() + Duration::from_secs_f64(secs);
                while Instant::now() < end {
                    match src.next_frame(Duration::from_secs(5)) {
                        Some(f) => {
                            if tx.blocking_send(f).is_err() {
                                break;
                            }
                        }
                        None => {
                            let _ = tx.blocking_send(Err(anyhow::anyhow!(
                                "the test source stopped producing frames"
                            )));
                            break;
                        }
                    }
                }
            }
        }
    }
}
