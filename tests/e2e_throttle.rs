//! A throttled uplink: `sharecast push --input testsrc` (a live x264 encoder
//! that follows the SDK's bitrate advice) uploads through a token-bucket UDP
//! shim. While the link is throttled the advised bitrate falls and the live
//! stream stays within a bounded delay of real time (newest frames first);
//! after the throttle lifts the bitrate recovers; the VOD is complete.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sharecast_testkit::*;

/// A UDP relay for one client. Client → server packets pass a token bucket
/// of `rate_bps` (0 = unlimited) with a bounded queue (tail drop), like a
/// bottleneck link; server → client packets pass freely.
struct Shim {
    addr: SocketAddr,
    rate_bps: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Shim {
    fn start(server: SocketAddr) -> Shim {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        front
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        back.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = front.local_addr().unwrap();
        let rate_bps = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let queue: Arc<Mutex<VecDeque<Vec<u8>>>> = Arc::new(Mutex::new(VecDeque::new()));
        const QUEUE_LIMIT: usize = 64 * 1024;
        // Client -> queue.
        {
            let (front, queue, client, stop) = (
                front.try_clone().unwrap(),
                queue.clone(),
                client.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        let mut q = queue.lock().unwrap();
                        let queued: usize = q.iter().map(|p| p.len()).sum();
                        if queued + n <= QUEUE_LIMIT {
                            q.push_back(buf[..n].to_vec());
                        }
                    }
                }
            });
        }
        // Queue -> server, at the bucket's rate.
        {
            let (back, queue, rate, stop) = (
                back.try_clone().unwrap(),
                queue.clone(),
                rate_bps.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut tokens = 0f64;
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    let rate = rate.load(Ordering::Relaxed) as f64 / 8.0;
                    tokens = if rate == 0.0 {
                        f64::MAX
                    } else {
                        (tokens + rate * now.duration_since(last).as_secs_f64()).min(8000.0)
                    };
                    last = now;
                    let mut sent = false;
                    {
                        let mut q = queue.lock().unwrap();
                        while let Some(p) = q.front() {
                            if (p.len() as f64) > tokens {
                                break;
                            }
                            if rate != 0.0 {
                                tokens -= p.len() as f64;
                            }
                            let _ = back.send(p);
                            q.pop_front();
                            sent = true;
                        }
                    }
                    if !sent {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            });
        }
        // Server -> client.
        {
            let (front, back, client, stop) = (front, back, client, stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = back.recv(&mut buf) {
                        if let Some(c) = *client.lock().unwrap() {
                            let _ = front.send_to(&buf[..n], c);
                        }
                    }
                }
            });
        }
        Shim {
            addr,
            rate_bps,
            stop,
        }
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn throttled_uplink_lowers_bitrate_keeps_live_near_real_time_and_vod_complete() {
    let server = Server::start();
    let shim = Shim::start(server.ingest.parse().unwrap());
    let mut cmd = server.push_cmd_to(
        &shim.addr.to_string(),
        &server.token,
        std::path::Path::new("testsrc"),
        &["--duration", "20", "--bitrate", "1500000"],
    );
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = ChildGuard::new(cmd.spawn().unwrap());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let stderr_buf = Arc::new(Mutex::new(String::new()));
    {
        let buf = stderr_buf.clone();
        let err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for l in err.lines().map_while(Result::ok) {
                let mut b = buf.lock().unwrap();
                b.push_str(&l);
                b.push('\n');
            }
        });
    }
    let lines = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    {
        let lines = lines.clone();
        std::thread::spawn(move || {
            for l in stdout.lines().map_while(Result::ok) {
                lines.lock().unwrap().push((Instant::now(), l));
            }
        });
    }
    let session = wait_until("the push to start", Duration::from_secs(30), || {
        lines
            .lock()
            .unwrap()
            .iter()
            .find_map(|(_, l)| l.strip_prefix("session ").map(String::from))
    });
    let started = Instant::now();
    // 4 s free, 8 s at 350 kbit/s, then free again.
    std::thread::sleep(Duration::from_secs(4));
    let throttle_start = Instant::now();
    shim.rate_bps.store(350_000, Ordering::Relaxed);
    let mut live_delays = Vec::new();
    while throttle_start.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(250));
        let (_, v) = server.get("/api/v1/sessions", Some(&server.token));
        if let Some(s) = v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == session.as_str())
        {
            if let Some(d) = s["live_delay_ms"].as_i64() {
                live_delays.push((throttle_start.elapsed(), d));
            }
        }
    }
    let throttle_end = Instant::now();
    shim.rate_bps.store(0, Ordering::Relaxed);
    let status = child.wait_timeout(Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(200));
    let stderr = stderr_buf.lock().unwrap().clone();
    let all: String = lines
        .lock()
        .unwrap()
        .iter()
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    assert!(
        status.is_some_and(|s| s.success()),
        "push failed or hung ({status:?}):\n{all}\n{stderr}\nserver log:\n{}",
        server.log()
    );
    eprintln!("push stderr:\n{stderr}");
    let lines = lines.lock().unwrap().clone();
    let text: String = lines.iter().map(|(_, l)| format!("{l}\n")).collect();

    // Advice over time.
    let advice: Vec<(Instant, u64)> = lines
        .iter()
        .filter(|(_, l)| l.starts_with("advice "))
        .map(|(t, l)| {
            let bps = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("bitrate="))
                .unwrap()
                .parse()
                .unwrap();
            (*t, bps)
        })
        .collect();
    let during: Vec<u64> = advice
        .iter()
        .filter(|(t, _)| *t > throttle_start + Duration::from_secs(2) && *t <= throttle_end)
        .map(|(_, b)| *b)
        .collect();
    let min_during = *during
        .iter()
        .min()
        .unwrap_or_else(|| panic!("no advice while throttled:\n{text}"));
    let last = advice.last().unwrap().1;
    eprintln!("advice: start 1500000, min while throttled {min_during}, last {last}");
    assert!(
        min_during <= 400_000,
        "bitrate did not fall under the throttle (min {min_during}):\n{text}"
    );
    assert!(
        last >= 2 * min_during && last >= 700_000,
        "bitrate did not recover after the throttle (last {last}, min {min_during}):\n{text}"
    );

    // The live edge stayed near real time while throttled (after the first
    // seconds the encoder needs to adapt).
    let delays_after = |secs: u64| -> Vec<i64> {
        live_delays
            .iter()
            .filter(|(t, _)| *t > Duration::from_secs(secs))
            .map(|(_, d)| *d)
            .collect()
    };
    let settled = delays_after(3);
    assert!(!settled.is_empty(), "no live delay samples");
    let worst = *settled.iter().max().unwrap();
    eprintln!("live delay while throttled (ms): {settled:?}");
    // Without live-edge-first the delay would keep growing for the whole
    // throttle (1.5 Mbit/s of media through 350 kbit/s: tens of seconds).
    assert!(
        worst < 4000,
        "live stream fell {worst} ms behind real time: {settled:?}"
    );
    let tail = delays_after(6);
    assert!(
        !tail.is_empty() && tail.iter().all(|d| *d < 2500),
        "live delay did not settle near real time: {settled:?}"
    );

    // The VOD has every frame the phone produced.
    let per_track: serde_json::Value = serde_json::from_str(
        lines
            .iter()
            .find_map(|(_, l)| l.strip_prefix("frames_per_track "))
            .unwrap_or_else(|| panic!("no frame counts:\n{text}")),
    )
    .unwrap();
    let probe = ffprobe(&server.session_file(&session, "source.mp4"));
    for (kind, track) in [("video", "0"), ("audio", "1")] {
        assert_eq!(
            num(&stream(&probe, kind).unwrap()["nb_read_frames"]) as u64,
            per_track[track].as_u64().unwrap(),
            "VOD {kind} frames"
        );
    }
    assert!(started.elapsed() > Duration::from_secs(19));
}
