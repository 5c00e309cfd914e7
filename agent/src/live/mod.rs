//! Live listener counts: HAProxy stick tables (runtime API) and Icecast's stats, polled every
//! `interval_secs` and handed on as [`LiveSample`]s, which the agent sends to the collector as
//! QUIC datagrams (latest wins; a lost one costs nothing).
//!
//! Why a source that is down is logged once: the agent polls every few seconds, and an
//! HAProxy restart or a missing table would otherwise fill the journal. Each outage is logged
//! when it starts and when it ends, and counted in [`LiveStats`] every time. Retries back off
//! from 250 ms, doubling, up to the interval, so a restart is noticed within a second or two.
//!
//! What must stay true: a source that cannot be read contributes nothing (not zeros: unknown
//! is not "nobody"); a stream that disappears from a source that can be read is reported as
//! 0 for a few polls ([`ZeroCarry`]), so the collector sees it drop rather than freeze.

pub mod config;
pub mod icecast;
pub mod stick_table;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use earshot_common::Protocol;
use earshot_common::wire::{LiveEntry, LiveSample};
use tokio::sync::mpsc;

pub use config::{
    CountMode, HaproxyLiveConfig, IcecastConfig, LiveConfig, LiveConfigError, MountConfig,
    ProtocolName, SocketAddress, TableConfig,
};
pub use icecast::{IcecastApi, IcecastReader, MountListeners};
pub use stick_table::{StickTableReader, TableDump};

use crate::ship::{ShipError, Shipper};

/// The first retry after a failed poll; doubled after each failure, up to the interval.
pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
/// How many polls a stream that vanished from a readable source is still reported as 0.
pub const ZERO_CARRY_POLLS: u32 = 3;
/// Bytes of encoded [`LiveSample`] per datagram: under QUIC's smallest datagram payload
/// (a 1200-byte packet less headers), so no sample depends on path MTU discovery.
pub const DATAGRAM_BUDGET: usize = 1000;

/// Why a source could not be read this time.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("HAProxy runtime API at {address}: {source}")]
    Haproxy {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "HAProxy runtime API at {address}: the answer was cut short ({got} of {expected} outputs)"
    )]
    Truncated {
        address: String,
        got: usize,
        expected: usize,
    },
    #[error("Icecast {url}: {reason}")]
    Icecast { url: String, reason: String },
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: String, after: Duration },
}

/// Counters an operator can read (every event that is logged is also counted here).
#[derive(Debug, Default)]
pub struct LiveStats {
    /// Polls of a whole source that worked.
    pub polls_ok: AtomicU64,
    /// Polls of a whole source that failed (down, restarting, refused, timed out).
    pub polls_failed: AtomicU64,
    /// Tables that could not be read in a poll that otherwise worked (missing, not
    /// permitted, an error answer).
    pub table_failures: AtomicU64,
    /// Stick table keys or Icecast mounts that mapped to no tenant.
    pub keys_unmatched: AtomicU64,
    /// `show table` lines, or Icecast answers, that could not be parsed.
    pub malformed_lines: AtomicU64,
    /// Samples handed on.
    pub samples: AtomicU64,
    /// Samples dropped because the consumer was behind (latest wins: an old one is worthless).
    pub samples_dropped: AtomicU64,
}

/// Logs a thing's failure when it starts failing and once when it recovers, not every poll.
#[derive(Debug)]
pub struct OutageLog {
    what: String,
    down_since: Option<Instant>,
    failures: u64,
}

impl OutageLog {
    pub fn new(what: impl Into<String>) -> OutageLog {
        OutageLog {
            what: what.into(),
            down_since: None,
            failures: 0,
        }
    }

    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    /// Returns true when this failure started an outage (and was logged).
    pub fn failed(&mut self, error: &dyn std::fmt::Display) -> bool {
        self.failures += 1;
        if self.down_since.is_some() {
            tracing::debug!(what = %self.what, "still failing: {error}");
            return false;
        }
        self.down_since = Some(Instant::now());
        tracing::warn!(
            "{}: {error}; retrying (logged again only when it recovers)",
            self.what
        );
        true
    }

    /// Returns true when this success ended an outage (and was logged).
    pub fn ok(&mut self) -> bool {
        let Some(since) = self.down_since.take() else {
            return false;
        };
        tracing::info!(
            "{}: recovered after {} failed attempts over {:.1} s",
            self.what,
            self.failures,
            since.elapsed().as_secs_f64()
        );
        self.failures = 0;
        true
    }
}

/// Exponential backoff from [`MIN_BACKOFF`] up to a cap.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            next: MIN_BACKOFF.min(max),
            max,
        }
    }
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }
    pub fn reset(&mut self) {
        self.next = MIN_BACKOFF.min(self.max);
    }
}

/// Reports a stream that vanished from a readable source as 0 for [`ZERO_CARRY_POLLS`] polls.
#[derive(Debug, Default)]
pub struct ZeroCarry {
    recent: HashMap<(String, String, Protocol), u32>,
}

