//! The long-running agent (`run`) and the one-shot shipping ingest (`ingest` without
//! `--dry-run`): the IO around the pure core. One blocking thread reads rotated files and
//! commits to the spool; one task ships the spool, forwards live samples (`[live]`) as
//! datagrams and now and then reports the agent's own health; a unix socket in the state
//! directory lets `earshot-agent notify` (logrotate's `postrotate`) trigger a scan at once.
//!
//! Why live samples share the shipping task: they need the shipper's QUIC connection, and a
//! sample is worth sending only while it is fresh, so samples that queued up behind a slow
//! shipment are all sent at once (the collector keeps the latest) and a full queue drops the
//! newest (counted), never blocks the poller.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::config::AgentConfig;
use crate::follow::{Follower, fingerprint, lock, rotated_siblings};
use crate::ingest::{IngestError, IngestParts, Ingestor};
use crate::live::{Backoff, LivePoller, LiveStats, now_ms, send_sample};
use crate::ship::Shipper;
use crate::spool::{Spool, SpoolCap};
use earshot_common::wire::{AgentHealth, LiveSample};

/// How often the log directories are looked at without a `notify`.
const SCAN_INTERVAL: Duration = Duration::from_secs(10);
const SHIP_INTERVAL: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often the agent reports its own health to the collector (also right after it
/// connects).
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest wait between two reconnect attempts made for live samples: the live count should
/// come back within seconds of a collector restart, whatever the shipping backoff is.
const LIVE_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Live samples waiting for the shipping task; more are dropped (and counted).
const LIVE_QUEUE: usize = 32;

pub fn control_socket(config: &AgentConfig) -> PathBuf {
    config.state_dir.join("control.sock")
}

pub fn open_spool(config: &AgentConfig) -> Result<Arc<Mutex<Spool>>> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    restrict_permissions(&config.state_dir);
    let path = config.state_dir.join("spool.db");
    let mut spool =
        Spool::open(&path).with_context(|| format!("cannot open the spool {}", path.display()))?;
    spool.set_cap(SpoolCap {
        max_bytes: config.spool.max_bytes,
        when_full: config.spool.when_full,
    });
    Ok(Arc::new(Mutex::new(spool)))
}

fn restrict_permissions(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
}

/// The ingestor `config` makes: `[classify]`'s files opened and handed over.
pub fn ingestor(config: &AgentConfig, secret: Vec<u8>) -> Result<Ingestor, IngestError> {
    let classify = config.classify.open().map_err(|e| IngestError::Classify {
        key: e.key,
        message: e.message,
    })?;
    Ingestor::new(IngestParts {
        inputs: &config.inputs,
        sessions: &config.sessions,
        routing: &config.routing,
        limits: &config.limits,
        classify,
        secret,
    })
}

fn restored_ingestor(config: &AgentConfig, spool: &Mutex<Spool>) -> Result<Ingestor> {
    let secret = config.read_secret()?;
    let mut ingestor = ingestor(config, secret)?;
    if let Some(state) = lock(spool).state()? {
        ingestor.restore_state(&state)?;
    }
    Ok(ingestor)
}

