//! Webhooks end to end, against a real HTTP receiver in the test: down for
//! a while, then answering 500s, then too slow (past the server's timeout,
//! so the server sends again what the receiver did get), then well. Every
//! event arrives exactly once after deduplication by `webhook-id`, in order
//! of its sequence number per subject, every signature verifies (checked
//! here with HMAC code of the test's own), and a replay sends them again in
//! order. An event whose change was committed survives a `kill -9` of the
//! server before its delivery.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sharecast_testkit::*;

/// What the receiver does with the next request.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Answers 500.
    Fail,
    /// Answers 200 after this long.
    Slow(Duration),
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    plan: Arc<Mutex<VecDeque<Behaviour>>>,
}

async fn hook(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let behaviour = r.plan.lock().unwrap().pop_front();
    let answered = match behaviour {
        Some(Behaviour::Fail) => 500,
        _ => 200,
    };
    r.got.lock().unwrap().push(Received {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
        body: body.to_vec(),
        answered,
    });
    if let Some(Behaviour::Slow(d)) = behaviour {
        tokio::time::sleep(d).await;
    }
    StatusCode::from_u16(answered).unwrap()
}

impl Receiver {
    /// Starts answering on `addr` (on the test's runtime).
    fn listen(&self, rt: &tokio::runtime::Runtime, addr: SocketAddr) {
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(self.clone());
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
        rt.spawn(async move { axum::serve(listener, app).await });
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// A loopback address nothing listens on (yet).
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Checks a request's signature as the Standard Webhooks specification
/// says, with this test's own HMAC: one of the `v1,` signatures is the
/// base64 HMAC-SHA256 of `id.timestamp.body` under the secret's bytes, and
/// the timestamp is recent.
fn assert_signed(r: &Received, secret: &str) {
    let key = B64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", r.id, r.timestamp).as_bytes());
    mac.update(&r.body);
    let want = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    assert!(
        r.signature.split(' ').any(|s| s == want),
        "bad signature {} for {}",
        r.signature,
        r.id
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let ts: i64 = r.timestamp.parse().unwrap();
    assert!((now - ts).abs() < 300, "timestamp {ts}, now {now}");
}

/// Runs the verification snippet of `docs/webhooks.md` (Python) on every
/// request of `got`, and on one with a changed body; returns what it said
/// of each.
fn documented_verify(got: &[Received], secret: &str) -> Vec<bool> {
    let doc = std::fs::read_to_string(repo_root().join("docs/webhooks.md")).unwrap();
    let snippet = doc
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a python snippet in docs/webhooks.md");
    let mut requests: Vec<Value> = got
        .iter()
        .map(|r| {
            json!({
                "headers": {
                    "webhook-id": r.id,
                    "webhook-timestamp": r.timestamp,
                    "webhook-signature": r.signature,
                },
                "body": B64.encode(&r.body),
            })
        })
        .collect();
    let mut tampered = requests[0].clone();
    tampered["body"] = json!(B64.encode(b"{}"));
    requests.push(tampered);
    let script = format!(
        "{snippet}\nimport json, sys\nargs = json.load(sys.stdin)\n\
         print(json.dumps([verify(args['secret'], r['headers'], base64.b64decode(r['body'])) for r in args['requests']]))\n"
    );
    let mut child = std::process::Command::new("python3")
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let input = json!({ "secret": secret, "requests": requests }).to_string();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The events of `got` once each (by `webhook-id`), in order of first
/// arrival, and their bodies.
fn dedup(got: &[Received]) -> Vec<Value> {
    let mut seen = HashSet::new();
    got.iter()
        .filter(|r| seen.insert(r.id.clone()))
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["id"], r.id.as_str(), "the body's id is the header's");
            v
        })
        .collect()
}

/// Per subject, the sequence numbers arrived 1, 2, 3… in that order; the
/// event types per subject.
fn assert_ordered(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut subjects: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for e in events {
        let subject = e["subject"].as_str().unwrap().to_string();
        let seq = e["sequence"].as_i64().unwrap();
        let kind = e["type"].as_str().unwrap().to_string();
        subjects.entry(subject).or_default().push((seq, kind));
    }
    subjects
        .into_iter()
        .map(|(subject, seqs)| {
            let numbers: Vec<i64> = seqs.iter().map(|(s, _)| *s).collect();
            let want: Vec<i64> = (1..=seqs.len() as i64).collect();
            assert_eq!(numbers, want, "{subject}: out of order or missing");
            (subject, seqs.into_iter().map(|(_, k)| k).collect())
        })
        .collect()
}

/// A server that may post to loopback, with short retries and a 1 s
/// request timeout.
fn server() -> Server {
    Server::start_with_config(
        r#"
[outbound]
allow_private_addresses = true
timeout_secs = 1

[webhooks]
retry_initial_ms = 200
retry_max_interval_secs = 1
poll_interval_ms = 100
"#,
    )
}

/// Registers an endpoint for every event of the demo device; returns its
/// id and secret.
fn register(server: &Server, url: &str) -> (String, String) {
    let (s, v) = server.post(
        "/api/v1/webhooks",
        Some(&server.token),
        json!({ "url": url, "event_types": ["*"] }),
    );
    assert_eq!(s, 201, "{v}");
    let secret = v["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (v["id"].as_str().unwrap().to_string(), secret)
}

/// The admin's view of the deliveries to `endpoint`.
fn deliveries(server: &Server, endpoint: &str) -> Vec<Value> {
    let (s, v) = server.get(
        "/api/v1/admin/webhook-deliveries?limit=1000",
        Some(&server.admin_token()),
    );
    assert_eq!(s, 200, "{v}");
    v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["endpoint_id"] == endpoint)
        .cloned()
        .collect()
}

/// Waits until every delivery to `endpoint` is done (events of each type
/// of `want` among them) and the receiver holds each of them, and checks
/// the signature of every request it got; returns the admin's list and
/// the requests.
fn all_delivered(
    server: &Server,
    (endpoint, secret): (&str, &str),
    rx: &Receiver,
    want: &[&str],
) -> (Vec<Value>, Vec<Received>) {
    let list = wait_until("every webhook delivered", Duration::from_secs(90), || {
        let list = deliveries(server, endpoint);
        let kinds: HashSet<&str> = list.iter().filter_map(|d| d["type"].as_str()).collect();
        let done = list.iter().all(|d| d["status"] == "delivered");
        let ids: HashSet<String> = rx.got().into_iter().map(|r| r.id).collect();
        let held = list
            .iter()
            .all(|d| ids.contains(d["event_id"].as_str().unwrap()));
        (done && held && want.iter().all(|k| kinds.contains(k))).then_some(list)
    });
    let got = rx.got();
    for r in &got {
        assert_signed(r, secret);
    }
    (list, got)
}

#[test]
fn every_event_arrives_once_in_order_signed_through_failures_and_replays() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = server();
    let addr = free_addr();
    let url = format!("http://{addr}/hook");
    let (endpoint, secret) = register(&server, &url);
    for (body, code) in [
        (
            json!({ "url": url, "event_types": ["asset.nope"] }),
            "bad_event_types",
        ),
        (json!({ "url": url, "event_types": [] }), "bad_event_types"),
        (
            json!({ "url": "ftp://example.com/x", "event_types": ["*"] }),
            "bad_url",
        ),
        (
            json!({ "url": "http://u:p@example.com/x", "event_types": ["*"] }),
            "bad_url",
        ),
    ] {
        let (s, v) = server.post("/api/v1/webhooks", Some(&server.token), body.clone());
        assert_eq!((s, error_code(&v)), (400, code), "{body}: {v}");
    }

