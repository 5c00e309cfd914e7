//! The agent's QUIC link to the collector: sends spooled batches and live samples.
//!
//! What must stay true: a batch leaves the spool only after the collector's `Ack` for its
//! sequence number, so a lost connection, a crash or a refusal at any point leaves it spooled
//! to be sent again (the collector merges a given `(agent_id, seq)` once). The collector is
//! trusted only through the configured CA file or certificate fingerprint; TLS 1.3 only.

use std::io::BufReader;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use earshot_common::wire::{
    self, ALPN, AgentHealth, AgentMessage, CollectorMessage, Hello, LiveSample, MAX_FRAME,
    PROTOCOL_VERSION, WireError,
};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::spool::{Spool, SpoolError};

/// Batches read from the spool per round.
const PAGE: usize = 32;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);
/// A large batch may take the collector a while to merge.
const ACK_TIMEOUT: Duration = Duration::from_secs(120);
const KEEP_ALIVE: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Collector replies are small; a bigger length prefix is a broken or hostile peer.
const MAX_REPLY: usize = 64 * 1024;
/// Application close code the collector uses when it refuses an agent (see collector::link).
const CLOSE_REFUSED: u32 = 1;

/// The `[collector]` table of agent.toml: where the collector is and how each side proves
/// who it is.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// The collector's QUIC address, `host:port` ("collector.example.net:4433",
    /// "127.0.0.1:4433", "[2001:db8::1]:4433").
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

