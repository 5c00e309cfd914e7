//! The route table: every route the API serves, once. The router is built from it
//! ([`super::router_with`]) and the OpenAPI document's paths are written from it
//! ([`super::openapi::document`]), so a route cannot be served undocumented, nor documented
//! with other parameters than its handler takes (the tests call every route with an unknown
//! parameter and compare the list the answer names with the table's).

use axum::Json;
use axum::routing::{MethodFilter, MethodRouter, on};
use serde_json::Value;

use super::{AppState, apps, events, live, metrics, openapi, streaming};

/// Where a parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum In {
    Path,
    Query,
    Header,
}

/// A parameter: its name in the request, and the OpenAPI component
/// (`#/components/parameters/{component}`) that describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Param {
    pub name: &'static str,
    pub location: In,
    pub component: &'static str,
}

const fn param(name: &'static str, location: In, component: &'static str) -> Param {
    Param {
        name,
        location,
        component,
    }
}

pub(super) const TENANT: Param = param("tenant", In::Path, "Tenant");
pub(super) const DIMENSION: Param = param("dimension", In::Path, "Dimension");
pub(super) const FROM: Param = param("from", In::Query, "From");
pub(super) const TO: Param = param("to", In::Query, "To");
pub(super) const STREAM: Param = param("stream", In::Query, "Stream");
pub(super) const GRANULARITY: Param = param("granularity", In::Query, "Granularity");
pub(super) const TZ: Param = param("tz", In::Query, "Tz");
pub(super) const MINUTES: Param = param("minutes", In::Query, "Minutes");
pub(super) const STEP: Param = param("step", In::Query, "Step");
pub(super) const LAST_EVENT_ID: Param = param("Last-Event-ID", In::Header, "LastEventId");
pub(super) const SINCE: Param = param("since", In::Query, "EventsSince");
pub(super) const EVENT_TYPE: Param = param("type", In::Query, "EventType");
pub(super) const EVENT_STREAM: Param = param("stream", In::Query, "EventStream");
pub(super) const LIMIT: Param = param("limit", In::Query, "EventLimit");
pub(super) const DAY_FROM: Param = param("from", In::Query, "DayFrom");
pub(super) const DAY_TO: Param = param("to", In::Query, "DayTo");
pub(super) const DAY_GRANULARITY: Param = param("granularity", In::Query, "DayGranularity");
pub(super) const APP_STORE: Param = param("store", In::Query, "AppStore");
pub(super) const APP: Param = param("app", In::Query, "App");
pub(super) const APP_DIMENSION: Param = param("dimension", In::Path, "AppDimension");

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// No token.
    Public,
    /// Any read token.
    AnyToken,
    /// A read token whose scope holds the path's tenant.
    Tenant,
    /// A token with the admin scope (`"*"`).
    Admin,
    /// A token with `scope = "ingest"` for the path's tenant.
    Ingest,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
}

impl Method {
    pub fn filter(self) -> MethodFilter {
        match self {
            Method::Get => MethodFilter::GET,
            Method::Post => MethodFilter::POST,
        }
    }

    /// The key of the operation in the OpenAPI document.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Post => "post",
        }
    }
}

/// One route: what the router serves and what the OpenAPI document says of it.
pub(super) struct Route {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// Path and header parameters, in the document's order (before the query's).
    pub params: &'static [Param],
    /// The query parameters the handler takes; any other is a 400.
    pub query: &'static [Param],
    pub handler: fn(MethodFilter) -> MethodRouter<AppState>,
    /// The rest of the OpenAPI operation: description, responses, request body.
    pub operation: fn() -> Value,
}

use super::extract::QueryParams as _;

