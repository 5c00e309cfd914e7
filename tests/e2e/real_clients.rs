//! Real clients through a real HAProxy: ffmpeg plays an AzuraCast-like HLS tree (a master
//! playlist, two renditions beside it, packed-audio `.aac` segments made by ffmpeg itself)
//! from a plain HTTP server, under `/hls/st/` and again under `/radio/st/`; ffmpeg plays a
//! mount of Debian's Icecast 2 (fed by an ffmpeg source); curl asks for Icecast's status page,
//! player files and other non-audio things. The agent reads HAProxy's own log: one session
//! per ffmpeg run, on the right stream and rendition, and the non-audio requests counted by
//! kind, in the dry run and through a real collector's API. What is expected comes from what
//! the test did and from HAProxy's log read here with plain string matching, never from the
//! agent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use earshot_tests::*;
use serde_json::Value;

/// The source password of `live_icecast::icecast_config`.
const SOURCE_PASSWORD: &str = "srcpass";
/// Each ffmpeg run gets a User-Agent of its own, so the test can tell its lines apart in
/// HAProxy's log (and the agent sees one listener per run).
const UA_HLS_A: &str = "Lavf/59.27.100 (earshot-test hls-a)";
const UA_HLS_B: &str = "Lavf/59.27.100 (earshot-test hls-b)";
const UA_RADIO_C: &str = "Lavf/59.27.100 (earshot-test radio-c)";
const UA_MOUNT: &str = "Lavf/59.27.100 (earshot-test mount)";
const UA_CURL: &str = "curl/7.88.1";
const HLS_GAP_SECS: u64 = 10;

fn haproxy_config(port: u16, hls_origin: u16, icecast: u16) -> String {
    format!(
        "global\n    log stdout format raw local0\n\
         defaults\n    log global\n    mode http\n    option httplog\n    option dontlognull\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend fe_radio\n    bind 127.0.0.1:{port}\n    capture request header User-Agent len 256\n    capture request header Referer len 256\n\
         \x20   use_backend be_hlsradio if {{ path_beg /hls/ /radio/ }}\n    default_backend be_iceradio\n\
         backend be_hlsradio\n    server www 127.0.0.1:{hls_origin}\n\
         backend be_iceradio\n    server icecast 127.0.0.1:{icecast}\n"
    )
}

