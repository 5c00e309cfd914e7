//! The agent's core: log lines in, sessions and rollups out. Pure apart from reading the
//! optional GeoIP database at construction; the drivers (dry run, `run`) feed it lines.
//!
//! The client IP is used here, while its line is handled, to hash the listener and look up
//! the country, and is then dropped: only a 64-bit hash of its text lives on, in the
//! in-memory cache key below; never in a rollup, the state blob or a log message.

use std::collections::BTreeSet;
use std::net::IpAddr;

use earshot_common::time::{DAY_MS, civil_from_days};
use earshot_common::wire::AgentCounters;
use earshot_common::{Dimension, HourKey, HourRollup, ListenerId, ListenerKeyring, Protocol};
use serde::{Deserialize, Serialize};

use crate::accumulate::{Accumulator, AqhEntry, Session, StreamId, ValueId};
use crate::clock::LogClock;
use crate::config::{AgentConfig, valid_tenant};
use crate::logline::{self, LineKind, LogRecord, Malformed};
use crate::reader::Line;
use crate::route::{Route, Router};
use crate::table::KeyTable;
use crate::useragent::UaClassifier;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// Lines that are not sessions, by (tenant, HTTP status).
type ByStatus = HashMap<(u32, i32), u64>;

/// Caches are emptied when they grow past this many entries, bounding memory under a flood
/// of distinct listeners (listener entries holding an open HLS session stay). 98,304
/// listener entries fill three quarters of a table of 131,072 64-byte slots: 8.4 MB, and
/// 12.6 MB at the moment it grows to that size. The one-hour benchmark file's 50,000
/// listeners (25,000 entries at a time) fit.
const MAX_CACHED_LISTENERS: usize = 98_304;
const MAX_CACHED_USER_AGENTS: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("classify.opawg_dir: {0}")]
    UserAgents(#[from] crate::useragent::UaError),
    #[error("classify.geoip_db {path}: {message}")]
    Geo { path: String, message: String },
    #[error("inputs.log_timezone: {0}")]
    TimeZone(String),
    #[error("saved agent state is unreadable: {0}")]
    State(String),
}

#[derive(Clone, Copy, Default)]
struct ListenerInfo {
    id: ListenerId,
    client: ValueId,
    device: ValueId,
    os: ValueId,
    country: ValueId,
    bot: bool,
}

/// 56 bytes: with its key, one cache line of the table.
#[derive(Clone, Copy, Default)]
struct CachedListener {
    info: ListenerInfo,
    /// The open HLS session of (this entry's stream, `info.id`), when this entry holds it;
    /// `end_ms` is [`CachedListener::CLOSED`] when it holds none (an `Option` would not fit
    /// the cache line).
    open: OpenHls,
}

impl CachedListener {
    const CLOSED: i64 = i64::MIN;

    fn new(info: ListenerInfo) -> CachedListener {
        CachedListener {
            info,
            open: OpenHls::default(),
        }
    }

    fn open(&self) -> Option<&OpenHls> {
        (self.open.end_ms != Self::CLOSED).then_some(&self.open)
    }

    fn open_mut(&mut self) -> Option<&mut OpenHls> {
        (self.open.end_ms != Self::CLOSED).then_some(&mut self.open)
    }

    fn take_open(&mut self) -> Option<OpenHls> {
        let open = self.open().copied();
        self.open.end_ms = Self::CLOSED;
        open
    }

    fn set_open(&mut self, open: OpenHls) {
        debug_assert!(open.end_ms != Self::CLOSED);
        self.open = open;
    }
}

#[derive(Clone, Copy)]
struct UaInfoIds {
    client: ValueId,
    device: ValueId,
    os: ValueId,
    bot: bool,
}

/// An open HLS session. Its client, device, OS, country and bot flag are its listener's
/// (the cache entry's `info`): only what its first request added is here.
#[derive(Clone, Copy)]
struct OpenHls {
    start_ms: i64,
    end_ms: i64,
    referrer: ValueId,
    source: ValueId,
}

impl Default for OpenHls {
    /// No session: what a cache entry holds when it holds none.
    fn default() -> OpenHls {
        OpenHls {
            start_ms: 0,
            end_ms: CachedListener::CLOSED,
            referrer: 0,
            source: 0,
        }
    }
}

impl OpenHls {
    /// Adds the request of `s` to this session when it starts less than the gap after the
    /// session's last request ended; says whether it did.
    fn join(&mut self, s: &SessionLine<'_>, gap_ms: i64) -> bool {
        if s.start_ms - self.end_ms >= gap_ms {
            return false;
        }
        self.end_ms = self.end_ms.max(s.end_ms);
        self.start_ms = self.start_ms.min(s.start_ms);
        true
    }

    fn dims(&self, l: &ListenerInfo) -> [ValueId; Dimension::COUNT] {
        [
            l.client,
            l.device,
            l.os,
            l.country,
            self.referrer,
            self.source,
            0,
        ]
    }
}

