//! Live listener counts: the latest sample of every (tenant, stream, protocol, host), their
//! sums now, and the sums' history over the last `live_retention`, all in memory; saved to
//! `state_dir/live.db` now and then and on shutdown ([`snapshot`]), so a restart keeps both.
//!
//! Why the core takes `now_ms` instead of reading a clock: staleness, history and event ids
//! all depend on time, and tests drive it by hand. The link calls [`LiveStore::record`] per
//! datagram; a one-second tick calls [`LiveStore::tick`], which drops hosts whose samples
//! stopped and ages the history out.
//!
//! What must stay true:
//! - per (tenant, stream, protocol, host) the sample with the latest agent time wins (QUIC
//!   datagrams may arrive out of order, and one poll may be split over several datagrams);
//! - a host whose last sample for a stream was received more than `stale_after` ago counts
//!   for nothing (not for its last value);
//! - a tenant's `version` changes exactly when what `/live` reports for it (values per host
//!   and stream) changes, and versions only grow, across restarts too: they are event ids of
//!   `live/stream`, which a client sends back as `Last-Event-ID`.

pub mod feeds;
mod history;
pub mod snapshot;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use earshot_common::Protocol;
use earshot_common::wire::LiveSample;
use tokio::sync::watch;

pub use feeds::{EngagementNow, PushOutcome};
pub use history::{Point, RESOLUTION_MS, Series};
pub use snapshot::{LiveDb, SnapshotError};

/// What the live store keeps and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveSettings {
    /// History kept, ms.
    pub retention_ms: i64,
    /// A host's sample counts for this long after it was received, ms.
    pub stale_after_ms: i64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            retention_ms: 2 * 3_600_000,
            stale_after_ms: 30_000,
        }
    }
}

/// Where a count comes from: `host` is the agent id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadingKey {
    pub stream: String,
    pub protocol: Protocol,
    pub host: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub listeners: u64,
    /// When the agent polled (agent's clock): orders the samples of one host.
    pub at_ms: i64,
    /// When the collector received it (collector's clock): decides staleness.
    pub received_ms: i64,
}

#[derive(Clone, Debug, Default)]
struct TenantLive {
    readings: BTreeMap<ReadingKey, Reading>,
    /// What `/live` reports as of `version`.
    published: BTreeMap<ReadingKey, u64>,
    version: u64,
    /// When the last sample for the tenant was received.
    updated_ms: Option<i64>,
    /// The sum over hosts per (stream, protocol).
    history: BTreeMap<(String, Protocol), Series>,
}

#[derive(Debug, Default)]
struct Inner {
    tenants: BTreeMap<String, TenantLive>,
    last_id: u64,
    /// Matomo live counters and the platform's events ([`feeds`]).
    feeds: feeds::Feeds,
}

impl Inner {
    /// A new event id: above every id given before, and near the wall clock so that ids keep
    /// growing across restarts even if the last one was not saved.
    fn next_id(&mut self, now_ms: i64) -> u64 {
        self.last_id = (self.last_id + 1).max(now_ms.max(0) as u64);
        self.last_id
    }

    /// Drops stale readings and, if what the tenant reports changed, gives it a new version
    /// and extends its history. Returns whether it changed.
    fn refresh(&mut self, tenant: &str, now_ms: i64, stale_after_ms: i64) -> bool {
        let Some(t) = self.tenants.get_mut(tenant) else {
            return false;
        };
        t.readings
            .retain(|_, r| now_ms.saturating_sub(r.received_ms) <= stale_after_ms);
        let fresh: BTreeMap<ReadingKey, u64> = t
            .readings
            .iter()
            .map(|(k, r)| (k.clone(), r.listeners))
            .collect();
        if fresh == t.published {
            return false;
        }
        let mut sums: BTreeMap<(String, Protocol), u64> = BTreeMap::new();
        for (k, v) in &fresh {
            *sums.entry((k.stream.clone(), k.protocol)).or_default() += v;
        }
        let keys: BTreeSet<(String, Protocol)> =
            sums.keys().chain(t.history.keys()).cloned().collect();
        for key in keys {
            let value = sums.get(&key).copied().unwrap_or(0);
            t.history.entry(key).or_default().push(now_ms, value);
        }
        t.published = fresh;
        let id = self.next_id(now_ms);
        if let Some(t) = self.tenants.get_mut(tenant) {
            t.version = id;
        }
        true
    }
}

