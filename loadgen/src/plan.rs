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
use crate::layout::{Family, StationLayout, station_layouts};
use crate::rng::{SplitMix, cumulative};
use crate::{Generated, HOUR_MS, Layouts, NoiseCounts, Scenario, TruthSession};

const LOOKBACK_MS: i64 = 24 * HOUR_MS;
/// Sessions of one listener on one HLS stream are at least this far apart (end to next accept),
/// more than 5 s clear of the 180 s `hls_session_gap`.
pub const HLS_SESSION_SPACING_MS: i64 = 190_000;
/// With [`Layouts::Mixed`], a listener's HLS sessions (on any of its station's HLS streams) are
/// at least this far apart: nginx-rtmp's streams share one directory, where the agent would
/// join a listener's requests to two of them within 180 s into one session.
pub const MIXED_HLS_SESSION_SPACING_MS: i64 = 205_000;
const HLS_TAIL_MARGIN_MS: i64 = 200_000;

/// A classic station's streams: two Icecast mounts and one HLS stream.
pub const STREAMS_PER_STATION: u8 = 3;
pub const HLS_STREAM: u8 = 2;

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
    /// Its first session starts in the window's first minute on this stream.
    pinned: Option<u8>,
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
    /// Index into the station's [`StationLayout::streams`].
    pub stream: u8,
    /// Requests as HTTP/2 absolute URIs (`GET https://radio.example/… HTTP/2.0`).
    pub h2: bool,
    /// Wowza's per-session id, the CDN token's seed, a `listenerid=`.
    pub session_id: u64,
    /// A progressive request's cache-buster query: 0 none, 1 `nocache=`, 2 `icy=http`,
    /// 3 `listenerid=`, 4 `type=.mp3`.
    pub buster: u8,
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
    /// A 2xx request that is not a session (now-playing JSON, artwork, HEAD …): mixed layouts.
    Web(WebKind),
}

/// The non-audio requests answered 200 of [`Layouts::Mixed`], with docs/traffic.md's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WebKind {
    NowPlaying,
    StatusJson,
    Art,
    PlayerJs,
    Crossdomain,
    Favicon,
    Robots,
    PlayerFile,
    Head,
    Options,
}

pub const WEB_KINDS: [(WebKind, u64); 10] = [
    (WebKind::NowPlaying, 30),
    (WebKind::StatusJson, 10),
    (WebKind::Art, 10),
    (WebKind::PlayerJs, 6),
    (WebKind::Crossdomain, 3),
    (WebKind::Favicon, 6),
    (WebKind::Robots, 2),
    (WebKind::PlayerFile, 6),
    (WebKind::Head, 6),
    (WebKind::Options, 3),
];

impl WebKind {
    /// docs/traffic.md section 1's kind of not-session request.
    pub fn kind(self) -> &'static str {
        match self {
            WebKind::NowPlaying | WebKind::Crossdomain | WebKind::Robots => "document",
            WebKind::StatusJson => "status_page",
            WebKind::Art | WebKind::Favicon => "image",
            WebKind::PlayerJs => "script",
            WebKind::PlayerFile => "player_file",
            WebKind::Head | WebKind::Options => "method",
        }
    }
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
            NoiseKind::Web(_) => Some(200),
            _ => None,
        }
    }
}

pub struct Noise {
    pub host: u32,
    /// The station of a [`NoiseKind::Web`] line (others draw theirs when written).
    pub station: u32,
    pub write_ms: i64,
    pub kind: NoiseKind,
    pub seed: u64,
}

pub struct Plan {
    pub layouts: Vec<StationLayout>,
    pub sessions: Vec<PlannedSession>,
    pub noise: Vec<Noise>,
}

