use super::*;
use crate::sources::jwt::verify::{generate_p8, verify};
use crate::sources::test_server::{MockServer, Reply, fixture};

const FIXTURE: &str = "appstore-sales-2026-11-27.tsv.gz";

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

fn sum_kind(rows: &[SalesRow], sku: &str, kind: ProductKind) -> Units {
    rows.iter()
        .filter(|r| r.sku == sku && ProductKind::classify(&r.product_type) == kind)
        .fold(Units::ZERO, |a, r| a + r.units)
}

#[test]
fn classifies_product_types() {
    for c in ["1", "1F", "1T", "F1", " 1f "] {
        assert_eq!(ProductKind::classify(c), ProductKind::Download, "{c}");
    }
    for c in ["3", "3F"] {
        assert_eq!(ProductKind::classify(c), ProductKind::Redownload, "{c}");
    }
    for c in ["7", "7F", "7T", "F7"] {
        assert_eq!(ProductKind::classify(c), ProductKind::Update, "{c}");
    }
    for c in ["IA1", "IA1-M", "IAY", "FI1", "IA9"] {
        assert_eq!(ProductKind::classify(c), ProductKind::InApp, "{c}");
    }
    for c in ["1E", "1-B", "F1-B", "", "Z9"] {
        assert_eq!(ProductKind::classify(c), ProductKind::Other, "{c}");
    }
}

#[test]
fn parses_the_gzip_fixture_against_hand_counts() {
    let rows = parse_sales_tsv(&fixture(FIXTURE)).unwrap();
    assert_eq!(rows.len(), 13);
    let first = &rows[0];
    assert_eq!(first.date, date("2026-11-27"));
    assert_eq!(first.sku, "radio.example.ios");
    assert_eq!(first.apple_id.as_deref(), Some("1234567890"));
    assert_eq!(first.title.as_deref(), Some("Example Radio"));
    assert_eq!(first.country.as_deref(), Some("US"));
    assert_eq!(first.parent_identifier, None);

    let r = "radio.example.ios";
    // Hand counts of the rows written in make_fixtures.py:
    // downloads 1:5 + 1F:4 + F1:3 + refund 1:-1 + 1T:2.00 = 13
    assert_eq!(sum_kind(&rows, r, ProductKind::Download), Units::whole(13));
    // re-downloads 3:2 + 3F:1 = 3
    assert_eq!(sum_kind(&rows, r, ProductKind::Redownload), Units::whole(3));
    // updates 7:7 + 7F:6 + F7:2 = 15
    assert_eq!(sum_kind(&rows, r, ProductKind::Update), Units::whole(15));
    let jazz = "jazz.fm.app";
    assert_eq!(
        sum_kind(&rows, jazz, ProductKind::Download),
        Units::whole(9)
    );
    assert_eq!(sum_kind(&rows, jazz, ProductKind::Update), Units::whole(4));
    // The subscription row belongs to its own SKU, parented to the app.
    let iap: Vec<_> = rows
        .iter()
        .filter(|r| ProductKind::classify(&r.product_type) == ProductKind::InApp)
        .collect();
    assert_eq!(iap.len(), 1);
    assert_eq!(iap[0].parent_identifier.as_deref(), Some(r));
    assert_eq!(iap[0].units, Units::whole(10));
}

#[test]
fn summarizes_per_app_day_and_country() {
    let rows = parse_sales_tsv(&fixture(FIXTURE)).unwrap();
    let days = summarize_sales(&rows);
    let get = |sku: &str, country: &str| {
        days.iter()
            .find(|d| d.app == sku && d.country.as_deref() == Some(country))
            .map(|d| d.counts)
            .unwrap()
    };
    let c = |n| Some(Units::whole(n));
    // US: downloads 5 + 4 - 1 = 8, re-downloads 2, updates 7.
    let us = get("radio.example.ios", "US");
    assert_eq!(
        (us.downloads, us.redownloads, us.updates),
        (c(8), c(2), c(7))
    );
    assert_eq!(us.uninstalls, None, "Apple does not report uninstalls");
    // GB: downloads F1:3, updates 7F:6 + F7:2 = 8.
    let gb = get("radio.example.ios", "GB");
    assert_eq!(
        (gb.downloads, gb.redownloads, gb.updates),
        (c(3), c(0), c(8))
    );
    // DE: downloads 1T:2, re-downloads 3F:1.
    let de = get("radio.example.ios", "DE");
    assert_eq!(
        (de.downloads, de.redownloads, de.updates),
        (c(2), c(1), c(0))
    );
    let fr = get("jazz.fm.app", "FR");
    assert_eq!((fr.downloads, fr.updates), (c(9), c(4)));
    // 3 countries for the radio app + 1 for jazz; the in-app SKU is not an app.
    assert_eq!(days.len(), 4);
    assert!(days.iter().all(|d| d.store == Store::AppStore));
    assert_eq!(days[0].apple_id.as_deref(), Some("2345678901"));
}

