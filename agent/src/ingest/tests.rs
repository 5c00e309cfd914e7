use serde::Serialize;

use super::*;
use crate::accumulate::AqhEntry;

/// A log where the order of work matters: HLS listeners whose sessions the lines of
/// others close (gap 180 s), listeners switching Referer (a session's first line names
/// its referrer), progressive sessions, lines that are not sessions and malformed lines
/// between them, and more listeners than the cache holds, so that it is pruned while
/// sessions are open.
fn tricky_log() -> Vec<u8> {
    use std::io::Write;
    let mut log = Vec::new();
    for i in 0..6000u32 {
        let t = i * 7; // seconds after 04:00:00; listener `l` asks every 7 × 40 s
        let (h, m, s) = (4 + t / 3600, t / 60 % 60, t % 60);
        let l = i % 40 + if i % 97 == 0 { 1000 + i } else { 0 };
        let client = if l % 3 == 0 {
            format!("2001:db8::{l:x}")
        } else {
            format!("10.0.{}.{}", l / 250, l % 250)
        };
        let referer = if i % 11 == 0 {
            "https://a.example/"
        } else {
            "-"
        };
        let (path, status, ta) = match i % 13 {
            0 => ("/live.mp3?source=news".to_string(), 200, 65_000 + i),
            1 => ("/missing".to_string(), 404, 3),
            _ => (format!("/hls/s{}/seg{i}.aac", l % 2), 200, 150),
        };
        if i % 29 == 0 {
            writeln!(log, "garbage {i}").expect("write");
        }
        if i % 31 == 0 {
            // A new listener's first two segments, from two pages: the first names
            // the session's referrer.
            for site in ["b", "c"] {
                writeln!(
                    log,
                    "10.9.{}.{}:4000 [28/Nov/2026:{h:02}:{m:02}:{s:02}.000] fe be_radio/s1 \
                     0/0/0/1/100 200 5000 - - ---- 1/1/0/0/0 0/0 \
                     {{Player/1.0 (iPhone)|https://{site}.example/}} \"GET /hls/s0/x.aac HTTP/1.1\"",
                    i / 250,
                    i % 250
                )
                .expect("write");
            }
        }
        writeln!(
            log,
            "{client}:4000 [28/Nov/2026:{h:02}:{m:02}:{s:02}.{:03}] fe be_radio/s1 0/0/0/1/{ta} \
             {status} 5000 - - ---- 1/1/0/0/0 0/0 {{Player/1.0 (iPhone)|{referer}}} \"GET {path} HTTP/1.1\"",
            i % 1000
        )
        .expect("write");
    }
    log
}

fn ingestor() -> Ingestor {
    let mut ingestor = Ingestor::with_defaults(Some("UTC"), b"secret".to_vec());
    ingestor.listener_limit = 30;
    ingestor
}

fn sorted(mut ingestor: Ingestor) -> (Vec<(HourKey, HourRollup)>, AgentCounters) {
    ingestor.close_all();
    let (mut rollups, counters) = ingestor.take();
    rollups.sort_by(|a, b| a.0.cmp(&b.0));
    (rollups, counters)
}

#[test]
fn a_listener_entry_fits_a_cache_line_with_its_key() {
    assert_eq!(size_of::<CachedListener>(), 56);
}

#[test]
fn looking_a_line_ahead_gives_what_one_line_at_a_time_gives() {
    let log = tricky_log();
    let log = log.strip_suffix(b"\n").expect("ends with a newline");
    let mut one_by_one = ingestor();
    for line in log.split(|&b| b == b'\n') {
        one_by_one.feed(line);
    }
    let mut ahead = ingestor();
    // Lines in blocks of varying size, as the reader hands them out.
    let lines: Vec<&[u8]> = log.split(|&b| b == b'\n').collect();
    let mut n = 0;
    for block in lines.chunks(37) {
        n += ahead.feed_lines(block.iter().map(|&l| Line::Text(l)));
    }
    assert_eq!(n, lines.len() as u64);
    let expected = sorted(one_by_one);
    assert!(expected.0.len() >= 2, "the log spans hours");
    // The garbage lines, one in 29.
    assert_eq!(
        expected.1.malformed.values().sum::<u64>(),
        6000_u64.div_ceil(29)
    );
    assert_eq!(sorted(ahead), expected);
}

