//! `agent.toml`: what the agent reads, how lines become tenants, streams and sessions, and
//! where it ships. Every key has a default except the collector link. Each section's struct
//! lives with the module that uses it (`[inputs]` and `[sessions]` in `ingest`, `[routing]`
//! in `route`, `[classify]` in `classify`, `[collector]` in `ship`, `[live]` in `live`,
//! `[spool]` in `spool`, `[limits]` in `accumulate`) and checks its own keys; this module
//! composes them and checks what spans sections. Only `cli` and `daemon` import it. The doc
//! comments of the sections' fields are the user's documentation of each key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::accumulate::LimitsConfig;
use crate::classify::ClassifyConfig;
use crate::ingest::{InputsConfig, SessionConfig};
use crate::route::RoutingConfig;
use crate::ship::LinkConfig;
use crate::spool::SpoolConfig;

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

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/earshot-agent")
}
fn default_secret_file() -> PathBuf {
    PathBuf::from("/etc/earshot/identity.secret")
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

    /// Checks what serde cannot: each section checks its own keys (values in range, time
    /// zones that exist, files that must be there); what spans sections is checked here.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let section = |name: &str, r: Result<(), (String, String)>| {
            r.map_err(|(key, message)| invalid(&format!("{name}.{key}"), message))
        };
        section("inputs", self.inputs.validate())?;
        section("sessions", self.sessions.validate())?;
        section("routing", self.routing.validate())?;
        self.classify
            .validate()
            .map_err(|e| invalid(&format!("classify.{}", e.key), e.message))?;
        if let Some(live) = &self.live {
            live.validate().map_err(|e| invalid(&e.key, e.message))?;
        }
        section("spool", self.spool.validate())?;
        section("limits", self.limits.validate())?;
        Ok(())
    }

    /// Reads the identity secret. Required wherever listeners are hashed.
    pub fn read_secret(&self) -> Result<Vec<u8>, ConfigError> {
        let path = &self.secret_file;
        let raw = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        crate::perms::warn_if_loose(path, "secret_file");
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

#[cfg(test)]
mod tests {
    use earshot_common::tenant::TenantName;

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
