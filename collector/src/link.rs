//! The collector's end of the agent link: a QUIC server that admits known agents, merges
//! their batches exactly once, hands their live samples to the [`LiveStore`] and keeps their
//! health reports ([`AgentBoard`], in `health`).
//!
//! The protocol's rules (Hello first, the deadlines, when to answer and when to close) are
//! [`earshot_common::link::server::ServerSession`]'s; this module drives one per connection
//! over quinn and carries out what it asks: check a Hello against `[[agents]]`, check a
//! batch's tenants and merge it, reply, close.
//!
//! What must stay true:
//! - nothing is merged from a connection before its first stream carried a `Hello` with a
//!   known agent id and that agent's token;
//! - a batch is merged whole or not at all, and only if every rollup's tenant is one the agent
//!   may report for; `Ack` is sent only after the merge (or an earlier merge of the same
//!   `(agent_id, seq)`) is committed;
//! - one misbehaving connection (garbage, oversized or slow frames) is closed or cut off on its
//!   own; the others go on.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use earshot_common::link::server::{BatchOutcome, ServerAction, ServerSession};
use earshot_common::link::{CLOSE_DONE, CLOSE_PROTOCOL, FrameError, FrameReader, StreamId};
use earshot_common::wire::{self, Batch, CollectorMessage, Hello, LiveSample};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{AgentEntry, Sha256Digest, allows};
use crate::health::bump;
pub use crate::health::{AgentBoard, AgentStatus, LinkStats};
use crate::live::LiveStore;
use crate::store::{MergeOutcome, Store};
use crate::time::now_ms;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Batches one connection may have in flight at once.
const MAX_STREAMS: u32 = 8;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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

impl std::fmt::Debug for LinkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkServer")
            .field("local_addr", &self.endpoint.local_addr().ok())
            .finish_non_exhaustive()
    }
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
    /// lets merges in flight finish and send their acks (each connection's session gives them
    /// its drain deadline), and closes.
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
        shared.tasks.wait().await;
        self.endpoint
            .close(CLOSE_DONE.into(), b"collector stopping");
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

/// What a connection's stream and merge tasks report back to its loop.
enum Event {
    Frame(StreamId, Result<Vec<u8>, FrameError>),
    Merged(StreamId, BatchOutcome),
    Settled(StreamId),
    /// A reader stopped on the session's word: nothing to report.
    Stopped,
}

/// One connection: the QUIC handshake, then its [`ServerSession`] driven until it closes.
async fn handle_connection(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let remote = incoming.remote_address();
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming) => handshake,
        _ = shared.shutdown.cancelled() => return,
    };
    let conn = match handshake {
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
    let mut link = Connection {
        origin: tokio::time::Instant::now(),
        session: ServerSession::new(Duration::ZERO),
        conn,
        remote,
        shared,
        agent: None,
        tasks: JoinSet::new(),
        receivers: HashMap::new(),
        senders: HashMap::new(),
        stoppers: HashMap::new(),
        next_stream: 0,
    };
    let why = link.run().await;
    if let Some(agent) = &link.agent {
        let stats = &link.shared.stats;
        stats.agents_connected.fetch_sub(1, Ordering::Relaxed);
        link.shared.board.update(&agent.id, |a| {
            a.connections = a.connections.saturating_sub(1)
        });
        tracing::info!(agent = %agent.id, %remote, "agent disconnected: {why}");
    }
}

/// The driver of one connection's session.
struct Connection {
    origin: tokio::time::Instant,
    session: ServerSession,
    conn: quinn::Connection,
    remote: SocketAddr,
    shared: Arc<Shared>,
    /// The admitted agent.
    agent: Option<Arc<AgentAuth>>,
    tasks: JoinSet<Event>,
    receivers: HashMap<StreamId, quinn::RecvStream>,
    senders: HashMap<StreamId, quinn::SendStream>,
    /// For each stream being read: how to stop its reader, with a code.
    stoppers: HashMap<StreamId, tokio::sync::oneshot::Sender<u32>>,
    next_stream: u64,
}

