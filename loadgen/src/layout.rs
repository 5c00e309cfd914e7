//! How each station lays out its streams: the URL families of real streaming servers, and the
//! names the truth gives their streams and renditions (docs/traffic.md, section 3).
//!
//! The generator knows which stream and rendition every request is for; the names here are
//! written from that knowledge (which rendition a listener chose), never by parsing a path.

use std::fmt::Write as _;

use rand::Rng;
use serde::Serialize;

use crate::hls::{HlsRequest, SEGMENT_MS, Shape, Step};
use crate::rng::SplitMix;
use crate::{HOUR_MS, Layouts, Scenario};

/// A station's URL family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Today's default: `/<t>/live.mp3`, `/<t>/aac`, `/hls/<t>/live.m3u8` + `seg_<n>.aac|ts`.
    Classic,
    /// Icecast/Shoutcast mounts: `/live.mp3`, `/stream`, `/;stream.mp3`, `/listen/<t>/radio.mp3`.
    Icecast,
    /// AzuraCast/Liquidsoap HLS: `/hls/<t>/live.m3u8` → `aac_lofi.m3u8` … → `aac_lofi_<n>.aac`.
    Azuracast,
    /// Wowza: `/<app>/<t>/playlist.m3u8` → `chunklist_w<id>.m3u8` → `media_w<id>_<n>.aac`.
    Wowza,
    /// nginx-rtmp: several streams in one `/hls`: `/hls/<name>.m3u8` + `/hls/<name>-<n>.ts`.
    NginxRtmp,
    /// fMP4/CMAF: `/cmaf/<t>/master.m3u8` → `audio_64/index.m3u8`, `init.mp4`, `seg_<n>.m4s`.
    Cmaf,
    /// CDN/packager: `/live/<t>/index.m3u8` → `index_1.m3u8` → `index_1_00042.aac`, signed URLs.
    Cdn,
}

/// The families of [`Layouts::Mixed`], in the order stations are dealt them.
pub const MIXED_FAMILIES: [Family; 6] = [
    Family::Icecast,
    Family::Azuracast,
    Family::Wowza,
    Family::NginxRtmp,
    Family::Cmaf,
    Family::Cdn,
];

/// One stream a listener can choose.
#[derive(Clone, Debug)]
pub struct StreamDef {
    /// The stream's name in the truth: the mount path, or the HLS stream.
    pub path: String,
    pub hls: bool,
    /// Progressive streams: body bytes per millisecond.
    pub bytes_per_ms: u64,
    /// nginx-rtmp: the stream's playlist name (`/hls/<name>.m3u8`).
    pub name: &'static str,
    /// Relative weight when a listener picks a stream of this kind.
    pub weight: u32,
}

/// Everything about one station's layout that the writer needs.
#[derive(Clone, Debug)]
pub struct StationLayout {
    pub family: Family,
    pub tenant: String,
    pub streams: Vec<StreamDef>,
    /// Segment extension per rendition.
    pub ext: [&'static str; 3],
    /// Wowza: the application (`/<app>/<t>`).
    pub app: &'static str,
    /// Wowza: adaptive (`_b64000`/`_b128000` renditions).
    pub abr: bool,
    /// Subtracted from the walk's segment number (so CDN numbers are small and zero-padded).
    pub seq_base: u64,
    /// Mounts for the non-audio requests (`HEAD`, `OPTIONS`, `<mount>.m3u`).
    pub noise_mounts: Vec<String>,
}

const AZURA_RENDITIONS: [&str; 3] = ["aac_lofi", "aac_midfi", "aac_hifi"];
const WOWZA_ABR: [&str; 2] = ["_b64000", "_b128000"];
const WOWZA_ABR_NAMES: [&str; 2] = ["media_b64000", "media_b128000"];
const CMAF_RENDITIONS: [&str; 2] = ["audio_64", "audio_128"];
const CDN_RENDITIONS: [&str; 2] = ["index_1", "index_2"];
const NGINX_NAMES: [&str; 3] = ["main", "talk", "jazz"];
/// The host of HTTP/2 absolute-URI requests.
pub const H2_AUTHORITY: &str = "https://radio.example";

fn mount(path: String, bytes_per_ms: u64, weight: u32) -> StreamDef {
    StreamDef {
        path,
        hls: false,
        bytes_per_ms,
        name: "",
        weight,
    }
}

fn hls(path: String, name: &'static str) -> StreamDef {
    StreamDef {
        path,
        hls: true,
        bytes_per_ms: 0,
        name,
        weight: 1,
    }
}

impl StationLayout {
    fn classic(station: u32) -> Self {
        let t = Scenario::tenant_name(station);
        StationLayout {
            family: Family::Classic,
            streams: vec![
                mount(format!("/{t}/live.mp3"), 16, 1),
                mount(format!("/{t}/aac"), 8, 1),
                hls(format!("/hls/{t}"), ""),
            ],
            ext: if station.is_multiple_of(2) {
                ["aac"; 3]
            } else {
                ["ts"; 3]
            },
            app: "",
            abr: false,
            seq_base: 0,
            noise_mounts: vec![format!("/{t}/live.mp3")],
            tenant: t,
        }
    }

