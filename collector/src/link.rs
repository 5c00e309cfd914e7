//! The collector's end of the agent link: a QUIC server that admits known agents, merges
//! their batches exactly once, hands their live samples to the [`LiveStore`] and keeps their
//! health reports ([`AgentBoard`]).
//!
//! What must stay true:
//! - nothing is merged from a connection before its first stream carried a `Hello` with a
//!   known agent id and that agent's token;
//! - a batch is merged whole or not at all, and only if every rollup's tenant is one the agent
//!   may report for; `Ack` is sent only after the merge (or an earlier merge of the same
//!   `(agent_id, seq)`) is committed;
//! - one misbehaving connection (garbage, oversized or slow frames) is closed or cut off on its
//!   own; the others go on.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_common::wire::{
    self, AgentHealth, AgentMessage, Batch, CollectorMessage, Hello, LiveSample, MAX_FRAME,
    PROTOCOL_VERSION,
};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AgentEntry, Sha256Digest, allows};
use crate::live::LiveStore;
use crate::store::{MergeOutcome, Store};

/// Close code: shutting down, or nothing wrong.
pub const CLOSE_DONE: u32 = 0;
/// Close code: the agent was not admitted (the reason says why). The agent's `ship` maps it.
pub const CLOSE_REFUSED: u32 = 1;
/// Close code: the peer broke the protocol (undecodable or oversized frame, slow Hello).
pub const CLOSE_PROTOCOL: u32 = 2;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time an unauthenticated connection gets to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// A Hello is a few hundred bytes; more is not a Hello.
const MAX_HELLO: usize = 64 * 1024;
/// Time one batch frame may take to arrive: a slow sender loses its stream, not the
/// collector's memory.
const FRAME_TIMEOUT: Duration = Duration::from_secs(60);
/// Time an answer gets to reach the agent before its stream task lets go.
const REPLY_LINGER: Duration = Duration::from_secs(2);
/// Batches one connection may have in flight at once.
const MAX_STREAMS: u32 = 8;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// On shutdown: time given to in-flight merges and their acks.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot listen on {addr} (UDP): {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("TLS config unusable for QUIC: {0}")]
    Crypto(String),
}

/// Counters of the link (exposed as metrics later). Every refusal and every rejected frame is
/// counted here as well as logged.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub connections: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub agents_admitted: AtomicU64,
    pub agents_refused: AtomicU64,
    pub batches_merged: AtomicU64,
    pub batches_duplicate: AtomicU64,
    pub batches_refused: AtomicU64,
    /// Frames that closed their connection (undecodable, oversized) or were cut off (slow).
    pub frames_rejected: AtomicU64,
    pub store_errors: AtomicU64,
    /// Live-sample datagrams received and decoded.
    pub live_samples: AtomicU64,
    /// Undecodable datagrams and live entries for tenants the agent may not report for.
    pub live_rejected: AtomicU64,
    /// Agent connections admitted and not yet closed (a gauge).
    pub agents_connected: AtomicU64,
    /// Health reports received from agents.
    pub health_reports: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the collector knows of an agent now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// Connections of this agent that are open (more than one only briefly, on reconnect).
    pub connections: u32,
    /// The agent's last health report and when it arrived (collector's clock, ms).
    pub health: Option<(AgentHealth, i64)>,
}

/// Every configured agent's status, for `/metrics`.
#[derive(Debug, Default)]
pub struct AgentBoard {
    agents: Mutex<BTreeMap<String, AgentStatus>>,
}

impl AgentBoard {
    /// A board listing the configured agents (each shown even before it connects).
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> AgentBoard {
        AgentBoard {
            agents: Mutex::new(
                ids.into_iter()
                    .map(|id| (id.to_string(), AgentStatus::default()))
                    .collect(),
            ),
        }
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut AgentStatus)) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        f(agents.entry(id.to_string()).or_default());
    }

    pub fn snapshot(&self) -> Vec<(String, AgentStatus)> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// Milliseconds since the Unix epoch, by the collector's clock.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// What the collector knows of one agent.
#[derive(Debug)]
struct AgentAuth {
    id: String,
    token_sha256: Sha256Digest,
    tenants: Vec<String>,
}

struct Shared {
    agents: HashMap<String, Arc<AgentAuth>>,
    store: Store,
    live: Arc<LiveStore>,
    board: Arc<AgentBoard>,
    stats: Arc<LinkStats>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

/// The bound QUIC endpoint, ready to [`serve`](LinkServer::serve).
pub struct LinkServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
}

