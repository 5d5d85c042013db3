//! The holes found when the server was probed as an attacker, one test for
//! each, against the real binary: what a stranger tried, and what the
//! server answers now.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};
use sharecast_testkit::*;

/// A new user and a web terminal of theirs: `(user token, terminal id)`.
fn new_user(s: &Server, name: &str) -> (String, String) {
    let token = s.new_user(name);
    let terminal = s.new_terminal(&token, "web");
    (token, terminal)
}

/// The first line of the RTSP server's answer to a DESCRIBE of `url`.
fn rtsp_describe(port: u16, url: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

/// High 1: a stranger signed up, made a terminal, reported an interrupted
/// viewing of a private live stream with any playback token, and resumed
/// the bookmark: the answer carried a fresh, valid playback token.
#[test]
fn a_bookmark_hands_out_only_the_live_access_its_creator_proved() {
    let server = Server::start();
    let (_push, sid, pt) = server.start_live(60);
    let (stranger, terminal) = new_user(&server, "mallory");

    // A made-up, an expired or another session's token proves nothing.
    let other = server.push_fixture(H264_AAC);
    for bogus in [
        "",
        "anything",
        "1-00000000000000000000000000000000",
        pt.replace('-', "-0").as_str(),
    ] {
        let (st, a) = server.post(
            "/api/v1/reverse-bookmark",
            None,
            json!({ "content_id": sid, "position_ms": 500, "playback_token": bogus, "user_token": stranger }),
        );
        assert_eq!(
            (st, a["result_code"].as_u64()),
            (403, Some(6)),
            "{bogus}: {a}"
        );
    }
    let (_, list) = server.get("/api/v1/bookmarks", Some(&stranger));
    assert_eq!(list["bookmarks"].as_array().unwrap().len(), 0, "{list}");

    // A hand-off received from "another platform" naming the private live
    // stream makes a bookmark that opens nothing.
    let state = json!({
        "id": "x", "code": "ABCDEFGH", "content_id": sid,
        "address": format!("{}/live/{sid}/index.m3u8", server.http),
        "position_ms": 500, "format": "mp4", "codecs": ["avc1.42c01f"], "frame_rate": 30.0,
        "platform": "http://platform-a.example", "expires_unix_ms": 4_000_000_000_000i64,
    });
    let (st, bm) = server.post(
        "/api/v1/handoff/receive",
        None,
        json!({ "state": state, "user_token": stranger, "terminal_id": terminal }),
    );
    assert_eq!(st, 200, "{bm}");
    let (st, res) = server.post(
        &format!("/api/v1/bookmarks/{}/resume", bm["id"].as_str().unwrap()),
        Some(&stranger),
        json!({ "terminal_id": terminal }),
    );
    assert_eq!((st, error_code(&res)), (403, "no_live_access"), "{res}");
    assert!(!res.to_string().contains("token="), "{res}");

    // A viewer who had a valid token gets a bookmark whose resume carries a
    // token for this session ending no later than the one it proved.
    let (alice, alice_web) = new_user(&server, "alice");
    let (st, a) = server.post(
        "/api/v1/reverse-bookmark",
        None,
        json!({ "content_id": sid, "position_ms": 500, "playback_token": pt, "user_token": alice }),
    );
    assert_eq!((st, a["result_code"].as_u64()), (200, Some(0)), "{a}");
    let (st, res) = server.post(
        &format!(
            "/api/v1/bookmarks/{}/resume",
            a["bookmark_id"].as_str().unwrap()
        ),
        Some(&alice),
        json!({ "terminal_id": alice_web }),
    );
    assert_eq!(st, 200, "{res}");
    let url = res["url"].as_str().unwrap();
    let token = url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("token="))
        .unwrap_or_else(|| panic!("no token in {url}"));
    let exp = |t: &str| t.split('-').next().unwrap().parse::<i64>().unwrap();
    assert!(exp(token) <= exp(&pt), "{token} outlives {pt}");
    assert_eq!(
        server.get_status(&format!("/live/{sid}/index.m3u8?token={token}"), None),
        200
    );
    // A token for one session opens no other.
    let (st, _) = server.post(
        "/api/v1/reverse-bookmark",
        None,
        json!({ "content_id": other, "position_ms": 500, "playback_token": pt, "user_token": alice }),
    );
    assert_eq!(st, 200, "a recorded asset needs no live proof");
}