impl Connection {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Runs the session until it closes or the connection goes; returns why it ended.
    async fn run(&mut self) -> String {
        let mut stopping = false;
        while !self.session.is_closed() {
            let deadline = self.session.poll_timeout().map(|d| self.origin + d);
            let actions = tokio::select! {
                stream = self.conn.accept_bi(), if self.session.wants_stream() => match stream {
                    Ok((send, recv)) => {
                        let id = StreamId(self.next_stream);
                        self.next_stream += 1;
                        self.senders.insert(id, send);
                        self.receivers.insert(id, recv);
                        self.session.handle_stream(self.now(), id)
                    }
                    Err(e) => return e.to_string(),
                },
                datagram = self.conn.read_datagram(), if self.agent.is_some() => match datagram {
                    Ok(bytes) => self.session.handle_datagram(self.now(), &bytes),
                    Err(e) => return e.to_string(),
                },
                Some(event) = self.tasks.join_next() => match event {
                    Ok(Event::Frame(id, frame)) => self.session.handle_frame(self.now(), id, frame),
                    Ok(Event::Merged(id, outcome)) => self.session.handle_merged(self.now(), id, outcome),
                    Ok(Event::Settled(id)) => self.session.handle_settled(self.now(), id),
                    Ok(Event::Stopped) | Err(_) => vec![],
                },
                _ = sleep_until(deadline), if deadline.is_some() => self.session.handle_timeout(self.now()),
                _ = self.shared.shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    self.session.handle_shutdown(self.now())
                }
            };
            if let Some(why) = self.carry_out(actions) {
                return why;
            }
        }
        "closed".into()
    }

    /// Carries out the session's actions (and those their outcomes lead to); returns why the
    /// connection was closed, if it was.
    fn carry_out(&mut self, actions: Vec<ServerAction>) -> Option<String> {
        let mut queue = VecDeque::from(actions);
        let stats = self.shared.stats.clone();
        let remote = self.remote;
        let agent_id = self
            .agent
            .as_ref()
            .map_or("?", |a| a.id.as_str())
            .to_string();
        while let Some(action) = queue.pop_front() {
            match action {
                ServerAction::ReadFrame { stream, max } => {
                    let Some(mut recv) = self.receivers.remove(&stream) else {
                        continue;
                    };
                    let (stop, stopped) = tokio::sync::oneshot::channel::<u32>();
                    self.stoppers.insert(stream, stop);
                    self.tasks.spawn(async move {
                        tokio::select! {
                            frame = read_frame(&mut recv, max) => Event::Frame(stream, frame),
                            code = stopped => {
                                let _ = recv.stop(code.unwrap_or(CLOSE_DONE).into());
                                Event::Stopped
                            }
                        }
                    });
                }
                ServerAction::Admit { hello } => {
                    let verdict = admit(&hello, &self.shared.agents);
                    let verdict = match verdict {
                        Ok(agent) => {
                            bump(&stats.agents_admitted);
                            bump(&stats.agents_connected);
                            self.shared.board.update(&agent.id, |a| a.connections += 1);
                            tracing::info!(agent = %agent.id, %remote, "agent connected");
                            let id = agent.id.clone();
                            self.agent = Some(agent);
                            Ok(id)
                        }
                        Err(reason) => Err(reason),
                    };
                    queue.extend(self.session.handle_admission(self.now(), verdict));
                }
                ServerAction::Merge { stream, batch } => {
                    let Some(agent) = self.agent.clone() else {
                        continue;
                    };
                    if let Err(reason) = check_batch(&agent, &batch) {
                        bump(&stats.batches_refused);
                        tracing::warn!(agent = %agent.id, seq = batch.seq, "batch refused: {reason}");
                        let refused = BatchOutcome::Refused {
                            reason,
                            retry: false,
                        };
                        queue.extend(self.session.handle_merged(self.now(), stream, refused));
                        continue;
                    }
                    let shared = self.shared.clone();
                    self.tasks.spawn(async move {
                        Event::Merged(stream, merge(batch, &agent, &shared).await)
                    });
                }
                ServerAction::NoteHealth { health } => {
                    bump(&stats.health_reports);
                    let received = now_ms();
                    self.shared
                        .board
                        .update(&agent_id, |a| a.health = Some((health, received)));
                }
                ServerAction::Live { sample } => {
                    if let Some(agent) = &self.agent {
                        record_live(agent, sample, &self.shared);
                    }
                }
                ServerAction::DatagramRejected { why } => {
                    bump(&stats.live_rejected);
                    tracing::debug!(agent = %agent_id, "{why}");
                }
                ServerAction::Reply { stream, message } => {
                    if let (None, CollectorMessage::Refused { reason, .. }) =
                        (&self.agent, &message)
                    {
                        bump(&stats.agents_refused);
                        tracing::warn!(%remote, "agent refused: {reason}");
                    }
                    let Some(send) = self.senders.remove(&stream) else {
                        continue;
                    };
                    self.tasks.spawn(reply(stream, send, message));
                }
                ServerAction::EndStream { stream, code } => {
                    if code == CLOSE_PROTOCOL {
                        bump(&stats.frames_rejected);
                        tracing::warn!(agent = %agent_id, "request frame not complete in time; stream dropped");
                    }
                    if let Some(stop) = self.stoppers.remove(&stream) {
                        let _ = stop.send(code);
                    }
                    if let Some(mut send) = self.senders.remove(&stream) {
                        let _ = send.reset(code.into());
                    }
                }
                ServerAction::Close { close, why } => {
                    match close.code {
                        CLOSE_PROTOCOL => {
                            bump(&stats.frames_rejected);
                            tracing::warn!(%remote, agent = %agent_id, "closing the connection: {why}");
                        }
                        _ => {
                            tracing::debug!(%remote, agent = %agent_id, "closing the connection: {why}")
                        }
                    }
                    self.conn.close(close.code.into(), close.reason.as_bytes());
                    return Some(why);
                }
            }
        }
        None
    }
}

