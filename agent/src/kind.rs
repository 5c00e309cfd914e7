//! What a request is, from its method and path alone: audio (an HLS playlist, an HLS-only
//! media segment, or audio that may be a mount or a packed-audio segment) or something that is
//! never a session (a page, an image, a player file …). The rules are `docs/traffic.md`,
//! sections 1 and 2; whether ambiguous audio is a segment needs what the agent learned of
//! the log (`layout`).

/// Why a successful request is not a session: the `not_sessions` counters' kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NotSession {
    /// HEAD, OPTIONS, POST, SOURCE …: anything but GET.
    Method,
    /// `.m3u`, `.pls`, `.xspf` …: a file that points a player at a stream.
    PlayerFile,
    Document,
    Image,
    /// Scripts, style sheets, fonts.
    Script,
    StatusPage,
    /// An extension that is none of the known ones.
    Other,
    /// A configured `ignore_path_patterns` entry.
    Ignored,
}

impl NotSession {
    pub const ALL: [NotSession; 8] = [
        NotSession::Method,
        NotSession::PlayerFile,
        NotSession::Document,
        NotSession::Image,
        NotSession::Script,
        NotSession::StatusPage,
        NotSession::Other,
        NotSession::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotSession::Method => "method",
            NotSession::PlayerFile => "player_file",
            NotSession::Document => "document",
            NotSession::Image => "image",
            NotSession::Script => "script",
            NotSession::StatusPage => "status_page",
            NotSession::Other => "other",
            NotSession::Ignored => "ignored",
        }
    }
}

/// What a path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// `.m3u8`.
    Playlist,
    /// Media only HLS serves (`.ts`, `.m4s`, `init.mp4` …).
    Segment,
    /// Audio that is a mount or a packed-audio segment (`.aac`, `.mp3`, no extension …).
    Audio,
    Not(NotSession),
}

/// The kind of a GET request's path (without query).
pub fn path_kind(path: &[u8]) -> PathKind {
    let name_at = crate::bytes::rfind(path, b'/').map_or(0, |i| i + 1);
    let name = &path[name_at..];
    let Some(dot) = crate::bytes::rfind(name, b'.') else {
        return extensionless(path, name);
    };
    let ext = &name[dot + 1..];
    let mut lower = [0u8; 12];
    if ext.len() > lower.len() {
        return PathKind::Not(NotSession::Other);
    }
    for (l, b) in lower.iter_mut().zip(ext) {
        *l = b.to_ascii_lowercase();
    }
    let kind = match &lower[..ext.len()] {
        b"m3u8" => PathKind::Playlist,
        b"ts" | b"m4s" | b"cmfa" | b"cmfv" | b"cmft" | b"m4v" | b"mp4" | b"vtt" | b"webvtt" => {
            PathKind::Segment
        }
        b"aac" | b"mp3" | b"ac3" | b"ec3" | b"eac3" | b"m4a" | b"ogg" | b"oga" | b"opus"
        | b"flac" | b"aacp" | b"mp2" | b"mpga" | b"mpeg" | b"wav" | b"nsv" | b"weba" | b"adts"
        | b"spx" => PathKind::Audio,
        b"m3u" | b"pls" | b"xspf" | b"asx" | b"ram" | b"wax" | b"qtl" => {
            PathKind::Not(NotSession::PlayerFile)
        }
        b"html" | b"htm" | b"xhtml" | b"json" | b"xml" | b"txt" | b"php" | b"asp" | b"aspx"
        | b"jsp" | b"rss" | b"atom" | b"csv" | b"pdf" | b"md" | b"webmanifest" => {
            PathKind::Not(NotSession::Document)
        }
        b"ico" | b"png" | b"jpg" | b"jpeg" | b"gif" | b"svg" | b"webp" | b"avif" | b"bmp"
        | b"tif" | b"tiff" => PathKind::Not(NotSession::Image),
        b"js" | b"mjs" | b"css" | b"map" | b"wasm" | b"woff" | b"woff2" | b"ttf" | b"otf"
        | b"eot" => PathKind::Not(NotSession::Script),
        b"xsl" => PathKind::Not(NotSession::StatusPage),
        _ => PathKind::Not(NotSession::Other),
    };
    match kind {
        PathKind::Not(_) => kind,
        _ if under(path, b"/admin/") => PathKind::Not(NotSession::StatusPage),
        _ if under(path, b"/api/") => PathKind::Not(NotSession::Document),
        _ => kind,
    }
}

fn extensionless(path: &[u8], name: &[u8]) -> PathKind {
    if under(path, b"/admin/") || path == b"/admin" {
        return PathKind::Not(NotSession::StatusPage);
    }
    if under(path, b"/api/") {
        return PathKind::Not(NotSession::Document);
    }
    let status = [
        &b"status"[..],
        b"stats",
        b"statistics",
        b"server-status",
        b"health",
        b"healthz",
        b"ping",
        b"metrics",
        b"nowplaying",
        b"currentsong",
    ];
    if status.iter().any(|s| s.eq_ignore_ascii_case(name)) {
        return PathKind::Not(NotSession::StatusPage);
    }
    PathKind::Audio
}

fn under(path: &[u8], prefix: &[u8]) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_by_kind() {
        use NotSession::*;
        use PathKind::*;
        // Worked out from docs/traffic.md's tables.
        for (path, want) in [
            (&b"/live.mp3"[..], Audio),
            (b"/stream", Audio),
            (b"/;stream.mp3", Audio),
            (b"/;", Audio),
            (b"/", Audio),
            (b"/listen/st/radio.mp3", Audio),
            (b"/hls/st/aac_lofi_12.aac", Audio),
            (b"/hls/st/live.m3u8", Playlist),
            (b"/hls/st/LIVE.M3U8", Playlist),
            (b"/cmaf/st/audio_64/init.mp4", Segment),
            (b"/cmaf/st/audio_64/seg_3.m4s", Segment),
            (b"/x/seg.cmfa", Segment),
            (b"/hls/a-17.ts", Segment),
            (b"/live.mp3.m3u", Not(PlayerFile)),
            (b"/live.pls", Not(PlayerFile)),
            (b"/live.xspf", Not(PlayerFile)),
            (b"/status-json.xsl", Not(StatusPage)),
            (b"/admin/stats", Not(StatusPage)),
            (b"/admin/listclients.mp3", Not(StatusPage)),
            (b"/server-status", Not(StatusPage)),
            (b"/api/nowplaying/st", Not(Document)),
            (b"/api/live/nowplaying/sse", Not(Document)),
            (b"/nowplaying.json", Not(Document)),
            (b"/crossdomain.xml", Not(Document)),
            (b"/robots.txt", Not(Document)),
            (b"/index.html", Not(Document)),
            (b"/favicon.ico", Not(Image)),
            (b"/art/12.JPG", Not(Image)),
            (b"/player.js", Not(Script)),
            (b"/style.css", Not(Script)),
            (b"/x.zip", Not(Other)),
            (b"/a.b/stream", Audio),
            (b"/x.averyveryverylongextension", Not(Other)),
        ] {
            assert_eq!(path_kind(path), want, "{}", String::from_utf8_lossy(path));
        }
    }
}
