//! Resume everywhere (cross-terminal history, hand-off between platforms,
//! interruption bookmarks): history across a user's terminals
//! with resume tokens and purging, hand-off of suspend-state information
//! between two Sharecast instances (push, pull, redirect, short code), and
//! interruption bookmarks: a headless Chromium watching a live stream is
//! killed, its bookmark resumes the live stream there in a new browser.

use std::time::Duration;

use serde_json::{json, Value};
use sharecast_testkit::*;

/// A user's bookmarks (`GET /api/v1/bookmarks`).
fn bookmarks(s: &Server, user_token: &str) -> Vec<Value> {
    let (st, list) = s.get("/api/v1/bookmarks", Some(user_token));
    assert_eq!(st, 200, "{list}");
    list["bookmarks"].as_array().unwrap().clone()
}

/// One of a user's bookmarks, by id.
fn bookmark_by_id(s: &Server, user_token: &str, id: &str) -> Value {
    let list = bookmarks(s, user_token);
    list.iter()
        .find(|x| x["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no bookmark {id}: {list:?}"))
}

/// Waits (up to `secs`) for the user's first bookmark.
fn first_bookmark(s: &Server, user_token: &str, secs: u64) -> Value {
    wait_until(
        "an interruption bookmark",
        Duration::from_secs(secs),
        || bookmarks(s, user_token).first().cloned(),
    )
}

/// Waits (up to `secs`) for the user's first bookmark and checks that it
/// is the interruption of `content`, within a second of `near_ms` (where
/// `who` was).
fn interruption_bookmark(
    s: &Server,
    user_token: &str,
    content: &str,
    secs: u64,
    near_ms: u64,
    who: &str,
) -> Value {
    let bm = first_bookmark(s, user_token, secs);
    assert_eq!(bm["source"], "interruption", "{bm}");
    assert_eq!(bm["content_id"], content, "{bm}");
    let pos = bm["position_ms"].as_u64().unwrap();
    assert!(
        pos.abs_diff(near_ms) <= 1000,
        "bookmark at {pos} ms, {who} {near_ms} ms"
    );
    bm
}

/// An asset as the admin sees it: status and JSON.
fn admin_asset(s: &Server, content: &str) -> (u16, Value) {
    s.get(&format!("/api/v1/assets/{content}"), Some(&s.admin_token()))
}

/// An asset (as the admin sees it) that has its source rendition only.
fn source_only(s: &Server, content: &str) -> Value {
    let (_, asset) = admin_asset(s, content);
    assert_eq!(
        asset["attributes"]["renditions"].as_array().unwrap().len(),
        1,
        "{asset}"
    );
    asset
}

/// Resumes a bookmark on a terminal of its user (`POST
/// /api/v1/bookmarks/{id}/resume`): status and the answer.
fn resume(s: &Server, user_token: &str, bookmark: &str, terminal: &str) -> (u16, Value) {
    s.post(
        &format!("/api/v1/bookmarks/{bookmark}/resume"),
        Some(user_token),
        json!({ "terminal_id": terminal }),
    )
}

/// An interruption reported through the reverse-bookmark interface
/// (`POST /api/v1/reverse-bookmark`): status and the answer.
fn reverse_bookmark(
    s: &Server,
    content: &str,
    pos: u64,
    playback: &str,
    user: &str,
) -> (u16, Value) {
    s.post(
        "/api/v1/reverse-bookmark",
        None,
        json!({ "content_id": content, "position_ms": pos, "playback_token": playback, "user_token": user }),
    )
}

/// Polls a job (`/api/v1/{kind}/{id}`, as `token`) until `finished` says
/// it is over; returns it.
fn wait_job(
    s: &Server,
    token: &str,
    kind: &str,
    id: &str,
    finished: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/api/v1/{kind}/{id}");
    wait_until_ok(
        &format!("{path} to finish"),
        Duration::from_secs(120),
        || {
            let (st, job) = s.get(&path, Some(token));
            assert_eq!(st, 200, "{job}");
            if finished(&job) {
                Ok(job)
            } else {
                Err(job)
            }
        },
    )
}

/// Polls an on-demand transcode job until it is done or failed.
fn wait_transcode(s: &Server, token: &str, id: &str) -> Value {
    wait_job(s, token, "transcodes", id, |job| {
        job["state"] == "done" || job["state"] == "failed"
    })
}

/// Polls a fetch of another platform's video until it is done or failed.
fn wait_fetch(s: &Server, token: &str, id: &str) -> Value {
    wait_job(s, token, "fetches", id, |job| job["state"] != "fetching")
}

