//! Bad input, on stable Rust: the fuzz targets' bodies (`fuzz/src/lib.rs`, run by cargo-fuzz
//! on nightly) fed mutated samples — 100,000 log lines from the generator, 20,000 wire frames,
//! 20,000 sketch encodings — must return without panicking; and the agent counts hostile
//! lines (truncated, binary, 1 MB long, wrong fields, invalid dates, escape sequences) as
//! malformed and skips them, counting every line once.

use std::process::Command;

use earshot_common::rollup::{HourKey, HourRollup, Protocol};
use earshot_common::sketch::UniqueSketch;
use earshot_common::wire::{self, AgentCounters, AgentMessage, Batch, Hello, PROTOCOL_VERSION};
use earshot_loadgen::Scenario;
use earshot_tests::*;

#[path = "../../fuzz/src/lib.rs"]
mod targets;

/// One random mutation of `sample`: byte flips, insertions of hostile bytes, cuts, repeats.
fn mutate(rng: &mut FaultRng, sample: &[u8]) -> Vec<u8> {
    let mut v = sample.to_vec();
    const HOSTILE: &[&[u8]] = &[
        b"\x1b[2J",
        b"\0",
        b"\xff\xfe",
        b"%n%s",
        b"'; DROP TABLE x;--",
        b"99999999999999999999",
        b"-1",
        b"[31/Feb/2026:25:61:61.000]",
        b"\r",
        b"|",
        b"{",
        b"\"",
        b"::::",
        b"\xf0\x9f\x8e\xb5",
    ];
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() as u64 + 1) as usize;
        match rng.below(6) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let h = HOSTILE[rng.below(HOSTILE.len() as u64) as usize];
                v.splice(at..at, h.iter().copied());
            }
            2 => v.truncate(at),
            3 if at < v.len() => {
                let end = (at + 1 + rng.below(16) as usize).min(v.len());
                let piece = v[at..end].to_vec();
                v.splice(at..at, piece);
            }
            4 if at < v.len() => {
                let end = (at + 1 + rng.below(8) as usize).min(v.len());
                v.drain(at..end);
            }
            _ => v.insert(at, rng.below(256) as u8),
        }
    }
    v
}