/// The plan of `scenario`, calibrated to `target_lines` when it is set.
pub fn plan(scenario: &Scenario) -> Plan {
    let layouts = station_layouts(scenario);
    let listeners = make_listeners(scenario, &layouts);
    let Some(target) = scenario.target_lines else {
        let sessions = plan_sessions(scenario, &layouts, &listeners, scenario.mix.hls_share);
        let noise = plan_noise(scenario, &layouts, &sessions, None);
        return Plan {
            layouts,
            sessions,
            noise,
        };
    };
    // Session lines are mostly HLS requests: scale the HLS share until they come close to
    // the target minus the noise, then drop sessions to fit and pad with noise to the exact count.
    let session_target = target - target * u64::from(scenario.mix.noise_per_mille) / 1000;
    let mut share = scenario.mix.hls_share;
    let mut sessions = plan_sessions(scenario, &layouts, &listeners, share);
    for _ in 0..4 {
        let (hls_lines, other) = line_split(&sessions);
        if hls_lines == 0 || session_target.abs_diff(hls_lines + other) < session_target / 200 {
            break;
        }
        let want = session_target.saturating_sub(other) as f64;
        share = (share * want / hls_lines as f64).clamp(0.0, 1.0);
        sessions = plan_sessions(scenario, &layouts, &listeners, share);
    }
    let mut lines: u64 = sessions.iter().map(|s| u64::from(s.truth.requests)).sum();
    while lines > session_target {
        let s = sessions.pop().expect("lines > 0 means sessions");
        lines -= u64::from(s.truth.requests);
    }
    let noise = plan_noise(scenario, &layouts, &sessions, Some(target - lines));
    Plan {
        layouts,
        sessions,
        noise,
    }
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

fn make_listeners(scenario: &Scenario, layouts: &[StationLayout]) -> Vec<Listener> {
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
            pinned: None,
        });
    }
    // nginx-rtmp stations: every stream of the shared directory gets a listener in the first
    // minute, so that the directory shows its several streams before any session closes. They
    // come first: calibrating to a line count drops the last sessions.
    let mut pinned = Vec::new();
    let mut rng = SplitMix::derive(scenario.seed, 8, 0);
    for (station, layout) in layouts.iter().enumerate() {
        if layout.family != Family::NginxRtmp {
            continue;
        }
        for (i, st) in layout.streams.iter().enumerate() {
            if !st.hls {
                continue;
            }
            loop {
                let ua = rng.pick_cumulative(&ua_weights);
                if USER_AGENTS[ua].is_bot() {
                    continue;
                }
                let b = v4_blocks[rng.gen_range(0..v4_blocks.len())];
                let form = block_addr(&mut rng, b);
                let IpForm::V4(a) = form else { unreachable!() };
                let key = a.to_string();
                if !seen_ips.insert(key.clone()) {
                    continue;
                }
                pinned.push(Listener {
                    station: station as u32,
                    ua,
                    form,
                    country: ADDRESS_BLOCKS[b].2,
                    key,
                    pinned: Some(i as u8),
                });
                break;
            }
        }
    }
    pinned.extend(out);
    pinned
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

/// A mixed-layout listener's usual stream: an HLS one with probability `hls_share` where the
/// station has both kinds.
fn mixed_home(rng: &mut SplitMix, layout: &StationLayout, hls_share: f64) -> u8 {
    let has_hls = layout.streams.iter().any(|s| s.hls);
    let has_mount = layout.streams.iter().any(|s| !s.hls);
    // HLS stations' listeners mostly use HLS: 0.3 → 66 %, still monotonic for calibrating.
    let p = 1.0 - (1.0 - hls_share.clamp(0.0, 1.0)).powi(3);
    let want_hls = has_hls && (!has_mount || rng.gen_bool(p));
    pick_stream(rng, layout, Some(want_hls))
}

/// A stream of the station by weight: of one kind, or of any.
fn pick_stream(rng: &mut SplitMix, layout: &StationLayout, hls: Option<bool>) -> u8 {
    let candidates: Vec<(usize, u64)> = layout
        .streams
        .iter()
        .enumerate()
        .filter(|(_, s)| hls.is_none_or(|h| s.hls == h))
        .map(|(i, s)| (i, u64::from(s.weight)))
        .collect();
    let weights = cumulative(candidates.iter().map(|c| c.1));
    candidates[rng.pick_cumulative(&weights)].0 as u8
}

