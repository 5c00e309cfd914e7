//! The live API end to end: Debian's HAProxy counts listeners in a stick table → a real
//! `earshot-agent run` with a `[live]` section polls it → QUIC datagrams → a real
//! `earshot-collector run` → `/live`, `live/history`, `live/stream` (read by a real HTTP
//! client) and `/metrics`. Listeners are real TCP connections through HAProxy.
//!
//! What is proven: the API follows the true count within one poll interval + 1 s; a host
//! whose samples stop is dropped after `stale_after`; an SSE client that reconnects with
//! `Last-Event-ID` across a collector restart misses no change and gets nothing twice; the
//! history survives the restart. The connect → `live/stream` latencies are printed (run with
//! `--nocapture` to see them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use earshot_tests::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const INTERVAL: Duration = Duration::from_secs(1);
/// "Within one poll interval + 1 s".
const FOLLOW: Duration = Duration::from_secs(2);
const STREAM: &str = "/radio1/live.mp3";

fn haproxy_config(stats_socket: &Path, port: u16, origin: SocketAddr) -> String {
    format!(
        "global\n    stats socket {} level admin\n    stats timeout 30s\n\
         defaults\n    mode http\n    timeout connect 5s\n    timeout client 120s\n    timeout server 120s\n\
         frontend fe_radio\n    bind 127.0.0.1:{port}\n\
         \x20   http-request track-sc1 path table st_mount\n\
         \x20   default_backend be_origin\n\
         backend be_origin\n    server origin {origin}\n\
         backend st_mount\n    stick-table type string len 64 size 1k expire 60s store conn_cur\n",
        stats_socket.display()
    )
}

/// HAProxy, a collector and an agent, set up by `earshot-collector init`.
struct Deployment {
    dir: tempfile::TempDir,
    _haproxy: Proc,
    proxy: SocketAddr,
    http: SocketAddr,
    token: String,
    collector_config: PathBuf,
    collector: Option<Proc>,
    agent: Option<Proc>,
}

