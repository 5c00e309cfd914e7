//! Attack files: one hour of one tenant (`be_attack`) where one field takes a new value on
//! every line, to show what unbounded cardinality costs the agent (memory, wire bytes).
//!
//! Every line is a 200 progressive session of 60 to 300 s from a non-bot User-Agent, so every
//! line is one qualifying session. Values are distinct by construction (a bijective mix of the
//! line number), so the truth's distinct count is exact without keeping them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::Context;
use rand::Rng;
use serde::Serialize;

use crate::format::HttpLine;
use crate::rng::SplitMix;
use crate::{HOUR_MS, Scenario};

/// Which field every line changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// A 200 to `/x<random>.mp3`: a new mount per line.
    RandomMounts,
    /// One mount, `/live.mp3?source=<random>`.
    RandomSource,
    /// One mount, Referer `https://<random>.example.com/player`.
    RandomReferer,
    /// One mount, a new (browser-like, not bot) User-Agent per line.
    RandomUa,
    /// One mount, a new client address per line, IPv4 and IPv6 (each its own /64).
    RandomIp,
}

impl AttackKind {
    /// The truth's name of the attacked field.
    pub fn field(self) -> &'static str {
        match self {
            AttackKind::RandomMounts => "stream",
            AttackKind::RandomSource => "source",
            AttackKind::RandomReferer => "referrer_host",
            AttackKind::RandomUa => "user_agent",
            AttackKind::RandomIp => "client_ip",
        }
    }
}

pub const ATTACK_TENANT: &str = "attack";
const MOUNT: &str = "/live.mp3";
/// A few ordinary players for the attacks that do not vary the User-Agent.
const AGENTS: [&str; 4] = [
    "VLC/3.0.20 LibVLC/3.0.20",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "ExoPlayerLib/2.19.1",
    "foobar2000/2.1.5",
];
/// Client addresses for the attacks that do not vary the address.
const CLIENTS: u32 = 1_000;

/// The truth of an attack file.
#[derive(Clone, Debug, Serialize)]
pub struct AttackTruth {
    pub kind: AttackKind,
    pub tenant: &'static str,
    /// The attacked field: `stream`, `source`, `referrer_host`, `user_agent` or `client_ip`.
    pub field: &'static str,
    pub lines: u64,
    /// Every line is one session.
    pub sessions: u64,
    /// All of them qualify (≥ 60 s, not bots).
    pub qualifying_sessions: u64,
    pub short_sessions: u64,
    pub bot_sessions: u64,
    pub listening_seconds: f64,
    /// Distinct values of the attacked field (`== lines`).
    pub distinct_values: u64,
    /// Distinct listeners (IP key × User-Agent).
    pub distinct_listeners: u64,
    /// Distinct streams (mount paths).
    pub distinct_streams: u64,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
}

