//! `earshot-agent ingest --dry-run` against the generator's ground truth: many stations, both
//! protocols, IPv4/IPv6, bots, short sessions, noise, rotation, gzip, an rsyslog envelope and
//! a non-UTC log clock, over midnight. The truth is computed by the generator's own code.

use std::collections::BTreeMap;
use std::process::Command;

use earshot_loadgen::{Envelope, Scenario, TruthSession, truth};
use earshot_tests::*;
use serde_json::Value;

fn dry_run(config: &std::path::Path, files: &[std::path::PathBuf]) -> Value {
    let out = run_ok(
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--dry-run", "--config"])
            .arg(config)
            .args(files),
    );
    serde_json::from_str(&out).unwrap()
}

fn check_host(report: &Value, sessions: &[TruthSession], host: &str) {
    let mine: Vec<TruthSession> = sessions
        .iter()
        .filter(|s| s.host == host)
        .cloned()
        .collect();
    let expected: BTreeMap<String, truth::Metrics> = truth::per_tenant_totals(&mine);
    let got = report["tenants"].as_object().unwrap();
    for (tenant, want) in &expected {
        let g = &got[tenant];
        assert_eq!(g["sessions"], want.sessions, "{host} {tenant} sessions");
        assert_eq!(
            g["short_sessions"], want.short_sessions,
            "{host} {tenant} short_sessions"
        );
        assert_eq!(
            g["bot_sessions"], want.bot_sessions,
            "{host} {tenant} bot_sessions"
        );
        let ls = g["listening_seconds"].as_f64().unwrap();
        assert!(
            (ls - want.listening_seconds).abs() < 0.01,
            "{host} {tenant} listening {ls} vs {}",
            want.listening_seconds
        );
        let u = g["unique_listeners"].as_u64().unwrap() as f64;
        let wu = want.unique_listeners as f64;
        assert!(
            (u - wu).abs() <= (wu * 0.02).max(0.0),
            "{host} {tenant} uniques {u} vs {wu}"
        );
        assert_eq!(
            g["peak_concurrent"], want.peak_concurrent,
            "{host} {tenant} peak"
        );
    }
    for tenant in got.keys() {
        if !expected.contains_key(tenant) {
            let g = &got[tenant];
            assert_eq!(
                g["sessions"], 0,
                "{host}: sessions for {tenant}, which had none"
            );
        }
    }
}

#[test]
fn dry_run_matches_the_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        seed: 42,
        hosts: 2,
        hours: 4,
        stations: 12,
        listeners: 1_500,
        start_ms: 1_795_906_800_000, // 2026-11-28T23:00:00Z: the window crosses midnight
        utc_offset_minutes: 60,
        envelope: Envelope::Rsyslog,
        gzip: true,
        ..Scenario::default()
    };
    let generated = earshot_loadgen::generate(&scenario, dir.path()).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "[inputs]\nlog_timezone = \"+01:00\"\n").unwrap();
    let mut lines = 0;
    let mut malformed = 0;
    for (host, files) in &generated.files {
        let report = dry_run(&config, files);
        lines += report["lines"].as_u64().unwrap();
        malformed += report["malformed_lines"].as_u64().unwrap();
        check_host(&report, &generated.sessions, host);
    }
    assert_eq!(lines, generated.lines);
    assert_eq!(malformed, generated.malformed_lines);
}