/// `earshot-agent ingest --config FILE FILE…`: reads the files (skipping any already read),
/// closes open sessions, and ships until the collector has acknowledged everything.
pub async fn ingest_and_ship(
    config: AgentConfig,
    files: Vec<PathBuf>,
    timeout: Duration,
) -> Result<()> {
    let link = config
        .collector
        .clone()
        .context("the config has no [collector] to ship to (or use --dry-run)")?;
    let spool = open_spool(&config)?;
    let mut shipper = Shipper::new(&link)?;
    let spool2 = spool.clone();
    let cfg = config.clone();
    let read = tokio::task::spawn_blocking(move || -> Result<u64> {
        let mut ingestor = restored_ingestor(&cfg, &spool2)?;
        let mut follower = Follower::new(&spool2, cfg.inputs.max_line_bytes)?;
        let never = AtomicBool::new(false);
        let mut lines = 0;
        for file in &files {
            let key = fingerprint(file)
                .with_context(|| format!("cannot read {}", file.display()))?
                .map(|k| follower.known_key(file, k))
                .unwrap_or_default();
            if key.is_empty() || !follower.has_unread(&key, file) {
                tracing::info!(file = %file.display(), "already ingested (or empty); skipped");
                continue;
            }
            lines += follower
                .ingest_file(&mut ingestor, &spool2, file, &key, &never)?
                .lines;
        }
        ingestor.close_all();
        let (rollups, counters) = ingestor.take();
        lock(&spool2).commit(rollups, counters, &[], &ingestor.save_state())?;
        Ok(lines)
    });
    let lines = read.await.context("reader thread")??;
    tracing::info!(lines, "files read; shipping");
    let deadline = Instant::now() + timeout;
    let mut backoff = Duration::from_millis(200);
    loop {
        match shipper.ship_pending(&spool).await {
            Ok(n) if n > 0 => tracing::info!(batches = n, "acknowledged"),
            Ok(_) => {}
            Err(e) => tracing::warn!("shipping failed: {e}"),
        }
        let left = lock(&spool).pending_count()?;
        if left == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            anyhow::bail!(
                "{left} batches are still spooled after {}s; the next `run` or `ingest` ships them",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// `earshot-agent run`: follows the configured files until SIGTERM or SIGINT.
pub async fn run(config: AgentConfig) -> Result<()> {
    let link = config
        .collector
        .clone()
        .context("the config has no [collector] table")?;
    if config.inputs.files.is_empty() && config.live.is_none() {
        tracing::warn!("inputs.files is empty and there is no [live]: nothing to do");
    }
    let spool = open_spool(&config)?;
    let mut shipper = Shipper::new(&link)?;
    let stop = Arc::new(AtomicBool::new(false));
    let ship_now = Arc::new(Notify::new());
    let (scan_tx, scan_rx) = mpsc::channel::<()>();

    let socket_path = control_socket(&config);
    let _ = std::fs::remove_file(&socket_path);
    let listener = tokio::net::UnixListener::bind(&socket_path)
        .with_context(|| format!("cannot listen on {}", socket_path.display()))?;
    earshot_common::sdnotify::ready_watching_reload(None)?;
    let control_tx = scan_tx.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                (&mut conn).take(4096).read_to_end(&mut buf),
            )
            .await;
            tracing::info!(path = %String::from_utf8_lossy(&buf).trim(), "rotation notified");
            let _ = control_tx.send(());
            let _ = conn.write_all(b"ok\n").await;
        }
    });

    let sessions_open = Arc::new(AtomicU64::new(0));
    let scanner = {
        let (spool, stop, ship_now, config, sessions_open) = (
            spool.clone(),
            stop.clone(),
            ship_now.clone(),
            config.clone(),
            sessions_open.clone(),
        );
        tokio::task::spawn_blocking(move || {
            scan_loop(&config, &spool, &stop, &ship_now, scan_rx, &sessions_open)
        })
    };

    let (live_tx, mut live_rx) = tokio::sync::mpsc::channel::<LiveSample>(LIVE_QUEUE);
    let live_stats = match &config.live {
        Some(live) => {
            let poller = LivePoller::new(live).context("[live]")?;
            let stats = poller.stats();
            tracing::info!(
                interval_secs = live.interval_secs,
                "polling live listener counts"
            );
            tokio::spawn(poller.run(live_tx));
            Some(stats)
        }
        None => {
            drop(live_tx);
            None
        }
    };
    let mut live_on = live_stats.is_some();
    let mut live_link = LiveLink::new();

    let mut health = HealthReport {
        started_ms: now_ms(),
        sessions_open,
        live: live_stats,
        send_failures: 0,
        next: Instant::now(),
    };
    let mut backoff = Duration::from_secs(1);
    let mut failing = false;
    // Connect and ship at once: live samples need the connection.
    let mut next_ship = tokio::time::Instant::now();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = ship_now.notified() => {}
            _ = tokio::time::sleep_until(next_ship) => {}
            sample = live_rx.recv(), if live_on => {
                match sample {
                    Some(sample) => {
                        if live_link.forward(&mut shipper, sample, &mut live_rx).await {
                            // Reconnected for live: ship what waited, whatever the backoff.
                            next_ship = tokio::time::Instant::now();
                            backoff = Duration::from_secs(1);
                        }
                    }
                    None => live_on = false,
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
        }
        match shipper.ship_pending(&spool).await {
            Ok(n) => {
                if failing {
                    tracing::info!("collector reachable again");
                }
                failing = false;
                backoff = Duration::from_secs(1);
                if n > 0 {
                    tracing::debug!(batches = n, "acknowledged");
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        "cannot ship to the collector: {e}; batches stay spooled, retrying"
                    );
                }
                health.send_failures += 1;
                failing = true;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        next_ship = tokio::time::Instant::now() + if failing { backoff } else { SHIP_INTERVAL };
        if shipper.is_connected() && Instant::now() >= health.next {
            health.send(&mut shipper, &spool).await;
        }
    }
    earshot_common::sdnotify::stopping();
    tracing::info!("stopping: finishing the file in progress");
    stop.store(true, Ordering::Relaxed);
    let _ = scan_tx.send(());
    scanner.await.context("scanner thread")??;
    let _ = tokio::time::timeout(Duration::from_secs(5), shipper.ship_pending(&spool)).await;
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("stopped");
    Ok(())
}

