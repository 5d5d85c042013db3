//! The composition root of `sharecast serve`: builds every component from the
//! configuration and wires ingest to the transcoder, the live relay and the
//! store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sharecast_api::{Gateway, LinkSigner, MetricsFn, PlaybackTokens, Policy, SessionsFn, Store};
use sharecast_formats::attributes::VideoAttributes;
use sharecast_formats::media::{MediaFrame, TrackInfo};
use sharecast_ingest::{
    BoxFuture, DeviceIdentity, IngestServer, SessionHandler, SessionInfo, SessionOutput,
};
use sharecast_live_relay::{LivePublisher, LiveRelay, LiveRelayConfig};
use sharecast_resume::outbound::Outbound;
use sharecast_share::{ShareService, Stills};
use sharecast_transcoder::{Recording, Transcoder};

use crate::config::Config;

/// Public addresses derived from the configuration and the bound sockets.
#[derive(Debug, Clone)]
pub struct Public {
    /// Base HTTP URL, no trailing slash.
    pub http: String,
    /// Host for RTSP URLs.
    pub rtsp_host: String,
    /// RTSP port.
    pub rtsp_port: u16,
    /// Playback tokens put into live URLs.
    pub tokens: PlaybackTokens,
}

impl Public {
    /// The session's RTSP URL, with a playback token when one is needed.
    fn rtsp_url(&self, id: &str) -> String {
        format!(
            "rtsp://{}:{}/live/{id}{}",
            self.rtsp_host,
            self.rtsp_port,
            self.tokens.query(id)
        )
    }

    /// The session's player page (HLS, then the VOD), with a playback token
    /// when one is needed.
    fn watch_url(&self, id: &str) -> String {
        format!("{}/watch/{id}{}", self.http, self.tokens.query(id))
    }
}

struct Handler {
    store: Store,
    transcoder: Arc<Transcoder>,
    relay: Arc<LiveRelay>,
    public: Public,
    shares: ShareService,
}

impl SessionHandler for Handler {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<DeviceIdentity>>> {
        Box::pin(async move {
            Ok(self
                .store
                .device_by_token(token)
                .await?
                .map(|d| DeviceIdentity {
                    id: d.id,
                    name: d.name,
                }))
        })
    }

    fn check_tracks(&self, tracks: &[TrackInfo]) -> Result<(), String> {
        Transcoder::check_tracks(tracks)
    }

    fn open<'a>(&'a self, info: &'a SessionInfo) -> BoxFuture<'a, Result<Arc<dyn SessionOutput>>> {
        Box::pin(async move {
            self.store
                .asset_recording(
                    &info.id,
                    &info.device.id,
                    info.title.as_deref(),
                    info.started_unix_ms as i64,
                )
                .await?;
            let transcoder = self.transcoder.clone();
            let (id, tracks, dir) = (info.id.clone(), info.tracks.clone(), info.dir.clone());
            let recording =
                tokio::task::spawn_blocking(move || transcoder.start(&id, &tracks, &dir))
                    .await
                    .context("transcoder start task")??;
            // Each extra rendition is also a live stream while it is encoded
            // (RTSP /live/{id}/{rendition}, an HLS variant).
            {
                let (relay, id, anchor) =
                    (self.relay.clone(), info.id.clone(), info.anchor_unix_us);
                recording.tap_renditions(Arc::new(move |name, tracks, base_us| {
                    match relay.publish_rendition(&id, name, tracks, anchor.saturating_add(base_us))
                    {
                        Ok(p) => Some(Box::new(p) as Box<dyn sharecast_formats::media::FrameSink>),
                        Err(e) => {
                            tracing::warn!(session = %id, rendition = name, error = %format!("{e:#}"), "no live stream for the rendition");
                            None
                        }
                    }
                }));
            }
            let live = match self
                .relay
                .publish_at(&info.id, &info.tracks, info.anchor_unix_us)
            {
                Ok(p) => Some(p),
                Err(e) => {
                    // The recording still works without a live mount.
                    tracing::error!(session = %info.id, error = %format!("{e:#}"), "could not publish live stream");
                    None
                }
            };
            // Communication proxy: the device's subscribers hear it is live.
            self.shares.source_live(
                &info.device.id,
                VideoAttributes {
                    id: info.id.clone(),
                    title: info.title.clone(),
                    sender: Some(info.device.name.clone()),
                    live_urls: vec![self.public.rtsp_url(&info.id)],
                    ..VideoAttributes::default()
                },
            );
            let out: Arc<dyn SessionOutput> = Arc::new(Output {
                id: info.id.clone(),
                title: info.title.clone(),
                sender: info.device.name.clone(),
                dir: info.dir.clone(),
                recording: Mutex::new(Some(recording)),
                live: Mutex::new(live),
                store: self.store.clone(),
                public: self.public.clone(),
                shares: self.shares.clone(),
                relay: self.relay.clone(),
            });
            Ok(out)
        })
    }

