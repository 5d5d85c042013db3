//! Fetching another platform's video (in a hand-off between platforms, the
//! platform that continues fetches and transcodes what the terminal cannot
//! play). When a hand-off names a video held by
//! another platform and none of its renditions suits the terminal, the
//! source file is downloaded from the suspend state's address (http or
//! https only) into a temporary file under the data directory, with a size
//! limit and a timeout, then moved into a new local asset laid out like
//! this platform's own recordings (`sessions/<id>/source.mp4`), measured
//! by the [`Probe`] hook, and recorded ready; the on-demand transcode then
//! works on it like on any local recording.
//!
//! The local asset's id is derived from the remote address (without its
//! query, which may carry an expiring signature), so fetches of the same
//! video are deduplicated: one runs at a time, and a video fetched before is
//! not fetched again. Jobs are kept in memory only; a fetch that fails
//! leaves no asset and no file behind.

use sharecast_store::now_ms;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sharecast_formats::attributes::{Rendition, VideoAttributes};
use sharecast_store::Store;

use crate::error::Error;
use crate::metrics::by_result;
use crate::outbound::{Outbound, OutboundError};
use sharecast_metrics::family;

/// Measures a media file (container, codecs, size, picture, frame rate,
/// duration); `name` and `url` are filled by the caller. Blocking: it runs
/// on the blocking thread pool. Errors name the file by its file name only.
pub type Probe = Arc<dyn Fn(&Path) -> Result<Rendition, String> + Send + Sync>;

/// The device id recorded for assets fetched from another platform.
pub(crate) const REMOTE_DEVICE: &str = "remote";

/// A fetch of another platform's video, as `GET /api/v1/fetches/{id}`
/// shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FetchJob {
    /// Job id.
    pub(crate) id: String,
    /// The remote address, without its query.
    pub(crate) address: String,
    /// The local asset the video becomes.
    pub(crate) content_id: String,
    /// `fetching`, `done` or `failed`.
    pub(crate) state: String,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
    /// Bytes received so far.
    pub(crate) bytes: u64,
    /// The file's size, when the platform announced it (Content-Length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) total_bytes: Option<u64>,
    /// `bytes` of `total_bytes`, 0–100, when the size is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) percent: Option<u8>,
    /// Where to poll this job.
    pub(crate) poll_url: String,
    /// Created, Unix ms.
    pub(crate) created_unix_ms: i64,
    /// Finished (done or failed), Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) finished_unix_ms: Option<i64>,
}

/// Fetch configuration.
#[derive(Debug, Clone)]
pub(crate) struct FetchLimits {
    /// Largest file fetched, bytes.
    pub(crate) max_bytes: u64,
    /// Whole fetch (connect, headers and body), at most.
    pub(crate) timeout: Duration,
    /// Which addresses may be fetched from, and through which redirects:
    /// the server's one outbound policy.
    pub(crate) outbound: Outbound,
}

/// The fetches' counters, and the collector that writes them.
#[derive(Debug, Default)]
struct Counters {
    started: Counter,
    reused: Counter,
    done: Counter,
    failed: Counter,
    refused: Counter,
    bytes: Counter,
}

impl Collector for Counters {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        by_result(
            &mut enc,
            "remote_fetches",
            "Fetches of another platform's video, by outcome (started, reused: a fetch under \
             way served the request, done, failed, refused: not an http(s) address)",
            &[
                ("started", &self.started),
                ("reused", &self.reused),
                ("done", &self.done),
                ("failed", &self.failed),
                ("refused", &self.refused),
            ],
        )?;
        family(
            &mut enc,
            "remote_fetch_bytes",
            "Bytes received fetching other platforms' videos",
            &self.bytes,
        )
    }
}

/// Someone waiting for a fetch: a bookmark and the terminal type it plays on.
pub(crate) type Waiter = (String, String);

struct Job {
    job: FetchJob,
    url: String,
    title: Option<String>,
    waiters: Vec<Waiter>,
}