    // Down: nothing listens while the session is recorded and shared.
    let r = server.push(
        &fixture(H264_AAC).unwrap(),
        &["--realtime", "--drop-after", "60"],
    );
    assert!(r.ok, "{}\n{}", r.stdout, r.stderr);
    let session = r.session();
    let (s, v) = server.post(
        "/api/v1/shares",
        Some(&server.token),
        json!({ "asset_id": session }),
    );
    assert_eq!(s, 201, "{v}");
    wait_until("a failed attempt", Duration::from_secs(20), || {
        (server.metric("sharecast_webhook_deliveries_total{result=\"retried\"}") >= 2.0)
            .then_some(())
    });

    // Up: three 500s, then one answer slower than the server waits.
    let rx = Receiver::default();
    rx.plan.lock().unwrap().extend([
        Behaviour::Fail,
        Behaviour::Fail,
        Behaviour::Fail,
        Behaviour::Slow(Duration::from_millis(2500)),
    ]);
    rx.listen(&rt, addr);
    let want = [
        "session.started",
        "asset.ready",
        "session.ended",
        "share.created",
    ];
    let (list, got) = all_delivered(&server, (&endpoint, &secret), &rx, &want);
    assert!(got.iter().filter(|r| r.answered == 500).count() >= 3);
    // The documented snippet accepts every request, and refuses a changed body.
    let verdicts = documented_verify(&got, &secret);
    assert_eq!(verdicts.len(), got.len() + 1);
    assert!(verdicts[..got.len()].iter().all(|ok| *ok), "{verdicts:?}");
    assert!(!verdicts[got.len()], "a changed body passed the snippet");
    // The slow answer's event was sent again: a duplicate to drop.
    assert!(got.len() > dedup(&got).len(), "no duplicate was sent");
    let events = dedup(&got);
    let kinds = assert_ordered(&events);
    assert_eq!(
        events.len(),
        list.len(),
        "the receiver holds what the server sent"
    );
    let of_session = &kinds[&format!("session:{session}")];
    assert_eq!(of_session[0], "session.started", "{of_session:?}");
    let pos = |k: &str| of_session.iter().position(|x| x == k).unwrap();
    assert!(pos("asset.ready") < pos("session.ended"), "{of_session:?}");
    assert!(kinds.keys().any(|s| s.starts_with("share:")), "{kinds:?}");
    for e in &events {
        assert!(e["timestamp_ms"].as_i64().unwrap() > 0, "{e}");
        assert!(e["data"].is_object(), "{e}");
    }
    let started = events
        .iter()
        .find(|e| e["type"] == "session.started")
        .unwrap();
    assert_eq!(started["data"]["session_id"], session.as_str());
    assert_eq!(started["sequence"], 1);
    assert!(
        server.metric("sharecast_webhook_deliveries_total{result=\"delivered\"}")
            >= list.len() as f64
    );

