//! The access policy, proven route by route: every route the server has
//! (`GET /api/v1/admin/routes`, the table the router is built from) is
//! called with no credential, a wrong one, the owner's and another device's
//! or user's, the admin's, valid, expired and tampered playback tokens and
//! signed links, and the answer is checked against the route's declared
//! rule. A route whose path this test cannot fill fails it, so a new route
//! is covered as soon as it exists; a `.route(` outside the route table
//! fails it too, and so does a route missing from `docs/security.md`.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use sharecast_testkit::*;

fn hmac_hex(key: &[u8], msg: &str) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Flips the last hex digit of a token.
fn tamper(t: &str) -> String {
    let mut s = t.to_string();
    let last = s.pop().unwrap();
    s.push(if last == '0' { '1' } else { '0' });
    s
}

/// A kind of credential the matrix tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    None,
    Wrong,
    DeviceA,
    DeviceB,
    UserA,
    UserB,
    Admin,
    Playback,
    PlaybackExpired,
    PlaybackTampered,
    LinkExpired,
    LinkTampered,
    SmsKey,
}

const CREDS: [Cred; 13] = [
    Cred::None,
    Cred::Wrong,
    Cred::DeviceA,
    Cred::DeviceB,
    Cred::UserA,
    Cred::UserB,
    Cred::Admin,
    Cred::Playback,
    Cred::PlaybackExpired,
    Cred::PlaybackTampered,
    Cred::LinkExpired,
    Cred::LinkTampered,
    Cred::SmsKey,
];

/// What the matrix expects of a call.
#[derive(Debug, PartialEq, Eq)]
enum Want {
    /// Past the policy: anything but 401 and 403 (the request itself may
    /// still be wrong: 400, 404, 422…).
    Through,
    /// Authenticated, but the resource is another's: 403 or 404.
    NotYours,
    /// Refused by the policy: 401 or 403 (410 for an expired link).
    Refused,
}

struct World {
    http: String,
    device_a: String,
    device_b: String,
    user_a: String,
    user_b: String,
    admin: String,
    sms_key: String,
    playback: String,
    playback_key: Vec<u8>,
    link_key: Vec<u8>,
    ready: String,
    live: String,
    share_id: String,
    share_token: String,
    still_id: String,
    still_token: String,
    handoff: Value,
    bookmark: String,
    terminal_a: String,
    /// A publishing key of device A.
    key_a: String,
    /// A webhook endpoint of device A.
    webhook_a: String,
}

impl World {
    fn token(&self, c: Cred, live: &str) -> Option<String> {
        match c {
            Cred::None | Cred::LinkExpired | Cred::LinkTampered | Cred::SmsKey => None,
            Cred::Wrong => Some("sc_00112233445566778899aabbccddeeff0011223344556677".into()),
            Cred::DeviceA => Some(self.device_a.clone()),
            Cred::DeviceB => Some(self.device_b.clone()),
            Cred::UserA => Some(self.user_a.clone()),
            Cred::UserB => Some(self.user_b.clone()),
            Cred::Admin => Some(self.admin.clone()),
            Cred::Playback => Some(self.playback.clone()),
            Cred::PlaybackExpired => {
                let exp = now_s() - 60;
                let mac = hmac_hex(&self.playback_key, &format!("live|{live}|{exp}"));
                Some(format!("{exp}-{}", &mac[..32]))
            }
            Cred::PlaybackTampered => Some(tamper(&self.playback)),
        }
    }

