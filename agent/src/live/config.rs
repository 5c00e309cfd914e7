//! The `[live]` section of `agent.toml`: which HAProxy stick tables and Icecast servers are
//! polled for current listener counts, and how their keys and mounts become tenants and
//! streams. The doc comments are the user's documentation of each key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use earshot_common::Protocol;
use regex::Regex;
use serde::Deserialize;

use earshot_common::tenant::TenantName;

/// `[live]`: live listener counts, polled every `interval_secs` and sent to the collector as
/// datagrams (latest wins; a lost one costs nothing).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Seconds between two polls of each source. Also the longest wait between two retries
    /// of a source that is down (retries start at 250 ms and double).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// `[live.haproxy]`: stick tables read over HAProxy's runtime API.
    pub haproxy: Option<HaproxyLiveConfig>,
    /// `[[live.icecast]]`: Icecast 2.4 servers whose per-mount listener counts are read.
    #[serde(default)]
    pub icecast: Vec<IcecastConfig>,
}

/// `[live.haproxy]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HaproxyLiveConfig {
    /// HAProxy's runtime API (`stats socket` line of haproxy.cfg): a unix socket path
    /// ("/run/haproxy/admin.sock", Debian's default, or "unix:/path") or "tcp:HOST:PORT".
    /// The socket needs `level operator` or `admin`: below that HAProxy hides table contents.
    #[serde(default = "default_socket")]
    pub socket: String,
    /// `[[live.haproxy.tables]]`: the stick tables to read, each on its own terms.
    pub tables: Vec<TableConfig>,
}

/// `[[live.haproxy.tables]]`: one stick table (named after the frontend or backend that holds
/// its `stick-table` line).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The table's name, as `show table` lists it.
    pub table: String,
    /// How listeners are counted:
    /// "conn_cur" — the sum of the entries' `conn_cur` (the table must `store conn_cur`). Right
    /// for progressive streams, where a listener holds one connection: entries linger until
    /// they expire, so counting entries would count people who left.
    /// "entries" — the number of entries. Right for HLS, whose listeners make short requests
    /// (`conn_cur` is near zero): key the table by listener (`src`, or address + User-Agent)
    /// with an `expire` of a few segment durations, so an entry means "fetched lately".
    pub count: CountMode,
    /// The protocol the counted listeners use: "icecast" (progressive) or "hls".
    /// Default: "icecast" when counting `conn_cur`, "hls" when counting entries.
    pub protocol: Option<ProtocolName>,
    /// The tenant every entry of this table counts for. Without it the tenant comes from the
    /// key (see `key_pattern`).
    pub tenant: Option<String>,
    /// The stream every entry of this table counts for. Without it the stream comes from the
    /// key: the `stream` group of `key_pattern`, else the whole key (e.g. the mount path of a
    /// table tracking `path`). Required (here or as a group) for `count = "entries"`, whose
    /// keys are listeners; a stream that is an IP address is never reported.
    pub stream: Option<String>,
    /// A regular expression matched against each (unescaped) key; its named groups `tenant`
    /// and `stream` give what `tenant` and `stream` do not fix. Keys that do not match are
    /// skipped (and counted). Default when the tenant is not fixed: `^/(?P<tenant>[^/]+)/`,
    /// i.e. the tenant is the key's first path segment and the stream the whole key.
    pub key_pattern: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CountMode {
    ConnCur,
    Entries,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProtocolName {
    Icecast,
    Hls,
}

impl From<ProtocolName> for Protocol {
    fn from(p: ProtocolName) -> Protocol {
        match p {
            ProtocolName::Icecast => Protocol::Icecast,
            ProtocolName::Hls => Protocol::Hls,
        }
    }
}

/// `[[live.icecast]]`: one Icecast 2.4 server.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IcecastConfig {
    /// The server's base URL, e.g. "http://127.0.0.1:8000". With `password_file` the agent
    /// reads `/admin/stats` (XML, Basic auth); without, the public `/status-json.xsl`.
    pub url: String,
    /// The admin user (`<admin-user>` of icecast.xml).
    #[serde(default = "default_icecast_user")]
    pub username: String,
    /// File holding the admin password (`<admin-password>`); surrounding whitespace is ignored.
    pub password_file: Option<PathBuf>,
    /// The tenant of every mount of this server not listed in `mounts`. Default: the mount's
    /// first path segment ("/radio1/live.mp3" → "radio1"; "/radio1.mp3" → "radio1").
    pub tenant: Option<String>,
    /// Per mount ("/live.mp3"): `{ tenant = "…", stream = "…" }`, both optional (stream
    /// defaults to the mount path). A listed mount without a source is reported with 0
    /// listeners.
    #[serde(default)]
    pub mounts: BTreeMap<String, MountConfig>,
    /// Report only the mounts listed in `mounts`.
    #[serde(default)]
    pub only_listed_mounts: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountConfig {
    pub tenant: Option<String>,
    pub stream: Option<String>,
}

fn default_interval() -> u64 {
    5
}
fn default_socket() -> String {
    "/run/haproxy/admin.sock".into()
}
fn default_icecast_user() -> String {
    "admin".into()
}

/// A mistake in `[live]`: the key (as written in agent.toml) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LiveConfigError {
    pub key: String,
    pub message: String,
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> LiveConfigError {
    LiveConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// Where HAProxy's runtime API listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SocketAddress {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for SocketAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SocketAddress::Unix(p) => write!(f, "unix:{}", p.display()),
            SocketAddress::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

impl SocketAddress {
    pub fn parse(text: &str) -> Result<SocketAddress, String> {
        if let Some(addr) = text.strip_prefix("tcp:") {
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(SocketAddress::Tcp(addr.to_string()))
                }
                _ => Err(format!("{text:?}: expected \"tcp:HOST:PORT\"")),
            }
        } else if let Some(path) = text.strip_prefix("unix:") {
            if path.starts_with('/') {
                Ok(SocketAddress::Unix(PathBuf::from(path)))
            } else {
                Err(format!("{text:?}: the unix socket path must be absolute"))
            }
        } else if text.starts_with('/') {
            Ok(SocketAddress::Unix(PathBuf::from(text)))
        } else {
            Err(format!(
                "{text:?}: expected a unix socket path (\"/run/haproxy/admin.sock\", \"unix:/path\") or \"tcp:HOST:PORT\""
            ))
        }
    }
}

