//! App downloads end to end: the real `earshot-collector import-downloads` on the fixture
//! reports (App Store Connect gzip TSV, Google Play UTF-16 CSVs), twice, then `run`, and
//! `/apps/downloads` over HTTP. Totals are the hand counts written in
//! `collector/src/apps/tests.rs` (Apple 22 downloads, Google 19; re-importing adds nothing).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use earshot_tests::*;
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../collector/tests/data/sources")
        .join(name)
}

#[test]
fn imported_reports_are_served_by_the_running_collector() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::start(dir.path(), 1);
    d.collector
        .as_mut()
        .unwrap()
        .terminate(Duration::from_secs(10));
    let files = [
        "appstore-sales-2026-11-27.tsv.gz",
        "installs_com.example.radio_202611_country.csv",
        "installs_com.example.radio_202611_overview.csv",
    ];
    for round in 0..2 {
        let out = run_ok(
            Command::new(bin("earshot-collector"))
                .args(["import-downloads", "--config"])
                .arg(dir.path().join("collector.toml"))
                .args(["--tenant", "radio1"])
                .args(files.map(fixture)),
        );
        assert!(out.contains("app_store report, 4 rows"), "{out}");
        assert!(out.contains("google_play report, 6 rows"), "{out}");
        if round == 1 {
            assert!(out.contains("(4 replaced)"), "{out}");
        }
    }
    // A file that is no report fails the command, naming it.
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "hello\n").unwrap();
    let out = Command::new(bin("earshot-collector"))
        .args(["import-downloads", "--config"])
        .arg(dir.path().join("collector.toml"))
        .args(["--tenant", "radio1"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("notes.txt"));

    d.start_collector();
    let b = d.api(
        "/api/v1/tenants/radio1/apps/downloads?from=2026-11-01&to=2026-12-01&granularity=month",
    );
    assert_eq!(
        b["totals"],
        json!({"downloads": 41, "redownloads": 3, "updates": 85, "uninstalls": 5})
    );
    assert_eq!(b["rows"][0]["downloads"], 41);
    assert_eq!(b["apps"].as_array().unwrap().len(), 3);
    let c = d.api("/api/v1/tenants/radio1/apps/downloads/by/country?from=2026-11-01&to=2026-12-01");
    assert_eq!(
        c["rows"][0],
        json!({"country": "US", "downloads": 19, "redownloads": 2, "updates": 45, "uninstalls": 3})
    );
    let (status, _) = http_get(
        d.http,
        "/api/v1/tenants/radio1/apps/downloads?from=2026-11-01",
        Some(&d.token),
    )
    .unwrap();
    assert_eq!(status, 400);
}
