//! The ingestor's saved state: open HLS sessions, AQH progress and the learned layout, kept
//! with each spool commit so that a restart goes on where the agent stopped. Versioned
//! ([`STATE_VERSION`]); every older version is still read.

use earshot_common::{Dimension, ListenerId, Protocol};
use serde::{Deserialize, Serialize};

use super::{
    CachedListener, FROM_PLAYLIST, IngestError, Ingestor, ListenerInfo, OpenHls, StreamSlot,
    cache_key, intern_stream, stream_key,
};
use crate::accumulate::{AqhEntry, default_value};
use crate::layout::{self, SavedLayout};

/// The saved state's layout version: 2 added renditions, stems and the learned layout.
const STATE_VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    log_now_ms: i64,
    open: Vec<SavedHls>,
    aqh: Vec<AqhEntry>,
    layout: SavedLayout,
}

#[derive(Serialize, Deserialize)]
struct SavedHls {
    tenant: String,
    /// The session's group: its stream, unless its directory holds several streams.
    stream: String,
    listener: ListenerId,
    start_ms: i64,
    end_ms: i64,
    dims: [String; Dimension::COUNT],
    bot: bool,
    /// Whether `stream` is the directory of the session's requests (not a rule's name).
    named_by_directory: bool,
    stem: Vec<u8>,
    stem_from_playlist: bool,
}

/// Version 1 of the saved state, as agents before renditions wrote it.
#[derive(Deserialize)]
struct SavedStateV1 {
    #[allow(dead_code)]
    version: u32,
    log_now_ms: i64,
    open: Vec<SavedHlsV1>,
    aqh: Vec<AqhEntry>,
}

#[derive(Deserialize)]
struct SavedHlsV1 {
    tenant: String,
    stream: String,
    listener: ListenerId,
    start_ms: i64,
    end_ms: i64,
    dims: [String; 6],
    bot: bool,
}

impl From<SavedStateV1> for SavedState {
    fn from(v1: SavedStateV1) -> SavedState {
        // Version 1 learned no layout, but named every HLS stream by its playlists'
        // directory: the open sessions' streams are playlist directories, so that their
        // listeners' next segments (often read before their next playlist) stay HLS.
        let layout = SavedLayout::of_playlist_dirs(
            v1.open
                .iter()
                .map(|s| layout::key_of(s.tenant.as_bytes(), s.stream.as_bytes())),
        );
        SavedState {
            version: STATE_VERSION,
            log_now_ms: v1.log_now_ms,
            open: v1
                .open
                .into_iter()
                .map(|s| {
                    let [client, device, os, country, referrer, source] = s.dims;
                    SavedHls {
                        tenant: s.tenant,
                        stream: s.stream,
                        listener: s.listener,
                        start_ms: s.start_ms,
                        end_ms: s.end_ms,
                        dims: [
                            client,
                            device,
                            os,
                            country,
                            referrer,
                            source,
                            default_value(Dimension::Rendition).to_string(),
                        ],
                        bot: s.bot,
                        // Version 1 named every HLS stream by its playlists' directory.
                        named_by_directory: true,
                        stem: Vec::new(),
                        stem_from_playlist: false,
                    }
                })
                .collect(),
            aqh: v1.aqh,
            layout,
        }
    }
}

