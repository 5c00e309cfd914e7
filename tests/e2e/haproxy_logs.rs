//! The agent on a real HAProxy's log: Debian's haproxy proxies real HTTP listeners to an
//! origin with an endless stream and an HLS playlist; the agent's dry run over the log HAProxy
//! wrote must tell exactly what the listeners did.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use earshot_tests::*;
use serde_json::Value;

const VLC: &str = "VLC/3.0.18 LibVLC/3.0.18";
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
const IPHONE: &str = "AppleCoreMedia/1.0.0.21A351 (iPhone; U; CPU OS 17_0 like Mac OS X; en_us)";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn haproxy_config(port: u16, origin: std::net::SocketAddr) -> String {
    format!(
        "global\n    log stdout format raw local0\n\
         defaults\n    log global\n    mode http\n    option httplog\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
         frontend fe_radio\n    bind 127.0.0.1:{port}\n    capture request header User-Agent len 256\n    capture request header Referer len 256\n    default_backend be_radio1\n\
         backend be_radio1\n    server origin {origin}\n"
    )
}

/// An HLS player: the playlist, then a segment, every 500 ms for `play`. Returns the time from
/// its first request to the end of its last.
async fn play_hls(proxy: std::net::SocketAddr, ip: &str, play: Duration) -> Duration {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < play {
        assert_eq!(
            get_once(proxy, ip, "/hls/radio1/live.m3u8", IPHONE).await,
            200
        );
        n += 1;
        assert_eq!(
            get_once(proxy, ip, &format!("/hls/radio1/seg_{n}.aac"), IPHONE).await,
            200
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agent_counts_what_listeners_did_through_real_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin_server().await;
    let port = free_port();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(port, origin)).unwrap();
    let log = dir.path().join("haproxy.log");
    let mut haproxy = Proc::spawn(
        "haproxy",
        Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null()),
    );
    let proxy: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_port(proxy, Duration::from_secs(10)),
        "haproxy did not start"
    );

    let a = tokio::spawn(listen_progressive(
        proxy,
        "127.0.0.2",
        "/radio1/live.mp3",
        VLC,
        "",
        Duration::from_secs(4),
    ));
    let b = tokio::spawn(listen_progressive(
        proxy,
        "127.0.0.3",
        "/radio1/live.mp3?source=newsletter",
        CHROME,
        "https://player.radio.test/embed",
        Duration::from_secs(3),
    ));
    let c = tokio::spawn(listen_progressive(
        proxy,
        "127.0.0.2",
        "/radio1/live.mp3",
        VLC,
        "",
        Duration::from_secs(1),
    ));
    let d = tokio::spawn(listen_progressive(
        proxy,
        "127.0.0.5",
        "/radio1/live.mp3",
        BOT,
        "",
        Duration::from_secs(3),
    ));
    assert_eq!(
        get_once(proxy, "127.0.0.6", "/nothing-here", CHROME).await,
        404
    );
    let e1 = play_hls(proxy, "127.0.0.4", Duration::from_secs(4)).await;
    // A pause longer than the 3 s gap: the next requests are a new session.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let e2 = play_hls(proxy, "127.0.0.4", Duration::from_secs(3)).await;
    let (a, b, _c, _d) = (
        a.await.unwrap(),
        b.await.unwrap(),
        c.await.unwrap(),
        d.await.unwrap(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    haproxy.terminate(Duration::from_secs(5));

    let agent_cfg = dir.path().join("agent.toml");
    std::fs::write(
        &agent_cfg,
        "[inputs]\nlog_timezone = \"UTC\"\n[sessions]\nmin_session_secs = 2\nhls_session_gap_secs = 3\n",
    )
    .unwrap();
    let out = run_ok(
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--dry-run", "--config"])
            .arg(&agent_cfg)
            .arg(&log),
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap();
    let t = &report["tenants"]["radio1"];
    assert_eq!(report["malformed_lines"], 0, "{out}\n{log_text}");
    assert_eq!(
        t["sessions"], 4,
        "A, B and two HLS sessions\n{out}\n{log_text}"
    );
    assert_eq!(t["short_sessions"], 1, "C held 1 s\n{out}");
    assert_eq!(t["bot_sessions"], 1, "D is Googlebot\n{out}");
    assert_eq!(
        t["unique_listeners"], 3,
        "127.0.0.2/VLC, 127.0.0.3/Chrome, 127.0.0.4/iPhone\n{out}"
    );
    assert_eq!(report["not_sessions_by_status"]["404"], 1, "{out}");
    let expected = (a + b + e1 + e2).as_secs_f64();
    let got = t["listening_seconds"].as_f64().unwrap();
    assert!(
        (got - expected).abs() < 1.0,
        "listening {got} s, listeners measured {expected} s\n{log_text}"
    );
}
