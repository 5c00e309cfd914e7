//! The collector's certificate: making a self-signed one, writing it and its key (the key
//! readable by its owner only), loading them, and the `sha256:<hex>` fingerprint agents pin.
//!
//! Agents trust the collector either through a CA file or through that fingerprint, so a
//! self-signed certificate is a complete setup, not a test-only shortcut.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use earshot_common::wire::ALPN;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path} exists (use --force to overwrite)")]
    Exists { path: PathBuf },
    #[error("TLS setup: {0}")]
    Rustls(String),
}

// Causes are kept in the message (not as a `source`) so a `{:#}` chain says them once.
impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> Self {
        TlsError::Generate(e.to_string())
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e.to_string())
    }
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A freshly made self-signed certificate and its key.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl SelfSigned {
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    pub fn key_der(&self) -> Result<PrivateKeyDer<'static>, TlsError> {
        rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| file_err(Path::new("<generated key>"), "unreadable key"))
    }
}

/// Makes a self-signed certificate valid for `names` (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> Result<SelfSigned, TlsError> {
    let certified = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok(SelfSigned {
        cert_pem: certified.cert.pem(),
        key_pem: certified.key_pair.serialize_pem(),
        cert_der: certified.cert.der().clone(),
    })
}

/// The names a collector's self-signed certificate covers: loopback, the host's name when it
/// can be read, and the listen address unless it is the unspecified address.
pub fn default_names(listen: std::net::SocketAddr) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(host.trim().to_string());
    }
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.retain(|n| !n.is_empty());
    names.sort();
    names.dedup();
    names
}

/// `sha256:<hex>` of a certificate's DER encoding: what agents put in `fingerprint`.
pub fn fingerprint(cert_der: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(cert_der)))
}

/// The fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of_file(path: &Path) -> Result<String, TlsError> {
    let certs = load_certs(path)?;
    Ok(fingerprint(&certs[0]))
}

/// Writes the certificate (0644) and key (0600).
pub fn write_cert_and_key(
    cert: &SelfSigned,
    cert_path: &Path,
    key_path: &Path,
    overwrite: bool,
) -> Result<(), TlsError> {
    write_file(cert_path, cert.cert_pem.as_bytes(), 0o644, overwrite)?;
    write_file(key_path, cert.key_pem.as_bytes(), 0o600, overwrite)
}

/// Writes a secret (a key, a token) readable by its owner only. Without `overwrite`, an
/// existing file is an error and stays as it was.
pub fn write_private(path: &Path, contents: &[u8], overwrite: bool) -> Result<(), TlsError> {
    write_file(path, contents, 0o600, overwrite)
}

/// Writes `contents` with `mode`. The file is created with that mode from the start (a
/// secret is never readable by others, not even briefly); an overwritten file gets it too.
pub fn write_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    overwrite: bool,
) -> Result<(), TlsError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut options = std::fs::OpenOptions::new();
    options.write(true).mode(mode);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => TlsError::Exists {
            path: path.to_path_buf(),
        },
        _ => file_err(path, e),
    })?;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| file_err(path, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| file_err(path, e))
}

pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let file = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .map_err(|e| file_err(path, e))?
        .ok_or_else(|| file_err(path, "no PEM private key in it"))
}

/// The collector's TLS: 1.3 only, ALPN `earshot/1` (a client offering anything else fails
/// the handshake), no client certificates (agents prove themselves with a token).
pub fn server_crypto(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    Ok(crypto)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn written_certificate_loads_back_with_the_same_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let cert = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (crt, key) = (dir.path().join("c.crt"), dir.path().join("c.key"));
        write_cert_and_key(&cert, &crt, &key, false).unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fingerprint_of_file(&crt).unwrap(), cert.fingerprint());
        assert!(cert.fingerprint().starts_with("sha256:") && cert.fingerprint().len() == 7 + 64);
        let config = server_crypto(load_certs(&crt).unwrap(), load_key(&key).unwrap()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"earshot/1".to_vec()]);
    }

    #[test]
    fn existing_files_are_not_overwritten_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.token");
        write_private(&path, b"one", false).unwrap();
        let err = write_private(&path, b"two", false).unwrap_err();
        assert!(matches!(err, TlsError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"two", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_pem_without_certificates_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.crt");
        std::fs::write(&path, "nothing here\n").unwrap();
        let err = load_certs(&path).unwrap_err().to_string();
        assert!(
            err.contains("empty.crt") && err.contains("no PEM certificate"),
            "{err}"
        );
        assert!(load_key(&path).is_err());
    }
}
