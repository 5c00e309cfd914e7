//! `collector.toml`: where the collector keeps its state, where it listens, which agents and
//! API clients it admits and what they may see. The doc comments on the fields are the user's
//! documentation of each key.
//!
//! A bad file is refused whole at start, with the file, the key and what was expected: the
//! collector never runs on half a config.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const DEFAULT_PATH: &str = "/etc/earshot/collector.toml";
/// The database file inside `state_dir`.
pub const DATABASE_FILE: &str = "earshot.db";
/// In a tenant list: every tenant (for an API token: the admin scope).
pub const ANY_TENANT: &str = "*";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// Directory of the collector's state; the SQLite database is `state_dir/earshot.db`.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Days of rollups kept; older hours are deleted.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Where agents connect.
    #[serde(default)]
    pub quic: QuicConfig,
    /// Where the HTTP API listens.
    #[serde(default)]
    pub http: HttpConfig,
    /// The agents allowed to send data, one `[[agents]]` table each.
    #[serde(default)]
    pub agents: Vec<AgentEntry>,
    /// Bearer tokens of the HTTP API, one `[[api_tokens]]` table each.
    #[serde(default)]
    pub api_tokens: Vec<ApiTokenEntry>,
    /// Per-tenant settings, `[tenants.NAME]`. A tenant needs no entry to be stored or queried.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// Live listener counts (`/live`, `live/history`, `live/stream`).
    #[serde(default)]
    pub live: LiveConfig,
}

/// `[live]`: the live listener counts the agents send as datagrams, kept in memory with their
/// recent history and saved to `state_dir/live.db` so that a restart keeps them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Seconds of history kept per tenant and stream (what `live/history` can show). Held in
    /// memory: at most one point per second per stream, fewer when the count is steady.
    #[serde(default = "default_live_retention")]
    pub live_retention_secs: u64,
    /// A host (agent) whose samples for a stream stop is dropped from the live sum after this
    /// many seconds. Keep it a few times the agents' `[live] interval_secs`.
    #[serde(default = "default_stale_after")]
    pub stale_after_secs: u64,
    /// Seconds between two saves of the live state to `state_dir/live.db` (it is also saved
    /// on shutdown). A crash loses at most this much history.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval_secs: u64,
    /// Seconds between two heartbeats (SSE comments) on an idle `live/stream`, which keep
    /// proxies from closing it and let clients notice a dead connection.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            live_retention_secs: default_live_retention(),
            stale_after_secs: default_stale_after(),
            snapshot_interval_secs: default_snapshot_interval(),
            heartbeat_secs: default_heartbeat(),
        }
    }
}