pub(super) static ROUTES: &[Route] = &[
    Route {
        method: Method::Get,
        path: "/healthz",
        summary: "Readiness",
        access: Access::Public,
        params: &[],
        query: &[],
        handler: |m| on(m, super::healthz),
        operation: openapi::healthz,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/openapi.json",
        summary: "This document",
        access: Access::Public,
        params: &[],
        query: &[],
        handler: |m| on(m, || async { Json(openapi::document()) }),
        operation: openapi::openapi_json,
    },
    Route {
        method: Method::Get,
        path: "/metrics",
        summary: "Prometheus metrics",
        access: Access::Admin,
        params: &[],
        query: &[],
        handler: |m| on(m, metrics::metrics),
        operation: openapi::metrics,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants",
        summary: "Tenants the token may read",
        access: Access::AnyToken,
        params: &[],
        query: &[],
        handler: |m| on(m, super::tenants),
        operation: openapi::tenants,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/streaming/summary",
        summary: "Every metric over the range",
        access: Access::Tenant,
        params: &[TENANT],
        query: streaming::Window::QUERY,
        handler: |m| on(m, streaming::summary),
        operation: openapi::summary,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/streaming/timeseries",
        summary: "The metrics per bucket",
        access: Access::Tenant,
        params: &[TENANT],
        query: streaming::Timeseries::QUERY,
        handler: |m| on(m, streaming::timeseries),
        operation: openapi::timeseries,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/streaming/by-hour",
        summary: "The metrics by local hour of day",
        access: Access::Tenant,
        params: &[TENANT],
        query: streaming::ByHour::QUERY,
        handler: |m| on(m, streaming::by_hour),
        operation: openapi::by_hour,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/streaming/session-lengths",
        summary: "Qualifying sessions by length",
        access: Access::Tenant,
        params: &[TENANT],
        query: streaming::Window::QUERY,
        handler: |m| on(m, streaming::session_lengths),
        operation: openapi::session_lengths,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/streaming/by/{dimension}",
        summary: "A breakdown by one dimension",
        access: Access::Tenant,
        params: &[TENANT, DIMENSION],
        query: streaming::ByDimension::QUERY,
        handler: |m| on(m, streaming::by_dimension),
        operation: openapi::by_dimension,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/live",
        summary: "Listeners now",
        access: Access::Tenant,
        params: &[TENANT],
        query: <()>::QUERY,
        handler: |m| on(m, live::live_now),
        operation: openapi::live_now,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/live/history",
        summary: "Listeners over the last minutes",
        access: Access::Tenant,
        params: &[TENANT],
        query: live::History::QUERY,
        handler: |m| on(m, live::live_history),
        operation: openapi::live_history,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/live/stream",
        summary: "Listeners now, as server-sent events",
        access: Access::Tenant,
        params: &[TENANT, LAST_EVENT_ID],
        query: <()>::QUERY,
        handler: |m| on(m, live::live_stream),
        operation: openapi::live_stream,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/apps/downloads",
        summary: "App downloads",
        access: Access::Tenant,
        params: &[TENANT],
        query: &[DAY_FROM, DAY_TO, DAY_GRANULARITY, APP_STORE, APP],
        handler: |m| on(m, apps::downloads),
        operation: openapi::downloads,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/apps/downloads/by/{dimension}",
        summary: "App downloads by country",
        access: Access::Tenant,
        params: &[TENANT, APP_DIMENSION],
        query: &[DAY_FROM, DAY_TO, APP_STORE, APP],
        handler: |m| on(m, apps::downloads_by),
        operation: openapi::downloads_by,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/apps/engagement",
        summary: "App engagement (Matomo)",
        access: Access::Tenant,
        params: &[TENANT],
        query: &[DAY_FROM, DAY_TO, DAY_GRANULARITY],
        handler: |m| on(m, apps::engagement),
        operation: openapi::engagement,
    },
    Route {
        method: Method::Get,
        path: "/api/v1/tenants/{tenant}/events",
        summary: "Recent events",
        access: Access::Tenant,
        params: &[TENANT],
        query: events::EventsQuery::QUERY,
        handler: |m| on(m, events::get_events),
        operation: openapi::get_events,
    },
    Route {
        method: Method::Post,
        path: "/api/v1/tenants/{tenant}/events",
        summary: "Post events (JSON lines)",
        access: Access::Ingest,
        params: &[TENANT],
        query: &[],
        handler: |m| on(m, events::post_events),
        operation: openapi::post_events,
    },
];