impl Ingestor {
    /// The state that must survive a restart: open HLS sessions, AQH progress and what
    /// was learned of the log's layout.
    pub fn save_state(&self) -> Vec<u8> {
        let mut open = self
            .open_hls
            .iter()
            .filter_map(|(&session, holder)| {
                let entry = self.listeners.get(*holder)?;
                Some((session, entry.info, *entry.open()?))
            })
            .map(|((sid, listener), info, s)| {
                let dims = s.dims(&info);
                SavedHls {
                    tenant: self.acc.stream_tenant(sid).to_string(),
                    stream: self.acc.stream_name(sid).to_string(),
                    listener,
                    start_ms: s.start_ms,
                    end_ms: s.end_ms,
                    dims: Dimension::ALL.map(|d| self.acc.value(d, dims[d as usize]).to_string()),
                    bot: info.bot(),
                    named_by_directory: self.group_dirs.contains_key(&sid),
                    stem: self.stems[(s.stem & !FROM_PLAYLIST) as usize].to_vec(),
                    stem_from_playlist: s.stem & FROM_PLAYLIST != 0,
                }
            })
            .collect::<Vec<_>>();
        // In a fixed order, so that one state gives one byte string.
        open.sort_unstable_by(|a, b| {
            (&a.tenant, &a.stream, a.listener).cmp(&(&b.tenant, &b.stream, b.listener))
        });
        let state = SavedState {
            version: STATE_VERSION,
            log_now_ms: self.log_now_ms,
            open,
            aqh: self.acc.save_aqh(),
            layout: self.layout.save(),
        };
        postcard::to_stdvec(&state).expect("state serialises")
    }

    /// Restores what [`Ingestor::save_state`] saved, or what an agent from before renditions
    /// and layouts saved (version 1).
    pub fn restore_state(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        let bad = |e: postcard::Error| IngestError::State(e.to_string());
        let version: u32 = postcard::from_bytes(bytes).map_err(bad)?;
        let state = match version {
            1 => {
                let v1: SavedStateV1 = postcard::from_bytes(bytes).map_err(bad)?;
                v1.into()
            }
            STATE_VERSION => postcard::from_bytes::<SavedState>(bytes).map_err(bad)?,
            v => {
                return Err(IngestError::State(format!(
                    "version {v} is newer than this agent's ({STATE_VERSION})"
                )));
            }
        };
        self.log_now_ms = state.log_now_ms;
        self.acc.restore_aqh(state.aqh);
        self.layout.restore(state.layout);
        for s in state.open {
            let key = stream_key(s.tenant.as_bytes(), s.stream.as_bytes());
            let StreamSlot::Stream { stream: sid, .. } = intern_stream(
                &mut self.streams,
                &mut self.acc,
                (&mut self.tenants, &mut self.tenant_names),
                key,
                s.tenant.as_bytes(),
                s.stream.as_bytes(),
                Protocol::Hls,
            ) else {
                continue;
            };
            if s.named_by_directory {
                self.group_dirs.insert(
                    sid,
                    layout::key_of(s.tenant.as_bytes(), s.stream.as_bytes()),
                );
            }
            let dims = Dimension::ALL.map(|d| self.acc.value_id(d, &s.dims[d as usize]));
            // Held by an entry of its own, which no line's key finds: the listener's next
            // line reaches it through `open_hls`.
            let mut tail = [0u8; 12];
            tail[..4].copy_from_slice(&sid.to_le_bytes());
            tail[4..].copy_from_slice(&s.listener.0.to_le_bytes());
            let holder = cache_key(u64::MAX, b"restored", &tail);
            let info = ListenerInfo::new(
                s.listener,
                [
                    dims[Dimension::Client as usize],
                    dims[Dimension::Device as usize],
                    dims[Dimension::Os as usize],
                    dims[Dimension::Country as usize],
                ],
                s.bot,
            );
            let stem = match s.stem.is_empty() {
                true => 0,
                false => self.intern_stem(&s.stem),
            };
            let open = OpenHls {
                start_ms: s.start_ms,
                end_ms: s.end_ms,
                referrer: dims[Dimension::Referrer as usize],
                source: dims[Dimension::Source as usize],
                rendition: dims[Dimension::Rendition as usize],
                stem: stem
                    | if s.stem_from_playlist {
                        FROM_PLAYLIST
                    } else {
                        0
                    },
            };
            let mut entry = CachedListener::new(info);
            entry.set_open(open);
            self.listeners.insert(holder, entry);
            self.open_hls.insert((sid, s.listener), holder);
            self.expiry
                .insert((s.end_ms + self.hls_gap_ms, sid, s.listener, holder));
        }
        Ok(())
    }
}
