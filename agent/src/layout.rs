//! What the agent learns of a log's HLS layout as it reads (`docs/traffic.md`, sections 2
//! and 3): which directories serve playlists, and per HLS directory which playlists have
//! segments of their own — enough to tell a packed-audio segment (`seg_12.aac`) from a mount
//! (`live.aac`), renditions from streams, and one stream from several in one directory.
//!
//! Keys are 64-bit hashes of (tenant, directory); nothing of a listener is here. The whole
//! of it is part of the agent's saved state, so it survives rotation and restarts.

use serde::{Deserialize, Serialize};

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// At most this many playlist directories are learned (about 1.5 MB); past it the agent
/// learns no more, and the dry run's explanation says so.
pub const MAX_PLAYLIST_DIRS: usize = 65_536;
/// Playlist names tracked per HLS directory: enough to see two streams with segments of
/// their own, or a master; Wowza's per-session `chunklist_w<id>` names fill the rest.
const STEMS_PER_DIR: usize = 16;

const PLAYLIST: u8 = 1;
const OWN_SEGMENTS: u8 = 2;

/// A 64-bit key of (tenant, bytes): rapidhash (v3) of `bytes` seeded with that of `tenant`
/// (seeded with 0) — the same key the ingestor gives a (tenant, stream), so that an HLS
/// stream named by its directory is looked up with the key its directory already has.
pub fn key_of(tenant: &[u8], bytes: &[u8]) -> u64 {
    use rapidhash::v3::{RapidSecrets, rapidhash_v3_seeded};
    let head = rapidhash_v3_seeded(tenant, &RapidSecrets::seed_cpp(0));
    rapidhash_v3_seeded(bytes, &RapidSecrets::seed_cpp(head))
}

fn stem_key(stem: &[u8]) -> u64 {
    key_of(b"", stem)
}

#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct Stem {
    key: u64,
    flags: u8,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct Stems {
    stems: Vec<Stem>,
}

impl Stems {
    /// Several streams: two playlists with segments of their own, and no playlist without.
    fn several_streams(&self) -> bool {
        let with = self
            .stems
            .iter()
            .filter(|s| s.flags == PLAYLIST | OWN_SEGMENTS)
            .count();
        with >= 2 && self.stems.iter().all(|s| s.flags & OWN_SEGMENTS != 0)
    }
}

#[derive(Default)]
pub struct Layout {
    playlist_dirs: HashMap<u64, ()>,
    /// Per HLS directory (keyed like `playlist_dirs`).
    dirs: HashMap<u64, Stems>,
    /// Playlist directories not learned because the table was full.
    pub overflowed: u64,
    /// Changes whenever a playlist directory is learned (or the layout restored): what
    /// callers derived of directories under an older epoch must be derived again. What is
    /// learned of one directory's names changes no epoch: its `note_*` call says so.
    epoch: u32,
}

/// The saved form of a [`Layout`].
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct SavedLayout {
    playlist_dirs: Vec<u64>,
    dirs: Vec<(u64, Stems)>,
}

impl SavedLayout {
    /// A layout that knows only these playlist directories (keys of (tenant, directory)).
    pub fn of_playlist_dirs(keys: impl IntoIterator<Item = u64>) -> SavedLayout {
        let mut playlist_dirs: Vec<u64> = keys.into_iter().collect();
        playlist_dirs.sort_unstable();
        playlist_dirs.dedup();
        SavedLayout {
            playlist_dirs,
            dirs: Vec::new(),
        }
    }
}

impl Layout {
    /// A `.m3u8` was fetched from `dir` of `tenant`. Says whether the directory is new (the
    /// epoch then changed).
    pub fn learn_playlist(&mut self, dir_key: u64) -> bool {
        if self.playlist_dirs.contains_key(&dir_key) {
            return false;
        }
        if self.playlist_dirs.len() >= MAX_PLAYLIST_DIRS {
            self.overflowed += 1;
            return false;
        }
        self.playlist_dirs.insert(dir_key, ());
        self.epoch = self.epoch.wrapping_add(1);
        true
    }

    /// See the field.
    #[inline]
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    #[inline]
    pub fn is_playlist_dir(&self, dir_key: u64) -> bool {
        self.playlist_dirs.contains_key(&dir_key)
    }

