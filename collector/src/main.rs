//! `earshot-collector`: the process around the library — command line, signals, listeners.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use earshot_collector::api::Services;
use earshot_collector::apps::{self, AppsDb, EngagementSource};
use earshot_collector::config::{self, CollectorConfig};
use earshot_collector::init::{self, InitOptions};
use earshot_collector::link::{self, LinkServer};
use earshot_collector::live::{LiveDb, LiveStore};
use earshot_collector::sources::appstore::AppStoreClient;
use earshot_collector::sources::googleplay::GooglePlayClient;
use earshot_collector::sources::matomo::MatomoClient;
use earshot_collector::store::Store;
use earshot_collector::tls;
use tokio_util::sync::CancellationToken;

/// How often rollups past `retention_days` are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Parser)]
#[command(
    name = "earshot-collector",
    version,
    about = "Merges earshot agents' listener statistics exactly once and serves them over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the collector: the QUIC endpoint for agents and the HTTP API, until SIGTERM/SIGINT.
    Run {
        /// The collector's config file.
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Makes a ready-to-run deployment in a directory: collector.toml, a self-signed
    /// certificate, an agent's token and agent.toml, the identity secret and an admin token.
    Init {
        /// Where the files go (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// UDP address the collector listens on for agents.
        #[arg(long, default_value = "127.0.0.1:4433")]
        quic_listen: SocketAddr,
        /// TCP address of the HTTP API.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http_listen: SocketAddr,
        /// Id of the first agent (its token goes to DIR/NAME.token).
        #[arg(long, default_value = "agent-1")]
        agent: String,
        /// How many agents to make (one per streaming host): the first is --agent with
        /// DIR/agent.toml, the others agent-2, … with DIR/agent-2.toml, …
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
        agents: u32,
        /// Overwrite files that already exist (their old keys and tokens stop working).
        #[arg(long)]
        force: bool,
    },
    /// Imports App Store Connect Summary Sales reports (gzip or plain TSV) and Google Play
    /// installs CSVs (`installs_<package>_<YYYYMM>_overview.csv` or `…_country.csv`) by hand,
    /// for back-fill or without API keys. The store is told from each file's content. A
    /// report imported again replaces its earlier rows: nothing is counted twice. Apps the
    /// config maps to another tenant are skipped. Can run beside `run`.
    ImportDownloads {
        /// The collector's config file (for state_dir and the app → tenant maps).
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The tenant the downloads belong to.
        #[arg(long)]
        tenant: String,
        /// Report files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Makes a token for a new agent and prints the config blocks for both sides. The
    /// collector's config file is not changed: add the printed [[agents]] block yourself.
    EnrollAgent {
        /// The collector's config file (for the certificate fingerprint and address).
        #[arg(long, default_value = config::DEFAULT_PATH)]
        config: PathBuf,
        /// The new agent's id.
        name: String,
        /// Tenants the agent may report for, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        tenants: Vec<String>,
        /// Write the token to this file (0600) instead of printing it.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("earshot-collector: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            runtime.block_on(run(&config))
        }
        Command::Init {
            dir,
            quic_listen,
            http_listen,
            agent,
            agents,
            force,
        } => {
            let made = init::init(&InitOptions {
                dir,
                quic_listen,
                http_listen,
                agent,
                agents,
                force,
            })?;
            print!("{}", made.next_steps());
            Ok(())
        }
        Command::ImportDownloads {
            config,
            tenant,
            files,
        } => import_downloads(&config, &tenant, &files),
        Command::EnrollAgent {
            config,
            name,
            tenants,
            token_file,
        } => {
            let e = init::enroll_agent(&config, &name, &tenants, token_file.as_deref())?;
            match &token_file {
                Some(path) => println!(
                    "# The token of {name} is in {} (0600); copy it to the agent host.",
                    path.display()
                ),
                None => println!(
                    "# The token of {name} (shown once; store it on the agent host, mode 0600, at the\n\
                     # token_file path below):\n{}\n",
                    e.token
                ),
            }
            println!("# For the agent's agent.toml:\n{}", e.agent_block);
            println!(
                "# To add to {} (then restart the collector):\n{}",
                config.display(),
                e.collector_block
            );
            Ok(())
        }
    }
}