#[test]
fn history_follows_the_user_across_terminals_and_ages_out() {
    let server = Server::start_with_config("[resume]\nhistory_max_age_secs = 4\n");
    let content = server.push_fixture(H264_AAC);

    let alice = server.new_user("alice");
    let tv = server.new_terminal(&alice, "tv");
    let phone = server.new_terminal(&alice, "mobile");

    // Stop on the TV at 1.5 s.
    let (st, stop) = server.post(
        "/api/v1/history",
        Some(&alice),
        json!({ "terminal_id": tv, "content_id": content, "position_ms": 1500 }),
    );
    assert_eq!(st, 200, "{stop}");
    let resume_token = stop["resume_token"].as_str().unwrap().to_string();

    // The phone sees the TV's history with a link it can play.
    let (st, cat) = server.get(
        &format!("/api/v1/catalogue?terminal_id={phone}"),
        Some(&alice),
    );
    assert_eq!(st, 200, "{cat}");
    let h = &cat["history"][0];
    assert_eq!(h["content_id"], content.as_str());
    assert_eq!(h["terminal_id"], tv.as_str());
    assert_eq!(h["terminal_type"], "tv");
    assert_eq!(h["position_ms"], 1500);
    assert!(h["link"]["url"].as_str().unwrap().contains(&content));
    assert!(h["link"]["codecs"][0].as_str().unwrap().starts_with("avc1"));
    assert!(cat["programmes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["content_id"] == content.as_str()));

    // The TV's resume token resumes on the phone, at the breakpoint.
    let (st, res) = server.post(
        "/api/v1/resume",
        Some(&alice),
        json!({ "resume_token": resume_token, "terminal_id": phone }),
    );
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["position_ms"], 1500);
    assert!(res["play_url"].as_str().unwrap().ends_with("#t=1.500"));

    // Another user sees nothing and cannot use the token.
    let bob = server.new_user("bob");
    let bob_phone = server.new_terminal(&bob, "mobile");
    let (_, hist) = server.get("/api/v1/history", Some(&bob));
    assert_eq!(hist["history"].as_array().unwrap().len(), 0);
    let (st, e) = server.post(
        "/api/v1/resume",
        Some(&bob),
        json!({ "resume_token": resume_token, "terminal_id": bob_phone }),
    );
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "bad_resume_token");
    // Bob cannot use Alice's terminal either.
    let (st, _) = server.get(
        &format!("/api/v1/catalogue?terminal_id={phone}"),
        Some(&bob),
    );
    assert_eq!(st, 404);

    // Bad input: clear errors, nothing stored.
    let (st, e) = server.post(
        "/api/v1/history",
        Some(&alice),
        json!({ "terminal_id": tv, "content_id": content, "position_ms": 999_999 }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("position_past_end"))
    );
    let (st, e) = server.post(
        "/api/v1/history",
        Some(&alice),
        json!({ "terminal_id": tv, "content_id": "00ff", "position_ms": 1 }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("unknown_content"))
    );
    let (st, _) = server.post(
        "/api/v1/history",
        Some("su_forged"),
        json!({ "terminal_id": tv, "content_id": content, "position_ms": 1 }),
    );
    assert_eq!(st, 401);
    let (st, e) = server.post(
        "/api/v1/terminals",
        Some(&alice),
        json!({ "type": "toaster" }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_terminal_type"))
    );
    let (_, hist) = server.get("/api/v1/history", Some(&alice));
    assert_eq!(hist["history"].as_array().unwrap().len(), 1);

    // Aged records are purged (history_max_age_secs = 4 here), tokens too.
    std::thread::sleep(Duration::from_secs(5));
    let (_, hist) = server.get("/api/v1/history", Some(&alice));
    assert_eq!(hist["history"].as_array().unwrap().len(), 0, "{hist}");
    let (st, _) = server.post(
        "/api/v1/resume",
        Some(&alice),
        json!({ "resume_token": resume_token, "terminal_id": phone }),
    );
    assert_eq!(st, 403);
}

/// Two platforms on this machine trust each other: their outbound policy
/// allows loopback (which it refuses by default).
const TRUST_LOOPBACK: &str = "[outbound]\nallowed_hosts = [\"127.0.0.1\"]\n";

#[test]
fn handoff_between_two_platforms_by_push_pull_redirect_and_code() {
    let a = Server::start_with_config(TRUST_LOOPBACK);
    let b = Server::start_with_config(TRUST_LOOPBACK);
    let content = a.push_fixture(H265_AAC);
    // Wait for A's H.264 compatibility rendition.
    a.wait_renditions(&content, 2);

    let alice_a = a.new_user("alice");
    let alice_b = b.new_user("alice");
    let web_b = b.new_terminal(&alice_b, "web");
    let tv_b = b.new_terminal(&alice_b, "tv");

    let handoff = |pos: u64| a.new_handoff(&alice_a, &content, pos);
    let check = |bm: &Value, pos: u64, terminal_kind: &str| {
        assert_eq!(bm["content_id"], content.as_str(), "{bm}");
        assert_eq!(bm["position_ms"], pos, "{bm}");
        assert_eq!(bm["source"], "handoff");
        if terminal_kind == "web" {
            // A browser cannot play H.265: the H.264 rendition is chosen.
            assert_eq!(bm["status"], "rendition:480p", "{bm}");
            assert!(
                bm["address"].as_str().unwrap().ends_with("/480p.mp4"),
                "{bm}"
            );
        } else {
            assert_eq!(bm["status"], "ready", "{bm}");
        }
    };

    // Pull: B fetches the signed link.
    let h = handoff(1000);
    assert_eq!(
        h["state"]["codecs"][0].as_str().unwrap()[..4].to_string(),
        "hvc1"
    );
    let (st, bm) = b.post(
        "/api/v1/handoff/accept",
        Some(&alice_b),
        json!({ "from": h["pull_url"], "terminal_id": tv_b, "name": "couch", "description": "finish later" }),
    );
    assert_eq!(st, 200, "{bm}");
    check(&bm, 1000, "tv");
    assert_eq!(bm["name"], "couch");

    // Push: A calls B.
    let h = handoff(1200);
    let id = h["state"]["id"].as_str().unwrap();
    let (st, v) = a.handoff_push(id, &alice_a, &b.http, &alice_b, &web_b);
    assert_eq!(st, 200, "{v}");
    // Of B's answer, A passes back only the bookmark's id; the bookmark is
    // read on B.
    assert!(v.get("answer").is_none(), "{v}");
    let pushed = bookmark_by_id(&b, &alice_b, v["bookmark_id"].as_str().unwrap());
    check(&pushed, 1200, "web");

    // Redirect: the terminal follows A's redirect to B.
    let h = handoff(1400);
    let id = h["state"]["id"].as_str().unwrap();
    let resp = a.get_raw(
        &format!("/api/v1/handoff/{id}/redirect?target={}", b.http),
        None,
    );
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&b.url("/api/v1/handoff/accept?from=")));
    let (st, v) = send(
        client()
            .get(format!("{location}&terminal_id={web_b}"))
            .bearer_auth(&alice_b),
    );
    assert_eq!(st, 200, "{v}");
    check(&v["bookmark"], 1400, "web");

    // Short code typed by the user on B.
    let h = handoff(1600);
    let (st, bm) = b.post(
        "/api/v1/handoff/accept",
        Some(&alice_b),
        json!({ "platform": a.http, "code": h["code"], "terminal_id": tv_b }),
    );
    assert_eq!(st, 200, "{bm}");
    check(&bm, 1600, "tv");

    assert_eq!(bookmarks(&b, &alice_b).len(), 4);

    // Forged and unknown links, positions past the end: clear errors, nothing stored.
    let h = handoff(100);
    let forged = h["pull_url"].as_str().unwrap().replace("sig=", "sig=00");
    let (st, e) = b.post(
        "/api/v1/handoff/accept",
        Some(&alice_b),
        json!({ "from": forged, "terminal_id": tv_b }),
    );
    assert_eq!(st, 502, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("403"),
        "{e}"
    );
    let (st, _) = a.get(
        &format!(
            "/api/v1/handoff/{}?exp=1&sig=00",
            h["state"]["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(st, 403);
    let (st, _) = a.get("/api/v1/handoff/by-code/ZZZZZZZZ", None);
    assert_eq!(st, 404);
    let (st, e) = a.post(
        "/api/v1/handoff",
        Some(&alice_a),
        json!({ "content_id": content, "position_ms": 99_000_000 }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("position_past_end"))
    );
    assert_eq!(bookmarks(&b, &alice_b).len(), 4);
}

#[test]
fn a_handoff_to_a_terminal_that_cannot_play_h265_transcodes_it_on_demand() {
    // No ladder: the H.265 recording has its source rendition only.
    let s = Server::start_with_config(
        "[transcoder]\nrenditions = []\n\n[resume]\ntranscode_short_side = 240\n",
    );
    let content = s.push_fixture(H265_AAC);
    let asset = source_only(&s, &content);

    let alice = s.new_user("alice");
    let web = s.new_terminal(&alice, "web");
    let accept = |content: &str, pos: u64| {
        let h = s.new_handoff(&alice, content, pos);
        let (st, bm) = s.post(
            "/api/v1/handoff/accept",
            Some(&alice),
            json!({ "platform": s.http, "code": h["code"], "terminal_id": web, "name": "on the laptop" }),
        );
        assert_eq!(st, 200, "{bm}");
        bm
    };

    // A browser cannot play H.265 and nothing else exists: a transcode is
    // scheduled and the bookmark says where to poll it.
    let bm = accept(&content, 1000);
    assert_eq!(bm["status"], "transcoding", "{bm}");
    let job_id = bm["transcode"]["id"]
        .as_str()
        .expect("a job id")
        .to_string();
    assert!(
        bm["transcode"]["poll_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/v1/transcodes/{job_id}")),
        "{bm}"
    );
    // A second hand-off of the same content to the same kind of terminal
    // shares the job (or, if it already finished, gets its rendition).
    let bm2 = accept(&content, 1200);
    if bm2["status"] == "transcoding" {
        assert_eq!(bm2["transcode"]["id"], job_id.as_str(), "{bm2}");
    } else {
        assert_eq!(bm2["status"], "rendition:240p-h264", "{bm2}");
    }

    let job = wait_transcode(&s, &alice, &job_id);
    assert_eq!(job["state"], "done", "{job}");
    // Its progress: the whole source encoded; the admin lists the job too.
    let p = &job["progress"];
    assert_eq!(p["percent"], 100, "{job}");
    let total_ms = p["total_ms"].as_f64().unwrap();
    let source_ms = asset["attributes"]["duration_ms"].as_f64().unwrap();
    assert!((total_ms - source_ms).abs() < 300.0, "{job}");
    let (st, jobs) = s.get("/api/v1/admin/jobs", Some(&s.admin_token()));
    assert_eq!(st, 200, "{jobs}");
    let listed = jobs["jobs"]["transcodes"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|j| j["id"] == job_id.as_str() && j["progress"]["percent"] == 100),
        "{jobs}"
    );
    let url = job["url"].as_str().unwrap().to_string();
    assert!(
        url.ends_with(&format!("/vod/{content}/240p-h264.mp4")),
        "{job}"
    );
    assert_eq!(job["attributes"]["height"], 240, "{job}");

    // The file: H.264 main + AAC, 240 high, as long as the source.
    let file = s.session_file(&content, "240p-h264.mp4");
    assert!(file.exists(), "{}", file.display());
    let probe = ffprobe(&file);
    let v = stream(&probe, "video").expect("a video stream");
    assert_eq!(v["codec_name"], "h264", "{probe}");
    assert_eq!(v["profile"], "Main", "{probe}");
    assert_eq!(v["height"], 240, "{probe}");
    assert_eq!(v["width"], 428, "{probe}");
    assert_eq!(stream(&probe, "audio").unwrap()["codec_name"], "aac");
    let source_ms = asset["attributes"]["duration_ms"].as_f64().unwrap();
    let out_ms = num(&probe["format"]["duration"]) * 1000.0;
    assert!(
        (out_ms - source_ms).abs() < 200.0,
        "{out_ms} vs {source_ms}"
    );
    // Served over HTTP, and part of the asset now.
    assert_eq!(
        client().get(&url).send().unwrap().status(),
        200,
        "GET {url}"
    );
    let (_, asset) = admin_asset(&s, &content);
    assert!(
        asset["attributes"]["renditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["url"] == url.as_str()
                && r["codecs"][0].as_str().unwrap().starts_with("avc1")),
        "{asset}"
    );

    // The bookmark now points to the rendition, and so does its resume.
    let stored = bookmark_by_id(&s, &alice, bm["id"].as_str().unwrap());
    assert_eq!(stored["status"], "rendition:240p-h264", "{stored}");
    assert_eq!(stored["address"], url.as_str(), "{stored}");
    let (st, res) = resume(&s, &alice, bm["id"].as_str().unwrap(), &web);
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["url"], url.as_str(), "{res}");
    assert_eq!(res["status"], "ready", "{res}");
    assert_eq!(res["play_url"], format!("{url}#t=1.000"), "{res}");

    // Later hand-offs reuse it: one job was ever scheduled.
    let bm3 = accept(&content, 1400);
    assert_eq!(bm3["status"], "rendition:240p-h264", "{bm3}");
    assert_eq!(bm3["address"], url.as_str(), "{bm3}");
    assert!(bm3.get("transcode").is_none(), "{bm3}");
    let (st, v) = s.post(
        "/api/v1/transcodes",
        Some(&alice),
        json!({ "content_id": content, "terminal_id": web }),
    );
    assert_eq!((st, v["status"].as_str()), (200, Some("ready")), "{v}");
    assert_eq!(v["rendition"]["url"], url.as_str(), "{v}");
    assert_eq!(
        s.metric("sharecast_ondemand_transcodes_total{result=\"scheduled\"}"),
        1.0
    );
    assert_eq!(
        s.metric("sharecast_ondemand_transcodes_total{result=\"done\"}"),
        1.0
    );

    // Errors: unknown content; a transcode that fails says why.
    let (st, e) = s.post(
        "/api/v1/transcodes",
        Some(&alice),
        json!({ "content_id": "nosuchcontent", "terminal_id": web }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("unknown_content")),
        "{e}"
    );
    let (st, e) = s.get("/api/v1/transcodes/0000000000000000", Some(&alice));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("unknown_transcode")),
        "{e}"
    );
    let broken = s.push_fixture(H265_AAC);
    let source = s.session_file(&broken, "source.mp4");
    let good = std::fs::read(&source).unwrap();
    std::fs::write(&source, b"not an mp4 any more").unwrap();
    let bm = accept(&broken, 500);
    assert_eq!(bm["status"], "transcoding", "{bm}");
    let failed_id = bm["transcode"]["id"].as_str().unwrap().to_string();
    let job = wait_transcode(&s, &alice, &failed_id);
    assert_eq!(job["state"], "failed", "{job}");
    let reason = job["error"].as_str().unwrap();
    assert!(
        reason.contains("source.mp4: not an MP4") && !reason.contains("/sessions/"),
        "{job}"
    );
    assert_eq!(
        s.metric("sharecast_ondemand_transcodes_total{result=\"failed\"}"),
        1.0
    );
    source_only(&s, &broken);
    let bookmark = |id: &Value| bookmark_by_id(&s, &alice, id.as_str().unwrap());
    let stored = bookmark(&bm["id"]);
    assert_eq!(stored["status"], "transcode_failed", "{stored}");
    assert_eq!(stored["transcode"]["error"], job["error"], "{stored}");
    // Once the file is back, resuming the bookmark tries again, and the
    // bookmark follows the new job to its rendition.
    std::fs::write(&source, good).unwrap();
    let (st, res) = resume(&s, &alice, bm["id"].as_str().unwrap(), &web);
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["status"], "transcoding", "{res}");
    let retry_id = res["transcode"]["id"].as_str().unwrap();
    assert_ne!(retry_id, failed_id);
    assert_eq!(wait_transcode(&s, &alice, retry_id)["state"], "done");
    let stored = bookmark(&bm["id"]);
    assert_eq!(stored["status"], "rendition:240p-h264", "{stored}");
    assert!(
        stored["address"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/vod/{broken}/240p-h264.mp4")),
        "{stored}"
    );
    // The server is still fine.
    let (st, _) = admin_asset(&s, &content);
    assert_eq!(st, 200);
}