/// High 2: `GET /api/v1/assets` and `GET /api/v1/sessions` listed every
/// device's recordings to anyone, with old playback tokens; ids were 64 bits.
#[test]
fn recordings_and_sessions_are_listed_only_to_their_device() {
    let server = Server::start();
    let (_push, sid, _pt) = server.start_live(30);
    let ready = server.push_fixture(H264_AAC);
    for id in [&sid, &ready] {
        assert_eq!(id.len(), 32, "ids are 128 random bits: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    for path in [
        "/api/v1/assets",
        "/api/v1/sessions",
        &format!("/api/v1/assets/{ready}"),
    ] {
        let (st, v) = server.get(path, None);
        assert_eq!(st, 401, "{path}: {v}");
        let (st, _) = server.get(path, Some("sc_forged"));
        assert_eq!(st, 401, "{path}");
    }
    // Another device sees none of them.
    let other = server.add_device("other");
    let (st, v) = server.get("/api/v1/assets", Some(&other));
    assert_eq!(st, 200);
    assert_eq!(v["assets"].as_array().unwrap().len(), 0, "{v}");
    let (_, v) = server.get("/api/v1/sessions", Some(&other));
    assert_eq!(v["sessions"].as_array().unwrap().len(), 0, "{v}");
    let (st, v) = server.get(&format!("/api/v1/assets/{ready}"), Some(&other));
    assert_eq!((st, error_code(&v)), (403, "not_owner"));
    // Its own device and the admin see them.
    let (_, v) = server.get("/api/v1/assets", Some(&server.token));
    assert_eq!(v["assets"].as_array().unwrap().len(), 2, "{v}");
    let (_, v) = server.get("/api/v1/sessions", Some(&server.admin_token()));
    assert!(v.to_string().contains(&sid), "{v}");
}

/// A local listener counting the connections it gets.
fn counting_listener() -> (u16, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Answer like a web service that leaks what it holds.
            if let Ok(mut s) = s {
                let mut buf = [0u8; 2048];
                let _ = s.read(&mut buf);
                let body = "{\"id\":\"internal-secret\",\"secret\":\"s3cr3t\"}";
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
    });
    (port, hits)
}