async fn run(config_path: &Path) -> Result<()> {
    let config = CollectorConfig::load(config_path)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let db = config.database_path();
    let store = Store::open_with_limits(&db, config.limits.store_limits())
        .with_context(|| format!("cannot open the store {}", db.display()))?;

    let certs = tls::load_certs(&config.quic.cert_file).context("quic.cert_file")?;
    let fingerprint = tls::fingerprint(&certs[0]);
    let key = tls::load_key(&config.quic.key_file).context("quic.key_file")?;
    warn_if_loose(&config.quic.key_file, "quic.key_file");
    warn_if_loose(config_path, "the config (it holds token hashes)");
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
    let apps_path = config.apps_db_path();
    let apps_db = Arc::new(
        AppsDb::open(&apps_path)
            .with_context(|| format!("cannot open the apps database {}", apps_path.display()))?,
    );
    let sources = open_sources(&config, &apps_db)?;
    let services = Services {
        live: live.clone(),
        heartbeat: Duration::from_secs(config.live.heartbeat_secs),
        link: link.stats(),
        agents: link.agent_board(),
        requests: Default::default(),
        apps: Some(apps_db.clone()),
        engagement: sources.engagement.clone(),
        ingest_tokens: Arc::new(config.ingest_tokens()),
    };
    let app =
        earshot_collector::api::router_with(store.clone(), Arc::new(config.api_config()), services);

    let shutdown = CancellationToken::new();
    let mut quic_task = tokio::spawn(link.serve(shutdown.clone()));
    let mut http_task = tokio::spawn(
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
    let prune_task = tokio::spawn(prune_loop(
        store.clone(),
        config.retention_days,
        shutdown.clone(),
    ));
    let poller_tasks = sources.spawn(&apps_db, &live, &shutdown);
    let reread = config_path.to_path_buf();
    earshot_common::sdnotify::ready_watching_reload(Some(Box::new(move || {
        CollectorConfig::load(&reread)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })))?;
    tracing::info!(
        quic = %quic_addr,
        http = %http_addr,
        %fingerprint,
        agents = config.agents.len(),
        store = %db.display(),
        "collector ready"
    );

    let stopped_early = tokio::select! {
        signal = stop_signal() => {
            earshot_common::sdnotify::stopping();
            tracing::info!("{}: stopping (finishing merges in flight)", signal?);
            None
        }
        r = &mut quic_task => Some(format!("the QUIC endpoint stopped: {r:?}")),
        r = &mut http_task => Some(format!("the HTTP server stopped: {r:?}")),
    };
    // Ends the `live/stream` responses, which the HTTP server's graceful shutdown waits for.
    live.close();
    shutdown.cancel();
    if !quic_task.is_finished() {
        let _ = quic_task.await;
    }
    if !http_task.is_finished() {
        let _ = http_task.await;
    }
    let _ = prune_task.await;
    for task in poller_tasks {
        let _ = task.await;
    }
    // The last snapshot, after the link stopped taking samples.
    if let Ok(db) = live_task.await {
        save_live(&live, db).await;
        tracing::info!("live state saved");
    }
    match stopped_early {
        Some(why) => anyhow::bail!(why),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
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
            live.tick(link::now_ms());
            tracing::info!(tenants, path = %path.display(), "live state restored");
        }
        Ok(None) => {}
        Err(e) => tracing::warn!("live state not restored (starting empty): {e}"),
    }
    Some(db)
}

type SharedLiveDb = Arc<std::sync::Mutex<Option<LiveDb>>>;

