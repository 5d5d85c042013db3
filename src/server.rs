//! The composition root: [`Server::start`] builds every component from the
//! configuration, in named steps, and wires ingest to the transcoder, the
//! live relay, the store and the share, resume and HTTP services.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use sharecast_api::admin::Admin;
use sharecast_api::routes::{LiveHandlers, Services};
use sharecast_api::webhooks::WebhookRoutes;
use sharecast_api::{Gateway, LinkSigner, PlaybackTokens, Policy, SessionsFn, Store};
use sharecast_ingest::IngestServer;
use sharecast_live_relay::LiveRelay;
use sharecast_resume::outbound::Outbound;
use sharecast_resume::webhooks::Webhooks;
use sharecast_resume::ResumeService;
use sharecast_share::{ShareService, SmsConfig, Stills};
use sharecast_transcoder::Transcoder;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::frames::GstFrames;
use crate::recording::{Handler, Public};
use crate::{hooks, live_admin};

/// Everything `serve` started; dropping it stops nothing (the tasks run on
/// the runtime), [`Server::close`] ends the ingest.
pub struct Server {
    /// Ingest server.
    pub ingest: Arc<IngestServer>,
    /// Bound QUIC address.
    pub ingest_addr: SocketAddr,
    /// Public addresses.
    pub public: Public,
    /// The store.
    pub store: Store,
    /// The admin token (configured or generated).
    pub admin_token: String,
    /// Keeps the RTSP server alive for as long as this is held.
    _relay: Arc<LiveRelay>,
}

/// The access policy and the secrets it checks.
struct Access {
    policy: Policy,
    tokens: PlaybackTokens,
    links: LinkSigner,
    admin_token: String,
    /// The key inbound SMS callbacks and delivery reports carry.
    sms_key: String,
}

impl Server {
    /// Build and start every component.
    pub async fn start(cfg: &Config) -> Result<Server> {
        crate::secure::secure_data_dir(&cfg.data_dir)?;
        let store = Store::open(&cfg.store, &cfg.data_dir).await?;
        let transcoder = Arc::new(Transcoder::new(cfg.transcoder.clone())?);
        let relay = Arc::new(LiveRelay::start(cfg.live.clone())?);
        let http_listener = TcpListener::bind(&cfg.http.listen)
            .await
            .with_context(|| format!("binding HTTP on {}", cfg.http.listen))?;
        let http_addr = http_listener.local_addr().context("HTTP local address")?;
        let access = access(cfg, &store, &relay)?;
        let public = public_addresses(cfg, http_addr, &relay, &access.tokens);
        let shares = start_shares(cfg, &store, &public, &access).await?;
        let handler = Handler {
            store: store.clone(),
            transcoder,
            relay: relay.clone(),
            public: public.clone(),
            shares: shares.clone(),
        };
        let ingest = start_ingest(cfg, handler).await?;
        let outbound = Outbound::new(&cfg.outbound)?;
        let webhooks = Webhooks::new(store.clone(), outbound.clone(), cfg.webhooks.clone())?;
        webhooks.start();
        let resume = resume_service(cfg, &store, &relay, &public, &access, outbound.clone())?;
        hooks::bookmark_interruptions(&relay, resume.clone());
        let admin = live_admin::admin(&store, &ingest, &relay, &access.tokens, &resume);
        let mut metrics = metrics(
            &ingest, &shares, &relay, &admin, &access, &outbound, &resume,
        );
        webhooks.register_metrics(&mut metrics);
        let sessions = sessions_fn(&ingest);
        let gateway = Gateway::new(store.clone(), cfg.data_dir.clone(), sessions, metrics);
        let services = Services {
            gateway: gateway.clone(),
            shares,
            resume,
            stills: Stills::new(
                store.clone(),
                cfg.data_dir.clone(),
                Arc::new(GstFrames),
                Arc::new(GstFrames),
                public.http.clone(),
            ),
            frames: sharecast_api::frames::Frames::new(
                store.clone(),
                cfg.data_dir.clone(),
                Arc::new(GstFrames),
            ),
            admin,
            live: live_handlers(&relay),
            webhooks: WebhookRoutes::new(store.clone(), webhooks),
            metrics_public: cfg.http.metrics_public,
        };
        serve_http(cfg, access.policy, services, http_listener);
        let ingest_addr = ingest.local_addr()?;
        {
            let ingest = ingest.clone();
            tokio::spawn(async move { ingest.run().await });
        }
        Ok(Server {
            ingest,
            ingest_addr,
            public,
            store,
            admin_token: access.admin_token,
            _relay: relay,
        })
    }

    /// Stops accepting uploads; open sessions are recovered from their
    /// journals at the next start.
    pub fn close(&self) {
        self.ingest.close();
    }
}

/// The ingest's sessions, for the HTTP API.
fn sessions_fn(ingest: &Arc<IngestServer>) -> SessionsFn {
    let ingest = ingest.clone();
    Arc::new(move || ingest.sessions())
}

/// Every route behind the access policy, served on `listener`.
fn serve_http(cfg: &Config, policy: Policy, services: Services, listener: TcpListener) {
    let gateway = services.gateway.clone();
    let (routes, _table) = sharecast_api::routes::routes(policy, services);
    let app = gateway.app(routes, cfg.http.max_body_bytes);
    tokio::spawn(async move {
        if let Err(e) = Gateway::serve(app, listener).await {
            tracing::error!(error = %format!("{e:#}"), "HTTP server stopped");
        }
    });
}

