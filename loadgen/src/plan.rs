//! Listeners, their sessions and the noise: everything decided before a line is written.
//!
//! Each listener gets a timeline that starts up to a day before the window, so long
//! progressive sessions (up to 22 h) end — and are logged — inside it. A progressive session
//! appears in the logs if its end is in the window. Of an HLS session the logs hold the requests
//! from its first playlist request at or after the window's start to the last one written at
//! least 200 s before the window's end (so a streaming sessionizer sees it closed before the log
//! ends); the truth is that part, exactly what the lines show.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use rand::{Rng, RngCore};

use crate::data::{ADDRESS_BLOCKS, REFERERS, SOURCES, USER_AGENTS};
use crate::hls::{self, HlsWalk};
use crate::rng::{SplitMix, cumulative};
use crate::{Generated, HOUR_MS, NoiseCounts, Scenario, TruthSession};

const LOOKBACK_MS: i64 = 24 * HOUR_MS;
/// Sessions of one listener on one HLS stream are at least this far apart (end to next accept),
/// more than 5 s clear of the 180 s `hls_session_gap`.
pub const HLS_SESSION_SPACING_MS: i64 = 190_000;
const HLS_TAIL_MARGIN_MS: i64 = 200_000;

/// A station's streams: two Icecast mounts and one HLS stream.
pub const STREAMS_PER_STATION: u8 = 3;
pub const HLS_STREAM: u8 = 2;

pub fn stream_path(station: u32, stream: u8) -> String {
    let t = Scenario::tenant_name(station);
    match stream {
        0 => format!("/{t}/live.mp3"),
        1 => format!("/{t}/aac"),
        _ => format!("/hls/{t}"),
    }
}

/// HLS segment extension of a station.
pub fn segment_ext(station: u32) -> &'static str {
    if station.is_multiple_of(2) {
        "aac"
    } else {
        "ts"
    }
}

/// Body bytes per millisecond of a progressive stream (128 kbit/s MP3, 64 kbit/s AAC).
pub fn bytes_per_ms(stream: u8) -> u64 {
    if stream == 0 { 16 } else { 8 }
}

#[derive(Clone, Copy, Debug)]
enum IpForm {
    V4(Ipv4Addr),
    V6(u64),
    Mapped(Ipv4Addr),
}

struct Listener {
    station: u32,
    ua: usize,
    form: IpForm,
    country: &'static str,
    key: String,
}

#[derive(Clone, Debug)]
pub enum Body {
    Progressive { status: i32, timers: [i64; 5] },
    Hls { walk: HlsWalk },
}

