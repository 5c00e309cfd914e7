//! `[quic]`: where agents connect.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuicConfig {
    /// UDP address agents connect to, `IP:port`.
    #[serde(default = "default_quic_listen")]
    pub listen: SocketAddr,
    /// PEM certificate (chain) the collector presents to agents.
    #[serde(default = "default_cert_file")]
    pub cert_file: PathBuf,
    /// PEM private key of that certificate. Keep it 0600.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            listen: default_quic_listen(),
            cert_file: default_cert_file(),
            key_file: default_key_file(),
        }
    }
}

fn default_quic_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 4433))
}
fn default_cert_file() -> PathBuf {
    PathBuf::from("/etc/earshot/collector.crt")
}
fn default_key_file() -> PathBuf {
    PathBuf::from("/etc/earshot/collector.key")
}
