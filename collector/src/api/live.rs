//! `/api/v1/tenants/{tenant}/live`, `live/history` and `live/stream` (server-sent events):
//! formatting and parameters only; the numbers come from [`crate::live::LiveStore`].
//!
//! Why `live/stream` sends the whole tenant with every event: a live count is "latest wins",
//! so a client that missed events needs only the newest one. Every event carries the
//! tenant's version as its id; a client reconnecting with `Last-Event-ID` gets the current
//! state at once if it changed since (or is unknown), and nothing until the next change if it
//! did not. Versions survive a restart (`live.db`), so this holds across one too.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::extract::{Args, QueryParams, TenantRequest};
use super::routes::{MINUTES, Param, STEP, STREAM};
use super::{ApiError, ApiResult, AppState};
use crate::live::{LiveStore, Point, TenantNow};
use crate::time::rfc3339;

/// How long a client waits before reconnecting (the SSE `retry` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);
/// The most points one history answer may hold per series.
pub const MAX_HISTORY_POINTS: i64 = 7200;

fn stream_json(s: &crate::live::StreamNow) -> Value {
    json!({
        "stream": s.stream,
        "protocol": s.protocol.as_str(),
        "listeners": s.listeners,
        "updated_at": rfc3339(s.updated_ms),
    })
}

/// The body of `/live` and the data of each `live/stream` event.
pub fn now_json(now: &TenantNow, stale_after_ms: i64) -> Value {
    json!({
        "tenant": now.tenant,
        "listeners": now.listeners,
        "updated_at": now.updated_ms.map(rfc3339),
        "event_id": now.version.to_string(),
        "stale_after_seconds": stale_after_ms / 1000,
        "by_stream": now.by_stream.iter().map(stream_json).collect::<Vec<_>>(),
        "by_protocol": now.by_protocol.iter().map(|(p, n)| json!({"protocol": p.as_str(), "listeners": n})).collect::<Vec<_>>(),
        "hosts": now.hosts.iter().map(|h| json!({
            "host": h.host,
            "listeners": h.listeners,
            "updated_at": rfc3339(h.updated_ms),
            "streams": h.streams.iter().map(stream_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "apps": now.engagement.map(|e| json!({
            "visits": e.visits,
            "actions": e.actions,
            "visitors": e.visitors,
            "visits_converted": e.visits_converted,
            "last_minutes": e.last_minutes,
            "updated_at": rfc3339(e.updated_ms),
        })),
        "events": {
            "last_id": now.events.last_id.to_string(),
            "dropped": now.events.dropped,
        },
    })
}

/// The most events one `live/stream` message carries.
const EVENTS_PER_MESSAGE: usize = 500;

pub(super) async fn live_now(State(st): State<AppState>, req: TenantRequest<()>) -> ApiResult {
    let live = &st.services.live;
    Ok(Json(now_json(
        &live.now(req.tenant.as_str()),
        live.settings().stale_after_ms,
    )))
}

fn parse_positive(args: &Args<'_>, name: &str, default: i64) -> Result<i64, ApiError> {
    match args.get(name) {
        None => Ok(default),
        Some(v) => v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "`{name}` must be a whole number above 0, got {v:?}"
            ))
        }),
    }
}

/// `live/history`'s parameters: how far back, in which steps, which stream.
pub(super) struct History {
    minutes: i64,
    step_s: i64,
    count: i64,
    stream: Option<String>,
}