    /// The path with its parameters filled from the world, and a body.
    fn fill(&self, method: &str, path: &str) -> (String, Value) {
        let h = &self.handoff;
        let hid = h["state"]["id"].as_str().unwrap();
        let p = match path {
            "/api/v1/assets/{id}" => format!("/api/v1/assets/{}", self.ready),
            "/api/v1/assets/{id}/frame" => format!("/api/v1/assets/{}/frame?t_ms=0", self.live),
            "/api/v1/assets/{id}/poster.jpg" => format!("/api/v1/assets/{}/poster.jpg", self.live),
            "/vod/{id}/{file}" => format!("/vod/{}/source.mp4", self.ready),
            "/watch/{id}" => format!("/watch/{}", self.live),
            "/live/{id}/{file}" => format!("/live/{}/index.m3u8", self.live),
            "/live/{id}/{rendition}/{file}" => format!("/live/{}/source/index.m3u8", self.live),
            "/api/v1/live/{id}/heartbeat" => format!("/api/v1/live/{}/heartbeat", self.live),
            "/api/v1/live/{id}/playback-tokens" => {
                format!("/api/v1/live/{}/playback-tokens", self.live)
            }
            "/api/v1/shares/{id}" => format!("/api/v1/shares/{}", self.share_id),
            "/api/v1/shares/{id}/deliveries" => {
                format!("/api/v1/shares/{}/deliveries", self.share_id)
            }
            "/api/v1/subscriptions/{recipient}" => "/api/v1/subscriptions/+15550001".into(),
            "/api/v1/publishing-keys/{id}" => format!("/api/v1/publishing-keys/{}", self.key_a),
            "/api/v1/webhooks/{id}" => format!("/api/v1/webhooks/{}", self.webhook_a),
            "/api/v1/webhooks/{id}/replay" => {
                format!("/api/v1/webhooks/{}/replay?from=00ff", self.webhook_a)
            }
            "/s/{token}" => format!("/s/{}", self.share_token),
            "/api/v1/stills/{id}/{file}" => format!("/api/v1/stills/{}/image.jpg", self.still_id),
            "/p/{token}" => format!("/p/{}", self.still_token),
            "/oembed" => format!("/oembed?url={}/p/{}", self.http, self.still_token),
            "/api/v1/catalogue" => format!("/api/v1/catalogue?terminal_id={}", self.terminal_a),
            "/api/v1/bookmarks/{id}/resume" => {
                format!("/api/v1/bookmarks/{}/resume", self.bookmark)
            }
            "/api/v1/handoff/{id}" => format!("/api/v1/handoff/{hid}"),
            "/api/v1/handoff/by-code/{code}" => {
                format!("/api/v1/handoff/by-code/{}", h["code"].as_str().unwrap())
            }
            "/api/v1/handoff/{id}/push" => format!("/api/v1/handoff/{hid}/push"),
            "/api/v1/handoff/{id}/redirect" => {
                format!("/api/v1/handoff/{hid}/redirect?target=http://127.0.0.1:9")
            }
            "/api/v1/handoff/accept" if method == "GET" => format!(
                "/api/v1/handoff/accept?from={}",
                urlencode(h["pull_url"].as_str().unwrap())
            ),
            "/api/v1/transcodes/{id}" => "/api/v1/transcodes/00112233".into(),
            "/api/v1/fetches/{id}" => "/api/v1/fetches/00112233".into(),
            "/api/v1/admin/{what}" => "/api/v1/admin/sessions".into(),
            // An id no session has: nothing is ended or kicked.
            "/api/v1/admin/sessions/{id}/end" => "/api/v1/admin/sessions/00ff/end".into(),
            "/api/v1/admin/viewers/{id}/kick" => "/api/v1/admin/viewers/nobody/kick".into(),
            other => {
                assert!(
                    !other.contains('{'),
                    "no fixture for the route {method} {other}: add one to this test"
                );
                other.to_string()
            }
        };
        // Bodies that parse, so that what the handler checks after the
        // policy (the resource's owner) is what answers.
        let body = match path {
            "/api/v1/stills" => json!({ "content_id": self.live, "t_ms": 0 }),
            "/api/v1/handoff/{id}/push" => json!({ "target": "http://127.0.0.1:9" }),
            "/api/v1/bookmarks/{id}/resume" => json!({ "terminal_id": self.terminal_a }),
            _ => json!({}),
        };
        (p, body)
    }
}

