//! From a log line to (tenant, stream, protocol): the configured rules first, then the
//! default — tenant = backend name without its prefix, stream = the mount path for
//! progressive streams and the playlist's directory for HLS.
//!
//! Works on the line's bytes: whether a default tenant is a valid tenant name (and valid
//! UTF-8) is for the caller to check, once per tenant and stream it has not seen before.

use earshot_common::Protocol;

#[cfg(doc)]
use crate::config::valid_tenant;
use crate::config::{RouteRule, RoutingConfig, SessionConfig};

/// What a request is for, or why it is not a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Stream {
        tenant: &'a [u8],
        stream: StreamName<'a>,
        protocol: Protocol,
    },
    /// Dropped by a rule or an ignore pattern; counted by status under `tenant`.
    Ignored { tenant: &'a [u8] },
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

    /// `extension` is the path's [`Extension`], found once for every pattern list.
    #[inline]
    fn matches(&self, path: &[u8], extension: &Extension<'_>) -> bool {
        match *extension {
            Extension::Packed(len, packed) => {
                if self
                    .extensions
                    .iter()
                    .any(|&(l, e)| l == len && e == packed)
                {
                    return true;
                }
            }
            Extension::Long(ext) => {
                if self.long_extensions.iter().any(|e| e == ext) {
                    return true;
                }
            }
            Extension::None => {}
        }
        self.suffixes.iter().any(|s| path.ends_with(s))
            || self.prefixes.iter().any(|s| has_prefix(path, s))
            || self.exact.iter().any(|s| s == path)
            || self.general.iter().any(|g| glob(g, path))
    }
}

/// The extension of a path's last segment ("aac" of "/hls/r1/seg_9.aac"), packed into an
/// integer when it fits.
#[derive(Debug, PartialEq, Eq)]
enum Extension<'a> {
    None,
    Packed(usize, u64),
    Long(&'a [u8]),
}

/// The path's directory ("/hls/r1" of "/hls/r1/seg_9.aac", "/" for "/x.m3u8") and the
/// extension of its last segment.
#[inline]
fn split_path(path: &[u8]) -> (&[u8], Extension<'_>) {
    let (dir, name_at) = match memchr::memrchr(b'/', path) {
        Some(0) => (&b"/"[..], 1),
        Some(i) => (&path[..i], i + 1),
        None => (&b"/"[..], 0),
    };
    let dot = memchr::memrchr(b'.', &path[name_at..]).map(|d| name_at + d);
    (dir, extension_after(path, dot))
}