/// One session with everything needed to write its lines.
pub struct PlannedSession {
    pub truth: TruthSession,
    pub host: u32,
    pub station: u32,
    pub stream: u8,
    pub client_ip: String,
    pub client_port: u16,
    pub tls: bool,
    pub server: u8,
    pub ua: &'static str,
    pub referer: &'static str,
    pub source_param: Option<&'static str>,
    pub conns: [u32; 5],
    pub body: Body,
    pub first_write_ms: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoiseKind {
    NotFound,
    NoServer,
    Redirect,
    BadRequest,
    RequestTimeout,
    SslError,
    HaproxyMessage,
    Malformed,
}

const NOISE_KINDS: [(NoiseKind, u64); 8] = [
    (NoiseKind::NotFound, 35),
    (NoiseKind::NoServer, 12),
    (NoiseKind::Redirect, 8),
    (NoiseKind::BadRequest, 10),
    (NoiseKind::RequestTimeout, 5),
    (NoiseKind::SslError, 6),
    (NoiseKind::HaproxyMessage, 10),
    (NoiseKind::Malformed, 14),
];

impl NoiseKind {
    /// The status on the line, for the kinds that are HTTP requests.
    pub fn status(self) -> Option<i32> {
        match self {
            NoiseKind::NotFound => Some(404),
            NoiseKind::NoServer => Some(503),
            NoiseKind::Redirect => Some(302),
            NoiseKind::BadRequest => Some(400),
            NoiseKind::RequestTimeout => Some(408),
            _ => None,
        }
    }
}

pub struct Noise {
    pub host: u32,
    pub write_ms: i64,
    pub kind: NoiseKind,
    pub seed: u64,
}

pub struct Plan {
    pub sessions: Vec<PlannedSession>,
    pub noise: Vec<Noise>,
}

/// The plan of `scenario`, calibrated to `target_lines` when it is set.
pub fn plan(scenario: &Scenario) -> Plan {
    let listeners = make_listeners(scenario);
    let Some(target) = scenario.target_lines else {
        let sessions = plan_sessions(scenario, &listeners, scenario.mix.hls_share);
        let noise = plan_noise(scenario, &sessions, None);
        return Plan { sessions, noise };
    };
    // Session lines are mostly HLS requests: scale the HLS share until they come close to
    // the target minus the noise, then drop sessions to fit and pad with noise to the exact count.
    let session_target = target - target * u64::from(scenario.mix.noise_per_mille) / 1000;
    let mut share = scenario.mix.hls_share;
    let mut sessions = plan_sessions(scenario, &listeners, share);
    for _ in 0..4 {
        let (hls_lines, other) = line_split(&sessions);
        if hls_lines == 0 || session_target.abs_diff(hls_lines + other) < session_target / 200 {
            break;
        }
        let want = session_target.saturating_sub(other) as f64;
        share = (share * want / hls_lines as f64).clamp(0.0, 1.0);
        sessions = plan_sessions(scenario, &listeners, share);
    }
    let mut lines: u64 = sessions.iter().map(|s| u64::from(s.truth.requests)).sum();
    while lines > session_target {
        let s = sessions.pop().expect("lines > 0 means sessions");
        lines -= u64::from(s.truth.requests);
    }
    let noise = plan_noise(scenario, &sessions, Some(target - lines));
    Plan { sessions, noise }
}

fn line_split(sessions: &[PlannedSession]) -> (u64, u64) {
    let mut hls_lines = 0;
    let mut other = 0;
    for s in sessions {
        match s.body {
            Body::Hls { .. } => hls_lines += u64::from(s.truth.requests),
            Body::Progressive { .. } => other += u64::from(s.truth.requests),
        }
    }
    (hls_lines, other)
}

fn block_addr(rng: &mut SplitMix, block: usize) -> IpForm {
    let (net, len, _) = ADDRESS_BLOCKS[block];
    if let Ok(v4) = net.parse::<Ipv4Addr>() {
        let host_bits = 32 - u32::from(len);
        loop {
            let a = u32::from(v4) | (rng.r#gen::<u32>() & ((1u32 << host_bits) - 1));
            if !matches!(a & 0xff, 0 | 255) {
                return IpForm::V4(Ipv4Addr::from(a));
            }
        }
    }
    let v6: Ipv6Addr = net.parse().expect("ADDRESS_BLOCKS are addresses");
    let prefix = (u128::from(v6) >> 64) as u64;
    let free_bits = 64 - u32::from(len);
    IpForm::V6(prefix | (rng.r#gen::<u64>() & ((1u64 << free_bits) - 1)))
}

fn make_listeners(scenario: &Scenario) -> Vec<Listener> {
    let mut rng = SplitMix::derive(scenario.seed, 0, 0);
    // Station popularity falls off like a Zipf law: radio001 is the biggest.
    let station_weights =
        cumulative((0..scenario.stations).map(|i| (1e6 / f64::from(i + 1).powf(0.9)) as u64));
    let ua_weights = cumulative(USER_AGENTS.iter().map(|u| u64::from(u.weight)));
    let v4_blocks: Vec<usize> = (0..ADDRESS_BLOCKS.len())
        .filter(|&i| !ADDRESS_BLOCKS[i].0.contains(':'))
        .collect();
    let v6_blocks: Vec<usize> = (0..ADDRESS_BLOCKS.len())
        .filter(|&i| ADDRESS_BLOCKS[i].0.contains(':'))
        .collect();
    let mut seen_ips = HashSet::new();
    let mut seen_keys = HashSet::new();
    let mut v4_pool: Vec<(Ipv4Addr, &'static str)> = Vec::new();
    let mut out = Vec::with_capacity(scenario.listeners as usize);
    while out.len() < scenario.listeners as usize {
        let station = rng.pick_cumulative(&station_weights) as u32;
        let ua = rng.pick_cumulative(&ua_weights);
        let x: f64 = rng.r#gen();
        let (form, country) = if x < scenario.mix.ipv6_share {
            let b = v6_blocks[rng.gen_range(0..v6_blocks.len())];
            (block_addr(&mut rng, b), ADDRESS_BLOCKS[b].2)
        } else if !v4_pool.is_empty() && rng.gen_bool(0.03) {
            // Behind one NAT: an address another listener (other UA or other station) uses too.
            let (a, c) = v4_pool[rng.gen_range(0..v4_pool.len())];
            (IpForm::V4(a), c)
        } else {
            let b = v4_blocks[rng.gen_range(0..v4_blocks.len())];
            let form = block_addr(&mut rng, b);
            let mapped = x < scenario.mix.ipv6_share + scenario.mix.mapped_share;
            match form {
                IpForm::V4(a) if mapped => (IpForm::Mapped(a), ADDRESS_BLOCKS[b].2),
                f => (f, ADDRESS_BLOCKS[b].2),
            }
        };
        let key = match form {
            IpForm::V4(a) | IpForm::Mapped(a) => a.to_string(),
            IpForm::V6(p) => format!("{}/64", Ipv6Addr::from(u128::from(p) << 64)),
        };
        let fresh_ip = seen_ips.insert(key.clone());
        if !fresh_ip && !matches!(form, IpForm::V4(_)) {
            continue; // only the NAT case shares an address
        }
        if !seen_keys.insert((station, key.clone(), ua)) {
            continue;
        }
        if let (IpForm::V4(a), true) = (form, fresh_ip) {
            v4_pool.push((a, country));
        }
        out.push(Listener {
            station,
            ua,
            form,
            country,
            key,
        });
    }
    out
}

/// A session length in ms: many under a minute, a long tail to 22 h, and a few right at the
/// 60 s threshold.
fn session_length(rng: &mut SplitMix, bot: bool) -> i64 {
    let x: f64 = rng.r#gen();
    let s = if bot {
        if x < 0.8 {
            rng.log_uniform(1.0, 30.0)
        } else {
            rng.log_uniform(60.0, 600.0)
        }
    } else if x < 0.004 {
        return 60_000;
    } else if x < 0.008 {
        return 59_999;
    } else if x < 0.02 {
        return rng.gen_range(59_000..61_000);
    } else if x < 0.27 {
        rng.log_uniform(3.0, 59.0)
    } else if x < 0.57 {
        rng.log_uniform(60.0, 900.0)
    } else if x < 0.79 {
        rng.log_uniform(900.0, 3600.0)
    } else if x < 0.93 {
        rng.log_uniform(3600.0, 4.0 * 3600.0)
    } else if x < 0.98 {
        rng.log_uniform(4.0 * 3600.0, 12.0 * 3600.0)
    } else {
        rng.log_uniform(12.0 * 3600.0, 22.0 * 3600.0)
    };
    (s * 1000.0) as i64
}

/// Time between the end of one session and the start of the listener's next one.
fn session_gap(rng: &mut SplitMix, bot: bool) -> i64 {
    let x: f64 = rng.r#gen();
    let s = if bot {
        rng.log_uniform(240.0, 1800.0)
    } else if x < 0.15 {
        rng.log_uniform(1.0, 30.0) // a player reconnecting
    } else if x < 0.30 {
        rng.log_uniform(190.0, 900.0) // a pause: a new session
    } else if x < 0.70 {
        rng.log_uniform(900.0, 3.0 * 3600.0)
    } else {
        rng.log_uniform(3.0 * 3600.0, 10.0 * 3600.0)
    };
    (s * 1000.0) as i64
}

fn plan_sessions(
    scenario: &Scenario,
    listeners: &[Listener],
    hls_share: f64,
) -> Vec<PlannedSession> {
    let w0 = scenario.start_ms;
    let w1 = scenario.window_end_ms();
    let mut out = Vec::new();
    for (li, l) in listeners.iter().enumerate() {
        let mut rng = SplitMix::derive(scenario.seed, 1, li as u64);
        let ua = &USER_AGENTS[l.ua];
        let bot = ua.is_bot();
        let home_stream = if rng.gen_bool(hls_share) {
            HLS_STREAM
        } else if rng.gen_bool(0.75) {
            0
        } else {
            1
        };
        let home_host = rng.gen_range(0..scenario.hosts);
        let mut t = w0 - LOOKBACK_MS + rng.gen_range(0..LOOKBACK_MS + (w1 - w0));
        let mut last_hls_end = i64::MIN / 2;
        let mut n = 0u64;
        while t < w1 {
            n += 1;
            let stream = if rng.gen_bool(0.8) {
                home_stream
            } else {
                rng.gen_range(0..STREAMS_PER_STATION)
            };
            let length = session_length(&mut rng, bot);
            let host = if rng.gen_bool(0.7) {
                home_host
            } else {
                rng.gen_range(0..scenario.hosts)
            };
            let session_seed =
                SplitMix::derive(scenario.seed ^ 0x5E55_1015, li as u64, n).next_u64();
            let end;
            if stream == HLS_STREAM {
                t = t.max(last_hls_end + HLS_SESSION_SPACING_MS + rng.gen_range(0..10_000));
                let seg_bytes = if segment_ext(l.station) == "aac" {
                    80_000
                } else {
                    168_000
                };
                // The log holds the part of the session inside the window: from its first
                // playlist request at or after the window's start to its last request written
                // 200 s before the window's end (so it ends 200 s before the log does).
                let first_tick = if t >= w0 {
                    t
                } else {
                    t + (w0 - t + hls::SEGMENT_MS - 1) / hls::SEGMENT_MS * hls::SEGMENT_MS
                };
                // No request is written later than this after the last planned tick.
                end = t + length + 2_000;
                last_hls_end = end;
                if first_tick <= t + length && first_tick < w1 {
                    let walk = HlsWalk::new(
                        session_seed,
                        first_tick,
                        t + length,
                        seg_bytes,
                        w1 - HLS_TAIL_MARGIN_MS,
                    );
                    let summary = hls::summarize(&walk);
                    if summary.requests > 0 {
                        let body = Body::Hls { walk };
                        out.push(session(
                            scenario,
                            l,
                            &mut rng,
                            host,
                            stream,
                            first_tick,
                            summary.end_ms,
                            body,
                            summary.requests,
                            summary.first_write_ms,
                        ));
                    }
                }
            } else {
                end = t + length;
                if end >= w0 && end < w1 {
                    let tr = rng.gen_range(0..=length.min(12));
                    let timers = [rng.gen_range(0..=1), 0, rng.gen_range(0..=1), tr, length];
                    let status = if rng.gen_range(0..20) == 0 { 206 } else { 200 };
                    let body = Body::Progressive { status, timers };
                    out.push(session(
                        scenario, l, &mut rng, host, stream, t, end, body, 1, end,
                    ));
                }
            }
            t = end + session_gap(&mut rng, bot);
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn session(
    scenario: &Scenario,
    l: &Listener,
    rng: &mut SplitMix,
    host: u32,
    stream: u8,
    start_ms: i64,
    end_ms: i64,
    body: Body,
    requests: u32,
    first_write_ms: i64,
) -> PlannedSession {
    let ua = &USER_AGENTS[l.ua];
    let (referer, referrer_host) = if ua.sends_referer && rng.gen_bool(0.6) {
        let (r, h) = REFERERS[rng.gen_range(0..REFERERS.len())];
        (r, Some(h.to_string()))
    } else {
        ("", None)
    };
    let source_param =
        (!ua.is_bot() && rng.gen_bool(0.15)).then(|| SOURCES[rng.gen_range(0..SOURCES.len())]);
    let source = source_param
        .map(str::to_string)
        .or_else(|| referrer_host.clone())
        .unwrap_or_else(|| "direct".to_string());
    let client_ip = match l.form {
        IpForm::V4(a) => a.to_string(),
        IpForm::Mapped(a) if rng.gen_bool(0.9) => format!("::ffff:{a}"),
        IpForm::Mapped(a) => a.to_string(),
        // A fresh interface identifier per session, as privacy addresses do.
        IpForm::V6(p) => {
            Ipv6Addr::from((u128::from(p) << 64) | u128::from(rng.r#gen::<u64>() | 1)).to_string()
        }
    };
    let fc = rng.gen_range(40..3_000);
    let bc = rng.gen_range(1..=fc.min(400));
    let conns = [fc, fc, bc, rng.gen_range(1..=bc), 0];
    let status = match &body {
        Body::Progressive { status, .. } => *status,
        Body::Hls { .. } => 200,
    };
    let is_hls = stream == HLS_STREAM;
    PlannedSession {
        truth: TruthSession {
            tenant: Scenario::tenant_name(l.station),
            stream: stream_path(l.station, stream),
            protocol: if is_hls { "hls" } else { "icecast" },
            listener: (l.key.clone(), ua.logged().to_string()),
            start_ms,
            end_ms,
            bot: ua.is_bot(),
            referrer_host,
            source,
            host: Scenario::host_name(host),
            country: l.country,
            status,
            requests,
        },
        host,
        station: l.station,
        stream,
        client_ip,
        client_port: rng.gen_range(1024..=65535),
        tls: rng.gen_bool(scenario.mix.tls_share),
        server: rng.gen_range(1..=2),
        ua: ua.logged(),
        referer,
        source_param,
        conns,
        body,
        first_write_ms,
    }
}

/// Noise lines per host at random write times; `exact` fixes the total count.
fn plan_noise(scenario: &Scenario, sessions: &[PlannedSession], exact: Option<u64>) -> Vec<Noise> {
    let w0 = scenario.start_ms;
    let w1 = scenario.window_end_ms();
    let mut per_host = vec![0u64; scenario.hosts as usize];
    for s in sessions {
        per_host[s.host as usize] += u64::from(s.truth.requests);
    }
    let counts: Vec<u64> = match exact {
        Some(n) => {
            let h = u64::from(scenario.hosts);
            (0..h).map(|i| n / h + u64::from(i < n % h)).collect()
        }
        None => per_host
            .iter()
            .map(|&l| {
                (l * u64::from(scenario.mix.noise_per_mille) / 1000)
                    .max(2 * NOISE_KINDS.len() as u64)
            })
            .collect(),
    };
    let kind_weights = cumulative(NOISE_KINDS.iter().map(|k| k.1));
    let mut out = Vec::new();
    for (host, &count) in counts.iter().enumerate() {
        let mut rng = SplitMix::derive(scenario.seed, 3, host as u64);
        for i in 0..count {
            // Every kind at least once, then by weight.
            let kind = if (i as usize) < NOISE_KINDS.len() {
                NOISE_KINDS[i as usize].0
            } else {
                NOISE_KINDS[rng.pick_cumulative(&kind_weights)].0
            };
            out.push(Noise {
                host: host as u32,
                write_ms: rng.gen_range(w0 + 1_000..w1),
                kind,
                seed: rng.r#gen(),
            });
        }
    }
    out
}

impl Plan {
    pub fn into_generated(
        self,
        scenario: &Scenario,
        files: Vec<(String, Vec<std::path::PathBuf>)>,
        lines: u64,
    ) -> Generated {
        let mut noise = NoiseCounts::default();
        let mut requests_by_status: BTreeMap<i32, u64> = BTreeMap::new();
        for n in &self.noise {
            match n.kind {
                NoiseKind::BadRequest | NoiseKind::RequestTimeout => noise.badreq += 1,
                NoiseKind::SslError => noise.ssl_errors += 1,
                NoiseKind::HaproxyMessage => noise.haproxy_messages += 1,
                NoiseKind::Malformed => noise.malformed += 1,
                k => {
                    *noise
                        .non_2xx
                        .entry(k.status().expect("HTTP kinds"))
                        .or_default() += 1
                }
            }
            if let Some(st) = n.kind.status() {
                *requests_by_status.entry(st).or_default() += 1;
            }
        }
        let mut sessions = Vec::with_capacity(self.sessions.len());
        for s in self.sessions {
            match &s.body {
                Body::Progressive { status, .. } => {
                    *requests_by_status.entry(*status).or_default() += 1
                }
                Body::Hls { walk } => {
                    let mut walk = walk.clone();
                    while let Some(r) = walk.peek() {
                        *requests_by_status.entry(r.status).or_default() += 1;
                        walk.advance();
                    }
                }
            }
            sessions.push(s.truth);
        }
        Generated {
            sessions,
            files,
            lines,
            malformed_lines: noise.malformed,
            noise,
            requests_by_status,
            window_start_ms: scenario.start_ms,
            window_end_ms: scenario.window_end_ms(),
        }
    }
}
