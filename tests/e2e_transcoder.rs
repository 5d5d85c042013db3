//! End-to-end transcoder: a push through the real binary gives every
//! rendition of the ladder (each served over HTTP, attributes equal to
//! ffprobe's), a poster and still frames over the HTTP API (also while the
//! session is live), and a `kill -9` of the server mid-recording leaves a
//! playable VOD file.

use std::process::Command;
use std::time::Duration;

use sharecast_testkit::*;

fn download(server: &Server, url: &str, to: &std::path::Path) {
    let path = url
        .strip_prefix(&server.http)
        .unwrap_or_else(|| panic!("{url} is not on {}", server.http));
    let r = server.get_raw(path, None);
    assert_eq!(r.status(), 200, "GET {url}");
    std::fs::write(to, r.bytes().unwrap()).unwrap();
}

#[test]
fn renditions_posters_and_still_frames_over_http() {
    let server = Server::start();
    let src = fixture(PORTRAIT).unwrap();
    let r = server.push(&src, &[]);
    assert!(r.ok, "push failed:\n{}\n{}", r.stdout, r.stderr);
    let attrs = r.attributes();
    let id = r.session();
    // The phone gets the source rendition the moment it stops; the 480p
    // rendition is added to the asset when its encoder has caught up.
    let first: Vec<_> = attrs["renditions"]
        .as_array()
        .expect("renditions")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(first, ["source"]);
    let attrs = server.wait_renditions(&id, 2);
    let renditions = attrs["renditions"].as_array().expect("renditions");
    let names: Vec<_> = renditions
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["source", "480p"]);
    let dir = tempfile::tempdir().unwrap();
    for rend in renditions {
        let name = rend["name"].as_str().unwrap();
        let file = dir.path().join(format!("{name}.mp4"));
        download(&server, rend["url"].as_str().unwrap(), &file);
        let got = ffprobe(&file);
        let v = stream(&got, "video").expect("video");
        assert_eq!(rend["width"], v["width"], "{name}");
        assert_eq!(rend["height"], v["height"], "{name}");
        assert_eq!(
            rend["size_bytes"].as_u64().unwrap(),
            num(&got["format"]["size"]) as u64
        );
        let d = num(&got["format"]["duration"]) * 1000.0;
        assert!(
            (rend["duration_ms"].as_f64().unwrap() - d).abs() <= 25.0,
            "{name}"
        );
        assert!((rend["frame_rate"].as_f64().unwrap() - num(&v["avg_frame_rate"])).abs() < 0.05);
        assert_eq!(rend["container"], "mp4");
        let codecs: Vec<_> = rend["codecs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(codecs.len(), 2, "{name}: {codecs:?}");
        assert!(codecs[0].starts_with("avc1."), "{name}: {codecs:?}");
        assert_eq!(codecs[1], "mp4a.40.2");
        assert_eq!(v["nb_read_frames"], "90", "{name}: every frame");
    }
    // Portrait 720x1280 → 480x854.
    assert_eq!(
        (
            renditions[1]["width"].as_u64(),
            renditions[1]["height"].as_u64()
        ),
        (Some(480), Some(854))
    );

    // Poster and still frames.
    let thumb = attrs["thumbnail_url"].as_str().expect("thumbnail_url");
    assert!(
        thumb.ends_with(&format!("/api/v1/assets/{id}/poster.jpg")),
        "{thumb}"
    );
    let poster = server.get_raw(
        &format!("/api/v1/assets/{id}/poster.jpg"),
        Some(&server.token),
    );
    assert_eq!(poster.status(), 200);
    assert_eq!(poster.headers()["content-type"], "image/jpeg");
    assert_eq!(&poster.bytes().unwrap()[..2], &[0xff, 0xd8]);
    let frame = server.get_raw(&format!("/api/v1/assets/{id}/frame?t_ms=1500"), None);
    assert_eq!(frame.status(), 200);
    assert_eq!(frame.headers()["content-type"], "image/jpeg");
    let jpeg = frame.bytes().unwrap();
    let jpg = dir.path().join("f.jpg");
    std::fs::write(&jpg, &jpeg).unwrap();
    let p = ffprobe(&jpg);
    assert_eq!(stream(&p, "video").unwrap()["width"], 720);

    for (query, status, code) in [
        ("t_ms=-5", 400, "bad_time"),
        ("t_ms=abc", 400, "bad_time"),
        ("", 400, "bad_time"),
        ("t_ms=999999", 416, "past_end"),
    ] {
        let (st, v) = server.get(&format!("/api/v1/assets/{id}/frame?{query}"), None);
        assert_eq!(st, status, "{query}");
        assert_eq!(error_code(&v), code, "{query}");
    }
    let (st, v) = server.get("/api/v1/assets/abcdef0123/frame?t_ms=0", None);
    assert_eq!(st, 404);
    assert_eq!(error_code(&v), "unknown_asset");
}

