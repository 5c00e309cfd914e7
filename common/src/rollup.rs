//! The mergeable pre-aggregates: what the agent computes per (tenant, stream, hour) and the
//! collector stores. Every field is a sum, a maximum-free per-minute count, or a sketch, so
//! merging is associative and commutative and several hosts add up exactly.
//!
//! Definitions (DESIGN.md, "Metric definitions"); every count is of *qualifying* sessions
//! (length ≥ `min_session`, not a bot) unless its name says otherwise:
//! - `sessions`, `short_sessions`, `bot_sessions`, `lengths`: by the quarter the session started in;
//! - `completed`: by the quarter the session ended in;
//! - `carried_in`: sessions that started before the quarter and were still running at its
//!   first instant, so `active_sessions` over `[a, b)` (quarter-aligned) is the starts in
//!   `[a, b)` plus `carried_in` of the quarter at `a`;
//! - `listening_ms`: session time clipped to the quarter;
//! - `aqh_listeners`: listeners whose summed time on this stream in the quarter reached
//!   5 minutes (counted once, when they reach it);
//! - `aqh_tenant_listeners`: listeners whose summed time over all the tenant's streams in the
//!   quarter reached 5 minutes, counted once in the rollup of the stream whose session made
//!   them reach it — so summing it over streams gives the tenant's AQH audience;
//! - `uniques`: listeners with a session overlapping the quarter;
//! - `minutes[m]`: sessions overlapping `[m, m + 60 s)`.
//!
//! These are in-memory types: their serde form is protocol 1's ([`crate::v1`]), so a
//! field added here is neither shipped nor stored until a new versioned type carries it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sketch::UniqueSketch;
use crate::v1::{DimCountsV1, DimensionV1, HourKeyV1, HourRollupV1, ProtocolV1, QuarterV1};

/// Session length breakdown: the lower edges in seconds. The last bucket is open-ended.
pub const LENGTH_EDGES_S: [u64; 13] = [
    60, 300, 600, 900, 1_800, 3_600, 7_200, 10_800, 14_400, 21_600, 28_800, 43_200, 64_800,
];
pub const LENGTH_BUCKETS: usize = LENGTH_EDGES_S.len();

/// The length bucket of a qualifying session of `length_ms` (≥ 60 s).
pub fn length_bucket(length_ms: i64) -> usize {
    let s = (length_ms.max(0) / 1000) as u64;
    LENGTH_EDGES_S
        .iter()
        .rposition(|&edge| s >= edge)
        .unwrap_or(0)
}

/// Encoded as [`crate::v1::ProtocolV1`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "ProtocolV1", from = "ProtocolV1")]
pub enum Protocol {
    /// One long HTTP response per listener (Icecast mounts, MP3/AAC streams).
    Icecast,
    /// Playlist and segment requests.
    Hls,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Icecast => "icecast",
            Protocol::Hls => "hls",
        }
    }
}

/// Session attributes that breakdowns are kept for. `stream` and `protocol` breakdowns come
/// from the rollup keys themselves. Encoded as [`crate::v1::DimensionV1`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "DimensionV1", from = "DimensionV1")]
pub enum Dimension {
    Client,
    Device,
    Os,
    Country,
    Referrer,
    Source,
    /// The HLS rendition a session's media segments were last fetched from (`aac_128k`,
    /// `audio_64`); `none` for progressive streams and single-rendition HLS. Added after the
    /// others: its variant index is new, so older batches decode as they did.
    Rendition,
}

