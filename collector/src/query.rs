//! The metric arithmetic of the API, as pure functions over rollup rows.
//!
//! The store hands over rows (quarter-hour or whole-UTC-day counters, minute or per-day peak
//! concurrency, dimension counters); this module decides which rows a range needs
//! ([`segments`]), cuts a range into buckets in a time zone ([`buckets`]) and turns rows into
//! the metrics of DESIGN.md ("Metric definitions"). Nothing here touches SQLite, so every rule
//! (the `carried_in` rule, AQH's zero quarters, local hours of +05:30) is tested on
//! hand-computed numbers below.
//!
//! Invariants: every range and bucket is quarter-aligned (`from` down, `to` up); a row always
//! lies entirely inside one bucket (a day row is only used for a UTC day that a bucket covers
//! whole).

use std::collections::BTreeMap;

use earshot_common::UniqueSketch;
use earshot_common::rollup::{LENGTH_BUCKETS, LENGTH_EDGES_S, Protocol};
use earshot_common::time::{DAY_MS, HOUR_MS, MINUTE_MS, QUARTER_MS, epoch_label, floor_to};
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};
use serde::Serialize;

use crate::time::rfc3339;

/// The most rows a timeseries answers with: 7 days of minutes.
pub const MAX_BUCKETS: usize = 7 * 24 * 60;

/// What is wrong with a request's parameters. The API maps every kind to a 4xx.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    #[error(
        "missing parameter `{param}`: expected an RFC 3339 time with an offset, e.g. 2026-11-28T00:00:00Z"
    )]
    MissingTime { param: &'static str },
    #[error(
        "parameter `{param}` is not a time: {value:?}; expected RFC 3339 with an offset, e.g. 2026-11-28T00:00:00Z or 2026-11-28T05:30:00+05:30"
    )]
    BadTime { param: &'static str, value: String },
    #[error("`from` ({from}) must be before `to` ({to})")]
    EmptyRange { from: String, to: String },
    #[error("the range spans {days:.2} days, over the limit of {max_days} days")]
    RangeTooLong { days: f64, max_days: u32 },
    #[error("unknown granularity {0:?}; expected one of minute, hour, day, week, month")]
    UnknownGranularity(String),
    #[error(
        "unknown time zone {0:?}; expected an IANA name (Europe/Paris) or a fixed offset (+05:30, -03:00, Z)"
    )]
    BadTimeZone(String),
    #[error(
        "the request would answer {buckets} rows, over the limit of {MAX_BUCKETS}; choose a coarser granularity or a shorter range (granularity=minute allows at most 7 days)"
    )]
    TooManyBuckets { buckets: usize },
}

/// A quarter-aligned half-open range `[from_ms, to_ms)` in UTC milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl TimeRange {
    /// Aligns `from` down and `to` up to the quarter-hour and checks the range against the
    /// limit. `from_ms < to_ms` is required.
    pub fn new(from_ms: i64, to_ms: i64, max_range_days: u32) -> Result<TimeRange, QueryError> {
        if from_ms >= to_ms {
            return Err(QueryError::EmptyRange {
                from: rfc3339(from_ms),
                to: rfc3339(to_ms),
            });
        }
        let range = TimeRange {
            from_ms: floor_to(from_ms, QUARTER_MS),
            to_ms: ceil_to(to_ms, QUARTER_MS),
        };
        if range.to_ms - range.from_ms > i64::from(max_range_days) * DAY_MS {
            return Err(QueryError::RangeTooLong {
                days: (range.to_ms - range.from_ms) as f64 / DAY_MS as f64,
                max_days: max_range_days,
            });
        }
        Ok(range)
    }

    pub fn quarters(&self) -> i64 {
        (self.to_ms - self.from_ms) / QUARTER_MS
    }

    /// Whether the identity epochs (calendar months, UTC) allow exact de-duplication.
    pub fn within_one_epoch(&self) -> bool {
        epoch_label(self.from_ms) == epoch_label(self.to_ms - 1)
    }
}

pub fn ceil_to(t_ms: i64, width_ms: i64) -> i64 {
    floor_to(t_ms + width_ms - 1, width_ms)
}