    // Replay from the session's first event: the same events again, in order.
    let first = started["id"].as_str().unwrap();
    let before = rx.got().len();
    let (s, v) = server.post_empty(
        &format!("/api/v1/webhooks/{endpoint}/replay?from={first}"),
        Some(&server.token),
    );
    assert_eq!(s, 202, "{v}");
    let queued = v["queued"].as_u64().unwrap() as usize;
    assert_eq!(queued, list.len(), "{v}");
    wait_until("the replay", Duration::from_secs(30), || {
        (dedup(&rx.got()[before..]).len() == queued
            && deliveries(&server, &endpoint)
                .iter()
                .all(|d| d["status"] == "delivered"))
        .then_some(())
    });
    let replayed = dedup(&rx.got()[before..]);
    assert_eq!(assert_ordered(&replayed), kinds);
    for r in &rx.got()[before..] {
        assert_signed(r, &secret);
    }
    // After deduplication, still each event once.
    assert_eq!(dedup(&rx.got()).len(), list.len());

    // Unknown event, another device's endpoint.
    let (s, v) = server.post_empty(
        &format!("/api/v1/webhooks/{endpoint}/replay?from=00ff"),
        Some(&server.token),
    );
    assert_eq!((s, error_code(&v)), (404, "unknown_event"));
    let other = server.add_device("other");
    let (s, v) = server.get("/api/v1/webhooks", Some(&other));
    assert_eq!(
        (s, v["webhooks"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    let (s, v) = server.get("/api/v1/webhooks", Some(&server.token));
    assert_eq!(v["webhooks"][0]["id"], endpoint.as_str(), "{s} {v}");
    assert!(v["webhooks"][0].get("secret").is_none(), "{v}");
    let (s, _) = server.delete(&format!("/api/v1/webhooks/{endpoint}"), Some(&other));
    assert_eq!(s, 404);
    let (s, _) = server.post_empty(
        &format!("/api/v1/webhooks/{endpoint}/replay?from={first}"),
        Some(&other),
    );
    assert_eq!(s, 404);
}

#[test]
fn an_event_survives_a_kill_9_between_its_change_and_its_delivery() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut server = server();
    let addr = free_addr();
    let (endpoint, secret) = register(&server, &format!("http://{addr}/hook"));

    // The session starts while the receiver is down; the server is killed
    // before it could deliver anything.
    let src = fixture(H264_AAC).unwrap();
    let (push, session, _out) = server.spawn_push(&src, &["--realtime"]);
    std::thread::sleep(Duration::from_millis(1200));
    let pending = deliveries(&server, &endpoint);
    assert!(
        pending
            .iter()
            .any(|d| d["type"] == "session.started" && d["status"] == "pending"),
        "{pending:?}"
    );
    let ingest = server.ingest.clone();
    server.kill9();
    std::thread::sleep(Duration::from_millis(500));
    server.restart(Some(&ingest));
    let out = push.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "push failed after the restart:\n{stderr}"
    );

    let rx = Receiver::default();
    rx.listen(&rt, addr);
    let want = [
        "session.started",
        "session.suspended",
        "asset.ready",
        "session.ended",
    ];
    let (list, got) = all_delivered(&server, (&endpoint, &secret), &rx, &want);
    let events = dedup(&got);
    assert_eq!(events.len(), list.len());
    let kinds = assert_ordered(&events);
    let of_session = &kinds[&format!("session:{session}")];
    assert_eq!(of_session[0], "session.started", "{of_session:?}");
    // The restart suspended the session; the phone resumed it.
    let suspended = of_session
        .iter()
        .position(|k| k == "session.suspended")
        .unwrap();
    assert_eq!(
        of_session[suspended + 1],
        "session.resumed",
        "{of_session:?}"
    );
    assert!(Path::new(&server.session_file(&session, "source.mp4")).exists());
}
