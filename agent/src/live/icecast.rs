//! Icecast 2.4 per-mount listener counts, from `/admin/stats` (XML, Basic auth) or the public
//! `/status-json.xsl`.
//!
//! The JSON endpoint is a lossy XSLT rendering of the XML: `source` is absent, an object or
//! an array for 0, 1 or N sources, and the mount name is dropped (it is an XML attribute), so
//! the mount comes from the path of `listenurl`. The XML has the mount attribute and is the
//! better source when the admin password is at hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use earshot_common::Protocol;
use earshot_common::wire::LiveSample;
use quick_xml::events::Event;
use serde_json::Value;

use super::config::{IcecastConfig, LiveConfigError, mount_default_tenant};
use super::stick_table::{Counts, to_sample};
use super::{LiveError, LiveStats, now_ms};

/// Listeners on one mount that has a source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountListeners {
    pub mount: String,
    pub listeners: u64,
}

/// Parses `/admin/stats`: every `<source mount="…">`'s `<listeners>`.
pub fn parse_admin_stats(xml: &str) -> Result<Vec<MountListeners>, String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut mounts = Vec::new();
    let mut depth = 0usize;
    let mut saw_icestats = false;
    // (mount, listeners) of the <source> being read (depth 2).
    let mut source: Option<(String, Option<u64>)> = None;
    let mut in_listeners = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("XML error at byte {}: {e}", reader.buffer_position()))?;
        match event {
            Event::Start(e) => {
                depth += 1;
                let name = e.name();
                match (depth, name.as_ref()) {
                    (1, b"icestats") => saw_icestats = true,
                    (2, b"source") => {
                        let mount = e
                            .try_get_attribute("mount")
                            .map_err(|e| e.to_string())?
                            .ok_or("a <source> without a mount attribute")?
                            .unescape_value()
                            .map_err(|e| e.to_string())?
                            .into_owned();
                        source = Some((mount, None));
                    }
                    (3, b"listeners") if source.is_some() => in_listeners = true,
                    _ => {}
                }
            }
            Event::Text(t) if in_listeners => {
                let text = t.unescape().map_err(|e| e.to_string())?;
                let n = text
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("<listeners> is {:?}, not a count", text.trim()))?;
                if let Some((_, listeners)) = &mut source {
                    *listeners = Some(n);
                }
            }
            Event::End(_) => {
                if depth == 3 {
                    in_listeners = false;
                }
                if depth == 2
                    && let Some((mount, listeners)) = source.take()
                {
                    let listeners =
                        listeners.ok_or_else(|| format!("source {mount:?} has no <listeners>"))?;
                    mounts.push(MountListeners { mount, listeners });
                }
                depth = depth.saturating_sub(1);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_icestats {
        return Err("no <icestats> element".into());
    }
    Ok(mounts)
}

/// Parses `/status-json.xsl` with 0, 1 or N sources.
pub fn parse_status_json(json: &str) -> Result<Vec<MountListeners>, String> {
    let doc: Value = match serde_json::from_str(json) {
        Ok(doc) => doc,
        Err(e) => match json.trim_start().strip_prefix("{\"icestats\":\"") {
            // xml2json.xslt writes an object's `{` with its first child; when that child is
            // a hidden one (right after start-up `client_connections` comes first, before
            // `admin`/`host` exist) the `{` is lost: `{"icestats":"server_start":…}` [seen
            // live on 2.4.4]. Put it back.
            Some(rest) => serde_json::from_str(&format!("{{\"icestats\":{{\"{rest}"))
                .map_err(|_| format!("invalid JSON: {e}"))?,
            None => return Err(format!("invalid JSON: {e}")),
        },
    };
    let stats = doc.get("icestats").ok_or("no \"icestats\" object")?;
    let sources: Vec<&Value> = match stats.get("source") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().collect(),
        Some(obj @ Value::Object(_)) => vec![obj],
        Some(other) => return Err(format!("\"source\" is {other}, not an object or array")),
    };
    let mut mounts = Vec::with_capacity(sources.len());
    for s in sources {
        let url = s
            .get("listenurl")
            .and_then(Value::as_str)
            .ok_or("a source without \"listenurl\" (the only place the mount name is)")?;
        let mount =
            mount_of_listenurl(url).ok_or_else(|| format!("listenurl {url:?} has no path"))?;
        let listeners = match s.get("listeners") {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(t)) => t.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| format!("source {mount:?} has no listener count"))?;
        mounts.push(MountListeners {
            mount: mount.to_string(),
            listeners,
        });
    }
    Ok(mounts)
}

