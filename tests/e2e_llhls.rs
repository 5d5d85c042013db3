//! Low-latency HLS on a live push (`sharecast push --input testsrc`, 30 fps,
//! 1 s GOP): partial segments in the media playlist, blocking playlist
//! reload by part, blocking preload of the hinted part, the bytes of parts
//! and segments read by ffprobe, bad delivery directives refused and
//! counted, and hls.js in low-latency mode in headless Chromium playing the
//! stream from its parts.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sharecast_testkit::*;

/// What a media playlist says about its parts.
#[derive(Debug)]
struct Parts {
    /// (media sequence number, part index) of the next part to come.
    next: (u64, u64),
    /// Part number of the preload hint (`part{n}.m4s`).
    hint: u64,
    /// Complete segments listed with their parts: (msn, part numbers,
    /// part durations in s).
    segments: Vec<(u64, Vec<u64>, Vec<f64>)>,
}

fn part_number(uri: &str) -> u64 {
    uri.trim_start_matches("part")
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("part URI {uri}"))
}

/// The value of `NAME=` in an attribute list (`URI` quoted, numbers not).
fn attr<'a>(line: &'a str, name: &str) -> &'a str {
    let at = line.find(&format!("{name}=")).expect(name) + name.len() + 1;
    let rest = &line[at..];
    match rest.strip_prefix('"') {
        Some(q) => &q[..q.find('"').unwrap()],
        None => rest.split(',').next().unwrap(),
    }
}

fn parts(playlist: &str) -> Parts {
    let mut msn: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|n| n.parse().ok())
        .expect("EXT-X-MEDIA-SEQUENCE");
    let (mut ids, mut durations, mut segments, mut hint) = (vec![], vec![], vec![], None);
    for line in playlist.lines() {
        if line.starts_with("#EXT-X-PART:") {
            ids.push(part_number(attr(line, "URI")));
            durations.push(attr(line, "DURATION").parse::<f64>().unwrap());
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            assert_eq!(attr(line, "TYPE"), "PART");
            hint = Some(part_number(attr(line, "URI")));
        } else if !line.starts_with('#') && !line.is_empty() {
            if !ids.is_empty() {
                segments.push((
                    msn,
                    std::mem::take(&mut ids),
                    std::mem::take(&mut durations),
                ));
            }
            msn += 1;
        }
    }
    Parts {
        next: (msn, ids.len() as u64),
        hint: hint.expect("a preload hint"),
        segments,
    }
}

fn write(dir: &Path, name: &str, pieces: &[&[u8]]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pieces.concat()).unwrap();
    path
}

/// Plays `url` in headless Chromium for `secs` s (web/share/live-viewer.mjs
/// `measure`) and returns its report.
fn measure_in_chromium(url: &str, secs: u32) -> Value {
    let out = Command::new("node")
        .arg(web_share_script("live-viewer.mjs"))
        .args(["measure", url, &secs.to_string()])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "live-viewer failed: {stdout}");
    let report = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["event"] == "measured")
        .unwrap_or_else(|| panic!("no report in {stdout}"));
    assert!(report.get("error").is_none(), "{report:#}");
    report
}

