//! earshot's traffic generator: realistic HAProxy access logs of audio streams, deterministic
//! from a seed, and the exact ground truth of what they contain.
//!
//! The truth is computed here from the generator's own knowledge of the sessions, by the plain
//! code in [`truth`], and never with `earshot-common` or `earshot-agent`: it is the reference
//! the code under test is checked against, so it must not share that code's mistakes.
//!
//! How it works: `plan` draws listeners and, for each, a timeline of sessions (progressive
//! sessions are one line written at their end; HLS sessions are a replayable walk of requests,
//! see `hls`), then `emit` merges every session's lines per host in write-time order with a
//! heap and streams them to rotated files. Nothing holds the lines in memory. `layout` says
//! how each station's URLs look ([`Layouts::Classic`], or [`Layouts::Mixed`]: Icecast,
//! AzuraCast, Wowza, nginx-rtmp, CMAF and CDN stations) and names their streams and renditions
//! as docs/traffic.md does; [`attack`] writes files where one field is new on every line.

#![forbid(unsafe_code)]

pub mod attack;
pub mod data;
mod emit;
mod format;
mod hls;
mod layout;
mod plan;
mod rng;
pub mod truth;

#[cfg(test)]
mod mixed_tests;
#[cfg(test)]
mod roundtrip_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

pub use format::{DAY_MS, HOUR_MS, MINUTE_MS};
pub use layout::{Family, MIXED_FAMILIES};

/// How the lines are wrapped in the files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// `log stdout format raw`: the bare HAProxy line.
    Raw,
    /// Debian 12 rsyslog's default file format:
    /// `2026-11-28T04:27:38.839063+00:00 host-1 haproxy[20777]: ` + line.
    Rsyslog,
}

/// Which URL layouts the stations use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layouts {
    /// Every station as before: mounts `/<t>/live.mp3` and `/<t>/aac`, HLS
    /// `/hls/<t>/live.m3u8` + `seg_<n>.aac|ts`, no 2xx noise.
    #[default]
    Classic,
    /// Each station one of [`MIXED_FAMILIES`] (dealt from the seed, every family present with
    /// six stations or more): Icecast/Shoutcast mounts, AzuraCast, Wowza, nginx-rtmp, CMAF and
    /// CDN HLS with renditions and ABR switches, HTTP/2 absolute URIs, cache-busting and signed
    /// queries, and non-audio 200s (now-playing JSON, artwork, player files, `HEAD`, …) counted
    /// in [`Generated::not_sessions`].
    Mixed,
}

/// Shares of the traffic; the defaults are a plausible platform.
#[derive(Clone, Debug, Serialize)]
pub struct Mix {
    /// Listeners whose usual stream is the HLS one.
    pub hls_share: f64,
    /// Listeners with an IPv6 address.
    pub ipv6_share: f64,
    /// Listeners seen as `::ffff:a.b.c.d` (mostly; now and then plain).
    pub mapped_share: f64,
    /// Sessions through the TLS frontend (`fe_https~`).
    pub tls_share: f64,
    /// Noise lines (errors, `<BADREQ>`, HAProxy's own messages, garbage) per thousand session lines.
    pub noise_per_mille: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            hls_share: 0.3,
            ipv6_share: 0.22,
            mapped_share: 0.08,
            tls_share: 0.3,
            noise_per_mille: 15,
        }
    }
}

/// Everything that determines the output. Same scenario, same bytes.
#[derive(Clone, Debug, Serialize)]
pub struct Scenario {
    pub seed: u64,
    /// Start of the logged window (UTC ms): the first line is written at or after it.
    pub start_ms: i64,
    pub hours: u32,
    pub hosts: u32,
    pub stations: u32,
    /// Listeners over all stations (a listener belongs to one station).
    pub listeners: u32,
    pub mix: Mix,
    /// The HAProxy hosts' fixed UTC offset, for the accept date and rsyslog's timestamp.
    pub utc_offset_minutes: i32,
    pub envelope: Envelope,
    /// Compress rotated files from the second-newest back (`haproxy.log.2.gz`, …), like
    /// logrotate's `compress` + `delaycompress`; with one file per host, compress that file.
    pub gzip: bool,
    /// One file per this many minutes of write time; 0 = one file per host.
    pub rotate_minutes: u32,
    /// Write exactly this many lines in total (sessions are calibrated, then noise pads).
    pub target_lines: Option<u64>,
    /// The stations' URL layouts.
    pub layouts: Layouts,
}

impl Default for Scenario {
    /// 3 hosts × 6 hours (21:00–03:00 UTC, over midnight) × 20 stations × 2,000 listeners,
    /// hourly rotation, raw lines, UTC.
    fn default() -> Self {
        Scenario {
            seed: 1,
            start_ms: 1_795_899_600_000, // 2026-11-28T21:00:00Z
            hours: 6,
            hosts: 3,
            stations: 20,
            listeners: 2_000,
            mix: Mix::default(),
            utc_offset_minutes: 0,
            envelope: Envelope::Raw,
            gzip: false,
            rotate_minutes: 60,
            target_lines: None,
            layouts: Layouts::Classic,
        }
    }
}

