//! The `earshot-agent` command line. A failure is one message on stderr and an exit code that
//! says whose fault it is: 78 (EX_CONFIG) when the config is at fault (unreadable, not TOML,
//! invalid, or naming a secret, a time zone or a data file that cannot be used), which no
//! restart can fix (the systemd unit does not restart on it); 1 for any other failure; 2 for a
//! usage error (as clap does).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{AgentConfig, ConfigError};
use crate::ingest::{IngestError, Ingestor};
use crate::reader::LineReader;
use crate::report::DryRunReport;

pub use earshot_common::sdnotify::EXIT_CONFIG;

const EXIT_CODES: &str = "Exit codes: 0 done, or stopped by SIGTERM/SIGINT; 1 failed; 2 usage \
error; 78 the config is unreadable, not TOML or invalid (systemd does not restart on it).";

#[derive(Parser)]
#[command(
    name = "earshot-agent",
    version,
    about = "Turns HAProxy logs into listener statistics and ships them to an earshot collector",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reads log files once, in the order given, and ships (or with --dry-run prints) the result.
    Ingest {
        /// Agent config (agent.toml). Without it every key takes its default.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the aggregates as JSON instead of shipping them.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: also print one row per (tenant, stream, hour).
        #[arg(long)]
        detail: bool,
        /// With --dry-run: print, instead of JSON, what the agent made of the log: per
        /// tenant the streams found (protocol, requests, sessions and why), the commonest
        /// paths that are not sessions by kind, and warnings to act on.
        #[arg(long, requires = "dry_run")]
        explain: bool,
        /// Without --dry-run: give up waiting for the collector's acknowledgements after this
        /// many seconds (what is not acknowledged stays spooled).
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
        /// HAProxy log files, plain or gzip.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Follows the configured log files through rotation and ships to the collector.
    Run {
        #[arg(long, default_value = "/etc/earshot/agent.toml")]
        config: PathBuf,
    },
    /// Tells the running agent that a log file was just rotated (for logrotate's postrotate).
    Notify {
        #[arg(long, default_value = "/etc/earshot/agent.toml")]
        config: PathBuf,
        /// The log file that was rotated.
        path: PathBuf,
    },
    /// Checks a config file and says what is wrong where.
    CheckConfig {
        #[arg(long, default_value = "/etc/earshot/agent.toml")]
        config: PathBuf,
    },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("earshot-agent: {e:#}");
            ExitCode::from(exit_code(&e))
        }
    }
}

/// [`EXIT_CONFIG`] when the config is at fault, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let config_fault = e.chain().any(|cause| {
        cause.is::<ConfigError>()
            || matches!(
                cause.downcast_ref(),
                Some(IngestError::Classify { .. } | IngestError::TimeZone(_))
            )
    });
    if config_fault { EXIT_CONFIG } else { 1 }
}

