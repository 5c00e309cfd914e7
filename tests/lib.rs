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

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_string(),
        }
    }

    /// Sends SIGTERM and waits up to `timeout`; SIGKILL after that.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
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
    wait_for(timeout, || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    })
    .is_some()
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
                    let Ok(n) = conn.read(&mut buf[got..]).await else {
                        return;
                    };
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
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: radio.test\r\nUser-Agent: {user_agent}\r\nConnection: close\r\n\r\n"
    );
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
        let token = std::fs::read_to_string(dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        let mut d = Deployment {
            dir: dir.to_path_buf(),
            http: format!("127.0.0.1:{http}").parse().unwrap(),
            token,
            collector: None,
        };
        d.start_collector();
        d
    }

    pub fn start_collector(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("collector.log"))
            .unwrap();
        self.collector = Some(Proc::spawn(
            "earshot-collector",
            Command::new(bin("earshot-collector"))
                .args(["run", "--config"])
                .arg(self.dir.join("collector.toml"))
                .stdout(Stdio::null())
                .stderr(log),
        ));
        let ok = wait_for(Duration::from_secs(20), || {
            http_get(self.http, "/healthz", None)
                .ok()
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        });
        assert!(ok.is_some(), "the collector did not become healthy");
    }

    /// The config of agent `n` (1-based) made by init.
    pub fn agent_config(&self, n: u32) -> PathBuf {
        if n == 1 {
            self.dir.join("agent.toml")
        } else {
            self.dir.join(format!("agent-{n}.toml"))
        }
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
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr)?;
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
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
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

// ---------------------------------------------------------------------------------------
// Fault injection (tests/e2e/fault_*.rs): random points, snapshots of every metric, network
// namespaces, memory readings, files that must not hold a client address.
// ---------------------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*) so a failing fault run can be replayed: the seed
/// comes from `EARSHOT_FAULT_SEED` or the clock, and tests print it.
pub struct FaultRng(u64);

impl FaultRng {
    pub fn from_env() -> FaultRng {
        let seed = std::env::var("EARSHOT_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("fault seed: EARSHOT_FAULT_SEED={seed}");
        FaultRng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `[0, n)` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A number of seconds from an environment variable (for longer local fault runs).
pub fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Every read endpoint's answer for `tenants` over `[from, to)`: summary, hourly and minute
/// time series, by-hour, session lengths and every breakdown. Two deployments that merged
/// the same lines give equal snapshots, byte for byte.
pub fn metric_snapshot(
    d: &Deployment,
    tenants: &[String],
    from: i64,
    to: i64,
) -> Vec<(String, serde_json::Value)> {
    let range = format!("from={}&to={}", rfc3339(from), rfc3339(to));
    let mut out = Vec::new();
    for t in tenants {
        let base = format!("/api/v1/tenants/{t}/streaming");
        let mut paths = vec![
            format!("{base}/summary?{range}"),
            format!("{base}/timeseries?{range}&granularity=hour"),
            format!("{base}/timeseries?{range}&granularity=minute"),
            format!("{base}/by-hour?{range}&tz=%2B05:30"),
            format!("{base}/session-lengths?{range}"),
        ];
        for dim in [
            "stream", "protocol", "client", "device", "os", "country", "referrer", "source",
        ] {
            paths.push(format!("{base}/by/{dim}?{range}"));
        }
        for p in paths {
            let v = d.api(&p);
            out.push((p, v));
        }
    }
    out
}

/// The first difference between two snapshots, for a readable failure.
pub fn snapshot_diff(
    a: &[(String, serde_json::Value)],
    b: &[(String, serde_json::Value)],
) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} answers vs {}", a.len(), b.len()));
    }
    a.iter()
        .zip(b)
        .find(|(x, y)| x != y)
        .map(|((p, x), (_, y))| format!("{p}\n  got:  {y}\n  want: {x}"))
}

/// Peak resident memory of a running process (VmHWM, KiB), if it is still there.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs `cmd` to its end, sampling its peak resident memory: (output, peak KiB).
pub fn run_measuring_memory(cmd: &mut Command) -> (std::process::Output, u64) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let mut peak = 0;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let t_out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).ok();
        b
    });
    let t_err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).ok();
        b
    });
    loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak = peak.max(kib);
        }
        if let Ok(Some(status)) = child.try_wait() {
            let stdout = t_out.join().unwrap();
            let stderr = t_err.join().unwrap();
            return (
                std::process::Output {
                    status,
                    stdout,
                    stderr,
                },
                peak,
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Rewrites a config file in place.
pub fn edit_file(path: &Path, f: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    std::fs::write(path, f(text)).unwrap();
}

/// Points an agent config at live log files (`[inputs] files`).
pub fn set_agent_files(config: &Path, files: &[PathBuf]) {
    let list: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.display().to_string()))
        .collect();
    edit_file(config, |t| {
        t.replace("files = []", &format!("files = [{}]", list.join(", ")))
    });
}

/// `earshot-agent run --config CONFIG`, stderr appended to `log`.
pub fn spawn_agent_run(config: &Path, log: &Path, rust_log: &str) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Proc::spawn(
        "earshot-agent",
        Command::new(bin("earshot-agent"))
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log),
    )
}

/// `earshot-agent notify` until a running agent answers.
pub fn notify_agent(config: &Path, path: &Path) {
    wait_for(Duration::from_secs(15), || {
        Command::new(bin("earshot-agent"))
            .args(["notify", "--config"])
            .arg(config)
            .arg(path)
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    })
    .expect("the agent answers notify");
}