impl LiveConfig {
    /// Checks what serde cannot. Keys in errors are written as in agent.toml (`live.…`).
    pub fn validate(&self) -> Result<(), LiveConfigError> {
        if self.interval_secs == 0 || self.interval_secs > 3600 {
            return Err(invalid(
                "live.interval_secs",
                "must be between 1 and 3600 seconds",
            ));
        }
        if let Some(h) = &self.haproxy {
            SocketAddress::parse(&h.socket).map_err(|m| invalid("live.haproxy.socket", m))?;
            if h.tables.is_empty() {
                return Err(invalid("live.haproxy.tables", "names no table"));
            }
            for (i, t) in h.tables.iter().enumerate() {
                KeyMapper::new(t).map_err(|(field, message)| {
                    invalid(format!("live.haproxy.tables[{i}]{field}"), message)
                })?;
            }
        }
        for (i, ice) in self.icecast.iter().enumerate() {
            let key = |k: &str| format!("live.icecast[{i}].{k}");
            if !(ice.url.starts_with("http://") || ice.url.starts_with("https://")) {
                return Err(invalid(
                    key("url"),
                    format!("{:?} is not an http(s) URL", ice.url),
                ));
            }
            if let Some(t) = &ice.tenant {
                check_tenant(t).map_err(|m| invalid(key("tenant"), m))?;
            }
            for (mount, m) in &ice.mounts {
                if !mount.starts_with('/') {
                    return Err(invalid(
                        key(&format!("mounts.{mount:?}")),
                        "a mount name starts with '/'",
                    ));
                }
                if let Some(t) = &m.tenant {
                    check_tenant(t)
                        .map_err(|msg| invalid(key(&format!("mounts.{mount:?}.tenant")), msg))?;
                }
            }
            if ice.only_listed_mounts && ice.mounts.is_empty() {
                return Err(invalid(
                    key("only_listed_mounts"),
                    "is true but `mounts` lists nothing",
                ));
            }
        }
        Ok(())
    }
}

fn check_tenant(t: &str) -> Result<(), String> {
    if TenantName::is_valid(t) {
        Ok(())
    } else {
        Err(format!(
            "{t:?} is not a tenant name (letters, digits, '-', '_', '.')"
        ))
    }
}

/// Turns a table's keys into (tenant, stream), as its config says.
#[derive(Clone, Debug)]
pub struct KeyMapper {
    tenant: Option<String>,
    stream: Option<String>,
    pattern: Option<Regex>,
}

const DEFAULT_KEY_PATTERN: &str = "^/(?P<tenant>[^/]+)/";

