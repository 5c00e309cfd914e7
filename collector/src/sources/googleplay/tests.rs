use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::sources::jwt::verify::{try_verify, verify};
use crate::sources::test_server::{MockServer, Recorded, Reply, fixture};

const COUNTRY: &str = "installs_com.example.radio_202611_country.csv";
const OVERVIEW: &str = "installs_com.example.radio_202611_overview.csv";
const BUCKET: &str = "pubsite_prod_rev_01234567890987654321";
const TOKEN: &str = "ya29.c.test-access-token-not-a-real-one";

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

fn total(rows: &[InstallRow], f: impl Fn(&InstallRow) -> Option<i64>) -> i64 {
    rows.iter().filter_map(f).sum()
}

#[test]
fn parses_the_utf16le_country_fixture_against_hand_counts() {
    let bytes = fixture(COUNTRY);
    assert_eq!(
        &bytes[..2],
        b"\xff\xfe",
        "the fixture is UTF-16LE with a BOM"
    );
    let rows = parse_installs_csv(&bytes).unwrap();
    assert_eq!(rows.len(), 6);
    let us = &rows[2];
    assert_eq!(us.date, date("2026-11-01"));
    assert_eq!(us.package, "com.example.radio");
    assert_eq!(us.country.as_deref(), Some("US"));
    assert_eq!(us.other_dimension, None);
    assert_eq!(
        (
            us.daily_device_installs,
            us.daily_user_installs,
            us.active_device_installs
        ),
        (Some(7), Some(6), Some(250))
    );
    assert_eq!(
        (us.install_events, us.update_events, us.uninstall_events),
        (Some(8), Some(25), Some(2))
    );
    // The blank `Daily User Installs` cell of GB on Nov 2 is "not reported", not 0.
    let gb2 = &rows[4];
    assert_eq!(gb2.country.as_deref(), Some("GB"));
    assert_eq!(gb2.daily_user_installs, None);
    assert_eq!(gb2.daily_device_installs, Some(1));

    // Hand counts: device installs 4+2+7+3+1+5 = 22; user installs 3+2+6+3+5 = 19 (one blank);
    // upgrades 10+5+20+9+4+18 = 66; device uninstalls 1+0+2+0+1+1 = 5.
    assert_eq!(total(&rows, |r| r.daily_device_installs), 22);
    assert_eq!(total(&rows, |r| r.daily_user_installs), 19);
    assert_eq!(total(&rows, |r| r.daily_device_upgrades), 66);
    assert_eq!(total(&rows, |r| r.daily_device_uninstalls), 5);
}

#[test]
fn overview_matches_the_country_breakdown() {
    // The overview fixture spells `Package name` in lower case.
    let overview = parse_installs_csv(&fixture(OVERVIEW)).unwrap();
    assert_eq!(overview.len(), 2);
    assert!(overview.iter().all(|r| r.country.is_none()));
    let country = parse_installs_csv(&fixture(COUNTRY)).unwrap();
    for f in [
        (|r: &InstallRow| r.daily_device_installs) as fn(&InstallRow) -> Option<i64>,
        |r| r.daily_user_installs,
        |r| r.daily_device_upgrades,
        |r| r.daily_device_uninstalls,
    ] {
        assert_eq!(total(&overview, f), total(&country, f));
    }
}

#[test]
fn summarizes_per_package_day_and_country() {
    let rows = parse_installs_csv(&fixture(COUNTRY)).unwrap();
    let days = summarize_installs(&rows);
    assert_eq!(days.len(), 6);
    let get = |d: &str, c: &str| {
        days.iter()
            .find(|x| x.date == date(d) && x.country.as_deref() == Some(c))
            .unwrap()
            .counts
    };
    let us = get("2026-11-01", "US");
    assert_eq!(us.downloads, Some(Units::whole(6)));
    assert_eq!(us.updates, Some(Units::whole(20)));
    assert_eq!(us.uninstalls, Some(Units::whole(2)));
    assert_eq!(us.redownloads, None, "Google does not report re-downloads");
    assert_eq!(get("2026-11-02", "GB").downloads, None);
    let all: i64 = days
        .iter()
        .filter_map(|d| d.counts.downloads)
        .map(|u| u.hundredths() / 100)
        .sum();
    assert_eq!(all, 19);
    assert!(days.iter().all(|d| d.store == Store::GooglePlay));
}