/// Parses a required RFC 3339 parameter into UTC milliseconds.
pub fn parse_instant(param: &'static str, value: Option<&str>) -> Result<i64, QueryError> {
    let value = value.ok_or(QueryError::MissingTime { param })?;
    value
        .parse::<Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| QueryError::BadTime {
            param,
            value: value.to_owned(),
        })
}

/// An IANA zone name, `UTC`/`Z`, or a fixed offset `±HH:MM` (or `±HHMM`, `±HH`).
pub fn parse_time_zone(s: &str) -> Result<TimeZone, QueryError> {
    let bad = || QueryError::BadTimeZone(s.to_owned());
    if s == "Z" || s.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = s
        .strip_prefix('+')
        .map(|r| (1, r))
        .or(s.strip_prefix('-').map(|r| (-1, r)))
    {
        let (sign, digits) = rest;
        let (h, m) = match digits.split_once(':') {
            Some((h, m)) => (h, m),
            None if digits.len() == 4 => digits.split_at(2),
            None => (digits, "0"),
        };
        let ok = |p: &str| !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit());
        if !ok(h) || !ok(m) {
            return Err(bad());
        }
        let (h, m): (i32, i32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 18 || m > 59 {
            return Err(bad());
        }
        let offset = Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|_| bad())?;
        return Ok(TimeZone::fixed(offset));
    }
    TimeZone::get(s).map_err(|_| bad())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Minute,
    Hour,
    Day,
    Week,
    Month,
}

