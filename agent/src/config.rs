//! `agent.toml`: what the agent reads, how lines become tenants, streams and sessions, and
//! where it ships. Every key has a default except the collector link; the doc comments here
//! are the user's documentation of each key (the README's table is made from them).

use std::path::{Path, PathBuf};

use earshot_common::tenant::TenantName;
use serde::Deserialize;

use crate::ship::LinkConfig;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Where the spool (SQLite), file checkpoints and open sessions live.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// File holding the identity secret shared by every agent of the deployment (hex or raw,
    /// at least 16 bytes). Listener hashes are keyed from it per tenant and month.
    #[serde(default = "default_secret_file")]
    pub secret_file: PathBuf,
    #[serde(default)]
    pub inputs: InputsConfig,
    #[serde(default)]
    pub sessions: SessionConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub classify: ClassifyConfig,
    /// The collector to ship to. Needed by `run` and `ingest` (not by `ingest --dry-run`).
    pub collector: Option<LinkConfig>,
    /// `[live]`: live listener counts from HAProxy stick tables and Icecast, polled by `run`
    /// and sent to the collector as datagrams. Without it nothing is polled.
    pub live: Option<crate::live::LiveConfig>,
    /// `[spool]`: how much the agent keeps while the collector cannot take batches.
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// The `[limits]` table: the cardinality bounds per (tenant, UTC hour). The heaviest
/// streams and values are kept exactly, the rest folded into `(other)`; totals stay exact.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Most streams kept per (tenant, hour).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Most values kept per (tenant, hour, dimension).
    #[serde(default = "default_max_values")]
    pub max_values: usize,
}

fn default_max_streams() -> usize {
    200
}
fn default_max_values() -> usize {
    500
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_streams: default_max_streams(),
            max_values: default_max_values(),
        }
    }
}

/// The `[spool]` table: the bound on what waits for the collector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Most bytes of unacknowledged batches kept in the spool (encoded size). When a commit
    /// takes the spool past it, batches are dropped by `when_full`, logged as a warning and
    /// counted (`earshot_agent_spool_dropped_batches_total` in the state, and in the log).
    /// Default 1 GiB.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// Which batches go when the spool is full: `"drop_oldest"` (default: the newest hours
    /// are kept, the oldest unsent ones are lost) or `"drop_newest"` (what is spooled stays;
    /// new batches are dropped until the collector takes some).
    #[serde(default)]
    pub when_full: SpoolFullPolicy,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFullPolicy {
    #[default]
    DropOldest,
    DropNewest,
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: default_spool_max_bytes(),
            when_full: SpoolFullPolicy::default(),
        }
    }
}

/// Warns when a secrets file can be read by any user (the packages install secrets 0600 or
/// 0640 root:earshot): the identity secret and tokens are what keeps listeners pseudonymous
/// and agents authentic.
pub fn warn_if_loose(path: &Path, key: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            tracing::warn!(
                file = %path.display(),
                "{key}: the file is readable by any user (mode {mode:04o}); it holds a secret: chmod 600 it"
            );
        }
    }
}

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

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Default tenant = backend name with this prefix removed.
    #[serde(default = "default_backend_prefix")]
    pub backend_prefix: String,
    /// Rules tried in order before the default; the first that matches decides.
    #[serde(default)]
    pub rules: Vec<RouteRule>,
}

