//! Mixed layouts and attack files, re-read from the files by a plain reading of
//! docs/traffic.md written only for this test: what the lines show must be the truth.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use crate::attack::{AttackKind, write_attack};
use crate::data::is_bot_ua;
use crate::roundtrip_tests::{ip_key, temp_dir, unescape};
use crate::{Generated, Layouts, Scenario, generate};

const GAP_MS: i64 = 180_000;

#[derive(Clone, Debug)]
struct Req {
    host: String,
    ip: String,
    accept_ms: i64,
    ta_ms: i64,
    status: i32,
    tenant: String,
    method: String,
    path: String,
    query: Option<String>,
    absolute: bool,
    ua: String,
    referer: String,
}

/// One raw (UTC) HAProxy line with captures; `None` for everything else.
fn split(host: &str, line: &str) -> Option<Req> {
    let (client, rest) = line.split_once(" [")?;
    let (ip, _) = client.rsplit_once(':')?;
    let (date, rest) = rest.split_once("] ")?;
    let tm = jiff::fmt::strtime::parse("%d/%b/%Y:%H:%M:%S%.f", date).ok()?;
    let accept_ms = tm
        .to_datetime()
        .ok()?
        .to_zoned(jiff::tz::TimeZone::UTC)
        .ok()?
        .timestamp()
        .as_millisecond();
    let f: Vec<&str> = rest.splitn(10, ' ').collect();
    if f.len() < 10 {
        return None;
    }
    let ta_ms = f[2].rsplit('/').next()?.parse().ok()?;
    let status = f[3].parse().ok()?;
    let rest = f[9].split_once(' ')?.1;
    let (caps, req) = rest.strip_prefix('{')?.split_once("} ")?;
    let (ua, referer) = caps.split_once('|')?;
    let req = req.strip_prefix('"')?.strip_suffix('"')?;
    let mut parts = req.split(' ');
    let (method, uri, proto) = (parts.next()?, parts.next()?, parts.next()?);
    let (absolute, uri) = match uri.strip_prefix("https://") {
        Some(r) => (true, &r[r.find('/')?..]),
        None => (false, uri),
    };
    assert!(!absolute || proto == "HTTP/2.0", "{line}");
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (uri.to_string(), None),
    };
    Some(Req {
        host: host.into(),
        ip: ip.into(),
        accept_ms,
        ta_ms,
        status,
        tenant: {
            let be = f[1].split_once('/')?.0;
            be.strip_prefix("be_").unwrap_or(be).to_string()
        },
        method: method.into(),
        path,
        query,
        absolute,
        ua: unescape(ua),
        referer: unescape(referer),
    })
}

fn dir_of(path: &str) -> &str {
    let d = &path[..path.rfind('/').unwrap()];
    if d.is_empty() { "/" } else { d }
}

fn last_seg(path: &str) -> &str {
    &path[path.rfind('/').unwrap() + 1..]
}

fn ext_of(path: &str) -> Option<String> {
    let l = last_seg(path);
    l.rfind('.').map(|i| l[i + 1..].to_ascii_lowercase())
}

fn stem(path: &str) -> &str {
    let l = last_seg(path);
    l.rfind('.').map_or(l, |i| &l[..i])
}

/// docs/traffic.md section 1: the kind of a 2xx request that is not a session.
fn not_session_kind(r: &Req) -> Option<&'static str> {
    if r.method != "GET" {
        return Some("method");
    }
    let ext = ext_of(&r.path);
    let e = ext.as_deref().unwrap_or("");
    let in_list = |l: &str| l.split(' ').any(|x| x == e);
    if in_list("m3u pls xspf asx ram wax qtl") {
        return Some("player_file");
    }
    if in_list("html htm xhtml json xml txt php asp aspx jsp rss atom csv pdf md webmanifest")
        || r.path.starts_with("/api/")
    {
        return Some("document");
    }
    if in_list("ico png jpg jpeg gif svg webp avif bmp tif tiff") {
        return Some("image");
    }
    if in_list("js mjs css map wasm woff woff2 ttf otf eot") {
        return Some("script");
    }
    let st = stem(&r.path);
    if e == "xsl"
        || r.path.starts_with("/admin/")
        || "status stats statistics server-status health healthz ping metrics nowplaying currentsong"
            .split(' ')
            .any(|x| x == st)
    {
        return Some("status_page");
    }
    let audio = "m3u8 ts m4s cmfa cmfv cmft m4v mp4 vtt webvtt aac mp3 ac3 ec3 eac3 m4a ogg oga \
                 opus flac aacp mp2 mpga mpeg wav nsv weba adts spx";
    assert!(
        ext.is_none() || audio.split(' ').any(|x| x == e),
        "an extension the doc calls other: {}",
        r.path
    );
    None
}

