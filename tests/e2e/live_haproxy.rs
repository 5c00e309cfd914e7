//! Live listener counts from a real HAProxy's stick tables: Debian's haproxy tracks listeners
//! per mount (`track-sc1 path`, counted by `conn_cur`) and HLS players per address (counted by
//! entries); real HTTP clients come and go, and the reader's numbers must follow within one
//! poll interval + 1 s. HAProxy is stopped and started again mid-run: the reader recovers by
//! itself.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use earshot_agent::live::{LiveConfig, LivePoller, StickTableReader};
use earshot_common::Protocol;
use earshot_common::wire::LiveSample;
use earshot_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const INTERVAL: Duration = Duration::from_secs(1);
/// "Within one poll interval + 1 s".
const FOLLOW: Duration = Duration::from_secs(2);

fn haproxy_config(stats_socket: &str, port: u16, origin: SocketAddr) -> String {
    format!(
        "global\n    stats socket {stats_socket} level admin\n    stats timeout 30s\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend fe_radio\n    bind 127.0.0.1:{port}\n\
         \x20   http-request track-sc1 path table st_mount if !{{ path_beg /hls/ }}\n\
         \x20   http-request track-sc2 src table st_hls if {{ path_beg /hls/radio1/ }}\n\
         \x20   http-request track-sc0 src table st_hls6 if {{ path_beg /hls/radio2/ }}\n\
         \x20   default_backend be_origin\n\
         backend be_origin\n    server origin {origin}\n\
         backend st_mount\n    stick-table type string len 64 size 1k expire 5s store conn_cur\n\
         backend st_hls\n    stick-table type ip size 1k expire 3s store conn_cur\n\
         backend st_hls6\n    stick-table type ipv6 size 1k expire 3s store conn_cur\n"
    )
}

