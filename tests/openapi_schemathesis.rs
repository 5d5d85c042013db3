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
//! token for the rest.

use std::path::PathBuf;
use std::process::Command;

use sharecast_testkit::*;

/// Device routes (a device token).
const DEVICE: &str = "^/api/v1/(assets|sessions|publishing-keys|shares|subscriptions|stills|live)";
/// User routes (a user token).
const USER: &str =
    "^/api/v1/(users|terminals|history|catalogue|resume|bookmarks|reverse-bookmark|handoff|transcodes|fetches)";

fn schemathesis() -> PathBuf {
    let bin = repo_root().join("target/schemathesis-venv/bin/schemathesis");
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
            "--workers",
            "2",
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
