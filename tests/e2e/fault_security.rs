//! Security end to end: an agent without valid credentials is refused; an agent cannot report
//! for a tenant it is not allowed; an API token for one tenant reads no other through any
//! endpoint the API describes; a collector whose certificate does not match is refused; secrets
//! readable by any user are warned about; and no client address from the logs appears in any
//! file the agent or collector writes, in their logs at `trace`, or in any datagram between
//! them (recorded by a UDP relay in the middle).

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_loadgen::{Scenario, truth};
use earshot_tests::*;

fn small_logs(root: &Path, seed: u64) -> earshot_loadgen::Generated {
    let s = Scenario {
        seed,
        hosts: 1,
        hours: 1,
        stations: 3,
        listeners: 200,
        ..Scenario::default()
    };
    earshot_loadgen::generate(&s, &root.join("gen")).unwrap()
}

fn sessions(d: &Deployment, tenant: &str, g: &earshot_loadgen::Generated) -> u64 {
    let (from, to) = truth::all_time(&g.sessions);
    d.api(&format!(
        "/api/v1/tenants/{tenant}/streaming/summary?from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    ))["sessions"]
        .as_u64()
        .unwrap()
}

fn sha256_hex(text: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn agents_need_their_credentials_their_tenants_and_the_right_collector() {
    let tmp = tempfile::tempdir().unwrap();
    let g = small_logs(tmp.path(), 61);
    let files = g.files[0].1.clone();
    let mut d = Deployment::start(&tmp.path().join("earshot"), 2);

    // A wrong token.
    let token_file = d.dir.join("agent-1.token");
    let good = std::fs::read_to_string(&token_file).unwrap();
    std::fs::write(&token_file, "0123456789abcdef0123456789abcdef\n").unwrap();
    let out = d.ingest(1, &files, &["--timeout-secs", "3"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("unknown agent") || stderr(&out).contains("wrong token"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&token_file, &good).unwrap();
    // Another agent's id with this token.
    edit_file(&d.agent_config(1), |t| {
        t.replace("agent_id = \"agent-1\"", "agent_id = \"agent-2\"")
    });
    let out = d.ingest(1, &files, &["--timeout-secs", "3"]);
    assert!(
        !out.status.success(),
        "agent-1's token cannot speak for agent-2"
    );
    edit_file(&d.agent_config(1), |t| {
        t.replace("agent_id = \"agent-2\"", "agent_id = \"agent-1\"")
    });
    assert_eq!(sessions(&d, "radio001", &g), 0);

    // A collector with another certificate: a pin that does not match, then a CA file of
    // another deployment.
    let other = tmp.path().join("other");
    run_ok(
        Command::new(bin("earshot-collector"))
            .args(["init", "--dir"])
            .arg(&other),
    );
    let config = d.agent_config(2);
    let text = std::fs::read_to_string(&config).unwrap();
    let pin_line = text
        .lines()
        .find(|l| l.starts_with("fingerprint"))
        .unwrap()
        .to_string();
    std::fs::write(
        &config,
        text.replace(
            &pin_line,
            &format!("fingerprint = \"sha256:{}\"", "ab".repeat(32)),
        ),
    )
    .unwrap();
    let out = d.ingest(2, &files, &["--timeout-secs", "3"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("fingerprint"), "{}", stderr(&out));
    std::fs::write(
        &config,
        text.replace(
            &pin_line,
            &format!("ca_file = \"{}\"", other.join("collector.crt").display()),
        ),
    )
    .unwrap();
    let out = d.ingest(2, &files, &["--timeout-secs", "3"]);
    assert!(
        !out.status.success(),
        "a CA of another deployment must not be trusted"
    );
    assert!(
        stderr(&out).to_lowercase().contains("certificate"),
        "{}",
        stderr(&out)
    );
    std::fs::write(&config, &text).unwrap();
    assert_eq!(sessions(&d, "radio001", &g), 0);

    // An agent allowed radio001 only, shipping logs of three tenants: the batch is refused whole.
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    edit_file(&d.dir.join("collector.toml"), |t| {
        t.replacen("tenants = [\"*\"]", "tenants = [\"radio001\"]", 1)
    });
    d.start_collector();
    let out = d.ingest(1, &files, &["--timeout-secs", "3"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("may not report for tenant"),
        "{}",
        stderr(&out)
    );
    for t in tenants_of(&g.sessions) {
        assert_eq!(
            sessions(&d, &t, &g),
            0,
            "{t}: nothing of a refused batch is merged"
        );
    }
    // The allowed agent delivers the same lines.
    let out = d.ingest(2, &files, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(sessions(&d, "radio001", &g) > 0);
}

#[test]
fn an_api_token_reads_its_tenants_only_on_every_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let g = small_logs(tmp.path(), 62);
    let mut d = Deployment::start(&tmp.path().join("earshot"), 1);
    let out = d.ingest(1, &g.files[0].1, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = "radio001-reader-token-0123456789";
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    edit_file(&d.dir.join("collector.toml"), |t| {
        format!(
            "{t}\n[[api_tokens]]\nname = \"r1\"\ntoken_sha256 = \"{}\"\ntenants = [\"radio001\"]\n",
            sha256_hex(token)
        )
    });
    d.start_collector();

    let openapi: serde_json::Value =
        serde_json::from_str(&http_get(d.http, "/api/v1/openapi.json", None).unwrap().1).unwrap();
    let (from, to) = truth::all_time(&g.sessions);
    let q = format!("from={}&to={}", rfc3339(from), rfc3339(to));
    let mut checked = 0;
    for path in openapi["paths"].as_object().unwrap().keys() {
        let dimension = if path.contains("/apps/") {
            "country"
        } else {
            "client"
        };
        let concrete = |tenant: &str| {
            format!(
                "{}?{q}",
                path.replace("{tenant}", tenant)
                    .replace("{dimension}", dimension)
            )
        };
        if path.contains("{tenant}") {
            let other = http_get(d.http, &concrete("radio002"), Some(token)).unwrap();
            assert_eq!(other.0, 403, "{path} for another tenant: {}", other.1);
            assert!(!other.1.contains("sessions\""), "{path}: {}", other.1);
            let unknown = http_get(d.http, &concrete("no-such-tenant"), Some(token)).unwrap();
            assert_eq!(
                unknown.0, 403,
                "{path} for an unknown tenant must look like any other refusal"
            );
            if !path.ends_with("/stream") {
                let own = http_get(d.http, &concrete("radio001"), Some(token)).unwrap();
                // Streaming endpoints answer; others may want other parameters or a configured
                // source (404/400), but never refuse the token.
                let ok = if path.contains("/streaming/") {
                    own.0 == 200
                } else {
                    own.0 != 401 && own.0 != 403
                };
                assert!(ok, "{path} for its own tenant: {} {}", own.0, own.1);
            }
        } else if path.contains("/tenants") || path == "/metrics" {
            let (status, body) = http_get(d.http, &concrete(""), Some(token)).unwrap();
            if path == "/metrics" {
                assert_eq!(status, 403, "/metrics holds every tenant: {body}");
            } else {
                assert_eq!(status, 200);
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(v["tenants"], serde_json::json!(["radio001"]), "{body}");
            }
        }
        // Without a token and with a wrong one: 401 everywhere but the open endpoints.
        if !matches!(path.as_str(), "/healthz" | "/api/v1/openapi.json") {
            assert_eq!(
                http_get(d.http, &concrete("radio001"), None).unwrap().0,
                401,
                "{path} without a token"
            );
            assert_eq!(
                http_get(d.http, &concrete("radio001"), Some("wrong"))
                    .unwrap()
                    .0,
                401,
                "{path} with a wrong token"
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "the OpenAPI document lists {checked} paths");
    eprintln!("token scope checked on {checked} documented paths");
}

#[test]
fn secrets_readable_by_anyone_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let g = small_logs(tmp.path(), 63);
    let mut d = Deployment::start(&tmp.path().join("earshot"), 1);
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    for f in ["identity.secret", "agent-1.token", "collector.key"] {
        std::fs::set_permissions(d.dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    d.start_collector();
    let out = d.ingest(1, &g.files[0].1, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let agent_log = stderr(&out);
    assert!(
        agent_log.contains("secret_file") && agent_log.contains("readable by any user"),
        "{agent_log}"
    );
    assert!(
        agent_log.contains("token_file") && agent_log.contains("0644"),
        "{agent_log}"
    );
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    let log = std::fs::read_to_string(d.dir.join("collector.log")).unwrap();
    assert!(
        log.contains("quic.key_file") && log.contains("readable by others"),
        "{log}"
    );
}

/// A UDP relay between agent and collector that keeps every datagram it forwards.
fn udp_relay(to: std::net::SocketAddr) -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    std::thread::spawn(move || {
        let mut agent = None;
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            keep.lock().unwrap().push(buf[..n].to_vec());
            if from == to {
                if let Some(a) = agent {
                    let _ = sock.send_to(&buf[..n], a);
                }
            } else {
                agent = Some(from);
                let _ = sock.send_to(&buf[..n], to);
            }
        }
    });
    (port, seen)
}

#[test]
fn no_client_address_reaches_any_file_log_or_packet() {
    let tmp = tempfile::tempdir().unwrap();
    let g = small_logs(tmp.path(), 64);
    let ips = client_ips_in(&g.files[0].1);
    assert!(ips.len() > 100, "{} addresses found in the logs", ips.len());
    // The search finds them where they are (the plain logs): a control for the search itself.
    let plain: Vec<_> = g.files[0]
        .1
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with(".gz"))
        .collect();
    assert!(!plain.is_empty() && !files_containing(plain[0], &ips).is_empty());
    let dir = tmp.path().join("earshot");
    let mut d = Deployment::start(&dir, 1);
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    // Everything at trace, the agent through the relay.
    let log = std::fs::File::create(dir.join("collector.log")).unwrap();
    d.collector = Some(Proc::spawn(
        "earshot-collector",
        Command::new(bin("earshot-collector"))
            .args(["run", "--config"])
            .arg(dir.join("collector.toml"))
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(log),
    ));
    wait_for(Duration::from_secs(20), || {
        http_get(d.http, "/healthz", None)
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .unwrap();
    let text = std::fs::read_to_string(dir.join("collector.toml")).unwrap();
    let quic: std::net::SocketAddr = text
        .lines()
        .find(|l| l.starts_with("listen") && !l.contains(&d.http.to_string()))
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let (relay_port, datagrams) = udp_relay(quic);
    edit_file(&d.agent_config(1), |t| {
        t.replace(
            &format!("address = \"{quic}\""),
            &format!("address = \"127.0.0.1:{relay_port}\""),
        )
    });
    let out = Command::new(bin("earshot-agent"))
        .args(["ingest", "--config"])
        .arg(d.agent_config(1))
        .args(&g.files[0].1)
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(dir.join("agent-ingest.log"), &out.stderr).unwrap();
    // `run` too, following the same logs through a notify, for its own log lines.
    let logs: PathBuf = g.files[0].1[0].parent().unwrap().to_path_buf();
    set_agent_files(&d.agent_config(1), &[logs.join("haproxy.log")]);
    let mut agent = spawn_agent_run(&d.agent_config(1), &dir.join("agent-run.log"), "trace");
    notify_agent(&d.agent_config(1), &logs.join("haproxy.log"));
    std::thread::sleep(Duration::from_secs(2));
    agent.terminate(Duration::from_secs(20));
    assert!(sessions(&d, "radio001", &g) > 0);
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));

    let packets = datagrams.lock().unwrap();
    assert!(!packets.is_empty());
    let wire_bytes: usize = packets.iter().map(Vec::len).sum();
    for p in packets.iter() {
        assert_eq!(
            bytes_containing(p, &ips),
            None,
            "a client address in a datagram"
        );
    }
    // The whole deployment directory: agent spool, collector database and WAL, live.db, every log.
    let found = files_containing(&dir, &ips);
    assert!(found.is_empty(), "client addresses in files: {found:?}");
    let ingest_log = std::fs::read_to_string(dir.join("agent-ingest.log")).unwrap();
    assert!(ingest_log.contains("TRACE"), "the agent logged at trace");
    eprintln!(
        "{} client addresses searched for in {} datagrams ({} bytes) and every file under the deployment (trace logs included): none found",
        ips.len(),
        packets.len(),
        wire_bytes
    );
}
