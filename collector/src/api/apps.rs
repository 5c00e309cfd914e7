//! `/api/v1/tenants/{tenant}/apps/downloads`, `apps/downloads/by/country` and
//! `apps/engagement`: day-resolution data, so `from`/`to` are dates (`YYYY-MM-DD`, or RFC 3339
//! times taken as dates in the tenant's time zone) and the range is `[from, to)`. The
//! numbers come from [`crate::apps`]; this is parameters and formatting.
//!
//! Built without the `apps` feature, the three routes answer 404 before any check, saying so.

#[cfg(feature = "apps")]
use std::collections::{BTreeSet, HashMap};

#[cfg(feature = "apps")]
use axum::Json;
#[cfg(feature = "apps")]
use axum::extract::State;
#[cfg(feature = "apps")]
use axum::http::StatusCode;
#[cfg(feature = "apps")]
use jiff::civil::Date;
#[cfg(feature = "apps")]
use jiff::tz::TimeZone;
#[cfg(feature = "apps")]
use serde_json::{Value, json};

#[cfg(feature = "apps")]
use super::extract::TenantScoped;
#[cfg(feature = "apps")]
use super::{ApiError, ApiResult, AppState};
#[cfg(feature = "apps")]
use crate::apps::db::{AppsDbError, parse_store};
#[cfg(feature = "apps")]
use crate::apps::downloads::{self, DayGranularity};
#[cfg(feature = "apps")]
use crate::apps::engagement::{self, EngagementError};
#[cfg(feature = "apps")]
use crate::query;

/// A day-range request after authentication and parameter checks.
#[cfg(feature = "apps")]
struct DayRequest {
    tenant: String,
    from: Date,
    to: Date,
    tz: TimeZone,
    tz_name: String,
    params: HashMap<String, String>,
}

#[cfg(feature = "apps")]
impl DayRequest {
    fn header(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("tenant".into(), json!(self.tenant));
        m.insert("from".into(), json!(self.from.to_string()));
        m.insert("to".into(), json!(self.to.to_string()));
        m.insert("tz".into(), json!(self.tz_name));
        m
    }

    fn granularity(&self) -> Result<DayGranularity, ApiError> {
        let g = self
            .params
            .get("granularity")
            .map(String::as_str)
            .unwrap_or("day");
        DayGranularity::parse(g).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`granularity` must be one of {}, got {g:?}",
                DayGranularity::NAMES.join(", ")
            ))
        })
    }
}

/// `YYYY-MM-DD`, or an RFC 3339 time as a date in `tz`; a `to` time after midnight counts
/// its day in.
#[cfg(feature = "apps")]
fn parse_day(param: &str, value: Option<&str>, tz: &TimeZone) -> Result<Date, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::bad_request(format!(
            "missing `{param}` (a date YYYY-MM-DD or an RFC 3339 time)"
        ))
    })?;
    if let Ok(d) = value.parse::<Date>() {
        return Ok(d);
    }
    let t = value.parse::<jiff::Timestamp>().map_err(|_| {
        ApiError::bad_request(format!(
            "`{param}` must be a date YYYY-MM-DD or an RFC 3339 time, got {value:?}"
        ))
    })?;
    let z = t.to_zoned(tz.clone());
    let d = z.date();
    if param == "to" && z.time() != jiff::civil::Time::midnight() {
        return d
            .tomorrow()
            .map_err(|_| ApiError::bad_request("`to` is out of range"));
    }
    Ok(d)
}

#[cfg(feature = "apps")]
fn prepare_days(
    st: &AppState,
    req: TenantScoped,
    allowed: &[&str],
) -> Result<DayRequest, ApiError> {
    let (tenant, params) = req.only(allowed)?;
    let tenant = tenant.into_string();
    let (tz, tz_name) = match st.config.tenant_timezones.get(&tenant) {
        Some(name) => (
            query::parse_time_zone(name).map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("configured time zone of the tenant: {e}"),
                )
            })?,
            name.clone(),
        ),
        None => (TimeZone::UTC, "UTC".to_string()),
    };
    let from = parse_day("from", params.get("from").map(String::as_str), &tz)?;
    let to = parse_day("to", params.get("to").map(String::as_str), &tz)?;
    if to <= from {
        return Err(ApiError::bad_request(format!(
            "`to` ({to}) must be after `from` ({from}); the range is [from, to)"
        )));
    }
    let days = (to - from).get_days();
    if days > st.config.max_range_days as i32 {
        return Err(ApiError::bad_request(format!(
            "the range spans {days} days; at most {} (http.max_range_days)",
            st.config.max_range_days
        )));
    }
    Ok(DayRequest {
        tenant,
        from,
        to,
        tz,
        tz_name,
        params,
    })
}

#[cfg(feature = "apps")]
fn db_error(e: AppsDbError) -> ApiError {
    tracing::error!(error = %e, "apps database query failed");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

#[cfg(feature = "apps")]
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppsDbError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(db_error),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error",
        )),
    }
}

/// `store=` and `app=` filters.
#[cfg(feature = "apps")]
fn store_and_app(
    req: &DayRequest,
) -> Result<(Option<crate::sources::Store>, Option<String>), ApiError> {
    let store = match req.params.get("store").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(parse_store(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`store` must be app_store or google_play, got {s:?}"
            ))
        })?),
    };
    let app = req.params.get("app").filter(|s| !s.is_empty()).cloned();
    Ok((store, app))
}

#[cfg(feature = "apps")]
fn downloads_db(st: &AppState) -> Result<std::sync::Arc<crate::apps::AppsDb>, ApiError> {
    st.services.apps.clone().ok_or_else(|| {
        ApiError::not_found("app downloads are not kept by this collector (no apps database)")
    })
}

