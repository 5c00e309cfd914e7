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

/// `[limits]`: how many distinct names the store keeps per tenant and UTC hour, so that a
/// misconfigured or hostile agent can grow neither the database nor a query's answer without
/// limit. A stream or dimension value that is new to an hour whose budget is spent is merged
/// into `(other)` (the stream `(other)`, the value `(other)`), which counts against no
/// budget; totals (sessions, listening time, unique listeners, concurrency) stay exact.
/// Among the new names of one batch the heaviest (sessions, then listening time) come
/// first; a name once stored is never folded later. Folded names are counted in `/metrics`
/// (`earshot_collector_folded_total{tenant,what}`) and logged once per tenant, hour and
/// what. The agents apply the same bounds (`[limits]` in agent.toml) before they ship.
///
/// ```toml
/// [limits]
/// max_streams = 200   # streams per tenant and hour
/// max_values = 500    # values per tenant, hour and dimension (client, country, …)
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Streams kept per tenant and UTC hour, `(other)` aside. Default 200; 1 to 10000.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Values kept per tenant, UTC hour and dimension (client, device, os, country,
    /// referrer, source, rendition), `(other)` aside. Default 500; 1 to 10000.
    #[serde(default = "default_max_values")]
    pub max_values: usize,
}

/// The largest `[limits]` accepted: past it an hour's breakdown is no longer an answer.
pub const MAX_LIMIT: usize = 10_000;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_streams: default_max_streams(),
            max_values: default_max_values(),
        }
    }
}

impl LimitsConfig {
    pub fn store_limits(&self) -> crate::store::Limits {
        crate::store::Limits {
            max_streams: self.max_streams,
            max_values: self.max_values,
        }
    }
}

/// `[sources]`: where app downloads and engagement come from. The tables' keys are
/// documented on their structs in `sources/`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// App Store Connect Sales reports: a team API key, the vendor number, app → tenant.
    pub appstore: Option<crate::sources::appstore::AppStoreConfig>,
    /// Google Play install statistics from the Play Console's Cloud Storage bucket.
    pub google_play: Option<crate::sources::googleplay::GooglePlayConfig>,
    /// Matomo: the server, a token file and tenant → site id.
    pub matomo: Option<crate::sources::matomo::MatomoConfig>,
}

/// `[events]`: how long posted events are kept in memory, and how many at most.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Seconds an event is kept (what `GET …/events` can return). Default 7200 (2 h).
    #[serde(default = "default_events_retention")]
    pub retention_secs: u64,
    /// The most events kept, all tenants together; past it the oldest are dropped (and
    /// counted as `dropped`). Each event is at most 4 KiB, so this bounds the memory.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_secs: default_events_retention(),
            max_events: default_max_events(),
        }
    }
}

impl EventsConfig {
    pub fn limits(&self) -> crate::events::EventLimits {
        crate::events::EventLimits {
            retention_ms: self.retention_secs as i64 * 1000,
            max_events: self.max_events,
        }
    }
}