/// What the declared rule says of a credential on a route.
fn expect(access: &str, path: &str, c: Cred) -> Want {
    use Cred::*;
    // Routes whose resource belongs to device A or user A.
    let owned_by_device =
        path.starts_with("/api/v1/shares/{id}") || path == "/api/v1/publishing-keys/{id}";
    let owned_by_user = matches!(
        path,
        "/api/v1/bookmarks/{id}/resume" | "/api/v1/handoff/{id}/push" | "/api/v1/catalogue"
    );
    match access {
        "public" | "capability" | "body_tokens" => Want::Through,
        "device" => match c {
            DeviceA => Want::Through,
            DeviceB if owned_by_device => Want::NotYours,
            DeviceB => Want::Through,
            _ => Want::Refused,
        },
        "device_or_admin" => match c {
            DeviceA | DeviceB | Admin => Want::Through,
            _ => Want::Refused,
        },
        "asset_owner" => match c {
            DeviceA | Admin => Want::Through,
            DeviceB => Want::NotYours,
            _ => Want::Refused,
        },
        "user" => match c {
            UserA => Want::Through,
            UserB if owned_by_user => Want::NotYours,
            UserB => Want::Through,
            _ => Want::Refused,
        },
        "admin" => match c {
            Admin => Want::Through,
            _ => Want::Refused,
        },
        "live_viewer" => match c {
            Playback => Want::Through,
            _ => Want::Refused,
        },
        // The matrix names the live asset: a recording one.
        "asset_viewer" => match c {
            Playback | DeviceA | Admin => Want::Through,
            _ => Want::Refused,
        },
        // The valid link is tried on its own, below.
        "signed_link" => Want::Refused,
        "sms_gateway" => match c {
            SmsKey => Want::Through,
            _ => Want::Refused,
        },
        other => panic!("a rule this test does not know: {other}"),
    }
}

