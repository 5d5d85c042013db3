//! Live HLS in a real headless Chromium (hls.js), live-to-VOD hand-over,
//! viewer heartbeats and interruption events, the admin dashboard, the admin
//! API's token check, and `/metrics` as Prometheus text.
//!
//! Screenshots go to `test-artifacts/` (gitignored).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use sharecast_testkit::*;

/// A minimal WebSocket client (RFC 6455, text frames) for the DevTools
/// protocol.
struct Ws {
    s: TcpStream,
}

impl Ws {
    fn connect(url: &str) -> Ws {
        let rest = url.strip_prefix("ws://").expect("ws:// URL");
        let (host, path) = rest.split_at(rest.find('/').expect("path"));
        let mut s = TcpStream::connect(host).expect("connecting to DevTools");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).expect("handshake");
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Ws { s }
    }

    fn send(&mut self, text: &str) {
        let p = text.as_bytes();
        let mut f = vec![0x81u8];
        if p.len() < 126 {
            f.push(0x80 | p.len() as u8);
        } else if p.len() < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(p.len() as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(p.len() as u64).to_be_bytes());
        }
        let mask = [1u8, 2, 3, 4];
        f.extend_from_slice(&mask);
        f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    fn recv(&mut self) -> String {
        let mut msg = Vec::new();
        loop {
            let mut h = [0u8; 2];
            self.s.read_exact(&mut h).expect("ws frame");
            let mut len = u64::from(h[1] & 0x7f);
            if len == 126 {
                let mut l = [0u8; 2];
                self.s.read_exact(&mut l).unwrap();
                len = u64::from(u16::from_be_bytes(l));
            } else if len == 127 {
                let mut l = [0u8; 8];
                self.s.read_exact(&mut l).unwrap();
                len = u64::from_be_bytes(l);
            }
            let mut p = vec![0u8; len as usize];
            self.s.read_exact(&mut p).unwrap();
            msg.extend_from_slice(&p);
            if h[0] & 0x80 != 0 {
                return String::from_utf8_lossy(&msg).to_string();
            }
        }
    }
}

/// One DevTools page session.
struct Page {
    ws: Ws,
    next: u64,
}

impl Page {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(&json!({ "id": id, "method": method, "params": params }).to_string());
        loop {
            let v: Value = serde_json::from_str(&self.ws.recv()).expect("CDP JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expr, "returnByValue": true }),
        );
        r["result"]["value"].clone()
    }

    fn screenshot(&mut self, name: &str) {
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64");
        std::fs::write(artifacts_dir().join(name), png).expect("writing screenshot");
    }

    /// A screenshot of the first element matching `selector`, kept as
    /// `test-artifacts/<name>`, decoded.
    fn element_screenshot(&mut self, selector: &str, name: &str) -> image::RgbaImage {
        let sel = serde_json::to_string(selector).unwrap();
        let rect = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return null; e.scrollIntoView(); const r = e.getBoundingClientRect(); return {{ x: r.x + scrollX, y: r.y + scrollY, width: r.width, height: r.height, scale: 1 }}; }})()"
        ));
        assert!(rect.is_object(), "no element {selector} on the page");
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "clip": rect, "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64");
        std::fs::write(artifacts_dir().join(name), &png).expect("writing screenshot");
        image::load_from_memory(&png).expect("PNG").to_rgba8()
    }

    /// The video element's `currentTime`, in seconds.
    fn current_time(&mut self) -> f64 {
        self.eval("document.getElementById('video').currentTime")
            .as_f64()
            .expect("currentTime")
    }

    /// `currentTime` now and `apart` later.
    fn current_times(&mut self, apart: Duration) -> (f64, f64) {
        let first = self.current_time();
        std::thread::sleep(apart);
        (first, self.current_time())
    }

    /// Polls `expr` until it is true.
    fn wait_for(&mut self, expr: &str, secs: u64, what: &str) {
        wait_until_ok(what, Duration::from_secs(secs), || {
            if self.eval(expr) == json!(true) {
                Ok(())
            } else {
                Err(self.eval("JSON.stringify(window.sharecast || null)"))
            }
        });
    }
}

