//! `earshot-collector run`: the IO around the library. One QUIC endpoint for the agents,
//! the HTTP API, a loop that ages the live state and saves it to `live.db`, an hourly prune
//! of old rollups and, with the `apps` feature, the app-store and Matomo pollers.
//!
//! Why the stop goes in this order ([`Collector::stop`]):
//! 1. the live store is closed, which ends every `live/stream` response: they never end by
//!    themselves, and the HTTP server's graceful shutdown waits for open responses;
//! 2. every task is told to stop (the endpoint takes no new connection or batch);
//! 3. the QUIC endpoint finishes the merges in flight and sends their acks (an agent resends
//!    what was not acknowledged, and the store merges a batch at most once);
//! 4. the HTTP server, the prune and the pollers are awaited;
//! 5. the last live snapshot is taken, after the link stopped taking samples, so `live.db`
//!    holds the last counts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::Services;
use crate::config::CollectorConfig;
use crate::link::LinkServer;
use crate::live::{LiveDb, LiveStore};
use crate::store::Store;
use crate::tls;

/// How often rollups past `retention_days` are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// One step of [`Collector::stop`], in the order they run (each is logged as it is done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopStep {
    /// `live/stream` responses ended.
    LiveClosed,
    /// Every task told to stop.
    Cancelled,
    /// The QUIC endpoint's merges in flight finished and acknowledged; the endpoint closed.
    QuicDrained,
    /// The HTTP server, the prune loop and the pollers stopped.
    TasksStopped,
    /// The live state saved to `live.db` (absent when `live.db` could not be opened).
    LiveSaved,
}