#[test]
fn a_rotated_phone_video_keeps_its_rotation_in_every_rendition() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    for (clip, want) in [(ROTATED_90, 90), (H264_AAC, 0)] {
        let r = server.push(&fixture(clip).unwrap(), &[]);
        assert!(r.ok, "push {clip} failed:\n{}\n{}", r.stdout, r.stderr);
        assert_eq!(
            r.attributes()["rotation"],
            want,
            "{clip}: pushed attributes"
        );
        let attrs = server.wait_renditions(&r.session(), 2);
        assert_eq!(attrs["rotation"], want, "{clip}: asset attributes");
        for rend in attrs["renditions"].as_array().unwrap() {
            let name = rend["name"].as_str().unwrap();
            let file = dir.path().join(format!("{clip}.{name}.mp4"));
            download(&server, rend["url"].as_str().unwrap(), &file);
            let got = ffprobe(&file);
            let v = stream(&got, "video").expect("video");
            // Coded size as stored (the sensor's landscape frame; 640x360
            // is below 480p, so the rendition keeps it), rotation from the
            // file's matrix: a player shows 360x640.
            assert_eq!(
                (&v["width"], &v["height"]),
                (&rend["width"], &rend["height"])
            );
            assert_eq!(
                (rend["width"].as_u64(), rend["height"].as_u64()),
                (Some(640), Some(360))
            );
            assert_eq!(rend["rotation"], want, "{clip}/{name}: attribute");
            assert_eq!(
                ffprobe_rotation(v),
                want,
                "{clip}/{name}: ffprobe on the file"
            );
        }
        // The poster is shown upright, like the video.
        let poster = server.get_raw(
            &format!("/api/v1/assets/{}/poster.jpg", r.session()),
            Some(&server.token),
        );
        assert_eq!(poster.status(), 200);
        let jpg = dir.path().join(format!("{clip}.poster.jpg"));
        std::fs::write(&jpg, poster.bytes().unwrap()).unwrap();
        let p = ffprobe(&jpg);
        let v = stream(&p, "video").unwrap();
        let upright = if want == 90 { (360, 640) } else { (640, 360) };
        assert_eq!(
            (v["width"].as_u64().unwrap(), v["height"].as_u64().unwrap()),
            upright,
            "{clip}: poster"
        );
        // A share page's link preview gives the size as shown.
        let (_, share) = server.post(
            "/api/v1/shares",
            Some(&server.token),
            serde_json::json!({ "asset_id": r.session() }),
        );
        let token = share["token"].as_str().expect("share token");
        let html = server.get_raw(&format!("/s/{token}"), None).text().unwrap();
        for (prop, v) in [("width", upright.0), ("height", upright.1)] {
            let tag = format!("<meta property=\"og:video:{prop}\" content=\"{v}\">");
            assert!(html.contains(&tag), "{clip}: no {tag} in\n{html}");
        }
    }
}