/// One line of the log `layouts_log` writes: `t` seconds after 10:00.
fn layout_line(out: &mut Vec<(i64, String)>, t_ms: i64, ip: &str, be: &str, path: &str) {
    layout_line_with(out, t_ms, ip, be, path, 150, "GET");
}

fn layout_line_with(
    out: &mut Vec<(i64, String)>,
    t_ms: i64,
    ip: &str,
    be: &str,
    path: &str,
    ta: i64,
    method: &str,
) {
    let (h, m, s, ms) = (
        10 + t_ms / 3_600_000,
        t_ms / 60_000 % 60,
        t_ms / 1000 % 60,
        t_ms % 1000,
    );
    out.push((
        t_ms + ta,
        format!(
            "{ip}:4000 [28/Nov/2026:{h:02}:{m:02}:{s:02}.{ms:03}] fe {be}/s1 0/0/0/1/{ta} 200 5000 - - ---- \
             1/1/0/0/0 0/0 {{Player/1.0 (iPhone)|-}} \"{method} {path} HTTP/1.1\""
        ),
    ));
}

/// Every layout family of docs/traffic.md, each with listeners whose sessions are known:
/// AzuraCast (master, sibling renditions, a switch from lofi to hifi), Wowza (per-session
/// chunklists), nginx-rtmp (two streams in /hls), CMAF (renditions in sub-directories),
/// a CDN packager with signed URLs, Icecast mounts, and non-audio 200s.
fn layouts_log() -> Vec<u8> {
    let mut l = Vec::new();
    for n in 0..3i64 {
        let (ip, t0) = (format!("10.0.0.{}", n + 1), n * 5_000);
        layout_line(&mut l, t0, &ip, "be_azura", "/hls/azura/live.m3u8");
        for k in 0..60 {
            let r = if k < 20 { "aac_lofi" } else { "aac_hifi" };
            let t = t0 + k * 10_000;
            layout_line(
                &mut l,
                t + 1000,
                &ip,
                "be_azura",
                &format!("/hls/azura/{r}.m3u8"),
            );
            layout_line(
                &mut l,
                t + 2000,
                &ip,
                "be_azura",
                &format!("/hls/azura/{r}_{}.aac", 100 + k),
            );
        }
    }
    for n in 0..2i64 {
        let (ip, t0, id) = (format!("10.0.1.{}", n + 1), n * 3_000, 1000 + n);
        layout_line(&mut l, t0, &ip, "be_wowza", "/live/wowza/playlist.m3u8");
        for k in 0..40 {
            let t = t0 + k * 10_000;
            layout_line(
                &mut l,
                t + 1000,
                &ip,
                "be_wowza",
                &format!("/live/wowza/chunklist_w{id}.m3u8"),
            );
            layout_line(
                &mut l,
                t + 2000,
                &ip,
                "be_wowza",
                &format!("/live/wowza/media_w{id}_{k}.aac"),
            );
        }
    }
    for (n, name) in ["a", "b", "a"].iter().enumerate() {
        let (ip, t0) = (format!("10.0.2.{}", n + 1), n as i64 * 2_000);
        for k in 0..30 {
            let t = t0 + k * 10_000;
            layout_line(
                &mut l,
                t + 1000,
                &ip,
                "be_nginx",
                &format!("/hls/{name}.m3u8"),
            );
            layout_line(
                &mut l,
                t + 2000,
                &ip,
                "be_nginx",
                &format!("/hls/{name}-{k}.ts"),
            );
        }
    }
    for n in 0..2i64 {
        let (ip, t0) = (format!("10.0.3.{}", n + 1), n * 1_000);
        layout_line(&mut l, t0, &ip, "be_cmaf", "/cmaf/st/master.m3u8");
        for k in 0..30 {
            let r = if k < 10 { "audio_64" } else { "audio_128" };
            let t = t0 + k * 10_000 + 500;
            if k % 10 == 0 {
                layout_line(&mut l, t, &ip, "be_cmaf", &format!("/cmaf/st/{r}/init.mp4"));
            }
            layout_line(
                &mut l,
                t + 500,
                &ip,
                "be_cmaf",
                &format!("/cmaf/st/{r}/index.m3u8"),
            );
            layout_line(
                &mut l,
                t + 1500,
                &ip,
                "be_cmaf",
                &format!("/cmaf/st/{r}/seg_{k}.m4s"),
            );
        }
    }
    for k in 0..20 {
        let t = k * 10_000;
        let q = format!("?token={k:x}&expires=1700000000");
        if k == 0 {
            layout_line(
                &mut l,
                t,
                "10.0.6.1",
                "be_cdn",
                &format!("/live/cdn/index.m3u8{q}"),
            );
        }
        layout_line(
            &mut l,
            t + 500,
            "10.0.6.1",
            "be_cdn",
            &format!("/live/cdn/index_1.m3u8{q}"),
        );
        layout_line(
            &mut l,
            t + 1500,
            "10.0.6.1",
            "be_cdn",
            &format!("/live/cdn/index_1_{:05}.aac{q}", 40 + k),
        );
    }
    for (n, path) in [
        "/live.mp3?nocache=123",
        "/stream",
        "/;stream.mp3",
        "/listen/st/radio.mp3",
    ]
    .iter()
    .enumerate()
    {
        layout_line_with(
            &mut l,
            600_000,
            &format!("10.0.4.{}", n + 1),
            "be_ice",
            path,
            300_000,
            "GET",
        );
    }
    for path in [
        "/status-json.xsl",
        "/favicon.ico",
        "/live.mp3.m3u",
        "/player.js",
        "/crossdomain.xml",
        "/robots.txt",
        "/art/1.jpg",
        "/api/nowplaying/st",
    ] {
        layout_line_with(&mut l, 700_000, "10.0.5.1", "be_ice", path, 5, "GET");
    }
    layout_line_with(
        &mut l,
        701_000,
        "10.0.5.1",
        "be_ice",
        "/live.mp3",
        5,
        "HEAD",
    );
    layout_line_with(
        &mut l,
        702_000,
        "10.0.5.1",
        "be_ice",
        "/live.mp3",
        5,
        "OPTIONS",
    );
    l.sort();
    let mut log = Vec::new();
    for (_, line) in l {
        log.extend_from_slice(line.as_bytes());
        log.push(b'\n');
    }
    log
}

