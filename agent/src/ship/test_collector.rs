//! A collector for the shipper's tests: real QUIC and TLS 1.3 on 127.0.0.1, the common
//! server session, and a record of merged batches in memory (the collector's store keeps the
//! same two things: which `(agent_id, seq)` it merged, and what they add up to).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_common::link::server::{BatchOutcome, ServerAction, ServerSession};
use earshot_common::link::{FrameReader, StreamId};
use earshot_common::wire::{self, ALPN};
use sha2::{Digest, Sha256};

/// Merged batches: seq → sessions in its first rollup.
pub type Merged = Arc<Mutex<BTreeMap<u64, u64>>>;

pub struct TestCollector {
    pub addr: SocketAddr,
    /// The collector's certificate, PEM, for `ca_file`.
    pub cert_file: PathBuf,
    /// `sha256:<hex>` of the certificate, for `fingerprint`.
    pub fingerprint: String,
    pub merged: Merged,
    cert: rustls::pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
    endpoint: quinn::Endpoint,
    task: tokio::task::JoinHandle<()>,
}

impl TestCollector {
    /// Starts on `addr` (port 0: any) for agent `agent-1` with token `token-1`, its
    /// certificate valid for `localhost`.
    pub fn start(dir: &Path, addr: SocketAddr) -> TestCollector {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert_file = dir.join("collector.crt");
        std::fs::write(&cert_file, certified.cert.pem()).unwrap();
        let fingerprint = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(certified.cert.der().as_ref()))
        );
        TestCollector::with_cert(
            addr,
            certified.cert.der().clone(),
            certified.key_pair.serialize_der(),
            cert_file,
            fingerprint,
            Merged::default(),
        )
    }

    /// The same certificate and record on the same port, as after a collector restart.
    pub async fn restart(self) -> TestCollector {
        let (addr, cert, key_der) = (self.addr, self.cert.clone(), self.key_der.clone());
        let (cert_file, fingerprint, merged) = (
            self.cert_file.clone(),
            self.fingerprint.clone(),
            self.merged.clone(),
        );
        self.endpoint.close(0u32.into(), b"restarting");
        self.endpoint.wait_idle().await;
        drop(self);
        // The old socket is let go once its tasks have wound down.
        for _ in 0..200 {
            if std::net::UdpSocket::bind(addr).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        TestCollector::with_cert(addr, cert, key_der, cert_file, fingerprint, merged)
    }

    fn with_cert(
        addr: SocketAddr,
        cert: rustls::pki_types::CertificateDer<'static>,
        key_der: Vec<u8>,
        cert_file: PathBuf,
        fingerprint: String,
        merged: Merged,
    ) -> TestCollector {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.clone().into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], key)
            .unwrap();
        crypto.alpn_protocols = vec![ALPN.to_vec()];
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).unwrap();
        let endpoint =
            quinn::Endpoint::server(quinn::ServerConfig::with_crypto(Arc::new(quic)), addr)
                .unwrap();
        let task = tokio::spawn(accept(endpoint.clone(), merged.clone()));
        TestCollector {
            addr: endpoint.local_addr().unwrap(),
            cert_file,
            fingerprint,
            merged,
            cert,
            key_der,
            endpoint,
            task,
        }
    }
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"gone");
        self.task.abort();
    }
}

async fn accept(endpoint: quinn::Endpoint, merged: Merged) {
    while let Some(incoming) = endpoint.accept().await {
        let merged = merged.clone();
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                serve(conn, merged).await;
            }
        });
    }
}

/// Drives one connection's session, one stream at a time (the shipper sends one request at a
/// time): read, decide, answer.
async fn serve(conn: quinn::Connection, merged: Merged) {
    let start = tokio::time::Instant::now();
    let mut session = ServerSession::new(Duration::ZERO);
    let mut next = 0;
    while !session.is_closed() {
        let Ok((mut send, mut recv)) = conn.accept_bi().await else {
            return;
        };
        let stream = StreamId(next);
        next += 1;
        let mut queue = session.handle_stream(start.elapsed(), stream);
        while let Some(action) = queue.pop() {
            let more = match action {
                ServerAction::ReadFrame { stream, max } => {
                    let mut frame = FrameReader::new(max);
                    while frame.wanted() > 0 {
                        match recv.read_chunk(frame.wanted(), true).await {
                            Ok(Some(chunk)) => {
                                if frame.feed(&chunk.bytes).is_err() {
                                    break;
                                }
                            }
                            _ => break,
                        }
                    }
                    session.handle_frame(start.elapsed(), stream, frame.into_body())
                }
                ServerAction::Admit { hello } => {
                    let verdict = if hello.agent_id == "agent-1" && hello.token == "token-1" {
                        Ok(hello.agent_id)
                    } else {
                        Err("unknown agent or wrong token".into())
                    };
                    session.handle_admission(start.elapsed(), verdict)
                }
                ServerAction::Merge { stream, batch } => {
                    let sessions = batch.rollups[0].1.quarters[0].sessions;
                    let outcome = match merged.lock().unwrap().entry(batch.seq) {
                        Entry::Occupied(_) => BatchOutcome::Duplicate,
                        Entry::Vacant(slot) => {
                            slot.insert(sessions);
                            BatchOutcome::Merged
                        }
                    };
                    session.handle_merged(start.elapsed(), stream, outcome)
                }
                ServerAction::Reply { stream, message } => {
                    let frame = wire::encode_frame(&message).unwrap();
                    let _ = send.write_all(&frame).await;
                    let _ = send.finish();
                    session.handle_settled(start.elapsed(), stream)
                }
                ServerAction::Close { close, .. } => {
                    conn.close(close.code.into(), close.reason.as_bytes());
                    return;
                }
                _ => vec![],
            };
            queue.extend(more.into_iter().rev());
        }
    }
}