/// What [`Ingestor::finish`] needs of a line [`Ingestor::prepare`] parsed: kept small, as
/// it waits for the next line to be prepared.
struct Parsed<'a> {
    /// When HAProxy wrote the line (its request's end): the log's clock.
    written_ms: i64,
    /// Set when the line is a session's.
    session: Option<SessionLine<'a>>,
}

/// A session's line, ready for its stream and listener to be looked up.
struct SessionLine<'a> {
    /// The listener cache key.
    key: u64,
    /// [`stream_key`] of the line's (tenant, stream).
    stream_key: u64,
    /// The line itself: parsed again for the names of its tenant and stream when they are new.
    line: &'a [u8],
    client: &'a [u8],
    captured_request: Option<&'a [u8]>,
    query: Option<&'a [u8]>,
    start_ms: i64,
    end_ms: i64,
    /// Months since 1970-01 of the line's start: the listener hash's epoch.
    month: i64,
    status: i32,
    protocol: Protocol,
}

pub struct Ingestor {
    clock: LogClock,
    router: Router,
    classifier: UaClassifier,
    geo: Option<maxminddb::Reader<Vec<u8>>>,
    secret: Vec<u8>,
    ua_field: usize,
    referer_field: Option<usize>,
    host_field: Option<usize>,
    hls_gap_ms: i64,
    acc: Accumulator,
    tenants: HashMap<Box<str>, u32>,
    tenant_names: Vec<Box<str>>,
    keyrings: HashMap<(u32, i64), ListenerKeyring>,
    /// Keyed by a 64-bit fast hash of (tenant and stream names, month, address text, captured
    /// headers): one probe into the table (prefetched while the line before is worked on)
    /// and no raw address kept, even in memory. An entry also holds the open HLS session of
    /// its (stream, listener), so that a segment request joins its session with that same
    /// probe.
    listeners: KeyTable<CachedListener>,
    /// Entries beyond this are dropped (those holding no open session).
    listener_limit: usize,
    user_agents: HashMap<Box<[u8]>, UaInfoIds>,
    /// [`stream_key`] of (tenant, stream) → what lines of it count as.
    streams: KeyTable<StreamSlot>,
    /// Every open HLS session: (stream, listener) → the key of the `listeners` entry that
    /// holds it. Usually the entry a line finds; another one when the same listener comes
    /// with another address text or Referer, or after a restart.
    open_hls: HashMap<(StreamId, ListenerId), u64>,
    /// When open HLS sessions are due to be checked, soonest first, with the key of the entry
    /// that held each (no `open_hls` look-up, a cache miss, per check). A B-tree rather than a
    /// binary heap: taking the first of tens of thousands touches a few nodes, not a path of
    /// fifteen scattered slots.
    expiry: BTreeSet<(i64, StreamId, ListenerId, u64)>,
    log_now_ms: i64,
    lines: u64,
    malformed: HashMap<&'static str, u64>,
    by_status: ByStatus,
    month_cache: (i64, i64),
}

