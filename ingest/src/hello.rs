//! Answering HELLO (section 4.1 of `docs/ingest-protocol.md`): the version,
//! every field within its bound, the token authenticated under the
//! failed-authentication limits, then either the session it resumes or a
//! new one (its tracks, the device's session limit, its journal and
//! outputs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::RngCore;
use sharecast_formats::ingest::{ErrorCode, Hello, Resume, VERSION};
use sharecast_formats::media::TrackInfo;

use crate::committer;
use crate::connection::Refused;
use crate::journal::{JournalWriter, SessionMeta};
use crate::limiter::{address_key, token_key, Failure, Gate, Scope};
use crate::lock;
use crate::server::{session_info, Shared};
use crate::session::{Lifecycle, Reject, Session};
use crate::DeviceIdentity;

/// Open the session a HELLO asks for, or say why not.
pub(crate) async fn open_session(
    shared: &Arc<Shared>,
    hello: &Hello,
    remote: SocketAddr,
) -> Result<Arc<Session>, Refused> {
    if hello.version != VERSION {
        return Err((
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this server speaks {VERSION}",
                hello.version
            ),
        )
            .into());
    }
    // Every field within its bound before anything looks at it.
    if let Err(r) = hello.check(&shared.cfg.hello) {
        shared.metrics.hello_refused(r.field);
        return Err((ErrorCode::BadMessage, format!("HELLO: {}", r.message)).into());
    }
    let device = authenticate(shared, &hello.token, Credential::DeviceToken, remote).await?;
    match &hello.resume {
        Some(resume) => resume_session(shared, resume, &device, remote),
        None => new_session(shared, hello, device).await,
    }
}

/// What a client presents to be let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A device token (HELLO).
    DeviceToken,
    /// A publishing key (an RTMP stream key).
    PublishingKey,
}

/// Authenticate the token under the failed-authentication limits: a token
/// backing off is refused before it is looked up; a failure is counted for
/// the token and the address, and answered `rate_limited` while the
/// address is penalised; a correct token is always let in.
pub(crate) async fn authenticate(
    shared: &Arc<Shared>,
    token: &str,
    kind: Credential,
    remote: SocketAddr,
) -> Result<DeviceIdentity, Refused> {
    let key = token_key(token);
    let gate = lock(&shared.limiter).before_check(&key, Instant::now());
    if let Gate::Refuse(r) = gate {
        shared.metrics.auth_refused(Scope::Token);
        return Err(Refused {
            code: ErrorCode::RateLimited,
            message: format!(
                "this token failed authentication too often; retry in {} s",
                r.retry_after.as_secs().max(1)
            ),
            retry_after: Some(r.retry_after),
        });
    }
    let lookup = match kind {
        Credential::DeviceToken => shared.handler.authenticate(token),
        Credential::PublishingKey => shared.handler.authenticate_publisher(token),
    };
    let found = match lookup.await {
        Ok(found) => found,
        Err(e) => {
            // The device store could not answer: not the phone's failure.
            tracing::error!(error = %format!("{e:#}"), "device lookup failed");
            return Err(Refused {
                code: ErrorCode::Internal,
                message: "the server cannot check device tokens right now; retry".into(),
                retry_after: None,
            });
        }
    };
    if let Some(device) = found {
        lock(&shared.limiter).succeeded(&key);
        return Ok(device);
    }
    let f = lock(&shared.limiter).token_failed(&key, address_key(remote.ip()), Instant::now());
    let what = match kind {
        Credential::DeviceToken => "device token",
        Credential::PublishingKey => "publishing key",
    };
    let own = (
        ErrorCode::Unauthorized,
        format!("unknown or revoked {what}"),
    );
    Err(auth_failure(shared, f, remote, own))
}

/// Answer a failed authentication (wrong token or resume secret): its own
/// code, or `rate_limited` while the address is penalised. Backoffs that
/// start are logged and counted once.
fn auth_failure(shared: &Shared, f: Failure, remote: SocketAddr, own: Reject) -> Refused {
    if let Some(d) = f.token_backoff {
        shared.metrics.auth_backoff(Scope::Token);
        tracing::warn!(%remote, backoff_secs = d.as_secs(), "a device token keeps failing authentication; it backs off");
    }
    if let Some(d) = f.address_penalty {
        shared.metrics.auth_backoff(Scope::Address);
        tracing::warn!(%remote, penalty_secs = d.as_secs(), "too many failed authentications from this address; its failures are refused for a while (correct tokens still get in)");
    }
    match f.refusal {
        Some(r) => {
            shared.metrics.auth_refused(Scope::Address);
            Refused {
                code: ErrorCode::RateLimited,
                message: format!(
                    "{}; too many failed authentications from this address, retry in {} s",
                    own.1,
                    r.retry_after.as_secs().max(1)
                ),
                retry_after: Some(r.retry_after),
            }
        }
        None => own.into(),
    }
}

