//! What `ingest --dry-run` prints: totals over all the rollups a run produced.

use std::collections::BTreeMap;

use earshot_common::wire::AgentCounters;
use earshot_common::{HourKey, HourRollup, UniqueSketch};
use serde::Serialize;

#[derive(Debug, Default, Serialize)]
pub struct DryRunReport {
    pub lines: u64,
    pub malformed_lines: u64,
    /// Size of these aggregates as one compressed batch: what shipping them puts on the wire
    /// (before QUIC and TLS framing).
    pub wire_bytes: u64,
    pub malformed: BTreeMap<String, u64>,
    /// Request lines that formed no session because of their status (non-2xx, and lines a
    /// rule ignores), by status.
    pub not_sessions_by_status: BTreeMap<String, u64>,
    /// Successful requests that are not audio, by kind (docs/traffic.md): `document`,
    /// `image`, `script`, `player_file`, `status_page`, `method`, `other`, `ignored`.
    pub not_sessions: BTreeMap<String, u64>,
    pub tenants: BTreeMap<String, TenantTotals>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<HourRow>>,
}

#[derive(Debug, Default, Serialize)]
pub struct TenantTotals {
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub listening_seconds: f64,
    pub unique_listeners: u64,
    pub peak_concurrent: u64,
    pub streams: usize,
    /// Qualifying sessions by dimension value (stream, protocol, client, device, os,
    /// country, referrer, source, rendition).
    pub breakdowns: BTreeMap<&'static str, BTreeMap<String, u64>>,
    /// Successful requests that are not audio, by kind.
    pub not_sessions: BTreeMap<String, u64>,
    /// Sessions folded into `(other)` by the `[limits]` bounds, by what was folded.
    pub folded: BTreeMap<String, u64>,
    #[serde(skip)]
    uniques: UniqueSketch,
    #[serde(skip)]
    minutes: BTreeMap<i64, u64>,
}

#[derive(Debug, Serialize)]
pub struct HourRow {
    pub tenant: String,
    pub stream: String,
    pub protocol: &'static str,
    pub hour: String,
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub listening_seconds: f64,
    pub unique_listeners: u64,
    pub peak_concurrent: u32,
}

impl DryRunReport {
    pub fn new(
        rollups: &[(HourKey, HourRollup)],
        counters: &AgentCounters,
        detail: bool,
    ) -> DryRunReport {
        let wire_bytes = compressed_batch_size(rollups, counters);
        let mut report = DryRunReport {
            wire_bytes,
            lines: counters.lines,
            malformed_lines: counters.malformed_lines(),
            malformed: counters.malformed.clone(),
            ..Default::default()
        };
        for ((_, status), n) in &counters.by_status {
            *report
                .not_sessions_by_status
                .entry(status.to_string())
                .or_default() += n;
        }
        for ((tenant, kind), n) in &counters.not_sessions {
            *report.not_sessions.entry(kind.clone()).or_default() += n;
            *report
                .tenants
                .entry(tenant.clone())
                .or_default()
                .not_sessions
                .entry(kind.clone())
                .or_default() += n;
        }
        for ((tenant, what), n) in &counters.folded {
            *report
                .tenants
                .entry(tenant.clone())
                .or_default()
                .folded
                .entry(what.clone())
                .or_default() += n;
        }
        let mut streams: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
        let mut hours = Vec::new();
        for (key, r) in rollups {
            let t = report.tenants.entry(key.tenant.clone()).or_default();
            streams
                .entry(key.tenant.clone())
                .or_default()
                .insert(&key.stream);
            let mut hour_uniques = UniqueSketch::new();
            let (mut s, mut sh, mut b, mut ms) = (0, 0, 0, 0);
            for q in &r.quarters {
                s += q.sessions;
                sh += q.short_sessions;
                b += q.bot_sessions;
                ms += q.listening_ms;
                hour_uniques.merge(&q.uniques);
                for ((dim, value), c) in &q.dims {
                    if c.sessions > 0 {
                        *t.breakdowns
                            .entry(dim.as_str())
                            .or_default()
                            .entry(value.clone())
                            .or_default() += c.sessions;
                    }
                }
            }
            if s > 0 {
                *t.breakdowns
                    .entry("stream")
                    .or_default()
                    .entry(key.stream.clone())
                    .or_default() += s;
                *t.breakdowns
                    .entry("protocol")
                    .or_default()
                    .entry(r.protocol.as_str().to_string())
                    .or_default() += s;
            }
            t.sessions += s;
            t.short_sessions += sh;
            t.bot_sessions += b;
            t.listening_seconds += ms as f64 / 1000.0;
            t.uniques.merge(&hour_uniques);
            for (i, m) in r.minutes.iter().enumerate() {
                *t.minutes
                    .entry(key.hour_ms + i as i64 * 60_000)
                    .or_default() += *m as u64;
            }
            if detail {
                hours.push(HourRow {
                    tenant: key.tenant.clone(),
                    stream: key.stream.clone(),
                    protocol: r.protocol.as_str(),
                    hour: rfc3339(key.hour_ms),
                    sessions: s,
                    short_sessions: sh,
                    bot_sessions: b,
                    listening_seconds: ms as f64 / 1000.0,
                    unique_listeners: hour_uniques.estimate(),
                    peak_concurrent: r.minutes.iter().copied().max().unwrap_or(0),
                });
            }
        }
        for (name, t) in report.tenants.iter_mut() {
            t.unique_listeners = t.uniques.estimate();
            t.peak_concurrent = t.minutes.values().copied().max().unwrap_or(0);
            t.streams = streams.get(name).map_or(0, |s| s.len());
        }
        if detail {
            report.hours = Some(hours);
        }
        report
    }
}

/// What [`earshot_common::wire::compress_batch`] would make of these aggregates, measured
/// without copying them: a borrowed batch (postcard encodes it the same) streamed through a
/// 64 KiB buffer into deflate and a byte counter. The buffer matters: postcard writes field
/// by field, and deflate called on every few bytes costs more than the whole dry run's
/// parsing; encoding the whole batch first would cost its size in memory.
fn compressed_batch_size(rollups: &[(HourKey, HourRollup)], counters: &AgentCounters) -> u64 {
    use std::io::Write;
    #[derive(Serialize)]
    struct BatchRef<'a> {
        agent_id: &'a str,
        seq: u64,
        rollups: &'a [(HourKey, HourRollup)],
        counters: &'a AgentCounters,
    }
    struct Count(u64);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let batch = BatchRef {
        agent_id: "",
        seq: 0,
        rollups,
        counters,
    };
    let z = flate2::write::DeflateEncoder::new(
        Count(0),
        flate2::Compression::new(earshot_common::wire::BATCH_DEFLATE_LEVEL),
    );
    let Ok(buffered) = postcard::to_io(&batch, std::io::BufWriter::with_capacity(1 << 16, z))
    else {
        return 0;
    };
    let Ok(z) = buffered.into_inner() else {
        return 0;
    };
    z.finish().map_or(0, |c| c.0)
}

pub fn rfc3339(t_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(t_ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
