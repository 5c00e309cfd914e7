//! Downloads and engagement end to end inside the crate: fixture reports → `apps.db` → the
//! API (tower `oneshot`), with the totals checked against hand counts of the fixtures
//! (`collector/tests/data/sources/`, see its README), and the pollers against local servers.
//!
//! Hand counts, App Store fixture (2026-11-27), product types per FORMATS §5.5:
//! radio.example.ios downloads 1:5 + 1F:4 + F1:3 + 1:-1 (refund) + 1T:2.00 = 13
//!   (US 5+4-1 = 8, GB 3, DE 2); redownloads 3:2 (US) + 3F:1 (DE) = 3;
//!   updates 7:7 (US) + 7F:6 (GB) + F7:2 (GB) = 15; the IAY in-app row is not a download.
//! jazz.fm.app downloads 9 (FR), redownloads 0, updates 4.
//! Google Play fixture, com.example.radio, Nov 1 and 2: Daily User Installs overview 11 + 8
//!   = 19 (country DE 3+3, GB 2+blank, US 6+5 = 19); Daily Device Upgrades 35 + 31 = 66;
//!   Daily Device Uninstalls 3 + 2 = 5 (country DE 1, GB 1, US 3).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use jiff::civil::date;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::db::AppsDb;
use super::import::import_report;
use crate::api::{ApiConfig, ApiToken, Services, router_with, token_digest};
use crate::sources::test_server::{MockServer, Reply, fixture};
use crate::sources::{Store, Units};
use crate::store::Store as RollupStore;

const APPLE: &str = "appstore-sales-2026-11-27.tsv.gz";
const COUNTRY: &str = "installs_com.example.radio_202611_country.csv";
const OVERVIEW: &str = "installs_com.example.radio_202611_overview.csv";

fn no_owner(_: Store, _: &str, _: Option<&str>) -> Option<String> {
    None
}

struct Harness {
    dir: tempfile::TempDir,
    db: Arc<AppsDb>,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(AppsDb::open(&dir.path().join("apps.db")).unwrap());
    Harness { dir, db }
}

fn import(h: &Harness, tenant: &str, file: &str) -> super::import::ImportOutcome {
    import_report(&h.db, tenant, &fixture(file), no_owner, 1).unwrap()
}

#[test]
fn re_importing_a_report_never_doubles() {
    let h = harness();
    let first = import(&h, "radio1", APPLE);
    assert_eq!(first.store, Store::AppStore);
    // (app, country) pairs: ios US/GB/DE, jazz FR.
    assert_eq!((first.rows, first.replaced), (4, 0));
    let again = import(&h, "radio1", APPLE);
    assert_eq!((again.rows, again.replaced), (4, 4));
    let rows =
        h.db.downloads("radio1", date(2026, 11, 1), date(2026, 12, 1), None, None)
            .unwrap();
    assert_eq!(rows.len(), 4);
    let r = super::downloads::report(
        &rows,
        date(2026, 11, 1),
        date(2026, 12, 1),
        super::downloads::DayGranularity::Month,
    );
    assert_eq!(r.totals.downloads, Some(Units::whole(22)));
    assert_eq!(r.totals.redownloads, Some(Units::whole(3)));
    assert_eq!(r.totals.updates, Some(Units::whole(19)));
    assert_eq!(r.totals.uninstalls, None);

    // Google: country file twice, then the overview: the overview row wins, nothing doubles.
    for _ in 0..2 {
        import(&h, "radio1", COUNTRY);
    }
    let o = import(&h, "radio1", OVERVIEW);
    assert_eq!((o.store, o.rows, o.replaced), (Store::GooglePlay, 2, 0));
    import(&h, "radio1", OVERVIEW);
    let rows =
        h.db.downloads(
            "radio1",
            date(2026, 11, 1),
            date(2026, 12, 1),
            Some(Store::GooglePlay),
            None,
        )
        .unwrap();
    assert_eq!(rows.len(), 6 + 2);
    let r = super::downloads::report(
        &rows,
        date(2026, 11, 1),
        date(2026, 12, 1),
        super::downloads::DayGranularity::Day,
    );
    assert_eq!(r.totals.downloads, Some(Units::whole(19)));
    assert_eq!(r.totals.updates, Some(Units::whole(66)));
    assert_eq!(r.totals.uninstalls, Some(Units::whole(5)));
    assert_eq!(r.totals.redownloads, None);
}