impl Ingestor {
    pub fn new(config: &AgentConfig, secret: Vec<u8>) -> Result<Ingestor, IngestError> {
        let clock =
            LogClock::new(config.inputs.log_timezone.as_deref()).map_err(IngestError::TimeZone)?;
        let classifier = match &config.classify.opawg_dir {
            Some(dir) => UaClassifier::with_opawg(dir)?,
            None => UaClassifier::builtin(),
        };
        let geo = match &config.classify.geoip_db {
            Some(path) => {
                Some(
                    maxminddb::Reader::open_readfile(path).map_err(|e| IngestError::Geo {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?,
                )
            }
            None => None,
        };
        let field = |name: &str| {
            config
                .inputs
                .captured_headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
        };
        let mut acc = Accumulator::new(config.sessions.min_session_secs);
        // Value 0 of every dimension is "unknown" (or the equivalent), so ids are stable.
        for d in Dimension::ALL {
            acc.value_id(
                d,
                match d {
                    Dimension::Source => "direct",
                    Dimension::Rendition => "none",
                    _ => "unknown",
                },
            );
        }
        Ok(Ingestor {
            clock,
            router: Router::new(&config.routing, &config.sessions),
            classifier,
            geo,
            secret,
            ua_field: field("user-agent").unwrap_or(0),
            referer_field: field("referer"),
            host_field: field("host"),
            hls_gap_ms: config.sessions.hls_session_gap_secs as i64 * 1000,
            acc,
            tenants: HashMap::default(),
            tenant_names: Vec::new(),
            keyrings: HashMap::default(),
            listeners: KeyTable::default(),
            listener_limit: MAX_CACHED_LISTENERS,
            user_agents: HashMap::default(),
            streams: KeyTable::default(),
            open_hls: HashMap::default(),
            expiry: BTreeSet::new(),
            log_now_ms: i64::MIN,
            lines: 0,
            malformed: HashMap::default(),
            by_status: HashMap::default(),
            month_cache: (i64::MIN, 0),
        })
    }

    /// Feeds one log line (without its newline), nothing ahead: what [`Ingestor::feed_lines`]
    /// is tested against.
    #[cfg(test)]
    fn feed(&mut self, line: &[u8]) {
        self.lines += 1;
        if let Some(parsed) = self.prepare(line) {
            self.finish(&parsed);
        }
    }

    /// Feeds lines in order, as feeding them one by one would, but one line ahead: a
    /// line is parsed and the cache slots of its stream and listener fetched while the line
    /// before it joins its session. Returns how many lines there were.
    pub fn feed_lines<'a>(&mut self, lines: impl Iterator<Item = Line<'a>>) -> u64 {
        let mut n = 0;
        let mut waiting = None;
        for line in lines {
            n += 1;
            self.lines += 1;
            let next = match line {
                Line::Text(text) => self.prepare(text),
                Line::TooLong { .. } => {
                    self.count_malformed("too_long");
                    None
                }
            };
            if let Some(parsed) = &waiting {
                self.finish(parsed);
            }
            waiting = next;
        }
        if let Some(parsed) = &waiting {
            self.finish(parsed);
        }
        n
    }

    fn count_malformed(&mut self, reason: &'static str) {
        *self.malformed.entry(reason).or_default() += 1;
    }

    /// Parses a line and finds what it counts for, touching no session: a line that is not
    /// a session's is counted here. The cache slots of its stream and listener are
    /// prefetched.
    fn prepare<'a>(&mut self, line: &'a [u8]) -> Option<Parsed<'a>> {
        let record = match logline::parse_line(line) {
            Err(reason) => {
                self.count_malformed(reason.as_str());
                return None;
            }
            Ok(None) => return None,
            Ok(Some(record)) => record,
        };
        let start_ms = self.clock.to_utc_ms(record.accept_naive_ms);
        let session = self.session_line(line, &record, start_ms);
        if let Some(s) = &session {
            self.streams.prefetch(s.stream_key);
            self.listeners.prefetch(s.key);
        }
        Some(Parsed {
            written_ms: start_ms + record.duration_ms.max(0),
            session,
        })
    }

    /// The second half of a line: its session, then the log's clock.
    fn finish(&mut self, p: &Parsed<'_>) {
        if let Some(s) = &p.session {
            self.join_session(s);
        }
        // HAProxy writes a line when its request ends: the log's clock is the latest end seen.
        // Idle HLS sessions are closed after the line joined (or opened) its own session.
        if p.written_ms > self.log_now_ms {
            self.log_now_ms = p.written_ms;
            self.close_idle();
        }
    }

    /// What a line's session needs, or `None` when the line is not a session's (counted
    /// here, by status or as malformed). The stream is looked up later (its slot is
    /// prefetched meanwhile), except for those lines, whose counting needs the tenant now.
    fn session_line<'a>(
        &mut self,
        line: &'a [u8],
        r: &LogRecord<'a>,
        start_ms: i64,
    ) -> Option<SessionLine<'a>> {
        let (route, query) = match route_record(&self.router, self.host_field, r) {
            Some(routed) => routed,
            // "<BADREQ>" and friends: no request to attribute, counted by status.
            None => {
                let tenant = self.router.default_tenant(r.backend);
                (Route::Ignored { tenant }, None)
            }
        };
        let (tenant, stream, protocol) = match route {
            Route::Ignored { tenant } => {
                count_by_status(
                    (&mut self.tenants, &mut self.tenant_names),
                    (&mut self.by_status, &mut self.malformed),
                    tenant,
                    r.status,
                );
                return None;
            }
            Route::Stream {
                tenant,
                stream,
                protocol,
            } => (tenant, stream, protocol),
        };
        let success = match r.kind {
            LineKind::Http => (200..300).contains(&r.status),
            LineKind::Tcp => r.bytes > 0,
        };
        if !success || r.logasap || r.duration_ms < 0 {
            let not_session = match intern_stream(
                &mut self.streams,
                &mut self.acc,
                (&mut self.tenants, &mut self.tenant_names),
                tenant,
                stream.as_bytes(),
                protocol,
            ) {
                StreamSlot::NotUtf8 => Err("not_utf8"),
                StreamSlot::Ignored { tenant } => Ok(tenant),
                StreamSlot::Stream { tenant, .. } if !success => Ok(tenant),
                // Logged at the start (`option logasap`): the real duration is never written.
                StreamSlot::Stream { .. } if r.logasap => Err("logasap_duration"),
                StreamSlot::Stream { .. } => Err("no_duration"),
            };
            match not_session {
                Ok(tenant) => *self.by_status.entry((tenant, r.status)).or_default() += 1,
                Err(reason) => self.count_malformed(reason),
            }
            return None;
        }
        let stream_key = stream_key(tenant, stream.as_bytes());
        let month = self.month_index(start_ms);
        Some(SessionLine {
            key: Self::listener_key(stream_key, month, r),
            stream_key,
            line,
            client: r.client,
            captured_request: r.captured_request,
            query,
            start_ms,
            end_ms: start_ms + r.duration_ms,
            month,
            status: r.status,
            protocol,
        })
    }

    /// The (tenant, stream) of a session's line, `None` when the tenant's lines are not
    /// sessions (counted here).
    fn stream_of(&mut self, s: &SessionLine<'_>) -> Option<(u32, StreamId)> {
        let slot = match self.streams.get(s.stream_key) {
            Some(&slot) => slot,
            None => self.intern_line(s.line),
        };
        match slot {
            StreamSlot::Stream { tenant, stream } => Some((tenant, stream)),
            StreamSlot::Ignored { tenant } => {
                *self.by_status.entry((tenant, s.status)).or_default() += 1;
                None
            }
            StreamSlot::NotUtf8 => {
                self.count_malformed("not_utf8");
                None
            }
        }
    }

    /// Interns the (tenant, stream) of a session's line seen for the first time: the line is
    /// parsed and routed again for the names (as it was by [`Ingestor::prepare`]).
    fn intern_line(&mut self, line: &[u8]) -> StreamSlot {
        let routed = match logline::parse_line(line) {
            Ok(Some(r)) => match route_record(&self.router, self.host_field, &r) {
                Some((
                    Route::Stream {
                        tenant,
                        stream,
                        protocol,
                    },
                    _,
                )) => Some(intern_stream(
                    &mut self.streams,
                    &mut self.acc,
                    (&mut self.tenants, &mut self.tenant_names),
                    tenant,
                    stream.as_bytes(),
                    protocol,
                )),
                _ => None,
            },
            _ => None,
        };
        // Parsing and routing are functions of the line: it routes to a stream again.
        debug_assert!(
            routed.is_some(),
            "a session's line no longer routes to a stream"
        );
        routed.unwrap_or_default()
    }

    fn join_session(&mut self, s: &SessionLine<'_>) {
        // Most lines: an HLS request that joins the session its own cache entry holds.
        if s.protocol == Protocol::Hls
            && let Some(entry) = self.listeners.get_mut(s.key)
            && let Some(open) = entry.open_mut()
            && open.join(s, self.hls_gap_ms)
        {
            return;
        }
        let Some((tenant, stream)) = self.stream_of(s) else {
            return;
        };
        let listener = match self.listener(s, tenant) {
            Ok(found) => found,
            Err(reason) => return self.count_malformed(reason),
        };
        match s.protocol {
            Protocol::Icecast => {
                let dims = self.session_dims(&listener, s);
                self.acc.add(&Session {
                    stream,
                    listener: listener.id,
                    dims,
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    bot: listener.bot,
                });
            }
            Protocol::Hls => self.hls_request(s, stream, &listener),
        }
    }

    /// One HLS request: joins the open session of (stream, listener) when within the gap,
    /// else closes it and opens a new one, held by the line's cache entry. (A request that
    /// joins the session its own entry holds, most of them, was taken by `join_session`.)
    fn hls_request(&mut self, s: &SessionLine<'_>, stream: StreamId, listener: &ListenerInfo) {
        let (key, start_ms, end_ms) = (s.key, s.start_ms, s.end_ms);
        let session = (stream, listener.id);
        // This line's own entry, or the one that holds the session when another does.
        let holder = match self.listeners.get(key) {
            Some(entry) if entry.open().is_some() => Some(key),
            _ => self.open_hls.get(&session).copied(),
        };
        if let Some(holder) = holder
            && let Some(entry) = self.listeners.get_mut(holder)
            && let Some(open) = entry.open_mut()
        {
            if open.join(s, self.hls_gap_ms) {
                return;
            }
            self.close_held(session, holder);
        }
        let dims = self.session_dims(listener, s);
        let open = OpenHls {
            start_ms,
            end_ms,
            referrer: dims[Dimension::Referrer as usize],
            source: dims[Dimension::Source as usize],
        };
        if let Some(entry) = self.listeners.get_mut(key) {
            entry.set_open(open);
        }
        self.open_hls.insert(session, key);
        self.expiry
            .insert((end_ms + self.hls_gap_ms, stream, listener.id, key));
    }

    /// Closes the open session of `session` that the cache entry `holder` holds.
    fn close_held(&mut self, session: (StreamId, ListenerId), holder: u64) {
        let Some(entry) = self.listeners.get_mut(holder) else {
            return;
        };
        let info = entry.info;
        let Some(open) = entry.take_open() else {
            return;
        };
        self.open_hls.remove(&session);
        self.close_hls(session, &info, open);
    }

    fn close_hls(&mut self, key: (StreamId, ListenerId), info: &ListenerInfo, s: OpenHls) {
        self.acc.add(&Session {
            stream: key.0,
            listener: key.1,
            dims: s.dims(info),
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            bot: info.bot,
        });
    }

    /// Closes HLS sessions whose last request is more than the gap behind the log's clock.
    fn close_idle(&mut self) {
        while let Some(&(expires, stream, listener, holder)) = self.expiry.first() {
            if expires >= self.log_now_ms {
                break;
            }
            self.expiry.pop_first();
            let session = (stream, listener);
            // An entry's key stands for one (stream, listener): whatever session `holder`
            // holds is this one. If it holds none, the session was closed, or is held by
            // another entry and has its own expiry.
            let Some(open) = self.listeners.get(holder).and_then(CachedListener::open) else {
                continue;
            };
            let due = open.end_ms + self.hls_gap_ms;
            if due < self.log_now_ms {
                self.close_held(session, holder);
            } else if due != expires {
                self.expiry.insert((due, stream, listener, holder));
            }
        }
        self.acc.prune(self.log_now_ms);
    }

    /// Closes every open HLS session, as at the end of a dry run.
    pub fn close_all(&mut self) {
        let mut open: Vec<_> = self
            .open_hls
            .drain()
            .filter_map(|(session, holder)| {
                let entry = self.listeners.get_mut(holder)?;
                Some((session, entry.info, entry.take_open()?))
            })
            .collect();
        open.sort_by_key(|(k, _, s)| (s.start_ms, k.0, k.1));
        for (key, info, s) in open {
            self.close_hls(key, &info, s);
        }
        self.expiry.clear();
    }

    pub fn open_sessions(&self) -> usize {
        self.open_hls.len()
    }

    /// Everything accumulated since the last call.
    pub fn take(&mut self) -> (Vec<(HourKey, HourRollup)>, AgentCounters) {
        let rollups = self.acc.take();
        let mut counters = AgentCounters {
            lines: std::mem::take(&mut self.lines),
            ..Default::default()
        };
        for (reason, n) in self.malformed.drain() {
            counters.malformed.insert(reason.to_string(), n);
        }
        for ((t, status), n) in self.by_status.drain() {
            counters
                .by_status
                .insert((self.tenant_names[t as usize].to_string(), status), n);
        }
        (rollups, counters)
    }

    /// The listener cache key of a session's line: a hash of (stream, month, address text,
    /// captured headers).
    fn listener_key(stream_key: u64, month: i64, r: &LogRecord<'_>) -> u64 {
        // (stream, month) in one word; the multiplier is odd, so months stay apart.
        let seed = stream_key ^ (month as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        // The whole capture block rather than the User-Agent cut out of it: no search for
        // the field on a hit, at the price of an entry per Referer a listener sends.
        cache_key(seed, r.client, r.captured_request.unwrap_or_default())
    }

    /// The hashed listener of a session's line, hashing once per cache key: the address is
    /// only parsed (and its text found not to be an address, counted as `bad_address`) when
    /// the cache does not know the key.
    fn listener(&mut self, s: &SessionLine<'_>, tenant: u32) -> Result<ListenerInfo, &'static str> {
        if let Some(entry) = self.listeners.get(s.key) {
            return Ok(entry.info);
        }
        let ip = logline::parse_ip(s.client).ok_or(Malformed::BadAddress.as_str())?;
        let ua_raw: &[u8] = match s.captured_request {
            Some(block) => logline::captured_field(block, self.ua_field).unwrap_or(b""),
            None => b"",
        };
        if self.listeners.len() >= self.listener_limit {
            // Entries holding an open session stay; if they are most of the table, the limit
            // grows with them rather than this running again at the next miss.
            self.listeners.retain(|e| e.open().is_some());
            self.listener_limit = MAX_CACHED_LISTENERS.max(2 * self.listeners.len());
        }
        let ua = logline::unescape(ua_raw);
        let ua_ids = self.user_agent(ua_raw, &ua);
        let month = s.month;
        let keyring = self.keyrings.entry((tenant, month)).or_insert_with(|| {
            let (y, m) = (month.div_euclid(12), month.rem_euclid(12) + 1);
            ListenerKeyring::derive(
                &self.secret,
                &self.tenant_names[tenant as usize],
                &format!("{y:04}-{m:02}"),
            )
        });
        let id = keyring.listener(ip, &ua);
        let country = match self.geo.as_ref().and_then(|g| country_of(g, ip)) {
            Some(code) => self.acc.value_id(Dimension::Country, &code),
            None => 0,
        };
        let info = ListenerInfo {
            id,
            client: ua_ids.client,
            device: ua_ids.device,
            os: ua_ids.os,
            country,
            bot: ua_ids.bot,
        };
        self.listeners.insert(s.key, CachedListener::new(info));
        Ok(info)
    }

    fn user_agent(&mut self, raw: &[u8], ua: &[u8]) -> UaInfoIds {
        if let Some(ids) = self.user_agents.get(raw) {
            return *ids;
        }
        if self.user_agents.len() >= MAX_CACHED_USER_AGENTS {
            self.user_agents.clear();
        }
        let info = self.classifier.classify(&String::from_utf8_lossy(ua));
        let ids = UaInfoIds {
            client: self.acc.value_id(Dimension::Client, &info.client),
            device: self.acc.value_id(Dimension::Device, info.device),
            os: self.acc.value_id(Dimension::Os, &info.os),
            bot: info.bot,
        };
        self.user_agents.insert(raw.into(), ids);
        ids
    }

    /// Months since 1970-01 of an instant, cached per day.
    fn month_index(&mut self, t_ms: i64) -> i64 {
        // `month_cache.0` is the start of the cached day (ms): no division on the hot path.
        let (day_start, month) = self.month_cache;
        if (day_start..day_start.saturating_add(DAY_MS)).contains(&t_ms) {
            return month;
        }
        let day = t_ms.div_euclid(DAY_MS);
        let (y, m, _) = civil_from_days(day);
        self.month_cache = (day * DAY_MS, y * 12 + (m as i64 - 1));
        self.month_cache.1
    }

    fn session_dims(&mut self, l: &ListenerInfo, s: &SessionLine<'_>) -> [ValueId; Dimension::COUNT] {
        let referer = match (self.referer_field, s.captured_request) {
            (Some(i), Some(block)) => logline::captured_field(block, i).and_then(referrer_host),
            _ => None,
        };
        let source = s.query.and_then(source_param);
        let referrer_id = match &referer {
            Some(h) => self.acc.value_id(Dimension::Referrer, h),
            None => self.acc.value_id(Dimension::Referrer, "none"),
        };
        let source_id = match (&source, &referer) {
            (Some(s), _) => self.acc.value_id(Dimension::Source, s),
            (None, Some(h)) => self.acc.value_id(Dimension::Source, h),
            (None, None) => 0,
        };
        [l.client, l.device, l.os, l.country, referrer_id, source_id, 0]
    }

    /// The state that must survive a restart: open HLS sessions and AQH progress.
    pub fn save_state(&self) -> Vec<u8> {
        let open = self
            .open_hls
            .iter()
            .filter_map(|(&session, holder)| {
                let entry = self.listeners.get(*holder)?;
                Some((session, entry.info, *entry.open()?))
            })
            .map(|((sid, listener), info, s)| {
                let dims = s.dims(&info);
                SavedHls {
                    tenant: self.acc.stream_tenant(sid).to_string(),
                    stream: self.acc.stream_name(sid).to_string(),
                    listener,
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    dims: std::array::from_fn(|d| self.acc.value(Dimension::ALL[d], dims[d]).to_string()),
                    bot: info.bot,
                }
            })
            .collect();
        let state = SavedState {
            version: 1,
            log_now_ms: self.log_now_ms,
            open,
            aqh: self.acc.save_aqh(),
        };
        postcard::to_stdvec(&state).expect("state serialises")
    }

    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        let state: SavedState =
            postcard::from_bytes(bytes).map_err(|e| IngestError::State(e.to_string()))?;
        if state.version != 1 {
            return Err(IngestError::State(format!(
                "version {} is not 1",
                state.version
            )));
        }
        self.log_now_ms = state.log_now_ms;
        self.acc.restore_aqh(state.aqh);
        for s in state.open {
            let StreamSlot::Stream { stream: sid, .. } = intern_stream(
                &mut self.streams,
                &mut self.acc,
                (&mut self.tenants, &mut self.tenant_names),
                s.tenant.as_bytes(),
                s.stream.as_bytes(),
                Protocol::Hls,
            ) else {
                continue;
            };
            let dims: [ValueId; 6] = std::array::from_fn(|d| self.acc.value_id(Dimension::ALL[d], &s.dims[d]));
            // Held by an entry of its own, which no line's key finds: the listener's next
            // line reaches it through `open_hls`.
            let mut tail = [0u8; 12];
            tail[..4].copy_from_slice(&sid.to_le_bytes());
            tail[4..].copy_from_slice(&s.listener.0.to_le_bytes());
            let holder = cache_key(u64::MAX, b"restored", &tail);
            let info = ListenerInfo {
                id: s.listener,
                client: dims[Dimension::Client as usize],
                device: dims[Dimension::Device as usize],
                os: dims[Dimension::Os as usize],
                country: dims[Dimension::Country as usize],
                bot: s.bot,
            };
            let open = OpenHls {
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                referrer: dims[Dimension::Referrer as usize],
                source: dims[Dimension::Source as usize],
            };
            let mut entry = CachedListener::new(info);
            entry.set_open(open);
            self.listeners.insert(holder, entry);
            self.open_hls.insert((sid, s.listener), holder);
            self.expiry
                .insert((s.end_ms + self.hls_gap_ms, sid, s.listener, holder));
        }
        Ok(())
    }
}

