//! Live benchmarks against a running `sharecast serve` (see bench/live.sh).
//!
//! - `rtsp-delay URL SECS`: capture-to-receive delay over RTSP/TCP, from the
//!   capture-clock SEI in each access unit (received after depayloading and
//!   parsing; decoding a 640x360 frame adds a few ms on top).
//! - `hls-delay HTTP_BASE SESSION SECS`: HLS segment availability delay
//!   (capture of a segment's last frame → its URI in the playlist) and the
//!   delay of a player that stays `live_sync` segments behind the live edge
//!   (hls.js default 3; our page uses 2).
//! - `viewers URL MAX SECS`: RTSP/TCP viewers per stream before frames drop:
//!   1, 2, 4, … MAX clients at once, each counting video frames.
//!
//! Prints numbers, asserts nothing.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use sharecast_live_relay::sei::find_capture_clock;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// An RTSP client pipeline; `on_au` gets every video access unit.
fn rtsp_client(url: &str, on_au: impl Fn(&[u8]) + Send + Sync + 'static) -> Result<gst::Pipeline> {
    let p = gst::parse::launch(&format!(
        "rtspsrc location={url} protocols=tcp latency=0 ! rtph264depay ! h264parse ! video/x-h264,stream-format=avc,alignment=au ! appsink name=sink sync=false"
    ))
    .context("building the RTSP client")?
    .downcast::<gst::Pipeline>()
    .map_err(|_| anyhow!("not a pipeline"))?;
    let sink = p
        .by_name("sink")
        .and_then(|s| s.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| anyhow!("no appsink"))?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                if let Some(b) = sample.buffer() {
                    if let Ok(m) = b.map_readable() {
                        on_au(m.as_slice());
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    p.set_state(gst::State::Playing)
        .context("starting the RTSP client")?;
    Ok(p)
}

fn rtsp_delay(url: &str, secs: u64) -> Result<()> {
    let delays = Arc::new(Mutex::new(Vec::new()));
    let d = delays.clone();
    let p = rtsp_client(url, move |au| {
        if let Some(cap) = find_capture_clock(au) {
            let ms = (now_us() - cap) as f64 / 1000.0;
            d.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
        }
    })?;
    std::thread::sleep(Duration::from_secs(secs));
    let _ = p.set_state(gst::State::Null);
    let mut v = delays.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // The first second replays the cached GOP (old frames by design).
    let skip = v.len().min(60);
    let mut v = v.split_off(skip);
    println!(
        "rtsp glass-to-glass (capture → received AU, loopback, TCP): n={} p50={:.1} ms p99={:.1} ms",
        v.len(),
        pct(&mut v, 0.5),
        pct(&mut v, 0.99)
    );
    Ok(())
}

fn http_get(base: &str, path: &str) -> Result<String> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).with_context(|| format!("connecting {host}"))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("bad HTTP answer"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}

fn http_get_bytes(base: &str, path: &str) -> Result<Vec<u8>> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(host).with_context(|| format!("connecting {host}"))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let at = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("bad HTTP answer"))?;
    if !out.starts_with(b"HTTP/1.0 200") && !out.starts_with(b"HTTP/1.1 200") {
        bail!(
            "GET {path}: {}",
            String::from_utf8_lossy(&out[..at.min(64)])
        );
    }
    Ok(out[at + 4..].to_vec())
}

