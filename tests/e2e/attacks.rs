//! Hostile traffic against the bounds: each of the generator's attack files (a new mount per
//! line, random `source=`, random Referers, random User-Agents, random client addresses) run
//! through `ingest --dry-run` with small `[limits]`: totals stay exact, at most `max_streams`
//! streams and `max_values` values per dimension are kept besides `(other)`, and the folds are
//! counted as they were made.

use std::process::Command;

use earshot_loadgen::attack::{AttackKind, write_attack};
use earshot_tests::*;
use serde_json::Value;

const LINES: u64 = 20_000;
const MAX_STREAMS: u64 = 10;
const MAX_VALUES: u64 = 25;

fn attack(kind: AttackKind) -> (Value, earshot_loadgen::attack::AttackTruth) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("attack.log");
    let truth = write_attack(
        kind,
        LINES,
        5,
        earshot_loadgen::attack::default_start_ms(),
        &log,
    )
    .unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[inputs]\nlog_timezone = \"UTC\"\n[limits]\nmax_streams = {MAX_STREAMS}\nmax_values = {MAX_VALUES}\n"
        ),
    )
    .unwrap();
    let out = run_ok(
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--dry-run", "--config"])
            .arg(&config)
            .arg(&log),
    );
    (serde_json::from_str(&out).unwrap(), truth)
}

/// Checks what holds for every attack and returns the tenant's report.
fn bounded(report: &Value, truth: &earshot_loadgen::attack::AttackTruth) -> Value {
    assert_eq!(report["lines"].as_u64(), Some(truth.lines));
    let t = report["tenants"][truth.tenant].clone();
    assert_eq!(
        t["sessions"].as_u64(),
        Some(truth.qualifying_sessions),
        "{t}"
    );
    let ls = t["listening_seconds"].as_f64().unwrap();
    assert!(
        (ls - truth.listening_seconds).abs() < 0.01,
        "{ls} vs {}",
        truth.listening_seconds
    );
    assert!(t["streams"].as_u64().unwrap() <= MAX_STREAMS + 1);
    for (dim, values) in t["breakdowns"].as_object().unwrap() {
        let values = values.as_object().unwrap();
        let kept = values.keys().filter(|v| *v != "(other)").count() as u64;
        let bound = if dim == "stream" {
            MAX_STREAMS
        } else {
            MAX_VALUES
        };
        assert!(kept <= bound, "{dim}: {kept} values kept");
        let sum: u64 = values.values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(
            sum, truth.qualifying_sessions,
            "{dim}: every session counted once"
        );
    }
    // A few MB at most on the wire, whatever the attack.
    assert!(report["wire_bytes"].as_u64().unwrap() < 4 << 20);
    t
}

fn folded(t: &Value, what: &str) -> u64 {
    t["folded"][what].as_u64().unwrap_or(0)
}

fn other(t: &Value, dim: &str) -> u64 {
    t["breakdowns"][dim]["(other)"].as_u64().unwrap_or(0)
}

#[test]
fn random_mounts_fold_into_other_streams() {
    let (report, truth) = attack(AttackKind::RandomMounts);
    assert_eq!(truth.distinct_streams, LINES);
    let t = bounded(&report, &truth);
    // Every mount has one session: the hour keeps MAX_STREAMS of them, the rest are folded.
    assert_eq!(t["streams"].as_u64(), Some(MAX_STREAMS + 1));
    assert_eq!(other(&t, "stream"), truth.sessions - MAX_STREAMS);
    assert_eq!(folded(&t, "stream"), truth.sessions - MAX_STREAMS);
}

#[test]
fn random_sources_fold_into_other_values() {
    let (report, truth) = attack(AttackKind::RandomSource);
    let t = bounded(&report, &truth);
    assert_eq!(other(&t, "source"), truth.sessions - MAX_VALUES);
    assert_eq!(folded(&t, "source"), truth.sessions - MAX_VALUES);
    assert_eq!(t["streams"].as_u64(), Some(1));
}

#[test]
fn random_referers_fold_into_other_values() {
    let (report, truth) = attack(AttackKind::RandomReferer);
    let t = bounded(&report, &truth);
    // The referrer host is also the source where no source= is given.
    for dim in ["referrer", "source"] {
        assert_eq!(other(&t, dim), truth.sessions - MAX_VALUES, "{dim}");
        assert_eq!(folded(&t, dim), truth.sessions - MAX_VALUES, "{dim}");
    }
}

#[test]
fn random_user_agents_stay_bounded() {
    let (report, truth) = attack(AttackKind::RandomUa);
    let t = bounded(&report, &truth);
    let u = t["unique_listeners"].as_u64().unwrap() as f64;
    let want = truth.distinct_listeners as f64;
    assert!((u - want).abs() <= want * 0.02, "uniques {u} vs {want}");
}

#[test]
fn random_addresses_are_counted_and_fold_nothing() {
    let (report, truth) = attack(AttackKind::RandomIp);
    let t = bounded(&report, &truth);
    let u = t["unique_listeners"].as_u64().unwrap() as f64;
    let want = truth.distinct_listeners as f64;
    assert!((u - want).abs() <= want * 0.02, "uniques {u} vs {want}");
    assert_eq!(t["folded"].as_object().map_or(0, |f| f.len()), 0);
}
