use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, Request};
use earshot_common::rollup::{DimCounts, Dimension, HourKey, HourRollup, Protocol};
use earshot_common::time::{DAY_MS, HOUR_MS, days_from_civil};
use earshot_common::wire::{AgentCounters, Batch};
use tower::ServiceExt;

use super::*;
use crate::store::Breakdown;

const ADMIN: &str = "admin-secret";
const RADIO1: &str = "radio1-secret";

struct Api {
    _dir: tempfile::TempDir,
    router: Router,
}

fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("c.db")).unwrap();
    // 2026-03-02 10:00–12:00 UTC, stream /live.mp3 of radio1.
    let base = days_from_civil(2026, 3, 2) * DAY_MS + 10 * HOUR_MS;
    let rollups = (0..2)
        .map(|h| {
            let mut r = HourRollup::new(Protocol::Icecast);
            for q in &mut r.quarters {
                q.sessions = 2;
                q.carried_in = 1;
                q.listening_ms = 900_000;
                q.aqh_listeners = 1;
                q.aqh_tenant_listeners = 1;
                q.lengths[0] = 2;
                q.uniques.insert(1);
                q.uniques.insert(2);
                q.dims.insert(
                    (Dimension::Country, "DE".into()),
                    DimCounts {
                        sessions: 2,
                        listening_ms: 900_000,
                    },
                );
            }
            r.minutes = vec![2; 60];
            r.dim_uniques
                .entry((Dimension::Country, "DE".into()))
                .or_default()
                .insert(1);
            // Renditions: 3 of 4 quarters from aac_128k, 1 from aac_64k.
            for (i, q) in r.quarters.iter_mut().enumerate() {
                let value = if i == 3 { "aac_64k" } else { "aac_128k" };
                q.dims.insert(
                    (Dimension::Rendition, value.into()),
                    DimCounts {
                        sessions: 2,
                        listening_ms: 900_000,
                    },
                );
                r.dim_uniques
                    .entry((Dimension::Rendition, value.into()))
                    .or_default()
                    .insert(i as u64 % 2 + 1);
            }
            (
                HourKey {
                    tenant: "radio1".into(),
                    stream: "/live.mp3".into(),
                    hour_ms: base + h * HOUR_MS,
                },
                r,
            )
        })
        .collect();
    let batch = Batch {
        agent_id: "a".into(),
        seq: 1,
        rollups,
        counters: AgentCounters::default(),
    };
    store.merge_batch(&batch).unwrap();
    let config = ApiConfig {
        tokens: vec![
            ApiToken {
                name: "admin".into(),
                token_sha256: token_digest(ADMIN),
                tenants: vec!["*".into()],
            },
            ApiToken {
                name: "r1".into(),
                token_sha256: token_digest(RADIO1),
                tenants: vec!["radio1".into()],
            },
        ],
        tenant_timezones: HashMap::from([("radio2".to_string(), "+05:30".to_string())]),
        max_range_days: 400,
    };
    config.validate().unwrap();
    Api {
        _dir: dir,
        router: router(store, Arc::new(config)),
    }
}

async fn call(api: &Api, uri: &str, token: Option<&str>) -> (StatusCode, HeaderMap, Value) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let resp = api
        .router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {bytes:?}"));
    (status, headers, body)
}

const RANGE: &str = "from=2026-03-02T10:00:00Z&to=2026-03-02T12:00:00Z";

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, needle: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["status"], expected.as_u16());
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} should mention {needle:?}");
}

#[tokio::test]
async fn healthz_and_openapi_need_no_token() {
    let api = api();
    let (s, _, b) = call(&api, "/healthz", None).await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": "ok"})));
    let (s, _, doc) = call(&api, "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    for path in [
        "/healthz",
        "/api/v1/tenants",
        "/api/v1/tenants/{tenant}/streaming/summary",
        "/api/v1/tenants/{tenant}/streaming/timeseries",
        "/api/v1/tenants/{tenant}/streaming/by-hour",
        "/api/v1/tenants/{tenant}/streaming/session-lengths",
        "/api/v1/tenants/{tenant}/streaming/by/{dimension}",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} undocumented");
    }
    // Every $ref resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in all {
        let ptr = r.trim_start_matches('#');
        assert!(doc.pointer(ptr).is_some(), "dangling {r}");
    }
}

