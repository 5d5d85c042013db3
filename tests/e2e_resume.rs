//! Resume everywhere (SEEDS S1, S0): history across a user's terminals with
//! resume tokens and purging, and hand-off of suspend-state information
//! between two Sharecast instances (push, pull, redirect, short code).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn post(s: &Server, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = client().post(format!("{}{path}", s.http)).json(&body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn get(s: &Server, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut r = client().get(format!("{}{path}", s.http));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

fn user(s: &Server, name: &str) -> String {
    let (st, v) = post(s, "/api/v1/users", None, json!({ "name": name }));
    assert_eq!(st, 200, "{v}");
    v["user_token"].as_str().unwrap().to_string()
}

fn terminal(s: &Server, token: &str, kind: &str) -> String {
    let (st, v) = post(s, "/api/v1/terminals", Some(token), json!({ "type": kind }));
    assert_eq!(st, 200, "{v}");
    v["terminal_id"].as_str().unwrap().to_string()
}

fn config(dir: &std::path::Path, body: &str) -> String {
    let p = dir.join("resume.toml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn history_follows_the_user_across_terminals_and_ages_out() {
    let cfg_dir = tempfile::tempdir().unwrap();
    let cfg = config(cfg_dir.path(), "[resume]\nhistory_max_age_secs = 4\n");
    let server = Server::start_with(&["--config", &cfg]);
    let r = server.push(&fixture(H264_AAC).unwrap(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let content = r.session();

    let alice = user(&server, "alice");
    let tv = terminal(&server, &alice, "tv");
    let phone = terminal(&server, &alice, "mobile");

    // Stop on the TV at 1.5 s.
    let (st, stop) = post(
        &server,
        "/api/v1/history",
        Some(&alice),
        json!({ "terminal_id": tv, "content_id": content, "position_ms": 1500 }),
    );
    assert_eq!(st, 200, "{stop}");
    let resume_token = stop["resume_token"].as_str().unwrap().to_string();

    // The phone sees the TV's history with a link it can play.
    let (st, cat) = get(
        &server,
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
    let (st, res) = post(
        &server,
        "/api/v1/resume",
        Some(&alice),
        json!({ "resume_token": resume_token, "terminal_id": phone }),
    );
    assert_eq!(st, 200, "{res}");
    assert_eq!(res["position_ms"], 1500);
    assert!(res["play_url"].as_str().unwrap().ends_with("#t=1.500"));

    // Another user sees nothing and cannot use the token.
    let bob = user(&server, "bob");
    let bob_phone = terminal(&server, &bob, "mobile");
    let (_, hist) = get(&server, "/api/v1/history", Some(&bob));
    assert_eq!(hist["history"].as_array().unwrap().len(), 0);
    let (st, e) = post(
        &server,
        "/api/v1/resume",
        Some(&bob),
        json!({ "resume_token": resume_token, "terminal_id": bob_phone }),
    );
    assert_eq!(st, 403, "{e}");
    assert_eq!(e["error"]["code"], "bad_resume_token");
    // Bob cannot use Alice's terminal either.
    let (st, _) = get(
        &server,
        &format!("/api/v1/catalogue?terminal_id={phone}"),
        Some(&bob),
    );
    assert_eq!(st, 404);

    // Bad input: clear errors, nothing stored.
    let (st, e) = post(
        &server,
        "/api/v1/history",
        Some(&alice),
        json!({ "terminal_id": tv, "content_id": content, "position_ms": 999_999 }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("position_past_end"))
    );
    let (st, e) = post(
        &server,
        "/api/v1/history",
        Some(&alice),
        json!({ "terminal_id": tv, "content_id": "00ff", "position_ms": 1 }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (404, Some("unknown_content"))
    );
    let (st, _) = post(
        &server,
        "/api/v1/history",
        Some("su_forged"),
        json!({ "terminal_id": tv, "content_id": content, "position_ms": 1 }),
    );
    assert_eq!(st, 401);
    let (st, e) = post(
        &server,
        "/api/v1/terminals",
        Some(&alice),
        json!({ "type": "toaster" }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("bad_terminal_type"))
    );
    let (_, hist) = get(&server, "/api/v1/history", Some(&alice));
    assert_eq!(hist["history"].as_array().unwrap().len(), 1);

    // Aged records are purged (history_max_age_secs = 4 here), tokens too.
    std::thread::sleep(Duration::from_secs(5));
    let (_, hist) = get(&server, "/api/v1/history", Some(&alice));
    assert_eq!(hist["history"].as_array().unwrap().len(), 0, "{hist}");
    let (st, _) = post(
        &server,
        "/api/v1/resume",
        Some(&alice),
        json!({ "resume_token": resume_token, "terminal_id": phone }),
    );
    assert_eq!(st, 403);
}

#[test]
fn handoff_between_two_platforms_by_push_pull_redirect_and_code() {
    let a = Server::start();
    let b = Server::start();
    let r = a.push(&fixture(H265_AAC).unwrap(), &[]);
    assert!(r.ok, "{}", r.stderr);
    let content = r.session();
    // Wait for A's H.264 compatibility rendition.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, asset) = get(&a, &format!("/api/v1/assets/{content}"), None);
        if asset["attributes"]["renditions"]
            .as_array()
            .map_or(0, |r| r.len())
            >= 2
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no 480p rendition: {asset}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let alice_a = user(&a, "alice");
    let alice_b = user(&b, "alice");
    let web_b = terminal(&b, &alice_b, "web");
    let tv_b = terminal(&b, &alice_b, "tv");

    let handoff = |pos: u64| {
        let (st, v) = post(
            &a,
            "/api/v1/handoff",
            Some(&alice_a),
            json!({ "content_id": content, "position_ms": pos }),
        );
        assert_eq!(st, 200, "{v}");
        v
    };
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
    let (st, bm) = post(
        &b,
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
    let resp = client()
        .post(format!("{}/api/v1/handoff/{id}/push", a.http))
        .bearer_auth(&alice_a)
        .header("X-Target-User-Token", &alice_b)
        .header("X-Target-Terminal", &web_b)
        .json(&json!({ "target": b.http }))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    check(&v["answer"], 1200, "web");

    // Redirect: the terminal follows A's redirect to B.
    let h = handoff(1400);
    let id = h["state"]["id"].as_str().unwrap();
    let resp = client()
        .get(format!(
            "{}/api/v1/handoff/{id}/redirect?target={}",
            a.http, b.http
        ))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{}/api/v1/handoff/accept?from=", b.http)));
    let resp = client()
        .get(format!("{location}&terminal_id={web_b}"))
        .bearer_auth(&alice_b)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().unwrap();
    check(&v["bookmark"], 1400, "web");

    // Short code typed by the user on B.
    let h = handoff(1600);
    let (st, bm) = post(
        &b,
        "/api/v1/handoff/accept",
        Some(&alice_b),
        json!({ "platform": a.http, "code": h["code"], "terminal_id": tv_b }),
    );
    assert_eq!(st, 200, "{bm}");
    check(&bm, 1600, "tv");

    let (_, list) = get(&b, "/api/v1/bookmarks", Some(&alice_b));
    assert_eq!(list["bookmarks"].as_array().unwrap().len(), 4);

    // Forged and unknown links, positions past the end: clear errors, nothing stored.
    let h = handoff(100);
    let forged = h["pull_url"].as_str().unwrap().replace("sig=", "sig=00");
    let (st, e) = post(
        &b,
        "/api/v1/handoff/accept",
        Some(&alice_b),
        json!({ "from": forged, "terminal_id": tv_b }),
    );
    assert_eq!(st, 502, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("403"),
        "{e}"
    );
    let (st, _) = get(
        &a,
        &format!(
            "/api/v1/handoff/{}?exp=1&sig=00",
            h["state"]["id"].as_str().unwrap()
        ),
        None,
    );
    assert_eq!(st, 403);
    let (st, _) = get(&a, "/api/v1/handoff/by-code/ZZZZZZZZ", None);
    assert_eq!(st, 404);
    let (st, e) = post(
        &a,
        "/api/v1/handoff",
        Some(&alice_a),
        json!({ "content_id": content, "position_ms": 99_000_000 }),
    );
    assert_eq!(
        (st, e["error"]["code"].as_str()),
        (400, Some("position_past_end"))
    );
    let (_, list) = get(&b, "/api/v1/bookmarks", Some(&alice_b));
    assert_eq!(list["bookmarks"].as_array().unwrap().len(), 4);
}

#[test]
fn a_vanished_live_viewer_gets_an_interruption_bookmark_it_can_resume() {
    let server = Server::start();
    let (push, sid, _out) =
        spawn_push(server.push_cmd(std::path::Path::new("testsrc"), &["--duration", "12"]));
    let alice = user(&server, "alice");
    let phone = terminal(&server, &alice, "mobile");
    let http = client();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let pt = server.playback_token(&sid);
    while server
        .get(&format!("/live/{sid}/status.json?token={pt}"))
        .status()
        == 404
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the HLS stream never appeared"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A player identified by its user token posts heartbeats, then vanishes.
    let mut last = 0;
    for i in 0..5 {
        last = 800 + i * 400;
        let r = http
            .post(format!("{}/api/v1/live/{sid}/heartbeat", server.http))
            .bearer_auth(&pt)
            .json(&json!({ "viewer_id": "p1", "position_ms": last, "user": alice }))
            .send()
            .unwrap();
        assert!(r.status().is_success());
        std::thread::sleep(Duration::from_millis(400));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let bm = loop {
        let (_, list) = get(&server, "/api/v1/bookmarks", Some(&alice));
        if let Some(b) = list["bookmarks"]
            .as_array()
            .and_then(|a| a.first())
            .cloned()
        {
            break b;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no interruption bookmark"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(bm["source"], "interruption");
    assert_eq!(bm["content_id"], sid.as_str());
    let pos = bm["position_ms"].as_u64().unwrap();
    assert!(
        pos.abs_diff(last) <= 1000,
        "bookmark at {pos}, viewer stopped at {last}"
    );
    // Exactly one bookmark for the one interruption.
    std::thread::sleep(Duration::from_secs(2));
    let (_, list) = get(&server, "/api/v1/bookmarks", Some(&alice));
    assert_eq!(list["bookmarks"].as_array().unwrap().len(), 1);

    // After the recording is ready, resuming the bookmark plays the VOD there.
    let out = push.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = bm["id"].as_str().unwrap();
    let (st, res) = post(
        &server,
        &format!("/api/v1/bookmarks/{id}/resume"),
        Some(&alice),
        json!({ "terminal_id": phone }),
    );
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
    // Someone else cannot resume it.
    let bob = user(&server, "bob");
    let bob_tv = terminal(&server, &bob, "tv");
    let (st, _) = post(
        &server,
        &format!("/api/v1/bookmarks/{id}/resume"),
        Some(&bob),
        json!({ "terminal_id": bob_tv }),
    );
    assert_eq!(st, 404);

    // The reverse-bookmark interface answers user id, result code and description.
    let (st, a) = post(
        &server,
        "/api/v1/reverse-bookmark",
        None,
        json!({ "content_id": sid, "position_ms": 1000, "playback_token": "pt", "user_token": alice }),
    );
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
        let (_, a) = post(&server, "/api/v1/reverse-bookmark", None, body);
        assert_eq!(a["result_code"], code, "{a}");
    }
    let (_, list) = get(&server, "/api/v1/bookmarks", Some(&alice));
    assert_eq!(
        list["bookmarks"].as_array().unwrap().len(),
        2,
        "bad requests stored nothing"
    );
}
