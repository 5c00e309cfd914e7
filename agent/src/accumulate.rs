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

/// The `[limits]` table: the cardinality bounds per (tenant, UTC hour). The heaviest
/// streams and values are kept exactly, the rest folded into `(other)`; totals stay exact.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most streams kept per (tenant, hour).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Most values kept per (tenant, hour, dimension).
    #[serde(default = "default_max_values")]
    pub max_values: usize,
}

fn default_max_streams() -> usize {
    200
}
fn default_max_values() -> usize {
    500
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_streams: default_max_streams(),
            max_values: default_max_values(),
        }
    }
}

impl LimitsConfig {
    /// The bounds the collector accepts too.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(1..=10_000).contains(&self.max_streams) {
            return Err((
                "max_streams".into(),
                "must be between 1 and 10000 (as in the collector)".into(),
            ));
        }
        if !(1..=10_000).contains(&self.max_values) {
            return Err((
                "max_values".into(),
                "must be between 1 and 10000 (as in the collector)".into(),
            ));
        }
        Ok(())
    }
}

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

/// The name streams and values beyond the bounds are folded into.
pub const OTHER: &str = "(other)";
/// At most this many values of one dimension are interned; further ones are `(other)` until
/// [`Accumulator::take`] finds room again (it forgets the values no open session holds).
const MAX_INTERNED_VALUES: usize = 100_000;
/// Streams interned per tenant at most, as a multiple of `max_streams`: the candidates
/// of which the heaviest `max_streams` are kept per hour.
const STREAM_CANDIDATES: usize = 4;

/// A dimension's value when nothing is known: value 0.
pub fn default_value(d: Dimension) -> &'static str {
    match d {
        Dimension::Source => "direct",
        Dimension::Rendition => "none",
        _ => "unknown",
    }
}

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
    /// Whether this is a tenant's `(other)` stream.
    other: bool,
}

struct HourAcc {
    minutes: Vec<u32>,
    quarters: [QuarterAcc; 4],
    dim_uniques: HashMap<(u8, ValueId), UniqueSketch>,
}

impl Default for HourAcc {
    /// An hour with its 60 minutes.
    fn default() -> HourAcc {
        HourAcc {
            minutes: vec![0; 60],
            quarters: Default::default(),
            dim_uniques: HashMap::default(),
        }
    }
}

impl HourAcc {
    fn new() -> HourAcc {
        HourAcc::default()
    }

    /// Session starts of every kind (qualifying, short, bot): a stream's weight.
    fn starts(&self) -> u64 {
        self.quarters
            .iter()
            .map(|q| q.q.sessions + q.q.short_sessions + q.q.bot_sessions)
            .sum()
    }

    fn listening_ms(&self) -> u64 {
        self.quarters.iter().map(|q| q.q.listening_ms).sum()
    }

    fn merge(&mut self, other: HourAcc) {
        for (a, b) in self.minutes.iter_mut().zip(&other.minutes) {
            *a += b;
        }
        for (a, b) in self.quarters.iter_mut().zip(other.quarters) {
            a.q.merge(&b.q);
            for (k, c) in b.dims {
                a.dims.entry(k).or_default().merge(&c);
            }
        }
        for (k, sk) in other.dim_uniques {
            self.dim_uniques.entry(k).or_default().merge(&sk);
        }
    }

    /// Moves the counts and sketches of dimension `d`'s values in `fold` to `other`.
    fn fold_values(
        &mut self,
        d: u8,
        fold: &std::collections::HashSet<ValueId, foldhash::fast::RandomState>,
        other: ValueId,
    ) {
        for q in &mut self.quarters {
            let moved: Vec<(u8, ValueId)> = q
                .dims
                .keys()
                .filter(|(qd, v)| *qd == d && fold.contains(v))
                .copied()
                .collect();
            for k in moved {
                if let Some(c) = q.dims.remove(&k) {
                    q.dims.entry((d, other)).or_default().merge(&c);
                }
            }
        }
        let moved: Vec<(u8, ValueId)> = self
            .dim_uniques
            .keys()
            .filter(|(qd, v)| *qd == d && fold.contains(v))
            .copied()
            .collect();
        for k in moved {
            if let Some(sk) = self.dim_uniques.remove(&k) {
                self.dim_uniques.entry((d, other)).or_default().merge(&sk);
            }
        }
    }
}

