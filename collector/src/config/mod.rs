//! `collector.toml`: where the collector keeps its state, where it listens, which agents and
//! API clients it admits and what they may see. Each section is read and checked in its own
//! module; this one composes them and says what spans sections (the API's view, paths in
//! `state_dir`). The doc comments on the fields are the user's documentation of each key.
//!
//! A bad file is refused whole at start, with the file, the key and what was expected: the
//! collector never runs on half a config.

mod agents;
mod api;
#[cfg(feature = "apps")]
mod apps;
mod events;
mod limits;
mod live;
mod quic;
mod secret;
mod tenants;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use earshot_common::tenant::TenantName;
use serde::Deserialize;

#[cfg(not(feature = "apps"))]
pub use crate::sources::SourcesConfig;
pub use agents::{AgentEntry, allows};
pub use api::{ApiTokenEntry, HttpConfig, TokenScope};
#[cfg(feature = "apps")]
pub use apps::{APPS_DB_FILE, SourcesConfig};
pub use events::EventsConfig;
pub use limits::{LimitsConfig, MAX_LIMIT};
pub use live::LiveConfig;
pub use quic::QuicConfig;
pub use secret::Sha256Digest;
pub use tenants::TenantConfig;

pub const DEFAULT_PATH: &str = "/etc/earshot/collector.toml";
/// The database file inside `state_dir`.
pub const DATABASE_FILE: &str = "earshot.db";
/// In a tenant list: every tenant (for an API token: the admin scope).
pub const ANY_TENANT: &str = earshot_common::tenant::ALL_TENANTS;

/// A section's check: `Err((key, what was expected))`.
type Check = Result<(), (String, String)>;

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
    /// Per-tenant settings, `[tenants.NAME]`. A tenant needs no entry to be stored or queried;
    /// NAME must be a tenant name (see [`earshot_common::tenant`]).
    #[serde(default)]
    pub tenants: BTreeMap<TenantName, TenantConfig>,
    /// Live listener counts (`/live`, `live/history`, `live/stream`).
    #[serde(default)]
    pub live: LiveConfig,
    /// App downloads and engagement, `[sources.appstore]`, `[sources.google_play]`,
    /// `[sources.matomo]`. Each poller runs only when its table is present.
    #[serde(default)]
    pub sources: SourcesConfig,
    /// The platform's own events (`POST /api/v1/tenants/{tenant}/events`).
    #[serde(default)]
    pub events: EventsConfig,
    /// Cardinality bounds on what the store keeps per tenant and UTC hour.
    #[serde(default)]
    pub limits: LimitsConfig,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/earshot-collector")
}
fn default_retention_days() -> u32 {
    400
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
    fn check(&self) -> Check {
        if self.retention_days == 0 {
            return Err(("retention_days".into(), "expected at least 1 day".into()));
        }
        self.http.check()?;
        self.live.check()?;
        self.events.check()?;
        self.limits.check()?;
        #[cfg(feature = "apps")]
        self.sources.check()?;
        agents::check(&self.agents)?;
        api::check_tokens(&self.api_tokens)?;
        tenants::check(&self.tenants)
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
}

pub(crate) fn scope_texts(scopes: &[earshot_common::tenant::Scope]) -> Vec<String> {
    scopes.iter().map(|s| s.as_str().to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256("test").
    pub const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

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

    pub fn parse(text: &str) -> Result<CollectorConfig, ConfigError> {
        CollectorConfig::parse(text, Path::new("/etc/earshot/collector.toml"))
    }

    /// Asserts that `text` fails naming the file, `key`, and with `expected` in the reason.
    pub fn fails(text: &str, key: &str, expected: &str) {
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
        let api = crate::api::ApiConfig::from_config(&c);
        assert_eq!(api.tokens[0].tenants, ["*"]);
        assert_eq!(api.tenant_timezones["radio1"], "Europe/Berlin");
        assert_eq!(api.max_range_days, 90);
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
    fn zero_retention() {
        fails("retention_days = 0\n", "retention_days", "at least 1 day");
        fails(
            "[http]\nmax_range_days = 0\n",
            "http.max_range_days",
            "at least 1 day",
        );
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = CollectorConfig::load(Path::new("/nonexistent/collector.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/collector.toml"), "{err}");
    }

    /// The example the package installs as /etc/earshot/collector.toml is valid as it is.
    #[test]
    fn the_packaged_collector_toml_is_valid() {
        let path = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../packaging/collector.toml"
        ));
        let text = std::fs::read_to_string(path).unwrap();
        CollectorConfig::parse(&text, path).unwrap();
    }
}