/// The live state of every tenant. Shared by the link (writer), the tick, the API (readers).
#[derive(Debug)]
pub struct LiveStore {
    settings: LiveSettings,
    inner: Mutex<Inner>,
    /// The last event id given out; changes with every tenant's change.
    changed: watch::Sender<u64>,
    closed: AtomicBool,
}

/// One (stream, protocol) now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamNow {
    pub stream: String,
    pub protocol: Protocol,
    pub listeners: u64,
    pub updated_ms: i64,
}

/// One host (agent) now, with its streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostNow {
    pub host: String,
    pub listeners: u64,
    pub updated_ms: i64,
    pub streams: Vec<StreamNow>,
}

/// What `/live` says of a tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantNow {
    pub tenant: String,
    /// The id of the tenant's last change (0: nothing ever seen).
    pub version: u64,
    pub listeners: u64,
    /// When the last sample for the tenant was received (also samples that changed nothing).
    pub updated_ms: Option<i64>,
    /// Highest first, then by name.
    pub by_stream: Vec<StreamNow>,
    pub by_protocol: Vec<(Protocol, u64)>,
    pub hosts: Vec<HostNow>,
    /// Matomo's live counters for the tenant's site, if polled.
    pub engagement: Option<EngagementNow>,
    /// The tenant's posted events.
    pub events: crate::events::TenantEvents,
}

/// A history answer: per (stream, protocol) and their total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantHistory {
    pub streams: Vec<(String, Protocol, Vec<Point>)>,
    pub total: Vec<Point>,
}

/// Everything the store keeps, as plain data (what the snapshot saves and restores).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveState {
    pub last_id: u64,
    pub tenants: Vec<TenantState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TenantState {
    pub tenant: String,
    pub version: u64,
    pub updated_ms: Option<i64>,
    pub readings: Vec<(ReadingKey, Reading)>,
    pub history: Vec<(String, Protocol, Series)>,
}

impl LiveStore {
    pub fn new(settings: LiveSettings) -> LiveStore {
        LiveStore {
            settings,
            inner: Mutex::new(Inner::default()),
            changed: watch::Sender::new(0),
            closed: AtomicBool::new(false),
        }
    }