/// `http://127.0.0.1:18800/test.mp3` → `/test.mp3`.
fn mount_of_listenurl(url: &str) -> Option<&str> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = &after_scheme[after_scheme.find('/')?..];
    (path.len() > 1).then_some(path)
}

/// Which endpoint a reader polls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcecastApi {
    /// `/admin/stats`, XML, Basic auth.
    AdminStats,
    /// `/status-json.xsl`, public.
    StatusJson,
}

/// Polls one Icecast server.
#[derive(Debug)]
pub struct IcecastReader {
    endpoint: String,
    api: IcecastApi,
    credentials: Option<(String, String)>,
    client: reqwest::Client,
    config: IcecastConfig,
    unmatched_logged: bool,
    stats: Arc<LiveStats>,
}

impl IcecastReader {
    /// `index` is the server's place in `[[live.icecast]]` (for error messages). Reads the
    /// password file now, so a missing one stops the agent at start.
    pub fn new(
        config: &IcecastConfig,
        index: usize,
        timeout: Duration,
        stats: Arc<LiveStats>,
    ) -> Result<IcecastReader, LiveConfigError> {
        let key = |k: &str| format!("live.icecast[{index}].{k}");
        let credentials = match &config.password_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| LiveConfigError {
                    key: key("password_file"),
                    message: format!("cannot read {}: {e}", path.display()),
                })?;
                let password = text.trim().to_string();
                if password.is_empty() {
                    return Err(LiveConfigError {
                        key: key("password_file"),
                        message: format!("{} is empty", path.display()),
                    });
                }
                Some((config.username.clone(), password))
            }
        };
        let api = if credentials.is_some() {
            IcecastApi::AdminStats
        } else {
            IcecastApi::StatusJson
        };
        let base = config.url.trim_end_matches('/');
        let endpoint = match api {
            IcecastApi::AdminStats => format!("{base}/admin/stats"),
            IcecastApi::StatusJson => format!("{base}/status-json.xsl"),
        };
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("earshot-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LiveConfigError {
                key: key("url"),
                message: format!("HTTP client: {e}"),
            })?;
        Ok(IcecastReader {
            endpoint,
            api,
            credentials,
            client,
            config: config.clone(),
            unmatched_logged: false,
            stats,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn api(&self) -> IcecastApi {
        self.api
    }

    /// Asks the server once and maps its mounts to tenants and streams.
    pub async fn poll_once(&mut self) -> Result<LiveSample, LiveError> {
        let at_ms = now_ms();
        let http = |reason: String| LiveError::Icecast {
            url: self.endpoint.clone(),
            reason,
        };
        let mut request = self.client.get(&self.endpoint);
        if let Some((user, password)) = &self.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| http(error_chain(&e)))?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(http("HTTP 401: check username and password_file".into()));
        }
        if !status.is_success() {
            return Err(http(format!("HTTP {status}")));
        }
        let body = response.text().await.map_err(|e| http(error_chain(&e)))?;
        let mounts = match self.api {
            IcecastApi::AdminStats => parse_admin_stats(&body),
            IcecastApi::StatusJson => parse_status_json(&body),
        }
        .map_err(|reason| {
            self.stats.malformed_lines.fetch_add(1, Ordering::Relaxed);
            let start: String = body.chars().take(120).collect();
            http(format!("unreadable answer: {reason} (it starts {start:?})"))
        })?;
        Ok(to_sample(at_ms, self.map_mounts(&mounts)))
    }

    /// Pure: the counts for what the server reported, as the config maps them.
    pub fn map_mounts(&mut self, mounts: &[MountListeners]) -> Counts {
        let mut counts = Counts::new();
        let cfg = &self.config;
        let mut seen = BTreeMap::new();
        for m in mounts {
            seen.insert(m.mount.as_str(), m.listeners);
        }
        // Listed mounts are always reported: 0 when no source feeds them.
        for (mount, mc) in &cfg.mounts {
            let tenant = mc
                .tenant
                .as_deref()
                .or(cfg.tenant.as_deref())
                .or_else(|| mount_default_tenant(mount));
            let Some(tenant) = tenant else { continue };
            let stream = mc.stream.as_deref().unwrap_or(mount);
            *counts
                .entry((tenant.to_string(), stream.to_string(), Protocol::Icecast))
                .or_insert(0) += seen.get(mount.as_str()).copied().unwrap_or(0);
        }
        if cfg.only_listed_mounts {
            return counts;
        }
        let mut unmatched = 0u64;
        for m in mounts {
            if cfg.mounts.contains_key(&m.mount) {
                continue;
            }
            let tenant = cfg
                .tenant
                .as_deref()
                .or_else(|| mount_default_tenant(&m.mount));
            match tenant {
                Some(tenant) => {
                    *counts
                        .entry((tenant.to_string(), m.mount.clone(), Protocol::Icecast))
                        .or_insert(0) += m.listeners
                }
                None => unmatched += 1,
            }
        }
        if unmatched > 0 {
            self.stats
                .keys_unmatched
                .fetch_add(unmatched, Ordering::Relaxed);
            if !self.unmatched_logged {
                self.unmatched_logged = true;
                tracing::warn!(
                    url = %self.endpoint,
                    mounts = unmatched,
                    "Icecast mounts give no tenant name and are not counted (set `tenant` or `mounts`); logged once"
                );
            }
        }
        counts
    }
}

