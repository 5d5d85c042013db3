//! `GET /api/v1/openapi.json` against the running server, by Schemathesis
//! (from PyPI; `scripts/setup.sh` installs it into
//! `target/schemathesis-venv`): it generates requests for every operation
//! of the description, valid and invalid, and checks every answer against
//! it. No request may get a 5xx, every status and content type must be one
//! the description lists, a route with a rule must refuse a request
//! without its credential, and so on (every check but
//! `positive_data_acceptance`: request bodies are described as JSON
//! objects, not field by field, so a generated "valid" body is not one the
//! handler accepts).
//!
//! Three passes, each with the credential its routes take: the device's
//! token for device routes, a user's token for user routes, the admin
//! token for the rest. Schemathesis sees the server's state empty, so a
//! second test checks the answers built from it (sessions, streams,
//! viewers, …) against their schemas during a live session with viewers.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sharecast_testkit::*;

/// Device routes (a device token).
const DEVICE: &str = "^/api/v1/(assets|sessions|publishing-keys|shares|subscriptions|stills|live)";
/// User routes (a user token).
const USER: &str =
    "^/api/v1/(users|terminals|history|catalogue|resume|bookmarks|reverse-bookmark|handoff|transcodes|fetches)";

fn schemathesis() -> PathBuf {
    venv_bin("schemathesis")
}

/// A program of the venv Schemathesis is installed in.
fn venv_bin(name: &str) -> PathBuf {
    let bin = repo_root().join("target/schemathesis-venv/bin").join(name);
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup.sh (it installs Schemathesis from PyPI)",
        bin.display()
    );
    bin
}

/// One Schemathesis run over the operations `filter` selects, with
/// `token`; panics with its report when a check fails.
fn run(server: &Server, token: &str, filter: &[&str], name: &str) {
    let out = Command::new(schemathesis())
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", server.http))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
        ])
        .args([
            "--phases",
            "coverage,fuzzing",
            "--max-examples",
            "5",
            // One worker: with two, Schemathesis once stopped on a
            // Python error of its own ("AST constructor recursion depth
            // mismatch", CPython's AST validator used from two threads),
            // which has nothing to do with the server.
            "--workers",
            "1",
        ])
        .args([
            "--seed",
            "20261207",
            "--request-timeout",
            "20",
            "--no-color",
        ])
        .args(filter)
        .output()
        .expect("running schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(
        artifacts_dir().join(format!("schemathesis-{name}.txt")),
        &report,
    )
    .unwrap();
    let summary: String = report
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    eprintln!("schemathesis ({name}):\n{summary}");
    assert!(
        out.status.success(),
        "schemathesis ({name}) found failures:\n{report}"
    );
    assert!(
        report.contains(" passed"),
        "schemathesis ({name}) ran no test:\n{report}"
    );
}

#[test]
fn every_answer_matches_the_openapi_description_and_none_is_a_5xx() {
    let server = Server::start();
    // The description is served, and names every route of the table.
    let (st, doc) = server.get("/api/v1/openapi.json", None);
    assert_eq!(st, 200, "{doc}");
    let (_, table) = server.get("/api/v1/admin/routes", Some(&server.admin_token()));
    for route in table["routes"].as_array().unwrap() {
        let (path, method) = (
            route["path"].as_str().unwrap(),
            route["method"].as_str().unwrap(),
        );
        assert!(
            doc["paths"][path][method.to_lowercase()].is_object(),
            "{method} {path} is not in the description"
        );
    }
    let user = server.new_user("schemathesis");
    run(
        &server,
        &server.token,
        &["--include-path-regex", DEVICE],
        "device",
    );
    run(&server, &user, &["--include-path-regex", USER], "user");
    // Everything else (one regex: a second --exclude-path-regex replaces
    // the first).
    let others = format!("({DEVICE})|({USER})");
    run(
        &server,
        &server.admin_token(),
        &["--exclude-path-regex", &others],
        "admin",
    );
    // The server is still well.
    let (st, _) = server.get("/api/v1/health", None);
    assert_eq!(st, 200);
}

/// Checks each answer (method, route as in the description, JSON) against
/// the schema the description gives its success answer, with the JSON
/// Schema validator Schemathesis uses (`jsonschema_rs`, same venv).
fn assert_match_description(doc: &Value, answers: &[(&str, &str, Value)]) {
    const CHECK: &str = r#"
import json, sys, jsonschema_rs
given = json.load(sys.stdin)
doc, failed = given["doc"], 0
for method, route, answer in given["answers"]:
    ok = doc["paths"][route][method]["responses"]["2XX"]["content"]["application/json"]
    schema = dict(ok["schema"], components=doc["components"])
    for e in jsonschema_rs.validator_for(schema).iter_errors(answer):
        failed += 1
        print(f"{method} {route}: {e}")
    print(f"{method} {route}: checked")
sys.exit(1 if failed else 0)
"#;
    let answers: Vec<Value> = answers.iter().map(|(m, r, v)| json!([m, r, v])).collect();
    let mut child = Command::new(venv_bin("python"))
        .args(["-c", CHECK])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running the venv's python");
    let input = json!({ "doc": doc, "answers": answers }).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}");
    assert!(out.status.success(), "answers not as described:\n{report}");
    assert_eq!(report.matches(": checked").count(), answers.len());
}