#[test]
fn utf8_other_dimensions_and_old_headers() {
    // UTF-8 with a BOM, a `Device` breakdown, an unknown column and a short row.
    let csv = "\u{feff}date,PACKAGE NAME,Device,Daily User Installs,Something New\n\
               2026-11-01,com.example.radio,Pixel 7,2,x\n\
               2026-11-01,com.example.radio,\"Galaxy S24, 5G\",3\n";
    let rows = parse_installs_csv(csv.as_bytes()).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[1].other_dimension,
        Some(("Device".to_owned(), "Galaxy S24, 5G".to_owned()))
    );
    assert_eq!(rows[1].daily_user_installs, Some(3));
    assert_eq!(rows[0].country, None);
    assert!(
        summarize_installs(&rows).is_empty(),
        "breakdown rows are parts, not totals"
    );
    // Pre-2019 header: the renamed columns are simply absent.
    let old = "Date,Package Name,Current Device Installs,Daily Device Installs\n\
               2019-05-01,com.example.radio,100,4\n";
    let rows = parse_installs_csv(old.as_bytes()).unwrap();
    assert_eq!(rows[0].daily_device_installs, Some(4));
    assert_eq!(rows[0].active_device_installs, None);
    assert_eq!(rows[0].daily_user_installs, None);
}

#[test]
fn malformed_csvs_are_named_errors() {
    let err = parse_installs_csv(b"Date,Country\n2026-11-01,US\n").unwrap_err();
    assert_eq!(err.to_string(), "installs CSV has no `Package Name` column");
    let err = parse_installs_csv(
        b"Date,Package Name,Daily Device Installs\n2026-11-01,p,1\n2026-11-02,p,n/a\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "installs CSV line 3: `Daily Device Installs` is not an integer: \"n/a\""
    );
    let err = parse_installs_csv(b"Date,Package Name\n11/01/2026,p\n").unwrap_err();
    assert!(
        matches!(err, InstallsParseError::BadDate { line: 2, .. }),
        "{err}"
    );
    assert!(matches!(
        parse_installs_csv(b"").unwrap_err(),
        InstallsParseError::Empty
    ));
}

#[test]
fn object_names_months_and_change_detection() {
    let prefix = installs_prefix("com.example.radio", 2026, 11);
    assert_eq!(prefix, "stats/installs/installs_com.example.radio_202611");
    assert_eq!(
        object_dimension(
            "stats/installs/installs_com.example.radio_202611_os_version.csv",
            &prefix
        ),
        Some("os_version")
    );
    assert_eq!(
        object_dimension(
            "stats/installs/installs_com.example.radio_2026110_x.csv",
            &prefix
        ),
        None
    );
    assert_eq!(
        installs_prefix("p", 2026, 1),
        "stats/installs/installs_p_202601"
    );

    assert_eq!(months_to_poll(date("2026-11-20"), 5), vec![(2026, 11)]);
    assert_eq!(
        months_to_poll(date("2026-01-03"), 5),
        vec![(2025, 12), (2026, 1)]
    );

    let listed: Vec<StorageObject> =
        serde_json::from_slice::<serde_json::Value>(&fixture("gcs-list-page1.json"))
            .map(|v| serde_json::from_value(v["items"].clone()).unwrap())
            .unwrap();
    assert_eq!(listed[1].size.as_deref(), Some("1138"));
    let seen = |name: &str| {
        name.ends_with("_country.csv")
            .then(|| "1764300000000001".to_owned())
    };
    let todo = objects_to_fetch(&listed, seen);
    assert_eq!(todo.len(), 1);
    assert!(todo[0].name.ends_with("_app_version.csv"));

    let cfg = |b: &str| GooglePlayConfig {
        service_account_file: "x".into(),
        bucket: b.into(),
        packages: BTreeMap::new(),
        storage_base_url: DEFAULT_STORAGE_BASE_URL.into(),
        token_url: None,
    };
    for b in [
        BUCKET,
        "gs://pubsite_prod_rev_01234567890987654321/stats/installs/",
    ] {
        assert_eq!(cfg(b).bucket_name(), BUCKET);
    }
}

