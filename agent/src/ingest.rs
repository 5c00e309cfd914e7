//! The agent's core: log lines in, sessions and rollups out. Pure apart from reading the
//! optional GeoIP database at construction; the drivers (dry run, `run`) feed it lines.
//!
//! The client IP is used here, within one call, to hash the listener and look up the country,
//! and is then dropped: only a 128-bit hash of its text lives on, in the in-memory cache key
//! below; never in a rollup, the state blob or a log message.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use earshot_common::time::{DAY_MS, civil_from_days};
use earshot_common::wire::AgentCounters;
use earshot_common::{Dimension, HourKey, HourRollup, ListenerId, ListenerKeyring, Protocol};
use serde::{Deserialize, Serialize};

use crate::accumulate::{Accumulator, AqhEntry, Session, StreamId, ValueId};
use crate::clock::LogClock;
use crate::config::{AgentConfig, valid_tenant};
use crate::logline::{self, LineKind, LogRecord, Malformed};
use crate::route::{Route, Router};
use crate::useragent::UaClassifier;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// Lines that are not sessions, by (tenant, HTTP status).
type ByStatus = HashMap<(u32, i32), u64>;

/// Caches are emptied when they grow past this many entries, bounding memory under a flood
/// of distinct listeners (listener entries holding an open HLS session stay). 100,000
/// listener entries of 80 bytes sit in a table of 131,072 buckets: 10.5 MB, and 16 MB at the
/// moment it grows to that size. The one-hour benchmark file's 50,000 listeners fit.
const MAX_CACHED_LISTENERS: usize = 100_000;
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

#[derive(Clone, Copy)]
struct ListenerInfo {
    id: ListenerId,
    client: ValueId,
    device: ValueId,
    os: ValueId,
    country: ValueId,
    bot: bool,
}

