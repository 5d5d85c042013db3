//! The real `sharecast serve`, started by a test: its own data directory,
//! free ports, its addresses read from `server.json`, its log kept.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Mutex, Once, OnceLock};
use std::time::Duration;

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::Method;
use serde_json::{json, Value};

use crate::http::{answer, client, metric_value, send};
use crate::process::{run_ok, spawn_push, ChildGuard};
use crate::wait::{wait_until, wait_until_ok};

/// The `sharecast` binary under test: `$SHARECAST_BIN`, else `sharecast` in
/// the Cargo profile directory of the running test executable (see the
/// crate documentation).
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("SHARECAST_BIN") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let mut dir = exe.parent().expect("the test executable's directory");
        if dir.ends_with("deps") {
            dir = dir.parent().expect("the profile directory");
        }
        let bin = dir.join(format!("sharecast{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.is_file(),
            "no sharecast binary at {} (run the tests of the root package, which \
             build it, or set SHARECAST_BIN)",
            bin.display()
        );
        bin
    })
}

/// Servers started by this test binary, killed by the watchdog.
static SERVERS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A test binary that runs longer than `SHARECAST_TEST_WATCHDOG_S` seconds
/// (default 900) is stopped with a message naming the limit, and the servers
/// it started are killed: a hang fails the suite at once instead of running
/// into the CI time limit.
fn start_watchdog() {
    static ONCE: Once = Once::new();
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

/// The banner line that carries the demo device's token.
const DEMO_TOKEN_LINE: &str = "Demo device token (shown once; stored hashed): ";

/// A running `sharecast serve` in a temporary directory (`data/` for its
/// data, `server.log` and `server.out` for what it writes), listening on
/// free loopback ports; killed with SIGKILL on drop, its log printed when
/// the test fails.
pub struct Server {
    child: Option<Child>,
    /// The temporary directory holding `data/`, the logs and the config.
    pub dir: tempfile::TempDir,
    /// The QUIC ingest address (`host:port`).
    pub ingest: String,
    /// The HTTP base URL (`http://127.0.0.1:port`).
    pub http: String,
    /// The RTSP port.
    pub rtsp_port: u16,
    /// The RTMP ingest address (`host:port`), when it listens
    /// (`--rtmp-listen`).
    pub rtmp: Option<String>,
    /// The SRT ingest address (`host:port`, UDP), when it listens
    /// (`--srt-listen`).
    pub srt: Option<String>,
    /// The SHA-256 fingerprint of the ingest certificate (`push --pin`).
    pub fingerprint: String,
    /// The demo device's token, printed at the first start.
    pub token: String,
    extra: Vec<String>,
}

impl Server {
    /// Starts a server with the embedded defaults.
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Starts a server with `extra` arguments after `serve` and the
    /// harness's own (data directory, listen addresses).
    pub fn start_with(extra: &[&str]) -> Server {
        let mut s = Self::unstarted(extra);
        s.spawn(None);
        s
    }

    /// Starts a server with a configuration file holding `toml` (written
    /// as `sharecast.toml` in the server's directory, read again by a
    /// restart). The harness's command-line listen addresses override the
    /// file's.
    pub fn start_with_config(toml: &str) -> Server {
        let mut s = Self::unstarted(&[]);
        let cfg = s.dir.path().join("sharecast.toml");
        std::fs::write(&cfg, toml).expect("writing the config");
        s.extra = vec!["--config".into(), cfg.display().to_string()];
        s.spawn(None);
        s
    }

    fn unstarted(extra: &[&str]) -> Server {
        Server {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            ingest: String::new(),
            http: String::new(),
            rtsp_port: 0,
            rtmp: None,
            srt: None,
            fingerprint: String::new(),
            token: String::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A file of a recorded session (`source.mp4`, `poster.jpg`, a
    /// rendition's file…).
    pub fn session_file(&self, session: &str, name: &str) -> PathBuf {
        self.data_dir().join("sessions").join(session).join(name)
    }

    /// Starts the process again after [`kill9`](Self::kill9) (killing it
    /// first if it runs), on the same data directory, optionally with a
    /// fixed ingest address; the demo token stays the one of the first
    /// start.
    pub fn restart(&mut self, ingest_listen: Option<&str>) {
        self.kill9();
        self.spawn(ingest_listen);
    }

    fn spawn(&mut self, ingest_listen: Option<&str>) {
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
        let info = wait_until(
            "sharecast serve to write server.json",
            START_TIMEOUT,
            || {
                if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                    panic!("sharecast serve exited early ({status})");
                }
                let text = std::fs::read_to_string(data.join("server.json")).ok()?;
                serde_json::from_str::<Value>(&text).ok()
            },
        );
        self.ingest = info["ingest"].as_str().unwrap().to_string();
        self.http = info["http"].as_str().unwrap().to_string();
        self.rtsp_port = info["rtsp_port"].as_u64().unwrap() as u16;
        self.fingerprint = info["fingerprint"].as_str().unwrap().to_string();
        self.rtmp = info["rtmp"].as_str().map(str::to_string);
        self.srt = info["srt"].as_str().map(str::to_string);
        // The demo device is made (and its token printed) at the first
        // start only; a restart keeps the token we have.
        if let Some(t) = self
            .stdout()
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(DEMO_TOKEN_LINE))
        {
            self.token = t.trim().to_string();
        }
    }

    /// What the server printed on its standard output (start-up banner).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.out")).unwrap_or_default()
    }

    /// What the server logged (standard error) over all its starts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server process's id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the server (no shutdown of any kind).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    // ------------------------------------------------------------ push ---

    /// The `sharecast push` command (a phone) for this server: its ingest
    /// address, the demo token, the certificate pin, `--input input`, then
    /// `extra`.
    pub fn push_cmd(&self, input: &Path, extra: &[&str]) -> Command {
        self.push_cmd_to(&self.ingest, &self.token, input, extra)
    }

    /// [`push_cmd`](Self::push_cmd) with another ingest address (a relay,
    /// a throttle in front of this server) or another device token.
    pub fn push_cmd_to(&self, ingest: &str, token: &str, input: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("push")
            .args([
                "--server",
                ingest,
                "--token",
                token,
                "--pin",
                &self.fingerprint,
            ])
            .arg("--input")
            .arg(input)
            .args(extra)
            .env("RUST_LOG", "warn");
        cmd
    }

    /// Pushes `input` to the end and says how it went.
    pub fn push(&self, input: &Path, extra: &[&str]) -> PushResult {
        let out = self.push_cmd(input, extra).output().expect("running push");
        PushResult::from(out)
    }

    /// Pushes a fixture clip (one of the re-exported names), asserts that
    /// the push succeeded, and returns its session (the asset's id).
    pub fn push_fixture(&self, clip: &str) -> String {
        let r = self.push(&crate::fixture(clip).expect("fixture"), &[]);
        assert!(r.ok, "push of {clip} failed:\n{}\n{}", r.stdout, r.stderr);
        r.session()
    }

    /// Starts a push of `input` (see [`spawn_push`]).
    pub fn spawn_push(
        &self,
        input: &Path,
        extra: &[&str],
    ) -> (
        ChildGuard,
        String,
        std::io::BufReader<std::process::ChildStdout>,
    ) {
        spawn_push(self.push_cmd(input, extra))
    }

    /// A live session of the demo device: a test pattern filmed for `secs`
    /// seconds (1 s keyframes). Returns the push, the session id and a
    /// playback token for it, once its live playlist answers. What the push
    /// prints after its session is read and dropped (so that it can print).
    pub fn start_live(&self, secs: u32) -> (ChildGuard, String, String) {
        let (push, sid, out) =
            self.spawn_push(Path::new("testsrc"), &["--duration", &secs.to_string()]);
        std::thread::spawn(move || out.lines().map_while(Result::ok).for_each(drop));
        let pt = self.playback_token(&sid);
        let playlist = format!("/live/{sid}/index.m3u8?token={pt}");
        wait_until(
            "the live stream's playlist",
            Duration::from_secs(20),
            || (self.get_raw(&playlist, None).status() == 200).then_some(()),
        );
        (push, sid, pt)
    }

    // ------------------------------------------------------------ HTTP ---

    /// The absolute URL of a path on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// A request on this server's `path`, with `Authorization: Bearer
    /// token` when given: for extra headers or a body that is not JSON.
    pub fn request(&self, method: Method, path: &str, token: Option<&str>) -> RequestBuilder {
        let req = client().request(method, self.url(path));
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// GET `path`, the answer as it is (headers, bytes).
    pub fn get_raw(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token)
            .send()
            .expect("HTTP request")
    }

    /// GET `path`: the status alone.
    pub fn get_status(&self, path: &str, token: Option<&str>) -> u16 {
        self.get_raw(path, token).status().as_u16()
    }

    /// GET `path`: status and JSON body.
    pub fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        answer(self.get_raw(path, token))
    }

    /// POST `body` as JSON to `path`: status and JSON body.
    pub fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        answer(
            self.request(Method::POST, path, token)
                .json(&body)
                .send()
                .expect("HTTP request"),
        )
    }

    /// POST to `path` without a body: status and JSON body.
    pub fn post_empty(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        answer(
            self.request(Method::POST, path, token)
                .send()
                .expect("HTTP request"),
        )
    }

    /// DELETE `path`: status and JSON body.
    pub fn delete(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        answer(
            self.request(Method::DELETE, path, token)
                .send()
                .expect("HTTP request"),
        )
    }

    // --------------------------------------------------- what it holds ---

    /// The admin token (generated at first start into the data directory).
    pub fn admin_token(&self) -> String {
        self.secret("admin-token")
    }

    /// The key the SMS gateway's callbacks carry (generated at first start).
    pub fn sms_key(&self) -> String {
        self.secret("sms-inbound-key")
    }

    fn secret(&self, name: &str) -> String {
        std::fs::read_to_string(self.data_dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .trim()
            .to_string()
    }

    /// A new device (`sharecast device add NAME` on this data directory),
    /// made while the server runs; returns its token.
    pub fn add_device(&self, name: &str) -> String {
        let out = run_ok(
            Command::new(bin())
                .args(["device", "add", name, "--data-dir"])
                .arg(self.data_dir())
                .env("RUST_LOG", "warn"),
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A playback token for a live session, issued to the demo device that
    /// records it (`POST /api/v1/live/{id}/playback-tokens`).
    pub fn playback_token(&self, session: &str) -> String {
        let path = format!("/api/v1/live/{session}/playback-tokens");
        let (st, v) = self.post_empty(&path, Some(&self.token));
        assert_eq!(st, 201, "playback token for {session}: {v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// `/metrics`, as a scraper with the admin token reads it.
    pub fn metrics(&self) -> String {
        let r = self.get_raw("/metrics", Some(&self.admin_token()));
        assert_eq!(r.status().as_u16(), 200, "/metrics");
        r.text().expect("metrics text")
    }

    /// One series of `/metrics` (`name` or `name{label="v"}`); 0 when the
    /// server has not counted it yet.
    pub fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics(), series).unwrap_or(0.0)
    }

    /// An asset as its device sees it (`GET /api/v1/assets/{id}`).
    pub fn asset(&self, id: &str) -> Value {
        let (st, v) = self.get(&format!("/api/v1/assets/{id}"), Some(&self.token));
        assert_eq!(st, 200, "asset {id}: {v}");
        v
    }

    /// The demo device's assets, newest first.
    pub fn assets(&self) -> Vec<Value> {
        let (st, v) = self.get("/api/v1/assets", Some(&self.token));
        assert_eq!(st, 200, "{v}");
        v["assets"].as_array().expect("assets").clone()
    }

    /// Waits (up to 60 s) for the device's only asset to be ready (more
    /// than one fails); returns its id.
    pub fn only_ready_asset(&self) -> String {
        wait_until(
            "the only recording to be ready",
            Duration::from_secs(60),
            || {
                let list = self.assets();
                assert!(list.len() <= 1, "one recording expected: {list:?}");
                let a = list.first()?;
                (a["state"] == "ready").then(|| a["id"].as_str().unwrap().to_string())
            },
        )
    }

    /// The VOD of asset `id` holds every frame of `clip` (the 640x360
    /// demo clip) once, the same pictures in order, and its attributes say
    /// 640x360.
    pub fn assert_vod_is_the_640x360_clip(&self, id: &str, clip: &Path) {
        let vod = self.session_file(id, "source.mp4");
        assert_eq!(
            crate::media::frame_counts(&vod),
            crate::media::frame_counts(clip),
            "every frame of the clip, once"
        );
        assert!(
            crate::media::frame_md5s(&vod, "0:v") == crate::media::frame_md5s(clip, "0:v"),
            "the recording's pictures are the clip's, in order"
        );
        let asset = self.asset(id);
        let attrs = &asset["attributes"];
        assert_eq!(
            (attrs["width"].as_u64(), attrs["height"].as_u64()),
            (Some(640), Some(360)),
            "{asset}"
        );
    }

    /// A new publishing key of the demo device named `name`: (id, key).
    pub fn publishing_key(&self, name: &str) -> (String, String) {
        let (st, v) = self.post(
            "/api/v1/publishing-keys",
            Some(&self.token),
            json!({ "name": name }),
        );
        assert_eq!(st, 201, "{v}");
        let key = v["stream_key"].as_str().unwrap().to_string();
        assert!(key.starts_with("sk_"), "{v}");
        (v["id"].as_str().unwrap().to_string(), key)
    }

    /// Waits (up to 60 s) until the asset lists at least `n` renditions;
    /// returns its attributes.
    pub fn wait_renditions(&self, id: &str, n: usize) -> Value {
        wait_until_ok(
            &format!("{n} renditions of {id}"),
            Duration::from_secs(60),
            || {
                let asset = self.asset(id);
                let have = asset["attributes"]["renditions"]
                    .as_array()
                    .map_or(0, |r| r.len());
                if have >= n {
                    Ok(asset["attributes"].clone())
                } else {
                    Err(asset)
                }
            },
        )
    }

    /// A new hand-off of `content` at `pos` ms by a user
    /// (`POST /api/v1/handoff`): its state, signed pull link and code.
    pub fn new_handoff(&self, user_token: &str, content: &str, pos: u64) -> Value {
        let (st, v) = self.post(
            "/api/v1/handoff",
            Some(user_token),
            json!({ "content_id": content, "position_ms": pos }),
        );
        assert_eq!(st, 200, "hand-off of {content}: {v}");
        v
    }

    /// Pushes a hand-off of this server to another platform
    /// (`POST /api/v1/handoff/{id}/push` with the target user's token and
    /// terminal in `X-Target-User-Token` and `X-Target-Terminal`): status
    /// and JSON body.
    pub fn handoff_push(
        &self,
        id: &str,
        user_token: &str,
        target: &str,
        target_user: &str,
        target_terminal: &str,
    ) -> (u16, Value) {
        send(
            self.request(
                Method::POST,
                &format!("/api/v1/handoff/{id}/push"),
                Some(user_token),
            )
            .header("X-Target-User-Token", target_user)
            .header("X-Target-Terminal", target_terminal)
            .json(&json!({ "target": target })),
        )
    }

    /// A new user (`POST /api/v1/users`); returns the user token.
    pub fn new_user(&self, name: &str) -> String {
        let (st, v) = self.post("/api/v1/users", None, json!({ "name": name }));
        assert_eq!(st, 200, "{v}");
        v["user_token"].as_str().unwrap().to_string()
    }

    /// A new terminal of `kind` (`"web"`, `"tv"`, `"mobile"`) for a user;
    /// returns its id.
    pub fn new_terminal(&self, user_token: &str, kind: &str) -> String {
        let (st, v) = self.post(
            "/api/v1/terminals",
            Some(user_token),
            json!({ "type": kind }),
        );
        assert_eq!(st, 200, "{v}");
        v["terminal_id"].as_str().unwrap().to_string()
    }
}

/// How long a start may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(60);

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- server log ----\n{}", self.log());
        }
    }
}

/// What a `sharecast push` printed and whether it succeeded.
pub struct PushResult {
    /// The exit status was success.
    pub ok: bool,
    /// Standard output: `key value` lines (`session`, `attributes`, `vod`…).
    pub stdout: String,
    /// Standard error: the errors and warnings.
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
    /// The value of the output line `key value`.
    pub fn line(&self, key: &str) -> Option<String> {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key} ")).map(|s| s.to_string()))
    }

    /// The video attributes the push printed (JSON).
    pub fn attributes(&self) -> Value {
        let a = self.line("attributes").unwrap_or_else(|| {
            panic!(
                "no attributes in push output:\n{}\n{}",
                self.stdout, self.stderr
            )
        });
        serde_json::from_str(&a).expect("attributes JSON")
    }

    /// The session id (the asset's id) the push printed.
    pub fn session(&self) -> String {
        self.line("session").expect("session id")
    }
}