impl QueryParams for History {
    const QUERY: &'static [Param] = &[MINUTES, STEP, STREAM];
    fn parse(args: &Args<'_>) -> Result<History, ApiError> {
        let live = &args.state.services.live;
        let retention_min = (live.settings().retention_ms / 60_000).max(1);
        let minutes = parse_positive(args, "minutes", retention_min)?;
        if minutes > retention_min {
            return Err(ApiError::bad_request(format!(
                "`minutes` may be at most {retention_min} (live_retention_secs)"
            )));
        }
        let step_s = parse_positive(args, "step", 60)?;
        if step_s > 3600 {
            return Err(ApiError::bad_request("`step` may be at most 3600 seconds"));
        }
        let step_ms = step_s * 1000;
        let span_ms = minutes * 60_000;
        let count = (span_ms + step_ms - 1) / step_ms;
        if count > MAX_HISTORY_POINTS {
            return Err(ApiError::bad_request(format!(
                "{minutes} minutes in steps of {step_s} s is {count} points; at most {MAX_HISTORY_POINTS} (use a larger `step`)"
            )));
        }
        Ok(History {
            minutes,
            step_s,
            count,
            stream: args.nonempty("stream"),
        })
    }
}

fn points_json(points: &[Point], now_ms: i64) -> Vec<Value> {
    points
        .iter()
        .map(|p| {
            json!({
                "at": rfc3339(p.end_ms.min(now_ms)),
                "listeners": p.listeners,
                "peak": p.peak,
            })
        })
        .collect()
}

pub(super) async fn live_history(
    State(st): State<AppState>,
    req: TenantRequest<History>,
) -> ApiResult {
    let History {
        minutes,
        step_s,
        count,
        stream,
    } = req.params;
    let tenant = req.tenant.as_str();
    let live = &st.services.live;
    let step_ms = step_s * 1000;
    let now = crate::time::now_ms();
    // Bucket ends are aligned to the step; the last bucket holds now.
    let last_end = now.div_euclid(step_ms) * step_ms + step_ms;
    let first_end = last_end - (count - 1) * step_ms;
    let h = live.history(tenant, stream.as_deref(), first_end, last_end, step_ms);
    Ok(Json(json!({
        "tenant": tenant,
        "stream": stream,
        "from": rfc3339(first_end - step_ms),
        "to": rfc3339(now),
        "minutes": minutes,
        "step_seconds": step_s,
        "total": points_json(&h.total, now),
        "streams": h.streams.iter().map(|(s, p, points)| json!({
            "stream": s,
            "protocol": p.as_str(),
            "points": points_json(points, now),
        })).collect::<Vec<_>>(),
    })))
}

/// Where one `live/stream` client is.
struct Follower {
    live: Arc<LiveStore>,
    tenant: String,
    changes: watch::Receiver<u64>,
    /// The version the client has: from `Last-Event-ID`, then the last one sent.
    has: Option<u64>,
    /// The last event id sent: from `Last-Event-ID`, else the tenant's last event at connect.
    events_after: u64,
    first: bool,
}

fn follow(f: Follower) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(f, |mut f| async move {
        loop {
            if f.live.is_closed() {
                return None;
            }
            // Mark before reading, so a change after the read wakes `changed` below.
            f.changes.borrow_and_update();
            let (now, events) =
                f.live
                    .now_with_events(&f.tenant, f.events_after, EVENTS_PER_MESSAGE);
            // Events before the state: their ids are at most its version, so the id a
            // client last saw covers both.
            if let Some(last) = events.last().map(|e| e.id) {
                f.events_after = last;
                let data = json!({
                    "tenant": f.tenant,
                    "events": events.iter().map(crate::events::Event::to_json).collect::<Vec<_>>(),
                });
                let mut event = Event::default()
                    .event("events")
                    .id(last.to_string())
                    .data(data.to_string());
                if std::mem::take(&mut f.first) {
                    event = event.retry(RECONNECT_AFTER);
                }
                return Some((Ok(event), f));
            }
            if f.has != Some(now.version) {
                f.has = Some(now.version);
                let data = now_json(&now, f.live.settings().stale_after_ms).to_string();
                let mut event = Event::default()
                    .event("live")
                    .id(now.version.to_string())
                    .data(data);
                if std::mem::take(&mut f.first) {
                    event = event.retry(RECONNECT_AFTER);
                }
                return Some((Ok(event), f));
            }
            if f.changes.changed().await.is_err() {
                return None;
            }
        }
    })
}