#[test]
fn apps_mapped_to_another_tenant_are_skipped() {
    let h = harness();
    let owner =
        |_: Store, app: &str, _: Option<&str>| (app == "jazz.fm.app").then(|| "jazz".to_string());
    let o = import_report(&h.db, "radio1", &fixture(APPLE), owner, 1).unwrap();
    assert_eq!(o.rows, 3);
    assert!(
        o.skipped
            .contains(&("jazz.fm.app".to_string(), "jazz".to_string()))
    );
    assert!(
        import_report(&h.db, "radio1", b"hello\tworld\n", no_owner, 1)
            .unwrap_err()
            .to_string()
            .contains("not a recognized report")
    );
}

const ADMIN: &str = "admin-token";
const R1: &str = "r1-token";
const INGEST: &str = "ingest-token";

fn api(h: &Harness, engagement: Option<Arc<super::EngagementSource>>) -> axum::Router {
    let store = RollupStore::open(&h.dir.path().join("c.db")).unwrap();
    let token = |name: &str, t: &str, tenants: &[&str]| ApiToken {
        name: name.into(),
        token_sha256: token_digest(t),
        tenants: tenants.iter().map(|s| s.to_string()).collect(),
    };
    let config = ApiConfig {
        tokens: vec![
            token("admin", ADMIN, &["*"]),
            token("r1", R1, &["radio1"]),
            token("ingest", INGEST, &[]),
        ],
        tenant_timezones: HashMap::from([("radio1".to_string(), "Europe/Berlin".to_string())]),
        max_range_days: 400,
    };
    let services = Services {
        apps: Some(h.db.clone()),
        engagement,
        ingest_tokens: Arc::new(vec![token("ingest", INGEST, &["radio1"])]),
        ..Default::default()
    };
    router_with(store, Arc::new(config), services)
}

