//! End-to-end: shares, deliveries and subscriptions through the real
//! `sharecast` binary, a real Kannel (bearerbox, smsbox, wapbox and its fake
//! SMSC) and a real headless Chromium.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sharecast_client_sdk::recipient::{PushOutcome, Reassembler, ReceivedShare};
use sharecast_formats::share::sms::{Body, SmsSubmit, UserData, UserDataHeader};
use sharecast_formats::share::{Address, ShareFormat};
use sharecast_testkit::*;

/// A free TCP port below the kernel's ephemeral range (32768+), so that
/// the servers and clients of tests running meanwhile (which bind port 0)
/// cannot take it before Kannel binds it.
fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20000 + (std::process::id() % 1000) as u16 * 10,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::SeqCst);
        assert!(p < 32000, "no free port below 32000");
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

/// A `[share]` table serving the repository's web pages, then `more`.
fn share_config(more: &str) -> String {
    format!(
        "[share]\nweb_dir = {:?}\n{more}",
        web_dir().display().to_string()
    )
}

/// An SMS reply from `from` as the gateway's callback brings it (with the
/// gateway key).
fn sms_reply(server: &Server, from: &str, text: &str) -> reqwest::blocking::Response {
    server.get_raw(
        &format!(
            "/api/v1/sms/inbound?from={from}&text={text}&key={}",
            server.sms_key()
        ),
        None,
    )
}