    fn live_urls(&self, session_id: &str) -> Vec<String> {
        vec![
            self.public.rtsp_url(session_id),
            self.public.watch_url(session_id),
        ]
    }
}

struct Output {
    relay: Arc<LiveRelay>,
    id: String,
    title: Option<String>,
    sender: String,
    dir: PathBuf,
    recording: Mutex<Option<Recording>>,
    live: Mutex<Option<LivePublisher>>,
    store: Store,
    public: Public,
    shares: ShareService,
}

impl SessionOutput for Output {
    fn live(&self, frame: &MediaFrame) {
        if let Some(p) = self.live.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            p.push(frame);
        }
    }

    fn record(&self, frame: &MediaFrame) -> Result<()> {
        match self
            .recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            Some(r) => r.push(frame),
            None => anyhow::bail!("recording of session {} is already finished", self.id),
        }
    }

    fn finish(&self) -> BoxFuture<'_, Result<VideoAttributes>> {
        Box::pin(async move {
            let rec = self
                .recording
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            // End the live mount: viewers get EOS.
            drop(self.live.lock().unwrap_or_else(|e| e.into_inner()).take());
            let Some(rec) = rec else {
                anyhow::bail!("session {} has no recording to finish", self.id);
            };
            let result = tokio::task::spawn_blocking(move || rec.finish_source())
                .await
                .context("transcoder finish task")?;
            let finished = match result {
                Ok(f) => f,
                Err(e) => {
                    let msg = format!("{e:#}");
                    let _ = self.store.asset_failed(&self.id, &msg).await;
                    return Err(e);
                }
            };
            let renditions = self.renditions(finished.source);
            let primary = renditions
                .iter()
                .find(|r| r.name == sharecast_transcoder::SOURCE_RENDITION)
                .or(renditions.first())
                .cloned()
                .with_context(|| format!("session {} produced no output", self.id))?;
            let attributes = VideoAttributes {
                id: self.id.clone(),
                title: self.title.clone(),
                sender: Some(self.sender.clone()),
                vod_url: Some(primary.url.clone()),
                live_urls: vec![self.public.rtsp_url(&self.id)],
                share_url: None,
                thumbnail_url: self
                    .dir
                    .join(sharecast_transcoder::still::POSTER_FILE)
                    .is_file()
                    .then(|| format!("{}/api/v1/assets/{}/poster.jpg", self.public.http, self.id)),
                container: primary.container.clone(),
                codecs: primary.codecs.clone(),
                size_bytes: primary.size_bytes,
                width: primary.width,
                height: primary.height,
                rotation: primary.rotation,
                frame_rate: primary.frame_rate,
                bitrate: primary.bitrate,
                duration_ms: primary.duration_ms,
                expires_unix: None,
                start_offset_ms: None,
                renditions,
            };
            self.store.asset_ready(&self.id, &attributes).await?;
            // HLS players of the ended live stream switch to the recording.
            self.relay.set_vod_ready(&self.id);
            self.shares.vod_ready(attributes.clone());
            tracing::info!(session = %self.id, dir = %self.dir.display(), "VOD ready");
            // The other renditions finish encoding in the background (progress
            // in the log) and are added to the asset when they are done.
            let pending = finished.renditions;
            if !pending.names().is_empty() {
                let (store, id, base) = (self.store.clone(), self.id.clone(), attributes.clone());
                let public = self.public.clone();
                tokio::spawn(async move {
                    let files = match tokio::task::spawn_blocking(move || pending.wait()).await {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::error!(session = %id, error = %e, "rendition task failed");
                            return;
                        }
                    };
                    // Renditions made on demand meanwhile are kept.
                    let mut attrs = match store.asset(&id).await {
                        Ok(Some(a)) => a.attributes.unwrap_or(base),
                        _ => base,
                    };
                    let files = rendition_urls(&public, &id, files);
                    attrs
                        .renditions
                        .retain(|r| !files.iter().any(|f| f.name == r.name));
                    attrs.renditions.extend(files);
                    if let Err(e) = store.asset_ready(&id, &attrs).await {
                        tracing::error!(session = %id, error = %format!("{e:#}"), "storing renditions failed");
                    } else {
                        tracing::info!(session = %id, renditions = attrs.renditions.len(), "renditions ready");
                    }
                });
            }
            Ok(attributes)
        })
    }
}

