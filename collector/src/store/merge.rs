//! Merging a batch: one transaction that adds every rollup into the quarter, minute and hour
//! tables, adds the same data into the day tables, and records the batch.
//!
//! The cardinality bounds ([`bounds`]) rewrite the batch's rollups first, in the same
//! transaction, so a batch's folds commit (or not) with its merge.
//!
//! Counters are added by upserts; sketches are read, unioned and written back. Day-level
//! deltas are summed in memory first, so a batch holding a whole day of hours writes each day
//! row once. Concurrency only ever grows under a merge (every minute count is a sum of
//! nonnegative deltas), so a day's peak is kept exactly by comparing it with the new totals
//! of the minutes the batch touched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use earshot_common::UniqueSketch;
use earshot_common::rollup::DimCounts;
use earshot_common::rollup::{Dimension, LENGTH_BUCKETS, Protocol, QuarterRollup};
use earshot_common::time::{DAY_MS, HOUR_MS, MINUTE_MS, QUARTER_MS, floor_to};
use earshot_common::wire::Batch;
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::bounds::{self, FoldNote, Limits};
use super::{MergeOutcome, StoreError, decode_sketch, encode_sketch};

/// SQLite integers are signed; counters beyond `i64::MAX` saturate.
pub(crate) fn sql_int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const COUNTER_COLUMNS: [&str; 21] = [
    "sessions",
    "short_sessions",
    "bot_sessions",
    "completed",
    "carried_in",
    "listening_ms",
    "aqh_listeners",
    "len_0",
    "len_1",
    "len_2",
    "len_3",
    "len_4",
    "len_5",
    "len_6",
    "len_7",
    "len_8",
    "len_9",
    "len_10",
    "len_11",
    "len_12",
    "aqh_tenant_listeners",
];

