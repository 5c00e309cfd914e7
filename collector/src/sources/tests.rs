use super::test_server::fixture;
use super::*;

#[test]
fn detects_each_store_from_content() {
    let apple_gz = fixture("appstore-sales-2026-11-27.tsv.gz");
    let apple_plain = text::maybe_gunzip(&apple_gz).unwrap().into_owned();
    for bytes in [&apple_gz, &apple_plain] {
        let report = detect_and_parse(bytes).unwrap();
        assert_eq!(report.store(), Store::AppStore);
        let ImportedReport::AppStoreSales(rows) = &report else {
            unreachable!()
        };
        assert_eq!(rows.len(), 13);
    }

    let google_utf16 = fixture("installs_com.example.radio_202611_country.csv");
    let google_utf8 = text::decode_text(&google_utf16).unwrap().into_bytes();
    for bytes in [&google_utf16, &google_utf8] {
        let report = detect_and_parse(bytes).unwrap();
        assert_eq!(report.store(), Store::GooglePlay);
        let ImportedReport::GooglePlayInstalls(rows) = &report else {
            unreachable!()
        };
        assert_eq!(rows.len(), 6);
    }
}

#[test]
fn imported_totals_match_hand_counts() {
    let sum = |days: &[DailyDownloads], f: fn(&DownloadCounts) -> Option<Units>| {
        days.iter()
            .filter_map(|d| f(&d.counts))
            .fold(Units::ZERO, |a, b| a + b)
    };
    let apple = detect_and_parse(&fixture("appstore-sales-2026-11-27.tsv.gz"))
        .unwrap()
        .daily_downloads();
    // Radio 13 (5 + 4 + 3 - 1 + 2) + Jazz 9.
    assert_eq!(sum(&apple, |c| c.downloads), Units::whole(22));
    // Radio 15 (7 + 6 + 2) + Jazz 4.
    assert_eq!(sum(&apple, |c| c.updates), Units::whole(19));
    assert_eq!(sum(&apple, |c| c.redownloads), Units::whole(3));

    let google = detect_and_parse(&fixture("installs_com.example.radio_202611_overview.csv"))
        .unwrap()
        .daily_downloads();
    assert_eq!(google.len(), 2);
    // Overview: user installs 11 + 8, upgrades 35 + 31, device uninstalls 3 + 2.
    assert_eq!(sum(&google, |c| c.downloads), Units::whole(19));
    assert_eq!(sum(&google, |c| c.updates), Units::whole(66));
    assert_eq!(sum(&google, |c| c.uninstalls), Units::whole(5));
    assert!(google.iter().all(|d| d.country.is_none()));
    let json = serde_json::to_value(&google[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"store": "google_play", "app": "com.example.radio", "apple_id": null,
            "date": "2026-11-01", "country": null,
            "counts": {"downloads": 11, "redownloads": null, "updates": 35, "uninstalls": 3}})
    );
}

#[test]
fn unrecognized_content_is_refused_with_a_hint() {
    for bytes in [
        &b"hello world\n"[..],
        b"",
        b"a\tb\tc\n1\t2\t3\n",
        b"Date,Country\n2026-11-01,US\n",
    ] {
        let err = detect_and_parse(bytes).unwrap_err();
        assert!(matches!(err, ImportError::Unrecognized), "{err}");
        assert!(err.to_string().contains("Product Type Identifier"));
    }
    assert!(matches!(
        detect_and_parse(b"\x1f\x8b\x08garbage"),
        Err(ImportError::Text(_))
    ));
    assert!(matches!(
        detect_and_parse(b"\xff\xfeD"),
        Err(ImportError::Text(_))
    ));
}