/// One simulated HLS player for `secs`: polls the media playlist and
/// downloads every new segment. Returns (segments listed, segments
/// downloaded in time, worst listed → downloaded ms). In time: within one
/// segment duration of being listed, so the player never runs dry.
fn hls_player(base: &str, playlist: &str, secs: u64) -> Result<(usize, usize, f64)> {
    let dir = playlist.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let mut seen = std::collections::HashSet::new();
    let (mut listed, mut in_time, mut worst) = (0usize, 0usize, 0f64);
    let end = Instant::now() + Duration::from_secs(secs);
    let mut first = true;
    while Instant::now() < end {
        let pl = http_get(base, playlist)?;
        let mut dur = 1.0;
        for line in pl.lines() {
            if let Some(d) = line.strip_prefix("#EXTINF:") {
                dur = d.trim_end_matches(',').parse::<f64>().unwrap_or(1.0);
            } else if line.starts_with("seg") && seen.insert(line.to_string()) && !first {
                let t = Instant::now();
                listed += 1;
                let body = http_get_bytes(base, &format!("{dir}/{line}"))?;
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                worst = worst.max(ms);
                if !body.is_empty() && ms <= dur * 1000.0 {
                    in_time += 1;
                }
            }
        }
        first = false;
        std::thread::sleep(Duration::from_millis(250));
    }
    Ok((listed, in_time, worst))
}

/// HLS viewers per stream: 1, 2, 4, … simulated players until one misses a
/// segment or fetches it later than its duration.
fn hls_viewers(base: &str, session: &str, max: usize, secs: u64) -> Result<()> {
    let (session, query) = match session.split_once('?') {
        Some((id, q)) => (id.to_string(), format!("?{q}")),
        None => (session.to_string(), String::new()),
    };
    let playlist = format!("/live/{session}/source/index.m3u8{query}");
    // Segment URIs carry the token themselves.
    let mut n = 1;
    while n <= max {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (base, playlist) = (base.to_string(), playlist.clone());
                std::thread::spawn(move || hls_player(&base, &playlist, secs))
            })
            .collect();
        let mut results = Vec::new();
        for h in handles {
            results.push(h.join().map_err(|_| anyhow!("player thread panicked"))??);
        }
        let ok = results.iter().all(|(l, t, _)| *l > 0 && l == t);
        let worst = results.iter().map(|r| r.2).fold(0.0, f64::max);
        let min_listed = results.iter().map(|r| r.0).min().unwrap_or(0);
        println!(
            "hls viewers={n}: segments per player min={min_listed}, all in time: {ok}, slowest segment fetch {worst:.0} ms"
        );
        if !ok {
            println!(
                "hls viewers per stream before segments arrive late: {}",
                n / 2
            );
            return Ok(());
        }
        n *= 2;
    }
    println!(
        "hls viewers per stream before segments arrive late: ≥ {max} (all tested counts kept up)"
    );
    Ok(())
}

/// Parses `2024-01-02T03:04:05.678Z` into Unix µs.
fn parse_pdt(s: &str) -> Option<i64> {
    let (date, time) = s.trim().trim_end_matches('Z').split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Days from civil (H. Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + dd - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + h * 3600 + mi * 60 + se) * 1000 + ms) * 1000)
}

