use super::*;
use crate::sources::test_server::{MockServer, Recorded, Reply, fixture};

const TOKEN: &str = "0123456789abcdef0123456789abcdef";

fn json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

#[test]
fn live_counters_accept_strings_numbers_and_shapes() {
    let c = parse_live_counters(json("matomo-live-counters.json")).unwrap();
    assert_eq!(
        c,
        LiveCounters {
            visits: 3,
            actions: 5,
            visitors: 2,
            visits_converted: 0
        }
    );
    let numbers = serde_json::json!([{"visits":3,"actions":5,"visitors":2,"visitsConverted":3}]);
    assert_eq!(parse_live_counters(numbers).unwrap().visits_converted, 3);
    assert_eq!(
        parse_live_counters(serde_json::json!([])).unwrap(),
        LiveCounters::default()
    );
    assert!(parse_live_counters(serde_json::json!([{}, {}])).is_err());
    assert!(parse_live_counters(serde_json::json!([{"visits": "many"}])).is_err());
}

#[test]
fn visits_summary_day_empty_and_by_date() {
    let day = parse_visits_summary(json("matomo-visits-summary-day.json")).unwrap();
    assert_eq!(
        day,
        VisitMetrics {
            nb_visits: 2,
            nb_actions: 8,
            nb_uniq_visitors: Some(1),
            nb_users: Some(0),
            sum_visit_length: 1622,
            bounce_count: 1,
            max_actions: 7,
            nb_visits_converted: 2,
        }
    );
    assert_eq!(
        parse_visits_summary(json("matomo-empty.json")).unwrap(),
        VisitMetrics::default()
    );
    let by = parse_visits_summary_by_date(json("matomo-visits-summary-by-day.json")).unwrap();
    assert_eq!(by.len(), 2);
    assert_eq!(by["2010-03-06"], day);
    assert_eq!(by["2010-03-07"], VisitMetrics::default());
    // Years and ranges have no unique visitors: absent, not 0.
    let year = parse_visits_summary(serde_json::json!({"nb_visits": 10})).unwrap();
    assert_eq!(year.nb_uniq_visitors, None);
}

#[test]
fn device_and_os_rows_against_hand_counts() {
    let types = parse_labeled_rows(json("matomo-devices-get-type.json")).unwrap();
    let labels: Vec<_> = types.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(labels, ["Desktop", "Smartphone", "Tablet", "Feature phone"]);
    // Desktop 2 + Smartphone "4" (a string) = 6 visits; the zero rows add nothing.
    assert_eq!(types.iter().map(|r| r.metrics.nb_visits).sum::<u64>(), 6);
    assert_eq!(types[1].metrics.nb_uniq_visitors, Some(3));
    assert_eq!(types[2].metrics, VisitMetrics::default());
    let os = parse_labeled_rows(json("matomo-os-families.json")).unwrap();
    // Android 3 + Windows 2 + iOS 1 = 6 visits, 540 + 1622 + 70 = 2232 s — the same visits.
    assert_eq!(os.iter().map(|r| r.metrics.nb_visits).sum::<u64>(), 6);
    let seconds =
        |rows: &[LabeledRow]| rows.iter().map(|r| r.metrics.sum_visit_length).sum::<u64>();
    assert_eq!(seconds(&os), 2232);
    assert_eq!(seconds(&types), 2232);
    assert!(
        parse_labeled_rows(json("matomo-empty.json"))
            .unwrap()
            .is_empty()
    );
    assert!(parse_labeled_rows(serde_json::json!({"label": "x"})).is_err());
}