/// What `check-config` checks, and `run` before it starts: the file, the identity secret,
/// and what the ingestor builds from them (routing patterns, User-Agent and GeoIP files, the
/// log time zone). `run` also needs a `[collector]` to ship to.
fn check_whole(c: &AgentConfig, path: &Path, needs_collector: bool) -> Result<()> {
    if needs_collector && c.collector.is_none() {
        return Err(ConfigError::Invalid {
            path: path.to_path_buf(),
            key: "collector".into(),
            message: "`run` ships to a collector: the [collector] table is required".into(),
        }
        .into());
    }
    crate::daemon::ingestor(c, c.read_secret()?)?;
    Ok(())
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

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { config } => {
            let c = AgentConfig::load(&config)?;
            check_whole(&c, &config, false)?;
            println!("{}: ok", config.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingest {
            config,
            dry_run: true,
            detail,
            explain,
            files,
            ..
        } => {
            let c = match &config {
                Some(path) => AgentConfig::load(path)?,
                None => AgentConfig::defaults(),
            };
            let secret = dry_run_secret(&c, config.is_some());
            let mut ingestor = crate::daemon::ingestor(&c, secret)?;
            if explain {
                ingestor.explain();
            }
            for file in &files {
                feed_file(&mut ingestor, file, 0, c.inputs.max_line_bytes)?;
            }
            ingestor.close_all();
            let (rollups, counters) = ingestor.take();
            let mut out = std::io::stdout().lock();
            let written = if explain {
                let text = ingestor.explanation(&rollups, &counters);
                out.write_all(text.as_bytes())
            } else {
                let report = DryRunReport::new(&rollups, &counters, detail);
                serde_json::to_writer_pretty(&mut out, &report)
                    .map_err(std::io::Error::from)
                    .and_then(|()| writeln!(out))
            };
            match written {
                // A reader that stopped reading (`| head`) is not an error.
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
        Command::Ingest {
            config,
            dry_run: false,
            files,
            timeout_secs,
            ..
        } => {
            let path = config.context("--config is required to ship (or use --dry-run)")?;
            let c = AgentConfig::load(&path)?;
            runtime()?.block_on(crate::daemon::ingest_and_ship(
                c,
                files,
                std::time::Duration::from_secs(timeout_secs),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            let c = AgentConfig::load(&config)?;
            check_whole(&c, &config, true)?;
            tracing::info!(config = %config.display(), files = c.inputs.files.len(), "earshot-agent starting");
            runtime()?.block_on(crate::daemon::run(c))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Notify { config, path } => {
            let c = AgentConfig::load(&config)?;
            crate::daemon::notify(&c, &path)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A dry run prints no hashes, so without a readable secret an ephemeral one does.
fn dry_run_secret(c: &AgentConfig, from_file: bool) -> Vec<u8> {
    match c.read_secret() {
        Ok(s) => s,
        Err(e) => {
            if from_file {
                tracing::warn!("{e}; using a one-off secret for this dry run");
            }
            let mut s = Vec::with_capacity(32);
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            s.extend_from_slice(&seed.to_le_bytes());
            s.extend_from_slice(&std::process::id().to_le_bytes());
            s.resize(32, 0x5a);
            s
        }
    }
}

/// Feeds one file from `offset` to its end. Returns the offset reached.
pub fn feed_file(
    ingestor: &mut Ingestor,
    path: &Path,
    offset: u64,
    max_line: usize,
) -> Result<u64> {
    let mut reader = LineReader::open(path, offset, max_line)
        .with_context(|| format!("cannot read {}", path.display()))?;
    while let Some(lines) = reader
        .next_lines()
        .with_context(|| format!("reading {}", path.display()))?
    {
        ingestor.feed_lines(lines);
    }
    Ok(reader.offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_config_faults_exit_78() {
        let parse = AgentConfig::parse("[inputs\n", Path::new("a.toml")).unwrap_err();
        assert_eq!(exit_code(&anyhow::Error::from(parse)), EXIT_CONFIG);
        let zone = IngestError::TimeZone("Mars/Olympus".into());
        let wrapped = anyhow::Error::from(zone).context("starting");
        assert_eq!(exit_code(&wrapped), EXIT_CONFIG);
        let state = IngestError::State("truncated".into());
        assert_eq!(exit_code(&anyhow::Error::from(state)), 1);
        let io = anyhow::Error::from(std::io::Error::from(std::io::ErrorKind::AddrInUse));
        assert_eq!(exit_code(&io), 1);
    }

    #[test]
    fn run_needs_a_collector_and_a_readable_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        let missing = dir.path().join("missing.secret");
        let text = format!("secret_file = {:?}\n", missing.display().to_string());
        let c = AgentConfig::parse(&text, &path).unwrap();
        let e = check_whole(&c, &path, true).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_CONFIG);
        assert!(e.to_string().contains("collector"), "{e}");
        // Without [collector] check-config goes on to the secret, which is not there.
        let e = check_whole(&c, &path, false).unwrap_err();
        assert_eq!(exit_code(&e), EXIT_CONFIG, "{e}");
    }
}