    pub fn settings(&self) -> LiveSettings {
        self.settings
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one datagram's sample from `host`. Entries the host may not report for must
    /// have been removed already.
    pub fn record(&self, host: &str, sample: &LiveSample, now_ms: i64) {
        let mut inner = self.lock();
        let mut touched = BTreeSet::new();
        for e in &sample.entries {
            let t = inner.tenants.entry(e.tenant.clone()).or_default();
            t.updated_ms = Some(t.updated_ms.map_or(now_ms, |u| u.max(now_ms)));
            let key = ReadingKey {
                stream: e.stream.clone(),
                protocol: e.protocol,
                host: host.to_string(),
            };
            match t.readings.get(&key) {
                Some(old) if old.at_ms > sample.at_ms => continue,
                _ => {}
            }
            t.readings.insert(
                key,
                Reading {
                    listeners: e.listeners,
                    at_ms: sample.at_ms,
                    received_ms: now_ms,
                },
            );
            touched.insert(e.tenant.clone());
        }
        let mut changed = false;
        for tenant in touched {
            changed |= inner.refresh(&tenant, now_ms, self.settings.stale_after_ms);
        }
        if changed {
            self.changed.send_replace(inner.last_id);
        }
    }

    /// Drops hosts whose samples stopped and history past the retention. Call every second
    /// or so: staleness is noticed no later than one tick after `stale_after`.
    pub fn tick(&self, now_ms: i64) {
        let mut inner = self.lock();
        let tenants: Vec<String> = inner.tenants.keys().cloned().collect();
        let mut changed = false;
        for tenant in &tenants {
            changed |= inner.refresh(tenant, now_ms, self.settings.stale_after_ms);
        }
        let cutoff = now_ms - self.settings.retention_ms;
        let Inner { tenants, feeds, .. } = &mut *inner;
        feeds.events.expire(now_ms);
        tenants.retain(|name, t| {
            for s in t.history.values_mut() {
                s.prune(cutoff);
            }
            t.history.retain(|_, s| !s.is_empty());
            !(t.readings.is_empty() && t.history.is_empty() && t.published.is_empty())
                || feeds.holds(name)
        });
        if changed {
            self.changed.send_replace(inner.last_id);
        }
    }

    /// Wakes with every change of any tenant (and when the store is closed).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Ends every `live/stream` (they check [`LiveStore::is_closed`] when woken): the HTTP
    /// server's graceful shutdown waits for open responses.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.changed.send_modify(|_| {});
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The tenant's version alone (cheaper than [`LiveStore::now`]).
    pub fn version(&self, tenant: &str) -> u64 {
        self.lock().tenants.get(tenant).map_or(0, |t| t.version)
    }

    /// What `/live` reports for `tenant`: the values as of its last change.
    pub fn now(&self, tenant: &str) -> TenantNow {
        self.lock().now_of(tenant)
    }

    /// Every tenant's sums now, per (stream, protocol): for `/metrics`.
    pub fn all_sums(&self) -> Vec<(String, String, Protocol, u64)> {
        let inner = self.lock();
        let mut out = Vec::new();
        for (tenant, t) in &inner.tenants {
            let mut sums: BTreeMap<(&str, Protocol), u64> = BTreeMap::new();
            for (k, v) in &t.published {
                *sums.entry((&k.stream, k.protocol)).or_default() += v;
            }
            for ((stream, protocol), v) in sums {
                out.push((tenant.clone(), stream.to_string(), protocol, v));
            }
        }
        out
    }

    /// The history of `tenant` (one stream if `stream` is given) in buckets of `step_ms`
    /// whose ends run from `first_end_ms` to `last_end_ms`.
    pub fn history(
        &self,
        tenant: &str,
        stream: Option<&str>,
        first_end_ms: i64,
        last_end_ms: i64,
        step_ms: i64,
    ) -> TenantHistory {
        let inner = self.lock();
        let mut streams = Vec::new();
        let mut picked = Vec::new();
        if let Some(t) = inner.tenants.get(tenant) {
            for ((s, p), series) in &t.history {
                if stream.is_some_and(|want| want != s) {
                    continue;
                }
                streams.push((
                    s.clone(),
                    *p,
                    series.buckets(first_end_ms, last_end_ms, step_ms),
                ));
                picked.push(series);
            }
        }
        let total = Series::sum(picked).buckets(first_end_ms, last_end_ms, step_ms);
        TenantHistory { streams, total }
    }

    /// Everything, for a snapshot.
    pub fn state(&self) -> LiveState {
        let inner = self.lock();
        LiveState {
            last_id: inner.last_id,
            tenants: inner
                .tenants
                .iter()
                .map(|(name, t)| TenantState {
                    tenant: name.clone(),
                    version: t.version,
                    updated_ms: t.updated_ms,
                    readings: t.readings.iter().map(|(k, r)| (k.clone(), *r)).collect(),
                    history: t
                        .history
                        .iter()
                        .map(|((s, p), series)| (s.clone(), *p, series.clone()))
                        .collect(),
                })
                .collect(),
        }
    }

    /// Takes a saved state (at start, before the link runs). The readings count as published
    /// at the saved version, so hosts that went stale while the collector was down are a
    /// change at the first tick, and a client that saw that version gets nothing twice.
    pub fn restore(&self, state: LiveState) {
        let mut inner = self.lock();
        inner.last_id = inner.last_id.max(state.last_id);
        for ts in state.tenants {
            let readings: BTreeMap<ReadingKey, Reading> = ts.readings.into_iter().collect();
            let published = readings
                .iter()
                .map(|(k, r)| (k.clone(), r.listeners))
                .collect();
            let t = TenantLive {
                readings,
                published,
                version: ts.version,
                updated_ms: ts.updated_ms,
                history: ts
                    .history
                    .into_iter()
                    .map(|(s, p, series)| ((s, p), series))
                    .collect(),
            };
            inner.last_id = inner.last_id.max(t.version);
            inner.tenants.insert(ts.tenant, t);
        }
        let last = inner.last_id;
        self.changed.send_replace(last);
    }
}

impl Inner {
    /// What `/live` reports for `tenant` (see [`LiveStore::now`]).
    fn now_of(&self, tenant: &str) -> TenantNow {
        let inner = self;
        let Some(t) = inner.tenants.get(tenant) else {
            return TenantNow {
                tenant: tenant.to_string(),
                version: 0,
                listeners: 0,
                updated_ms: None,
                by_stream: Vec::new(),
                by_protocol: Vec::new(),
                hosts: Vec::new(),
                engagement: inner.feeds.engagement.get(tenant).copied(),
                events: inner.feeds.events.stats(tenant),
            };
        };
        let received = |k: &ReadingKey| t.readings.get(k).map_or(0, |r| r.received_ms);
        let mut streams: BTreeMap<(String, Protocol), StreamNow> = BTreeMap::new();
        let mut hosts: BTreeMap<String, HostNow> = BTreeMap::new();
        let mut protocols: BTreeMap<Protocol, u64> = BTreeMap::new();
        for (k, &v) in &t.published {
            let at = received(k);
            let s = streams
                .entry((k.stream.clone(), k.protocol))
                .or_insert_with(|| StreamNow {
                    stream: k.stream.clone(),
                    protocol: k.protocol,
                    listeners: 0,
                    updated_ms: at,
                });
            s.listeners += v;
            s.updated_ms = s.updated_ms.max(at);
            *protocols.entry(k.protocol).or_default() += v;
            let h = hosts.entry(k.host.clone()).or_insert_with(|| HostNow {
                host: k.host.clone(),
                listeners: 0,
                updated_ms: at,
                streams: Vec::new(),
            });
            h.listeners += v;
            h.updated_ms = h.updated_ms.max(at);
            h.streams.push(StreamNow {
                stream: k.stream.clone(),
                protocol: k.protocol,
                listeners: v,
                updated_ms: at,
            });
        }
        let by_rank = |a: &StreamNow, b: &StreamNow| {
            b.listeners
                .cmp(&a.listeners)
                .then_with(|| (&a.stream, a.protocol).cmp(&(&b.stream, b.protocol)))
        };
        let mut by_stream: Vec<StreamNow> = streams.into_values().collect();
        by_stream.sort_by(by_rank);
        let mut hosts: Vec<HostNow> = hosts.into_values().collect();
        for h in &mut hosts {
            h.streams.sort_by(by_rank);
        }
        hosts.sort_by(|a, b| {
            b.listeners
                .cmp(&a.listeners)
                .then_with(|| a.host.cmp(&b.host))
        });
        let mut by_protocol: Vec<(Protocol, u64)> = protocols.into_iter().collect();
        by_protocol.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        TenantNow {
            tenant: tenant.to_string(),
            version: t.version,
            listeners: by_stream.iter().map(|s| s.listeners).sum(),
            updated_ms: t.updated_ms,
            by_stream,
            by_protocol,
            hosts,
            engagement: inner.feeds.engagement.get(tenant).copied(),
            events: inner.feeds.events.stats(tenant),
        }
    }
}

#[cfg(test)]
mod tests {
    use earshot_common::wire::LiveEntry;