/// A name less its trailing `[-_.]?digits` and its `_w<digits>` tokens (before the `none` rule).
fn name_base(name: &str) -> String {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit());
    let t = if t.len() < name.len() {
        t.strip_suffix(['-', '_', '.']).unwrap_or(t)
    } else {
        t
    };
    let mut out = String::new();
    for (i, tok) in t.split('_').enumerate() {
        let wid =
            tok.len() > 1 && tok.starts_with('w') && tok[1..].bytes().all(|b| b.is_ascii_digit());
        if i > 0 && wid {
            continue;
        }
        if i > 0 {
            out.push('_');
        }
        out.push_str(tok);
    }
    out
}

fn rendition_of_name(name: &str) -> String {
    let b = name_base(name);
    let generic =
        "seg segment segments media chunk fragment frag part file index stream live audio";
    if b.is_empty() || generic.split(' ').any(|g| g == b) {
        "none".into()
    } else {
        b
    }
}

/// A request with its stream and (for media segments) rendition.
type Tagged = (Req, String, Option<String>);
/// (host, tenant, IP key, User-Agent, stream or several-streams directory).
type GroupKey = (String, String, String, String, String);
type Key = (
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    bool,
    String,
    u32,
);

struct Reread {
    sessions: Vec<Key>,
    /// Renditions (segments) per HLS session, in the order of `sessions`' HLS part.
    switches: Vec<(String, BTreeSet<String>)>,
    not_sessions: BTreeMap<String, BTreeMap<String, u64>>,
    by_status: BTreeMap<i32, u64>,
    lines: u64,
    requests: Vec<Req>,
}