impl Deployment {
    async fn start(stale_after_secs: u64) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let origin = origin_server().await;
        let port = free_port();
        let socket = dir.path().join("admin.sock");
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, haproxy_config(&socket, port, origin)).unwrap();
        let haproxy = Proc::spawn(
            "haproxy",
            Command::new("haproxy")
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let proxy: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        assert!(
            wait_for_port(proxy, Duration::from_secs(10)),
            "haproxy did not start"
        );
        assert!(wait_for(Duration::from_secs(5), || socket.exists().then_some(())).is_some());

        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let quic = format!("127.0.0.1:{}", free_udp_port());
        run_ok(
            Command::new(bin("earshot-collector"))
                .args(["init", "--dir"])
                .arg(dir.path())
                .args(["--quic-listen", &quic, "--http-listen", &http.to_string()]),
        );
        let collector_config = dir.path().join("collector.toml");
        append(
            &collector_config,
            &format!(
                "\n[live]\nstale_after_secs = {stale_after_secs}\nsnapshot_interval_secs = 60\nheartbeat_secs = 1\n"
            ),
        );
        append(
            &dir.path().join("agent.toml"),
            &format!(
                "\n[live]\ninterval_secs = {}\n[live.haproxy]\nsocket = \"{}\"\n\
                 tables = [{{ table = \"st_mount\", count = \"conn_cur\" }}]\n",
                INTERVAL.as_secs(),
                socket.display()
            ),
        );
        let token = std::fs::read_to_string(dir.path().join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        let mut d = Deployment {
            dir,
            _haproxy: haproxy,
            proxy,
            http,
            token,
            collector_config,
            collector: None,
            agent: None,
        };
        d.start_collector();
        d.start_agent();
        d
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap()
    }

    fn start_collector(&mut self) {
        let collector = Proc::spawn(
            "earshot-collector",
            Command::new(bin("earshot-collector"))
                .arg("run")
                .arg("--config")
                .arg(&self.collector_config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(self.log("collector")),
        );
        self.collector = Some(collector);
        assert!(
            wait_for_port(self.http, Duration::from_secs(20)),
            "the collector did not start: {}",
            self.read_log("collector")
        );
    }

    fn stop_collector(&mut self) {
        let mut c = self.collector.take().unwrap();
        let status = c.terminate(Duration::from_secs(20));
        assert!(
            status.is_some_and(|s| s.success()),
            "collector exit {status:?}: {}",
            self.read_log("collector")
        );
    }

    fn start_agent(&mut self) {
        let agent = Proc::spawn(
            "earshot-agent",
            Command::new(bin("earshot-agent"))
                .arg("run")
                .arg("--config")
                .arg(self.dir.path().join("agent.toml"))
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(self.log("agent")),
        );
        self.agent = Some(agent);
    }

    fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1/tenants/radio1/{path}", self.http)
    }

    async fn get(&self, url: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    async fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(&self.url(path)).await;
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn metrics(&self) -> String {
        let (status, body) = self.get(&format!("http://{}/metrics", self.http)).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Polls `/live` until its total is `want`; returns how long that took from `since`.
    async fn live_until(&self, want: u64, since: Instant, within: Duration) -> Duration {
        loop {
            let live = self.json("live").await;
            if live["listeners"] == want {
                return since.elapsed();
            }
            assert!(
                since.elapsed() < within,
                "/live did not reach {want} within {within:?}: {live:#}\nagent: {}",
                self.read_log("agent")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// A listener holding the stream until aborted. Returns once the response started, so
/// HAProxy counts it.
async fn listen(proxy: SocketAddr, ip: &str) -> tokio::task::JoinHandle<()> {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    let mut conn = sock.connect(proxy).await.unwrap();
    conn.write_all(
        format!("GET {STREAM} HTTP/1.1\r\nHost: radio.test\r\nUser-Agent: VLC/3.0.18\r\n\r\n")
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

/// What the SSE client saw.
#[derive(Debug)]
enum Seen {
    Event {
        id: u64,
        data: Value,
        at: Instant,
    },
    Heartbeat,
    /// The server ended the stream (or the connection broke).
    Closed,
}

/// A real `text/event-stream` client: one GET, read chunk by chunk, parsed by the SSE rules
/// (fields `id`, `event`, `data`; lines starting with `:` are comments; a blank line ends an
/// event).
async fn sse(
    url: String,
    token: String,
    last_event_id: Option<u64>,
) -> mpsc::UnboundedReceiver<Seen> {
    let mut req = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .header("Accept", "text/event-stream");
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut buf = String::new();
        let (mut id, mut event, mut data) = (None::<u64>, String::new(), String::new());
        loop {
            match resp.chunk().await {
                Ok(Some(bytes)) => buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => {
                    let _ = tx.send(Seen::Closed);
                    return;
                }
            }
            while let Some(nl) = buf.find('\n') {
                let line = buf[..nl].trim_end_matches('\r').to_string();
                buf.drain(..=nl);
                if line.is_empty() {
                    if event == "live" {
                        let _ = tx.send(Seen::Event {
                            id: id.expect("every event has an id"),
                            data: serde_json::from_str(&data).unwrap(),
                            at: Instant::now(),
                        });
                    }
                    (event, data) = (String::new(), String::new());
                } else if let Some(comment) = line.strip_prefix(':') {
                    if comment.trim() == "heartbeat" {
                        let _ = tx.send(Seen::Heartbeat);
                    }
                } else if let Some((field, value)) = line.split_once(':') {
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = value.parse().ok(),
                        "event" => event = value.to_string(),
                        "data" => {
                            if !data.is_empty() {
                                data.push('\n');
                            }
                            data.push_str(value);
                        }
                        _ => {}
                    }
                }
            }
        }
    });
    rx
}

/// Reads until an event whose total is `want`; returns it. Heartbeats are counted.
async fn event_until(
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    want: u64,
    within: Duration,
    heartbeats: &mut u32,
) -> (u64, Value, Instant) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Seen::Event { id, data, at })) => {
                if data["listeners"] == want {
                    return (id, data, at);
                }
            }
            Ok(Some(Seen::Heartbeat)) => *heartbeats += 1,
            Ok(Some(Seen::Closed)) | Ok(None) => panic!("the event stream ended"),
            Err(_) => panic!("no event with {want} listeners within {within:?}"),
        }
    }
}