    use super::*;

    const T0: i64 = 1_770_000_000_000;

    fn store() -> LiveStore {
        LiveStore::new(LiveSettings {
            retention_ms: 600_000,
            stale_after_ms: 30_000,
        })
    }

    fn sample(at_ms: i64, entries: &[(&str, &str, Protocol, u64)]) -> LiveSample {
        LiveSample {
            at_ms,
            entries: entries
                .iter()
                .map(|&(tenant, stream, protocol, listeners)| LiveEntry {
                    tenant: tenant.into(),
                    stream: stream.into(),
                    protocol,
                    listeners,
                })
                .collect(),
        }
    }

    const IC: Protocol = Protocol::Icecast;
    const HLS: Protocol = Protocol::Hls;

    #[test]
    fn hosts_add_up_and_the_latest_sample_wins() {
        let s = store();
        s.record("a", &sample(T0, &[("r1", "/live.mp3", IC, 3)]), T0);
        s.record(
            "b",
            &sample(T0, &[("r1", "/live.mp3", IC, 2), ("r1", "/hls", HLS, 4)]),
            T0 + 10,
        );
        // An older sample of host a arrives late: ignored.
        s.record(
            "a",
            &sample(T0 - 1000, &[("r1", "/live.mp3", IC, 99)]),
            T0 + 20,
        );
        let now = s.now("r1");
        assert_eq!(now.listeners, 9);
        assert_eq!(
            now.by_stream
                .iter()
                .map(|x| (x.stream.as_str(), x.listeners))
                .collect::<Vec<_>>(),
            [("/live.mp3", 5), ("/hls", 4)]
        );
        assert_eq!(now.by_protocol, [(IC, 5), (HLS, 4)]);
        assert_eq!(
            now.hosts
                .iter()
                .map(|h| (h.host.as_str(), h.listeners))
                .collect::<Vec<_>>(),
            [("b", 6), ("a", 3)]
        );
        assert_eq!(now.updated_ms, Some(T0 + 20));
        assert_eq!(s.now("nobody").version, 0);
    }