/// Sleeps until `deadline`, or forever without one (the select arm is off then anyway).
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Checks a Hello against the configured agents. The token is compared as SHA-256 digests in
/// constant time, and an unknown agent costs the same hash, so timing tells nothing.
fn admit(
    hello: &Hello,
    agents: &HashMap<String, Arc<AgentAuth>>,
) -> Result<Arc<AgentAuth>, String> {
    let presented = Sha256Digest::of(hello.token.as_bytes());
    match agents.get(&hello.agent_id) {
        Some(agent) if presented == agent.token_sha256 => Ok(agent.clone()),
        // One message for both: a prober learns nothing about which agent ids exist.
        _ => Err(format!(
            "unknown agent {:?} or wrong token (check [[agents]] in collector.toml and the agent's token_file)",
            hello.agent_id
        )),
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

async fn merge(batch: Batch, agent: &AgentAuth, shared: &Shared) -> BatchOutcome {
    let seq = batch.seq;
    let store = shared.store.clone();
    let outcome = tokio::task::spawn_blocking(move || store.merge_batch(&batch)).await;
    let busy = || BatchOutcome::Refused {
        reason: "the collector cannot store batches right now".into(),
        retry: true,
    };
    match outcome {
        Ok(Ok(MergeOutcome::Merged)) => {
            bump(&shared.stats.batches_merged);
            tracing::debug!(agent = %agent.id, seq, "batch merged");
            BatchOutcome::Merged
        }
        Ok(Ok(MergeOutcome::Duplicate)) => {
            bump(&shared.stats.batches_duplicate);
            tracing::debug!(agent = %agent.id, seq, "batch seen before; acknowledged again");
            BatchOutcome::Duplicate
        }
        Ok(Err(e)) => {
            bump(&shared.stats.store_errors);
            tracing::error!(agent = %agent.id, seq, "cannot merge batch: {e}");
            busy()
        }
        Err(e) => {
            bump(&shared.stats.store_errors);
            tracing::error!(agent = %agent.id, seq, "merge task failed: {e}");
            busy()
        }
    }
}

fn record_live(agent: &AgentAuth, mut sample: LiveSample, shared: &Shared) {
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

/// Reads one length-prefixed frame ([`FrameReader`]: the length is checked before anything
/// is allocated). A stream that breaks off is a frame that ended early.
async fn read_frame(recv: &mut quinn::RecvStream, max: usize) -> Result<Vec<u8>, FrameError> {
    let mut frame = FrameReader::new(max);
    while frame.wanted() > 0 {
        match recv.read_chunk(frame.wanted(), true).await {
            Ok(Some(chunk)) => {
                frame.feed(&chunk.bytes)?;
            }
            Ok(None) => return Err(frame.ended()),
            Err(e) => {
                tracing::debug!("stream ended early: {e}");
                return Err(frame.ended());
            }
        }
    }
    frame.into_body()
}

/// Writes an answer and finishes the stream, then waits until the agent has it (the session
/// gives up waiting at its linger deadline).
async fn reply(stream: StreamId, mut send: quinn::SendStream, message: CollectorMessage) -> Event {
    let written = match wire::encode_frame(&message) {
        Ok(frame) => send.write_all(&frame).await.is_ok() && send.finish().is_ok(),
        Err(e) => {
            tracing::error!("cannot encode {message:?}: {e}");
            false
        }
    };
    if written {
        let _ = send.stopped().await;
    }
    Event::Settled(stream)
}

#[cfg(test)]
mod tests {
    //! Real QUIC on 127.0.0.1, real certificates from `tls`, a real store; the agent's side is
    //! the common client session driven by a few lines here ([`TestAgent`]).

    use std::path::PathBuf;
    use std::sync::atomic::AtomicU64;

    use earshot_common::wire::AgentHealth;

    use earshot_common::link::CLOSE_REFUSED;
    use earshot_common::link::client::{
        Answer, ClientAction, ClientError, ClientSession, Interrupted, MAX_REPLY, ReplyError,
        batch_frame,
    };
    use earshot_common::rollup::{HourKey, HourRollup, Protocol};
    use earshot_common::wire::{
        AgentCounters, AgentMessage, LiveEntry, MAX_FRAME, PROTOCOL_VERSION,
    };

    use super::*;
    use crate::query::TimeRange;
    use crate::store::Selection;
    use crate::tls;

    const HOUR_MS: i64 = 472_222 * 3_600_000;

    struct Collector {
        dir: tempfile::TempDir,
        addr: SocketAddr,
        cert_file: PathBuf,
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
            store,
            stats,
            live,
            board,
            shutdown,
            server,
        }
    }

    impl Collector {
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

    fn batch(agent_id: &str, seq: u64, rollups: Vec<(HourKey, HourRollup)>) -> Batch {
        Batch {
            agent_id: agent_id.into(),
            seq,
            rollups,
            counters: AgentCounters {
                lines: 1,
                ..Default::default()
            },
        }
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

    fn batch_message(agent_id: &str, seq: u64, rollups: Vec<(HourKey, HourRollup)>) -> Vec<u8> {
        wire::encode_frame(&AgentMessage::Batch(batch(agent_id, seq, rollups))).unwrap()
    }

    /// An agent as the real one speaks: the common client session over a QUIC connection,
    /// one request at a time, without a spool.
    struct TestAgent {
        conn: quinn::Connection,
        session: ClientSession,
        origin: std::time::Instant,
    }

    impl TestAgent {
        async fn connect(
            c: &Collector,
            agent_id: &str,
            token: &str,
        ) -> Result<TestAgent, ClientError> {
            let conn = raw_connect(c, wire::ALPN).await.unwrap();
            let hello = Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_id: agent_id.into(),
                token: token.into(),
                agent_version: "test".into(),
            };
            let (session, send) = ClientSession::new(Duration::ZERO, &hello).unwrap();
            let mut agent = TestAgent {
                conn,
                session,
                origin: std::time::Instant::now(),
            };
            agent.request(send).await?;
            Ok(agent)
        }

        async fn send_batch(&mut self, b: &Batch) -> Result<Answer, ClientError> {
            let now = self.origin.elapsed();
            let send = self
                .session
                .send_batch(now, b.seq, batch_frame(b).unwrap())?;
            self.request(send).await
        }

        async fn send_health(&mut self, health: &AgentHealth) -> Result<Answer, ClientError> {
            let send = self.session.send_health(self.origin.elapsed(), health)?;
            self.request(send).await
        }

        fn send_live(&self, sample: &LiveSample) {
            let body = postcard::to_stdvec(sample).unwrap();
            self.conn.send_datagram(body.into()).unwrap();
        }

        async fn request(&mut self, send: ClientAction) -> Result<Answer, ClientError> {
            let ClientAction::Send { request, frame } = send else {
                panic!("expected a request, got {send:?}");
            };
            let reply = self.exchange(&frame).await;
            let mut outcome = None;
            for action in self
                .session
                .handle_reply(self.origin.elapsed(), request, reply)
            {
                match action {
                    ClientAction::Done { outcome: o, .. } => outcome = Some(o),
                    ClientAction::Close(close) => {
                        self.conn.close(close.code.into(), close.reason.as_bytes())
                    }
                    ClientAction::Send { .. } => panic!("one request at a time"),
                }
            }
            outcome.expect("every request ends in an outcome")
        }

        async fn exchange(&self, frame: &[u8]) -> Result<Vec<u8>, ReplyError> {
            let lost = |e: String| {
                ReplyError::Interrupted(match self.conn.close_reason() {
                    Some(quinn::ConnectionError::ApplicationClosed(c)) => {
                        Interrupted::ClosedByPeer {
                            code: c.error_code.into_inner() as u32,
                            reason: String::from_utf8_lossy(&c.reason).into_owned(),
                        }
                    }
                    _ => Interrupted::Lost(e),
                })
            };
            let (mut send, mut recv) =
                self.conn.open_bi().await.map_err(|e| lost(e.to_string()))?;
            send.write_all(frame)
                .await
                .map_err(|e| lost(e.to_string()))?;
            send.finish().map_err(|e| lost(e.to_string()))?;
            let mut reader = FrameReader::new(MAX_REPLY);
            while reader.wanted() > 0 {
                match recv.read_chunk(reader.wanted(), true).await {
                    Ok(Some(chunk)) => {
                        reader.feed(&chunk.bytes).map_err(ReplyError::Frame)?;
                    }
                    Ok(None) => return Err(ReplyError::Frame(reader.ended())),
                    Err(e) => return Err(lost(e.to_string())),
                }
            }
            reader.into_body().map_err(ReplyError::Frame)
        }
    }

    #[tokio::test]
    async fn batches_are_merged_and_acknowledged() {
        let c = start().await;
        let mut a = TestAgent::connect(&c, "agent-1", "token-1").await.unwrap();
        for (seq, sessions) in [(1, 3), (2, 4)] {
            assert_eq!(
                a.send_batch(&batch("agent-1", seq, rollups("radio1", sessions)))
                    .await,
                Ok(Answer::Acked { seq })
            );
        }
        assert_eq!(c.sessions("radio1"), 7);
        assert_eq!(c.count(&c.stats.batches_merged), 2);
    }

    #[tokio::test]
    async fn a_batch_sent_twice_is_acknowledged_twice_and_merged_once() {
        let c = start().await;
        let conn = raw_admitted(&c, "agent-2", "token-2").await;
        let frame = batch_message("agent-2", 9, rollups("radio2", 5));
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
    async fn a_wrong_token_is_refused() {
        let c = start().await;
        for (agent_id, token) in [("agent-1", "token-2"), ("agent-9", "token-1")] {
            let err = TestAgent::connect(&c, agent_id, token).await.err().unwrap();
            assert!(
                matches!(&err, ClientError::Refused { reason } if reason.contains("wrong token")),
                "{err}"
            );
        }
        assert_eq!(c.count(&c.stats.agents_refused), 2);
        assert_eq!(c.count(&c.stats.agents_admitted), 0);
    }

    #[tokio::test]
    async fn a_batch_for_a_tenant_the_agent_may_not_report_for_is_refused_whole() {
        let c = start().await;
        let mut mixed = rollups("radio1", 3);
        mixed.extend(rollups("radio9", 4));
        let mut a = TestAgent::connect(&c, "agent-1", "token-1").await.unwrap();
        let err = a.send_batch(&batch("agent-1", 1, mixed)).await.unwrap_err();
        assert!(
            matches!(&err, ClientError::Refused { reason } if reason.starts_with("batch 1: ") && reason.contains("radio9")),
            "{err}"
        );
        assert_eq!((c.sessions("radio1"), c.sessions("radio9")), (0, 0));
        assert_eq!(c.count(&c.stats.batches_refused), 1);
        // A batch naming another agent is refused too, and the connection goes on.
        let err = a
            .send_batch(&batch("agent-2", 2, rollups("radio1", 1)))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Refused { .. }), "{err}");
        assert_eq!(
            a.send_batch(&batch("agent-1", 3, rollups("radio1", 2)))
                .await,
            Ok(Answer::Acked { seq: 3 })
        );
        assert_eq!(c.sessions("radio1"), 2);
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
        let mut good = TestAgent::connect(&c, "agent-1", "token-1").await.unwrap();

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

        assert!(
            good.conn.close_reason().is_none(),
            "the good connection was kept"
        );
        assert_eq!(
            good.send_batch(&batch("agent-1", 1, rollups("radio1", 3)))
                .await,
            Ok(Answer::Acked { seq: 1 })
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
        // The refusal arrived; then the connection is closed as a refusal.
        let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .unwrap();
        assert!(
            matches!(closed, quinn::ConnectionError::ApplicationClosed(ref a) if a.error_code == CLOSE_REFUSED.into()),
            "{closed}"
        );
        // An agent whose ALPN names another version does not get past TLS.
        assert!(raw_connect(&c, b"earshot/2").await.is_err());
    }

    #[tokio::test]
    async fn batches_before_hello_are_refused() {
        let c = start().await;
        let conn = raw_connect(&c, wire::ALPN).await.unwrap();
        let reply = raw_request(&conn, &batch_message("agent-2", 1, rollups("radio2", 1)))
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
        let a = TestAgent::connect(&c, "agent-1", "token-1").await.unwrap();
        let entry = |tenant: &str, listeners| LiveEntry {
            tenant: tenant.into(),
            stream: "/live".into(),
            protocol: Protocol::Icecast,
            listeners,
        };
        a.send_live(&LiveSample {
            at_ms: 2_000,
            entries: vec![entry("radio1", 7), entry("radio9", 1)],
        });
        a.send_live(&LiveSample {
            at_ms: 1_000,
            entries: vec![entry("radio1", 3)],
        });
        a.conn.send_datagram(vec![0xff; 3].into()).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while c.count(&c.stats.live_samples) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let now = c.live.now("radio1");
        assert_eq!(now.listeners, 7, "the later sample wins: {now:?}");
        assert_eq!(now.hosts.len(), 1);
        assert_eq!(now.hosts[0].host, "agent-1");
        assert_eq!(c.live.now("radio9").version, 0);
        // radio9 is not agent-1's; the garbage datagram is no sample (either may arrive last).
        while c.count(&c.stats.live_rejected) < 2 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(c.count(&c.stats.live_rejected), 2);
    }

    #[tokio::test]
    async fn health_reports_are_noted_and_connections_counted() {
        let c = start().await;
        let mut a = TestAgent::connect(&c, "agent-1", "token-1").await.unwrap();
        let health = AgentHealth {
            at_ms: 5,
            sessions_open: 4,
            spool_batches: 2,
            send_failures: 1,
            ..Default::default()
        };
        assert_eq!(a.send_health(&health).await, Ok(Answer::Noted));
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
        a.conn.close(CLOSE_DONE.into(), b"agent stopping");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while c.count(&c.stats.agents_connected) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(c.count(&c.stats.agents_connected), 0);
        assert_eq!(c.board.snapshot()[0].1.connections, 0);
    }

    #[tokio::test]
    async fn shutdown_closes_each_connection_as_done_and_a_restarted_collector_admits_again() {
        let mut c = start().await;
        let mut a = TestAgent::connect(&c, "agent-1", "token-1").await.unwrap();
        assert_eq!(
            a.send_batch(&batch("agent-1", 1, rollups("radio1", 1)))
                .await,
            Ok(Answer::Acked { seq: 1 })
        );
        c.shutdown.cancel();
        (&mut c.server).await.unwrap();
        let closed = tokio::time::timeout(Duration::from_secs(5), a.conn.closed())
            .await
            .unwrap();
        assert!(
            matches!(&closed, quinn::ConnectionError::ApplicationClosed(a) if a.error_code == CLOSE_DONE.into() && &a.reason[..] == b"collector stopping"),
            "{closed}"
        );
        // A new server on the same port, as after a restart.
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
        let mut a = TestAgent::connect(&c, "agent-1", "token-1").await.unwrap();
        // The batch seen before is acknowledged and not merged again; a new one is.
        for seq in [1, 2] {
            assert_eq!(
                a.send_batch(&batch("agent-1", seq, rollups("radio1", 2)))
                    .await,
                Ok(Answer::Acked { seq })
            );
        }
        assert_eq!(c.sessions("radio1"), 3);
        stop.cancel();
        server.await.unwrap();
    }
}
