//! The whole way: two agent processes ship the generator's multi-host logs over real QUIC to
//! a real collector process, and the HTTP API's numbers equal the ground truth for ranges that
//! cut sessions and cross midnight, by hour of day in a +05:30 zone, by session length and
//! as a time series. Then a batch delivered twice is merged once.

use std::path::PathBuf;

use earshot_loadgen::{Generated, Scenario, TruthSession, truth};
use earshot_tests::*;
use serde_json::Value;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

fn scenario() -> Scenario {
    Scenario {
        seed: 7,
        hosts: 2,
        hours: 5,
        stations: 6,
        listeners: 1_200,
        start_ms: 1_795_906_800_000 - 2 * HOUR, // 2026-11-28T21:00Z, over midnight
        gzip: true,
        ..Scenario::default()
    }
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        "{what}: API {a}, truth {b}"
    );
}

fn uniques_close(api: u64, truth: u64, what: &str) {
    let tolerance = (truth as f64 * 0.02).floor() as u64;
    assert!(
        api.abs_diff(truth) <= tolerance,
        "{what}: API {api} unique listeners, truth {truth}"
    );
}

pub(crate) fn check_summary(got: &Value, want: &truth::Metrics, what: &str) {
    check_summary_aqh(got, want, None, what)
}

/// [`check_summary`], with AQH compared exactly to `aqh_per_host` when given: the sum over
/// hosts of each host's own AQH, which is what the agents count (README, "Metrics").
pub(crate) fn check_summary_aqh(
    got: &Value,
    want: &truth::Metrics,
    aqh_per_host: Option<f64>,
    what: &str,
) {
    for (field, w) in [
        ("sessions", want.sessions),
        ("short_sessions", want.short_sessions),
        ("bot_sessions", want.bot_sessions),
        ("active_sessions", want.active_sessions),
        ("peak_concurrent", want.peak_concurrent),
    ] {
        assert_eq!(got[field].as_u64(), Some(w), "{what}: {field}\n{got}");
    }
    close(
        got["listening_seconds"].as_f64().unwrap(),
        want.listening_seconds,
        &format!("{what}: listening_seconds"),
    );
    close(
        got["average_listeners"].as_f64().unwrap(),
        want.average_listeners,
        &format!("{what}: average_listeners"),
    );
    // AQH is exact per host; a listener whose quarter-hour is split between two hosts, neither
    // seeing five minutes, is not counted (README, "Metrics"): allow 1 %.
    let aqh = got["aqh"].as_f64().unwrap();
    match aqh_per_host {
        Some(per_host) => close(aqh, per_host, &format!("{what}: aqh (per host)")),
        None => assert!(
            (aqh - want.aqh).abs() <= want.aqh * 0.01 + 1e-9,
            "{what}: aqh: API {aqh}, truth {}",
            want.aqh
        ),
    }
    uniques_close(
        got["unique_listeners"].as_u64().unwrap(),
        want.unique_listeners,
        what,
    );
    if want.peak_concurrent > 0 {
        assert_eq!(
            got["peak_at"].as_str(),
            Some(rfc3339(want.peak_at_ms).as_str()),
            "{what}: peak_at"
        );
    }
}