#[inline]
fn extension_after(path: &[u8], dot: Option<usize>) -> Extension<'_> {
    match dot {
        None => Extension::None,
        Some(d) => {
            let ext = &path[d + 1..];
            match pack(ext) {
                Some(packed) => Extension::Packed(ext.len(), packed),
                None => Extension::Long(ext),
            }
        }
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
    pub fn default_tenant<'a>(&self, backend: &'a [u8]) -> &'a [u8] {
        let prefix = self.prefix.as_bytes();
        if has_prefix(backend, prefix) {
            &backend[prefix.len()..]
        } else {
            backend
        }
    }

    /// `backend` as logged; `path` without query; `host` when known. A default tenant that
    /// is not a valid tenant name (see [`valid_tenant`]) is returned as it is: the caller
    /// checks, once per tenant it has not seen.
    pub fn route<'a>(
        &'a self,
        backend: &'a [u8],
        path: &'a [u8],
        host: Option<&[u8]>,
    ) -> Route<'a> {
        let default_tenant = self.default_tenant(backend);
        let (dir, ext) = split_path(path);
        let protocol = if self.hls.matches(path, &ext) {
            Protocol::Hls
        } else {
            Protocol::Icecast
        };
        let default_stream = match protocol {
            Protocol::Hls => StreamName::Path(dir),
            Protocol::Icecast => StreamName::Path(path),
        };
        for rule in &self.rules {
            if rule_matches(rule, backend, path, host) {
                let tenant = rule.tenant.as_deref().map_or(default_tenant, str::as_bytes);
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
        if self.ignore.matches(path, &ext) {
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

fn rule_matches(rule: &RouteRule, backend: &[u8], path: &[u8], host: Option<&[u8]>) -> bool {
    if let Some(b) = &rule.match_backend
        && !glob(b.as_bytes(), backend)
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

/// `starts_with` for the short prefixes of routing (`be_`, `/hls/`): a byte loop, which costs
/// less than the call to `memcmp` that `starts_with` makes.
#[inline]
fn has_prefix(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay.iter().zip(prefix).all(|(a, b)| a == b)
}

/// Up to eight bytes as an integer.
#[inline]
fn pack(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 8 {
        return None;
    }
    Some(
        bytes
            .iter()
            .enumerate()
            .fold(0, |v, (i, &b)| v | u64::from(b) << (8 * i)),
    )
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
    fn paths_split_into_directory_and_extension() {
        // (path, its directory, its last segment's extension), written out by hand.
        for (path, dir, ext) in [
            (
                &b"/hls/r1/seg_9.aac"[..],
                &b"/hls/r1"[..],
                Some(&b"aac"[..]),
            ),
            (b"/x.m3u8", b"/", Some(b"m3u8")),
            (b"/", b"/", None),
            (b"", b"/", None),
            (b"noslash.mp3", b"/", Some(b"mp3")),
            (b"/a.b/c", b"/a.b", None),
            (b"/a/b.", b"/a", Some(b"")),
            (b"/a/.hidden", b"/a", Some(b"hidden")),
            (b"/a/b.c.d", b"/a", Some(b"d")),
            (
                b"/r/live.extension-too-long",
                b"/r",
                Some(b"extension-too-long"),
            ),
        ] {
            let (got_dir, got_ext) = split_path(path);
            assert_eq!(got_dir, dir, "{path:?}");
            let got_ext: Option<Vec<u8>> = match got_ext {
                Extension::None => None,
                Extension::Packed(len, packed) => Some(packed.to_le_bytes()[..len].to_vec()),
                Extension::Long(e) => Some(e.to_vec()),
            };
            assert_eq!(got_ext.as_deref(), ext, "{path:?}");
        }
        assert_eq!(pack(b"aac"), Some(u64::from_le_bytes(*b"aac\0\0\0\0\0")));
    }

    #[test]
    fn default_routes() {
        let c = AgentConfig::defaults();
        let r = Router::new(&c.routing, &c.sessions);
        assert_eq!(
            r.route(b"be_radio1", b"/radio1/live.mp3", None),
            Route::Stream {
                tenant: b"radio1",
                stream: StreamName::Path(b"/radio1/live.mp3"),
                protocol: Protocol::Icecast
            }
        );
        assert_eq!(
            r.route(b"be_radio1", b"/hls/radio1/seg_7.aac", None),
            Route::Stream {
                tenant: b"radio1",
                stream: StreamName::Path(b"/hls/radio1"),
                protocol: Protocol::Hls
            }
        );
        assert_eq!(
            r.route(b"radio2", b"/live/index.m3u8", None),
            Route::Stream {
                tenant: b"radio2",
                stream: StreamName::Path(b"/live"),
                protocol: Protocol::Hls
            }
        );
        assert_eq!(
            r.route(b"be_radio1", b"/favicon.ico", None),
            Route::Ignored { tenant: b"radio1" }
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
            r.route(b"be_shared", b"/x.mp3", Some(b"www.radio-a.example:443")),
            Route::Stream { tenant: b"a", .. }
        ));
        assert_eq!(
            r.route(b"be_shared", b"/b/live.mp3", None),
            Route::Stream {
                tenant: b"b",
                stream: StreamName::Configured("main"),
                protocol: Protocol::Icecast
            }
        );
        assert_eq!(
            r.route(b"stats", b"/", None),
            Route::Ignored { tenant: b"stats" }
        );
    }
}