fn start_haproxy(cfg: &Path) -> Proc {
    Proc::spawn(
        "haproxy",
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

fn live_config(socket: &str, interval: Duration) -> LiveConfig {
    let config: LiveConfig = serde_json::from_value(serde_json::json!({
        "interval_secs": interval.as_secs(),
        "haproxy": {
            "socket": socket,
            "tables": [
                { "table": "st_mount", "count": "conn_cur" },
                { "table": "st_hls", "count": "entries", "tenant": "radio1", "stream": "/hls/radio1" },
                { "table": "st_hls6", "count": "entries", "tenant": "radio2", "stream": "/hls/radio2" },
                { "table": "st_not_in_haproxy_cfg", "count": "conn_cur", "tenant": "radio9", "stream": "/gone.mp3" },
            ],
        },
    }))
    .unwrap();
    config.validate().unwrap();
    config
}

/// A listener holding a progressive stream until its task is aborted. Returns once the
/// response has started, so the caller knows HAProxy counts it.
async fn hold_stream(proxy: SocketAddr, ip: &str, path: &str) -> tokio::task::JoinHandle<()> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let mut conn = sock.connect(proxy).await.unwrap();
    conn.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: radio.test\r\nUser-Agent: VLC/3.0.18\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 16384];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    tokio::spawn(async move {
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
}

/// An HLS player: playlist then segment every 500 ms until aborted.
fn play_hls(proxy: SocketAddr, ip: &'static str, dir: &'static str) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            assert_eq!(
                get_once(proxy, ip, &format!("{dir}/live.m3u8"), "AppleCoreMedia/1.0").await,
                200
            );
            n += 1;
            assert_eq!(
                get_once(
                    proxy,
                    ip,
                    &format!("{dir}/seg_{n}.aac"),
                    "AppleCoreMedia/1.0"
                )
                .await,
                200
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

fn count(sample: &LiveSample, tenant: &str, stream: &str, protocol: Protocol) -> Option<u64> {
    sample
        .entries
        .iter()
        .find(|e| e.tenant == tenant && e.stream == stream && e.protocol == protocol)
        .map(|e| e.listeners)
}

/// Reads samples until `want` holds for one, or `within` passes; returns how long it took.
async fn until(
    rx: &mut mpsc::Receiver<LiveSample>,
    within: Duration,
    what: &str,
    want: impl Fn(&LiveSample) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut last = None;
    loop {
        let left = within.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Some(sample)) => {
                if want(&sample) {
                    return started.elapsed();
                }
                last = Some(sample);
            }
            Ok(None) => panic!("the poller stopped"),
            Err(_) => panic!("{what}: not seen within {within:?}; last sample {last:#?}"),
        }
    }
}

/// Throws away samples already queued, so the next one is from a poll made after now.
fn drain(rx: &mut mpsc::Receiver<LiveSample>) {
    while rx.try_recv().is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stick_tables_follow_listeners_that_come_and_go() {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin_server().await;
    let port = free_port();
    let socket = dir.path().join("admin.sock");
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        haproxy_config(&socket.display().to_string(), port, origin),
    )
    .unwrap();
    let _haproxy = start_haproxy(&cfg);
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_port(proxy, Duration::from_secs(10)),
        "haproxy did not start"
    );
    assert!(wait_for(Duration::from_secs(5), || socket.exists().then_some(())).is_some());

    let poller = LivePoller::new(&live_config(&socket.display().to_string(), INTERVAL)).unwrap();
    let stats = poller.stats();
    let (tx, mut rx) = mpsc::channel(64);
    let poller = tokio::spawn(poller.run(tx));

    // Nobody yet: the fixed-stream tables say 0, the missing table says nothing.
    until(&mut rx, FOLLOW, "empty tables", |s| {
        count(s, "radio1", "/hls/radio1", Protocol::Hls) == Some(0)
            && count(s, "radio2", "/hls/radio2", Protocol::Hls) == Some(0)
            && count(s, "radio9", "/gone.mp3", Protocol::Icecast).is_none()
    })
    .await;

    // Three listeners on radio1, one on a radio2 mount whose key HAProxy escapes (`\=`).
    let mut r1 = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        r1.push(hold_stream(proxy, ip, "/radio1/live.mp3").await);
    }
    let r2 = hold_stream(proxy, "127.0.0.5", "/radio2/a=b%20c.mp3").await;
    drain(&mut rx);
    let took = until(&mut rx, FOLLOW, "3 + 1 progressive listeners", |s| {
        count(s, "radio1", "/radio1/live.mp3", Protocol::Icecast) == Some(3)
            && count(s, "radio2", "/radio2/a=b%20c.mp3", Protocol::Icecast) == Some(1)
    })
    .await;
    println!("progressive listeners seen after {took:?}");

    // Two leave: their entry lingers (expire 5 s) but conn_cur drops at once.
    r1.pop().unwrap().abort();
    r1.pop().unwrap().abort();
    drain(&mut rx);
    until(
        &mut rx,
        FOLLOW,
        "1 progressive listener left on radio1",
        |s| count(s, "radio1", "/radio1/live.mp3", Protocol::Icecast) == Some(1),
    )
    .await;

    // HLS: two players on radio1 (type ip table), one on radio2 (type ipv6 table).
    let hls = [
        play_hls(proxy, "127.0.0.10", "/hls/radio1"),
        play_hls(proxy, "127.0.0.11", "/hls/radio1"),
        play_hls(proxy, "127.0.0.12", "/hls/radio2"),
    ];
    until(
        &mut rx,
        FOLLOW + Duration::from_secs(1),
        "HLS players",
        |s| {
            count(s, "radio1", "/hls/radio1", Protocol::Hls) == Some(2)
                && count(s, "radio2", "/hls/radio2", Protocol::Hls) == Some(1)
        },
    )
    .await;
    // HLS requests never leak into the per-mount table.
    let s = rx.recv().await.unwrap();
    assert!(
        s.entries
            .iter()
            .all(|e| !e.stream.starts_with("/hls/") || e.protocol == Protocol::Hls),
        "{s:#?}"
    );

    // The players stop: each entry means "fetched within the last 3 s", so they fall to 0
    // within expire + interval + 1 s. Everyone else leaves too.
    for h in &hls {
        h.abort();
    }
    r1.pop().unwrap().abort();
    r2.abort();
    let left = Instant::now();
    drain(&mut rx);
    // A stream gone from the table is reported as 0 (for a few polls), not left frozen.
    until(&mut rx, FOLLOW, "progressive listeners gone", |s| {
        count(s, "radio1", "/radio1/live.mp3", Protocol::Icecast) == Some(0)
            && count(s, "radio2", "/radio2/a=b%20c.mp3", Protocol::Icecast) == Some(0)
    })
    .await;
    let within = (Duration::from_secs(3) + FOLLOW).saturating_sub(left.elapsed());
    until(&mut rx, within, "HLS players gone", |s| {
        count(s, "radio1", "/hls/radio1", Protocol::Hls) == Some(0)
            && count(s, "radio2", "/hls/radio2", Protocol::Hls) == Some(0)
    })
    .await;

    assert_eq!(stats.polls_failed.load(Ordering::Relaxed), 0);
    assert!(
        stats.table_failures.load(Ordering::Relaxed) > 0,
        "the missing table is counted"
    );
    assert_eq!(stats.malformed_lines.load(Ordering::Relaxed), 0);
    drop(rx);
    tokio::time::timeout(Duration::from_secs(5), poller)
        .await
        .expect("the poller stops with its receiver")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stick_table_reader_recovers_when_haproxy_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin_server().await;
    let port = free_port();
    let api_port = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        haproxy_config(&format!("ipv4@127.0.0.1:{api_port}"), port, origin),
    )
    .unwrap();
    let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let api: SocketAddr = format!("127.0.0.1:{api_port}").parse().unwrap();
    let mut haproxy = start_haproxy(&cfg);
    assert!(
        wait_for_port(proxy, Duration::from_secs(10))
            && wait_for_port(api, Duration::from_secs(10))
    );

    let config = live_config(&format!("tcp:127.0.0.1:{api_port}"), INTERVAL);
    // The reader alone: a poll fails while HAProxy is away, and works again after.
    let mut reader = StickTableReader::new(
        config.haproxy.as_ref().unwrap(),
        INTERVAL,
        Default::default(),
    )
    .unwrap();
    assert_eq!(reader.connections_per_poll(), 1);
    reader.poll_once().await.unwrap();

    let poller = LivePoller::new(&config).unwrap();
    let stats = poller.stats();
    let (tx, mut rx) = mpsc::channel(64);
    let _poller = tokio::spawn(poller.run(tx));
    let first = hold_stream(proxy, "127.0.0.2", "/radio1/live.mp3").await;
    until(&mut rx, FOLLOW, "a listener before the restart", |s| {
        count(s, "radio1", "/radio1/live.mp3", Protocol::Icecast) == Some(1)
    })
    .await;

    haproxy.terminate(Duration::from_secs(5));
    first.abort();
    let err = reader.poll_once().await.unwrap_err();
    println!("while HAProxy is down: {err}");
    drain(&mut rx);
    // No sample while it is down (unknown is not zero), and the failures are counted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        rx.try_recv().is_err(),
        "a sample came from a stopped HAProxy"
    );
    let failed = stats.polls_failed.load(Ordering::Relaxed);
    assert!(failed >= 2, "{failed} failed polls in 3 s");

    let _haproxy = start_haproxy(&cfg);
    assert!(
        wait_for_port(proxy, Duration::from_secs(10))
            && wait_for_port(api, Duration::from_secs(10))
    );
    let restarted = Instant::now();
    let _second = hold_stream(proxy, "127.0.0.3", "/radio1/live.mp3").await;
    // Retries back off to at most the interval: the reader is back within interval + 1 s.
    until(&mut rx, FOLLOW, "the listener after the restart", |s| {
        count(s, "radio1", "/radio1/live.mp3", Protocol::Icecast) == Some(1)
    })
    .await;
    println!("recovered {:?} after HAProxy was back", restarted.elapsed());
    reader.poll_once().await.unwrap();
}