#[test]
fn parts_blocking_reload_preload_and_hls_js_low_latency() {
    let server = Server::start();
    let (mut push, sid, pt) = server.start_live(30);
    let get = |file: &str, q: &str| {
        server.get_raw(&format!("/live/{sid}/source/{file}?token={pt}{q}"), None)
    };
    let text = |file: &str, q: &str| {
        let r = get(file, q);
        assert_eq!(r.status(), 200, "{file}{q}");
        r.text().unwrap()
    };
    let pl = text("index.m3u8", "");
    assert!(
        pl.contains("#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.000,PART-HOLD-BACK=0.600\n#EXT-X-PART-INF:PART-TARGET=0.200\n"),
        "{pl}"
    );

    // Blocking playlist reload for the next part: answered once it exists,
    // and it is then listed.
    let before = parts(&pl);
    let (msn, part) = before.next;
    let asked = Instant::now();
    let pl = text("index.m3u8", &format!("&_HLS_msn={msn}&_HLS_part={part}"));
    let reload_ms = asked.elapsed().as_millis();
    assert!(
        pl.contains(&format!("URI=\"part{}.m4s?token={pt}\"", before.hint)),
        "part {} (hinted) listed after the reload: {pl}",
        before.hint
    );
    assert!(reload_ms < 3000, "{reload_ms} ms");

    // Blocking preload: the part after the newly hinted one does not exist
    // yet (two parts of 0.2 s to come); it is held, then served whole.
    let after = parts(&pl);
    let asked = Instant::now();
    let r = get(&format!("part{}.m4s", after.hint + 1), "");
    let preload_ms = asked.elapsed().as_millis();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().unwrap();
    assert_eq!(&bytes[4..8], b"moof");
    assert!(
        (150..3000).contains(&preload_ms),
        "held until made: {preload_ms} ms"
    );
    eprintln!("blocking reload answered in {reload_ms} ms, blocking preload in {preload_ms} ms");

    check_part_bytes(&server, &sid, &pt);
    check_bad_directives(&server, &sid, &pt);

    // hls.js in low-latency mode plays the stream from its parts.
    let report = measure_in_chromium(&format!("{}/watch/{sid}?token={pt}", server.http), 6);
    let (first, later) = (&report["first"], &report["later"]);
    eprintln!("hls.js: {later:#}");
    assert_eq!(later["low_latency"], true);
    assert_eq!(later["part_target"].as_f64(), Some(0.2), "{later}");
    assert_eq!(later["part_hold_back"].as_f64(), Some(0.6), "{later}");
    assert!(later["parts_loaded"].as_u64().unwrap() > 10, "{later}");
    assert!(later["latency"].as_f64().is_some(), "{later}");
    let (t1, t2) = (
        first["current_time"].as_f64().unwrap(),
        later["current_time"].as_f64().unwrap(),
    );
    assert!(t2 > t1 + 3.0, "video time advances: {t1} → {t2}");
    let mut delays: Vec<f64> = report["delays"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    assert!(
        !delays.is_empty(),
        "the page measured capture-to-display delay"
    );
    delays.sort_by(|a, b| a.total_cmp(b));
    eprintln!(
        "LL-HLS capture-to-display in Chromium: p50 {} ms over {} samples",
        delays[delays.len() / 2],
        delays.len()
    );

    // Ended: the parts and the hint leave the playlist, directives are
    // ignored.
    assert!(push
        .wait_timeout(Duration::from_secs(60))
        .is_some_and(|s| s.success()));
    let pl = wait_until("the ended playlist", Duration::from_secs(20), || {
        let pl = text("index.m3u8", "&_HLS_msn=999999&_HLS_part=99");
        pl.contains("#EXT-X-ENDLIST").then_some(pl)
    });
    for gone in ["#EXT-X-PART", "PRELOAD-HINT", "SERVER-CONTROL"] {
        assert!(!pl.contains(gone), "{gone}: {pl}");
    }
}

/// A complete segment is its parts' bytes; ffprobe reads both (with the
/// init segment) and counts the same frames; the first part alone holds
/// its duration's worth of frames.
fn check_part_bytes(server: &Server, sid: &str, pt: &str) {
    let get = |file: &str| {
        let r = server.get_raw(&format!("/live/{sid}/source/{file}?token={pt}"), None);
        assert_eq!(r.status(), 200, "{file}");
        r.bytes().unwrap().to_vec()
    };
    let pl = String::from_utf8(get("index.m3u8")).unwrap();
    let (msn, ids, durations) = parts(&pl).segments.pop().expect("a segment with parts");
    assert!(ids.len() >= 2, "{pl}");
    let init = get("init.mp4");
    let seg = get(&format!("seg{msn}.m4s"));
    let part_bytes: Vec<Vec<u8>> = ids.iter().map(|i| get(&format!("part{i}.m4s"))).collect();
    assert_eq!(part_bytes.concat(), seg, "segment {msn} = its parts");
    let dir = tempfile::tempdir().unwrap();
    let whole = video_frames(&write(dir.path(), "seg.mp4", &[&init, &seg]));
    let mut pieces: Vec<&[u8]> = vec![&init];
    pieces.extend(part_bytes.iter().map(Vec::as_slice));
    assert_eq!(
        video_frames(&write(dir.path(), "parts.mp4", &pieces)),
        whole
    );
    let first = video_frames(&write(dir.path(), "part.mp4", &[&init, &part_bytes[0]]));
    let seconds: f64 = durations.iter().sum();
    let expected = (durations[0] * whole as f64 / seconds).round() as u64;
    assert!(
        whole > 0 && first == expected,
        "{first} frames in the first part, {whole} in all"
    );
    let probe = ffprobe(&write(dir.path(), "p.mp4", &[&init, &part_bytes[0]]));
    assert_eq!(stream(&probe, "video").unwrap()["codec_name"], "h264");
}

/// Every malformed or too-far directive is a 400 `bad_directive`, counted;
/// a part that will never come is a 404.
fn check_bad_directives(server: &Server, sid: &str, pt: &str) {
    let path = format!("/live/{sid}/source/index.m3u8?token={pt}");
    let pl = server.get_raw(&path, None).text().unwrap();
    let (msn, part) = parts(&pl).next;
    let bad = [
        "_HLS_msn=x".to_string(),
        "_HLS_part=1".to_string(),
        "_HLS_msn=1&_HLS_part=y".to_string(),
        format!("_HLS_msn={}", msn + 10),
        format!("_HLS_msn={msn}&_HLS_part={}", part + 100),
        "_HLS_msn=99999999999999999999999".to_string(),
        "_HLS_skip=NO".to_string(),
    ];
    for q in &bad {
        let (status, body) = answer(server.get_raw(&format!("{path}&{q}"), None));
        assert_eq!((status, error_code(&body)), (400, "bad_directive"), "{q}");
    }
    let (status, body) = answer(server.get_raw(
        &format!("/live/{sid}/source/part999999999.m4s?token={pt}"),
        None,
    ));
    assert_eq!((status, error_code(&body)), (404, "unknown_part"));
    let m = server.metrics();
    assert_eq!(
        metric_value(
            &m,
            "sharecast_live_rejected_total{reason=\"bad_directive\"}"
        ),
        Some(bad.len() as f64),
        "{m}"
    );
    assert!(metric_value(&m, "sharecast_live_hls_parts_served_total").unwrap_or(0.0) >= 3.0);
}
