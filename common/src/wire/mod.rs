//! The agent → collector protocol, version 1.
//!
//! QUIC with TLS 1.3; ALPN `earshot/1` names the version. Each message is one postcard frame
//! behind a 4-byte big-endian length prefix, at most [`MAX_FRAME`] bytes. The agent opens one
//! bidirectional stream per request ([`AgentMessage`]) and reads one [`CollectorMessage`] back.
//! The first stream of a connection must carry [`AgentMessage::Hello`]. Live samples travel as
//! QUIC datagrams (a [`LiveSample`] postcard frame without length prefix): latest wins.
//!
//! Compatibility: postcard encodes an enum variant by its index and a struct by its field
//! order, so a message type is only ever extended by a new variant at the end of its enum
//! (old variants keep their encoding), never by a new field. [`AgentMessage::Health`] and
//! [`CollectorMessage::Noted`] were added that way: an agent that never sends `Health` speaks
//! exactly the protocol it spoke before.
//!
//! The messages here are wire types. [`Batch`] and [`AgentCounters`] (and the rollups in a
//! batch) are in-memory types, what the agent accumulates and the collector merges: they are
//! encoded as their protocol-1 forms in [`v1`], converted on the way in and out (their serde
//! implementations, [`compress_batch`], [`decode_batch`], the agent's spool). A field of
//! theirs reaches the bytes only through a new versioned type (ARCHITECTURE.md, "Formats").

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rollup::{HourKey, HourRollup};

pub use crate::v1;
use crate::v1::{AgentCountersV1, BatchV1, HourKeyV1, HourRollupV1};
#[cfg(test)]
mod v1_props;

pub use v1::{RollupsBefore, decode_with_counters};

pub const ALPN: &[u8] = b"earshot/1";
pub const PROTOCOL_VERSION: u32 = 1;
/// Hard limit on one frame. A batch larger than this is split by the agent.
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    Hello(Hello),
    Batch(Batch),
    /// The agent's own health, sent now and then on its own stream; answered by
    /// [`CollectorMessage::Noted`]. The collector keeps the latest per agent (for `/metrics`).
    Health(AgentHealth),
    /// A [`Batch`], postcard-encoded and then deflated ([`compress_batch`]): what agents send,
    /// since a batch's dimension names and sketches compress about four to one.
    CompressedBatch(Vec<u8>),
}

/// The deflate level of batches: the fastest. On the 5-million-line hour it makes 1.06 MB
/// where level 6 makes 0.88 MB, for a fifth of the CPU time: both are under 0.1 % of the
/// log, and the agent's CPU is what streaming hosts pay for.
pub const BATCH_DEFLATE_LEVEL: u32 = 1;

/// Deflates a batch for [`AgentMessage::CompressedBatch`].
pub fn compress_batch(batch: &Batch) -> Result<Vec<u8>, WireError> {
    use std::io::Write;
    let raw = postcard::to_stdvec(&v1::BatchV1::from(batch.clone()))?;
    let mut z = flate2::write::DeflateEncoder::new(
        Vec::with_capacity(raw.len() / 3),
        flate2::Compression::new(BATCH_DEFLATE_LEVEL),
    );
    z.write_all(&raw)
        .map_err(|e| WireError::Compression(e.to_string()))?;
    z.finish()
        .map_err(|e| WireError::Compression(e.to_string()))
}

/// Inflates and decodes a [`AgentMessage::CompressedBatch`], refusing to inflate past
/// [`MAX_FRAME`] bytes (a small frame cannot make the collector allocate without bound).
pub fn decompress_batch(deflated: &[u8]) -> Result<Batch, WireError> {
    use std::io::Read;
    let mut raw = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_FRAME as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| WireError::Compression(e.to_string()))?;
    if raw.len() > MAX_FRAME {
        return Err(WireError::TooLarge(raw.len()));
    }
    Ok(decode_batch(&raw)?)
}

/// The agent process's own counters and gauges, as they are when sent (not deltas: the
/// collector keeps the latest). Counters start at 0 when the agent process starts. The
/// lines read and malformed lines travel with the batches ([`AgentCounters`]), merged exactly
/// once, so they are not repeated here.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentHealth {
    /// When the agent took these numbers (ms since the Unix epoch, agent's clock).
    pub at_ms: i64,
    /// When the agent process started (ms since the Unix epoch).
    pub started_ms: i64,
    /// Sessions open in the sessionizer (HLS sessions waiting for their gap to pass).
    pub sessions_open: u64,
    /// Batches in the spool not yet acknowledged by the collector.
    pub spool_batches: u64,
    /// Bytes of those batches.
    pub spool_bytes: u64,
    /// Attempts to ship the spool that failed (the batches stayed spooled).
    pub send_failures: u64,
    /// Live-sample datagrams sent.
    pub live_sent: u64,
    /// Live samples dropped: not sent (no connection, too large) or the sender was behind.
    pub live_dropped: u64,
    /// Polls of a live source (HAProxy runtime API, Icecast) that failed.
    pub live_polls_failed: u64,
    /// Batches dropped because the spool was full (`[spool] when_full`), over the spool's life.
    pub spool_dropped_batches: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub agent_id: String,
    pub token: String,
    pub agent_version: String,
}

