//! `/api/v1/tenants/{tenant}/streaming/…`: the audience metrics over a range, from the
//! rollups. Parameters are parsed by the types here; the numbers come from [`Store`] (run on
//! the blocking pool, as SQLite blocks) and [`crate::query`].

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use jiff::tz::TimeZone;
use serde_json::{Value, json};

use super::extract::{Args, QueryParams, TenantRequest};
use super::routes::{FROM, GRANULARITY, Param, STREAM, TO, TZ};
use super::{ApiError, ApiResult, AppState, blocking};
use crate::query::{self, Granularity, TimeRange};
use crate::store::{Breakdown, Selection};
use crate::time::rfc3339;

/// `from`, `to` and `stream`: what every streaming endpoint selects.
pub(super) struct Window {
    sel: Selection,
}

impl Window {
    fn of(args: &Args<'_>) -> Result<Window, ApiError> {
        let from = query::parse_instant("from", args.get("from"))?;
        let to = query::parse_instant("to", args.get("to"))?;
        let range = TimeRange::new(from, to, args.state.config.max_range_days)?;
        Ok(Window {
            sel: Selection {
                tenant: args.tenant.to_string(),
                stream: args.nonempty("stream"),
                range,
            },
        })
    }

    fn header(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("tenant".into(), json!(self.sel.tenant));
        m.insert("stream".into(), json!(self.sel.stream));
        m.insert("from".into(), json!(rfc3339(self.sel.range.from_ms)));
        m.insert("to".into(), json!(rfc3339(self.sel.range.to_ms)));
        m
    }
}

impl QueryParams for Window {
    const QUERY: &'static [Param] = &[FROM, TO, STREAM];
    fn parse(args: &Args<'_>) -> Result<Window, ApiError> {
        Window::of(args)
    }
}

/// `tz=` or the tenant's configured zone, else UTC; with the name to echo.
fn time_zone(args: &Args<'_>) -> Result<(TimeZone, String), ApiError> {
    if let Some(tz) = args.get("tz") {
        return Ok((query::parse_time_zone(tz)?, tz.to_owned()));
    }
    match args.state.config.tenant_timezones.get(args.tenant.as_str()) {
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

pub(super) struct Timeseries {
    window: Window,
    granularity: Granularity,
    tz: TimeZone,
    tz_name: String,
}

impl QueryParams for Timeseries {
    const QUERY: &'static [Param] = &[FROM, TO, STREAM, GRANULARITY, TZ];
    fn parse(args: &Args<'_>) -> Result<Timeseries, ApiError> {
        let window = Window::of(args)?;
        let granularity = Granularity::parse(args.get("granularity").unwrap_or("day"))?;
        let (tz, tz_name) = time_zone(args)?;
        Ok(Timeseries {
            window,
            granularity,
            tz,
            tz_name,
        })
    }
}

pub(super) struct ByHour {
    window: Window,
    tz: TimeZone,
    tz_name: String,
}

impl QueryParams for ByHour {
    const QUERY: &'static [Param] = &[FROM, TO, STREAM, TZ];
    fn parse(args: &Args<'_>) -> Result<ByHour, ApiError> {
        let window = Window::of(args)?;
        let (tz, tz_name) = time_zone(args)?;
        Ok(ByHour {
            window,
            tz,
            tz_name,
        })
    }
}

/// `by/{dimension}`: the dimension is checked first (404), then the window.
pub(super) struct ByDimension {
    by: Breakdown,
    dimension: String,
    window: Window,
}

impl QueryParams for ByDimension {
    const QUERY: &'static [Param] = &[FROM, TO, STREAM];
    fn parse(args: &Args<'_>) -> Result<ByDimension, ApiError> {
        let dimension = args.path.get("dimension").cloned().unwrap_or_default();
        let Some(by) = Breakdown::parse(&dimension) else {
            return Err(ApiError::not_found(format!(
                "unknown dimension `{dimension}`; expected one of {}",
                Breakdown::NAMES.join(", ")
            )));
        };
        Ok(ByDimension {
            by,
            dimension,
            window: Window::of(args)?,
        })
    }
}

pub(super) async fn summary(State(st): State<AppState>, req: TenantRequest<Window>) -> ApiResult {
    let w = req.params;
    let (store, sel) = (st.store.clone(), w.sel.clone());
    let metrics = blocking(move || store.summary(&sel)).await?;
    let mut out = w.header();
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

pub(super) async fn timeseries(
    State(st): State<AppState>,
    req: TenantRequest<Timeseries>,
) -> ApiResult {
    let p = req.params;
    let granularity = p.granularity;
    let buckets = query::buckets(p.window.sel.range, granularity, &p.tz)?;
    let (store, sel, b) = (st.store.clone(), p.window.sel.clone(), buckets.clone());
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
    let mut out = p.window.header();
    out.insert("granularity".into(), json!(granularity.as_str()));
    out.insert("tz".into(), json!(p.tz_name));
    out.insert("rows".into(), json!(rows));
    Ok(Json(Value::Object(out)))
}

pub(super) async fn by_hour(State(st): State<AppState>, req: TenantRequest<ByHour>) -> ApiResult {
    let p = req.params;
    let (store, sel, tz) = (st.store.clone(), p.window.sel.clone(), p.tz.clone());
    let rows = blocking(move || store.by_hour(&sel, &tz)).await?;
    let mut out = p.window.header();
    out.insert("tz".into(), json!(p.tz_name));
    out.insert(
        "unique_listeners_exact_across_epochs".into(),
        json!(p.window.sel.range.within_one_epoch()),
    );
    out.insert("rows".into(), json!(rows));
    Ok(Json(Value::Object(out)))
}

pub(super) async fn session_lengths(
    State(st): State<AppState>,
    req: TenantRequest<Window>,
) -> ApiResult {
    let w = req.params;
    let (store, sel) = (st.store.clone(), w.sel.clone());
    let lengths = blocking(move || store.session_lengths(&sel)).await?;
    let mut out = w.header();
    out.insert("sessions".into(), json!(lengths.sessions));
    out.insert("short_sessions".into(), json!(lengths.short_sessions));
    out.insert("rows".into(), json!(lengths.rows));
    Ok(Json(Value::Object(out)))
}

pub(super) async fn by_dimension(
    State(st): State<AppState>,
    req: TenantRequest<ByDimension>,
) -> ApiResult {
    let p = req.params;
    let by = p.by;
    let (store, sel) = (st.store.clone(), p.window.sel.clone());
    let rows = blocking(move || store.breakdown(&sel, by)).await?;
    let mut out = p.window.header();
    out.insert("dimension".into(), json!(p.dimension));
    out.insert(
        "unique_listeners_exact_across_epochs".into(),
        json!(p.window.sel.range.within_one_epoch()),
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
