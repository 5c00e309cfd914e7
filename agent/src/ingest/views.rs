//! What a request's directory and name say of its HLS stream (docs/traffic.md, sections 2
//! and 3): the layout's views, cached per directory and name, and [`Ingestor::resolve`].

use earshot_common::{Dimension, Protocol};

use super::{FROM_PLAYLIST, HlsPart, Ingestor, MAX_STEMS};
use crate::accumulate::ValueId;
use crate::explain::Reason;
use crate::layout;
use crate::route::{StreamName, What};

/// The group a request's stream is decided from: a prefix of its path, or a rule's name.
pub(super) enum Group<'p> {
    Line(&'p [u8]),
    /// The request's own directory, with its key (the same as its stream key).
    Dir(&'p [u8], u64),
    Configured,
}

/// Directory and name views cached at most (emptied when full).
pub(super) const MAX_VIEWS: usize = 65_536;

/// What the layout says of one (tenant, directory).
#[derive(Clone, Copy, Default)]
pub(super) struct DirView {
    epoch: u32,
    /// Names this directory's name views: a new one (never used before) whenever the view
    /// is made again or the layout learns something of the directory's names.
    generation: u32,
    playlist_dir: bool,
    /// The length of the directory's parent when that is a playlist directory (then the
    /// directory holds renditions), else 0.
    parent_len: u16,
}

/// What [`Ingestor::names`] finds of an HLS (or maybe HLS) request for `resolve`.
pub(super) struct Names<'p> {
    dir: &'p [u8],
    name: &'p [u8],
    dir_key: u64,
    dir_view: DirView,
    /// The key of the name's view ([`name_key`]).
    name_key: u64,
    /// A same-directory segment's [`layout::owner_stem`] (empty otherwise).
    owner: &'p [u8],
    what: What,
}

/// What one name of a directory adds to a session.
#[derive(Clone, Copy, Default)]
pub(super) struct NameView {
    /// The [`DirView::generation`] it was worked out under.
    generation: u32,
    part: HlsPart,
}

/// The key of a (directory, stem) name view; `what` tells playlists from segments.
#[inline]
pub(super) fn name_key(dir_key: u64, stem: &[u8], what: u8) -> u64 {
    use rapidhash::v3::{RapidSecrets, rapidhash_v3_seeded};
    rapidhash_v3_seeded(stem, &RapidSecrets::seed_cpp(dir_key ^ u64::from(what)))
}

/// The last component of a directory.
pub(super) fn dir_name(dir: &[u8]) -> &[u8] {
    layout::dir_and_name(dir).1
}