#[test]
fn error_documents_are_errors() {
    assert_eq!(
        parse_response(&fixture("matomo-error-bad-method.json")).unwrap_err(),
        ResponseProblem::ApiError(
            "The method name is invalid. Expected 'module.methodName'".into()
        )
    );
    assert!(matches!(
        parse_response(b"<html>login</html>"),
        Err(ResponseProblem::Unexpected(_))
    ));
    // `result` on its own is not an error (some APIs return {"result":"success"}).
    assert!(parse_response(br#"{"result":"success","message":"ok"}"#).is_ok());
}

#[test]
fn endpoint_from_base_url() {
    let e = |b: &str| endpoint_url(b).map(|u| u.to_string());
    assert_eq!(
        e("https://m.example").as_deref(),
        Some("https://m.example/index.php")
    );
    assert_eq!(
        e("https://m.example/matomo/").as_deref(),
        Some("https://m.example/matomo/index.php")
    );
    assert_eq!(
        e("https://m.example/matomo/index.php").as_deref(),
        Some("https://m.example/matomo/index.php")
    );
    assert_eq!(e("ftp://m.example"), None);
    assert_eq!(e("not a url"), None);
}

/// Plays Matomo 5 with a "secure only" token: accepted only in a POST body, never in the URL.
fn matomo(req: &Recorded) -> Reply {
    let in_url = req.query.as_deref().unwrap_or("").contains("token_auth");
    if req.method != "POST" || in_url || req.form_value("token_auth").as_deref() != Some(TOKEN) {
        // What Matomo answers for a token it will not accept.
        return Reply::json(401, fixture("matomo-error-no-access.json"));
    }
    if req.form_value("module").as_deref() != Some("API")
        || req.form_value("format").as_deref() != Some("JSON")
    {
        return Reply::json(200, r#"{"result":"error","message":"bad request"}"#);
    }
    let site = req.form_value("idSite").unwrap_or_default();
    if site == "99" {
        return Reply::json(401, fixture("matomo-error-no-access.json"));
    }
    let date = req.form_value("date").unwrap_or_default();
    match req.form_value("method").unwrap_or_default().as_str() {
        "Live.getCounters" if req.form_value("lastMinutes").as_deref() == Some("30") => {
            Reply::json(200, fixture("matomo-live-counters.json"))
        }
        "VisitsSummary.get" if date.contains(',') => {
            Reply::json(200, fixture("matomo-visits-summary-by-day.json"))
        }
        "VisitsSummary.get" if date == "2010-03-06" => {
            Reply::json(200, fixture("matomo-visits-summary-day.json"))
        }
        "VisitsSummary.get" => Reply::json(200, fixture("matomo-empty.json")),
        "DevicesDetection.getType" => Reply::json(200, fixture("matomo-devices-get-type.json")),
        "DevicesDetection.getOsFamilies" => Reply::json(200, fixture("matomo-os-families.json")),
        "Html.page" => Reply::new(200, "text/html", "<html><body>Sign in</body></html>"),
        "Broken.gateway" => Reply::new(502, "text/html", "<h1>502 Bad Gateway</h1>"),
        _ => Reply::json(200, fixture("matomo-error-bad-method.json")),
    }
}

async fn client(server: &MockServer, token: &str) -> (MatomoClient, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("matomo.token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let config: MatomoConfig = toml::from_str(&format!(
        "base_url = \"{}/\"\ntoken_file = {:?}\n[sites]\nexample = 1\n",
        server.base, token_file
    ))
    .unwrap();
    (MatomoClient::new(config).unwrap(), dir)
}

#[tokio::test]
async fn calls_post_everything_in_the_body_and_parse() {
    let server = MockServer::start(matomo).await;
    let (m, _dir) = client(&server, TOKEN).await;
    let site = m.config().site_for("example").unwrap();

    let live = m.live_counters(site, 30).await.unwrap();
    assert_eq!((live.visits, live.actions, live.visitors), (3, 5, 2));
    let day = m
        .visits_summary(site, Period::Day, "2010-03-06")
        .await
        .unwrap();
    assert_eq!((day.nb_visits, day.sum_visit_length), (2, 1622));
    let empty = m
        .visits_summary(site, Period::Day, "2026-11-27")
        .await
        .unwrap();
    assert_eq!(empty, VisitMetrics::default());
    let by = m
        .visits_summary_by_day(
            site,
            "2010-03-06".parse().unwrap(),
            "2010-03-07".parse().unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(by["2010-03-06"].nb_actions, 8);
    let types = m
        .device_types(site, Period::Month, "2026-11-01")
        .await
        .unwrap();
    assert_eq!(types.iter().map(|r| r.metrics.nb_visits).sum::<u64>(), 6);
    let os = m.os_families(site, Period::Week, "today").await.unwrap();
    assert_eq!(os[0].label, "Android");

    let reqs = server.requests();
    assert_eq!(reqs.len(), 6);
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/index.php");
        assert_eq!(r.query, None, "nothing in the URL, the token least of all");
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.form_value("token_auth").as_deref(), Some(TOKEN));
        assert_eq!(r.form_value("idSite").as_deref(), Some("1"));
    }
    assert_eq!(
        reqs[0].form_value("method").as_deref(),
        Some("Live.getCounters")
    );
    assert_eq!(
        reqs[3].form_value("date").as_deref(),
        Some("2010-03-06,2010-03-07")
    );
    assert_eq!(reqs[4].form_value("period").as_deref(), Some("month"));
    assert_eq!(
        reqs[5].form_value("method").as_deref(),
        Some("DevicesDetection.getOsFamilies")
    );
}

#[tokio::test]
async fn errors_with_http_200_401_and_non_json() {
    let server = MockServer::start(matomo).await;
    let (m, _dir) = client(&server, TOKEN).await;

    let err = m.call("Nope", &[("idSite", "1")]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "Matomo Nope failed: The method name is invalid. Expected 'module.methodName'"
    );
    let err = m.live_counters(99, 30).await.unwrap_err();
    assert!(
        matches!(&err, MatomoError::Unauthorized { status: 401, message }
            if message.contains("'view' access for the website id = 1")),
        "{err}"
    );
    let err = m.call("Html.page", &[]).await.unwrap_err();
    assert!(
        matches!(&err, MatomoError::Unexpected { excerpt, .. } if excerpt.contains("Sign in")),
        "{err}"
    );
    let err = m.call("Broken.gateway", &[]).await.unwrap_err();
    assert!(
        matches!(err, MatomoError::Status { status: 502, .. }),
        "{err}"
    );
    // The right JSON in the wrong shape.
    let err = m
        .call_parsed(
            "Live.getCounters",
            &[("lastMinutes", "30")],
            parse_labeled_rows,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing field `label`"), "{err}");
    let err = m
        .call_parsed(
            "VisitsSummary.get",
            &[("date", "2010-03-06")],
            parse_labeled_rows,
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("expected an array of rows"),
        "{err}"
    );
    assert!(matches!(
        m.live_counters(1, 0).await,
        Err(MatomoError::BadLastMinutes(0))
    ));
    assert!(matches!(
        m.live_counters(1, 2881).await,
        Err(MatomoError::BadLastMinutes(2881))
    ));

    // A wrong token is an authorization error that says what to check.
    let (bad, _dir2) = client(&server, "ffffffffffffffffffffffffffffffff").await;
    let err = bad.live_counters(1, 30).await.unwrap_err();
    assert!(err.to_string().contains("check token_file"), "{err}");
    assert!(
        !format!("{bad:?}").contains("ffff"),
        "Debug never shows the token"
    );
}

#[test]
fn config_and_token_file_mistakes() {
    let err = toml::from_str::<MatomoConfig>(
        "base_url = \"https://m\"\ntoken_file = \"/t\"\ntoken = \"abc\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `token`"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.token");
    std::fs::write(&empty, "  \n").unwrap();
    let cfg = |p: &std::path::Path| MatomoConfig {
        base_url: "https://m.example".into(),
        token_file: p.to_owned(),
        sites: BTreeMap::new(),
    };
    assert!(matches!(
        MatomoClient::new(cfg(&empty)),
        Err(MatomoError::EmptyToken(_))
    ));
    let err = MatomoClient::new(cfg(&dir.path().join("missing"))).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