struct CachedListener {
    info: ListenerInfo,
    /// The open HLS session of (this entry's stream, `info.id`), when this entry holds it.
    open: Option<OpenHls>,
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

impl OpenHls {
    fn dims(&self, l: &ListenerInfo) -> [ValueId; 6] {
        [
            l.client,
            l.device,
            l.os,
            l.country,
            self.referrer,
            self.source,
        ]
    }
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
    /// Keyed by a 128-bit fast hash of (stream, month, address text, captured headers): one
    /// probe into the table and no raw address kept, even in memory. An entry also holds the
    /// open HLS session of its (stream, listener), so that a segment request joins its
    /// session with that same probe.
    listeners: std::collections::HashMap<u128, CachedListener, BuildPassThrough>,
    /// Entries beyond this are dropped (those holding no open session).
    listener_limit: usize,
    user_agents: HashMap<Box<[u8]>, UaInfoIds>,
    /// [`cache_key`] of "tenant\0stream" → what lines of it count as.
    streams: std::collections::HashMap<u128, StreamSlot, BuildPassThrough>,
    /// Every open HLS session: (stream, listener) → the key of the `listeners` entry that
    /// holds it. Usually the entry a line finds; another one when the same listener comes
    /// with another address text or Referer, or after a restart.
    open_hls: HashMap<(StreamId, ListenerId), u128>,
    expiry: BinaryHeap<Reverse<(i64, StreamId, ListenerId)>>,
    log_now_ms: i64,
    key_buf: Vec<u8>,
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
                if d == Dimension::Source {
                    "direct"
                } else {
                    "unknown"
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
            listeners: std::collections::HashMap::with_hasher(BuildPassThrough),
            listener_limit: MAX_CACHED_LISTENERS,
            user_agents: HashMap::default(),
            streams: std::collections::HashMap::with_hasher(BuildPassThrough),
            open_hls: HashMap::default(),
            expiry: BinaryHeap::new(),
            log_now_ms: i64::MIN,
            key_buf: Vec::with_capacity(512),
            lines: 0,
            malformed: HashMap::default(),
            by_status: HashMap::default(),
            month_cache: (i64::MIN, 0),
        })
    }

    /// Feeds one log line (without its newline).
    pub fn feed(&mut self, line: &[u8]) {
        self.lines += 1;
        match logline::parse_line(line) {
            Err(reason) => self.count_malformed(reason.as_str()),
            Ok(None) => {}
            Ok(Some(record)) => self.feed_record(&record),
        }
    }

    /// Counts a line the reader had to skip (e.g. longer than `max_line_bytes`).
    pub fn count_skipped(&mut self, reason: &'static str) {
        self.lines += 1;
        self.count_malformed(reason);
    }

    fn count_malformed(&mut self, reason: &'static str) {
        *self.malformed.entry(reason).or_default() += 1;
    }

    fn feed_record(&mut self, r: &LogRecord<'_>) {
        let start_ms = self.clock.to_utc_ms(r.accept_naive_ms);
        self.session_from(r, start_ms);
        // HAProxy writes a line when its request ends: the log's clock is the latest end seen.
        // Idle HLS sessions are closed after the line joined (or opened) its own session.
        let written_ms = start_ms + r.duration_ms.max(0);
        if written_ms > self.log_now_ms {
            self.log_now_ms = written_ms;
            self.close_idle();
        }
    }

    fn session_from(&mut self, r: &LogRecord<'_>, start_ms: i64) {
        let backend = r.backend;
        let (path, query, authority): (&[u8], Option<&[u8]>, Option<&[u8]>) =
            match (&r.kind, &r.request) {
                (_, Some(req)) => (req.path, req.query, req.authority),
                (LineKind::Tcp, None) => (b"/", None, None),
                (LineKind::Http, None) => {
                    // "<BADREQ>" and friends: no request to attribute, counted by status.
                    let tenant = self.router.default_tenant(backend);
                    return count_by_status(
                        (&mut self.tenants, &mut self.tenant_names),
                        (&mut self.by_status, &mut self.malformed),
                        tenant,
                        r.status,
                    );
                }
            };
        let captured_host = match (authority, self.host_field, r.captured_request) {
            (Some(a), _, _) => Some(a),
            (None, Some(i), Some(block)) => logline::captured_field(block, i),
            _ => None,
        };
        let (tenant_id, stream_id, protocol) = match self.router.route(backend, path, captured_host)
        {
            Route::Ignored { tenant } => {
                return count_by_status(
                    (&mut self.tenants, &mut self.tenant_names),
                    (&mut self.by_status, &mut self.malformed),
                    tenant,
                    r.status,
                );
            }
            Route::Stream {
                tenant,
                stream,
                protocol,
            } => match intern_stream(
                &mut self.streams,
                &mut self.acc,
                (&mut self.tenants, &mut self.tenant_names),
                &mut self.key_buf,
                tenant,
                stream.as_bytes(),
                protocol,
            ) {
                StreamSlot::Stream { tenant, stream } => (tenant, stream, protocol),
                StreamSlot::Ignored { tenant } => {
                    *self.by_status.entry((tenant, r.status)).or_default() += 1;
                    return;
                }
                StreamSlot::NotUtf8 => return self.count_malformed("not_utf8"),
            },
        };
        let success = match r.kind {
            LineKind::Http => (200..300).contains(&r.status),
            LineKind::Tcp => r.bytes > 0,
        };
        if !success {
            *self.by_status.entry((tenant_id, r.status)).or_default() += 1;
            return;
        }
        if r.logasap {
            // Logged at the start: the real duration is never written.
            return self.count_malformed("logasap_duration");
        }
        if r.duration_ms < 0 {
            return self.count_malformed("no_duration");
        }
        let end_ms = start_ms + r.duration_ms;
        let (key, listener) = match self.listener(tenant_id, stream_id, start_ms, r) {
            Ok(found) => found,
            Err(reason) => return self.count_malformed(reason),
        };
        match protocol {
            Protocol::Icecast => {
                let dims = self.session_dims(&listener, query, r);
                self.acc.add(&Session {
                    stream: stream_id,
                    listener: listener.id,
                    dims,
                    start_ms,
                    end_ms,
                    bot: listener.bot,
                });
            }
            Protocol::Hls => {
                self.hls_request(stream_id, key, &listener, start_ms, end_ms, query, r);
            }
        }
    }

    /// One HLS request: joins the open session of (stream, listener) when within the gap,
    /// else closes it and opens a new one, held by the cache entry `key`.
    #[allow(clippy::too_many_arguments)]
    fn hls_request(
        &mut self,
        stream: StreamId,
        key: u128,
        listener: &ListenerInfo,
        start_ms: i64,
        end_ms: i64,
        query: Option<&[u8]>,
        r: &LogRecord<'_>,
    ) {
        let session = (stream, listener.id);
        // The common case: this line's own entry holds the session.
        let holder = match self.listeners.get(&key) {
            Some(entry) if entry.open.is_some() => Some(key),
            _ => self.open_hls.get(&session).copied(),
        };
        if let Some(holder) = holder
            && let Some(entry) = self.listeners.get_mut(&holder)
            && let Some(open) = entry.open.as_mut()
        {
            if start_ms - open.end_ms < self.hls_gap_ms {
                open.end_ms = open.end_ms.max(end_ms);
                open.start_ms = open.start_ms.min(start_ms);
                return;
            }
            let done = *open;
            let info = entry.info;
            entry.open = None;
            self.open_hls.remove(&session);
            self.close_hls(session, &info, done);
        }
        let dims = self.session_dims(listener, query, r);
        let open = OpenHls {
            start_ms,
            end_ms,
            referrer: dims[Dimension::Referrer as usize],
            source: dims[Dimension::Source as usize],
        };
        if let Some(entry) = self.listeners.get_mut(&key) {
            entry.open = Some(open);
        }
        self.open_hls.insert(session, key);
        self.expiry
            .push(Reverse((end_ms + self.hls_gap_ms, stream, listener.id)));
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
        while let Some(&Reverse((expires, stream, listener))) = self.expiry.peek() {
            if expires >= self.log_now_ms {
                break;
            }
            self.expiry.pop();
            let session = (stream, listener);
            let Some(&holder) = self.open_hls.get(&session) else {
                continue;
            };
            let Some(entry) = self.listeners.get_mut(&holder) else {
                continue;
            };
            let Some(open) = entry.open else {
                continue;
            };
            let due = open.end_ms + self.hls_gap_ms;
            if due < self.log_now_ms {
                let info = entry.info;
                entry.open = None;
                self.open_hls.remove(&session);
                self.close_hls(session, &info, open);
            } else if due != expires {
                self.expiry.push(Reverse((due, stream, listener)));
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
                let entry = self.listeners.get_mut(&holder)?;
                Some((session, entry.info, entry.open.take()?))
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

    /// The cache key and hashed listener of a line, hashing once per (stream, month, address
    /// text, captured headers): the address is only parsed (and its text found not to be an
    /// address, counted as `bad_address`) when the cache does not know it.
    fn listener(
        &mut self,
        tenant: u32,
        stream: StreamId,
        start_ms: i64,
        r: &LogRecord<'_>,
    ) -> Result<(u128, ListenerInfo), &'static str> {
        let month = self.month_index(start_ms);
        self.key_buf.clear();
        self.key_buf.extend_from_slice(&stream.to_le_bytes());
        self.key_buf.extend_from_slice(&month.to_le_bytes());
        // The address's length ends it (its text has no length prefix of its own).
        self.key_buf.push(r.client.len() as u8);
        self.key_buf.extend_from_slice(r.client);
        // The whole capture block rather than the User-Agent cut out of it: no search for
        // the field on a hit, at the price of an entry per Referer a listener sends.
        self.key_buf
            .extend_from_slice(r.captured_request.unwrap_or_default());
        let key = cache_key(&self.key_buf);
        if let Some(entry) = self.listeners.get(&key) {
            return Ok((key, entry.info));
        }
        let ip = r.client_ip().ok_or(Malformed::BadAddress.as_str())?;
        let ua_raw: &[u8] = match r.captured_request {
            Some(block) => logline::captured_field(block, self.ua_field).unwrap_or(b""),
            None => b"",
        };
        if self.listeners.len() >= self.listener_limit {
            // Entries holding an open session stay; if they are most of the table, the limit
            // grows with them rather than this running again at the next miss.
            self.listeners.retain(|_, e| e.open.is_some());
            self.listener_limit = MAX_CACHED_LISTENERS.max(2 * self.listeners.len());
        }
        let ua = logline::unescape(ua_raw);
        let ua_ids = self.user_agent(ua_raw, &ua);
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
        self.listeners
            .insert(key, CachedListener { info, open: None });
        Ok((key, info))
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

    fn session_dims(
        &mut self,
        l: &ListenerInfo,
        query: Option<&[u8]>,
        r: &LogRecord<'_>,
    ) -> [ValueId; 6] {
        let referer = match (self.referer_field, r.captured_request) {
            (Some(i), Some(block)) => logline::captured_field(block, i).and_then(referrer_host),
            _ => None,
        };
        let source = query.and_then(source_param);
        let referrer_id = match &referer {
            Some(h) => self.acc.value_id(Dimension::Referrer, h),
            None => self.acc.value_id(Dimension::Referrer, "none"),
        };
        let source_id = match (&source, &referer) {
            (Some(s), _) => self.acc.value_id(Dimension::Source, s),
            (None, Some(h)) => self.acc.value_id(Dimension::Source, h),
            (None, None) => 0,
        };
        [l.client, l.device, l.os, l.country, referrer_id, source_id]
    }

    /// The state that must survive a restart: open HLS sessions and AQH progress.
    pub fn save_state(&self) -> Vec<u8> {
        let open = self
            .open_hls
            .iter()
            .filter_map(|(&session, holder)| {
                let entry = self.listeners.get(holder)?;
                Some((session, entry.info, entry.open?))
            })
            .map(|((sid, listener), info, s)| {
                let dims = s.dims(&info);
                SavedHls {
                    tenant: self.acc.stream_tenant(sid).to_string(),
                    stream: self.acc.stream_name(sid).to_string(),
                    listener,
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    dims: Dimension::ALL.map(|d| self.acc.value(d, dims[d as usize]).to_string()),
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
                &mut self.key_buf,
                s.tenant.as_bytes(),
                s.stream.as_bytes(),
                Protocol::Hls,
            ) else {
                continue;
            };
            let dims = Dimension::ALL.map(|d| self.acc.value_id(d, &s.dims[d as usize]));
            // Held by an entry of its own, which no line's key finds: the listener's next
            // line reaches it through `open_hls`.
            self.key_buf.clear();
            self.key_buf.extend_from_slice(b"restored\0");
            self.key_buf.extend_from_slice(&sid.to_le_bytes());
            self.key_buf.extend_from_slice(&s.listener.0.to_le_bytes());
            let holder = cache_key(&self.key_buf);
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
            self.listeners.insert(
                holder,
                CachedListener {
                    info,
                    open: Some(open),
                },
            );
            self.open_hls.insert((sid, s.listener), holder);
            self.expiry
                .push(Reverse((s.end_ms + self.hls_gap_ms, sid, s.listener)));
        }
        Ok(())
    }
}

/// A 128-bit XXH3 hash: a collision between two listeners in the cache (which would merge
/// them) has a chance of about n²/2¹²⁹.
fn cache_key(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// The cache keys are hashes already: use their low bits as the table's hash.
#[derive(Clone, Copy, Default)]
pub struct BuildPassThrough;

#[derive(Default)]
pub struct PassThrough(u64);

impl std::hash::BuildHasher for BuildPassThrough {
    type Hasher = PassThrough;
    fn build_hasher(&self) -> PassThrough {
        PassThrough(0)
    }
}

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
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
#[derive(Clone, Copy)]
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
    NotUtf8,
}

fn intern_stream(
    streams: &mut std::collections::HashMap<u128, StreamSlot, BuildPassThrough>,
    acc: &mut Accumulator,
    tenants: (&mut HashMap<Box<str>, u32>, &mut Vec<Box<str>>),
    key_buf: &mut Vec<u8>,
    tenant: &[u8],
    stream: &[u8],
    protocol: Protocol,
) -> StreamSlot {
    key_buf.clear();
    key_buf.extend_from_slice(tenant);
    key_buf.push(0);
    key_buf.extend_from_slice(stream);
    let key = cache_key(key_buf);
    if let Some(&slot) = streams.get(&key) {
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