impl KeyMapper {
    /// Errors name the field (".key_pattern") and the problem.
    pub fn new(t: &TableConfig) -> Result<KeyMapper, (&'static str, String)> {
        if t.table.is_empty() || t.table.contains(char::is_whitespace) {
            return Err((".table", format!("{:?} is not a table name", t.table)));
        }
        if let Some(tenant) = &t.tenant {
            check_tenant(tenant).map_err(|m| (".tenant", m))?;
        }
        let pattern = match (&t.key_pattern, &t.tenant, &t.stream) {
            (Some(p), _, _) => Some(p.as_str()),
            (None, Some(_), Some(_)) => None,
            (None, Some(_), None) => None, // stream = the whole key
            (None, None, _) => Some(DEFAULT_KEY_PATTERN),
        };
        let pattern = match pattern {
            None => None,
            Some(p) => {
                let re = Regex::new(p).map_err(|e| (".key_pattern", e.to_string()))?;
                let names: Vec<&str> = re.capture_names().flatten().collect();
                if t.tenant.is_none() && !names.contains(&"tenant") {
                    return Err((
                        ".key_pattern",
                        "has no (?P<tenant>…) group and `tenant` is not set".into(),
                    ));
                }
                if t.count == CountMode::Entries && t.stream.is_none() && !names.contains(&"stream")
                {
                    return Err((
                        ".stream",
                        "a table counted by entries is keyed by listener: set `stream`, or a (?P<stream>…) group in key_pattern (the key itself must not become a stream name)".into(),
                    ));
                }
                Some(re)
            }
        };
        if pattern.is_none() && t.count == CountMode::Entries && t.stream.is_none() {
            return Err((
                ".stream",
                "a table counted by entries is keyed by listener: set `stream`, or a (?P<stream>…) group in key_pattern (the key itself must not become a stream name)".into(),
            ));
        }
        Ok(KeyMapper {
            tenant: t.tenant.clone(),
            stream: t.stream.clone(),
            pattern,
        })
    }

    /// Whether every key maps to the same (tenant, stream): then the table is reported even
    /// when it is empty (with 0 listeners).
    pub fn fixed(&self) -> Option<(&str, &str)> {
        match (&self.tenant, &self.stream, &self.pattern) {
            (Some(t), Some(s), None) => Some((t, s)),
            _ => None,
        }
    }

    /// (tenant, stream) for one key; None when the key matches no rule or names an invalid
    /// tenant.
    pub fn map<'k>(&'k self, key: &'k str) -> Option<(&'k str, &'k str)> {
        let (mut tenant, mut stream) = (self.tenant.as_deref(), self.stream.as_deref());
        if let Some(re) = &self.pattern {
            let caps = re.captures(key)?;
            if tenant.is_none() {
                tenant = caps.name("tenant").map(|m| m.as_str());
            }
            if stream.is_none() {
                stream = caps.name("stream").map(|m| m.as_str());
            }
        }
        let tenant = tenant.filter(|t| TenantName::is_valid(t))?;
        let stream = stream.unwrap_or(key);
        // Raw addresses never leave the agent: a key (or part of one) that is an address is
        // not a stream name, whatever the rule says.
        if stream.is_empty() || stream.parse::<std::net::IpAddr>().is_ok() {
            return None;
        }
        Some((tenant, stream))
    }
}

impl TableConfig {
    pub fn protocol(&self) -> Protocol {
        match (self.protocol, self.count) {
            (Some(p), _) => p.into(),
            (None, CountMode::ConnCur) => Protocol::Icecast,
            (None, CountMode::Entries) => Protocol::Hls,
        }
    }
}