/// CPU time (user + system) of this whole process so far, from /proc/self/stat.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    // Fields 14 and 15 of stat(5); after the comm field they are at 11 and 12.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz: u64 = run_ok(Command::new("getconf").arg("CLK_TCK"))
        .trim()
        .parse()
        .unwrap();
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// The figure: agent CPU for polling 1,000 tables every 5 s. 500 tables keyed by mount
/// (10 streams each, counted by `conn_cur`) and 500 HLS tables keyed by address (20 players
/// each, counted by entries), in a real HAProxy. Run alone:
/// `cargo test -p earshot-tests --test e2e cpu_polling_1000_tables -- --ignored --nocapture`.
#[tokio::test(flavor = "current_thread")]
#[ignore = "a measurement: run alone, on an idle machine"]
async fn cpu_polling_1000_tables() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let mut cfg = format!(
        "global\n    stats socket {} level admin\n    stats timeout 30s\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend fe\n    bind 127.0.0.1:{}\n    http-request return status 200\n",
        socket.display(),
        free_port()
    );
    let mut tables = Vec::new();
    for i in 0..1000 {
        if i % 2 == 0 {
            cfg.push_str(&format!("backend st_m{i}\n    stick-table type string len 64 size 1k expire 10m store conn_cur\n"));
            tables.push(serde_json::json!({ "table": format!("st_m{i}"), "count": "conn_cur" }));
        } else {
            cfg.push_str(&format!(
                "backend st_h{i}\n    stick-table type ip size 1k expire 10m store conn_cur\n"
            ));
            tables.push(serde_json::json!({
                "table": format!("st_h{i}"), "count": "entries", "tenant": format!("t{i}"), "stream": "/hls/live",
            }));
        }
    }
    let cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg_path, cfg).unwrap();
    let _haproxy = start_haproxy(&cfg_path);
    assert!(wait_for(Duration::from_secs(20), || socket.exists().then_some(())).is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Fill the tables through the CLI: `set table … key … data.conn_cur N`.
    let mut commands = Vec::new();
    for i in 0..1000 {
        for k in 0..if i % 2 == 0 { 10 } else { 20 } {
            commands.push(if i % 2 == 0 {
                format!(
                    "set table st_m{i} key /t{i}/stream{k}.mp3 data.conn_cur {}",
                    k + 1
                )
            } else {
                format!(
                    "set table st_h{i} key 10.{}.{}.{k} data.conn_cur 0",
                    i / 256,
                    i % 256
                )
            });
        }
    }
    for chunk in commands.chunks(100) {
        let mut conn = tokio::net::UnixStream::connect(&socket).await.unwrap();
        conn.write_all(format!("{}\n", chunk.join(";")).as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        conn.read_to_string(&mut out).await.unwrap();
        assert!(out.trim().is_empty(), "set table said {out:?}");
    }

    let config: LiveConfig = serde_json::from_value(serde_json::json!({
        "haproxy": { "socket": socket.display().to_string(), "tables": tables },
    }))
    .unwrap();
    let stats = std::sync::Arc::new(earshot_agent::live::LiveStats::default());
    let mut reader = StickTableReader::new(
        config.haproxy.as_ref().unwrap(),
        Duration::from_secs(5),
        stats.clone(),
    )
    .unwrap();
    let sample = reader.poll_once().await.unwrap();
    assert_eq!(sample.entries.len(), 500 * 10 + 500);
    let listeners: u64 = sample.entries.iter().map(|e| e.listeners).sum();
    assert_eq!(listeners, 500 * 55 + 500 * 20);

    let polls = 40;
    let cpu = process_cpu();
    let wall = Instant::now();
    for _ in 0..polls {
        let s = reader.poll_once().await.unwrap();
        assert_eq!(s.entries.len(), 5500);
    }
    let per_poll = (process_cpu() - cpu) / polls;
    let share = per_poll.as_secs_f64() / 5.0 * 100.0;
    println!(
        "1,000 tables ({} connections per poll, {} entries): {:?} CPU per poll ({:?} wall), {:.3} % of a core at one poll per 5 s",
        reader.connections_per_poll(),
        500 * 10 + 500 * 20,
        per_poll,
        wall.elapsed() / polls,
        share
    );
    assert_eq!(stats.table_failures.load(Ordering::Relaxed), 0);
    assert!(share < 1.0, "{share:.3} % of a core");
}
