//! On-demand transcodes (in a hand-off between platforms, the platform
//! that continues transcodes what the terminal cannot play). When no rendition of a finished recording suits a terminal
//! type, a job encodes one (H.264 main + AAC, a short side the terminal type
//! allows) in the background; when it is done the rendition joins the
//! asset's attributes, so the catalogue, history, bookmarks and later
//! hand-offs see it.
//!
//! This module knows nothing of media: the composition root passes the
//! encoder in as a [`Transcode`] hook. Jobs are deduplicated (one job per
//! content and rendition), bounded (at most `transcode_max_concurrent` run,
//! at most `transcode_max_pending` wait or run) and kept in memory only: a
//! restart forgets them (a file half written is never served, it has a
//! temporary name), and the next hand-off or bookmark resume schedules the
//! rendition again.

use sharecast_store::now_ms;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sharecast_formats::attributes::{Rendition, VideoAttributes};
use sharecast_formats::compat::{playable_rendition, terminal_max_height};
use sharecast_store::{AssetState, Store};

use crate::error::{Error, Result};
use crate::metrics::{by_result, StateLabel};

/// What the hook is asked to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscodeRequest {
    /// The content (asset) whose finished source file is transcoded.
    pub content_id: String,
    /// Rendition name; the file is `<name>.mp4` next to the source.
    pub name: String,
    /// Shorter side of the picture, pixels (never upscaled).
    pub short_side: u32,
}

/// Encodes a finished recording into one H.264 + AAC rendition and answers
/// its attributes, measured on the produced file, with its public URL; or
/// why it failed. Blocking: it runs on the blocking thread pool. It tells
/// the job how far it is through the second argument.
pub type Transcode =
    Arc<dyn Fn(&TranscodeRequest, &dyn Fn(JobProgress)) -> Result<Rendition, String> + Send + Sync>;

/// How far a transcode is: media time encoded of the whole.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobProgress {
    /// Media time encoded, ms.
    pub done_ms: u64,
    /// The whole, ms (0 when unknown).
    pub total_ms: u64,
    /// `done_ms` of `total_ms`, 0–100.
    pub percent: u8,
}

impl JobProgress {
    /// `done_ms` of `total_ms` (never above 100 %).
    pub fn new(done_ms: u64, total_ms: u64) -> JobProgress {
        let percent = (done_ms.min(total_ms) * 100)
            .checked_div(total_ms)
            .map_or(0, |p| p as u8);
        JobProgress {
            done_ms,
            total_ms,
            percent,
        }
    }
}

/// An on-demand transcode job, as `GET /api/v1/transcodes/{id}` shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TranscodeJob {
    /// Job id.
    pub(crate) id: String,
    /// The content being transcoded.
    pub(crate) content_id: String,
    /// Name of the rendition being made.
    pub(crate) rendition: String,
    /// Requested shorter side, pixels.
    pub(crate) short_side: u32,
    /// `queued`, `running`, `done` or `failed`.
    pub(crate) state: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// The new rendition's URL, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// The new rendition's attributes, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) attributes: Option<Rendition>,
    /// How far it is, once it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) progress: Option<JobProgress>,
    /// Where to poll this job.
    pub(crate) poll_url: String,
    /// Created, Unix ms.
    pub(crate) created_unix_ms: i64,
    /// Finished (done or failed), Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finished_unix_ms: Option<i64>,
}

impl TranscodeJob {
    fn pending(&self) -> bool {
        self.state == "queued" || self.state == "running"
    }
}

/// What scheduling found.
#[derive(Debug, Clone)]
pub enum Scheduled {
    /// A rendition the terminal plays exists already.
    Ready(Rendition),
    /// A job makes one (new, or the one already under way).
    Job(Box<TranscodeJob>),
}

#[derive(Default)]
struct Counters {
    scheduled: Counter,
    reused: Counter,
    done: Counter,
    failed: Counter,
    refused: Counter,
}

struct Inner {
    hook: Transcode,
    store: Store,
    public_url: String,
    short_side: u32,
    max_pending: usize,
    permits: Arc<tokio::sync::Semaphore>,
    jobs: Mutex<HashMap<String, TranscodeJob>>,
    counters: Counters,
}

/// The on-demand transcodes of one server. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Transcodes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Transcodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcodes")
            .field("public_url", &self.inner.public_url)
            .finish_non_exhaustive()
    }
}