/// What an API token may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Read its tenants' data (every GET).
    #[default]
    Read,
    /// Only `POST …/events` for its tenants; it reads nothing.
    Ingest,
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
    /// `"read"` (default): reads its tenants. `"ingest"`: may only post events for its
    /// tenants (`POST …/events`), for the platform's own event producers.
    #[serde(default)]
    pub scope: TokenScope,
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
fn default_events_retention() -> u64 {
    7200
}
fn default_max_streams() -> usize {
    crate::store::Limits::DEFAULT_MAX_STREAMS
}
fn default_max_values() -> usize {
    crate::store::Limits::DEFAULT_MAX_VALUES
}
fn default_max_events() -> usize {
    crate::events::DEFAULT_MAX_EVENTS
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
        if !(60..=7 * 86_400).contains(&self.events.retention_secs) {
            return Err((
                "events.retention_secs".into(),
                "expected between 60 seconds and 7 days (604800)".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.events.max_events) {
            return Err((
                "events.max_events".into(),
                "expected between 1 and 1000000".into(),
            ));
        }
        for (key, value) in [
            ("limits.max_streams", self.limits.max_streams),
            ("limits.max_values", self.limits.max_values),
        ] {
            if !(1..=MAX_LIMIT).contains(&value) {
                return Err((
                    key.into(),
                    format!("expected between 1 and {MAX_LIMIT}, got {value}"),
                ));
            }
        }
        self.check_sources()?;
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

    /// `[sources.*]`: tenants named, ids in range.
    fn check_sources(&self) -> Result<(), (String, String)> {
        let named = |key: String, tenant: &str| {
            if tenant.trim().is_empty() || tenant == ANY_TENANT {
                Err((key, format!("expected a tenant name, got {tenant:?}")))
            } else {
                Ok(())
            }
        };
        if let Some(a) = &self.sources.appstore {
            if !(1..=365).contains(&a.backfill_days) {
                return Err((
                    "sources.appstore.backfill_days".into(),
                    "expected between 1 and 365 days".into(),
                ));
            }
            for (app, tenant) in &a.apps {
                named(format!("sources.appstore.apps.{app}"), tenant)?;
            }
        }
        if let Some(g) = &self.sources.google_play {
            if g.bucket_name().is_empty() {
                return Err((
                    "sources.google_play.bucket".into(),
                    "expected the bucket, e.g. \"pubsite_prod_rev_01234567890987654321\"".into(),
                ));
            }
            for (package, tenant) in &g.packages {
                named(format!("sources.google_play.packages.{package}"), tenant)?;
            }
        }
        if let Some(m) = &self.sources.matomo {
            for (tenant, site) in &m.sites {
                named(format!("sources.matomo.sites.{tenant}"), tenant)?;
                if *site == 0 {
                    return Err((
                        format!("sources.matomo.sites.{tenant}"),
                        "expected a Matomo site id (idSite, 1 or more)".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The app downloads and Matomo cache, `state_dir/apps.db`.
    pub fn apps_db_path(&self) -> PathBuf {
        self.state_dir.join(crate::apps::APPS_DB_FILE)
    }

    /// The tenant an app is mapped to in `[sources.appstore] apps` or
    /// `[sources.google_play] packages`.
    pub fn app_owner(
        &self,
        store: crate::sources::Store,
        app: &str,
        apple_id: Option<&str>,
    ) -> Option<String> {
        match store {
            crate::sources::Store::AppStore => self
                .sources
                .appstore
                .as_ref()?
                .tenant_for(app, apple_id)
                .map(str::to_owned),
            crate::sources::Store::GooglePlay => self
                .sources
                .google_play
                .as_ref()?
                .packages
                .get(app)
                .cloned(),
        }
    }

    /// The tokens with `scope = "ingest"`, with the tenants they may post events for.
    pub fn ingest_tokens(&self) -> Vec<crate::api::ApiToken> {
        self.api_tokens
            .iter()
            .filter(|t| t.scope == TokenScope::Ingest)
            .map(|t| crate::api::ApiToken {
                name: t.name.clone(),
                token_sha256: t.token_sha256.0,
                tenants: t.tenants.clone(),
            })
            .collect()
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
                    // An ingest token is known (so reading answers 403, not 401) but reads
                    // no tenant.
                    tenants: match t.scope {
                        TokenScope::Read => t.tenants.clone(),
                        TokenScope::Ingest => Vec::new(),
                    },
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
    fn limits_default_parse_and_are_checked() {
        let d = parse("").unwrap();
        assert_eq!((d.limits.max_streams, d.limits.max_values), (200, 500));
        assert_eq!(d.limits.store_limits(), crate::store::Limits::default());
        let c = parse("[limits]\nmax_streams = 2\nmax_values = 10000\n").unwrap();
        assert_eq!(
            c.limits.store_limits(),
            crate::store::Limits {
                max_streams: 2,
                max_values: 10_000
            }
        );
        fails(
            "[limits]\nmax_streams = 0\n",
            "limits.max_streams",
            "between 1 and 10000, got 0",
        );
        fails(
            "[limits]\nmax_values = 10001\n",
            "limits.max_values",
            "between 1 and 10000, got 10001",
        );
        fails("[limits]\nmax_values = -1\n", "limits.max_values", "");
        fails(
            "[limits]\nmax_stream = 5\n",
            "limits.max_stream",
            "unknown field `max_stream`",
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
    fn sources_events_and_token_scopes() {
        let text = format!(
            r#"
[[api_tokens]]
name = "reader"
token_sha256 = "{HASH}"
tenants = ["radio1"]
[[api_tokens]]
name = "producer"
token_sha256 = "{}"
tenants = ["radio1"]
scope = "ingest"
[events]
retention_secs = 600
max_events = 50
[sources.appstore]
key_id = "2X9R4HXF34"
issuer_id = "57246542-96fe-1a63-e053-0824d011072a"
private_key_file = "/etc/earshot/AuthKey_2X9R4HXF34.p8"
vendor_number = "85012345"
apps = {{ "1234567890" = "radio1" }}
[sources.google_play]
service_account_file = "/etc/earshot/play.json"
bucket = "gs://pubsite_prod_rev_01234567890987654321/stats/installs/"
packages = {{ "com.example.radio" = "radio1" }}
[sources.matomo]
base_url = "https://matomo.example/"
token_file = "/etc/earshot/matomo.token"
sites = {{ radio1 = 3 }}
"#,
            "a".repeat(64)
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.api_tokens[0].scope, TokenScope::Read);
        assert_eq!(c.api_tokens[1].scope, TokenScope::Ingest);
        let api = c.api_config();
        assert_eq!(api.tokens.len(), 2);
        assert!(
            api.tokens[1].tenants.is_empty(),
            "an ingest token reads nothing"
        );
        let ingest = c.ingest_tokens();
        assert_eq!(
            (ingest.len(), ingest[0].tenants.as_slice()),
            (1, &["radio1".to_string()][..])
        );
        assert_eq!(c.events.limits().retention_ms, 600_000);
        assert_eq!(c.sources.appstore.as_ref().unwrap().backfill_days, 14);
        assert_eq!(
            c.sources.matomo.as_ref().unwrap().site_for("radio1"),
            Some(3)
        );
        use crate::sources::Store;
        assert_eq!(
            c.app_owner(Store::AppStore, "sku", Some("1234567890"))
                .as_deref(),
            Some("radio1")
        );
        assert_eq!(
            c.app_owner(Store::GooglePlay, "com.example.radio", None)
                .as_deref(),
            Some("radio1")
        );
        assert_eq!(c.app_owner(Store::GooglePlay, "other", None), None);
        assert_eq!(
            c.apps_db_path(),
            Path::new("/var/lib/earshot-collector/apps.db")
        );
        let d = parse("").unwrap();
        assert_eq!(
            (d.events.retention_secs, d.events.max_events),
            (7200, 10_000)
        );
        assert!(d.sources.appstore.is_none() && d.sources.matomo.is_none());
    }

    #[test]
    fn source_and_event_mistakes() {
        fails(
            "[events]\nmax_events = 0\n",
            "events.max_events",
            "between 1",
        );
        fails(
            "[events]\nretention_secs = 5\n",
            "events.retention_secs",
            "between 60",
        );
        fails(
            &format!(
                "[[api_tokens]]\nname = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"*\"]\nscope = \"write\"\n"
            ),
            "api_tokens[0].scope",
            "unknown variant `write`",
        );
        fails(
            "[sources.matomo]\nbase_url = \"https://m/\"\ntoken_file = \"/t\"\nsites = { radio1 = 0 }\n",
            "sources.matomo.sites.radio1",
            "site id",
        );
        fails(
            "[sources.matomo]\nbase_url = \"https://m/\"\ntoken_file = \"/t\"\nsite = 1\n",
            "sources.matomo.site",
            "unknown field `site`",
        );
        fails(
            "[sources.google_play]\nservice_account_file = \"/k\"\nbucket = \"b\"\npackages = { \"com.x\" = \"\" }\n",
            "sources.google_play.packages.com.x",
            "tenant name",
        );
        fails(
            "[sources.itunes]\n",
            "sources.itunes",
            "unknown field `itunes`",
        );
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = CollectorConfig::load(Path::new("/nonexistent/collector.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/collector.toml"), "{err}");
    }
}

#[cfg(test)]
mod shipped_example {
    use super::*;

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