    /// A playlist named `stem` (without `.m3u8`) was fetched in the HLS directory `dir_key`.
    /// Says whether that is new of the directory: what was derived of its names before must
    /// be derived again (the epoch, which is about directories, stays).
    pub fn note_playlist(&mut self, dir_key: u64, stem: &[u8]) -> bool {
        let key = stem_key(stem);
        let stems = self.dirs.entry(dir_key).or_default();
        if let Some(s) = stems.stems.iter_mut().find(|s| s.key == key) {
            let new = s.flags & PLAYLIST == 0;
            s.flags |= PLAYLIST;
            new
        } else if stems.stems.len() < STEMS_PER_DIR {
            stems.stems.push(Stem {
                key,
                flags: PLAYLIST,
            });
            true
        } else {
            false
        }
    }

    /// A segment whose name's [`owner_stem`] is `stem` was fetched in `dir_key`: it is the
    /// playlist `stem`'s own segment, if that playlist is known. Says whether that is new
    /// of the directory, like [`Layout::note_playlist`].
    pub fn note_segment(&mut self, dir_key: u64, stem: &[u8]) -> bool {
        let Some(stems) = self.dirs.get_mut(&dir_key) else {
            return false;
        };
        let key = stem_key(stem);
        if let Some(s) = stems.stems.iter_mut().find(|s| s.key == key)
            && s.flags & OWN_SEGMENTS == 0
        {
            s.flags |= OWN_SEGMENTS;
            return true;
        }
        false
    }

    /// Whether the HLS directory `dir_key` holds several streams (see the module).
    pub fn several_streams(&self, dir_key: u64) -> bool {
        self.dirs.get(&dir_key).is_some_and(Stems::several_streams)
    }

    pub fn playlist_dirs(&self) -> usize {
        self.playlist_dirs.len()
    }

    pub fn save(&self) -> SavedLayout {
        let mut playlist_dirs: Vec<u64> = self.playlist_dirs.keys().copied().collect();
        playlist_dirs.sort_unstable();
        let mut dirs: Vec<(u64, Stems)> = self.dirs.iter().map(|(k, v)| (*k, v.clone())).collect();
        dirs.sort_unstable_by_key(|d| d.0);
        SavedLayout {
            playlist_dirs,
            dirs,
        }
    }

    pub fn restore(&mut self, saved: SavedLayout) {
        for k in saved.playlist_dirs.into_iter().take(MAX_PLAYLIST_DIRS) {
            self.playlist_dirs.insert(k, ());
        }
        for (k, mut v) in saved.dirs {
            v.stems.truncate(STEMS_PER_DIR);
            self.dirs.insert(k, v);
        }
        self.epoch = self.epoch.wrapping_add(1);
    }
}