fn hls_delay(base: &str, session: &str, secs: u64) -> Result<()> {
    // SESSION may carry the playback token: `ID?token=T`.
    let (session, query) = match session.split_once('?') {
        Some((id, q)) => (id, format!("?{q}")),
        None => (session, String::new()),
    };
    let path = format!("/live/{session}/source/index.m3u8{query}");
    let mut seen = std::collections::HashSet::new();
    let mut avail = Vec::new();
    let mut durations = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let pl = http_get(base, &path)?;
        let now = now_us();
        let mut pdt = None;
        let mut dur = 0.0;
        for line in pl.lines() {
            if let Some(p) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                pdt = parse_pdt(p);
            } else if let Some(d) = line.strip_prefix("#EXTINF:") {
                dur = d.trim_end_matches(',').parse::<f64>().unwrap_or(0.0);
            } else if line.starts_with("seg") {
                let first_poll = seen.is_empty();
                if seen.insert(line.to_string()) && !first_poll {
                    if let Some(p) = pdt {
                        let seg_end_us = p + (dur * 1e6) as i64;
                        avail.push((now - seg_end_us) as f64 / 1000.0);
                        durations.push(dur * 1000.0);
                    }
                }
            }
        }
        if seen.is_empty() {
            // Nothing yet; the first listing only primes `seen`.
        }
        if pl.contains("#EXT-X-ENDLIST") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seg = pct(&mut durations.clone(), 0.5);
    println!(
        "hls segment availability (capture of last frame → listed, loopback): n={} p50={:.0} ms p99={:.0} ms; segment p50 {:.0} ms",
        avail.len(),
        pct(&mut avail.clone(), 0.5),
        pct(&mut avail.clone(), 0.99),
        seg
    );
    // A player holding `hold` seconds behind the live edge (which it
    // learns at once through blocking playlist reload) shows a frame
    // captured hold + availability delay ago: 1.5 s is the watch page's
    // hold-back, 3 target durations the HLS default.
    for (hold, what) in [
        (1.5, "the watch page's 1.5 s"),
        (3.0 * seg / 1000.0, "3 target durations"),
    ] {
        let mut v: Vec<f64> = avail.iter().map(|a| a + hold * 1000.0).collect();
        println!(
            "hls glass-to-glass, player holding {what} behind the edge (estimate): p50={:.0} ms p99={:.0} ms",
            pct(&mut v, 0.5),
            pct(&mut v, 0.99)
        );
    }
    Ok(())
}

fn viewers(url: &str, max: usize, secs: u64) -> Result<()> {
    let mut n = 1;
    while n <= max {
        let counters: Vec<Arc<AtomicU64>> = (0..n).map(|_| Arc::default()).collect();
        let mut pipes = Vec::new();
        for c in &counters {
            let c = c.clone();
            pipes.push(rtsp_client(url, move |_| {
                c.fetch_add(1, Ordering::Relaxed);
            })?);
        }
        // Let everyone start (GOP replay), then count over `secs`.
        std::thread::sleep(Duration::from_secs(3));
        let start: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        std::thread::sleep(Duration::from_secs(secs));
        let fps: Vec<f64> = counters
            .iter()
            .zip(&start)
            .map(|(c, s)| (c.load(Ordering::Relaxed) - s) as f64 / secs as f64)
            .collect();
        for p in &pipes {
            let _ = p.set_state(gst::State::Null);
        }
        // Let the server tear the shared media down before the next round.
        std::thread::sleep(Duration::from_millis(
            std::env::var("LIVE_BENCH_PAUSE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2000),
        ));
        let min = fps.iter().cloned().fold(f64::INFINITY, f64::min);
        let avg = fps.iter().sum::<f64>() / fps.len() as f64;
        println!("rtsp viewers={n}: video fps per viewer min={min:.1} avg={avg:.1}");
        if min < 0.95 * 30.0 {
            println!(
                "rtsp viewers per stream before frames drop (<95% of 30 fps): {}",
                n / 2
            );
            return Ok(());
        }
        n *= 2;
    }
    println!("rtsp viewers per stream before frames drop: ≥ {max} (all tested counts kept 30 fps)");
    Ok(())
}

fn main() -> Result<()> {
    gst::init()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    match args.first().map(String::as_str) {
        Some("rtsp-delay") => rtsp_delay(args.get(1).context("URL")?, num(2, 10)),
        Some("hls-delay") => hls_delay(
            args.get(1).context("HTTP base")?,
            args.get(2).context("session")?,
            num(3, 10),
        ),
        Some("viewers") => viewers(args.get(1).context("URL")?, num(2, 16) as usize, num(3, 4)),
        Some("hls-viewers") => hls_viewers(
            args.get(1).context("HTTP base")?,
            args.get(2).context("session")?,
            num(3, 64) as usize,
            num(4, 5),
        ),
        _ => bail!("usage: live_bench rtsp-delay URL SECS | hls-delay HTTP SESSION SECS | viewers URL MAX SECS | hls-viewers HTTP SESSION MAX SECS"),
    }
}
