//! The agent's core: log lines in, sessions and rollups out. Pure apart from reading the
//! optional GeoIP database at construction; the drivers (dry run, `run`) feed it lines.
//!
//! The client IP is used here, while its line is handled, to hash the listener and look up
//! the country, and is then dropped: only a 64-bit hash of its text lives on, in the
//! in-memory cache key below; never in a rollup, the state blob or a log message.

use std::collections::BTreeSet;
use std::sync::Arc;

use earshot_common::tenant::TenantName;
use earshot_common::time::{DAY_MS, civil_from_days};
use earshot_common::wire::AgentCounters;
use earshot_common::{Dimension, HourKey, HourRollup, ListenerId, ListenerKeyring, Protocol};

use crate::accumulate::{Accumulator, LimitsConfig, Session, StreamId, ValueId};
use crate::classify::Classify;
use crate::clock::LogClock;
use crate::explain::{Explain, Reason};
use crate::kind::NotSession;
use crate::layout::{self, Layout};
use crate::logline::{self, LineKind, LogRecord, Malformed};
use crate::reader::Line;
use crate::route::{Route, Router, RoutingConfig, StreamName};
use crate::table::KeyTable;
mod config;
mod request;
mod state;
#[cfg(test)]
mod tests;
mod views;

pub use config::{IngestParts, InputsConfig, SessionConfig};
pub use request::{referrer_host, source_param};
use views::{DirView, Group, NameView};

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
/// Playlist and segment stems interned at most (past it, a stem is not told apart).
const MAX_STEMS: usize = 65_536;
/// (tenant, stream) keys remembered at most; past it, those folded into `(other)` go.
const MAX_STREAM_KEYS: usize = 262_144;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A `[classify]` file that cannot be read (a fault of the config).
    #[error("classify.{key}: {message}")]
    Classify { key: &'static str, message: String },
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
    /// The country's value id, and [`BOT`] when the User-Agent is a bot's (one word less
    /// than a flag of its own: the entry fits a cache line with its key).
    country_bot: ValueId,
}

const BOT: ValueId = 1 << 31;

impl ListenerInfo {
    fn new(id: ListenerId, [client, device, os, country]: [ValueId; 4], bot: bool) -> ListenerInfo {
        debug_assert!(country < BOT, "value ids stay under 2^31");
        ListenerInfo {
            id,
            client,
            device,
            os,
            country_bot: country | if bot { BOT } else { 0 },
        }
    }

    fn country(&self) -> ValueId {
        self.country_bot & !BOT
    }

