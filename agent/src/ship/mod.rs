//! The agent's QUIC link to the collector: sends spooled batches, health reports and live
//! samples.
//!
//! The protocol's rules (Hello → Welcome, one request per stream, which answer ends which
//! request, the deadlines, when to close) are
//! [`earshot_common::link::client::ClientSession`]'s; the [`Shipper`] drives one per
//! connection over quinn, reconnects, and deletes a batch from the spool on its `Ack`. How the
//! collector is trusted is `verify`'s.
//!
//! What must stay true: a batch leaves the spool only after the collector's `Ack` for its
//! sequence number, so a lost connection, a crash or a refusal at any point leaves it spooled
//! to be sent again (the collector merges a given `(agent_id, seq)` once). The collector is
//! trusted only through the configured CA file or certificate fingerprint; TLS 1.3 only.

#[cfg(test)]
mod test_collector;
mod verify;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use earshot_common::link::client::{
    Answer, ClientAction, ClientError, ClientSession, Interrupted, MAX_REPLY, ReplyError,
    batch_frame,
};
use earshot_common::link::{CLOSE_DONE, FrameReader};
use earshot_common::wire::{AgentHealth, Hello, LiveSample, PROTOCOL_VERSION, WireError};
use serde::Deserialize;

use crate::spool::{Spool, SpoolError};
pub use verify::parse_fingerprint;

/// Batches read from the spool per round.
const PAGE: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const KEEP_ALIVE: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The `[collector]` table of agent.toml: where the collector is and how each side proves
/// who it is.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The collector's QUIC address, `host:port` ("collector.example.net:4433",
    /// "127.0.0.1:4433", "\[2001:db8::1\]:4433").
    pub address: String,
    /// The name the collector's certificate must be valid for (with `ca_file`). Default: the
    /// host part of `address`.
    pub server_name: Option<String>,
    /// PEM file of the CA (or the collector's self-signed certificate) to trust. One of
    /// `ca_file` and `fingerprint` is required; with both, the certificate must pass both.
    pub ca_file: Option<PathBuf>,
    /// Pin of the collector's certificate: `"sha256:<64 hex digits>"` of its DER encoding, as
    /// `earshot-collector init` and `enroll-agent` print it.
    pub fingerprint: Option<String>,
    /// This agent's id, as listed in the collector's `[[agents]]`.
    pub agent_id: String,
    /// File holding this agent's secret token (surrounding whitespace ignored). Keep it 0600.
    pub token_file: PathBuf,
}

impl LinkConfig {
    /// Checks what can be checked without reading files or the network.
    pub fn validate(&self) -> Result<(), ShipError> {
        split_host(&self.address)?;
        if let Some(fp) = &self.fingerprint {
            parse_fingerprint(fp)?;
        }
        if self.ca_file.is_none() && self.fingerprint.is_none() {
            return Err(config_err(
                "ca_file",
                "set `ca_file` or `fingerprint` to say which collector to trust",
            ));
        }
        if self.agent_id.is_empty() {
            return Err(config_err("agent_id", "must not be empty"));
        }
        Ok(())
    }

    fn server_name(&self) -> Result<String, ShipError> {
        match &self.server_name {
            Some(name) => Ok(name.clone()),
            None => split_host(&self.address).map(|(host, _)| host.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    #[error("collector.{key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("cannot read collector.{key} {path}: {reason}")]
    File {
        key: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cannot open a UDP socket: {0}")]
    Bind(std::io::Error),
    #[error("cannot resolve {address}: {reason}")]
    Resolve { address: String, reason: String },
    #[error("cannot connect to the collector at {address}: {reason}")]
    Connect { address: String, reason: String },
    /// The connection or a stream broke; the next call reconnects.
    #[error("link to the collector lost: {0}")]
    Link(String),
    #[error("no reply from the collector within {0:?}")]
    Timeout(Duration),
    /// Sending the same thing again will not help: the reason says what to fix.
    #[error("the collector refused: {reason}")]
    Refused { reason: String },
    #[error("the collector asks to retry later: {reason}")]
    RetryLater { reason: String },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error("batch {seq} cannot be sent: {error}")]
    Encode { seq: u64, error: WireError },
    #[error("not connected to the collector")]
    NotConnected,
    #[error("live sample not sent: {0}")]
    Datagram(String),
}

impl From<rustls::Error> for ShipError {
    fn from(e: rustls::Error) -> Self {
        ShipError::Tls(e.to_string())
    }
}

fn config_err(key: &'static str, reason: impl Into<String>) -> ShipError {
    ShipError::Config {
        key,
        reason: reason.into(),
    }
}

/// Counters an operator can read (live samples are best effort, so dropping one is counted,
/// not an error anywhere else).
#[derive(Debug, Default)]
pub struct ShipStats {
    pub connections: AtomicU64,
    pub batches_acked: AtomicU64,
    pub batches_refused: AtomicU64,
    pub live_sent: AtomicU64,
    pub live_dropped: AtomicU64,
}

impl From<ClientError> for ShipError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Link(reason) => ShipError::Link(reason),
            ClientError::Timeout(wait) => ShipError::Timeout(wait),
            ClientError::Refused { reason } => ShipError::Refused { reason },
            ClientError::RetryLater { reason } => ShipError::RetryLater { reason },
            ClientError::Protocol(reason) => ShipError::Protocol(reason),
            ClientError::NotReady => ShipError::NotConnected,
        }
    }
}

