//! From a log line to (tenant, stream, protocol): the configured rules first, then the
//! default — tenant = backend name without its prefix, stream = the mount path for
//! progressive streams and the playlist's directory for HLS.

use earshot_common::Protocol;

use crate::config::{RouteRule, RoutingConfig, SessionConfig, valid_tenant};

/// What a request is for, or why it is not a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Stream {
        tenant: &'a str,
        stream: StreamName<'a>,
        protocol: Protocol,
    },
    /// Dropped by a rule or an ignore pattern; counted by status under `tenant`.
    Ignored { tenant: &'a str },
}

#[derive(Debug, PartialEq, Eq)]
pub enum StreamName<'a> {
    Path(&'a [u8]),
    Configured(&'a str),
}

impl StreamName<'_> {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            StreamName::Path(p) => p,
            StreamName::Configured(s) => s.as_bytes(),
        }
    }
}

pub struct Router {
    prefix: String,
    rules: Vec<RouteRule>,
    hls: PathPatterns,
    ignore: PathPatterns,
}

/// Path globs, sorted by shape so the common ones (`*.m3u8`, `/hls/*`, exact paths) cost a
/// comparison or two on the hot path instead of a glob walk.
struct PathPatterns {
    exact: Vec<Vec<u8>>,
    /// `*.ext` patterns, as the extension (without the dot) packed with its length: one
    /// integer comparison each.
    extensions: Vec<(usize, u64)>,
    /// `*.ext` patterns with extensions too long to pack.
    long_extensions: Vec<Vec<u8>>,
    suffixes: Vec<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
    general: Vec<Vec<u8>>,
}

impl PathPatterns {
    fn new(patterns: &[String]) -> PathPatterns {
        let mut p = PathPatterns {
            exact: vec![],
            extensions: vec![],
            long_extensions: vec![],
            suffixes: vec![],
            prefixes: vec![],
            general: vec![],
        };
        for pat in patterns {
            let b = pat.as_bytes();
            let stars = b.iter().filter(|&&c| c == b'*').count();
            match stars {
                0 => p.exact.push(b.to_vec()),
                1 if b.starts_with(b"*.") && !b[2..].contains(&b'.') && !b.contains(&b'/') => {
                    match pack(&b[2..]) {
                        Some(packed) => p.extensions.push((b.len() - 2, packed)),
                        None => p.long_extensions.push(b[2..].to_vec()),
                    }
                }
                1 if b[0] == b'*' => p.suffixes.push(b[1..].to_vec()),
                1 if b[b.len() - 1] == b'*' => p.prefixes.push(b[..b.len() - 1].to_vec()),
                _ => p.general.push(b.to_vec()),
            }
        }
        p
    }

    #[inline]
    fn matches(&self, path: &[u8], extension: Option<&[u8]>) -> bool {
        if let Some(ext) = extension {
            if let Some(packed) = pack(ext) {
                if self
                    .extensions
                    .iter()
                    .any(|&(len, e)| len == ext.len() && e == packed)
                {
                    return true;
                }
            } else if self.long_extensions.iter().any(|e| e == ext) {
                return true;
            }
        }
        self.suffixes.iter().any(|s| path.ends_with(s))
            || self.prefixes.iter().any(|s| path.starts_with(s))
            || self.exact.iter().any(|s| s == path)
            || self.general.iter().any(|g| glob(g, path))
    }
}

impl Router {
    pub fn new(routing: &RoutingConfig, sessions: &SessionConfig) -> Router {
        Router {
            prefix: routing.backend_prefix.clone(),
            rules: routing.rules.clone(),
            hls: PathPatterns::new(&sessions.hls_path_patterns),
            ignore: PathPatterns::new(&sessions.ignore_path_patterns),
        }
    }

    /// The tenant a backend stands for when no rule says otherwise.
    pub fn default_tenant<'a>(&self, backend: &'a str) -> &'a str {
        backend
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(backend)
    }

    /// `backend` as logged; `path` without query; `host` when known.
    pub fn route<'a>(&'a self, backend: &'a str, path: &'a [u8], host: Option<&[u8]>) -> Route<'a> {
        let default_tenant = backend
            .strip_prefix(self.prefix.as_str())
            .unwrap_or(backend);
        let ext = extension(path);
        let protocol = if self.hls.matches(path, ext) {
            Protocol::Hls
        } else {
            Protocol::Icecast
        };
        let default_stream = match protocol {
            Protocol::Hls => StreamName::Path(directory(path)),
            Protocol::Icecast => StreamName::Path(path),
        };
        for rule in &self.rules {
            if rule_matches(rule, backend, path, host) {
                let tenant = rule.tenant.as_deref().unwrap_or(default_tenant);
                if rule.ignore {
                    return Route::Ignored { tenant };
                }
                let stream = match &rule.stream {
                    Some(s) => StreamName::Configured(s),
                    None => default_stream,
                };
                return Route::Stream {
                    tenant,
                    stream,
                    protocol,
                };
            }
        }
        if self.ignore.matches(path, ext) || !valid_tenant(default_tenant) {
            return Route::Ignored {
                tenant: default_tenant,
            };
        }
        Route::Stream {
            tenant: default_tenant,
            stream: default_stream,
            protocol,
        }
    }
}