/// `earshot-collector run --config PATH`: until SIGTERM or SIGINT (`Ok`), or until the QUIC
/// endpoint or the HTTP server stops on its own (an error, after the same orderly stop).
pub async fn run(config_path: &Path) -> Result<()> {
    let config = CollectorConfig::load(config_path)?;
    warn_if_loose(config_path, "the config (it holds token hashes)");
    let mut collector = Collector::start(&config).await?;
    let reread = config_path.to_path_buf();
    earshot_common::sdnotify::ready_watching_reload(Some(Box::new(move || {
        CollectorConfig::load(&reread)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })))?;
    tracing::info!(
        quic = %collector.quic_addr,
        http = %collector.http_addr,
        fingerprint = %collector.fingerprint,
        agents = config.agents.len(),
        store = %config.database_path().display(),
        "collector ready"
    );
    let stopped_early = tokio::select! {
        signal = stop_signal() => {
            earshot_common::sdnotify::stopping();
            tracing::info!("{}: stopping (finishing merges in flight)", signal?);
            None
        }
        why = collector.failed() => Some(why),
    };
    collector.stop().await;
    match stopped_early {
        Some(why) => anyhow::bail!(why),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// A started collector: every listener bound, every task running.
pub struct Collector {
    pub quic_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// `sha256:…` of the QUIC certificate, as agents pin it.
    pub fingerprint: String,
    live: Arc<LiveStore>,
    shutdown: CancellationToken,
    quic_task: JoinHandle<()>,
    http_task: JoinHandle<std::io::Result<()>>,
    live_task: JoinHandle<SharedLiveDb>,
    prune_task: JoinHandle<()>,
    poller_tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("quic_addr", &self.quic_addr)
            .field("http_addr", &self.http_addr)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// Opens the store, restores the live state, binds the QUIC endpoint and the HTTP API and
    /// starts the loops. Any error here comes before anything was served.
    pub async fn start(config: &CollectorConfig) -> Result<Collector> {
        std::fs::create_dir_all(&config.state_dir)
            .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
        let db = config.database_path();
        let store = Store::open_with_limits(&db, config.limits.store_limits())
            .with_context(|| format!("cannot open the store {}", db.display()))?;

        let certs = tls::load_certs(&config.quic.cert_file).context("quic.cert_file")?;
        let fingerprint = tls::fingerprint(&certs[0]);
        let key = tls::load_key(&config.quic.key_file).context("quic.key_file")?;
        warn_if_loose(&config.quic.key_file, "quic.key_file");
        let crypto = tls::server_crypto(certs, key)?;
        let live = Arc::new(LiveStore::new(config.live.settings()));
        let live_db = open_live_db(&config.live_db_path(), &live);
        let link = LinkServer::bind(
            config.quic.listen,
            crypto,
            &config.agents,
            store.clone(),
            live.clone(),
        )?;
        let quic_addr = link.local_addr();

        let http = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .with_context(|| format!("cannot listen on {} (http.listen)", config.http.listen))?;
        let http_addr = http.local_addr()?;
        live.set_event_limits(config.events.limits());
        let apps = Apps::open(config)?;
        let services = Services {
            live: live.clone(),
            heartbeat: Duration::from_secs(config.live.heartbeat_secs),
            link: link.stats(),
            agents: link.agent_board(),
            requests: Default::default(),
            apps: apps.db(),
            engagement: apps.engagement(),
            ingest_tokens: Arc::new(crate::api::ApiConfig::ingest_tokens(config)),
        };
        let app = crate::api::router_with(
            store.clone(),
            Arc::new(crate::api::ApiConfig::from_config(config)),
            services,
        );

        let shutdown = CancellationToken::new();
        let quic_task = tokio::spawn(link.serve(shutdown.clone()));
        let http_task = tokio::spawn(
            axum::serve(http, app)
                .with_graceful_shutdown(shutdown.clone().cancelled_owned())
                .into_future(),
        );
        let live_task = tokio::spawn(live_loop(
            live.clone(),
            live_db,
            Duration::from_secs(config.live.snapshot_interval_secs),
            shutdown.clone(),
        ));
        let prune_task = tokio::spawn(prune_loop(store, config.retention_days, shutdown.clone()));
        let poller_tasks = apps.spawn(&live, &shutdown);
        Ok(Collector {
            quic_addr,
            http_addr,
            fingerprint,
            live,
            shutdown,
            quic_task,
            http_task,
            live_task,
            prune_task,
            poller_tasks,
        })
    }

    /// The live store the link records into.
    pub fn live(&self) -> &Arc<LiveStore> {
        &self.live
    }

    /// Returns (why) when the QUIC endpoint or the HTTP server stops on its own; pending
    /// otherwise.
    pub async fn failed(&mut self) -> String {
        tokio::select! {
            r = &mut self.quic_task => format!("the QUIC endpoint stopped: {r:?}"),
            r = &mut self.http_task => format!("the HTTP server stopped: {r:?}"),
        }
    }

    /// Stops everything in the order of the module docs; returns the steps done, in order.
    pub async fn stop(self) -> Vec<StopStep> {
        let mut steps = Vec::new();
        let mut done = |step: StopStep| {
            tracing::info!(?step, "stop");
            steps.push(step);
        };
        self.live.close();
        done(StopStep::LiveClosed);
        self.shutdown.cancel();
        done(StopStep::Cancelled);
        // A task that already ended was awaited by `failed`; a JoinHandle is not awaited twice.
        if !self.quic_task.is_finished() {
            let _ = self.quic_task.await;
        }
        done(StopStep::QuicDrained);
        if !self.http_task.is_finished() {
            let _ = self.http_task.await;
        }
        let _ = self.prune_task.await;
        for task in self.poller_tasks {
            let _ = task.await;
        }
        done(StopStep::TasksStopped);
        if let Ok(db) = self.live_task.await
            && save_live(&self.live, db).await
        {
            done(StopStep::LiveSaved);
        }
        steps
    }
}

/// The apps database and its pollers, with the `apps` feature.
#[cfg(feature = "apps")]
struct Apps {
    db: Arc<crate::apps::AppsDb>,
    pollers: crate::apps::poll::Pollers,
}

#[cfg(feature = "apps")]
impl Apps {
    fn open(config: &CollectorConfig) -> Result<Apps> {
        let path = config.apps_db_path();
        let db = Arc::new(
            crate::apps::AppsDb::open(&path)
                .with_context(|| format!("cannot open the apps database {}", path.display()))?,
        );
        let pollers = crate::apps::poll::Pollers::open(&config.sources, &db)?;
        Ok(Apps { db, pollers })
    }

    fn db(&self) -> Option<Arc<crate::apps::AppsDb>> {
        Some(self.db.clone())
    }

    fn engagement(&self) -> Option<Arc<crate::apps::EngagementSource>> {
        self.pollers.engagement.clone()
    }

    fn spawn(self, live: &Arc<LiveStore>, shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        self.pollers.spawn(&self.db, live, shutdown)
    }
}

/// Without the `apps` feature: no apps database, no pollers (the config cannot name any).
#[cfg(not(feature = "apps"))]
struct Apps;

#[cfg(not(feature = "apps"))]
impl Apps {
    fn open(_: &CollectorConfig) -> Result<Apps> {
        Ok(Apps)
    }

    fn db(&self) -> Option<Arc<crate::apps::AppsDb>> {
        None
    }

    fn engagement(&self) -> Option<Arc<crate::apps::EngagementSource>> {
        None
    }

    fn spawn(self, _: &Arc<LiveStore>, _: &CancellationToken) -> Vec<JoinHandle<()>> {
        Vec::new()
    }
}

async fn stop_signal() -> Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Opens `live.db` and restores the saved live state into `live`. A snapshot that cannot be
/// used is logged and the live state starts empty (the agents refill it within one poll).
fn open_live_db(path: &Path, live: &LiveStore) -> Option<LiveDb> {
    let db = match LiveDb::open(path) {
        Ok(db) => db,
        Err(e) => {
            tracing::warn!("live state not restored and not saved: {e}");
            return None;
        }
    };
    match db.load() {
        Ok(Some(state)) => {
            let tenants = state.tenants.len();
            live.restore(state);
            live.tick(crate::time::now_ms());
            tracing::info!(tenants, path = %path.display(), "live state restored");
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("live state not restored (starting empty): {e}"),
    }
    Some(db)
}

type SharedLiveDb = Arc<std::sync::Mutex<Option<LiveDb>>>;

/// Saves the live state (on the blocking pool: SQLite blocks). Whether it was saved.
async fn save_live(live: &LiveStore, db: SharedLiveDb) -> bool {
    let state = live.state();
    tokio::task::spawn_blocking(move || {
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        let Some(db) = db.as_mut() else {
            return false;
        };
        match db.save(&state, crate::time::now_ms()) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot save the live state: {e}");
                false
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// Every second: drops hosts whose samples stopped and ages the history out. Every
/// `snapshot_every`: saves the live state. Returns the snapshot file at shutdown, for the
/// last save once the link has stopped.
async fn live_loop(
    live: Arc<LiveStore>,
    db: Option<LiveDb>,
    snapshot_every: Duration,
    shutdown: CancellationToken,
) -> SharedLiveDb {
    let db: SharedLiveDb = Arc::new(std::sync::Mutex::new(db));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_save = tokio::time::Instant::now() + snapshot_every;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return db,
        }
        live.tick(crate::time::now_ms());
        if tokio::time::Instant::now() >= next_save {
            next_save = tokio::time::Instant::now() + snapshot_every;
            save_live(&live, db.clone()).await;
        }
    }
}

/// Deletes rollups older than the retention, at start and then hourly.
async fn prune_loop(store: Store, retention_days: u32, shutdown: CancellationToken) {
    loop {
        let cutoff =
            jiff::Timestamp::now().as_millisecond() - i64::from(retention_days) * 86_400_000;
        let store2 = store.clone();
        match tokio::task::spawn_blocking(move || store2.prune(cutoff)).await {
            Ok(Ok(())) => tracing::debug!(retention_days, "old rollups pruned"),
            Ok(Err(e)) => tracing::warn!("cannot prune old rollups: {e}"),
            Err(e) => tracing::warn!("prune task failed: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(PRUNE_INTERVAL) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// Warns when a file holding a secret can be read by any user (the packages install them
/// 0600 or 0640 root:earshot).
fn warn_if_loose(path: &Path, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            tracing::warn!(
                file = %path.display(),
                "{what}: readable by others (mode {mode:04o}); chmod 600 it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::{InitOptions, init};
    use earshot_common::rollup::Protocol;
    use earshot_common::wire::{LiveEntry, LiveSample};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A deployment made by `init` on ports the OS picks.
    fn deployment(dir: &Path) -> CollectorConfig {
        init(&InitOptions {
            dir: dir.to_path_buf(),
            quic_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            agent: "agent-1".into(),
            agents: 1,
            force: false,
        })
        .unwrap();
        CollectorConfig::load(&dir.join("collector.toml")).unwrap()
    }

    /// Opens `live/stream` for radio1 and reads it to its end; returns what it read.
    async fn read_live_stream(addr: SocketAddr, token: String) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /api/v1/tenants/radio1/live/stream HTTP/1.1\r\nHost: x\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut body = Vec::new();
        let _ = conn.read_to_end(&mut body).await;
        String::from_utf8_lossy(&body).into_owned()
    }

    fn sample(listeners: u64) -> LiveSample {
        LiveSample {
            at_ms: crate::time::now_ms(),
            entries: vec![LiveEntry {
                tenant: "radio1".into(),
                stream: "/live.mp3".into(),
                protocol: Protocol::Icecast,
                listeners,
            }],
        }
    }

    /// The link's own round trip is tested in `link`, and SIGTERM with an agent shipping in
    /// `tests/e2e/shutdown.rs`; here the samples go straight into the live store.
    #[tokio::test]
    async fn stop_ends_live_streams_closes_the_endpoint_and_saves_the_last_counts() {
        let dir = tempfile::tempdir().unwrap();
        let config = deployment(dir.path());
        let collector = Collector::start(&config).await.unwrap();

        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
        let stream = tokio::spawn(read_live_stream(
            collector.http_addr,
            token.trim().to_string(),
        ));
        for listeners in [4, 9] {
            collector
                .live()
                .record("host-1", &sample(listeners), crate::time::now_ms());
        }
        // The stream is open and has sent the state.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!stream.is_finished(), "the stream ended before the stop");

        let live_db = config.live_db_path();
        let (quic, http) = (collector.quic_addr, collector.http_addr);
        let steps = tokio::time::timeout(Duration::from_secs(20), collector.stop())
            .await
            .expect("the stop finishes");
        assert_eq!(
            steps,
            [
                StopStep::LiveClosed,
                StopStep::Cancelled,
                StopStep::QuicDrained,
                StopStep::TasksStopped,
                StopStep::LiveSaved,
            ]
        );
        // The stream ended (the HTTP server could not have stopped otherwise) after sending
        // the state with the last count.
        let body = tokio::time::timeout(Duration::from_secs(5), stream)
            .await
            .expect("live/stream ended")
            .unwrap();
        assert!(body.contains("\"listeners\":9"), "{body}");
        // Both ports are free again: the endpoint and the listener are gone.
        std::net::UdpSocket::bind(quic).expect("the QUIC port is free");
        std::net::TcpListener::bind(http).expect("the HTTP port is free");
        // The snapshot holds the last count; nothing saved it before the stop (the periodic
        // save is a minute away).
        let state = LiveDb::open(&live_db).unwrap().load().unwrap().unwrap();
        let radio1 = state.tenants.iter().find(|t| t.tenant == "radio1").unwrap();
        let counts: Vec<u64> = radio1.readings.iter().map(|(_, r)| r.listeners).collect();
        assert_eq!(counts, [9]);
    }
}
