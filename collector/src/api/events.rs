//! `POST /api/v1/tenants/{tenant}/events` (JSON lines, an ingest token) and
//! `GET …/events` (a read token): the platform's own events, kept in the live store for
//! `[events] retention_secs` and pushed on `live/stream`. Parsing and bounds are in
//! [`crate::events`]; this is authorization and formatting.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::json;

use super::extract::{Args, Ingest, QueryParams, TenantRequest};
use super::routes::{EVENT_STREAM, EVENT_TYPE, LIMIT, Param, SINCE};
use super::{ApiError, ApiResult, AppState};
use crate::events::{EventQuery, Since, parse_json_lines};

/// Default and largest `limit` of `GET …/events`.
pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;

pub(super) async fn post_events(
    State(st): State<AppState>,
    req: Ingest,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let tenant = req.tenant.as_str();
    let body = body.map_err(|e| ApiError::new(e.status(), format!("cannot read the body: {e}")))?;
    let events = parse_json_lines(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let out = st
        .services
        .live
        .push_events(tenant, events, crate::time::now_ms());
    if out.dropped > 0 {
        tracing::warn!(
            tenant,
            dropped = out.dropped,
            "events: the oldest were dropped to stay under [events] max_events"
        );
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "tenant": tenant,
            "accepted": out.accepted,
            "first_id": out.first_id.to_string(),
            "last_id": out.last_id.to_string(),
            "dropped": out.dropped,
        })),
    ))
}

/// `GET …/events`' parameters.
pub(super) struct EventsQuery(EventQuery);

impl QueryParams for EventsQuery {
    const QUERY: &'static [Param] = &[SINCE, EVENT_TYPE, EVENT_STREAM, LIMIT];
    fn parse(args: &Args<'_>) -> Result<EventsQuery, ApiError> {
        let since = match args.get("since") {
            None => None,
            Some(s) => Some(Since::parse(s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`since` must be an event id (digits) or an RFC 3339 time, got {s:?}"
                ))
            })?),
        };
        let limit = match args.get("limit") {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "`limit` must be a whole number from 1 to {MAX_LIMIT}, got {v:?}"
                    ))
                })?,
        };
        Ok(EventsQuery(EventQuery {
            since,
            kind: args.nonempty("type"),
            stream: args.nonempty("stream"),
            limit,
        }))
    }
}