/// Splits a generated log into chunks of `lines` lines (decompressing gzip), written as
/// `dir/NAME-00001`, `dir/NAME-00002`, … in order with increasing mtimes, as logrotate's
/// `dateext` would leave them. Returns the chunk paths, oldest first.
pub fn split_log(files: &[PathBuf], lines: usize, dir: &Path, name: &str) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut all = Vec::new();
    for f in files {
        let raw = std::fs::read(f).unwrap();
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            Command::new("gzip")
                .arg("-dc")
                .arg(f)
                .output()
                .unwrap()
                .stdout
        } else {
            raw
        };
        all.extend(text.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec));
    }
    let base = std::time::SystemTime::now() - Duration::from_secs(86_400);
    let mut out = Vec::new();
    for (i, chunk) in all.chunks(lines).enumerate() {
        let path = dir.join(format!("{name}-{:05}", i + 1));
        std::fs::write(&path, chunk.concat()).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(base + Duration::from_secs(i as u64))
            .unwrap();
        out.push(path);
    }
    out
}

/// Every tenant the generator's sessions name, sorted.
pub fn tenants_of(sessions: &[earshot_loadgen::TruthSession]) -> Vec<String> {
    let mut t: Vec<String> = sessions.iter().map(|s| s.tenant.clone()).collect();
    t.sort();
    t.dedup();
    t
}

/// The client addresses in HAProxy log lines (the token before `:port` after the syslog
/// envelope), as text.
pub fn client_ips_in(files: &[PathBuf]) -> std::collections::BTreeSet<String> {
    let mut ips = std::collections::BTreeSet::new();
    for f in files {
        let raw = std::fs::read(f).unwrap();
        let text = if raw.starts_with(&[0x1f, 0x8b]) {
            Command::new("gzip")
                .arg("-dc")
                .arg(f)
                .output()
                .unwrap()
                .stdout
        } else {
            raw
        };
        for line in String::from_utf8_lossy(&text).lines() {
            // `…]: 203.0.113.7:51234 [28/Nov/2026:…` or `… haproxy: [2001:db8::1]:5123 [` / `2001:db8::1:5123 [`
            for token in line.split_whitespace() {
                let t = token.trim_start_matches('[');
                if let Some((ip, port)) = t.rsplit_once(':') {
                    let ip = ip.trim_end_matches(']');
                    if port.chars().all(|c| c.is_ascii_digit())
                        && !port.is_empty()
                        && ip.parse::<std::net::IpAddr>().is_ok()
                    {
                        ips.insert(ip.to_string());
                        break;
                    }
                }
            }
        }
    }
    ips
}

/// Files under `root` (recursively) whose bytes contain one of `needles`: (file, needle).
pub fn files_containing(
    root: &Path,
    needles: &std::collections::BTreeSet<String>,
) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                stack.push(e.path());
            }
        } else if meta.is_file()
            && let Ok(bytes) = std::fs::read(&p)
            && let Some(n) = bytes_containing(&bytes, needles)
        {
            found.push((p, n));
        }
    }
    found
}

/// The first of `needles` found in `bytes` as a whole address (not part of a longer number).
pub fn bytes_containing(
    bytes: &[u8],
    needles: &std::collections::BTreeSet<String>,
) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    // Scan address-like runs once, instead of searching for every needle.
    let is_addr = |c: char| c.is_ascii_hexdigit() || c == '.' || c == ':';
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (is_addr(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                let run = &text[s..i];
                for cand in [run, run.rsplit_once(':').map_or(run, |(a, _)| a)] {
                    if needles.contains(cand) {
                        return Some(cand.to_string());
                    }
                }
                start = None;
            }
            _ => {}
        }
    }
    None
}

impl Proc {
    /// SIGSTOP: the process stays, but answers nothing (an unreachable peer).
    pub fn pause(&self) {
        let _ = Command::new("kill")
            .arg("-STOP")
            .arg(self.child.id().to_string())
            .status();
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
    }
}

/// A network namespace joined to the test's by a veth pair, for cutting the network between
/// an agent (outside) and a collector (inside). Needs root; [`NetNs::create`] says None
/// without it. Removed when dropped.
pub struct NetNs {
    pub name: String,
    outer: String,
    /// The address of the namespace's end (the collector listens here).
    pub inner_ip: String,
}

impl NetNs {
    pub fn create() -> Option<NetNs> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() % 100_000;
        let name = format!("earshot-{id}-{n}");
        let (outer, inner) = (format!("eo{id}x{n}"), format!("ei{id}x{n}"));
        let net = format!("10.{}.{}", 100 + id % 100, (id / 100 + n * 7) % 250);
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &name]) {
            return None;
        }
        let ns = NetNs {
            name: name.clone(),
            outer: outer.clone(),
            inner_ip: format!("{net}.2"),
        };
        let ok = ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]) && ip(&["link", "set", &inner, "netns", &name])
            && ip(&["addr", "add", &format!("{net}.1/24"), "dev", &outer])
            && ip(&["link", "set", &outer, "up"])
            && ip(&[
                "netns",
                "exec",
                &name,
                "ip",
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                &inner,
            ])
            && ip(&["netns", "exec", &name, "ip", "link", "set", &inner, "up"])
            && ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }

    /// Pulls the cable: every packet between the namespaces is lost.
    pub fn cut(&self) {
        let s = Command::new("ip")
            .args(["link", "set", &self.outer, "down"])
            .status()
            .unwrap();
        assert!(s.success());
    }

    pub fn heal(&self) {
        let s = Command::new("ip")
            .args(["link", "set", &self.outer, "up"])
            .status()
            .unwrap();
        assert!(s.success());
    }

    /// A command run inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.outer])
            .stderr(Stdio::null())
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}
