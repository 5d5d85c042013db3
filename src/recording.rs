//! What happens to an ingest session: the [`SessionHandler`] that turns each
//! session into a recording (transcoder), a live stream (live relay) and an
//! asset (store), and tells the device's subscribers (share) when it is
//! live and when its VOD is ready.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use sharecast_api::{PlaybackTokens, Store};
use sharecast_formats::attributes::{Rendition, VideoAttributes};
use sharecast_formats::media::{FrameSink, MediaFrame, TrackInfo};
use sharecast_ingest::{
    BoxFuture, ConnectionChange, DeviceIdentity, SessionHandler, SessionInfo, SessionOutput,
};
use sharecast_live_relay::{LivePublisher, LiveRelay};
use sharecast_share::ShareService;
use sharecast_store::webhooks::session_event;
use sharecast_store::SessionStart;
use sharecast_transcoder::{
    Finished, PendingRenditions, ProducedFile, Recording, Transcoder, SOURCE_RENDITION,
};
use tokio::sync::{mpsc, oneshot};

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
    pub fn rtsp_url(&self, id: &str) -> String {
        format!(
            "rtsp://{}:{}/live/{id}{}",
            self.rtsp_host,
            self.rtsp_port,
            self.tokens.query(id)
        )
    }

    /// The session's player page (HLS, then the VOD), with a playback token
    /// when one is needed.
    pub fn watch_url(&self, id: &str) -> String {
        format!("{}/watch/{id}{}", self.http, self.tokens.query(id))
    }

    /// Renditions with their public URLs (`/vod/{id}/{file}`).
    pub fn rendition_urls(&self, id: &str, files: Vec<ProducedFile>) -> Vec<Rendition> {
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
                r.url = format!("{}/vod/{}/{}", self.http, id, name);
                r
            })
            .collect()
    }
}

/// Turns ingest sessions into recordings, live streams and assets.
pub(crate) struct Handler {
    /// Devices and assets.
    pub store: Store,
    /// Records and encodes the renditions.
    pub transcoder: Arc<Transcoder>,
    /// Serves the live streams.
    pub relay: Arc<LiveRelay>,
    /// Public addresses for the URLs in attributes.
    pub public: Public,
    /// Tells subscribers.
    pub shares: ShareService,
}

/// The ingest's view of a device.
fn identity(d: sharecast_store::Device) -> DeviceIdentity {
    DeviceIdentity {
        id: d.id,
        name: d.name,
    }
}

impl SessionHandler for Handler {
    fn authenticate<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<Option<DeviceIdentity>>> {
        Box::pin(async move { Ok(self.store.device_by_token(token).await?.map(identity)) })
    }

    fn authenticate_publisher<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<DeviceIdentity>>> {
        Box::pin(async move {
            Ok(self
                .store
                .device_by_publishing_key(key)
                .await?
                .map(identity))
        })
    }

    fn check_tracks(&self, tracks: &[TrackInfo]) -> Result<(), String> {
        Transcoder::check_tracks(tracks)
    }

    fn open<'a>(&'a self, info: &'a SessionInfo) -> BoxFuture<'a, Result<Arc<dyn SessionOutput>>> {
        Box::pin(async move {
            let start = SessionStart {
                id: &info.id,
                device_id: &info.device.id,
                title: info.title.as_deref(),
                started_ms: info.started_unix_ms as i64,
            };
            if info.recovered {
                // Its start was reported when it started.
                let s = start;
                let store = &self.store;
                store
                    .asset_recording(s.id, s.device_id, s.title, s.started_ms)
                    .await?;
            } else {
                self.store.session_started(&start).await?;
            }
            let recording = start_recording(&self.transcoder, &self.relay, info).await?;
            let live = self.publish_live(info);
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
                info: info.clone(),
                transcoder: self.transcoder.clone(),
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
                events: SessionEvents::start(self.store.clone(), &info.id, &info.device.id),
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

/// Starts a session's recording; each extra rendition is also a live
/// stream while it is encoded (RTSP `/live/{id}/{rendition}`, an HLS
/// variant).
async fn start_recording(
    transcoder: &Arc<Transcoder>,
    relay: &Arc<LiveRelay>,
    info: &SessionInfo,
) -> Result<Recording> {
    let transcoder = transcoder.clone();
    let (id, tracks, dir) = (info.id.clone(), info.tracks.clone(), info.dir.clone());
    let recording = tokio::task::spawn_blocking(move || transcoder.start(&id, &tracks, &dir))
        .await
        .context("transcoder start task")??;
    let (relay, id, anchor) = (relay.clone(), info.id.clone(), info.anchor_unix_us);
    recording.tap_renditions(Arc::new(move |name, tracks, base_us| {
        match relay.publish_rendition(&id, name, tracks, anchor.saturating_add(base_us)) {
            Ok(p) => Some(Box::new(p) as Box<dyn FrameSink>),
            Err(e) => {
                tracing::warn!(session = %id, rendition = name, error = %format!("{e:#}"), "no live stream for the rendition");
                None
            }
        }
    }));
    Ok(recording)
}

impl Handler {
    /// The session's live mount; the recording works without one.
    fn publish_live(&self, info: &SessionInfo) -> Option<LivePublisher> {
        match self
            .relay
            .publish_at(&info.id, &info.tracks, info.anchor_unix_us)
        {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::error!(session = %info.id, error = %format!("{e:#}"), "could not publish live stream");
                None
            }
        }
    }
}

/// One session's outputs: its recording and its live mount.
struct Output {
    /// What the session was opened with (to start its recording again).
    info: SessionInfo,
    transcoder: Arc<Transcoder>,
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
    events: SessionEvents,
}

/// What the session's event writer is asked, in order.
enum EventMsg {
    /// Write this change's event.
    Change(ConnectionChange),
    /// Answer once everything asked before is written.
    Flush(oneshot::Sender<()>),
}

/// The events of a session's connection changes (which are not database
/// writes), each written to the outbox, in order, by one task, as soon as
/// the change happens.
struct SessionEvents(mpsc::UnboundedSender<EventMsg>);

impl SessionEvents {
    fn start(store: Store, id: &str, device: &str) -> SessionEvents {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (id, device) = (id.to_string(), device.to_string());
        tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                let change = match msg {
                    EventMsg::Change(c) => c,
                    EventMsg::Flush(done) => {
                        let _ = done.send(());
                        continue;
                    }
                };
                let (kind, data) = match change {
                    ConnectionChange::Suspended { reason } => (
                        "session.suspended",
                        serde_json::json!({ "session_id": id, "reason": reason }),
                    ),
                    ConnectionChange::Resumed => {
                        ("session.resumed", serde_json::json!({ "session_id": id }))
                    }
                };
                let event = session_event(kind, &id, &device, data);
                if let Err(e) = store.emit_events(&[event]).await {
                    tracing::error!(session = %id, kind, error = %format!("{e:#}"), "could not record a session event");
                }
            }
        });
        SessionEvents(tx)
    }