/// A headless Chromium, killed on drop.
struct Browser {
    _child: ChildGuard,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        // The Debian package's binary, or the one $CHROMIUM names (as the
        // web/share scripts do).
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
        let mut child = Command::new(&chromium)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--mute-audio",
                "--autoplay-policy=no-user-gesture-required",
                "--disable-background-media-suspend",
                "--disable-renderer-backgrounding",
                "--disable-backgrounding-occluded-windows",
                "--disable-background-timer-throttling",
                "--window-size=1280,900",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {chromium}: {e} (apt-get install chromium, or set CHROMIUM)")
            });
        let stderr = child.stderr.take().unwrap();
        let guard = ChildGuard::new(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chromium did not start its DevTools server");
        let port = url
            .trim_start_matches("ws://")
            .split(['/', ':'])
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("DevTools port");
        Browser {
            _child: guard,
            port,
            _profile: profile,
        }
    }

    fn open(&self, url: &str) -> Page {
        let target: Value = client()
            .put(format!(
                "http://127.0.0.1:{}/json/new?about:blank",
                self.port
            ))
            .send()
            .expect("new DevTools target")
            .json()
            .expect("target JSON");
        let ws = Ws::connect(target["webSocketDebuggerUrl"].as_str().expect("ws URL"));
        let mut p = Page { ws, next: 0 };
        p.call("Runtime.enable", json!({}));
        p.call("Page.enable", json!({}));
        // Navigated rather than passed to /json/new, whose query would split
        // the page URL at its first '&'.
        p.call("Page.navigate", json!({ "url": url }));
        p
    }
}

fn admin_get(server: &Server, path: &str) -> Value {
    let (st, v) = server.get(path, Some(&server.admin_token()));
    assert!((200..300).contains(&st), "{path}: {st}");
    v
}

fn viewer_events(server: &Server, viewer: &str) -> Vec<Value> {
    admin_get(server, "/api/v1/admin/viewer-events")["viewer_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["viewer_id"] == viewer)
        .cloned()
        .collect()
}

/// Checks Prometheus text exposition format: every sample line is
/// `name{labels} value`, and every sample's family has a TYPE line.
fn assert_prometheus_text(text: &str) -> usize {
    let mut typed = std::collections::HashSet::new();
    let mut samples = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let name = it.next().expect("TYPE name");
            let kind = it.next().expect("TYPE kind");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "bad TYPE line: {line}"
            );
            typed.insert(name.to_string());
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "bad comment: {line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        assert!(
            value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
            "bad value: {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(
                    labels.starts_with('{') && labels.ends_with('}'),
                    "bad labels: {line}"
                );
                for pair in labels[1..labels.len() - 1]
                    .split("\",")
                    .filter(|p| !p.is_empty())
                {
                    let (k, v) = pair.split_once("=\"").expect("label k=\"v\"");
                    assert!(!k.is_empty() && !v.contains('\n'), "bad label: {line}");
                }
            }
        }
        let family = ["_total", "_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert!(
            typed.contains(family) || typed.contains(name),
            "sample without TYPE: {line}"
        );
        samples += 1;
    }
    samples
}

/// Pixels of `img` within 40 of `rgb` in each channel.
fn pixels_near(img: &image::RgbaImage, rgb: [u8; 3]) -> usize {
    img.pixels()
        .filter(|p| p.0[..3].iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 40))
        .count()
}