fn median(xs: &mut [Duration]) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_api_follows_real_listeners_end_to_end() {
    let mut d = Deployment::start(3).await;
    let mut heartbeats = 0;
    // Nobody yet: the first event comes at once (the tenant may still be unknown).
    let mut events = sse(d.url("live/stream"), d.token.clone(), None).await;
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(Seen::Event { data, .. })) => assert_eq!(data["listeners"], 0, "{data}"),
        other => panic!("no first event: {other:?}"),
    }

    // Listeners come one by one, at different phases of the agent's poll.
    let pauses_ms = [130, 410, 770, 290, 930, 550, 670];
    let mut held = Vec::new();
    let mut to_sse = Vec::new();
    let mut to_live = Vec::new();
    for (i, pause) in pauses_ms.iter().enumerate() {
        tokio::time::sleep(Duration::from_millis(*pause)).await;
        let want = i as u64 + 1;
        let connect = Instant::now();
        held.push(listen(d.proxy, &format!("127.0.0.{}", i + 2)).await);
        // Both the stream and /live are watched from the same moment.
        let live = d.live_until(want, connect, FOLLOW);
        let event = event_until(&mut events, want, Duration::from_secs(10), &mut heartbeats);
        let (live_took, (_, data, at)) = tokio::join!(live, event);
        to_live.push(live_took);
        to_sse.push(at - connect);
        assert_eq!(data["by_stream"][0]["stream"], STREAM, "{data}");
        assert_eq!(data["by_stream"][0]["protocol"], "icecast");
        assert_eq!(data["by_protocol"][0]["listeners"], want);
        assert_eq!(data["hosts"][0]["host"], "agent-1");
        assert_eq!(data["hosts"][0]["listeners"], want);
    }
    // And leave again.
    let mut leave_sse = Vec::new();
    for want in (4..held.len() as u64).rev() {
        tokio::time::sleep(Duration::from_millis(350)).await;
        let gone = Instant::now();
        held.pop().unwrap().abort();
        let (_, _, at) =
            event_until(&mut events, want, Duration::from_secs(10), &mut heartbeats).await;
        leave_sse.push(at - gone);
        d.live_until(want, gone, FOLLOW).await;
    }
    let current = held.len() as u64;
    println!(
        "connect -> live/stream, {} listeners, poll interval {INTERVAL:?}: {:?}; median {:?}",
        to_sse.len(),
        to_sse,
        median(&mut to_sse.clone())
    );
    println!(
        "connect -> /live (polled every 20 ms): {to_live:?}; median {:?}",
        median(&mut to_live.clone())
    );
    println!("leave -> live/stream: {leave_sse:?}");
    assert!(
        median(&mut to_sse.clone()) <= INTERVAL + Duration::from_secs(1),
        "{to_sse:?}"
    );
    for took in to_sse.iter().chain(&leave_sse) {
        assert!(
            *took <= FOLLOW,
            "a change took {took:?} to reach live/stream: {to_sse:?} {leave_sse:?}"
        );
    }

    // The history has every step up and down.
    let h = d.json("live/history?minutes=2&step=1").await;
    assert_eq!(h["step_seconds"], 1);
    let total = h["total"].as_array().unwrap();
    assert_eq!(total.len(), 120);
    let peak = total.iter().filter_map(|p| p["peak"].as_u64()).max();
    assert_eq!(peak, Some(pauses_ms.len() as u64), "{h:#}");
    assert_eq!(total.last().unwrap()["listeners"], current);
    assert_eq!(h["streams"][0]["stream"], STREAM);
    let coarse = d
        .json(&format!("live/history?step=60&stream={STREAM}"))
        .await;
    assert_eq!(
        coarse["total"].as_array().unwrap().len(),
        120,
        "default: 2 hours"
    );
    let (status, body) = d.get(&d.url("live/history?minutes=121")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = d.get(&d.url("live/history?step=0")).await;
    assert_eq!(status, 400, "{body}");

    // /metrics: live listeners, the collector's health, the agent's own counters.
    let m = d.metrics().await;
    let series = format!(
        "earshot_live_listeners{{tenant=\"radio1\",stream=\"{STREAM}\",protocol=\"icecast\"}}"
    );
    assert_eq!(metric(&m, &series), Some(current as f64), "{m}");
    assert_eq!(metric(&m, "earshot_agents_connected"), Some(1.0), "{m}");
    assert!(
        metric(&m, "earshot_live_datagrams_total").unwrap() >= 5.0,
        "{m}"
    );
    assert!(
        metric(&m, "earshot_api_requests_total{status=\"200\"}").unwrap() >= 10.0,
        "{m}"
    );
    assert!(
        metric(&m, "earshot_api_requests_total{status=\"400\"}").unwrap() >= 2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "earshot_agent_up{agent=\"agent-1\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "earshot_agent_lines_total{agent=\"agent-1\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "earshot_agent_sessions_open{agent=\"agent-1\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "earshot_agent_spool_batches{agent=\"agent-1\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(&m, "earshot_agent_send_failures_total{agent=\"agent-1\"}"),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "earshot_agent_live_polls_failed_total{agent=\"agent-1\"}"
        ),
        Some(0.0),
        "{m}"
    );
    assert!(m.contains("# TYPE earshot_live_listeners gauge"), "{m}");
    // Only the admin scope reads /metrics.
    let (status, _) = reqwest::Client::new()
        .get(format!("http://{}/metrics", d.http))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401);

    // The agent dies: its samples stop, and after stale_after (3 s) it counts for nothing.
    d.agent.take().unwrap().kill9();
    let died = Instant::now();
    let (_, data, at) = event_until(&mut events, 0, Duration::from_secs(10), &mut heartbeats).await;
    let took = at - died;
    assert!(data["hosts"].as_array().unwrap().is_empty(), "{data}");
    assert!(data["by_stream"].as_array().unwrap().is_empty(), "{data}");
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(3) + FOLLOW,
        "a dead host was dropped after {took:?}"
    );
    println!("agent killed -> dropped from the live sum after {took:?} (stale_after 3 s)");
    assert_eq!(d.json("live").await["listeners"], 0);
    assert!(heartbeats > 0, "an idle stream carries heartbeats");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_stream_resumes_across_a_collector_restart() {
    let mut d = Deployment::start(30).await;
    let mut heartbeats = 0;
    let first = listen(d.proxy, "127.0.0.2").await;
    let mut events = sse(d.url("live/stream"), d.token.clone(), None).await;
    let (seen_id, _, _) =
        event_until(&mut events, 1, Duration::from_secs(10), &mut heartbeats).await;
    // A little history of "1" before the restart.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_restart = Instant::now();

    // The collector stops (saving the live state): the stream ends.
    d.stop_collector();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match events.recv().await {
                Some(Seen::Closed) | None => return,
                Some(_) => {}
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the event stream did not end with the collector"
    );
    // A second listener comes while the collector is down.
    let second = listen(d.proxy, "127.0.0.3").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.start_collector();

    // The client reconnects as EventSource does, with the last id it saw.
    let mut events = sse(d.url("live/stream"), d.token.clone(), Some(seen_id)).await;
    let mut ids = vec![seen_id];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(Seen::Event { id, data, .. })) => {
                assert!(
                    id > *ids.last().unwrap(),
                    "event ids must grow: {ids:?} then {id}"
                );
                ids.push(id);
                if data["listeners"] == 2 {
                    break;
                }
                // Before the agent is back, the restored state is what the client had: it
                // must not be sent again under the same id (checked above), and says 1.
                assert_eq!(data["listeners"], 1, "{data}");
            }
            Ok(Some(Seen::Heartbeat)) => heartbeats += 1,
            other => panic!(
                "no event with 2 listeners after the restart: {other:?}\n{}",
                d.read_log("agent")
            ),
        }
    }
    let latest = *ids.last().unwrap();
    println!("event ids across the restart: {ids:?}");

    // The history from before the restart survived it.
    let h = d.json("live/history?minutes=2&step=1").await;
    let total = h["total"].as_array().unwrap();
    let ones = total.iter().filter(|p| p["listeners"] == 1).count();
    assert!(ones >= 1, "{h:#}");
    let secs_since = before_restart.elapsed().as_secs() as usize;
    let known_before = total[..total.len().saturating_sub(secs_since + 1)]
        .iter()
        .filter(|p| p["listeners"] == 1)
        .count();
    assert!(
        known_before >= 1,
        "no history from before the restart: {h:#}"
    );

    // A client that is up to date gets nothing (only heartbeats) until the next change...
    let mut current = sse(d.url("live/stream"), d.token.clone(), Some(latest)).await;
    let mut quiet_heartbeats = 0;
    let quiet = tokio::time::timeout(Duration::from_millis(2500), async {
        loop {
            match current.recv().await {
                Some(Seen::Heartbeat) => quiet_heartbeats += 1,
                other => return other,
            }
        }
    })
    .await;
    assert!(quiet.is_err(), "an up-to-date client got {quiet:?}");
    assert!(
        quiet_heartbeats >= 1,
        "an idle stream carries heartbeats (every second here)"
    );
    // ... and then the change.
    let gone = Instant::now();
    first.abort();
    let (id, data, at) =
        event_until(&mut current, 1, Duration::from_secs(10), &mut heartbeats).await;
    assert!(id > latest);
    assert!(at - gone <= FOLLOW, "{:?}", at - gone);
    assert_eq!(data["hosts"][0]["host"], "agent-1");
    // A client without Last-Event-ID gets the state at once.
    let mut fresh = sse(d.url("live/stream"), d.token.clone(), None).await;
    match tokio::time::timeout(Duration::from_secs(2), fresh.recv()).await {
        Ok(Some(Seen::Event { id: got, data, .. })) => {
            assert_eq!((got, &data["listeners"]), (id, &Value::from(1)), "{data}");
        }
        other => panic!("no immediate event: {other:?}"),
    }
    second.abort();
}