fn scan_loop(
    config: &AgentConfig,
    spool: &Mutex<Spool>,
    stop: &AtomicBool,
    ship_now: &Notify,
    requests: mpsc::Receiver<()>,
    sessions_open: &AtomicU64,
) -> Result<()> {
    let mut ingestor = restored_ingestor(config, spool)?;
    sessions_open.store(ingestor.open_sessions() as u64, Ordering::Relaxed);
    let mut follower = Follower::new(spool, config.inputs.max_line_bytes)?;
    let mut reported: std::collections::HashSet<String> = Default::default();
    while !stop.load(Ordering::Relaxed) {
        for live in &config.inputs.files {
            let siblings = match rotated_siblings(live) {
                Ok(s) => s,
                Err(e) => {
                    if reported.insert(live.display().to_string()) {
                        tracing::warn!(file = %live.display(), "cannot list rotated files: {e}");
                    }
                    continue;
                }
            };
            for path in siblings {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = match fingerprint(&path) {
                    Ok(Some(k)) => follower.known_key(&path, k),
                    Ok(None) => continue,
                    Err(e) => {
                        if reported.insert(path.display().to_string()) {
                            tracing::warn!(file = %path.display(), "cannot read: {e}");
                        }
                        continue;
                    }
                };
                if !follower.has_unread(&key, &path) {
                    continue;
                }
                let t0 = Instant::now();
                match follower.ingest_file(&mut ingestor, spool, &path, &key, stop) {
                    Ok(o) => {
                        tracing::info!(file = %path.display(), lines = o.lines, ms = t0.elapsed().as_millis() as u64, "ingested");
                        ship_now.notify_one();
                    }
                    Err(e) => tracing::warn!(file = %path.display(), "ingest failed: {e}"),
                }
                sessions_open.store(ingestor.open_sessions() as u64, Ordering::Relaxed);
            }
        }
        match requests.recv_timeout(SCAN_INTERVAL) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(())
}

/// Sends live samples over the shipper's connection, reconnecting on its own short backoff
/// when the connection is down.
struct LiveLink {
    backoff: Backoff,
    next_try: Instant,
    down: bool,
}

impl LiveLink {
    fn new() -> LiveLink {
        LiveLink {
            backoff: Backoff::new(LIVE_RECONNECT_MAX),
            next_try: Instant::now(),
            down: false,
        }
    }

    /// Sends `first` and every sample queued behind it. Returns true when it had to (and
    /// could) reconnect.
    async fn forward(
        &mut self,
        shipper: &mut Shipper,
        first: LiveSample,
        queue: &mut tokio::sync::mpsc::Receiver<LiveSample>,
    ) -> bool {
        let mut reconnected = false;
        if !shipper.is_connected() && Instant::now() >= self.next_try {
            match shipper.connect().await {
                Ok(()) => {
                    self.backoff.reset();
                    reconnected = true;
                    if self.down {
                        tracing::info!("live samples flow again");
                    }
                    self.down = false;
                }
                Err(e) => {
                    if !self.down {
                        tracing::warn!("cannot send live samples: {e}; retrying");
                    }
                    self.down = true;
                    self.next_try = Instant::now() + self.backoff.next_delay();
                }
            }
        }
        let mut samples = vec![first];
        while let Ok(more) = queue.try_recv() {
            samples.push(more);
        }
        // Without a connection these are counted as dropped by the shipper.
        for sample in &samples {
            if let Err(e) = send_sample(shipper, sample) {
                tracing::debug!("live sample not sent: {e}");
            }
        }
        reconnected
    }
}

/// The agent's own counters, sent to the collector every [`HEALTH_INTERVAL`].
struct HealthReport {
    started_ms: i64,
    sessions_open: Arc<AtomicU64>,
    live: Option<Arc<LiveStats>>,
    send_failures: u64,
    next: Instant,
}

impl HealthReport {
    async fn send(&mut self, shipper: &mut Shipper, spool: &Arc<Mutex<Spool>>) {
        self.next = Instant::now() + HEALTH_INTERVAL;
        let spool = spool.clone();
        let sizes = tokio::task::spawn_blocking(move || {
            let spool = lock(&spool);
            Ok::<_, crate::spool::SpoolError>((
                spool.pending_count()?,
                spool.pending_bytes()?,
                spool.dropped_batches()?,
            ))
        })
        .await;
        let (spool_batches, spool_bytes, spool_dropped_batches) = match sizes {
            Ok(Ok(sizes)) => sizes,
            Ok(Err(e)) => {
                tracing::warn!("cannot measure the spool: {e}");
                (0, 0, 0)
            }
            Err(_) => (0, 0, 0),
        };
        let ship = shipper.stats();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let health = AgentHealth {
            at_ms: now_ms(),
            started_ms: self.started_ms,
            sessions_open: load(&self.sessions_open),
            spool_batches,
            spool_bytes,
            send_failures: self.send_failures,
            live_sent: load(&ship.live_sent),
            live_dropped: load(&ship.live_dropped)
                + self.live.as_ref().map_or(0, |l| load(&l.samples_dropped)),
            live_polls_failed: self.live.as_ref().map_or(0, |l| load(&l.polls_failed)),
            spool_dropped_batches,
        };
        if let Err(e) = shipper.send_health(&health).await {
            tracing::debug!("health report not sent: {e}");
        }
    }
}

/// `earshot-agent notify`: tells a running agent to look for rotated files now.
pub fn notify(config: &AgentConfig, path: &Path) -> Result<()> {
    use std::io::{Read, Write};
    let socket = control_socket(config);
    let mut conn = std::os::unix::net::UnixStream::connect(&socket).with_context(|| {
        format!(
            "no running agent listens on {} (is earshot-agent running with this config?)",
            socket.display()
        )
    })?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(path.display().to_string().as_bytes())?;
    conn.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    anyhow::ensure!(
        reply.trim() == "ok",
        "unexpected reply from the agent: {reply:?}"
    );
    Ok(())
}