impl Scenario {
    /// The benchmark's one-hour single-host file.
    pub fn bench(lines: u64, stations: u32, listeners: u32) -> Self {
        Scenario {
            hours: 1,
            hosts: 1,
            stations,
            listeners,
            rotate_minutes: 0,
            target_lines: Some(lines),
            start_ms: 1_795_899_600_000,
            ..Scenario::default()
        }
    }

    /// The default scenario with [`Layouts::Mixed`]: the same hosts, hours and listeners over
    /// `stations` stations.
    pub fn mixed(seed: u64, stations: u32) -> Self {
        Scenario {
            seed,
            stations,
            layouts: Layouts::Mixed,
            ..Scenario::default()
        }
    }

    pub fn window_end_ms(&self) -> i64 {
        self.start_ms + i64::from(self.hours) * HOUR_MS
    }

    pub fn host_name(host: u32) -> String {
        format!("host-{}", host + 1)
    }

    pub fn tenant_name(station: u32) -> String {
        format!("radio{:03}", station + 1)
    }
}

/// One session as DESIGN.md defines it, with what the agent should derive for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TruthSession {
    pub tenant: String,
    /// Mount path (`/radio001/live.mp3`, `/;stream.mp3`, no query) or HLS stream: its
    /// directory (`/hls/radio001`, `/radio/radio003`, `/cmaf/radio004`, `/live/radio005`) or, in
    /// nginx-rtmp's shared directory, `/hls/<name>`.
    pub stream: String,
    /// Rendition of the last media segment fetched (init segments aside), named as
    /// docs/traffic.md section 3 says (`aac_lofi`, `media_b64000`, `audio_64`, `index_1`);
    /// `none` without one, for single-rendition streams and progressive sessions.
    pub rendition: String,
    /// `"icecast"` or `"hls"`.
    pub protocol: &'static str,
    /// (IP key, User-Agent as logged: unescaped, cut to 128 bytes by the capture). The IP key is
    /// the IPv4 address (also for `::ffff:` clients)
    /// or the IPv6 /64 written as `2003:1f:2:3::/64`.
    pub listener: (String, String),
    /// Accept time of the first request (UTC ms).
    pub start_ms: i64,
    /// Accept + Ta of the last request (UTC ms); the session is `[start_ms, end_ms)`.
    pub end_ms: i64,
    pub bot: bool,
    pub referrer_host: Option<String>,
    /// `source=` query value, else the referrer host, else `direct`.
    pub source: String,
    pub host: String,
    /// ISO country of the listener's address block ([`data::ADDRESS_BLOCKS`]).
    pub country: &'static str,
    /// HTTP status of the progressive line, or of the HLS playlist requests (segments may be 206).
    pub status: i32,
    /// Log lines the session wrote.
    pub requests: u32,
}

impl TruthSession {
    pub fn length_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

/// Lines that are not session requests, by kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NoiseCounts {
    /// HTTP requests answered with a non-2xx status (404, 503 `<NOSRV>`, 302), by status.
    pub non_2xx: BTreeMap<i32, u64>,
    /// `"<BADREQ>"` lines (400, 408); not in `non_2xx`.
    pub badreq: u64,
    /// `fe_https/1: SSL handshake failure` lines.
    pub ssl_errors: u64,
    /// HAProxy's own messages (`Proxy … stopped`, `Server … is DOWN`, …).
    pub haproxy_messages: u64,
    /// Garbage and truncated lines.
    pub malformed: u64,
}

impl NoiseCounts {
    pub fn total(&self) -> u64 {
        self.non_2xx.values().sum::<u64>()
            + self.badreq
            + self.ssl_errors
            + self.haproxy_messages
            + self.malformed
    }
}

/// What [`generate`] wrote and the truth about it.
#[derive(Clone, Debug, Serialize)]
pub struct Generated {
    /// Every session with a line in the files, in planning order.
    pub sessions: Vec<TruthSession>,
    /// Per host: its files, oldest first.
    pub files: Vec<(String, Vec<PathBuf>)>,
    /// All lines written.
    pub lines: u64,
    pub malformed_lines: u64,
    pub noise: NoiseCounts,
    /// 2xx requests that are not sessions (mixed layouts), by tenant and docs/traffic.md's
    /// kind (`document`, `image`, `script`, `player_file`, `status_page`, `method`). Not in
    /// [`NoiseCounts`]; their 200s are in `requests_by_status`.
    pub not_sessions: BTreeMap<String, BTreeMap<String, u64>>,
    /// Each tenant's URL family.
    pub families: BTreeMap<String, Family>,
    /// Status of every well-formed HTTP request line (sessions' 200/206 and noise), `<BADREQ>` included.
    pub requests_by_status: BTreeMap<i32, u64>,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
}