/// A path's directory ("/" for "/x.mp3") and last segment.
#[inline]
pub fn dir_and_name(path: &[u8]) -> (&[u8], &[u8]) {
    match crate::bytes::rfind(path, b'/') {
        Some(0) => (b"/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"/", path),
    }
}

/// The directory above `dir` (`None` for "/").
#[inline]
pub fn parent(dir: &[u8]) -> Option<&[u8]> {
    if dir == b"/" {
        return None;
    }
    Some(dir_and_name(dir).0)
}

/// A name less its extension.
#[inline]
pub fn without_extension(name: &[u8]) -> &[u8] {
    match crate::bytes::rfind(name, b'.') {
        Some(d) => &name[..d],
        None => name,
    }
}

/// A segment name less its extension and its trailing sequence number with the separator
/// before it: `aac_lofi_17.aac` → `aac_lofi`, `a-5.ts` → `a`, `index_1_00042.aac` → `index_1`.
pub fn owner_stem(name: &[u8]) -> &[u8] {
    let stem = without_extension(name);
    let digits = stem.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    let rest = &stem[..stem.len() - digits];
    match rest.last() {
        Some(b'-' | b'_' | b'.') if digits > 0 => &rest[..rest.len() - 1],
        _ => rest,
    }
}

/// Names that say nothing of a rendition.
const GENERIC: [&[u8]; 13] = [
    b"seg",
    b"segment",
    b"segments",
    b"media",
    b"chunk",
    b"fragment",
    b"frag",
    b"part",
    b"file",
    b"index",
    b"stream",
    b"live",
    b"audio",
];

/// The rendition a segment's name gives (same-directory layouts): its [`owner_stem`] less
/// `_w<digits>` tokens (Wowza's session ids); `None` when that says nothing (empty, generic).
pub fn rendition_of_name(name: &[u8]) -> Option<Vec<u8>> {
    let stem = owner_stem(name);
    let mut out = Vec::with_capacity(stem.len());
    for token in stem.split(|&b| b == b'_') {
        let session_id =
            token.len() > 1 && token[0] == b'w' && token[1..].iter().all(u8::is_ascii_digit);
        if session_id {
            continue;
        }
        if !out.is_empty() {
            out.push(b'_');
        }
        out.extend_from_slice(token);
    }
    let generic = out.is_empty() || GENERIC.iter().any(|g| g.eq_ignore_ascii_case(&out));
    (!generic).then_some(out)
}

/// Whether a name holds a digit: a numbered segment rather than a mount's name.
#[inline]
pub fn has_digit(name: &[u8]) -> bool {
    name.iter().any(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_stems_and_renditions() {
        // (name, owner stem, rendition), worked out by hand from docs/traffic.md.
        for (name, stem, rendition) in [
            (
                &b"aac_lofi_17.aac"[..],
                &b"aac_lofi"[..],
                Some(&b"aac_lofi"[..]),
            ),
            (b"a-5.ts", b"a", Some(b"a")),
            (b"index_1_00042.aac", b"index_1", Some(b"index_1")),
            (b"media_w88_4.aac", b"media_w88", None),
            (
                b"media_w88_b64000_4.aac",
                b"media_w88_b64000",
                Some(b"media_b64000"),
            ),
            (b"seg_12.aac", b"seg", None),
            (b"seg12.aac", b"seg", None),
            (b"00042.aac", b"", None),
            (b"live.m3u8", b"live", None),
            (b"chunklist_w123.m3u8", b"chunklist_w", Some(b"chunklist_w")),
        ] {
            assert_eq!(owner_stem(name), stem, "{}", String::from_utf8_lossy(name));
            assert_eq!(
                rendition_of_name(name).as_deref(),
                rendition,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn directories_and_parents() {
        assert_eq!(
            dir_and_name(b"/hls/st/a.aac"),
            (&b"/hls/st"[..], &b"a.aac"[..])
        );
        assert_eq!(dir_and_name(b"/live.mp3"), (&b"/"[..], &b"live.mp3"[..]));
        assert_eq!(parent(b"/hls/st"), Some(&b"/hls"[..]));
        assert_eq!(parent(b"/hls"), Some(&b"/"[..]));
        assert_eq!(parent(b"/"), None);
    }

    #[test]
    fn several_streams_need_two_playlists_with_segments_and_no_master() {
        let (nginx, azuracast, wowza) = (1, 2, 3);
        let mut l = Layout::default();
        // nginx-rtmp: a.m3u8 + a-N.ts, b.m3u8 + b-N.ts.
        l.note_playlist(nginx, b"a");
        l.note_segment(nginx, b"a");
        assert!(!l.several_streams(nginx), "one stream so far");
        l.note_playlist(nginx, b"b");
        l.note_segment(nginx, b"b");
        assert!(l.several_streams(nginx));
        // AzuraCast: a master (live) with no segments of its own.
        for (stem, segments) in [
            (&b"live"[..], false),
            (b"aac_lofi", true),
            (b"aac_hifi", true),
        ] {
            l.note_playlist(azuracast, stem);
            if segments {
                l.note_segment(azuracast, stem);
            }
        }
        assert!(!l.several_streams(azuracast));
        // Wowza: segments named after no playlist.
        l.note_playlist(wowza, b"playlist");
        l.note_playlist(wowza, b"chunklist_w1");
        l.note_segment(wowza, b"media_w1");
        assert!(!l.several_streams(wowza));
        // Saved and restored, the same answers.
        let mut back = Layout::default();
        back.restore(l.save());
        assert!(back.several_streams(nginx) && !back.several_streams(azuracast));
    }
}
