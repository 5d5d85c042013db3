//! The ingest server and the client SDK over real QUIC on loopback, with an
//! in-memory output standing in for the transcoder: uploads recorded in
//! order, resume after drops and restarts, connection migration, the
//! journal's group commit, certificates and ALPN.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use sharecast_client_sdk::{Trust, UploadError, Uploader};
use sharecast_formats::ingest::{encode_frame, ControlDecoder, ALPN};
use sharecast_ingest::config::JournalSync;
use sharecast_ingest::journal;
use sharecast_ingest::{ConnectionChange, IngestConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_is_recorded_in_order_and_finished_once() {
    let env = Env::new().await;
    // The frames go much faster than real time: without a high live
    // threshold the uploader could (correctly) jump to the live edge while
    // they wait, and the live output would not see every frame.
    let up = env
        .phone_with(|c| c.live_threshold = Duration::from_secs(3600))
        .await;
    assert!(up.live_urls()[0].ends_with(up.session_id()));
    upload(&up, 100, |_, _| {}).await;
    let attrs = up.finish().await.unwrap();
    assert_eq!(attrs.container, "mp4");
    env.assert_complete(100, 100);
    assert_eq!(env.mem.finished(), 1);
    assert_eq!(env.mem.live.lock().unwrap().len(), 200);
}

/// A recording that fails mid-session (its disk full) takes no more
/// frames and is made again from the journal when the session ends: every
/// frame once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recording_is_made_again_from_the_journal() {
    use std::sync::atomic::Ordering::SeqCst;
    let env = Env::new().await;
    env.mem.fail_records.store(1, SeqCst);
    let up = env
        .phone_with(|c| c.live_threshold = Duration::from_secs(3600))
        .await;
    upload(&up, 100, |_, _| {}).await;
    up.finish().await.unwrap();
    assert_eq!(env.mem.fail_records.load(SeqCst), 0, "a record failed");
    assert_eq!(env.mem.restarts.load(SeqCst), 1);
    env.assert_complete(100, 100);
    assert_eq!(env.mem.finished(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_resume_without_loss_or_duplicates() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("debug,quinn=info,quinn_proto=info")
        .with_test_writer()
        .try_init();
    let env = Env::new().await;
    let up = env.phone().await;
    let mut filmed = 0;
    for (k, cut) in [50i64, 120, 220].into_iter().enumerate() {
        film(&up, filmed..cut, Duration::ZERO).await;
        filmed = cut;
        up.drop_connection();
        // Keep filming while disconnected; wait for the resume.
        eventually(Duration::from_secs(5), || up.stats().resumes as usize > k).await;
    }
    film(&up, filmed..300, Duration::ZERO).await;
    let stats = up.stats();
    up.finish().await.unwrap();
    assert_eq!(stats.resumes, 3);
    env.assert_complete(300, 300);
    assert_eq!(env.metric("sharecast_ingest_sessions_resumed_total "), 3);
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingest_socket_gets_large_buffers_and_reports_its_drops() {
    // The system default (about 208 KiB) overflows under a few hundred
    // phones; the server asks for `udp_buffer_bytes` and gets at least what
    // the kernel's cap allows (more when it may force it).
    let cap: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let want = IngestConfig::default().udp_buffer_bytes;
    let env = Env::new().await;
    let got = env.server.udp_buffers().receive;
    assert!(got >= want.min(cap), "asked {want}, cap {cap}, got {got}");
    assert_eq!(
        env.metric("sharecast_ingest_udp_receive_buffer_bytes "),
        got as u64
    );
    assert_eq!(env.metric("sharecast_ingest_udp_receive_drops_total "), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_change_keeps_the_connection() {
    let env = Env::new().await;
    let up = env.phone().await;
    let mut rebound = None;
    upload(&up, 150, |i, up| {
        if i == 60 {
            let before = up.local_addr();
            let after = up.rebind().unwrap();
            assert_ne!(before, Some(after));
            rebound = Some(after);
        }
    })
    .await;
    let stats = up.stats();
    up.finish().await.unwrap();
    assert!(rebound.is_some());
    assert_eq!(stats.resumes, 0, "migration must not need a reconnect");
    env.assert_complete(150, 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_recovery_reopens_an_unfinished_session() {
    // A session whose server goes away is recovered by a new server on the same
    // data directory, and its phone resumes it.
    let env = Env::new().await;
    let up = env
        .phone_with(|c| c.reconnect_deadline = Duration::from_secs(30))
        .await;
    upload(&up, 40, |_, _| {}).await;
    // Wait until everything sent so far is durable, then stop the server.
    eventually(Duration::from_secs(2), || up.stats().frames_acked == 80).await;
    let (env, recovered) = env.restart().await;
    assert_eq!(recovered, 1);
    film(&up, 40..80, Duration::ZERO).await;
    up.finish().await.unwrap();
    env.assert_complete(80, 80);
    // The recovered session was suspended by the restart, then resumed.
    assert_eq!(
        *env.mem.connection_changes.lock().unwrap(),
        [
            ConnectionChange::Suspended {
                reason: "server_restart"
            },
            ConnectionChange::Resumed
        ]
    );
    assert!(env.dir.path().join("sessions").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_never_returns_is_finalised_after_the_resume_timeout() {
    let env = Env::with(|c| c.resume_timeout_secs = 1).await;
    let (ep, conn, _s, mut r) = raw(&env).await;
    let mut u = conn.open_uni().await.unwrap();
    for i in 0..10 {
        u.write_all(&encode_frame(&numbered(0, i))).await.unwrap();
    }
    u.finish().unwrap();
    // Let the frames become durable, then vanish without END.
    until_acked(&mut r, &mut ControlDecoder::new(), 0, 9).await;
    conn.close(0u32.into(), b"gone");
    drop(ep);
    // Finalised: the outputs finished, then the session closed (its
    // journal ended) and gone from the server.
    let gone = || env.mem.finished() == 1 && env.server.sessions().is_empty();
    eventually(Duration::from_secs(5), gone).await;
    assert_eq!(env.mem.finished(), 1, "session not finalised");
    assert_eq!(env.mem.recorded.lock().unwrap().len(), 10);
    assert!(env.server.sessions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_certificate_chain_is_verified_by_the_client() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["ingest.test".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let chain = dir.path().join("chain.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&chain, format!("{}{}", leaf.pem(), ca.pem())).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    let env = Env::with(|c| {
        c.cert_chain = chain.display().to_string();
        c.private_key = key.display().to_string();
    })
    .await;
    let mut c = env.client("good");
    c.trust = Trust::CaPem(ca.pem().into_bytes());
    c.server_name = Some("ingest.test".into());
    let up = Uploader::start(c.clone(), tracks(), 0).await.unwrap();
    upload(&up, 5, |_, _| {}).await;
    up.finish().await.unwrap();
    // The wrong name, or a pin of another certificate, is refused.
    c.server_name = Some("other.test".into());
    assert!(matches!(
        Uploader::start(c.clone(), tracks(), 0).await,
        Err(UploadError::Disconnected(_))
    ));
    let mut p = env.client("good");
    p.trust = Trust::PinSha256("00".repeat(32));
    assert!(Uploader::start(p, tracks(), 0).await.is_err());
}

/// Durable frames reach the recording in batches (about every 300 ms), not
/// one by one as each commit round ends, so the recording's threads wake
/// once per batch; every frame still arrives once, in order, and the last
/// batch is flushed before the recording is finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_frames_reach_the_recording_in_batches() {
    let env = Env::new().await;
    let up = env.phone().await;
    // About 1.2 s of frames, 5 ms apart; commit rounds every 20 ms.
    film(&up, 0..240, Duration::from_millis(5)).await;
    up.finish().await.unwrap();
    env.assert_complete(240, 240);
    let times = env.mem.record_times.lock().unwrap().clone();
    let gaps = times
        .windows(2)
        .filter(|w| w[1] - w[0] > Duration::from_millis(150))
        .count();
    // Per round, frames would arrive every ~20 ms with no gap this long.
    assert!(
        gaps >= 2,
        "{gaps} pauses of more than 150 ms between {} record calls",
        times.len()
    );
}

/// The journal commit delay gathers the frames that follow the first one
/// into the same write and fdatasync: far fewer commits than frames, and
/// every frame still acknowledged and recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_delay_groups_frames_into_fewer_syncs() {
    let mut counts = Vec::new();
    for delay_ms in [0u64, 50] {
        let env = Env::with(|c| c.journal_commit_delay_ms = delay_ms).await;
        let up = env.phone().await;
        // Frames spread over about half a second, as a camera sends them.
        film(&up, 0..100, Duration::from_millis(5)).await;
        up.finish().await.unwrap();
        env.assert_complete(100, 100);
        counts.push(env.metric("sharecast_ingest_journal_commits_total "));
    }
    let (none, delayed) = (counts[0], counts[1]);
    assert!(
        delayed * 3 <= none,
        "commits without delay {none}, with a 50 ms delay {delayed}"
    );
}

/// The server speaks only its own ALPN: a client offering another protocol,
/// or none, fails the TLS handshake and is counted; a client offering
/// `sharecast/1` over the same trust gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_sharecast_alpn_is_accepted() {
    let env = Env::new().await;
    let cert = std::fs::read(env.dir.path().join("tls").join("cert.pem")).unwrap();
    let connect = |alpn: Vec<Vec<u8>>| {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut cert.as_slice()) {
            roots.add(c.unwrap()).unwrap();
        }
        let mut crypto = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        crypto.alpn_protocols = alpn;
        let qc = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(qc)));
        let addr = env.server.local_addr().unwrap();
        async move {
            let r = ep.connect(addr, "localhost").unwrap().await;
            (ep, r)
        }
    };
    let failed = || env.metric("sharecast_ingest_handshakes_failed_total ");
    for (i, alpn) in [vec![b"h3".to_vec()], vec![]].into_iter().enumerate() {
        let (_ep, r) = connect(alpn.clone()).await;
        let err = r.expect_err("a handshake without our ALPN must fail");
        // TLS alert 120, no_application_protocol (RFC 8446 §6, RFC 9001 §8.1).
        assert!(
            format!("{err}").contains("120")
                || format!("{err:?}").contains("NoApplicationProtocol"),
            "ALPN {alpn:?}: {err:?}"
        );
        eventually(Duration::from_secs(5), || failed() > i as u64).await;
        assert_eq!(failed(), i as u64 + 1, "ALPN {alpn:?} not counted");
    }
    let (_ep, r) = connect(vec![ALPN.to_vec()]).await;
    let conn = r.expect("our ALPN is accepted");
    assert_eq!(
        conn.handshake_data()
            .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
            .and_then(|d| d.protocol),
        Some(b"sharecast/1".to_vec())
    );
}

/// One committer makes every session's frames durable: sessions sending at
/// the same time share commit rounds (at most one per commit delay, however
/// many sessions), with either sync mode, and every journal holds its
/// session's frames exactly once, in order, ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_share_commit_rounds() {
    const SESSIONS: usize = 6;
    const FRAMES: i64 = 60;
    let delay_ms = 20u64;
    for sync in [JournalSync::Filesystem, JournalSync::File] {
        let env = Env::with(|c| {
            c.journal_commit_delay_ms = delay_ms;
            c.journal_sync = sync;
            c.max_sessions_per_device = 2 * SESSIONS;
        })
        .await;
        let started = std::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..SESSIONS {
            let cfg = env.client("good");
            tasks.push(tokio::spawn(async move {
                let up = Uploader::start(cfg, tracks(), 0).await.unwrap();
                film(&up, 0..FRAMES, Duration::from_millis(5)).await;
                let id = up.session_id().to_string();
                up.finish().await.unwrap();
                id
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        let commits = env.metric("sharecast_ingest_journal_commits_total ");
        eprintln!("{sync:?}: {commits} rounds in {elapsed_ms} ms");
        // A committer per session would need about SESSIONS times one
        // session's rounds.
        assert!(
            commits <= elapsed_ms / delay_ms + 1,
            "{sync:?}: {commits} commit rounds in {elapsed_ms} ms with a {delay_ms} ms delay"
        );
        assert_eq!(
            env.mem.recorded.lock().unwrap().len(),
            SESSIONS * 2 * FRAMES as usize
        );
        for id in ids {
            let path = env.dir.path().join("sessions").join(&id).join("journal");
            let rec = journal::recover(&path).unwrap();
            assert!(rec.ended, "{sync:?}: {id} has no END record");
            for track in [0u8, 1] {
                assert_eq!(
                    seqs(&rec.frames, track),
                    (0..FRAMES as u64).collect::<Vec<_>>(),
                    "{sync:?}: {id} track {track}"
                );
            }
        }
    }
}

/// Security review, ingest finding 5: session ids (which are also the
/// asset ids addressing the VOD files) and resume secrets are 128 random
/// bits: 32 lowercase hex digits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_ids_and_resume_secrets_are_128_random_bits() {
    let env = Env::new().await;
    let mut ids = HashSet::new();
    for _ in 0..3 {
        let (_ep, conn, _s, mut r) = raw(&env).await;
        let w = expect_welcome(&mut r, &mut ControlDecoder::new()).await;
        for v in [&w.session_id, &w.resume_secret] {
            assert_eq!(v.len(), 32, "{v}");
            assert!(v
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        assert!(w.live_urls[0].ends_with(&w.session_id));
        assert!(ids.insert(w.session_id.clone()));
        conn.close(0u32.into(), b"bye");
    }
}