/// Saves the live state (on the blocking pool: SQLite blocks).
async fn save_live(live: &LiveStore, db: SharedLiveDb) {
    let state = live.state();
    let _ = tokio::task::spawn_blocking(move || {
        let mut db = db.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(db) = db.as_mut()
            && let Err(e) = db.save(&state, link::now_ms())
        {
            tracing::warn!("cannot save the live state: {e}");
        }
    })
    .await;
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
        live.tick(link::now_ms());
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

/// The configured app-store and Matomo clients, built at start so that a missing key file
/// or a bad URL stops the collector with the key named.
struct Sources {
    appstore: Option<AppStoreClient>,
    google_play: Option<GooglePlayClient>,
    engagement: Option<Arc<EngagementSource>>,
}

fn open_sources(config: &CollectorConfig, db: &Arc<AppsDb>) -> Result<Sources> {
    let s = &config.sources;
    Ok(Sources {
        appstore: s
            .appstore
            .clone()
            .map(AppStoreClient::new)
            .transpose()
            .context("[sources.appstore]")?,
        google_play: s
            .google_play
            .clone()
            .map(GooglePlayClient::new)
            .transpose()
            .context("[sources.google_play]")?,
        engagement: s
            .matomo
            .clone()
            .map(MatomoClient::new)
            .transpose()
            .context("[sources.matomo]")?
            .map(|c| Arc::new(EngagementSource::new(c, db.clone()))),
    })
}

impl Sources {
    /// Starts a poller for each configured source.
    fn spawn(
        self,
        db: &Arc<AppsDb>,
        live: &Arc<LiveStore>,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(c) = self.appstore {
            tracing::info!(
                apps = c.config().apps.len(),
                "App Store Connect poller started"
            );
            tasks.push(tokio::spawn(apps::poll::appstore_loop(
                c,
                db.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(c) = self.google_play {
            tracing::info!(
                packages = c.config().packages.len(),
                "Google Play poller started"
            );
            tasks.push(tokio::spawn(apps::poll::google_play_loop(
                c,
                db.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(e) = self.engagement {
            tracing::info!(
                sites = e.client().config().sites.len(),
                "Matomo live poller started"
            );
            tasks.push(tokio::spawn(apps::poll::matomo_live_loop(
                e,
                live.clone(),
                shutdown.clone(),
            )));
        }
        tasks
    }
}

/// `import-downloads`: each file is parsed and stored on its own; one bad file fails the
/// command (after the others were imported), naming it.
fn import_downloads(config_path: &Path, tenant: &str, files: &[PathBuf]) -> Result<()> {
    let config = CollectorConfig::load(config_path)?;
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create state_dir {}", config.state_dir.display()))?;
    let path = config.apps_db_path();
    let db = AppsDb::open(&path)
        .with_context(|| format!("cannot open the apps database {}", path.display()))?;
    let mut failed = Vec::new();
    for file in files {
        let outcome = std::fs::read(file)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| {
                Ok(apps::import::import_report(
                    &db,
                    tenant,
                    &bytes,
                    |store, app, apple_id| config.app_owner(store, app, apple_id),
                    jiff::Timestamp::now().as_millisecond(),
                )?)
            });
        match outcome {
            Ok(o) => {
                let days = match (o.first_day, o.last_day) {
                    (Some(a), Some(b)) if a == b => a.to_string(),
                    (Some(a), Some(b)) => format!("{a}..{b}"),
                    _ => "no days".to_string(),
                };
                println!(
                    "{}: {} report, {} rows ({} replaced) for tenant {tenant}, apps {}, {days}",
                    file.display(),
                    o.store.as_str(),
                    o.rows,
                    o.replaced,
                    o.apps.iter().cloned().collect::<Vec<_>>().join(", "),
                );
                for (app, owner) in &o.skipped {
                    println!("  skipped {app}: the config maps it to tenant {owner}");
                }
            }
            Err(e) => {
                eprintln!("{}: {e:#}", file.display());
                failed.push(file.display().to_string());
            }
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} file(s) not imported: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