/// The open session a HELLO resumes: the same device, the right secret,
/// still taking frames.
fn resume_session(
    shared: &Shared,
    resume: &Resume,
    device: &DeviceIdentity,
    remote: SocketAddr,
) -> Result<Arc<Session>, Refused> {
    let id = &resume.session_id;
    let Some(s) = shared.session(id) else {
        return Err((ErrorCode::UnknownSession, format!("no open session {id}")).into());
    };
    if !constant_time_eq(s.secret.as_bytes(), resume.secret.as_bytes())
        || s.info.device.id != device.id
    {
        // A correct token with a wrong secret: the address's failure,
        // never the token's.
        let f = lock(&shared.limiter).address_failed(address_key(remote.ip()), Instant::now());
        let own = (
            ErrorCode::BadResumeSecret,
            "resume secret does not match the session".into(),
        );
        return Err(auth_failure(shared, f, remote, own));
    }
    let ended = match s.lifecycle() {
        Lifecycle::Connected | Lifecycle::Suspended => return Ok(s),
        Lifecycle::Stopped => "was stopped by an error and cannot be resumed",
        Lifecycle::Finishing | Lifecycle::Finished | Lifecycle::Failed => "has ended",
    };
    Err((ErrorCode::UnknownSession, format!("session {id} {ended}")).into())
}

/// A new session of HELLO's tracks.
async fn new_session(
    shared: &Arc<Shared>,
    hello: &Hello,
    device: DeviceIdentity,
) -> Result<Arc<Session>, Refused> {
    start_session(
        shared,
        device,
        hello.tracks.clone(),
        hello.anchor_unix_us,
        hello.title.clone(),
    )
    .await
}

/// A new session (of a HELLO, or of an RTMP publish): tracks the server can
/// process, within the device's session limit, with its journal durable
/// before the client hears of it.
pub(crate) async fn start_session(
    shared: &Arc<Shared>,
    device: DeviceIdentity,
    tracks: Vec<TrackInfo>,
    anchor_unix_us: i64,
    title: Option<String>,
) -> Result<Arc<Session>, Refused> {
    if tracks.is_empty() {
        let no_tracks = "HELLO declares no tracks".to_string();
        return Err((ErrorCode::BadMessage, no_tracks).into());
    }
    shared
        .handler
        .check_tracks(&tracks)
        .map_err(|m| (ErrorCode::UnsupportedCodec, m))?;
    // Only sessions that can still take frames count: stopped, finishing
    // and failed ones do not. The place is held until the session is
    // registered (end of this function), so that HELLOs (and RTMP
    // publishes) arriving together are counted together.
    let _slot = shared.reserve_session(&device.id).map_err(|open| {
        let limit = shared.cfg.max_sessions_per_device;
        (
            ErrorCode::SessionLimit,
            format!("device already has {open} open sessions (limit {limit})"),
        )
    })?;
    let count = tracks.len();
    let meta = SessionMeta {
        // 128 random bits each: the session id is also the asset id that
        // addresses the recording's VOD files.
        id: random_hex(16),
        secret: random_hex(16),
        device_id: device.id,
        device_name: device.name,
        tracks,
        anchor_unix_us,
        title,
        started_unix_ms: crate::unix_now_ms(),
    };
    let session = create_session(shared, meta).await?;
    shared.register(&session);
    shared.metrics.sessions_started.inc();
    tracing::info!(session = %session.info.id, device = %session.info.device.name, tracks = count, "ingest session opened");
    Ok(session)
}

/// The session's journal (its META record durable) and its outputs.
async fn create_session(shared: &Arc<Shared>, meta: SessionMeta) -> Result<Arc<Session>, Reject> {
    let dir = committer::journals_dir(&shared.data_dir).join(&meta.id);
    let info = session_info(&meta, dir.clone(), false);
    let secret = meta.secret.clone();
    let writer = tokio::task::spawn_blocking(move || JournalWriter::create(&dir, &meta))
        .await
        .map_err(|e| (ErrorCode::Internal, format!("journal task: {e}")))?
        .map_err(|e| {
            // A full disk: the phone may try again later.
            let code = if crate::journal::is_storage_full(&e) {
                ErrorCode::StorageFull
            } else {
                ErrorCode::Internal
            };
            (code, format!("creating the session journal: {e:#}"))
        })?;
    let output = shared.handler.open(&info).await.map_err(|e| {
        (
            ErrorCode::Internal,
            format!("opening session outputs: {e:#}"),
        )
    })?;
    Ok(shared.new_session(info, secret, output, writer))
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