/// The shorter side of a rendition of a `width` x `height` source that a
/// terminal type can show: at most `wanted`, never more than the source's,
/// and small enough that the picture's height fits the terminal; even.
pub(crate) fn short_side_for(width: u32, height: u32, wanted: u32, terminal_type: &str) -> u32 {
    let (w, h) = (u64::from(width.max(1)), u64::from(height.max(1)));
    let short = w.min(h);
    let mut side = u64::from(wanted.max(2)).min(short);
    // The output height for that short side.
    let out_h = |s: u64| if h <= w { s } else { s * h / short };
    let max_h = u64::from(terminal_max_height(terminal_type));
    if out_h(side) > max_h {
        side = if h <= w { max_h } else { max_h * short / h };
    }
    u32::try_from((side / 2 * 2).max(2)).unwrap_or(2)
}

/// Rendition name of an on-demand transcode: `<short side>p-h264`.
pub(crate) fn rendition_name(short_side: u32) -> String {
    format!("{short_side}p-h264")
}

impl Transcodes {
    /// `short_side`: the preferred shorter side of on-demand renditions;
    /// `max_concurrent`: jobs encoding at once (at least 1); `max_pending`:
    /// jobs queued or running, beyond which scheduling is refused.
    pub(crate) fn new(
        hook: Transcode,
        store: Store,
        public_url: &str,
        short_side: u32,
        max_concurrent: usize,
        max_pending: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                hook,
                store,
                public_url: public_url.trim_end_matches('/').to_string(),
                short_side,
                max_pending: max_pending.max(1),
                permits: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
                jobs: Mutex::new(HashMap::new()),
                counters: Counters::default(),
            }),
        }
    }

    /// A job by id.
    /// Every job kept.
    pub(crate) fn list(&self) -> Vec<TranscodeJob> {
        self.jobs().values().cloned().collect()
    }

    pub(crate) fn job(&self, id: &str) -> Option<TranscodeJob> {
        self.jobs().get(id).cloned()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, TranscodeJob>> {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The rendition of a finished recording that `terminal_type` plays, or
    /// the job that makes one (scheduled now, or already under way: two
    /// requests for the same content and rendition share one job). Errors:
    /// unknown content, recording not ready, nothing to transcode, too many
    /// jobs.
    pub(crate) async fn schedule(
        &self,
        content_id: &str,
        terminal_type: &str,
    ) -> Result<Scheduled> {
        let attrs = self.finished(content_id).await?;
        if let Some(r) = playable_rendition(&attrs, terminal_type) {
            return Ok(Scheduled::Ready(r));
        }
        if attrs.width == 0 || attrs.height == 0 {
            return Err(Error::CannotTranscode {
                content_id: content_id.to_string(),
                terminal_type: terminal_type.to_string(),
                codecs: attrs.codecs,
            });
        }
        let short_side = short_side_for(
            attrs.width,
            attrs.height,
            self.inner.short_side,
            terminal_type,
        );
        let name = rendition_name(short_side);
        // Made before (perhaps for another terminal type): reuse it.
        if let Some(r) = attrs.renditions.iter().find(|r| r.name == name) {
            self.inner.counters.reused.inc();
            return Ok(Scheduled::Ready(r.clone()));
        }
        let (job, new) = self.enqueue(content_id, &name, short_side)?;
        if !new {
            return Ok(Scheduled::Job(Box::new(job)));
        }
        tracing::info!(content = %content_id, job = %job.id, rendition = %name, terminal_type, "on-demand transcode scheduled");
        let this = self.clone();
        let req = TranscodeRequest {
            content_id: content_id.to_string(),
            name,
            short_side,
        };
        let id = job.id.clone();
        tokio::spawn(async move { this.run(id, req).await });
        Ok(Scheduled::Job(Box::new(job)))
    }

    /// The attributes of a finished recording.
    async fn finished(&self, content_id: &str) -> Result<VideoAttributes> {
        let asset = self.inner.store.asset(content_id).await?;
        let asset = asset.ok_or_else(|| Error::UnknownContent(content_id.to_string()))?;
        match (asset.state, asset.attributes) {
            (AssetState::Ready, Some(attrs)) => Ok(attrs),
            (state, _) => Err(Error::RecordingNotReady {
                content_id: content_id.to_string(),
                state: state.as_str(),
            }),
        }
    }

    /// The job making `name` of the content: the one under way, or a new
    /// one queued (`true`; the caller runs it); refused past
    /// `transcode_max_pending`.
    fn enqueue(
        &self,
        content_id: &str,
        name: &str,
        short_side: u32,
    ) -> Result<(TranscodeJob, bool)> {
        let c = &self.inner.counters;
        let mut jobs = self.jobs();
        if let Some(j) = jobs
            .values()
            .find(|j| j.content_id == content_id && j.rendition == name && j.state != "failed")
        {
            c.reused.inc();
            return Ok((j.clone(), false));
        }
        let pending = jobs.values().filter(|j| j.pending()).count();
        if pending >= self.inner.max_pending {
            c.refused.inc();
            return Err(Error::TranscodeBusy(pending));
        }
        crate::jobs::make_room(&mut jobs, |j| {
            (!j.pending()).then(|| j.finished_unix_ms.unwrap_or(0))
        });
        let id = crate::jobs::new_job_id();
        let job = TranscodeJob {
            poll_url: format!("{}/api/v1/transcodes/{id}", self.inner.public_url),
            id: id.clone(),
            content_id: content_id.to_string(),
            rendition: name.to_string(),
            short_side,
            state: "queued".into(),
            error: None,
            url: None,
            attributes: None,
            progress: None,
            created_unix_ms: now_ms(),
            finished_unix_ms: None,
        };
        jobs.insert(id, job.clone());
        c.scheduled.inc();
        Ok((job, true))
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut TranscodeJob)) {
        if let Some(j) = self.jobs().get_mut(id) {
            f(j);
        }
    }

    async fn run(self, id: String, req: TranscodeRequest) {
        let Ok(_permit) = self.inner.permits.clone().acquire_owned().await else {
            return self.fail(&id, "the transcoder is shutting down").await;
        };
        self.update(&id, |j| j.state = "running".into());
        let hook = self.inner.hook.clone();
        let r = {
            let (req, this, id) = (req.clone(), self.clone(), id.clone());
            let progress = move |p: JobProgress| this.update(&id, |j| j.progress = Some(p));
            tokio::task::spawn_blocking(move || hook(&req, &progress)).await
        };
        let rendition = match r {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return self.fail(&id, &e).await,
            Err(e) => return self.fail(&id, &format!("transcode task ended: {e}")).await,
        };
        if let Err(e) = self.add_rendition(&req.content_id, &rendition).await {
            return self
                .fail(&id, &format!("storing the rendition: {e:#}"))
                .await;
        }
        // Done before the bookmarks are updated: a bookmark stored from
        // now on sees the job done (see `ResumeService::store_bookmark`).
        self.update(&id, |j| {
            j.state = "done".into();
            if let Some(p) = &mut j.progress {
                *p = JobProgress::new(p.total_ms, p.total_ms);
            }
            j.url = Some(rendition.url.clone());
            j.attributes = Some(rendition.clone());
            j.finished_unix_ms = Some(now_ms());
        });
        // Bookmarks waiting for this job now point to the rendition.
        let r = self
            .inner
            .store
            .finish_transcode(&id, Some((&rendition.name, &rendition.url)))
            .await;
        if let Err(e) = r {
            tracing::warn!(job = %id, error = %e, "updating bookmarks after a transcode failed");
        }
        self.inner.counters.done.inc();
        tracing::info!(job = %id, content = %req.content_id, rendition = %rendition.name, url = %rendition.url, "on-demand transcode done");
    }

    async fn add_rendition(&self, content_id: &str, rendition: &Rendition) -> anyhow::Result<()> {
        let mut attrs: VideoAttributes = self
            .inner
            .store
            .asset(content_id)
            .await?
            .and_then(|a| a.attributes)
            .ok_or_else(|| anyhow::anyhow!("content {content_id} has no attributes any more"))?;
        attrs.renditions.retain(|r| r.name != rendition.name);
        attrs.renditions.push(rendition.clone());
        self.inner.store.asset_ready(content_id, &attrs).await
    }

    async fn fail(&self, id: &str, reason: &str) {
        self.inner.counters.failed.inc();
        tracing::error!(job = %id, reason, "on-demand transcode failed");
        self.update(id, |j| {
            j.state = "failed".into();
            j.error = Some(reason.to_string());
            j.finished_unix_ms = Some(now_ms());
        });
        let r = self.inner.store.finish_transcode(id, None).await;
        if let Err(e) = r {
            tracing::warn!(job = %id, error = %e, "updating bookmarks after a failed transcode");
        }
    }

    /// Registers the on-demand transcode families (`ondemand_transcodes…`,
    /// under the registry's prefix).
    pub(crate) fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.clone()));
    }
}

