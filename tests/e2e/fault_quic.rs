//! Hostile QUIC against a running collector: a huge length prefix, garbage, another protocol
//! version, another ALPN, a slow sender. Each closes (or refuses) that one connection; a real
//! agent shipping at the same time is not disturbed, and its numbers equal the ground truth.

use std::sync::Arc;
use std::time::Duration;

use earshot_common::wire::{self, AgentMessage, CollectorMessage, Hello, PROTOCOL_VERSION};
use earshot_loadgen::{Scenario, truth};
use earshot_tests::*;

async fn connect(d: &Deployment, alpn: &[u8]) -> Result<quinn::Connection, String> {
    let pem = std::fs::read(d.dir.join("collector.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    crypto.alpn_protocols = vec![alpn.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let toml = std::fs::read_to_string(d.dir.join("collector.toml")).unwrap();
    let quic_addr = toml
        .lines()
        .skip_while(|l| l.trim() != "[quic]")
        .find_map(|l| {
            l.trim()
                .strip_prefix("listen = ")
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap();
    endpoint
        .connect(quic_addr.parse().unwrap(), "localhost")
        .unwrap()
        .await
        .map_err(|e| e.to_string())
}

/// Sends `bytes` on a new stream and reads the answer frame, if any.
async fn exchange(conn: &quinn::Connection, bytes: &[u8]) -> Result<CollectorMessage, String> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(Duration::from_secs(10), recv.read_to_end(1 << 20))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| e.to_string())?;
    if answer.len() < 4 {
        return Err(format!("short answer: {answer:?}"));
    }
    wire::decode_body(&answer[4..]).map_err(|e| e.to_string())
}

fn hello(version: u32) -> Vec<u8> {
    wire::encode_frame(&AgentMessage::Hello(Hello {
        protocol_version: version,
        agent_id: "agent-1".into(),
        token: "not the token".into(),
        agent_version: "hostile".into(),
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_quic_closes_only_its_own_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        hosts: 1,
        hours: 2,
        stations: 3,
        listeners: 300,
        ..Scenario::default()
    };
    let generated = earshot_loadgen::generate(&scenario, &tmp.path().join("logs")).unwrap();
    let d = Deployment::start(&tmp.path().join("earshot"), 1);

    // Another ALPN (another protocol version) does not get past TLS.
    assert!(connect(&d, b"earshot/2").await.is_err());
    // Another version in the Hello: a refusal that says why.
    let conn = connect(&d, wire::ALPN).await.unwrap();
    match exchange(&conn, &hello(PROTOCOL_VERSION + 7)).await {
        Ok(CollectorMessage::Refused {
            reason,
            retry: false,
        }) => assert!(reason.contains("protocol"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A 4 GiB length prefix and garbage: the connection is closed, nothing allocated.
    let conn = connect(&d, wire::ALPN).await.unwrap();
    assert!(
        exchange(&conn, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3])
            .await
            .is_err()
    );
    let conn = connect(&d, wire::ALPN).await.unwrap();
    assert!(
        exchange(&conn, b"\x00\x00\x00\x10GET / HTTP/1.1\r\n\r\n")
            .await
            .is_err()
    );
    // Slow senders: half a length prefix, then nothing, on many connections held open.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let conn = connect(&d, wire::ALPN).await.unwrap();
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&[0, 0]).await.unwrap();
        slow.push((conn, send, recv));
    }

    // Meanwhile a real agent ships everything.
    let files = generated.files[0].1.clone();
    let d = Arc::new(d);
    let d2 = d.clone();
    let out = tokio::task::spawn_blocking(move || d2.ingest(1, &files, &[]))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (from, to) = truth::all_time(&generated.sessions);
    for tenant in ["radio001", "radio002"] {
        let want = truth::metrics(&generated.sessions, tenant, None, from, to);
        let d3 = d.clone();
        let path = format!(
            "/api/v1/tenants/{tenant}/streaming/summary?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        );
        let got = tokio::task::spawn_blocking(move || d3.api(&path))
            .await
            .unwrap();
        assert_eq!(got["sessions"].as_u64(), Some(want.sessions), "{tenant}");
        let ls = got["listening_seconds"].as_f64().unwrap();
        assert!(
            (ls - want.listening_seconds).abs() < 1e-3,
            "{tenant}: {ls} vs {}",
            want.listening_seconds
        );
    }
    drop(slow);
}
