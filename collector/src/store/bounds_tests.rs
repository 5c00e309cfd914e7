//! The cardinality bounds, the agents' new counters, the rendition breakdown and the migration
//! from schema version 1, with hand-computed expectations.

use std::collections::BTreeMap;

use earshot_common::rollup::{DimCounts, Dimension, HourKey, HourRollup, Protocol};
use earshot_common::time::{DAY_MS, HOUR_MS, days_from_civil};
use earshot_common::wire::{AgentCounters, Batch};
use rusqlite::Connection;

use super::*;
use crate::query::TimeRange;

/// 2026-03-02 10:00 UTC.
fn h10() -> i64 {
    days_from_civil(2026, 3, 2) * DAY_MS + 10 * HOUR_MS
}

fn open_with(max_streams: usize, max_values: usize) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with_limits(
        &dir.path().join("collector.db"),
        Limits {
            max_streams,
            max_values,
        },
    )
    .unwrap();
    (dir, store)
}

/// An hour of `stream` with `sessions` starts and `sessions` minutes of listening in every
/// quarter, listeners `ids`, `minute` listeners in every minute.
fn stream_hour(
    stream: &str,
    hour_ms: i64,
    sessions: u64,
    ids: &[u64],
    minute: u32,
) -> (HourKey, HourRollup) {
    let protocol = if stream.ends_with(".m3u8") {
        Protocol::Hls
    } else {
        Protocol::Icecast
    };
    let mut r = HourRollup::new(protocol);
    for q in &mut r.quarters {
        q.sessions = sessions;
        q.listening_ms = sessions * 60_000;
        q.lengths[0] = sessions;
        for &id in ids {
            q.uniques.insert(id);
        }
    }
    r.minutes = vec![minute; 60];
    (
        HourKey {
            tenant: "radio1".into(),
            stream: stream.into(),
            hour_ms,
        },
        r,
    )
}

/// An hour of `stream` whose first quarter holds `values` of `dim`: (value, sessions,
/// listeners), each session a minute long; the quarter's sessions are their sum.
fn valued_hour(
    stream: &str,
    hour_ms: i64,
    dim: Dimension,
    values: &[(&str, u64, &[u64])],
) -> (HourKey, HourRollup) {
    let (key, mut r) = stream_hour(stream, hour_ms, 0, &[], 0);
    add_values(&mut r, dim, values);
    (key, r)
}

fn add_values(r: &mut HourRollup, dim: Dimension, values: &[(&str, u64, &[u64])]) {
    let q = &mut r.quarters[0];
    for &(value, sessions, ids) in values {
        q.sessions += sessions;
        q.listening_ms += sessions * 60_000;
        q.dims.insert(
            (dim, value.into()),
            DimCounts {
                sessions,
                listening_ms: sessions * 60_000,
            },
        );
        for &id in ids {
            q.uniques.insert(id);
            r.dim_uniques
                .entry((dim, value.into()))
                .or_default()
                .insert(id);
        }
    }
}

fn batch(agent: &str, seq: u64, rollups: Vec<(HourKey, HourRollup)>) -> Batch {
    Batch {
        agent_id: agent.into(),
        seq,
        rollups,
        counters: AgentCounters::default(),
    }
}

fn sel(from: i64, to: i64) -> Selection {
    Selection {
        tenant: "radio1".into(),
        stream: None,
        range: TimeRange::new(from, to, 400).unwrap(),
    }
}

/// value → (sessions, unique listeners).
fn rows(store: &Store, s: &Selection, by: Breakdown) -> BTreeMap<String, (u64, u64)> {
    store
        .breakdown(s, by)
        .unwrap()
        .into_iter()
        .map(|r| (r.value, (r.sessions, r.unique_listeners)))
        .collect()
}