fn reread(g: &Generated) -> Reread {
    let mut lines = 0;
    let mut all = Vec::new();
    let mut by_status = BTreeMap::new();
    for (host, files) in &g.files {
        for f in files {
            for l in std::fs::read_to_string(f).unwrap().lines() {
                lines += 1;
                if let Some(r) = split(host, l) {
                    *by_status.entry(r.status).or_default() += 1;
                    all.push(r);
                } else if l.contains("<BADREQ>") {
                    *by_status
                        .entry(l.split(" ").nth(5).unwrap().parse().unwrap())
                        .or_default() += 1;
                }
            }
        }
    }
    let mut not_sessions: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut audio = Vec::new();
    for r in all.iter().filter(|r| (200..300).contains(&r.status)) {
        match not_session_kind(r) {
            Some(k) => {
                *not_sessions
                    .entry(r.tenant.clone())
                    .or_default()
                    .entry(k.into())
                    .or_default() += 1
            }
            None => audio.push(r.clone()),
        }
    }
    // Playlist directories, and per directory the playlists' names and the segments' bases.
    let mut pdirs: HashSet<(String, String)> = HashSet::new();
    for r in audio
        .iter()
        .filter(|r| ext_of(&r.path).as_deref() == Some("m3u8"))
    {
        pdirs.insert((r.tenant.clone(), dir_of(&r.path).to_string()));
    }
    let hls_only = "ts m4s cmfa cmfv cmft m4v mp4 vtt webvtt";
    let is_hls = |r: &Req| -> bool {
        let e = ext_of(&r.path).unwrap_or_default();
        if e == "m3u8" || hls_only.split(' ').any(|x| x == e) {
            return true;
        }
        let d = dir_of(&r.path);
        let pd = |d: &str| pdirs.contains(&(r.tenant.clone(), d.to_string()));
        (pd(d) || (d != "/" && pd(dir_of(d))))
            && last_seg(&r.path).bytes().any(|b| b.is_ascii_digit())
    };
    let mut playlists: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    let mut seg_bases: HashMap<(String, String), BTreeSet<String>> = HashMap::new();
    for r in audio.iter().filter(|r| is_hls(r)) {
        let k = (r.tenant.clone(), dir_of(&r.path).to_string());
        if ext_of(&r.path).as_deref() == Some("m3u8") {
            playlists
                .entry(k)
                .or_default()
                .insert(stem(&r.path).to_string());
        } else {
            seg_bases
                .entry(k)
                .or_default()
                .insert(name_base(stem(&r.path)));
        }
    }
    let several: HashSet<(String, String)> = playlists
        .iter()
        .filter(|(k, names)| {
            let segs = seg_bases.get(*k).cloned().unwrap_or_default();
            let own = names.iter().filter(|n| segs.contains(*n)).count();
            own >= 2 && own == names.len()
        })
        .map(|(k, _)| k.clone())
        .collect();
    let source = |r: &Req| -> String {
        r.query
            .as_deref()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("source=")))
            .map(str::to_string)
            .or_else(|| {
                (!r.referer.is_empty()).then(|| r.referer.split('/').nth(2).unwrap().to_string())
            })
            .unwrap_or_else(|| "direct".into())
    };
    let mut sessions = Vec::new();
    // (host, tenant, ip key, ua, stream or several-streams dir) → requests with stream, rendition.
    let mut groups: HashMap<GroupKey, Vec<Tagged>> = HashMap::new();
    for r in audio {
        if !is_hls(&r) {
            sessions.push((
                r.host.clone(),
                r.tenant.clone(),
                r.path.clone(),
                "none".into(),
                "icecast".into(),
                format!("{}|{}", ip_key(&r.ip), r.ua),
                r.accept_ms,
                r.accept_ms + r.ta_ms,
                is_bot_ua(&r.ua),
                source(&r),
                1,
            ));
            continue;
        }
        let d = dir_of(&r.path).to_string();
        let t = r.tenant.clone();
        let is_seg = ext_of(&r.path).as_deref() != Some("m3u8");
        let (group, stream, rendition) =
            if d != "/" && pdirs.contains(&(t.clone(), dir_of(&d).to_string())) {
                let p = dir_of(&d).to_string();
                (p.clone(), p, last_seg(&d).to_string())
            } else if several.contains(&(t.clone(), d.clone())) {
                let name = if is_seg {
                    name_base(stem(&r.path))
                } else {
                    stem(&r.path).to_string()
                };
                (d.clone(), format!("{d}/{name}"), "none".into())
            } else {
                (d.clone(), d.clone(), rendition_of_name(stem(&r.path)))
            };
        let seg_rendition = (is_seg && !last_seg(&r.path).starts_with("init")).then_some(rendition);
        groups
            .entry((r.host.clone(), t, ip_key(&r.ip), r.ua.clone(), group))
            .or_default()
            .push((r, stream, seg_rendition));
    }
    let mut switches = Vec::new();
    for ((host, tenant, ip, ua, _), mut reqs) in groups {
        reqs.sort_by_key(|r| r.0.accept_ms);
        let mut split: Vec<Vec<Tagged>> = Vec::new();
        for r in reqs {
            match split.last_mut() {
                Some(g)
                    if r.0.accept_ms - g.last().map(|p| p.0.accept_ms + p.0.ta_ms).unwrap()
                        < GAP_MS =>
                {
                    g.push(r)
                }
                _ => split.push(vec![r]),
            }
        }
        for g in split {
            let first = &g[0];
            // The stream: of the first playlist (several-streams directories), else of any.
            let stream = g
                .iter()
                .find(|r| ext_of(&r.0.path).as_deref() == Some("m3u8"))
                .unwrap_or(first)
                .1
                .clone();
            let rendition = g
                .iter()
                .rev()
                .find_map(|r| r.2.clone())
                .unwrap_or_else(|| "none".into());
            switches.push((
                tenant.clone(),
                g.iter().filter_map(|r| r.2.clone()).collect(),
            ));
            sessions.push((
                host.clone(),
                tenant.clone(),
                stream,
                rendition,
                "hls".into(),
                format!("{ip}|{ua}"),
                first.0.accept_ms,
                g.iter().map(|r| r.0.accept_ms + r.0.ta_ms).max().unwrap(),
                is_bot_ua(&ua),
                source(&first.0),
                g.len() as u32,
            ));
        }
    }
    Reread {
        sessions,
        switches,
        not_sessions,
        by_status,
        lines,
        requests: all,
    }
}

fn mixed_small() -> Scenario {
    Scenario {
        seed: 21,
        hours: 2,
        hosts: 2,
        stations: 12,
        listeners: 800,
        layouts: Layouts::Mixed,
        ..Scenario::default()
    }
}

