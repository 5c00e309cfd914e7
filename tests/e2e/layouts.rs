//! Every common streaming-server layout (Icecast and Shoutcast mounts, AzuraCast, Wowza,
//! nginx-rtmp, CMAF, a CDN packager; renditions switched mid-session, packed-audio segments,
//! signed URLs, HTTP/2 absolute URIs, non-audio 200s) through two agents and a collector over
//! real QUIC, with the default configuration: every tenant's summary, `by/stream` and
//! `by/rendition` equal the generator's ground truth, and the dry run counts the non-audio
//! requests by kind as the generator wrote them.

use std::collections::BTreeMap;
use std::process::Command;

use earshot_loadgen::{Layouts, Scenario, TruthSession, truth};
use earshot_tests::*;
use serde_json::Value;

use crate::pipeline::{check_summary_aqh, ship_all, summary};

const HOUR: i64 = 3_600_000;

fn scenario() -> Scenario {
    Scenario {
        seed: 11,
        hosts: 2,
        hours: 3,
        stations: 12,
        listeners: 900,
        start_ms: 1_795_906_800_000 - HOUR, // 2026-11-28T22:00Z
        layouts: Layouts::Mixed,
        ..Scenario::default()
    }
}

/// AQH as the agents count it: each host's own, summed (a listener who moves between hosts
/// within a quarter-hour counts on each host that saw five minutes of them, and on none
/// that did not).
fn aqh_per_host(
    sessions: &[TruthSession],
    tenant: &str,
    stream: Option<&str>,
    from: i64,
    to: i64,
) -> f64 {
    let hosts: std::collections::BTreeSet<&str> =
        sessions.iter().map(|s| s.host.as_str()).collect();
    hosts
        .into_iter()
        .map(|h| {
            let mine: Vec<TruthSession> =
                sessions.iter().filter(|s| s.host == h).cloned().collect();
            truth::metrics(&mine, tenant, stream, from, to).aqh
        })
        .sum()
}

fn breakdown(d: &Deployment, tenant: &str, dim: &str, from: i64, to: i64) -> BTreeMap<String, u64> {
    let got = d.api(&format!(
        "/api/v1/tenants/{tenant}/streaming/by/{dim}?from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    ));
    got["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("by/{dim}: {got}"))
        .iter()
        .filter(|r| r["sessions"].as_u64() != Some(0))
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_string(),
                r["sessions"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_layout_gives_the_ground_truth_through_the_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = earshot_loadgen::generate(&scenario(), &tmp.path().join("logs")).unwrap();
    let sessions: &[TruthSession] = &generated.sessions;
    let want_breakdowns = truth::breakdowns(sessions);

    // The dry run of each host: non-audio requests by kind, summed over the hosts.
    let config = tmp.path().join("dry.toml");
    std::fs::write(&config, "[inputs]\nlog_timezone = \"UTC\"\n").unwrap();
    let mut not_sessions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (_, files) in &generated.files {
        let out = run_ok(
            Command::new(bin("earshot-agent"))
                .args(["ingest", "--dry-run", "--config"])
                .arg(&config)
                .args(files),
        );
        let report: Value = serde_json::from_str(&out).unwrap();
        for (tenant, t) in report["tenants"].as_object().unwrap() {
            for (kind, n) in t["not_sessions"].as_object().unwrap() {
                *not_sessions
                    .entry(tenant.clone())
                    .or_default()
                    .entry(kind.clone())
                    .or_default() += n.as_u64().unwrap();
            }
        }
    }
    assert_eq!(not_sessions, generated.not_sessions, "not sessions by kind");

    let d = Deployment::start(&tmp.path().join("earshot"), 2);
    ship_all(&d, &generated);
    let (all_from, all_to) = truth::all_time(sessions);
    let w = generated.window_start_ms;
    let ranges = [
        ("all time", all_from, all_to),
        (
            "cutting sessions",
            w + HOUR / 4 * 3,
            w + 2 * HOUR + HOUR / 4,
        ),
    ];
    let tenants: Vec<&String> = want_breakdowns.keys().collect();
    assert!(tenants.len() >= 6, "every family has a tenant");
    for tenant in tenants {
        for (name, from, to) in ranges {
            let want = truth::metrics(sessions, tenant, None, from, to);
            check_summary_aqh(
                &summary(&d, tenant, None, from, to),
                &want,
                Some(aqh_per_host(sessions, tenant, None, from, to)),
                &format!("{tenant} {name}"),
            );
        }
        for dim in ["stream", "rendition"] {
            let got = breakdown(&d, tenant, dim, all_from, all_to);
            assert_eq!(
                &got,
                &want_breakdowns[tenant.as_str()][dim],
                "{tenant} by/{dim}"
            );
        }
        // Every stream's own summary over a range that cuts sessions.
        let (_, from, to) = ranges[1];
        for stream in want_breakdowns[tenant.as_str()]["stream"].keys() {
            let want = truth::metrics(sessions, tenant, Some(stream), from, to);
            check_summary_aqh(
                &summary(&d, tenant, Some(stream), from, to),
                &want,
                Some(aqh_per_host(sessions, tenant, Some(stream), from, to)),
                &format!("{tenant} {stream}"),
            );
        }
    }
}
