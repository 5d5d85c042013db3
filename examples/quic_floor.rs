//! The transport floor of the ingest benchmark (`bench/ingest.sh`): what
//! receiving N phones' 2 Mbit/s over QUIC costs this machine when the server
//! does nothing with the bytes (no journal, no acknowledgements, no
//! recording). Same QUIC stack (quinn + rustls/ring, TLS 1.3, AES-GCM) and
//! the same transport windows as the ingest server; each "phone" opens one
//! connection and one unidirectional stream and writes one video-frame-sized
//! chunk every 1/30 s.
//!
//! `quic_floor serve --listen ADDR --cert-out FILE` runs until killed and
//! writes its self-signed certificate (DER) to FILE; `quic_floor push
//! --server ADDR --cert FILE --sessions N --seconds S [--kbit 2000]` pushes
//! and prints one line of JSON (bytes, Mbit/s). The benchmark reads the
//! server process's CPU from /proc, as it does for `sharecast serve`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

/// The bare QUIC transport of the ingest benchmark.
#[derive(Parser)]
enum Floor {
    /// Receive and discard until killed; write the self-signed certificate
    /// (DER) to `--cert-out`.
    Serve {
        #[arg(long)]
        listen: SocketAddr,
        #[arg(long)]
        cert_out: String,
    },
    /// Push `--sessions` phones' chunks for `--seconds`; print one line of
    /// JSON.
    Push {
        #[arg(long)]
        server: SocketAddr,
        /// The server's certificate (DER), as `serve` wrote it.
        #[arg(long)]
        cert: String,
        #[arg(long)]
        sessions: usize,
        #[arg(long)]
        seconds: f64,
        /// Each phone's bitrate, kbit/s.
        #[arg(long, default_value_t = 2000)]
        kbit: u64,
    },
}

const ALPN: &[u8] = b"sharecast-floor";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

async fn serve(listen: SocketAddr, cert_out: &str) -> Result<()> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .context("generating a certificate")?;
    let der = cert.cert.der().clone();
    std::fs::write(cert_out, der.as_ref()).with_context(|| format!("writing {cert_out}"))?;
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_single_cert(vec![der], key)
        .context("using the certificate")?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let qc =
        quinn::crypto::rustls::QuicServerConfig::try_from(crypto).context("QUIC TLS config")?;
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(qc));
    // The ingest server's windows.
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(256u32.into());
    transport.stream_receive_window((16u32 * 1024 * 1024).into());
    transport.receive_window((64u32 * 1024 * 1024).into());
    server_config.transport_config(Arc::new(transport));
    let endpoint = quinn::Endpoint::server(server_config, listen)
        .with_context(|| format!("binding udp {listen}"))?;
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok(mut recv) = conn.accept_uni().await {
                tokio::spawn(async move {
                    while let Ok(Some(_chunk)) = recv.read_chunk(usize::MAX, true).await {}
                });
            }
        });
    }
    Ok(())
}

async fn push(
    server: SocketAddr,
    cert: &str,
    sessions: usize,
    seconds: f64,
    kbit: u64,
) -> Result<()> {
    let der = std::fs::read(cert).with_context(|| format!("reading {cert}"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.into()).context("trusting the certificate")?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let qc =
        quinn::crypto::rustls::QuicClientConfig::try_from(crypto).context("QUIC TLS config")?;
    let mut client_config = quinn::ClientConfig::new(Arc::new(qc));
    let mut transport = quinn::TransportConfig::default();
    transport.send_window(32 * 1024 * 1024);
    client_config.transport_config(Arc::new(transport));
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse()?).context("client endpoint")?;
    endpoint.set_default_client_config(client_config);
    let sent = Arc::new(AtomicU64::new(0));
    let chunk = bytes::Bytes::from(vec![0x5au8; (kbit * 1000 / 8 / 30) as usize]);
    let mut tasks = Vec::new();
    for i in 0..sessions {
        let (endpoint, sent, chunk) = (endpoint.clone(), sent.clone(), chunk.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(
                i as u64 * 1000 / sessions.max(1) as u64,
            ))
            .await;
            let conn = endpoint
                .connect(server, "localhost")
                .context("connecting")?
                .await
                .context("handshake")?;
            let mut send = conn.open_uni().await.context("opening a stream")?;
            let t0 = Instant::now();
            for n in 0u64.. {
                let due = Duration::from_micros(n * 1_000_000 / 30);
                if due.as_secs_f64() >= seconds {
                    break;
                }
                if let Some(wait) = due.checked_sub(t0.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
                send.write_chunk(chunk.clone()).await.context("writing")?;
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            }
            send.finish().context("finishing the stream")?;
            send.stopped().await.ok();
            conn.close(0u32.into(), b"done");
            Ok::<_, anyhow::Error>(())
        }));
    }
    let mut failed = 0;
    for t in tasks {
        if !matches!(t.await, Ok(Ok(()))) {
            failed += 1;
        }
    }
    endpoint.wait_idle().await;
    let bytes = sent.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "sessions": sessions,
            "bytes": bytes,
            "ingest_mbit_s": bytes as f64 * 8.0 / 1e6 / seconds,
            "failed": failed,
        })
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    match Floor::parse() {
        Floor::Serve { listen, cert_out } => serve(listen, &cert_out).await,
        Floor::Push {
            server,
            cert,
            sessions,
            seconds,
            kbit,
        } => push(server, &cert, sessions, seconds, kbit).await,
    }
}
