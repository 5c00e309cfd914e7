//! The HTTP API under `/api/v1` (axum): bearer tokens scoped to tenants, JSON in and out,
//! errors as `{"error": {"status", "message"}}`. Handlers only parse, authorize and format:
//! the numbers come from [`Store`] (run on the blocking pool, as SQLite blocks) and
//! [`crate::query`]. `openapi.rs` describes exactly what this module serves; change both
//! together.

mod apps;
mod auth;
mod events;
mod live;
mod metrics;
mod openapi;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use jiff::tz::TimeZone;
use serde_json::{Value, json};

pub use auth::{ADMIN_SCOPE, token_digest};
pub use metrics::RequestStats;

use crate::query::{self, Granularity, QueryError, TimeRange, rfc3339};
use crate::store::{Breakdown, Selection, Store, StoreError};

/// One API token. `tenants == ["*"]` is the admin scope (every tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub name: String,
    pub token_sha256: [u8; 32],
    pub tenants: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    pub tokens: Vec<ApiToken>,
    /// Tenant → time zone (IANA name or fixed offset `+HH:MM`) for day/week/month buckets
    /// and `by-hour`. Tenants named here are listed by `/api/v1/tenants` even without data.
    pub tenant_timezones: HashMap<String, String>,
    /// The longest `[from, to)` a query may span.
    pub max_range_days: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            tokens: Vec::new(),
            tenant_timezones: HashMap::new(),
            max_range_days: DEFAULT_MAX_RANGE_DAYS,
        }
    }
}

pub const DEFAULT_MAX_RANGE_DAYS: u32 = 400;

impl ApiConfig {
    /// Checks what the router would otherwise only discover per request: every configured
    /// time zone parses. The error names the tenant and the zone.
    pub fn validate(&self) -> Result<(), String> {
        for (tenant, tz) in &self.tenant_timezones {
            query::parse_time_zone(tz)
                .map_err(|e| format!("time zone of tenant `{tenant}`: {e}"))?;
        }
        if self.max_range_days == 0 {
            return Err("max_range_days must be at least 1".into());
        }
        Ok(())
    }
}

/// An error answer: `{"error": {"status": 400, "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// For 401: whether a token was presented (and was wrong).
    invalid_token: Option<bool>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            invalid_token: None,
        }
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn unauthorized(message: &str, invalid_token: bool) -> ApiError {
        ApiError {
            invalid_token: Some(invalid_token),
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }
    fn forbidden(message: String) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        tracing::error!(error = %e, "store query failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store error: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            Json(json!({"error": {"status": self.status.as_u16(), "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if let Some(invalid) = self.invalid_token {
            let v = if invalid {
                r#"Bearer realm="earshot", error="invalid_token""#
            } else {
                r#"Bearer realm="earshot""#
            };
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(v));
        }
        resp
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

#[derive(Clone)]
struct AppState {
    store: Store,
    config: Arc<ApiConfig>,
    services: Services,
}

/// What the live endpoints and `/metrics` read besides the store.
#[derive(Clone, Debug)]
pub struct Services {
    pub live: Arc<crate::live::LiveStore>,
    /// Between two heartbeats of an idle `live/stream`.
    pub heartbeat: std::time::Duration,
    pub link: Arc<crate::link::LinkStats>,
    pub agents: Arc<crate::link::AgentBoard>,
    pub requests: Arc<RequestStats>,
    /// App downloads (`state_dir/apps.db`); `None`: `apps/downloads` answers 404.
    pub apps: Option<Arc<crate::apps::AppsDb>>,
    /// Matomo reports (`[sources.matomo]`); `None`: `apps/engagement` answers 404.
    pub engagement: Option<Arc<crate::apps::EngagementSource>>,
    /// Tokens with `scope = "ingest"` (they may `POST …/events` for their tenants).
    pub ingest_tokens: Arc<Vec<ApiToken>>,
}

impl Default for Services {
    /// An empty live store with the default settings, no link: for an API without agents.
    fn default() -> Self {
        Services {
            live: Arc::new(crate::live::LiveStore::new(Default::default())),
            heartbeat: std::time::Duration::from_secs(15),
            link: Default::default(),
            agents: Default::default(),
            requests: Default::default(),
            apps: None,
            engagement: None,
            ingest_tokens: Default::default(),
        }
    }
}

pub fn router(store: Store, config: Arc<ApiConfig>) -> Router {
    router_with(store, config, Services::default())
}

/// The API with the live store, the link's counters and the agents' board behind it.
pub fn router_with(store: Store, config: Arc<ApiConfig>, services: Services) -> Router {
    let streaming = Router::new()
        .route("/summary", get(summary))
        .route("/timeseries", get(timeseries))
        .route("/by-hour", get(by_hour))
        .route("/session-lengths", get(session_lengths))
        .route("/by/{dimension}", get(by_dimension));
    Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(openapi::document()) }),
        )
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/tenants", get(tenants))
        .nest("/api/v1/tenants/{tenant}/streaming", streaming)
        .route("/api/v1/tenants/{tenant}/live", get(live::live_now))
        .route(
            "/api/v1/tenants/{tenant}/live/history",
            get(live::live_history),
        )
        .route(
            "/api/v1/tenants/{tenant}/live/stream",
            get(live::live_stream),
        )
        .route(
            "/api/v1/tenants/{tenant}/apps/downloads",
            get(apps::downloads),
        )
        .route(
            "/api/v1/tenants/{tenant}/apps/downloads/by/{dimension}",
            get(apps::downloads_by),
        )
        .route(
            "/api/v1/tenants/{tenant}/apps/engagement",
            get(apps::engagement),
        )
        .route(
            "/api/v1/tenants/{tenant}/events",
            get(events::get_events).post(events::post_events),
        )
        .fallback(|| async { ApiError::not_found("no such route; see /api/v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed; the API answers GET (and POST on `…/events`)",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            services.requests.clone(),
            metrics::count_requests,
        ))
        .with_state(AppState {
            store,
            config,
            services,
        })
}

