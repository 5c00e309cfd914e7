//! The reference implementation of DESIGN.md's "Metric definitions", over a list of sessions.
//!
//! Written to be obviously right, not fast: every metric is a loop over the sessions with the
//! definition's words in it. Times are UTC ms; a session is `[start_ms, end_ms)`; a range is
//! `[from_ms, to_ms)`.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::TruthSession;
use crate::format::{HOUR_MS, MINUTE_MS};

/// `min_session`: shorter sessions are short sessions.
pub const MIN_SESSION_MS: i64 = 60_000;
/// The AQH threshold within one quarter-hour.
pub const AQH_MIN_MS: i64 = 5 * MINUTE_MS;
pub const QUARTER_MS: i64 = 15 * MINUTE_MS;
/// Lower edges of the session-length buckets, in seconds.
pub const LENGTH_EDGES_S: [i64; 13] = [
    60, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 28800, 43200, 64800,
];

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub active_sessions: u64,
    pub listening_seconds: f64,
    pub unique_listeners: u64,
    pub peak_concurrent: u64,
    pub peak_at_ms: i64,
    pub average_listeners: f64,
    pub tsl_seconds: f64,
    pub aqh: f64,
    pub length_buckets: Vec<u64>,
}

/// Not a bot, and at least a minute long.
pub fn qualifies(s: &TruthSession) -> bool {
    !s.bot && s.length_ms() >= MIN_SESSION_MS
}

/// A bot's session, whatever its length.
pub fn is_bot_session(s: &TruthSession) -> bool {
    s.bot
}

/// Not a bot, shorter than a minute.
pub fn is_short(s: &TruthSession) -> bool {
    !s.bot && s.length_ms() < MIN_SESSION_MS
}

/// Milliseconds that `[a0, a1)` and `[b0, b1)` share.
pub fn overlap_ms(a0: i64, a1: i64, b0: i64, b1: i64) -> i64 {
    (a1.min(b1) - a0.max(b0)).max(0)
}

fn overlaps(s: &TruthSession, from_ms: i64, to_ms: i64) -> bool {
    s.start_ms < to_ms && s.end_ms > from_ms
}

fn floor_to(t: i64, width: i64) -> i64 {
    t.div_euclid(width) * width
}

/// The length bucket of a qualifying session: the last edge it reaches.
pub fn length_bucket(length_ms: i64) -> usize {
    LENGTH_EDGES_S
        .iter()
        .rposition(|&e| length_ms >= e * 1000)
        .unwrap_or(0)
}