/// The default tenant of an Icecast mount: its first path segment, without an extension when
/// it is the only one ("/radio1.mp3" → "radio1").
pub fn mount_default_tenant(mount: &str) -> Option<&str> {
    let path = mount.trim_start_matches('/');
    let first = match path.split_once('/') {
        Some((first, _)) => first,
        None => path.rsplit_once('.').map_or(path, |(stem, _)| stem),
    };
    TenantName::is_valid(first).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LiveConfig, String> {
        let c: LiveConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn a_full_config_parses() {
        let c = parse(
            r#"
            interval_secs = 5
            [haproxy]
            socket = "tcp:127.0.0.1:9999"
            [[haproxy.tables]]
            table = "st_mount"
            count = "conn_cur"
            [[haproxy.tables]]
            table = "st_hls_radio1"
            count = "entries"
            tenant = "radio1"
            stream = "/hls/radio1"
            [[icecast]]
            url = "http://127.0.0.1:8000"
            password_file = "/etc/earshot/icecast.pass"
            mounts = { "/live.mp3" = { tenant = "radio1" } }
            "#,
        )
        .unwrap();
        let h = c.haproxy.unwrap();
        assert_eq!(h.tables[0].protocol(), Protocol::Icecast);
        assert_eq!(h.tables[1].protocol(), Protocol::Hls);
        assert_eq!(c.icecast[0].username, "admin");
    }

    #[test]
    fn defaults() {
        let c = parse("[haproxy]\ntables = [{ table = \"t\", count = \"conn_cur\" }]").unwrap();
        assert_eq!(c.interval_secs, 5);
        assert_eq!(c.haproxy.unwrap().socket, "/run/haproxy/admin.sock");
    }

    #[test]
    fn each_mistake_names_its_key() {
        let cases = [
            ("interval_secs = 0", "live.interval_secs"),
            (
                "[haproxy]\nsocket = \"localhost:99\"\ntables = [{ table = \"t\", count = \"conn_cur\" }]",
                "live.haproxy.socket",
            ),
            (
                "[haproxy]\nsocket = \"tcp:localhost\"\ntables = [{ table = \"t\", count = \"conn_cur\" }]",
                "live.haproxy.socket",
            ),
            ("[haproxy]\ntables = []", "live.haproxy.tables"),
            (
                "[haproxy]\ntables = [{ table = \"t\", count = \"conn_cur\", key_pattern = \"(\" }]",
                "live.haproxy.tables[0].key_pattern",
            ),
            (
                "[haproxy]\ntables = [{ table = \"t\", count = \"conn_cur\", key_pattern = \"^/x\" }]",
                "live.haproxy.tables[0].key_pattern",
            ),
            (
                "[haproxy]\ntables = [{ table = \"t\", count = \"conn_cur\", tenant = \"a b\" }]",
                "live.haproxy.tables[0].tenant",
            ),
            ("[[icecast]]\nurl = \"ftp://x\"", "live.icecast[0].url"),
            (
                "[[icecast]]\nurl = \"http://x\"\nmounts = { \"live\" = {} }",
                "live.icecast[0].mounts",
            ),
            (
                "[[icecast]]\nurl = \"http://x\"\nonly_listed_mounts = true",
                "live.icecast[0].only_listed_mounts",
            ),
        ];
        for (text, key) in cases {
            let err = parse(text).unwrap_err();
            assert!(
                err.starts_with(key),
                "{text:?} gave {err:?}, expected key {key}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_values_are_refused() {
        assert!(parse("intervall = 5").is_err());
        assert!(parse("[haproxy]\ntables = [{ table = \"t\", count = \"sessions\" }]").is_err());
        assert!(
            parse(
                "[haproxy]\ntables = [{ table = \"t\", count = \"entries\", protocol = \"dash\" }]"
            )
            .is_err()
        );
    }

    fn table(extra: &str) -> TableConfig {
        toml::from_str(&format!("table = \"t\"\ncount = \"conn_cur\"\n{extra}")).unwrap()
    }

    #[test]
    fn keys_map_to_tenant_and_stream() {
        let m = KeyMapper::new(&table("")).unwrap();
        assert_eq!(
            m.map("/radio1/live.mp3"),
            Some(("radio1", "/radio1/live.mp3"))
        );
        assert_eq!(m.map("/live.mp3"), None);
        assert_eq!(m.map("/bad tenant/x"), None);
        assert!(m.fixed().is_none());

        let m = KeyMapper::new(&table("tenant = \"r1\"")).unwrap();
        assert_eq!(m.map("/live.mp3"), Some(("r1", "/live.mp3")));

        assert_eq!(
            KeyMapper::new(&table("tenant = \"r1\""))
                .unwrap()
                .map("10.0.0.1"),
            None,
            "an address is never a stream"
        );
        let entries = |extra: &str| -> TableConfig {
            toml::from_str(&format!("table = \"t\"\ncount = \"entries\"\n{extra}")).unwrap()
        };
        assert_eq!(
            KeyMapper::new(&entries("tenant = \"r1\"")).unwrap_err().0,
            ".stream"
        );
        assert_eq!(
            KeyMapper::new(&entries("key_pattern = '^/(?P<tenant>\\w+)/'"))
                .unwrap_err()
                .0,
            ".stream"
        );
        let m = KeyMapper::new(&entries(
            r#"key_pattern = '^(?P<tenant>\w+) (?P<stream>/\S+) '"#,
        ))
        .unwrap();
        assert_eq!(m.map("r1 /hls/r1 10.0.0.1"), Some(("r1", "/hls/r1")));

        let m = KeyMapper::new(&table("tenant = \"r1\"\nstream = \"/hls/r1\"")).unwrap();
        assert_eq!(m.map("127.0.0.1"), Some(("r1", "/hls/r1")));
        assert_eq!(m.fixed(), Some(("r1", "/hls/r1")));

        let m = KeyMapper::new(&table(
            r#"key_pattern = '^(?P<tenant>\w+)\.example\.org(?P<stream>/.*)$'"#,
        ))
        .unwrap();
        assert_eq!(
            m.map("radio1.example.org/live.mp3"),
            Some(("radio1", "/live.mp3"))
        );
        assert_eq!(m.map("other.net/live.mp3"), None);
    }

    #[test]
    fn mount_tenants() {
        assert_eq!(mount_default_tenant("/radio1/live.mp3"), Some("radio1"));
        assert_eq!(mount_default_tenant("/radio1.mp3"), Some("radio1"));
        assert_eq!(mount_default_tenant("/stream"), Some("stream"));
        assert_eq!(mount_default_tenant("/"), None);
    }
}
