//! Reads: the rows a query plan ([`query::segments`](crate::query::segments)) asks for, from
//! the quarter or the day tables. Sums that SQL can do are left to the caller, which keeps
//! bucket assignment (time zones, clipping) in the pure query code.

use std::collections::BTreeMap;

use earshot_common::UniqueSketch;
use earshot_common::rollup::{Dimension, Protocol};
use earshot_common::time::HOUR_MS;
use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreError, decode_sketch};
use crate::query::{CounterRow, DimCountRow, PeakRow, Segment, ceil_to};

fn parse_protocol(s: &str) -> Result<Protocol, StoreError> {
    match s {
        "icecast" => Ok(Protocol::Icecast),
        "hls" => Ok(Protocol::Hls),
        other => Err(StoreError::BadProtocol(other.to_owned())),
    }
}

fn counter_sql(table: &str, sketches: &str, time: &str, with_uniques: bool) -> String {
    let sketch_col = if with_uniques { "u.sketch" } else { "NULL" };
    let join = if with_uniques {
        format!(
            "LEFT JOIN {sketches} u ON u.tenant = c.tenant AND u.{time} = c.{time} AND u.stream = c.stream
             AND u.protocol = c.protocol"
        )
    } else {
        String::new()
    };
    format!(
        "SELECT c.{time}, c.stream, c.protocol, c.sessions, c.short_sessions, c.bot_sessions, c.completed,
                c.carried_in, c.listening_ms, c.aqh_listeners, c.len_0, c.len_1, c.len_2, c.len_3, c.len_4,
                c.len_5, c.len_6, c.len_7, c.len_8, c.len_9, c.len_10, c.len_11, c.len_12, {sketch_col},
                c.aqh_tenant_listeners
         FROM {table} c {join}
         WHERE c.tenant = ?1 AND c.{time} >= ?2 AND c.{time} < ?3 AND (?4 IS NULL OR c.stream = ?4)
         ORDER BY c.{time}"
    )
}

/// Counter rows of every segment, in time order; sketches decoded when `with_uniques`.
pub fn counter_rows(
    conn: &Connection,
    tenant: &str,
    stream: Option<&str>,
    segments: &[Segment],
    with_uniques: bool,
) -> Result<Vec<CounterRow>, StoreError> {
    let mut out = Vec::new();
    for seg in segments {
        let (table, sketches, time, from, to) = match *seg {
            Segment::Quarters { from_ms, to_ms } => {
                ("quarters", "quarter_uniques", "quarter_ms", from_ms, to_ms)
            }
            Segment::Days { from_ms, to_ms } => ("days", "day_uniques", "day_ms", from_ms, to_ms),
        };
        let mut stmt = conn.prepare_cached(&counter_sql(table, sketches, time, with_uniques))?;
        let mut rows = stmt.query(params![tenant, from, to, stream])?;
        while let Some(r) = rows.next()? {
            let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
            let mut lengths = [0u64; 13];
            for (k, l) in lengths.iter_mut().enumerate() {
                *l = n(10 + k)?;
            }
            let protocol: String = r.get(2)?;
            let uniques = match r
                .get_ref(23)?
                .as_blob_or_null()
                .map_err(rusqlite::Error::from)?
            {
                Some(b) => Some(decode_sketch(b, sketches)?),
                None if with_uniques => Some(UniqueSketch::new()),
                None => None,
            };
            out.push(CounterRow {
                start_ms: r.get(0)?,
                stream: r.get(1)?,
                protocol: Some(parse_protocol(&protocol)?),
                sessions: n(3)?,
                short_sessions: n(4)?,
                bot_sessions: n(5)?,
                completed: n(6)?,
                carried_in: n(7)?,
                listening_ms: n(8)?,
                aqh_listeners: n(9)?,
                aqh_tenant_listeners: n(24)?,
                lengths,
                uniques,
            });
        }
    }
    Ok(out)
}