#[derive(Default)]
struct QuarterAcc {
    q: earshot_common::QuarterRollup,
    dims: HashMap<(u8, ValueId), DimCounts>,
}

/// What was kept of one (tenant, hour) so far: the bounds hold over every batch of the
/// hour, not each alone.
#[derive(Default)]
struct Admitted {
    streams: std::collections::HashSet<StreamId, foldhash::fast::RandomState>,
    values: [std::collections::HashSet<ValueId, foldhash::fast::RandomState>; Dimension::COUNT],
    /// Whether a fold of streams, or of each dimension, was logged for this hour.
    warned: [bool; Dimension::COUNT + 1],
}

pub struct Accumulator {
    min_session_ms: i64,
    max_streams: usize,
    max_values: usize,
    /// Streams interned per tenant (by tenant index), `(other)` aside.
    tenant_streams: HashMap<u32, usize>,
    /// Each tenant's `(other)` stream.
    other_streams: HashMap<u32, StreamId>,
    admitted: HashMap<(u32, i64), Admitted>,
    /// Each dimension's `(other)` value id.
    other_values: [ValueId; Dimension::COUNT],
    /// Distinct names folded since the last take, by (tenant, what).
    folded: HashMap<(Arc<str>, &'static str), u64>,
    streams: Vec<StreamInfo>,
    /// tenant → stream → id.
    stream_index: HashMap<Arc<str>, HashMap<Arc<str>, StreamId>>,
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
        let mut acc = Accumulator {
            min_session_ms: min_session_secs as i64 * 1000,
            max_streams: 200,
            max_values: 500,
            tenant_streams: HashMap::default(),
            other_streams: HashMap::default(),
            admitted: HashMap::default(),
            other_values: [ValueId::MAX; Dimension::COUNT],
            folded: HashMap::default(),
            streams: Vec::new(),
            stream_index: HashMap::default(),
            values: Default::default(),
            value_index: Default::default(),
            hours: HashMap::default(),
            aqh: HashMap::default(),
            aqh_tenant: HashMap::default(),
            tenant_index: HashMap::default(),
            aqh_pruned_at: i64::MIN,
        };
        // Value 0 of every dimension is "unknown" (or the equivalent), so ids are stable.
        for d in Dimension::ALL {
            acc.value_id(d, default_value(d));
        }
        acc.intern_others();
        acc
    }

    fn intern_others(&mut self) {
        for d in Dimension::ALL {
            self.other_values[d as usize] = self.value_id(d, OTHER);
        }
    }

    /// The bounds per (tenant, UTC hour): at most `max_streams` streams and `max_values`
    /// values per dimension are kept, the heaviest; the rest are folded into `(other)`.
    pub fn with_limits(mut self, max_streams: usize, max_values: usize) -> Accumulator {
        self.max_streams = max_streams.max(1);
        self.max_values = max_values.max(1);
        self
    }

    /// The id of a dimension's `(other)` value.
    pub fn other_value(&self, dim: Dimension) -> ValueId {
        self.value_index[dim as usize][OTHER]
    }

    /// Interns a stream; a tenant with more than `STREAM_CANDIDATES × max_streams` streams
    /// gets its `(other)` stream for further ones.
    pub fn stream_id(&mut self, tenant: &str, stream: &str, protocol: Protocol) -> StreamId {
        if let Some(&id) = self.stream_index.get(tenant).and_then(|t| t.get(stream)) {
            return id;
        }
        let tenant_ix = self.tenant_ix(tenant);
        let count = self.tenant_streams.get(&tenant_ix).copied().unwrap_or(0);
        if stream != OTHER && count >= STREAM_CANDIDATES * self.max_streams {
            return self.other_stream(tenant, tenant_ix, protocol);
        }
        if stream != OTHER {
            self.tenant_streams.insert(tenant_ix, count + 1);
        }
        self.push_stream(tenant, tenant_ix, stream, protocol)
    }

