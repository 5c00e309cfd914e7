//! Live listener counts from a real Icecast 2.4 (Debian's icecast2): sources feed mounts over
//! HTTP PUT, real listeners connect and leave, and both readers (`/admin/stats` XML and the
//! public `/status-json.xsl`, whose shape changes with 0, 1 or N sources) report them.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use earshot_agent::live::{IcecastApi, IcecastConfig, IcecastReader, LiveError};
use earshot_common::wire::LiveSample;
use earshot_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const ADMIN_PASSWORD: &str = "adminpass";
const SOURCE_PASSWORD: &str = "srcpass";

/// Icecast refuses to run as root; `<changeowner>` makes it drop to the package's user.
fn changeowner() -> String {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    if !is_root {
        return String::new();
    }
    let has = |db: &str, name: &str| {
        Command::new("getent")
            .args([db, name])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let (user, group) = if has("passwd", "icecast2") && has("group", "icecast") {
        ("icecast2", "icecast")
    } else {
        ("nobody", "nogroup")
    };
    format!("<changeowner><user>{user}</user><group>{group}</group></changeowner>")
}

pub(crate) fn icecast_config(dir: &Path, port: u16) -> String {
    let log = dir.join("log");
    std::fs::create_dir_all(&log).unwrap();
    // Icecast writes its logs after dropping root.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o777)).unwrap();
    format!(
        r#"<icecast>
    <location>Test</location><admin>test@localhost</admin>
    <limits><clients>100</clients><sources>4</sources><source-timeout>10</source-timeout><burst-size>65535</burst-size></limits>
    <authentication>
        <source-password>{SOURCE_PASSWORD}</source-password>
        <admin-user>admin</admin-user><admin-password>{ADMIN_PASSWORD}</admin-password>
    </authentication>
    <hostname>127.0.0.1</hostname>
    <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
    <mount type="normal"><mount-name>/radio1/live.mp3</mount-name><max-listeners>50</max-listeners></mount>
    <mount type="normal"><mount-name>/idle.mp3</mount-name></mount>
    <fileserve>1</fileserve>
    <paths>
        <basedir>/usr/share/icecast2</basedir>
        <logdir>{log}</logdir>
        <webroot>/usr/share/icecast2/web</webroot>
        <adminroot>/usr/share/icecast2/admin</adminroot>
    </paths>
    <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
    <security><chroot>0</chroot>{owner}</security>
</icecast>
"#,
        log = log.display(),
        owner = changeowner()
    )
}

/// A source client (HTTP PUT, as `configs/source.py` does) feeding MPEG-1 layer III frames
/// at about 128 kbit/s until its task is aborted. Returns once Icecast accepted it.
pub(crate) async fn feed(
    icecast: SocketAddr,
    mount: &str,
    name: &str,
) -> tokio::task::JoinHandle<()> {
    let mut conn = tokio::net::TcpStream::connect(icecast).await.unwrap();
    // base64("source:srcpass")
    let auth = "c291cmNlOnNyY3Bhc3M=";
    let head = format!(
        "PUT {mount} HTTP/1.1\r\nHost: {icecast}\r\nAuthorization: Basic {auth}\r\nUser-Agent: earshot-test-source/1.0\r\n\
         Content-Type: audio/mpeg\r\nIce-Name: {name}\r\nIce-Public: 0\r\n\
         Ice-Audio-Info: ice-samplerate=44100;ice-bitrate=128;ice-channels=2\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    let n = conn.read(&mut buf).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        answer.contains(" 200 "),
        "Icecast refused the source on {mount}: {answer:?}"
    );
    // 128 kbit/s, 44.1 kHz, no padding: 417-byte frames, ~38 a second.
    let mut frame = vec![0u8; 417];
    frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    let burst: Vec<u8> = frame.iter().copied().cycle().take(417 * 4).collect();
    tokio::spawn(async move {
        loop {
            if conn.write_all(&burst).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// A listener reading a mount until its task is aborted. Returns once audio flows.
pub(crate) async fn listen(icecast: SocketAddr, mount: &str) -> tokio::task::JoinHandle<()> {
    let mut conn = tokio::net::TcpStream::connect(icecast).await.unwrap();
    conn.write_all(format!("GET {mount} HTTP/1.0\r\nUser-Agent: VLC/3.0.18\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 16384];
    let n = conn.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.0 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n.min(200)])
    );
    tokio::spawn(async move {
        while let Ok(n) = conn.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
}

fn counts(sample: &LiveSample) -> Vec<(String, String, u64)> {
    sample
        .entries
        .iter()
        .map(|e| (e.tenant.clone(), e.stream.clone(), e.listeners))
        .collect()
}

fn entry(tenant: &str, stream: &str, n: u64) -> (String, String, u64) {
    (tenant.into(), stream.into(), n)
}

/// Polls until the reader reports `want` (as sorted entries), or 5 s pass.
async fn until(reader: &mut IcecastReader, want: Vec<(String, String, u64)>) {
    let started = Instant::now();
    loop {
        let got = counts(&reader.poll_once().await.unwrap());
        if got == want {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}: got {got:?}, want {want:?}",
            reader.api()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reader(config: serde_json::Value) -> IcecastReader {
    let config: IcecastConfig = serde_json::from_value(config).unwrap();
    IcecastReader::new(&config, 0, Duration::from_secs(2), Arc::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn icecast_readers_count_listeners_per_mount() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = dir.path().join("icecast.xml");
    std::fs::write(&cfg, icecast_config(dir.path(), port)).unwrap();
    let mut icecast = Proc::spawn(
        "icecast2",
        Command::new("icecast2")
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    if !wait_for_port(addr, Duration::from_secs(10)) {
        icecast.kill9();
        let mut err = String::new();
        if let Some(mut e) = icecast.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        panic!("icecast2 did not start: {err}");
    }
    let url = format!("http://{addr}");
    let password_file = dir.path().join("icecast.pass");
    std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n")).unwrap();

    let mut admin = reader(serde_json::json!({
        "url": url,
        "password_file": password_file,
        "mounts": { "/radio1/live.mp3": {}, "/idle.mp3": { "tenant": "radio3", "stream": "idle" } },
    }));
    assert_eq!(admin.api(), IcecastApi::AdminStats);
    let mut public = reader(serde_json::json!({ "url": url }));
    assert_eq!(public.api(), IcecastApi::StatusJson);

    // No source: listed mounts are 0, the public JSON has no "source" at all.
    until(
        &mut admin,
        vec![
            entry("radio1", "/radio1/live.mp3", 0),
            entry("radio3", "idle", 0),
        ],
    )
    .await;
    until(&mut public, vec![]).await;

    // One source ("source" is an object in the JSON), three listeners.
    let _s1 = feed(addr, "/radio1/live.mp3", "Radio One").await;
    let mut radio1 = Vec::new();
    for _ in 0..3 {
        radio1.push(listen(addr, "/radio1/live.mp3").await);
    }
    until(
        &mut admin,
        vec![
            entry("radio1", "/radio1/live.mp3", 3),
            entry("radio3", "idle", 0),
        ],
    )
    .await;
    until(&mut public, vec![entry("radio1", "/radio1/live.mp3", 3)]).await;

    // Two sources ("source" is an array), an undeclared mount with one listener.
    let _s2 = feed(addr, "/radio2.mp3", "Radio Two").await;
    let radio2 = listen(addr, "/radio2.mp3").await;
    until(
        &mut admin,
        vec![
            entry("radio1", "/radio1/live.mp3", 3),
            entry("radio2", "/radio2.mp3", 1),
            entry("radio3", "idle", 0),
        ],
    )
    .await;
    until(
        &mut public,
        vec![
            entry("radio1", "/radio1/live.mp3", 3),
            entry("radio2", "/radio2.mp3", 1),
        ],
    )
    .await;

    // Listeners leave.
    radio1.pop().unwrap().abort();
    radio1.pop().unwrap().abort();
    radio2.abort();
    until(
        &mut admin,
        vec![
            entry("radio1", "/radio1/live.mp3", 1),
            entry("radio2", "/radio2.mp3", 0),
            entry("radio3", "idle", 0),
        ],
    )
    .await;
    until(
        &mut public,
        vec![
            entry("radio1", "/radio1/live.mp3", 1),
            entry("radio2", "/radio2.mp3", 0),
        ],
    )
    .await;

    // A wrong password is an error that says what to check, not a zero.
    let wrong = dir.path().join("wrong.pass");
    std::fs::write(&wrong, "nope").unwrap();
    let mut denied = reader(serde_json::json!({ "url": url, "password_file": wrong }));
    match denied.poll_once().await {
        Err(LiveError::Icecast { reason, .. }) => assert!(reason.contains("401"), "{reason}"),
        other => panic!("expected a 401 error, got {other:?}"),
    }
    // Icecast gone: an error, not a zero.
    icecast.terminate(Duration::from_secs(5));
    assert!(admin.poll_once().await.is_err());
}