impl LiveConfig {
    pub fn settings(&self) -> crate::live::LiveSettings {
        crate::live::LiveSettings {
            retention_ms: self.live_retention_secs as i64 * 1000,
            stale_after_ms: self.stale_after_secs as i64 * 1000,
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicConfig {
    /// UDP address agents connect to, `IP:port`.
    #[serde(default = "default_quic_listen")]
    pub listen: SocketAddr,
    /// PEM certificate (chain) the collector presents to agents.
    #[serde(default = "default_cert_file")]
    pub cert_file: PathBuf,
    /// PEM private key of that certificate. Keep it 0600.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            listen: default_quic_listen(),
            cert_file: default_cert_file(),
            key_file: default_key_file(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// TCP address of the HTTP API, `IP:port`. The API speaks plain HTTP: put a TLS proxy in
    /// front of it before exposing it beyond the host.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Longest `from`..`to` range one query may ask for, in days.
    #[serde(default = "default_max_range_days")]
    pub max_range_days: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            max_range_days: default_max_range_days(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// The agent's id, as in its `[collector] agent_id`.
    pub id: String,
    /// SHA-256 (64 hex digits) of the agent's token, as `earshot-collector enroll-agent`
    /// prints it. The token itself stays on the agent.
    pub token_sha256: Sha256Digest,
    /// Tenants this agent may report for; `"*"` = any. A batch with any other tenant is
    /// refused whole.
    pub tenants: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenEntry {
    /// Who holds the token (shown in logs, never the token).
    pub name: String,
    /// SHA-256 (64 hex digits) of the bearer token.
    pub token_sha256: Sha256Digest,
    /// Tenants this token may read; `"*"` = all, and the admin scope.
    pub tenants: Vec<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// IANA time zone of the tenant's local hours and days ("Europe/Berlin"). Default: UTC.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

/// A SHA-256 digest written as 64 hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn of(data: &[u8]) -> Sha256Digest {
        use sha2::Digest;
        Sha256Digest(sha2::Sha256::digest(data).into())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", hex::encode(self.0))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| {
            serde::de::Error::custom(format!("expected 64 hex digits (a SHA-256), got {text:?}"))
        })?;
        Ok(Sha256Digest(out))
    }
}

/// Whether `tenants` (a config list) admits `tenant`.
pub fn allows(tenants: &[String], tenant: &str) -> bool {
    tenants.iter().any(|t| t == ANY_TENANT || t == tenant)
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/earshot-collector")
}
fn default_retention_days() -> u32 {
    400
}
fn default_quic_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4433))
}
fn default_cert_file() -> PathBuf {
    PathBuf::from("/etc/earshot/collector.crt")
}
fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/earshot/collector.key")
}
fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_range_days() -> u32 {
    400
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_live_retention() -> u64 {
    7200
}
fn default_stale_after() -> u64 {
    30
}
fn default_snapshot_interval() -> u64 {
    60
}
fn default_heartbeat() -> u64 {
    15
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not TOML, or a value has the wrong type or shape.
    #[error("{path}{}: {key}: {reason}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: String,
        reason: String,
    },
}

impl ConfigError {
    /// The offending key (`quic.listen`, `agents[1].tenants`), or `(file)` for syntax errors.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

impl CollectorConfig {
    pub fn load(path: &Path) -> Result<CollectorConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        CollectorConfig::parse(&text, path)
    }