/// `INSERT … ON CONFLICT DO UPDATE` adding the counters, for `quarters` and `days`.
fn counter_upsert_sql(table: &str, time_column: &str) -> String {
    let cols = COUNTER_COLUMNS.join(", ");
    let params: Vec<String> = (5..5 + COUNTER_COLUMNS.len())
        .map(|i| format!("?{i}"))
        .collect();
    let sets: Vec<String> = COUNTER_COLUMNS
        .iter()
        .map(|c| format!("{c} = {c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {table} (tenant, {time_column}, stream, protocol, {cols}) VALUES (?1, ?2, ?3, ?4, {})
         ON CONFLICT (tenant, {time_column}, stream, protocol) DO UPDATE SET {}",
        params.join(", "),
        sets.join(", ")
    )
}

static QUARTER_UPSERT: LazyLock<String> =
    LazyLock::new(|| counter_upsert_sql("quarters", "quarter_ms"));
static DAY_UPSERT: LazyLock<String> = LazyLock::new(|| counter_upsert_sql("days", "day_ms"));

/// The counter part of a quarter (or a day's sum of quarters).
#[derive(Debug, Default, Clone)]
struct Counters {
    sessions: u64,
    short_sessions: u64,
    bot_sessions: u64,
    completed: u64,
    carried_in: u64,
    listening_ms: u64,
    aqh_listeners: u64,
    aqh_tenant_listeners: u64,
    lengths: [u64; LENGTH_BUCKETS],
}

impl Counters {
    fn add_quarter(&mut self, q: &QuarterRollup, count_carried_in: bool) {
        self.sessions += q.sessions;
        self.short_sessions += q.short_sessions;
        self.bot_sessions += q.bot_sessions;
        self.completed += q.completed;
        if count_carried_in {
            self.carried_in += q.carried_in;
        }
        self.listening_ms += q.listening_ms;
        self.aqh_listeners += q.aqh_listeners;
        self.aqh_tenant_listeners += q.aqh_tenant_listeners;
        for (a, b) in self.lengths.iter_mut().zip(q.lengths.iter()) {
            *a += b;
        }
    }

    fn values(&self) -> [i64; 21] {
        let mut v = [0i64; 21];
        let head = [
            self.sessions,
            self.short_sessions,
            self.bot_sessions,
            self.completed,
            self.carried_in,
            self.listening_ms,
            self.aqh_listeners,
        ];
        for (i, x) in head
            .iter()
            .chain(self.lengths.iter())
            .chain(std::iter::once(&self.aqh_tenant_listeners))
            .enumerate()
        {
            v[i] = sql_int(*x);
        }
        v
    }
}

fn upsert_counters(
    tx: &Transaction,
    sql: &str,
    tenant: &str,
    t_ms: i64,
    stream: &str,
    protocol: Protocol,
    c: &Counters,
) -> Result<(), StoreError> {
    let v = c.values();
    let mut stmt = tx.prepare_cached(sql)?;
    let mut p: Vec<&dyn rusqlite::ToSql> = vec![&tenant, &t_ms, &stream];
    let proto = protocol.as_str();
    p.push(&proto);
    for x in &v {
        p.push(x);
    }
    stmt.execute(p.as_slice())?;
    Ok(())
}

/// Unions `add` into the sketch stored under the key (`key_sql` names the key columns in
/// order; `key` holds their values).
fn union_sketch(
    tx: &Transaction,
    table: &'static str,
    key_sql: &[&str],
    key: &[&dyn rusqlite::ToSql],
    add: &UniqueSketch,
) -> Result<(), StoreError> {
    if add.is_empty() {
        return Ok(());
    }
    let cond: Vec<String> = key_sql
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ?{}", i + 1))
        .collect();
    let select = format!("SELECT sketch FROM {table} WHERE {}", cond.join(" AND "));
    let old: Option<Vec<u8>> = tx
        .prepare_cached(&select)?
        .query_row(key, |r| r.get(0))
        .optional()?;
    let merged = match old {
        Some(bytes) => {
            let mut s = decode_sketch(&bytes, table)?;
            s.merge(add);
            s
        }
        None => add.clone(),
    };
    let cols = key_sql.join(", ");
    let ps: Vec<String> = (1..=key_sql.len() + 1).map(|i| format!("?{i}")).collect();
    let upsert = format!(
        "INSERT INTO {table} ({cols}, sketch) VALUES ({}) ON CONFLICT ({cols}) DO UPDATE SET sketch = excluded.sketch",
        ps.join(", ")
    );
    let blob = encode_sketch(&merged);
    let mut p: Vec<&dyn rusqlite::ToSql> = key.to_vec();
    p.push(&blob);
    tx.prepare_cached(&upsert)?.execute(p.as_slice())?;
    Ok(())
}

const ROLLUP_KEY: [&str; 4] = ["tenant", "quarter_ms", "stream", "protocol"];
const DAY_KEY: [&str; 4] = ["tenant", "day_ms", "stream", "protocol"];

type DayKey = (String, i64, String, Protocol);
type DimKey = (String, Dimension, i64, String, String);

#[derive(Default)]
struct DayDeltas {
    counters: BTreeMap<DayKey, (Counters, UniqueSketch)>,
    dims: BTreeMap<DimKey, DimCounts>,
    dim_uniques: BTreeMap<DimKey, UniqueSketch>,
    /// (tenant, day, stream) → (peak, first minute) among the minutes the batch touched.
    stream_peaks: BTreeMap<(String, i64, String), (u64, i64)>,
    /// (tenant, hour) whose minute totals the batch changed.
    touched_hours: BTreeSet<(String, i64)>,
}

fn raise_peak(slot: &mut (u64, i64), listeners: u64, minute_ms: i64) {
    if listeners > slot.0 || (listeners == slot.0 && minute_ms < slot.1) {
        *slot = (listeners, minute_ms);
    }
}

/// Merges the batch (its rollups within `limits`) unless it was merged before; returns what
/// the bounds folded, to be logged once committed.
pub fn merge_batch(
    conn: &mut Connection,
    batch: &Batch,
    now_ms: i64,
    limits: Limits,
) -> Result<(MergeOutcome, Vec<FoldNote>), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO merged_batches (agent_id, seq, merged_at_ms) VALUES (?1, ?2, ?3)",
        params![batch.agent_id, batch.seq as i64, now_ms],
    )?;
    if inserted == 0 {
        return Ok((MergeOutcome::Duplicate, Vec::new()));
    }
    merge_agent_counters(&tx, batch, now_ms)?;
    let (rollups, folds) = bounds::apply(&tx, &batch.rollups, limits)?;
    let mut days = DayDeltas::default();
    for (key, rollup) in &rollups {
        let (key, rollup): (&earshot_common::HourKey, &earshot_common::HourRollup) = (key, rollup);
        let (tenant, stream, hour_ms) = (&key.tenant, &key.stream, floor_to(key.hour_ms, HOUR_MS));
        let proto = rollup.protocol;
        let day_ms = floor_to(hour_ms, DAY_MS);
        tx.prepare_cached(
            "INSERT INTO tenants (tenant, first_hour_ms, last_hour_ms) VALUES (?1, ?2, ?2)
             ON CONFLICT (tenant) DO UPDATE SET first_hour_ms = min(first_hour_ms, excluded.first_hour_ms),
                                                last_hour_ms = max(last_hour_ms, excluded.last_hour_ms)",
        )?
        .execute(params![tenant, hour_ms])?;

        for (i, q) in rollup.quarters.iter().enumerate() {
            if q.is_empty() {
                continue;
            }
            let quarter_ms = hour_ms + i as i64 * QUARTER_MS;
            let mut c = Counters::default();
            c.add_quarter(q, true);
            upsert_counters(&tx, &QUARTER_UPSERT, tenant, quarter_ms, stream, proto, &c)?;
            let p = proto.as_str();
            union_sketch(
                &tx,
                "quarter_uniques",
                &ROLLUP_KEY,
                &[tenant, &quarter_ms, stream, &p],
                &q.uniques,
            )?;

            let day = days
                .counters
                .entry((tenant.clone(), day_ms, stream.clone(), proto))
                .or_default();
            day.0.add_quarter(q, quarter_ms == day_ms);
            day.1.merge(&q.uniques);

            for ((dim, value), counts) in &q.dims {
                tx.prepare_cached(
                    "INSERT INTO quarter_dims (tenant, dim, quarter_ms, stream, value, sessions, listening_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (tenant, dim, quarter_ms, stream, value) DO UPDATE SET
                        sessions = sessions + excluded.sessions, listening_ms = listening_ms + excluded.listening_ms",
                )?
                .execute(params![
                    tenant,
                    dim.as_str(),
                    quarter_ms,
                    stream,
                    value,
                    sql_int(counts.sessions),
                    sql_int(counts.listening_ms)
                ])?;
                days.dims
                    .entry((tenant.clone(), *dim, day_ms, stream.clone(), value.clone()))
                    .or_default()
                    .merge(counts);
            }
        }

        for ((dim, value), sketch) in &rollup.dim_uniques {
            let d = dim.as_str();
            union_sketch(
                &tx,
                "hour_dim_uniques",
                &["tenant", "dim", "hour_ms", "stream", "value"],
                &[tenant, &d, &hour_ms, stream, value],
                sketch,
            )?;
            days.dim_uniques
                .entry((tenant.clone(), *dim, day_ms, stream.clone(), value.clone()))
                .or_default()
                .merge(sketch);
        }

        let mut touched = false;
        for (m, &listeners) in rollup.minutes.iter().enumerate().take(60) {
            if listeners == 0 {
                continue;
            }
            touched = true;
            let minute_ms = hour_ms + m as i64 * MINUTE_MS;
            let total: i64 = tx
                .prepare_cached(
                    "INSERT INTO minutes (tenant, minute_ms, stream, listeners) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (tenant, minute_ms, stream) DO UPDATE SET listeners = listeners + excluded.listeners
                     RETURNING listeners",
                )?
                .query_row(params![tenant, minute_ms, stream, i64::from(listeners)], |r| r.get(0))?;
            let slot = days
                .stream_peaks
                .entry((tenant.clone(), day_ms, stream.clone()))
                .or_insert((0, i64::MAX));
            raise_peak(slot, total as u64, minute_ms);
        }
        if touched {
            days.touched_hours.insert((tenant.clone(), hour_ms));
        }
    }
    write_days(&tx, days)?;
    tx.commit()?;
    Ok((MergeOutcome::Merged, folds))
}