/// High 3: hand-off push posted to any address (a `?` gave control of the
/// path) and echoed its answer; accept fetched any URL and its errors told
/// open ports from closed ones.
#[test]
fn the_server_sends_no_request_inside_and_passes_no_answer_back() {
    let server = Server::start();
    let content = server.push_fixture(H264_AAC);
    let (alice, web) = new_user(&server, "alice");
    let h = server.new_handoff(&alice, &content, 500);
    let id = h["state"]["id"].as_str().unwrap();
    let (port, hits) = counting_listener();
    let push = |target: &str| server.handoff_push(id, &alice, target, "su_x", "t");
    for target in [
        format!("http://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://[::ffff:127.0.0.1]:{port}"),
        format!("http://2130706433:{port}"),
        "http://169.254.169.254".to_string(),
        "http://10.0.0.1".to_string(),
    ] {
        let (st, v) = push(&target);
        assert_eq!(
            (st, error_code(&v)),
            (403, "platform_not_allowed"),
            "{target}: {v}"
        );
    }
    // The path cannot be chosen with a `?`.
    let (st, v) = push(&format!("http://127.0.0.1:{port}/internal?x="));
    assert_eq!(st, 400, "{v}");
    let accept = |from: String| {
        server.post(
            "/api/v1/handoff/accept",
            Some(&alice),
            json!({ "from": from, "terminal_id": web }),
        )
    };
    for from in [
        format!("http://127.0.0.1:{port}/api/v1/handoff/abcd?exp=1&sig=aa"),
        format!("http://localhost:{port}/api/v1/handoff/abcd?exp=1&sig=aa"),
        format!("http://[::1]:{port}/api/v1/handoff/abcd?exp=1&sig=aa"),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let (st, v) = accept(from.clone());
        assert!(st == 403 || st == 400, "{from}: {st} {v}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a request reached the listener"
    );

    // With loopback trusted, what a platform answers is still never passed
    // back, and a closed port reads like an open one that is no platform.
    let trusting = Server::start_with_config("[outbound]\nallowed_hosts = [\"127.0.0.1\"]\n");
    let ready = trusting.push_fixture(H264_AAC);
    let (bob, bob_web) = new_user(&trusting, "bob");
    let h = trusting.new_handoff(&bob, &ready, 500);
    let id = h["state"]["id"].as_str().unwrap();
    let target = format!("http://127.0.0.1:{port}");
    let (_, v) = trusting.handoff_push(id, &bob, &target, "su_x", "t");
    assert!(
        !v.to_string().contains("s3cr3t"),
        "the answer was echoed: {v}"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let from = |p: u16| format!("http://127.0.0.1:{p}/api/v1/handoff/abcd?exp=1&sig=aa");
    let (st_open, open) = trusting.post(
        "/api/v1/handoff/accept",
        Some(&bob),
        json!({ "from": from(port), "terminal_id": bob_web }),
    );
    let (st_closed, shut) = trusting.post(
        "/api/v1/handoff/accept",
        Some(&bob),
        json!({ "from": from(closed), "terminal_id": bob_web }),
    );
    assert_eq!(st_closed, 502, "{shut}");
    assert_eq!(error_code(&shut), "platform_unreachable", "{shut}");
    assert!(
        !shut.to_string().to_lowercase().contains("refused"),
        "{shut}"
    );
    assert!(!open.to_string().contains("s3cr3t"), "{open}");
    assert_eq!(st_open, 502, "{open}");
}

/// Medium 4: frames, posters and stills of a private live recording were
/// served without a token, and anyone could publish a still page of it.
#[test]
fn a_live_recording_shows_no_frame_without_its_token() {
    let server = Server::start();
    let (_push, sid, pt) = server.start_live(40);
    let frame = format!("/api/v1/assets/{sid}/frame?t_ms=100");
    let poster = format!("/api/v1/assets/{sid}/poster.jpg");
    for path in [&frame, &poster] {
        assert_eq!(server.get_status(path, None), 401, "{path}");
        assert_eq!(server.get_status(path, Some("1-00")), 401, "{path}");
        // Past the policy (the frame itself may not be there yet: 503).
        let with = server.get_raw(
            &format!(
                "{path}{}token={pt}",
                if path.contains('?') { '&' } else { '?' }
            ),
            None,
        );
        assert!(
            !matches!(with.status().as_u16(), 401 | 403),
            "{path}: {}",
            with.status()
        );
        let owner = server.get_raw(path, Some(&server.token));
        assert!(
            !matches!(owner.status().as_u16(), 401 | 403),
            "{path}: {}",
            owner.status()
        );
    }
    let (st, v) = server.post(
        "/api/v1/stills",
        None,
        json!({ "content_id": sid, "t_ms": 100 }),
    );
    assert_eq!(st, 401, "{v}");
    // Once recorded, its id opens it, as its VOD URL does.
    let ready = server.push_fixture(H264_AAC);
    assert_eq!(
        server.get_status(&format!("/api/v1/assets/{ready}/poster.jpg"), None),
        200
    );
    let (st, v) = server.post(
        "/api/v1/stills",
        None,
        json!({ "content_id": ready, "t_ms": 100 }),
    );
    assert_eq!(st, 200, "{v}");
}

/// Medium 5: a public share that expired closed its page but left the live
/// stream open (HLS and RTSP) until revoked or restarted.
#[test]
fn an_expired_public_share_closes_the_live_stream() {
    let server = Server::start();
    let (_push, sid, _pt) = server.start_live(40);
    let (st, v) = server.post(
        "/api/v1/shares",
        Some(&server.token),
        json!({ "asset_id": sid, "public": true, "ttl_s": 3 }),
    );
    assert_eq!(st, 201, "{v}");
    let hls = format!("/live/{sid}/index.m3u8");
    let rtsp = format!("rtsp://127.0.0.1:{}/live/{sid}", server.rtsp_port);
    assert_eq!(server.get_status(&hls, None), 200, "open while shared");
    assert!(rtsp_describe(server.rtsp_port, &rtsp).contains("200"));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(server.get_status(&hls, None), 401, "closed once expired");
    let answer = rtsp_describe(server.rtsp_port, &rtsp);
    assert!(answer.contains("401"), "{answer}");
    assert_eq!(
        server.get_status(&format!("/api/v1/assets/{sid}/poster.jpg"), None),
        401
    );
}

/// Medium 6: an anonymous still with a small PNG of 11000 x 11000 pixels
/// took 484 MB and 3 s; four at once stalled the server.
#[test]
fn a_decompression_bomb_is_refused_from_its_header() {
    let server = Server::start();
    let ready = server.push_fixture(H264_AAC);
    let mut png = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(image::GrayImage::new(1, 1))
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    let mut png = png.into_inner();
    png[16..20].copy_from_slice(&11_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&11_000u32.to_be_bytes());
    let crc = crc32fast::hash(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let body = json!({ "content_id": ready, "t_ms": 100, "drawing_png_base64": b64 });
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| server.post("/api/v1/stills", None, body.clone())))
            .collect();
        for h in handles {
            let (st, v) = h.join().unwrap();
            assert_eq!((st, error_code(&v)), (400, "drawing_too_large"), "{v}");
        }
    });
    assert_eq!(server.get_status("/api/v1/health", None), 200);
}