fn map(entries: &[(&str, (u64, u64))]) -> BTreeMap<String, (u64, u64)> {
    entries.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn folds(store: &Store) -> BTreeMap<(String, String), u64> {
    store.collector_folds().unwrap()
}

fn fold_map(entries: &[(&str, u64)]) -> BTreeMap<(String, String), u64> {
    entries
        .iter()
        .map(|(what, n)| (("radio1".to_string(), what.to_string()), *n))
        .collect()
}

/// Distinct names of `what` stored for radio1 in the hour, by the table that holds them.
fn stored_names(store: &Store, hour_ms: i64, what: &str) -> (i64, i64, i64) {
    let c = Connection::open(store.path()).unwrap();
    let one = |sql: &str| -> i64 {
        c.query_row(sql, rusqlite::params![hour_ms, what], |r| r.get(0))
            .unwrap()
    };
    (
        one(
            "SELECT COUNT(DISTINCT value) FROM quarter_dims WHERE tenant = 'radio1' AND dim = ?2
             AND quarter_ms >= ?1 AND quarter_ms < ?1 + 3600000",
        ),
        one(
            "SELECT COUNT(DISTINCT value) FROM hour_dim_uniques WHERE tenant = 'radio1' AND dim = ?2
             AND hour_ms = ?1",
        ),
        one("SELECT COUNT(*) FROM hour_names WHERE tenant = 'radio1' AND hour_ms = ?1 AND what = ?2"),
    )
}

#[test]
fn streams_past_the_bound_fold_into_other_and_totals_stay_exact() {
    let (_dir, store) = open_with(2, 500);
    let h = h10();
    let hour = sel(h, h + HOUR_MS);
    // Three new streams in one batch: the lightest (/c, though it comes first) is folded.
    store
        .merge_batch(&batch(
            "a1",
            1,
            vec![
                stream_hour("/c.mp3", h, 1, &[5], 1),
                stream_hour("/a.mp3", h, 5, &[1, 2], 4),
                stream_hour("/b.mp3", h, 3, &[3], 2),
            ],
        ))
        .unwrap();
    assert_eq!(
        rows(&store, &hour, Breakdown::Stream),
        map(&[
            ("/a.mp3", (20, 2)),
            ("/b.mp3", (12, 1)),
            ("(other)", (4, 1))
        ])
    );
    let m = store.summary(&hour).unwrap();
    assert_eq!(
        (m.sessions, m.unique_listeners, m.peak_concurrent),
        (36, 4, 7)
    );
    assert_eq!(m.listening_seconds, 36.0 * 60.0);
    assert_eq!(folds(&store), fold_map(&[("stream", 1)]));

    // Another agent, the same hour: /a is stored, so it is added to; /c stays folded however
    // heavy (and is not counted again); /d and the HLS /f are new and folded, /f under its
    // own protocol.
    store
        .merge_batch(&batch(
            "a2",
            1,
            vec![
                stream_hour("/a.mp3", h, 1, &[1], 1),
                stream_hour("/c.mp3", h, 10, &[6], 1),
                stream_hour("/d.mp3", h, 2, &[7], 1),
                stream_hour("/f.m3u8", h, 1, &[8], 1),
            ],
        ))
        .unwrap();
    assert_eq!(
        rows(&store, &hour, Breakdown::Stream),
        map(&[
            ("/a.mp3", (24, 2)),
            ("/b.mp3", (12, 1)),
            ("(other)", (4 + 40 + 8 + 4, 4))
        ])
    );
    assert_eq!(
        rows(&store, &hour, Breakdown::Protocol),
        map(&[("icecast", (88, 6)), ("hls", (4, 1))])
    );
    let m = store.summary(&hour).unwrap();
    assert_eq!(
        (m.sessions, m.unique_listeners, m.peak_concurrent),
        (92, 7, 11)
    );
    let other = store
        .summary(&Selection {
            stream: Some(OTHER.into()),
            ..hour.clone()
        })
        .unwrap();
    assert_eq!((other.sessions, other.peak_concurrent), (56, 4));
    assert_eq!(folds(&store), fold_map(&[("stream", 3)]));

    // The next hour has a budget of its own: /c and /d fit, /e ties with /d and loses by name.
    let next = sel(h + HOUR_MS, h + 2 * HOUR_MS);
    store
        .merge_batch(&batch(
            "a1",
            2,
            vec![
                stream_hour("/e.mp3", h + HOUR_MS, 2, &[9], 1),
                stream_hour("/c.mp3", h + HOUR_MS, 3, &[5], 1),
                stream_hour("/d.mp3", h + HOUR_MS, 2, &[7], 1),
            ],
        ))
        .unwrap();
    assert_eq!(
        rows(&store, &next, Breakdown::Stream),
        map(&[("/c.mp3", (12, 1)), ("/d.mp3", (8, 1)), ("(other)", (8, 1))])
    );
    assert_eq!(folds(&store), fold_map(&[("stream", 4)]));
    // The whole day (day rows) adds up the same.
    let day = sel(h - 10 * HOUR_MS, h + 14 * HOUR_MS);
    assert_eq!(store.summary(&day).unwrap().sessions, 92 + 28);
    assert_eq!(rows(&store, &day, Breakdown::Stream)[OTHER], (56 + 8, 5));
    // A duplicate batch changes nothing, folds included.
    assert_eq!(
        store
            .merge_batch(&batch("a1", 2, vec![stream_hour("/z.mp3", h, 1, &[1], 1)]))
            .unwrap(),
        MergeOutcome::Duplicate
    );
    assert_eq!(folds(&store), fold_map(&[("stream", 4)]));
    assert_eq!(stored_names(&store, h, "stream").2, 2);
}

#[test]
fn values_past_the_bound_fold_into_other_per_hour_and_dimension() {
    let (_dir, store) = open_with(200, 2);
    let h = h10();
    let hour = sel(h, h + HOUR_MS);
    let client = Breakdown::Dimension(Dimension::Client);
    let country = Breakdown::Dimension(Dimension::Country);
    let (k, mut r) = valued_hour(
        "/a.mp3",
        h,
        Dimension::Client,
        &[
            ("curl", 1, &[6]),
            ("VLC", 3, &[1, 2, 3]),
            ("Chrome", 2, &[4, 5]),
        ],
    );
    // Equal weights: the first two by name are kept.
    add_values(
        &mut r,
        Dimension::Country,
        &[("US", 1, &[1]), ("DE", 1, &[2]), ("FR", 1, &[3])],
    );
    store.merge_batch(&batch("a1", 1, vec![(k, r)])).unwrap();
    assert_eq!(
        rows(&store, &hour, client),
        map(&[("VLC", (3, 3)), ("Chrome", (2, 2)), ("(other)", (1, 1))])
    );
    assert_eq!(
        rows(&store, &hour, country),
        map(&[("DE", (1, 1)), ("FR", (1, 1)), ("(other)", (1, 1))])
    );
    assert_eq!(folds(&store), fold_map(&[("client", 1), ("country", 1)]));

    // Another stream of the same hour shares the budget: Chrome is stored, Safari is new
    // (folded however heavy), curl was folded before (and is not counted again).
    store
        .merge_batch(&batch(
            "a1",
            2,
            vec![valued_hour(
                "/b.mp3",
                h,
                Dimension::Client,
                &[("Chrome", 1, &[7]), ("Safari", 5, &[8]), ("curl", 1, &[9])],
            )],
        ))
        .unwrap();
    assert_eq!(
        rows(&store, &hour, client),
        map(&[
            ("VLC", (3, 3)),
            ("Chrome", (3, 3)),
            ("(other)", (1 + 5 + 1, 3))
        ])
    );
    assert_eq!(folds(&store), fold_map(&[("client", 2), ("country", 1)]));
    // Totals: every session of both batches.
    let m = store.summary(&hour).unwrap();
    assert_eq!((m.sessions, m.unique_listeners), (6 + 3 + 7, 9));
    assert_eq!(stored_names(&store, h, "client"), (3, 3, 2));

    // The next hour keeps values of its own.
    let next = sel(h + HOUR_MS, h + 2 * HOUR_MS);
    store
        .merge_batch(&batch(
            "a1",
            3,
            vec![valued_hour(
                "/a.mp3",
                h + HOUR_MS,
                Dimension::Client,
                &[("curl", 1, &[6]), ("Safari", 2, &[8])],
            )],
        ))
        .unwrap();
    assert_eq!(
        rows(&store, &next, client),
        map(&[("curl", (1, 1)), ("Safari", (2, 1))])
    );
    assert_eq!(folds(&store), fold_map(&[("client", 2), ("country", 1)]));
    // Over the day (day rows): the hours' values side by side.
    let day = sel(h - 10 * HOUR_MS, h + 14 * HOUR_MS);
    assert_eq!(
        rows(&store, &day, client),
        map(&[
            ("VLC", (3, 3)),
            ("Chrome", (3, 3)),
            ("(other)", (7, 3)),
            ("curl", (1, 1)),
            ("Safari", (2, 1))
        ])
    );
}

#[test]
fn other_counts_against_no_budget() {
    let (_dir, store) = open_with(1, 1);
    let h = h10();
    let hour = sel(h, h + HOUR_MS);
    let (k1, r1) = valued_hour(OTHER, h, Dimension::Client, &[(OTHER, 2, &[1, 2])]);
    let (k2, r2) = valued_hour("/a.mp3", h, Dimension::Client, &[("VLC", 1, &[3])]);
    store
        .merge_batch(&batch("a1", 1, vec![(k1, r1), (k2, r2)]))
        .unwrap();
    assert_eq!(
        rows(&store, &hour, Breakdown::Stream),
        map(&[("(other)", (2, 2)), ("/a.mp3", (1, 1))])
    );
    assert_eq!(
        rows(&store, &hour, Breakdown::Dimension(Dimension::Client)),
        map(&[("(other)", (2, 2)), ("VLC", (1, 1))])
    );
    assert!(folds(&store).is_empty());
}

#[test]
fn by_rendition_answers_from_the_rendition_values() {
    let (_dir, store) = open_with(200, 500);
    let h = h10();
    let (k, mut r) = stream_hour("/hls/st.m3u8", h, 0, &[], 0);
    let q0 = &mut r.quarters[0];
    q0.sessions = 4;
    q0.listening_ms = 2_400_000;
    q0.dims.insert(
        (Dimension::Rendition, "aac_128k".into()),
        DimCounts {
            sessions: 3,
            listening_ms: 1_800_000,
        },
    );
    q0.dims.insert(
        (Dimension::Rendition, "aac_64k".into()),
        DimCounts {
            sessions: 1,
            listening_ms: 600_000,
        },
    );
    let q1 = &mut r.quarters[1];
    q1.sessions = 1;
    q1.listening_ms = 300_000;
    q1.dims.insert(
        (Dimension::Rendition, "aac_128k".into()),
        DimCounts {
            sessions: 1,
            listening_ms: 300_000,
        },
    );
    for (value, ids) in [("aac_128k", &[1u64, 2, 3][..]), ("aac_64k", &[4])] {
        for &id in ids {
            r.dim_uniques
                .entry((Dimension::Rendition, value.into()))
                .or_default()
                .insert(id);
        }
    }
    store.merge_batch(&batch("a1", 1, vec![(k, r)])).unwrap();
    let by = Breakdown::parse("rendition").unwrap();
    assert_eq!(by, Breakdown::Dimension(Dimension::Rendition));
    let rows = store.breakdown(&sel(h, h + HOUR_MS), by).unwrap();
    let got: Vec<(&str, u64, f64, u64, f64)> = rows
        .iter()
        .map(|r| {
            (
                r.value.as_str(),
                r.sessions,
                r.listening_seconds,
                r.unique_listeners,
                r.share,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("aac_128k", 4, 2100.0, 3, 0.8),
            ("aac_64k", 1, 600.0, 1, 0.2)
        ]
    );
}

#[test]
fn breakdown_names_are_the_keys_and_every_dimension() {
    let mut expected = vec!["stream", "protocol"];
    expected.extend(Dimension::ALL.iter().map(|d| d.as_str()));
    assert_eq!(Breakdown::NAMES.to_vec(), expected);
    for name in Breakdown::NAMES {
        assert!(Breakdown::parse(name).is_some(), "{name}");
    }
}

#[test]
fn agent_not_session_and_fold_counters_are_merged_once() {
    let (_dir, store) = open_with(200, 500);
    let mut b = batch("a1", 1, vec![stream_hour("/a.mp3", h10(), 1, &[1], 1)]);
    b.counters.lines = 20;
    b.counters.not_sessions = BTreeMap::from([
        (("radio1".into(), "image".into()), 4),
        (("radio1".into(), "method".into()), 2),
    ]);
    b.counters.folded = BTreeMap::from([(("radio1".into(), "client".into()), 7)]);
    store.merge_batch(&b).unwrap();
    assert_eq!(store.merge_batch(&b).unwrap(), MergeOutcome::Duplicate);
    b.seq = 2;
    b.counters.folded.clear();
    b.counters
        .not_sessions
        .insert(("radio2".into(), "document".into()), 1);
    store.merge_batch(&b).unwrap();
    let t = store.agent_counters("a1").unwrap().unwrap();
    assert_eq!((t.batches, t.lines), (2, 40));
    let key = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        t.not_sessions,
        BTreeMap::from([
            (key("radio1", "image"), 8),
            (key("radio1", "method"), 4),
            (key("radio2", "document"), 1)
        ])
    );
    assert_eq!(t.folded, BTreeMap::from([(key("radio1", "client"), 7)]));
}

#[test]
fn a_store_of_schema_version_1_is_migrated_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.db");
    let h = h10();
    {
        // What the previous collector left: its tables, its version, its rows.
        let c = Connection::open(&path).unwrap();
        c.execute_batch(super::schema::V1_SCHEMA).unwrap();
        c.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (1);
             INSERT INTO agents (agent_id, batches, lines, last_merged_ms) VALUES ('a1', 3, 100, 0);
             INSERT INTO agent_malformed (agent_id, reason, lines) VALUES ('a1', 'bad_date', 2);",
        )
        .unwrap();
        c.execute(
            "INSERT INTO quarters VALUES ('radio1', ?1, '/old.mp3', 'icecast', 5, 0, 0, 0, 0, 300000, 0,
                5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)",
            [h],
        )
        .unwrap();
        c.execute(
            "INSERT INTO quarter_dims VALUES ('radio1', 'client', ?1, '/old.mp3', 'VLC', 5, 300000)",
            [h],
        )
        .unwrap();
        let mut s = earshot_common::UniqueSketch::new();
        s.insert(1);
        c.execute(
            "INSERT INTO hour_dim_uniques VALUES ('radio1', 'client', ?1, '/old.mp3', 'VLC', ?2)",
            rusqlite::params![h, encode_sketch(&s)],
        )
        .unwrap();
    }
    let store = Store::open_with_limits(
        &path,
        Limits {
            max_streams: 1,
            max_values: 1,
        },
    )
    .unwrap();
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    assert_eq!(SCHEMA_VERSION, 2);
    let t = store.agent_counters("a1").unwrap().unwrap();
    assert_eq!((t.batches, t.lines, t.malformed["bad_date"]), (3, 100, 2));
    assert!(t.not_sessions.is_empty() && t.folded.is_empty());
    let hour = sel(h, h + HOUR_MS);
    assert_eq!(store.summary(&hour).unwrap().sessions, 5);
    // The old hour's names were taken over: its budget (1 stream, 1 value) is spent.
    let (k, r) = valued_hour("/new.mp3", h, Dimension::Client, &[("Chrome", 2, &[2])]);
    let mut b = batch("a1", 4, vec![(k, r)]);
    b.counters.not_sessions = BTreeMap::from([(("radio1".into(), "image".into()), 3)]);
    store.merge_batch(&b).unwrap();
    assert_eq!(
        rows(&store, &hour, Breakdown::Stream),
        map(&[("/old.mp3", (5, 0)), ("(other)", (2, 1))])
    );
    assert_eq!(
        rows(&store, &hour, Breakdown::Dimension(Dimension::Client)),
        map(&[("VLC", (5, 1)), ("(other)", (2, 1))])
    );
    assert_eq!(folds(&store), fold_map(&[("stream", 1), ("client", 1)]));
    let t = store.agent_counters("a1").unwrap().unwrap();
    assert_eq!(t.batches, 4);
    assert_eq!(
        t.not_sessions,
        BTreeMap::from([(("radio1".to_string(), "image".to_string()), 3)])
    );
    drop(store);
    // Opening again migrates nothing and keeps everything.
    let store = Store::open(&path).unwrap();
    assert_eq!(store.summary(&hour).unwrap().sessions, 7);
    assert_eq!(store.merge_batch(&b).unwrap(), MergeOutcome::Duplicate);
}

