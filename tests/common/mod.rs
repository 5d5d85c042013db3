//! Shared helpers of the end-to-end tests: start the real `sharecast` binary
//! with its own data directory and free ports, push clips, probe files.

#![allow(dead_code, unused_imports)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use sharecast_transcoder::testing::{
    fixture, AUDIO_ONLY, H264_AAC, H264_BFRAMES, H265_AAC, PORTRAIT, ROTATED_90, VP8_OPUS,
};

/// Servers started by this test binary, killed by the watchdog.
static SERVERS: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// A test binary that runs longer than `SHARECAST_TEST_WATCHDOG_S` seconds
/// (default 900) is stopped with a message naming the limit, and the servers
/// it started are killed: a hang fails the suite at once instead of running
/// into the CI time limit.
fn start_watchdog() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let limit = std::env::var("SHARECAST_TEST_WATCHDOG_S")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(900);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(limit));
            eprintln!("watchdog: this test binary ran for more than {limit} s; stopping it");
            for pid in SERVERS.lock().map(|p| p.clone()).unwrap_or_default() {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            std::process::exit(124);
        });
    });
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sharecast")
}

/// A running `sharecast serve`, killed on drop.
pub struct Server {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub ingest: String,
    pub http: String,
    pub rtsp_port: u16,
    pub fingerprint: String,
    pub token: String,
    pub extra: Vec<String>,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut s = Server {
            child: None,
            dir,
            ingest: String::new(),
            http: String::new(),
            rtsp_port: 0,
            fingerprint: String::new(),
            token: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn(None);
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Start the process (again), optionally on a fixed ingest address.
    pub fn spawn(&mut self, ingest_listen: Option<&str>) {
        let data = self.data_dir();
        let _ = std::fs::remove_file(data.join("server.json"));
        let open = |name: &str| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join(name))
                .expect("log file")
        };
        let (log, out) = (open("server.log"), open("server.out"));
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .args(["--ingest-listen", ingest_listen.unwrap_or("127.0.0.1:0")])
            .args(["--http-listen", "127.0.0.1:0", "--rtsp-port", "0"])
            .args(&self.extra)
            .env("RUST_LOG", "info,sharecast=debug")
            .stdout(out)
            .stderr(log);
        start_watchdog();
        let child = cmd.spawn().expect("spawning sharecast serve");
        if let Ok(mut pids) = SERVERS.lock() {
            pids.push(child.id());
        }
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(data.join("server.json")) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    self.ingest = v["ingest"].as_str().unwrap().to_string();
                    self.http = v["http"].as_str().unwrap().to_string();
                    self.rtsp_port = v["rtsp_port"].as_u64().unwrap() as u16;
                    self.fingerprint = v["fingerprint"].as_str().unwrap().to_string();
                    // The demo device is made (and its token printed) at the
                    // first start only; a restart keeps the token we have.
                    if let Some(t) = self.stdout().lines().rev().find_map(|l| {
                        l.strip_prefix("Demo device token (shown once; stored hashed): ")
                    }) {
                        self.token = t.trim().to_string();
                    }
                    return;
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "sharecast serve exited early ({status}); log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "server did not start; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the server printed on its standard output (start-up banner).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILL the server.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn push_cmd(&self, input: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("push")
            .args([
                "--server",
                &self.ingest,
                "--token",
                &self.token,
                "--pin",
                &self.fingerprint,
            ])
            .arg("--input")
            .arg(input)
            .args(extra)
            .env("RUST_LOG", "warn");
        cmd
    }

    pub fn push(&self, input: &Path, extra: &[&str]) -> PushResult {
        let out = self.push_cmd(input, extra).output().expect("running push");
        PushResult::from(out)
    }

    /// A playback token for a live session, issued to the demo device that
    /// records it (`POST /api/v1/live/{id}/playback-tokens`).
    pub fn playback_token(&self, session: &str) -> String {
        let r = reqwest::blocking::Client::new()
            .post(format!(
                "{}/api/v1/live/{session}/playback-tokens",
                self.http
            ))
            .bearer_auth(&self.token)
            .send()
            .expect("HTTP request");
        assert_eq!(r.status().as_u16(), 201, "playback token for {session}");
        let v: serde_json::Value = r.json().expect("token JSON");
        v["token"].as_str().expect("token").to_string()
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .get(format!("{}{}", self.http, path))
            .send()
            .expect("HTTP request")
    }