#[test]
fn share_api_validates_records_no_gateway_and_honours_stop() {
    let server = Server::start_with_config(&share_config("max_recipients = 3\n"));
    let tok = server.token.clone();
    let session = server.push_fixture(H264_AAC);

    // Bad input: each a clear JSON error with its code.
    let cases: Vec<(Option<&str>, Value, u16, &str)> = vec![
        (None, json!({"asset_id": session}), 401, "unauthorized"),
        (
            Some("sc_nope"),
            json!({"asset_id": session}),
            401,
            "unauthorized",
        ),
        (Some(&tok), json!({"asset_id": "abc"}), 404, "unknown_asset"),
        (Some(&tok), json!({"asset_id": "zz"}), 400, "bad_id"),
        (
            Some(&tok),
            json!({"asset_id": session, "recipients": ["+1555x"]}),
            400,
            "bad_recipient",
        ),
        (
            Some(&tok),
            json!({"asset_id": session, "recipients": ["+15550001"], "formats": ["mms"]}),
            400,
            "unknown_format",
        ),
        (
            Some(&tok),
            json!({"asset_id": session, "recipients": ["1111", "2222", "3333", "4444"]}),
            400,
            "too_many_recipients",
        ),
        (
            Some(&tok),
            json!({"asset_id": session, "ttl_s": 0}),
            400,
            "bad_ttl",
        ),
        (Some(&tok), json!({"asset": session}), 400, "bad_json"),
    ];
    for (t, body, status, code) in cases {
        let (s, v) = server.post("/api/v1/shares", t, body.clone());
        assert_eq!((s, error_code(&v)), (status, code), "{body}: {v}");
    }

    // A share with no gateway configured: deliveries recorded, never "sent".
    let (s, v) = server.post("/api/v1/shares", Some(&tok), 
            json!({"asset_id": session, "recipients": ["+1 555 0001", "+15550002", "+15550002"], "formats": ["tlv", "wap-si"]}),
        );
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap();
    assert_eq!(token.len(), 32, "128-bit hex token");
    let url = v["share"]["url"].as_str().unwrap();
    assert!(url.ends_with(&format!("/s/{token}")), "{url}");
    let share_id = v["share"]["id"].as_str().unwrap().to_string();
    let d = v["deliveries"].as_array().unwrap();
    assert_eq!(d.len(), 4, "2 distinct numbers x 2 formats: {v}");
    for x in d {
        assert_eq!(x["status"], "no_gateway", "{x}");
        assert!(x["last_error"].as_str().unwrap().contains("no SMS gateway"));
    }
    let (s, v) = server.get(&format!("/api/v1/shares/{share_id}/deliveries"), Some(&tok));
    assert_eq!(s, 200);
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 4);
    let (s, v) = server.get("/api/v1/shares/00ff", Some(&tok));
    assert_eq!((s, error_code(&v)), (404, "unknown_share"));

    // Delivery reports: only the gateway (with its key) may send them, and
    // each bad one is refused clearly; a report on a delivery that was
    // never sent changes nothing.
    let id = d[0]["id"].as_i64().unwrap();
    let key = server.sms_key();
    let report = |q: &str| server.get_raw(&format!("/api/v1/sms/dlr?{q}"), None);
    let r = report(&format!("delivery={id}&part=0&type=1"));
    assert_eq!(r.status().as_u16(), 403, "no key");
    let r = report(&format!("key=nope&delivery={id}&part=0&type=1"));
    assert_eq!(r.status().as_u16(), 403, "wrong key");
    for (q, status, code) in [
        (format!("delivery={id}&part=0"), 400, "bad_report"),
        ("delivery=x&part=0&type=1".to_string(), 400, "bad_report"),
        (format!("delivery={id}&part=63&type=1"), 400, "bad_report"),
        (format!("delivery={id}&part=-1&type=1"), 400, "bad_report"),
        (format!("delivery={id}&part=0&type=3"), 400, "bad_report"),
        (
            "delivery=999999&part=0&type=1".to_string(),
            404,
            "unknown_delivery",
        ),
    ] {
        let r = report(&format!("key={key}&{q}"));
        assert_eq!(r.status().as_u16(), status, "{q}");
        let v: Value = r.json().unwrap();
        assert_eq!(error_code(&v), code, "{q}: {v}");
    }
    let r = report(&format!("key={key}&delivery={id}&part=0&type=1"));
    assert_eq!(r.status().as_u16(), 200);
    let (_, v) = server.get(&format!("/api/v1/shares/{share_id}/deliveries"), Some(&tok));
    let x = &v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id)
        .cloned()
        .unwrap();
    assert_eq!(
        (x["status"].as_str(), x["parts_delivered"].as_i64()),
        (Some("no_gateway"), Some(1)),
        "{x}"
    );

    // The page answers; a revoked share answers 410, an unknown one 404.
    let page = server.get_raw(&format!("/s/{token}"), None);
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().unwrap();
    assert!(html.contains("property=\"og:video\""), "{html}");
    assert!(html.contains(&format!("/vod/{session}/source.mp4")));
    assert!(html.contains(&format!("/api/v1/assets/{session}/poster.jpg")));
    let (s, v) = server.delete(&format!("/api/v1/shares/{share_id}"), Some(&tok));
    assert_eq!(s, 200, "{v}");
    assert!(v["share"]["revoked_unix_ms"].is_number());
    let gone = server.get_raw(&format!("/s/{token}"), None);
    assert_eq!(gone.status().as_u16(), 410);
    assert!(gone.text().unwrap().contains("withdrawn"));
    // An expired share answers 410 and says so.
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&tok),
        json!({"asset_id": session, "ttl_s": 1}),
    );
    assert_eq!(s, 201, "{v}");
    std::thread::sleep(Duration::from_millis(1100));
    let expired = server.get_raw(&format!("/s/{}", v["token"].as_str().unwrap()), None);
    assert_eq!(expired.status().as_u16(), 410);
    assert!(expired.text().unwrap().contains("expired"));
    // ?t must be a number of seconds.
    let (_, v) = server.post("/api/v1/shares", Some(&tok), json!({"asset_id": session}));
    let bad_t = server.get_raw(&format!("/s/{}?t=abc", v["token"].as_str().unwrap()), None);
    assert_eq!(bad_t.status().as_u16(), 400);
    // hls.js for live pages comes from web/node_modules (npm).
    let hls = server.get_raw("/assets/hls.js", None);
    if web_dir()
        .join("node_modules/hls.js/dist/hls.min.js")
        .is_file()
    {
        assert_eq!(hls.status().as_u16(), 200);
        assert!(hls.text().unwrap().contains("Hls"));
    } else {
        assert_eq!(hls.status().as_u16(), 503);
    }
    let missing = server.get_raw("/s/0123456789abcdef0123456789abcdef", None);
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(server.get_status("/s/short", None), 404);

    // A share made while the phone is still uploading is a live share: the
    // page plays the HLS stream through hls.js.
    let (mut child, live_id, _out) =
        server.spawn_push(std::path::Path::new("testsrc"), &["--duration", "8"]);
    let (s, v) = server.post("/api/v1/shares", Some(&tok), json!({"asset_id": live_id}));
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["share"]["kind"], "live", "{v}");
    let live_page = server
        .get_raw(&format!("/s/{}", v["token"].as_str().unwrap()), None)
        .text()
        .unwrap();
    // The page of a private share carries a playback token for the stream.
    let marker = format!("data-hls=\"/live/{live_id}/index.m3u8?token=");
    let at = live_page
        .find(&marker)
        .unwrap_or_else(|| panic!("{live_page}"))
        + marker.len();
    let page_token: String = live_page[at..].chars().take_while(|c| *c != '"').collect();
    let status = |q: &str| server.get_status(&format!("/live/{live_id}/status.json{q}"), None);
    assert_ne!(status(&format!("?token={page_token}")), 401);
    assert_eq!(status(""), 401, "a private live stream needs a token");
    // Playback tokens are issued to the device that records the session
    // only.
    let (s, v) = server.post_empty(&format!("/api/v1/live/{live_id}/playback-tokens"), None);
    assert_eq!(s, 401, "{v}");
    let (s, v) = server.post_empty("/api/v1/live/0123abcd/playback-tokens", Some(&tok));
    assert_eq!(s, 404, "{v}");
    let (s, v) = server.post_empty(
        &format!("/api/v1/live/{live_id}/playback-tokens"),
        Some(&tok),
    );
    assert_eq!(s, 201, "{v}");
    assert!(v["rtsp_url"].as_str().unwrap().contains("?token="), "{v}");
    // A public share opens the stream to everyone.
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&tok),
        json!({"asset_id": live_id, "public": true}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["share"]["public"], true, "{v}");
    let public_page = server
        .get_raw(&format!("/s/{}", v["token"].as_str().unwrap()), None)
        .text()
        .unwrap();
    assert!(
        public_page.contains(&format!("data-hls=\"/live/{live_id}/index.m3u8\"")),
        "{public_page}"
    );
    assert_ne!(status(""), 401, "a public share needs no token");
    let (s, _) = server.delete(
        &format!("/api/v1/shares/{}", v["share"]["id"].as_str().unwrap()),
        Some(&tok),
    );
    assert_eq!(s, 200);
    assert_eq!(status(""), 401, "revoking the public share closes it again");
    assert!(live_page.contains("<script src=\"/assets/hls.js\"></script>"));
    assert!(child.wait().unwrap().success());

    // Subscriptions: subscribe, STOP by SMS reply, re-subscribing refused,
    // START opts back in.
    let (s, v) = server.post(
        "/api/v1/subscriptions",
        Some(&tok),
        json!({"recipient": "+15550007", "format": "text"}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["status"], "active");
    let stop = sms_reply(&server, "15550007", "stop%20please");
    assert_eq!(stop.status().as_u16(), 200);
    assert!(stop.text().unwrap().contains("no more"));
    let (_, v) = server.get("/api/v1/subscriptions", Some(&tok));
    assert_eq!(v["subscriptions"][0]["status"], "opted_out", "{v}");
    let (s, v) = server.post(
        "/api/v1/subscriptions",
        Some(&tok),
        json!({"recipient": "+15550007"}),
    );
    assert_eq!((s, error_code(&v)), (409, "opted_out"));
    // STOP holds for shares too, and for a number that never subscribed.
    let stop_share = |server: &Server| {
        let (s, v) = server.post(
            "/api/v1/shares",
            Some(&tok),
            json!({"asset_id": session, "recipients": ["+15550007", "+15550001"]}),
        );
        assert_eq!(s, 201, "{v}");
        v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["recipient"].as_str().unwrap().to_string(),
                    d["status"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        stop_share(&server),
        vec![
            ("+15550007".to_string(), "opted_out".to_string()),
            ("+15550001".to_string(), "no_gateway".to_string()),
        ]
    );
    let stop = sms_reply(&server, "15550006", "STOP");
    assert_eq!(stop.status().as_u16(), 200);
    let (s, v) = server.post(
        "/api/v1/subscriptions",
        Some(&tok),
        json!({"recipient": "+15550006"}),
    );
    assert_eq!((s, error_code(&v)), (409, "opted_out"));
    sms_reply(&server, "%2B15550007", "START");
    let (_, v) = server.get("/api/v1/subscriptions", Some(&tok));
    assert_eq!(v["subscriptions"][0]["status"], "active", "{v}");
    assert_eq!(
        stop_share(&server),
        vec![
            ("+15550007".to_string(), "no_gateway".to_string()),
            ("+15550001".to_string(), "no_gateway".to_string()),
        ]
    );
    let (s, v) = server.delete("/api/v1/subscriptions/+15550007", Some(&tok));
    assert_eq!((s, v["status"].as_str()), (200, Some("removed")), "{v}");

    // Errors are counted in /metrics by code, including HTML page errors.
    let metrics = server.metrics();
    for code in [
        "unknown_format",
        "bad_recipient",
        "share_revoked",
        "unknown_share",
    ] {
        assert!(
            metrics.contains(&format!("code=\"{code}\"")),
            "{code} not counted:\n{metrics}"
        );
    }
    assert!(metrics.contains("sharecast_share_deliveries_sent_total 0"));
}

// ---------------------------------------------------------------- Kannel ---

/// Kannel's boxes and fake SMSC, killed on drop.
struct Kannel {
    dir: tempfile::TempDir,
    children: Vec<Child>,
    sendsms_port: u16,
    ppg_port: u16,
    smsc_port: u16,
    admin_port: u16,
    smsbox_port: u16,
    wapbox_port: u16,
}

const FAKESMSC: &str = "/usr/lib/kannel/test/fakesmsc";
/// The phone that replies STOP in the Kannel test.
const STOP_PHONE: &str = "+15550008";

impl Kannel {
    fn reserve() -> Kannel {
        Kannel {
            dir: tempfile::tempdir().unwrap(),
            children: Vec::new(),
            sendsms_port: free_port(),
            ppg_port: free_port(),
            smsc_port: free_port(),
            admin_port: free_port(),
            smsbox_port: free_port(),
            wapbox_port: free_port(),
        }
    }

    fn conf(&self, inbound_url: &str) -> String {
        let d = self.dir.path().display();
        format!(
            r#"group = core
admin-port = {admin}
admin-password = sharecast-admin
smsbox-port = {smsbox}
wapbox-port = {wapbox}
box-allow-ip = "127.0.0.1"
log-file = "{d}/bearerbox.log"
log-level = 0

group = smsc
smsc = fake
smsc-id = fake
port = {smsc}
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
sendsms-port = {sendsms}
log-file = "{d}/smsbox.log"
log-level = 0

group = sendsms-user
username = sharecast
password = secret

group = wapbox
bearerbox-host = 127.0.0.1
log-file = "{d}/wapbox.log"
log-level = 0

group = ppg
ppg-url = /wappush
ppg-port = {ppg}
concurrent-pushes = 10
users = 10
ppg-allow-ip = "127.0.0.1"
trusted-pi = true

group = sms-service
keyword = default
catch-all = true
max-messages = 1
get-url = "{inbound_url}{sep}from=%p&text=%a"
"#,
            sep = if inbound_url.contains('?') { '&' } else { '?' },
            admin = self.admin_port,
            smsbox = self.smsbox_port,
            wapbox = self.wapbox_port,
            smsc = self.smsc_port,
            sendsms = self.sendsms_port,
            ppg = self.ppg_port,
        )
    }

    fn spawn(&mut self, program: &str, args: &[&str], log: &str) {
        let out = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(program)
            .args(args)
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| {
                panic!("starting {program} (apt-get install kannel kannel-extras): {e}")
            });
        self.children.push(child);
    }

    /// Start everything; the fake SMSC's phone `mo_from` sends `mo_text`
    /// once (a mobile-originated SMS, routed by smsbox to `inbound_url`).
    fn start(&mut self, inbound_url: &str, mo_from: &str, mo_text: &str) {
        let conf = self.dir.path().join("kannel.conf");
        std::fs::write(&conf, self.conf(inbound_url)).unwrap();
        let conf = conf.to_str().unwrap().to_string();
        self.spawn("/usr/sbin/bearerbox", &[&conf], "bearerbox.out");
        wait_port("bearerbox admin", self.admin_port);
        wait_port("bearerbox fake SMSC", self.smsc_port);
        let smsc_port = self.smsc_port.to_string();
        // -m 1: send the one MO message, then print what the gateway
        // delivers.
        let mo = format!("{mo_from} 16029 text {mo_text}");
        self.spawn(
            FAKESMSC,
            &["-H", "127.0.0.1", "-r", &smsc_port, "-m", "1", &mo],
            "fakesmsc.out",
        );
        self.spawn("/usr/sbin/smsbox", &[&conf], "smsbox.out");
        self.spawn("/usr/sbin/wapbox", &[&conf], "wapbox.out");
        wait_port("smsbox sendsms", self.sendsms_port);
        wait_port("wapbox PPG", self.ppg_port);
    }

    /// Messages the fake SMSC received so far.
    fn received(&self) -> Vec<FakeSms> {
        std::fs::read_to_string(self.dir.path().join("fakesmsc.out"))
            .unwrap_or_default()
            .lines()
            .filter_map(FakeSms::parse)
            .collect()
    }

    /// Messages the fake SMSC received, except the replies to the phone
    /// that sent STOP (plain text, not share messages).
    fn shares_received(&self) -> Vec<FakeSms> {
        self.received()
            .into_iter()
            .filter(|m| m.to != STOP_PHONE)
            .collect()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["bearerbox.log", "smsbox.log", "wapbox.log", "fakesmsc.out"] {
            let text = std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            s.push_str(&format!("---- {f} (last lines) ----\n"));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

impl Drop for Kannel {
    fn drop(&mut self) {
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

fn wait_port(what: &str, port: u16) {
    wait_until(what, Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
}

/// One line of fakesmsc: `Got message N: <FROM TO udh UDH data DATA>` (or
/// `... data DATA>` / `... text TEXT>`), URL-encoded.
#[derive(Debug, Clone)]
struct FakeSms {
    to: String,
    udh: Option<Vec<u8>>,
    data: Vec<u8>,
    text: bool,
}

impl FakeSms {
    fn parse(line: &str) -> Option<FakeSms> {
        let i = line.find("Got message")?;
        let rest = &line[i..];
        let inner = &rest[rest.find(": <")? + 3..rest.rfind('>')?];
        let mut it = inner.splitn(4, ' ');
        let _from = it.next()?;
        let to = it.next()?.to_string();
        let kind = it.next()?;
        let rest = it.next().unwrap_or("");
        let dec = |s: &str| sharecast_share::kannel::url_decode(s).expect("url-encoded");
        Some(match kind {
            "udh" => {
                let mut p = rest.splitn(3, ' ');
                let udh = dec(p.next()?);
                let (a, b) = (p.next(), p.next());
                let data = match (a, b) {
                    (Some("data" | "text"), Some(d)) => dec(d),
                    (Some(d), None) => dec(d),
                    _ => Vec::new(),
                };
                FakeSms {
                    to,
                    udh: Some(udh),
                    data,
                    text: false,
                }
            }
            "data" => FakeSms {
                to,
                udh: None,
                data: dec(rest),
                text: false,
            },
            "text" => FakeSms {
                to,
                udh: None,
                data: rest.as_bytes().to_vec(),
                text: true,
            },
            _ => return None,
        })
    }

    /// Rebuild our SMS-SUBMIT PDU from what reached the SMSC.
    fn to_pdu(&self) -> Vec<u8> {
        let header = self.udh.as_ref().map(|u| {
            let (h, used) = UserDataHeader::decode(u).expect("UDH from Kannel");
            assert_eq!(used, u.len(), "whole UDH used");
            h
        });
        // Kannel keeps coding=0 text as UTF-8 and fakesmsc prints it as is;
        // with a UDH it is URL-encoded like binary data, so a UDH without
        // application ports means text.
        let text = self.text
            || header
                .as_ref()
                .is_some_and(|h: &UserDataHeader| h.ports().is_none());
        let body = if text {
            Body::from_text(std::str::from_utf8(&self.data).unwrap())
        } else {
            Body::EightBit(self.data.clone())
        };
        let ud = UserData { header, body };
        SmsSubmit::new(Address::parse(&self.to).unwrap(), ud)
            .encode()
            .expect("re-encoding the PDU")
    }
}

/// Decode everything the fake SMSC got, per recipient.
fn decode_all(msgs: &[FakeSms]) -> BTreeMap<String, Vec<ReceivedShare>> {
    let mut r = Reassembler::default();
    let mut out: BTreeMap<String, Vec<ReceivedShare>> = BTreeMap::new();
    for m in msgs {
        match r.push_pdu(&m.to_pdu(), 0) {
            Ok(PushOutcome::Complete(s)) => out.entry(m.to.clone()).or_default().push(*s),
            Ok(_) => {}
            Err(e) => panic!("recipient could not read {m:?}: {e}"),
        }
    }
    out
}

fn deliveries(server: &Server, share_id: &str) -> Vec<Value> {
    deliveries_with(server, &server.token, share_id)
}

/// A share's deliveries through `server` with the device token `token`.
fn deliveries_with(server: &Server, token: &str, share_id: &str) -> Vec<Value> {
    let (s, v) = server.get(
        &format!("/api/v1/shares/{share_id}/deliveries"),
        Some(token),
    );
    assert_eq!(s, 200, "{v}");
    v["deliveries"].as_array().unwrap().clone()
}

#[test]
fn kannel_delivers_shares_subscriptions_and_compiled_si_pushes() {
    let mut kannel = Kannel::reserve();
    let cfg = share_config(&format!(
        "\n[sms]\nbackend = \"kannel\"\nsendsms_url = \"http://127.0.0.1:{}/cgi-bin/sendsms\"\nusername = \"sharecast\"\npassword = \"secret\"\nfrom = \"16029\"\nppg_url = \"http://127.0.0.1:{}/wappush\"\nrate_per_second = 10.0\nburst = 4\nbackoff_initial_ms = 300\nbackoff_max_ms = 1500\n",
        kannel.sendsms_port,
        kannel.ppg_port
    ));
    let mut server = Server::start_with_config(&cfg);
    let tok = server.token.clone();

    // A subscriber of this device hears about the live start and the VOD.
    let (s, v) = server.post(
        "/api/v1/subscriptions",
        Some(&tok),
        json!({"recipient": "+15550009", "format": "tlv"}),
    );
    assert_eq!(s, 201, "{v}");
    let session = server.push_fixture(H264_AAC);
    let numbers = ["+15550001", "+15550002", "+15550003"];
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&tok),
        json!({"asset_id": session, "recipients": numbers, "formats": ["tlv"]}),
    );
    assert_eq!(s, 201, "{v}");
    let share_id = v["share"]["id"].as_str().unwrap().to_string();
    let token = v["token"].as_str().unwrap().to_string();
    let share_expires_s = v["share"]["expires_unix_ms"].as_u64().unwrap() / 1000;

    // Kannel is not up yet: the attempts fail and are retried with backoff.
    let d = wait_until("a failed attempt", Duration::from_secs(20), || {
        let d = deliveries(&server, &share_id);
        d.iter()
            .all(|x| x["status"] == "pending" && x["attempts"].as_i64().unwrap() >= 1)
            .then_some(d)
    });
    assert!(
        d[0]["last_error"].as_str().unwrap().contains("sendsms"),
        "{d:?}"
    );

    // +15550008 subscribes, then replies STOP through the gateway.
    let (s, v) = server.post(
        "/api/v1/subscriptions",
        Some(&tok),
        json!({"recipient": "+15550008"}),
    );
    assert_eq!(s, 201, "{v}");

    // The queue survives a crash of the server.
    server.restart(None);
    kannel.start(
        &format!(
            "{}/api/v1/sms/inbound?key={}",
            server.http,
            server.sms_key()
        ),
        "+15550008",
        "STOP",
    );
    let started = Instant::now();
    let d = wait_until("deliveries sent", Duration::from_secs(30), || {
        let d = deliveries(&server, &share_id);
        d.iter()
            .all(|x| x["status"] == "sent" || x["status"] == "delivered")
            .then_some(d)
    });
    assert_eq!(d.len(), 3);
    // Subscriber messages (live + VOD events) too; they may still be in
    // their backoff.
    let expected = |m: &BTreeMap<String, Vec<ReceivedShare>>| {
        numbers.iter().all(|n| m.contains_key(*n))
            && m.get("+15550009").is_some_and(|s| s.len() >= 2)
    };
    wait_until(
        "every message at the fake SMSC",
        Duration::from_secs(30),
        || expected(&decode_all(&kannel.shares_received())).then_some(()),
    );
    eprintln!("Kannel delivered in {:?}", started.elapsed());
    // Nothing more arrives: no message is sent twice.
    std::thread::sleep(Duration::from_millis(1500));
    let got = kannel.shares_received();
    // Every SMS part sent so far (the share's and the subscriber's); how
    // many depends on the attributes' length (ids, URLs).
    let sendsms_parts = got.len();

    let (_, a) = server.get(&format!("/api/v1/assets/{session}"), Some(&server.token));
    let attrs = &a["attributes"];
    let by_number = decode_all(&got);
    for n in numbers {
        let shares = by_number
            .get(n)
            .unwrap_or_else(|| panic!("nothing for {n}: {got:?}"));
        assert_eq!(shares.len(), 1, "exactly one message to {n}");
        let s = &shares[0];
        assert_eq!(s.format, ShareFormat::Tlv);
        let a = &s.attributes;
        assert_eq!(a.id, session);
        assert!(
            a.share_url
                .as_deref()
                .unwrap()
                .ends_with(&format!("/s/{token}")),
            "{a:?}"
        );
        assert_eq!(a.width as u64, attrs["width"].as_u64().unwrap());
        assert_eq!(a.height as u64, attrs["height"].as_u64().unwrap());
        assert_eq!(a.vod_url.as_deref(), attrs["vod_url"].as_str());
        assert_eq!(a.size_bytes, attrs["size_bytes"].as_u64().unwrap());
        assert!(a.expires_unix.is_some());
    }
    // Byte for byte, each number got the SMS our encoder makes of the
    // asset's attributes plus the share link, poster and expiry: the same
    // UDH (ports 16029, concatenation with the delivery's reference) and
    // the same 8-bit data, in order.
    // The link is on the server's address now (the restart moved its
    // port); the attributes keep the addresses of the VOD-ready time.
    let (_, v) = server.get(&format!("/api/v1/shares/{share_id}"), Some(&tok));
    let share_url = v["share"]["url"].as_str().unwrap().to_string();
    let mut expected_attrs: sharecast_formats::attributes::VideoAttributes =
        serde_json::from_value(attrs.clone()).unwrap();
    expected_attrs.share_url = Some(share_url.clone());
    expected_attrs.thumbnail_url = Some(format!(
        "{}/api/v1/assets/{session}/poster.jpg",
        share_url.split("/s/").next().unwrap()
    ));
    expected_attrs.expires_unix = Some(share_expires_s);
    for x in &d {
        let n = x["recipient"].as_str().unwrap();
        let reference = (x["id"].as_i64().unwrap() as u16)
            .wrapping_mul(31)
            .wrapping_add(7);
        let opts = sharecast_formats::share::MessageOptions {
            reference,
            ..Default::default()
        };
        let want =
            sharecast_formats::share::encode_user_data(&expected_attrs, ShareFormat::Tlv, &opts)
                .unwrap();
        let sms: Vec<&FakeSms> = got.iter().filter(|m| m.to == n).collect();
        assert_eq!(sms.len(), want.len(), "SMS to {n}: {sms:?}");
        assert!(want.len() > 1, "the share is concatenated: {}", want.len());
        assert_eq!(x["parts"].as_i64(), Some(want.len() as i64), "{x}");
        for (got, want) in sms.iter().zip(&want) {
            let udh = want.header.as_ref().unwrap().encode().unwrap();
            assert_eq!(got.udh.as_deref(), Some(udh.as_slice()), "UDH to {n}");
            let Body::EightBit(data) = &want.body else {
                panic!("TLV is 8-bit data")
            };
            assert_eq!(&got.data, data, "data to {n}");
        }
    }

    // The fake SMSC reports every part delivered to the phone: each
    // concatenated share becomes `delivered` once all its parts are.
    let d = wait_until("deliveries delivered", Duration::from_secs(20), || {
        let d = deliveries(&server, &share_id);
        d.iter().all(|x| x["status"] == "delivered").then_some(d)
    });
    for x in &d {
        assert_eq!(x["parts_delivered"], x["parts"], "{x}");
    }

    // The subscriber: one live and one VOD message, never twice.
    let sub = &by_number["+15550009"];
    assert_eq!(sub.len(), 2, "live + VOD for the subscriber: {sub:?}");
    assert!(sub
        .iter()
        .any(|s| !s.attributes.live_urls.is_empty() && s.attributes.vod_url.is_none()));
    assert!(sub.iter().any(|s| s.attributes.vod_url.is_some()));

    // WAP Push SI through the PPG: Kannel compiles our SI XML; the
    // recipient side decodes Kannel's WBXML.
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&tok),
        json!({"asset_id": session, "recipients": ["+15550004"], "formats": ["wap-si"]}),
    );
    assert_eq!(s, 201, "{v}");
    let si_share = v["share"]["id"].as_str().unwrap().to_string();
    let si_url = v["share"]["url"].as_str().unwrap().to_string();
    wait_until("SI push sent", Duration::from_secs(20), || {
        deliveries(&server, &si_share)
            .iter()
            .all(|x| x["status"] == "sent")
            .then_some(())
    });
    let got = wait_until("SI at the fake SMSC", Duration::from_secs(20), || {
        let m: Vec<FakeSms> = kannel
            .received()
            .into_iter()
            .filter(|m| m.to == "+15550004")
            .collect();
        (!m.is_empty()).then_some(m)
    });
    let udh = got[0].udh.as_ref().expect("WAP Push has a UDH");
    let (h, _) = UserDataHeader::decode(udh).unwrap();
    assert_eq!(h.ports().map(|p| p.0), Some(2948), "WAP Push port");
    let si = &decode_all(&got)["+15550004"][0];
    assert_eq!(si.format, ShareFormat::WapSi);
    assert_eq!(si.attributes.share_url.as_deref(), Some(si_url.as_str()));
    assert_eq!(si.attributes.id, session);

    // The STOP reply went through smsbox to our inbound route: opted out,
    // the device cannot re-subscribe, and the confirmation reached the phone.
    wait_until("STOP to opt out", Duration::from_secs(20), || {
        let (_, v) = server.get("/api/v1/subscriptions", Some(&tok));
        v["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["recipient"] == "+15550008" && s["status"] == "opted_out")
            .then_some(())
    });
    let (s, v) = server.post(
        "/api/v1/subscriptions",
        Some(&tok),
        json!({"recipient": "+15550008"}),
    );
    assert_eq!((s, error_code(&v)), (409, "opted_out"));
    wait_until("STOP confirmation SMS", Duration::from_secs(20), || {
        std::fs::read_to_string(kannel.dir.path().join("fakesmsc.out"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("+15550008 text") && l.contains("no more"))
            .then_some(())
    });

    // Every SMS went through the per-gateway rate limit (10/s, burst 4):
    // the SMS after the restart (about 15: three concatenated messages for
    // the share, the subscriber's live and VOD messages, 1 SI push) cannot
    // all go at once.
    let metrics = server.metrics();
    let metric = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} missing:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        metric("sharecast_share_deliveries_sent_total"),
        6.0,
        "{metrics}"
    );
    assert_eq!(
        metric("sharecast_share_sms_parts_total"),
        (sendsms_parts + 1) as f64,
        "every part through sendsms, and the SI push through the PPG: {metrics}"
    );
    assert!(
        metric("sharecast_share_rate_limited_ms_total") >= 300.0,
        "throttled: {metrics}"
    );

    // Text formats (GSM 7-bit, concatenated with our UDH) through sendsms.
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&tok),
        json!({"asset_id": session, "recipients": ["+15550005"], "formats": ["xml", "text"]}),
    );
    assert_eq!(s, 201, "{v}");
    let text_share = v["share"]["id"].as_str().unwrap().to_string();
    let text_url = v["share"]["url"].as_str().unwrap().to_string();
    wait_until("text shares delivered", Duration::from_secs(20), || {
        let d = deliveries(&server, &text_share);
        if let Some(f) = d.iter().find(|x| x["status"] == "failed") {
            panic!("text delivery failed: {f}");
        }
        d.iter().all(|x| x["status"] == "delivered").then_some(())
    });
    let got = wait_until(
        "text shares at the fake SMSC",
        Duration::from_secs(20),
        || {
            let m: Vec<FakeSms> = kannel
                .received()
                .into_iter()
                .filter(|m| m.to == "+15550005")
                .collect();
            let d = decode_all(&m);
            d.get("+15550005")
                .is_some_and(|v| v.len() == 2)
                .then_some(d)
        },
    );
    let mut formats: Vec<ShareFormat> = got["+15550005"].iter().map(|s| s.format).collect();
    formats.sort_by_key(|f| f.name());
    assert_eq!(formats, vec![ShareFormat::Text, ShareFormat::Xml]);
    for s in &got["+15550005"] {
        assert_eq!(
            s.attributes.share_url.as_deref(),
            Some(text_url.as_str()),
            "{s:?}"
        );
    }
}