struct Inner {
    store: Store,
    probe: Probe,
    client: reqwest::Client,
    limits: FetchLimits,
    data_dir: PathBuf,
    public_url: String,
    jobs: Mutex<HashMap<String, Job>>,
    counters: Arc<Counters>,
}

/// The fetches of one server. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Fetches {
    inner: Arc<Inner>,
}

/// A fetch whose job is no longer known (a restart, or dropped meanwhile).
fn forgotten(id: &str, address: String, content_id: String) -> FetchJob {
    FetchJob {
        id: id.to_string(),
        address,
        content_id,
        state: "failed".into(),
        error: Some("the fetch was forgotten".into()),
        bytes: 0,
        total_bytes: None,
        percent: None,
        poll_url: String::new(),
        created_unix_ms: 0,
        finished_unix_ms: None,
    }
}

/// The address without its query or fragment.
fn without_query(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// The local asset id of a remote address: 32 hex digits of its SHA-256
/// (query left out).
pub(crate) fn local_id(address: &str) -> String {
    let d = Sha256::digest(without_query(address).as_bytes());
    hex::encode(&d[..16])
}

impl Fetches {
    /// Temporary files go to `<data_dir>/fetching` (emptied here: a fetch
    /// cut by a restart is forgotten), assets to `<data_dir>/sessions`.
    pub(crate) fn new(
        store: Store,
        probe: Probe,
        limits: FetchLimits,
        data_dir: &Path,
        public_url: &str,
    ) -> anyhow::Result<Self> {
        let tmp = data_dir.join("fetching");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let client = limits.outbound.client(limits.timeout)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                probe,
                client,
                limits,
                data_dir: data_dir.to_path_buf(),
                public_url: public_url.trim_end_matches('/').to_string(),
                jobs: Mutex::new(HashMap::new()),
                counters: Arc::default(),
            }),
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Job>> {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A job by id.
    /// Every job kept.
    pub(crate) fn list(&self) -> Vec<FetchJob> {
        self.jobs().values().map(|j| j.job.clone()).collect()
    }

    pub(crate) fn job(&self, id: &str) -> Option<FetchJob> {
        self.jobs().get(id).map(|j| j.job.clone())
    }

    /// Checks that `address` can be fetched under the outbound policy: an
    /// http or https URL of an allowed host that is not an internal address
    /// (names are checked again on the addresses they resolve to).
    pub(crate) fn check_address(&self, address: &str) -> Result<(), Error> {
        let shown = address.chars().take(200).collect::<String>();
        if address.len() > 2048 {
            self.inner.counters.refused.inc();
            return Err(Error::BadAddress(
                "the video's address is longer than 2048 characters".into(),
            ));
        }
        match self.inner.limits.outbound.rules().check_url(address) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.inner.counters.refused.inc();
                Err(match e {
                    OutboundError::NotAllowed(why) => Error::PlatformNotAllowed(format!(
                        "the video's address {shown:?} is not fetched from: {why} (outbound.allowed_hosts)"
                    )),
                    _ => Error::BadAddress(format!(
                        "the video's address {shown:?} is not an http(s) URL; it cannot be fetched"
                    )),
                })
            }
        }
    }

    /// The fetch of `address` under way, or a new one started (`true`).
    /// `waiter` is told when it ends (see [`Fetches::run`]). Jobs that
    /// failed are not reused: the next request tries again.
    pub(crate) fn start(
        &self,
        address: &str,
        title: Option<String>,
        waiter: Waiter,
    ) -> (FetchJob, bool) {
        let key = without_query(address).to_string();
        let mut jobs = self.jobs();
        if let Some(j) = jobs
            .values_mut()
            .find(|j| j.job.address == key && j.job.state == "fetching")
        {
            j.waiters.push(waiter);
            self.inner.counters.reused.inc();
            return (j.job.clone(), false);
        }
        crate::jobs::make_room(&mut jobs, |j| {
            (j.job.state != "fetching").then(|| j.job.finished_unix_ms.unwrap_or(0))
        });
        let id = crate::jobs::new_job_id();
        let job = FetchJob {
            poll_url: format!("{}/api/v1/fetches/{id}", self.inner.public_url),
            id: id.clone(),
            address: key.clone(),
            content_id: local_id(&key),
            state: "fetching".into(),
            error: None,
            bytes: 0,
            total_bytes: None,
            percent: None,
            created_unix_ms: now_ms(),
            finished_unix_ms: None,
        };
        jobs.insert(
            id,
            Job {
                job: job.clone(),
                url: address.to_string(),
                title,
                waiters: vec![waiter],
            },
        );
        self.inner.counters.started.inc();
        (job, true)
    }

    /// Runs a job started by [`Fetches::start`]: download, move into the
    /// local asset, probe, record. Marks the job done or failed and answers
    /// it with the waiters to tell.
    pub(crate) async fn run(&self, id: &str) -> (FetchJob, Vec<Waiter>) {
        let Some((url, title, content_id)) = self
            .jobs()
            .get(id)
            .map(|j| (j.url.clone(), j.title.clone(), j.job.content_id.clone()))
        else {
            return (forgotten(id, String::new(), String::new()), Vec::new());
        };
        let result = self.fetch(id, &url, title, &content_id).await;
        let c = &self.inner.counters;
        let mut jobs = self.jobs();
        let Some(j) = jobs.get_mut(id) else {
            return (forgotten(id, url, content_id), Vec::new());
        };
        j.job.finished_unix_ms = Some(now_ms());
        match result {
            Ok(()) => {
                c.done.inc();
                j.job.state = "done".into();
                tracing::info!(fetch = %id, address = %j.job.address, content = %content_id, bytes = j.job.bytes, "remote video fetched");
            }
            Err(e) => {
                c.failed.inc();
                tracing::error!(fetch = %id, address = %j.job.address, error = %e, "fetching a remote video failed");
                j.job.state = "failed".into();
                j.job.error = Some(e);
            }
        }
        (j.job.clone(), std::mem::take(&mut j.waiters))
    }

    async fn fetch(
        &self,
        id: &str,
        url: &str,
        title: Option<String>,
        content_id: &str,
    ) -> Result<(), String> {
        let tmp = self
            .inner
            .data_dir
            .join("fetching")
            .join(format!("{id}.part"));
        let r = self.download(id, url, &tmp).await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
            return r;
        }
        let dir = self.inner.data_dir.join("sessions").join(content_id);
        let r = self.install(&tmp, &dir, title, content_id).await;
        if r.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
        }
        r
    }

    async fn download(&self, id: &str, url: &str, tmp: &Path) -> Result<(), String> {
        use tokio::io::AsyncWriteExt;
        let max = self.inner.limits.max_bytes;
        let shown = without_query(url);
        let too_large = |n: u64| {
            format!("{shown} is larger than the limit of {max} bytes (fetch_max_bytes): {n} bytes or more")
        };
        // What the user sees names the policy's refusal or a timeout, and
        // otherwise only that the platform could not be reached (the cause
        // is logged): a fetch must not tell open ports from closed ones.
        let timeout = |e: &reqwest::Error| {
            if e.is_timeout() {
                format!(
                    "fetching {shown}: timed out after {} s (fetch_timeout_secs)",
                    self.inner.limits.timeout.as_secs()
                )
            } else {
                format!(
                    "fetching {shown}: {}",
                    self.inner.limits.outbound.transport_error(shown, e)
                )
            }
        };
        let resp = self
            .inner
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| timeout(&e))?;
        if !resp.status().is_success() {
            return Err(format!(
                "fetching {shown}: the platform answered {}",
                resp.status()
            ));
        }
        if let Some(n) = resp.content_length().filter(|n| *n > max) {
            return Err(too_large(n));
        }
        let total = resp.content_length();
        if let Some(j) = self.jobs().get_mut(id) {
            j.job.total_bytes = total;
            j.job.percent = total.map(|_| 0);
        }
        let mut file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| format!("creating a temporary file: {e}"))?;
        let mut resp = resp;
        let mut n = 0u64;
        while let Some(chunk) = resp.chunk().await.map_err(|e| timeout(&e))? {
            n += chunk.len() as u64;
            if n > max {
                return Err(too_large(n));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| format!("writing the temporary file: {e}"))?;
            self.inner.counters.bytes.inc_by(chunk.len() as u64);
            if let Some(j) = self.jobs().get_mut(id) {
                j.job.bytes = n;
                j.job.percent = total.map(|t| (n.min(t) * 100 / t.max(1)) as u8);
            }
        }
        file.sync_all()
            .await
            .map_err(|e| format!("writing the temporary file: {e}"))?;
        if n == 0 {
            return Err(format!("{shown} is empty"));
        }
        Ok(())
    }

    async fn install(
        &self,
        tmp: &Path,
        dir: &Path,
        title: Option<String>,
        content_id: &str,
    ) -> Result<(), String> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| format!("creating the asset directory: {e}"))?;
        let file = dir.join("source.mp4");
        tokio::fs::rename(tmp, &file)
            .await
            .map_err(|e| format!("moving the fetched file into place: {e}"))?;
        let probe = self.inner.probe.clone();
        let measured = {
            let file = file.clone();
            tokio::task::spawn_blocking(move || probe(&file))
                .await
                .map_err(|e| format!("probe task ended: {e}"))?
        }
        .map_err(|e| format!("the fetched file is not a playable video: {e}"))?;
        if measured.width == 0 || measured.height == 0 {
            return Err(format!(
                "the fetched file is not a video (codecs {:?})",
                measured.codecs
            ));
        }
        let url = format!("{}/vod/{content_id}/source.mp4", self.inner.public_url);
        let source = Rendition {
            name: "source".into(),
            url: url.clone(),
            ..measured
        };
        let attrs = VideoAttributes {
            id: content_id.to_string(),
            title: title.clone(),
            vod_url: Some(url),
            container: source.container.clone(),
            codecs: source.codecs.clone(),
            size_bytes: source.size_bytes,
            width: source.width,
            height: source.height,
            rotation: source.rotation,
            frame_rate: source.frame_rate,
            bitrate: source.bitrate,
            duration_ms: source.duration_ms,
            renditions: vec![source],
            ..VideoAttributes::default()
        };
        let store = &self.inner.store;
        let r = async {
            store
                .asset_recording(content_id, REMOTE_DEVICE, title.as_deref(), now_ms())
                .await?;
            store.asset_ready(content_id, &attrs).await
        }
        .await;
        if let Err(e) = r {
            let _ = store.asset_delete(content_id).await;
            return Err(format!("recording the asset: {e:#}"));
        }
        Ok(())
    }

    /// Registers the fetch counters (`remote_fetch…`, under the
    /// registry's prefix).
    pub(crate) fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(self.inner.counters.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{serve, Reply};
    use std::sync::atomic::Ordering;

    /// What the probe hook says of a fetched file it accepts.
    fn hevc_rendition() -> Rendition {
        Rendition {
            container: "mp4".into(),
            codecs: vec!["hvc1.1.6.L93.B0".into()],
            width: 64,
            height: 48,
            duration_ms: 1000,
            ..Rendition::default()
        }
    }

    async fn wait(f: &Fetches, id: &str) -> FetchJob {
        let (job, waiters) = f.run(id).await;
        assert_eq!(waiters.len(), 1);
        job
    }

    /// The size limit (announced or streamed), the timeout, the probe's
    /// verdict and a good fetch, against a local HTTP server and a probe
    /// hook (the real probe runs end to end).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fetches_are_bounded_and_leave_nothing_behind_when_they_fail() {
        let server = serve(
            &[
                ("/big.mp4", Reply::Body(vec![0u8; 1000])),
                ("/chunked.mp4", Reply::Chunked(vec![vec![0u8; 100]; 10])),
                ("/slow.mp4", Reply::Slow(Duration::from_secs(10))),
                ("/text.mp4", Reply::Body(b"not a video".to_vec())),
                ("/ok.mp4", Reply::Body(vec![7u8; 200])),
            ],
            None,
        )
        .await;
        let base = server.base;

        let (store, dir) = crate::testing::store().await;
        let probe: Probe = Arc::new(|path: &Path| {
            if std::fs::read(path)
                .map_err(|e| e.to_string())?
                .starts_with(b"not")
            {
                return Err("source.mp4: not an MP4".into());
            }
            Ok(hevc_rendition())
        });
        let f = Fetches::new(
            store.clone(),
            probe,
            FetchLimits {
                max_bytes: 500,
                timeout: Duration::from_secs(1),
                outbound: outbound(&["127.0.0.1"]),
            },
            dir.path(),
            "http://b/",
        )
        .unwrap();
        assert!(f.check_address("ftp://a/x.mp4").is_err());
        assert!(f.check_address("file:///etc/passwd").is_err());
        assert!(f.check_address("http://").is_err());

        for (path, why) in [
            (
                "big.mp4",
                "larger than the limit of 500 bytes (fetch_max_bytes)",
            ),
            (
                "chunked.mp4",
                "larger than the limit of 500 bytes (fetch_max_bytes)",
            ),
            ("slow.mp4", "timed out after 1 s (fetch_timeout_secs)"),
            ("text.mp4", "not a playable video: source.mp4: not an MP4"),
            ("missing.mp4", "the platform answered 404"),
        ] {
            let url = format!("{base}/{path}");
            let (job, new) = f.start(&url, None, ("b1".into(), "web".into()));
            assert!(new);
            let job = wait(&f, &job.id).await;
            assert_eq!(job.state, "failed", "{path}");
            let error = job.error.unwrap();
            assert!(error.contains(why), "{path}: {error}");
            assert!(store.asset(&job.content_id).await.unwrap().is_none());
            assert!(!dir.path().join("sessions").join(&job.content_id).exists());
        }
        assert_eq!(
            std::fs::read_dir(dir.path().join("fetching"))
                .unwrap()
                .count(),
            0
        );

        // A good one, asked for twice while under way: one fetch.
        let url = format!("{base}/ok.mp4?sig=1");
        let (job, new) = f.start(&url, Some("t".into()), ("b1".into(), "web".into()));
        assert!(new);
        let (again, new) = f.start(
            &format!("{base}/ok.mp4?sig=2"),
            None,
            ("b2".into(), "tv".into()),
        );
        assert!(!new);
        assert_eq!(again.id, job.id);
        let (done, waiters) = f.run(&job.id).await;
        assert_eq!(done.state, "done", "{done:?}");
        assert_eq!(done.bytes, 200);
        // The platform announced the size: the job says how far it got.
        assert_eq!((done.total_bytes, done.percent), (Some(200), Some(100)));
        assert_eq!(waiters.len(), 2);
        let asset = store.asset(&done.content_id).await.unwrap().unwrap();
        assert_eq!(asset.state, sharecast_store::AssetState::Ready);
        let attrs = asset.attributes.unwrap();
        assert_eq!(attrs.renditions[0].name, "source");
        assert_eq!(
            attrs.vod_url.as_deref(),
            Some(format!("http://b/vod/{}/source.mp4", done.content_id).as_str())
        );
        assert_eq!(
            std::fs::read(
                dir.path()
                    .join("sessions")
                    .join(&done.content_id)
                    .join("source.mp4")
            )
            .unwrap()
            .len(),
            200
        );
        let m = crate::testing::scrape(|r| f.register_metrics(r));
        for line in [
            "sharecast_remote_fetches_total{result=\"started\"} 6",
            "sharecast_remote_fetches_total{result=\"reused\"} 1",
            "sharecast_remote_fetches_total{result=\"done\"} 1",
            "sharecast_remote_fetches_total{result=\"failed\"} 5",
            "sharecast_remote_fetches_total{result=\"refused\"} 3",
        ] {
            assert!(m.contains(line), "{line} in\n{m}");
        }
    }

    /// With `fetch_allowed_hosts` set, only those hosts are fetched from:
    /// another host (or the same host on another port, for a `host:port`
    /// entry) is refused at once with 403 `platform_not_allowed` and
    /// counted, and a redirect from an allowed host to another one fails the
    /// fetch without that host ever being asked.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_allowed_platforms_are_fetched_from_even_through_redirects() {
        let other = serve(&[], Some(Reply::Body(vec![7u8; 200]))).await;
        let other_base = other.base.clone();
        let moved = Reply::Redirect(format!("{other_base}/ok.mp4"));
        let allowed = serve(
            &[
                ("/ok.mp4", Reply::Body(vec![7u8; 200])),
                ("/moved.mp4", moved),
            ],
            None,
        )
        .await;
        let (allowed_addr, base) = (allowed.addr, allowed.base.clone());

        let (store, dir) = crate::testing::store().await;
        let probe: Probe = Arc::new(|_: &Path| Ok(hevc_rendition()));
        let f = Fetches::new(
            store.clone(),
            probe,
            FetchLimits {
                max_bytes: 10_000,
                timeout: Duration::from_secs(5),
                outbound: outbound(&[&format!(" 127.0.0.1:{} ", allowed_addr.port())]),
            },
            dir.path(),
            "http://b/",
        )
        .unwrap();
        for refused in [
            format!("{other_base}/ok.mp4"),
            format!("http://localhost:{}/ok.mp4", allowed_addr.port()),
            "http://internal.example/ok.mp4".to_string(),
        ] {
            let e = f.check_address(&refused).unwrap_err();
            assert_eq!(e.code(), "platform_not_allowed", "{refused}");
        }
        assert!(f.check_address("ftp://127.0.0.1/x.mp4").is_err());
        assert!(f.check_address(&format!("{base}/ok.mp4")).is_ok());
        let metrics = crate::testing::scrape(|r| f.register_metrics(r));
        assert!(
            metrics.contains("sharecast_remote_fetches_total{result=\"refused\"} 4"),
            "{metrics}"
        );

        // A redirect to a host not on the list fails the fetch.
        f.check_address(&format!("{base}/moved.mp4")).unwrap();
        let (job, _) = f.start(
            &format!("{base}/moved.mp4"),
            None,
            ("b1".into(), "web".into()),
        );
        let job = wait(&f, &job.id).await;
        assert_eq!(job.state, "failed");
        let error = job.error.unwrap();
        assert!(error.contains("not allowed"), "{error}");
        assert_eq!(other.hits.load(Ordering::SeqCst), 0);

        // The allowed host itself is fetched.
        let (job, _) = f.start(&format!("{base}/ok.mp4"), None, ("b1".into(), "web".into()));
        let job = wait(&f, &job.id).await;
        assert_eq!(job.state, "done", "{job:?}");

        // A host-only entry allows every port of that host.
        let g = Fetches::new(
            store,
            Arc::new(|_: &Path| Err("unused".to_string())),
            FetchLimits {
                max_bytes: 10_000,
                timeout: Duration::from_secs(5),
                outbound: outbound(&["127.0.0.1"]),
            },
            &dir.path().join("g"),
            "http://b/",
        )
        .unwrap();
        assert!(g.check_address(&format!("{other_base}/ok.mp4")).is_ok());
        assert!(g.check_address(&format!("{base}/ok.mp4")).is_ok());
    }

    /// An outbound policy allowing these hosts (loopback ones included).
    fn outbound(allowed: &[&str]) -> Outbound {
        Outbound::new(&crate::outbound::OutboundConfig {
            allowed_hosts: allowed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn local_ids_ignore_the_query_and_are_hex() {
        let a = local_id("http://a/vod/x/source.mp4?exp=1&sig=2");
        assert_eq!(a, local_id("http://a/vod/x/source.mp4"));
        assert_ne!(a, local_id("http://b/vod/x/source.mp4"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