/// A connection and the session it carries.
#[derive(Debug)]
struct Link {
    conn: quinn::Connection,
    session: ClientSession,
}

impl Link {
    fn is_up(&self) -> bool {
        self.conn.close_reason().is_none() && self.session.is_ready()
    }
}

pub struct Shipper {
    endpoint: quinn::Endpoint,
    address: String,
    server_name: String,
    hello: Hello,
    link: Option<Link>,
    /// The origin of the sessions' clock.
    origin: Instant,
    stats: Arc<ShipStats>,
}

impl std::fmt::Debug for Shipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shipper")
            .field("address", &self.address)
            .field("agent_id", &self.hello.agent_id)
            .field("connected", &self.is_connected())
            .finish_non_exhaustive()
    }
}

impl Shipper {
    /// Reads the token and CA file and opens the client endpoint on an ephemeral local port.
    /// Must be called inside a tokio runtime.
    pub fn new(config: &LinkConfig) -> Result<Shipper, ShipError> {
        config.validate()?;
        let token = std::fs::read_to_string(&config.token_file)
            .map_err(|e| ShipError::File {
                key: "token_file",
                path: config.token_file.clone(),
                reason: e.to_string(),
            })?
            .trim()
            .to_string();
        crate::perms::warn_if_loose(&config.token_file, "collector.token_file");
        if token.is_empty() {
            return Err(ShipError::File {
                key: "token_file",
                path: config.token_file.clone(),
                reason: "the file is empty".into(),
            });
        }
        let crypto = verify::client_crypto(config)?;
        let quic_crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
            .map_err(|e| ShipError::Protocol(format!("TLS config unusable for QUIC: {e}")))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(quic_crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        transport.max_idle_timeout(Some(
            IDLE_TIMEOUT
                .try_into()
                .expect("a minute fits a QUIC idle timeout"),
        ));
        client_config.transport_config(Arc::new(transport));

        let mut endpoint =
            quinn::Endpoint::client(local_bind_addr(&config.address)).map_err(ShipError::Bind)?;
        endpoint.set_default_client_config(client_config);
        Ok(Shipper {
            endpoint,
            address: config.address.clone(),
            server_name: config.server_name()?,
            hello: Hello {
                protocol_version: PROTOCOL_VERSION,
                agent_id: config.agent_id.clone(),
                token,
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            link: None,
            origin: Instant::now(),
            stats: Arc::new(ShipStats::default()),
        })
    }

    pub fn stats(&self) -> Arc<ShipStats> {
        self.stats.clone()
    }

    /// Whether a connection is up right now (without trying to make one).
    pub fn is_connected(&self) -> bool {
        self.link.as_ref().is_some_and(Link::is_up)
    }

    /// Connects if needed (Hello → Welcome), sends every pending batch of the spool, each on
    /// its own stream, and deletes each after its `Ack`. Returns how many were acknowledged.
    /// A lost connection is re-established once per call; after that the error is returned
    /// and the rest stays spooled for the next call.
    pub async fn ship_pending(&mut self, spool: &Arc<Mutex<Spool>>) -> Result<usize, ShipError> {
        let mut acked = 0;
        let mut reconnected = false;
        loop {
            let agent_id = self.hello.agent_id.clone();
            let batches = with_spool(spool, move |s| s.pending(&agent_id, PAGE)).await?;
            if batches.is_empty() {
                return Ok(acked);
            }
            for batch in batches {
                let seq = batch.seq;
                let frame =
                    batch_frame(&batch).map_err(|error| ShipError::Encode { seq, error })?;
                let answer = loop {
                    self.connect().await?;
                    let link = self.link.as_mut().ok_or(ShipError::NotConnected)?;
                    let send =
                        link.session
                            .send_batch(self.origin.elapsed(), seq, frame.clone())?;
                    match self.request(send).await {
                        Err(ShipError::Link(reason)) if !reconnected => {
                            tracing::debug!(seq, "link lost ({reason}); reconnecting");
                            self.drop_link();
                            reconnected = true;
                        }
                        other => break other,
                    }
                };
                match answer {
                    Ok(_) => {
                        with_spool(spool, move |s| s.ack(seq)).await?;
                        self.stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                        acked += 1;
                    }
                    Err(e @ (ShipError::Refused { .. } | ShipError::RetryLater { .. })) => {
                        self.stats.batches_refused.fetch_add(1, Ordering::Relaxed);
                        return Err(e);
                    }
                    Err(e) => {
                        self.drop_link();
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Sends a live sample as a datagram: best effort, counted in [`ShipStats`]. Needs an
    /// established connection (made by [`Shipper::ship_pending`] or [`Shipper::connect`]).
    pub fn send_live(&self, sample: &LiveSample) -> Result<(), ShipError> {
        let result = self.try_send_live(sample);
        let counter = if result.is_ok() {
            &self.stats.live_sent
        } else {
            &self.stats.live_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        result
    }

    fn try_send_live(&self, sample: &LiveSample) -> Result<(), ShipError> {
        let link = self
            .link
            .as_ref()
            .filter(|l| l.is_up())
            .ok_or(ShipError::NotConnected)?;
        let body = postcard::to_stdvec(sample).map_err(|e| ShipError::Datagram(e.to_string()))?;
        match link.conn.max_datagram_size() {
            None => {
                return Err(ShipError::Datagram(
                    "the collector accepts no datagrams".into(),
                ));
            }
            Some(max) if body.len() > max => {
                return Err(ShipError::Datagram(format!(
                    "{} bytes is over the {max}-byte datagram limit",
                    body.len()
                )));
            }
            Some(_) => {}
        }
        link.conn
            .send_datagram(body.into())
            .map_err(|e| ShipError::Datagram(e.to_string()))
    }

    /// Sends the agent's own health on its own stream and waits for `Noted`. Uses the
    /// connection that is up; does not make one (health is not worth a reconnect storm).
    pub async fn send_health(&mut self, health: &AgentHealth) -> Result<(), ShipError> {
        let now = self.origin.elapsed();
        let link = self
            .link
            .as_mut()
            .filter(|l| l.is_up())
            .ok_or(ShipError::NotConnected)?;
        let send = link.session.send_health(now, health)?;
        self.request(send).await.map(drop)
    }

    /// Makes sure a connection is up (Hello → Welcome).
    pub async fn connect(&mut self) -> Result<(), ShipError> {
        if self.is_connected() {
            return Ok(());
        }
        self.drop_link();
        let conn = self.handshake().await?;
        let (session, hello) = ClientSession::new(self.origin.elapsed(), &self.hello)
            .map_err(|e| ShipError::Protocol(e.to_string()))?;
        self.link = Some(Link { conn, session });
        self.request(hello).await?;
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(address = %self.address, "connected to the collector");
        Ok(())
    }

    /// Carries out one request of the session: its stream, its answer or its deadline, and
    /// what the session makes of them.
    async fn request(&mut self, send: ClientAction) -> Result<Answer, ShipError> {
        let ClientAction::Send { request, frame } = send else {
            return Err(ShipError::Protocol(format!("not a request: {send:?}")));
        };
        let origin = self.origin;
        let (outcome, closed) = {
            let Link { conn, session } = self.link.as_mut().ok_or(ShipError::NotConnected)?;
            let exchange = exchange(conn, &frame);
            tokio::pin!(exchange);
            let outcome = loop {
                let deadline = session.poll_timeout().map(|d| origin + d);
                let actions = tokio::select! {
                    reply = &mut exchange => session.handle_reply(origin.elapsed(), request, reply),
                    _ = sleep_until(deadline) => session.handle_timeout(origin.elapsed()),
                };
                let mut done = None;
                for action in actions {
                    match action {
                        ClientAction::Done {
                            request: r,
                            outcome,
                            ..
                        } if r == request => done = Some(outcome),
                        ClientAction::Done { .. } | ClientAction::Send { .. } => {}
                        ClientAction::Close(close) => {
                            conn.close(close.code.into(), close.reason.as_bytes())
                        }
                    }
                }
                if let Some(outcome) = done {
                    break outcome;
                }
            };
            (outcome, session.is_closed())
        };
        if closed {
            self.link = None;
        }
        outcome.map_err(ShipError::from)
    }

    fn drop_link(&mut self) {
        if let Some(mut link) = self.link.take() {
            for action in link.session.close("reconnecting") {
                if let ClientAction::Close(close) = action {
                    link.conn.close(close.code.into(), close.reason.as_bytes());
                }
            }
        }
    }

    /// The QUIC connection, TLS verified: the session's Hello comes next.
    async fn handshake(&self) -> Result<quinn::Connection, ShipError> {
        let addr = self.resolve().await?;
        let connect_err = |reason: String| ShipError::Connect {
            address: self.address.clone(),
            reason,
        };
        let connecting = self
            .endpoint
            .connect(addr, &self.server_name)
            .map_err(|e| connect_err(e.to_string()))?;
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| connect_err(format!("no handshake within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| connect_err(e.to_string()))
    }

    /// Resolves the address anew on every connect (DNS may move the collector), preferring
    /// the address family the local socket was bound for.
    async fn resolve(&self) -> Result<SocketAddr, ShipError> {
        let resolve_err = |reason: String| ShipError::Resolve {
            address: self.address.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(&self.address)
            .await
            .map_err(|e| resolve_err(e.to_string()))?
            .collect();
        let local_v4 = self
            .endpoint
            .local_addr()
            .map(|a| a.is_ipv4())
            .unwrap_or(true);
        addrs
            .iter()
            .find(|a| a.is_ipv4() == local_v4)
            .copied()
            .ok_or_else(|| {
                resolve_err(format!(
                    "no {} address",
                    if local_v4 { "IPv4" } else { "IPv6" }
                ))
            })
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.endpoint.close(CLOSE_DONE.into(), b"agent stopping");
    }
}

/// Runs a spool operation off the async threads (SQLite commits wait for the disk).
async fn with_spool<T, F>(spool: &Arc<Mutex<Spool>>, f: F) -> Result<T, ShipError>
where
    T: Send + 'static,
    F: FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
{
    let spool = spool.clone();
    tokio::task::spawn_blocking(move || {
        // A panic elsewhere while holding the lock left the transaction rolled back.
        let mut guard = spool.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| ShipError::Protocol(format!("spool task failed: {e}")))?
    .map_err(ShipError::from)
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// One request on its own bidirectional stream: frame out, one frame back (read by
/// [`FrameReader`], at most [`MAX_REPLY`] bytes).
async fn exchange(conn: &quinn::Connection, frame: &[u8]) -> Result<Vec<u8>, ReplyError> {
    let (mut send, mut recv) = conn.open_bi().await.map_err(|e| interrupted(conn, e))?;
    send.write_all(frame)
        .await
        .map_err(|e| interrupted(conn, e))?;
    send.finish().map_err(|e| interrupted(conn, e))?;
    let mut reply = FrameReader::new(MAX_REPLY);
    while reply.wanted() > 0 {
        match recv.read_chunk(reply.wanted(), true).await {
            Ok(Some(chunk)) => {
                reply.feed(&chunk.bytes).map_err(ReplyError::Frame)?;
            }
            Ok(None) => return Err(ReplyError::Frame(reply.ended())),
            Err(e) => return Err(interrupted(conn, e)),
        }
    }
    reply.into_body().map_err(ReplyError::Frame)
}

/// A stream error usually means the connection went away; say why it did when it did.
fn interrupted(conn: &quinn::Connection, e: impl std::fmt::Display) -> ReplyError {
    ReplyError::Interrupted(match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => Interrupted::ClosedByPeer {
            code: u32::try_from(close.error_code.into_inner()).unwrap_or(u32::MAX),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        Some(reason) => Interrupted::Lost(reason.to_string()),
        None => Interrupted::Lost(e.to_string()),
    })
}

/// The local address to bind: the unspecified address of the collector's family.
fn local_bind_addr(address: &str) -> SocketAddr {
    let v6 = address
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| a.is_ipv6());
    if v6 {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    }
}

/// Splits `host:port` (`[v6]:port` for IPv6 literals).
fn split_host(address: &str) -> Result<(&str, u16), ShipError> {
    let bad = || config_err("address", format!("expected host:port, got {address:?}"));
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, port) = rest.split_once(']').ok_or_else(bad)?;
        (host, port.strip_prefix(':').ok_or_else(bad)?)
    } else {
        address.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() || (host.contains(':') && !address.starts_with('[')) {
        return Err(bad());
    }
    let port = port.parse::<u16>().map_err(|_| bad())?;
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LinkConfig {
        LinkConfig {
            address: "collector.example.net:4433".into(),
            server_name: None,
            ca_file: None,
            fingerprint: Some(format!("sha256:{}", "ab".repeat(32))),
            agent_id: "agent-1".into(),
            token_file: "/nonexistent".into(),
        }
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(
            split_host("collector.example.net:4433").unwrap(),
            ("collector.example.net", 4433)
        );
        assert_eq!(split_host("127.0.0.1:1").unwrap(), ("127.0.0.1", 1));
        assert_eq!(split_host("[::1]:4433").unwrap(), ("::1", 4433));
        for bad in [
            "collector",
            ":4433",
            "host:",
            "host:port",
            "::1:4433",
            "[::1]4433",
            "host:70000",
        ] {
            assert!(split_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_name_defaults_to_the_host() {
        assert_eq!(config().server_name().unwrap(), "collector.example.net");
        let named = LinkConfig {
            server_name: Some("localhost".into()),
            ..config()
        };
        assert_eq!(named.server_name().unwrap(), "localhost");
    }

    #[test]
    fn fingerprints_parse_strictly() {
        assert_eq!(
            parse_fingerprint(&format!("sha256:{}", "0f".repeat(32))).unwrap(),
            [0x0f; 32]
        );
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(
            parse_fingerprint(&format!("sha256:{colons}")).unwrap(),
            [0xab; 32]
        );
        for bad in [
            "",
            "ab".repeat(32).as_str(),
            "sha256:abcd",
            &format!("sha1:{}", "ab".repeat(32)),
            &format!("sha256:{}", "zz".repeat(32)),
        ] {
            let err = parse_fingerprint(bad).unwrap_err().to_string();
            assert!(err.starts_with("collector.fingerprint:"), "{err}");
        }
    }

    #[test]
    fn config_needs_a_way_to_trust_the_collector() {
        let err = LinkConfig {
            fingerprint: None,
            ..config()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ca_file") && err.contains("fingerprint"),
            "{err}"
        );
        assert!(config().validate().is_ok());
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let text = "address = \"h:1\"\nagent_id = \"a\"\ntoken_file = \"/t\"\nfingerprnt = \"x\"\n";
        let err = toml::from_str::<LinkConfig>(text).unwrap_err().to_string();
        assert!(err.contains("fingerprnt"), "{err}");
    }

    /// Real QUIC against [`TestCollector`]: what needs TLS and sockets (trust, reconnect).
    mod quic {
        use std::path::Path;

        use earshot_common::rollup::{HourKey, HourRollup, Protocol};
        use earshot_common::wire::AgentCounters;
        use sha2::Digest;

        use super::super::test_collector::TestCollector;
        use super::*;

        fn link(c: &TestCollector, dir: &Path, token: &str) -> LinkConfig {
            let token_file = dir.join(format!("{token}.token"));
            std::fs::write(&token_file, format!("{token}\n")).unwrap();
            LinkConfig {
                address: c.addr.to_string(),
                server_name: Some("localhost".into()),
                ca_file: None,
                fingerprint: Some(c.fingerprint.clone()),
                agent_id: "agent-1".into(),
                token_file,
            }
        }

        fn commit(spool: &Arc<Mutex<Spool>>, sessions: u64) {
            let mut r = HourRollup::new(Protocol::Icecast);
            r.quarters[0].sessions = sessions;
            let key = HourKey {
                tenant: "radio1".into(),
                stream: "/live".into(),
                hour_ms: 0,
            };
            spool
                .lock()
                .unwrap()
                .commit(vec![(key, r)], AgentCounters::default(), &[], b"")
                .unwrap();
        }

        fn spool(dir: &Path, sessions: &[u64]) -> Arc<Mutex<Spool>> {
            let spool = Arc::new(Mutex::new(Spool::open(&dir.join("spool.db")).unwrap()));
            for s in sessions {
                commit(&spool, *s);
            }
            spool
        }

        fn pending(spool: &Arc<Mutex<Spool>>) -> u64 {
            spool.lock().unwrap().pending_count().unwrap()
        }

        fn merged(c: &TestCollector) -> Vec<(u64, u64)> {
            c.merged
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect()
        }

        #[tokio::test]
        async fn spooled_batches_leave_the_spool_on_their_acks() {
            let dir = tempfile::tempdir().unwrap();
            let c = TestCollector::start(dir.path(), "127.0.0.1:0".parse().unwrap());
            let spool = spool(dir.path(), &[3, 4]);
            let mut shipper = Shipper::new(&link(&c, dir.path(), "token-1")).unwrap();
            assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 2);
            assert_eq!(pending(&spool), 0);
            assert_eq!(merged(&c), [(1, 3), (2, 4)]);
            assert!(shipper.is_connected());
            assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 0);
        }

        #[tokio::test]
        async fn a_wrong_token_is_refused_and_the_batch_stays() {
            let dir = tempfile::tempdir().unwrap();
            let c = TestCollector::start(dir.path(), "127.0.0.1:0".parse().unwrap());
            let spool = spool(dir.path(), &[3]);
            let mut shipper = Shipper::new(&link(&c, dir.path(), "token-2")).unwrap();
            let err = shipper.ship_pending(&spool).await.unwrap_err();
            assert!(
                matches!(&err, ShipError::Refused { reason } if reason.contains("wrong token")),
                "{err}"
            );
            assert!(!shipper.is_connected());
            assert_eq!(pending(&spool), 1);
            assert!(merged(&c).is_empty());
        }

        #[tokio::test]
        async fn the_agent_refuses_a_collector_with_another_fingerprint() {
            let dir = tempfile::tempdir().unwrap();
            let c = TestCollector::start(dir.path(), "127.0.0.1:0".parse().unwrap());
            let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
            let pinned = hex::encode(sha2::Sha256::digest(other.cert.der().as_ref()));
            let config = LinkConfig {
                fingerprint: Some(format!("sha256:{pinned}")),
                ..link(&c, dir.path(), "token-1")
            };
            let spool = spool(dir.path(), &[3]);
            let err = Shipper::new(&config)
                .unwrap()
                .ship_pending(&spool)
                .await
                .unwrap_err();
            assert!(matches!(err, ShipError::Connect { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("not the pinned sha256:{pinned}")),
                "{text}"
            );
            assert_eq!(pending(&spool), 1);
        }

        #[tokio::test]
        async fn the_agent_trusts_a_ca_file_for_the_right_name_only() {
            let dir = tempfile::tempdir().unwrap();
            let c = TestCollector::start(dir.path(), "127.0.0.1:0".parse().unwrap());
            let spool = spool(dir.path(), &[3]);
            let by_ca = LinkConfig {
                fingerprint: None,
                ca_file: Some(c.cert_file.clone()),
                ..link(&c, dir.path(), "token-1")
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
            assert_eq!(pending(&spool), 1);
            let mut shipper = Shipper::new(&by_ca).unwrap();
            assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 1);
            assert_eq!(merged(&c), [(1, 3)]);
        }

        #[tokio::test]
        async fn the_agent_reconnects_after_the_collector_restarts() {
            let dir = tempfile::tempdir().unwrap();
            let c = TestCollector::start(dir.path(), "127.0.0.1:0".parse().unwrap());
            let spool = spool(dir.path(), &[1]);
            let mut shipper = Shipper::new(&link(&c, dir.path(), "token-1")).unwrap();
            assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 1);
            // The collector goes away and comes back on the same port; the shipper's
            // connection is dead and it finds out by sending.
            let c = c.restart().await;
            commit(&spool, 2);
            assert_eq!(shipper.ship_pending(&spool).await.unwrap(), 1);
            assert_eq!(merged(&c), [(1, 1), (2, 2)]);
            assert_eq!(shipper.stats().connections.load(Ordering::Relaxed), 2);
        }
    }

    #[tokio::test]
    async fn a_missing_token_file_is_named() {
        let err = Shipper::new(&config()).err().unwrap().to_string();
        assert!(
            err.contains("token_file") && err.contains("/nonexistent"),
            "{err}"
        );
    }
}