/// The outcome counters, and the jobs queued and running now.
impl Collector for Transcodes {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let c = &self.inner.counters;
        by_result(
            &mut enc,
            "ondemand_transcodes",
            "On-demand transcodes, by outcome (scheduled, reused: an existing job or rendition \
             served the request, done, failed, refused: too many pending)",
            &[
                ("scheduled", &c.scheduled),
                ("reused", &c.reused),
                ("done", &c.done),
                ("failed", &c.failed),
                ("refused", &c.refused),
            ],
        )?;
        let (queued, running) = {
            let jobs = self.jobs();
            (
                jobs.values().filter(|j| j.state == "queued").count(),
                jobs.values().filter(|j| j.state == "running").count(),
            )
        };
        let mut now = enc.encode_descriptor(
            "ondemand_transcodes",
            "On-demand transcodes now, by state",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in [("queued", queued), ("running", running)] {
            ConstGauge::new(n).encode(now.encode_family(&StateLabel { state })?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Condvar;

    /// Lets `n` more hook calls through.
    fn open_gate(gate: &(Mutex<u32>, Condvar), n: u32) {
        *gate.0.lock().unwrap() += n;
        gate.1.notify_all();
    }

    /// Opens the gate for good when the test ends, so that a failed
    /// assertion ends the test instead of leaving hooks blocked.
    struct OpenOnDrop(Arc<(Mutex<u32>, Condvar)>);

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            let mut open = self.0 .0.lock().unwrap_or_else(|p| p.into_inner());
            *open = u32::MAX / 2;
            self.0 .1.notify_all();
        }
    }

    async fn wait_finished(t: &Transcodes, id: &str) -> TranscodeJob {
        for _ in 0..500 {
            let j = t.job(id).unwrap();
            if !j.pending() {
                return j;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("job {id} did not finish");
    }

    fn h265(id: &str) -> VideoAttributes {
        VideoAttributes {
            id: id.into(),
            container: "mp4".into(),
            codecs: vec!["hvc1.1.6.L93.B0".into(), "mp4a.40.2".into()],
            width: 1920,
            height: 1080,
            renditions: vec![Rendition {
                name: "source".into(),
                url: format!("http://x/vod/{id}/source.mp4"),
                codecs: vec!["hvc1.1.6.L93.B0".into(), "mp4a.40.2".into()],
                width: 1920,
                height: 1080,
                ..Rendition::default()
            }],
            ..VideoAttributes::default()
        }
    }

    /// Deduplication, the two bounds, the rendition joining the asset, a
    /// failure with its reason, and clear errors, with a hook that waits
    /// for the test's go (the real encoder is tested in the transcoder crate
    /// and end to end).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn jobs_are_deduplicated_bounded_and_join_the_asset() {
        let (store, _dir) = crate::testing::store().await;
        for id in ["a1", "a2", "a3", "a4"] {
            store.asset_recording(id, "dev", None, 0).await.unwrap();
        }
        let gate = Arc::new((Mutex::new(0u32), Condvar::new()));
        let _release = OpenOnDrop(gate.clone());
        let (calls, running, max_running) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicUsize::new(0)),
        );
        let hook: Transcode = {
            let (gate, calls, running, max_running) = (
                gate.clone(),
                calls.clone(),
                running.clone(),
                max_running.clone(),
            );
            Arc::new(
                move |req: &TranscodeRequest, progress: &dyn Fn(JobProgress)| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    progress(JobProgress::new(250, 1000));
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    max_running.fetch_max(now, Ordering::SeqCst);
                    {
                        let mut open = gate.0.lock().unwrap();
                        while *open == 0 {
                            open = gate.1.wait(open).unwrap();
                        }
                        *open -= 1;
                    }
                    running.fetch_sub(1, Ordering::SeqCst);
                    if req.content_id == "a3" {
                        return Err("decoder exploded at frame 12".into());
                    }
                    Ok(Rendition {
                        name: req.name.clone(),
                        url: format!("http://x/vod/{}/{}.mp4", req.content_id, req.name),
                        codecs: vec!["avc1.4D401F".into(), "mp4a.40.2".into()],
                        width: req.short_side * 16 / 9,
                        height: req.short_side,
                        ..Rendition::default()
                    })
                },
            )
        };
        let t = Transcodes::new(hook, store.clone(), "http://x/", 480, 1, 2);