    #[test]
    fn versions_change_with_values_only_and_keep_growing() {
        let s = store();
        let mut rx = s.subscribe();
        s.record("a", &sample(T0, &[("r1", "/x", IC, 1)]), T0);
        let v1 = s.version("r1");
        assert!(v1 >= T0 as u64);
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        s.record("a", &sample(T0 + 1000, &[("r1", "/x", IC, 1)]), T0 + 1000);
        assert_eq!(s.version("r1"), v1, "same value: no change");
        assert!(!rx.has_changed().unwrap());
        s.record("a", &sample(T0 + 2000, &[("r1", "/x", IC, 2)]), T0 + 1000);
        let v2 = s.version("r1");
        assert!(v2 > v1);
        // A clock that steps back does not step ids back.
        s.record("a", &sample(T0 + 3000, &[("r1", "/x", IC, 3)]), T0 - 50_000);
        assert!(s.version("r1") > v2);
    }

    #[test]
    fn a_host_that_stops_is_dropped_after_stale_after() {
        let s = store();
        s.record("a", &sample(T0, &[("r1", "/x", IC, 3)]), T0);
        s.record("b", &sample(T0, &[("r1", "/x", IC, 4)]), T0 + 20_000);
        s.tick(T0 + 30_000);
        assert_eq!(s.now("r1").listeners, 7);
        let v = s.version("r1");
        s.tick(T0 + 30_001);
        let now = s.now("r1");
        assert_eq!((now.listeners, now.hosts.len()), (4, 1));
        assert!(now.version > v);
        s.tick(T0 + 50_001);
        assert_eq!(s.now("r1").listeners, 0);
        assert!(s.now("r1").by_stream.is_empty());
        // The history shows the drop.
        let h = s.history("r1", None, T0 + 10_000, T0 + 60_000, 10_000);
        let totals: Vec<_> = h.total.iter().map(|p| p.listeners).collect();
        assert_eq!(
            totals,
            [Some(3), Some(7), Some(7), Some(4), Some(4), Some(0)]
        );
    }

    #[test]
    fn history_is_kept_for_the_retention_only() {
        let s = store();
        s.record("a", &sample(T0, &[("r1", "/x", IC, 3)]), T0);
        for i in 1..=20 {
            let t = T0 + i * 60_000;
            s.record("a", &sample(t, &[("r1", "/x", IC, 3 + (i % 2) as u64)]), t);
            s.tick(t);
        }
        let state = s.state();
        let series = &state.tenants[0].history[0].2;
        let cutoff = T0 + 20 * 60_000 - 600_000;
        assert!(series.points()[0].0 <= cutoff && series.points()[1].0 > cutoff);
        assert!(series.points().len() <= 12, "{}", series.points().len());
        // A tenant nobody reports for any more goes away once its history is all zeros.
        let t_end = T0 + 20 * 60_000;
        s.tick(t_end + 31_000);
        assert_eq!(s.now("r1").listeners, 0);
        s.tick(t_end + 31_000 + 600_001);
        assert!(s.state().tenants.is_empty());
    }

    #[test]
    fn a_restored_state_keeps_versions_and_notices_staleness() {
        let s = store();
        s.record("a", &sample(T0, &[("r1", "/x", IC, 3)]), T0);
        s.record("b", &sample(T0, &[("r1", "/x", IC, 1)]), T0 + 25_000);
        let v = s.version("r1");
        let saved = s.state();
        let again = store();
        again.restore(saved.clone());
        assert_eq!(again.state(), saved);
        assert_eq!(again.now("r1"), s.now("r1"));
        again.tick(T0 + 29_000);
        assert_eq!(again.version("r1"), v, "nothing went stale: same version");
        again.tick(T0 + 31_000);
        assert_eq!(again.now("r1").listeners, 1);
        assert!(again.version("r1") > v);
    }
}
