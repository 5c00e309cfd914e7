//! `ingest --dry-run --explain`: what the agent made of a log, for an operator to check —
//! per tenant the streams it found (protocol, requests, sessions, and why it took them for
//! what they are), the commonest paths that are not sessions by kind, and warnings to act on.
//! Collected only when asked for: nothing here runs on the agent's usual path.

use std::collections::BTreeMap;
use std::fmt::Write;

use earshot_common::wire::AgentCounters;
use earshot_common::{HourKey, HourRollup, Protocol};

use crate::accumulate::StreamId;
use crate::kind::NotSession;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What was seen of a stream: requests, why it was taken for a stream, its protocol.
type StreamSeen = (u64, Option<Reason>, Option<Protocol>);

/// Per (tenant index, kind of non-session request): requests per path.
type NotSessionPaths = HashMap<(u32, NotSession), HashMap<Box<[u8]>, u64>>;

/// A kind of non-session request with its count and its most requested paths.
type NotSessionTop<'a> = (NotSession, u64, Vec<(&'a [u8], u64)>);

/// Paths kept per (tenant, kind) of requests that are not sessions.
const PATHS_PER_KIND: usize = 1_000;
/// Streams named alike (digits aside) from which a warning is given.
const ALIKE_WARNING: usize = 5;

/// Why a stream is what it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Rule,
    Mount,
    PlaylistDir,
    Renditions,
    Segments,
    PackedAudio,
    SeveralStreams,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Rule => "named by a [[routing.rules]] rule",
            Reason::Mount => "mount: audio outside playlist directories, or a name without digits",
            Reason::PlaylistDir => "HLS: playlists are fetched from this directory",
            Reason::Renditions => "HLS: renditions in sub-directories of this playlist directory",
            Reason::Segments => "HLS: media segments (.ts, .m4s, .mp4 …)",
            Reason::PackedAudio => {
                "HLS: numbered audio files in a playlist directory (packed audio)"
            }
            Reason::SeveralStreams => {
                "HLS: one of several streams in one directory (playlists with segments of their own, no master)"
            }
        }
    }
}

#[derive(Default)]
pub struct Explain {
    streams: HashMap<StreamId, StreamSeen>,
    /// HLS directories found to hold several streams: their sessions are the streams'.
    split: std::collections::HashSet<StreamId, foldhash::fast::RandomState>,
    not_sessions: NotSessionPaths,
}

impl Explain {
    pub fn stream(&mut self, sid: StreamId, reason: Reason) {
        let e = self.streams.entry(sid).or_default();
        e.1.get_or_insert(reason);
    }

    pub fn split(&mut self, group: StreamId) {
        self.split.insert(group);
    }

    pub fn request(&mut self, slot_stream: Option<StreamId>, protocol: Protocol) {
        if let Some(sid) = slot_stream {
            let e = self.streams.entry(sid).or_default();
            e.0 += 1;
            e.2.get_or_insert(protocol);
        }
    }

    pub fn not_session(&mut self, tenant: u32, kind: NotSession, path: &[u8]) {
        let paths = self.not_sessions.entry((tenant, kind)).or_default();
        if let Some(n) = paths.get_mut(path) {
            *n += 1;
        } else if paths.len() < PATHS_PER_KIND {
            paths.insert(path.into(), 1);
        }
    }
}

/// Names the explanation needs from the ingestor.
pub struct Names<'a> {
    pub tenants: &'a [Box<str>],
    pub stream: &'a dyn Fn(StreamId) -> (String, String),
    pub valid_tenant: &'a dyn Fn(&str) -> bool,
    pub playlist_dirs: usize,
    pub layout_overflowed: u64,
}

#[derive(Default)]
struct StreamLine {
    protocol: Option<Protocol>,
    requests: u64,
    sessions: u64,
    short: u64,
    bots: u64,
    reason: Option<Reason>,
    split: bool,
}