fn write_days(tx: &Transaction, days: DayDeltas) -> Result<(), StoreError> {
    for ((tenant, day_ms, stream, proto), (counters, sketch)) in &days.counters {
        upsert_counters(tx, &DAY_UPSERT, tenant, *day_ms, stream, *proto, counters)?;
        let p = proto.as_str();
        union_sketch(
            tx,
            "day_uniques",
            &DAY_KEY,
            &[tenant, day_ms, stream, &p],
            sketch,
        )?;
    }
    for ((tenant, dim, day_ms, stream, value), counts) in &days.dims {
        tx.prepare_cached(
            "INSERT INTO day_dims (tenant, dim, day_ms, stream, value, sessions, listening_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (tenant, dim, day_ms, stream, value) DO UPDATE SET
                sessions = sessions + excluded.sessions, listening_ms = listening_ms + excluded.listening_ms",
        )?
        .execute(params![
            tenant,
            dim.as_str(),
            day_ms,
            stream,
            value,
            sql_int(counts.sessions),
            sql_int(counts.listening_ms)
        ])?;
    }
    for ((tenant, dim, day_ms, stream, value), sketch) in &days.dim_uniques {
        let d = dim.as_str();
        union_sketch(
            tx,
            "day_dim_uniques",
            &["tenant", "dim", "day_ms", "stream", "value"],
            &[tenant, &d, day_ms, stream, value],
            sketch,
        )?;
    }
    for ((tenant, day_ms, stream), (peak, minute_ms)) in &days.stream_peaks {
        raise_stored_peak(
            tx,
            "SELECT peak, peak_minute_ms FROM day_stream_peaks WHERE tenant = ?1 AND day_ms = ?2 AND stream = ?3",
            "INSERT INTO day_stream_peaks (tenant, day_ms, stream, peak, peak_minute_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (tenant, day_ms, stream) DO UPDATE SET peak = excluded.peak, peak_minute_ms = excluded.peak_minute_ms",
            &[tenant, day_ms, stream],
            (*peak, *minute_ms),
        )?;
    }
    // Totals over all streams, recomputed for the hours the batch touched.
    let mut tenant_peaks: BTreeMap<(String, i64), (u64, i64)> = BTreeMap::new();
    for (tenant, hour_ms) in &days.touched_hours {
        let mut stmt = tx.prepare_cached(
            "SELECT minute_ms, SUM(listeners) FROM minutes WHERE tenant = ?1 AND minute_ms >= ?2 AND minute_ms < ?3
             GROUP BY minute_ms",
        )?;
        let mut rows = stmt.query(params![tenant, hour_ms, hour_ms + HOUR_MS])?;
        let slot = tenant_peaks
            .entry((tenant.clone(), floor_to(*hour_ms, DAY_MS)))
            .or_insert((0, i64::MAX));
        while let Some(r) = rows.next()? {
            let (minute_ms, total): (i64, i64) = (r.get(0)?, r.get(1)?);
            raise_peak(slot, total.max(0) as u64, minute_ms);
        }
    }
    for ((tenant, day_ms), peak) in &tenant_peaks {
        raise_stored_peak(
            tx,
            "SELECT peak, peak_minute_ms FROM day_peaks WHERE tenant = ?1 AND day_ms = ?2",
            "INSERT INTO day_peaks (tenant, day_ms, peak, peak_minute_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant, day_ms) DO UPDATE SET peak = excluded.peak, peak_minute_ms = excluded.peak_minute_ms",
            &[tenant, day_ms],
            *peak,
        )?;
    }
    Ok(())
}

