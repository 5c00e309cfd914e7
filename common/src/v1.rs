//! Protocol 1's encoded forms of the aggregates: what a [`Batch`] is on the wire (inside
//! [`AgentMessage::Batch`] and, deflated, [`AgentMessage::CompressedBatch`]) and in the agent's
//! spool. Also reached as `wire::v1`; a module of its own, which imports neither `rollup` nor
//! `wire` (the conversions are theirs), so that neither depends on the other through it.
//! postcard writes a struct as its fields in order and an enum as its variant's index, so
//! these types *are* the format: their fields, in this order, and their variants, in this
//! order, are never changed.
//!
//! The in-memory types ([`HourRollup`], [`QuarterRollup`], [`DimCounts`], [`HourKey`],
//! [`Dimension`], [`Protocol`], [`Batch`], [`AgentCounters`]) are what the agent accumulates
//! and the collector merges. Each is converted to and from its twin (in `rollup` and
//! `wire`), and their serde implementations go through that conversion (`#[serde(into, from)]`), so whatever embeds
//! them — a frame, a spooled row, a saved state — writes these bytes. The conversions
//! destructure and build every field by name: a field added to an in-memory type does not
//! compile until its conversion says what becomes of it, and it reaches the wire only when
//! someone puts it into a new versioned type (ARCHITECTURE.md, "Formats").
//!
//! `HourKey` has a twin too although it is a plain value: it is the key collector and agent
//! group by, and a field there (a host, a protocol) is as plausible as anywhere. The sketch
//! ([`UniqueSketch`]) has none: its serde form is already its own versioned byte string
//! (`crate::sketch`), which it keeps whatever the sketch does in memory.
//!
//! A conversion moves the strings and sketches and rebuilds the maps from their sorted
//! entries, once per batch; encoding a borrowed batch clones it first.
//!
//! The counters grew once within protocol 1: [`CountersBefore`] (and [`BatchBefore`],
//! [`RollupsBefore`]) are the first layout, read by [`decode_with_counters`].
//!
//! [`HourRollup`]: crate::rollup::HourRollup
//! [`QuarterRollup`]: crate::rollup::QuarterRollup
//! [`DimCounts`]: crate::rollup::DimCounts
//! [`HourKey`]: crate::rollup::HourKey
//! [`Dimension`]: crate::rollup::Dimension
//! [`Protocol`]: crate::rollup::Protocol
//! [`Batch`]: crate::wire::Batch
//! [`AgentCounters`]: crate::wire::AgentCounters
//! [`AgentMessage::Batch`]: crate::wire::AgentMessage::Batch
//! [`AgentMessage::CompressedBatch`]: crate::wire::AgentMessage::CompressedBatch

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::sketch::UniqueSketch;

/// Session length buckets of protocol 1 (the edges of `rollup::LENGTH_EDGES_S`).
pub const LENGTH_BUCKETS: usize = 13;

/// A stream's protocol: 0 = Icecast, 1 = HLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProtocolV1 {
    Icecast,
    Hls,
}

/// A breakdown's dimension: 0 = client … 6 = rendition (added last, so batches from before
/// it decode as they did).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DimensionV1 {
    Client,
    Device,
    Os,
    Country,
    Referrer,
    Source,
    Rendition,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HourKeyV1 {
    pub tenant: String,
    pub stream: String,
    pub hour_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DimCountsV1 {
    pub sessions: u64,
    pub listening_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuarterV1 {
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
    pub dims: BTreeMap<(DimensionV1, String), DimCountsV1>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HourRollupV1 {
    pub protocol: ProtocolV1,
    pub minutes: Vec<u32>,
    pub quarters: [QuarterV1; 4],
    pub dim_uniques: BTreeMap<(DimensionV1, String), UniqueSketch>,
}

/// The counters of protocol 1 as they are now; the two last fields were added after
/// [`CountersBefore`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCountersV1 {
    pub lines: u64,
    pub malformed: BTreeMap<String, u64>,
    pub by_status: BTreeMap<(String, i32), u64>,
    pub not_sessions: BTreeMap<(String, String), u64>,
    pub folded: BTreeMap<(String, String), u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchV1 {
    pub agent_id: String,
    pub seq: u64,
    pub rollups: Vec<(HourKeyV1, HourRollupV1)>,
    pub counters: AgentCountersV1,
}

/// [`AgentCountersV1`] as the first agents wrote it (before `not_sessions` and `folded`).
#[derive(Deserialize)]
pub struct CountersBefore {
    pub lines: u64,
    pub malformed: BTreeMap<String, u64>,
    pub by_status: BTreeMap<(String, i32), u64>,
}

impl From<CountersBefore> for AgentCountersV1 {
    fn from(c: CountersBefore) -> AgentCountersV1 {
        AgentCountersV1 {
            lines: c.lines,
            malformed: c.malformed,
            by_status: c.by_status,
            ..Default::default()
        }
    }
}

/// The same rollups with the counters of the first layout: what [`decode_with_counters`]
/// falls back to for a [`BatchV1`].
#[derive(Deserialize)]
pub struct BatchBefore {
    pub agent_id: String,
    pub seq: u64,
    pub rollups: Vec<(HourKeyV1, HourRollupV1)>,
    pub counters: CountersBefore,
}

impl From<BatchBefore> for BatchV1 {
    fn from(b: BatchBefore) -> BatchV1 {
        BatchV1 {
            agent_id: b.agent_id,
            seq: b.seq,
            rollups: b.rollups,
            counters: b.counters.into(),
        }
    }
}

/// Rollups and counters as older agents spooled them: for spool readers that decode
/// `(rollups, counters)` pairs.
#[derive(Deserialize)]
pub struct RollupsBefore {
    pub rollups: Vec<(HourKeyV1, HourRollupV1)>,
    pub counters: CountersBefore,
}

impl RollupsBefore {
    pub fn into_parts(self) -> (Vec<(HourKeyV1, HourRollupV1)>, AgentCountersV1) {
        (self.rollups, self.counters.into())
    }
}

/// Decodes a postcard value whose last field is an [`AgentCountersV1`] (a [`BatchV1`], the
/// agent's spooled batches), written by this version or by one from before the counters
/// grew: postcard ignores bytes past a value's end, so older collectors read newer batches,
/// and a newer reader that finds the counters end early decodes them the old way.
/// `New` and `Old` are the two layouts; `upgrade` turns the old into the new.
pub fn decode_with_counters<'a, New, Old>(
    bytes: &'a [u8],
    upgrade: impl FnOnce(Old) -> New,
) -> Result<New, postcard::Error>
where
    New: Deserialize<'a>,
    Old: Deserialize<'a>,
{
    match postcard::from_bytes::<New>(bytes) {
        Ok(v) => Ok(v),
        Err(e @ postcard::Error::DeserializeUnexpectedEnd) => postcard::from_bytes::<Old>(bytes)
            .map(upgrade)
            .map_err(|_| e),
        Err(e) => Err(e),
    }
}