pub struct Shipper {
    endpoint: quinn::Endpoint,
    address: String,
    server_name: String,
    agent_id: String,
    token: String,
    connection: Option<quinn::Connection>,
    stats: Arc<ShipStats>,
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
        crate::config::warn_if_loose(&config.token_file, "collector.token_file");
        if token.is_empty() {
            return Err(ShipError::File {
                key: "token_file",
                path: config.token_file.clone(),
                reason: "the file is empty".into(),
            });
        }
        let crypto = client_crypto(config)?;
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
            agent_id: config.agent_id.clone(),
            token,
            connection: None,
            stats: Arc::new(ShipStats::default()),
        })
    }

    pub fn stats(&self) -> Arc<ShipStats> {
        self.stats.clone()
    }

    /// Whether a connection is up right now (without trying to make one).
    pub fn is_connected(&self) -> bool {
        self.connection
            .as_ref()
            .is_some_and(|c| c.close_reason().is_none())
    }

    /// Connects if needed (Hello → Welcome), sends every pending batch of the spool, each on
    /// its own stream, and deletes each after its `Ack`. Returns how many were acknowledged.
    /// A lost connection is re-established once per call; after that the error is returned
    /// and the rest stays spooled for the next call.
    pub async fn ship_pending(&mut self, spool: &Arc<Mutex<Spool>>) -> Result<usize, ShipError> {
        let mut acked = 0;
        let mut reconnected = false;
        loop {
            let agent_id = self.agent_id.clone();
            let batches = with_spool(spool, move |s| s.pending(&agent_id, PAGE)).await?;
            if batches.is_empty() {
                return Ok(acked);
            }
            for batch in batches {
                let seq = batch.seq;
                let frame = wire::compress_batch(&batch)
                    .and_then(|z| wire::encode_frame(&AgentMessage::CompressedBatch(z)))
                    .map_err(|error| ShipError::Encode { seq, error })?;
                let reply = loop {
                    let conn = self.connection().await?;
                    match request(&conn, &frame, ACK_TIMEOUT).await {
                        Ok(reply) => break reply,
                        Err(ShipError::Link(reason)) if !reconnected => {
                            tracing::debug!(seq, "link lost ({reason}); reconnecting");
                            self.connection = None;
                            reconnected = true;
                        }
                        Err(e) => {
                            self.connection = None;
                            return Err(e);
                        }
                    }
                };
                match reply {
                    CollectorMessage::Ack { seq: got } if got == seq => {
                        with_spool(spool, move |s| s.ack(seq)).await?;
                        self.stats.batches_acked.fetch_add(1, Ordering::Relaxed);
                        acked += 1;
                    }
                    CollectorMessage::Ack { seq: got } => {
                        self.drop_connection("unexpected ack");
                        return Err(ShipError::Protocol(format!(
                            "sent batch {seq}, got the ack for {got}"
                        )));
                    }
                    CollectorMessage::Refused { reason, retry } => {
                        self.stats.batches_refused.fetch_add(1, Ordering::Relaxed);
                        let reason = format!("batch {seq}: {reason}");
                        return Err(if retry {
                            ShipError::RetryLater { reason }
                        } else {
                            ShipError::Refused { reason }
                        });
                    }
                    CollectorMessage::Welcome { .. } | CollectorMessage::Noted => {
                        self.drop_connection("unexpected welcome");
                        return Err(ShipError::Protocol(format!(
                            "sent batch {seq}, got {reply:?}"
                        )));
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
        let conn = self
            .connection
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .ok_or(ShipError::NotConnected)?;
        let body = postcard::to_stdvec(sample).map_err(|e| ShipError::Datagram(e.to_string()))?;
        match conn.max_datagram_size() {
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
        conn.send_datagram(body.into())
            .map_err(|e| ShipError::Datagram(e.to_string()))
    }

    /// Sends the agent's own health on its own stream and waits for `Noted`. Uses the
    /// connection that is up; does not make one (health is not worth a reconnect storm).
    pub async fn send_health(&mut self, health: &AgentHealth) -> Result<(), ShipError> {
        let conn = self
            .connection
            .as_ref()
            .filter(|c| c.close_reason().is_none())
            .cloned()
            .ok_or(ShipError::NotConnected)?;
        let frame = wire::encode_frame(&AgentMessage::Health(health.clone()))
            .map_err(|e| ShipError::Protocol(e.to_string()))?;
        match request(&conn, &frame, HELLO_TIMEOUT).await? {
            CollectorMessage::Noted => Ok(()),
            CollectorMessage::Refused { reason, retry } => Err(if retry {
                ShipError::RetryLater { reason }
            } else {
                ShipError::Refused { reason }
            }),
            other => Err(ShipError::Protocol(format!("sent health, got {other:?}"))),
        }
    }

    /// Makes sure a connection is up (Hello → Welcome).
    pub async fn connect(&mut self) -> Result<(), ShipError> {
        self.connection().await.map(drop)
    }

    async fn connection(&mut self) -> Result<quinn::Connection, ShipError> {
        if let Some(conn) = &self.connection
            && conn.close_reason().is_none()
        {
            return Ok(conn.clone());
        }
        self.connection = None;
        let conn = self.handshake().await?;
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        tracing::info!(address = %self.address, "connected to the collector");
        self.connection = Some(conn.clone());
        Ok(conn)
    }

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
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| connect_err(format!("no handshake within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| connect_err(e.to_string()))?;
        let hello = AgentMessage::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            agent_id: self.agent_id.clone(),
            token: self.token.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
        });
        let frame = wire::encode_frame(&hello).map_err(|e| ShipError::Protocol(e.to_string()))?;
        let reply = match request(&conn, &frame, HELLO_TIMEOUT).await {
            Ok(reply) => reply,
            Err(e) => {
                conn.close(0u32.into(), b"hello failed");
                return Err(e);
            }
        };
        match reply {
            CollectorMessage::Welcome { protocol_version }
                if protocol_version == PROTOCOL_VERSION =>
            {
                Ok(conn)
            }
            CollectorMessage::Welcome { protocol_version } => {
                conn.close(0u32.into(), b"version mismatch");
                Err(ShipError::Protocol(format!(
                    "the collector speaks protocol {protocol_version}, this agent {PROTOCOL_VERSION}"
                )))
            }
            CollectorMessage::Refused { reason, retry } => {
                conn.close(0u32.into(), b"refused");
                Err(if retry {
                    ShipError::RetryLater { reason }
                } else {
                    ShipError::Refused { reason }
                })
            }
            CollectorMessage::Ack { .. } | CollectorMessage::Noted => {
                conn.close(0u32.into(), b"unexpected ack");
                Err(ShipError::Protocol(format!(
                    "the collector answered Hello with {reply:?}"
                )))
            }
        }
    }

    fn drop_connection(&mut self, why: &'static str) {
        if let Some(conn) = self.connection.take() {
            conn.close(0u32.into(), why.as_bytes());
        }
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
        self.endpoint.close(0u32.into(), b"agent stopping");
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

/// One request on its own bidirectional stream: frame out, one frame back.
async fn request(
    conn: &quinn::Connection,
    frame: &[u8],
    wait: Duration,
) -> Result<CollectorMessage, ShipError> {
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(link_lost)?;
        send.write_all(frame)
            .await
            .map_err(|e| link_lost_stream(conn, e))?;
        send.finish().map_err(|e| link_lost_stream(conn, e))?;
        read_frame(conn, &mut recv, MAX_REPLY).await
    };
    let body = tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| ShipError::Timeout(wait))??;
    wire::decode_body(&body).map_err(|e| ShipError::Protocol(format!("undecodable reply: {e}")))
}

/// Reads one length-prefixed frame, refusing a length over `max` before allocating for it.
async fn read_frame(
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Vec<u8>, ShipError> {
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix)
        .await
        .map_err(|e| link_lost_stream(conn, e))?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max.min(MAX_FRAME) {
        return Err(ShipError::Protocol(format!(
            "reply of {len} bytes is over the {max}-byte limit"
        )));
    }
    let mut body = Vec::with_capacity(len);
    while body.len() < len {
        match recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(|e| link_lost_stream(conn, e))?
        {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => {
                return Err(ShipError::Link(format!(
                    "reply ended after {} of {len} bytes",
                    body.len()
                )));
            }
        }
    }
    Ok(body)
}

fn link_lost(e: quinn::ConnectionError) -> ShipError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(CLOSE_REFUSED) =>
        {
            ShipError::Refused {
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            }
        }
        e => ShipError::Link(e.to_string()),
    }
}

/// A stream error usually means the connection went away; say why it did when it did.
fn link_lost_stream(conn: &quinn::Connection, e: impl std::fmt::Display) -> ShipError {
    match conn.close_reason() {
        Some(reason) => link_lost(reason),
        None => ShipError::Link(e.to_string()),
    }
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

/// Parses `sha256:<64 hex digits>` (colons between byte pairs allowed, as some tools print).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], ShipError> {
    let bad = || {
        config_err(
            "fingerprint",
            format!("expected \"sha256:\" and 64 hex digits, got {text:?}"),
        )
    };
    let hex_part = text.trim().strip_prefix("sha256:").ok_or_else(bad)?;
    let digits: String = hex_part.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).map_err(|_| bad())?;
    Ok(out)
}