impl ZeroCarry {
    pub fn fill(&mut self, mut sample: LiveSample) -> LiveSample {
        let mut present = std::collections::HashSet::with_capacity(sample.entries.len());
        for e in &sample.entries {
            present.insert((e.tenant.clone(), e.stream.clone(), e.protocol));
        }
        let mut zeros = Vec::new();
        self.recent.retain(|key, left| {
            if present.contains(key) {
                return true;
            }
            zeros.push(LiveEntry {
                tenant: key.0.clone(),
                stream: key.1.clone(),
                protocol: key.2,
                listeners: 0,
            });
            *left -= 1;
            *left > 0
        });
        for key in present {
            self.recent.insert(key, ZERO_CARRY_POLLS);
        }
        sample.entries.extend(zeros);
        sample
    }
}

/// Splits a sample into samples whose encoding fits `budget` bytes each (same `at_ms`). The
/// collector must therefore apply "latest wins" per (tenant, stream, protocol) entry, not per
/// sample. An entry that alone is over the budget is left out (and returned as the count).
pub fn split_for_datagrams(sample: &LiveSample, budget: usize) -> (Vec<LiveSample>, usize) {
    // at_ms (varint i64, ≤ 10 bytes) + entry count (varint, ≤ 5 bytes).
    const HEADER: usize = 15;
    let mut parts = Vec::new();
    let mut current = LiveSample {
        at_ms: sample.at_ms,
        entries: Vec::new(),
    };
    let mut size = HEADER;
    let mut too_big = 0;
    for e in &sample.entries {
        let n = postcard::experimental::serialized_size(e).unwrap_or(usize::MAX);
        if n.saturating_add(HEADER) > budget {
            too_big += 1;
            continue;
        }
        if size + n > budget {
            parts.push(std::mem::replace(
                &mut current,
                LiveSample {
                    at_ms: sample.at_ms,
                    entries: Vec::new(),
                },
            ));
            size = HEADER;
        }
        size += n;
        current.entries.push(e.clone());
    }
    if !current.entries.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    (parts, too_big)
}