/// Qualifying sessions by (tenant, dimension or "stream", value) in a dry run's rollups.
fn sessions_by(
    rollups: &[(HourKey, HourRollup)],
) -> std::collections::BTreeMap<(String, String, String), u64> {
    let mut by = std::collections::BTreeMap::new();
    for (k, r) in rollups {
        for q in &r.quarters {
            if q.sessions > 0 {
                *by.entry((k.tenant.clone(), "stream".into(), k.stream.clone()))
                    .or_default() += q.sessions;
            }
            for ((d, v), c) in &q.dims {
                if *d == Dimension::Rendition && c.sessions > 0 {
                    *by.entry((k.tenant.clone(), "rendition".into(), v.clone()))
                        .or_default() += c.sessions;
                }
            }
        }
    }
    by
}

#[test]
fn every_layout_is_counted_as_its_listeners_listened() {
    let mut ingestor = ingestor();
    ingestor.listener_limit = MAX_CACHED_LISTENERS;
    let log = layouts_log();
    let n = ingestor.feed_lines(
        log.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(Line::Text),
    );
    let (rollups, counters) = sorted(ingestor);
    assert_eq!(counters.lines, n);
    let got = sessions_by(&rollups);
    let want: std::collections::BTreeMap<(String, String, String), u64> = [
        // Worked out from the listeners above: one session each, whatever rendition.
        ("azura", "stream", "/hls/azura", 3),
        ("azura", "rendition", "aac_hifi", 3),
        ("wowza", "stream", "/live/wowza", 2),
        ("wowza", "rendition", "none", 2),
        ("nginx", "stream", "/hls/a", 2),
        ("nginx", "stream", "/hls/b", 1),
        ("nginx", "rendition", "none", 3),
        ("cmaf", "stream", "/cmaf/st", 2),
        ("cmaf", "rendition", "audio_128", 2),
        ("cdn", "stream", "/live/cdn", 1),
        ("cdn", "rendition", "index_1", 1),
        ("ice", "stream", "/live.mp3", 1),
        ("ice", "stream", "/stream", 1),
        ("ice", "stream", "/;stream.mp3", 1),
        ("ice", "stream", "/listen/st/radio.mp3", 1),
        ("ice", "rendition", "none", 4),
    ]
    .into_iter()
    .map(|(t, d, v, n)| ((t.to_string(), d.to_string(), v.to_string()), n))
    .collect();
    assert_eq!(got, want);
    let short: u64 = rollups
        .iter()
        .flat_map(|(_, r)| r.quarters.iter())
        .map(|q| q.short_sessions + q.bot_sessions)
        .sum();
    assert_eq!(short, 0, "no request made a session that did not happen");
    let kinds: Vec<(&str, u64)> = counters
        .not_sessions
        .iter()
        .map(|((t, k), n)| {
            assert_eq!(t, "ice");
            (k.as_str(), *n)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("document", 3),
            ("image", 2),
            ("method", 2),
            ("player_file", 1),
            ("script", 1),
            ("status_page", 1)
        ]
    );
}