impl Granularity {
    pub fn parse(s: &str) -> Result<Granularity, QueryError> {
        Ok(match s {
            "minute" => Granularity::Minute,
            "hour" => Granularity::Hour,
            "day" => Granularity::Day,
            "week" => Granularity::Week,
            "month" => Granularity::Month,
            _ => return Err(QueryError::UnknownGranularity(s.to_owned())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Minute => "minute",
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Week => "week",
            Granularity::Month => "month",
        }
    }
}

/// One row of a timeseries: `[from_ms, to_ms)`, clipped to the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    pub from_ms: i64,
    pub to_ms: i64,
}

impl Bucket {
    pub fn range(&self) -> TimeRange {
        TimeRange {
            from_ms: self.from_ms,
            to_ms: self.to_ms,
        }
    }
}

fn local_date(t_ms: i64, tz: &TimeZone) -> Date {
    let t = Timestamp::from_millisecond(t_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    t.to_zoned(tz.clone()).date()
}

/// Start of the local day `d` in UTC ms, floored to a quarter (only historical zones have
/// offsets that are not whole quarters).
fn local_midnight(d: Date, tz: &TimeZone) -> i64 {
    match d.to_zoned(tz.clone()) {
        Ok(z) => floor_to(z.timestamp().as_millisecond(), QUARTER_MS),
        Err(_) => i64::MAX,
    }
}

fn offset_ms(t_ms: i64, tz: &TimeZone) -> i64 {
    let t = Timestamp::from_millisecond(t_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    i64::from(tz.to_offset(t).seconds()) * 1000
}

/// Local wall-clock milliseconds since the local epoch at the UTC instant `t_ms`.
pub fn local_ms(t_ms: i64, tz: &TimeZone) -> i64 {
    t_ms + offset_ms(t_ms, tz)
}

/// Cuts `range` into the buckets of `granularity` in `tz` (weeks start on Monday), each
/// clipped to the range.
pub fn buckets(
    range: TimeRange,
    granularity: Granularity,
    tz: &TimeZone,
) -> Result<Vec<Bucket>, QueryError> {
    let TimeRange { from_ms, to_ms } = range;
    let mut out = Vec::new();
    match granularity {
        Granularity::Minute => {
            let n = ((to_ms - from_ms) / MINUTE_MS) as usize;
            if n > MAX_BUCKETS {
                return Err(QueryError::TooManyBuckets { buckets: n });
            }
            let mut t = from_ms;
            while t < to_ms {
                out.push(Bucket {
                    from_ms: t,
                    to_ms: t + MINUTE_MS,
                });
                t += MINUTE_MS;
            }
        }
        Granularity::Hour => {
            let n = ((to_ms - from_ms) / HOUR_MS) as usize;
            if n > MAX_BUCKETS + 24 {
                return Err(QueryError::TooManyBuckets { buckets: n });
            }
            // A new local hour starts where the local wall clock reads hh:00, DST included.
            let mut start = from_ms;
            let mut t = from_ms + QUARTER_MS;
            while t < to_ms {
                if local_ms(t, tz).rem_euclid(HOUR_MS) == 0 {
                    out.push(Bucket {
                        from_ms: start,
                        to_ms: t,
                    });
                    start = t;
                }
                t += QUARTER_MS;
            }
            out.push(Bucket {
                from_ms: start,
                to_ms,
            });
        }
        Granularity::Day | Granularity::Week | Granularity::Month => {
            let d = local_date(from_ms, tz);
            let (mut d, step) = match granularity {
                Granularity::Day => (d, jiff::Span::new().days(1)),
                Granularity::Week => (
                    d.checked_sub(jiff::Span::new().days(d.weekday().to_monday_zero_offset()))
                        .unwrap_or(d),
                    jiff::Span::new().days(7),
                ),
                _ => (d.first_of_month(), jiff::Span::new().months(1)),
            };
            let mut start = from_ms;
            while start < to_ms {
                let Ok(next) = d.checked_add(step) else { break };
                let end = local_midnight(next, tz).min(to_ms);
                if end > start {
                    out.push(Bucket {
                        from_ms: start,
                        to_ms: end,
                    });
                    start = end;
                }
                d = next;
                if out.len() > MAX_BUCKETS {
                    return Err(QueryError::TooManyBuckets { buckets: out.len() });
                }
            }
        }
    }
    if out.len() > MAX_BUCKETS {
        return Err(QueryError::TooManyBuckets { buckets: out.len() });
    }
    Ok(out)
}

/// A piece of a range read at one resolution: quarter rows, or whole-UTC-day rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Quarters { from_ms: i64, to_ms: i64 },
    Days { from_ms: i64, to_ms: i64 },
}

/// The reads a set of buckets needs: whole UTC days inside a bucket from the day rollups, the
/// ragged edges from quarters. Adjacent reads of one kind are coalesced.
pub fn segments(buckets: &[Bucket]) -> Vec<Segment> {
    let mut out: Vec<Segment> = Vec::new();
    let mut push = |seg: Segment| match (out.last_mut(), seg) {
        (Some(Segment::Quarters { to_ms, .. }), Segment::Quarters { from_ms, to_ms: t })
            if *to_ms == from_ms =>
        {
            *to_ms = t
        }
        (Some(Segment::Days { to_ms, .. }), Segment::Days { from_ms, to_ms: t })
            if *to_ms == from_ms =>
        {
            *to_ms = t
        }
        _ => out.push(seg),
    };
    for b in buckets {
        let first_day = ceil_to(b.from_ms, DAY_MS);
        let last_day = floor_to(b.to_ms, DAY_MS);
        if first_day < last_day {
            if b.from_ms < first_day {
                push(Segment::Quarters {
                    from_ms: b.from_ms,
                    to_ms: first_day,
                });
            }
            push(Segment::Days {
                from_ms: first_day,
                to_ms: last_day,
            });
            if last_day < b.to_ms {
                push(Segment::Quarters {
                    from_ms: last_day,
                    to_ms: b.to_ms,
                });
            }
        } else {
            push(Segment::Quarters {
                from_ms: b.from_ms,
                to_ms: b.to_ms,
            });
        }
    }
    out
}

/// The counters of one stream over one quarter-hour or one whole UTC day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CounterRow {
    /// Start of the quarter or of the UTC day.
    pub start_ms: i64,
    pub stream: String,
    pub protocol: Option<Protocol>,
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub completed: u64,
    /// `carried_in` of the row's first quarter (a day row keeps its first quarter's).
    pub carried_in: u64,
    pub listening_ms: u64,
    /// Summed over the row's quarters.
    pub aqh_listeners: u64,
    /// The tenant-wide AQH audience attributed to this stream, summed over the row's quarters.
    pub aqh_tenant_listeners: u64,
    pub lengths: [u64; LENGTH_BUCKETS],
    /// Present when the read asked for sketches.
    pub uniques: Option<UniqueSketch>,
}

/// Concurrency: a minute (sum over the selected streams) or a UTC day's peak with its minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeakRow {
    /// Start of the minute or the UTC day (decides the bucket).
    pub start_ms: i64,
    /// The minute of the peak.
    pub at_ms: i64,
    pub listeners: u64,
    /// Set when rows are kept per stream (the `stream` breakdown).
    pub stream: Option<String>,
}