/// Runs a store call on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => {
            tracing::error!(error = %e, "store task failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        }
    }
}

async fn healthz(State(st): State<AppState>) -> Response {
    match tokio::task::spawn_blocking(move || st.store.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ok"})).into_response(),
        Ok(Err(e)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
        .into_response(),
        Err(_) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

async fn tenants(State(st): State<AppState>, headers: HeaderMap) -> ApiResult {
    let token = auth::authenticate(&st.config.tokens, &headers)?.clone();
    let store = st.store.clone();
    let with_data = blocking(move || store.tenants()).await?;
    let named = token.tenants.iter().filter(|t| *t != ADMIN_SCOPE).cloned();
    let all: BTreeSet<String> = with_data
        .into_iter()
        .chain(st.config.tenant_timezones.keys().cloned())
        .chain(named)
        .filter(|t| token.may_read(t))
        .collect();
    Ok(Json(json!({ "tenants": all })))
}

/// A streaming request after authentication and parameter checks.
struct Request {
    sel: Selection,
    params: HashMap<String, String>,
}

impl Request {
    fn header(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("tenant".into(), json!(self.sel.tenant));
        m.insert("stream".into(), json!(self.sel.stream));
        m.insert("from".into(), json!(rfc3339(self.sel.range.from_ms)));
        m.insert("to".into(), json!(rfc3339(self.sel.range.to_ms)));
        m
    }

    /// `tz=` or the tenant's configured zone, else UTC; with the name to echo.
    fn time_zone(&self, config: &ApiConfig) -> Result<(TimeZone, String), ApiError> {
        if let Some(tz) = self.params.get("tz") {
            return Ok((query::parse_time_zone(tz)?, tz.clone()));
        }
        match config.tenant_timezones.get(&self.sel.tenant) {
            Some(tz) => {
                let zone = query::parse_time_zone(tz).map_err(|e| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("configured time zone of the tenant: {e}"),
                    )
                })?;
                Ok((zone, tz.clone()))
            }
            None => Ok((TimeZone::UTC, "UTC".into())),
        }
    }
}

/// How every tenant endpoint starts: authenticates, authorizes the tenant of the path and
/// parses the query string, refusing a parameter the endpoint does not take.
fn authorized(
    st: &AppState,
    headers: &HeaderMap,
    tenant: Result<String, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<(String, HashMap<String, String>), ApiError> {
    let token = auth::authenticate(&st.config.tokens, headers)?;
    let tenant =
        tenant.map_err(|e| ApiError::bad_request(format!("bad tenant in the path: {e}")))?;
    auth::authorize(token, &tenant)?;
    let Query(params) =
        params.map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    if let Some(unknown) = params.keys().find(|k| !allowed.contains(&k.as_str())) {
        let takes = if allowed.is_empty() {
            "no parameters".to_string()
        } else {
            allowed.join(", ")
        };
        return Err(ApiError::bad_request(format!(
            "unknown parameter `{unknown}`; this endpoint takes {takes}"
        )));
    }
    Ok((tenant, params))
}

/// [`authorized`], then `from`, `to` and `stream` parsed.
fn prepare(
    st: &AppState,
    headers: &HeaderMap,
    tenant: Result<String, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<Request, ApiError> {
    let (tenant, params) = authorized(st, headers, tenant, params, allowed)?;
    let from = query::parse_instant("from", params.get("from").map(String::as_str))?;
    let to = query::parse_instant("to", params.get("to").map(String::as_str))?;
    let range = TimeRange::new(from, to, st.config.max_range_days)?;
    let stream = params.get("stream").filter(|s| !s.is_empty()).cloned();
    Ok(Request {
        sel: Selection {
            tenant,
            stream,
            range,
        },
        params,
    })
}

const BASE: &[&str] = &["from", "to", "stream"];

async fn summary(
    State(st): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let req = prepare(&st, &headers, tenant.map(|p| p.0), params, BASE)?;
    let (store, sel) = (st.store.clone(), req.sel.clone());
    let metrics = blocking(move || store.summary(&sel)).await?;
    let mut out = req.header();
    if let Value::Object(m) = json!(metrics) {
        out.extend(m);
    }
    Ok(Json(Value::Object(out)))
}

/// Fields that are kept per quarter-hour and so are null in minute rows.
const QUARTER_RESOLUTION_FIELDS: [&str; 11] = [
    "sessions",
    "short_sessions",
    "bot_sessions",
    "active_sessions",
    "listening_seconds",
    "tlh",
    "unique_listeners",
    "average_listeners",
    "tsl_seconds",
    "aqh",
    "unique_listeners_exact_across_epochs",
];

async fn timeseries(
    State(st): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let req = prepare(
        &st,
        &headers,
        tenant.map(|p| p.0),
        params,
        &["from", "to", "stream", "granularity", "tz"],
    )?;
    let granularity = Granularity::parse(
        req.params
            .get("granularity")
            .map(String::as_str)
            .unwrap_or("day"),
    )?;
    let (tz, tz_name) = req.time_zone(&st.config)?;
    let buckets = query::buckets(req.sel.range, granularity, &tz)?;
    let (store, sel, b) = (st.store.clone(), req.sel.clone(), buckets.clone());
    let metrics = blocking(move || store.timeseries(&sel, &b, granularity)).await?;
    let rows: Vec<Value> = buckets
        .iter()
        .zip(metrics)
        .map(|(b, m)| {
            let mut row = serde_json::Map::new();
            row.insert("from".into(), json!(rfc3339(b.from_ms)));
            row.insert("to".into(), json!(rfc3339(b.to_ms)));
            if let Value::Object(m) = json!(m) {
                row.extend(m);
            }
            if granularity == Granularity::Minute {
                for f in QUARTER_RESOLUTION_FIELDS {
                    row.insert(f.into(), Value::Null);
                }
            }
            Value::Object(row)
        })
        .collect();
    let mut out = req.header();
    out.insert("granularity".into(), json!(granularity.as_str()));
    out.insert("tz".into(), json!(tz_name));
    out.insert("rows".into(), json!(rows));
    Ok(Json(Value::Object(out)))
}

async fn by_hour(
    State(st): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let req = prepare(
        &st,
        &headers,
        tenant.map(|p| p.0),
        params,
        &["from", "to", "stream", "tz"],
    )?;
    let (tz, tz_name) = req.time_zone(&st.config)?;
    let (store, sel) = (st.store.clone(), req.sel.clone());
    let rows = blocking(move || store.by_hour(&sel, &tz)).await?;
    let mut out = req.header();
    out.insert("tz".into(), json!(tz_name));
    out.insert(
        "unique_listeners_exact_across_epochs".into(),
        json!(req.sel.range.within_one_epoch()),
    );
    out.insert("rows".into(), json!(rows));
    Ok(Json(Value::Object(out)))
}

async fn session_lengths(
    State(st): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let req = prepare(&st, &headers, tenant.map(|p| p.0), params, BASE)?;
    let (store, sel) = (st.store.clone(), req.sel.clone());
    let lengths = blocking(move || store.session_lengths(&sel)).await?;
    let mut out = req.header();
    out.insert("sessions".into(), json!(lengths.sessions));
    out.insert("short_sessions".into(), json!(lengths.short_sessions));
    out.insert("rows".into(), json!(lengths.rows));
    Ok(Json(Value::Object(out)))
}

async fn by_dimension(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> ApiResult {
    let (tenant, dimension) = match path {
        Ok(Path((t, d))) => (Ok(t), d),
        Err(e) => (Err(e), String::new()),
    };
    // Authenticate before saying anything about the dimension.
    let token = auth::authenticate(&st.config.tokens, &headers)?;
    let Some(by) = Breakdown::parse(&dimension) else {
        if let Ok(t) = &tenant {
            auth::authorize(token, t)?;
        }
        return Err(ApiError::not_found(format!(
            "unknown dimension `{dimension}`; expected one of {}",
            Breakdown::NAMES.join(", ")
        )));
    };
    let req = prepare(&st, &headers, tenant, params, BASE)?;
    let (store, sel) = (st.store.clone(), req.sel.clone());
    let rows = blocking(move || store.breakdown(&sel, by)).await?;
    let mut out = req.header();
    out.insert("dimension".into(), json!(dimension));
    out.insert(
        "unique_listeners_exact_across_epochs".into(),
        json!(req.sel.range.within_one_epoch()),
    );
    out.insert(
        "unique_listeners_resolution".into(),
        json!(if matches!(by, Breakdown::Dimension(_)) {
            "hour"
        } else {
            "quarter"
        }),
    );
    out.insert("rows".into(), json!(rows));
    Ok(Json(Value::Object(out)))
}