impl LinkServer {
    /// Binds the UDP socket. `crypto` comes from [`crate::tls::server_crypto`] (TLS 1.3, ALPN).
    pub fn bind(
        listen: SocketAddr,
        crypto: rustls::ServerConfig,
        agents: &[AgentEntry],
        store: Store,
        live: Arc<LiveStore>,
    ) -> Result<LinkServer, LinkError> {
        let quic_crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
            .map_err(|e| LinkError::Crypto(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic_crypto));
        let mut transport = quinn::TransportConfig::default();
        transport
            .max_concurrent_bidi_streams(MAX_STREAMS.into())
            .max_concurrent_uni_streams(0u32.into())
            .max_idle_timeout(Some(
                IDLE_TIMEOUT
                    .try_into()
                    .expect("a minute fits a QUIC idle timeout"),
            ));
        config.transport_config(Arc::new(transport));
        let endpoint =
            quinn::Endpoint::server(config, listen).map_err(|error| LinkError::Bind {
                addr: listen,
                error,
            })?;
        let agents: HashMap<String, Arc<AgentAuth>> = agents
            .iter()
            .map(|a| {
                let auth = AgentAuth {
                    id: a.id.clone(),
                    token_sha256: a.token_sha256,
                    tenants: a.tenants.clone(),
                };
                (a.id.clone(), Arc::new(auth))
            })
            .collect();
        let board = Arc::new(AgentBoard::new(agents.keys().map(String::as_str)));
        let shared = Shared {
            agents,
            store,
            live,
            board,
            stats: Arc::new(LinkStats::default()),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        };
        Ok(LinkServer {
            endpoint,
            shared: Arc::new(shared),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    pub fn stats(&self) -> Arc<LinkStats> {
        self.shared.stats.clone()
    }

    pub fn agent_board(&self) -> Arc<AgentBoard> {
        self.shared.board.clone()
    }

    /// Accepts agents until `shutdown` fires; then stops taking new connections and batches,
    /// lets merges in flight finish and send their acks (up to a deadline), and closes.
    pub async fn serve(self, shutdown: CancellationToken) {
        let shared = &self.shared;
        loop {
            tokio::select! {
                incoming = self.endpoint.accept() => match incoming {
                    Some(incoming) => {
                        bump(&shared.stats.connections);
                        shared.tasks.spawn(handle_connection(incoming, shared.clone()));
                    }
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
        self.endpoint.set_server_config(None);
        shared.shutdown.cancel();
        shared.tasks.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "merges still running after {DRAIN_TIMEOUT:?}; closing anyway (their agents resend)"
            );
        }
        self.endpoint
            .close(CLOSE_DONE.into(), b"collector stopping");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

async fn handle_connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            bump(&shared.stats.handshakes_failed);
            tracing::debug!(%remote, "QUIC handshake failed: {e}");
            return;
        }
        Err(_) => {
            bump(&shared.stats.handshakes_failed);
            tracing::debug!(%remote, "QUIC handshake timed out");
            return;
        }
    };
    let admitted = tokio::select! {
        agent = authenticate(&conn, &shared) => agent,
        _ = shared.shutdown.cancelled() => None,
    };
    let Some(agent) = admitted else {
        return;
    };
    bump(&shared.stats.agents_admitted);
    bump(&shared.stats.agents_connected);
    shared.board.update(&agent.id, |a| a.connections += 1);
    tracing::info!(agent = %agent.id, %remote, "agent connected");
    let why = loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    shared.tasks.spawn(handle_stream(conn.clone(), agent.clone(), send, recv, shared.clone()));
                }
                Err(e) => break e.to_string(),
            },
            datagram = conn.read_datagram() => match datagram {
                Ok(bytes) => record_live(&agent, &bytes, &shared),
                Err(e) => break e.to_string(),
            },
            _ = shared.shutdown.cancelled() => break "collector stopping".to_string(),
        }
    };
    shared
        .stats
        .agents_connected
        .fetch_sub(1, Ordering::Relaxed);
    shared.board.update(&agent.id, |a| {
        a.connections = a.connections.saturating_sub(1)
    });
    tracing::info!(agent = %agent.id, %remote, "agent disconnected: {why}");
}