/// Sums rows into the metrics of one bucket.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub completed: u64,
    pub first_carried_in: u64,
    pub listening_ms: u64,
    pub aqh_listeners: u64,
    pub aqh_tenant_listeners: u64,
    pub lengths: [u64; LENGTH_BUCKETS],
    pub uniques: UniqueSketch,
    pub peak: u64,
    pub peak_at_ms: Option<i64>,
}

impl Accumulator {
    /// Adds a row of a bucket that starts at `bucket_from_ms`.
    pub fn add_counters(&mut self, row: &CounterRow, bucket_from_ms: i64) {
        self.sessions += row.sessions;
        self.short_sessions += row.short_sessions;
        self.bot_sessions += row.bot_sessions;
        self.completed += row.completed;
        if row.start_ms == bucket_from_ms {
            self.first_carried_in += row.carried_in;
        }
        self.listening_ms += row.listening_ms;
        self.aqh_listeners += row.aqh_listeners;
        self.aqh_tenant_listeners += row.aqh_tenant_listeners;
        for (a, b) in self.lengths.iter_mut().zip(row.lengths.iter()) {
            *a += b;
        }
        if let Some(s) = &row.uniques {
            self.uniques.merge(s);
        }
    }

    /// Keeps the highest peak; on a tie the earliest minute.
    pub fn add_peak(&mut self, listeners: u64, at_ms: i64) {
        if listeners == 0 {
            return;
        }
        let better = match self.peak_at_ms {
            None => true,
            Some(at) => listeners > self.peak || (listeners == self.peak && at_ms < at),
        };
        if better {
            self.peak = listeners;
            self.peak_at_ms = Some(at_ms);
        }
    }

    /// The metrics of a whole tenant (AQH counts a listener once across its streams).
    pub fn tenant_metrics(&self, range: TimeRange) -> Metrics {
        Metrics {
            aqh: self.aqh_tenant_listeners as f64 / range.quarters().max(1) as f64,
            ..self.metrics(range)
        }
    }

    /// The metrics of one stream (or a group of rows per stream).
    pub fn metrics(&self, range: TimeRange) -> Metrics {
        let listening_seconds = self.listening_ms as f64 / 1000.0;
        let unique_listeners = self.uniques.estimate();
        let range_s = (range.to_ms - range.from_ms) as f64 / 1000.0;
        Metrics {
            sessions: self.sessions,
            short_sessions: self.short_sessions,
            bot_sessions: self.bot_sessions,
            active_sessions: self.sessions + self.first_carried_in,
            listening_seconds,
            tlh: listening_seconds / 3600.0,
            unique_listeners,
            unique_listeners_exact_across_epochs: range.within_one_epoch(),
            peak_concurrent: self.peak,
            peak_at: self.peak_at_ms.map(rfc3339),
            average_listeners: if range_s > 0.0 {
                listening_seconds / range_s
            } else {
                0.0
            },
            tsl_seconds: if unique_listeners > 0 {
                listening_seconds / unique_listeners as f64
            } else {
                0.0
            },
            aqh: self.aqh_listeners as f64 / range.quarters().max(1) as f64,
        }
    }
}

/// The metrics of DESIGN.md over one range, with the API's field names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub active_sessions: u64,
    pub listening_seconds: f64,
    pub tlh: f64,
    pub unique_listeners: u64,
    pub unique_listeners_exact_across_epochs: bool,
    pub peak_concurrent: u64,
    pub peak_at: Option<String>,
    pub average_listeners: f64,
    pub tsl_seconds: f64,
    pub aqh: f64,
}