#[test]
fn a_vanished_live_viewer_gets_an_interruption_bookmark_it_can_resume() {
    let server = Server::start();
    let (push, sid, pt) = server.start_live(12);
    let alice = server.new_user("alice");
    let phone = server.new_terminal(&alice, "mobile");
    // A player identified by its user token posts heartbeats, then vanishes.
    let mut last = 0;
    for i in 0..5 {
        last = 800 + i * 400;
        let (st, v) = server.post(
            &format!("/api/v1/live/{sid}/heartbeat"),
            Some(&pt),
            json!({ "viewer_id": "p1", "position_ms": last, "user": alice }),
        );
        assert!((200..300).contains(&st), "{v}");
        std::thread::sleep(Duration::from_millis(400));
    }
    let bm = interruption_bookmark(&server, &alice, &sid, 20, last, "the viewer stopped at");
    let pos = bm["position_ms"].as_u64().unwrap();
    // Exactly one bookmark for the one interruption.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(bookmarks(&server, &alice).len(), 1);

    // After the recording is ready, resuming the bookmark plays the VOD there.
    let out = push.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = bm["id"].as_str().unwrap();
    let (st, res) = resume(&server, &alice, id, &phone);
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["position_ms"], pos);
    assert!(
        res["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/vod/{sid}/")),
        "{res}"
    );
    assert!(res["play_url"].as_str().unwrap().contains("#t="));
    assert_eq!(res["live"], false, "{res}");
    // Someone else cannot resume it.
    let bob = server.new_user("bob");
    let bob_tv = server.new_terminal(&bob, "tv");
    let (st, _) = resume(&server, &bob, id, &bob_tv);
    assert_eq!(st, 404);

    // The reverse-bookmark interface answers user id, result code and description.
    let (st, a) = reverse_bookmark(&server, &sid, 1000, "pt", &alice);
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["result_code"], 0);
    assert_eq!(a["description"], "saved");
    assert!(a["user_id"].is_string());
    for (body, code) in [
        (
            json!({ "content_id": sid, "position_ms": 1000, "playback_token": "pt", "user_token": "su_forged" }),
            2,
        ),
        (
            json!({ "content_id": "00aa", "position_ms": 1000, "playback_token": "pt", "user_token": alice }),
            4,
        ),
        (
            json!({ "content_id": sid, "position_ms": 99_000_000, "playback_token": "pt", "user_token": alice }),
            5,
        ),
    ] {
        let (_, a) = server.post("/api/v1/reverse-bookmark", None, body);
        assert_eq!(a["result_code"], code, "{a}");
    }
    assert_eq!(
        bookmarks(&server, &alice).len(),
        2,
        "bad requests stored nothing"
    );
}