/// reqwest's Display hides the cause ("error sending request"): show the chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str) -> String {
        let p = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/data/icecast-2.4.4"
        ))
        .join(name);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        // Some captures keep the HTTP head.
        match text
            .split_once("\r\n\r\n")
            .or_else(|| text.split_once("\n\n"))
        {
            Some((head, body)) if head.starts_with("HTTP/") => body.to_string(),
            _ => text,
        }
    }

    fn ml(mount: &str, listeners: u64) -> MountListeners {
        MountListeners {
            mount: mount.into(),
            listeners,
        }
    }

    #[test]
    fn admin_stats_with_zero_one_and_two_sources() {
        assert_eq!(
            parse_admin_stats(&sample("nosrc_admin_stats.txt")).unwrap(),
            vec![]
        );
        assert_eq!(
            parse_admin_stats(&sample("one_admin_stats.xml")).unwrap(),
            vec![ml("/test.mp3", 2)]
        );
        // The global <listeners>3</listeners> is not a mount's.
        assert_eq!(
            parse_admin_stats(&sample("two_admin_stats.xml")).unwrap(),
            vec![ml("/second.mp3", 1), ml("/test.mp3", 2)]
        );
        assert_eq!(
            parse_admin_stats(&sample("charset_admin_stats.xml")).unwrap(),
            vec![ml("/second.mp3", 1), ml("/test.mp3", 2)]
        );
    }

    #[test]
    fn admin_stats_refuses_what_is_not_icestats() {
        assert!(parse_admin_stats("You need to authenticate\n").is_err());
        assert!(
            parse_admin_stats(
                "<icestats><source mount=\"/a\"><listeners>x</listeners></source></icestats>"
            )
            .is_err()
        );
        assert!(parse_admin_stats("<icestats><source mount=\"/a\"></source></icestats>").is_err());
        assert_eq!(
            parse_admin_stats("<icestats><source mount=\"/a&amp;b\"><listeners> 7 </listeners></source></icestats>").unwrap(),
            vec![ml("/a&b", 7)]
        );
    }

    #[test]
    fn status_json_with_zero_one_and_two_sources() {
        assert_eq!(
            parse_status_json(&sample("nosrc_status-json.txt")).unwrap(),
            vec![]
        );
        assert_eq!(
            parse_status_json(&sample("one_status-json.txt")).unwrap(),
            vec![ml("/test.mp3", 2)]
        );
        assert_eq!(
            parse_status_json(&sample("two_status-json.json")).unwrap(),
            vec![ml("/second.mp3", 1), ml("/test.mp3", 2)]
        );
        assert_eq!(
            parse_status_json(&sample("two_status-json_mountparam.json"))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            parse_status_json(r#"{"icestats":{"source":{"listenurl":"http://h:1/a/b.aac","listeners":"4","dummy":null}}}"#)
                .unwrap(),
            vec![ml("/a/b.aac", 4)]
        );
        // Icecast 2.4.4 right after start-up: the icestats object lost its `{`.
        let startup = r#"{"icestats":"server_start":"Sat, 28 Nov 2026 12:11:10 +0000","server_start_iso8601":"2026-11-28T12:11:10+0000","dummy":null}}"#;
        assert_eq!(parse_status_json(startup).unwrap(), vec![]);
        assert!(parse_status_json("{}").is_err());
        assert!(parse_status_json("{\"icestats\":\"x").is_err());
        assert!(parse_status_json(r#"{"icestats":{"source":{"listeners":1}}}"#).is_err());
    }

    fn reader(toml_text: &str) -> IcecastReader {
        let cfg: IcecastConfig = toml::from_str(toml_text).unwrap();
        IcecastReader::new(&cfg, 0, Duration::from_secs(1), Arc::default()).unwrap()
    }

    fn keyed(counts: &Counts) -> Vec<(String, String, u64)> {
        counts
            .iter()
            .map(|((t, s, _), n)| (t.clone(), s.clone(), *n))
            .collect()
    }

    #[test]
    fn mounts_map_to_tenants() {
        let mut r = reader("url = \"http://x\"");
        assert_eq!(r.api(), IcecastApi::StatusJson);
        assert_eq!(r.endpoint(), "http://x/status-json.xsl");
        let counts = r.map_mounts(&[ml("/radio1/live.mp3", 3), ml("/radio2.mp3", 1), ml("/", 5)]);
        assert_eq!(
            keyed(&counts),
            vec![
                ("radio1".into(), "/radio1/live.mp3".into(), 3),
                ("radio2".into(), "/radio2.mp3".into(), 1)
            ]
        );

        let mut r = reader(
            "url = \"http://x/\"\ntenant = \"station\"\nmounts = { \"/idle.mp3\" = { stream = \"idle\" }, \"/a.mp3\" = { tenant = \"other\" } }",
        );
        let counts = r.map_mounts(&[ml("/a.mp3", 2), ml("/b.mp3", 1)]);
        assert_eq!(
            keyed(&counts),
            vec![
                ("other".into(), "/a.mp3".into(), 2),
                ("station".into(), "/b.mp3".into(), 1),
                ("station".into(), "idle".into(), 0),
            ]
        );

        let mut r =
            reader("url = \"http://x\"\nonly_listed_mounts = true\nmounts = { \"/a.mp3\" = {} }");
        let counts = r.map_mounts(&[ml("/a.mp3", 2), ml("/b.mp3", 1)]);
        assert_eq!(keyed(&counts), vec![("a".into(), "/a.mp3".into(), 2)]);
    }
}