/// Raises a stored day peak to `candidate` if it is higher (or equal and earlier).
fn raise_stored_peak(
    tx: &Transaction,
    select: &str,
    upsert: &str,
    key: &[&dyn rusqlite::ToSql],
    candidate: (u64, i64),
) -> Result<(), StoreError> {
    if candidate.0 == 0 {
        return Ok(());
    }
    let old: Option<(i64, i64)> = tx
        .prepare_cached(select)?
        .query_row(key, |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut best = old
        .map(|(p, m)| (p.max(0) as u64, m))
        .unwrap_or((0, i64::MAX));
    let before = best;
    raise_peak(&mut best, candidate.0, candidate.1);
    if best != before {
        let (p, m) = (sql_int(best.0), best.1);
        let mut params: Vec<&dyn rusqlite::ToSql> = key.to_vec();
        params.push(&p);
        params.push(&m);
        tx.prepare_cached(upsert)?.execute(params.as_slice())?;
    }
    Ok(())
}

fn merge_agent_counters(tx: &Transaction, batch: &Batch, now_ms: i64) -> Result<(), StoreError> {
    let c = &batch.counters;
    tx.prepare_cached(
        "INSERT INTO agents (agent_id, batches, lines, last_merged_ms) VALUES (?1, 1, ?2, ?3)
         ON CONFLICT (agent_id) DO UPDATE SET batches = batches + 1, lines = lines + excluded.lines,
                                              last_merged_ms = excluded.last_merged_ms",
    )?
    .execute(params![batch.agent_id, sql_int(c.lines), now_ms])?;
    for (reason, n) in &c.malformed {
        tx.prepare_cached(
            "INSERT INTO agent_malformed (agent_id, reason, lines) VALUES (?1, ?2, ?3)
             ON CONFLICT (agent_id, reason) DO UPDATE SET lines = lines + excluded.lines",
        )?
        .execute(params![batch.agent_id, reason, sql_int(*n)])?;
    }
    for ((tenant, status), n) in &c.by_status {
        tx.prepare_cached(
            "INSERT INTO agent_status (agent_id, tenant, status, lines) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (agent_id, tenant, status) DO UPDATE SET lines = lines + excluded.lines",
        )?
        .execute(params![batch.agent_id, tenant, status, sql_int(*n)])?;
    }
    for ((tenant, kind), n) in &c.not_sessions {
        tx.prepare_cached(
            "INSERT INTO agent_not_sessions (agent_id, tenant, kind, requests) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (agent_id, tenant, kind) DO UPDATE SET requests = requests + excluded.requests",
        )?
        .execute(params![batch.agent_id, tenant, kind, sql_int(*n)])?;
    }
    for ((tenant, what), n) in &c.folded {
        tx.prepare_cached(
            "INSERT INTO agent_folded (agent_id, tenant, what, names) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (agent_id, tenant, what) DO UPDATE SET names = names + excluded.names",
        )?
        .execute(params![batch.agent_id, tenant, what, sql_int(*n)])?;
    }
    Ok(())
}