/// ffmpeg plays `url` with `-ss` (a ranged PLAY, `Range: npt=<pos>-`): the
/// server answers a range starting at most one GOP (1 s) before the
/// position, and the pictures received are the recording's from there on,
/// including the one at the position.
fn rtsp_starts_at(server: &Server, sid: &str, url: &str, pos_ms: u64) {
    let file = server.session_file(sid, "source.mp4");
    let fps = 30u64; // the H.264 fixture
    let vod = frame_md5s(&file, "0:v:0");
    let ss = format!("{:.3}", pos_ms as f64 / 1000.0);
    let out = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-v",
            "trace",
            "-rtsp_transport",
            "tcp",
            "-timeout",
            "10000000",
            "-ss",
            &ss,
            "-i",
            url,
        ])
        .args(["-map", "0:v:0", "-frames:v", "20", "-f", "framemd5", "-"])
        .output()
        .expect("ffmpeg");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ffmpeg on {url}: {}",
        log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    );
    // The server's answer to the ranged PLAY (the last PLAY ffmpeg sent).
    let answered = log
        .lines()
        .rev()
        .find_map(|l| l.split("line='Range: npt=").nth(1))
        .and_then(|r| r.split('-').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no Range in the PLAY answers:\n{log}"));
    let answered_ms = (answered * 1000.0).round() as u64;
    assert!(
        answered_ms <= pos_ms && answered_ms + 1000 >= pos_ms,
        "asked to play from {pos_ms} ms, the server plays from {answered_ms} ms"
    );
    let got = parse_framemd5(&String::from_utf8_lossy(&out.stdout));
    assert!(!got.is_empty(), "no picture over RTSP");
    // Where each received picture is in the recording.
    let found: Vec<Option<usize>> = got
        .iter()
        .map(|m| vod.iter().position(|v| v == m))
        .collect();
    eprintln!(
        "RTSP pictures at recording indices {found:?} (of {})",
        vod.len()
    );
    let at: Vec<u64> = found
        .iter()
        .map(|i| {
            let i = i.unwrap_or_else(|| panic!("a picture not in the recording"));
            i as u64 * 1000 / fps
        })
        .collect();
    eprintln!("RTSP from {answered_ms} ms for {pos_ms} ms: pictures at {at:?} ms");
    assert!(
        at.iter().all(|t| *t + 1000 >= pos_ms),
        "pictures from more than a GOP before {pos_ms} ms: {at:?}"
    );
    assert!(
        at.iter().any(|t| t.abs_diff(pos_ms) <= 1000 / fps),
        "no picture at {pos_ms} ms: {at:?}"
    );
}

