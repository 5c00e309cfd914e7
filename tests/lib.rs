//! Shared helpers for earshot's end-to-end tests: finding the built binaries, free ports,
//! child processes that are stopped when the test ends, and a tiny origin server that plays
//! an endless audio stream and an HLS playlist.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A built earshot binary (`scripts/test.sh` builds them before the tests run).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    // target/debug/deps/e2e-… → target/debug
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        path.display()
    );
    path
}

/// Where the shared reference material is (`../shared` beside the checkout).
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { child, name: name.to_string() }
    }

    /// Sends SIGTERM and waits up to `timeout`; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    wait_for(timeout, || std::net::TcpStream::connect(addr).ok().map(|_| ())).is_some()
}

/// Runs a command to completion, panicking with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().expect("command runs");
    assert!(
        out.status.success(),
        "{:?} failed: {}\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// An origin server for HAProxy: `/…/*.mp3` and `/…/*.aac` outside `/hls/` are endless audio
/// streams; `*.m3u8` is a live playlist; other `/hls/…` paths are 10 KB segments; anything
/// else is a 404. One request per connection.
pub async fn origin_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = 0;
                loop {
                    let Ok(n) = conn.read(&mut buf[got..]).await else { return };
                    if n == 0 {
                        return;
                    }
                    got += n;
                    if buf[..got].windows(4).any(|w| w == b"\r\n\r\n") || got == buf.len() {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..got]).to_string();
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
                let path = path.split('?').next().unwrap_or("/").to_string();
                if path.ends_with(".m3u8") {
                    let body = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nseg_1.aac\n#EXTINF:1.0,\nseg_2.aac\n";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.apple.mpegurl\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        body.len(),
                        body
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                } else if path.starts_with("/hls/") {
                    let body = vec![0x55u8; 10_000];
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: audio/aac\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(resp.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                } else if path.ends_with(".mp3") || path.ends_with(".aac") {
                    let _ = conn
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nConnection: close\r\n\r\n")
                        .await;
                    let chunk = vec![0xffu8; 4000];
                    loop {
                        if conn.write_all(&chunk).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                } else {
                    let _ = conn
                        .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                }
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// A listener playing a progressive stream through HAProxy for `hold`, from a local address
/// of its own (any 127.x.y.z works on Linux loopback). Returns the time it held the stream.
pub async fn listen_progressive(
    haproxy: SocketAddr,
    from_ip: &str,
    path: &str,
    user_agent: &str,
    referer: &str,
    hold: Duration,
) -> Duration {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from_ip}:0").parse().unwrap()).unwrap();
    let mut conn = sock.connect(haproxy).await.unwrap();
    let started = Instant::now();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: radio.test\r\nUser-Agent: {user_agent}\r\nReferer: {referer}\r\n\r\n"
    );
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 16384];
    let deadline = tokio::time::Instant::now() + hold;
    loop {
        match tokio::time::timeout_at(deadline, conn.read(&mut buf)).await {
            Err(_) => break,
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => {}
        }
    }
    drop(conn);
    started.elapsed()
}

/// One HTTP GET through HAProxy from `from_ip`; returns the status code.
pub async fn get_once(haproxy: SocketAddr, from_ip: &str, path: &str, user_agent: &str) -> u16 {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from_ip}:0").parse().unwrap()).unwrap();
    let mut conn = sock.connect(haproxy).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: radio.test\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = Vec::new();
    let _ = conn.read_to_end(&mut resp).await;
    String::from_utf8_lossy(&resp)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A collector started from `earshot-collector init` in a temporary directory.
pub struct Deployment {
    pub dir: PathBuf,
    pub http: SocketAddr,
    pub token: String,
    pub collector: Option<Proc>,
}

impl Deployment {
    /// `init --agents N` with free ports, then `run`; waits for `/healthz`.
    pub fn start(dir: &Path, agents: u32) -> Deployment {
        let (quic, http) = (free_udp_port(), free_port());
        run_ok(
            Command::new(bin("earshot-collector"))
                .args(["init", "--dir"])
                .arg(dir)
                .args(["--quic-listen", &format!("127.0.0.1:{quic}")])
                .args(["--http-listen", &format!("127.0.0.1:{http}")])
                .args(["--agents", &agents.to_string()]),
        );
        let token = std::fs::read_to_string(dir.join("admin.token")).unwrap().trim().to_string();
        let mut d = Deployment { dir: dir.to_path_buf(), http: format!("127.0.0.1:{http}").parse().unwrap(), token, collector: None };
        d.start_collector();
        d
    }

    pub fn start_collector(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("collector.log")).unwrap();
        self.collector = Some(Proc::spawn(
            "earshot-collector",
            Command::new(bin("earshot-collector"))
                .args(["run", "--config"])
                .arg(self.dir.join("collector.toml"))
                .stdout(Stdio::null())
                .stderr(log),
        ));
        let ok = wait_for(Duration::from_secs(20), || {
            http_get(self.http, "/healthz", None).ok().filter(|(s, _)| *s == 200).map(|_| ())
        });
        assert!(ok.is_some(), "the collector did not become healthy");
    }

    /// The config of agent `n` (1-based) made by init.
    pub fn agent_config(&self, n: u32) -> PathBuf {
        if n == 1 { self.dir.join("agent.toml") } else { self.dir.join(format!("agent-{n}.toml")) }
    }

    /// `earshot-agent ingest` (shipping) of `files` by agent `n`; returns whether it succeeded.
    pub fn ingest(&self, n: u32, files: &[PathBuf], extra: &[&str]) -> std::process::Output {
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--config"])
            .arg(self.agent_config(n))
            .args(extra)
            .args(files)
            .stdin(Stdio::null())
            .output()
            .expect("earshot-agent runs")
    }

    /// GET an API path with the admin token; panics unless 200.
    pub fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = http_get(self.http, path, Some(&self.token)).expect("API answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, body).
pub fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(conn, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.to_string() };
    Ok((status, body))
}

fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// RFC 3339 of UTC milliseconds, for query strings.
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = earshot_common::time::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", tod / 3600, tod % 3600 / 60, tod % 60)
}