impl Dimension {
    pub const COUNT: usize = 7;
    pub const ALL: [Dimension; Dimension::COUNT] = [
        Dimension::Client,
        Dimension::Device,
        Dimension::Os,
        Dimension::Country,
        Dimension::Referrer,
        Dimension::Source,
        Dimension::Rendition,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Client => "client",
            Dimension::Device => "device",
            Dimension::Os => "os",
            Dimension::Country => "country",
            Dimension::Referrer => "referrer",
            Dimension::Source => "source",
            Dimension::Rendition => "rendition",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Encoded as [`crate::v1::HourKeyV1`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "HourKeyV1", from = "HourKeyV1")]
pub struct HourKey {
    pub tenant: String,
    pub stream: String,
    /// UTC start of the hour, milliseconds since the epoch.
    pub hour_ms: i64,
}

/// Counters of one dimension value within one quarter-hour. Encoded as
/// [`crate::v1::DimCountsV1`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "DimCountsV1", from = "DimCountsV1")]
pub struct DimCounts {
    pub sessions: u64,
    pub listening_ms: u64,
}

impl DimCounts {
    pub fn merge(&mut self, other: &DimCounts) {
        self.sessions += other.sessions;
        self.listening_ms += other.listening_ms;
    }
}

/// One quarter-hour of an [`HourRollup`]. Encoded as [`crate::v1::QuarterV1`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "QuarterV1", from = "QuarterV1")]
pub struct QuarterRollup {
    pub sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub completed: u64,
    pub carried_in: u64,
    pub listening_ms: u64,
    pub aqh_listeners: u64,
    pub aqh_tenant_listeners: u64,
    pub lengths: [u64; LENGTH_BUCKETS],
    pub uniques: UniqueSketch,
    /// (dimension, value) → counts. Values are short strings (`"VLC"`, `"phone"`, `"DE"`).
    pub dims: BTreeMap<(Dimension, String), DimCounts>,
}

impl QuarterRollup {
    pub fn merge(&mut self, other: &QuarterRollup) {
        self.sessions += other.sessions;
        self.short_sessions += other.short_sessions;
        self.bot_sessions += other.bot_sessions;
        self.completed += other.completed;
        self.carried_in += other.carried_in;
        self.listening_ms += other.listening_ms;
        self.aqh_listeners += other.aqh_listeners;
        self.aqh_tenant_listeners += other.aqh_tenant_listeners;
        for (a, b) in self.lengths.iter_mut().zip(other.lengths.iter()) {
            *a += b;
        }
        self.uniques.merge(&other.uniques);
        for (k, v) in &other.dims {
            self.dims.entry(k.clone()).or_default().merge(v);
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == QuarterRollup::default()
    }
}

/// Everything known about one stream of one tenant in one clock hour. Encoded as
/// [`crate::v1::HourRollupV1`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "HourRollupV1", from = "HourRollupV1")]
pub struct HourRollup {
    pub protocol: Protocol,
    /// Concurrent listeners per minute of the hour (sessions overlapping the minute).
    pub minutes: Vec<u32>,
    pub quarters: [QuarterRollup; 4],
    /// Distinct listeners per dimension value over the hour (breakdowns' `unique_listeners`).
    pub dim_uniques: BTreeMap<(Dimension, String), UniqueSketch>,
}

impl HourRollup {
    pub fn new(protocol: Protocol) -> Self {
        HourRollup {
            protocol,
            minutes: vec![0; 60],
            quarters: Default::default(),
            dim_uniques: BTreeMap::new(),
        }
    }