#[test]
fn a_recorded_bookmark_resumes_over_rtsp_with_a_ranged_play() {
    let server = Server::start();
    // 3 s of H.264 (1 s GOP, 30 fps) + AAC, one slice per picture, so
    // ffmpeg's decoding of the RTSP stream is bit-exact with the file's.
    let sid = server.push_fixture(H264_AAC);
    let alice = server.new_user("alice");
    let tv = server.new_terminal(&alice, "tv");
    let (st, a) = reverse_bookmark(&server, &sid, 1500, "pt", &alice);
    assert_eq!(st, 200, "{a}");
    let id = a["bookmark_id"].as_str().unwrap();
    let (st, res) = resume(&server, &alice, id, &tv);
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["live"], false, "{res}");
    let rtsp = res["rtsp"]["url"].as_str().expect("an RTSP resume URL");
    assert!(
        rtsp.starts_with("rtsp://") && rtsp.ends_with(&format!("/vod/{sid}")),
        "{res}"
    );
    assert_eq!(res["rtsp"]["range"], "npt=1.500-");
    rtsp_starts_at(&server, &sid, rtsp, 1500);
}

// ------------------------------------------------ a real browser, killed ---

/// `(pid, parent pid, process group)` of every process, from /proc.
fn processes() -> Vec<(u32, u32, u32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.first() == Some(&"Z") {
            continue; // dead, waiting for its parent to reap it
        }
        if let (Some(Ok(ppid)), Some(Ok(pgrp))) =
            (f.get(1).map(|v| v.parse()), f.get(2).map(|v| v.parse()))
        {
            out.push((pid, ppid, pgrp));
        }
    }
    out
}

/// The browser process and everything below it (or in its process group).
fn process_tree(root: u32) -> Vec<u32> {
    let procs = processes();
    let mut tree: Vec<u32> = procs
        .iter()
        .filter(|p| p.0 == root || p.2 == root)
        .map(|p| p.0)
        .collect();
    loop {
        let more: Vec<u32> = procs
            .iter()
            .filter(|p| tree.contains(&p.1) && !tree.contains(&p.0))
            .map(|p| p.0)
            .collect();
        if more.is_empty() {
            return tree;
        }
        tree.extend(more);
    }
}

/// One headless Chromium playing the watch page (web/share/live-viewer.mjs).
struct LiveViewer {
    node: std::process::Child,
    browser_pid: u32,
    lines: std::sync::mpsc::Receiver<Value>,
}

impl LiveViewer {
    fn start(mode: &str, url: &str) -> LiveViewer {
        use std::io::BufRead;
        let mut node = std::process::Command::new("node")
            .arg(web_share_script("live-viewer.mjs"))
            .args([mode, url])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("node");
        let stdout = node.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("live-viewer: {line}"),
                }
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the browser did not start");
        let browser_pid = first["browser_pid"].as_u64().expect("browser pid") as u32;
        LiveViewer {
            node,
            browser_pid,
            lines,
        }
    }

    fn next(&self, deadline: std::time::Instant) -> Value {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        self.lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no word from the browser page: {e}"))
    }

    /// SIGKILL every process of the browser at once, like a crash: no page
    /// unload, no last heartbeat. Returns how many processes died.
    fn kill_browser(&mut self) -> usize {
        let tree = process_tree(self.browser_pid);
        assert!(!tree.is_empty(), "the browser is not running");
        let st = std::process::Command::new("kill")
            .arg("-KILL")
            .args(tree.iter().map(|p| p.to_string()))
            .status()
            .unwrap();
        assert!(st.success());
        wait_until(
            "the browser's processes to die of SIGKILL",
            Duration::from_secs(5),
            || {
                let left = process_tree(self.browser_pid);
                (!left.iter().any(|p| tree.contains(p))).then_some(())
            },
        );
        tree.len()
    }
}

impl Drop for LiveViewer {
    fn drop(&mut self) {
        let tree = process_tree(self.browser_pid);
        if !tree.is_empty() {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .args(tree.iter().map(|p| p.to_string()))
                .status();
        }
        let _ = self.node.kill();
        let _ = self.node.wait();
    }
}