/// The metrics of `tenant` (one `stream`, or all of them) over `[from_ms, to_ms)`.
///
/// Minutes (for the peak) are the clock minutes that start in `[floor(from), to)`; quarter-hours
/// (for AQH) likewise, and a listener's time in a quarter-hour is counted over the whole
/// quarter-hour — with quarter-aligned ranges, as the collector serves, that is the range.
pub fn metrics(
    sessions: &[TruthSession],
    tenant: &str,
    stream: Option<&str>,
    from_ms: i64,
    to_ms: i64,
) -> Metrics {
    let mine: Vec<&TruthSession> = sessions
        .iter()
        .filter(|s| s.tenant == tenant && stream.is_none_or(|st| s.stream == st))
        .collect();
    let mut m = Metrics {
        length_buckets: vec![0; LENGTH_EDGES_S.len()],
        ..Metrics::default()
    };
    if to_ms <= from_ms {
        return m;
    }

    let mut listening_ms: i64 = 0;
    let mut uniques = HashSet::new();
    for s in &mine {
        let started_in_range = s.start_ms >= from_ms && s.start_ms < to_ms;
        if started_in_range {
            if is_bot_session(s) {
                m.bot_sessions += 1;
            } else if is_short(s) {
                m.short_sessions += 1;
            } else {
                m.sessions += 1;
                m.length_buckets[length_bucket(s.length_ms())] += 1;
            }
        }
        if qualifies(s) && overlaps(s, from_ms, to_ms) {
            m.active_sessions += 1;
            listening_ms += overlap_ms(s.start_ms, s.end_ms, from_ms, to_ms);
            uniques.insert(&s.listener);
        }
    }
    m.listening_seconds = listening_ms as f64 / 1000.0;
    m.unique_listeners = uniques.len() as u64;
    m.average_listeners = m.listening_seconds / ((to_ms - from_ms) as f64 / 1000.0);
    m.tsl_seconds = if m.unique_listeners == 0 {
        0.0
    } else {
        m.listening_seconds / m.unique_listeners as f64
    };

    // Concurrency: for every minute, the qualifying sessions that overlap it.
    let first_minute = floor_to(from_ms, MINUTE_MS);
    let minutes = ((to_ms - first_minute) + MINUTE_MS - 1) / MINUTE_MS;
    let mut concurrent = vec![0u64; minutes as usize];
    for s in mine.iter().filter(|s| qualifies(s)) {
        for (i, c) in concurrent.iter_mut().enumerate() {
            let minute = first_minute + i as i64 * MINUTE_MS;
            if overlaps(s, minute, minute + MINUTE_MS) {
                *c += 1;
            }
        }
    }
    m.peak_at_ms = first_minute;
    for (i, &c) in concurrent.iter().enumerate() {
        if c > m.peak_concurrent {
            m.peak_concurrent = c;
            m.peak_at_ms = first_minute + i as i64 * MINUTE_MS;
        }
    }

    // AQH: per quarter-hour, listeners whose summed time in it reaches 5 minutes.
    let first_quarter = floor_to(from_ms, QUARTER_MS);
    let quarters = ((to_ms - first_quarter) + QUARTER_MS - 1) / QUARTER_MS;
    let mut qualified_listeners = 0u64;
    for q in 0..quarters {
        let q0 = first_quarter + q * QUARTER_MS;
        let mut time_by_listener: HashMap<&(String, String), i64> = HashMap::new();
        for s in mine.iter().filter(|s| qualifies(s)) {
            let t = overlap_ms(s.start_ms, s.end_ms, q0, q0 + QUARTER_MS);
            if t > 0 {
                *time_by_listener.entry(&s.listener).or_default() += t;
            }
        }
        qualified_listeners += time_by_listener
            .values()
            .filter(|&&t| t >= AQH_MIN_MS)
            .count() as u64;
    }
    m.aqh = qualified_listeners as f64 / quarters as f64;
    m
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HourOfDay {
    pub hour: u32,
    pub listening_seconds: f64,
    pub active_sessions: u64,
    pub unique_listeners: u64,
    pub sessions_started: u64,
    pub sessions_completed: u64,
}

/// By hour of day in a fixed UTC offset (minutes east, e.g. 330 for +05:30): 24 rows, each
/// summing that local hour over the days of `[from_ms, to_ms)`. Each (day, hour) interval is
/// clipped to the range. Qualifying sessions only.
pub fn by_hour(
    sessions: &[TruthSession],
    tenant: &str,
    from_ms: i64,
    to_ms: i64,
    utc_offset_minutes: i32,
) -> Vec<HourOfDay> {
    let offset_ms = i64::from(utc_offset_minutes) * MINUTE_MS;
    let mut rows: Vec<HourOfDay> = (0..24)
        .map(|hour| HourOfDay {
            hour,
            ..HourOfDay::default()
        })
        .collect();
    let mut listening_ms = [0i64; 24];
    let mut uniques: Vec<HashSet<&(String, String)>> = vec![HashSet::new(); 24];
    let mine: Vec<&TruthSession> = sessions
        .iter()
        .filter(|s| s.tenant == tenant && qualifies(s))
        .collect();

    // Walk the local clock hours: [h0, h0 + 1 h) in UTC, where h0 + offset is a whole hour.
    let mut h0 = floor_to(from_ms + offset_ms, HOUR_MS) - offset_ms;
    while h0 < to_ms {
        let local_hour = ((h0 + offset_ms).div_euclid(HOUR_MS)).rem_euclid(24) as usize;
        let a = h0.max(from_ms);
        let b = (h0 + HOUR_MS).min(to_ms);
        for s in &mine {
            if overlaps(s, a, b) {
                rows[local_hour].active_sessions += 1;
                listening_ms[local_hour] += overlap_ms(s.start_ms, s.end_ms, a, b);
                uniques[local_hour].insert(&s.listener);
            }
            if s.start_ms >= a && s.start_ms < b {
                rows[local_hour].sessions_started += 1;
            }
            if s.end_ms >= a && s.end_ms < b {
                rows[local_hour].sessions_completed += 1;
            }
        }
        h0 += HOUR_MS;
    }
    for (i, row) in rows.iter_mut().enumerate() {
        row.listening_seconds = listening_ms[i] as f64 / 1000.0;
        row.unique_listeners = uniques[i].len() as u64;
    }
    rows
}

/// The span "all time" means for [`per_tenant_totals`]: from the clock hour of the earliest
/// start to the end of the clock hour of the latest end, over all sessions of all tenants.
pub fn all_time(sessions: &[TruthSession]) -> (i64, i64) {
    let from = sessions.iter().map(|s| s.start_ms).min().unwrap_or(0);
    let to = sessions.iter().map(|s| s.end_ms).max().unwrap_or(0);
    (floor_to(from, HOUR_MS), floor_to(to - 1, HOUR_MS) + HOUR_MS)
}

/// Every tenant's metrics over [`all_time`].
pub fn per_tenant_totals(sessions: &[TruthSession]) -> BTreeMap<String, Metrics> {
    let (from, to) = all_time(sessions);
    let tenants: std::collections::BTreeSet<&str> =
        sessions.iter().map(|s| s.tenant.as_str()).collect();
    tenants
        .into_iter()
        .map(|t| (t.to_string(), metrics(sessions, t, None, from, to)))
        .collect()
}

/// Qualifying sessions by dimension value, per tenant: the dimensions `stream`, `rendition`,
/// `protocol`, `source` and `country`, over all the sessions (all time).
pub fn breakdowns(
    sessions: &[TruthSession],
) -> BTreeMap<String, BTreeMap<&'static str, BTreeMap<String, u64>>> {
    let mut out: BTreeMap<String, BTreeMap<&'static str, BTreeMap<String, u64>>> = BTreeMap::new();
    for s in sessions.iter().filter(|s| qualifies(s)) {
        let t = out.entry(s.tenant.clone()).or_default();
        for (dim, value) in [
            ("stream", s.stream.as_str()),
            ("rendition", s.rendition.as_str()),
            ("protocol", s.protocol),
            ("source", s.source.as_str()),
            ("country", s.country),
        ] {
            *t.entry(dim)
                .or_default()
                .entry(value.to_string())
                .or_default() += 1;
        }
    }
    out
}

