//! Sessions → per (tenant, stream, hour) rollups. Pure: sessions in, rollups out.
//!
//! A session contributes to every quarter-hour and minute it overlaps, however long ago it
//! started (a progressive session is only logged when it ends), so rollups of old hours keep
//! receiving deltas; the collector adds them up. AQH needs each listener's summed time per
//! quarter, which no single session knows: the accumulator keeps that per (stream, quarter,
//! listener) for a day of log time and counts a listener once, when they reach five minutes.

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::Arc;

use earshot_common::rollup::{DimCounts, length_bucket};
use earshot_common::time::{HOUR_MS, MINUTE_MS, QUARTER_MS, floor_to, hour_start, overlap_ms};
use earshot_common::{Dimension, HourKey, HourRollup, ListenerId, Protocol, UniqueSketch};
use serde::{Deserialize, Serialize};

pub type StreamId = u32;
pub type ValueId = u32;

/// AQH threshold: five minutes within a quarter-hour.
const AQH_MS: u32 = 5 * 60_000;
/// How long per-quarter listening time is remembered for AQH.
const AQH_HORIZON_MS: i64 = 26 * HOUR_MS;
/// At most this many (listener, quarter) AQH entries are kept: under a flood of distinct
/// listeners older quarters are forgotten first (a listener whose time in such a quarter
/// arrives later may then go uncounted for AQH; nothing else is affected).
const MAX_AQH_ENTRIES: usize = 600_000;

/// One finished session, with interned names (see [`Accumulator::stream_id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Session {
    pub stream: StreamId,
    pub listener: ListenerId,
    /// Value ids per dimension, in `Dimension::ALL` order.
    pub dims: [ValueId; Dimension::COUNT],
    pub start_ms: i64,
    pub end_ms: i64,
    pub bot: bool,
}

#[derive(Clone, Debug)]
struct StreamInfo {
    tenant: Arc<str>,
    tenant_ix: u32,
    stream: Arc<str>,
    protocol: Protocol,
}

#[derive(Default)]
struct HourAcc {
    minutes: Vec<u32>,
    quarters: [QuarterAcc; 4],
    dim_uniques: HashMap<(u8, ValueId), UniqueSketch>,
}

#[derive(Default)]
struct QuarterAcc {
    q: earshot_common::QuarterRollup,
    dims: HashMap<(u8, ValueId), DimCounts>,
}

pub struct Accumulator {
    min_session_ms: i64,
    streams: Vec<StreamInfo>,
    stream_index: HashMap<(Arc<str>, Arc<str>), StreamId>,
    values: [Vec<Arc<str>>; Dimension::COUNT],
    value_index: [HashMap<Arc<str>, ValueId>; Dimension::COUNT],
    hours: HashMap<(StreamId, i64), HourAcc>,
    aqh: HashMap<(StreamId, i64, ListenerId), u32>,
    /// The same over all streams of a tenant, keyed by tenant index.
    aqh_tenant: HashMap<(u32, i64, ListenerId), u32>,
    tenant_index: HashMap<Arc<str>, u32>,
    aqh_pruned_at: i64,
}

impl Accumulator {
    pub fn new(min_session_secs: u64) -> Accumulator {
        Accumulator {
            min_session_ms: min_session_secs as i64 * 1000,
            streams: Vec::new(),
            stream_index: HashMap::default(),
            values: Default::default(),
            value_index: Default::default(),
            hours: HashMap::default(),
            aqh: HashMap::default(),
            aqh_tenant: HashMap::default(),
            tenant_index: HashMap::default(),
            aqh_pruned_at: i64::MIN,
        }
    }

    pub fn stream_id(&mut self, tenant: &str, stream: &str, protocol: Protocol) -> StreamId {
        let key: (Arc<str>, Arc<str>) = (tenant.into(), stream.into());
        if let Some(&id) = self.stream_index.get(&key) {
            return id;
        }
        let id = self.streams.len() as StreamId;
        let next = self.tenant_index.len() as u32;
        let tenant_ix = *self.tenant_index.entry(key.0.clone()).or_insert(next);
        self.streams.push(StreamInfo {
            tenant: key.0.clone(),
            tenant_ix,
            stream: key.1.clone(),
            protocol,
        });
        self.stream_index.insert(key, id);
        id
    }

    pub fn stream_tenant(&self, id: StreamId) -> &str {
        &self.streams[id as usize].tenant
    }

    pub fn stream_name(&self, id: StreamId) -> &str {
        &self.streams[id as usize].stream
    }