/// Medium 7: `STOP` and `START` were accepted from anyone.
#[test]
fn sms_replies_need_the_gateway_key() {
    let server = Server::start();
    let key = server.sms_key();
    assert!(key.len() >= 32, "a key is generated at first start");
    for q in [
        "from=15550001&text=STOP",
        "from=15550001&text=STOP&key=wrong",
    ] {
        let (st, v) = server.get(&format!("/api/v1/sms/inbound?{q}"), None);
        assert_eq!(st, 403, "{q}");
        assert_eq!(error_code(&v), "bad_key");
    }
    let r = server.get_raw(
        &format!("/api/v1/sms/inbound?from=15550001&text=STOP&key={key}"),
        None,
    );
    assert_eq!(r.status(), 200);
    assert!(server
        .metrics()
        .contains("sharecast_http_refused_total{rule=\"sms_gateway\",reason=\"bad_key\"} 2"));
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Medium 8: `data/` was 0755, the database and `server.json` (with the
/// demo device's token in clear) 0644, and a demo device was made at every
/// start.
#[test]
fn secrets_are_owner_only_and_the_demo_device_is_made_once() {
    let mut server = Server::start();
    server.push_fixture(H264_AAC);
    let data = server.data_dir();
    assert_eq!(mode(&data), 0o700);
    for name in [
        "sharecast.db",
        "sharecast.db-wal",
        "server.json",
        "admin-token",
        "sms-inbound-key",
        "playback-key",
        "signing-key",
    ] {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    for dir in ["sessions", "tls"] {
        assert_eq!(mode(&data.join(dir)), 0o700, "{dir}");
    }
    let info = std::fs::read_to_string(data.join("server.json")).unwrap();
    assert!(!info.contains(&server.token), "{info}");
    assert!(!data.join("demo-device-token").exists());
    // Restarted: no second demo device, no token printed again; the first
    // one still works.
    server.kill9();
    let before = server.stdout();
    server.restart(None);
    let after = server.stdout()[before.len()..].to_string();
    assert!(!after.contains("Demo device token"), "{after}");
    let list = std::process::Command::new(bin())
        .args(["device", "list", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).lines().count(), 1);
    server.push_fixture(AUDIO_ONLY);
}

/// Low: with `[http] listen` set and no `public_url`, links pointed at 8080.
#[test]
fn the_default_public_url_follows_the_listen_port() {
    // An `[http]` table without `public_url` (the harness then moves the
    // listener to a free port, as an operator's `listen` would).
    let server = Server::start_with_config("[http]\nlisten = \"0.0.0.0:18080\"\n");
    let port = server.http.rsplit(':').next().unwrap().to_string();
    assert_ne!(port, "8080", "{}", server.http);
    assert_eq!(server.get_status("/api/v1/health", None), 200);
    let r = server.push(&fixture(AUDIO_ONLY).unwrap(), &[]);
    assert!(r.ok);
    let vod = r.attributes()["vod_url"].as_str().unwrap().to_string();
    assert!(vod.starts_with(&format!("{}/vod/", server.http)), "{vod}");
    assert!(server
        .stdout()
        .contains(&format!("{}/api/v1/health", server.http)));
}

/// Low: hand-off codes could be guessed without limit; redirects went
/// anywhere.
#[test]
fn codes_cannot_be_guessed_and_redirects_go_only_to_trusted_platforms() {
    let server = Server::start();
    let ready = server.push_fixture(H264_AAC);
    let (alice, _) = new_user(&server, "alice");
    let h = server.new_handoff(&alice, &ready, 500);
    let good = h["code"].as_str().unwrap().to_string();
    let mut statuses = Vec::new();
    for i in 0..12 {
        let (st, _) = server.get(&format!("/api/v1/handoff/by-code/ZZZZZZ{i:02}"), None);
        statuses.push(st);
    }
    assert_eq!(&statuses[..10], &[404; 10], "{statuses:?}");
    assert_eq!(&statuses[10..], &[429, 429], "{statuses:?}");
    let (st, v) = server.get(&format!("/api/v1/handoff/by-code/{good}"), None);
    assert_eq!(
        (st, error_code(&v)),
        (429, "too_many_attempts"),
        "blocked for the minute"
    );
    let id = h["state"]["id"].as_str().unwrap();
    let r = server.get_raw(
        &format!("/api/v1/handoff/{id}/redirect?target=https://evil.example"),
        None,
    );
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());
}

/// Low: 413, 415 and 422 were plain text; a multi-range or unparsable
/// Range answered 416.
#[test]
fn bad_bodies_get_json_errors_and_odd_ranges_get_the_whole_file() {
    let server = Server::start_with_config("[http]\nmax_body_bytes = 4096\n");
    let (alice, _) = new_user(&server, "alice");
    let raw = |path: &str, ct: Option<&str>, body: Vec<u8>| {
        let mut req = server.request(Method::POST, path, Some(&alice)).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().unwrap();
        let st = r.status().as_u16();
        let ctype = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        (st, ctype, r.json::<Value>().unwrap_or_default())
    };
    for path in [
        "/api/v1/users",
        "/api/v1/terminals",
        "/api/v1/history",
        "/api/v1/stills",
    ] {
        let json = Some("application/json");
        for (ct, body, want) in [
            (None, b"{}".to_vec(), 415),
            (json, b"{\"nope\": 1}".to_vec(), 422),
            (json, vec![b' '; 8192], 413),
        ] {
            let (st, ctype, v) = raw(path, ct, body);
            assert_eq!(st, want, "{path}: {v}");
            assert_eq!(ctype.as_deref(), Some("application/json"), "{path} {st}");
            assert!(
                v["error"]["code"].is_string() && v["error"]["message"].is_string(),
                "{path} {st}: {v}"
            );
        }
    }
    let ready = server.push_fixture(AUDIO_ONLY);
    let vod = server.url(&format!("/vod/{ready}/source.mp4"));
    let size = client().get(&vod).send().unwrap().bytes().unwrap().len();
    for range in ["bytes=0-1,5-6", "bytes=abc", "bytes=9-2", "lines=0-1"] {
        let r = client().get(&vod).header("range", range).send().unwrap();
        assert_eq!(r.status(), 200, "{range}");
        assert_eq!(r.bytes().unwrap().len(), size, "{range}");
    }
    let r = client()
        .get(&vod)
        .header("range", "bytes=0-9")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
}
