//! Places in the repository the tests use (web pages and their npm
//! packages, the screenshots directory) and the headless-Chromium page
//! check of `web/share/check-page.mjs`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository's root (the workspace directory).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ sits in the repository root")
        .to_path_buf()
}

/// The repository's `web/` (pages, scripts, npm packages).
pub fn web_dir() -> PathBuf {
    repo_root().join("web")
}

/// `test-artifacts/` (gitignored), created if missing: where screenshots go.
pub fn artifacts_dir() -> PathBuf {
    let d = repo_root().join("test-artifacts");
    std::fs::create_dir_all(&d).expect("test-artifacts dir");
    d
}

/// A driver script of `web/share/` (headless Chromium through
/// playwright-core), after `npm ci` there if its packages are missing. The
/// lock file pins playwright-core; it drives the system Chromium and
/// downloads no browser.
pub fn web_share_script(name: &str) -> PathBuf {
    let dir = web_dir().join("share");
    if !dir.join("node_modules/playwright-core").is_dir() {
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .expect("npm (install nodejs)");
        assert!(st.success(), "npm ci in web/share failed");
    }
    dir.join(name)
}

/// Opens a page in headless Chromium with `web/share/check-page.mjs`,
/// keeps a screenshot as `test-artifacts/<screenshot>`, and returns the
/// script's report (its last line of output, JSON: status, Open Graph
/// tags, the video's state at two moments).
pub fn check_page(url: &str, screenshot: &str) -> Value {
    let script = web_share_script("check-page.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(url)
        .arg(artifacts_dir().join(screenshot))
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let _ = std::io::stderr().write_all(&out.stderr);
    assert!(out.status.success(), "check-page failed: {stdout}");
    let r: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("check-page output {stdout}: {e}"));
    eprintln!("{r:#}");
    r
}