    /// Station `station`, the `k`-th of its family.
    fn mixed(scenario: &Scenario, station: u32, family: Family, k: u32) -> Self {
        let t = Scenario::tenant_name(station);
        let mut rng = SplitMix::derive(scenario.seed, 7, u64::from(station));
        // Segment numbers count from a stream start up to two hours before the window.
        let stream_start = scenario.start_ms - rng.gen_range(0..2 * HOUR_MS);
        let seq_base = (stream_start / SEGMENT_MS) as u64 - 3;
        let listen = format!("/listen/{t}/radio.mp3");
        let k = k as usize;
        let (streams, ext, app, abr) = match family {
            Family::Icecast => (
                vec![
                    mount("/live.mp3".into(), 16, 50),
                    mount("/stream".into(), 16, 20),
                    mount("/;stream.mp3".into(), 16, 15),
                    mount(listen.clone(), 16, 15),
                ],
                ["mp3"; 3],
                "",
                false,
            ),
            Family::Azuracast => (
                vec![hls(format!("/hls/{t}"), ""), mount(listen.clone(), 16, 1)],
                [["aac", "mp3"][k % 2]; 3],
                "",
                false,
            ),
            Family::Wowza => {
                let app = ["radio", "live"][k % 2];
                (
                    vec![hls(format!("/{app}/{t}"), ""), mount(listen.clone(), 8, 1)],
                    [["aac", "ts", "mp3"][k % 3]; 3],
                    app,
                    k % 2 == 1,
                )
            }
            Family::NginxRtmp => {
                let n = 2 + k % 2;
                let mut v: Vec<StreamDef> = NGINX_NAMES[..n]
                    .iter()
                    .map(|name| hls(format!("/hls/{name}"), name))
                    .collect();
                v.push(mount(listen.clone(), 16, 1));
                (v, ["ts"; 3], "", false)
            }
            Family::Cmaf => (
                vec![hls(format!("/cmaf/{t}"), ""), mount(listen.clone(), 16, 1)],
                // Packagers differ; some ladders even mix them.
                [["m4s", "cmfa", ""], ["m4a", "m4s", ""], ["cmfa", "m4a", ""]][k % 3],
                "",
                false,
            ),
            Family::Cdn => (
                vec![hls(format!("/live/{t}"), ""), mount(listen.clone(), 16, 1)],
                [["aac", "mp3"][k % 2], ["ac3", "ec3"][k % 2], "aac"],
                "",
                false,
            ),
            Family::Classic => unreachable!("classic stations are built by classic()"),
        };
        let noise_mounts = streams
            .iter()
            .filter(|s| !s.hls)
            .map(|s| s.path.clone())
            .collect();
        StationLayout {
            family,
            tenant: t,
            streams,
            ext,
            app,
            abr,
            seq_base,
            noise_mounts,
        }
    }

    /// The walk's shape for this station's HLS streams (`switch_per_mille` set per session).
    pub fn shape(&self) -> Shape {
        let (master, init, renditions, bytes): (bool, bool, u8, [u64; 3]) = match self.family {
            Family::Classic => {
                let b = if self.ext[0] == "aac" {
                    80_000
                } else {
                    168_000
                };
                (false, false, 1, [b; 3])
            }
            Family::Azuracast => (true, false, 3, [40_000, 80_000, 160_000]),
            Family::Wowza if self.abr => (true, false, 2, [80_000, 160_000, 0]),
            Family::Wowza => (true, false, 1, [120_000; 3]),
            Family::NginxRtmp => (false, false, 1, [168_000; 3]),
            Family::Cmaf => (true, true, 2, [80_000, 160_000, 0]),
            Family::Cdn => (true, false, 2, [80_000, 240_000, 0]),
            Family::Icecast => (false, false, 1, [0; 3]),
        };
        Shape {
            master,
            init,
            renditions,
            switch_per_mille: 0,
            segment_bytes: bytes,
        }
    }

    /// The truth's `rendition` of a segment of rendition `r` (docs/traffic.md, section 3).
    pub fn rendition_name(&self, r: Option<u8>) -> &'static str {
        let Some(r) = r else { return "none" };
        let r = usize::from(r);
        match self.family {
            Family::Azuracast => AZURA_RENDITIONS[r],
            Family::Wowza if self.abr => WOWZA_ABR_NAMES[r],
            Family::Cmaf => CMAF_RENDITIONS[r],
            Family::Cdn => CDN_RENDITIONS[r],
            _ => "none",
        }
    }