    /// Waits until every change passed so far is written.
    async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.0.send(EventMsg::Flush(done)).is_ok() {
            let _ = written.await;
        }
    }
}

impl SessionOutput for Output {
    fn connection_changed(&self, change: ConnectionChange) {
        let _ = self.events.0.send(EventMsg::Change(change));
    }

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

    fn restart_recording(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let old = self
                .recording
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(old) = old {
                tokio::task::spawn_blocking(move || old.abort())
                    .await
                    .context("recording abort task")?;
            }
            let fresh = start_recording(&self.transcoder, &self.relay, &self.info).await?;
            *self.recording.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
            Ok(())
        })
    }

    fn finish(&self) -> BoxFuture<'_, Result<VideoAttributes>> {
        Box::pin(async move {
            self.events.flush().await;
            let finished = self.finish_source().await?;
            let attributes = self.attributes(finished.source)?;
            self.store.session_ended(&self.id, Ok(&attributes)).await?;
            // HLS players of the ended live stream switch to the recording.
            self.relay.set_vod_ready(&self.id);
            self.shares.vod_ready(attributes.clone());
            tracing::info!(session = %self.id, dir = %self.dir.display(), "VOD ready");
            self.add_renditions_when_done(finished.renditions, &attributes);
            Ok(attributes)
        })
    }
}

impl Output {
    /// Ends the live mount (viewers get EOS) and finalises the source file;
    /// a failure marks the asset failed.
    async fn finish_source(&self) -> Result<Finished> {
        let rec = self
            .recording
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(self.live.lock().unwrap_or_else(|e| e.into_inner()).take());
        let Some(rec) = rec else {
            anyhow::bail!("session {} has no recording to finish", self.id);
        };
        let result = tokio::task::spawn_blocking(move || rec.finish_source())
            .await
            .context("transcoder finish task")?;
        if let Err(e) = &result {
            let why = format!("{e:#}");
            if let Err(store_err) = self.store.session_ended(&self.id, Err(&why)).await {
                tracing::error!(session = %self.id, error = %format!("{store_err:#}"), "could not mark the asset failed");
            }
        }
        result
    }

    /// The asset's attributes, from the files produced so far (the source
    /// first).
    fn attributes(&self, files: Vec<ProducedFile>) -> Result<VideoAttributes> {
        let renditions = self.public.rendition_urls(&self.id, files);
        let primary = renditions
            .iter()
            .find(|r| r.name == SOURCE_RENDITION)
            .or(renditions.first())
            .cloned()
            .with_context(|| format!("session {} produced no output", self.id))?;
        let poster = self.dir.join(sharecast_transcoder::still::POSTER_FILE);
        Ok(VideoAttributes {
            id: self.id.clone(),
            title: self.title.clone(),
            sender: Some(self.sender.clone()),
            vod_url: Some(primary.url.clone()),
            live_urls: vec![self.public.rtsp_url(&self.id)],
            share_url: None,
            thumbnail_url: poster
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
        })
    }

    /// The other renditions finish encoding in the background (progress in
    /// the log) and are added to the asset when they are done; renditions
    /// made on demand meanwhile are kept.
    fn add_renditions_when_done(&self, pending: PendingRenditions, base: &VideoAttributes) {
        if pending.names().is_empty() {
            return;
        }
        let (store, id, base) = (self.store.clone(), self.id.clone(), base.clone());
        let public = self.public.clone();
        tokio::spawn(async move {
            let files = match tokio::task::spawn_blocking(move || pending.wait()).await {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(session = %id, error = %e, "rendition task failed");
                    return;
                }
            };
            let mut attrs = match store.asset(&id).await {
                Ok(Some(a)) => a.attributes.unwrap_or(base),
                _ => base,
            };
            let files = public.rendition_urls(&id, files);
            attrs
                .renditions
                .retain(|r| !files.iter().any(|f| f.name == r.name));
            attrs.renditions.extend(files);
            match store.asset_ready(&id, &attrs).await {
                Ok(()) => {
                    tracing::info!(session = %id, renditions = attrs.renditions.len(), "renditions ready")
                }
                Err(e) => {
                    tracing::error!(session = %id, error = %format!("{e:#}"), "storing renditions failed")
                }
            }
        });
    }
}