/// A bijection of u64: distinct inputs, distinct outputs that look random.
fn mix(x: u64, seed: u64) -> u64 {
    let mut z = x ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A bijection of u32.
fn mix32(x: u32, seed: u64) -> u32 {
    let mut z = x ^ (seed as u32);
    z = (z ^ (z >> 16)).wrapping_mul(0x7FEB_352D);
    z = (z ^ (z >> 15)).wrapping_mul(0x846C_A68B);
    z ^ (z >> 16)
}

/// A bijection of the low 24 bits.
fn mix24(x: u32, seed: u64) -> u32 {
    const M: u32 = 0xFF_FFFF;
    let mut z = (x ^ seed as u32) & M;
    z = (z ^ (z >> 12)).wrapping_mul(0x5D_3A_67) & M;
    z = (z ^ (z >> 11)).wrapping_mul(0x9E_37_79) & M;
    z ^ (z >> 12)
}

/// Writes `lines` lines of the attack into `path` (raw HAProxy lines, UTC), one hour from
/// `start_ms`, and returns the truth.
pub fn write_attack(
    kind: AttackKind,
    lines: u64,
    seed: u64,
    start_ms: i64,
    path: &Path,
) -> anyhow::Result<AttackTruth> {
    anyhow::ensure!(lines > 0, "an attack needs lines");
    anyhow::ensure!(
        kind != AttackKind::RandomIp || lines <= 100 << 24,
        "random-ip: at most 1,677,721,600 lines"
    );
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut rng = SplitMix::derive(seed, 0xA77A, kind as u64);
    let backend = format!("be_{ATTACK_TENANT}");
    // Lines are written (accept + Ta) from 300 s into the hour to its end, in order.
    let first_write = start_ms + 300_000;
    let span = HOUR_MS - 300_000;
    let mut listening_ms: u64 = 0;
    let mut line = Vec::with_capacity(512);
    let mut request = String::with_capacity(128);
    let mut ip = String::with_capacity(48);
    let mut ua = String::with_capacity(160);
    let mut referer = String::with_capacity(64);
    let (mut v4, mut v6) = (0u32, 0u32);
    let mut listeners = std::collections::HashSet::new();
    for i in 0..lines {
        let write_ms = first_write + (i as i64 * span) / lines as i64;
        let ta = rng.gen_range(60_000..=300_000i64);
        let r = mix(i, seed);
        request.clear();
        ip.clear();
        ua.clear();
        referer.clear();
        use std::fmt::Write as _;
        match kind {
            AttackKind::RandomMounts => {
                let _ = write!(request, "GET /x{r:016x}.mp3 HTTP/1.1");
            }
            AttackKind::RandomSource => {
                let _ = write!(request, "GET {MOUNT}?source={r:016x} HTTP/1.1");
            }
            _ => {
                let _ = write!(request, "GET {MOUNT} HTTP/1.1");
            }
        }
        if kind == AttackKind::RandomIp {
            if i % 4 == 3 {
                // Each its own /64 in 2001:db8::/32 (v6 counts the IPv6 lines).
                let prefix = (0x2001_0db8u128 << 96) | (u128::from(mix32(v6, seed)) << 64);
                v6 += 1;
                let _ = write!(ip, "{}", Ipv6Addr::from(prefix | u128::from(r | 1)));
            } else {
                // 2^24 distinct addresses per first octet from 20 on: mix24 is a bijection.
                let a = ((20 + (v4 >> 24)) << 24) | mix24(v4 & 0xFF_FFFF, seed);
                v4 += 1;
                let _ = write!(ip, "{}", Ipv4Addr::from(a));
            }
        } else {
            let c = (mix(i, !seed) % u64::from(CLIENTS)) as u32;
            let _ = write!(ip, "{}", Ipv4Addr::from(0x5400_0000 | (c << 4) | 1)); // 84.0.x.y
            listeners.insert((c, i % AGENTS.len() as u64));
        }
        if kind == AttackKind::RandomUa {
            let _ = write!(
                ua,
                "Mozilla/5.0 (Linux; Android 14; SM-{:06X}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.{}.{} Mobile Safari/537.36",
                r & 0xFF_FFFF,
                (r >> 24) % 10_000,
                r >> 40
            );
        } else {
            ua.push_str(AGENTS[(i % AGENTS.len() as u64) as usize]);
        }
        if kind == AttackKind::RandomReferer {
            let _ = write!(referer, "https://{r:016x}.example.com/player");
        }
        line.clear();
        HttpLine {
            client_ip: &ip,
            client_port: rng.gen_range(1024..=65535),
            accept_ms: write_ms - ta,
            frontend: "fe_http",
            backend: &backend,
            server: "s1",
            timers: [0, 0, 0, rng.gen_range(0..=12), ta],
            status: 200,
            bytes: ta as u64 * 16 + 290,
            termination: "CD--",
            conns: [300, 300, 120, 120, 0],
            queues: [0, 0],
            captures: Some((&ua, &referer)),
            request: &request,
        }
        .push(&mut line, 0);
        line.push(b'\n');
        w.write_all(&line)?;
        listening_ms += ta as u64;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    let listeners = match kind {
        AttackKind::RandomUa | AttackKind::RandomIp => lines,
        _ => listeners.len() as u64,
    };
    Ok(AttackTruth {
        kind,
        tenant: ATTACK_TENANT,
        field: kind.field(),
        lines,
        sessions: lines,
        qualifying_sessions: lines,
        short_sessions: 0,
        bot_sessions: 0,
        listening_seconds: listening_ms as f64 / 1000.0,
        distinct_values: lines,
        distinct_listeners: listeners,
        distinct_streams: if kind == AttackKind::RandomMounts {
            lines
        } else {
            1
        },
        window_start_ms: start_ms,
        window_end_ms: start_ms + HOUR_MS,
    })
}

/// The default attack hour: the benchmark's (2026-11-28T21:00Z).
pub fn default_start_ms() -> i64 {
    Scenario::default().start_ms
}