/// Reads the Hello on the connection's first stream and answers Welcome or Refused. A refused
/// connection is closed here.
async fn authenticate(conn: &quinn::Connection, shared: &Shared) -> Option<Arc<AgentAuth>> {
    let remote = conn.remote_address();
    let hello = async {
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
        let body = read_frame(&mut recv, MAX_HELLO)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((send, body))
    };
    let (mut send, body) = match tokio::time::timeout(HELLO_TIMEOUT, hello).await {
        Ok(Ok(got)) => got,
        Ok(Err(e)) => {
            bump(&shared.stats.frames_rejected);
            tracing::debug!(%remote, "no usable Hello: {e}");
            conn.close(CLOSE_PROTOCOL.into(), b"expected a Hello frame");
            return None;
        }
        Err(_) => {
            bump(&shared.stats.frames_rejected);
            tracing::debug!(%remote, "no Hello within {HELLO_TIMEOUT:?}");
            conn.close(CLOSE_PROTOCOL.into(), b"no Hello in time");
            return None;
        }
    };
    let hello = match wire::decode_body::<AgentMessage>(&body) {
        Ok(AgentMessage::Hello(hello)) => hello,
        Ok(AgentMessage::Batch(_) | AgentMessage::Health(_) | AgentMessage::CompressedBatch(_)) => {
            refuse(
                conn,
                send,
                shared,
                None,
                "the first request must be a Hello".into(),
            )
            .await;
            return None;
        }
        Err(e) => {
            bump(&shared.stats.frames_rejected);
            tracing::warn!(%remote, "undecodable Hello: {e}");
            conn.close(CLOSE_PROTOCOL.into(), b"undecodable frame");
            return None;
        }
    };
    match admit(&hello, &shared.agents) {
        Ok(agent) => {
            let welcome = CollectorMessage::Welcome {
                protocol_version: PROTOCOL_VERSION,
            };
            match reply(&mut send, &welcome).await {
                Ok(()) => Some(agent),
                Err(e) => {
                    tracing::debug!(%remote, agent = %agent.id, "cannot send Welcome: {e}");
                    None
                }
            }
        }
        Err(reason) => {
            refuse(conn, send, shared, Some(&hello.agent_id), reason).await;
            None
        }
    }
}

/// Checks a Hello against the configured agents. The token is compared as SHA-256 digests in
/// constant time, and an unknown agent costs the same hash, so timing tells nothing.
fn admit(
    hello: &Hello,
    agents: &HashMap<String, Arc<AgentAuth>>,
) -> Result<Arc<AgentAuth>, String> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(format!(
            "this collector speaks protocol {PROTOCOL_VERSION}, the agent {}",
            hello.protocol_version
        ));
    }
    let presented = Sha256Digest::of(hello.token.as_bytes());
    match agents.get(&hello.agent_id) {
        Some(agent) if bool::from(presented.0.ct_eq(&agent.token_sha256.0)) => Ok(agent.clone()),
        // One message for both: a prober learns nothing about which agent ids exist.
        _ => Err(format!(
            "unknown agent {:?} or wrong token (check [[agents]] in collector.toml and the agent's token_file)",
            hello.agent_id
        )),
    }
}

async fn refuse(
    conn: &quinn::Connection,
    mut send: quinn::SendStream,
    shared: &Shared,
    agent: Option<&str>,
    reason: String,
) {
    bump(&shared.stats.agents_refused);
    tracing::warn!(remote = %conn.remote_address(), agent = agent.unwrap_or("?"), "agent refused: {reason}");
    let refused = CollectorMessage::Refused {
        reason: reason.clone(),
        retry: false,
    };
    if reply(&mut send, &refused).await.is_ok() {
        // Let the Refused frame arrive before the close discards what is unsent.
        let _ = tokio::time::timeout(REPLY_LINGER, send.stopped()).await;
    }
    conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
}

