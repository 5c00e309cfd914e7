//! Writing a host's lines in the order HAProxy writes them (write time = accept + Ta), into
//! files rotated by write time.
//!
//! Each session (and each noise line) is a source of lines with increasing write times; a heap
//! keyed by (next write time, source index) merges them. Memory is one small state per
//! session, whatever the number of lines.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;

use crate::data::{NOISE_BLOCK, USER_AGENTS};
use crate::format::{HttpLine, MINUTE_MS, push_accept_date, push_rfc3339_micros};
use crate::hls::HlsWalk;
use crate::layout::{H2_AUTHORITY, StationLayout};
use crate::plan::{Body, Noise, NoiseKind, Plan, PlannedSession, WebKind};
use crate::rng::SplitMix;
use crate::{Envelope, Scenario};

enum Out {
    Plain(BufWriter<File>),
    Gzip(GzEncoder<BufWriter<File>>),
}

impl Out {
    fn open(path: &Path, gzip: bool) -> io::Result<Out> {
        let file = BufWriter::with_capacity(1 << 20, File::create(path)?);
        Ok(if gzip {
            Out::Gzip(GzEncoder::new(file, Compression::fast()))
        } else {
            Out::Plain(file)
        })
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Out::Plain(w) => w.write_all(buf),
            Out::Gzip(w) => w.write_all(buf),
        }
    }

    fn finish(self) -> io::Result<()> {
        match self {
            Out::Plain(mut w) => w.flush(),
            Out::Gzip(w) => w.finish()?.flush(),
        }
    }
}

/// The files of one host: slot k holds the lines written in `[w0 + k·rotation, …)`.
/// Named like logrotate's: the newest is `haproxy.log`, older ones `haproxy.log.1`, `.2`, …
pub struct RotatedFiles {
    paths: Vec<(PathBuf, bool)>,
    start_ms: i64,
    slot_ms: i64,
    current: Option<(usize, Out)>,
}

impl RotatedFiles {
    pub fn new(scenario: &Scenario, dir: &Path) -> Self {
        let window = scenario.window_end_ms() - scenario.start_ms;
        if scenario.rotate_minutes == 0 {
            let name = if scenario.gzip {
                "haproxy.log.gz"
            } else {
                "haproxy.log"
            };
            return Self::single(scenario, &dir.join(name));
        }
        let slot_ms = i64::from(scenario.rotate_minutes) * MINUTE_MS;
        let n = ((window + slot_ms - 1) / slot_ms).max(1) as usize;
        let paths = (0..n)
            .map(|k| {
                let number = n - 1 - k;
                let gzip = scenario.gzip && number >= 2;
                let name = match (number, gzip) {
                    (0, _) => "haproxy.log".to_string(),
                    (_, false) => format!("haproxy.log.{number}"),
                    (_, true) => format!("haproxy.log.{number}.gz"),
                };
                (dir.join(name), gzip)
            })
            .collect();
        RotatedFiles {
            paths,
            start_ms: scenario.start_ms,
            slot_ms,
            current: None,
        }
    }

    pub fn single(scenario: &Scenario, path: &Path) -> Self {
        RotatedFiles {
            paths: vec![(path.to_path_buf(), scenario.gzip)],
            start_ms: scenario.start_ms,
            slot_ms: i64::MAX,
            current: None,
        }
    }

    fn open_until(&mut self, slot: usize) -> io::Result<()> {
        let next = self.current.as_ref().map_or(0, |c| c.0 + 1);
        if self.current.as_ref().is_some_and(|c| c.0 >= slot) {
            return Ok(());
        }
        if let Some((_, out)) = self.current.take() {
            out.finish()?;
        }
        // Slots without lines still get their (empty) file, as logrotate would leave.
        for k in next..slot {
            let (path, gzip) = &self.paths[k];
            Out::open(path, *gzip)?.finish()?;
        }
        let (path, gzip) = &self.paths[slot];
        self.current = Some((slot, Out::open(path, *gzip)?));
        Ok(())
    }

