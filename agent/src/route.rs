//! From a log line to its tenant and what it asks for: the configured rules first, then the
//! defaults — tenant = backend name without its prefix; what the path is by `kind`'s rules
//! (docs/traffic.md). Which HLS stream a playlist or segment belongs to needs what the agent
//! has learned of the log, and is the ingestor's to decide (`layout`).
//!
//! Works on the line's bytes: whether a default tenant is a valid tenant name (and valid
//! UTF-8) is for the caller to check, once per tenant and stream it has not seen before.

use crate::kind::{NotSession, PathKind, path_kind};
use earshot_common::tenant::TenantName;
use serde::Deserialize;

use crate::bytes::{bytes_equal, rfind};
use crate::table::KeyTable;

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

fn default_backend_prefix() -> String {
    "be_".into()
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            backend_prefix: default_backend_prefix(),
            rules: Vec::new(),
        }
    }
}

impl RoutingConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.tenant.is_none() && rule.stream.is_none() && !rule.ignore {
                return Err((
                    format!("rules[{i}]"),
                    "sets nothing: give `tenant`, `stream` or `ignore = true`".into(),
                ));
            }
            if let Some(t) = &rule.tenant
                && let Err(e) = TenantName::new(t.as_str())
            {
                return Err((format!("rules[{i}].tenant"), e.to_string()));
            }
        }
        Ok(())
    }
}

/// The `[sessions]` path patterns that decide over the built-in rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct PatternLists<'a> {
    pub hls: &'a [String],
    pub ignore: &'a [String],
    pub mounts: &'a [String],
}

/// What a request is for, or why it is not a session.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Stream {
        tenant: &'a [u8],
        /// A configured stream name, or the request's path.
        stream: StreamName<'a>,
        what: What,
    },
    /// Dropped by a rule (`ignore = true`); counted by status under `tenant`.
    Ignored { tenant: &'a [u8] },
    /// Not audio: counted by kind under `tenant` when successful, by status otherwise.
    NotSession { tenant: &'a [u8], kind: NotSession },
}

/// What an audio request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    /// A progressive stream: one line, one session.
    Mount,
    /// An HLS playlist (`.m3u8`).
    Playlist,
    /// An HLS media segment.
    Segment,
    /// A mount or a packed-audio segment: the ingestor tells which.
    Audio,
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
    mounts: PathPatterns,
    /// Whether any path pattern is configured (none by default).
    any_patterns: bool,
    /// The `*.ext` patterns of both lists whose extension packs into a word, by
    /// [`extension_key`]: the lists (`IN_HLS`, `IN_IGNORE`) that have one, in one probe.
    extensions: KeyTable<u8>,
}

/// Which list a packed extension's pattern is in.
const IN_HLS: u8 = 1;
const IN_IGNORE: u8 = 2;
const IN_MOUNTS: u8 = 4;

/// Path globs, sorted by shape so the common ones (`*.m3u8`, `/hls/*`, exact paths) cost a
/// comparison or two on the hot path instead of a glob walk. `*.ext` patterns whose extension
/// packs into a word are in the router's `extensions` table instead.
struct PathPatterns {
    exact: Vec<Vec<u8>>,
    /// `*.ext` patterns with extensions too long to pack.
    long_extensions: Vec<Vec<u8>>,
    suffixes: Vec<Vec<u8>>,
    prefixes: Vec<Vec<u8>>,
    general: Vec<Vec<u8>>,
}

