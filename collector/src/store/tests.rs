use std::collections::BTreeMap;

use earshot_common::rollup::{DimCounts, Dimension, HourKey, HourRollup, Protocol};
use earshot_common::time::{DAY_MS, HOUR_MS, MINUTE_MS, QUARTER_MS, days_from_civil};
use earshot_common::wire::{AgentCounters, Batch};
use jiff::tz::TimeZone;

use super::*;
use crate::query::{self, Granularity, TimeRange};

fn at(y: i64, m: u32, d: u32, hh: i64, mm: i64) -> i64 {
    days_from_civil(y, m, d) * DAY_MS + hh * HOUR_MS + mm * MINUTE_MS
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("collector.db")).unwrap();
    (dir, store)
}

/// An hour of stream `stream` with, in every quarter, `sessions` starts, 1 carried in,
/// 10 minutes of listening, 1 AQH listener, listeners `ids` and `minute` listeners per minute.
fn hour(
    tenant: &str,
    stream: &str,
    hour_ms: i64,
    sessions: u64,
    ids: &[u64],
    minute: u32,
) -> (HourKey, HourRollup) {
    let mut r = HourRollup::new(if stream.ends_with(".m3u8") {
        Protocol::Hls
    } else {
        Protocol::Icecast
    });
    for q in &mut r.quarters {
        q.sessions = sessions;
        q.short_sessions = 1;
        q.completed = sessions;
        q.carried_in = 1;
        q.listening_ms = 600_000;
        q.aqh_listeners = 1;
        q.aqh_tenant_listeners = 1;
        q.lengths[1] = sessions;
        for &id in ids {
            q.uniques.insert(id);
        }
        q.dims.insert(
            (Dimension::Client, "VLC".into()),
            DimCounts {
                sessions,
                listening_ms: 600_000,
            },
        );
    }
    r.minutes = vec![minute; 60];
    for &id in ids {
        r.dim_uniques
            .entry((Dimension::Client, "VLC".into()))
            .or_default()
            .insert(id);
    }
    (
        HourKey {
            tenant: tenant.into(),
            stream: stream.into(),
            hour_ms,
        },
        r,
    )
}

fn batch(agent: &str, seq: u64, rollups: Vec<(HourKey, HourRollup)>) -> Batch {
    Batch {
        agent_id: agent.into(),
        seq,
        rollups,
        counters: AgentCounters {
            lines: 10,
            malformed: BTreeMap::from([("bad_date".into(), 2)]),
            ..Default::default()
        },
    }
}

fn sel(tenant: &str, stream: Option<&str>, from: i64, to: i64) -> Selection {
    Selection {
        tenant: tenant.into(),
        stream: stream.map(str::to_owned),
        range: TimeRange::new(from, to, 400).unwrap(),
    }
}

/// Three days of one stream, every hour: 2 starts per quarter, 3 listeners per minute.
fn three_days(agent: &str, seq: u64) -> Batch {
    let start = at(2026, 3, 1, 0, 0);
    let rollups = (0..72)
        .map(|h| hour("radio1", "/live.mp3", start + h * HOUR_MS, 2, &[1, 2, 3], 3))
        .collect();
    batch(agent, seq, rollups)
}

#[test]
fn a_batch_merges_once() {
    let (_dir, store) = open();
    let b = three_days("a1", 7);
    assert_eq!(store.merge_batch(&b).unwrap(), MergeOutcome::Merged);
    let s = sel("radio1", None, at(2026, 3, 1, 0, 0), at(2026, 3, 4, 0, 0));
    let before = store.summary(&s).unwrap();
    assert_eq!(store.merge_batch(&b).unwrap(), MergeOutcome::Duplicate);
    assert_eq!(store.summary(&s).unwrap(), before);
    assert_eq!(before.sessions, 72 * 4 * 2);
    let totals = store.agent_counters("a1").unwrap().unwrap();
    assert_eq!(
        (totals.batches, totals.lines, totals.malformed["bad_date"]),
        (1, 10, 2)
    );
    assert_eq!(store.tenants().unwrap(), vec!["radio1".to_string()]);
    // The same seq from another agent is another batch.
    assert_eq!(
        store.merge_batch(&three_days("a2", 7)).unwrap(),
        MergeOutcome::Merged
    );
}