#[test]
fn mixed_layouts_read_back_as_the_truth() {
    let dir = temp_dir("mixed");
    let scenario = mixed_small();
    let g = generate(&scenario, &dir).unwrap();
    let back = reread(&g);
    assert_eq!(back.lines, g.lines);
    assert_eq!(back.by_status, g.requests_by_status);

    // Every session, with its stream and rendition, as the doc's rules read the lines.
    let mut want: Vec<Key> = g
        .sessions
        .iter()
        .map(|s| {
            (
                s.host.clone(),
                s.tenant.clone(),
                s.stream.clone(),
                s.rendition.clone(),
                s.protocol.to_string(),
                format!("{}|{}", s.listener.0, s.listener.1),
                s.start_ms,
                s.end_ms,
                s.bot,
                s.source.clone(),
                s.requests,
            )
        })
        .collect();
    let mut got = back.sessions.clone();
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a, b);
    }

    // The non-audio 200s, by tenant and kind, are what the truth says.
    assert_eq!(back.not_sessions, g.not_sessions);
    let kinds: BTreeSet<&str> = g
        .not_sessions
        .values()
        .flat_map(|k| k.keys())
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "document",
            "image",
            "method",
            "player_file",
            "script",
            "status_page"
        ]
        .into()
    );
    for tenant in g.families.keys() {
        assert_eq!(g.not_sessions[tenant].len(), 6, "{tenant}");
    }

    // Every family, extension and quirk appears.
    let families: BTreeSet<_> = g.families.values().copied().collect();
    assert_eq!(families, crate::MIXED_FAMILIES.into_iter().collect());
    let paths: Vec<&Req> = back.requests.iter().filter(|r| r.status == 200).collect();
    let any = |f: &dyn Fn(&Req) -> bool| paths.iter().any(|r| f(r));
    for mount in ["/live.mp3", "/stream", "/;stream.mp3"] {
        assert!(any(&|r| r.path == mount && r.method == "GET"), "{mount}");
    }
    assert!(any(
        &|r| r.path.starts_with("/listen/") && r.path.ends_with("/radio.mp3")
    ));
    for q in ["nocache=", "icy=http", "listenerid=", "type=.mp3"] {
        assert!(
            any(&|r| r.query.as_deref().is_some_and(|x| x.contains(q))),
            "{q}"
        );
    }
    assert!(any(
        &|r| r.path.ends_with("/live.m3u8") && r.path.starts_with("/hls/")
    ));
    assert!(any(&|r| r.path.contains("/aac_hifi_")));
    assert!(any(
        &|r| r.path.contains("/chunklist_w") && !r.path.contains("_b")
    ));
    assert!(any(
        &|r| r.path.contains("/media_w") && r.path.contains("_b128000_")
    ));
    assert!(any(&|r| r.path.ends_with("/init.mp4")));
    assert!(any(&|r| r.path.contains("/audio_128/seg_")));
    assert!(any(&|r| r.path.contains("/index_1_0")
        && r.query.as_deref().is_some_and(
            |q| q.starts_with("token=") && q.contains("&expires=")
        )));
    for ext in ["aac", "mp3", "ac3", "ec3", "ts", "m4s", "m4a", "cmfa"] {
        assert!(
            any(&|r| ext_of(&r.path).as_deref() == Some(ext)
                && r.method == "GET"
                && (r.path.contains("/hls/")
                    || r.path.contains("/cmaf/")
                    || r.path.contains("/live/")
                    || r.path.contains("/radio/"))),
            "{ext}"
        );
    }
    assert!(any(&|r| r.absolute && r.path.ends_with(".m3u8")));
    assert!(any(&|r| r.method == "HEAD") && any(&|r| r.method == "OPTIONS"));
    // nginx-rtmp: several streams in one /hls, each with a listener in the first minute.
    let truths = &g.sessions;
    for (tenant, fam) in &g.families {
        if *fam != crate::Family::NginxRtmp {
            continue;
        }
        let streams: BTreeSet<&str> = truths
            .iter()
            .filter(|s| &s.tenant == tenant && s.protocol == "hls")
            .map(|s| s.stream.as_str())
            .collect();
        assert!(streams.len() >= 2, "{tenant}: {streams:?}");
        for st in streams {
            assert!(st.starts_with("/hls/") && !st[5..].contains('/'));
            assert!(
                truths.iter().any(|s| &s.tenant == tenant
                    && s.stream == st
                    && s.start_ms < g.window_start_ms + 60_000),
                "{tenant} {st}: nobody in the first minute"
            );
        }
    }
    // Renditions: named as the doc says, and switched inside one session.
    let renditions: BTreeSet<&str> = truths.iter().map(|s| s.rendition.as_str()).collect();
    for r in [
        "aac_lofi",
        "aac_midfi",
        "aac_hifi",
        "media_b64000",
        "media_b128000",
        "audio_64",
        "audio_128",
        "index_1",
        "index_2",
        "none",
    ] {
        assert!(renditions.contains(r), "{r}: {renditions:?}");
    }
    let switched: BTreeSet<crate::Family> = back
        .switches
        .iter()
        .filter(|(_, r)| r.len() >= 2)
        .map(|(t, _)| g.families[t])
        .collect();
    for f in [
        crate::Family::Azuracast,
        crate::Family::Wowza,
        crate::Family::Cmaf,
        crate::Family::Cdn,
    ] {
        assert!(
            switched.contains(&f),
            "no rendition switch inside a {f:?} session"
        );
    }
    // The truth file says the same.
    let tf = serde_json::to_value(g.truth_file()).unwrap();
    let nst: u64 = g.not_sessions.values().flat_map(|k| k.values()).sum();
    assert_eq!(tf["not_sessions_total"], nst);
    let t = g
        .families
        .iter()
        .find(|f| *f.1 == crate::Family::Cmaf)
        .unwrap()
        .0;
    assert!(
        tf["breakdowns"][t]["rendition"]["audio_64"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        tf["per_stream"][t][format!("/cmaf/{t}")]["sessions"]
            .as_u64()
            .unwrap()
            > 0
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mixed_bench_file_has_the_exact_line_count() {
    let dir = temp_dir("mixed-bench");
    let path = dir.join("bench.log");
    let scenario = Scenario {
        layouts: Layouts::Mixed,
        ..Scenario::bench(60_000, 24, 600)
    };
    let g = crate::generate_file(&scenario, &path).unwrap();
    assert_eq!(g.lines, 60_000);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap().lines().count(),
        60_000
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn check_attack(dir: &Path, kind: AttackKind) {
    let path = dir.join(format!("{kind:?}.log"));
    let t = write_attack(kind, 4_000, 3, crate::attack::default_start_ms(), &path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let reqs: Vec<Req> = text.lines().map(|l| split("h", l).expect(l)).collect();
    assert_eq!(reqs.len() as u64, t.lines);
    assert_eq!(t.lines, 4_000);
    let mut values = HashSet::new();
    let mut listeners = HashSet::new();
    let mut listening_ms = 0;
    for r in &reqs {
        assert_eq!(
            (r.status, r.tenant.as_str(), r.method.as_str()),
            (200, "attack", "GET")
        );
        assert!(r.ta_ms >= 60_000 && !is_bot_ua(&r.ua) && !r.ua.to_lowercase().contains("bot"));
        assert!(r.accept_ms >= t.window_start_ms && r.accept_ms + r.ta_ms < t.window_end_ms);
        assert!(not_session_kind(r).is_none());
        listening_ms += r.ta_ms;
        listeners.insert((ip_key(&r.ip), r.ua.clone()));
        values.insert(match kind {
            AttackKind::RandomMounts => r.path.clone(),
            AttackKind::RandomSource => r.query.clone().unwrap(),
            AttackKind::RandomReferer => r.referer.split('/').nth(2).unwrap().to_string(),
            AttackKind::RandomUa => r.ua.clone(),
            AttackKind::RandomIp => ip_key(&r.ip),
        });
        if kind != AttackKind::RandomMounts {
            assert_eq!(r.path, "/live.mp3");
        }
    }
    assert_eq!(values.len() as u64, t.distinct_values, "{kind:?}");
    assert_eq!(listeners.len() as u64, t.distinct_listeners, "{kind:?}");
    assert_eq!(t.sessions, t.lines);
    assert_eq!(listening_ms as f64 / 1000.0, t.listening_seconds);
    if kind == AttackKind::RandomIp {
        assert!(
            reqs.iter().any(|r| r.ip.contains(':')) && reqs.iter().any(|r| !r.ip.contains(':'))
        );
    }
}

#[test]
fn attack_files_have_their_lines_and_distinct_values() {
    let dir = temp_dir("attack");
    for kind in [
        AttackKind::RandomMounts,
        AttackKind::RandomSource,
        AttackKind::RandomReferer,
        AttackKind::RandomUa,
        AttackKind::RandomIp,
    ] {
        check_attack(&dir, kind);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
