//! The agent's stored formats keep their bytes: a spooled batch (what an upgraded agent finds
//! in its spool and ships) and the saved ingest state (what it finds after a restart). The
//! kept bytes are in `tests/data/formats/` (see `earshot_common::golden`).

use earshot_agent::ingest::Ingestor;
use earshot_agent::reader::Line;
use earshot_agent::spool::Spool;
use earshot_common::golden;
use earshot_common::wire::Batch;

fn assert_same_bytes(name: &str, kept: &[u8], fresh: &[u8]) {
    let at = kept.iter().zip(fresh).position(|(a, b)| a != b);
    assert!(
        kept == fresh,
        "{name}: the encoding changed (lengths {} and {}, first difference at {at:?}). A \
         stored format must not move: see ARCHITECTURE.md, \"Formats\"",
        kept.len(),
        fresh.len()
    );
}

#[test]
fn a_spooled_batch_keeps_its_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let mut spool = Spool::open(&path).unwrap();
    let seq = spool
        .commit(golden::rollups(), golden::counters(), &[], b"")
        .unwrap()
        .expect("a batch is stored");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let fresh: Vec<u8> = conn
        .query_row(
            "SELECT body FROM batches WHERE seq = ?1",
            [seq as i64],
            |r| r.get(0),
        )
        .unwrap();
    let kept = golden::kept("spooled-batch-v1.postcard", &fresh);
    assert_same_bytes("spooled-batch-v1.postcard", &kept, &fresh);

    // The kept row, as an older agent left it in its spool, is shipped as that batch.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let spool = Spool::open(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO batches (seq, body) VALUES (9, ?1)",
        rusqlite::params![kept],
    )
    .unwrap();
    let pending = spool.pending("edge-1", 10).unwrap();
    assert_eq!(
        pending,
        vec![Batch {
            seq: 9,
            ..golden::batch()
        }]
    );
}

/// A HAProxy line of a request that started `t_ms` after 2026-11-28T10:00:00Z and took
/// `ta_ms`.
fn line(t_ms: i64, ip: &str, path: &str, ta_ms: i64) -> String {
    let (m, s, ms) = (t_ms / 60_000 % 60, t_ms / 1000 % 60, t_ms % 1000);
    format!(
        "{ip}:4000 [28/Nov/2026:10:{m:02}:{s:02}.{ms:03}] fe radio/s1 0/0/0/1/{ta_ms} 200 5000 - - ---- \
         1/1/0/0/0 0/0 {{Player/1.0 (iPhone)|-}} \"GET {path} HTTP/1.1\""
    )
}

/// Two HLS listeners whose sessions are open when the state is saved, and a mount's
/// listener whose session has ended (its listening time is in the saved AQH).
fn before_restart() -> Vec<String> {
    let mut lines = vec![
        line(1_000, "10.0.0.1", "/hls/radio/live.m3u8", 150),
        line(2_000, "10.0.0.2", "/hls/radio/live.m3u8", 150),
    ];
    for n in 0..10 {
        lines.push(line(
            1_500 + 10_000 * n,
            "10.0.0.1",
            &format!("/hls/radio/live_{n}.aac"),
            150,
        ));
        lines.push(line(
            2_500 + 10_000 * n,
            "10.0.0.2",
            &format!("/hls/radio/live_{n}.aac"),
            150,
        ));
    }
    lines.push(line(0, "10.0.0.3", "/live.mp3", 120_000));
    lines
}

/// The first listener goes on after the restart, up to 200.65 s.
fn after_restart() -> Vec<String> {
    (10..20)
        .map(|n| {
            line(
                1_500 + 10_000 * n,
                "10.0.0.1",
                &format!("/hls/radio/live_{n}.aac"),
                150,
            )
        })
        .collect()
}

fn ingestor() -> Ingestor {
    Ingestor::with_defaults(Some("UTC"), b"secret".to_vec())
}

fn feed(i: &mut Ingestor, lines: &[String]) {
    i.feed_lines(lines.iter().map(|l| Line::Text(l.as_bytes())));
}

type Rollups = std::collections::BTreeMap<earshot_common::HourKey, earshot_common::HourRollup>;

/// What `i` has made so far, merged into `into` (as the collector merges batches).
fn take(i: &mut Ingestor, into: &mut Rollups) {
    for (k, r) in i.take().0 {
        match into.get_mut(&k) {
            Some(have) => have.merge(&r),
            None => {
                into.insert(k, r);
            }
        }
    }
}

#[test]
fn a_saved_ingest_state_keeps_its_bytes_and_its_sessions() {
    // The daemon takes the rollups made so far and saves the state in one commit.
    let mut shipped = Rollups::new();
    let mut before = ingestor();
    feed(&mut before, &before_restart());
    assert_eq!(before.open_sessions(), 2, "both HLS sessions are open");
    take(&mut before, &mut shipped);
    let fresh = before.save_state();
    let kept = golden::kept("ingest-state-v2.postcard", &fresh);
    assert_same_bytes("ingest-state-v2.postcard", &kept, &fresh);

    // An agent restarted on the kept state counts what one that never stopped counts.
    let mut restarted = ingestor();
    restarted.restore_state(&kept).unwrap();
    assert_eq!(restarted.open_sessions(), 2);
    assert_eq!(
        restarted.save_state(),
        kept,
        "restoring and saving again is the identity"
    );
    feed(&mut restarted, &after_restart());
    restarted.close_all();
    take(&mut restarted, &mut shipped);
    let mut uninterrupted = ingestor();
    feed(&mut uninterrupted, &before_restart());
    feed(&mut uninterrupted, &after_restart());
    uninterrupted.close_all();
    let mut whole = Rollups::new();
    take(&mut uninterrupted, &mut whole);
    assert_eq!(shipped, whole);

    // And that is, worked out by hand: two HLS sessions (from 1.0 s to 191.65 s and from
    // 2.0 s to 92.65 s) and one mount session of 120 s, all in 10:00-10:15.
    let sessions: Vec<(&str, u64, u64, u64)> = shipped
        .iter()
        .map(|(k, r)| {
            let q = &r.quarters[0];
            (
                k.stream.as_str(),
                q.sessions,
                q.short_sessions,
                q.listening_ms,
            )
        })
        .collect();
    assert_eq!(
        sessions,
        vec![
            ("/hls/radio", 2, 0, 190_650 + 90_650),
            ("/live.mp3", 1, 0, 120_000)
        ]
    );
}