/// Sends a sample through the shipper as one or more datagrams; returns how many datagrams
/// went out. Drops are counted by the shipper (`ShipStats::live_dropped`).
pub fn send_sample(shipper: &Shipper, sample: &LiveSample) -> Result<usize, ShipError> {
    let (parts, too_big) = split_for_datagrams(sample, DATAGRAM_BUDGET);
    if too_big > 0 {
        tracing::debug!(
            entries = too_big,
            "live entries too large for a datagram; dropped"
        );
    }
    let mut sent = 0;
    let mut last_err = None;
    for part in &parts {
        match shipper.send_live(part) {
            Ok(()) => sent += 1,
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(e) if sent == 0 => Err(e),
        _ => Ok(sent),
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// One thing that is polled.
#[derive(Debug)]
pub enum LiveSource {
    StickTables(StickTableReader),
    Icecast(IcecastReader),
}

impl LiveSource {
    pub fn name(&self) -> String {
        match self {
            LiveSource::StickTables(r) => format!("HAProxy runtime API at {}", r.address()),
            LiveSource::Icecast(r) => format!("Icecast {}", r.endpoint()),
        }
    }

    pub async fn poll_once(&mut self) -> Result<LiveSample, LiveError> {
        match self {
            LiveSource::StickTables(r) => r.poll_once().await,
            LiveSource::Icecast(r) => r.poll_once().await,
        }
    }
}

/// Runs every configured source on its own schedule and hands each poll's sample to a
/// channel.
#[derive(Debug)]
pub struct LivePoller {
    interval: Duration,
    sources: Vec<LiveSource>,
    stats: Arc<LiveStats>,
}

impl LivePoller {
    /// Validates the config and builds the readers (reads Icecast password files).
    pub fn new(config: &LiveConfig) -> Result<LivePoller, LiveConfigError> {
        config.validate()?;
        let interval = Duration::from_secs(config.interval_secs);
        let stats = Arc::new(LiveStats::default());
        let mut sources = Vec::new();
        if let Some(h) = &config.haproxy {
            sources.push(LiveSource::StickTables(StickTableReader::new(
                h,
                interval,
                stats.clone(),
            )?));
        }
        for (i, ice) in config.icecast.iter().enumerate() {
            sources.push(LiveSource::Icecast(IcecastReader::new(
                ice,
                i,
                interval,
                stats.clone(),
            )?));
        }
        Ok(LivePoller {
            interval,
            sources,
            stats,
        })
    }

    /// A poller over readers built by hand (tests, benches).
    pub fn with_sources(
        interval: Duration,
        sources: Vec<LiveSource>,
        stats: Arc<LiveStats>,
    ) -> LivePoller {
        LivePoller {
            interval,
            sources,
            stats,
        }
    }

    pub fn stats(&self) -> Arc<LiveStats> {
        self.stats.clone()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Polls until the receiver is dropped. Each source runs in its own task, so a slow
    /// Icecast never delays HAProxy's numbers. A full channel drops the new sample (counted).
    pub async fn run(self, samples: mpsc::Sender<LiveSample>) {
        let mut tasks = tokio::task::JoinSet::new();
        for source in self.sources {
            tasks.spawn(run_source(
                source,
                self.interval,
                samples.clone(),
                self.stats.clone(),
            ));
        }
        drop(samples);
        while tasks.join_next().await.is_some() {}
    }
}

async fn run_source(
    mut source: LiveSource,
    interval: Duration,
    samples: mpsc::Sender<LiveSample>,
    stats: Arc<LiveStats>,
) {
    let mut outage = OutageLog::new(source.name());
    let mut backoff = Backoff::new(interval);
    let mut carry = ZeroCarry::default();
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = samples.closed() => return,
        }
        match source.poll_once().await {
            Ok(sample) => {
                outage.ok();
                backoff.reset();
                stats.polls_ok.fetch_add(1, Ordering::Relaxed);
                match samples.try_send(carry.fill(sample)) {
                    Ok(()) => {
                        stats.samples.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        stats.samples_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
                let now = tokio::time::Instant::now();
                next += interval;
                if next <= now {
                    next = now + interval;
                }
            }
            Err(e) => {
                outage.failed(&e);
                stats.polls_failed.fetch_add(1, Ordering::Relaxed);
                next = tokio::time::Instant::now() + backoff.next_delay();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(tenant: &str, stream: &str, listeners: u64) -> LiveEntry {
        LiveEntry {
            tenant: tenant.into(),
            stream: stream.into(),
            protocol: Protocol::Icecast,
            listeners,
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_interval() {
        let mut b = Backoff::new(Duration::from_secs(5));
        let got: Vec<u128> = (0..7).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), MIN_BACKOFF);
    }

    #[test]
    fn an_outage_is_logged_once_and_its_end_once() {
        let mut o = OutageLog::new("x");
        assert!(!o.ok());
        assert!(o.failed(&"down"));
        assert!(!o.failed(&"down"));
        assert!(o.is_down());
        assert!(o.ok());
        assert!(!o.ok());
    }

    #[test]
    fn vanished_streams_are_zero_for_a_few_polls() {
        let mut c = ZeroCarry::default();
        let s = |entries| LiveSample { at_ms: 1, entries };
        assert_eq!(
            c.fill(s(vec![entry("a", "/x", 2)])).entries,
            vec![entry("a", "/x", 2)]
        );
        for _ in 0..ZERO_CARRY_POLLS {
            assert_eq!(c.fill(s(vec![])).entries, vec![entry("a", "/x", 0)]);
        }
        assert_eq!(c.fill(s(vec![])).entries, vec![]);
    }

    #[test]
    fn samples_split_under_the_datagram_budget() {
        let sample = LiveSample {
            at_ms: now_ms(),
            entries: (0..1000)
                .map(|i| entry("tenant-name", &format!("/stream/number-{i}.mp3"), i))
                .collect(),
        };
        let (parts, too_big) = split_for_datagrams(&sample, DATAGRAM_BUDGET);
        assert_eq!(too_big, 0);
        assert!(parts.len() > 1);
        let mut total = 0;
        for p in &parts {
            assert_eq!(p.at_ms, sample.at_ms);
            assert!(postcard::to_stdvec(p).unwrap().len() <= DATAGRAM_BUDGET);
            total += p.entries.len();
        }
        assert_eq!(total, 1000);
        let huge = LiveSample {
            at_ms: 1,
            entries: vec![entry("t", &"x".repeat(2000), 1)],
        };
        let (parts, too_big) = split_for_datagrams(&huge, DATAGRAM_BUDGET);
        assert_eq!((parts.len(), parts[0].entries.len(), too_big), (1, 0, 1));
        let (parts, _) = split_for_datagrams(
            &LiveSample {
                at_ms: 1,
                entries: vec![],
            },
            DATAGRAM_BUDGET,
        );
        assert_eq!(parts.len(), 1);
    }

    #[tokio::test]
    async fn a_source_that_is_down_is_retried_with_backoff_and_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let config: LiveConfig = toml::from_str(&format!(
            "interval_secs = 5\n[haproxy]\nsocket = \"{}\"\ntables = [{{ table = \"t\", count = \"conn_cur\" }}]",
            dir.path().join("missing.sock").display()
        ))
        .unwrap();
        let poller = LivePoller::new(&config).unwrap();
        let stats = poller.stats();
        let (tx, mut rx) = mpsc::channel(4);
        let run = tokio::spawn(poller.run(tx));
        tokio::time::sleep(Duration::from_millis(1900)).await;
        // Attempts at 0, 0.25, 0.75, 1.75 s: backoff, not one per interval nor a busy loop.
        assert_eq!(stats.polls_failed.load(Ordering::Relaxed), 4);
        assert!(rx.try_recv().is_err());
        drop(rx);
        tokio::time::timeout(Duration::from_secs(6), run)
            .await
            .unwrap()
            .unwrap();
    }
}