/// One routing rule. Every given `match_*` must match. `tenant` sets the tenant, `stream`
/// the stream (default: the mount path, or the playlist's directory for HLS); `ignore = true`
/// drops matching lines (counted by status).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Backend name glob, e.g. "be_radio*".
    pub match_backend: Option<String>,
    /// Request path prefix, e.g. "/radio1/".
    pub match_path_prefix: Option<String>,
    /// Host (from an HTTP/2 absolute URI, or a captured "Host" header), glob.
    pub match_host: Option<String>,
    pub tenant: Option<String>,
    pub stream: Option<String>,
    #[serde(default)]
    pub ignore: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {
    /// Directory with OPAWG user-agents-v2 JSON files (apps.json, bots.json, …) to use on
    /// top of the built-in User-Agent rules.
    pub opawg_dir: Option<PathBuf>,
    /// MaxMind-format country database (GeoLite2-Country or DB-IP Lite `.mmdb`). Without
    /// one every country is "unknown".
    pub geoip_db: Option<PathBuf>,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/earshot-agent")
}
fn default_secret_file() -> PathBuf {
    PathBuf::from("/etc/earshot/identity.secret")
}
fn default_captured_headers() -> Vec<String> {
    vec!["User-Agent".into(), "Referer".into()]
}
fn default_max_line_bytes() -> usize {
    64 * 1024
}
fn default_min_session() -> u64 {
    60
}
fn default_hls_gap() -> u64 {
    180
}
fn default_backend_prefix() -> String {
    "be_".into()
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

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            backend_prefix: default_backend_prefix(),
            rules: Vec::new(),
        }
    }
}