/// Runs ffmpeg (quietly, no stdin) to make files; panics with its stderr if it fails.
fn ffmpeg_ok(args: &[&str], cwd: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `st/live.m3u8` (master) with `aac_lofi.m3u8` and `aac_hifi.m3u8` beside it: VOD media
/// playlists of 1 s ADTS AAC segments `aac_lofi_1.aac` … made by ffmpeg's segment muxer.
fn write_hls_tree(st: &Path) {
    std::fs::create_dir_all(st).unwrap();
    for (name, bitrate, freq) in [("aac_lofi", "48k", 440), ("aac_hifi", "128k", 880)] {
        ffmpeg_ok(
            &[
                "-f",
                "lavfi",
                "-i",
                &format!("sine=frequency={freq}:duration=8:sample_rate=44100"),
                "-c:a",
                "aac",
                "-b:a",
                bitrate,
                "-f",
                "segment",
                "-segment_time",
                "1",
                "-segment_format",
                "adts",
                "-segment_list",
                &format!("{name}.m3u8"),
                "-segment_list_type",
                "m3u8",
                "-segment_start_number",
                "1",
                &format!("{name}_%d.aac"),
            ],
            st,
        );
        let list = std::fs::read_to_string(st.join(format!("{name}.m3u8"))).unwrap();
        assert!(list.contains("#EXT-X-ENDLIST"), "{list}");
        assert!(list.contains(&format!("{name}_1.aac")), "{list}");
    }
    std::fs::write(
        st.join("live.m3u8"),
        "#EXTM3U\n#EXT-X-VERSION:3\n\
         #EXT-X-STREAM-INF:BANDWIDTH=56000,CODECS=\"mp4a.40.2\"\naac_lofi.m3u8\n\
         #EXT-X-STREAM-INF:BANDWIDTH=136000,CODECS=\"mp4a.40.2\"\naac_hifi.m3u8\n",
    )
    .unwrap();
    // A player page, for a `document` request.
    std::fs::write(st.join("player.html"), "<html><body>player</body></html>\n").unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Starts real clients together and waits for all of them (killing any still running after
/// `timeout`); panics unless each exited successfully.
fn run_clients(clients: Vec<(&str, Command)>, timeout: Duration) {
    let mut procs: Vec<Proc> = clients
        .into_iter()
        .map(|(name, mut cmd)| {
            Proc::spawn(
                name,
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            )
        })
        .collect();
    let deadline = Instant::now() + timeout;
    let mut failed = Vec::new();
    for p in &mut procs {
        let status = loop {
            if let Ok(Some(s)) = p.child.try_wait() {
                break Some(s);
            }
            if Instant::now() >= deadline {
                p.kill9();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if !status.is_some_and(|s| s.success()) {
            let mut err = String::new();
            if let Some(mut e) = p.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            failed.push(format!("{}: {status:?}: {err}", p.name));
        }
    }
    assert!(failed.is_empty(), "clients failed:\n{}", failed.join("\n"));
}

fn ffmpeg_player(ua: &str, url: &str, input: &[&str], output: &[&str]) -> Command {
    let mut c = Command::new("ffmpeg");
    c.args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
        .args(["-user_agent", ua])
        .args(input)
        .args(["-i", url])
        .args(output)
        .args(["-f", "null", "-"]);
    c
}

/// One curl request through HAProxy; returns the status code.
fn curl(proxy: SocketAddr, method: &str, path: &str) -> u16 {
    let mut c = Command::new("curl");
    c.args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
    ])
    .args(["-A", UA_CURL]);
    if method == "HEAD" {
        c.arg("-I");
    } else {
        c.args(["-X", method]);
    }
    let out = c
        .arg(format!("http://{proxy}{path}"))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// What the test reads of one HAProxy httplog line.
#[derive(Debug, Clone)]
struct LogLine {
    backend: String,
    status: u16,
    user_agent: String,
    method: String,
    path: String,
}

/// `127.0.0.1:5432 [06/Dec/2026:19:43:06.123] fe_radio be_x/www 0/0/0/1/1 200 9632 - - ----
/// 1/1/0/0/0 0/0 {UA|Referer} "GET /path HTTP/1.1"`
fn parse_log_line(line: &str) -> Option<LogLine> {
    let (head, rest) = line.split_once(" {")?;
    let (captures, request) = rest.split_once("} \"")?;
    let tokens: Vec<&str> = head.split_whitespace().collect();
    let backend = tokens.get(3)?.split('/').next()?.to_string();
    let status = tokens.get(5)?.parse().ok()?;
    let user_agent = captures.split('|').next().unwrap_or("").to_string();
    let mut req = request.trim_end_matches('"').split_whitespace();
    let method = req.next()?.to_string();
    let path = req.next()?.split('?').next()?.to_string();
    Some(LogLine {
        backend,
        status,
        user_agent,
        method,
        path,
    })
}

/// The rendition a segment's name gives: `aac_hifi_7.aac` → `aac_hifi`.
fn rendition_of(segment_path: &str) -> String {
    let name = segment_path.rsplit('/').next().unwrap();
    let stem = name.strip_suffix(".aac").unwrap();
    stem.trim_end_matches(|c: char| c.is_ascii_digit())
        .trim_end_matches('_')
        .to_string()
}

/// What one HLS run did, read from HAProxy's log: which playlists and segments it fetched
/// (2xx GETs) and the rendition of the last segment.
struct HlsRun {
    playlists: Vec<String>,
    segments: Vec<String>,
}

impl HlsRun {
    fn of(lines: &[LogLine], ua: &str) -> HlsRun {
        let mine = lines
            .iter()
            .filter(|l| l.user_agent == ua && l.method == "GET" && (200..300).contains(&l.status));
        let (mut playlists, mut segments) = (Vec::new(), Vec::new());
        for l in mine {
            if l.path.ends_with(".m3u8") {
                playlists.push(l.path.clone());
            } else if l.path.ends_with(".aac") {
                segments.push(l.path.clone());
            }
        }
        HlsRun {
            playlists,
            segments,
        }
    }

    fn last_rendition(&self) -> String {
        rendition_of(self.segments.last().expect("the run fetched segments"))
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A map of string → count from a JSON object (missing: empty).
fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(u64::MAX)))
                .collect()
        })
        .unwrap_or_default()
}

/// A breakdown's rows (`value` → `sessions`) from the API.
fn rows(v: &Value) -> BTreeMap<String, u64> {
    v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["value"].as_str().unwrap().to_string(),
                r["sessions"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn bump(m: &mut BTreeMap<String, u64>, k: &str) {
    *m.entry(k.to_string()).or_default() += 1;
}

#[test]
fn real_hls_and_icecast_clients_through_haproxy() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    write_hls_tree(&www.join("hls/st"));
    copy_dir(&www.join("hls/st"), &www.join("radio/st"));

    // The HLS origin: a plain static file server.
    let www_port = free_port();
    let _www = Proc::spawn(
        "python3 http.server",
        Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1"])
            .arg(www_port.to_string())
            .arg("--directory")
            .arg(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let www_addr: SocketAddr = format!("127.0.0.1:{www_port}").parse().unwrap();
    assert!(
        wait_for_port(www_addr, Duration::from_secs(10)),
        "the HLS origin did not start"
    );

    // Icecast, fed by an ffmpeg source client directly (not through HAProxy).
    let ice_port = free_port();
    let ice_cfg = dir.path().join("icecast.xml");
    std::fs::write(
        &ice_cfg,
        crate::live_icecast::icecast_config(dir.path(), ice_port),
    )
    .unwrap();
    let _icecast = Proc::spawn(
        "icecast2",
        Command::new("icecast2")
            .arg("-c")
            .arg(&ice_cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let ice_addr: SocketAddr = format!("127.0.0.1:{ice_port}").parse().unwrap();
    assert!(
        wait_for_port(ice_addr, Duration::from_secs(10)),
        "icecast2 did not start"
    );
    let _source = Proc::spawn(
        "ffmpeg source",
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100"])
            .args(["-c:a", "libmp3lame", "-b:a", "128k"])
            .args(["-content_type", "audio/mpeg", "-f", "mp3"])
            .arg(format!(
                "icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{ice_port}/live.mp3"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert!(
        wait_for(Duration::from_secs(10), || {
            http_get(ice_addr, "/status-json.xsl", None)
                .ok()
                .filter(|(s, body)| *s == 200 && body.contains("/live.mp3"))
        })
        .is_some(),
        "the source did not come up on /live.mp3"
    );

    // HAProxy in front of both, logging in the httplog format to a file.
    let port = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(port, www_port, ice_port)).unwrap();
    let log = dir.path().join("haproxy.log");
    let mut haproxy = Proc::spawn(
        "haproxy",
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null()),
    );
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_port(proxy, Duration::from_secs(10)),
        "haproxy did not start"
    );
    let from_ms = now_ms();

    // The listeners, together: ffmpeg's own choice of rendition on /hls/st, the first
    // variant (program 0: aac_lofi) on /hls/st, ffmpeg's choice on /radio/st, and 4 s of the
    // Icecast mount.
    let base = format!("http://{proxy}");
    let clients = vec![
        (
            "ffmpeg hls-a",
            ffmpeg_player(UA_HLS_A, &format!("{base}/hls/st/live.m3u8"), &[], &[]),
        ),
        (
            "ffmpeg hls-b",
            ffmpeg_player(
                UA_HLS_B,
                &format!("{base}/hls/st/live.m3u8"),
                &[],
                &["-map", "0:p:0:a"],
            ),
        ),
        (
            "ffmpeg radio-c",
            ffmpeg_player(UA_RADIO_C, &format!("{base}/radio/st/live.m3u8"), &[], &[]),
        ),
        (
            "ffmpeg mount",
            ffmpeg_player(UA_MOUNT, &format!("{base}/live.mp3"), &["-t", "4"], &[]),
        ),
    ];
    let players = std::thread::spawn(move || run_clients(clients, Duration::from_secs(40)));

    // Non-audio requests meanwhile: (tenant, method, path, the kind a 2xx answer is).
    let asks = [
        ("iceradio", "GET", "/status-json.xsl", "status_page"),
        ("iceradio", "GET", "/live.mp3.m3u", "player_file"),
        ("iceradio", "GET", "/live.mp3.xspf", "player_file"),
        ("iceradio", "GET", "/live.mp3.pls", "player_file"),
        ("iceradio", "HEAD", "/live.mp3", "method"),
        ("iceradio", "GET", "/favicon.ico", "image"),
        ("hlsradio", "HEAD", "/hls/st/live.m3u8", "method"),
        ("hlsradio", "GET", "/radio/st/player.html", "document"),
        ("hlsradio", "GET", "/hls/st/favicon.ico", "image"),
    ];
    let mut want_not_sessions: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    let mut want_by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut answered = Vec::new();
    for (tenant, method, path, kind) in asks {
        let status = curl(proxy, method, path);
        assert_ne!(status, 0, "{method} {path}: no answer through HAProxy");
        answered.push(format!("{method} {path} → {status}"));
        if (200..300).contains(&status) {
            bump(want_not_sessions.entry(tenant).or_default(), kind);
        } else {
            bump(&mut want_by_status, &status.to_string());
        }
    }
    eprintln!("non-audio requests: {answered:?}");
    // Icecast's status page and player files are there; /favicon.ico is not (a 404).
    for k in ["status_page", "player_file"] {
        assert!(
            want_not_sessions
                .get("iceradio")
                .is_some_and(|m| m.contains_key(k)),
            "Icecast did not answer a {k} with 2xx: {answered:?}"
        );
    }

    players.join().expect("the players ran");
    std::thread::sleep(Duration::from_millis(500));
    haproxy.terminate(Duration::from_secs(5));
    let to_ms = now_ms();

    // HAProxy's log, read here.
    let log_text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<LogLine> = log_text.lines().filter_map(parse_log_line).collect();
    assert_eq!(
        lines.len(),
        log_text.lines().count(),
        "every log line is a request line\n{log_text}"
    );
    let ice_stream_lines = lines
        .iter()
        .filter(|l| l.user_agent == UA_MOUNT)
        .collect::<Vec<_>>();
    assert_eq!(ice_stream_lines.len(), 1, "{log_text}");
    assert_eq!(
        (
            ice_stream_lines[0].backend.as_str(),
            ice_stream_lines[0].status,
            ice_stream_lines[0].path.as_str()
        ),
        ("be_iceradio", 200, "/live.mp3"),
        "{log_text}"
    );
    let runs = [
        ("/hls/st", HlsRun::of(&lines, UA_HLS_A)),
        ("/hls/st", HlsRun::of(&lines, UA_HLS_B)),
        ("/radio/st", HlsRun::of(&lines, UA_RADIO_C)),
    ];
    let mut want_renditions: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    for (stream, run) in &runs {
        // A real HLS client: the master, rendition playlists, segments, all under the stream.
        assert_eq!(
            run.playlists.first().map(String::as_str),
            Some(format!("{stream}/live.m3u8").as_str()),
            "{log_text}"
        );
        assert!(
            run.playlists.len() >= 2 && !run.segments.is_empty(),
            "{log_text}"
        );
        assert!(
            run.playlists
                .iter()
                .chain(&run.segments)
                .all(|p| p.starts_with(&format!("{stream}/"))),
            "{log_text}"
        );
        bump(
            want_renditions.entry(stream).or_default(),
            &run.last_rendition(),
        );
    }
    // The run mapped to the first variant played aac_lofi to its end.
    assert_eq!(runs[1].1.last_rendition(), "aac_lofi", "{log_text}");
    eprintln!("renditions played (from HAProxy's log): {want_renditions:?}");

    // The dry run over HAProxy's log.
    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        format!(
            "[inputs]\nlog_timezone = \"UTC\"\n[sessions]\nmin_session_secs = 1\nhls_session_gap_secs = {HLS_GAP_SECS}\n"
        ),
    )
    .unwrap();
    let out = run_ok(
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--dry-run", "--config"])
            .arg(&agent_cfg)
            .arg(&log),
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    eprintln!("dry run: {}", report["tenants"]);
    let ctx = format!("{out}\n{log_text}");
    assert_eq!(report["lines"], lines.len() as u64, "{ctx}");
    assert_eq!(report["malformed_lines"], 0, "{ctx}");
    assert_eq!(
        counts(&report["not_sessions_by_status"]),
        want_by_status,
        "non-2xx by status\n{ctx}"
    );
    let tenants: Vec<&String> = report["tenants"].as_object().unwrap().keys().collect();
    assert_eq!(tenants, ["hlsradio", "iceradio"], "{ctx}");

    let hls = &report["tenants"]["hlsradio"];
    assert_eq!(hls["sessions"], 3, "one session per ffmpeg HLS run\n{ctx}");
    assert_eq!(hls["short_sessions"], 0, "{ctx}");
    assert_eq!(hls["bot_sessions"], 0, "{ctx}");
    assert_eq!(hls["streams"], 2, "/hls/st and /radio/st only\n{ctx}");
    assert_eq!(
        counts(&hls["breakdowns"]["protocol"]),
        [("hls".to_string(), 3)].into(),
        "{ctx}"
    );
    let want_hls_streams: BTreeMap<String, u64> =
        [("/hls/st".to_string(), 2), ("/radio/st".to_string(), 1)].into();
    assert_eq!(
        counts(&hls["breakdowns"]["stream"]),
        want_hls_streams,
        "{ctx}"
    );
    let mut all_renditions = BTreeMap::new();
    for m in want_renditions.values() {
        for (r, n) in m {
            *all_renditions.entry(r.clone()).or_default() += n;
        }
    }
    assert_eq!(
        counts(&hls["breakdowns"]["rendition"]),
        all_renditions,
        "each session's rendition is that of the last segment its player fetched\n{ctx}"
    );
    assert_eq!(
        counts(&hls["not_sessions"]),
        want_not_sessions
            .get("hlsradio")
            .cloned()
            .unwrap_or_default(),
        "{ctx}"
    );

    let ice = &report["tenants"]["iceradio"];
    assert_eq!(ice["sessions"], 1, "one listener of /live.mp3\n{ctx}");
    assert_eq!(ice["short_sessions"], 0, "{ctx}");
    assert_eq!(ice["streams"], 1, "{ctx}");
    assert_eq!(
        counts(&ice["breakdowns"]["protocol"]),
        [("icecast".to_string(), 1)].into(),
        "{ctx}"
    );
    assert_eq!(
        counts(&ice["breakdowns"]["rendition"]),
        [("none".to_string(), 1)].into(),
        "{ctx}"
    );
    assert_eq!(
        counts(&ice["breakdowns"]["stream"]),
        [("/live.mp3".to_string(), 1)].into(),
        "{ctx}"
    );
    assert_eq!(
        counts(&ice["not_sessions"]),
        want_not_sessions
            .get("iceradio")
            .cloned()
            .unwrap_or_default(),
        "{ctx}"
    );

    // The same log shipped to a real collector, read back through the API.
    let d = Deployment::start(&dir.path().join("earshot"), 1);
    edit_file(&d.agent_config(1), |t| {
        t.replacen(
            "[inputs]\n",
            &format!(
                "[sessions]\nmin_session_secs = 1\nhls_session_gap_secs = {HLS_GAP_SECS}\n\n[inputs]\nlog_timezone = \"UTC\"\n"
            ),
            1,
        )
    });
    let shipped = d.ingest(1, std::slice::from_ref(&log), &[]);
    assert!(
        shipped.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&shipped.stderr)
    );
    let range = format!(
        "from={}&to={}",
        rfc3339(from_ms.div_euclid(60_000) * 60_000 - 60 * 60_000),
        rfc3339((to_ms.div_euclid(60_000) + 61) * 60_000)
    );
    let api = |tenant: &str, what: &str, extra: &str| {
        d.api(&format!(
            "/api/v1/tenants/{tenant}/streaming/{what}?{range}{extra}"
        ))
    };
    let summary = api("hlsradio", "summary", "");
    assert_eq!(summary["sessions"], 3, "{summary}");
    assert_eq!(summary["short_sessions"], 0, "{summary}");
    assert_eq!(rows(&api("hlsradio", "by/stream", "")), want_hls_streams);
    assert_eq!(rows(&api("hlsradio", "by/rendition", "")), all_renditions);
    for (stream, want) in &want_renditions {
        let got = api(
            "hlsradio",
            "by/rendition",
            &format!("&stream={}", stream.replace('/', "%2F")),
        );
        assert_eq!(&rows(&got), want, "by/rendition of {stream}: {got}");
    }
    let summary = api("iceradio", "summary", "");
    assert_eq!(summary["sessions"], 1, "{summary}");
    assert_eq!(
        rows(&api("iceradio", "by/stream", "")),
        [("/live.mp3".to_string(), 1)].into()
    );
    assert_eq!(
        rows(&api("iceradio", "by/rendition", "")),
        [("none".to_string(), 1)].into()
    );
    eprintln!("real_clients took {:?}", started.elapsed());
}