/// One request stream of an admitted agent: read one batch, check, merge, answer.
async fn handle_stream(
    conn: quinn::Connection,
    agent: Arc<AgentAuth>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    shared: Arc<Shared>,
) {
    let read = tokio::select! {
        read = tokio::time::timeout(FRAME_TIMEOUT, read_frame(&mut recv, MAX_FRAME)) => read,
        // Shutting down: a batch not yet fully here is left for the agent to resend.
        _ = shared.shutdown.cancelled() => return,
    };
    let body = match read {
        Ok(Ok(body)) => body,
        Ok(Err(FrameError::Stream(e))) => {
            tracing::debug!(agent = %agent.id, "stream ended early: {e}");
            return;
        }
        Ok(Err(e @ FrameError::TooLarge(_))) => {
            bump(&shared.stats.frames_rejected);
            tracing::warn!(agent = %agent.id, "closing the connection: {e}");
            conn.close(CLOSE_PROTOCOL.into(), e.to_string().as_bytes());
            return;
        }
        Err(_) => {
            bump(&shared.stats.frames_rejected);
            tracing::warn!(agent = %agent.id, "batch frame not complete within {FRAME_TIMEOUT:?}; stream dropped");
            let _ = recv.stop(CLOSE_PROTOCOL.into());
            let _ = send.reset(CLOSE_PROTOCOL.into());
            return;
        }
    };
    let batch = match wire::decode_body::<AgentMessage>(&body) {
        Ok(AgentMessage::Batch(batch)) => batch,
        Ok(AgentMessage::CompressedBatch(deflated)) => match wire::decompress_batch(&deflated) {
            Ok(batch) => batch,
            Err(e) => {
                bump(&shared.stats.frames_rejected);
                tracing::warn!(agent = %agent.id, "closing the connection: {e}");
                conn.close(CLOSE_PROTOCOL.into(), b"undecodable frame");
                return;
            }
        },
        Ok(AgentMessage::Hello(_)) => {
            let refused = CollectorMessage::Refused {
                reason: "already admitted: send batches".into(),
                retry: false,
            };
            let _ = reply(&mut send, &refused).await;
            return;
        }
        Ok(AgentMessage::Health(health)) => {
            bump(&shared.stats.health_reports);
            let received = now_ms();
            shared
                .board
                .update(&agent.id, |a| a.health = Some((health, received)));
            if reply(&mut send, &CollectorMessage::Noted).await.is_ok() {
                let _ = tokio::time::timeout(REPLY_LINGER, send.stopped()).await;
            }
            return;
        }
        Err(e) => {
            bump(&shared.stats.frames_rejected);
            tracing::warn!(agent = %agent.id, "closing the connection: undecodable frame: {e}");
            conn.close(CLOSE_PROTOCOL.into(), b"undecodable frame");
            return;
        }
    };
    drop(body);
    let seq = batch.seq;
    let answer = match check_batch(&agent, &batch) {
        Err(reason) => {
            bump(&shared.stats.batches_refused);
            tracing::warn!(agent = %agent.id, seq, "batch refused: {reason}");
            CollectorMessage::Refused {
                reason,
                retry: false,
            }
        }
        Ok(()) => merge(batch, &agent, &shared).await,
    };
    if reply(&mut send, &answer).await.is_ok() {
        let _ = tokio::time::timeout(REPLY_LINGER, send.stopped()).await;
    }
}

fn check_batch(agent: &AgentAuth, batch: &Batch) -> Result<(), String> {
    if batch.agent_id != agent.id {
        return Err(format!(
            "batch names agent {:?}, the connection is agent {:?}",
            batch.agent_id, agent.id
        ));
    }
    if let Some((key, _)) = batch
        .rollups
        .iter()
        .find(|(key, _)| !allows(&agent.tenants, &key.tenant))
    {
        return Err(format!(
            "agent {:?} may not report for tenant {:?} (its tenants in collector.toml: {})",
            agent.id,
            key.tenant,
            agent.tenants.join(", ")
        ));
    }
    Ok(())
}

async fn merge(batch: Batch, agent: &AgentAuth, shared: &Shared) -> CollectorMessage {
    let seq = batch.seq;
    let store = shared.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.merge_batch(&batch)).await;
    match outcome {
        Ok(Ok(MergeOutcome::Merged)) => {
            bump(&shared.stats.batches_merged);
            tracing::debug!(agent = %agent.id, seq, "batch merged");
            CollectorMessage::Ack { seq }
        }
        Ok(Ok(MergeOutcome::Duplicate)) => {
            bump(&shared.stats.batches_duplicate);
            tracing::debug!(agent = %agent.id, seq, "batch seen before; acknowledged again");
            CollectorMessage::Ack { seq }
        }
        Ok(Err(e)) => {
            bump(&shared.stats.store_errors);
            tracing::error!(agent = %agent.id, seq, "cannot merge batch: {e}");
            CollectorMessage::Refused {
                reason: "the collector cannot store batches right now".into(),
                retry: true,
            }
        }
        Err(e) => {
            bump(&shared.stats.store_errors);
            tracing::error!(agent = %agent.id, seq, "merge task failed: {e}");
            CollectorMessage::Refused {
                reason: "the collector cannot store batches right now".into(),
                retry: true,
            }
        }
    }
}

fn record_live(agent: &AgentAuth, bytes: &[u8], shared: &Shared) {
    let mut sample: LiveSample = match postcard::from_bytes(bytes) {
        Ok(sample) => sample,
        Err(e) => {
            bump(&shared.stats.live_rejected);
            tracing::debug!(agent = %agent.id, "undecodable live sample: {e}");
            return;
        }
    };
    let before = sample.entries.len();
    sample.entries.retain(|e| allows(&agent.tenants, &e.tenant));
    if sample.entries.len() < before {
        shared
            .stats
            .live_rejected
            .fetch_add((before - sample.entries.len()) as u64, Ordering::Relaxed);
    }
    bump(&shared.stats.live_samples);
    shared.live.record(&agent.id, &sample, now_ms());
}