#[test]
fn a_killed_chromium_live_viewer_gets_a_bookmark_that_resumes_the_live_stream_there() {
    // Vanish after 2 s without a heartbeat; list 12 one-second segments
    // (and keep 4 more): room for a slow browser start before the resume.
    let server = Server::start_with_config(&format!(
        "[live]\nviewer_timeout_secs = 2\nhls_window_segments = 12\n\n[share]\nweb_dir = {:?}\n",
        web_dir().display().to_string()
    ));
    // A live camera (test pattern, 1 s keyframes) filming long enough for
    // the whole test; stopped at the end (the guard kills it).
    let (_push, sid, _push_out) =
        server.spawn_push(std::path::Path::new("testsrc"), &["--duration", "60"]);
    let alice = server.new_user("alice");
    let web = server.new_terminal(&alice, "web");
    let pt = server.playback_token(&sid);
    // Join once the playlist window no longer starts at the beginning, so
    // that the player's own timeline (which starts at the first listed
    // segment) differs from the content timeline by seconds.
    wait_until_ok("14 live segments", Duration::from_secs(30), || {
        let (_, st) = server.get(&format!("/live/{sid}/status.json?token={pt}"), None);
        if st["segments"].as_u64().unwrap_or(0) >= 14 {
            Ok(())
        } else {
            Err(st)
        }
    });

    // A browser plays the live stream on the watch page, as alice.
    let mut first = LiveViewer::start(
        "watch",
        &format!("{}/watch/{sid}?user={alice}&token={pt}", server.http),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let mut playing_from: Option<u64> = None;
    let (reported, reported_segment, current_time) = loop {
        let s = first.next(deadline);
        let pos = s["position_ms"].as_u64();
        if s["mode"] == "live" && s["state"] == "playing" {
            if let Some(p) = pos {
                let from = *playing_from.get_or_insert(p);
                if p >= from + 3000 {
                    break (
                        p,
                        s["segment"].as_u64().unwrap(),
                        s["current_time"].as_f64().unwrap(),
                    );
                }
            }
        }
        assert!(
            s["errors"].as_array().is_none_or(|e| e
                .iter()
                .all(|e| !e.as_str().unwrap_or("").contains("fatal"))),
            "{s}"
        );
    };
    // Crash it: the browser and all its processes, no goodbye.
    let killed = first.kill_browser();
    let killed_at = std::time::Instant::now();
    assert!(killed >= 2, "the browser ran as {killed} process(es)");

    // The missed heartbeats make a vanished event, the event a bookmark
    // through the reverse-bookmark interface.
    let bm = interruption_bookmark(
        &server,
        &alice,
        &sid,
        15,
        reported,
        "the page last reported",
    );
    eprintln!(
        "page reported {reported} ms (segment {reported_segment}, player time {current_time:.3} s); bookmark {} ms after the kill: {bm}",
        killed_at.elapsed().as_millis()
    );
    let pos = bm["position_ms"].as_u64().unwrap();

    // Resuming while the phone still films: the live stream, from the
    // segment holding the position. (A moment later, so that the live edge
    // is well ahead of the bookmark.)
    std::thread::sleep(Duration::from_millis(1500));
    let id = bm["id"].as_str().unwrap();
    let (st, res) = resume(&server, &alice, id, &web);
    assert_eq!(st, 200, "{res}");
    eprintln!("resume answer: {res}");
    assert_eq!(res["live"], true, "{res}");
    assert_eq!(res["position_ms"], pos);
    let start = &res["live_start"];
    assert_eq!(start["from"], "position", "{res}");
    assert_eq!(start["start_ms"], pos, "{res}");
    let seg_start = start["segment_start_ms"].as_u64().unwrap();
    assert!(seg_start <= pos && pos < seg_start + 2000, "{res}");
    // The page's content position agrees with the server's segments: the
    // segment holding the bookmark is the one the page last played (or the
    // one before, a heartbeat earlier).
    let seg = start["segment"].as_u64().unwrap();
    assert!(
        seg == reported_segment || seg + 1 == reported_segment,
        "bookmark in segment {seg}, the page last played segment {reported_segment}"
    );
    // The position is well behind the live edge, so a player that jumped
    // to the edge would fail the check below.
    let edge = start["edge_ms"].as_u64().unwrap();
    assert!(edge >= pos + 3500, "edge {edge} ms, bookmark {pos} ms");
    assert!(
        res["url"]
            .as_str()
            .unwrap()
            .contains(&format!("/live/{sid}/")),
        "{res}"
    );

    // Bad input: clear errors, nothing stored.
    let (st, e) = server.post(
        "/api/v1/bookmarks/00ff00ff00ff00ff/resume",
        Some(&alice),
        json!({ "terminal_id": web }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("unknown_bookmark")),
        "{e}"
    );
    let url = res["url"].as_str().unwrap();
    let past = url.replace(&format!("start_ms={pos}"), "start_ms=999999999");
    let media = |u: &str| {
        // The media playlist the multivariant one points at.
        let mv = client().get(u).send().unwrap();
        assert_eq!(mv.status(), 200);
        let text = mv.text().unwrap();
        let rel = text
            .lines()
            .find(|l| !l.starts_with('#') && !l.is_empty())
            .unwrap()
            .to_string();
        client()
            .get(format!("{}/{rel}", u.rsplit_once('/').unwrap().0))
            .send()
            .unwrap()
    };
    let r = media(&past);
    assert_eq!(r.status(), 416);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "past_end");
    let r = client()
        .get(url.replace(&format!("start_ms={pos}"), "start_ms=soon"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"]["code"], "bad_start");
    let text = media(url).text().unwrap();
    assert!(text.contains("#EXT-X-START:TIME-OFFSET="), "{text}");
    let (_, a) = reverse_bookmark(&server, &sid, 999_999_999u64, &pt, &alice);
    assert_eq!(a["result_code"], 5, "{a}");
    let list = bookmarks(&server, &alice);
    assert_eq!(list.len(), 1, "{list:?}");

    // A new browser opens the resume answer's page: playback starts at the
    // bookmark, in the segment the answer named, and keeps playing.
    let watch = format!("{}&user={alice}", res["watch_url"].as_str().unwrap());
    let second = LiveViewer::start("start", &watch);
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let out = loop {
        let v = second.next(deadline);
        if v["event"] == "started" {
            break v;
        }
    };
    eprintln!("resumed: {out}");
    assert!(out["error"].is_null(), "{out}");
    let started = &out["first"]["started"];
    assert_eq!(started["mode"], "live", "{out}");
    let at = started["position_ms"].as_u64().unwrap();
    assert!(
        at.abs_diff(pos) <= 1000,
        "resumed playback started at {at} ms, the bookmark is at {pos} ms (live edge {edge} ms)"
    );
    // In the segment the answer named, or in a neighbour when the bookmark
    // sat at a segment boundary and playback began a few ms after (next
    // segment) or before it (previous one, the player starts on a frame).
    // Right at a boundary (within 50 ms) either neighbour is the same
    // place: the playlist's PROGRAM-DATE-TIME is in whole ms, and the
    // player may still name the segment it has just left.
    let (played_seg, named_seg) = (
        started["segment"].as_u64().unwrap(),
        start["segment"].as_u64().unwrap(),
    );
    let at_boundary = at.abs_diff(pos) <= 50;
    assert!(
        played_seg == named_seg
            || (played_seg == named_seg + 1 && (at > pos || at_boundary))
            || (played_seg + 1 == named_seg && (at < pos || at_boundary)),
        "played segment {played_seg} at {at} ms, named segment {named_seg} for {pos} ms: {out}"
    );
    // Not a coincidence of timelines: the player's own clock is elsewhere.
    let player_ms = (started["currentTime"].as_f64().unwrap() * 1000.0) as u64;
    assert!(player_ms.abs_diff(at) > 1500, "{out}");
    let later = out["later"]["position_ms"].as_u64().unwrap();
    assert!(later > at, "playback did not go on: {out}");

    // A bookmark whose position has left the live stream (the first second,
    // long gone from the 16 segments kept) starts at the oldest segment
    // kept, and the answer says so.
    let (_, a) = reverse_bookmark(&server, &sid, 100, &pt, &alice);
    assert_eq!(a["result_code"], 0, "{a}");
    let (st, old) = resume(&server, &alice, a["bookmark_id"].as_str().unwrap(), &web);
    assert_eq!(st, 200, "{old}");
    let start = &old["live_start"];
    assert_eq!(start["from"], "oldest_segment", "{old}");
    assert_eq!(start["start_ms"], start["oldest_ms"], "{old}");
    assert!(start["start_ms"].as_u64().unwrap() > 1000, "{old}");
    let text = media(old["url"].as_str().unwrap()).text().unwrap();
    // (A segment may have left in between.)
    let first: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.parse().ok())
        .unwrap();
    let seg = start["segment"].as_u64().unwrap();
    assert!(
        (first == seg || first == seg + 1) && text.contains("#EXT-X-START:TIME-OFFSET=0.000,"),
        "{text}"
    );
}

/// Interruption bookmarks over RTSP: a viewer that names its user (`?user=` next to the playback
/// token) and drops its connection without TEARDOWN gets an interruption
/// bookmark at the position it had reached.
#[test]
fn a_vanished_rtsp_viewer_gets_an_interruption_bookmark() {
    let server = Server::start();
    let (mut push, sid, pt) = server.start_live(12);
    let alice = server.new_user("alice");
    let admin = server.admin_token();
    let mut viewer = spawn_rtsp_viewer(&format!(
        "rtsp://127.0.0.1:{}/live/{sid}?token={pt}&user={alice}",
        server.rtsp_port
    ));
    // Watch for a few seconds, then vanish (SIGKILL: no TEARDOWN).
    let watched_ms = wait_until_ok("an RTSP viewer 3 s in", Duration::from_secs(20), || {
        let (_, v) = server.get("/api/v1/admin/viewers", Some(&admin));
        let pos = v["viewers"].as_array().and_then(|a| {
            a.iter()
                .find(|v| v["protocol"] == "rtsp")
                .and_then(|v| v["position_ms"].as_u64())
        });
        pos.filter(|p| *p >= 3000).ok_or(v)
    });
    viewer.kill().unwrap();
    let _ = viewer.wait();
    interruption_bookmark(
        &server,
        &alice,
        &sid,
        20,
        watched_ms,
        "the RTSP viewer was at",
    );
    let _ = push.kill();
    let _ = push.wait();
}

#[test]
fn platform_b_fetches_and_transcodes_a_video_of_platform_a_its_terminal_cannot_play() {
    // A has no ladder: its H.265 recording has no H.264 rendition at all.
    let a = Server::start_with_config(&format!("[transcoder]\nrenditions = []\n{TRUST_LOOPBACK}"));
    let b = Server::start_with_config(&format!(
        "[resume]\ntranscode_short_side = 240\n{TRUST_LOOPBACK}"
    ));
    let content = a.push_fixture(H265_AAC);
    let asset = source_only(&a, &content);

    let alice_a = a.new_user("alice");
    let alice_b = b.new_user("alice");
    let web_b = b.new_terminal(&alice_b, "web");
    let handoff = |pos: u64| a.new_handoff(&alice_a, &content, pos);

    // Pull: a browser on B cannot play H.265 and A has nothing else, so B
    // fetches A's file; the bookmark says where to poll.
    let h = handoff(1000);
    let (st, bm) = b.post(
        "/api/v1/handoff/accept",
        Some(&alice_b),
        json!({ "from": h["pull_url"], "terminal_id": web_b, "name": "on the laptop" }),
    );
    assert_eq!(st, 200, "{bm}");
    assert_eq!(bm["status"], "fetching", "{bm}");
    let fetch_id = bm["fetch"]["id"].as_str().expect("a fetch").to_string();
    assert!(
        bm["fetch"]["poll_url"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/api/v1/fetches/{fetch_id}", b.http)),
        "{bm}"
    );
    assert_eq!(
        bm["fetch"]["address"],
        format!("{}/vod/{content}/source.mp4", a.http),
        "{bm}"
    );
    let local = bm["fetch"]["content_id"].as_str().unwrap().to_string();

    // Push of the same video: the same fetch (or, if it already ended,
    // the local copy).
    let h2 = handoff(1200);
    let id2 = h2["state"]["id"].as_str().unwrap();
    let (st, pushed) = a.handoff_push(id2, &alice_a, &b.http, &alice_b, &web_b);
    assert_eq!(st, 200, "{pushed}");
    let bm2 = bookmark_by_id(&b, &alice_b, pushed["bookmark_id"].as_str().unwrap());
    if bm2["status"] == "fetching" {
        assert_eq!(bm2["fetch"]["id"], fetch_id.as_str(), "{bm2}");
    } else {
        assert_eq!(bm2["content_id"], local.as_str(), "{bm2}");
    }

    let job = wait_fetch(&b, &alice_b, &fetch_id);
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(
        job["bytes"].as_u64().unwrap(),
        asset["attributes"]["size_bytes"].as_u64().unwrap(),
        "{job}"
    );
    // A's VOD route announces its size: the job says how far it got.
    assert_eq!(job["total_bytes"], job["bytes"], "{job}");
    assert_eq!(job["percent"], 100, "{job}");
    let (_, jobs) = b.get("/api/v1/admin/jobs", Some(&b.admin_token()));
    assert!(
        jobs["jobs"]["fetches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["id"] == fetch_id.as_str()),
        "{jobs}"
    );
    // The local copy is an asset of B, laid out like B's own recordings.
    let (st, local_asset) = admin_asset(&b, &local);
    assert_eq!(st, 200, "{local_asset}");
    assert_eq!(local_asset["state"], "ready", "{local_asset}");
    assert!(
        local_asset["attributes"]["codecs"][0]
            .as_str()
            .unwrap()
            .starts_with("hvc1"),
        "{local_asset}"
    );
    assert!(b.session_file(&local, "source.mp4").is_file());

    // Both bookmarks end up on B's H.264 rendition of the local copy.
    let bookmark = |id: &Value| bookmark_by_id(&b, &alice_b, id.as_str().unwrap());
    // A bookmark waiting for a fetch is updated just after the fetch ends
    // (a reader may see the fetch `failed` a moment before its bookmark).
    let settled = |id: &Value| {
        poll_until(Duration::from_secs(30), || {
            Some(bookmark(id)).filter(|stored| stored["status"] != "fetching")
        })
        .unwrap_or_else(|| bookmark(id))
    };
    let stored = wait_until_ok("the transcode", Duration::from_secs(180), || {
        let stored = bookmark(&bm["id"]);
        if stored["status"] != "fetching" && stored["status"] != "transcoding" {
            Ok(stored)
        } else {
            Err(stored)
        }
    });
    assert_eq!(stored["status"], "rendition:240p-h264", "{stored}");
    assert_eq!(stored["content_id"], local.as_str(), "{stored}");
    let url = stored["address"].as_str().unwrap().to_string();
    assert_eq!(url, format!("{}/vod/{local}/240p-h264.mp4", b.http));
    let stored2 = wait_until_ok("the pushed bookmark", Duration::from_secs(30), || {
        let stored2 = bookmark(&bm2["id"]);
        if stored2["status"] == "rendition:240p-h264" {
            Ok(stored2)
        } else {
            Err(stored2)
        }
    });
    assert_eq!(stored2["address"], url.as_str(), "{stored2}");
    let file = b.session_file(&local, "240p-h264.mp4");
    let probe = ffprobe(&file);
    let v = stream(&probe, "video").expect("a video stream");
    assert_eq!(v["codec_name"], "h264", "{probe}");
    assert_eq!(v["height"], 240, "{probe}");
    assert_eq!(stream(&probe, "audio").unwrap()["codec_name"], "aac");
    let resp = client().get(&url).send().unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    assert_eq!(
        resp.bytes().unwrap().len() as u64,
        std::fs::metadata(&file).unwrap().len()
    );

    // Resuming it on B plays B's H.264 file from the position.
    let (st, res) = resume(&b, &alice_b, bm["id"].as_str().unwrap(), &web_b);
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["status"], "ready", "{res}");
    assert_eq!(res["url"], url.as_str(), "{res}");
    assert_eq!(res["play_url"], format!("{url}#t=1.000"), "{res}");

    // A later hand-off of the same video fetches nothing more.
    let h3 = handoff(1400);
    let (st, bm3) = b.post(
        "/api/v1/handoff/accept",
        Some(&alice_b),
        json!({ "from": h3["pull_url"], "terminal_id": web_b }),
    );
    assert_eq!(st, 200, "{bm3}");
    assert_eq!(bm3["status"], "rendition:240p-h264", "{bm3}");
    assert_eq!(bm3["address"], url.as_str(), "{bm3}");
    let m = |k: &str| b.metric(&format!("sharecast_remote_fetches_total{{result=\"{k}\"}}"));
    assert_eq!((m("started"), m("done"), m("failed")), (1.0, 1.0, 0.0));

    // Bad input: an address that is not http(s) is refused, nothing stored.
    let n_before = bookmarks(&b, &alice_b).len();
    let receive = |address: &str| {
        let state = json!({
            "id": "x", "code": "X", "content_id": "elsewhere", "address": address,
            "position_ms": 500, "format": "mp4", "codecs": ["hvc1.1.6.L93.B0", "mp4a.40.2"],
            "frame_rate": 30.0, "platform": "http://elsewhere.invalid",
            "expires_unix_ms": 4_000_000_000_000i64,
        });
        b.post(
            "/api/v1/handoff/receive",
            None,
            json!({ "state": state, "user_token": alice_b, "terminal_id": web_b }),
        )
    };
    let (st, e) = receive("file:///etc/passwd");
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_address")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("http(s)"),
        "{e}"
    );
    assert_eq!(bookmarks(&b, &alice_b).len(), n_before);
    assert_eq!(m("refused"), 1.0);

    // Unreachable, and not a video: the fetch fails and says why; the
    // bookmark says so; no asset and no file are left behind.
    let health = format!("{}/api/v1/health", a.http);
    let bad = [
        (
            "http://127.0.0.1:9/vod/gone/source.mp4",
            "fetching http://127.0.0.1:9/vod/gone/source.mp4",
        ),
        (health.as_str(), "not a playable video"),
    ];
    for (i, (address, why)) in bad.iter().enumerate() {
        let (st, bm) = receive(address);
        assert_eq!(st, 200, "{bm}");
        assert_eq!(bm["status"], "fetching", "{bm}");
        let job = wait_fetch(&b, &alice_b, bm["fetch"]["id"].as_str().unwrap());
        assert_eq!(job["state"], "failed", "{job}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains(why), "{job}");
        if i == 0 {
            // A closed port and a silent host read the same: a fetch does
            // not tell open ports from closed ones.
            assert!(error.contains("could not be reached"), "{job}");
            assert!(!error.contains("refused"), "{job}");
        }
        assert!(!error.contains(b.data_dir().to_str().unwrap()), "{job}");
        let stored = settled(&bm["id"]);
        assert_eq!(stored["status"], "fetch_failed", "{stored}");
        assert_eq!(stored["fetch"]["error"], job["error"], "{stored}");
        let gone = job["content_id"].as_str().unwrap();
        let (st, _) = admin_asset(&b, gone);
        assert_eq!(st, 404, "{address}");
        assert!(!b.data_dir().join("sessions").join(gone).exists());
        // Resuming it tries the fetch again, and the bookmark follows.
        let (st, res) = resume(&b, &alice_b, bm["id"].as_str().unwrap(), &web_b);
        assert_eq!(st, 200, "{res}");
        // (It may have failed again already: the address refuses at once.)
        assert!(
            res["status"] == "fetching" || res["status"] == "fetch_failed",
            "{res}"
        );
        let retry = res["fetch"]["id"].as_str().unwrap();
        assert_ne!(retry, job["id"].as_str().unwrap(), "{res}");
        assert_eq!(wait_fetch(&b, &alice_b, retry)["state"], "failed");
        let stored = settled(&bm["id"]);
        assert_eq!(stored["status"], "fetch_failed", "{stored}");
        assert_eq!(stored["fetch"]["id"], retry, "{stored}");
        assert_eq!(m("failed"), (2 * i + 2) as f64);
    }
    assert_eq!(
        std::fs::read_dir(b.data_dir().join("fetching"))
            .unwrap()
            .count(),
        0
    );
    let (st, e) = b.get("/api/v1/fetches/0000000000000000", Some(&alice_b));
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("unknown_fetch")),
        "{e}"
    );
}