/// One shipment of pre-aggregates. `(agent_id, seq)` identifies it: the collector merges a
/// given pair at most once. Encoded as [`v1::BatchV1`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "v1::BatchV1", from = "v1::BatchV1")]
pub struct Batch {
    pub agent_id: String,
    pub seq: u64,
    pub rollups: Vec<(HourKey, HourRollup)>,
    pub counters: AgentCounters,
}

/// What the agent counted while producing a batch (deltas, summed by the collector).
/// Encoded as [`v1::AgentCountersV1`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "v1::AgentCountersV1", from = "v1::AgentCountersV1")]
pub struct AgentCounters {
    pub lines: u64,
    /// Malformed lines by reason (`"bad_date"`, `"truncated"`, …).
    pub malformed: BTreeMap<String, u64>,
    /// Request lines that formed no session, by tenant and HTTP status (`-1` = none).
    pub by_status: BTreeMap<(String, i32), u64>,
    /// Successful (2xx) requests that are not audio and so never sessions, by tenant and
    /// kind: `document`, `image`, `script`, `player_file`, `status_page`, `method` (HEAD,
    /// OPTIONS and other requests that fetch no audio), `ignored` (a configured pattern).
    /// Added after the fields above: see [`decode_batch`].
    pub not_sessions: BTreeMap<(String, String), u64>,
    /// Distinct names folded into `(other)` by the cardinality bounds, by tenant and what
    /// was folded (`stream`, or a dimension's name).
    pub folded: BTreeMap<(String, String), u64>,
}

/// Decodes a [`Batch`] of this version or an older one (see [`decode_with_counters`]).
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, postcard::Error> {
    decode_with_counters(bytes, |old: v1::BatchBefore| v1::BatchV1::from(old)).map(Batch::from)
}