fn db_bytes(store: &Store) -> u64 {
    let p = store.path();
    let wal = p.with_extension("db-wal");
    [p.to_path_buf(), wal]
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_hostile_batch_of_distinct_values_stays_bounded() {
    const N: u64 = 100_000;
    let (_dir, store) = open_with(200, 500);
    let h = h10();
    let hostile = |seq: u64, prefix: &str| {
        let (k, mut r) = stream_hour("/a.mp3", h, 0, &[], 0);
        for i in 0..N {
            let q = &mut r.quarters[(i % 4) as usize];
            q.sessions += 1;
            q.listening_ms += 60_000;
            q.uniques.insert(i);
            let value = format!("{prefix}-{i}");
            q.dims.insert(
                (Dimension::Source, value.clone()),
                DimCounts {
                    sessions: 1,
                    listening_ms: 60_000,
                },
            );
            r.dim_uniques
                .entry((Dimension::Source, value))
                .or_default()
                .insert(i);
        }
        batch("evil", seq, vec![(k, r)])
    };
    let before = db_bytes(&store);
    let b1 = hostile(1, "src");
    let t = std::time::Instant::now();
    store.merge_batch(&b1).unwrap();
    let first = t.elapsed();
    let after_first = db_bytes(&store);
    let b2 = hostile(2, "more");
    let t = std::time::Instant::now();
    store.merge_batch(&b2).unwrap();
    let second = t.elapsed();
    let after_second = db_bytes(&store);
    println!(
        "hostile batch of {N} distinct source values: merge {first:?} (a second one of {N} other new values: {second:?}); database {before} → {after_first} → {after_second} bytes"
    );
    let (counted, sketched, admitted) = stored_names(&store, h, "source");
    assert!(counted <= 501 && sketched <= 501, "{counted} {sketched}");
    assert_eq!(admitted, 500);
    let hour = sel(h, h + HOUR_MS);
    let by = rows(&store, &hour, Breakdown::Dimension(Dimension::Source));
    assert_eq!(by.len(), 501);
    assert_eq!(by.values().map(|v| v.0).sum::<u64>(), 2 * N);
    assert_eq!(by[OTHER].0, 2 * N - 500);
    // (other)'s listeners: every id, as the second batch's values are all folded.
    let other_uniques = by[OTHER].1 as f64;
    assert!(
        (other_uniques / N as f64 - 1.0).abs() < 0.03,
        "{other_uniques}"
    );
    let m = store.summary(&hour).unwrap();
    assert_eq!(m.sessions, 2 * N);
    let folded = folds(&store)[&("radio1".to_string(), "source".to_string())] as f64;
    assert!(
        (folded / (2 * N - 500) as f64 - 1.0).abs() < 0.03,
        "{folded}"
    );
}
