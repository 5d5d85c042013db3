//! The admin side: a live dashboard at `/admin`, a JSON API under
//! `/api/v1/admin/`, and a server-sent-events feed that the dashboard
//! follows, all behind the admin token (`Authorization: Bearer T`, or
//! `?token=T` for the page and the event stream, which browsers cannot give
//! headers).
//!
//! It knows nothing of media: the binary hands it closures that return the
//! components' snapshots (ingest sessions, live streams, viewers, viewer
//! events, on-demand jobs; their types are what the answers are described
//! with in the OpenAPI document) and that end a session or kick a viewer.
//! Recent warnings and errors come from the [`ErrorCapture`] tracing layer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::access::AuthAdmin;
use crate::error::ApiPath as Path;
use crate::history::{History, Series};

use sharecast_formats::status::SessionSnapshot;
use sharecast_formats::status::{LiveStreamSnapshot, ViewerEvent, ViewerSnapshot};
use sharecast_metrics::family;
use sharecast_resume::Jobs;
use sharecast_store::{Asset, Store};

/// Returns a list (of sessions, viewers, …).
pub type ListFn<T> = Arc<dyn Fn() -> Vec<T> + Send + Sync>;
/// Acts on an id (end a session, kick a viewer); false when unknown.
pub type ActionFn = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// What the admin pages show and can do.
#[derive(Clone)]
pub struct AdminSources {
    /// Ingest sessions.
    pub sessions: ListFn<SessionSnapshot>,
    /// Live streams with their viewers by protocol, and links to them.
    pub streams: ListFn<AdminStream>,
    /// Current viewers.
    pub viewers: ListFn<ViewerSnapshot>,
    /// Recent viewer events (vanished, left, kicked).
    pub viewer_events: ListFn<ViewerEvent>,
    /// On-demand transcodes and fetches with their progress.
    pub jobs: Arc<dyn Fn() -> Jobs + Send + Sync>,
    /// Ends an ingest session.
    pub end_session: ActionFn,
    /// Kicks a viewer.
    pub kick_viewer: ActionFn,
    /// Assets (recent VODs).
    pub store: Store,
    /// How often the event stream sends a snapshot.
    pub refresh: Duration,
}

/// The admin routes.
#[derive(Clone)]
pub struct Admin {
    inner: Arc<AdminInner>,
}

struct AdminInner {
    src: AdminSources,
    /// Sessions ended and viewers kicked.
    actions: Counter,
    /// The charts' samples.
    history: Mutex<History>,
    /// Each new sample, as the event stream's JSON.
    samples: tokio::sync::broadcast::Sender<Arc<str>>,
}

/// The admin side's families: the actions taken, and the warnings and
/// errors in the recent log buffer (read at each scrape).
#[derive(Debug)]
struct AdminMetrics {
    actions: Counter,
}

impl Collector for AdminMetrics {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        family(
            &mut enc,
            "admin_actions",
            "Sessions ended and viewers kicked by admins",
            &self.actions,
        )?;
        family(
            &mut enc,
            "recent_log_errors",
            "Warnings and errors in the recent log buffer",
            &ConstGauge::new(recent_errors().len()),
        )
    }
}

/// A live stream as the admin sees it: the relay's snapshot and links that
/// open it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AdminStream {
    /// The stream (its fields are at the top level of the JSON).
    #[serde(flatten)]
    pub stream: LiveStreamSnapshot,
    /// The player page, with a fresh playback token when one is needed.
    pub watch_path: String,
    /// The HLS playlist, with a fresh playback token when one is needed.
    pub hls_path: String,
}

/// Everything the dashboard shows (`GET /api/v1/admin/overview`, and the
/// event stream's `overview` events).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Overview {
    /// When it was taken, Unix ms.
    pub now_unix_ms: u64,
    /// Open ingest sessions.
    pub sessions: Vec<SessionSnapshot>,
    /// Live streams.
    pub streams: Vec<AdminStream>,
    /// Current viewers.
    pub viewers: Vec<ViewerSnapshot>,
    /// Recent viewer events, oldest first.
    pub viewer_events: Vec<ViewerEvent>,
    /// On-demand transcodes and fetches.
    pub jobs: Jobs,
    /// Recent warnings and errors of the log, oldest first.
    pub errors: Vec<ErrorEntry>,
    /// The 20 newest assets (empty when the store could not list them).
    pub assets: Vec<Asset>,
}