/// The answers the server builds from its state (sessions, streams,
/// viewers, viewer events, jobs, history, the admin's actions, heartbeats)
/// match their schemas while they have something in them: during a live
/// session with viewers, one of them gone and one kicked. (Schemathesis
/// sees them empty.)
#[test]
fn state_built_answers_match_their_schemas_during_a_live_session() {
    let server = Server::start();
    let admin = server.admin_token();
    let (_push, sid, pt) = server.start_live(20);
    let (_, doc) = server.get("/api/v1/openapi.json", None);
    let heartbeat = format!("/api/v1/live/{sid}/heartbeat");
    let mut answers = Vec::new();
    for (viewer, user) in [
        ("v-stay", "su_0123456789abcdef"),
        ("v-left", "bob"),
        ("v-kick", "eve"),
    ] {
        let body =
            json!({"viewer_id": viewer, "position_ms": 1000, "user": user, "state": "playing"});
        let (st, v) = server.post(&heartbeat, Some(&pt), body);
        assert_eq!(st, 200, "{v}");
        answers.push(("post", "/api/v1/live/{id}/heartbeat", v));
    }
    let admin_get = |path: &str| {
        let (st, v) = server.get(path, Some(&admin));
        assert_eq!(st, 200, "{path}: {v}");
        v
    };
    let viewers = admin_get("/api/v1/admin/viewers");
    assert_eq!(viewers["viewers"].as_array().unwrap().len(), 3, "{viewers}");
    // The admin sees a user token only by its ends.
    assert!(viewers.to_string().contains("\"su_…cdef\""), "{viewers}");
    answers.push(("get", "/api/v1/admin/{what}", viewers));
    let leave = json!({"viewer_id": "v-left", "position_ms": 1500, "leaving": true});
    assert_eq!(server.post(&heartbeat, Some(&pt), leave).0, 200);
    let (st, kicked) = server.post_empty("/api/v1/admin/viewers/v-kick/kick", Some(&admin));
    assert_eq!((st, &kicked), (200, &json!({"kicked": "v-kick"})));
    answers.push(("post", "/api/v1/admin/viewers/{id}/kick", kicked));
    // The charts have a point of the session (one a second).
    let history = wait_until("a point of the session", Duration::from_secs(15), || {
        let h = admin_get("/api/v1/admin/history");
        h["history"]["sessions"][&sid]
            .as_array()
            .is_some_and(|p| !p.is_empty())
            .then_some(h)
    });
    answers.push(("get", "/api/v1/admin/{what}", history));
    let (st, own) = server.get("/api/v1/sessions", Some(&server.token));
    assert_eq!(st, 200, "{own}");
    assert_eq!(own["sessions"][0]["id"], sid.as_str(), "{own}");
    answers.push(("get", "/api/v1/sessions", own));
    for what in [
        "sessions",
        "streams",
        "viewer-events",
        "errors",
        "jobs",
        "assets",
    ] {
        let list = admin_get(&format!("/api/v1/admin/{what}"));
        answers.push(("get", "/api/v1/admin/{what}", list));
    }
    let overview = admin_get("/api/v1/admin/overview");
    assert!(
        overview["streams"][0]["watch_path"].is_string(),
        "{overview}"
    );
    // (v-stay may have vanished by now: heartbeats stopped.)
    let events: Vec<(&str, &str)> = overview["viewer_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["viewer_id"].as_str()?, e["event"].as_str()?)))
        .filter(|(viewer, _)| *viewer != "v-stay")
        .collect();
    assert_eq!(
        events,
        [("v-left", "left"), ("v-kick", "kicked")],
        "{overview}"
    );
    answers.push(("get", "/api/v1/admin/overview", overview));
    answers.push((
        "get",
        "/api/v1/admin/routes",
        admin_get("/api/v1/admin/routes"),
    ));
    let (st, ended) = server.post_empty(&format!("/api/v1/admin/sessions/{sid}/end"), Some(&admin));
    assert_eq!((st, &ended), (200, &json!({"ended": sid})));
    answers.push(("post", "/api/v1/admin/sessions/{id}/end", ended));
    assert_match_description(&doc, &answers);
    // An answer that is not as described is caught.
    let wrong = json!({"sessions": [{"id": 5}]});
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert_match_description(&doc, &[("get", "/api/v1/sessions", wrong)])
    }));
    assert!(
        caught.is_err(),
        "a session with a numeric id passed the check"
    );
}