    /// Appends the path and query of an HLS request of stream `stream` (no method, no version).
    pub fn push_hls_path(
        &self,
        out: &mut String,
        stream: &StreamDef,
        r: &HlsRequest,
        session_id: u64,
        source: Option<&str>,
    ) {
        let t = &self.tenant;
        let rend = usize::from(r.rendition);
        let ext = self.ext[rend];
        let n = match r.step {
            Step::Segment(n) => n,
            _ => 0,
        };
        let shown = n.saturating_sub(self.seq_base);
        let is_playlist = matches!(r.step, Step::Master | Step::Playlist);
        match self.family {
            Family::Classic => {
                out.push_str(&stream.path);
                match r.step {
                    Step::Segment(_) => {
                        let _ = write!(out, "/seg_{n}.{ext}");
                    }
                    _ => out.push_str("/live.m3u8"),
                }
            }
            Family::Azuracast => {
                let _ = match r.step {
                    Step::Master => write!(out, "/hls/{t}/live.m3u8"),
                    Step::Playlist | Step::Init => {
                        write!(out, "/hls/{t}/{}.m3u8", AZURA_RENDITIONS[rend])
                    }
                    Step::Segment(_) => {
                        write!(out, "/hls/{t}/{}_{shown}.{ext}", AZURA_RENDITIONS[rend])
                    }
                };
            }
            Family::Wowza => {
                let app = self.app;
                let b = if self.abr { WOWZA_ABR[rend] } else { "" };
                let _ = match r.step {
                    Step::Master => write!(out, "/{app}/{t}/playlist.m3u8"),
                    Step::Playlist | Step::Init => {
                        write!(out, "/{app}/{t}/chunklist_w{session_id}{b}.m3u8")
                    }
                    Step::Segment(_) => {
                        write!(out, "/{app}/{t}/media_w{session_id}{b}_{shown}.{ext}")
                    }
                };
            }
            Family::NginxRtmp => {
                let name = stream.name;
                let _ = match r.step {
                    Step::Segment(_) => write!(out, "/hls/{name}-{shown}.{ext}"),
                    _ => write!(out, "/hls/{name}.m3u8"),
                };
            }
            Family::Cmaf => {
                let d = CMAF_RENDITIONS[rend];
                let _ = match r.step {
                    Step::Master => write!(out, "/cmaf/{t}/master.m3u8"),
                    Step::Playlist => write!(out, "/cmaf/{t}/{d}/index.m3u8"),
                    Step::Init => write!(out, "/cmaf/{t}/{d}/init.mp4"),
                    Step::Segment(_) => write!(out, "/cmaf/{t}/{d}/seg_{shown}.{ext}"),
                };
            }
            Family::Cdn => {
                let i = rend + 1;
                let _ = match r.step {
                    Step::Master => write!(out, "/live/{t}/index.m3u8"),
                    Step::Playlist | Step::Init => write!(out, "/live/{t}/index_{i}.m3u8"),
                    Step::Segment(_) => write!(out, "/live/{t}/index_{i}_{shown:05}.{ext}"),
                };
                // A signed URL: the same token on every request of the session.
                let mut h = SplitMix::new(session_id);
                let _ = write!(
                    out,
                    "?token={:016x}{:016x}&expires={}",
                    h.r#gen::<u64>(),
                    h.r#gen::<u64>(),
                    1_795_000_000 + session_id % 10_000_000
                );
                if let (true, Some(src)) = (is_playlist, source) {
                    out.push_str("&source=");
                    out.push_str(src);
                }
                return;
            }
            Family::Icecast => unreachable!("Icecast stations have no HLS stream"),
        }
        if let (true, Some(src)) = (is_playlist, source) {
            out.push_str("?source=");
            out.push_str(src);
        }
    }
}

/// Every station's layout: all [`Family::Classic`], or the mixed families dealt over the
/// stations in an order drawn from the seed (each family to every sixth station of it, so that
/// with six or more stations every family appears).
pub fn station_layouts(scenario: &Scenario) -> Vec<StationLayout> {
    match scenario.layouts {
        Layouts::Classic => (0..scenario.stations).map(StationLayout::classic).collect(),
        Layouts::Mixed => {
            let mut order: Vec<u32> = (0..scenario.stations).collect();
            let mut rng = SplitMix::derive(scenario.seed, 6, 0);
            for i in (1..order.len()).rev() {
                order.swap(i, rng.gen_range(0..=i));
            }
            let mut families = vec![(Family::Icecast, 0); scenario.stations as usize];
            for (pos, &station) in order.iter().enumerate() {
                families[station as usize] = (
                    MIXED_FAMILIES[pos % MIXED_FAMILIES.len()],
                    (pos / MIXED_FAMILIES.len()) as u32,
                );
            }
            families
                .into_iter()
                .enumerate()
                .map(|(s, (f, k))| StationLayout::mixed(scenario, s as u32, f, k))
                .collect()
        }
    }
}