    /// Interns a dimension value.
    pub fn value_id(&mut self, dim: Dimension, value: &str) -> ValueId {
        let d = dim as usize;
        if let Some(&id) = self.value_index[d].get(value) {
            return id;
        }
        let id = self.values[d].len() as ValueId;
        let v: Arc<str> = value.into();
        self.values[d].push(v.clone());
        self.value_index[d].insert(v, id);
        id
    }

    pub fn value(&self, dim: Dimension, id: ValueId) -> &str {
        &self.values[dim as usize][id as usize]
    }

    /// Adds one finished session.
    pub fn add(&mut self, s: &Session) {
        let length = s.end_ms - s.start_ms;
        let start_hour = hour_start(s.start_ms);
        let start_q = quarter_index(s.start_ms);
        if s.bot {
            self.hour(s.stream, start_hour).quarters[start_q]
                .q
                .bot_sessions += 1;
            return;
        }
        if length < self.min_session_ms {
            self.hour(s.stream, start_hour).quarters[start_q]
                .q
                .short_sessions += 1;
            return;
        }
        {
            let h = self.hour(s.stream, start_hour);
            let q = &mut h.quarters[start_q];
            q.q.sessions += 1;
            q.q.lengths[length_bucket(length)] += 1;
            for (d, &v) in s.dims.iter().enumerate() {
                q.dims.entry((d as u8, v)).or_default().sessions += 1;
            }
        }
        let last = s.end_ms - 1;
        self.hour(s.stream, hour_start(last)).quarters[quarter_index(last)]
            .q
            .completed += 1;

        let mut qs = floor_to(s.start_ms, QUARTER_MS);
        while qs < s.end_ms {
            let ms = overlap_ms(s.start_ms, s.end_ms, qs, qs + QUARTER_MS) as u64;
            let reached_aqh = {
                let t = self.aqh.entry((s.stream, qs, s.listener)).or_insert(0);
                let before = *t;
                *t = t.saturating_add(ms as u32);
                before < AQH_MS && *t >= AQH_MS
            };
            let reached_tenant_aqh = {
                let tix = self.streams[s.stream as usize].tenant_ix;
                let t = self.aqh_tenant.entry((tix, qs, s.listener)).or_insert(0);
                let before = *t;
                *t = t.saturating_add(ms as u32);
                before < AQH_MS && *t >= AQH_MS
            };
            let h = self.hour(s.stream, hour_start(qs));
            let q = &mut h.quarters[quarter_index(qs)];
            q.q.listening_ms += ms;
            q.q.uniques.insert(s.listener.0);
            if s.start_ms < qs {
                q.q.carried_in += 1;
            }
            if reached_aqh {
                q.q.aqh_listeners += 1;
            }
            if reached_tenant_aqh {
                q.q.aqh_tenant_listeners += 1;
            }
            for (d, &v) in s.dims.iter().enumerate() {
                q.dims.entry((d as u8, v)).or_default().listening_ms += ms;
            }
            qs += QUARTER_MS;
        }

        let mut hs = start_hour;
        while hs < s.end_ms {
            let h = self.hour(s.stream, hs);
            for (d, &v) in s.dims.iter().enumerate() {
                h.dim_uniques
                    .entry((d as u8, v))
                    .or_default()
                    .insert(s.listener.0);
            }
            let first = floor_to(s.start_ms.max(hs), MINUTE_MS);
            let end = s.end_ms.min(hs + HOUR_MS);
            let mut m = first;
            while m < end {
                h.minutes[((m - hs) / MINUTE_MS) as usize] += 1;
                m += MINUTE_MS;
            }
            hs += HOUR_MS;
        }
    }

    /// Forgets per-listener AQH time of quarters more than a day older than `now_ms`.
    pub fn prune(&mut self, now_ms: i64) {
        if self.aqh.len() + self.aqh_tenant.len() > MAX_AQH_ENTRIES {
            for keep in [2 * HOUR_MS, QUARTER_MS] {
                let cutoff = floor_to(now_ms, QUARTER_MS) - keep;
                self.aqh.retain(|&(_, q, _), _| q >= cutoff);
                self.aqh_tenant.retain(|&(_, q, _), _| q >= cutoff);
                if self.aqh.len() + self.aqh_tenant.len() <= MAX_AQH_ENTRIES {
                    break;
                }
            }
        }
        if now_ms.saturating_sub(self.aqh_pruned_at) < HOUR_MS {
            return;
        }
        self.aqh_pruned_at = now_ms;
        let cutoff = now_ms - AQH_HORIZON_MS;
        self.aqh.retain(|&(_, q, _), _| q >= cutoff);
        self.aqh_tenant.retain(|&(_, q, _), _| q >= cutoff);
    }