/// The share service, its deliveries' reports coming back with the key
/// inbound callbacks carry.
async fn start_shares(
    cfg: &Config,
    store: &Store,
    public: &Public,
    access: &Access,
) -> Result<ShareService> {
    let sms = SmsConfig {
        inbound_key: access.sms_key.clone(),
        ..cfg.sms.clone()
    };
    let live_url = format!(
        "rtsp://{}:{}/live/{{id}}",
        public.rtsp_host, public.rtsp_port
    );
    ShareService::start(
        store.clone(),
        cfg.share.clone(),
        sms,
        public.http.clone(),
        live_url,
        access.tokens.clone(),
    )
    .await
}

/// The one access policy, for HTTP routes and RTSP alike.
fn access(cfg: &Config, store: &Store, relay: &LiveRelay) -> Result<Access> {
    let tokens = PlaybackTokens::load(
        &cfg.data_dir,
        cfg.live.playback_tokens,
        cfg.live.playback_token_ttl_secs,
    )?;
    let links = LinkSigner::load(&cfg.data_dir)?;
    let admin_token = live_admin::admin_token(cfg)?;
    let sms_key = live_admin::sms_inbound_key(cfg)?;
    let policy = Policy::new(
        store.clone(),
        admin_token.clone(),
        sms_key.clone(),
        tokens.clone(),
        links.clone(),
    );
    if tokens.required() {
        let p = policy.clone();
        relay.set_authorizer(Some(Arc::new(move |id: &str, token: Option<&str>| {
            p.live_viewer(id, token).is_some()
        })));
    }
    Ok(Access {
        policy,
        tokens,
        links,
        admin_token,
        sms_key,
    })
}

/// Public addresses: `http.public_url` (else the loopback address and the
/// bound port), the RTSP host (`live.public_host`, else the public URL's
/// host) and the bound RTSP port.
fn public_addresses(
    cfg: &Config,
    http_addr: SocketAddr,
    relay: &LiveRelay,
    tokens: &PlaybackTokens,
) -> Public {
    let http = if cfg.http.public_url.is_empty() {
        format!("http://127.0.0.1:{}", http_addr.port())
    } else {
        cfg.http.public_url.trim_end_matches('/').to_string()
    };
    let rtsp_host = if cfg.live.public_host.is_empty() {
        http.split("://")
            .nth(1)
            .and_then(|r| r.split(['/', ':']).next())
            .unwrap_or("127.0.0.1")
            .to_string()
    } else {
        cfg.live.public_host.clone()
    };
    Public {
        http,
        rtsp_host,
        rtsp_port: relay.rtsp_port(),
        tokens: tokens.clone(),
    }
}

/// Binds the QUIC ingest and finishes the sessions a previous run left
/// open (from their journals).
async fn start_ingest(cfg: &Config, handler: Handler) -> Result<Arc<IngestServer>> {
    let ingest = Arc::new(IngestServer::bind(
        cfg.ingest.clone(),
        &cfg.data_dir,
        Arc::new(handler),
    )?);
    let recovered = ingest.recover_sessions().await?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "recovered unfinished sessions from their journals"
        );
    }
    Ok(ingest)
}

/// History, bookmarks and hand-off, with the media side's hooks.
fn resume_service(
    cfg: &Config,
    store: &Store,
    relay: &Arc<LiveRelay>,
    public: &Public,
    access: &Access,
    outbound: Outbound,
) -> Result<ResumeService> {
    let sessions = cfg.data_dir.join("sessions");
    let timeout = Duration::from_millis(cfg.transcoder.rendition_timeout_ms);
    ResumeService::new(
        store.clone(),
        cfg.resume.clone(),
        &cfg.data_dir,
        public.http.clone(),
        access.links.clone(),
        outbound,
    )
    .with_playback_tokens(access.tokens.clone())
    .with_live_starts(hooks::live_starts(relay))
    .with_rtsp_vod(hooks::rtsp_vod(relay, public, sessions.clone()))
    .with_transcode(hooks::transcode(public, sessions, timeout))
    .with_fetch(hooks::probe_fetched())
}

/// The one registry of `/metrics`, prefixed `sharecast`: every component
/// registers its own families (the gateway adds its HTTP counts).
fn metrics(
    ingest: &IngestServer,
    shares: &ShareService,
    relay: &LiveRelay,
    admin: &Admin,
    access: &Access,
    outbound: &Outbound,
    resume: &ResumeService,
) -> Registry {
    let mut registry = Registry::with_prefix("sharecast");
    ingest.register_metrics(&mut registry);
    shares.register_metrics(&mut registry);
    relay.register_metrics(&mut registry);
    admin.register_metrics(&mut registry);
    access.policy.register_metrics(&mut registry);
    outbound.register_metrics(&mut registry);
    resume.register_metrics(&mut registry);
    registry
}

/// The live relay's HTTP handlers (player page, HLS files, heartbeats).
fn live_handlers(relay: &LiveRelay) -> LiveHandlers {
    let live = relay.http_routes();
    LiveHandlers {
        watch: live.watch,
        stream_file: live.stream_file,
        rendition_file: live.rendition_file,
        heartbeat: live.heartbeat,
    }
}
