//! Fixed values of the formats earshot writes and reads across versions — frames on the wire,
//! batches, spooled batches — for golden-bytes tests: each value is encoded once and its bytes
//! kept under `tests/data/formats/`; the tests decode the kept bytes to the value and encode
//! the value back to the same bytes. A change that moves one byte of a shipped or stored
//! format fails them (ARCHITECTURE.md, "Formats", says how to add a field instead).
//!
//! The values use every field and every enum variant with contents worth telling apart
//! (no two counters equal, both sketch forms), so a field moved or reinterpreted shows.

use std::collections::BTreeMap;

use crate::rollup::{DimCounts, Dimension, HourKey, HourRollup, Protocol, QuarterRollup};
use crate::sketch::UniqueSketch;
use crate::wire::{
    AgentCounters, AgentHealth, AgentMessage, Batch, CollectorMessage, Hello, LiveEntry, LiveSample,
};

/// 2026-03-01T10:00:00Z.
pub const HOUR_MS: i64 = 1_772_359_200_000;

/// A sketch of `n` listeners (hashes `seed`, `seed + 1`, …): sparse for a few, dense for
/// thousands.
pub fn sketch(seed: u64, n: u64) -> UniqueSketch {
    let mut s = UniqueSketch::new();
    for i in 0..n {
        s.insert(seed.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    s
}

fn quarter(q: u64) -> QuarterRollup {
    let base = 1 + 100 * q;
    let mut lengths = [0; crate::rollup::LENGTH_BUCKETS];
    for (i, l) in lengths.iter_mut().enumerate() {
        *l = base + i as u64;
    }
    let mut dims = BTreeMap::new();
    for (i, d) in Dimension::ALL.into_iter().enumerate() {
        dims.insert(
            (d, format!("{}-{q}", d.as_str())),
            DimCounts {
                sessions: base + 20 + i as u64,
                listening_ms: 60_000 * (base + i as u64),
            },
        );
    }
    dims.insert(
        (Dimension::Country, "(other)".to_string()),
        DimCounts {
            sessions: base + 40,
            listening_ms: 7,
        },
    );
    QuarterRollup {
        sessions: base + 50,
        short_sessions: base + 51,
        bot_sessions: base + 52,
        completed: base + 53,
        carried_in: base + 54,
        listening_ms: 900_000 * (base + 55),
        aqh_listeners: base + 56,
        aqh_tenant_listeners: base + 57,
        lengths,
        uniques: sketch(q * 1_000, 3 + q),
        dims,
    }
}

/// Two rollups: an HLS stream's hour with every dimension and a dense hour sketch, and an
/// Icecast mount's with empty quarters.
pub fn rollups() -> Vec<(HourKey, HourRollup)> {
    let mut hls = HourRollup::new(Protocol::Hls);
    hls.minutes = (0..60).map(|m| 3 * m + 1).collect();
    hls.quarters = [quarter(0), quarter(1), quarter(2), quarter(3)];
    for (i, d) in Dimension::ALL.into_iter().enumerate() {
        hls.dim_uniques
            .insert((d, format!("{}-0", d.as_str())), sketch(50 + i as u64, 2));
    }
    hls.dim_uniques
        .insert((Dimension::Client, "dense".to_string()), sketch(7, 5_000));
    let mut mount = HourRollup::new(Protocol::Icecast);
    mount.minutes[59] = 4;
    vec![
        (
            HourKey {
                tenant: "radio-one".to_string(),
                stream: "/hls/radio-one".to_string(),
                hour_ms: HOUR_MS,
            },
            hls,
        ),
        (
            HourKey {
                tenant: "radio_two".to_string(),
                stream: "/live.mp3".to_string(),
                hour_ms: HOUR_MS + 3_600_000,
            },
            mount,
        ),
    ]
}

/// Counters with an entry in every map.
pub fn counters() -> AgentCounters {
    AgentCounters {
        lines: 123_456,
        malformed: [("bad_date".to_string(), 3), ("truncated".to_string(), 5)].into(),
        by_status: [
            (("radio-one".to_string(), 404), 11),
            (("radio-one".to_string(), -1), 2),
        ]
        .into(),
        not_sessions: [(("radio-one".to_string(), "image".to_string()), 13)].into(),
        folded: [(("radio_two".to_string(), "source".to_string()), 17)].into(),
    }
}

/// The batch of [`rollups`] and [`counters`].
pub fn batch() -> Batch {
    Batch {
        agent_id: "edge-1".to_string(),
        seq: 42,
        rollups: rollups(),
        counters: counters(),
    }
}

/// One of each message an agent sends, but the compressed batch (whose deflated bytes are
/// the compressor's to choose; its inflated bytes are [`batch`]'s).
pub fn agent_messages() -> Vec<AgentMessage> {
    vec![
        AgentMessage::Hello(Hello {
            protocol_version: 1,
            agent_id: "edge-1".to_string(),
            token: "secret-token".to_string(),
            agent_version: "0.1.0".to_string(),
        }),
        AgentMessage::Batch(batch()),
        AgentMessage::Health(AgentHealth {
            at_ms: HOUR_MS + 1,
            started_ms: HOUR_MS - 2,
            sessions_open: 3,
            spool_batches: 4,
            spool_bytes: 5,
            send_failures: 6,
            live_sent: 7,
            live_dropped: 8,
            live_polls_failed: 9,
            spool_dropped_batches: 10,
        }),
    ]
}

/// One of each message the collector sends.
pub fn collector_messages() -> Vec<CollectorMessage> {
    vec![
        CollectorMessage::Welcome {
            protocol_version: 1,
        },
        CollectorMessage::Ack { seq: 42 },
        CollectorMessage::Refused {
            reason: "unknown agent".to_string(),
            retry: true,
        },
        CollectorMessage::Noted,
    ]
}

/// A live datagram with both protocols.
pub fn live_sample() -> LiveSample {
    LiveSample {
        at_ms: HOUR_MS + 5,
        entries: vec![
            LiveEntry {
                tenant: "radio-one".to_string(),
                stream: "/hls/radio-one".to_string(),
                protocol: Protocol::Hls,
                listeners: 31,
            },
            LiveEntry {
                tenant: "radio_two".to_string(),
                stream: "/live.mp3".to_string(),
                protocol: Protocol::Icecast,
                listeners: 7,
            },
        ],
    }
}

/// Where the kept bytes are: `tests/data/formats/` of the repository.
pub fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/formats")
}

/// The kept bytes of `name`; with `EARSHOT_WRITE_GOLDEN=1` in the environment, `fresh` is
/// kept as `name` first (how a new format version's fixtures are made; never in CI).
pub fn kept(name: &str, fresh: &[u8]) -> Vec<u8> {
    let path = fixture_dir().join(name);
    if std::env::var_os("EARSHOT_WRITE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(fixture_dir()).expect("fixture directory");
        std::fs::write(&path, fresh).expect("fixture written");
    }
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{compress_batch, decode_batch, decode_body, decompress_batch, encode_frame};

    /// Hex of where two byte strings first differ, for a readable failure.
    fn first_difference(a: &[u8], b: &[u8]) -> String {
        let at = a
            .iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        format!(
            "lengths {} and {}, first difference at byte {at}: {:02x?} vs {:02x?}",
            a.len(),
            b.len(),
            &a[at.min(a.len())..(at + 8).min(a.len())],
            &b[at.min(b.len())..(at + 8).min(b.len())]
        )
    }

    fn assert_same_bytes(name: &str, kept: &[u8], fresh: &[u8]) {
        assert!(
            kept == fresh,
            "{name}: the encoding changed ({}). A shipped or stored format must not move: \
             see ARCHITECTURE.md, \"Formats\"",
            first_difference(kept, fresh)
        );
    }

    #[test]
    fn the_values_use_both_sketch_forms() {
        let rollups = rollups();
        let dense = &rollups[0].1.dim_uniques[&(Dimension::Client, "dense".to_string())];
        // Sparse sketches are exact; the dense one (5,000 listeners) is within HLL's error.
        assert_eq!(rollups[0].1.quarters[2].uniques.estimate(), 5);
        let e = dense.estimate() as f64;
        assert!((e - 5_000.0).abs() < 5_000.0 * 0.03, "dense estimate {e}");
        assert_eq!(
            dense.to_bytes()[1],
            rollups[0].1.quarters[0].uniques.to_bytes()[1] + 1
        );
    }

    #[test]
    fn a_batch_of_version_1_keeps_its_bytes() {
        let fresh = postcard::to_stdvec(&batch()).unwrap();
        let kept = kept("batch-v1.postcard", &fresh);
        assert_eq!(decode_batch(&kept).unwrap(), batch());
        assert_same_bytes("batch-v1.postcard", &kept, &fresh);
    }

    #[test]
    fn a_compressed_batch_of_version_1_decodes() {
        // The deflated bytes are the compressor's to choose; what they inflate to is pinned.
        let fresh = compress_batch(&batch()).unwrap();
        let kept = kept("batch-v1.deflate", &fresh);
        assert_eq!(decompress_batch(&kept).unwrap(), batch());
    }

    #[test]
    fn every_frame_of_version_1_keeps_its_bytes() {
        let mut fresh = Vec::new();
        for m in agent_messages() {
            fresh.extend(encode_frame(&m).unwrap());
        }
        fresh.extend(encode_frame(&AgentMessage::CompressedBatch(vec![1, 2, 3])).unwrap());
        for m in collector_messages() {
            fresh.extend(encode_frame(&m).unwrap());
        }
        let live = postcard::to_stdvec(&live_sample()).unwrap();
        let kept_frames = kept("frames-v1.bin", &fresh);
        let kept_live = kept("live-sample-v1.postcard", &live);
        // Read the kept frames back one by one, by their length prefixes.
        let mut rest = &kept_frames[..];
        let mut bodies = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            bodies.push(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
        assert_eq!(
            bodies.len(),
            agent_messages().len() + 1 + collector_messages().len()
        );
        for (body, m) in bodies.iter().zip(agent_messages()) {
            assert_eq!(decode_body::<AgentMessage>(body).unwrap(), m);
        }
        let n = agent_messages().len();
        assert_eq!(
            decode_body::<AgentMessage>(bodies[n]).unwrap(),
            AgentMessage::CompressedBatch(vec![1, 2, 3])
        );
        for (body, m) in bodies[n + 1..].iter().zip(collector_messages()) {
            assert_eq!(decode_body::<CollectorMessage>(body).unwrap(), m);
        }
        assert_eq!(
            decode_body::<LiveSample>(&kept_live).unwrap(),
            live_sample()
        );
        assert_same_bytes("frames-v1.bin", &kept_frames, &fresh);
        assert_same_bytes("live-sample-v1.postcard", &kept_live, &live);
    }
}