// ---------------------------------------------------------------- Chromium ---

#[test]
fn share_page_plays_in_headless_chromium_from_t() {
    let server = Server::start_with_config(&share_config(""));
    let session = server.push_fixture(H264_AAC);
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&server.token),
        json!({"asset_id": session}),
    );
    assert_eq!(s, 201, "{v}");
    let url = format!("{}?t=2", v["share"]["url"].as_str().unwrap());

    let r = check_page(&url, "share-page.png");
    let shot = artifacts_dir().join("share-page.png");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["og"]["og:type"], "video.other");
    assert!(r["og"]["og:video"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/vod/{session}/source.mp4")));
    assert!(r["og"]["og:image"].as_str().unwrap().contains("poster.jpg"));
    assert!(r["og"]["og:title"].is_string());
    let (first, second) = (&r["first"], &r["second"]);
    assert!(first["error"].is_null(), "media error: {r}");
    let t1 = first["currentTime"].as_f64().unwrap();
    let t2 = second["currentTime"].as_f64().unwrap();
    assert!(t1 >= 2.0, "started at ?t=2, got {t1}: {r}");
    assert!(
        t2 > t1 || second["ended"] == true,
        "playing: currentTime {t1} then {t2}: {r}"
    );
    assert!(shot.is_file(), "screenshot kept at {}", shot.display());
}

#[test]
fn live_share_page_plays_through_hls_js_in_headless_chromium() {
    assert!(
        web_dir()
            .join("node_modules/hls.js/dist/hls.min.js")
            .is_file(),
        "hls.js missing: run npm ci in web/"
    );
    // A clip long enough to watch live (the fixtures are 3 s).
    let tmp = tempfile::tempdir().unwrap();
    let clip = tmp.path().join("long.mp4");
    let st = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=25",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "14", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "25",
        ])
        .args(["-c:a", "aac", "-shortest"])
        .arg(&clip)
        .status()
        .expect("ffmpeg");
    assert!(st.success(), "ffmpeg could not make the clip");
    let server = Server::start_with_config(&share_config(""));
    let (mut child, live_id, _out) = server.spawn_push(&clip, &["--realtime"]);
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&server.token),
        json!({"asset_id": live_id}),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["share"]["kind"], "live");
    let url = v["share"]["url"].as_str().unwrap().to_string();
    let r = check_page(&url, "share-page-live.png");
    child.stop();
    assert_eq!(r["status"], 200, "{r}");
    let (first, second) = (&r["first"], &r["second"]);
    assert!(first["error"].is_null(), "media error: {r}");
    assert!(
        first["src"].as_str().unwrap_or("").starts_with("blob:"),
        "hls.js (MediaSource) plays the stream: {r}"
    );
    let (t1, t2) = (
        first["currentTime"].as_f64().unwrap(),
        second["currentTime"].as_f64().unwrap(),
    );
    assert!(
        t1 > 0.0 && t2 > t1,
        "live playback advances: {t1} then {t2}: {r}"
    );
}