/// A 64-bit key for a word and two byte strings: the rapidhash (v3) of `tail` seeded with the
/// rapidhash of `head` seeded with `seed` (nothing copied into one buffer first). Two
/// different triples share a key with a chance of about 2⁻⁶⁴: for the 100,000 entries the
/// listener cache holds at most, about 3 in 10¹⁰ that two listeners are merged.
fn cache_key(seed: u64, head: &[u8], tail: &[u8]) -> u64 {
    use rapidhash::v3::{RapidSecrets, rapidhash_v3_seeded};
    let head = rapidhash_v3_seeded(head, &RapidSecrets::seed_cpp(seed));
    rapidhash_v3_seeded(tail, &RapidSecrets::seed_cpp(head))
}

/// The key of a (tenant, stream) in the stream table.
fn stream_key(tenant: &[u8], stream: &[u8]) -> u64 {
    cache_key(0, tenant, stream)
}

/// The route of a record and its query: `None` for an HTTP line without a request
/// (`<BADREQ>`); a TCP line is a request for `/`.
fn route_record<'r, 'a: 'r>(
    router: &'r Router,
    host_field: Option<usize>,
    r: &LogRecord<'a>,
) -> Option<(Route<'r>, Option<&'a [u8]>)> {
    let (path, query, authority): (&[u8], Option<&[u8]>, Option<&[u8]>) =
        match (&r.kind, &r.request) {
            (_, Some(req)) => (req.path, req.query, req.authority),
            (LineKind::Tcp, None) => (b"/", None, None),
            (LineKind::Http, None) => return None,
        };
    let captured_host = match (authority, host_field, r.captured_request) {
        (Some(a), _, _) => Some(a),
        (None, Some(i), Some(block)) => logline::captured_field(block, i),
        _ => None,
    };
    Some((router.route(r.backend, path, captured_host), query))
}

