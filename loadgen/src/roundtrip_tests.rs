//! The generated files, re-read by a small line splitter written only for this test, must give
//! back exactly the generator's session list: the lines say what the truth says.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::data::is_bot_ua;
use crate::{Envelope, Generated, Scenario, generate, truth};

const HLS_SESSION_GAP_MS: i64 = 180_000;

pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "earshot-loadgen-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn read_lines(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).unwrap();
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(file))
    } else {
        Box::new(file)
    };
    BufReader::new(reader).lines().map(|l| l.unwrap()).collect()
}

pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'#' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

pub(crate) fn ip_key(ip: &str) -> String {
    if let Some(v4) = ip.strip_prefix("::ffff:").filter(|r| r.contains('.')) {
        return v4.to_string();
    }
    if ip.contains(':') {
        let v6: Ipv6Addr = ip.parse().unwrap();
        let prefix = u128::from(v6) & !((1u128 << 64) - 1);
        return format!("{}/64", Ipv6Addr::from(prefix));
    }
    ip.to_string()
}

fn parse_date(s: &str, offset_min: i32) -> Option<i64> {
    let tm = jiff::fmt::strtime::parse("%d/%b/%Y:%H:%M:%S%.f", s).ok()?;
    let dt = tm.to_datetime().ok()?;
    let off = jiff::tz::Offset::from_seconds(offset_min * 60).unwrap();
    Some(
        dt.to_zoned(jiff::tz::TimeZone::fixed(off))
            .ok()?
            .timestamp()
            .as_millisecond(),
    )
}

#[derive(Debug)]
struct Request {
    host: String,
    accept_ms: i64,
    ta_ms: i64,
    status: i32,
    tenant: String,
    path: String,
    query: Option<String>,
    ip_key: String,
    ua: String,
    referer: String,
}

#[derive(Default, Debug)]
struct Reread {
    requests: Vec<Request>,
    malformed: u64,
    messages: u64,
    ssl: u64,
    badreq: u64,
    by_status: BTreeMap<i32, u64>,
    lines: u64,
}

/// Splits one HAProxy line; `None` if it is not a well-formed request line.
fn split_line(host: &str, line: &str, offset_min: i32) -> Option<Request> {
    let (client, rest) = line.split_once(" [")?;
    let (ip, _port) = client.rsplit_once(':')?;
    let (date, rest) = rest.split_once("] ")?;
    let accept_ms = parse_date(date, offset_min)?;
    let fields: Vec<&str> = rest.splitn(10, ' ').collect();
    // frontend backend/server timers status bytes cc cs tsc conns queues …
    let [
        _fe,
        be_srv,
        timers,
        status,
        _bytes,
        _cc,
        _cs,
        _tsc,
        _conns,
        rest,
    ] = fields[..]
    else {
        return None;
    };
    let (_queues, rest) = rest.split_once(' ')?;
    let ta_ms: i64 = timers.rsplit('/').next()?.parse().ok()?;
    let status: i32 = status.parse().ok()?;
    let (captures, request) = match rest.strip_prefix('{') {
        Some(r) => {
            let (c, req) = r.split_once("} ")?;
            (Some(c), req)
        }
        None => (None, rest),
    };
    let request = request.strip_prefix('"')?.strip_suffix('"')?;
    let (ua, referer) = match captures {
        Some(c) => {
            let (u, r) = c.split_once('|')?;
            (unescape(u), unescape(r))
        }
        None => (String::new(), String::new()),
    };
    let (path, query) = if request == "<BADREQ>" {
        (request.to_string(), None)
    } else {
        let uri = request.strip_prefix("GET ")?.strip_suffix(" HTTP/1.1")?;
        match uri.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (uri.to_string(), None),
        }
    };
    let backend = be_srv.split_once('/')?.0;
    Some(Request {
        host: host.to_string(),
        accept_ms,
        ta_ms,
        status,
        tenant: backend.strip_prefix("be_").unwrap_or(backend).to_string(),
        path,
        query,
        ip_key: ip_key(ip),
        ua,
        referer,
    })
}