fn sa_public_key() -> Vec<u8> {
    let sa: ServiceAccountKey =
        serde_json::from_slice(&fixture("test-service-account.json")).unwrap();
    Rs256Key::from_pem(sa.private_key.as_bytes(), "fixture")
        .unwrap()
        .public_key()
        .to_vec()
}

/// Plays Google: the token endpoint checks the JWT-bearer form and the assertion's RS256
/// signature; storage checks the bearer token. `storage_401s` storage requests are refused
/// first (an expired token).
async fn google(storage_401s: usize) -> (MockServer, GooglePlayClient) {
    let public_key = sa_public_key();
    let refusals = Arc::new(AtomicUsize::new(storage_401s));
    let server = MockServer::start(move |req: &Recorded| {
        if req.path == "/token" {
            let ok = req.method == "POST"
                && req.header("content-type") == Some("application/x-www-form-urlencoded")
                && req.form_value("grant_type").as_deref()
                    == Some("urn:ietf:params:oauth:grant-type:jwt-bearer");
            let assertion = req.form_value("assertion").unwrap_or_default();
            let signed = try_verify(
                &assertion,
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                &public_key,
            )
            .is_ok();
            return if ok && signed {
                Reply::json(200, fixture("google-oauth-token.json"))
            } else {
                Reply::json(400, fixture("google-oauth-invalid-grant.json"))
            };
        }
        if req.bearer() != Some(TOKEN) {
            return Reply::json(
                401,
                r#"{"error":{"code":401,"message":"Invalid Credentials"}}"#,
            );
        }
        if refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Reply::json(
                401,
                r#"{"error":{"code":401,"message":"Invalid Credentials"}}"#,
            );
        }
        let list = format!("/storage/v1/b/{BUCKET}/o");
        let country = format!("{list}/stats%2Finstalls%2F{COUNTRY}");
        if req.path == list {
            match req.query_value("pageToken") {
                None if req.query_value("prefix").as_deref()
                    == Some("stats/installs/installs_com.example.radio_202611") =>
                {
                    Reply::json(200, fixture("gcs-list-page1.json"))
                }
                None => Reply::json(200, fixture("gcs-list-empty.json")),
                Some(t) if t.starts_with("CkNz") => {
                    Reply::json(200, fixture("gcs-list-page2.json"))
                }
                Some(_) => Reply::json(400, "bad page token"),
            }
        } else if req.path == country && req.query_value("alt").as_deref() == Some("media") {
            Reply::new(200, "text/csv; charset=utf-16le", fixture(COUNTRY))
        } else {
            Reply::json(404, r#"{"error":{"code":404,"message":"No such object"}}"#)
        }
    })
    .await;
    let client = GooglePlayClient::new(GooglePlayConfig {
        service_account_file: format!(
            "{}/tests/data/sources/test-service-account.json",
            env!("CARGO_MANIFEST_DIR")
        )
        .into(),
        bucket: format!("gs://{BUCKET}/stats/installs/"),
        packages: BTreeMap::new(),
        storage_base_url: server.base.clone(),
        token_url: Some(format!("{}/token", server.base)),
    })
    .unwrap();
    (server, client)
}