/// Counts a line that is not a session by its status, under its tenant (a tenant that is
/// not UTF-8 makes it a malformed line).
fn count_by_status(
    tenants: (&mut HashMap<Box<str>, u32>, &mut Vec<Box<str>>),
    counts: (&mut ByStatus, &mut HashMap<&'static str, u64>),
    tenant: &[u8],
    status: i32,
) {
    match std::str::from_utf8(tenant) {
        Ok(name) => {
            let t = intern_tenant(tenants.0, tenants.1, name);
            *counts.0.entry((t, status)).or_default() += 1;
        }
        Err(_) => *counts.1.entry("not_utf8").or_default() += 1,
    }
}

fn intern_tenant(
    tenants: &mut HashMap<Box<str>, u32>,
    names: &mut Vec<Box<str>>,
    tenant: &str,
) -> u32 {
    if let Some(&id) = tenants.get(tenant) {
        return id;
    }
    let id = names.len() as u32;
    names.push(tenant.into());
    tenants.insert(tenant.into(), id);
    id
}

/// What the lines of one (tenant, stream) count as, decided the first time it is seen.
#[derive(Clone, Copy, Default)]
enum StreamSlot {
    Stream {
        tenant: u32,
        stream: StreamId,
    },
    /// The tenant (a backend's name) is not a valid tenant name: counted by status.
    Ignored {
        tenant: u32,
    },
    /// The tenant is not UTF-8: counted as a malformed line.
    #[default]
    NotUtf8,
}

fn intern_stream(
    streams: &mut KeyTable<StreamSlot>,
    acc: &mut Accumulator,
    tenants: (&mut HashMap<Box<str>, u32>, &mut Vec<Box<str>>),
    tenant: &[u8],
    stream: &[u8],
    protocol: Protocol,
) -> StreamSlot {
    let key = stream_key(tenant, stream);
    if let Some(&slot) = streams.get(key) {
        return slot;
    }
    let slot = match std::str::from_utf8(tenant) {
        Err(_) => StreamSlot::NotUtf8,
        Ok(name) => {
            let t = intern_tenant(tenants.0, tenants.1, name);
            if valid_tenant(name) {
                let id = acc.stream_id(name, &String::from_utf8_lossy(stream), protocol);
                StreamSlot::Stream {
                    tenant: t,
                    stream: id,
                }
            } else {
                StreamSlot::Ignored { tenant: t }
            }
        }
    };
    streams.insert(key, slot);
    slot
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    log_now_ms: i64,
    open: Vec<SavedHls>,
    aqh: Vec<AqhEntry>,
}

#[derive(Serialize, Deserialize)]
struct SavedHls {
    tenant: String,
    stream: String,
    listener: ListenerId,
    start_ms: i64,
    end_ms: i64,
    dims: [String; 6],
    bot: bool,
}

fn country_of(reader: &maxminddb::Reader<Vec<u8>>, ip: IpAddr) -> Option<String> {
    let country: maxminddb::geoip2::Country = reader.lookup(ip).ok()?;
    country.country?.iso_code.map(str::to_string)
}

/// The host of a Referer URL, lower-cased, without port or credentials.
pub fn referrer_host(raw: &[u8]) -> Option<String> {
    let text = logline::unescape(raw);
    let text = std::str::from_utf8(&text).ok()?.trim();
    if text.is_empty() || text == "-" {
        return None;
    }
    let rest = text.split_once("://").map(|(_, r)| r).unwrap_or(text);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next()?.trim_start_matches('[')
    } else {
        host.split(':').next()?
    };
    let host = host.to_ascii_lowercase();
    (!host.is_empty() && host.len() <= 253).then_some(host)
}