impl AgentCounters {
    pub fn merge(&mut self, other: &AgentCounters) {
        self.lines += other.lines;
        for (k, v) in &other.malformed {
            *self.malformed.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.by_status {
            *self.by_status.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.not_sessions {
            *self.not_sessions.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.folded {
            *self.folded.entry(k.clone()).or_default() += v;
        }
    }

    pub fn malformed_lines(&self) -> u64 {
        self.malformed.values().sum()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CollectorMessage {
    Welcome {
        protocol_version: u32,
    },
    /// The batch is merged (now or before). The agent may forget it.
    Ack {
        seq: u64,
    },
    /// The request was refused; `retry` says whether sending it again later may succeed.
    Refused {
        reason: String,
        retry: bool,
    },
    /// The agent's [`AgentMessage::Health`] was received.
    Noted,
}

/// A live listener count, sent as a datagram. Latest (by `at_ms`) wins per (host, source).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveSample {
    pub at_ms: i64,
    pub entries: Vec<LiveEntry>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveEntry {
    pub tenant: String,
    pub stream: String,
    pub protocol: crate::rollup::Protocol,
    pub listeners: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes is over the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
    #[error("bad compressed batch: {0}")]
    Compression(String),
}

/// Encodes a message as a length-prefixed frame.
pub fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, WireError> {
    let body = postcard::to_stdvec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decodes a frame body (without its length prefix).
pub fn decode_body<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, WireError> {
    if body.len() > MAX_FRAME {
        return Err(WireError::TooLarge(body.len()));
    }
    Ok(postcard::from_bytes(body)?)
}

impl From<AgentCounters> for AgentCountersV1 {
    fn from(c: AgentCounters) -> AgentCountersV1 {
        let AgentCounters {
            lines,
            malformed,
            by_status,
            not_sessions,
            folded,
        } = c;
        AgentCountersV1 {
            lines,
            malformed,
            by_status,
            not_sessions,
            folded,
        }
    }
}

impl From<AgentCountersV1> for AgentCounters {
    fn from(c: AgentCountersV1) -> AgentCounters {
        let AgentCountersV1 {
            lines,
            malformed,
            by_status,
            not_sessions,
            folded,
        } = c;
        AgentCounters {
            lines,
            malformed,
            by_status,
            not_sessions,
            folded,
        }
    }
}

impl From<Batch> for BatchV1 {
    fn from(b: Batch) -> BatchV1 {
        let Batch {
            agent_id,
            seq,
            rollups,
            counters,
        } = b;
        BatchV1 {
            agent_id,
            seq,
            rollups: rollups_to_v1(rollups),
            counters: counters.into(),
        }
    }
}

impl From<BatchV1> for Batch {
    fn from(b: BatchV1) -> Batch {
        let BatchV1 {
            agent_id,
            seq,
            rollups,
            counters,
        } = b;
        Batch {
            agent_id,
            seq,
            rollups: rollups_from_v1(rollups),
            counters: counters.into(),
        }
    }
}

/// Rollups to their protocol-1 form.
pub fn rollups_to_v1(rollups: Vec<(HourKey, HourRollup)>) -> Vec<(HourKeyV1, HourRollupV1)> {
    rollups
        .into_iter()
        .map(|(k, r)| (k.into(), r.into()))
        .collect()
}

/// Rollups from their protocol-1 form.
pub fn rollups_from_v1(rollups: Vec<(HourKeyV1, HourRollupV1)>) -> Vec<(HourKey, HourRollup)> {
    rollups
        .into_iter()
        .map(|(k, r)| (k.into(), r.into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::Protocol;

    /// The counters of the first layout: lines, malformed, by status.
    type FirstCounters = (u64, BTreeMap<String, u64>, BTreeMap<(String, i32), u64>);

    /// The first layout of a batch, as older agents encoded (and spooled) it.
    #[derive(Serialize)]
    struct OldBatch {
        agent_id: String,
        seq: u64,
        rollups: Vec<(HourKey, HourRollup)>,
        counters: FirstCounters,
    }

    #[test]
    fn batches_of_the_first_layout_still_decode_and_new_ones_decode_the_old_way() {
        let mut r = HourRollup::new(Protocol::Icecast);
        r.quarters[1].sessions = 4;
        let key = HourKey {
            tenant: "t".into(),
            stream: "/live.mp3".into(),
            hour_ms: 7_200_000,
        };
        let old = OldBatch {
            agent_id: "a".into(),
            seq: 9,
            rollups: vec![(key.clone(), r.clone())],
            counters: (
                12,
                BTreeMap::from([("bad_date".to_string(), 2)]),
                BTreeMap::from([(("t".to_string(), 404), 3)]),
            ),
        };
        let bytes = postcard::to_stdvec(&old).unwrap();
        let b = decode_batch(&bytes).unwrap();
        assert_eq!((b.agent_id.as_str(), b.seq), ("a", 9));
        assert_eq!(b.rollups, vec![(key.clone(), r.clone())]);
        assert_eq!(b.counters.lines, 12);
        assert_eq!(b.counters.malformed["bad_date"], 2);
        assert_eq!(b.counters.by_status[&("t".to_string(), 404)], 3);
        assert!(b.counters.not_sessions.is_empty() && b.counters.folded.is_empty());
        // A new batch read by the old layout (an older collector): the same, less the new
        // counters.
        let mut new = b.clone();
        new.counters
            .not_sessions
            .insert(("t".into(), "image".into()), 5);
        let new_bytes = postcard::to_stdvec(&new).unwrap();
        let seen_old: v1::BatchBefore = postcard::from_bytes(&new_bytes).unwrap();
        assert_eq!(seen_old.counters.lines, 12);
        assert_eq!(decode_batch(&new_bytes).unwrap(), new);
        // A truncated new batch is an error, not an old batch.
        assert!(decode_batch(&new_bytes[..new_bytes.len() / 2]).is_err());
    }

    #[test]
    fn batch_round_trips() {
        let mut r = HourRollup::new(Protocol::Hls);
        r.quarters[2].sessions = 3;
        r.quarters[2].uniques.insert(42);
        let b = AgentMessage::Batch(Batch {
            agent_id: "a".into(),
            seq: 7,
            rollups: vec![(
                HourKey {
                    tenant: "t".into(),
                    stream: "/s".into(),
                    hour_ms: 3_600_000,
                },
                r,
            )],
            counters: AgentCounters::default(),
        });
        let frame = encode_frame(&b).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let back: AgentMessage = decode_body(&frame[4..]).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn health_round_trips_and_old_messages_keep_their_encoding() {
        let h = AgentMessage::Health(AgentHealth {
            at_ms: 5,
            sessions_open: 3,
            spool_batches: 2,
            ..Default::default()
        });
        let frame = encode_frame(&h).unwrap();
        assert_eq!(decode_body::<AgentMessage>(&frame[4..]).unwrap(), h);
        // Variant indexes of the first messages are what they were before Health existed.
        let hello = AgentMessage::Hello(Hello {
            protocol_version: 1,
            agent_id: String::new(),
            token: String::new(),
            agent_version: String::new(),
        });
        assert_eq!(postcard::to_stdvec(&hello).unwrap()[0], 0);
        assert_eq!(postcard::to_stdvec(&CollectorMessage::Noted).unwrap(), [3]);
    }

    #[test]
    fn compressed_batches_round_trip_and_cannot_inflate_without_bound() {
        let mut r = HourRollup::new(Protocol::Icecast);
        r.quarters[0].sessions = 9;
        let b = Batch {
            agent_id: "a".into(),
            seq: 3,
            rollups: vec![(
                HourKey {
                    tenant: "t".into(),
                    stream: "/s".into(),
                    hour_ms: 0,
                },
                r,
            )],
            counters: AgentCounters::default(),
        };
        assert_eq!(decompress_batch(&compress_batch(&b).unwrap()).unwrap(), b);
        // 64 MiB of zeros deflate to a few KiB: refused once inflated past the frame limit.
        use std::io::Write;
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        z.write_all(&vec![0u8; 2 * MAX_FRAME]).unwrap();
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 200_000);
        assert!(matches!(
            decompress_batch(&bomb),
            Err(WireError::TooLarge(_))
        ));
        assert!(decompress_batch(b"not deflate at all").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_body::<AgentMessage>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_body::<AgentMessage>(&[]).is_err());
    }
}