#[test]
fn what_was_learned_of_the_layout_survives_a_restart() {
    // The same log fed in two halves, the state saved and restored between them, gives
    // what one pass gives.
    let log = layouts_log();
    let lines: Vec<&[u8]> = log
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let mut whole = ingestor();
    whole.listener_limit = MAX_CACHED_LISTENERS;
    whole.feed_lines(lines.iter().map(|&l| Line::Text(l)));
    let (whole, _) = sorted(whole);
    let mut first = ingestor();
    first.feed_lines(lines[..lines.len() / 3].iter().map(|&l| Line::Text(l)));
    let (mut rollups, _) = first.take();
    let state = first.save_state();
    let mut second = ingestor();
    second.restore_state(&state).expect("restores");
    second.feed_lines(lines[lines.len() / 3..].iter().map(|&l| Line::Text(l)));
    let (more, _) = sorted(second);
    rollups.extend(more);
    assert_eq!(sessions_by(&rollups), sessions_by(&whole));
}

#[test]
fn state_of_version_1_is_read() {
    /// Tenant, stream, listener, start, end, dimensions, bot.
    type OpenV1 = (String, String, ListenerId, i64, i64, [String; 6], bool);
    #[derive(Serialize)]
    struct V1 {
        version: u32,
        log_now_ms: i64,
        open: Vec<OpenV1>,
        aqh: Vec<AqhEntry>,
    }
    let t0 = 1_764_324_000_000; // 2026-11-28T10:00:00Z
    let dims = ["VLC", "phone", "iOS", "DE", "none", "direct"].map(String::from);
    let v1 = V1 {
        version: 1,
        log_now_ms: t0 + 90_000,
        open: vec![(
            "radio".into(),
            "/hls/radio".into(),
            ListenerId(7),
            t0,
            t0 + 90_000,
            dims,
            false,
        )],
        aqh: Vec::new(),
    };
    let mut i = ingestor();
    i.restore_state(&postcard::to_stdvec(&v1).unwrap())
        .expect("a version 1 state is read");
    assert_eq!(i.open_sessions(), 1);
    // Version 1 learned no layout; its open session's stream is a playlist directory all
    // the same: another listener's packed-audio segment, read before any playlist, is HLS.
    let mut lines = Vec::new();
    layout_line(
        &mut lines,
        95_000,
        "10.0.0.9",
        "be_radio",
        "/hls/radio/seg_12.aac",
    );
    i.feed(lines[0].1.as_bytes());
    i.close_all();
    let (rollups, _) = i.take();
    let streams: Vec<&str> = rollups.iter().map(|(k, _)| k.stream.as_str()).collect();
    assert!(streams.iter().all(|s| *s == "/hls/radio"), "{streams:?}");
    assert_eq!(
        rollups
            .iter()
            .map(|(_, r)| r.quarters.iter().map(|q| q.short_sessions).sum::<u64>())
            .sum::<u64>(),
        1,
        "the segment's listener has a short HLS session"
    );
    let by = sessions_by(&rollups);
    assert_eq!(
        by.get(&("radio".into(), "stream".into(), "/hls/radio".into())),
        Some(&1)
    );
    assert_eq!(
        by.get(&("radio".into(), "rendition".into(), "none".into())),
        Some(&1)
    );
}

#[test]
fn referrer_hosts() {
    assert_eq!(
        referrer_host(b"https://www.Example.de:8443/player?x=1").as_deref(),
        Some("www.example.de")
    );
    assert_eq!(referrer_host(b"-"), None);
    assert_eq!(referrer_host(b""), None);
    assert_eq!(
        referrer_host(b"android-app://com.example.radio").as_deref(),
        Some("com.example.radio")
    );
}

#[test]
fn source_params() {
    assert_eq!(
        source_param(b"a=1&source=Facebook").as_deref(),
        Some("facebook")
    );
    assert_eq!(source_param(b"a=1"), None);
    assert_eq!(source_param(b"source="), None);
}