impl Ingestor {
    /// What [`Ingestor::resolve`] looks up for a request of `tenant`: its directory's view
    /// and the key of its name's view, whose slot is fetched now. `None` for a mount.
    #[inline]
    pub(super) fn names<'p>(
        &mut self,
        tenant: &[u8],
        path: &'p [u8],
        what: What,
    ) -> Option<Names<'p>> {
        if what == What::Mount {
            return None;
        }
        let (dir, name) = layout::dir_and_name(path);
        let dir_key = layout::key_of(tenant, dir);
        let dir_view = self.dir_view(tenant, dir, dir_key);
        let in_hls_dir = dir_view.parent_len > 0 || dir_view.playlist_dir;
        let mut owner: &[u8] = b"";
        let name_key = match what {
            What::Playlist => name_key(dir_key, layout::without_extension(name), b'p'),
            // An ambiguous name that is no segment: a mount, no name to look at.
            What::Audio if !(in_hls_dir && layout::has_digit(name)) => return None,
            // A rendition's sub-directory: its name is the rendition.
            _ if dir_view.parent_len > 0 => name_key(dir_key, b"", b'd'),
            _ => {
                owner = layout::owner_stem(name);
                name_key(dir_key, owner, b's')
            }
        };
        self.name_views.prefetch(name_key);
        Some(Names {
            dir,
            name,
            dir_key,
            dir_view,
            name_key,
            owner,
            what,
        })
    }

    /// Decides what an audio request of `tenant` is (docs/traffic.md, sections 2 and 3):
    /// its stream's group (the stream the listener chose, as far as this request tells),
    /// protocol, what it adds to an HLS session, and why — learning from it first. `names`
    /// is what [`Ingestor::names`] found of it (`None`: a mount, or an ambiguous name that is
    /// no segment).
    pub(super) fn resolve<'p>(
        &mut self,
        tenant: &[u8],
        stream: &StreamName<'_>,
        path: &'p [u8],
        names: Option<Names<'p>>,
    ) -> (Group<'p>, Protocol, HlsPart, Reason) {
        let configured = matches!(stream, StreamName::Configured(_));
        let group_of = |g: &'p [u8]| {
            if configured {
                Group::Configured
            } else {
                Group::Line(g)
            }
        };
        // The request's own directory, whose key is its stream key.
        let own_dir = |dir: &'p [u8], key: u64| {
            if configured {
                Group::Configured
            } else {
                Group::Dir(dir, key)
            }
        };
        let Some(Names {
            dir,
            name,
            dir_key,
            dir_view,
            name_key,
            owner,
            what,
        }) = names
        else {
            return (
                group_of(path),
                Protocol::Icecast,
                HlsPart::default(),
                Reason::Mount,
            );
        };
        if what == What::Playlist {
            let stem = layout::without_extension(name);
            let mut dir_view = dir_view;
            let mut view = self.name_view(&dir_view, name_key);
            if view.is_none() && self.layout.learn_playlist(dir_key) {
                dir_view = self.dir_view(tenant, dir, dir_key);
            }
            if dir_view.parent_len > 0 {
                let parent = &dir[..dir_view.parent_len as usize];
                return (
                    group_of(parent),
                    Protocol::Hls,
                    HlsPart::default(),
                    Reason::Renditions,
                );
            }
            let part = match view.take() {
                Some(v) => v,
                None => {
                    if self.layout.note_playlist(dir_key, stem) {
                        dir_view = self.renew_dir_view(dir_key);
                    }
                    let part = HlsPart {
                        rendition: None,
                        stem: self.intern_stem(stem) | FROM_PLAYLIST,
                    };
                    self.keep_name_view(&dir_view, name_key, part);
                    part
                }
            };
            return (
                own_dir(dir, dir_key),
                Protocol::Hls,
                part,
                Reason::PlaylistDir,
            );
        }
        let reason = if what == What::Audio {
            Reason::PackedAudio
        } else {
            Reason::Segments
        };
        let init = name.len() >= 4 && name[..4].eq_ignore_ascii_case(b"init");
        if dir_view.parent_len > 0 {
            let parent = &dir[..dir_view.parent_len as usize];
            // A rendition's sub-directory: its name is the rendition.
            let rendition = match self.name_view(&dir_view, name_key) {
                Some(part) => part.rendition,
                None => {
                    let name = String::from_utf8_lossy(dir_name(dir));
                    let id = self.acc.value_id(Dimension::Rendition, &name);
                    let part = HlsPart {
                        rendition: Some(id),
                        stem: 0,
                    };
                    self.keep_name_view(&dir_view, name_key, part);
                    part.rendition
                }
            };
            let rendition = rendition.filter(|_| !init);
            let part = HlsPart { rendition, stem: 0 };
            return (group_of(parent), Protocol::Hls, part, Reason::Renditions);
        }
        let mut part = match self.name_view(&dir_view, name_key) {
            Some(part) => part,
            None => {
                let dir_view = if self.layout.note_segment(dir_key, owner) {
                    self.renew_dir_view(dir_key)
                } else {
                    dir_view
                };
                let part = HlsPart {
                    rendition: Some(self.rendition_of_segment(name)),
                    stem: self.intern_stem(owner),
                };
                self.keep_name_view(&dir_view, name_key, part);
                part
            }
        };
        if init {
            part.rendition = None;
        }
        (own_dir(dir, dir_key), Protocol::Hls, part, reason)
    }

    /// What the layout says of a directory, cached until it learns something new.
    #[inline]
    pub(super) fn dir_view(&mut self, tenant: &[u8], dir: &[u8], dir_key: u64) -> DirView {
        let epoch = self.layout.epoch();
        if let Some(v) = self.dir_views.get(dir_key)
            && v.epoch == epoch
        {
            return *v;
        }
        // The directory above, when it serves playlists itself (the root never counts).
        let parent_len = layout::parent(dir)
            .filter(|p| *p != b"/")
            .filter(|p| self.layout.is_playlist_dir(layout::key_of(tenant, p)))
            .map_or(0, |p| p.len().min(u16::MAX as usize) as u16);
        let view = DirView {
            epoch,
            generation: self.next_generation(),
            playlist_dir: self.layout.is_playlist_dir(dir_key),
            parent_len,
        };
        if self.dir_views.len() >= MAX_VIEWS {
            self.dir_views.retain(|_| false);
        }
        self.dir_views.insert(dir_key, view);
        view
    }

    /// The layout learned something of a directory's names (its view was just made or
    /// found): its name views are worked out again.
    pub(super) fn renew_dir_view(&mut self, dir_key: u64) -> DirView {
        let generation = self.next_generation();
        let v = self
            .dir_views
            .get_mut(dir_key)
            .expect("a directory's view is made before its names are looked at");
        v.generation = generation;
        *v
    }

    pub(super) fn next_generation(&mut self) -> u32 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// What a playlist or segment name of a directory adds to a session, when it was worked
    /// out under the directory's current view.
    #[inline]
    pub(super) fn name_view(&self, dir: &DirView, key: u64) -> Option<HlsPart> {
        let v = self.name_views.get(key)?;
        (v.generation == dir.generation).then_some(v.part)
    }

    pub(super) fn keep_name_view(&mut self, dir: &DirView, key: u64, part: HlsPart) {
        if self.name_views.len() >= MAX_VIEWS {
            self.name_views.retain(|_| false);
        }
        let generation = dir.generation;
        self.name_views.insert(key, NameView { generation, part });
    }

    /// The rendition value a same-directory segment's name gives (0, none, when it gives
    /// none).
    pub(super) fn rendition_of_segment(&mut self, name: &[u8]) -> ValueId {
        match layout::rendition_of_name(name) {
            Some(r) => self
                .acc
                .value_id(Dimension::Rendition, &String::from_utf8_lossy(&r)),
            None => 0,
        }
    }

    pub(super) fn intern_stem(&mut self, stem: &[u8]) -> u32 {
        if let Some(&id) = self.stem_index.get(stem) {
            return id;
        }
        if self.stems.len() >= MAX_STEMS {
            return 0;
        }
        let id = self.stems.len() as u32;
        self.stems.push(stem.into());
        self.stem_index.insert(stem.into(), id);
        id
    }
}