    /// GET with `Authorization: Bearer token`.
    pub fn get_as(&self, path: &str, token: &str) -> reqwest::blocking::Response {
        reqwest::blocking::Client::new()
            .get(format!("{}{}", self.http, path))
            .bearer_auth(token)
            .send()
            .expect("HTTP request")
    }

    /// The admin token (generated at first start into the data directory).
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_string()
    }

    /// The key the SMS gateway's callbacks carry (generated at first start).
    pub fn sms_key(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("sms-inbound-key"))
            .expect("sms-inbound-key")
            .trim()
            .to_string()
    }

    /// `/metrics`, as a scraper with the admin token reads it.
    pub fn metrics(&self) -> String {
        let r = self.get_as("/metrics", &self.admin_token());
        assert_eq!(r.status().as_u16(), 200, "/metrics");
        r.text().expect("metrics text")
    }

    /// An asset as its device sees it (`GET /api/v1/assets/{id}`).
    pub fn asset(&self, id: &str) -> serde_json::Value {
        let r = self.get_as(&format!("/api/v1/assets/{id}"), &self.token);
        assert_eq!(r.status().as_u16(), 200, "asset {id}");
        r.json().expect("asset JSON")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

pub struct PushResult {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for PushResult {
    fn from(o: Output) -> Self {
        PushResult {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).to_string(),
            stderr: String::from_utf8_lossy(&o.stderr).to_string(),
        }
    }
}

impl PushResult {
    pub fn line(&self, key: &str) -> Option<String> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")).map(|s| s.to_string()))
    }

    pub fn attributes(&self) -> serde_json::Value {
        let a = self.line("attributes").unwrap_or_else(|| {
            panic!(
                "no attributes in push output:\n{}\n{}",
                self.stdout, self.stderr
            )
        });
        serde_json::from_str(&a).expect("attributes JSON")
    }

    pub fn session(&self) -> String {
        self.line("session").expect("session id")
    }
}

/// Start a push and return the child plus the session id once printed.
/// The caller waits for the child; a panic here ends the test process.
#[allow(clippy::zombie_processes)]
pub fn spawn_push(mut cmd: Command) -> (Child, String, BufReader<std::process::ChildStdout>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning push");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).expect("reading push output");
        if n == 0 {
            let status = child.wait();
            panic!("push ended ({status:?}) before printing its session");
        }
        if let Some(id) = line.trim().strip_prefix("session ") {
            return (child, id.to_string(), out);
        }
    }
}

/// ffprobe a file: streams (with counted frames) and format.
pub fn ffprobe(path: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("running ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("ffprobe JSON")
}

pub fn stream<'a>(probe: &'a serde_json::Value, kind: &str) -> Option<&'a serde_json::Value> {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
}

pub fn num(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::String(s) => {
            if let Some((a, b)) = s.split_once('/') {
                a.parse::<f64>().unwrap() / b.parse::<f64>().unwrap()
            } else {
                s.parse().unwrap()
            }
        }
        serde_json::Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("not a number: {other}"),
    }
}

/// The display rotation ffprobe reads from a stream's matrix, in
/// Sharecast's clockwise degrees (ffprobe's `rotation` side data is
/// counter-clockwise: -90 for a quarter turn clockwise); 0 without a
/// display matrix.
pub fn ffprobe_rotation(stream: &serde_json::Value) -> u64 {
    let ccw = stream["side_data_list"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["side_data_type"] == "Display Matrix")
        .map(|d| {
            d["rotation"]
                .as_i64()
                .expect("rotation in the display matrix")
        })
        .unwrap_or(0);
    u64::from(sharecast_formats::attributes::rotation_from_ffprobe(ccw))
}

/// The frame ffmpeg decodes at `t` seconds, as shown (ffmpeg applies a
/// display rotation).
pub fn ffmpeg_frame(file: &Path, t: f64) -> image::DynamicImage {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.png");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-ss", &format!("{t:.3}"), "-frames:v", "1"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    image::open(&out).unwrap()
}
