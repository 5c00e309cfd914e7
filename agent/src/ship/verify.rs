//! How the agent trusts the collector: a CA file, a pinned certificate fingerprint, or both;
//! TLS 1.3 only, ALPN `earshot/1`.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use earshot_common::wire::ALPN;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

use super::{LinkConfig, ShipError, config_err};

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

pub(super) fn client_crypto(config: &LinkConfig) -> Result<rustls::ClientConfig, ShipError> {
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
