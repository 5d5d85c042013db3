//! REPORT (0x08, `docs/ingest-protocol.md` §4.8) from the uploader's side,
//! against a minimal server of this test (QUIC on loopback): a server
//! whose WELCOME says `reports` gets one about every second with the
//! advice and the backlog; a server that does not say so (every server
//! before REPORT existed, which would refuse the unknown type) never gets
//! one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sharecast_client_sdk::{Trust, Uploader, UploaderConfig};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::ingest::{
    Ack, Control, ControlDecoder, FrameDecoder, Limits, Welcome, ALPN,
};
use sharecast_formats::media::{Codec, MediaFrame, TrackInfo};

/// What the server saw: the type of every control message after HELLO,
/// and the REPORTs.
#[derive(Default)]
struct Seen {
    types: Vec<u8>,
    reports: Vec<sharecast_formats::ingest::Report>,
}

/// A server that takes one session: WELCOME (`reports` as asked), an ACK
/// for every frame, FINISHED after END.
async fn server(reports: bool) -> (quinn::Endpoint, String, Arc<Mutex<Seen>>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = cert.cert.der().clone();
    let fingerprint = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(der.as_ref()));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let mut crypto = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .unwrap();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let qcrypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).unwrap();
    let config = quinn::ServerConfig::with_crypto(Arc::new(qcrypto));
    let ep = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (accept, s) = (ep.clone(), seen.clone());
    tokio::spawn(async move {
        let conn = accept.accept().await.unwrap().await.unwrap();
        serve(conn, reports, s).await;
    });
    (ep, fingerprint, seen)
}

async fn serve(conn: quinn::Connection, reports: bool, seen: Arc<Mutex<Seen>>) {
    let (mut send, mut recv) = conn.accept_bi().await.unwrap();
    let mut dec = ControlDecoder::new();
    let hello = match next(&mut recv, &mut dec).await {
        Some(Control::Hello(h)) => h,
        other => panic!("expected HELLO, got {other:?}"),
    };
    let next_seq: BTreeMap<u8, u64> = hello.tracks.iter().map(|t| (t.id, 0)).collect();
    let welcome = Welcome {
        session_id: "s1".into(),
        resume_secret: "r1".into(),
        resumed: false,
        next_seq: next_seq.clone(),
        held: BTreeMap::new(),
        limits: Limits {
            max_frame_bytes: 1 << 20,
            max_bitrate_bps: 100_000_000,
            max_session_secs: 3600,
        },
        live_urls: vec![],
        reports,
    };
    send.write_all(&Control::Welcome(welcome).encode())
        .await
        .unwrap();
    // Frames: acknowledged as they come.
    let acked = Arc::new(Mutex::new(next_seq));
    let (frames_conn, frames_acked, ack_tx) = (
        conn.clone(),
        acked.clone(),
        Arc::new(tokio::sync::Notify::new()),
    );
    let notify = ack_tx.clone();
    tokio::spawn(async move {
        while let Ok(mut uni) = frames_conn.accept_uni().await {
            let (acked, notify) = (frames_acked.clone(), notify.clone());
            tokio::spawn(async move {
                let mut d = FrameDecoder::new(1 << 20);
                while let Ok(Some(chunk)) = uni.read_chunk(65536, true).await {
                    d.push(&chunk.bytes);
                    while let Ok(Some(f)) = d.decode_next() {
                        let mut a = acked.lock().unwrap();
                        let n = a.entry(f.track).or_default();
                        *n = (*n).max(f.seq + 1);
                        notify.notify_one();
                    }
                }
            });
        }
    });
    loop {
        tokio::select! {
            msg = next(&mut recv, &mut dec) => {
                let Some(msg) = msg else { return };
                let end = matches!(msg, Control::End(_));
                {
                    let mut s = seen.lock().unwrap();
                    s.types.push(msg.type_byte());
                    if let Control::Report(r) = msg {
                        s.reports.push(r);
                    }
                }
                if end {
                    let ack = Ack { next_seq: acked.lock().unwrap().clone(), held: BTreeMap::new() };
                    send.write_all(&Control::Ack(ack).encode()).await.unwrap();
                    let finished = sharecast_formats::ingest::Finished { attributes: VideoAttributes::default() };
                    send.write_all(&Control::Finished(finished).encode()).await.unwrap();
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.closed()).await;
                    return;
                }
            }
            _ = ack_tx.notified() => {
                let ack = Ack { next_seq: acked.lock().unwrap().clone(), held: BTreeMap::new() };
                send.write_all(&Control::Ack(ack).encode()).await.unwrap();
            }
        }
    }
}

/// The next control message; `None` when the stream ends.
async fn next(recv: &mut quinn::RecvStream, dec: &mut ControlDecoder) -> Option<Control> {
    loop {
        if let Some(m) = dec.decode_next().expect("a control message") {
            return Some(m);
        }
        let chunk = recv.read_chunk(65536, true).await.ok()??;
        dec.push(&chunk.bytes);
    }
}

/// Films 3.5 s of audio frames (in real time, sped up ×2) to a server
/// that takes REPORTs or not; what the server saw.
async fn film(reports: bool) -> Arc<Mutex<Seen>> {
    let (ep, fingerprint, seen) = server(reports).await;
    let addr = ep.local_addr().unwrap().to_string();
    let cfg = UploaderConfig::new(addr, "sc_test", Trust::PinSha256(fingerprint));
    let tracks = vec![TrackInfo::audio(0, Codec::Aac, vec![0x11, 0x90], 48_000, 2)];
    let up = Uploader::start(cfg, tracks, 0).await.expect("session");
    for i in 0..160i64 {
        let frame = MediaFrame {
            track: 0,
            seq: 0,
            pts_us: i * 21_333,
            dts_us: i * 21_333,
            duration_us: 21_333,
            keyframe: true,
            data: Bytes::from(vec![(i % 251) as u8; 300]),
        };
        up.send(frame).await.unwrap();
        tokio::time::sleep(Duration::from_millis(22)).await;
    }
    let (r, _) = up.end().await;
    r.expect("finished");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_takes_reports_gets_them_about_every_second() {
    let seen = film(true).await;
    let s = seen.lock().unwrap();
    // About 3.5 s of filming: the first at once, then one a second.
    assert!(
        (3..=6).contains(&s.reports.len()),
        "{} REPORTs: {:?}",
        s.reports.len(),
        s.types
    );
    assert!(
        s.reports
            .iter()
            .all(|r| r.advised_bps.is_some_and(|b| b > 0)),
        "{:?}",
        s.reports
    );
    assert!(s
        .reports
        .iter()
        .all(|r| r.backlog_frames.is_some() && r.backlog_bytes.is_some()));
    assert_eq!(s.types.last(), Some(&0x04), "END last: {:?}", s.types);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_does_not_say_so_never_gets_one() {
    let seen = film(false).await;
    let s = seen.lock().unwrap();
    assert_eq!(s.types, [0x04], "only END after HELLO");
}