    fn push_stream(
        &mut self,
        tenant: &str,
        tenant_ix: u32,
        stream: &str,
        protocol: Protocol,
    ) -> StreamId {
        let key: (Arc<str>, Arc<str>) = (tenant.into(), stream.into());
        let id = self.streams.len() as StreamId;
        self.streams.push(StreamInfo {
            tenant: key.0.clone(),
            tenant_ix,
            stream: key.1.clone(),
            protocol,
            other: stream == OTHER,
        });
        if stream == OTHER {
            self.other_streams.insert(tenant_ix, id);
        }
        self.stream_index
            .entry(key.0)
            .or_default()
            .insert(key.1, id);
        id
    }

    fn other_stream(&mut self, tenant: &str, tenant_ix: u32, protocol: Protocol) -> StreamId {
        match self.other_streams.get(&tenant_ix) {
            Some(&id) => id,
            None => self.push_stream(tenant, tenant_ix, OTHER, protocol),
        }
    }

    fn tenant_ix(&mut self, tenant: &str) -> u32 {
        if let Some(&ix) = self.tenant_index.get(tenant) {
            return ix;
        }
        let next = self.tenant_index.len() as u32;
        self.tenant_index.insert(tenant.into(), next);
        next
    }

    /// Whether a stream is a tenant's `(other)`, where the streams past the bounds go.
    pub fn is_folded(&self, id: StreamId) -> bool {
        self.streams[id as usize].other
    }

    pub fn stream_tenant(&self, id: StreamId) -> &str {
        &self.streams[id as usize].tenant
    }

    pub fn stream_name(&self, id: StreamId) -> &str {
        &self.streams[id as usize].stream
    }

    /// Interns a dimension value; past `MAX_INTERNED_VALUES` of one dimension, `(other)`.
    pub fn value_id(&mut self, dim: Dimension, value: &str) -> ValueId {
        let d = dim as usize;
        if let Some(&id) = self.value_index[d].get(value) {
            return id;
        }
        if self.values[d].len() >= MAX_INTERNED_VALUES {
            return self.value_index[d][OTHER];
        }
        let id = self.values[d].len() as ValueId;
        let v: Arc<str> = value.into();
        self.values[d].push(v.clone());
        self.value_index[d].insert(v, id);
        id
    }

    /// Whether a dimension's interned values are near their bound, so that
    /// [`Accumulator::forget_values`] should run at the next take.
    pub fn values_crowded(&self) -> bool {
        self.values
            .iter()
            .any(|v| v.len() > MAX_INTERNED_VALUES / 2)
    }

    /// Forgets every interned value but the ones `keep` names (and value 0 and `(other)` of
    /// each dimension), and returns how the kept ones' ids change: `remap[d][old] = new`.
    /// Only between takes (no hour holds value ids then).
    pub fn forget_values(
        &mut self,
        keep: impl Iterator<Item = (Dimension, ValueId)>,
    ) -> [HashMap<ValueId, ValueId>; Dimension::COUNT] {
        debug_assert!(self.hours.is_empty());
        let mut wanted: [Vec<ValueId>; Dimension::COUNT] = Default::default();
        for (d, v) in keep {
            wanted[d as usize].push(v);
        }
        // What the hours still open have kept stays kept.
        for a in self.admitted.values() {
            for (d, set) in a.values.iter().enumerate() {
                wanted[d].extend(set.iter().copied());
            }
        }
        let old_values = std::mem::take(&mut self.values);
        self.value_index = Default::default();
        let mut remap: [HashMap<ValueId, ValueId>; Dimension::COUNT] = Default::default();
        // Value 0 of each dimension first (its "unknown"), then `(other)`, as at the start.
        for d in Dimension::ALL {
            self.value_id(d, &old_values[d as usize][0]);
        }
        self.intern_others();
        for d in Dimension::ALL {
            let old = &old_values[d as usize];
            let other = old.iter().position(|v| &**v == OTHER).unwrap_or(0) as ValueId;
            let mut ids = vec![0, other];
            ids.extend(&wanted[d as usize]);
            for id in ids {
                if remap[d as usize].contains_key(&id) {
                    continue;
                }
                let new = self.value_id(d, &old[id as usize]);
                remap[d as usize].insert(id, new);
            }
        }
        for a in self.admitted.values_mut() {
            for (d, set) in a.values.iter_mut().enumerate() {
                *set = set
                    .iter()
                    .filter_map(|v| remap[d].get(v).copied())
                    .collect();
            }
        }
        remap
    }