/// A config that could not be used: the file, the key and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl AgentConfig {
    /// The config every key's default gives (what `ingest --dry-run` uses without `--config`).
    pub fn defaults() -> AgentConfig {
        toml::from_str("").expect("an empty config is valid")
    }

    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<AgentConfig, ConfigError> {
        let config: AgentConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().replace('\n', " | "),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    /// Checks what serde cannot: values in range, time zones that exist, files that must be there.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        if let Some(tz) = &self.inputs.log_timezone {
            crate::clock::LogClock::new(Some(tz)).map_err(|e| invalid("inputs.log_timezone", e))?;
        }
        if self.inputs.max_line_bytes < 256 {
            return Err(invalid(
                "inputs.max_line_bytes",
                "must be at least 256".into(),
            ));
        }
        if !self
            .inputs
            .captured_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("user-agent"))
        {
            return Err(invalid(
                "inputs.captured_headers",
                "must name \"User-Agent\": listeners are told apart by address and User-Agent"
                    .into(),
            ));
        }
        if self.sessions.min_session_secs > 24 * 3600 {
            return Err(invalid(
                "sessions.min_session_secs",
                "must be at most one day".into(),
            ));
        }
        if self.sessions.hls_session_gap_secs == 0 || self.sessions.hls_session_gap_secs > 6 * 3600
        {
            return Err(invalid(
                "sessions.hls_session_gap_secs",
                "must be between 1 and 21600 seconds".into(),
            ));
        }
        for (i, rule) in self.routing.rules.iter().enumerate() {
            if rule.tenant.is_none() && rule.stream.is_none() && !rule.ignore {
                return Err(invalid(
                    &format!("routing.rules[{i}]"),
                    "sets nothing: give `tenant`, `stream` or `ignore = true`".into(),
                ));
            }
            if let Some(t) = &rule.tenant
                && let Err(e) = TenantName::new(t.as_str())
            {
                return Err(invalid(
                    &format!("routing.rules[{i}].tenant"),
                    e.to_string(),
                ));
            }
        }
        if let Some(dir) = &self.classify.opawg_dir
            && !dir.is_dir()
        {
            return Err(invalid(
                "classify.opawg_dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        if let Some(db) = &self.classify.geoip_db
            && !db.is_file()
        {
            return Err(invalid(
                "classify.geoip_db",
                format!("{} does not exist", db.display()),
            ));
        }
        if let Some(live) = &self.live {
            live.validate().map_err(|e| invalid(&e.key, e.message))?;
        }
        if self.spool.max_bytes < 64 * 1024 {
            return Err(invalid("spool.max_bytes", "must be at least 65536".into()));
        }
        if !(1..=10_000).contains(&self.limits.max_streams) {
            return Err(invalid(
                "limits.max_streams",
                "must be between 1 and 10000 (as in the collector)".into(),
            ));
        }
        if !(1..=10_000).contains(&self.limits.max_values) {
            return Err(invalid(
                "limits.max_values",
                "must be between 1 and 10000 (as in the collector)".into(),
            ));
        }
        Ok(())
    }

    /// Reads the identity secret. Required wherever listeners are hashed.
    pub fn read_secret(&self) -> Result<Vec<u8>, ConfigError> {
        let path = &self.secret_file;
        let raw = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        warn_if_loose(path, "secret_file");
        let text = String::from_utf8_lossy(&raw);
        let trimmed = text.trim();
        let secret = match hex::decode(trimmed) {
            Ok(bytes) if !trimmed.is_empty() => bytes,
            _ => raw.clone(),
        };
        if secret.len() < 16 {
            return Err(ConfigError::Invalid {
                path: path.clone(),
                key: "secret_file".into(),
                message: "the identity secret must be at least 16 bytes".into(),
            });
        }
        Ok(secret)
    }
}

/// Whether `name` is a tenant name: [`TenantName`]'s rule, the collector's too.
pub fn valid_tenant(name: &str) -> bool {
    TenantName::is_valid(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(text, Path::new("agent.toml"))
    }

    #[test]
    fn empty_config_has_the_documented_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.sessions.min_session_secs, 60);
        assert_eq!(c.sessions.hls_session_gap_secs, 180);
        assert_eq!(c.inputs.captured_headers, ["User-Agent", "Referer"]);
        assert_eq!(c.routing.backend_prefix, "be_");
    }

    #[test]
    fn unknown_key_names_the_key() {
        let e = parse("[sessions]\nmin_sesion_secs = 5\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("agent.toml") && e.contains("min_sesion_secs"),
            "{e}"
        );
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = parse("[sessions]\nmin_session_secs = \"a minute\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("min_session_secs"), "{e}");
    }

    #[test]
    fn bad_time_zone_is_refused() {
        let e = parse("[inputs]\nlog_timezone = \"Mars/Olympus\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("inputs.log_timezone"), "{e}");
    }

    #[test]
    fn rule_without_effect_is_refused() {
        let e = parse("[[routing.rules]]\nmatch_backend = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routing.rules[0]"), "{e}");
    }

    #[test]
    fn bad_tenant_name_is_refused() {
        let e = parse("[[routing.rules]]\nmatch_backend = \"x\"\ntenant = \"a b\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("routing.rules[0].tenant"), "{e}");
        assert!(e.contains("\"a b\" is not a tenant name"), "{e}");
        assert!(e.contains(TenantName::RULE), "{e}");
        assert!(parse("[[routing.rules]]\nmatch_backend = \"x\"\ntenant = \"..\"\n").is_err());
        assert!(
            parse("[[routing.rules]]\nmatch_backend = \"x\"\ntenant = \"radio-1.b_c\"\n").is_ok()
        );
    }

    #[test]
    fn live_section_is_read_and_checked() {
        let c = parse(
            "[live]\ninterval_secs = 2\n[live.haproxy]\nsocket = \"/run/haproxy/admin.sock\"\n\
             tables = [{ table = \"st\", count = \"conn_cur\" }]\n",
        )
        .unwrap();
        assert_eq!(c.live.unwrap().interval_secs, 2);
        assert!(parse("").unwrap().live.is_none());
        let e = parse("[live]\ninterval_secs = 0\n").unwrap_err();
        assert!(
            matches!(&e, ConfigError::Invalid { key, .. } if key == "live.interval_secs"),
            "{e}"
        );
        assert!(
            e.to_string()
                .starts_with("agent.toml: key `live.interval_secs`"),
            "{e}"
        );
        let e = parse("[live]\nintervall = 1\n").unwrap_err().to_string();
        assert!(e.contains("intervall"), "{e}");
    }

    #[test]
    fn zero_gap_is_refused() {
        let e = parse("[sessions]\nhls_session_gap_secs = 0\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hls_session_gap_secs"), "{e}");
    }
}

#[cfg(test)]
mod shipped_example {
    use super::*;

    /// The example the package installs as /etc/earshot/agent.toml parses (a `[collector]`
    /// table is added at enrolment).
    #[test]
    fn the_packaged_agent_toml_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/agent.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        let config = toml::from_str::<AgentConfig>(&text).map_err(|e| e.to_string());
        assert!(config.is_ok(), "{config:?}");
    }
}