#[tokio::test]
async fn lists_pages_and_downloads_with_one_oauth_exchange() {
    let (server, client) = google(0).await;
    let before = Timestamp::now().as_second();
    let listed = client
        .list_objects(&installs_prefix("com.example.radio", 2026, 11))
        .await
        .unwrap();
    let names: Vec<_> = listed
        .iter()
        .map(|o| o.name.rsplit('_').next().unwrap())
        .collect();
    assert_eq!(names, ["version.csv", "country.csv", "overview.csv"]);
    let country = listed.iter().find(|o| o.name.ends_with(COUNTRY)).unwrap();
    let bytes = client.download(&country.name).await.unwrap();
    let rows = parse_installs_csv(&bytes).unwrap();
    assert_eq!(total(&rows, |r| r.daily_user_installs), 19);
    assert!(
        client
            .list_objects("stats/installs/installs_com.other_202611")
            .await
            .unwrap()
            .is_empty()
    );

    let reqs = server.requests();
    let token_reqs: Vec<_> = reqs.iter().filter(|r| r.path == "/token").collect();
    assert_eq!(token_reqs.len(), 1, "the access token is cached");
    assert_eq!(reqs.len(), 5, "token, 2 list pages, download, empty list");
    // The assertion: header, claims and signature as Google's OAuth2ServiceAccount doc says.
    let v = verify(
        &token_reqs[0].form_value("assertion").unwrap(),
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        &sa_public_key(),
    );
    assert_eq!(
        v.header,
        serde_json::json!({"alg": "RS256", "typ": "JWT",
            "kid": "0123456789abcdef0123456789abcdef01234567"})
    );
    assert_eq!(
        v.claims["iss"],
        "earshot-reports@earshot-test.iam.gserviceaccount.com"
    );
    assert_eq!(v.claims["scope"], SCOPE);
    assert_eq!(v.claims["aud"], format!("{}/token", server.base));
    let iat = v.claims["iat"].as_i64().unwrap();
    assert!((before..=before + 5).contains(&iat));
    assert_eq!(v.claims["exp"].as_i64().unwrap() - iat, 3600);
    // The object name went out as one path segment.
    assert!(reqs.iter().any(|r| {
        r.path
            .ends_with("/o/stats%2Finstalls%2Finstalls_com.example.radio_202611_country.csv")
    }));
}

#[tokio::test]
async fn a_refused_token_is_renewed_once() {
    let (server, client) = google(1).await;
    let listed = client
        .list_objects("stats/installs/installs_com.example.radio_202611")
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    let tokens = server
        .requests()
        .iter()
        .filter(|r| r.path == "/token")
        .count();
    assert_eq!(tokens, 2);

    // Refused twice in a row: an error that says what to check.
    let (_server, client) = google(2).await;
    let err = client.list_objects("stats/").await.unwrap_err();
    assert!(
        matches!(err, GooglePlayError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let err = client
        .download("stats/installs/missing.csv")
        .await
        .unwrap_err();
    assert!(
        matches!(err, GooglePlayError::Storage { status: 404, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn an_oauth_error_is_reported_with_googles_reason() {
    let server =
        MockServer::start(|_| Reply::json(400, fixture("google-oauth-invalid-grant.json"))).await;
    let client = GooglePlayClient::new(GooglePlayConfig {
        service_account_file: format!(
            "{}/tests/data/sources/test-service-account.json",
            env!("CARGO_MANIFEST_DIR")
        )
        .into(),
        bucket: BUCKET.into(),
        packages: BTreeMap::new(),
        storage_base_url: server.base.clone(),
        token_url: Some(format!("{}/token", server.base)),
    })
    .unwrap();
    let err = client.access_token().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("(HTTP 400): invalid_grant: Invalid JWT Signature."),
        "{err}"
    );
}

#[test]
fn a_bad_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sa.json");
    std::fs::write(&path, r#"{"client_email": "x@y"}"#).unwrap();
    let err = GooglePlayClient::new(GooglePlayConfig {
        service_account_file: path.clone(),
        bucket: BUCKET.into(),
        packages: BTreeMap::new(),
        storage_base_url: DEFAULT_STORAGE_BASE_URL.into(),
        token_url: None,
    })
    .err()
    .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("sa.json") && msg.contains("private_key"),
        "{msg}"
    );
}
