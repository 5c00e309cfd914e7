//! `[inputs]` and `[sessions]` of agent.toml, and what an [`Ingestor`](super::Ingestor) is made of.

use std::path::PathBuf;

use serde::Deserialize;

use crate::accumulate::LimitsConfig;
use crate::classify::Classify;
use crate::clock::LogClock;
use crate::route::{PatternLists, RoutingConfig};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsConfig {
    /// HAProxy log files to follow (the live names, e.g. "/var/log/haproxy.log"). Their
    /// rotated siblings (`.1`, `.2.gz`, dated names) are found next to them.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Time zone the `[accept date]` of the log is written in (HAProxy writes the host's
    /// local time without a zone). An IANA name ("Europe/Berlin"), "UTC" or a fixed offset
    /// ("+05:30"). Default: the host's zone.
    pub log_timezone: Option<String>,
    /// The `capture request header` lines of the HAProxy frontend, in order. The agent reads
    /// "User-Agent" and "Referer" from these positions.
    #[serde(default = "default_captured_headers")]
    pub captured_headers: Vec<String>,
    /// Lines longer than this are counted as malformed (`too_long`) and skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_captured_headers() -> Vec<String> {
    vec!["User-Agent".into(), "Referer".into()]
}
fn default_max_line_bytes() -> usize {
    64 * 1024
}

impl Default for InputsConfig {
    fn default() -> Self {
        InputsConfig {
            files: Vec::new(),
            log_timezone: None,
            captured_headers: default_captured_headers(),
            max_line_bytes: default_max_line_bytes(),
        }
    }
}

impl InputsConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if let Some(tz) = &self.log_timezone {
            LogClock::new(Some(tz)).map_err(|e| ("log_timezone".to_string(), e))?;
        }
        if self.max_line_bytes < 256 {
            return Err(("max_line_bytes".into(), "must be at least 256".into()));
        }
        if !self
            .captured_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("user-agent"))
        {
            return Err((
                "captured_headers".into(),
                "must name \"User-Agent\": listeners are told apart by address and User-Agent"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// A session shorter than this is a short session, reported on its own.
    #[serde(default = "default_min_session")]
    pub min_session_secs: u64,
    /// HLS requests of one listener for one stream stay one session while the gap between
    /// them is under this.
    #[serde(default = "default_hls_gap")]
    pub hls_session_gap_secs: u64,
    /// Request paths (globs, `*` = anything) that are HLS playlists or segments, whatever
    /// the built-in rules (docs/traffic.md) would make of them. None by default.
    #[serde(default)]
    pub hls_path_patterns: Vec<String>,
    /// Request paths (globs) that are never sessions: counted under `not_sessions` as
    /// `ignored` (by status when not 2xx). None by default: the built-in rules already
    /// leave out pages, images, scripts, player files and status pages.
    #[serde(default)]
    pub ignore_path_patterns: Vec<String>,
    /// Request paths (globs) that are progressive mounts (one line = one session), whatever
    /// the built-in rules would make of them. None by default.
    #[serde(default)]
    pub mount_path_patterns: Vec<String>,
}

fn default_min_session() -> u64 {
    60
}
fn default_hls_gap() -> u64 {
    180
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            min_session_secs: default_min_session(),
            hls_session_gap_secs: default_hls_gap(),
            hls_path_patterns: Vec::new(),
            ignore_path_patterns: Vec::new(),
            mount_path_patterns: Vec::new(),
        }
    }
}

impl SessionConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.min_session_secs > 24 * 3600 {
            return Err(("min_session_secs".into(), "must be at most one day".into()));
        }
        if self.hls_session_gap_secs == 0 || self.hls_session_gap_secs > 6 * 3600 {
            return Err((
                "hls_session_gap_secs".into(),
                "must be between 1 and 21600 seconds".into(),
            ));
        }
        Ok(())
    }

    /// The path patterns, for the [`Router`](crate::route::Router).
    pub fn patterns(&self) -> PatternLists<'_> {
        PatternLists {
            hls: &self.hls_path_patterns,
            ignore: &self.ignore_path_patterns,
            mounts: &self.mount_path_patterns,
        }
    }
}

/// What an [`Ingestor`](super::Ingestor) is made of: the sections it reads, what `[classify]` opened, and
/// the identity secret.
pub struct IngestParts<'c> {
    pub inputs: &'c InputsConfig,
    pub sessions: &'c SessionConfig,
    pub routing: &'c RoutingConfig,
    pub limits: &'c LimitsConfig,
    pub classify: Classify,
    pub secret: Vec<u8>,
}