#[test]
fn parses_plain_text_older_header_and_iso_dates() {
    // 27 columns (no `Order Type`), shuffled order, ISO date, CRLF, trailing blank line.
    let tsv = "Units\tSKU\tProduct Type Identifier\tBegin Date\tCountry Code\r\n\
               3\tapp\t1\t2026-11-27\tUS\r\n-0.5\tapp\t1\t2026-11-27\tUS\r\n\r\n";
    let rows = parse_sales_tsv(tsv.as_bytes()).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].units, Units::from_hundredths(-50));
    assert_eq!(rows[0].apple_id, None);
    assert_eq!(rows[0].date, date("2026-11-27"));
}

#[test]
fn malformed_reports_are_named_errors() {
    let err = parse_sales_tsv(b"").unwrap_err();
    assert!(matches!(err, SalesParseError::Empty), "{err}");
    let err = parse_sales_tsv(b"SKU\tUnits\tBegin Date\nx\t1\t11/27/2026\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "sales report has no `Product Type Identifier` column (is it a Summary Sales report?)"
    );
    let head = "SKU\tProduct Type Identifier\tUnits\tBegin Date\n";
    let err = parse_sales_tsv(format!("{head}a\t1\tlots\t11/27/2026\n").as_bytes()).unwrap_err();
    assert!(
        matches!(&err, SalesParseError::BadUnits { line: 2, value } if value == "lots"),
        "{err}"
    );
    let err = parse_sales_tsv(format!("{head}a\t1\t1\t27.11.2026\n").as_bytes()).unwrap_err();
    assert!(
        matches!(err, SalesParseError::BadDate { line: 2, .. }),
        "{err}"
    );
    let err = parse_sales_tsv(format!("{head}\t1\t1\t11/27/2026\n").as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            SalesParseError::MissingCell {
                line: 2,
                column: "SKU"
            }
        ),
        "{err}"
    );
    let mut gz = fixture(FIXTURE);
    gz.truncate(gz.len() / 2);
    assert!(matches!(
        parse_sales_tsv(&gz),
        Err(SalesParseError::Text(TextError::Gzip(_)))
    ));
}

#[test]
fn backfill_asks_for_missing_days_and_recent_404s() {
    let today = date("2026-11-28");
    // Nothing known: the last 5 days, oldest first, today excluded.
    let all = dates_to_fetch(today, 5, |_| DayState::NotFetched);
    assert_eq!(all.first(), Some(&date("2026-11-23")));
    assert_eq!(all.last(), Some(&date("2026-11-27")));
    assert_eq!(all.len(), 5);

    let state = |d: Date| match d.to_string().as_str() {
        "2026-11-27" => DayState::NoSales {
            checked_on: date("2026-11-28"),
        }, // asked today already: wait until tomorrow
        "2026-11-26" => DayState::NoSales {
            checked_on: date("2026-11-27"),
        }, // 1 day after: maybe unpublished, ask again
        "2026-11-25" => DayState::NoSales {
            checked_on: date("2026-11-27"),
        }, // 2 days after: believed
        "2026-11-24" => DayState::Fetched,
        _ => DayState::NotFetched,
    };
    assert_eq!(
        dates_to_fetch(today, 5, state),
        vec![date("2026-11-23"), date("2026-11-26")]
    );
    assert!(dates_to_fetch(today, 0, state).is_empty());
}

#[test]
fn tenant_lookup_by_apple_id_then_sku() {
    let cfg: AppStoreConfig = toml::from_str(
        r#"
        key_id = "2X9R4HXF34"
        issuer_id = "57246542-96fe-1a63-e053-0824d011072a"
        private_key_file = "/etc/earshot/AuthKey_2X9R4HXF34.p8"
        vendor_number = "85012345"
        [apps]
        "1234567890" = "example"
        "jazz.fm.app" = "jazz"
        "#,
    )
    .unwrap();
    assert_eq!(cfg.base_url, DEFAULT_BASE_URL);
    assert_eq!(cfg.backfill_days, 14);
    assert_eq!(
        cfg.tenant_for("whatever", Some("1234567890")),
        Some("example")
    );
    assert_eq!(
        cfg.tenant_for("jazz.fm.app", Some("2345678901")),
        Some("jazz")
    );
    assert_eq!(cfg.tenant_for("other", None), None);
    let err = toml::from_str::<AppStoreConfig>("key_id = \"x\"\nkeyid = \"y\"").unwrap_err();
    assert!(err.to_string().contains("keyid"), "{err}");
}