#[test]
fn two_agents_add_up_exactly() {
    let (_dir, store) = open();
    let h = at(2026, 3, 2, 10, 0);
    store
        .merge_batch(&batch(
            "a1",
            1,
            vec![hour("radio1", "/live.mp3", h, 2, &[1, 2], 3)],
        ))
        .unwrap();
    store
        .merge_batch(&batch(
            "a2",
            1,
            vec![hour("radio1", "/live.mp3", h, 5, &[2, 9], 4)],
        ))
        .unwrap();
    // One range inside the hour (quarters and minutes) and one over the whole day (day rows).
    for (from, to) in [
        (h, h + HOUR_MS),
        (at(2026, 3, 2, 0, 0), at(2026, 3, 3, 0, 0)),
    ] {
        let m = store.summary(&sel("radio1", None, from, to)).unwrap();
        assert_eq!(m.sessions, 4 * 7);
        assert_eq!(m.short_sessions, 4 * 2);
        assert_eq!(m.listening_seconds, 8.0 * 600.0);
        assert_eq!(m.unique_listeners, 3);
        assert_eq!(m.peak_concurrent, 7);
        assert_eq!(m.peak_at.as_deref(), Some("2026-03-02T10:00:00Z"));
    }
    let totals = store.agent_counters("a2").unwrap().unwrap();
    assert_eq!(totals.lines, 10);
}

#[test]
fn a_range_starting_mid_day_reads_days_and_edges_alike() {
    let (_dir, store) = open();
    store.merge_batch(&three_days("a1", 1)).unwrap();
    // 2026-03-01 06:10 → 2026-03-03 12:20: aligned to 06:00 → 12:30, i.e. 18 h + 24 h + 12.5 h.
    let s = sel(
        "radio1",
        None,
        at(2026, 3, 1, 6, 10),
        at(2026, 3, 3, 12, 20),
    );
    assert_eq!(s.range.from_ms, at(2026, 3, 1, 6, 0));
    assert_eq!(s.range.to_ms, at(2026, 3, 3, 12, 30));
    let quarters = (18 + 24 + 12) * 4 + 2;
    let m = store.summary(&s).unwrap();
    assert_eq!(m.sessions, 2 * quarters);
    assert_eq!(m.short_sessions, quarters);
    assert_eq!(
        m.active_sessions,
        2 * quarters + 1,
        "starts plus carried_in of 06:00"
    );
    assert_eq!(m.listening_seconds, 600.0 * quarters as f64);
    assert_eq!(m.aqh, 1.0);
    assert_eq!(m.unique_listeners, 3);
    assert_eq!(m.peak_concurrent, 3);
    assert_eq!(m.peak_at.as_deref(), Some("2026-03-01T06:00:00Z"));
    assert_eq!(m.average_listeners, 600.0 / 900.0);
    assert!(m.unique_listeners_exact_across_epochs);

    let lengths = store.session_lengths(&s).unwrap();
    assert_eq!(lengths.rows[1].sessions, 2 * quarters);
    assert_eq!(lengths.short_sessions, quarters);

    // Day buckets: 18 h, 24 h, 12.5 h.
    let buckets = query::buckets(s.range, Granularity::Day, &TimeZone::UTC).unwrap();
    let ts = store.timeseries(&s, &buckets, Granularity::Day).unwrap();
    let sessions: Vec<u64> = ts.iter().map(|m| m.sessions).collect();
    assert_eq!(sessions, vec![2 * 18 * 4, 2 * 24 * 4, 2 * 50]);
    assert!(ts.iter().all(|m| m.active_sessions == m.sessions + 1));
}

#[test]
fn concurrency_is_summed_over_streams_before_the_maximum() {
    let (_dir, store) = open();
    let h = at(2026, 3, 2, 10, 0);
    let (ka, mut a) = hour("radio1", "/a.mp3", h, 1, &[1], 0);
    let (kb, mut b) = hour("radio1", "/b.m3u8", h, 1, &[2], 0);
    a.minutes[5] = 10;
    b.minutes[5] = 3;
    b.minutes[7] = 12;
    store
        .merge_batch(&batch("a1", 1, vec![(ka, a), (kb, b)]))
        .unwrap();
    for (from, to) in [
        (h, h + HOUR_MS),
        (at(2026, 3, 2, 0, 0), at(2026, 3, 3, 0, 0)),
    ] {
        let all = store.summary(&sel("radio1", None, from, to)).unwrap();
        assert_eq!(
            (all.peak_concurrent, all.peak_at.as_deref()),
            (13, Some("2026-03-02T10:05:00Z"))
        );
        let only_b = store
            .summary(&sel("radio1", Some("/b.m3u8"), from, to))
            .unwrap();
        assert_eq!(
            (only_b.peak_concurrent, only_b.peak_at.as_deref()),
            (12, Some("2026-03-02T10:07:00Z"))
        );
        assert_eq!(only_b.sessions, 4);
        let by_stream = store
            .breakdown(&sel("radio1", None, from, to), Breakdown::Stream)
            .unwrap();
        let v = serde_json::to_value(&by_stream).unwrap();
        assert_eq!(v[0]["value"], "/a.mp3");
        assert_eq!(v[0]["peak_concurrent"], 10);
        assert_eq!(v[1]["peak_concurrent"], 12);
        assert_eq!(v[0]["share"], 0.5);
        let by_proto = store
            .breakdown(&sel("radio1", None, from, to), Breakdown::Protocol)
            .unwrap();
        let names: Vec<&str> = by_proto.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(names, vec!["hls", "icecast"]);
    }
    let minutes = query::buckets(
        TimeRange::new(h, h + 10 * MINUTE_MS, 400).unwrap(),
        Granularity::Minute,
        &TimeZone::UTC,
    )
    .unwrap();
    let s = sel("radio1", None, h, h + 10 * MINUTE_MS);
    let ts = store.timeseries(&s, &minutes, Granularity::Minute).unwrap();
    assert_eq!(ts.len(), 15, "aligned up to 10:15");
    assert_eq!(ts[5].peak_concurrent, 13);
    assert_eq!(ts[7].peak_concurrent, 12);
    assert_eq!(ts[6].peak_concurrent, 0);
}