        // Unknown content, and a recording not ready yet.
        assert_eq!(
            t.schedule("nope", "web").await.unwrap_err().code(),
            "unknown_content"
        );
        assert_eq!(
            t.schedule("a1", "web").await.unwrap_err().code(),
            "not_ready"
        );
        for id in ["a1", "a2", "a3", "a4"] {
            store.asset_ready(id, &h265(id)).await.unwrap();
        }
        // A TV plays H.265: nothing to do.
        assert!(matches!(
            t.schedule("a1", "tv").await.unwrap(),
            Scheduled::Ready(r) if r.name == "source"
        ));

        let Scheduled::Job(j1) = t.schedule("a1", "web").await.unwrap() else {
            panic!("a job")
        };
        assert_eq!((j1.rendition.as_str(), j1.short_side), ("480p-h264", 480));
        assert_eq!(j1.poll_url, format!("http://x/api/v1/transcodes/{}", j1.id));
        // The same content for the same kind of player: the same job.
        let Scheduled::Job(again) = t.schedule("a1", "other").await.unwrap() else {
            panic!("the same job")
        };
        assert_eq!(again.id, j1.id);
        let Scheduled::Job(j2) = t.schedule("a2", "web").await.unwrap() else {
            panic!("a job")
        };
        // Two pending (transcode_max_pending = 2): a third is refused.
        assert_eq!(
            t.schedule("a3", "web").await.unwrap_err().code(),
            "transcode_busy"
        );
        // One encodes (transcode_max_concurrent = 1), the other waits.
        for _ in 0..500 {
            if calls.load(Ordering::SeqCst) > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // The running job tells how far it is; the waiting one does not.
        let (a, b) = (t.job(&j1.id).unwrap(), t.job(&j2.id).unwrap());
        let (run, wait) = if a.state == "running" { (a, b) } else { (b, a) };
        assert_eq!(
            (run.state.as_str(), wait.state.as_str()),
            ("running", "queued")
        );
        assert_eq!(run.progress, Some(JobProgress::new(250, 1000)));
        assert_eq!(run.progress.map(|p| p.percent), Some(25));
        assert_eq!(wait.progress, None);
        assert_eq!(t.job(&j1.id).unwrap().state, "running");
        assert_eq!(t.job(&j2.id).unwrap().state, "queued");

        open_gate(&gate, 2);
        let (d1, d2) = (
            wait_finished(&t, &j1.id).await,
            wait_finished(&t, &j2.id).await,
        );
        assert_eq!((d1.state.as_str(), d2.state.as_str()), ("done", "done"));
        assert_eq!(d1.url.as_deref(), Some("http://x/vod/a1/480p-h264.mp4"));
        // transcode_max_concurrent = 1: never two encodes at once.
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(max_running.load(Ordering::SeqCst), 1);

        // The rendition joined the asset; the next request reuses it.
        let attrs = store
            .asset("a1")
            .await
            .unwrap()
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(attrs.renditions.len(), 2);
        assert!(matches!(
            t.schedule("a1", "web").await.unwrap(),
            Scheduled::Ready(r) if r.url == "http://x/vod/a1/480p-h264.mp4"
        ));
        assert_eq!(calls.load(Ordering::SeqCst), 2);

        // A failure keeps its reason, leaves the asset alone, and the next
        // request tries again.
        let Scheduled::Job(j3) = t.schedule("a3", "web").await.unwrap() else {
            panic!("a job")
        };
        open_gate(&gate, 1);
        let f = wait_finished(&t, &j3.id).await;
        assert_eq!(f.state, "failed");
        assert_eq!(f.error.as_deref(), Some("decoder exploded at frame 12"));
        let attrs = store
            .asset("a3")
            .await
            .unwrap()
            .unwrap()
            .attributes
            .unwrap();
        assert_eq!(attrs.renditions.len(), 1);
        let Scheduled::Job(retry) = t.schedule("a3", "web").await.unwrap() else {
            panic!("a new job")
        };
        assert_ne!(retry.id, j3.id);
        open_gate(&gate, 1);
        wait_finished(&t, &retry.id).await;

        let m = crate::testing::scrape(|r| t.register_metrics(r));
        for line in [
            "sharecast_ondemand_transcodes_total{result=\"scheduled\"} 4",
            "sharecast_ondemand_transcodes_total{result=\"done\"} 2",
            "sharecast_ondemand_transcodes_total{result=\"failed\"} 2",
            "sharecast_ondemand_transcodes_total{result=\"refused\"} 1",
            "sharecast_ondemand_transcodes{state=\"running\"} 0",
        ] {
            assert!(m.contains(line), "{line} in\n{m}");
        }
    }

    #[test]
    fn short_side_fits_the_terminal_and_never_upscales() {
        assert_eq!(short_side_for(640, 360, 480, "web"), 360);
        assert_eq!(short_side_for(1920, 1080, 480, "web"), 480);
        assert_eq!(short_side_for(1920, 1080, 240, "web"), 240);
        // Portrait 4K on a browser (height at most 1080): 607 -> 606 wide.
        assert_eq!(short_side_for(2160, 3840, 2160, "web"), 606);
        assert_eq!(short_side_for(3840, 2160, 2160, "web"), 1080);
        assert_eq!(short_side_for(3840, 2160, 2160, "tv"), 2160);
    }
}