// ------------------------------------------------------------- cluster ---

/// Two servers (nodes `a` and `b`) on one PostgreSQL database share the
/// delivery queue through one Kannel. `a` claims the share's deliveries and
/// sends; SIGKILLed mid-fan-out, its claims expire (`store.claim_secs = 2`)
/// and `b` sends the rest. Every recipient gets the message exactly once,
/// except the one `a` may have been sending when it died: that one becomes
/// `unknown` and is never sent again.
#[test]
fn two_servers_on_one_database_send_each_delivery_once_through_a_kill() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(sharecast_store::testing::TestDatabase::create());
    let mut kannel = Kannel::reserve();
    let cfg = |node: &str| {
        share_config(&format!(
            "max_recipients = 20\n[store]\nurl = \"{}\"\nnode_name = \"{node}\"\nclaim_secs = 2\n[sms]\nbackend = \"kannel\"\nsendsms_url = \"http://127.0.0.1:{}/cgi-bin/sendsms\"\nusername = \"sharecast\"\npassword = \"secret\"\nrate_per_second = 4.0\nburst = 1\n",
            db.url, kannel.sendsms_port
        ))
    };
    let mut a = Server::start_with_config(&cfg("a"));
    let b = Server::start_with_config(&cfg("b"));
    let inbound = format!("{}/api/v1/sms/inbound?key={}", a.http, a.sms_key());
    kannel.start(&inbound, "+15559999", "HELLO");
    let token = a.token.clone();
    let session = a.push_fixture(H264_AAC);
    let numbers: Vec<String> = (0..12).map(|i| format!("+15550120{i:02}")).collect();
    let (s, v) = a.post(
        "/api/v1/shares",
        Some(&token),
        json!({"asset_id": session, "recipients": numbers, "formats": ["tlv"]}),
    );
    assert_eq!(s, 201, "{v}");
    let share_id = v["share"]["id"].as_str().unwrap().to_string();
    let done = |x: &Value| x["status"] == "sent" || x["status"] == "delivered";
    wait_until(
        "a few sent before the kill",
        Duration::from_secs(30),
        || {
            let d = deliveries_with(&b, &token, &share_id);
            (d.iter().filter(|x| done(x)).count() >= 3).then_some(())
        },
    );
    a.kill9();
    let d = wait_until("every delivery settled", Duration::from_secs(60), || {
        let d = deliveries_with(&b, &token, &share_id);
        d.iter()
            .all(|x| done(x) || x["status"] == "unknown")
            .then_some(d)
    });
    assert_eq!(d.len(), 12);
    let unknown: Vec<&Value> = d.iter().filter(|x| x["status"] == "unknown").collect();
    assert!(unknown.len() <= 1, "only a's send under way: {d:?}");
    let by = |node: &str| d.iter().filter(|x| x["node"] == node && done(x)).count();
    eprintln!(
        "sent by a {}, by b {}, unknown {}",
        by("a"),
        by("b"),
        unknown.len()
    );
    assert!(
        by("a") >= 3 && by("b") >= 1,
        "a sent {}, b {}: {d:?}",
        by("a"),
        by("b")
    );
    // Nothing more comes; each number got its message once.
    std::thread::sleep(Duration::from_millis(1500));
    let to_them: Vec<FakeSms> = kannel
        .shares_received()
        .into_iter()
        .filter(|m| numbers.contains(&m.to))
        .collect();
    let got = decode_all(&to_them);
    for x in &d {
        let n = x["recipient"].as_str().unwrap();
        let copies = got.get(n).map_or(0, Vec::len);
        if done(x) {
            assert_eq!(copies, 1, "{n}: {x}");
        } else {
            assert!(copies <= 1, "{n}: {x}");
        }
    }
    drop(b);
}