#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("{0}")]
    Stream(String),
}

/// Reads one length-prefixed frame. The length is checked against `max` before anything is
/// allocated, and the buffer grows only as bytes arrive.
async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| FrameError::Stream(e.to_string()))?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = Vec::new();
    while body.len() < len {
        match recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(|e| FrameError::Stream(e.to_string()))?
        {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(FrameError::Stream(format!(
                    "stream ended after {} of {len} bytes",
                    body.len()
                )));
            }
        }
    }
    Ok(body)
}

async fn reply(send: &mut quinn::SendStream, message: &CollectorMessage) -> Result<(), String> {
    let frame = wire::encode_frame(message).map_err(|e| e.to_string())?;
    send.write_all(&frame).await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    //! Real QUIC on 127.0.0.1, real certificates from `tls`, a real store, the real agent.

    use std::path::PathBuf;

    use earshot_agent::ship::{LinkConfig, ShipError, Shipper};
    use earshot_agent::spool::Spool;
    use earshot_common::rollup::{HourKey, HourRollup, Protocol};
    use earshot_common::wire::{AgentCounters, LiveEntry};

    use super::*;
    use crate::query::TimeRange;
    use crate::store::Selection;
    use crate::tls;

    const HOUR_MS: i64 = 472_222 * 3_600_000;

    struct Collector {
        dir: tempfile::TempDir,
        addr: SocketAddr,
        cert_file: PathBuf,
        fingerprint: String,
        store: Store,
        stats: Arc<LinkStats>,
        live: Arc<LiveStore>,
        board: Arc<AgentBoard>,
        shutdown: CancellationToken,
        server: tokio::task::JoinHandle<()>,
    }

    fn agent(id: &str, token: &str, tenants: &[&str]) -> AgentEntry {
        AgentEntry {
            id: id.into(),
            token_sha256: Sha256Digest::of(token.as_bytes()),
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
        }
    }

    async fn start() -> Collector {
        let dir = tempfile::tempdir().unwrap();
        let cert = tls::self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        tls::write_cert_and_key(&cert, &cert_file, &key_file, false).unwrap();
        let crypto = tls::server_crypto(
            tls::load_certs(&cert_file).unwrap(),
            tls::load_key(&key_file).unwrap(),
        )
        .unwrap();
        let store = Store::open(&dir.path().join("earshot.db")).unwrap();
        let agents = [
            agent("agent-1", "token-1", &["radio1"]),
            agent("agent-2", "token-2", &["*"]),
        ];
        let live = Arc::new(LiveStore::new(Default::default()));
        let server = LinkServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            crypto,
            &agents,
            store.clone(),
            live.clone(),
        )
        .unwrap();
        let (addr, stats, board, shutdown) = (
            server.local_addr(),
            server.stats(),
            server.agent_board(),
            CancellationToken::new(),
        );
        let server = tokio::spawn(server.serve(shutdown.clone()));
        Collector {
            dir,
            addr,
            cert_file,
            fingerprint: cert.fingerprint(),
            store,
            stats,
            live,
            board,
            shutdown,
            server,
        }
    }

    impl Collector {
        fn link(&self, agent_id: &str, token: &str) -> LinkConfig {
            let token_file = self
                .dir
                .path()
                .join(format!("{agent_id}-{}.token", token.len()));
            std::fs::write(&token_file, format!("{token}\n")).unwrap();
            LinkConfig {
                address: self.addr.to_string(),
                server_name: Some("localhost".into()),
                ca_file: None,
                fingerprint: Some(self.fingerprint.clone()),
                agent_id: agent_id.into(),
                token_file,
            }
        }

        fn sessions(&self, tenant: &str) -> u64 {
            let range = TimeRange {
                from_ms: HOUR_MS,
                to_ms: HOUR_MS + 3_600_000,
            };
            self.store
                .summary(&Selection {
                    tenant: tenant.into(),
                    stream: None,
                    range,
                })
                .unwrap()
                .sessions
        }

        fn count(&self, counter: &AtomicU64) -> u64 {
            counter.load(Ordering::Relaxed)
        }
    }

    fn rollups(tenant: &str, sessions: u64) -> Vec<(HourKey, HourRollup)> {
        let mut r = HourRollup::new(Protocol::Icecast);
        r.quarters[0].sessions = sessions;
        r.quarters[0].listening_ms = sessions * 60_000;
        r.minutes[0] = sessions as u32;
        vec![(
            HourKey {
                tenant: tenant.into(),
                stream: "/live".into(),
                hour_ms: HOUR_MS,
            },
            r,
        )]
    }

    fn spool_with(
        dir: &tempfile::TempDir,
        name: &str,
        batches: &[Vec<(HourKey, HourRollup)>],
    ) -> Arc<Mutex<Spool>> {
        let mut spool = Spool::open(&dir.path().join(name)).unwrap();
        for rollups in batches {
            spool
                .commit(
                    rollups.clone(),
                    AgentCounters {
                        lines: 1,
                        ..Default::default()
                    },
                    &[],
                    b"",
                )
                .unwrap();
        }
        Arc::new(Mutex::new(spool))
    }

    fn pending(spool: &Arc<Mutex<Spool>>) -> u64 {
        spool.lock().unwrap().pending_count().unwrap()
    }

    /// A hand-driven client, for what the real agent never sends.
    async fn raw_connect(c: &Collector, alpn: &[u8]) -> Result<quinn::Connection, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(tls::load_certs(&c.cert_file).unwrap().remove(0))
            .unwrap();
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
        endpoint
            .connect(c.addr, "localhost")
            .unwrap()
            .await
            .map_err(|e| e.to_string())
    }

    async fn raw_request(
        conn: &quinn::Connection,
        bytes: &[u8],
    ) -> Result<CollectorMessage, String> {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        send.write_all(bytes).await.map_err(|e| e.to_string())?;
        send.finish().map_err(|e| e.to_string())?;
        let body = read_frame(&mut recv, 1 << 16)
            .await
            .map_err(|e| e.to_string())?;
        wire::decode_body(&body).map_err(|e| e.to_string())
    }

    async fn raw_admitted(c: &Collector, agent_id: &str, token: &str) -> quinn::Connection {
        let conn = raw_connect(c, wire::ALPN).await.unwrap();
        let hello = AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_id: agent_id.into(),
            token: token.into(),
            agent_version: "test".into(),
        });
        let reply = raw_request(&conn, &wire::encode_frame(&hello).unwrap())
            .await
            .unwrap();
        assert_eq!(
            reply,
            CollectorMessage::Welcome {
                protocol_version: PROTOCOL_VERSION
            }
        );
        conn
    }

    fn batch_frame(agent_id: &str, seq: u64, rollups: Vec<(HourKey, HourRollup)>) -> Vec<u8> {
        let batch = Batch {
            agent_id: agent_id.into(),
            seq,
            rollups,
            counters: AgentCounters::default(),
        };
        wire::encode_frame(&AgentMessage::Batch(batch)).unwrap()
    }

    #[tokio::test]
    async fn spooled_batches_are_merged_and_acknowledged() {
        let c = start().await;
        let spool = spool_with(
            &c.dir,
            "a.db",
            &[rollups("radio1", 3), rollups("radio1", 4)],
        );
        let mut shipper = Shipper::new(&c.link("agent-1", "token-1")).unwrap();
        assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 2);
        assert_eq!(pending(&spool), 0);
        assert_eq!(c.sessions("radio1"), 7);
        assert_eq!(c.count(&c.stats.batches_merged), 2);
        // Nothing pending: no work, no error.
        assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_batch_sent_twice_is_acknowledged_twice_and_merged_once() {
        let c = start().await;
        let conn = raw_admitted(&c, "agent-2", "token-2").await;
        let frame = batch_frame("agent-2", 9, rollups("radio2", 5));
        for _ in 0..2 {
            assert_eq!(
                raw_request(&conn, &frame).await.unwrap(),
                CollectorMessage::Ack { seq: 9 }
            );
        }
        // And again on a new connection, as after an agent restart.
        let conn = raw_admitted(&c, "agent-2", "token-2").await;
        assert_eq!(
            raw_request(&conn, &frame).await.unwrap(),
            CollectorMessage::Ack { seq: 9 }
        );
        assert_eq!(c.sessions("radio2"), 5);
        assert_eq!(
            (
                c.count(&c.stats.batches_merged),
                c.count(&c.stats.batches_duplicate)
            ),
            (1, 2)
        );
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_and_nothing_is_shipped() {
        let c = start().await;
        let spool = spool_with(&c.dir, "a.db", &[rollups("radio1", 3)]);
        for (agent_id, token) in [("agent-1", "token-2"), ("agent-9", "token-1")] {
            let mut shipper = Shipper::new(&c.link(agent_id, token)).unwrap();
            let err = shipper.ship_pending(&spool).await.unwrap_err();
            assert!(matches!(err, ShipError::Refused { .. }), "{err}");
            assert!(err.to_string().contains("wrong token"), "{err}");
        }
        assert_eq!(pending(&spool), 1);
        assert_eq!(c.sessions("radio1"), 0);
        assert_eq!(c.count(&c.stats.agents_refused), 2);
    }

    #[tokio::test]
    async fn a_batch_for_a_tenant_the_agent_may_not_report_for_is_refused_whole() {
        let c = start().await;
        let mut mixed = rollups("radio1", 3);
        mixed.extend(rollups("radio9", 4));
        let spool = spool_with(&c.dir, "a.db", &[mixed]);
        let mut shipper = Shipper::new(&c.link("agent-1", "token-1")).unwrap();
        let err = shipper.ship_pending(&spool).await.unwrap_err();
        assert!(matches!(err, ShipError::Refused { .. }), "{err}");
        assert!(err.to_string().contains("radio9"), "{err}");
        assert_eq!(pending(&spool), 1);
        assert_eq!((c.sessions("radio1"), c.sessions("radio9")), (0, 0));
        assert_eq!(c.count(&c.stats.batches_refused), 1);
    }

    #[tokio::test]
    async fn the_agent_refuses_a_collector_with_another_fingerprint() {
        let c = start().await;
        let other = tls::self_signed(&["localhost".into()]).unwrap();
        let link = LinkConfig {
            fingerprint: Some(other.fingerprint()),
            ..c.link("agent-1", "token-1")
        };
        let spool = spool_with(&c.dir, "a.db", &[rollups("radio1", 3)]);
        let mut shipper = Shipper::new(&link).unwrap();
        let err = shipper.ship_pending(&spool).await.unwrap_err();
        assert!(matches!(err, ShipError::Connect { .. }), "{err}");
        assert!(err.to_string().contains("fingerprint"), "{err}");
        assert_eq!(pending(&spool), 1);
        assert_eq!(c.count(&c.stats.agents_admitted), 0);
    }

    #[tokio::test]
    async fn the_agent_trusts_a_ca_file_for_the_right_name_only() {
        let c = start().await;
        let spool = spool_with(&c.dir, "a.db", &[rollups("radio1", 3)]);
        let by_ca = LinkConfig {
            fingerprint: None,
            ca_file: Some(c.cert_file.clone()),
            ..c.link("agent-1", "token-1")
        };
        let wrong_name = LinkConfig {
            server_name: Some("collector.example.net".into()),
            ..by_ca.clone()
        };
        let err = Shipper::new(&wrong_name)
            .unwrap()
            .ship_pending(&spool)
            .await
            .unwrap_err();
        assert!(matches!(err, ShipError::Connect { .. }), "{err}");
        assert_eq!(
            Shipper::new(&by_ca)
                .unwrap()
                .ship_pending(&spool)
                .await
                .unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn a_wrong_alpn_fails_the_handshake() {
        let c = start().await;
        let err = raw_connect(&c, b"earshot/0").await.unwrap_err();
        assert!(
            err.to_lowercase().contains("protocol") || err.contains("120"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn garbage_closes_only_its_own_connection() {
        let c = start().await;
        let spool = spool_with(&c.dir, "a.db", &[rollups("radio1", 3)]);
        let mut shipper = Shipper::new(&c.link("agent-1", "token-1")).unwrap();
        shipper.connect().await.unwrap();

        let bad = raw_admitted(&c, "agent-2", "token-2").await;
        let mut garbage = 5u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(&[0xff; 5]);
        assert!(raw_request(&bad, &garbage).await.is_err());
        let closed = tokio::time::timeout(Duration::from_secs(5), bad.closed())
            .await
            .unwrap();
        assert!(
            matches!(closed, quinn::ConnectionError::ApplicationClosed(ref a) if a.error_code == CLOSE_PROTOCOL.into()),
            "{closed}"
        );

        let oversized = raw_admitted(&c, "agent-2", "token-2").await;
        assert!(
            raw_request(&oversized, &((MAX_FRAME + 1) as u32).to_be_bytes())
                .await
                .is_err()
        );
        tokio::time::timeout(Duration::from_secs(5), oversized.closed())
            .await
            .unwrap();

        assert!(shipper.is_connected());
        assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 1);
        assert_eq!(
            shipper.stats().connections.load(Ordering::Relaxed),
            1,
            "the good connection was kept"
        );
        assert_eq!(c.count(&c.stats.frames_rejected), 2);
        assert_eq!(c.sessions("radio1"), 3);
    }

    #[tokio::test]
    async fn an_agent_of_another_protocol_version_gets_a_clear_refusal() {
        let c = start().await;
        let conn = raw_connect(&c, wire::ALPN).await.unwrap();
        let hello = AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION + 1,
            agent_id: "agent-1".into(),
            token: "token-1".into(),
            agent_version: "future".into(),
        });
        let reply = raw_request(&conn, &wire::encode_frame(&hello).unwrap())
            .await
            .unwrap();
        match reply {
            CollectorMessage::Refused {
                reason,
                retry: false,
            } => {
                assert!(reason.contains("protocol"), "{reason}")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // An agent whose ALPN names another version does not get past TLS.
        assert!(raw_connect(&c, b"earshot/2").await.is_err());
    }

    #[tokio::test]
    async fn batches_before_hello_are_refused() {
        let c = start().await;
        let conn = raw_connect(&c, wire::ALPN).await.unwrap();
        let reply = raw_request(&conn, &batch_frame("agent-2", 1, rollups("radio2", 1)))
            .await
            .unwrap();
        assert!(
            matches!(reply, CollectorMessage::Refused { retry: false, .. }),
            "{reply:?}"
        );
        assert_eq!(c.sessions("radio2"), 0);
    }

    #[tokio::test]
    async fn live_samples_keep_the_latest_per_stream() {
        let c = start().await;
        let mut shipper = Shipper::new(&c.link("agent-1", "token-1")).unwrap();
        assert!(matches!(
            shipper.send_live(&LiveSample {
                at_ms: 1,
                entries: vec![]
            }),
            Err(ShipError::NotConnected)
        ));
        shipper.connect().await.unwrap();
        let entry = |tenant: &str, listeners| LiveEntry {
            tenant: tenant.into(),
            stream: "/live".into(),
            protocol: Protocol::Icecast,
            listeners,
        };
        shipper
            .send_live(&LiveSample {
                at_ms: 2_000,
                entries: vec![entry("radio1", 7), entry("radio9", 1)],
            })
            .unwrap();
        shipper
            .send_live(&LiveSample {
                at_ms: 1_000,
                entries: vec![entry("radio1", 3)],
            })
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while c.count(&c.stats.live_samples) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let now = c.live.now("radio1");
        assert_eq!(now.listeners, 7, "the later sample wins: {now:?}");
        assert_eq!(now.hosts.len(), 1);
        assert_eq!(now.hosts[0].host, "agent-1");
        assert_eq!(c.live.now("radio9").version, 0);
        assert_eq!(
            c.count(&c.stats.live_rejected),
            1,
            "radio9 is not agent-1's"
        );
        assert_eq!(shipper.stats().live_dropped.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn health_reports_are_noted_and_connections_counted() {
        let c = start().await;
        let mut shipper = Shipper::new(&c.link("agent-1", "token-1")).unwrap();
        let health = AgentHealth {
            at_ms: 5,
            sessions_open: 4,
            spool_batches: 2,
            send_failures: 1,
            ..Default::default()
        };
        assert!(matches!(
            shipper.send_health(&health).await,
            Err(ShipError::NotConnected)
        ));
        shipper.connect().await.unwrap();
        shipper.send_health(&health).await.unwrap();
        let board = c.board.snapshot();
        let names: Vec<&str> = board.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            names,
            ["agent-1", "agent-2"],
            "configured agents are listed"
        );
        assert_eq!(board[0].1.connections, 1);
        assert_eq!(board[0].1.health.as_ref().unwrap().0, health);
        assert_eq!(board[1].1, AgentStatus::default());
        assert_eq!(c.count(&c.stats.agents_connected), 1);
        assert_eq!(c.count(&c.stats.health_reports), 1);
        drop(shipper);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while c.count(&c.stats.agents_connected) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(c.count(&c.stats.agents_connected), 0);
        assert_eq!(c.board.snapshot()[0].1.connections, 0);
    }

    #[tokio::test]
    async fn the_agent_reconnects_after_the_connection_is_lost() {
        let mut c = start().await;
        let spool = spool_with(&c.dir, "a.db", &[rollups("radio1", 1)]);
        let mut shipper = Shipper::new(&c.link("agent-1", "token-1")).unwrap();
        assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 1);
        // The collector restarts: a new server on the same port.
        c.shutdown.cancel();
        (&mut c.server).await.unwrap();
        let restarted = {
            let crypto = tls::server_crypto(
                tls::load_certs(&c.cert_file).unwrap(),
                tls::load_key(&c.dir.path().join("c.key")).unwrap(),
            )
            .unwrap();
            let agents = [agent("agent-1", "token-1", &["radio1"])];
            LinkServer::bind(c.addr, crypto, &agents, c.store.clone(), c.live.clone()).unwrap()
        };
        let stop = CancellationToken::new();
        let server = tokio::spawn(restarted.serve(stop.clone()));
        spool
            .lock()
            .unwrap()
            .commit(rollups("radio1", 2), AgentCounters::default(), &[], b"")
            .unwrap();
        assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 1);
        assert_eq!(c.sessions("radio1"), 3);
        stop.cancel();
        server.await.unwrap();
    }
}