pub(crate) fn ship_all(d: &Deployment, generated: &Generated) {
    for (i, (_, files)) in generated.files.iter().enumerate() {
        let out = d.ingest(i as u32 + 1, files, &[]);
        assert!(
            out.status.success(),
            "agent {} failed: {}",
            i + 1,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

pub(crate) fn summary(
    d: &Deployment,
    tenant: &str,
    stream: Option<&str>,
    from: i64,
    to: i64,
) -> Value {
    let mut path = format!(
        "/api/v1/tenants/{tenant}/streaming/summary?from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    );
    if let Some(s) = stream {
        path.push_str(&format!("&stream={}", s.replace('/', "%2F")));
    }
    d.api(&path)
}

#[test]
fn two_agents_over_quic_give_the_ground_truth() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = earshot_loadgen::generate(&scenario(), &tmp.path().join("logs")).unwrap();
    let d = Deployment::start(&tmp.path().join("earshot"), 2);
    ship_all(&d, &generated);
    let sessions: &[TruthSession] = &generated.sessions;

    let (all_from, all_to) = truth::all_time(sessions);
    let w = generated.window_start_ms;
    let ranges = [
        ("all time", all_from, all_to),
        (
            "cutting sessions",
            w + 75 * MINUTE,
            w + 3 * HOUR + 45 * MINUTE,
        ),
        (
            "over midnight",
            w + 2 * HOUR + 30 * MINUTE,
            w + 3 * HOUR + 45 * MINUTE,
        ),
        (
            "one quarter",
            w + HOUR + 15 * MINUTE,
            w + HOUR + 30 * MINUTE,
        ),
    ];
    let tenants = ["radio001", "radio002", "radio004"];
    for tenant in tenants {
        for (name, from, to) in ranges {
            let want = truth::metrics(sessions, tenant, None, from, to);
            check_summary(
                &summary(&d, tenant, None, from, to),
                &want,
                &format!("{tenant} {name}"),
            );
        }
        // One stream of the tenant.
        let stream = sessions
            .iter()
            .find(|s| s.tenant == tenant)
            .map(|s| s.stream.clone())
            .unwrap();
        let (_, from, to) = ranges[1];
        let want = truth::metrics(sessions, tenant, Some(&stream), from, to);
        check_summary(
            &summary(&d, tenant, Some(&stream), from, to),
            &want,
            &format!("{tenant} {stream}"),
        );
    }

    // By hour of day in India (+05:30), over everything.
    let tenant = "radio001";
    let got = d.api(&format!(
        "/api/v1/tenants/{tenant}/streaming/by-hour?from={}&to={}&tz=%2B05:30",
        rfc3339(all_from),
        rfc3339(all_to)
    ));
    let want = truth::by_hour(sessions, tenant, all_from, all_to, 330);
    let rows = got["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 24);
    for (g, w) in rows.iter().zip(&want) {
        assert_eq!(g["hour"].as_u64(), Some(u64::from(w.hour)));
        let what = format!("by-hour {:02}", w.hour);
        close(
            g["listening_seconds"].as_f64().unwrap(),
            w.listening_seconds,
            &what,
        );
        assert_eq!(
            g["active_sessions"].as_u64(),
            Some(w.active_sessions),
            "{what} active"
        );
        assert_eq!(
            g["sessions_started"].as_u64(),
            Some(w.sessions_started),
            "{what} started"
        );
        assert_eq!(
            g["sessions_completed"].as_u64(),
            Some(w.sessions_completed),
            "{what} completed"
        );
        uniques_close(
            g["unique_listeners"].as_u64().unwrap(),
            w.unique_listeners,
            &what,
        );
    }

    // Session lengths.
    let got = d.api(&format!(
        "/api/v1/tenants/{tenant}/streaming/session-lengths?from={}&to={}",
        rfc3339(all_from),
        rfc3339(all_to)
    ));
    let want = truth::metrics(sessions, tenant, None, all_from, all_to);
    let counts: Vec<u64> = got["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sessions"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, want.length_buckets);
    assert_eq!(got["rows"][0]["min_seconds"], 60);
    assert_eq!(got["rows"][12]["max_seconds"], Value::Null);

    // Hourly time series over the window.
    let (from, to) = (w, w + 5 * HOUR);
    let got = d.api(&format!(
        "/api/v1/tenants/{tenant}/streaming/timeseries?from={}&to={}&granularity=hour",
        rfc3339(from),
        rfc3339(to)
    ));
    let rows = got["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for (i, row) in rows.iter().enumerate() {
        let (f, t) = (from + i as i64 * HOUR, from + (i as i64 + 1) * HOUR);
        check_summary(
            row,
            &truth::metrics(sessions, tenant, None, f, t),
            &format!("timeseries hour {i}"),
        );
    }

    // Breakdown by stream: every stream's sessions.
    let got = d.api(&format!(
        "/api/v1/tenants/{tenant}/streaming/by/stream?from={}&to={}",
        rfc3339(all_from),
        rfc3339(all_to)
    ));
    for row in got["rows"].as_array().unwrap() {
        let stream = row["value"].as_str().unwrap();
        let want = truth::metrics(sessions, tenant, Some(stream), all_from, all_to);
        assert_eq!(
            row["sessions"].as_u64(),
            Some(want.sessions),
            "by/stream {stream}"
        );
    }
}

#[test]
fn a_batch_delivered_twice_is_merged_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        hosts: 1,
        hours: 2,
        stations: 3,
        listeners: 300,
        ..scenario()
    };
    let generated = earshot_loadgen::generate(&scenario, &tmp.path().join("logs")).unwrap();
    let files: Vec<PathBuf> = generated.files[0].1.clone();
    let mut d = Deployment::start(&tmp.path().join("earshot"), 1);

    // The collector is down: the agent reads everything and keeps it spooled.
    d.collector
        .as_mut()
        .unwrap()
        .terminate(std::time::Duration::from_secs(10));
    let out = d.ingest(1, &files, &["--timeout-secs", "2"]);
    assert!(
        !out.status.success(),
        "shipping to a stopped collector cannot succeed"
    );
    // The agent's state as it was before the acknowledgement…
    let state = d.dir.join("agent-state");
    let before_ack = tmp.path().join("agent-state-before-ack");
    copy_dir(&state, &before_ack);
    d.start_collector();
    let out = d.ingest(1, &files, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tenant = "radio001";
    let (from, to) = truth::all_time(&generated.sessions);
    let first = summary(&d, tenant, None, from, to);
    check_summary(
        &first,
        &truth::metrics(&generated.sessions, tenant, None, from, to),
        "first delivery",
    );

    // …comes back, as after a crash between the merge and the ack: the same batches again.
    std::fs::remove_dir_all(&state).unwrap();
    copy_dir(&before_ack, &state);
    let out = d.ingest(1, &files, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again = summary(&d, tenant, None, from, to);
    assert_eq!(again, first, "a batch delivered twice must be merged once");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