    /// Adds `other` into `self`. Associative and commutative (see the property tests).
    pub fn merge(&mut self, other: &HourRollup) {
        // A stream's protocol is a property of its key; should two hosts disagree, the order
        // of merging must not decide, so the smaller wins.
        self.protocol = self.protocol.min(other.protocol);
        if self.minutes.len() < 60 {
            self.minutes.resize(60, 0);
        }
        for (a, b) in self.minutes.iter_mut().zip(other.minutes.iter()) {
            *a += b;
        }
        for (a, b) in self.quarters.iter_mut().zip(other.quarters.iter()) {
            a.merge(b);
        }
        for (k, v) in &other.dim_uniques {
            self.dim_uniques.entry(k.clone()).or_default().merge(v);
        }
    }
}

// Each type to and from its protocol-1 form (crate::v1).

/// A map keyed by dimension, with both the key's dimension and the value converted.
fn convert_dims<D: Into<E>, E: Ord, V: Into<W>, W>(
    m: BTreeMap<(D, String), V>,
) -> BTreeMap<(E, String), W> {
    m.into_iter()
        .map(|((d, s), v)| ((d.into(), s), v.into()))
        .collect()
}

impl From<Protocol> for ProtocolV1 {
    fn from(p: Protocol) -> ProtocolV1 {
        match p {
            Protocol::Icecast => ProtocolV1::Icecast,
            Protocol::Hls => ProtocolV1::Hls,
        }
    }
}

impl From<ProtocolV1> for Protocol {
    fn from(p: ProtocolV1) -> Protocol {
        match p {
            ProtocolV1::Icecast => Protocol::Icecast,
            ProtocolV1::Hls => Protocol::Hls,
        }
    }
}

impl From<Dimension> for DimensionV1 {
    fn from(d: Dimension) -> DimensionV1 {
        match d {
            Dimension::Client => DimensionV1::Client,
            Dimension::Device => DimensionV1::Device,
            Dimension::Os => DimensionV1::Os,
            Dimension::Country => DimensionV1::Country,
            Dimension::Referrer => DimensionV1::Referrer,
            Dimension::Source => DimensionV1::Source,
            Dimension::Rendition => DimensionV1::Rendition,
        }
    }
}

impl From<DimensionV1> for Dimension {
    fn from(d: DimensionV1) -> Dimension {
        match d {
            DimensionV1::Client => Dimension::Client,
            DimensionV1::Device => Dimension::Device,
            DimensionV1::Os => Dimension::Os,
            DimensionV1::Country => Dimension::Country,
            DimensionV1::Referrer => Dimension::Referrer,
            DimensionV1::Source => Dimension::Source,
            DimensionV1::Rendition => Dimension::Rendition,
        }
    }
}

impl From<HourKey> for HourKeyV1 {
    fn from(k: HourKey) -> HourKeyV1 {
        let HourKey {
            tenant,
            stream,
            hour_ms,
        } = k;
        HourKeyV1 {
            tenant,
            stream,
            hour_ms,
        }
    }
}

impl From<HourKeyV1> for HourKey {
    fn from(k: HourKeyV1) -> HourKey {
        let HourKeyV1 {
            tenant,
            stream,
            hour_ms,
        } = k;
        HourKey {
            tenant,
            stream,
            hour_ms,
        }
    }
}

impl From<DimCounts> for DimCountsV1 {
    fn from(c: DimCounts) -> DimCountsV1 {
        let DimCounts {
            sessions,
            listening_ms,
        } = c;
        DimCountsV1 {
            sessions,
            listening_ms,
        }
    }
}

impl From<DimCountsV1> for DimCounts {
    fn from(c: DimCountsV1) -> DimCounts {
        let DimCountsV1 {
            sessions,
            listening_ms,
        } = c;
        DimCounts {
            sessions,
            listening_ms,
        }
    }
}

impl From<QuarterRollup> for QuarterV1 {
    fn from(q: QuarterRollup) -> QuarterV1 {
        let QuarterRollup {
            sessions,
            short_sessions,
            bot_sessions,
            completed,
            carried_in,
            listening_ms,
            aqh_listeners,
            aqh_tenant_listeners,
            lengths,
            uniques,
            dims,
        } = q;
        QuarterV1 {
            sessions,
            short_sessions,
            bot_sessions,
            completed,
            carried_in,
            listening_ms,
            aqh_listeners,
            aqh_tenant_listeners,
            lengths,
            uniques,
            dims: convert_dims(dims),
        }
    }
}

impl From<QuarterV1> for QuarterRollup {
    fn from(q: QuarterV1) -> QuarterRollup {
        let QuarterV1 {
            sessions,
            short_sessions,
            bot_sessions,
            completed,
            carried_in,
            listening_ms,
            aqh_listeners,
            aqh_tenant_listeners,
            lengths,
            uniques,
            dims,
        } = q;
        QuarterRollup {
            sessions,
            short_sessions,
            bot_sessions,
            completed,
            carried_in,
            listening_ms,
            aqh_listeners,
            aqh_tenant_listeners,
            lengths,
            uniques,
            dims: convert_dims(dims),
        }
    }
}

impl From<HourRollup> for HourRollupV1 {
    fn from(r: HourRollup) -> HourRollupV1 {
        let HourRollup {
            protocol,
            minutes,
            quarters,
            dim_uniques,
        } = r;
        HourRollupV1 {
            protocol: protocol.into(),
            minutes,
            quarters: quarters.map(QuarterV1::from),
            dim_uniques: convert_dims(dim_uniques),
        }
    }
}

impl From<HourRollupV1> for HourRollup {
    fn from(r: HourRollupV1) -> HourRollup {
        let HourRollupV1 {
            protocol,
            minutes,
            quarters,
            dim_uniques,
        } = r;
        HourRollup {
            protocol: protocol.into(),
            minutes,
            quarters: quarters.map(QuarterRollup::from),
            dim_uniques: convert_dims(dim_uniques),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_buckets_follow_the_edges() {
        assert_eq!(length_bucket(60_000), 0);
        assert_eq!(length_bucket(299_999), 0);
        assert_eq!(length_bucket(300_000), 1);
        assert_eq!(length_bucket(3_600_000), 5);
        assert_eq!(length_bucket(18 * 3_600_000 - 1), 11);
        assert_eq!(length_bucket(18 * 3_600_000), 12);
        assert_eq!(length_bucket(100 * 3_600_000), 12);
    }
}