    /// Parses and checks `text`; `path` is only used to name the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<CollectorConfig, ConfigError> {
        let config: CollectorConfig =
            serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let line = inner
                    .span()
                    .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
                let key = if key == "." || key.is_empty() {
                    "(file)".to_string()
                } else {
                    key
                };
                ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    key,
                    reason: inner.message().to_string(),
                }
            })?;
        config
            .check()
            .map_err(|(key, reason)| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: None,
                key,
                reason,
            })?;
        Ok(config)
    }

    /// What serde cannot say: ranges, uniqueness, references.
    fn check(&self) -> Result<(), (String, String)> {
        if self.retention_days == 0 {
            return Err(("retention_days".into(), "expected at least 1 day".into()));
        }
        if self.http.max_range_days == 0 {
            return Err((
                "http.max_range_days".into(),
                "expected at least 1 day".into(),
            ));
        }
        let live = &self.live;
        if !(60..=7 * 86_400).contains(&live.live_retention_secs) {
            return Err((
                "live.live_retention_secs".into(),
                "expected between 60 seconds and 7 days (604800)".into(),
            ));
        }
        if !(1..=86_400).contains(&live.stale_after_secs) {
            return Err((
                "live.stale_after_secs".into(),
                "expected between 1 and 86400 seconds".into(),
            ));
        }
        if !(1..=86_400).contains(&live.snapshot_interval_secs) {
            return Err((
                "live.snapshot_interval_secs".into(),
                "expected between 1 and 86400 seconds".into(),
            ));
        }
        if !(1..=300).contains(&live.heartbeat_secs) {
            return Err((
                "live.heartbeat_secs".into(),
                "expected between 1 and 300 seconds".into(),
            ));
        }
        let mut ids = BTreeSet::new();
        for (i, agent) in self.agents.iter().enumerate() {
            if agent.id.trim().is_empty() {
                return Err((
                    format!("agents[{i}].id"),
                    "expected a non-empty agent id".into(),
                ));
            }
            if !ids.insert(agent.id.as_str()) {
                return Err((
                    format!("agents[{i}].id"),
                    format!("agent {:?} is listed twice", agent.id),
                ));
            }
            check_tenants(&agent.tenants)
                .map_err(|reason| (format!("agents[{i}].tenants"), reason))?;
        }
        let mut names = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for (i, token) in self.api_tokens.iter().enumerate() {
            if !names.insert(token.name.as_str()) {
                return Err((
                    format!("api_tokens[{i}].name"),
                    format!("token {:?} is listed twice", token.name),
                ));
            }
            if !hashes.insert(token.token_sha256.0) {
                return Err((
                    format!("api_tokens[{i}].token_sha256"),
                    "the same token is listed twice".into(),
                ));
            }
            check_tenants(&token.tenants)
                .map_err(|reason| (format!("api_tokens[{i}].tenants"), reason))?;
        }
        for (name, tenant) in &self.tenants {
            if jiff::tz::TimeZone::get(&tenant.timezone).is_err() {
                return Err((
                    format!("tenants.{name}.timezone"),
                    format!(
                        "expected an IANA time zone name like \"Europe/Berlin\", got {:?}",
                        tenant.timezone
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn database_path(&self) -> PathBuf {
        self.state_dir.join(DATABASE_FILE)
    }

    /// The live state's snapshot file, `state_dir/live.db`.
    pub fn live_db_path(&self) -> PathBuf {
        self.state_dir.join(crate::live::snapshot::LIVE_DB_FILE)
    }

    pub fn agent(&self, id: &str) -> Option<&AgentEntry> {
        self.agents.iter().find(|a| a.id == id)
    }

    /// What the HTTP API needs of this config.
    pub fn api_config(&self) -> crate::api::ApiConfig {
        crate::api::ApiConfig {
            tokens: self
                .api_tokens
                .iter()
                .map(|t| crate::api::ApiToken {
                    name: t.name.clone(),
                    token_sha256: t.token_sha256.0,
                    tenants: t.tenants.clone(),
                })
                .collect(),
            tenant_timezones: self
                .tenants
                .iter()
                .map(|(name, t)| (name.clone(), t.timezone.clone()))
                .collect(),
            max_range_days: self.http.max_range_days,
        }
    }
}

fn check_tenants(tenants: &[String]) -> Result<(), String> {
    if tenants.is_empty() {
        return Err("expected at least one tenant name, or \"*\" for all".into());
    }
    if let Some(t) = tenants.iter().find(|t| t.trim().is_empty()) {
        return Err(format!("expected tenant names, got {t:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn full() -> String {
        format!(
            r#"
state_dir = "/tmp/earshot-state"
retention_days = 30
[quic]
listen = "127.0.0.1:4433"
cert_file = "/etc/earshot/collector.crt"
key_file = "/etc/earshot/collector.key"
[http]
listen = "127.0.0.1:8080"
max_range_days = 90
[[agents]]
id = "agent-1"
token_sha256 = "{HASH}"
tenants = ["*"]
[[agents]]
id = "agent-2"
token_sha256 = "{HASH}"
tenants = ["radio1", "radio2"]
[[api_tokens]]
name = "admin"
token_sha256 = "{HASH}"
tenants = ["*"]
[tenants.radio1]
timezone = "Europe/Berlin"
[live]
live_retention_secs = 3600
stale_after_secs = 10
snapshot_interval_secs = 30
heartbeat_secs = 5
"#
        )
    }

    fn parse(text: &str) -> Result<CollectorConfig, ConfigError> {
        CollectorConfig::parse(text, Path::new("/etc/earshot/collector.toml"))
    }

    /// Asserts that `text` fails naming the file, `key`, and with `expected` in the reason.
    fn fails(text: &str, key: &str, expected: &str) {
        let err = parse(text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/earshot/collector.toml"), "{msg}");
        assert_eq!(err.key(), Some(key), "{msg}");
        assert!(msg.contains(expected), "expected {expected:?} in: {msg}");
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(&full()).unwrap();
        assert_eq!(c.retention_days, 30);
        assert_eq!(c.quic.listen, "127.0.0.1:4433".parse().unwrap());
        assert_eq!(c.http.max_range_days, 90);
        assert_eq!(c.agents.len(), 2);
        assert_eq!(c.agents[0].token_sha256.to_string(), HASH);
        assert!(allows(&c.agents[0].tenants, "anything"));
        assert!(allows(&c.agents[1].tenants, "radio2") && !allows(&c.agents[1].tenants, "radio3"));
        assert_eq!(c.tenants["radio1"].timezone, "Europe/Berlin");
        assert_eq!(
            (
                c.live.live_retention_secs,
                c.live.stale_after_secs,
                c.live.snapshot_interval_secs,
                c.live.heartbeat_secs
            ),
            (3600, 10, 30, 5)
        );
        assert_eq!(c.live.settings().stale_after_ms, 10_000);
        assert_eq!(c.live_db_path(), Path::new("/tmp/earshot-state/live.db"));
        assert_eq!(
            c.database_path(),
            Path::new("/tmp/earshot-state/earshot.db")
        );
    }

    #[test]
    fn an_empty_config_takes_the_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.state_dir, Path::new("/var/lib/earshot-collector"));
        assert_eq!(c.retention_days, 400);
        assert_eq!(c.quic.listen.port(), 4433);
        assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(c.agents.is_empty() && c.api_tokens.is_empty());
        assert_eq!(c.live.live_retention_secs, 7200);
        assert_eq!(c.live.stale_after_secs, 30);
        assert_eq!(c.live.snapshot_interval_secs, 60);
        assert_eq!(c.live.heartbeat_secs, 15);
    }

    #[test]
    fn live_values_out_of_range() {
        fails(
            "[live]\nlive_retention_secs = 10\n",
            "live.live_retention_secs",
            "between 60 seconds",
        );
        fails(
            "[live]\nstale_after_secs = 0\n",
            "live.stale_after_secs",
            "between 1",
        );
        fails(
            "[live]\nsnapshot_interval_secs = 0\n",
            "live.snapshot_interval_secs",
            "between 1",
        );
        fails(
            "[live]\nheartbeat_secs = 0\n",
            "live.heartbeat_secs",
            "between 1",
        );
        fails(
            "[live]\nstale_after = 5\n",
            "live.stale_after",
            "unknown field",
        );
    }

    #[test]
    fn syntax_error() {
        let err = parse("state_dir = \"/x\"\nretention_days = = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("/etc/earshot/collector.toml:2: "), "{err}");
    }

    #[test]
    fn unknown_top_level_key() {
        fails("retention = 3\n", "retention", "unknown field `retention`");
    }

    #[test]
    fn unknown_nested_key() {
        fails(
            "[quic]\nlisten_addr = \"127.0.0.1:1\"\n",
            "quic.listen_addr",
            "unknown field `listen_addr`",
        );
    }

    #[test]
    fn wrong_type() {
        fails(
            "retention_days = \"long\"\n",
            "retention_days",
            "expected u32",
        );
    }

    #[test]
    fn bad_socket_address() {
        fails(
            "[http]\nlisten = \"localhost\"\n",
            "http.listen",
            "socket address",
        );
    }

    #[test]
    fn bad_token_hash() {
        fails(
            "[[agents]]\nid = \"a\"\ntoken_sha256 = \"abc\"\ntenants = [\"*\"]\n",
            "agents[0].token_sha256",
            "64 hex digits",
        );
    }

    #[test]
    fn missing_required_key() {
        fails(
            &format!("[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\n"),
            "agents[0]",
            "missing field `tenants`",
        );
    }

    #[test]
    fn empty_tenant_list() {
        fails(
            &format!("[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = []\n"),
            "agents[0].tenants",
            "at least one tenant",
        );
    }

    #[test]
    fn duplicate_agent() {
        let one = format!("[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"*\"]\n");
        fails(&format!("{one}{one}"), "agents[1].id", "listed twice");
    }

    #[test]
    fn unknown_time_zone() {
        fails(
            "[tenants.radio1]\ntimezone = \"Europe/Atlantis\"\n",
            "tenants.radio1.timezone",
            "IANA time zone",
        );
    }

    #[test]
    fn zero_retention() {
        fails("retention_days = 0\n", "retention_days", "at least 1 day");
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = CollectorConfig::load(Path::new("/nonexistent/collector.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/collector.toml"), "{err}");
    }
}
