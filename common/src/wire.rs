//! The agent → collector protocol, version 1.
//!
//! QUIC with TLS 1.3; ALPN `earshot/1` names the version. Each message is one postcard frame
//! behind a 4-byte big-endian length prefix, at most [`MAX_FRAME`] bytes. The agent opens one
//! bidirectional stream per request ([`AgentMessage`]) and reads one [`CollectorMessage`] back.
//! The first stream of a connection must carry [`AgentMessage::Hello`]. Live samples travel as
//! QUIC datagrams (a [`LiveSample`] postcard frame without length prefix): latest wins.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rollup::{HourKey, HourRollup};

pub const ALPN: &[u8] = b"earshot/1";
pub const PROTOCOL_VERSION: u32 = 1;
/// Hard limit on one frame. A batch larger than this is split by the agent.
pub const MAX_FRAME: usize = 32 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AgentMessage {
    Hello(Hello),
    Batch(Batch),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub agent_id: String,
    pub token: String,
    pub agent_version: String,
}

/// One shipment of pre-aggregates. `(agent_id, seq)` identifies it: the collector merges a
/// given pair at most once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub agent_id: String,
    pub seq: u64,
    pub rollups: Vec<(HourKey, HourRollup)>,
    pub counters: AgentCounters,
}

/// What the agent counted while producing a batch (deltas, summed by the collector).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentCounters {
    pub lines: u64,
    /// Malformed lines by reason (`"bad_date"`, `"truncated"`, …).
    pub malformed: BTreeMap<String, u64>,
    /// Request lines that formed no session, by tenant and HTTP status (`-1` = none).
    pub by_status: BTreeMap<(String, i32), u64>,
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
    }

    pub fn malformed_lines(&self) -> u64 {
        self.malformed.values().sum()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CollectorMessage {
    Welcome { protocol_version: u32 },
    /// The batch is merged (now or before). The agent may forget it.
    Ack { seq: u64 },
    /// The request was refused; `retry` says whether sending it again later may succeed.
    Refused { reason: String, retry: bool },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::Protocol;

    #[test]
    fn batch_round_trips() {
        let mut r = HourRollup::new(Protocol::Hls);
        r.quarters[2].sessions = 3;
        r.quarters[2].uniques.insert(42);
        let b = AgentMessage::Batch(Batch {
            agent_id: "a".into(),
            seq: 7,
            rollups: vec![(HourKey { tenant: "t".into(), stream: "/s".into(), hour_ms: 3_600_000 }, r)],
            counters: AgentCounters::default(),
        });
        let frame = encode_frame(&b).unwrap();
        let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - 4);
        let back: AgentMessage = decode_body(&frame[4..]).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode_body::<AgentMessage>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_body::<AgentMessage>(&[]).is_err());
    }
}
