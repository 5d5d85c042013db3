//! Webhooks over HTTP (`docs/webhooks.md`): a device registers endpoints
//! for its own events, the admin global ones for every device's; each is
//! answered its signing secret once, when it is made. An endpoint's events
//! can be replayed from an event id, and the admin lists the deliveries
//! (the failed ones with `?status=failed`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use sharecast_resume::webhooks::{new_secret, Webhooks};
use sharecast_store::{Store, WebhookDelivery, WebhookEndpoint, EVENT_TYPES};

use crate::access::{AuthAdmin, Scope};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};

/// Longest endpoint URL, bytes.
const MAX_URL_BYTES: usize = 2000;

/// Most endpoints of one owner (a device, or the admin's global ones).
const MAX_ENDPOINTS: usize = 20;

/// The state of the webhook routes.
#[derive(Clone)]
pub struct WebhookRoutes {
    store: Store,
    webhooks: Webhooks,
}

impl WebhookRoutes {
    /// The routes' state: endpoints in `store`, addresses checked by
    /// `webhooks` (the outbound policy).
    pub fn new(store: Store, webhooks: Webhooks) -> WebhookRoutes {
        WebhookRoutes { store, webhooks }
    }
}

/// `POST /api/v1/webhooks` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewEndpoint {
    /// Where events are posted (http or https).
    url: String,
    /// The types wanted; `["*"]` for all.
    event_types: Vec<String>,
}

/// An endpoint just made, and its secret (shown this once).
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct CreatedEndpoint {
    #[serde(flatten)]
    endpoint: WebhookEndpoint,
    /// The signing secret (`whsec_…`).
    secret: String,
}

/// `GET /api/v1/webhooks` answer.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Endpoints {
    webhooks: Vec<WebhookEndpoint>,
}

/// The device whose endpoints a caller manages (none: the admin's).
fn owner(scope: &Scope) -> Option<&str> {
    match scope {
        Scope::Device(d) => Some(d.id.as_str()),
        Scope::All => None,
    }
}

fn check_types(types: &[String]) -> Result<(), ApiError> {
    let known = |t: &String| t == "*" || EVENT_TYPES.contains(&t.as_str());
    if types.is_empty() || !types.iter().all(known) {
        return Err(ApiError::bad_request(
            "bad_event_types",
            format!("event_types lists one or more of {EVENT_TYPES:?}, or \"*\""),
        ));
    }
    Ok(())
}

/// `POST /api/v1/webhooks`: a new endpoint of the calling device (a global
/// one for the admin).
pub(crate) async fn create(
    State(w): State<WebhookRoutes>,
    scope: Scope,
    ApiJson(body): ApiJson<NewEndpoint>,
) -> Result<(StatusCode, Json<CreatedEndpoint>), ApiError> {
    check_types(&body.event_types)?;
    if body.url.len() > MAX_URL_BYTES {
        return Err(ApiError::bad_request(
            "bad_url",
            format!("a webhook URL has at most {MAX_URL_BYTES} bytes"),
        ));
    }
    w.webhooks
        .check_url(&body.url)
        .map_err(|m| ApiError::bad_request("bad_url", m))?;
    let device = owner(&scope);
    let existing = w.store.webhooks(device).await.map_err(ApiError::internal)?;
    let own = existing.iter().filter(|e| e.device_id.as_deref() == device);
    if own.count() >= MAX_ENDPOINTS {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "too_many_webhooks",
            format!("at most {MAX_ENDPOINTS} webhook endpoints each"),
        ));
    }
    let mut types = body.event_types;
    types.sort();
    types.dedup();
    let secret = new_secret();
    let endpoint = w
        .store
        .add_webhook(device, body.url.trim(), &types, &secret)
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(endpoint = %endpoint.id, device = ?device, "webhook endpoint registered");
    Ok((
        StatusCode::CREATED,
        Json(CreatedEndpoint { endpoint, secret }),
    ))
}

/// `GET /api/v1/webhooks`: the calling device's endpoints (every endpoint
/// for the admin), without their secrets.
pub(crate) async fn list(
    State(w): State<WebhookRoutes>,
    scope: Scope,
) -> Result<Json<Endpoints>, ApiError> {
    let webhooks = w
        .store
        .webhooks(owner(&scope))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Endpoints { webhooks }))
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(
        "unknown_webhook",
        format!("no webhook endpoint {id} of yours"),
    )
}

/// `DELETE /api/v1/webhooks/{id}`: deletes an endpoint of the calling
/// device (any, for the admin); its pending deliveries are dropped.
pub(crate) async fn delete(
    State(w): State<WebhookRoutes>,
    scope: Scope,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let deleted = w
        .store
        .delete_webhook(&id, owner(&scope))
        .await
        .map_err(ApiError::internal)?;
    if !deleted {
        return Err(unknown(&id));
    }
    tracing::info!(endpoint = %id, "webhook endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/webhooks/{id}/replay` query.
#[derive(Deserialize)]
pub(crate) struct ReplayQuery {
    /// The first event to send again.
    from: String,
}

/// `POST /api/v1/webhooks/{id}/replay` answer.
#[derive(utoipa::ToSchema, Serialize)]
pub(crate) struct Replayed {
    /// Events queued again.
    queued: u64,
}

/// `POST /api/v1/webhooks/{id}/replay?from={event id}`: queues again every
/// event the endpoint wants from that one on, in order.
pub(crate) async fn replay(
    State(w): State<WebhookRoutes>,
    scope: Scope,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<ReplayQuery>,
) -> Result<(StatusCode, Json<Replayed>), ApiError> {
    if w.store
        .webhook(&id, owner(&scope))
        .await
        .map_err(ApiError::internal)?
        .is_none()
    {
        return Err(unknown(&id));
    }
    let queued = w
        .store
        .replay_webhook(&id, &q.from)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| {
            ApiError::not_found(
                "unknown_event",
                format!("no event {} this endpoint may see", q.from),
            )
        })?;
    tracing::info!(endpoint = %id, from = %q.from, queued, "webhook replay");
    Ok((StatusCode::ACCEPTED, Json(Replayed { queued })))
}

/// `GET /api/v1/admin/webhook-deliveries` query.
#[derive(Deserialize)]
pub(crate) struct DeliveriesQuery {
    /// `pending`, `delivered` or `failed`; all when absent.
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /api/v1/admin/webhook-deliveries` answer.
#[derive(utoipa::ToSchema, Serialize)]
#[schema(as = WebhookDeliveries)]
pub(crate) struct Deliveries {
    deliveries: Vec<WebhookDelivery>,
}

/// `GET /api/v1/admin/webhook-deliveries`: every endpoint's deliveries,
/// newest event first (`?status=failed`: those given up).
pub(crate) async fn deliveries(
    State(w): State<WebhookRoutes>,
    _: AuthAdmin,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> Result<Json<Deliveries>, ApiError> {
    if let Some(s) = q.status.as_deref() {
        if !matches!(s, "pending" | "delivered" | "failed") {
            return Err(ApiError::bad_request(
                "bad_status",
                "status is pending, delivered or failed",
            ));
        }
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let deliveries = w
        .store
        .webhook_deliveries(q.status.as_deref(), limit)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Deliveries { deliveries }))
}