#[tokio::test]
async fn tokens_are_checked() {
    let api = api();
    let url = format!("/api/v1/tenants/radio1/streaming/summary?{RANGE}");
    let (s, h, b) = call(&api, &url, None).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "Authorization");
    assert!(
        h[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let (s, h, b) = call(&api, &url, Some("wrong")).await;
    assert_error(s, &b, StatusCode::UNAUTHORIZED, "unknown token");
    assert!(
        h[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    let (s, _, b) = call(
        &api,
        &format!("/api/v1/tenants/radio2/streaming/summary?{RANGE}"),
        Some(RADIO1),
    )
    .await;
    assert_error(s, &b, StatusCode::FORBIDDEN, "radio2");
    let (s, _, _) = call(
        &api,
        &format!("/api/v1/tenants/radio2/streaming/summary?{RANGE}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn tenants_follow_the_scope() {
    let api = api();
    let (_, _, b) = call(&api, "/api/v1/tenants", Some(ADMIN)).await;
    assert_eq!(b, json!({"tenants": ["radio1", "radio2"]}));
    let (_, _, b) = call(&api, "/api/v1/tenants", Some(RADIO1)).await;
    assert_eq!(b, json!({"tenants": ["radio1"]}));
    let (s, _, _) = call(&api, "/api/v1/tenants", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_requests_say_what_is_wrong() {
    let api = api();
    let t = Some(RADIO1);
    let base = "/api/v1/tenants/radio1/streaming";
    let cases = [
        (
            format!("{base}/summary?to=2026-03-02T12:00:00Z"),
            StatusCode::BAD_REQUEST,
            "missing parameter `from`",
        ),
        (
            format!("{base}/summary?from=yesterday&to=2026-03-02T12:00:00Z"),
            StatusCode::BAD_REQUEST,
            "`from`",
        ),
        (
            format!("{base}/summary?from=2026-03-02T12:00:00Z&to=2026-03-02T12:00:00Z"),
            StatusCode::BAD_REQUEST,
            "before",
        ),
        (
            format!("{base}/summary?from=2020-01-01T00:00:00Z&to=2026-03-02T12:00:00Z"),
            StatusCode::BAD_REQUEST,
            "400 days",
        ),
        (
            format!("{base}/timeseries?{RANGE}&granularity=fortnight"),
            StatusCode::BAD_REQUEST,
            "granularity",
        ),
        (
            format!(
                "{base}/timeseries?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=minute"
            ),
            StatusCode::BAD_REQUEST,
            "7 days",
        ),
        (
            format!("{base}/by-hour?{RANGE}&tz=Mars/Olympus"),
            StatusCode::BAD_REQUEST,
            "time zone",
        ),
        (
            format!("{base}/summary?{RANGE}&gran=day"),
            StatusCode::BAD_REQUEST,
            "unknown parameter `gran`",
        ),
        (
            format!("{base}/by/planet?{RANGE}"),
            StatusCode::NOT_FOUND,
            "unknown dimension",
        ),
        (
            format!("{base}/nothing?{RANGE}"),
            StatusCode::NOT_FOUND,
            "no such route",
        ),
        (
            "/api/v2/whatever".to_string(),
            StatusCode::NOT_FOUND,
            "no such route",
        ),
    ];
    for (url, status, needle) in cases {
        let (s, _, b) = call(&api, &url, t).await;
        assert_error(s, &b, status, needle);
    }
}

#[tokio::test]
async fn summary_answers_with_the_design_names() {
    let api = api();
    let url = "/api/v1/tenants/radio1/streaming/summary?from=2026-03-02T15:37:00%2B05:30&to=2026-03-02T12:00:00Z";
    let (s, _, b) = call(&api, url, Some(RADIO1)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // 15:37+05:30 is 10:07Z, aligned down to 10:00Z.
    assert_eq!(b["from"], "2026-03-02T10:00:00Z");
    assert_eq!(b["to"], "2026-03-02T12:00:00Z");
    assert_eq!(b["tenant"], "radio1");
    assert_eq!(b["stream"], Value::Null);
    assert_eq!(b["sessions"], 16);
    assert_eq!(b["active_sessions"], 17);
    assert_eq!(b["listening_seconds"], 7200.0);
    assert_eq!(b["tlh"], 2.0);
    assert_eq!(b["unique_listeners"], 2);
    assert_eq!(b["unique_listeners_exact_across_epochs"], true);
    assert_eq!(b["peak_concurrent"], 2);
    assert_eq!(b["peak_at"], "2026-03-02T10:00:00Z");
    assert_eq!(b["average_listeners"], 1.0);
    assert_eq!(b["tsl_seconds"], 3600.0);
    assert_eq!(b["aqh"], 1.0);
    for k in ["short_sessions", "bot_sessions"] {
        assert_eq!(b[k], 0);
    }
    let (_, _, b) = call(&api, &format!("{url}&stream=/other"), Some(RADIO1)).await;
    assert_eq!(
        (b["sessions"].clone(), b["stream"].clone()),
        (json!(0), json!("/other"))
    );
}

#[tokio::test]
async fn timeseries_by_hour_lengths_and_breakdowns() {
    let api = api();
    let base = "/api/v1/tenants/radio1/streaming";
    let t = Some(RADIO1);

    let (s, _, b) = call(
        &api,
        &format!("{base}/timeseries?{RANGE}&granularity=hour"),
        t,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["granularity"], "hour");
    assert_eq!(b["tz"], "UTC");
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["from"], "2026-03-02T11:00:00Z");
    assert_eq!(rows[1]["sessions"], 8);
    assert_eq!(rows[1]["active_sessions"], 9);

    let (_, _, b) = call(
        &api,
        &format!("{base}/timeseries?{RANGE}&granularity=minute"),
        t,
    )
    .await;
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 120);
    assert_eq!(rows[0]["peak_concurrent"], 2);
    assert_eq!(rows[0]["sessions"], Value::Null);

    let (s, _, b) = call(&api, &format!("{base}/by-hour?{RANGE}&tz=%2B05:30"), t).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows = b["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 24);
    // 10:00Z–12:00Z is 15:30–17:30 at +05:30: hours 15 (2 quarters), 16 (4), 17 (2).
    let started: Vec<u64> = rows
        .iter()
        .map(|r| r["sessions_started"].as_u64().unwrap())
        .collect();
    assert_eq!(&started[15..18], &[4, 8, 4]);
    assert_eq!(rows[16]["active_sessions"], 9);
    assert_eq!(b["tz"], "+05:30");

    let (s, _, b) = call(&api, &format!("{base}/session-lengths?{RANGE}"), t).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["rows"][0],
        json!({"min_seconds": 60, "max_seconds": 300, "sessions": 16})
    );
    assert_eq!(b["rows"][12]["max_seconds"], Value::Null);
    assert_eq!(b["short_sessions"], 0);

    let (s, _, b) = call(&api, &format!("{base}/by/country?{RANGE}"), t).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["rows"][0]["value"], "DE");
    assert_eq!(b["rows"][0]["sessions"], 16);
    assert_eq!(b["rows"][0]["unique_listeners"], 1);
    assert_eq!(b["rows"][0]["share"], 1.0);
    assert_eq!(b["unique_listeners_resolution"], "hour");

    // Two hours, each: aac_128k 3 quarters × 2 sessions × 900 s (listeners 1, 2, 1),
    // aac_64k 1 quarter × 2 sessions × 900 s (listener 2).
    let (s, _, b) = call(&api, &format!("{base}/by/rendition?{RANGE}"), t).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["dimension"], "rendition");
    let rows: Vec<(String, u64, f64, u64, f64)> = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_owned(),
                r["sessions"].as_u64().unwrap(),
                r["listening_seconds"].as_f64().unwrap(),
                r["unique_listeners"].as_u64().unwrap(),
                r["share"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("aac_128k".to_string(), 12, 5400.0, 2, 0.75),
            ("aac_64k".to_string(), 4, 1800.0, 1, 0.25)
        ]
    );
    let (s, _, doc) = call(&api, "/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    let names = &doc["components"]["parameters"]["Dimension"]["schema"]["enum"];
    assert_eq!(names, &json!(Breakdown::NAMES));
    assert!(names.as_array().unwrap().contains(&json!("rendition")));

    let (_, _, b) = call(&api, &format!("{base}/by/stream?{RANGE}"), t).await;
    assert_eq!(b["rows"][0]["value"], "/live.mp3");
    assert_eq!(b["rows"][0]["peak_concurrent"], 2);
    assert_eq!(b["rows"][0]["aqh"], 1.0);
}

/// `{tenant}` → `tenant`, `{dimension}` → `country` (a dimension of streaming and of apps).
fn concrete(path: &str, tenant: &str) -> String {
    path.replace("{tenant}", tenant)
        .replace("{dimension}", "country")
}

#[test]
fn every_route_is_documented_with_its_parameters() {
    let doc = openapi::document();
    let mut documented = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented += 1;
            assert!(
                routes::ROUTES
                    .iter()
                    .any(|r| r.path == path && r.method.as_str() == method),
                "{method} {path} is documented but not in the route table"
            );
        }
    }
    assert_eq!(documented, routes::ROUTES.len());
    for route in routes::ROUTES {
        let what = format!("{} {}", route.method.as_str(), route.path);
        let op = &doc["paths"][route.path][route.method.as_str()];
        assert!(op.is_object(), "{what} undocumented");
        assert_eq!(op["summary"], route.summary, "{what}");
        assert!(op["responses"].is_object(), "{what}");
        // The parameters the document lists are the table's, each resolving to a component
        // with the same name and place.
        let listed: Vec<(String, String)> = op["parameters"]
            .as_array()
            .map(|a| a.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|p| {
                let r = p["$ref"].as_str().expect("parameters are references");
                let c = doc
                    .pointer(r.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("{what}: dangling {r}"));
                (
                    c["name"].as_str().unwrap().to_string(),
                    c["in"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let table: Vec<(String, String)> = route
            .params
            .iter()
            .chain(route.query)
            .map(|p| {
                let at = match p.location {
                    routes::In::Path => "path",
                    routes::In::Query => "query",
                    routes::In::Header => "header",
                };
                (p.name.to_string(), at.to_string())
            })
            .collect();
        assert_eq!(listed, table, "{what}");
        // Every `{name}` of the path is a path parameter.
        for seg in route.path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(|c| c == '{' || c == '}');
            assert!(
                table.contains(&(name.to_string(), "path".to_string())),
                "{what}: {name}"
            );
        }
        assert!(
            route.query.iter().all(|p| p.location == routes::In::Query),
            "{what}"
        );
        assert_eq!(
            op["security"] == json!([]),
            route.access == routes::Access::Public,
            "{what}"
        );
    }
}

#[tokio::test]
async fn every_route_is_served_and_checks_what_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("c.db")).unwrap();
    let token = |name: &str, tenants: &[&str]| ApiToken {
        name: name.into(),
        token_sha256: token_digest(name),
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
    };
    let config = ApiConfig {
        tokens: vec![
            token("admin", &["*"]),
            token("r1", &["radio1"]),
            token("ingest", &[]),
        ],
        ..Default::default()
    };
    let services = Services {
        ingest_tokens: Arc::new(vec![token("ingest", &["radio1"])]),
        ..Default::default()
    };
    let router = router_with(store, Arc::new(config), services);
    let send = async |method: routes::Method, uri: &str, token: Option<&str>| {
        let mut req = Request::builder()
            .method(match method {
                routes::Method::Get => "GET",
                routes::Method::Post => "POST",
            })
            .uri(uri);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let resp = router
            .clone()
            .oneshot(req.body(Body::from("{\"type\":\"x\"}\n")).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 24).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).to_string())
    };
    for route in routes::ROUTES {
        // Built without app downloads, their routes answer 404 before any check.
        if !cfg!(feature = "apps") && route.path.contains("/apps/") {
            continue;
        }
        let what = format!("{} {}", route.method.as_str(), route.path);
        let own = concrete(route.path, "radio1");
        let (s, body) = send(route.method, &own, None).await;
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{what}: {body}");
        assert!(!body.contains("no such route"), "{what} is not served");
        if route.access == routes::Access::Public {
            assert_eq!(s, StatusCode::OK, "{what}: {body}");
            continue;
        }
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{what}: {body}");
        if matches!(
            route.access,
            routes::Access::AnyToken | routes::Access::Admin
        ) {
            // These take no parameters and ignore a query string.
            assert!(route.query.is_empty(), "{what}");
            let (s, body) = send(route.method, &format!("{own}?zz=1"), Some("admin")).await;
            assert_eq!(s, StatusCode::OK, "{what}: {body}");
            if route.access == routes::Access::Admin {
                let (s, body) = send(route.method, &own, Some("r1")).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {body}");
            }
            continue;
        }
        let takes = if route.query.is_empty() {
            "no parameters".to_string()
        } else {
            route
                .query
                .iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let allowed = match route.access {
            routes::Access::Ingest => "ingest",
            _ => "admin",
        };
        let (s, body) = send(route.method, &format!("{own}?zz=1"), Some(allowed)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert!(
            body.contains(&format!(
                "unknown parameter `zz`; this endpoint takes {takes}\""
            )),
            "{what}: {body}"
        );
        match route.access {
            routes::Access::Public | routes::Access::AnyToken | routes::Access::Admin => {}
            routes::Access::Tenant => {
                let other = concrete(route.path, "radio2");
                let (s, body) = send(route.method, &other, Some("r1")).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {body}");
                let bad = concrete(route.path, "a%20b");
                let (s, body) = send(route.method, &bad, Some("admin")).await;
                assert_eq!(s, StatusCode::NOT_FOUND, "{what}: {body}");
                assert!(body.contains("no such tenant: tenant names are"), "{body}");
            }
            routes::Access::Ingest => {
                let (s, body) = send(route.method, &own, Some("r1")).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {body}");
                let other = concrete(route.path, "radio2");
                let (s, body) = send(route.method, &other, Some("ingest")).await;
                assert_eq!(s, StatusCode::FORBIDDEN, "{what}: {body}");
            }
        }
    }
}