/// The answer of `GET /api/v1/admin/{what}`: one object whose one key is
/// the list's name (`viewer-events` as `viewer_events`).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum AdminList {
    /// `sessions`.
    Sessions {
        /// Open ingest sessions.
        sessions: Vec<SessionSnapshot>,
    },
    /// `streams`.
    Streams {
        /// Live streams.
        streams: Vec<AdminStream>,
    },
    /// `viewers`.
    Viewers {
        /// Current viewers.
        viewers: Vec<ViewerSnapshot>,
    },
    /// `viewer-events`.
    ViewerEvents {
        /// Recent viewer events, oldest first.
        viewer_events: Vec<ViewerEvent>,
    },
    /// `errors`.
    Errors {
        /// Recent warnings and errors of the log, oldest first.
        errors: Vec<ErrorEntry>,
    },
    /// `jobs`.
    Jobs {
        /// On-demand transcodes and fetches.
        jobs: Jobs,
    },
    /// `history`.
    History {
        /// The charts' series.
        history: Series,
    },
    /// `assets`.
    Assets {
        /// The 50 newest assets.
        assets: Vec<Asset>,
    },
}

/// The answer of `POST /api/v1/admin/sessions/{id}/end`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Ended {
    /// The session being ended.
    ended: String,
}

/// The answer of `POST /api/v1/admin/viewers/{id}/kick`.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Kicked {
    /// The viewer kicked.
    kicked: String,
}

/// One captured warning or error.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorEntry {
    /// Unix ms.
    pub at_unix_ms: u64,
    /// WARN or ERROR.
    pub level: String,
    /// Module path of the event.
    pub target: String,
    /// The message and fields.
    pub message: String,
}

const MAX_ERRORS: usize = 200;

/// How often the charts take a sample.
const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

fn error_log() -> &'static Mutex<VecDeque<ErrorEntry>> {
    static LOG: OnceLock<Mutex<VecDeque<ErrorEntry>>> = OnceLock::new();
    LOG.get_or_init(Mutex::default)
}

/// The most recent warnings and errors logged by the process, newest last.
pub fn recent_errors() -> Vec<ErrorEntry> {
    lock(error_log()).iter().cloned().collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A tracing layer keeping the last WARN/ERROR events for the dashboard.
pub struct ErrorCapture;

struct MessageVisitor(String);

impl tracing::field::Visit for MessageVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        use std::fmt::Write;
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorCapture {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let level = *event.metadata().level();
        if level > tracing::Level::WARN {
            return;
        }
        let mut v = MessageVisitor(String::new());
        event.record(&mut v);
        let mut log = lock(error_log());
        log.push_back(ErrorEntry {
            at_unix_ms: unix_ms(),
            level: level.to_string(),
            target: event.metadata().target().to_string(),
            message: v.0.chars().take(1000).collect(),
        });
        while log.len() > MAX_ERRORS {
            log.pop_front();
        }
    }
}

fn api_error(status: StatusCode, code: &'static str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, Json(body)).into_response()
}

impl Admin {
    /// Admin routes over these sources.
    pub fn new(src: AdminSources) -> Admin {
        Admin {
            inner: Arc::new(AdminInner {
                src,
                actions: Counter::default(),
                history: Mutex::new(History::new()),
                samples: tokio::sync::broadcast::channel(16).0,
            }),
        }
    }

    /// Starts taking the charts' samples, one a second, for as long as the
    /// admin side lives (call once, within the runtime).
    pub fn spawn_sampler(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let sessions = serde_json::to_value((inner.src.sessions)()).unwrap_or_default();
                let streams = serde_json::to_value((inner.src.streams)()).unwrap_or_default();
                let sample = lock(&inner.history).record(unix_ms(), &sessions, &streams);
                let json = serde_json::to_string(&sample).unwrap_or_default();
                // No subscriber (no dashboard open) is not an error.
                let _ = inner.samples.send(json.into());
            }
        });
    }

    /// The charts' series of the last minutes.
    pub fn history(&self) -> Series {
        lock(&self.inner.history).series()
    }

    /// Everything the dashboard shows.
    pub async fn overview(&self) -> Overview {
        let s = &self.inner.src;
        let assets = s.store.assets(20).await.unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "admin: listing assets");
            Vec::new()
        });
        Overview {
            now_unix_ms: unix_ms(),
            sessions: (s.sessions)(),
            streams: (s.streams)(),
            viewers: (s.viewers)(),
            viewer_events: (s.viewer_events)(),
            jobs: (s.jobs)(),
            errors: recent_errors(),
            assets,
        }
    }

    /// Registers the admin side's families (under the registry's prefix):
    /// `admin_actions` and `recent_log_errors`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(AdminMetrics {
            actions: self.inner.actions.clone(),
        }));
    }
}