/// Writes the scenario's logs under `out_dir` (`host-1/haproxy.log…`) and returns the truth.
pub fn generate(scenario: &Scenario, out_dir: &Path) -> anyhow::Result<Generated> {
    let plan = plan::plan(scenario);
    let mut files = Vec::new();
    let mut lines = 0;
    for host in 0..scenario.hosts {
        let name = Scenario::host_name(host);
        let dir = out_dir.join(&name);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut sink = emit::RotatedFiles::new(scenario, &dir);
        lines += emit::write_host(scenario, &plan, host, &mut sink)
            .with_context(|| format!("writing {}", dir.display()))?;
        files.push((name, sink.finish()?));
    }
    Ok(plan.into_generated(scenario, files, lines))
}

/// Writes all of a one-host scenario's lines into the single file `path` (the benchmark file).
pub fn generate_file(scenario: &Scenario, path: &Path) -> anyhow::Result<Generated> {
    anyhow::ensure!(scenario.hosts == 1, "a single file holds one host");
    let plan = plan::plan(scenario);
    let mut sink = emit::RotatedFiles::single(scenario, path);
    let lines = emit::write_host(scenario, &plan, 0, &mut sink)
        .with_context(|| format!("writing {}", path.display()))?;
    let files = vec![(Scenario::host_name(0), sink.finish()?)];
    Ok(plan.into_generated(scenario, files, lines))
}

/// The truth file `generate --truth` writes (JSON): the totals, the breakdowns and what the
/// lines hold besides sessions.
#[derive(Serialize)]
pub struct TruthFile<'a> {
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub all_time: (i64, i64),
    pub lines: u64,
    pub malformed_lines: u64,
    pub noise: &'a NoiseCounts,
    pub requests_by_status: &'a BTreeMap<i32, u64>,
    pub files: &'a [(String, Vec<PathBuf>)],
    /// Per tenant: [`truth::Metrics`] over all time.
    pub per_tenant: BTreeMap<String, truth::Metrics>,
    /// Per tenant: its URL family (`classic`, `icecast`, `azuracast`, `wowza`, `nginx-rtmp`,
    /// `cmaf`, `cdn`).
    pub families: &'a BTreeMap<String, Family>,
    /// Per tenant, dimension (`stream`, `rendition`, `protocol`, `source`, `country`), value:
    /// qualifying sessions.
    pub breakdowns: BTreeMap<String, BTreeMap<&'static str, BTreeMap<String, u64>>>,
    /// Per tenant, stream: [`truth::StreamTotals`].
    pub per_stream: BTreeMap<String, BTreeMap<String, truth::StreamTotals>>,
    /// Per tenant, kind: 2xx requests that are not sessions.
    pub not_sessions: &'a BTreeMap<String, BTreeMap<String, u64>>,
    /// Their sum.
    pub not_sessions_total: u64,
}

impl Generated {
    /// The truth file's content.
    pub fn truth_file(&self) -> TruthFile<'_> {
        TruthFile {
            window_start_ms: self.window_start_ms,
            window_end_ms: self.window_end_ms,
            all_time: truth::all_time(&self.sessions),
            lines: self.lines,
            malformed_lines: self.malformed_lines,
            noise: &self.noise,
            requests_by_status: &self.requests_by_status,
            files: &self.files,
            per_tenant: truth::per_tenant_totals(&self.sessions),
            families: &self.families,
            breakdowns: truth::breakdowns(&self.sessions),
            per_stream: truth::per_stream(&self.sessions),
            not_sessions: &self.not_sessions,
            not_sessions_total: self.not_sessions.values().flat_map(|k| k.values()).sum(),
        }
    }

    /// Writes [`Generated::truth_file`] as JSON to `path`.
    pub fn write_truth(&self, path: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(&self.truth_file())?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))
    }
}

/// `+01:00`, `-05:30`, `Z`, `UTC` → minutes east of UTC (parsed by jiff).
pub fn parse_utc_offset(s: &str) -> anyhow::Result<i32> {
    if s.eq_ignore_ascii_case("utc") {
        return Ok(0);
    }
    let probe: jiff::Timestamp = format!("2000-01-01T00:00:00{s}")
        .parse()
        .with_context(|| format!("{s:?} is not a UTC offset like +01:00"))?;
    let east_s = 946_684_800 - probe.as_second();
    anyhow::ensure!(east_s % 60 == 0, "{s:?}: offsets are whole minutes");
    Ok((east_s / 60) as i32)
}

/// An RFC 3339 instant → UTC ms.
pub fn parse_start(s: &str) -> anyhow::Result<i64> {
    let ts: jiff::Timestamp = s
        .parse()
        .with_context(|| format!("{s:?} is not an RFC 3339 instant"))?;
    Ok(ts.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_utc_offset("+01:00").unwrap(), 60);
        assert_eq!(parse_utc_offset("+05:30").unwrap(), 330);
        assert_eq!(parse_utc_offset("-03:00").unwrap(), -180);
        assert_eq!(parse_utc_offset("Z").unwrap(), 0);
        assert_eq!(parse_utc_offset("UTC").unwrap(), 0);
        assert!(parse_utc_offset("Europe/Berlin").is_err());
        assert_eq!(
            parse_start("2026-11-28T21:00:00Z").unwrap(),
            Scenario::default().start_ms
        );
    }
}