/// The `source=` query parameter, lower-cased and bounded.
pub fn source_param(query: &[u8]) -> Option<String> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let value = pair.strip_prefix(b"source=")?;
        let value = std::str::from_utf8(value).ok()?;
        let value: String = value
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(64)
            .collect::<String>()
            .to_ascii_lowercase();
        (!value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log where the order of work matters: HLS listeners whose sessions the lines of
    /// others close (gap 180 s), listeners switching Referer (a session's first line names
    /// its referrer), progressive sessions, lines that are not sessions and malformed lines
    /// between them, and more listeners than the cache holds, so that it is pruned while
    /// sessions are open.
    fn tricky_log() -> Vec<u8> {
        use std::io::Write;
        let mut log = Vec::new();
        for i in 0..6000u32 {
            let t = i * 7; // seconds after 04:00:00; listener `l` asks every 7 × 40 s
            let (h, m, s) = (4 + t / 3600, t / 60 % 60, t % 60);
            let l = i % 40 + if i % 97 == 0 { 1000 + i } else { 0 };
            let client = if l % 3 == 0 {
                format!("2001:db8::{l:x}")
            } else {
                format!("10.0.{}.{}", l / 250, l % 250)
            };
            let referer = if i % 11 == 0 {
                "https://a.example/"
            } else {
                "-"
            };
            let (path, status, ta) = match i % 13 {
                0 => ("/live.mp3?source=news".to_string(), 200, 65_000 + i),
                1 => ("/missing".to_string(), 404, 3),
                _ => (format!("/hls/s{}/seg{i}.aac", l % 2), 200, 150),
            };
            if i % 29 == 0 {
                writeln!(log, "garbage {i}").expect("write");
            }
            if i % 31 == 0 {
                // A new listener's first two segments, from two pages: the first names
                // the session's referrer.
                for site in ["b", "c"] {
                    writeln!(
                        log,
                        "10.9.{}.{}:4000 [28/Nov/2026:{h:02}:{m:02}:{s:02}.000] fe be_radio/s1 \
                         0/0/0/1/100 200 5000 - - ---- 1/1/0/0/0 0/0 \
                         {{Player/1.0 (iPhone)|https://{site}.example/}} \"GET /hls/s0/x.aac HTTP/1.1\"",
                        i / 250,
                        i % 250
                    )
                    .expect("write");
                }
            }
            writeln!(
                log,
                "{client}:4000 [28/Nov/2026:{h:02}:{m:02}:{s:02}.{:03}] fe be_radio/s1 0/0/0/1/{ta} \
                 {status} 5000 - - ---- 1/1/0/0/0 0/0 {{Player/1.0 (iPhone)|{referer}}} \"GET {path} HTTP/1.1\"",
                i % 1000
            )
            .expect("write");
        }
        log
    }

    fn ingestor() -> Ingestor {
        let mut config = AgentConfig::defaults();
        config.inputs.log_timezone = Some("UTC".into());
        let mut ingestor = Ingestor::new(&config, b"secret".to_vec()).expect("ingestor");
        ingestor.listener_limit = 30;
        ingestor
    }

    fn sorted(mut ingestor: Ingestor) -> (Vec<(HourKey, HourRollup)>, AgentCounters) {
        ingestor.close_all();
        let (mut rollups, counters) = ingestor.take();
        rollups.sort_by(|a, b| a.0.cmp(&b.0));
        (rollups, counters)
    }

    #[test]
    fn a_listener_entry_fits_a_cache_line_with_its_key() {
        assert_eq!(size_of::<CachedListener>(), 56);
    }

    #[test]
    fn looking_a_line_ahead_gives_what_one_line_at_a_time_gives() {
        let log = tricky_log();
        let log = log.strip_suffix(b"\n").expect("ends with a newline");
        let mut one_by_one = ingestor();
        for line in log.split(|&b| b == b'\n') {
            one_by_one.feed(line);
        }
        let mut ahead = ingestor();
        // Lines in blocks of varying size, as the reader hands them out.
        let lines: Vec<&[u8]> = log.split(|&b| b == b'\n').collect();
        let mut n = 0;
        for block in lines.chunks(37) {
            n += ahead.feed_lines(block.iter().map(|&l| Line::Text(l)));
        }
        assert_eq!(n, lines.len() as u64);
        let expected = sorted(one_by_one);
        assert!(expected.0.len() >= 2, "the log spans hours");
        // The garbage lines, one in 29.
        assert_eq!(
            expected.1.malformed.values().sum::<u64>(),
            6000_u64.div_ceil(29)
        );
        assert_eq!(sorted(ahead), expected);
    }

    #[test]
    fn referrer_hosts() {
        assert_eq!(
            referrer_host(b"https://www.Example.de:8443/player?x=1").as_deref(),
            Some("www.example.de")
        );
        assert_eq!(referrer_host(b"-"), None);
        assert_eq!(referrer_host(b""), None);
        assert_eq!(
            referrer_host(b"android-app://com.example.radio").as_deref(),
            Some("com.example.radio")
        );
    }

    #[test]
    fn source_params() {
        assert_eq!(
            source_param(b"a=1&source=Facebook").as_deref(),
            Some("facebook")
        );
        assert_eq!(source_param(b"a=1"), None);
        assert_eq!(source_param(b"source="), None);
    }
}