/// Concurrency per minute in `[from_ms, to_ms)`: summed over all streams, or of one stream.
pub fn minute_peaks(
    conn: &Connection,
    tenant: &str,
    stream: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Result<Vec<PeakRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT minute_ms, SUM(listeners) FROM minutes
         WHERE tenant = ?1 AND minute_ms >= ?2 AND minute_ms < ?3 AND (?4 IS NULL OR stream = ?4)
         GROUP BY minute_ms ORDER BY minute_ms",
    )?;
    let rows = stmt.query_map(params![tenant, from_ms, to_ms, stream], |r| {
        let t: i64 = r.get(0)?;
        Ok(PeakRow {
            start_ms: t,
            at_ms: t,
            listeners: r.get::<_, i64>(1)?.max(0) as u64,
            stream: None,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Peak rows for the segments: per minute for quarter segments, per UTC day for day segments.
pub fn peak_rows(
    conn: &Connection,
    tenant: &str,
    stream: Option<&str>,
    segments: &[Segment],
) -> Result<Vec<PeakRow>, StoreError> {
    let mut out = Vec::new();
    for seg in segments {
        match *seg {
            Segment::Quarters { from_ms, to_ms } => {
                out.extend(minute_peaks(conn, tenant, stream, from_ms, to_ms)?)
            }
            Segment::Days { from_ms, to_ms } => {
                let mut stmt = match stream {
                    None => conn.prepare_cached(
                        "SELECT day_ms, peak_minute_ms, peak FROM day_peaks
                         WHERE tenant = ?1 AND day_ms >= ?2 AND day_ms < ?3 AND ?4 IS NULL",
                    )?,
                    Some(_) => conn.prepare_cached(
                        "SELECT day_ms, peak_minute_ms, peak FROM day_stream_peaks
                         WHERE tenant = ?1 AND day_ms >= ?2 AND day_ms < ?3 AND stream = ?4",
                    )?,
                };
                let rows = stmt.query_map(params![tenant, from_ms, to_ms, stream], |r| {
                    Ok(PeakRow {
                        start_ms: r.get(0)?,
                        at_ms: r.get(1)?,
                        listeners: r.get::<_, i64>(2)?.max(0) as u64,
                        stream: None,
                    })
                })?;
                for r in rows {
                    out.push(r?);
                }
            }
        }
    }
    Ok(out)
}

/// Peak rows kept per stream (minutes, or each stream's day peaks).
pub fn stream_peak_rows(
    conn: &Connection,
    tenant: &str,
    stream: Option<&str>,
    segments: &[Segment],
) -> Result<Vec<PeakRow>, StoreError> {
    let mut out = Vec::new();
    for seg in segments {
        let (sql, from, to) = match *seg {
            Segment::Quarters { from_ms, to_ms } => (
                "SELECT minute_ms, minute_ms, listeners, stream FROM minutes
                 WHERE tenant = ?1 AND minute_ms >= ?2 AND minute_ms < ?3 AND (?4 IS NULL OR stream = ?4)",
                from_ms,
                to_ms,
            ),
            Segment::Days { from_ms, to_ms } => (
                "SELECT day_ms, peak_minute_ms, peak, stream FROM day_stream_peaks
                 WHERE tenant = ?1 AND day_ms >= ?2 AND day_ms < ?3 AND (?4 IS NULL OR stream = ?4)",
                from_ms,
                to_ms,
            ),
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![tenant, from, to, stream], |r| {
            Ok(PeakRow {
                start_ms: r.get(0)?,
                at_ms: r.get(1)?,
                listeners: r.get::<_, i64>(2)?.max(0) as u64,
                stream: Some(r.get(3)?),
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Dimension counters summed per value within each segment.
pub fn dim_count_rows(
    conn: &Connection,
    tenant: &str,
    dim: Dimension,
    stream: Option<&str>,
    segments: &[Segment],
) -> Result<Vec<DimCountRow>, StoreError> {
    let mut out = Vec::new();
    for seg in segments {
        let (sql, from, to) = match *seg {
            Segment::Quarters { from_ms, to_ms } => (
                "SELECT value, SUM(sessions), SUM(listening_ms) FROM quarter_dims
                 WHERE tenant = ?1 AND dim = ?2 AND quarter_ms >= ?3 AND quarter_ms < ?4 AND (?5 IS NULL OR stream = ?5)
                 GROUP BY value",
                from_ms,
                to_ms,
            ),
            Segment::Days { from_ms, to_ms } => (
                "SELECT value, SUM(sessions), SUM(listening_ms) FROM day_dims
                 WHERE tenant = ?1 AND dim = ?2 AND day_ms >= ?3 AND day_ms < ?4 AND (?5 IS NULL OR stream = ?5)
                 GROUP BY value",
                from_ms,
                to_ms,
            ),
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map(params![tenant, dim.as_str(), from, to, stream], |r| {
            Ok(DimCountRow {
                value: r.get(0)?,
                sessions: r.get::<_, i64>(1)?.max(0) as u64,
                listening_ms: r.get::<_, i64>(2)?.max(0) as u64,
            })
        })?;
        for r in rows {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Per-value sketches: whole days from the day table, the edges from the hour table (whole
/// UTC hours overlapping the edge, as dimension uniques are kept per hour).
pub fn dim_sketches(
    conn: &Connection,
    tenant: &str,
    dim: Dimension,
    stream: Option<&str>,
    segments: &[Segment],
) -> Result<Vec<(String, UniqueSketch)>, StoreError> {
    let mut merged: BTreeMap<String, UniqueSketch> = BTreeMap::new();
    for seg in segments {
        let (sql, table, from, to) = match *seg {
            Segment::Quarters { from_ms, to_ms } => (
                "SELECT value, sketch FROM hour_dim_uniques
                 WHERE tenant = ?1 AND dim = ?2 AND hour_ms >= ?3 AND hour_ms < ?4 AND (?5 IS NULL OR stream = ?5)",
                "hour_dim_uniques",
                earshot_common::time::floor_to(from_ms, HOUR_MS),
                ceil_to(to_ms, HOUR_MS),
            ),
            Segment::Days { from_ms, to_ms } => (
                "SELECT value, sketch FROM day_dim_uniques
                 WHERE tenant = ?1 AND dim = ?2 AND day_ms >= ?3 AND day_ms < ?4 AND (?5 IS NULL OR stream = ?5)",
                "day_dim_uniques",
                from_ms,
                to_ms,
            ),
        };
        let mut stmt = conn.prepare_cached(sql)?;
        let mut rows = stmt.query(params![tenant, dim.as_str(), from, to, stream])?;
        while let Some(r) = rows.next()? {
            let value: String = r.get(0)?;
            let sketch = decode_sketch(
                r.get_ref(1)?.as_blob().map_err(rusqlite::Error::from)?,
                table,
            )?;
            merged.entry(value).or_default().merge(&sketch);
        }
    }
    Ok(merged.into_iter().collect())
}

pub fn tenants(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT tenant FROM tenants ORDER BY tenant")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// An agent's counters summed over its merged batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentTotals {
    pub batches: u64,
    pub lines: u64,
    pub malformed: BTreeMap<String, u64>,
    /// 2xx requests that were not sessions, by (tenant, kind).
    pub not_sessions: BTreeMap<(String, String), u64>,
    /// Names the agent folded into `(other)`, by (tenant, what).
    pub folded: BTreeMap<(String, String), u64>,
}

/// `(text, text, count)` rows as a map.
fn pair_counts(
    conn: &Connection,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<BTreeMap<(String, String), u64>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(p, |r| {
        Ok((
            (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
            r.get::<_, i64>(2)?.max(0) as u64,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn folded_totals(conn: &Connection) -> Result<BTreeMap<(String, String), u64>, StoreError> {
    pair_counts(conn, "SELECT tenant, what, names FROM folded_totals", [])
}

pub fn agent_totals(conn: &Connection, agent_id: &str) -> Result<Option<AgentTotals>, StoreError> {
    let head: Option<(i64, i64)> = conn
        .prepare_cached("SELECT batches, lines FROM agents WHERE agent_id = ?1")?
        .query_row([agent_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((batches, lines)) = head else {
        return Ok(None);
    };
    let mut stmt =
        conn.prepare_cached("SELECT reason, lines FROM agent_malformed WHERE agent_id = ?1")?;
    let malformed = stmt
        .query_map([agent_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
        })?
        .collect::<Result<_, _>>()?;
    let not_sessions = pair_counts(
        conn,
        "SELECT tenant, kind, requests FROM agent_not_sessions WHERE agent_id = ?1",
        [agent_id],
    )?;
    let folded = pair_counts(
        conn,
        "SELECT tenant, what, names FROM agent_folded WHERE agent_id = ?1",
        [agent_id],
    )?;
    Ok(Some(AgentTotals {
        batches: batches.max(0) as u64,
        lines: lines.max(0) as u64,
        malformed,
        not_sessions,
        folded,
    }))
}
