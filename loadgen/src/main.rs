//! `earshot-loadgen`: writes realistic HAProxy logs and their ground truth.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use earshot_loadgen::attack::{self, AttackKind};
use earshot_loadgen::{Envelope, Generated, Layouts, Scenario, truth};

#[derive(Parser)]
#[command(
    version,
    about = "earshot's traffic generator: HAProxy logs of audio streams with exact ground truth"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum EnvelopeArg {
    /// The bare HAProxy line (`log stdout format raw`).
    Raw,
    /// Debian 12 rsyslog: `2026-11-28T04:27:38.839063+00:00 host-1 haproxy[20777]: …`.
    Rsyslog,
}

impl From<EnvelopeArg> for Envelope {
    fn from(e: EnvelopeArg) -> Envelope {
        match e {
            EnvelopeArg::Raw => Envelope::Raw,
            EnvelopeArg::Rsyslog => Envelope::Rsyslog,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LayoutsArg {
    /// Today's layout: `/<t>/live.mp3`, `/<t>/aac`, `/hls/<t>/live.m3u8` + `seg_<n>`.
    Classic,
    /// Every station one of Icecast, AzuraCast, Wowza, nginx-rtmp, CMAF, CDN; non-audio 200s.
    Mixed,
}

impl From<LayoutsArg> for Layouts {
    fn from(l: LayoutsArg) -> Layouts {
        match l {
            LayoutsArg::Classic => Layouts::Classic,
            LayoutsArg::Mixed => Layouts::Mixed,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
#[allow(clippy::enum_variant_names)] // the CLI's names: random-mounts, …
enum AttackArg {
    /// Every line a 200 to a new mount `/x<random>.mp3`.
    RandomMounts,
    /// One mount, `?source=<random>`.
    RandomSource,
    /// One mount, a random Referer host.
    RandomReferer,
    /// One mount, a random User-Agent.
    RandomUa,
    /// One mount, a random client address (IPv4 and IPv6).
    RandomIp,
}

impl From<AttackArg> for AttackKind {
    fn from(a: AttackArg) -> AttackKind {
        match a {
            AttackArg::RandomMounts => AttackKind::RandomMounts,
            AttackArg::RandomSource => AttackKind::RandomSource,
            AttackArg::RandomReferer => AttackKind::RandomReferer,
            AttackArg::RandomUa => AttackKind::RandomUa,
            AttackArg::RandomIp => AttackKind::RandomIp,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Write a scenario's rotated logs per host (DIR/host-N/haproxy.log…) and its truth.
    Generate {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start of the logged window, RFC 3339.
        #[arg(long, default_value = "2026-11-28T21:00:00Z")]
        start: String,
        #[arg(long, default_value_t = 6)]
        hours: u32,
        #[arg(long, default_value_t = 3)]
        hosts: u32,
        #[arg(long, default_value_t = 20)]
        stations: u32,
        /// Listeners over all stations.
        #[arg(long, default_value_t = 2_000)]
        listeners: u32,
        /// The hosts' UTC offset for the accept date (and rsyslog's timestamp): +01:00, -05:30, UTC.
        #[arg(long, default_value = "UTC", allow_hyphen_values = true)]
        tz: String,
        #[arg(long, value_enum, default_value = "raw")]
        envelope: EnvelopeArg,
        /// The stations' URL layouts.
        #[arg(long, value_enum, default_value = "classic")]
        layouts: LayoutsArg,
        /// Gzip the older rotated files (haproxy.log.2.gz, …).
        #[arg(long)]
        gzip: bool,
        /// Minutes of write time per file; 0 = one file per host.
        #[arg(long, default_value_t = 60)]
        rotate_minutes: u32,
        /// Write the truth (per-tenant totals over all time, noise counts, files) as JSON here.
        #[arg(long)]
        truth: Option<PathBuf>,
        /// Write every session as one JSON object per line here.
        #[arg(long)]
        sessions: Option<PathBuf>,
    },
    /// Write the benchmark's one-hour, one-host file with an exact number of lines.
    BenchFile {
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 5_000_000)]
        lines: u64,
        #[arg(long, default_value_t = 200)]
        stations: u32,
        #[arg(long, default_value_t = 50_000)]
        listeners: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value = "raw")]
        envelope: EnvelopeArg,
        /// The stations' URL layouts.
        #[arg(long, value_enum, default_value = "classic")]
        layouts: LayoutsArg,
        #[arg(long)]
        gzip: bool,
        /// Write the truth as JSON here (computing it takes a while at this size).
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long)]
        sessions: Option<PathBuf>,
    },
    /// Write one hour of one tenant (`be_attack`) where one field is new on every line.
    Attack {
        #[arg(long, value_enum)]
        kind: AttackArg,
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
        #[arg(long)]
        out: PathBuf,
        /// Write the attack's truth as JSON here.
        #[arg(long)]
        truth: Option<PathBuf>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Start of the hour, RFC 3339.
        #[arg(long, default_value = "2026-11-28T21:00:00Z")]
        start: String,
    },
}

fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let (generated, truth_path, sessions_path) = match Cli::parse().command {
        Command::Generate {
            out,
            seed,
            start,
            hours,
            hosts,
            stations,
            listeners,
            tz,
            envelope,
            layouts,
            gzip,
            rotate_minutes,
            truth,
            sessions,
        } => {
            let scenario = Scenario {
                seed,
                start_ms: earshot_loadgen::parse_start(&start)?,
                hours,
                hosts,
                stations,
                listeners,
                utc_offset_minutes: earshot_loadgen::parse_utc_offset(&tz)?,
                envelope: envelope.into(),
                layouts: layouts.into(),
                gzip,
                rotate_minutes,
                ..Scenario::default()
            };
            anyhow::ensure!(
                hosts > 0 && stations > 0 && hours > 0,
                "hosts, stations and hours must be > 0"
            );
            (earshot_loadgen::generate(&scenario, &out)?, truth, sessions)
        }
        Command::BenchFile {
            out,
            lines,
            stations,
            listeners,
            seed,
            envelope,
            layouts,
            gzip,
            truth,
            sessions,
        } => {
            anyhow::ensure!(stations > 0, "stations must be > 0");
            let scenario = Scenario {
                seed,
                envelope: envelope.into(),
                layouts: layouts.into(),
                gzip,
                ..Scenario::bench(lines, stations, listeners)
            };
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            (
                earshot_loadgen::generate_file(&scenario, &out)?,
                truth,
                sessions,
            )
        }
        Command::Attack {
            kind,
            lines,
            out,
            truth,
            seed,
            start,
        } => {
            if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let t = attack::write_attack(
                kind.into(),
                lines,
                seed,
                earshot_loadgen::parse_start(&start)?,
                &out,
            )?;
            println!(
                "{} lines ({} distinct {}) in {:.2} s: {}",
                t.lines,
                t.distinct_values,
                t.field,
                started.elapsed().as_secs_f64(),
                out.display()
            );
            if let Some(path) = truth {
                std::fs::write(&path, serde_json::to_vec_pretty(&t)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("truth: {}", path.display());
            }
            return Ok(());
        }
    };
    let written = started.elapsed();
    summarize(&generated, written);
    if let Some(path) = truth_path {
        generated.write_truth(&path)?;
        println!("truth: {}", path.display());
    }
    if let Some(path) = sessions_path {
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        for s in &generated.sessions {
            serde_json::to_writer(&mut w, s)?;
            w.write_all(b"\n")?;
        }
        w.flush()
            .with_context(|| format!("writing {}", path.display()))?;
        println!("sessions: {}", path.display());
    }
    Ok(())
}

fn summarize(g: &Generated, elapsed: std::time::Duration) {
    let bytes: u64 = g
        .files
        .iter()
        .flat_map(|(_, f)| f)
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let qualifying = g.sessions.iter().filter(|s| truth::qualifies(s)).count();
    let hls = g.sessions.iter().filter(|s| s.protocol == "hls").count();
    println!(
        "{} lines, {} files, {:.1} MB in {:.2} s; {} sessions ({} qualifying, {} hls), {} noise lines ({} malformed)",
        g.lines,
        g.files.iter().map(|(_, f)| f.len()).sum::<usize>(),
        bytes as f64 / 1e6,
        elapsed.as_secs_f64(),
        g.sessions.len(),
        qualifying,
        hls,
        g.noise.total(),
        g.malformed_lines,
    );
}