impl PathPatterns {
    /// Packable `*.ext` patterns go to `extensions`, marked `list`.
    fn new(patterns: &[String], list: u8, extensions: &mut KeyTable<u8>) -> PathPatterns {
        let mut p = PathPatterns {
            exact: vec![],
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
                        Some(packed) => {
                            let key = extension_key(packed);
                            let lists = extensions.get(key).copied().unwrap_or(0);
                            extensions.insert(key, lists | list);
                        }
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

    /// `extension` is the path's [`Extension`] and `packed_match` whether the router's
    /// `extensions` table puts it in this list, both found once for every pattern list.
    #[inline]
    fn matches(&self, path: &[u8], extension: &Extension<'_>, packed_match: bool) -> bool {
        if packed_match {
            return true;
        }
        if let Extension::Long(ext) = *extension
            && self.long_extensions.iter().any(|e| e == ext)
        {
            return true;
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
    /// See [`pack`].
    Packed(u64),
    Long(&'a [u8]),
}

/// A packed extension as a key of the router's table, which takes its slot from the key's
/// low bits: the extension's bytes mixed into them. Multiplying by an odd number and rotating
/// is one-to-one, so two extensions never share a key.
#[inline]
fn extension_key(packed: u64) -> u64 {
    packed.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(32)
}

/// The path's directory ("/hls/r1" of "/hls/r1/seg_9.aac", "/" for "/x.m3u8") and the
/// extension of its last segment.
#[inline]
fn split_path(path: &[u8]) -> (&[u8], Extension<'_>) {
    let (dir, name_at) = match rfind(path, b'/') {
        Some(0) => (&b"/"[..], 1),
        Some(i) => (&path[..i], i + 1),
        None => (&b"/"[..], 0),
    };
    if let Some(packed) = packed_extension(path, name_at) {
        return (dir, Extension::Packed(packed));
    }
    let dot = memchr::memrchr(b'.', &path[name_at..]).map(|d| name_at + d);
    (dir, extension_after(path, dot))
}

/// The [`pack`]ed extension of the last segment (starting at `name_at`) when its dot is among
/// the path's last eight bytes, found in one word: no loop whose length varies from path to
/// path. `None` otherwise, to be found the long way.
#[inline]
fn packed_extension(path: &[u8], name_at: usize) -> Option<u64> {
    let word = u64::from_le_bytes(*path.last_chunk::<8>()?);
    let dots = bytes_equal(word, b'.');
    if dots == 0 {
        return None;
    }
    let last_dot = 7 - (dots.leading_zeros() / 8) as usize; // byte index in the word
    if path.len() - 8 + last_dot < name_at {
        return None;
    }
    let len = 7 - last_dot;
    let ext = word.checked_shr(8 * (last_dot as u32 + 1)).unwrap_or(0);
    Some(ext | (len as u64 + 1) << 56)
}

#[inline]
fn extension_after(path: &[u8], dot: Option<usize>) -> Extension<'_> {
    match dot {
        None => Extension::None,
        Some(d) => {
            let ext = &path[d + 1..];
            match pack(ext) {
                Some(packed) => Extension::Packed(packed),
                None => Extension::Long(ext),
            }
        }
    }
}

impl Router {
    pub fn new(routing: &RoutingConfig, patterns: PatternLists<'_>) -> Router {
        let mut extensions = KeyTable::default();
        Router {
            prefix: routing.backend_prefix.clone(),
            rules: routing.rules.clone(),
            hls: PathPatterns::new(patterns.hls, IN_HLS, &mut extensions),
            ignore: PathPatterns::new(patterns.ignore, IN_IGNORE, &mut extensions),
            mounts: PathPatterns::new(patterns.mounts, IN_MOUNTS, &mut extensions),
            any_patterns: !(patterns.hls.is_empty()
                && patterns.ignore.is_empty()
                && patterns.mounts.is_empty()),
            extensions,
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

    /// `backend` as logged; `method` (`None` for a TCP connection, which is a mount's);
    /// `path` without query; `host` when known. A default tenant that is not a valid tenant
    /// name (see [`TenantName`]) is returned as it is: the caller checks, once per tenant
    /// it has not seen.
    pub fn route<'a>(
        &'a self,
        backend: &'a [u8],
        method: Option<&[u8]>,
        path: &'a [u8],
        host: Option<&[u8]>,
    ) -> Route<'a> {
        let mut tenant = self.default_tenant(backend);
        let mut stream = StreamName::Path(path);
        for rule in &self.rules {
            if rule_matches(rule, backend, path, host) {
                if let Some(t) = &rule.tenant {
                    tenant = t.as_bytes();
                }
                if rule.ignore {
                    return Route::Ignored { tenant };
                }
                if let Some(s) = &rule.stream {
                    stream = StreamName::Configured(s);
                }
                break;
            }
        }
        let Some(method) = method else {
            return Route::Stream {
                tenant,
                stream,
                what: What::Mount,
            };
        };
        if method != b"GET" {
            return Route::NotSession {
                tenant,
                kind: NotSession::Method,
            };
        }
        let what = match self.configured(path) {
            Some(Configured::Ignore) => {
                return Route::NotSession {
                    tenant,
                    kind: NotSession::Ignored,
                };
            }
            Some(Configured::Hls) => match path_kind(path) {
                PathKind::Playlist => What::Playlist,
                _ => What::Segment,
            },
            Some(Configured::Mount) => What::Mount,
            None => match path_kind(path) {
                PathKind::Playlist => What::Playlist,
                PathKind::Segment => What::Segment,
                PathKind::Audio => What::Audio,
                PathKind::Not(kind) => return Route::NotSession { tenant, kind },
            },
        };
        Route::Stream {
            tenant,
            stream,
            what,
        }
    }

    /// What the configured path patterns say of `path`: ignore patterns first, then HLS,
    /// then mounts.
    #[inline]
    fn configured(&self, path: &[u8]) -> Option<Configured> {
        if !self.any_patterns {
            return None;
        }
        let (_, ext) = split_path(path);
        let lists = match ext {
            Extension::Packed(packed) => self.extensions.get(extension_key(packed)).copied(),
            _ => None,
        }
        .unwrap_or(0);
        if self.ignore.matches(path, &ext, lists & IN_IGNORE != 0) {
            Some(Configured::Ignore)
        } else if self.hls.matches(path, &ext, lists & IN_HLS != 0) {
            Some(Configured::Hls)
        } else if self.mounts.matches(path, &ext, lists & IN_MOUNTS != 0) {
            Some(Configured::Mount)
        } else {
            None
        }
    }
}

enum Configured {
    Ignore,
    Hls,
    Mount,
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

/// Up to seven bytes as an integer, their length plus one in the top byte: never 0, and two
/// different byte strings never pack the same.
#[inline]
fn pack(bytes: &[u8]) -> Option<u64> {
    if bytes.len() > 7 {
        return None;
    }
    Some(
        bytes
            .iter()
            .enumerate()
            .fold((bytes.len() as u64 + 1) << 56, |v, (i, &b)| {
                v | u64::from(b) << (8 * i)
            }),
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

    /// The bytes an [`Extension`] stands for.
    fn extension_bytes(ext: Extension<'_>) -> Option<Vec<u8>> {
        match ext {
            Extension::None => None,
            Extension::Packed(packed) => {
                let len = (packed >> 56) as usize - 1;
                Some(packed.to_le_bytes()[..len].to_vec())
            }
            Extension::Long(e) => Some(e.to_vec()),
        }
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
            let got_ext = extension_bytes(got_ext);
            assert_eq!(got_ext.as_deref(), ext, "{path:?}");
        }
        assert_eq!(pack(b"aac"), Some(u64::from_le_bytes(*b"aac\0\0\0\0\x04")));
        assert_eq!(pack(b""), Some(1 << 56));
        assert_ne!(pack(b"a"), pack(b"a\0"));
        assert_eq!(pack(b"1234567").map(|p| p >> 56), Some(8));
        assert_eq!(pack(b"12345678"), None);
    }

    proptest::proptest! {
        /// Any path of slashes, dots and letters: the directory and extension are what byte
        /// loops over it find.
        #[test]
        fn split_path_agrees_with_byte_loops(
            path in proptest::collection::vec(proptest::sample::select(b"/.ab".to_vec()), 0..40)
        ) {
            let slash = path.iter().rposition(|&b| b == b'/');
            let want_dir: &[u8] = match slash {
                Some(i) if i > 0 => &path[..i],
                _ => b"/",
            };
            let name = &path[slash.map_or(0, |i| i + 1)..];
            let want_ext = name.iter().rposition(|&b| b == b'.').map(|d| &name[d + 1..]);
            let (dir, ext) = split_path(&path);
            proptest::prop_assert_eq!(dir, want_dir);
            let ext = extension_bytes(ext);
            proptest::prop_assert_eq!(ext.as_deref(), want_ext);
        }
    }

    #[test]
    fn default_routes() {
        let c = AgentConfig::defaults();
        let r = Router::new(&c.routing, c.sessions.patterns());
        let get = Some(&b"GET"[..]);
        assert_eq!(
            r.route(b"be_radio1", get, b"/radio1/live.mp3", None),
            Route::Stream {
                tenant: b"radio1",
                stream: StreamName::Path(b"/radio1/live.mp3"),
                what: What::Audio
            }
        );
        assert_eq!(
            r.route(b"be_radio1", get, b"/hls/radio1/seg_7.ts", None),
            Route::Stream {
                tenant: b"radio1",
                stream: StreamName::Path(b"/hls/radio1/seg_7.ts"),
                what: What::Segment
            }
        );
        assert_eq!(
            r.route(b"radio2", get, b"/live/index.m3u8", None),
            Route::Stream {
                tenant: b"radio2",
                stream: StreamName::Path(b"/live/index.m3u8"),
                what: What::Playlist
            }
        );
        assert_eq!(
            r.route(b"be_radio1", get, b"/favicon.ico", None),
            Route::NotSession {
                tenant: b"radio1",
                kind: NotSession::Image
            }
        );
        assert_eq!(
            r.route(b"be_radio1", Some(b"HEAD"), b"/live.mp3", None),
            Route::NotSession {
                tenant: b"radio1",
                kind: NotSession::Method
            }
        );
        // A TCP connection is a mount's, whatever its path.
        assert_eq!(
            r.route(b"be_radio1", None, b"/", None),
            Route::Stream {
                tenant: b"radio1",
                stream: StreamName::Path(b"/"),
                what: What::Mount
            }
        );
    }

    #[test]
    fn extension_patterns_of_either_list_and_any_length() {
        let c = AgentConfig::parse(
            "[sessions]\nhls_path_patterns = [\"*.seg\", \"*.longsegm\", \"*.\", \"*.both\"]\n\
             ignore_path_patterns = [\"*.both\", \"*.txt\", \"*.8letters\"]\n\
             mount_path_patterns = [\"/radio/*\", \"*.mnt\"]\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let r = Router::new(&c.routing, c.sessions.patterns());
        let what = |path: &'static [u8]| match r.route(b"be_x", Some(b"GET"), path, None) {
            Route::Stream { what, .. } => Some(what),
            Route::NotSession {
                kind: NotSession::Ignored,
                ..
            } => None,
            other => panic!("{other:?}"),
        };
        // (path, what it is or None for ignored), worked out from the patterns above and
        // docs/traffic.md for the paths no pattern matches.
        for (path, want) in [
            (&b"/a/1.seg"[..], Some(What::Segment)),
            (b"/a/1.longsegm", Some(What::Segment)),
            (b"/a/1.", Some(What::Segment)),
            (b"/a/1.both", None),
            (b"/a/1.txt", None),
            (b"/a/1.8letters", None),
            (b"/a/1.mp3", Some(What::Audio)),
            (b"/a/1.m3u8", Some(What::Playlist)),
            (b"/a/seg", Some(What::Audio)),
            (b"/radio/seg_1.aac", Some(What::Mount)),
            (b"/x/live.mnt", Some(What::Mount)),
        ] {
            assert_eq!(what(path), want, "{}", String::from_utf8_lossy(path));
        }
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
        let r = Router::new(&c.routing, c.sessions.patterns());
        let get = Some(&b"GET"[..]);
        assert!(matches!(
            r.route(
                b"be_shared",
                get,
                b"/x.mp3",
                Some(b"www.radio-a.example:443")
            ),
            Route::Stream { tenant: b"a", .. }
        ));
        assert_eq!(
            r.route(b"be_shared", get, b"/b/live.mp3", None),
            Route::Stream {
                tenant: b"b",
                stream: StreamName::Configured("main"),
                what: What::Audio
            }
        );
        assert_eq!(
            r.route(b"stats", get, b"/", None),
            Route::Ignored { tenant: b"stats" }
        );
    }
}