fn plan_sessions(
    scenario: &Scenario,
    layouts: &[StationLayout],
    listeners: &[Listener],
    hls_share: f64,
) -> Vec<PlannedSession> {
    let w0 = scenario.start_ms;
    let w1 = scenario.window_end_ms();
    let mixed = scenario.layouts == Layouts::Mixed;
    let spacing = if mixed {
        MIXED_HLS_SESSION_SPACING_MS
    } else {
        HLS_SESSION_SPACING_MS
    };
    let mut out = Vec::new();
    for (li, l) in listeners.iter().enumerate() {
        let layout = &layouts[l.station as usize];
        let mut rng = SplitMix::derive(scenario.seed, 1, li as u64);
        let ua = &USER_AGENTS[l.ua];
        let bot = ua.is_bot();
        let home_stream = if mixed {
            l.pinned
                .unwrap_or_else(|| mixed_home(&mut rng, layout, hls_share))
        } else if rng.gen_bool(hls_share) {
            HLS_STREAM
        } else if rng.gen_bool(0.75) {
            0
        } else {
            1
        };
        let home_host = rng.gen_range(0..scenario.hosts);
        let mut t = match l.pinned {
            Some(_) => w0 + rng.gen_range(1_000..40_000),
            None => w0 - LOOKBACK_MS + rng.gen_range(0..LOOKBACK_MS + (w1 - w0)),
        };
        let mut last_hls_end = i64::MIN / 2;
        let mut n = 0u64;
        while t < w1 {
            n += 1;
            let stream = if (l.pinned.is_some() && n == 1) || rng.gen_bool(0.8) {
                home_stream
            } else if mixed {
                pick_stream(&mut rng, layout, None)
            } else {
                rng.gen_range(0..STREAMS_PER_STATION)
            };
            let mut length = session_length(&mut rng, bot);
            if l.pinned.is_some() && n == 1 {
                length = rng.gen_range(300_000..1_800_000);
            }
            let host = if rng.gen_bool(0.7) {
                home_host
            } else {
                rng.gen_range(0..scenario.hosts)
            };
            let session_seed =
                SplitMix::derive(scenario.seed ^ 0x5E55_1015, li as u64, n).next_u64();
            let end;
            if layout.streams[usize::from(stream)].hls {
                t = t.max(last_hls_end + spacing + rng.gen_range(0..10_000));
                let mut shape = layout.shape();
                if mixed && shape.renditions > 1 && rng.gen_bool(0.35) {
                    // An adaptive player: switches rendition now and then.
                    shape.switch_per_mille = 40;
                }
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
                        shape,
                        w1 - HLS_TAIL_MARGIN_MS,
                    );
                    let summary = hls::summarize(&walk);
                    if summary.requests > 0 {
                        let rendition = layout.rendition_name(summary.last_rendition);
                        let body = Body::Hls { walk };
                        let mut s = session(
                            scenario,
                            layout,
                            l,
                            &mut rng,
                            host,
                            stream,
                            first_tick,
                            summary.end_ms,
                            body,
                            summary.requests,
                            summary.first_write_ms,
                        );
                        s.truth.rendition = rendition.to_string();
                        out.push(s);
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
                        scenario, layout, l, &mut rng, host, stream, t, end, body, 1, end,
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
    layout: &StationLayout,
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
    let def = &layout.streams[usize::from(stream)];
    let is_hls = def.hls;
    let client_port = rng.gen_range(1024..=65535);
    let tls = rng.gen_bool(scenario.mix.tls_share);
    let server = rng.gen_range(1..=2);
    let (mut h2, mut session_id, mut buster) = (false, 0, 0);
    if scenario.layouts == Layouts::Mixed {
        h2 = tls && rng.gen_bool(0.4);
        session_id = rng.gen_range(100_000_000..2_000_000_000);
        if !is_hls && layout.family == Family::Icecast && rng.gen_bool(0.35) {
            buster = rng.gen_range(1..=4);
        }
    }
    PlannedSession {
        truth: TruthSession {
            tenant: Scenario::tenant_name(l.station),
            stream: def.path.clone(),
            rendition: "none".to_string(),
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
        h2,
        session_id,
        buster,
        client_ip,
        client_port,
        tls,
        server,
        ua: ua.logged(),
        referer,
        source_param,
        conns,
        body,
        first_write_ms,
    }
}

/// Noise lines per host at random write times; `exact` fixes the total count. With mixed
/// layouts, the non-audio 200s are noise too: every (station, kind) at least once over the
/// hosts, the rest by weight and station popularity.
fn plan_noise(
    scenario: &Scenario,
    layouts: &[StationLayout],
    sessions: &[PlannedSession],
    exact: Option<u64>,
) -> Vec<Noise> {
    let w0 = scenario.start_ms;
    let w1 = scenario.window_end_ms();
    let mixed = scenario.layouts == Layouts::Mixed;
    let h = u64::from(scenario.hosts);
    let web_pairs = if mixed {
        layouts.len() as u64 * WEB_KINDS.len() as u64
    } else {
        0
    };
    let mut per_host = vec![0u64; scenario.hosts as usize];
    for s in sessions {
        per_host[s.host as usize] += u64::from(s.truth.requests);
    }
    let counts: Vec<u64> = match exact {
        Some(n) => (0..h).map(|i| n / h + u64::from(i < n % h)).collect(),
        None => per_host
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let pairs = web_pairs / h + u64::from((i as u64) < web_pairs % h);
                let per_mille = if mixed {
                    // The non-audio requests come on top of the errors.
                    2 * u64::from(scenario.mix.noise_per_mille)
                } else {
                    u64::from(scenario.mix.noise_per_mille)
                };
                (l * per_mille / 1000).max(2 * NOISE_KINDS.len() as u64 + pairs)
            })
            .collect(),
    };
    let kind_weights = if mixed {
        cumulative(
            NOISE_KINDS
                .iter()
                .map(|k| k.1)
                .chain(WEB_KINDS.iter().map(|k| k.1)),
        )
    } else {
        cumulative(NOISE_KINDS.iter().map(|k| k.1))
    };
    let station_weights =
        cumulative((0..scenario.stations).map(|i| (1e6 / f64::from(i + 1).powf(0.9)) as u64));
    let mut out = Vec::new();
    for (host, &count) in counts.iter().enumerate() {
        let mut rng = SplitMix::derive(scenario.seed, 3, host as u64);
        // This host's share of the (station, web kind) pairs: pairs j ≡ host (mod hosts).
        let mut pairs = (host as u64..web_pairs).step_by(scenario.hosts as usize);
        for i in 0..count {
            // Every kind at least once, then by weight.
            let (kind, station) = if (i as usize) < NOISE_KINDS.len() {
                (NOISE_KINDS[i as usize].0, 0)
            } else if let Some(j) = pairs.next() {
                let k = WEB_KINDS[(j % WEB_KINDS.len() as u64) as usize].0;
                (NoiseKind::Web(k), (j / WEB_KINDS.len() as u64) as u32)
            } else {
                let k = rng.pick_cumulative(&kind_weights);
                match k.checked_sub(NOISE_KINDS.len()) {
                    None => (NOISE_KINDS[k].0, 0),
                    Some(w) => (
                        NoiseKind::Web(WEB_KINDS[w].0),
                        rng.pick_cumulative(&station_weights) as u32,
                    ),
                }
            };
            out.push(Noise {
                host: host as u32,
                station,
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
        let mut not_sessions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut requests_by_status: BTreeMap<i32, u64> = BTreeMap::new();
        for n in &self.noise {
            match n.kind {
                NoiseKind::BadRequest | NoiseKind::RequestTimeout => noise.badreq += 1,
                NoiseKind::SslError => noise.ssl_errors += 1,
                NoiseKind::HaproxyMessage => noise.haproxy_messages += 1,
                NoiseKind::Malformed => noise.malformed += 1,
                NoiseKind::Web(w) => {
                    *not_sessions
                        .entry(Scenario::tenant_name(n.station))
                        .or_default()
                        .entry(w.kind().to_string())
                        .or_default() += 1
                }
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
        let families = self
            .layouts
            .iter()
            .map(|l| (l.tenant.clone(), l.family))
            .collect();
        Generated {
            sessions,
            files,
            lines,
            malformed_lines: noise.malformed,
            noise,
            not_sessions,
            families,
            requests_by_status,
            window_start_ms: scenario.start_ms,
            window_end_ms: scenario.window_end_ms(),
        }
    }
}