#[test]
fn the_poster_is_an_early_frame_while_live_then_the_vod_poster() {
    let server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let (mut push, id, _out) = server.spawn_push(&src, &["--realtime"]);
    let dir = tempfile::tempdir().unwrap();
    let session_dir = server.data_dir().join("sessions").join(&id);
    let poster = format!("/api/v1/assets/{id}/poster.jpg");
    // Poll from the start of the session: "not ready" until the recording
    // has a decodable frame, then a JPEG, never another error.
    let mut not_ready = 0;
    let live = wait_until("a live poster", Duration::from_secs(20), || {
        let r = server.get_raw(&poster, Some(&server.token));
        match r.status().as_u16() {
            200 => {
                assert_eq!(r.headers()["content-type"], "image/jpeg");
                assert_eq!(r.headers()["cache-control"], "no-cache", "live poster");
                Some(r.bytes().unwrap().to_vec())
            }
            503 => {
                assert_eq!(r.headers()["retry-after"], "1");
                assert_eq!(error_code(&answer(r).1), "not_ready");
                not_ready += 1;
                None
            }
            other => panic!("live poster: {other}: {}", r.text().unwrap()),
        }
    });
    // Still live when it came (a 3 s clip in real time).
    let asset = server.asset(&id);
    assert_eq!(asset["state"], "recording", "{asset}");
    assert!(push.try_wait().unwrap().is_none(), "push still running");
    eprintln!("live poster after {not_ready} not_ready answers");
    // It decodes, and it is the first frame of the recording.
    let jpg = dir.path().join("live.jpg");
    std::fs::write(&jpg, &live).unwrap();
    let p = ffprobe(&jpg);
    let v = stream(&p, "video").expect("a picture");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    let live_img = image::load_from_memory(&live).expect("the live poster decodes");
    let first = ffmpeg_frame(&src, 0.0);
    let later = ffmpeg_frame(&src, 1.0);
    let (d_first, d_later) = (
        mean_abs_diff(&live_img, &first),
        mean_abs_diff(&live_img, &later),
    );
    assert!(
        d_first < 6.0 && d_first < d_later,
        "live poster vs frame 0: {d_first}, vs frame at 1 s: {d_later}"
    );
    // Asked again while live: the same picture, not decoded again.
    let again = server.get_raw(&poster, Some(&server.token));
    assert_eq!(again.status(), 200);
    assert_eq!(again.bytes().unwrap().to_vec(), live);

    // After the end: the VOD poster (the frame at 1 s), cacheable, and the
    // live one is gone.
    assert!(push.wait().unwrap().success(), "push failed");
    wait_until_ok("the asset to be ready", Duration::from_secs(30), || {
        let asset = server.asset(&id);
        (asset["state"] == "ready").then_some(()).ok_or(asset)
    });
    let r = server.get_raw(&poster, Some(&server.token));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "public, max-age=60");
    let vod_poster = r.bytes().unwrap().to_vec();
    assert_eq!(
        vod_poster,
        std::fs::read(session_dir.join("poster.jpg")).unwrap()
    );
    assert_ne!(vod_poster, live);
    assert!(
        !session_dir.join("poster.live.jpg").exists(),
        "live poster removed"
    );
    let vod_img = image::load_from_memory(&vod_poster).expect("the VOD poster decodes");
    let vod = session_dir.join("source.mp4");
    assert!(mean_abs_diff(&vod_img, &ffmpeg_frame(&vod, 1.0)) < 6.0);
}

#[test]
fn kill9_of_the_server_mid_recording_leaves_a_playable_vod() {
    let mut server = Server::start();
    let src = fixture(H264_AAC).unwrap();
    let (mut push, id, _out) = server.spawn_push(&src, &["--realtime"]);
    let vod = server.session_file(&id, "source.mp4");
    wait_until(
        "something playable on disk while recording",
        Duration::from_secs(30),
        || (video_frames(&vod) >= 30).then_some(()),
    );
    // While live: a poster and still frames from what is recorded so far.
    let poster = server.get_raw(
        &format!("/api/v1/assets/{id}/poster.jpg"),
        Some(&server.token),
    );
    assert_eq!(poster.status(), 200, "live poster");
    assert_eq!(&poster.bytes().unwrap()[..2], &[0xff, 0xd8]);
    let frame = server.get_raw(
        &format!("/api/v1/assets/{id}/frame?t_ms=500"),
        Some(&server.token),
    );
    assert_eq!(frame.status(), 200, "live still frame");
    server.kill9();
    let _ = push.kill();
    let _ = push.wait();
    let n = video_frames(&vod);
    assert!(n >= 30, "{n} frames playable after kill -9");
    let o = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&vod)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