pub(super) async fn get_events(
    State(st): State<AppState>,
    req: TenantRequest<EventsQuery>,
) -> ApiResult {
    let tenant = req.tenant.as_str();
    let live = &st.services.live;
    let (events, more, stats) = live.events(tenant, &req.params.0);
    let limits = live.event_limits();
    Ok(Json(json!({
        "tenant": tenant,
        "events": events.iter().map(crate::events::Event::to_json).collect::<Vec<_>>(),
        "more": more,
        "last_id": stats.last_id.to_string(),
        "retained": stats.retained,
        "dropped": stats.dropped,
        "retention_seconds": limits.retention_ms / 1000,
        "max_events": limits.max_events,
    })))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use futures::StreamExt;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::super::{ApiConfig, ApiToken, Services, router_with, token_digest};
    use crate::events::EventLimits;
    use crate::live::{LiveSettings, LiveStore};
    use crate::store::Store;

    struct Api {
        _dir: tempfile::TempDir,
        router: axum::Router,
        live: Arc<LiveStore>,
    }

    fn token(name: &str, tenants: &[&str]) -> ApiToken {
        ApiToken {
            name: name.into(),
            token_sha256: token_digest(name),
            tenants: tenants.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn api(max_events: usize) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let live = Arc::new(LiveStore::new(LiveSettings::default()));
        live.set_event_limits(EventLimits {
            retention_ms: 3_600_000,
            max_events,
        });
        // As `CollectorConfig::api_config` makes them: an ingest token reads no tenant.
        let config = ApiConfig {
            tokens: vec![
                token("r1", &["radio1"]),
                token("admin", &["*"]),
                token("ingest", &[]),
            ],
            ..Default::default()
        };
        let services = Services {
            live: live.clone(),
            ingest_tokens: Arc::new(vec![token("ingest", &["radio1"])]),
            ..Default::default()
        };
        Api {
            _dir: dir,
            router: router_with(store, Arc::new(config), services),
            live,
        }
    }

    async fn call(
        api: &Api,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = api
            .router
            .clone()
            .oneshot(req.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    const EV: &str = "/api/v1/tenants/radio1/events";
    const LINES: &str = "{\"type\":\"play\",\"stream\":\"/live.mp3\",\"user\":1}\n{\"type\":\"stop\",\"stream\":\"/live.mp3\"}\n{\"type\":\"play\",\"stream\":\"/jazz.mp3\",\"at\":\"2026-11-27T10:00:00Z\"}\n";

    #[tokio::test]
    async fn an_ingest_token_posts_a_read_token_reads() {
        let api = api(1000);
        let (s, b) = call(&api, "POST", EV, Some("ingest"), LINES).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(b["accepted"], 3);
        assert_eq!(b["dropped"], 0);
        let first: u64 = b["first_id"].as_str().unwrap().parse().unwrap();
        // Read tokens may not post; unknown or missing tokens are 401; scope is per tenant.
        let (s, b) = call(&api, "POST", EV, Some("r1"), LINES).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .contains("scope = \"ingest\"")
        );
        assert_eq!(
            call(&api, "POST", EV, Some("admin"), LINES).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&api, "POST", EV, None, LINES).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&api, "POST", EV, Some("x"), LINES).await.0,
            StatusCode::UNAUTHORIZED
        );
        let other = "/api/v1/tenants/radio2/events";
        assert_eq!(
            call(&api, "POST", other, Some("ingest"), LINES).await.0,
            StatusCode::FORBIDDEN
        );
        // An ingest token reads nothing.
        assert_eq!(
            call(&api, "GET", EV, Some("ingest"), "").await.0,
            StatusCode::FORBIDDEN
        );
        // A bad line refuses the body, naming the line; nothing is kept.
        let (s, b) = call(
            &api,
            "POST",
            EV,
            Some("ingest"),
            "{\"type\":\"a\"}\n{\"at\":1}\n",
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(
            b["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("line 2:")
        );

        let (s, b) = call(&api, "GET", EV, Some("r1"), "").await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["events"].as_array().unwrap().len(), 3);
        assert_eq!(b["events"][0]["user"], 1);
        assert_eq!(b["events"][0]["id"], first.to_string());
        assert_eq!(b["events"][2]["at"], "2026-11-27T10:00:00Z");
        assert_eq!(
            (b["retained"].clone(), b["dropped"].clone()),
            (3.into(), 0.into())
        );
        let ids = |b: &Value| {
            b["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["type"].as_str().unwrap().to_string() + e["stream"].as_str().unwrap())
                .collect::<Vec<_>>()
        };
        let (_, b) = call(&api, "GET", &format!("{EV}?since={first}"), Some("r1"), "").await;
        assert_eq!(ids(&b), ["stop/live.mp3", "play/jazz.mp3"]);
        let (_, b) = call(
            &api,
            "GET",
            &format!("{EV}?type=play&stream=/jazz.mp3"),
            Some("admin"),
            "",
        )
        .await;
        assert_eq!(ids(&b), ["play/jazz.mp3"]);
        let (_, b) = call(
            &api,
            "GET",
            &format!("{EV}?since=2026-11-28T00:00:00Z"),
            Some("r1"),
            "",
        )
        .await;
        assert_eq!(ids(&b), ["play/live.mp3", "stop/live.mp3"]);
        let (_, b) = call(&api, "GET", &format!("{EV}?limit=1"), Some("r1"), "").await;
        assert_eq!((ids(&b).len(), b["more"].clone()), (1, Value::Bool(true)));
        for q in ["since=later", "limit=0", "limit=x", "kind=play"] {
            let (s, _) = call(&api, "GET", &format!("{EV}?{q}"), Some("r1"), "").await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{q}");
        }
        assert_eq!(
            call(&api, "GET", "/api/v1/tenants/radio2/events", Some("r1"), "")
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        // /live carries the last event id.
        let (_, live) = call(&api, "GET", "/api/v1/tenants/radio1/live", Some("r1"), "").await;
        assert_eq!(live["events"]["last_id"], (first + 2).to_string());
        assert_eq!(live["event_id"], (first + 2).to_string());
    }

    #[tokio::test]
    async fn a_flood_keeps_the_newest_and_counts_the_dropped() {
        let api = api(100);
        let body: String = (0..250)
            .map(|i| format!("{{\"type\":\"tick\",\"n\":{i}}}\n"))
            .collect();
        let (s, b) = call(&api, "POST", EV, Some("ingest"), &body).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{b}");
        assert_eq!(
            (b["accepted"].clone(), b["dropped"].clone()),
            (250.into(), 150.into())
        );
        let (_, b) = call(&api, "GET", EV, Some("r1"), "").await;
        assert_eq!(b["retained"], 100);
        assert_eq!(b["dropped"], 150);
        assert_eq!(b["events"][0]["n"], 150);
        assert_eq!(b["events"][99]["n"], 249);
        // The bound holds across requests too.
        call(&api, "POST", EV, Some("ingest"), "{\"type\":\"late\"}").await;
        let (_, b) = call(&api, "GET", EV, Some("r1"), "").await;
        assert_eq!(
            (b["retained"].clone(), b["dropped"].clone()),
            (100.into(), 151.into())
        );
    }

    #[tokio::test]
    async fn events_are_pushed_on_live_stream_before_the_state() {
        let api = api(1000);
        let req = Request::get("/api/v1/tenants/radio1/live/stream")
            .header("authorization", "Bearer r1")
            .body(Body::empty())
            .unwrap();
        let resp = api.router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body().into_data_stream();
        let mut text = String::new();
        let mut read_until = async |want: &str, text: &mut String| {
            while !text.contains(want) {
                let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
                    .await
                    .expect("an SSE frame")
                    .unwrap()
                    .unwrap();
                text.push_str(&String::from_utf8_lossy(&chunk));
            }
        };
        read_until("event: live", &mut text).await;
        let events = crate::events::parse_json_lines(LINES.as_bytes()).unwrap();
        let out = api
            .live
            .push_events("radio1", events, crate::time::now_ms());
        text.clear();
        read_until(&format!("id: {}", out.last_id), &mut text).await;
        read_until("event: live", &mut text).await;
        let events_at = text.find("event: events").expect("an events frame");
        assert!(events_at < text.find("event: live").unwrap(), "{text}");
        assert!(text.contains("\"type\":\"stop\""), "{text}");
    }
}