#[test]
fn mutated_lines_frames_and_sketches_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let g = earshot_loadgen::generate(
        &Scenario {
            seed: 71,
            hosts: 1,
            hours: 1,
            stations: 3,
            listeners: 300,
            ..Scenario::default()
        },
        tmp.path(),
    )
    .unwrap();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    for f in &g.files[0].1 {
        let raw = std::fs::read(f).unwrap();
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            Command::new("gzip")
                .arg("-dc")
                .arg(f)
                .output()
                .unwrap()
                .stdout
        } else {
            raw
        };
        lines.extend(
            text.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    let mut rng = FaultRng::from_env();
    let (mut line_bytes, mut frame_bytes, mut sketch_bytes) = (0usize, 0usize, 0usize);
    for _ in 0..100_000 {
        let i = rng.below(lines.len() as u64) as usize;
        let m = mutate(&mut rng, &lines[i]);
        line_bytes += m.len();
        targets::log_line(&m);
    }

    // Real frames: a Hello, a batch (plain and deflated) with real sketches.
    let mut r = HourRollup::new(Protocol::Hls);
    for i in 0..50 {
        r.quarters[i % 4].sessions += 1;
        r.quarters[i % 4].uniques.insert(i as u64 * 7919);
    }
    let batch = Batch {
        agent_id: "agent-1".into(),
        seq: 9,
        rollups: vec![(
            HourKey {
                tenant: "radio001".into(),
                stream: "/live.mp3".into(),
                hour_ms: 1_795_899_600_000,
            },
            r,
        )],
        counters: AgentCounters::default(),
    };
    let frames: Vec<Vec<u8>> = vec![
        wire::encode_frame(&AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_id: "agent-1".into(),
            token: "t".repeat(64),
            agent_version: "0.1.0".into(),
        }))
        .unwrap()[4..]
            .to_vec(),
        wire::encode_frame(&AgentMessage::Batch(batch.clone())).unwrap()[4..].to_vec(),
        wire::encode_frame(&AgentMessage::CompressedBatch(
            wire::compress_batch(&batch).unwrap(),
        ))
        .unwrap()[4..]
            .to_vec(),
        wire::compress_batch(&batch).unwrap(),
    ];
    for _ in 0..20_000 {
        let i = rng.below(frames.len() as u64) as usize;
        let m = mutate(&mut rng, &frames[i]);
        frame_bytes += m.len();
        targets::wire_frame(&m);
    }

    let mut sparse = UniqueSketch::new();
    let mut dense = UniqueSketch::new();
    for i in 0..20 {
        sparse.insert(i * 104_729);
    }
    for i in 0..20_000u64 {
        dense.insert(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    let sketches = [sparse.to_bytes(), dense.to_bytes()];
    for _ in 0..20_000 {
        let i = rng.below(2) as usize;
        let m = mutate(&mut rng, &sketches[i]);
        sketch_bytes += m.len();
        targets::sketch(&m);
    }
    eprintln!(
        "mangled: 100,000 log lines ({line_bytes} B), 20,000 frames ({frame_bytes} B), 20,000 sketches ({sketch_bytes} B); no panic"
    );
}

#[test]
fn hostile_lines_are_counted_and_skipped_and_good_lines_still_count() {
    let tmp = tempfile::tempdir().unwrap();
    let g = earshot_loadgen::generate(
        &Scenario {
            seed: 72,
            hosts: 1,
            hours: 1,
            stations: 2,
            listeners: 100,
            ..Scenario::default()
        },
        &tmp.path().join("gen"),
    )
    .unwrap();
    let clean = &g.files[0].1;
    let dry = |files: &[std::path::PathBuf]| -> serde_json::Value {
        let out = Command::new(bin("earshot-agent"))
            .args(["ingest", "--dry-run"])
            .args(files)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let base = dry(clean);
    let good = String::from_utf8_lossy(&std::fs::read(clean.last().unwrap()).unwrap())
        .lines()
        .find(|l| l.contains(" 200 "))
        .unwrap()
        .to_string();
    let mut hostile: Vec<Vec<u8>> = vec![
        good.as_bytes()[..good.len() / 2].to_vec(),
        (0..300u32)
            .map(|i| (i * 37 % 256) as u8)
            .filter(|b| *b != b'\n')
            .collect(),
        vec![b'x'; 1 << 20],
        good.replace(" 200 ", " abc ").into_bytes(),
        good.replace("/Nov/", "/Foo/").into_bytes(),
        good.replace(":2", ":9").into_bytes(),
        format!("\x1b[31m{good}\x1b[0m").into_bytes(),
        good.replace("GET ", "GET \0\x1b]0;pwned\x07").into_bytes(),
        b"'; DROP TABLE batches; --".to_vec(),
        Vec::new(),
    ];
    let mut rng = FaultRng::from_env();
    for _ in 0..5_000 {
        hostile.push(mutate(&mut rng, good.as_bytes()));
    }
    let bad = tmp.path().join("hostile.log");
    let body: Vec<u8> = hostile
        .iter()
        .flat_map(|l| l.iter().copied().filter(|b| *b != b'\n').chain([b'\n']))
        .collect();
    std::fs::write(&bad, &body).unwrap();
    let mut files = clean.clone();
    files.push(bad);
    let mixed = dry(&files);
    assert_eq!(
        mixed["lines"].as_u64().unwrap(),
        base["lines"].as_u64().unwrap() + hostile.len() as u64
    );
    let malformed =
        mixed["malformed_lines"].as_u64().unwrap() - base["malformed_lines"].as_u64().unwrap();
    assert!(malformed >= 8, "{mixed}");
    assert!(mixed["malformed"]["too_long"].as_u64().unwrap() >= 1);
    eprintln!(
        "{} hostile lines: {malformed} counted malformed by reason {}, the rest parsed as (odd) lines",
        hostile.len(),
        mixed["malformed"]
    );
}