/// One stream's totals over all time.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StreamTotals {
    /// `"icecast"` or `"hls"`.
    pub protocol: &'static str,
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub listening_seconds: f64,
    /// Qualifying sessions by rendition.
    pub renditions: BTreeMap<String, u64>,
}

/// Per tenant, per stream: sessions (qualifying, short, bot), listening time of the qualifying
/// ones and their renditions, over all the sessions.
pub fn per_stream(sessions: &[TruthSession]) -> BTreeMap<String, BTreeMap<String, StreamTotals>> {
    let mut out: BTreeMap<String, BTreeMap<String, StreamTotals>> = BTreeMap::new();
    let mut ms: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for s in sessions {
        let t = out
            .entry(s.tenant.clone())
            .or_default()
            .entry(s.stream.clone())
            .or_default();
        t.protocol = s.protocol;
        if is_bot_session(s) {
            t.bot_sessions += 1;
        } else if is_short(s) {
            t.short_sessions += 1;
        } else {
            t.sessions += 1;
            *t.renditions.entry(s.rendition.clone()).or_default() += 1;
            *ms.entry((&s.tenant, &s.stream)).or_default() += s.length_ms();
        }
    }
    for ((tenant, stream), v) in ms {
        out.get_mut(tenant)
            .unwrap()
            .get_mut(stream)
            .unwrap()
            .listening_seconds = v as f64 / 1000.0;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_824_000_000; // 2026-11-28T00:00:00Z
    const MIN: i64 = MINUTE_MS;

    fn s(listener: &str, stream: &str, start: i64, end: i64) -> TruthSession {
        TruthSession {
            tenant: "radio001".into(),
            stream: stream.into(),
            rendition: "none".into(),
            protocol: "icecast",
            listener: (listener.into(), "VLC/3.0.20 LibVLC/3.0.20".into()),
            start_ms: start,
            end_ms: end,
            bot: false,
            referrer_host: None,
            source: "direct".into(),
            host: "host-1".into(),
            country: "DE",
            status: 200,
            requests: 1,
        }
    }

    #[test]
    fn a_session_over_midnight_counts_in_both_days() {
        let v = vec![s(
            "10.0.0.1",
            "/radio001/live.mp3",
            T0 - 10 * MIN,
            T0 + 20 * MIN,
        )];
        let day1 = metrics(&v, "radio001", None, T0 - 24 * HOUR_MS, T0);
        let day2 = metrics(&v, "radio001", None, T0, T0 + 24 * HOUR_MS);
        assert_eq!(day1.listening_seconds, 600.0);
        assert_eq!(day2.listening_seconds, 1200.0);
        assert_eq!((day1.sessions, day2.sessions), (1, 0));
        assert_eq!((day1.active_sessions, day2.active_sessions), (1, 1));
        assert_eq!((day1.unique_listeners, day2.unique_listeners), (1, 1));
        assert_eq!(day1.length_buckets[4], 1); // exactly 30 min: the [30 min, 1 h) bucket
    }

    #[test]
    fn short_bot_and_threshold() {
        let mut bot = s("10.0.0.3", "/radio001/live.mp3", T0, T0 + 2 * HOUR_MS);
        bot.bot = true;
        let v = vec![
            s("10.0.0.1", "/radio001/live.mp3", T0, T0 + 59_000),
            s("10.0.0.2", "/radio001/live.mp3", T0, T0 + 59_999),
            s(
                "10.0.0.2",
                "/radio001/live.mp3",
                T0 + HOUR_MS,
                T0 + HOUR_MS + 60_000,
            ),
            bot,
        ];
        let m = metrics(&v, "radio001", None, T0, T0 + 3 * HOUR_MS);
        assert_eq!((m.sessions, m.short_sessions, m.bot_sessions), (1, 2, 1));
        assert_eq!(m.listening_seconds, 60.0);
        assert_eq!(m.unique_listeners, 1);
        assert_eq!(m.length_buckets[0], 1);
        assert_eq!(m.average_listeners, 60.0 / (3.0 * 3600.0));
        assert_eq!(m.tsl_seconds, 60.0);
    }

    #[test]
    fn aqh_sums_a_listeners_sessions_within_the_quarter() {
        // One listener, two 3-minute sessions in the first quarter: 6 min ≥ 5 → 1 listener.
        // Another listener, one 4-minute session: not counted. Second quarter: nobody.
        let v = vec![
            s("10.0.0.1", "/radio001/live.mp3", T0, T0 + 3 * MIN),
            s("10.0.0.1", "/radio001/aac", T0 + 5 * MIN, T0 + 8 * MIN),
            s("10.0.0.2", "/radio001/live.mp3", T0, T0 + 4 * MIN),
        ];
        let m = metrics(&v, "radio001", None, T0, T0 + 30 * MIN);
        assert_eq!(m.aqh, 0.5);
        // Per stream, each is 3 minutes: nobody qualifies.
        let m = metrics(
            &v,
            "radio001",
            Some("/radio001/live.mp3"),
            T0,
            T0 + 30 * MIN,
        );
        assert_eq!(m.aqh, 0.0);
    }

    #[test]
    fn peak_is_the_first_fullest_minute() {
        let v = vec![
            s("a", "/x", T0, T0 + 10 * MIN),
            s("b", "/x", T0 + 2 * MIN + 30_000, T0 + 5 * MIN),
            s("c", "/x", T0 + 4 * MIN, T0 + 4 * MIN + 60_000),
            s("d", "/x", T0 + 7 * MIN, T0 + 9 * MIN),
        ];
        let m = metrics(&v, "radio001", None, T0, T0 + HOUR_MS);
        // Minute 2: a, b. Minute 4: a, b, c. Minute 7: a, d.
        assert_eq!(m.peak_concurrent, 3);
        assert_eq!(m.peak_at_ms, T0 + 4 * MIN);
        assert_eq!(m.active_sessions, 4);
        let m = metrics(&v, "radio001", None, T0 + 6 * MIN, T0 + HOUR_MS);
        assert_eq!((m.peak_concurrent, m.peak_at_ms), (2, T0 + 7 * MIN));
        assert_eq!(m.sessions, 1);
        assert_eq!(m.active_sessions, 2);
    }

    #[test]
    fn by_hour_in_an_offset_time_zone() {
        // +05:30: 23:50–00:20 local = 18:20–18:50 UTC.
        let off = 330 * MIN;
        let local_midnight = T0 + 24 * HOUR_MS - off; // 2026-11-29T00:00+05:30
        let v = vec![
            s(
                "a",
                "/x",
                local_midnight - 10 * MIN,
                local_midnight + 20 * MIN,
            ),
            s(
                "a",
                "/x",
                local_midnight + 24 * HOUR_MS + 5 * MIN,
                local_midnight + 24 * HOUR_MS + 15 * MIN,
            ),
            s(
                "b",
                "/x",
                local_midnight + 10 * MIN,
                local_midnight + 50 * MIN,
            ),
        ];
        let rows = by_hour(
            &v,
            "radio001",
            local_midnight - 24 * HOUR_MS,
            local_midnight + 48 * HOUR_MS,
            330,
        );
        assert_eq!(rows.len(), 24);
        assert_eq!(rows[23].listening_seconds, 600.0);
        assert_eq!(rows[23].sessions_started, 1);
        assert_eq!(rows[23].sessions_completed, 0);
        assert_eq!(rows[0].listening_seconds, (20 + 10 + 40) as f64 * 60.0);
        assert_eq!(rows[0].active_sessions, 3);
        assert_eq!(rows[0].unique_listeners, 2);
        assert_eq!(rows[0].sessions_started, 2);
        assert_eq!(rows[0].sessions_completed, 3);
        assert_eq!(
            rows[1],
            HourOfDay {
                hour: 1,
                ..HourOfDay::default()
            }
        );
    }

    #[test]
    fn length_buckets_edges() {
        assert_eq!(length_bucket(60_000), 0);
        assert_eq!(length_bucket(299_999), 0);
        assert_eq!(length_bucket(300_000), 1);
        assert_eq!(length_bucket(30 * MIN), 4);
        assert_eq!(length_bucket(18 * HOUR_MS), 12);
        assert_eq!(length_bucket(30 * HOUR_MS), 12);
    }

    #[test]
    fn totals_cover_all_time() {
        let v = vec![s("a", "/x", T0 + 10 * MIN, T0 + 70 * MIN)];
        assert_eq!(all_time(&v), (T0, T0 + 2 * HOUR_MS));
        let t = per_tenant_totals(&v);
        assert_eq!(t["radio001"].listening_seconds, 3600.0);
        assert_eq!(t["radio001"].sessions, 1);
        // Quarters 0 (5 min), 1–3 (15 min) and 4 (10 min) of 8 reach 5 minutes.
        assert_eq!(t["radio001"].aqh, 5.0 / 8.0);
    }
}