#[cfg(feature = "apps")]
pub(super) async fn downloads(State(st): State<AppState>, req: TenantScoped) -> ApiResult {
    let req = prepare_days(&st, req, &["from", "to", "granularity", "store", "app"])?;
    let granularity = req.granularity()?;
    let (store, app) = store_and_app(&req)?;
    let db = downloads_db(&st)?;
    let (tenant, from, to, app2) = (req.tenant.clone(), req.from, req.to, app.clone());
    let rows = blocking(move || db.downloads(&tenant, from, to, store, app2.as_deref())).await?;
    let report = downloads::report(&rows, req.from, req.to, granularity);
    let mut out = req.header();
    out.insert("granularity".into(), json!(granularity.as_str()));
    out.insert("store".into(), json!(store));
    out.insert("app".into(), json!(app));
    if let Value::Object(m) = json!(report) {
        out.extend(m);
    }
    Ok(Json(Value::Object(out)))
}

#[cfg(feature = "apps")]
pub(super) async fn downloads_by(State(st): State<AppState>, req: TenantScoped) -> ApiResult {
    let dimension = req.path.get("dimension").cloned().unwrap_or_default();
    let req = prepare_days(&st, req, &["from", "to", "store", "app"])?;
    if dimension != "country" {
        return Err(ApiError::not_found(format!(
            "unknown dimension `{dimension}`; app downloads are broken down by country only"
        )));
    }
    let (store, app) = store_and_app(&req)?;
    let db = downloads_db(&st)?;
    let (tenant, from, to, app2) = (req.tenant.clone(), req.from, req.to, app.clone());
    let rows = blocking(move || db.downloads(&tenant, from, to, store, app2.as_deref())).await?;
    let by_country = downloads::by_country(&rows);
    let with_country: BTreeSet<(&str, &str)> = rows
        .iter()
        .filter(|r| r.country.is_some())
        .map(|r| (r.store.as_str(), r.app.as_str()))
        .collect();
    let without: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| (r.store.as_str(), r.app.as_str()))
        .filter(|k| !with_country.contains(k))
        .collect();
    let mut out = req.header();
    out.insert("dimension".into(), json!("country"));
    out.insert("store".into(), json!(store));
    out.insert("app".into(), json!(app));
    out.insert("rows".into(), json!(by_country));
    out.insert(
        "apps_without_country".into(),
        json!(
            without
                .iter()
                .map(|(s, a)| json!({"store": s, "app": a}))
                .collect::<Vec<_>>()
        ),
    );
    Ok(Json(Value::Object(out)))
}

#[cfg(feature = "apps")]
pub(super) async fn engagement(State(st): State<AppState>, req: TenantScoped) -> ApiResult {
    let req = prepare_days(&st, req, &["from", "to", "granularity"])?;
    let granularity = req.granularity()?;
    let source = st.services.engagement.clone().ok_or_else(|| {
        ApiError::not_found("Matomo is not configured on this collector ([sources.matomo])")
    })?;
    let site = source.site_for(&req.tenant).ok_or_else(|| {
        ApiError::not_found(format!(
            "no Matomo site for tenant `{}` ([sources.matomo] sites)",
            req.tenant
        ))
    })?;
    let days = source
        .days(site, req.from, req.to, &req.tz, crate::time::now_ms())
        .await
        .map_err(|e| match e {
            EngagementError::Matomo(_) | EngagementError::Unexpected { .. } => {
                tracing::warn!(tenant = req.tenant, "Matomo: {e}");
                ApiError::new(StatusCode::BAD_GATEWAY, e.to_string())
            }
            EngagementError::Db(e) => db_error(e),
            EngagementError::Task(m) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m),
        })?;
    let report = engagement::report(&days, req.from, req.to, granularity);
    let mut out = req.header();
    out.insert("site_id".into(), json!(site));
    out.insert("granularity".into(), json!(granularity.as_str()));
    out.insert("fetched_days".into(), json!(days.fetched_days));
    if let Value::Object(m) = json!(report) {
        out.extend(m);
    }
    Ok(Json(Value::Object(out)))
}

#[cfg(not(feature = "apps"))]
pub(super) use absent::{downloads, downloads_by, engagement};

#[cfg(not(feature = "apps"))]
mod absent {
    use super::super::{ApiError, ApiResult};
    use crate::sources::WITHOUT_APPS;

    pub(in super::super) async fn downloads() -> ApiResult {
        Err(ApiError::not_found(WITHOUT_APPS))
    }

    pub(in super::super) async fn downloads_by() -> ApiResult {
        Err(ApiError::not_found(WITHOUT_APPS))
    }

    pub(in super::super) async fn engagement() -> ApiResult {
        Err(ApiError::not_found(WITHOUT_APPS))
    }
}

#[cfg(all(test, not(feature = "apps")))]
mod absent_tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    #[tokio::test]
    async fn the_apps_routes_answer_404_saying_why() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("c.db")).unwrap();
        let config = crate::api::ApiConfig::from_config(
            &crate::config::CollectorConfig::parse("", std::path::Path::new("c.toml")).unwrap(),
        );
        let router = super::super::router(store, std::sync::Arc::new(config));
        for path in [
            "/api/v1/tenants/radio1/apps/downloads?from=2026-01-01&to=2026-01-02",
            "/api/v1/tenants/radio1/apps/downloads/by/country",
            "/api/v1/tenants/radio1/apps/engagement",
        ] {
            let resp = router
                .clone()
                .oneshot(Request::get(path).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
            let body = to_bytes(resp.into_body(), 1 << 16).await.unwrap();
            let body = String::from_utf8_lossy(&body);
            assert!(
                body.contains("built without the apps feature"),
                "{path}: {body}"
            );
        }
    }
}