fn client_crypto(config: &LinkConfig) -> Result<rustls::ClientConfig, ShipError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let roots = config.ca_file.as_deref().map(load_roots).transpose()?;
    let mut crypto = match (&config.fingerprint, roots) {
        (None, Some(roots)) => builder.with_root_certificates(roots).with_no_client_auth(),
        (Some(fp), roots) => {
            let ca = match roots {
                Some(roots) => Some(
                    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| config_err("ca_file", e.to_string()))?,
                ),
                None => None,
            };
            let verifier = PinnedCertVerifier {
                pin: parse_fingerprint(fp)?,
                ca,
                algorithms: provider.signature_verification_algorithms,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        (None, None) => return Err(config_err("ca_file", "set `ca_file` or `fingerprint`")),
    };
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    Ok(crypto)
}

fn load_roots(path: &Path) -> Result<rustls::RootCertStore, ShipError> {
    let file_err = |reason: String| ShipError::File {
        key: "ca_file",
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| file_err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut BufReader::new(file)) {
        let cert = cert.map_err(|e| file_err(e.to_string()))?;
        roots.add(cert).map_err(|e| file_err(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(file_err("no PEM certificate in it".into()));
    }
    Ok(roots)
}

/// Trusts the collector's certificate by the SHA-256 of its DER encoding (and, with a CA
/// file too, by that CA). The handshake signature is still verified, so only the holder of
/// the pinned certificate's key gets through.
#[derive(Debug)]
struct PinnedCertVerifier {
    pin: [u8; 32],
    ca: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if seen != self.pin {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch {
                    seen: hex::encode(seen),
                    pinned: hex::encode(self.pin),
                }))),
            ));
        }
        match &self.ca {
            Some(ca) => {
                ca.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The client config allows TLS 1.3 only; reaching this is a bug, not a peer's choice.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[derive(thiserror::Error)]
#[error("the collector's certificate fingerprint is sha256:{seen}, not the pinned sha256:{pinned}")]
struct PinMismatch {
    seen: String,
    pinned: String,
}

// rustls shows the cause of a certificate error with `Debug`: make that the message.
impl std::fmt::Debug for PinMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
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

    #[tokio::test]
    async fn a_missing_token_file_is_named() {
        let err = Shipper::new(&config()).err().unwrap().to_string();
        assert!(
            err.contains("token_file") && err.contains("/nonexistent"),
            "{err}"
        );
    }
}