#[test]
fn by_hour_at_plus_five_thirty() {
    let (_dir, store) = open();
    // 00:00Z–01:00Z is local 05:30–06:30: quarters 05:30, 05:45 in hour 5; 06:00, 06:15 in 6.
    let h = at(2026, 3, 2, 0, 0);
    let (k, mut r) = hour("radio1", "/live.mp3", h, 0, &[], 0);
    for (i, q) in r.quarters.iter_mut().enumerate() {
        q.sessions = i as u64 + 1;
        q.carried_in = 10 * (i as u64 + 1);
        q.uniques.insert(i as u64);
    }
    store.merge_batch(&batch("a1", 1, vec![(k, r)])).unwrap();
    let tz = query::parse_time_zone("+05:30").unwrap();
    let rows = store
        .by_hour(&sel("radio1", None, h, h + HOUR_MS), &tz)
        .unwrap();
    assert_eq!(rows[5].sessions_started, 1 + 2);
    assert_eq!(rows[5].active_sessions, 1 + 10 + 2);
    assert_eq!(rows[6].sessions_started, 3 + 4);
    assert_eq!(rows[6].active_sessions, 3 + 30 + 4);
    assert_eq!(rows[6].unique_listeners, 2);
    assert_eq!(rows[6].listening_seconds, 1200.0);
    assert_eq!(rows.iter().map(|r| r.sessions_completed).sum::<u64>(), 0);
}

#[test]
fn dimension_breakdowns_and_epochs() {
    let (_dir, store) = open();
    // The last hour of January and the first of February.
    let jan = at(2026, 1, 31, 23, 0);
    store
        .merge_batch(&batch(
            "a1",
            1,
            vec![
                hour("radio1", "/live.mp3", jan, 2, &[1, 2], 1),
                hour("radio1", "/live.mp3", jan + HOUR_MS, 3, &[2, 3], 1),
            ],
        ))
        .unwrap();
    let s = sel("radio1", None, jan, jan + 2 * HOUR_MS);
    let rows = store
        .breakdown(&s, Breakdown::Dimension(Dimension::Client))
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].value.as_str(),
            rows[0].sessions,
            rows[0].unique_listeners
        ),
        ("VLC", 20, 3)
    );
    assert_eq!(rows[0].share, 1.0);
    assert!(
        store
            .breakdown(&s, Breakdown::Dimension(Dimension::Country))
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .summary(&s)
            .unwrap()
            .unique_listeners_exact_across_epochs
    );
    assert!(
        store
            .summary(&sel("radio1", None, jan, jan + HOUR_MS))
            .unwrap()
            .unique_listeners_exact_across_epochs
    );
}

#[test]
fn prune_drops_whole_old_days() {
    let (_dir, store) = open();
    store.merge_batch(&three_days("a1", 1)).unwrap();
    // Cut-off mid-day: rounded down to 2026-03-02 00:00.
    store.prune(at(2026, 3, 2, 15, 0)).unwrap();
    let all = sel("radio1", None, at(2026, 3, 1, 0, 0), at(2026, 3, 4, 0, 0));
    assert_eq!(store.summary(&all).unwrap().sessions, 2 * 4 * 48);
    let edge = sel("radio1", None, at(2026, 3, 1, 12, 0), at(2026, 3, 2, 12, 0));
    assert_eq!(store.summary(&edge).unwrap().sessions, 2 * 4 * 12);
    assert_eq!(store.tenants().unwrap(), vec!["radio1".to_string()]);
}

#[test]
fn reopening_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    {
        let store = Store::open(&path).unwrap();
        store.merge_batch(&three_days("a1", 1)).unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.merge_batch(&three_days("a1", 1)).unwrap(),
        MergeOutcome::Duplicate
    );
    let s = sel("radio1", None, at(2026, 3, 1, 0, 0), at(2026, 3, 1, 0, 15));
    assert_eq!(store.summary(&s).unwrap().sessions, 2);
    assert_eq!(QUARTER_MS, 15 * MINUTE_MS);
    store.ping().unwrap();
}