fn build_world(server: &Server) -> (World, ChildGuard) {
    // Device B: another phone of the same server.
    let device_b = server.add_device("other-phone");
    let ready = server.push_fixture(H264_AAC);
    // A live session whose first segment exists, so that token checks are
    // all that stands between a viewer and it.
    let (guard, live, playback) = server.start_live(120);

    let post = |path: &str, token: Option<&str>, body: Value| -> Value {
        let (status, v) = server.post(path, token, body);
        assert!((200..300).contains(&status), "POST {path}: {status} {v}");
        v
    };
    let share = post(
        "/api/v1/shares",
        Some(&server.token),
        json!({ "asset_id": ready }),
    );
    let still = post(
        "/api/v1/stills",
        None,
        json!({ "content_id": ready, "t_ms": 500 }),
    );
    let user_a = server.new_user("alice");
    let user_b = server.new_user("bob");
    let terminal_a = server.new_terminal(&user_a, "web");
    let key_a = post(
        "/api/v1/publishing-keys",
        Some(&server.token),
        json!({ "name": "obs" }),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let webhook_a = post(
        "/api/v1/webhooks",
        Some(&server.token),
        json!({ "url": "http://127.0.0.1:9/hook", "event_types": ["*"] }),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    let handoff = server.new_handoff(&user_a, &ready, 500);
    let bookmark = post(
        "/api/v1/reverse-bookmark",
        None,
        json!({ "content_id": ready, "position_ms": 700, "playback_token": "", "user_token": user_a }),
    )["bookmark_id"]
        .as_str()
        .unwrap()
        .to_string();
    let read = |name: &str| std::fs::read(server.data_dir().join(name)).unwrap();
    let world = World {
        http: server.http.clone(),
        device_a: server.token.clone(),
        device_b,
        user_a,
        user_b,
        admin: server.admin_token(),
        sms_key: server.sms_key(),
        playback,
        playback_key: read("playback-key"),
        link_key: read("signing-key"),
        ready,
        live,
        share_id: share["share"]["id"].as_str().unwrap().to_string(),
        share_token: share["token"].as_str().unwrap().to_string(),
        still_id: still["still_id"].as_str().unwrap().to_string(),
        still_token: still["share_link"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string(),
        handoff,
        bookmark,
        terminal_a,
        key_a,
        webhook_a,
    };
    (world, guard)
}

fn call(w: &World, method: &str, path: &str, c: Cred, extra_query: &str) -> (u16, String) {
    let (mut p, body) = w.fill(method, path);
    if !extra_query.is_empty() {
        p.push(if p.contains('?') { '&' } else { '?' });
        p.push_str(extra_query);
    }
    let url = format!("{}{p}", w.http);
    let http = client();
    let mut req = match method {
        "GET" => http.get(&url),
        "HEAD" => http.head(&url),
        "POST" => http.post(&url).json(&body),
        "DELETE" => http.delete(&url),
        other => panic!("method {other}"),
    };
    // The live asset for live tokens, the ready one for none.
    if let Some(t) = w.token(c, &w.live) {
        req = req.bearer_auth(t);
    }
    let resp = req.send().unwrap();
    let status = resp.status().as_u16();
    let text = if method == "HEAD" {
        String::new()
    } else {
        resp.text().unwrap_or_default().chars().take(300).collect()
    };
    (status, text)
}

#[test]
fn every_route_answers_every_kind_of_credential_as_its_rule_says() {
    // Loopback is a trusted platform here, so that redirects to one are
    // answered (they are refused to everyone otherwise).
    let server = Server::start_with_config("[outbound]\nallowed_hosts = [\"127.0.0.1\"]\n");
    let (w, _push) = build_world(&server);
    let (_, table) = server.get("/api/v1/admin/routes", Some(&w.admin));
    let routes = table["routes"].as_array().unwrap().clone();
    assert!(routes.len() > 50, "{table}");
    let mut checked = 0;
    let mut failures = Vec::new();
    for r in &routes {
        let (method, path, access) = (
            r["method"].as_str().unwrap(),
            r["path"].as_str().unwrap(),
            r["access"].as_str().unwrap(),
        );
        for c in CREDS {
            let extra = match c {
                Cred::SmsKey => format!("key={}", w.sms_key),
                Cred::LinkExpired | Cred::LinkTampered => {
                    let id = w.handoff["state"]["id"].as_str().unwrap();
                    let exp = if c == Cred::LinkExpired {
                        now_s() * 1000 - 60_000
                    } else {
                        now_s() * 1000 + 600_000
                    };
                    let sig = hmac_hex(&w.link_key, &format!("{id}|{exp}"));
                    let sig = if c == Cred::LinkTampered {
                        tamper(&sig)
                    } else {
                        sig
                    };
                    format!("exp={exp}&sig={sig}")
                }
                _ => String::new(),
            };
            // Credentials that live in the body are the interface's own.
            if access == "body_tokens" && c != Cred::None {
                continue;
            }
            let want = expect(access, path, c);
            let (status, text) = call(&w, method, path, c, &extra);
            let ok = match want {
                // (503: a live frame not there yet, past the policy.)
                Want::Through => status != 401 && status != 403 && (status < 500 || status == 503),
                Want::NotYours => status == 403 || status == 404,
                Want::Refused => matches!(status, 401 | 403 | 410),
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} ({access}) with {c:?}: {status}, expected {want:?}: {text}"
                ));
            }
            checked += 1;
        }
    }
    // The signed link itself opens its route.
    let pull = w.handoff["pull_url"].as_str().unwrap();
    let r = client().get(pull).send().unwrap();
    assert_eq!(r.status(), 200, "the valid signed link");
    assert!(
        failures.is_empty(),
        "{} of {checked} calls broke their rule:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{checked} calls over {} routes", routes.len());

    // Every route is in docs/security.md with its rule.
    let doc = std::fs::read_to_string(repo_root().join("docs/security.md")).unwrap();
    let missing: Vec<String> = routes
        .iter()
        .filter_map(|r| {
            let line = format!(
                "| `{} {}` | {} |",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap(),
                r["access"].as_str().unwrap()
            );
            (!doc.contains(&line)).then_some(line)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/security.md lacks these rows:\n{}",
        missing.join("\n")
    );
}

/// Routes are added only through the route table, which requires a rule:
/// no `.route(` call anywhere else in the server's code (tests aside).
#[test]
fn no_route_is_added_outside_the_route_table() {
    let mut offenders = Vec::new();
    let mut stack = vec![repo_root()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                if !name.starts_with('.')
                    && !matches!(
                        name.as_str(),
                        "target" | "tests" | "node_modules" | "fixtures" | "bench" | "docs" | "web"
                    )
                {
                    stack.push(p);
                }
                continue;
            }
            if !name.ends_with(".rs") || p.ends_with("api/src/access.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            // Test modules may build routers of their own.
            let code = text.split("#[cfg(test)]").next().unwrap();
            if code.contains(".route(") || code.contains(".nest(") {
                offenders.push(p.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "routes added outside api/src/access.rs (use Routes::add with a rule): {offenders:?}"
    );
}