impl Output {
    fn renditions(
        &self,
        files: Vec<sharecast_transcoder::ProducedFile>,
    ) -> Vec<sharecast_formats::attributes::Rendition> {
        rendition_urls(&self.public, &self.id, files)
    }
}

/// Renditions with their public URLs.
fn rendition_urls(
    public: &Public,
    id: &str,
    files: Vec<sharecast_transcoder::ProducedFile>,
) -> Vec<sharecast_formats::attributes::Rendition> {
    files
        .into_iter()
        .map(|f| {
            let name = f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let mut r = f.attributes;
            r.name = f.rendition.clone();
            r.url = format!("{}/vod/{}/{}", public.http, id, name);
            r
        })
        .collect()
}

/// Everything `serve` started.
pub struct Running {
    /// Ingest server.
    pub ingest: Arc<IngestServer>,
    /// Bound QUIC address.
    pub ingest_addr: SocketAddr,
    /// Public addresses.
    pub public: Public,
    /// The store.
    pub store: Store,
    /// Keeps the RTSP server alive for as long as this is held.
    pub _relay: Arc<LiveRelay>,
}

/// Build and start every component.
pub async fn start(cfg: &Config) -> Result<Running> {
    crate::secure::secure_data_dir(&cfg.data_dir)?;
    let store = Store::open_sqlite(&cfg.data_dir.join("sharecast.db")).await?;
    let transcoder = Arc::new(Transcoder::new(cfg.transcoder.to_transcoder())?);
    let relay = Arc::new(LiveRelay::start(LiveRelayConfig {
        bind: cfg.live.bind.clone(),
        rtsp_port: cfg.live.rtsp_port,
        viewer_timeout_secs: cfg.live.viewer_timeout_secs,
        rtsp_session_timeout_secs: cfg.live.rtsp_session_timeout_secs,
        capture_clock_sei: cfg.live.capture_clock_sei,
        hls: sharecast_live_relay::HlsConfig {
            segment_target_ms: cfg.live.hls_segment_ms,
            window_segments: cfg.live.hls_window_segments,
            keep_ended_secs: cfg.live.hls_keep_ended_secs,
        },
        ..LiveRelayConfig::default()
    })?);

    let http_listener = tokio::net::TcpListener::bind(&cfg.http.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", cfg.http.listen))?;
    let http_addr = http_listener.local_addr().context("HTTP local address")?;
    let public_http = if cfg.http.public_url.is_empty() {
        format!("http://127.0.0.1:{}", http_addr.port())
    } else {
        cfg.http.public_url.trim_end_matches('/').to_string()
    };
    let rtsp_host = if cfg.live.public_host.is_empty() {
        public_http
            .split("://")
            .nth(1)
            .and_then(|r| r.split(['/', ':']).next())
            .unwrap_or("127.0.0.1")
            .to_string()
    } else {
        cfg.live.public_host.clone()
    };
    let tokens = PlaybackTokens::load(
        &cfg.data_dir,
        cfg.live.playback_tokens,
        cfg.live.playback_token_ttl_secs,
    )?;
    // The one access policy: HTTP routes and RTSP alike.
    let links = LinkSigner::load(&cfg.data_dir)?;
    let policy = Policy::new(
        store.clone(),
        crate::live_admin::admin_token(cfg)?,
        crate::live_admin::sms_inbound_key(cfg)?,
        tokens.clone(),
        links.clone(),
    );
    if tokens.required() {
        let p = policy.clone();
        relay.set_authorizer(Some(Arc::new(move |id: &str, token: Option<&str>| {
            p.live_viewer(id, token).is_some()
        })));
    }
    let outbound = Outbound::new(&cfg.outbound)?;
    let public = Public {
        http: public_http,
        rtsp_host,
        rtsp_port: relay.rtsp_port(),
        tokens: tokens.clone(),
    };

    let shares = ShareService::start(
        store.clone(),
        cfg.share.clone(),
        cfg.sms.clone(),
        public.http.clone(),
        format!(
            "rtsp://{}:{}/live/{{id}}",
            public.rtsp_host, public.rtsp_port
        ),
        tokens.clone(),
    )
    .await?;
    let handler = Arc::new(Handler {
        store: store.clone(),
        transcoder,
        relay: relay.clone(),
        public: public.clone(),
        shares: shares.clone(),
    });
    let ingest = Arc::new(IngestServer::bind(
        cfg.ingest.clone(),
        &cfg.data_dir,
        handler,
    )?);
    let ingest_addr = ingest.local_addr()?;
    let recovered = ingest.recover_sessions().await?;
    if recovered > 0 {
        tracing::info!(
            recovered,
            "recovered unfinished sessions from their journals"
        );
    }

    let sessions: SessionsFn = {
        let ingest = ingest.clone();
        Arc::new(move || serde_json::to_value(ingest.sessions()).unwrap_or_default())
    };
    let mut metrics: Vec<MetricsFn> = Vec::new();
    {
        let ingest = ingest.clone();
        metrics.push(Arc::new(move |out: &mut String| ingest.render_metrics(out)));
    }
    {
        let shares = shares.clone();
        metrics.push(Arc::new(move |out: &mut String| shares.render_metrics(out)));
    }
    {
        let relay = relay.clone();
        metrics.push(Arc::new(move |out: &mut String| relay.render_metrics(out)));
    }
    let admin = crate::live_admin::admin(&store, &ingest, &relay, &tokens);
    metrics.push(admin.metrics());
    {
        let (p, o) = (policy.clone(), outbound.clone());
        metrics.push(Arc::new(move |out: &mut String| {
            p.render_metrics(out);
            o.render_metrics(out);
        }));
    }
    let resume = sharecast_resume::ResumeService::new(
        store.clone(),
        cfg.resume.clone(),
        &cfg.data_dir,
        public.http.clone(),
        links,
        outbound,
    )
    .with_playback_tokens(tokens.clone())
    .with_live_starts({
        use sharecast_resume::{LiveLookup, LiveStartInfo};
        let relay = relay.clone();
        Arc::new(move |content_id: &str, position_ms: u64| {
            Some(match relay.live_start(content_id, position_ms)? {
                Ok(s) => LiveLookup::Start(LiveStartInfo {
                    state: s.state.to_string(),
                    from: s.from.to_string(),
                    segment: s.segment,
                    segment_start_ms: s.segment_start_ms,
                    start_ms: s.start_ms,
                    oldest_ms: s.oldest_ms,
                    edge_ms: s.edge_ms,
                }),
                Err(sharecast_live_relay::LiveStartError::PastEnd { edge_ms }) => {
                    LiveLookup::PastEnd { edge_ms }
                }
                Err(sharecast_live_relay::LiveStartError::NoSegment) => LiveLookup::NoSegment,
            })
        })
    })
    .with_rtsp_vod({
        let (relay, public, sessions) =
            (relay.clone(), public.clone(), cfg.data_dir.join("sessions"));
        Arc::new(move |content_id: &str, codecs: &[String]| {
            let file = sessions
                .join(content_id)
                .join(sharecast_transcoder::SOURCE_FILE);
            relay
                .mount_vod(content_id, &file, codecs)
                .map(|path| format!("rtsp://{}:{}{path}", public.rtsp_host, public.rtsp_port))
                .map_err(|e| format!("{e:#}"))
        })
    })
    .with_transcode({
        // On demand (hand-off between platforms): a finished recording's
        // source file, read frame by frame into the ladder's encoder,
        // becomes an H.264 + AAC rendition next to it, measured on the
        // produced file.
        let (public, sessions) = (public.clone(), cfg.data_dir.join("sessions"));
        let timeout = std::time::Duration::from_millis(cfg.transcoder.rendition_timeout_ms);
        Arc::new(move |req: &sharecast_resume::TranscodeRequest| {
            let dir = sessions.join(&req.content_id);
            let spec = sharecast_transcoder::RenditionSpec {
                name: req.name.clone(),
                short_side: req.short_side,
                ..sharecast_transcoder::RenditionSpec::compat_480p()
            };
            let file = sharecast_transcoder::ladder::transcode_file(
                &dir.join(sharecast_transcoder::SOURCE_FILE),
                &spec,
                &dir,
                timeout,
            )
            // The reason goes to API clients: no server paths in it.
            .map_err(|e| format!("{e:#}").replace(&format!("{}/", dir.display()), ""))?;
            rendition_urls(&public, &req.content_id, vec![file])
                .pop()
                .ok_or_else(|| "the transcoder produced no file".to_string())
        })
    })
    // Hand-off between platforms: another platform's video that no
    // rendition suits the terminal is fetched into a local asset, measured
    // here, then transcoded above.
    .with_fetch(Arc::new(|path: &std::path::Path| {
        sharecast_transcoder::probe_file(path).map_err(|e| {
            // The reason goes to API clients: no server paths in it.
            let msg = format!("{e:#}");
            match path.parent() {
                Some(dir) => msg.replace(&format!("{}/", dir.display()), ""),
                None => msg,
            }
        })
    }))?;
    {
        let resume = resume.clone();
        metrics.push(Arc::new(move |out: &mut String| resume.render_metrics(out)));
    }
    // Interruption bookmarks: a viewer that vanished (missed heartbeats,
    // RTSP timeout) and said who it is (its user token) gets one through
    // the reverse-bookmark interface.
    {
        let mut events = relay.viewer_events();
        let resume = resume.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(sharecast_live_relay::ViewerEvent::Vanished(end)) => {
                        let Some(user_token) = end.user.clone().filter(|u| u.starts_with("su_"))
                        else {
                            continue;
                        };
                        // What the viewer's access proved (its playback
                        // token) is all the bookmark may hand out later.
                        let req = sharecast_resume::ReverseBookmark {
                            user_id: None,
                            content_id: end.content_id.clone(),
                            position_ms: end.position_ms,
                            playback_token: end.playback_token.clone().unwrap_or_default(),
                            user_token,
                        };
                        let a = resume.reverse_bookmark(&req).await;
                        tracing::info!(
                            content = %end.content_id,
                            position_ms = end.position_ms,
                            result_code = a.result_code,
                            description = %a.description,
                            "interruption bookmark"
                        );
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "viewer events lagged; some interruptions were not bookmarked"
                        );
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
    let gateway = Gateway::new(store.clone(), cfg.data_dir.clone(), sessions, metrics);
    let stills = Stills::new(
        store.clone(),
        cfg.data_dir.clone(),
        Arc::new(crate::frames::GstFrames),
        Arc::new(crate::frames::GstFrames),
        public.http.clone(),
    );
    let live = relay.http_routes();
    let (routes, _table) = sharecast_api::routes::routes(
        policy,
        sharecast_api::routes::Services {
            gateway: gateway.clone(),
            shares: shares.clone(),
            resume: resume.clone(),
            stills,
            frames: sharecast_api::frames::Frames::new(
                store.clone(),
                cfg.data_dir.clone(),
                Arc::new(crate::frames::GstFrames),
            ),
            admin,
            live: sharecast_api::routes::LiveHandlers {
                watch: live.watch,
                stream_file: live.stream_file,
                rendition_file: live.rendition_file,
                heartbeat: live.heartbeat,
            },
            metrics_public: cfg.http.metrics_public,
        },
    );
    let app = gateway.app(routes, cfg.http.max_body_bytes);
    tokio::spawn(async move {
        if let Err(e) = Gateway::serve(app, http_listener).await {
            tracing::error!(error = %format!("{e:#}"), "HTTP server stopped");
        }
    });
    {
        let ingest = ingest.clone();
        tokio::spawn(async move { ingest.run().await });
    }
    Ok(Running {
        ingest,
        ingest_addr,
        public,
        store,
        _relay: relay,
    })
}