fn reread(g: &Generated, scenario: &Scenario) -> Reread {
    let mut out = Reread::default();
    for (host, files) in &g.files {
        let mut last_write = i64::MIN;
        for (k, file) in files.iter().enumerate() {
            for raw in read_lines(file) {
                out.lines += 1;
                let line = match scenario.envelope {
                    Envelope::Raw => raw.as_str(),
                    Envelope::Rsyslog => {
                        let (ts, rest) = raw.split_once(' ').unwrap();
                        let (h, rest) = rest.split_once(' ').unwrap();
                        assert_eq!(h, host);
                        assert!(rest.starts_with("haproxy["));
                        let write_us = ts.parse::<jiff::Timestamp>().unwrap().as_microsecond();
                        let write_ms = write_us.div_euclid(1000);
                        assert!(write_ms >= last_write, "{raw}");
                        last_write = write_ms;
                        if scenario.rotate_minutes > 0 {
                            let slot = (write_ms - g.window_start_ms)
                                / (i64::from(scenario.rotate_minutes) * 60_000);
                            assert_eq!(slot, k as i64, "{raw} in {}", file.display());
                        }
                        rest.split_once("]: ").unwrap().1
                    }
                };
                if line.starts_with("Proxy ")
                    || line.starts_with("Server ")
                    || line.starts_with("backend ")
                {
                    out.messages += 1;
                } else if line.ends_with(": SSL handshake failure") {
                    out.ssl += 1;
                } else if let Some(r) = split_line(host, line, scenario.utc_offset_minutes) {
                    if scenario.envelope == Envelope::Raw {
                        // Written in order of accept + Ta.
                        assert!(r.accept_ms + r.ta_ms >= last_write, "{line}");
                        last_write = r.accept_ms + r.ta_ms;
                    }
                    *out.by_status.entry(r.status).or_default() += 1;
                    if r.path == "<BADREQ>" {
                        out.badreq += 1;
                    } else if (200..300).contains(&r.status) {
                        out.requests.push(r);
                    }
                } else {
                    out.malformed += 1;
                }
            }
        }
    }
    out
}

type Key = (
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
    bool,
    Option<String>,
    String,
    String,
    u32,
);

fn key_of(s: &crate::TruthSession) -> Key {
    (
        s.host.clone(),
        s.tenant.clone(),
        s.stream.clone(),
        s.protocol.to_string(),
        format!("{}|{}", s.listener.0, s.listener.1),
        s.start_ms,
        s.end_ms,
        s.bot,
        s.referrer_host.clone(),
        s.source.clone(),
        s.status.to_string(),
        s.requests,
    )
}

/// Sessions from the requests, by DESIGN.md's rules, without the generator's code.
fn sessions_from_requests(requests: Vec<Request>) -> Vec<Key> {
    let referrer_host = |r: &Request| -> Option<String> {
        (!r.referer.is_empty()).then(|| r.referer.split('/').nth(2).unwrap().to_string())
    };
    let source = |r: &Request| -> String {
        r.query
            .as_deref()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("source=")))
            .map(str::to_string)
            .or_else(|| referrer_host(r))
            .unwrap_or_else(|| "direct".into())
    };
    let mut out = Vec::new();
    let mut hls: HashMap<(String, String, String, String, String), Vec<Request>> = HashMap::new();
    for r in requests {
        if let Some(dir) = r.path.strip_prefix("/hls/") {
            let stream = format!("/hls/{}", dir.rsplit_once('/').unwrap().0);
            hls.entry((
                r.host.clone(),
                r.tenant.clone(),
                r.ip_key.clone(),
                r.ua.clone(),
                stream,
            ))
            .or_default()
            .push(r);
        } else {
            out.push((
                r.host.clone(),
                r.tenant.clone(),
                r.path.clone(),
                "icecast".into(),
                format!("{}|{}", r.ip_key, r.ua),
                r.accept_ms,
                r.accept_ms + r.ta_ms,
                is_bot_ua(&r.ua),
                referrer_host(&r),
                source(&r),
                r.status.to_string(),
                1,
            ));
        }
    }
    for ((host, tenant, ip, ua, stream), mut reqs) in hls {
        reqs.sort_by_key(|r| r.accept_ms);
        let mut groups: Vec<Vec<Request>> = Vec::new();
        for r in reqs {
            match groups.last_mut() {
                Some(g)
                    if r.accept_ms - g.last().map(|p| p.accept_ms + p.ta_ms).unwrap()
                        < HLS_SESSION_GAP_MS =>
                {
                    g.push(r)
                }
                _ => groups.push(vec![r]),
            }
        }
        for g in groups {
            let first = &g[0];
            let end = g.iter().map(|r| r.accept_ms + r.ta_ms).max().unwrap();
            out.push((
                host.clone(),
                tenant.clone(),
                stream.clone(),
                "hls".into(),
                format!("{ip}|{ua}"),
                first.accept_ms,
                end,
                is_bot_ua(&ua),
                referrer_host(first),
                source(first),
                first.status.to_string(),
                g.len() as u32,
            ));
        }
    }
    out
}

fn check_roundtrip(scenario: &Scenario) -> Generated {
    let dir = temp_dir("roundtrip");
    let g = generate(scenario, &dir).unwrap();
    let back = reread(&g, scenario);
    assert_eq!(back.lines, g.lines);
    assert_eq!(back.malformed, g.malformed_lines);
    assert_eq!(back.messages, g.noise.haproxy_messages);
    assert_eq!(back.ssl, g.noise.ssl_errors);
    assert_eq!(back.badreq, g.noise.badreq);
    assert_eq!(back.by_status, g.requests_by_status);
    let mut want: Vec<Key> = g.sessions.iter().map(key_of).collect();
    let mut got = sessions_from_requests(back.requests);
    want.sort();
    got.sort();
    assert_eq!(got.len(), want.len());
    for (a, b) in got.iter().zip(&want) {
        assert_eq!(a, b);
    }
    std::fs::remove_dir_all(&dir).unwrap();
    g
}