/// The dashboard's charts during a live push: the history API holds the
/// session's rates, the phone's advice (its REPORTs) and its viewer, and
/// the screenshots of the charts show the lines.
fn check_dashboard_charts(dash: &mut Page, server: &Server, sid: &str) {
    dash.wait_for(
        &format!("(() => {{ const c = window.__sharecastCharts, s = c && c.sessions['{sid}']; return !!(s && c.server && s.bitrate.data[0].length >= 3 && s.bitrate.data[3].some((v) => v > 0) && c.server.data[0].length >= 3); }})()"),
        30,
        "the dashboard charts the session",
    );
    let history = admin_get(server, "/api/v1/admin/history");
    let points = history["history"]["sessions"][sid]
        .as_array()
        .unwrap_or_else(|| panic!("no series for {sid}: {history}"))
        .clone();
    let any = |f: &dyn Fn(&Value) -> bool| points.iter().any(f);
    assert!(
        any(&|p| p["ingest_bps"].as_u64() > Some(100_000)),
        "{points:?}"
    );
    assert!(
        any(&|p| p["acked_bps"].as_u64() > Some(100_000)),
        "{points:?}"
    );
    assert!(any(&|p| p["advised_bps"].as_u64() > Some(0)), "{points:?}");
    assert!(any(&|p| p["rtt_ms"].as_f64().is_some()), "{points:?}");
    assert!(any(&|p| p["viewers"].as_u64() >= Some(1)), "{points:?}");
    let server_points = history["history"]["server"].as_array().unwrap();
    assert!(server_points
        .iter()
        .any(|p| p["sessions"] == 1 && p["ingest_bps"].as_u64() > Some(100_000)));
    // Drawn: the ingest (blue) or acknowledged (green, drawn over the
    // ingest line where they are equal) line and the advice (red, dashed)
    // in the session's bitrate chart, the ingest line in the server's
    // chart. A loaded machine may take a moment to paint: looked at for up
    // to 15 s.
    let sel = format!("[data-session='{sid}'] canvas");
    let mut seen = (0, 0, 0);
    for _ in 0..15 {
        let bitrate = dash.element_screenshot(&sel, "admin-chart-session.png");
        let server_chart =
            dash.element_screenshot("#server-chart canvas", "admin-chart-server.png");
        seen = (
            pixels_near(&bitrate, [31, 119, 180]) + pixels_near(&bitrate, [44, 160, 44]),
            pixels_near(&bitrate, [214, 39, 40]),
            pixels_near(&server_chart, [31, 119, 180]),
        );
        if seen.0 > 150 && seen.1 > 60 && seen.2 > 150 {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!(
        "charts drawn: session chart {} blue or green and {} red pixels, server chart {} blue pixels",
        seen.0, seen.1, seen.2
    );
}

#[test]
fn hls_in_chromium_live_then_vod_with_dashboard() {
    let server = Server::start();
    let token = server.admin_token();
    // Long enough that the session is still live when the dashboard's
    // charts are looked at, on a loaded machine too.
    let (mut push, sid, _out) =
        server.spawn_push(std::path::Path::new("testsrc"), &["--duration", "20"]);

    let browser = Browser::start();
    let pt = server.playback_token(&sid);
    let mut page = browser.open(&format!(
        "{}/watch/{sid}?user=alice&token={pt}&ll=0",
        server.http
    ));
    page.wait_for(
        "window.sharecast && window.sharecast.state === 'playing' && window.sharecast.currentTime > 0",
        30,
        "live HLS reaches playing",
    );
    // Plain HLS (`ll=0`): this test is about the live-to-VOD hand-over,
    // the dashboard and interruption events; low-latency mode, which plays
    // at the live edge and waits for parts on a loaded machine, has its own
    // test (tests/e2e_llhls.rs).
    let (t1, t2) = page.current_times(Duration::from_secs(2));
    assert!(t2 > t1 + 1.0, "currentTime advances: {t1} → {t2}");
    assert_eq!(page.eval("window.sharecast.mode"), json!("live"));
    page.screenshot("watch-live.png");

    // The dashboard, in the browser, shows the running push and its viewer.
    let mut dash = browser.open(&format!("{}/admin?token={token}", server.http));
    dash.wait_for(
        &format!("document.querySelector('#sessions tbody').innerText.includes('{sid}') && document.querySelector('#viewers tbody').innerText.includes('alice')"),
        20,
        "dashboard shows the session and the viewer",
    );
    check_dashboard_charts(&mut dash, &server, &sid);
    // The webhook deliveries' table loaded (no endpoint: none).
    dash.wait_for(
        "document.querySelector('#webhooks tbody').innerText.trim() === 'none'",
        10,
        "the dashboard lists webhook deliveries",
    );
    dash.screenshot("admin-dashboard.png");
    let streams = admin_get(&server, "/api/v1/admin/streams");
    let st = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["session_id"] == sid.as_str())
        .expect("stream listed");
    assert_eq!(st["viewers"]["hls"], 1, "{streams}");

    // Glass-to-glass delay measured by the page (PROGRAM-DATE-TIME).
    let delays = page.eval("window.sharecast.delays.slice()");
    let mut d: Vec<f64> = delays
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(!d.is_empty(), "the page measured capture-to-display delay");
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "HLS capture-to-display delay in Chromium: p50 {} ms",
        d[d.len() / 2]
    );

    page.call("Page.bringToFront", json!({}));
    // The phone stops: the same page ends up on the VOD.
    let status = push.wait().expect("push");
    assert!(status.success(), "push failed");
    page.wait_for(
        "window.sharecast.mode === 'vod' && window.sharecast.vodPlaying && window.sharecast.state === 'playing' && document.getElementById('video').currentTime > 0.2",
        60,
        "the page switches to the VOD",
    );
    let (v1, v2) = page.current_times(Duration::from_millis(1500));
    assert!(v2 > v1, "VOD currentTime advances: {v1} → {v2}");
    assert_eq!(
        page.eval("window.sharecast.vodUrl"),
        json!(format!("/vod/{sid}/source.mp4"))
    );
    page.screenshot("watch-vod.png");
    let viewer = page.eval("window.sharecast.viewerId");
    let viewer = viewer.as_str().unwrap().to_string();
    assert!(viewer_events(&server, &viewer).is_empty());

    // The browser disappears: exactly one interruption event, near where it
    // stopped.
    let stopped_ms = page.current_time() * 1000.0;
    drop(dash);
    drop(page);
    drop(browser);
    std::thread::sleep(Duration::from_secs(8));
    let events = viewer_events(&server, &viewer);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event"], "vanished");
    assert_eq!(events[0]["user"], "alice");
    assert_eq!(events[0]["content_id"], sid.as_str());
    let pos = events[0]["position_ms"].as_f64().unwrap();
    assert!(
        (pos - stopped_ms).abs() <= 1000.0,
        "vanished at {pos} ms, stopped at {stopped_ms} ms"
    );
}