    fn bot(&self) -> bool {
        self.country_bot & BOT != 0
    }
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
/// (the cache entry's `info`): only what its requests added is here.
#[derive(Clone, Copy)]
struct OpenHls {
    start_ms: i64,
    end_ms: i64,
    referrer: ValueId,
    source: ValueId,
    /// The rendition of the last media segment fetched (0: none yet).
    rendition: ValueId,
    /// The playlist (or, until one is fetched, segment) name that names the session's
    /// stream in a directory of several streams; [`FROM_PLAYLIST`] marks a playlist's.
    stem: u32,
}

/// In [`OpenHls::stem`] and [`HlsPart::stem`]: the stem is a playlist's name.
const FROM_PLAYLIST: u32 = 1 << 31;

impl Default for OpenHls {
    /// No session: what a cache entry holds when it holds none.
    fn default() -> OpenHls {
        OpenHls {
            start_ms: 0,
            end_ms: CachedListener::CLOSED,
            referrer: 0,
            source: 0,
            rendition: 0,
            stem: 0,
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
        self.note(&s.hls);
        true
    }

    /// What a request of the session says of its rendition and its stream's name.
    #[inline]
    fn note(&mut self, part: &HlsPart) {
        if let Some(r) = part.rendition {
            self.rendition = r;
        }
        if self.stem & FROM_PLAYLIST == 0 && part.stem != 0 {
            self.stem = part.stem;
        }
    }

    fn dims(&self, l: &ListenerInfo) -> [ValueId; Dimension::COUNT] {
        [
            l.client,
            l.device,
            l.os,
            l.country(),
            self.referrer,
            self.source,
            self.rendition,
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

/// A session's line, ready for its listener to be looked up.
struct SessionLine<'a> {
    /// The listener cache key.
    key: u64,
    /// What the line's (tenant, stream) counts as: for HLS, the stream the listener chose
    /// as far as the line tells (its group; see [`HlsPart`]).
    slot: StreamSlot,
    client: &'a [u8],
    captured_request: Option<&'a [u8]>,
    query: Option<&'a [u8]>,
    start_ms: i64,
    end_ms: i64,
    /// Months since 1970-01 of the line's start: the listener hash's epoch.
    month: i64,
    protocol: Protocol,
    hls: HlsPart,
}

/// What an HLS request adds to its session.
#[derive(Clone, Copy, Default)]
struct HlsPart {
    /// The rendition of a media segment (`None` for playlists and `init` segments).
    rendition: Option<ValueId>,
    /// The interned name that would name the stream in a directory of several streams
    /// (0: none), with [`FROM_PLAYLIST`] for a playlist's.
    stem: u32,
}

pub struct Ingestor {
    clock: LogClock,
    /// Shared so that a line's route, which may borrow a rule's names, can be held while
    /// the ingestor changes.
    router: Arc<Router>,
    classify: Classify,
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
    /// What the log has shown of its HLS layout (playlist directories, names).
    layout: Layout,
    /// HLS group streams named by their directory → that directory's [`layout::key_of`],
    /// for the several-streams rule at close.
    group_dirs: HashMap<StreamId, u64>,
    /// (group stream, stem) → the stream a session of a several-streams directory is.
    several: HashMap<(StreamId, u32), StreamId>,
    /// Interned stems (index 0: none).
    stems: Vec<Box<[u8]>>,
    stem_index: HashMap<Box<[u8]>, u32>,
    /// See [`DirView`], [`NameView`].
    dir_views: KeyTable<DirView>,
    name_views: KeyTable<NameView>,
    /// The last [`DirView::generation`] given.
    generation: u32,
    /// Successful requests that are not sessions, by (tenant, kind).
    not_sessions: HashMap<(u32, NotSession), u64>,
    /// What `--explain` shows, when asked for.
    explain: Option<Box<Explain>>,
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
    /// An ingestor of the given sections; it opens no file (`[classify]` is opened by the
    /// caller: `daemon::ingestor`).
    pub fn new(parts: IngestParts<'_>) -> Result<Ingestor, IngestError> {
        let IngestParts {
            inputs,
            sessions,
            routing,
            limits,
            classify,
            secret,
        } = parts;
        let clock = LogClock::new(inputs.log_timezone.as_deref()).map_err(IngestError::TimeZone)?;
        let field = |name: &str| {
            inputs
                .captured_headers
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
        };
        let acc = Accumulator::new(sessions.min_session_secs)
            .with_limits(limits.max_streams, limits.max_values);
        Ok(Ingestor {
            clock,
            router: Arc::new(Router::new(routing, sessions.patterns())),
            classify,
            secret,
            ua_field: field("user-agent").unwrap_or(0),
            referer_field: field("referer"),
            host_field: field("host"),
            hls_gap_ms: sessions.hls_session_gap_secs as i64 * 1000,
            acc,
            tenants: HashMap::default(),
            tenant_names: Vec::new(),
            keyrings: HashMap::default(),
            listeners: KeyTable::default(),
            listener_limit: MAX_CACHED_LISTENERS,
            user_agents: HashMap::default(),
            streams: KeyTable::default(),
            layout: Layout::default(),
            group_dirs: HashMap::default(),
            several: HashMap::default(),
            stems: vec![Box::default()],
            stem_index: HashMap::default(),
            dir_views: KeyTable::default(),
            name_views: KeyTable::default(),
            generation: 0,
            not_sessions: HashMap::default(),
            explain: None,
            open_hls: HashMap::default(),
            expiry: BTreeSet::new(),
            log_now_ms: i64::MIN,
            lines: 0,
            malformed: HashMap::default(),
            by_status: HashMap::default(),
            month_cache: (i64::MIN, 0),
        })
    }

    /// An ingestor of every section's defaults but the log's time zone, with the built-in
    /// User-Agent rules and no country database.
    pub fn with_defaults(log_timezone: Option<&str>, secret: Vec<u8>) -> Ingestor {
        let inputs = InputsConfig {
            log_timezone: log_timezone.map(str::to_string),
            ..InputsConfig::default()
        };
        Ingestor::new(IngestParts {
            inputs: &inputs,
            sessions: &SessionConfig::default(),
            routing: &RoutingConfig::default(),
            limits: &LimitsConfig::default(),
            classify: Classify::builtin(),
            secret,
        })
        .expect("the default config makes an ingestor")
    }

    /// Collects what [`Ingestor::explanation`] shows (the dry run's `--explain`).
    pub fn explain(&mut self) {
        self.explain = Some(Box::default());
    }

    /// What the agent made of the lines fed since [`Ingestor::explain`], as text; `rollups`
    /// and `counters` are what [`Ingestor::take`] handed out.
    pub fn explanation(
        &self,
        rollups: &[(HourKey, HourRollup)],
        counters: &AgentCounters,
    ) -> String {
        let Some(e) = &self.explain else {
            return String::new();
        };
        let stream = |sid: StreamId| {
            (
                self.acc.stream_tenant(sid).to_string(),
                self.acc.stream_name(sid).to_string(),
            )
        };
        let names = crate::explain::Names {
            tenants: &self.tenant_names,
            stream: &stream,
            valid_tenant: &TenantName::is_valid,
            playlist_dirs: self.layout.playlist_dirs(),
            layout_overflowed: self.layout.overflowed,
        };
        crate::explain::render(e, &names, rollups, counters)
    }

    /// Feeds one log line (without its newline), nothing ahead: what [`Ingestor::feed_lines`]
    /// is tested against.
    #[cfg(test)]
    fn feed(&mut self, line: &[u8]) {
        self.lines += 1;
        let router = Arc::clone(&self.router);
        if let Some(parsed) = self.prepare(&router, line) {
            self.finish(&parsed);
        }
    }

    /// Feeds lines in order, as feeding them one by one would, but one line ahead: a
    /// line is parsed and the cache slots of its stream and listener fetched while the line
    /// before it joins its session. Returns how many lines there were.
    pub fn feed_lines<'a>(&mut self, lines: impl Iterator<Item = Line<'a>>) -> u64 {
        let router = Arc::clone(&self.router);
        let mut n = 0;
        let mut waiting = None;
        for line in lines {
            n += 1;
            self.lines += 1;
            let next = match line {
                Line::Text(text) => self.prepare(&router, text),
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
    fn prepare<'a>(&mut self, router: &'a Router, line: &'a [u8]) -> Option<Parsed<'a>> {
        let record = match logline::parse_line(line) {
            Err(reason) => {
                self.count_malformed(reason.as_str());
                return None;
            }
            Ok(None) => return None,
            Ok(Some(record)) => record,
        };
        let start_ms = self.clock.to_utc_ms(record.accept_naive_ms);
        let session = self.session_line(router, &record, start_ms);
        if let Some(s) = &session {
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
    /// here: by status, as not a session by kind, or as malformed). What the line shows of
    /// the log's HLS layout is learned here, before the line's stream is decided.
    fn session_line<'a>(
        &mut self,
        router: &'a Router,
        r: &LogRecord<'a>,
        start_ms: i64,
    ) -> Option<SessionLine<'a>> {
        let success = match r.kind {
            LineKind::Http => (200..300).contains(&r.status),
            LineKind::Tcp => r.bytes > 0,
        };
        let Some((route, path, query)) = route_record(router, self.host_field, r) else {
            // "<BADREQ>" and friends: no request to attribute, counted by status.
            let tenant = router.default_tenant(r.backend);
            self.by_status(tenant, r.status);
            return None;
        };
        let (tenant, stream, what) = match route {
            Route::Ignored { tenant } => {
                self.by_status(tenant, r.status);
                return None;
            }
            Route::NotSession { tenant, kind } => {
                if success {
                    self.not_session(tenant, kind, path);
                } else {
                    self.by_status(tenant, r.status);
                }
                return None;
            }
            Route::Stream {
                tenant,
                stream,
                what,
            } => (tenant, stream, what),
        };
        if !success {
            self.by_status(tenant, r.status);
            return None;
        }
        // The directory and name views' keys first, their slots fetched while the listener's
        // address and headers are hashed: what the views say is only looked at after that.
        let names = self.names(tenant, path, what);
        let address_key = address_key(r);
        let (group, protocol, hls, reason) = self.resolve(tenant, &stream, path, names);
        let (group, known_key): (&[u8], Option<u64>) = match group {
            Group::Line(g) => (g, None),
            Group::Dir(g, key) => (g, Some(key)),
            Group::Configured => (stream.as_bytes(), None),
        };
        let stream_key = known_key.unwrap_or_else(|| stream_key(tenant, group));
        let slot = match self.streams.get(stream_key) {
            Some(&slot) => slot,
            None => self.intern(stream_key, tenant, group, protocol, reason, &stream),
        };
        if let Some(e) = &mut self.explain {
            let sid = match slot {
                StreamSlot::Stream { stream, .. } => Some(stream),
                _ => None,
            };
            e.request(sid, protocol);
        }
        let not_session = match slot {
            StreamSlot::NotUtf8 => Err("not_utf8"),
            StreamSlot::Ignored { tenant } => Ok(tenant),
            // Logged at the start (`option logasap`): the real duration is never written.
            StreamSlot::Stream { .. } if r.logasap => Err("logasap_duration"),
            StreamSlot::Stream { .. } if r.duration_ms < 0 => Err("no_duration"),
            StreamSlot::Stream { .. } => {
                let month = self.month_index(start_ms);
                return Some(SessionLine {
                    key: listener_key(stream_key, month, address_key),
                    slot,
                    client: r.client,
                    captured_request: r.captured_request,
                    query,
                    start_ms,
                    end_ms: start_ms + r.duration_ms,
                    month,
                    protocol,
                    hls,
                });
            }
        };
        match not_session {
            Ok(tenant) => *self.by_status.entry((tenant, r.status)).or_default() += 1,
            Err(reason) => self.count_malformed(reason),
        }
        None
    }

    fn by_status(&mut self, tenant: &[u8], status: i32) {
        count_by_status(
            (&mut self.tenants, &mut self.tenant_names),
            (&mut self.by_status, &mut self.malformed),
            tenant,
            status,
        );
    }

    fn not_session(&mut self, tenant: &[u8], kind: NotSession, path: &[u8]) {
        match std::str::from_utf8(tenant) {
            Ok(name) => {
                let t = intern_tenant(&mut self.tenants, &mut self.tenant_names, name);
                *self.not_sessions.entry((t, kind)).or_default() += 1;
                if let Some(e) = &mut self.explain {
                    e.not_session(t, kind, path);
                }
            }
            Err(_) => self.count_malformed("not_utf8"),
        }
    }

    /// Interns the (tenant, stream) of a line seen for the first time.
    fn intern(
        &mut self,
        key: u64,
        tenant: &[u8],
        group: &[u8],
        protocol: Protocol,
        reason: Reason,
        stream: &StreamName<'_>,
    ) -> StreamSlot {
        if self.streams.len() >= MAX_STREAM_KEYS {
            // Names folded into `(other)` go first: they are found again by interning.
            let acc = &self.acc;
            self.streams.retain(|slot| match slot {
                StreamSlot::Stream { stream, .. } => !acc.is_folded(*stream),
                _ => true,
            });
        }
        let slot = intern_stream(
            &mut self.streams,
            &mut self.acc,
            (&mut self.tenants, &mut self.tenant_names),
            key,
            tenant,
            group,
            protocol,
        );
        if let StreamSlot::Stream { stream: sid, .. } = slot {
            let configured = matches!(stream, StreamName::Configured(_));
            if protocol == Protocol::Hls && !configured && !self.acc.is_folded(sid) {
                self.group_dirs.insert(sid, layout::key_of(tenant, group));
            }
            let reason = if configured { Reason::Rule } else { reason };
            if let Some(e) = &mut self.explain {
                e.stream(sid, reason);
            }
        }
        slot
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
        let (tenant, stream) = match s.slot {
            StreamSlot::Stream { tenant, stream } => (tenant, stream),
            // Decided by `session_line`, which makes no session line of these.
            StreamSlot::Ignored { .. } | StreamSlot::NotUtf8 => return,
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
                    bot: listener.bot(),
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
        let mut open = OpenHls {
            start_ms,
            end_ms,
            referrer: dims[Dimension::Referrer as usize],
            source: dims[Dimension::Source as usize],
            rendition: 0,
            stem: 0,
        };
        open.note(&s.hls);
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
        let mut dims = s.dims(info);
        let stream = match self.group_dirs.get(&key.0) {
            Some(&dir) if self.layout.several_streams(dir) => {
                dims[Dimension::Rendition as usize] = 0;
                self.several_stream(key.0, s.stem & !FROM_PLAYLIST)
            }
            _ => key.0,
        };
        self.acc.add(&Session {
            stream,
            listener: key.1,
            dims,
            start_ms: s.start_ms,
            end_ms: s.end_ms,
            bot: info.bot(),
        });
    }

    /// The stream of a session in a directory of several streams: `<directory>/<stem>`.
    fn several_stream(&mut self, group: StreamId, stem: u32) -> StreamId {
        if let Some(&sid) = self.several.get(&(group, stem)) {
            return sid;
        }
        let tenant = self.acc.stream_tenant(group).to_string();
        let dir = self.acc.stream_name(group);
        let name = match &*self.stems[stem as usize] {
            b"" => dir.to_string(),
            stem => {
                let sep = if dir.ends_with('/') { "" } else { "/" };
                format!("{dir}{sep}{}", String::from_utf8_lossy(stem))
            }
        };
        let sid = self.acc.stream_id(&tenant, &name, Protocol::Hls);
        if let Some(e) = &mut self.explain {
            e.stream(sid, Reason::SeveralStreams);
            e.split(group);
        }
        self.several.insert((group, stem), sid);
        sid
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
        if self.acc.values_crowded() {
            self.forget_values();
        }
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
        for ((t, kind), n) in self.not_sessions.drain() {
            counters.not_sessions.insert(
                (
                    self.tenant_names[t as usize].to_string(),
                    kind.as_str().to_string(),
                ),
                n,
            );
        }
        for (k, n) in self.acc.take_folded() {
            *counters.folded.entry(k).or_default() += n;
        }
        (rollups, counters)
    }

    /// Forgets the dimension values no open session holds, so that a flood of distinct
    /// values (random `source=`, Referers, User-Agents) cannot fill the interner for good:
    /// the caches that hold value ids are emptied (but for entries holding open sessions,
    /// whose ids are mapped to the new ones).
    fn forget_values(&mut self) {
        self.user_agents.clear();
        self.name_views.retain(|_| false);
        self.listeners.retain(|e| e.open().is_some());
        let mut keep = Vec::new();
        for holder in self.open_hls.values() {
            if let Some(e) = self.listeners.get(*holder)
                && let Some(open) = e.open()
            {
                for (d, v) in open.dims(&e.info).into_iter().enumerate() {
                    keep.push((Dimension::ALL[d], v));
                }
            }
        }
        let remap = self.acc.forget_values(keep.into_iter());
        let map = |d: Dimension, v: &mut ValueId| {
            *v = remap[d as usize].get(v).copied().unwrap_or(0);
        };
        let holders: Vec<u64> = self.open_hls.values().copied().collect();
        for holder in holders {
            if let Some(e) = self.listeners.get_mut(holder) {
                map(Dimension::Client, &mut e.info.client);
                map(Dimension::Device, &mut e.info.device);
                map(Dimension::Os, &mut e.info.os);
                let mut country = e.info.country();
                map(Dimension::Country, &mut country);
                e.info.country_bot = country | (e.info.country_bot & BOT);
                if let Some(open) = e.open_mut() {
                    map(Dimension::Referrer, &mut open.referrer);
                    map(Dimension::Source, &mut open.source);
                    map(Dimension::Rendition, &mut open.rendition);
                }
            }
        }
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
        let country = match self.classify.country(ip) {
            Some(code) => self.acc.value_id(Dimension::Country, &code),
            None => 0,
        };
        let info = ListenerInfo::new(
            id,
            [ua_ids.client, ua_ids.device, ua_ids.os, country],
            ua_ids.bot,
        );
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
        let info = self
            .classify
            .user_agents
            .classify(&String::from_utf8_lossy(ua));
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

    fn session_dims(
        &mut self,
        l: &ListenerInfo,
        s: &SessionLine<'_>,
    ) -> [ValueId; Dimension::COUNT] {
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
        [
            l.client,
            l.device,
            l.os,
            l.country(),
            referrer_id,
            source_id,
            0,
        ]
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

/// The hash of a line's address text and captured headers: with the stream and month, its
/// listener cache key ([`listener_key`]). The whole capture block rather than the User-Agent
/// cut out of it: no search for the field on a hit, at the price of an entry per Referer a
/// listener sends.
#[inline]
fn address_key(r: &LogRecord<'_>) -> u64 {
    cache_key(0, r.client, r.captured_request.unwrap_or_default())
}

/// The listener cache key of a session's line: (stream, month, [`address_key`]).
#[inline]
fn listener_key(stream_key: u64, month: i64, address_key: u64) -> u64 {
    use rapidhash::v3::{RapidSecrets, rapidhash_v3_seeded};
    // (stream, month) in one word; the multiplier is odd, so months stay apart.
    let seed = stream_key ^ (month as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    rapidhash_v3_seeded(&address_key.to_le_bytes(), &RapidSecrets::seed_cpp(seed))
}

/// The key of a (tenant, stream) in the stream table.
fn stream_key(tenant: &[u8], stream: &[u8]) -> u64 {
    cache_key(0, tenant, stream)
}

/// A routed request: its route, path and query.
type Routed<'r, 'a> = (Route<'r>, &'a [u8], Option<&'a [u8]>);

/// The route of a record and its query: `None` for an HTTP line without a request
/// (`<BADREQ>`); a TCP line is a request for `/`.
fn route_record<'r, 'a: 'r>(
    router: &'r Router,
    host_field: Option<usize>,
    r: &LogRecord<'a>,
) -> Option<Routed<'r, 'a>> {
    let (method, path, query, authority) = match (&r.kind, &r.request) {
        (LineKind::Http, Some(req)) => (Some(req.method), req.path, req.query, req.authority),
        (LineKind::Tcp, Some(req)) => (None, req.path, req.query, req.authority),
        (LineKind::Tcp, None) => (None, b"/".as_slice(), None, None),
        (LineKind::Http, None) => return None,
    };
    let captured_host = match (authority, host_field, r.captured_request) {
        (Some(a), _, _) => Some(a),
        (None, Some(i), Some(block)) => logline::captured_field(block, i),
        _ => None,
    };
    Some((
        router.route(r.backend, method, path, captured_host),
        path,
        query,
    ))
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
    key: u64,
    tenant: &[u8],
    stream: &[u8],
    protocol: Protocol,
) -> StreamSlot {
    if let Some(&slot) = streams.get(key) {
        return slot;
    }
    let slot = match std::str::from_utf8(tenant) {
        Err(_) => StreamSlot::NotUtf8,
        Ok(name) => {
            let t = intern_tenant(tenants.0, tenants.1, name);
            if TenantName::is_valid(name) {
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