/// `GET /admin`: the dashboard (a refused request gets the token form, see
/// [`LOGIN_HTML`]).
pub(crate) async fn page(_: AuthAdmin) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Html(DASHBOARD_HTML)).into_response()
}

/// What `/admin` answers a browser without the admin token.
pub const LOGIN_HTML: &str = "<!doctype html><title>Sharecast admin</title><form method=get action=/admin>Admin token: <input name=token type=password autofocus> <button>Open</button></form><p>The token is printed by <code>sharecast serve</code> and stored in <code>&lt;data_dir&gt;/admin-token</code>.</p>";

pub(crate) async fn overview(State(a): State<Admin>, _: AuthAdmin) -> Json<Overview> {
    Json(a.overview().await)
}

pub(crate) async fn list(
    State(a): State<Admin>,
    _: AuthAdmin,
    Path(what): Path<String>,
) -> Response {
    let s = &a.inner.src;
    let list = match what.as_str() {
        "sessions" => AdminList::Sessions {
            sessions: (s.sessions)(),
        },
        "streams" => AdminList::Streams {
            streams: (s.streams)(),
        },
        "viewers" => AdminList::Viewers {
            viewers: (s.viewers)(),
        },
        "viewer-events" => AdminList::ViewerEvents {
            viewer_events: (s.viewer_events)(),
        },
        "errors" => AdminList::Errors {
            errors: recent_errors(),
        },
        "jobs" => AdminList::Jobs { jobs: (s.jobs)() },
        "history" => AdminList::History {
            history: a.history(),
        },
        "assets" => match s.store.assets(50).await {
            Ok(assets) => AdminList::Assets { assets },
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "admin: listing assets");
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "listing assets failed",
                );
            }
        },
        _ => return api_error(StatusCode::NOT_FOUND, "not_found", "no such admin list"),
    };
    Json(list).into_response()
}

/// The event stream: `history` (the charts' series) first, then an
/// `overview` every `refresh` and a `sample` every second.
pub(crate) async fn events(State(a): State<Admin>, _: AuthAdmin) -> Response {
    use futures_util::StreamExt;
    let period = a.inner.src.refresh.max(Duration::from_millis(100));
    let samples = a.inner.samples.subscribe();
    let history = serde_json::to_string(&a.history()).unwrap_or_default();
    let first = futures_util::stream::iter([Event::default().event("history").data(history)]);
    let overviews = futures_util::stream::unfold((a, true), move |(a, first)| async move {
        if !first {
            tokio::time::sleep(period).await;
        }
        let data = serde_json::to_string(&a.overview().await).unwrap_or_default();
        Some((Event::default().event("overview").data(data), (a, false)))
    });
    let samples = futures_util::stream::unfold(samples, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(json) => return Some((Event::default().event("sample").data(&*json), rx)),
                // A slow reader misses samples; the next one still comes.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let events = first
        .chain(futures_util::stream::select(overviews, samples))
        .map(Ok::<Event, Infallible>);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 80
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(crate) async fn end_session(
    State(a): State<Admin>,
    _: AuthAdmin,
    Path(id): Path<String>,
) -> Response {
    if !valid_id(&id) {
        return api_error(StatusCode::BAD_REQUEST, "bad_id", "bad session id");
    }
    if (a.inner.src.end_session)(&id) {
        a.inner.actions.inc();
        tracing::info!(session = %id, "admin ended session");
        Json(Ended { ended: id }).into_response()
    } else {
        api_error(
            StatusCode::NOT_FOUND,
            "unknown_session",
            "no such open session",
        )
    }
}

pub(crate) async fn kick_viewer(
    State(a): State<Admin>,
    _: AuthAdmin,
    Path(id): Path<String>,
) -> Response {
    if !valid_id(&id) {
        return api_error(StatusCode::BAD_REQUEST, "bad_id", "bad viewer id");
    }
    if (a.inner.src.kick_viewer)(&id) {
        a.inner.actions.inc();
        tracing::info!(viewer = %id, "admin kicked viewer");
        Json(Kicked { kicked: id }).into_response()
    } else {
        api_error(StatusCode::NOT_FOUND, "unknown_viewer", "no such viewer")
    }
}

/// The dashboard: plain HTML + an EventSource on `/api/v1/admin/events`.
const DASHBOARD_HTML: &str = include_str!("admin.html");
