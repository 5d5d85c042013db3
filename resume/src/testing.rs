//! Test helpers: a store in a temporary directory, and a small HTTP server
//! on loopback that answers each path as it is told (another platform, as
//! the outbound policy and the fetches meet it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;
use sharecast_formats::attributes::{Rendition, VideoAttributes};
use sharecast_store::testing::TestDir;
use sharecast_store::{ShareRecord, Store};
use sharecast_tokens::{LinkSigner, Signer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::outbound::{Outbound, OutboundConfig};
use crate::{ResumeConfig, ResumeService};

/// The Prometheus text of the families `register` adds to a registry
/// with the server's prefix.
pub(crate) fn scrape(register: impl FnOnce(&mut Registry)) -> String {
    let mut registry = Registry::with_prefix("sharecast");
    register(&mut registry);
    let mut out = String::new();
    prometheus_text::encode(&mut out, &registry).unwrap();
    out
}

/// This platform's base URL in the service tests.
pub(crate) const PLATFORM: &str = "http://a";

/// A store (on the engine `SHARECAST_TEST_STORE` names) and a temporary
/// directory, kept alive by the returned guard.
pub(crate) async fn store() -> (Store, TestDir) {
    sharecast_store::testing::store().await
}

/// A service at [`PLATFORM`] over a store in a temporary directory, with
/// the default configuration.
pub(crate) async fn service() -> (ResumeService, TestDir) {
    service_with(ResumeConfig::default()).await
}

/// [`service`] with this configuration.
pub(crate) async fn service_with(cfg: ResumeConfig) -> (ResumeService, TestDir) {
    let (store, dir) = store().await;
    let links = LinkSigner::new(Signer::new(vec![3u8; 32]));
    let outbound = Outbound::new(&OutboundConfig::default()).unwrap();
    let s = ResumeService::new(store, cfg, dir.path(), PLATFORM.into(), links, outbound);
    (s, dir)
}

/// A new terminal of `kind` for the user: its id.
pub(crate) async fn terminal(s: &ResumeService, user_id: &str, kind: &str) -> String {
    let t = s.add_terminal(user_id, kind, None).await.unwrap();
    t.terminal_id
}

/// Records a finished recording `id` of `duration_ms`: an H.265 source
/// (which browsers do not play) and a 480p H.264 rendition.
pub(crate) async fn ready_asset(store: &Store, id: &str, duration_ms: u64) {
    let rendition = |name: &str, codec: &str, height: u32| Rendition {
        name: name.into(),
        url: format!("{PLATFORM}/vod/{id}/{name}.mp4"),
        container: "mp4".into(),
        codecs: vec![codec.into(), "mp4a.40.2".into()],
        width: height * 16 / 9,
        height,
        duration_ms,
        ..Rendition::default()
    };
    let source = rendition("source", "hvc1.1.6.L93.B0", 1080);
    let attrs = VideoAttributes {
        id: id.into(),
        vod_url: Some(source.url.clone()),
        container: "mp4".into(),
        codecs: source.codecs.clone(),
        width: source.width,
        height: source.height,
        frame_rate: 30.0,
        duration_ms,
        renditions: vec![source, rendition("480p", "avc1.4D401F", 480)],
        ..VideoAttributes::default()
    };
    store.asset_recording(id, "dev", None, 1).await.unwrap();
    store.asset_ready(id, &attrs).await.unwrap();
}

/// Shares asset `id` with everyone (a public share that does not expire).
pub(crate) async fn publish(store: &Store, id: &str) {
    let share = ShareRecord {
        id: format!("share-{id}"),
        token: format!("token-{id}"),
        asset_id: id.into(),
        device_id: "dev".into(),
        kind: "vod".into(),
        event_key: None,
        attributes: VideoAttributes::default(),
        created_ms: 1,
        expires_ms: None,
        revoked_ms: None,
        public: true,
    };
    store.insert_share(&share).await.unwrap();
}

/// What the test server answers on a path.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// 200 with this body, its length announced.
    Body(Vec<u8>),
    /// 200 with these chunks, no length announced.
    Chunked(Vec<Vec<u8>>),
    /// 200 after this long.
    Slow(Duration),
    /// 307 to this location.
    Redirect(String),
}

/// A running test server.
pub(crate) struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// Its address.
    pub(crate) addr: SocketAddr,
    /// Requests it received.
    pub(crate) hits: Arc<AtomicUsize>,
}

/// Serves `routes` (path without query → reply) on loopback, `fallback`
/// (or 404) for any other path.
pub(crate) async fn serve(routes: &[(&str, Reply)], fallback: Option<Reply>) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes: Arc<HashMap<String, Reply>> = Arc::new(
        routes
            .iter()
            .map(|(p, r)| (p.to_string(), r.clone()))
            .collect(),
    );
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (routes, fallback) = (routes.clone(), fallback.clone());
            tokio::spawn(async move {
                let _ = answer(conn, &routes, fallback).await;
            });
        }
    });
    TestServer {
        base: format!("http://{addr}"),
        addr,
        hits,
    }
}

/// Reads one request (its head, and a body of the announced length) and
/// answers it.
async fn answer(
    mut conn: TcpStream,
    routes: &HashMap<String, Reply>,
    fallback: Option<Reply>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let target = head.split(' ').nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or(target);
    let reply = routes.get(path).cloned().or(fallback);
    write_reply(&mut conn, reply).await
}

async fn write_reply(conn: &mut TcpStream, reply: Option<Reply>) -> std::io::Result<()> {
    let ok = "HTTP/1.1 200 OK\r\nConnection: close\r\n";
    match reply {
        None => {
            conn.write_all(
                b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )
            .await
        }
        Some(Reply::Body(body)) => {
            let head = format!("{ok}Content-Length: {}\r\n\r\n", body.len());
            conn.write_all(head.as_bytes()).await?;
            conn.write_all(&body).await
        }
        Some(Reply::Chunked(chunks)) => {
            let head = format!("{ok}Transfer-Encoding: chunked\r\n\r\n");
            conn.write_all(head.as_bytes()).await?;
            for c in chunks {
                conn.write_all(format!("{:x}\r\n", c.len()).as_bytes())
                    .await?;
                conn.write_all(&c).await?;
                conn.write_all(b"\r\n").await?;
            }
            conn.write_all(b"0\r\n\r\n").await
        }
        Some(Reply::Slow(wait)) => {
            tokio::time::sleep(wait).await;
            conn.write_all(format!("{ok}Content-Length: 4\r\n\r\nlate").as_bytes())
                .await
        }
        Some(Reply::Redirect(to)) => {
            let head = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nConnection: close\r\nLocation: {to}\r\nContent-Length: 0\r\n\r\n"
            );
            conn.write_all(head.as_bytes()).await
        }
    }
}
