//! The HTTP API under `/api/v1` (axum): bearer tokens scoped to tenants, JSON in and out,
//! errors as `{"error": {"status", "message"}}`. Every route is one entry of the route table
//! (`routes.rs`), which the router and the OpenAPI document (`openapi.rs`) are both made
//! from; every handler takes its checks from one extractor (`extract.rs`: token, tenant,
//! parameters) and only formats: the numbers come from [`Store`] and [`crate::query`].

mod apps;
mod auth;
mod events;
mod extract;
mod live;
mod metrics;
mod openapi;
mod routes;
mod streaming;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{Value, json};

pub use auth::{ADMIN_SCOPE, token_digest};
pub use metrics::RequestStats;

use crate::config::{CollectorConfig, TokenScope, scope_texts};
use crate::query::{self, QueryError};
use crate::store::{Store, StoreError};

/// One API token. Each of `tenants` is a tenant name or `"*"`, the admin scope (every
/// tenant); see [`earshot_common::tenant::Scope`].
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

impl ApiConfig {
    /// What the HTTP API needs of the collector's config.
    pub fn from_config(c: &CollectorConfig) -> ApiConfig {
        ApiConfig {
            tokens: c
                .api_tokens
                .iter()
                .map(|t| ApiToken {
                    name: t.name.clone(),
                    token_sha256: t.token_sha256.0,
                    // An ingest token is known (so reading answers 403, not 401) but reads
                    // no tenant.
                    tenants: match t.scope {
                        TokenScope::Read => scope_texts(&t.tenants),
                        TokenScope::Ingest => Vec::new(),
                    },
                })
                .collect(),
            tenant_timezones: c
                .tenants
                .iter()
                .map(|(name, t)| (name.to_string(), t.timezone.clone()))
                .collect(),
            max_range_days: c.http.max_range_days,
        }
    }

    /// The tokens with `scope = "ingest"`, with the tenants they may post events for.
    pub fn ingest_tokens(c: &CollectorConfig) -> Vec<ApiToken> {
        c.api_tokens
            .iter()
            .filter(|t| t.scope == TokenScope::Ingest)
            .map(|t| ApiToken {
                name: t.name.clone(),
                token_sha256: t.token_sha256.0,
                tenants: scope_texts(&t.tenants),
            })
            .collect()
    }
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
    credentials: Arc<Credentials>,
}

/// The known tokens, their scopes parsed once.
#[derive(Debug)]
struct Credentials {
    read: Vec<auth::Credential>,
    ingest: Vec<auth::Credential>,
}

/// What the live endpoints and `/metrics` read besides the store.
#[derive(Clone, Debug)]
pub struct Services {
    pub live: Arc<crate::live::LiveStore>,
    /// Between two heartbeats of an idle `live/stream`.
    pub heartbeat: std::time::Duration,
    pub link: Arc<crate::health::LinkStats>,
    pub agents: Arc<crate::health::AgentBoard>,
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

/// The API with the live store, the link's counters and the agents' board behind it: every
/// route of the table (`routes::ROUTES`).
pub fn router_with(store: Store, config: Arc<ApiConfig>, services: Services) -> Router {
    let mut router = Router::new();
    for route in routes::ROUTES {
        router = router.route(route.path, (route.handler)(route.method.filter()));
    }
    let credentials = Arc::new(Credentials {
        read: config.tokens.iter().map(auth::Credential::new).collect(),
        ingest: services
            .ingest_tokens
            .iter()
            .map(auth::Credential::new)
            .collect(),
    });
    router
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
            credentials,
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

async fn tenants(State(st): State<AppState>, extract::Reader(token): extract::Reader) -> ApiResult {
    let store = st.store.clone();
    let with_data = blocking(move || store.tenants()).await?;
    let named = token
        .scopes
        .iter()
        .filter_map(|s| s.tenant())
        .map(|t| t.to_string());
    // Names that are no tenant names (none the config accepts) are not listed: the API
    // could not be asked about them.
    let all: BTreeSet<String> = with_data
        .into_iter()
        .chain(st.config.tenant_timezones.keys().cloned())
        .chain(named)
        .filter(|t| {
            earshot_common::tenant::TenantName::new(t.as_str()).is_ok_and(|t| token.may_read(&t))
        })
        .collect();
    Ok(Json(json!({ "tenants": all })))
}