fn rule_matches(rule: &RouteRule, backend: &str, path: &[u8], host: Option<&[u8]>) -> bool {
    if let Some(b) = &rule.match_backend
        && !glob(b.as_bytes(), backend.as_bytes())
    {
        return false;
    }
    if let Some(p) = &rule.match_path_prefix
        && !path.starts_with(p.as_bytes())
    {
        return false;
    }
    if let Some(h) = &rule.match_host {
        let Some(host) = host else { return false };
        let host = strip_port(host);
        if !glob(h.as_bytes(), host) {
            return false;
        }
    }
    true
}

fn strip_port(host: &[u8]) -> &[u8] {
    match host.iter().rposition(|&b| b == b':') {
        Some(i) if !host.contains(&b']') || host[..i].ends_with(b"]") => &host[..i],
        _ => host,
    }
}

/// Up to eight bytes as an integer.
#[inline]
fn pack(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    let mut b = [0u8; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    Some(u64::from_le_bytes(b))
}

/// The extension of a path's last segment ("aac" of "/hls/r1/seg_9.aac").
fn extension(path: &[u8]) -> Option<&[u8]> {
    let dot = memchr::memrchr(b'.', path)?;
    let ext = &path[dot + 1..];
    (!ext.contains(&b'/')).then_some(ext)
}

/// The directory part of a path: "/hls/radio1/seg_9.aac" → "/hls/radio1"; "/x.m3u8" → "/".
pub fn directory(path: &[u8]) -> &[u8] {
    match memchr::memrchr(b'/', path) {
        Some(0) | None => b"/",
        Some(i) => &path[..i],
    }
}

/// Glob match where `*` matches any run of bytes (including '/'). Case-sensitive.
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (usize::MAX, 0);
    while t < text.len() {
        if p < pattern.len() && pattern[p] != b'*' && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = p;
            mark = t;
            p += 1;
        } else if star != usize::MAX {
            p = star + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    #[test]
    fn globs() {
        assert!(glob(b"*.m3u8", b"/hls/a/live.m3u8"));
        assert!(!glob(b"*.m3u8", b"/hls/a/live.m3u8x"));
        assert!(glob(b"/hls/*", b"/hls/a/seg.aac"));
        assert!(glob(b"be_*", b"be_radio"));
        assert!(glob(b"*", b""));
        assert!(!glob(b"a*b", b"acbx"));
        assert!(glob(b"a*b*c", b"aXbYbZc"));
    }

    #[test]
    fn default_routes() {
        let c = AgentConfig::defaults();
        let r = Router::new(&c.routing, &c.sessions);
        assert_eq!(
            r.route("be_radio1", b"/radio1/live.mp3", None),
            Route::Stream {
                tenant: "radio1",
                stream: StreamName::Path(b"/radio1/live.mp3"),
                protocol: Protocol::Icecast
            }
        );
        assert_eq!(
            r.route("be_radio1", b"/hls/radio1/seg_7.aac", None),
            Route::Stream {
                tenant: "radio1",
                stream: StreamName::Path(b"/hls/radio1"),
                protocol: Protocol::Hls
            }
        );
        assert_eq!(
            r.route("radio2", b"/live/index.m3u8", None),
            Route::Stream {
                tenant: "radio2",
                stream: StreamName::Path(b"/live"),
                protocol: Protocol::Hls
            }
        );
        assert_eq!(
            r.route("be_radio1", b"/favicon.ico", None),
            Route::Ignored { tenant: "radio1" }
        );
    }

    #[test]
    fn rules_come_first() {
        let c = AgentConfig::parse(
            "[[routing.rules]]\nmatch_host = \"*.radio-a.example\"\ntenant = \"a\"\n\
             [[routing.rules]]\nmatch_backend = \"be_shared\"\nmatch_path_prefix = \"/b/\"\ntenant = \"b\"\nstream = \"main\"\n\
             [[routing.rules]]\nmatch_backend = \"stats\"\nignore = true\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let r = Router::new(&c.routing, &c.sessions);
        assert!(matches!(
            r.route("be_shared", b"/x.mp3", Some(b"www.radio-a.example:443")),
            Route::Stream { tenant: "a", .. }
        ));
        assert_eq!(
            r.route("be_shared", b"/b/live.mp3", None),
            Route::Stream {
                tenant: "b",
                stream: StreamName::Configured("main"),
                protocol: Protocol::Icecast
            }
        );
        assert_eq!(
            r.route("stats", b"/", None),
            Route::Ignored { tenant: "stats" }
        );
    }
}