struct Harness {
    server: MockServer,
    client: AppStoreClient,
    public_key: Vec<u8>,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let server = MockServer::start(|req| {
        let day = req.query_value("filter[reportDate]").unwrap_or_default();
        match day.as_str() {
            "2026-11-27" => Reply::new(200, "application/a-gzip", fixture(FIXTURE)),
            "2026-11-26" => Reply::json(404, fixture("asc-error-404-no-sales.json")),
            "2026-11-25" => Reply::json(401, fixture("asc-error-401.json")),
            _ => Reply::json(400, fixture("asc-error-400-version.json")),
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("AuthKey_2X9R4HXF34.p8");
    std::fs::write(&key_path, generate_p8()).unwrap();
    let client = AppStoreClient::new(AppStoreConfig {
        key_id: "2X9R4HXF34".into(),
        issuer_id: "57246542-96fe-1a63-e053-0824d011072a".into(),
        private_key_file: key_path,
        vendor_number: "85012345".into(),
        base_url: server.base.clone(),
        backfill_days: 14,
        apps: BTreeMap::new(),
    })
    .unwrap();
    let public_key = client.key.public_key().to_vec();
    Harness {
        server,
        client,
        public_key,
        _dir: dir,
    }
}

#[tokio::test]
async fn fetch_daily_sends_a_valid_es256_jwt_and_the_documented_query() {
    let h = harness().await;
    let before = Timestamp::now().as_second();
    let rows = h
        .client
        .fetch_daily(date("2026-11-27"))
        .await
        .unwrap()
        .unwrap();
    let after = Timestamp::now().as_second();
    assert_eq!(rows.len(), 13);
    assert_eq!(
        sum_kind(&rows, "radio.example.ios", ProductKind::Download),
        Units::whole(13)
    );

    let reqs = h.server.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/v1/salesReports");
    assert_eq!(req.header("accept"), Some("application/a-gzip"));
    let mut query = req.query_pairs();
    query.sort();
    let expect: Vec<(String, String)> = [
        ("filter[frequency]", "DAILY"),
        ("filter[reportDate]", "2026-11-27"),
        ("filter[reportSubType]", "SUMMARY"),
        ("filter[reportType]", "SALES"),
        ("filter[vendorNumber]", "85012345"),
        ("filter[version]", "1_0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(query, expect);

    let token = req.bearer().expect("a bearer token");
    let v = verify(
        token,
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        &h.public_key,
    );
    assert_eq!(
        v.header,
        serde_json::json!({"alg": "ES256", "kid": "2X9R4HXF34", "typ": "JWT"})
    );
    assert_eq!(v.claims["iss"], "57246542-96fe-1a63-e053-0824d011072a");
    assert_eq!(v.claims["aud"], "appstoreconnect-v1");
    let iat = v.claims["iat"].as_i64().unwrap();
    let exp = v.claims["exp"].as_i64().unwrap();
    assert!((before..=after).contains(&iat), "iat {iat} is now");
    assert!(
        exp > iat && exp - iat <= 20 * 60,
        "expiry ≤ 20 minutes: {}",
        exp - iat
    );
}

#[tokio::test]
async fn fetch_daily_maps_404_to_none_and_errors_to_messages() {
    let h = harness().await;
    assert_eq!(
        h.client.fetch_daily(date("2026-11-26")).await.unwrap(),
        None
    );

    let err = h.client.fetch_daily(date("2026-11-25")).await.unwrap_err();
    assert!(
        matches!(&err, AppStoreError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("NOT_AUTHORIZED"), "{err}");

    let err = h.client.fetch_daily(date("2026-11-24")).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "App Store Connect answered HTTP 400: PARAMETER_ERROR.INVALID: The version parameter you \
         have specified is invalid. The latest version for this report is 1_0."
    );
}

#[tokio::test]
async fn a_missing_or_wrong_key_file_is_named() {
    let cfg = |path: &str| AppStoreConfig {
        key_id: "K".into(),
        issuer_id: "I".into(),
        private_key_file: path.into(),
        vendor_number: "1".into(),
        base_url: DEFAULT_BASE_URL.into(),
        backfill_days: 1,
        apps: BTreeMap::new(),
    };
    let err = AppStoreClient::new(cfg("/nonexistent/AuthKey.p8"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("/nonexistent/AuthKey.p8"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("AuthKey.p8");
    std::fs::write(
        &p,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = AppStoreClient::new(cfg(p.to_str().unwrap())).err().unwrap();
    assert!(
        matches!(err, AppStoreError::Key(KeyError::NoPem { .. })),
        "{err}"
    );
}