pub(super) async fn live_stream(
    State(st): State<AppState>,
    headers: HeaderMap,
    req: TenantRequest<()>,
) -> Result<Response, ApiError> {
    let tenant = req.tenant.into_string();
    let has = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let live = st.services.live.clone();
    let follower = Follower {
        changes: live.subscribe(),
        events_after: has.unwrap_or_else(|| live.last_event_id(&tenant)),
        live,
        tenant,
        has,
        first: true,
    };
    let keep_alive = KeepAlive::new()
        .interval(st.services.heartbeat)
        .text("heartbeat");
    let mut resp = Sse::new(follow(follower))
        .keep_alive(keep_alive)
        .into_response();
    // Proxies (nginx) must not buffer the stream.
    resp.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, to_bytes};
    use axum::http::{Request, StatusCode};
    use earshot_common::Protocol;
    use earshot_common::wire::{LiveEntry, LiveSample};
    use futures::StreamExt;
    use tower::ServiceExt;

    use super::super::{ApiConfig, ApiToken, Services, router_with, token_digest};
    use super::*;
    use crate::live::LiveSettings;
    use crate::store::Store;

    struct Api {
        _dir: tempfile::TempDir,
        router: axum::Router,
        live: Arc<LiveStore>,
    }

    fn api() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("c.db")).unwrap();
        let live = Arc::new(LiveStore::new(LiveSettings::default()));
        let config = ApiConfig {
            tokens: vec![
                ApiToken {
                    name: "admin".into(),
                    token_sha256: token_digest("admin"),
                    tenants: vec!["*".into()],
                },
                ApiToken {
                    name: "r1".into(),
                    token_sha256: token_digest("r1"),
                    tenants: vec!["radio1".into()],
                },
            ],
            ..Default::default()
        };
        let services = Services {
            live: live.clone(),
            ..Default::default()
        };
        Api {
            _dir: dir,
            router: router_with(store, Arc::new(config), services),
            live,
        }
    }

    fn record(live: &LiveStore, host: &str, stream: &str, listeners: u64) {
        let now = crate::time::now_ms();
        let sample = LiveSample {
            at_ms: now,
            entries: vec![LiveEntry {
                tenant: "radio1".into(),
                stream: stream.into(),
                protocol: Protocol::Icecast,
                listeners,
            }],
        };
        live.record(host, &sample, now);
    }

    async fn send(
        api: &Api,
        uri: &str,
        token: &str,
        last_id: Option<&str>,
    ) -> axum::response::Response {
        let mut req = Request::get(uri).header("Authorization", format!("Bearer {token}"));
        if let Some(id) = last_id {
            req = req.header("Last-Event-ID", id);
        }
        api.router
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn text(resp: axum::response::Response) -> String {
        String::from_utf8(to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn live_now_and_history() {
        let api = api();
        record(&api.live, "agent-1", "/a.mp3", 3);
        record(&api.live, "agent-2", "/a.mp3", 2);
        record(&api.live, "agent-2", "/b.mp3", 1);
        let resp = send(&api, "/api/v1/tenants/radio1/live", "r1", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let v: Value = serde_json::from_str(&text(resp).await).unwrap();
        assert_eq!(v["listeners"], 6);
        assert_eq!(v["by_stream"][0]["stream"], "/a.mp3");
        assert_eq!(v["by_stream"][0]["listeners"], 5);
        assert_eq!(
            v["by_protocol"][0],
            json!({"protocol": "icecast", "listeners": 6})
        );
        assert_eq!(v["hosts"][0]["host"], "agent-1");
        assert_eq!(v["hosts"][1]["streams"].as_array().unwrap().len(), 2);
        assert_eq!(v["event_id"], api.live.version("radio1").to_string());
        assert_eq!(v["stale_after_seconds"], 30);

        let resp = send(
            &api,
            "/api/v1/tenants/radio1/live/history?minutes=3&step=10&stream=/a.mp3",
            "r1",
            None,
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let h: Value = serde_json::from_str(&text(resp).await).unwrap();
        assert_eq!(h["total"].as_array().unwrap().len(), 18);
        assert_eq!(h["total"][17]["listeners"], 5);
        assert_eq!(h["streams"].as_array().unwrap().len(), 1);

        for (uri, status, needle) in [
            (
                "/api/v1/tenants/radio2/live",
                StatusCode::FORBIDDEN,
                "radio2",
            ),
            (
                "/api/v1/tenants/radio1/live?x=1",
                StatusCode::BAD_REQUEST,
                "unknown parameter",
            ),
            (
                "/api/v1/tenants/radio1/live/history?step=3601",
                StatusCode::BAD_REQUEST,
                "at most 3600",
            ),
            (
                "/api/v1/tenants/radio1/live/history?step=abc",
                StatusCode::BAD_REQUEST,
                "step",
            ),
            (
                "/api/v1/tenants/radio1/live/history?minutes=999",
                StatusCode::BAD_REQUEST,
                "at most 120",
            ),
        ] {
            let resp = send(&api, uri, "r1", None).await;
            assert_eq!(resp.status(), status, "{uri}");
            let body = text(resp).await;
            assert!(body.contains(needle), "{uri}: {body}");
        }
    }

    async fn next_chunk(
        body: &mut (impl futures::Stream<Item = Result<bytes::Bytes, axum::Error>> + Unpin),
        wait: Duration,
    ) -> Option<String> {
        match tokio::time::timeout(wait, body.next()).await {
            Ok(Some(Ok(b))) => Some(String::from_utf8_lossy(&b).to_string()),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_stream_sends_changes_and_honours_last_event_id() {
        let api = api();
        record(&api.live, "agent-1", "/a.mp3", 3);
        let v1 = api.live.version("radio1");
        let resp = send(&api, "/api/v1/tenants/radio1/live/stream", "r1", None).await;
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        let mut body = resp.into_body().into_data_stream();
        let first = next_chunk(&mut body, Duration::from_secs(2)).await.unwrap();
        assert!(
            first.contains("event: live") && first.contains(&format!("id: {v1}")),
            "{first}"
        );
        assert!(
            first.contains("retry: 1000") && first.contains("\"listeners\":3"),
            "{first}"
        );

        // Up to date: nothing until the next change.
        let resp = send(
            &api,
            "/api/v1/tenants/radio1/live/stream",
            "r1",
            Some(&v1.to_string()),
        )
        .await;
        let mut quiet = resp.into_body().into_data_stream();
        assert_eq!(
            next_chunk(&mut quiet, Duration::from_millis(300)).await,
            None
        );
        // Older id: the current state at once.
        let resp = send(&api, "/api/v1/tenants/radio1/live/stream", "r1", Some("12")).await;
        let mut behind = resp.into_body().into_data_stream();
        assert!(
            next_chunk(&mut behind, Duration::from_secs(2))
                .await
                .unwrap()
                .contains(&format!("id: {v1}"))
        );

        record(&api.live, "agent-1", "/a.mp3", 4);
        let v2 = api.live.version("radio1");
        for stream in [&mut body, &mut quiet] {
            let ev = next_chunk(stream, Duration::from_secs(2)).await.unwrap();
            assert!(
                ev.contains(&format!("id: {v2}")) && ev.contains("\"listeners\":4"),
                "{ev}"
            );
        }
        // Closing the store ends every stream (the server's graceful shutdown waits for them).
        api.live.close();
        assert_eq!(next_chunk(&mut body, Duration::from_secs(2)).await, None);
        let resp = send(&api, "/api/v1/tenants/radio2/live/stream", "r1", None).await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    }

    #[tokio::test]
    async fn metrics_show_the_agents_counters_and_the_collectors_folds() {
        use earshot_common::rollup::{HourKey, HourRollup};
        use earshot_common::wire::{AgentCounters, Batch};
        use std::collections::BTreeMap;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_limits(
            &dir.path().join("c.db"),
            crate::store::Limits {
                max_streams: 1,
                max_values: 500,
            },
        )
        .unwrap();
        let rollup = |stream: &str| {
            let mut r = HourRollup::new(Protocol::Icecast);
            r.quarters[0].sessions = 1;
            (
                HourKey {
                    tenant: "radio1".into(),
                    stream: stream.into(),
                    hour_ms: 7_200_000,
                },
                r,
            )
        };
        let batch = Batch {
            agent_id: "a1".into(),
            seq: 1,
            rollups: vec![rollup("/a.mp3"), rollup("/b.mp3"), rollup("/c.mp3")],
            counters: AgentCounters {
                lines: 9,
                not_sessions: BTreeMap::from([(("radio1".into(), "image".into()), 4)]),
                folded: BTreeMap::from([(("radio1".into(), "referrer".into()), 2)]),
                ..Default::default()
            },
        };
        store.merge_batch(&batch).unwrap();
        let services = Services {
            agents: Arc::new(crate::health::AgentBoard::new(["a1"])),
            ..Default::default()
        };
        let config = ApiConfig {
            tokens: vec![ApiToken {
                name: "admin".into(),
                token_sha256: token_digest("admin"),
                tenants: vec!["*".into()],
            }],
            ..Default::default()
        };
        let router = router_with(store, Arc::new(config), services);
        let resp = router
            .oneshot(
                Request::get("/metrics")
                    .header("Authorization", "Bearer admin")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let m = text(resp).await;
        for line in [
            "earshot_agent_lines_total{agent=\"a1\"} 9\n",
            "earshot_agent_not_sessions_total{agent=\"a1\",tenant=\"radio1\",kind=\"image\"} 4\n",
            "earshot_agent_folded_total{agent=\"a1\",tenant=\"radio1\",what=\"referrer\"} 2\n",
            // /a.mp3 and /b.mp3 weigh the same: /a.mp3 is kept by name, two are folded.
            "earshot_collector_folded_total{tenant=\"radio1\",what=\"stream\"} 2\n",
            "# TYPE earshot_collector_folded_total counter\n",
            "# TYPE earshot_agent_not_sessions_total counter\n",
            "# TYPE earshot_agent_folded_total counter\n",
        ] {
            assert!(m.contains(line), "{line:?} missing in:\n{m}");
        }
    }

    #[tokio::test]
    async fn metrics_need_the_admin_scope_and_count_requests() {
        let api = api();
        record(&api.live, "agent-1", "/a \"b\".mp3", 3);
        let _ = send(&api, "/api/v1/tenants/radio1/live", "r1", None).await;
        let _ = send(&api, "/api/v1/tenants/radio2/live", "r1", None).await;
        assert_eq!(
            send(&api, "/metrics", "r1", None).await.status(),
            StatusCode::FORBIDDEN
        );
        let resp = send(&api, "/metrics", "admin", None).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let m = text(resp).await;
        assert!(m.contains("earshot_live_listeners{tenant=\"radio1\",stream=\"/a \\\"b\\\".mp3\",protocol=\"icecast\"} 3\n"), "{m}");
        assert!(
            m.contains("earshot_api_requests_total{status=\"200\"} 1\n"),
            "{m}"
        );
        assert!(
            m.contains("earshot_api_requests_total{status=\"403\"} 2\n"),
            "{m}"
        );
        assert!(m.contains("earshot_agents_connected 0\n"), "{m}");
        let doc = text(
            api.router
                .clone()
                .oneshot(
                    Request::get("/api/v1/openapi.json")
                        .body(Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap(),
        )
        .await;
        let doc: Value = serde_json::from_str(&doc).unwrap();
        for path in [
            "/metrics",
            "/api/v1/tenants/{tenant}/live",
            "/api/v1/tenants/{tenant}/live/history",
            "/api/v1/tenants/{tenant}/live/stream",
        ] {
            assert!(doc["paths"][path]["get"].is_object(), "{path} undocumented");
        }
    }
}