/// Index of the bucket containing `t_ms` (buckets are sorted and contiguous).
pub fn bucket_index(buckets: &[Bucket], t_ms: i64) -> Option<usize> {
    let i = buckets.partition_point(|b| b.from_ms <= t_ms);
    (i > 0 && t_ms < buckets[i - 1].to_ms).then(|| i - 1)
}

/// Sums rows into one accumulator per bucket. Rows outside every bucket are ignored.
pub fn accumulate(
    buckets: &[Bucket],
    counters: &[CounterRow],
    peaks: &[PeakRow],
) -> Vec<Accumulator> {
    let mut acc = vec![Accumulator::default(); buckets.len()];
    for row in counters {
        if let Some(i) = bucket_index(buckets, row.start_ms) {
            acc[i].add_counters(row, buckets[i].from_ms);
        }
    }
    for p in peaks {
        if let Some(i) = bucket_index(buckets, p.start_ms) {
            acc[i].add_peak(p.listeners, p.at_ms);
        }
    }
    acc
}

/// Per-minute concurrency summed over streams (for minute rows read per stream).
pub fn sum_minutes(rows: &[PeakRow]) -> Vec<PeakRow> {
    let mut by_minute: BTreeMap<i64, u64> = BTreeMap::new();
    for r in rows {
        *by_minute.entry(r.start_ms).or_default() += r.listeners;
    }
    by_minute
        .into_iter()
        .map(|(t, n)| PeakRow {
            start_ms: t,
            at_ms: t,
            listeners: n,
            stream: None,
        })
        .collect()
}

/// One local hour of the `by-hour` report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HourOfDayRow {
    pub hour: u8,
    pub listening_seconds: f64,
    pub active_sessions: u64,
    pub unique_listeners: u64,
    pub sessions_started: u64,
    pub sessions_completed: u64,
}

/// Groups quarter rows of `range` by their local hour in `tz`. Each occurrence of a local hour
/// (one per day, two on a DST fall-back) counts its starts plus the `carried_in` of its first
/// quarter inside the range, so `active_sessions` sums sessions overlapping that hour per day.
pub fn by_hour(range: TimeRange, quarters: &[CounterRow], tz: &TimeZone) -> Vec<HourOfDayRow> {
    let mut listening_ms = [0u64; 24];
    let mut rows: Vec<HourOfDayRow> = (0..24)
        .map(|h| HourOfDayRow {
            hour: h as u8,
            ..Default::default()
        })
        .collect();
    let mut uniques: Vec<UniqueSketch> = vec![UniqueSketch::new(); 24];
    let mut cached: Option<(i64, i64)> = None;
    for q in quarters {
        if q.start_ms < range.from_ms || q.start_ms >= range.to_ms {
            continue;
        }
        let local = match cached {
            Some((t, l)) if t == q.start_ms => l,
            _ => {
                let l = local_ms(q.start_ms, tz);
                cached = Some((q.start_ms, l));
                l
            }
        };
        let h = (local.rem_euclid(DAY_MS) / HOUR_MS) as usize;
        let occurrence_start = local.rem_euclid(HOUR_MS) == 0 || q.start_ms == range.from_ms;
        let row = &mut rows[h];
        listening_ms[h] += q.listening_ms;
        row.sessions_started += q.sessions;
        row.sessions_completed += q.completed;
        row.active_sessions += q.sessions + if occurrence_start { q.carried_in } else { 0 };
        if let Some(s) = &q.uniques {
            uniques[h].merge(s);
        }
    }
    for (h, row) in rows.iter_mut().enumerate() {
        row.listening_seconds = listening_ms[h] as f64 / 1000.0;
        row.unique_listeners = uniques[h].estimate();
    }
    rows
}

/// One bucket of the session length breakdown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LengthRow {
    pub min_seconds: u64,
    pub max_seconds: Option<u64>,
    pub sessions: u64,
}

pub fn length_rows(lengths: &[u64; LENGTH_BUCKETS]) -> Vec<LengthRow> {
    (0..LENGTH_BUCKETS)
        .map(|i| LengthRow {
            min_seconds: LENGTH_EDGES_S[i],
            max_seconds: LENGTH_EDGES_S.get(i + 1).copied(),
            sessions: lengths[i],
        })
        .collect()
}