    pub fn write_line(&mut self, write_ms: i64, line: &[u8]) -> io::Result<()> {
        let slot = ((write_ms - self.start_ms).max(0) / self.slot_ms) as usize;
        self.open_until(slot.min(self.paths.len() - 1))?;
        let (_, out) = self.current.as_mut().expect("opened above");
        out.write_all(line)
    }

    /// Closes the files (creating any still missing) and returns them oldest first.
    pub fn finish(mut self) -> io::Result<Vec<PathBuf>> {
        self.open_until(self.paths.len() - 1)?;
        if let Some((_, out)) = self.current.take() {
            out.finish()?;
        }
        Ok(self.paths.into_iter().map(|(p, _)| p).collect())
    }
}

enum Source<'a> {
    Session(&'a PlannedSession, Option<HlsWalk>),
    Noise(&'a Noise),
}

/// Writes every line of `host` into `sink`; returns the number of lines.
pub fn write_host(
    scenario: &Scenario,
    plan: &Plan,
    host: u32,
    sink: &mut RotatedFiles,
) -> io::Result<u64> {
    let mut sources = Vec::new();
    let mut heap = BinaryHeap::new();
    for s in plan.sessions.iter().filter(|s| s.host == host) {
        let walk = match &s.body {
            Body::Hls { walk } => Some(walk.clone()),
            Body::Progressive { .. } => None,
        };
        heap.push(Reverse((s.first_write_ms, sources.len())));
        sources.push(Source::Session(s, walk));
    }
    for n in plan.noise.iter().filter(|n| n.host == host) {
        heap.push(Reverse((n.write_ms, sources.len())));
        sources.push(Source::Noise(n));
    }
    let host_name = Scenario::host_name(host);
    let backends: Vec<String> = (0..scenario.stations)
        .map(|i| format!("be_{}", Scenario::tenant_name(i)))
        .collect();
    let pid = 20_777 + 1_000 * host;
    let offset = scenario.utc_offset_minutes;
    let mut line = Vec::with_capacity(1024);
    let mut request = String::with_capacity(256);
    let mut lines = 0;
    while let Some(Reverse((write_ms, idx))) = heap.pop() {
        line.clear();
        if scenario.envelope == Envelope::Rsyslog {
            let micros = (SplitMix::derive(write_ms as u64, idx as u64, 7).r#gen::<u32>()) % 1000;
            push_rfc3339_micros(&mut line, write_ms, micros, offset);
            line.push(b' ');
            line.extend_from_slice(host_name.as_bytes());
            line.extend_from_slice(b" haproxy[");
            crate::format::push_u64(&mut line, u64::from(pid));
            line.extend_from_slice(b"]: ");
        }
        match &mut sources[idx] {
            Source::Session(s, None) => {
                let Body::Progressive { status, timers } = &s.body else {
                    unreachable!()
                };
                request.clear();
                let layout = &plan.layouts[s.station as usize];
                let def = &layout.streams[usize::from(s.stream)];
                push_progressive(&mut request, s, &def.path);
                let body_bytes = timers[4] as u64 * def.bytes_per_ms;
                session_line(
                    s,
                    &backends[s.station as usize],
                    s.truth.start_ms,
                    *timers,
                    *status,
                    body_bytes + 290,
                    "CD--",
                    &request,
                )
                .push(&mut line, offset);
            }
            Source::Session(s, Some(walk)) => {
                let r = walk
                    .peek()
                    .expect("sources in the heap have a next request")
                    .clone();
                request.clear();
                let layout = &plan.layouts[s.station as usize];
                let def = &layout.streams[usize::from(s.stream)];
                request.push_str("GET ");
                if s.h2 {
                    request.push_str(H2_AUTHORITY);
                }
                layout.push_hls_path(&mut request, def, &r, s.session_id, s.source_param);
                request.push_str(if s.h2 { " HTTP/2.0" } else { " HTTP/1.1" });
                let timers = [0, 0, 0, r.tr_ms, r.ta_ms];
                session_line(
                    s,
                    &backends[s.station as usize],
                    r.accept_ms,
                    timers,
                    r.status,
                    r.bytes,
                    "----",
                    &request,
                )
                .push(&mut line, offset);
                walk.advance();
                if let Some(next) = walk.peek() {
                    heap.push(Reverse((next.write_ms(), idx)));
                }
            }
            Source::Noise(n) => match n.kind {
                NoiseKind::Web(kind) => web_line(
                    scenario,
                    &plan.layouts[n.station as usize],
                    n,
                    kind,
                    &mut line,
                ),
                _ => noise_line(scenario, n, &mut line),
            },
        }
        line.push(b'\n');
        sink.write_line(write_ms, &line)?;
        lines += 1;
    }
    Ok(lines)
}

/// A progressive request: the mount, `?source=` and a cache-buster, HTTP/1.1 or an HTTP/2
/// absolute URI.
fn push_progressive(out: &mut String, s: &PlannedSession, path: &str) {
    use std::fmt::Write as _;
    out.push_str("GET ");
    if s.h2 {
        out.push_str(H2_AUTHORITY);
    }
    out.push_str(path);
    let mut sep = '?';
    if let Some(src) = s.source_param {
        out.push(sep);
        out.push_str("source=");
        out.push_str(src);
        sep = '&';
    }
    if s.buster > 0 {
        out.push(sep);
        let _ = match s.buster {
            1 => write!(out, "nocache={}", s.truth.start_ms),
            2 => write!(out, "icy=http"),
            3 => write!(out, "listenerid={}", s.session_id % 1_000_000),
            _ => write!(out, "type=.mp3"),
        };
    }
    out.push_str(if s.h2 { " HTTP/2.0" } else { " HTTP/1.1" });
}

/// A non-audio request answered 200: the station's web player, its API and Icecast's player
/// files, `HEAD` and `OPTIONS` on a mount.
fn web_line(
    scenario: &Scenario,
    layout: &StationLayout,
    n: &Noise,
    kind: WebKind,
    out: &mut Vec<u8>,
) {
    use std::fmt::Write as _;
    let mut rng = SplitMix::new(n.seed);
    let (net, len) = NOISE_BLOCK;
    let base = u32::from(net.parse::<Ipv4Addr>().expect("NOISE_BLOCK is an address"));
    let ip = Ipv4Addr::from(base | (rng.r#gen::<u32>() & ((1 << (32 - len)) - 1) | 1)).to_string();
    let backend = format!("be_{}", layout.tenant);
    let ua = USER_AGENTS[rng.gen_range(0..USER_AGENTS.len())].logged();
    let referer = if rng.gen_bool(0.5) {
        crate::data::REFERERS[0].0
    } else {
        ""
    };
    let h2 = rng.gen_bool(0.2);
    let mount = &layout.noise_mounts[rng.gen_range(0..layout.noise_mounts.len())];
    let mut request = String::with_capacity(96);
    request.push_str(match kind {
        WebKind::Head => "HEAD ",
        WebKind::Options => "OPTIONS ",
        _ => "GET ",
    });
    if h2 {
        request.push_str(H2_AUTHORITY);
    }
    let bytes = match kind {
        WebKind::NowPlaying => {
            let _ = write!(request, "/api/nowplaying/{}", layout.tenant);
            rng.gen_range(1_200..4_000)
        }
        WebKind::StatusJson => {
            request.push_str("/status-json.xsl");
            rng.gen_range(800..3_000)
        }
        WebKind::Art => {
            let _ = write!(request, "/art/{}.jpg", rng.gen_range(1..5_000));
            rng.gen_range(20_000..90_000)
        }
        WebKind::PlayerJs => {
            request.push_str("/player.js");
            48_211
        }
        WebKind::Crossdomain => {
            request.push_str("/crossdomain.xml");
            412
        }
        WebKind::Favicon => {
            request.push_str("/favicon.ico");
            5_430
        }
        WebKind::Robots => {
            request.push_str("/robots.txt");
            268
        }
        WebKind::PlayerFile => {
            // Icecast's `<mount>.m3u`; not for Shoutcast's `/;stream.mp3`.
            let m = if mount.starts_with("/;") {
                "/live.mp3"
            } else {
                mount
            };
            request.push_str(m);
            request.push_str([".m3u", ".pls", ".xspf"][rng.gen_range(0..3)]);
            rng.gen_range(120..400)
        }
        WebKind::Head | WebKind::Options => {
            request.push_str(mount);
            rng.gen_range(180..420)
        }
    };
    request.push_str(if h2 { " HTTP/2.0" } else { " HTTP/1.1" });
    let ta = rng.gen_range(1..80);
    let fc = rng.gen_range(40..3_000u32);
    HttpLine {
        client_ip: &ip,
        client_port: rng.gen_range(1024..=65535u16),
        accept_ms: n.write_ms - ta,
        frontend: if h2 { "fe_https~" } else { "fe_http" },
        backend: &backend,
        server: "s1",
        timers: [0, 0, 0, ta / 2, ta],
        status: 200,
        bytes,
        termination: "----",
        conns: [fc, fc, 1, 1, 0],
        queues: [0, 0],
        captures: Some((ua, referer)),
        request: &request,
    }
    .push(out, scenario.utc_offset_minutes);
}

#[allow(clippy::too_many_arguments)]
fn session_line<'a>(
    s: &'a PlannedSession,
    backend: &'a str,
    accept_ms: i64,
    timers: [i64; 5],
    status: i32,
    bytes: u64,
    termination: &'a str,
    request: &'a str,
) -> HttpLine<'a> {
    HttpLine {
        client_ip: &s.client_ip,
        client_port: s.client_port,
        accept_ms,
        frontend: if s.tls { "fe_https~" } else { "fe_http" },
        backend,
        server: if s.server == 1 { "s1" } else { "s2" },
        timers,
        status,
        bytes,
        termination,
        conns: s.conns,
        queues: [0, 0],
        captures: Some((s.ua, s.referer)),
        request,
    }
}

fn noise_line(scenario: &Scenario, n: &Noise, out: &mut Vec<u8>) {
    let mut rng = SplitMix::new(n.seed);
    let (net, len) = NOISE_BLOCK;
    let base = u32::from(net.parse::<Ipv4Addr>().expect("NOISE_BLOCK is an address"));
    let ip = Ipv4Addr::from(base | (rng.r#gen::<u32>() & ((1 << (32 - len)) - 1) | 1)).to_string();
    let port = rng.gen_range(1024..=65535u16);
    let tenant = Scenario::tenant_name(rng.gen_range(0..scenario.stations));
    let backend = format!("be_{tenant}");
    let ua = USER_AGENTS[rng.gen_range(0..USER_AGENTS.len())].logged();
    let offset = scenario.utc_offset_minutes;
    let fc = rng.gen_range(40..3_000u32);
    let mut line = HttpLine {
        client_ip: &ip,
        client_port: port,
        accept_ms: n.write_ms,
        frontend: "fe_http",
        backend: &backend,
        server: "s1",
        timers: [0, 0, 0, 1, 1],
        status: 0,
        bytes: 0,
        termination: "----",
        conns: [fc, fc, 1, 1, 0],
        queues: [0, 0],
        captures: Some((ua, "")),
        request: "",
    };
    let request;
    match n.kind {
        NoiseKind::NotFound => {
            let paths = [
                "/favicon.ico",
                "/",
                "/live.mp3",
                "/wp-login.php",
                "/robots.txt",
            ];
            let p = paths[rng.gen_range(0..paths.len())];
            let path = match rng.gen_range(0..3) {
                0 => format!("/{tenant}{p}"),
                1 => format!("/{tenant}/live.mp33"),
                _ => p.to_string(),
            };
            request = format!("GET {path} HTTP/1.1");
            let ta = rng.gen_range(1..20);
            line.accept_ms = n.write_ms - ta;
            line.timers = [0, 0, 0, ta - 1, ta];
            line.status = 404;
            line.bytes = rng.gen_range(180..420);
        }
        NoiseKind::NoServer => {
            request = format!("GET /{tenant}/live.mp3 HTTP/1.1");
            line.server = "<NOSRV>";
            line.timers = [0, -1, -1, -1, 0];
            line.status = 503;
            line.bytes = 217;
            line.termination = "SC--";
        }
        NoiseKind::Redirect => {
            request = format!("GET /{tenant} HTTP/1.1");
            line.backend = "fe_http";
            line.server = "<NOSRV>";
            line.timers = [0, -1, -1, -1, 0];
            line.status = 302;
            line.bytes = 142;
            line.termination = "LR--";
        }
        NoiseKind::BadRequest | NoiseKind::RequestTimeout => {
            request = "<BADREQ>".to_string();
            line.backend = "fe_http";
            line.server = "<NOSRV>";
            line.captures = None;
            line.conns = [fc, fc, 0, 0, 0];
            if n.kind == NoiseKind::BadRequest {
                line.timers = [-1, -1, -1, -1, 0];
                line.status = 400;
                line.termination = "CR--";
            } else {
                line.accept_ms = n.write_ms - 5_001;
                line.timers = [-1, -1, -1, -1, 5_001];
                line.status = 408;
                line.termination = "cR--";
            }
        }
        NoiseKind::SslError => {
            out.extend_from_slice(format!("{ip}:{port} [").as_bytes());
            push_accept_date(out, n.write_ms - 3 + i64::from(offset) * MINUTE_MS);
            out.extend_from_slice(b"] fe_https/1: SSL handshake failure");
            return;
        }
        NoiseKind::HaproxyMessage => {
            let msg = match rng.gen_range(0..4) {
                0 => format!(
                    "Proxy fe_http stopped (cumulated conns: FE: {}, BE: 0).",
                    rng.gen_range(100..90_000)
                ),
                1 => format!(
                    "Server {backend}/s2 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms. 1 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue."
                ),
                2 => format!(
                    "Server {backend}/s2 is UP, reason: Layer7 check passed, code: 200, check duration: 1ms. 2 active and 0 backup servers online. 0 sessions requeued, 0 total in queue."
                ),
                _ => format!("backend {backend} has no server available!"),
            };
            out.extend_from_slice(msg.as_bytes());
            return;
        }
        NoiseKind::Malformed => {
            match rng.gen_range(0..3) {
                0 => {
                    // A line cut short (disk full, a crashed writer).
                    let mut full = Vec::new();
                    line.status = 200;
                    line.request = "GET / HTTP/1.1";
                    line.push(&mut full, offset);
                    full.truncate(rng.gen_range(8..40));
                    out.extend_from_slice(&full);
                }
                1 => out.extend_from_slice(
                    format!("%%garbage\u{7f}~{:016x} ;; not a log line", rng.r#gen::<u64>()).as_bytes(),
                ),
                _ => out.extend_from_slice(
                    format!("{ip}:{port} [99/Foo/2026:25:61:00.000] fe_http {backend}/s1 0/0/0/1/1 200 512 - - ---- 1/1/0/0/0 0/0 {{curl/8.4.0|}} \"GET /{tenant}/live.mp3 HTTP/1.1\"").as_bytes(),
                ),
            }
            return;
        }
        NoiseKind::Web(_) => unreachable!("written by web_line"),
    }
    line.request = &request;
    line.push(out, offset);
}