#[test]
fn heartbeats_rtsp_viewers_admin_api_and_metrics() {
    let server = Server::start();
    let token = server.admin_token();
    let (_push, sid, pt) = server.start_live(30);

    // The admin API and dashboard refuse requests without the token.
    for path in [
        "/api/v1/admin/sessions",
        "/api/v1/admin/viewers",
        "/api/v1/admin/viewer-events",
        "/api/v1/admin/events",
        "/admin",
    ] {
        let r = server.get_raw(path, None);
        assert_eq!(r.status(), 401, "{path} without token");
        let r = server.get_raw(path, Some("wrong"));
        assert_eq!(r.status(), 401, "{path} with a wrong token");
    }
    let (st, _) = server.post_empty("/api/v1/admin/viewers/x/kick", None);
    assert_eq!(st, 401);
    let sessions = admin_get(&server, "/api/v1/admin/sessions");
    assert!(sessions.to_string().contains(&sid));

    // Heartbeats: a viewer that stops posting vanishes once, at its last
    // position.
    let heartbeat = format!("/api/v1/live/{sid}/heartbeat");
    let beat = |viewer: &str, pos: u64| {
        server.post(
            &heartbeat,
            Some(&pt),
            json!({ "viewer_id": viewer, "position_ms": pos, "user": "bob" }),
        )
    };
    // Without a valid playback token the stream and its heartbeats stay
    // closed, and each refusal is counted.
    assert_eq!(
        server.get_status(&format!("/live/{sid}/status.json"), None),
        401
    );
    assert_eq!(
        server.get_status(&format!("/live/{sid}/index.m3u8?token=1-forged"), None),
        401
    );
    let (st, _) = server.post(
        &heartbeat,
        None,
        json!({ "viewer_id": "v-nobody", "position_ms": 1 }),
    );
    assert_eq!(st, 401);
    let mut last = 0;
    for i in 0..6 {
        last = 1000 + i * 400;
        assert!((200..300).contains(&beat("v-gone", last).0));
        assert!((200..300).contains(&beat("v-kick", last).0));
        std::thread::sleep(Duration::from_millis(400));
    }
    // Bad heartbeats are refused and counted.
    let r = server
        .request(Method::POST, &heartbeat, Some(&pt))
        .body("{\"viewer_id\": \"../x\", \"position_ms\": 1}")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    // Kick one; its next heartbeat is refused.
    let (st, _) = server.post_empty("/api/v1/admin/viewers/v-kick/kick", Some(&token));
    assert!((200..300).contains(&st));
    assert_eq!(beat("v-kick", last).0, 410);

    // The 480p rendition, encoded while the phone uploads, is live too: an
    // HLS variant and its own RTSP mount.
    let multivariant = format!("/live/{sid}/index.m3u8?token={pt}");
    let fetch = || server.get_raw(&multivariant, None).text().unwrap();
    let mv = poll_until(Duration::from_secs(20), || {
        Some(fetch()).filter(|m| m.contains("NAME=\"480p\""))
    })
    .unwrap_or_else(fetch);
    assert!(
        mv.contains(&format!("NAME=\"480p\"\n480p/index.m3u8?token={pt}\n")),
        "{mv}"
    );
    let low = server.get_raw(&format!("/live/{sid}/480p/index.m3u8?token={pt}"), None);
    assert_eq!(low.status(), 200);
    assert!(low.text().unwrap().contains("seg0.m4s"));
    let low_rtsp = Command::new("timeout")
        .args(["60", "ffprobe", "-v", "error", "-rtsp_transport", "tcp"])
        .args(["-select_streams", "v", "-show_entries", "stream=profile"])
        .args(["-of", "csv=p=0"])
        .arg(format!(
            "rtsp://127.0.0.1:{}/live/{sid}/480p?token={pt}",
            server.rtsp_port
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&low_rtsp.stdout).trim(),
        "Main",
        "{}",
        String::from_utf8_lossy(&low_rtsp.stderr)
    );

    // Blocking playlist reload: asking for the next segment's playlist
    // answers once that segment is cut; too far ahead or not a number: 400.
    let media = server
        .get_raw(&format!("/live/{sid}/source/index.m3u8?token={pt}"), None)
        .text()
        .unwrap();
    assert!(
        media.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES"),
        "{media}"
    );
    let last_seg: u64 = media
        .lines()
        .filter_map(|l| l.strip_prefix("seg")?.split('.').next()?.parse().ok())
        .max()
        .unwrap();
    let asked = Instant::now();
    let next = server
        .get_raw(
            &format!(
                "/live/{sid}/source/index.m3u8?token={pt}&_HLS_msn={}",
                last_seg + 1
            ),
            None,
        )
        .text()
        .unwrap();
    assert!(next.contains(&format!("seg{}.m4s", last_seg + 1)), "{next}");
    eprintln!(
        "blocking reload answered after {} ms",
        asked.elapsed().as_millis()
    );
    for bad in [format!("{}", last_seg + 10), "x".to_string()] {
        let r = server.get_raw(
            &format!("/live/{sid}/source/index.m3u8?token={pt}&_HLS_msn={bad}"),
            None,
        );
        assert_eq!(r.status(), 400, "_HLS_msn={bad}");
    }

    // An RTSP viewer over TCP that disappears without TEARDOWN.
    let mut rtsp = spawn_rtsp_viewer(&format!(
        "rtsp://127.0.0.1:{}/live/{sid}?token={pt}&user=carol",
        server.rtsp_port
    ));
    let rtsp_viewer = wait_until("an RTSP viewer", Duration::from_secs(20), || {
        let viewers = admin_get(&server, "/api/v1/admin/viewers");
        viewers["viewers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["protocol"] == "rtsp")
            .map(|v| v["viewer_id"].as_str().unwrap().to_string())
    });
    rtsp.kill().unwrap(); // SIGKILL: no TEARDOWN
    let _ = rtsp.wait();

    std::thread::sleep(Duration::from_secs(7));
    let gone = viewer_events(&server, "v-gone");
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0]["event"], "vanished");
    assert_eq!(gone[0]["user"], "bob");
    assert_eq!(gone[0]["protocol"], "hls");
    let pos = gone[0]["position_ms"].as_u64().unwrap();
    assert!(pos.abs_diff(last) <= 1000, "position {pos} vs {last}");
    let kicked = viewer_events(&server, "v-kick");
    assert_eq!(kicked.len(), 1, "{kicked:?}");
    assert_eq!(kicked[0]["event"], "kicked");
    let r = viewer_events(&server, &rtsp_viewer);
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["event"], "vanished");
    assert_eq!(r[0]["protocol"], "rtsp");
    assert_eq!(r[0]["user"], "carol", "the user named in the RTSP URL");

    // /metrics parses as Prometheus text and counts all of this.
    let text = server.metrics();
    assert!(assert_prometheus_text(&text) > 10);
    for needle in [
        "sharecast_live_viewer_events_total{event=\"vanished\"} 2",
        "sharecast_live_viewer_events_total{event=\"kicked\"} 1",
        "sharecast_live_rejected_total{reason=\"bad_heartbeat\"} 1",
        "sharecast_live_rejected_total{reason=\"bad_directive\"} 2",
        "sharecast_admin_rejected_total 11",
        "sharecast_live_streams 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
}