    pub fn value(&self, dim: Dimension, id: ValueId) -> &str {
        &self.values[dim as usize][id as usize]
    }

    /// Adds one finished session.
    pub fn add(&mut self, s: &Session) {
        let length = s.end_ms - s.start_ms;
        if self.streams[s.stream as usize].other {
            let tenant = self.streams[s.stream as usize].tenant.clone();
            *self.folded.entry((tenant, "stream")).or_default() += 1;
        }
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
        let folded_values;
        {
            let other_values = self.other_values;
            let h = self.hours.entry((s.stream, start_hour)).or_default();
            let q = &mut h.quarters[start_q];
            q.q.sessions += 1;
            q.q.lengths[length_bucket(length)] += 1;
            folded_values = s.dims.iter().zip(&other_values).any(|(v, o)| v == o);
            for (d, &v) in s.dims.iter().enumerate() {
                q.dims.entry((d as u8, v)).or_default().sessions += 1;
            }
        }
        if folded_values {
            let tenant = self.streams[s.stream as usize].tenant.clone();
            for (d, (v, o)) in s.dims.iter().zip(&self.other_values).enumerate() {
                if v == o {
                    let what = Dimension::ALL[d].as_str();
                    *self.folded.entry((tenant.clone(), what)).or_default() += 1;
                }
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
            // Down to three quarters of the bound, so that a flood does not make every line
            // walk the maps: older quarters first, then listeners who already reached five
            // minutes (counted; forgetting them could only count one again if another five
            // minutes of theirs came in the same quarter), then everything.
            let low = MAX_AQH_ENTRIES / 4 * 3;
            let len = |a: &Self| a.aqh.len() + a.aqh_tenant.len();
            for keep in [2 * HOUR_MS, QUARTER_MS] {
                let cutoff = floor_to(now_ms, QUARTER_MS) - keep;
                self.aqh.retain(|&(_, q, _), _| q >= cutoff);
                self.aqh_tenant.retain(|&(_, q, _), _| q >= cutoff);
                if len(self) <= low {
                    break;
                }
            }
            if len(self) > low {
                self.aqh.retain(|_, ms| *ms < AQH_MS);
                self.aqh_tenant.retain(|_, ms| *ms < AQH_MS);
            }
            if len(self) > low {
                self.aqh.clear();
                self.aqh_tenant.clear();
            }
        }
        if now_ms.saturating_sub(self.aqh_pruned_at) < HOUR_MS {
            return;
        }
        self.aqh_pruned_at = now_ms;
        let horizon = now_ms - AQH_HORIZON_MS - 4 * HOUR_MS;
        self.admitted.retain(|&(_, hour), _| hour >= horizon);
        let cutoff = now_ms - AQH_HORIZON_MS;
        self.aqh.retain(|&(_, q, _), _| q >= cutoff);
        self.aqh_tenant.retain(|&(_, q, _), _| q >= cutoff);
    }

    fn hour(&mut self, stream: StreamId, hour_ms: i64) -> &mut HourAcc {
        self.hours.entry((stream, hour_ms)).or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// Hands out everything accumulated since the last call, in the wire form, with the
    /// bounds applied per (tenant, hour): streams and values past them, lightest first, are
    /// folded into `(other)` (see [`Accumulator::with_limits`]).
    pub fn take(&mut self) -> Vec<(HourKey, HourRollup)> {
        let mut groups: HashMap<(u32, i64), Vec<(StreamId, HourAcc)>> = HashMap::default();
        for ((sid, hour_ms), acc) in self.hours.drain() {
            let tix = self.streams[sid as usize].tenant_ix;
            groups.entry((tix, hour_ms)).or_default().push((sid, acc));
        }
        let mut out: Vec<(HourKey, HourRollup)> = Vec::with_capacity(self.hours.len());
        for ((tix, hour_ms), mut list) in groups {
            self.fold_streams(tix, hour_ms, &mut list);
            self.fold_values(tix, hour_ms, &mut list);
            for (sid, acc) in list {
                out.push(self.rollup(sid, hour_ms, acc));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Distinct folds since the last call, by (tenant, what): sessions whose stream
    /// (`"stream"`) or dimension value (the dimension's name) went to `(other)`.
    pub fn take_folded(&mut self) -> Vec<((String, String), u64)> {
        self.folded
            .drain()
            .map(|((t, what), n)| ((t.to_string(), what.to_string()), n))
            .collect()
    }

    fn fold_streams(&mut self, tix: u32, hour_ms: i64, list: &mut Vec<(StreamId, HourAcc)>) {
        let admitted = self.admitted.entry((tix, hour_ms)).or_default();
        let mut new: Vec<(u64, u64, StreamId)> = list
            .iter()
            .filter(|(sid, _)| {
                &*self.streams[*sid as usize].stream != OTHER && !admitted.streams.contains(sid)
            })
            .map(|(sid, acc)| (acc.starts(), acc.listening_ms(), *sid))
            .collect();
        if admitted.streams.len() + new.len() <= self.max_streams {
            admitted.streams.extend(new.iter().map(|n| n.2));
            return;
        }
        new.sort_by(|a, b| b.cmp(a));
        let room = self.max_streams.saturating_sub(admitted.streams.len());
        admitted.streams.extend(new[..room].iter().map(|n| n.2));
        let fold: std::collections::HashSet<StreamId, foldhash::fast::RandomState> =
            new[room..].iter().map(|n| n.2).collect();
        let first_warning = !std::mem::replace(&mut admitted.warned[Dimension::COUNT], true);
        let mut folded_acc = HourAcc::new();
        let mut folded_sessions = 0;
        let mut protocol = Protocol::Icecast;
        let mut kept = Vec::with_capacity(list.len());
        for (sid, acc) in list.drain(..) {
            if fold.contains(&sid) {
                folded_sessions += acc.starts();
                protocol = self.streams[sid as usize].protocol;
                folded_acc.merge(acc);
            } else {
                kept.push((sid, acc));
            }
        }
        let tenant = self.streams[new[room].2 as usize].tenant.clone();
        if first_warning {
            tracing::warn!(
                tenant = %tenant,
                hour = %crate::report::rfc3339(hour_ms),
                streams = self.max_streams,
                "more streams than [limits] max_streams in one hour: the lightest are folded into (other)"
            );
        }
        *self.folded.entry((tenant.clone(), "stream")).or_default() += folded_sessions;
        let other = self.other_stream(&tenant, tix, protocol);
        match kept.iter_mut().find(|(sid, _)| *sid == other) {
            Some((_, acc)) => acc.merge(folded_acc),
            None => kept.push((other, folded_acc)),
        }
        *list = kept;
    }

    fn fold_values(&mut self, tix: u32, hour_ms: i64, list: &mut [(StreamId, HourAcc)]) {
        let max_values = self.max_values;
        for dim in Dimension::ALL {
            let d = dim as u8;
            let other = self.value_index[dim as usize][OTHER];
            // Weights of this take's values over the tenant's streams.
            let mut weight: HashMap<ValueId, (u64, u64)> = HashMap::default();
            for (_, acc) in list.iter() {
                for q in &acc.quarters {
                    for (&(qd, v), c) in &q.dims {
                        if qd == d && v != other {
                            let w = weight.entry(v).or_default();
                            w.0 += c.sessions;
                            w.1 += c.listening_ms;
                        }
                    }
                }
                for &(qd, v) in acc.dim_uniques.keys() {
                    if qd == d && v != other {
                        weight.entry(v).or_default();
                    }
                }
            }
            let admitted = self.admitted.entry((tix, hour_ms)).or_default();
            let set = &mut admitted.values[dim as usize];
            let mut new: Vec<(u64, u64, ValueId)> = weight
                .iter()
                .filter(|(v, _)| !set.contains(v))
                .map(|(&v, &(n, ms))| (n, ms, v))
                .collect();
            if set.len() + new.len() <= max_values {
                set.extend(new.iter().map(|n| n.2));
                continue;
            }
            new.sort_by(|a, b| b.cmp(a));
            let room = max_values.saturating_sub(set.len());
            set.extend(new[..room].iter().map(|n| n.2));
            let fold: std::collections::HashSet<ValueId, foldhash::fast::RandomState> =
                new[room..].iter().map(|n| n.2).collect();
            let folded_sessions: u64 = new[room..].iter().map(|n| n.0).sum();
            let first_warning = !std::mem::replace(&mut admitted.warned[dim as usize], true);
            for (_, acc) in list.iter_mut() {
                acc.fold_values(d, &fold, other);
            }
            let tenant = self.streams[list[0].0 as usize].tenant.clone();
            if first_warning {
                tracing::warn!(
                    tenant = %tenant,
                    hour = %crate::report::rfc3339(hour_ms),
                    dimension = dim.as_str(),
                    values = max_values,
                    "more values than [limits] max_values in one hour: the lightest are folded into (other)"
                );
            }
            *self.folded.entry((tenant, dim.as_str())).or_default() += folded_sessions;
        }
    }

    fn rollup(&self, sid: StreamId, hour_ms: i64, acc: HourAcc) -> (HourKey, HourRollup) {
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
        (key, r)
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
        // In a fixed order, so that one state gives one byte string.
        let mut entries: Vec<AqhEntry> = per_stream.chain(per_tenant).collect();
        entries.sort_unstable_by(|a, b| {
            (&a.tenant, &a.stream, a.quarter_ms, a.listener).cmp(&(
                &b.tenant,
                &b.stream,
                b.quarter_ms,
                b.listener,
            ))
        });
        entries
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

    /// A 10-minute session of `listener` on `stream` from `start_ms` with `source`.
    fn on(
        acc: &mut Accumulator,
        stream: &str,
        source: &str,
        listener: u64,
        start_ms: i64,
    ) -> Session {
        let stream = acc.stream_id("t", stream, Protocol::Icecast);
        let mut dims = [0; Dimension::COUNT];
        dims[Dimension::Source as usize] = acc.value_id(Dimension::Source, source);
        Session {
            stream,
            listener: ListenerId(listener),
            dims,
            start_ms,
            end_ms: start_ms + 600_000,
            bot: false,
        }
    }

    fn totals(rollups: &[(HourKey, HourRollup)]) -> (u64, u64) {
        let q = rollups.iter().flat_map(|(_, r)| r.quarters.iter());
        q.fold((0, 0), |(n, ms), q| (n + q.sessions, ms + q.listening_ms))
    }

    fn sessions_of(rollups: &[(HourKey, HourRollup)], stream: &str) -> u64 {
        rollups
            .iter()
            .filter(|(k, _)| k.stream == stream)
            .flat_map(|(_, r)| r.quarters.iter())
            .map(|q| q.sessions)
            .sum()
    }

    fn source_sessions(rollups: &[(HourKey, HourRollup)], value: &str) -> u64 {
        rollups
            .iter()
            .flat_map(|(_, r)| r.quarters.iter())
            .filter_map(|q| q.dims.get(&(Dimension::Source, value.to_string())))
            .map(|c| c.sessions)
            .sum()
    }

    #[test]
    fn streams_and_values_past_the_bounds_fold_into_other_with_totals_exact() {
        let mut acc = Accumulator::new(60).with_limits(2, 2);
        let h = 10 * HOUR_MS;
        // Stream /a: 3 sessions, /b: 2, /c: 1; sources x: 3, y: 2, z: 1 — all in one hour.
        let plan = [
            ("/a", "x"),
            ("/a", "x"),
            ("/a", "y"),
            ("/b", "x"),
            ("/b", "y"),
            ("/c", "z"),
        ];
        for (i, (stream, source)) in plan.iter().enumerate() {
            let s = on(&mut acc, stream, source, i as u64, h + i as i64 * 60_000);
            acc.add(&s);
        }
        let first = acc.take();
        assert_eq!(totals(&first), (6, 6 * 600_000));
        assert_eq!(sessions_of(&first, "/a"), 3);
        assert_eq!(sessions_of(&first, "/b"), 2);
        assert_eq!(sessions_of(&first, "/c"), 0);
        assert_eq!(sessions_of(&first, OTHER), 1);
        assert_eq!(source_sessions(&first, "x"), 3);
        assert_eq!(source_sessions(&first, "y"), 2);
        assert_eq!(source_sessions(&first, "z"), 0);
        assert_eq!(source_sessions(&first, OTHER), 1);
        // The hour's per-value listener sketches are folded with the counts.
        let sketched = |v: &str| {
            first.iter().any(|(_, r)| {
                r.dim_uniques
                    .contains_key(&(Dimension::Source, v.to_string()))
            })
        };
        assert!(sketched(OTHER) && !sketched("z"));
        let folded: std::collections::BTreeMap<_, _> = acc.take_folded().into_iter().collect();
        assert_eq!(folded[&("t".to_string(), "stream".to_string())], 1);
        assert_eq!(folded[&("t".to_string(), "source".to_string())], 1);
        // A later batch of the same hour keeps what the hour kept, however heavy /c is now.
        for i in 0..5 {
            let s = on(&mut acc, "/c", "z", 100 + i, h + 20 * 60_000);
            acc.add(&s);
        }
        let s = on(&mut acc, "/b", "y", 200, h + 20 * 60_000);
        acc.add(&s);
        let second = acc.take();
        assert_eq!(totals(&second), (6, 6 * 600_000));
        assert_eq!(sessions_of(&second, "/b"), 1);
        assert_eq!(sessions_of(&second, OTHER), 5);
        assert_eq!(source_sessions(&second, OTHER), 5);
        // Another hour has bounds of its own: /c is kept there.
        let s = on(&mut acc, "/c", "z", 300, h + HOUR_MS);
        acc.add(&s);
        let third = acc.take();
        assert_eq!(sessions_of(&third, "/c"), 1);
        assert_eq!(source_sessions(&third, "z"), 1);
    }

    #[test]
    fn a_flood_of_streams_is_interned_no_further_than_the_candidates() {
        let mut acc = Accumulator::new(60).with_limits(3, 500);
        let h = 10 * HOUR_MS;
        for i in 0..1000u64 {
            let s = on(&mut acc, &format!("/x{i}.mp3"), "x", i, h);
            acc.add(&s);
        }
        assert!(
            acc.streams.len() <= STREAM_CANDIDATES * 3 + 1,
            "{}",
            acc.streams.len()
        );
        let r = acc.take();
        assert_eq!(r.len(), 4, "three streams and (other)");
        assert_eq!(totals(&r).0, 1000);
        assert_eq!(sessions_of(&r, OTHER), 1000 - 3);
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