/// Dimension counters of one value over one quarter or whole UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DimCountRow {
    pub value: String,
    pub sessions: u64,
    pub listening_ms: u64,
}

/// One row of a breakdown. The optional fields are there for `stream` and `protocol`, whose
/// values are rollup keys and so carry the summary's metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownRow {
    pub value: String,
    pub sessions: u64,
    pub listening_seconds: f64,
    pub unique_listeners: u64,
    /// sessions / sessions of all rows (0 to 1).
    pub share: f64,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub detail: Option<BreakdownDetail>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakdownDetail {
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub active_sessions: u64,
    pub tlh: f64,
    pub average_listeners: f64,
    pub tsl_seconds: f64,
    pub aqh: f64,
    /// Only for `stream`: concurrency is stored per stream, not per protocol.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_concurrent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_at: Option<Option<String>>,
}

/// Sorts by sessions (highest first, ties by value) and fills in `share`.
pub fn finish_breakdown(mut rows: Vec<BreakdownRow>) -> Vec<BreakdownRow> {
    let total: u64 = rows.iter().map(|r| r.sessions).sum();
    for r in &mut rows {
        r.share = if total > 0 {
            r.sessions as f64 / total as f64
        } else {
            0.0
        };
    }
    rows.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| a.value.cmp(&b.value))
    });
    rows
}

/// A breakdown by a rollup key (`stream` or `protocol`): every metric of the summary per value.
pub fn key_breakdown(
    range: TimeRange,
    counters: &[CounterRow],
    peaks: Option<&[PeakRow]>,
    key: impl Fn(&CounterRow) -> String,
) -> Vec<BreakdownRow> {
    let mut groups: BTreeMap<String, Accumulator> = BTreeMap::new();
    for row in counters {
        groups
            .entry(key(row))
            .or_default()
            .add_counters(row, range.from_ms);
    }
    if let Some(peaks) = peaks {
        for p in peaks {
            if let Some(stream) = &p.stream {
                groups
                    .entry(stream.clone())
                    .or_default()
                    .add_peak(p.listeners, p.at_ms);
            }
        }
    }
    let rows = groups
        .into_iter()
        .map(|(value, acc)| {
            let m = acc.metrics(range);
            BreakdownRow {
                value,
                sessions: m.sessions,
                listening_seconds: m.listening_seconds,
                unique_listeners: m.unique_listeners,
                share: 0.0,
                detail: Some(BreakdownDetail {
                    short_sessions: m.short_sessions,
                    bot_sessions: m.bot_sessions,
                    active_sessions: m.active_sessions,
                    tlh: m.tlh,
                    average_listeners: m.average_listeners,
                    tsl_seconds: m.tsl_seconds,
                    aqh: m.aqh,
                    peak_concurrent: peaks.map(|_| m.peak_concurrent),
                    peak_at: peaks.map(|_| m.peak_at.clone()),
                }),
            }
        })
        .collect();
    finish_breakdown(rows)
}

/// A breakdown by a session attribute, from dimension counters and per-value sketches.
pub fn dimension_breakdown(
    counts: &[DimCountRow],
    sketches: Vec<(String, UniqueSketch)>,
) -> Vec<BreakdownRow> {
    let mut groups: BTreeMap<String, (u64, u64, UniqueSketch)> = BTreeMap::new();
    for c in counts {
        let g = groups.entry(c.value.clone()).or_default();
        g.0 += c.sessions;
        g.1 += c.listening_ms;
    }
    for (value, s) in sketches {
        groups.entry(value).or_default().2.merge(&s);
    }
    let rows = groups
        .into_iter()
        .map(|(value, (sessions, listening_ms, uniques))| BreakdownRow {
            value,
            sessions,
            listening_seconds: listening_ms as f64 / 1000.0,
            unique_listeners: uniques.estimate(),
            share: 0.0,
            detail: None,
        })
        .collect();
    finish_breakdown(rows)
}

#[cfg(test)]
mod tests;