/// The explanation as text.
pub fn render(
    e: &Explain,
    names: &Names<'_>,
    rollups: &[(HourKey, HourRollup)],
    counters: &AgentCounters,
) -> String {
    let mut tenants: BTreeMap<String, BTreeMap<String, StreamLine>> = BTreeMap::new();
    for (&sid, &(requests, reason, protocol)) in &e.streams {
        let (tenant, stream) = (names.stream)(sid);
        let line = tenants
            .entry(tenant)
            .or_default()
            .entry(stream)
            .or_default();
        line.requests += requests;
        line.reason = line.reason.or(reason);
        line.protocol = line.protocol.or(protocol);
        line.split |= e.split.contains(&sid);
    }
    for (key, r) in rollups {
        let line = tenants
            .entry(key.tenant.clone())
            .or_default()
            .entry(key.stream.clone())
            .or_default();
        line.protocol.get_or_insert(r.protocol);
        for q in &r.quarters {
            line.sessions += q.sessions;
            line.short += q.short_sessions;
            line.bots += q.bot_sessions;
        }
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} lines: {} malformed, {} counted by status, {} not sessions",
        counters.lines,
        counters.malformed_lines(),
        counters.by_status.values().sum::<u64>(),
        counters.not_sessions.values().sum::<u64>()
    );
    let mut warnings: Vec<String> = Vec::new();
    for (tenant, streams) in &tenants {
        let _ = writeln!(out, "\ntenant {tenant}");
        let _ = writeln!(
            out,
            "  {:<40} {:<8} {:>9} {:>9} {:>7} {:>6}  why",
            "stream", "protocol", "requests", "sessions", "short", "bots"
        );
        let mut alike: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, s) in streams {
            let protocol = s.protocol.map_or("-", Protocol::as_str);
            let why = if s.split {
                "HLS: a directory of several streams (their sessions are below)"
            } else {
                s.reason.map_or("", Reason::describe)
            };
            let _ = writeln!(
                out,
                "  {:<40} {:<8} {:>9} {:>9} {:>7} {:>6}  {why}",
                name, protocol, s.requests, s.sessions, s.short, s.bots
            );
            if !s.split && s.sessions == 0 && (s.requests > 0 || s.short + s.bots > 0) {
                warnings.push(format!(
                    "{tenant}: stream {name} has no qualifying session ({} requests, {} short, {} bot sessions)",
                    s.requests, s.short, s.bots
                ));
            }
            let template: String = name
                .chars()
                .map(|c| if c.is_ascii_digit() { '#' } else { c })
                .collect();
            if template != *name {
                alike.entry(template).or_default().push(name);
            }
        }
        for (template, names) in alike {
            if names.len() >= ALIKE_WARNING {
                warnings.push(format!(
                    "{tenant}: {} streams are named alike but for numbers ({template}, e.g. {}): \
                     if they are HLS segments, add their directory to [sessions] hls_path_patterns",
                    names.len(),
                    names[0]
                ));
            }
        }
        let tix = names.tenants.iter().position(|t| **t == **tenant);
        let mut kinds: Vec<NotSessionTop<'_>> = NotSession::ALL
            .iter()
            .filter_map(|&kind| {
                let total = counters
                    .not_sessions
                    .get(&(tenant.clone(), kind.as_str().to_string()))
                    .copied()?;
                let mut top: Vec<(&[u8], u64)> = tix
                    .and_then(|t| e.not_sessions.get(&(t as u32, kind)))
                    .map(|m| m.iter().map(|(p, n)| (&**p, *n)).collect())
                    .unwrap_or_default();
                top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                top.truncate(5);
                Some((kind, total, top))
            })
            .collect();
        kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
        if !kinds.is_empty() {
            let _ = writeln!(out, "  not sessions:");
        }
        for (kind, total, top) in kinds {
            let paths: Vec<String> = top
                .iter()
                .map(|(p, n)| format!("{} ({n})", String::from_utf8_lossy(p)))
                .collect();
            let _ = writeln!(
                out,
                "    {:<12} {:>9}  {}",
                kind.as_str(),
                total,
                paths.join(", ")
            );
        }
    }
    let mut unrouted: BTreeMap<&str, u64> = BTreeMap::new();
    for ((tenant, _), n) in &counters.by_status {
        if !(names.valid_tenant)(tenant) {
            *unrouted.entry(tenant).or_default() += n;
        }
    }
    for (tenant, n) in unrouted {
        warnings.push(format!(
            "{n} lines of backend {tenant:?} are routed to no tenant (not a valid tenant name): \
             add a [[routing.rules]] rule that names one"
        ));
    }
    for ((tenant, what), n) in &counters.folded {
        warnings.push(format!(
            "{tenant}: {n} sessions folded into (other) by [limits] ({what})"
        ));
    }
    if names.layout_overflowed > 0 {
        warnings.push(format!(
            "{} playlist directories were not learned: the agent keeps {} at most",
            names.layout_overflowed, names.playlist_dirs
        ));
    }
    let _ = writeln!(out, "\nwarnings: {}", warnings.len());
    for w in warnings {
        let _ = writeln!(out, "  - {w}");
    }
    out
}
