//! The `earshot-collector` command line. A failure is one message on stderr and an exit code
//! that says whose fault it is: 78 (EX_CONFIG) when the config is unreadable, not TOML or
//! invalid, which no restart can fix (the systemd unit does not restart on it), 1 for any
//! other failure, 2 for a usage error (as clap does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{self, ConfigError};
use crate::init::{self, InitError, InitOptions};

pub use earshot_common::sdnotify::EXIT_CONFIG;

const EXIT_CODES: &str = "Exit codes: 0 stopped by SIGTERM/SIGINT or done; 1 failed; 2 usage \
error; 78 the config is unreadable, not TOML or invalid (systemd does not restart on it).";

#[derive(Parser)]
#[command(
    name = "earshot-collector",
    version,
    about = "Merges earshot agents' listener statistics exactly once and serves them over HTTP",
    after_help = EXIT_CODES
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
    #[cfg(feature = "apps")]
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("earshot-collector: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// [`EXIT_CONFIG`] when the config is at fault, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let config_fault = e.chain().any(|cause| {
        cause.is::<ConfigError>() || matches!(cause.downcast_ref(), Some(InitError::Config(_)))
    });
    if config_fault { EXIT_CONFIG } else { 1 }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: journald and log files get plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("tokio runtime")?;
            runtime.block_on(crate::daemon::run(&config))
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
        #[cfg(feature = "apps")]
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

/// `import-downloads`: each file is parsed and stored on its own; one bad file fails the
/// command (after the others were imported), naming it.
#[cfg(feature = "apps")]
fn import_downloads(config_path: &std::path::Path, tenant: &str, files: &[PathBuf]) -> Result<()> {
    use crate::apps::{self, AppsDb};
    let config = config::CollectorConfig::load(config_path)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config_error() -> ConfigError {
        config::CollectorConfig::parse("retention_days = \"x\"\n", Path::new("c.toml")).unwrap_err()
    }

    #[test]
    fn only_config_faults_exit_78() {
        let plain = anyhow::Error::from(config_error());
        assert_eq!(exit_code(&plain), EXIT_CONFIG);
        let wrapped = anyhow::Error::from(config_error()).context("starting");
        assert_eq!(exit_code(&wrapped), EXIT_CONFIG);
        let from_init = anyhow::Error::from(InitError::Config(config_error()));
        assert_eq!(exit_code(&from_init), EXIT_CONFIG);
        let other = anyhow::Error::from(InitError::Invalid("agent exists".into()));
        assert_eq!(exit_code(&other), 1);
        let io = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::AddrInUse))
            .context("cannot listen on 127.0.0.1:8080 (http.listen)");
        assert_eq!(exit_code(&io), 1);
    }
}