fn small(seed: u64) -> Scenario {
    Scenario {
        seed,
        stations: 6,
        listeners: 400,
        ..Scenario::default()
    }
}

#[test]
fn raw_utc_lines_give_back_the_sessions() {
    let g = check_roundtrip(&small(7));
    let s = &g.sessions;
    // The scenario has what the brief asks for.
    assert!(s.iter().any(|s| s.protocol == "hls") && s.iter().any(|s| s.protocol == "icecast"));
    assert!(s.iter().any(|s| s.bot));
    assert!(s.iter().any(truth::is_short));
    assert!(
        s.iter().any(|s| s.start_ms < g.window_start_ms),
        "sessions from before the window"
    );
    assert!(s.iter().any(|s| s.length_ms() > 12 * crate::HOUR_MS));
    let midnight = 1_795_910_400_000; // 2026-11-29T00:00Z
    assert!(
        s.iter()
            .any(|s| s.start_ms < midnight && s.end_ms > midnight)
    );
    assert!(s.iter().any(|s| s.listener.0.ends_with("/64")));
    assert!(
        s.iter()
            .any(|s| s.source != "direct" && s.referrer_host.is_none())
    );
    assert!(s.iter().any(|s| s.referrer_host.is_some()));
    // Some listeners come back, some on several streams.
    let mut per_listener: HashMap<(&str, &(String, String)), Vec<&str>> = HashMap::new();
    for x in s {
        per_listener
            .entry((&x.tenant, &x.listener))
            .or_default()
            .push(&x.stream);
    }
    assert!(per_listener.values().any(|v| v.len() >= 3));
    assert!(
        per_listener
            .values()
            .any(|v| v.iter().any(|st| *st != v[0]))
    );
    for (_, files) in &g.files {
        assert_eq!(files.len(), 6);
    }
}

#[test]
fn rsyslog_offset_gzip_lines_give_back_the_sessions() {
    let scenario = Scenario {
        envelope: Envelope::Rsyslog,
        utc_offset_minutes: 330,
        gzip: true,
        ..small(11)
    };
    let g = check_roundtrip(&scenario);
    assert!(
        g.files[0]
            .1
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "gz"))
    );
}

#[test]
fn mapped_addresses_are_their_ipv4_listener() {
    let dir = temp_dir("mapped");
    let g = generate(&small(3), &dir).unwrap();
    let mut mapped = 0;
    for (_, files) in &g.files {
        for f in files {
            mapped += read_lines(f)
                .iter()
                .filter(|l| l.starts_with("::ffff:"))
                .count();
        }
    }
    assert!(mapped > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn same_seed_same_bytes() {
    let a = temp_dir("det-a");
    let b = temp_dir("det-b");
    let c = temp_dir("det-c");
    let scenario = Scenario {
        hours: 2,
        ..small(5)
    };
    let ga = generate(&scenario, &a).unwrap();
    let gb = generate(&scenario, &b).unwrap();
    let gc = generate(
        &Scenario {
            seed: 6,
            ..scenario.clone()
        },
        &c,
    )
    .unwrap();
    assert_eq!(ga.sessions, gb.sessions);
    let bytes = |g: &Generated| -> Vec<Vec<u8>> {
        g.files
            .iter()
            .flat_map(|(_, f)| f)
            .map(|p| std::fs::read(p).unwrap())
            .collect()
    };
    assert_eq!(bytes(&ga), bytes(&gb));
    assert_ne!(bytes(&ga), bytes(&gc));
    for d in [a, b, c] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

#[test]
fn exact_line_count_for_the_benchmark_shape() {
    let dir = temp_dir("bench");
    let path = dir.join("bench.log");
    let g = crate::generate_file(&Scenario::bench(60_000, 20, 600), &path).unwrap();
    assert_eq!(g.lines, 60_000);
    assert_eq!(read_lines(&path).len(), 60_000);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn default_scenario_truth_is_quick() {
    let dir = temp_dir("default");
    let started = std::time::Instant::now();
    let g = generate(&Scenario::default(), &dir).unwrap();
    let generated = started.elapsed();
    let totals = truth::per_tenant_totals(&g.sessions);
    assert_eq!(totals.len(), 20);
    let (from, to) = (g.window_start_ms, g.window_end_ms);
    for t in totals.keys() {
        let m = truth::metrics(&g.sessions, t, None, from, to);
        assert!(m.sessions > 0 && m.peak_concurrent > 0);
        let rows = truth::by_hour(&g.sessions, t, from, to, 60);
        let hourly: f64 = rows.iter().map(|r| r.listening_seconds).sum();
        assert!((hourly - m.listening_seconds).abs() < 1e-6);
    }
    eprintln!(
        "default scenario: {} lines, generated in {generated:?}, truth in {:?}",
        g.lines,
        started.elapsed() - generated
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