    fn hour(&mut self, stream: StreamId, hour_ms: i64) -> &mut HourAcc {
        self.hours
            .entry((stream, hour_ms))
            .or_insert_with(|| HourAcc {
                minutes: vec![0; 60],
                ..Default::default()
            })
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// Hands out everything accumulated since the last call, in the wire form.
    pub fn take(&mut self) -> Vec<(HourKey, HourRollup)> {
        let mut out: Vec<(HourKey, HourRollup)> = Vec::with_capacity(self.hours.len());
        for ((sid, hour_ms), acc) in self.hours.drain() {
            let info = &self.streams[sid as usize];
            let mut r = HourRollup::new(info.protocol);
            r.minutes = acc.minutes;
            for (i, qa) in acc.quarters.into_iter().enumerate() {
                let mut q = qa.q;
                for ((d, v), c) in qa.dims {
                    let dim = Dimension::ALL[d as usize];
                    q.dims
                        .insert((dim, self.values[d as usize][v as usize].to_string()), c);
                }
                r.quarters[i] = q;
            }
            for ((d, v), sk) in acc.dim_uniques {
                let dim = Dimension::ALL[d as usize];
                r.dim_uniques
                    .insert((dim, self.values[d as usize][v as usize].to_string()), sk);
            }
            let key = HourKey {
                tenant: info.tenant.to_string(),
                stream: info.stream.to_string(),
                hour_ms,
            };
            out.push((key, r));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The per-listener AQH time, for the agent's saved state.
    pub fn save_aqh(&self) -> Vec<AqhEntry> {
        let per_stream = self.aqh.iter().map(|(&(sid, q, l), &ms)| {
            let info = &self.streams[sid as usize];
            AqhEntry {
                tenant: info.tenant.to_string(),
                stream: Some((info.stream.to_string(), info.protocol)),
                quarter_ms: q,
                listener: l,
                ms,
            }
        });
        let names: HashMap<u32, &Arc<str>> =
            self.tenant_index.iter().map(|(n, &i)| (i, n)).collect();
        let per_tenant = self.aqh_tenant.iter().map(|(&(tix, q, l), &ms)| AqhEntry {
            tenant: names.get(&tix).map(|n| n.to_string()).unwrap_or_default(),
            stream: None,
            quarter_ms: q,
            listener: l,
            ms,
        });
        per_stream.chain(per_tenant).collect()
    }

    pub fn restore_aqh(&mut self, entries: Vec<AqhEntry>) {
        for e in entries {
            match e.stream {
                Some((stream, protocol)) => {
                    let sid = self.stream_id(&e.tenant, &stream, protocol);
                    self.aqh.insert((sid, e.quarter_ms, e.listener), e.ms);
                }
                None => {
                    let next = self.tenant_index.len() as u32;
                    let tix = *self
                        .tenant_index
                        .entry(e.tenant.as_str().into())
                        .or_insert(next);
                    self.aqh_tenant
                        .insert((tix, e.quarter_ms, e.listener), e.ms);
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AqhEntry {
    pub tenant: String,
    /// None: the tenant-wide time.
    pub stream: Option<(String, Protocol)>,
    pub quarter_ms: i64,
    pub listener: ListenerId,
    pub ms: u32,
}

fn quarter_index(t_ms: i64) -> usize {
    (t_ms.rem_euclid(HOUR_MS) / QUARTER_MS) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(acc: &mut Accumulator, listener: u64, start_ms: i64, end_ms: i64) -> Session {
        let stream = acc.stream_id("t", "/s", Protocol::Icecast);
        let dims = Dimension::ALL.map(|d| {
            acc.value_id(
                d,
                if d == Dimension::Client {
                    "VLC"
                } else {
                    "unknown"
                },
            )
        });
        Session {
            stream,
            listener: ListenerId(listener),
            dims,
            start_ms,
            end_ms,
            bot: false,
        }
    }

    fn rollup_at(rollups: &[(HourKey, HourRollup)], hour_ms: i64) -> &HourRollup {
        &rollups
            .iter()
            .find(|(k, _)| k.hour_ms == hour_ms)
            .unwrap()
            .1
    }

    #[test]
    fn a_session_over_an_hour_boundary_is_split_exactly() {
        let mut acc = Accumulator::new(60);
        // 10:50:30 → 11:20:00 (29.5 minutes).
        let s = session(
            &mut acc,
            1,
            10 * HOUR_MS + 50 * MINUTE_MS + 30_000,
            11 * HOUR_MS + 20 * MINUTE_MS,
        );
        acc.add(&s);
        let r = acc.take();
        assert_eq!(r.len(), 2);
        let h10 = rollup_at(&r, 10 * HOUR_MS);
        let h11 = rollup_at(&r, 11 * HOUR_MS);
        assert_eq!(h10.quarters[3].sessions, 1);
        assert_eq!(h10.quarters[3].listening_ms, 9 * 60_000 + 30_000);
        assert_eq!(h11.quarters[0].listening_ms, 15 * 60_000);
        assert_eq!(h11.quarters[1].listening_ms, 5 * 60_000);
        assert_eq!(h11.quarters[0].carried_in, 1);
        assert_eq!(h11.quarters[1].carried_in, 1);
        assert_eq!(h10.quarters[3].carried_in, 0);
        assert_eq!(h11.quarters[1].completed, 1);
        // Minutes 50..59 of hour 10 and 0..19 of hour 11.
        assert_eq!(h10.minutes.iter().sum::<u32>(), 10);
        assert_eq!(h10.minutes[50], 1);
        assert_eq!(h10.minutes[49], 0);
        assert_eq!(h11.minutes.iter().sum::<u32>(), 20);
        assert_eq!(h11.minutes[20], 0);
        // AQH: ≥ 5 min in 10:45 (9.5), 11:00 (15), 11:15 (exactly 5).
        assert_eq!(h10.quarters[3].aqh_listeners, 1);
        assert_eq!(h11.quarters[0].aqh_listeners, 1);
        assert_eq!(h11.quarters[1].aqh_listeners, 1);
        assert_eq!(h10.quarters[3].lengths[2], 0);
        assert_eq!(h10.quarters[3].lengths[3], 1); // 29.5 min is in [15 min, 30 min)
        assert_eq!(h11.quarters[0].uniques.estimate(), 1);
        let client = h11.quarters[0]
            .dims
            .get(&(Dimension::Client, "VLC".to_string()))
            .unwrap();
        assert_eq!(client.listening_ms, 15 * 60_000);
        assert_eq!(client.sessions, 0);
    }

    #[test]
    fn aqh_sums_a_listeners_sessions_and_counts_once() {
        let mut acc = Accumulator::new(60);
        let a = session(&mut acc, 7, 0, 3 * MINUTE_MS);
        let b = session(&mut acc, 7, 5 * MINUTE_MS, 8 * MINUTE_MS);
        let c = session(&mut acc, 7, 9 * MINUTE_MS, 12 * MINUTE_MS);
        acc.add(&a);
        acc.add(&b);
        let first = acc.take();
        assert_eq!(rollup_at(&first, 0).quarters[0].aqh_listeners, 1);
        acc.add(&c);
        let second = acc.take();
        assert_eq!(
            rollup_at(&second, 0).quarters[0].aqh_listeners,
            0,
            "already counted"
        );
        assert_eq!(rollup_at(&second, 0).quarters[0].sessions, 1);
    }

    #[test]
    fn tenant_aqh_sums_a_listeners_time_across_streams() {
        let mut acc = Accumulator::new(60);
        let a = session(&mut acc, 9, 0, 3 * MINUTE_MS);
        let mut b = a;
        b.stream = acc.stream_id("t", "/other", Protocol::Icecast);
        b.start_ms = 4 * MINUTE_MS;
        b.end_ms = 7 * MINUTE_MS;
        acc.add(&a);
        acc.add(&b);
        let r = acc.take();
        let per_stream: u64 = r.iter().map(|(_, h)| h.quarters[0].aqh_listeners).sum();
        let tenant: u64 = r
            .iter()
            .map(|(_, h)| h.quarters[0].aqh_tenant_listeners)
            .sum();
        assert_eq!((per_stream, tenant), (0, 1), "3 + 3 minutes on two streams");
    }

    #[test]
    fn short_and_bot_sessions_count_only_as_such() {
        let mut acc = Accumulator::new(60);
        let short = session(&mut acc, 1, 0, 59_999);
        let mut bot = session(&mut acc, 2, 0, 3 * HOUR_MS);
        bot.bot = true;
        acc.add(&short);
        acc.add(&bot);
        let r = acc.take();
        assert_eq!(r.len(), 1);
        let q = &r[0].1.quarters[0];
        assert_eq!(
            (q.sessions, q.short_sessions, q.bot_sessions, q.listening_ms),
            (0, 1, 1, 0)
        );
        assert!(q.uniques.is_empty());
        assert_eq!(r[0].1.minutes.iter().sum::<u32>(), 0);
    }
}