async fn get(router: &axum::Router, uri: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::get(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

const DL: &str = "/api/v1/tenants/radio1/apps/downloads";

#[tokio::test]
async fn downloads_through_the_api_match_the_hand_counts() {
    let h = harness();
    for f in [APPLE, COUNTRY, OVERVIEW, APPLE] {
        import(&h, "radio1", f);
    }
    let api = api(&h, None);
    let (s, b) = get(
        &api,
        &format!("{DL}?from=2026-11-01&to=2026-12-01"),
        Some(R1),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["totals"],
        json!({"downloads": 41, "redownloads": 3, "updates": 85, "uninstalls": 5})
    );
    assert_eq!(
        b["by_store"],
        json!([
            {"store": "app_store", "downloads": 22, "redownloads": 3, "updates": 19, "uninstalls": null},
            {"store": "google_play", "downloads": 19, "redownloads": null, "updates": 66, "uninstalls": 5}
        ])
    );
    assert_eq!(b["rows"].as_array().unwrap().len(), 30);
    assert_eq!(b["rows"][0]["from"], "2026-11-01");
    assert_eq!(b["rows"][0]["downloads"], 11);
    assert_eq!(b["rows"][26]["downloads"], 22);
    assert_eq!(b["rows"][5]["downloads"], Value::Null);
    let apps = b["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 3);
    let ios = apps
        .iter()
        .find(|a| a["app"] == "radio.example.ios")
        .unwrap();
    assert_eq!(ios["apple_id"], "1234567890");
    assert_eq!(ios["totals"]["downloads"], 13);
    assert_eq!(b["tz"], "Europe/Berlin");

    // Filters and weekly buckets.
    let (_, b) = get(
        &api,
        &format!("{DL}?from=2026-11-01&to=2026-12-01&store=google_play&granularity=week"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(b["totals"]["downloads"], 19);
    assert_eq!(
        b["rows"][0],
        json!({"from": "2026-11-01", "to": "2026-11-02", "downloads": 11, "redownloads": null, "updates": 35, "uninstalls": 3})
    );
    let (_, b) = get(
        &api,
        &format!("{DL}?from=2026-11-27&to=2026-11-28&app=jazz.fm.app"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(b["totals"]["downloads"], 9);
    // RFC 3339 bounds: dates in the tenant's zone; a `to` after midnight counts its day.
    let (_, b) = get(
        &api,
        &format!("{DL}?from=2026-11-26T23:30:00Z&to=2026-11-27T10:00:00Z"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(
        (b["from"].as_str(), b["to"].as_str()),
        (Some("2026-11-27"), Some("2026-11-28"))
    );
    assert_eq!(b["totals"]["downloads"], 22);

    // By country: the country rows only.
    let (s, b) = get(
        &api,
        &format!("{DL}/by/country?from=2026-11-01&to=2026-12-01"),
        Some(R1),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows: BTreeMap<String, (Value, Value)> = b["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["country"].as_str().unwrap().to_string(),
                (r["downloads"].clone(), r["uninstalls"].clone()),
            )
        })
        .collect();
    // US: Apple 8 + Google 11; GB: 3 + 2; DE: 2 + 6; FR: 9.
    assert_eq!(rows["US"], (json!(19), json!(3)));
    assert_eq!(rows["GB"], (json!(5), json!(1)));
    assert_eq!(rows["DE"], (json!(8), json!(1)));
    assert_eq!(rows["FR"], (json!(9), Value::Null));
    assert_eq!(b["rows"][0]["country"], "US");
    assert_eq!(b["apps_without_country"], json!([]));
}

#[tokio::test]
async fn downloads_refuse_bad_requests() {
    let h = harness();
    let api = api(&h, None);
    let q = "from=2026-11-01&to=2026-12-01";
    assert_eq!(
        get(&api, &format!("{DL}?{q}"), None).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get(&api, &format!("{DL}?{q}"), Some("nope")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, b) = get(
        &api,
        "/api/v1/tenants/radio2/apps/downloads?from=2026-11-01&to=2026-12-01",
        Some(R1),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // An ingest token reads nothing.
    assert_eq!(
        get(&api, &format!("{DL}?{q}"), Some(INGEST)).await.0,
        StatusCode::FORBIDDEN
    );
    for (query, want) in [
        ("to=2026-12-01", "missing `from`"),
        ("from=2026-11-01&to=soon", "`to` must be a date"),
        ("from=2026-12-01&to=2026-11-01", "must be after"),
        ("from=2020-01-01&to=2026-01-01", "at most 400"),
        (
            &format!("{q}&granularity=hour") as &str,
            "`granularity` must be one of",
        ),
        (&format!("{q}&store=amazon"), "`store` must be"),
        (&format!("{q}&stream=x"), "unknown parameter `stream`"),
    ] {
        let (s, b) = get(&api, &format!("{DL}?{query}"), Some(ADMIN)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{query}: {msg}");
    }
    let (s, _) = get(&api, &format!("{DL}/by/device?{q}"), Some(ADMIN)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = get(
        &api,
        &format!("/api/v1/tenants/radio1/apps/engagement?{q}"),
        Some(ADMIN),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[sources.matomo]")
    );
}

fn appstore_client(base: &str, backfill_days: u16) -> crate::sources::appstore::AppStoreClient {
    crate::sources::appstore::AppStoreClient::new(crate::sources::appstore::AppStoreConfig {
        key_id: "2X9R4HXF34".into(),
        issuer_id: "57246542-96fe-1a63-e053-0824d011072a".into(),
        private_key_file: format!(
            "{}/tests/data/sources/AuthKey_TEST000000.p8",
            env!("CARGO_MANIFEST_DIR")
        )
        .into(),
        vendor_number: "85012345".into(),
        base_url: base.into(),
        backfill_days,
        apps: BTreeMap::from([
            ("1234567890".to_string(), "radio1".to_string()),
            ("jazz.fm.app".to_string(), "jazz".to_string()),
        ]),
    })
    .unwrap()
}

#[tokio::test]
async fn the_apple_poller_back_fills_and_maps_apps_to_tenants() {
    let server = MockServer::start(|r| {
        if r.query_value("filter[reportDate]").as_deref() == Some("2026-11-27") {
            Reply::new(200, "application/a-gzip", fixture(APPLE))
        } else {
            Reply::json(404, fixture("asc-error-404-no-sales.json"))
        }
    })
    .await;
    let h = harness();
    let client = appstore_client(&server.base, 5);
    let today = date(2026, 11, 29);
    let r = super::poll::appstore_once(&client, &h.db, today)
        .await
        .unwrap();
    // Days 11-24 … 11-28: 27 has a report, the others 404.
    assert_eq!(r.imported, ["2026-11-27"]);
    assert_eq!(r.no_report.len(), 4);
    assert_eq!((r.rows, r.unmapped_rows), (4, 0));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 5);
    assert!(
        reqs.iter()
            .all(|q| q.bearer().is_some_and(|t| t.split('.').count() == 3))
    );
    let sum = |tenant: &str| {
        let rows =
            h.db.downloads(tenant, date(2026, 11, 1), date(2026, 12, 1), None, None)
                .unwrap();
        super::downloads::report(
            &rows,
            date(2026, 11, 1),
            date(2026, 12, 1),
            super::downloads::DayGranularity::Month,
        )
        .totals
        .downloads
    };
    assert_eq!(sum("radio1"), Some(Units::whole(13)));
    assert_eq!(sum("jazz"), Some(Units::whole(9)));
    // The same day again: only the 404s younger than two days are asked again (11-28).
    let r = super::poll::appstore_once(&client, &h.db, today)
        .await
        .unwrap();
    assert!(r.imported.is_empty());
    assert_eq!(server.requests().len(), 5);
    let r = super::poll::appstore_once(&client, &h.db, date(2026, 11, 30))
        .await
        .unwrap();
    // On the 30th: 11-29 is new, 11-28 was seen only one day after; nothing else.
    assert_eq!(r.no_report, [date(2026, 11, 28), date(2026, 11, 29)]);
    assert_eq!(sum("radio1"), Some(Units::whole(13)));
}

#[tokio::test]
async fn the_google_poller_re_reads_only_rewritten_files() {
    let generation = Arc::new(AtomicU64::new(1));
    let g = generation.clone();
    let server = MockServer::start(move |r| {
        if r.path == "/token" {
            return Reply::json(200, fixture("google-oauth-token.json"));
        }
        let gen_now = g.load(Ordering::SeqCst);
        if r.query_value("alt").as_deref() == Some("media") {
            let name = if r.path.ends_with("_country.csv") { COUNTRY } else { OVERVIEW };
            return Reply::new(200, "text/csv", fixture(name));
        }
        let prefix = r.query_value("prefix").unwrap_or_default();
        if !prefix.ends_with("_202611") {
            return Reply::json(200, fixture("gcs-list-empty.json"));
        }
        let item = |dim: &str| json!({"name": format!("{prefix}_{dim}.csv"), "generation": gen_now.to_string(), "size": "100"});
        let listing = json!({"kind": "storage#objects", "items": [item("overview"), item("country"), item("os_version")]});
        Reply::json(200, listing.to_string())
    })
    .await;
    let h = harness();
    let client = crate::sources::googleplay::GooglePlayClient::new(
        crate::sources::googleplay::GooglePlayConfig {
            service_account_file: format!(
                "{}/tests/data/sources/test-service-account.json",
                env!("CARGO_MANIFEST_DIR")
            )
            .into(),
            bucket: "pubsite_prod_rev_01234567890987654321".into(),
            packages: BTreeMap::from([("com.example.radio".to_string(), "radio1".to_string())]),
            storage_base_url: server.base.clone(),
            token_url: Some(format!("{}/token", server.base)),
        },
    )
    .unwrap();
    let today = date(2026, 12, 2);
    let downloads = |h: &Harness| {
        let rows =
            h.db.downloads("radio1", date(2026, 11, 1), date(2026, 12, 1), None, None)
                .unwrap();
        super::downloads::report(
            &rows,
            date(2026, 11, 1),
            date(2026, 12, 1),
            super::downloads::DayGranularity::Month,
        )
        .totals
        .downloads
    };
    let r = super::poll::google_play_once(&client, &h.db, today)
        .await
        .unwrap();
    assert_eq!(r.imported.len(), 2, "{r:?}");
    assert_eq!(downloads(&h), Some(Units::whole(19)));
    let media = |s: &MockServer| {
        s.requests()
            .iter()
            .filter(|q| q.query_value("alt").is_some())
            .count()
    };
    assert_eq!(media(&server), 2);
    // Unchanged generations: listed, not downloaded.
    let r = super::poll::google_play_once(&client, &h.db, today)
        .await
        .unwrap();
    assert!(r.imported.is_empty());
    assert_eq!(media(&server), 2);
    // Google rewrote the files: downloaded again, and still 19 (replaced, not added).
    generation.store(2, Ordering::SeqCst);
    let r = super::poll::google_play_once(&client, &h.db, today)
        .await
        .unwrap();
    assert_eq!(r.imported.len(), 2);
    assert_eq!(downloads(&h), Some(Units::whole(19)));
}

#[tokio::test]
async fn engagement_is_cached_and_closed_days_are_not_fetched_again() {
    let server = MockServer::start(|r| {
        let method = r.form_value("method").unwrap_or_default();
        let date = r.form_value("date").unwrap_or_default();
        let days: Vec<&str> = date.split(',').collect();
        let keyed = |v: Value| {
            let mut m = serde_json::Map::new();
            let (a, b) = (
                days[0].parse::<jiff::civil::Date>().unwrap(),
                days[days.len() - 1].parse::<jiff::civil::Date>().unwrap(),
            );
            let mut d = a;
            while d <= b {
                m.insert(d.to_string(), v.clone());
                d = d.tomorrow().unwrap();
            }
            Value::Object(m)
        };
        let body = match method.as_str() {
            "VisitsSummary.get" => {
                keyed(serde_json::from_slice(&fixture("matomo-visits-summary-day.json")).unwrap())
            }
            "DevicesDetection.getType" => {
                keyed(serde_json::from_slice(&fixture("matomo-devices-get-type.json")).unwrap())
            }
            "DevicesDetection.getOsFamilies" => {
                keyed(serde_json::from_slice(&fixture("matomo-os-families.json")).unwrap())
            }
            "Live.getCounters" => {
                serde_json::from_slice(&fixture("matomo-live-counters.json")).unwrap()
            }
            _ => json!({"result": "error", "message": "The method name is invalid."}),
        };
        Reply::json(200, body.to_string())
    })
    .await;
    let h = harness();
    let token_file = h.dir.path().join("matomo.token");
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let client = crate::sources::matomo::MatomoClient::new(crate::sources::matomo::MatomoConfig {
        base_url: server.base.clone(),
        token_file,
        sites: BTreeMap::from([("radio1".to_string(), 7)]),
    })
    .unwrap();
    let source = Arc::new(super::EngagementSource::new(client, h.db.clone()));
    let api = api(&h, Some(source.clone()));
    let uri = "/api/v1/tenants/radio1/apps/engagement?from=2026-11-01&to=2026-11-03";
    let (s, b) = get(&api, uri, Some(R1)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Two days of the fixture day (2 visits, 8 actions, 1622 s, 1 bounce each).
    assert_eq!(b["site_id"], 7);
    assert_eq!(b["fetched_days"], 6);
    assert_eq!(b["summary"]["nb_visits"], 4);
    assert_eq!(b["summary"]["nb_actions"], 16);
    assert_eq!(b["summary"]["sum_visit_length"], 3244);
    assert_eq!(b["summary"]["bounce_rate"], 0.5);
    assert_eq!(b["summary"]["nb_uniq_visitors"], Value::Null);
    assert_eq!(b["timeseries"][0]["nb_uniq_visitors"], 1);
    // Desktop 2 + 2, Smartphone 4 + 4; zero rows left out.
    assert_eq!(b["by_device"][0]["label"], "Smartphone");
    assert_eq!(b["by_device"][0]["nb_visits"], 8);
    assert_eq!(b["by_device"][1]["nb_visits"], 4);
    assert_eq!(b["by_device"].as_array().unwrap().len(), 2);
    assert!(b["by_os"].as_array().is_some_and(|a| !a.is_empty()));
    let calls = server.requests().len();
    assert_eq!(calls, 3, "one call per report for the run of days");
    let sent = &server.requests()[0];
    assert_eq!(sent.method, "POST");
    assert!(
        sent.query.is_none(),
        "nothing in the URL, the token least of all"
    );
    assert_eq!(sent.form_value("period").as_deref(), Some("day"));
    assert_eq!(
        sent.form_value("date").as_deref(),
        Some("2026-11-01,2026-11-02")
    );
    // Past days are closed: the same view costs Matomo nothing.
    let (_, b2) = get(&api, uri, Some(ADMIN)).await;
    assert_eq!(b2["fetched_days"], 0);
    assert_eq!(b2["summary"], b["summary"]);
    assert_eq!(server.requests().len(), calls);
    // A wider range fetches only the new days, one run per report.
    let (_, b3) = get(
        &api,
        "/api/v1/tenants/radio1/apps/engagement?from=2026-10-31&to=2026-11-03&granularity=month",
        Some(ADMIN),
    )
    .await;
    assert_eq!(b3["fetched_days"], 3);
    assert_eq!(b3["summary"]["nb_visits"], 6);
    assert_eq!(b3["timeseries"].as_array().unwrap().len(), 2);
    let last = server.requests().pop().unwrap();
    assert_eq!(
        last.form_value("date").as_deref(),
        Some("2026-10-31,2026-10-31")
    );

    // Live counters into the live store and /live.
    let live = crate::live::LiveStore::new(Default::default());
    assert!(
        super::poll::matomo_live_once(source.client(), &live)
            .await
            .is_empty()
    );
    let now = live.now("radio1");
    let e = now.engagement.unwrap();
    assert_eq!(
        (e.visits, e.actions, e.visitors, e.last_minutes),
        (3, 5, 2, 30)
    );
    let sent = server.requests().pop().unwrap();
    assert_eq!(sent.form_value("lastMinutes").as_deref(), Some("30"));
    assert_eq!(sent.form_value("idSite").as_deref(), Some("7"));
}
