//! Compact JWS (JWT) signing for the two store APIs: ES256 for App Store Connect, RS256 for
//! Google's service-account token exchange. Built on `ring` (already in the tree through rustls)
//! rather than a JWT crate: we only ever *sign* two fixed claim sets, so the whole JOSE surface
//! is a base64url join and one signature call.
//!
//! What must stay true: ES256 signatures are the 64-byte raw `r‖s` (JWS, RFC 7518 §3.4), not
//! DER — `ECDSA_P256_SHA256_FIXED_SIGNING` gives exactly that.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, RsaKeyPair};
use rustls::pki_types::PrivateKeyDer;
use serde::Serialize;

/// A key that could not be read or used for signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: no PEM private key found (expected a `-----BEGIN PRIVATE KEY-----` block)")]
    NoPem { what: String },
    #[error("{what}: expected a PKCS#8 key (`BEGIN PRIVATE KEY`), found another PEM key type")]
    NotPkcs8 { what: String },
    #[error("{what}: key rejected: {reason}")]
    Rejected { what: String, reason: String },
    #[error("signing failed")]
    Sign,
}

/// base64url without padding, as JWS uses everywhere.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The signing input `b64(header).b64(claims)` for two serializable parts.
fn signing_input(header: &impl Serialize, claims: &impl Serialize) -> String {
    // Serializing plain structs of strings and integers cannot fail.
    let h = serde_json::to_vec(header).unwrap_or_default();
    let c = serde_json::to_vec(claims).unwrap_or_default();
    format!("{}.{}", b64url(&h), b64url(&c))
}

/// Reads the first PEM private key from `pem`; `what` names its origin for error messages.
fn pem_private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, KeyError> {
    let mut reader = pem;
    match rustls_pemfile::private_key(&mut reader) {
        Ok(Some(key)) => Ok(key),
        Ok(None) | Err(_) => Err(KeyError::NoPem {
            what: what.to_owned(),
        }),
    }
}

/// Reads a key file, naming it in the error.
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// An ES256 (ECDSA P-256 / SHA-256) signer, e.g. App Store Connect's `AuthKey_<kid>.p8`.
pub struct Es256Key {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Es256Key {
    /// From a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) P-256 key; `what` names it in errors.
    pub fn from_pkcs8_pem(pem: &[u8], what: &str) -> Result<Self, KeyError> {
        let der = match pem_private_key(pem, what)? {
            PrivateKeyDer::Pkcs8(der) => der,
            _ => {
                return Err(KeyError::NotPkcs8 {
                    what: what.to_owned(),
                });
            }
        };
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|e| KeyError::Rejected {
            what: what.to_owned(),
            reason: format!("not a P-256 PKCS#8 key ({e})"),
        })?;
        Ok(Self { pair, rng })
    }

    /// The uncompressed public point (65 bytes, `04‖x‖y`), for tests and diagnostics.
    pub fn public_key(&self) -> &[u8] {
        use ring::signature::KeyPair as _;
        self.pair.public_key().as_ref()
    }

    /// A compact JWS over `header` and `claims`.
    pub fn sign_jwt(
        &self,
        header: &impl Serialize,
        claims: &impl Serialize,
    ) -> Result<String, KeyError> {
        let input = signing_input(header, claims);
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| KeyError::Sign)?;
        Ok(format!("{input}.{}", b64url(sig.as_ref())))
    }
}

/// An RS256 (RSASSA-PKCS1-v1_5 / SHA-256) signer, e.g. a Google service account's key.
pub struct Rs256Key {
    pair: RsaKeyPair,
    rng: SystemRandom,
}

impl Rs256Key {
    /// From a PEM RSA key: PKCS#8 (`BEGIN PRIVATE KEY`, what Google issues) or PKCS#1.
    pub fn from_pem(pem: &[u8], what: &str) -> Result<Self, KeyError> {
        let rejected = |e: ring::error::KeyRejected| KeyError::Rejected {
            what: what.to_owned(),
            reason: format!("not a usable RSA key ({e})"),
        };
        let pair = match pem_private_key(pem, what)? {
            PrivateKeyDer::Pkcs8(der) => RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der()),
            _ => {
                return Err(KeyError::NotPkcs8 {
                    what: what.to_owned(),
                });
            }
        }
        .map_err(rejected)?;
        Ok(Self {
            pair,
            rng: SystemRandom::new(),
        })
    }

    /// The public key as DER `RSAPublicKey`, for tests and diagnostics.
    pub fn public_key(&self) -> &[u8] {
        use ring::signature::KeyPair as _;
        self.pair.public_key().as_ref()
    }

    /// A compact JWS over `header` and `claims`.
    pub fn sign_jwt(
        &self,
        header: &impl Serialize,
        claims: &impl Serialize,
    ) -> Result<String, KeyError> {
        let input = signing_input(header, claims);
        let mut sig = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(
                &signature::RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| KeyError::Sign)?;
        Ok(format!("{input}.{}", b64url(&sig)))
    }
}

/// Test support: split and verify compact JWS tokens the way the stores' servers do.
#[cfg(test)]
pub(crate) mod verify {
    use super::*;

    /// A decoded token whose signature checked out.
    pub struct Verified {
        pub header: serde_json::Value,
        pub claims: serde_json::Value,
    }

    /// Verifies `token` with `alg` and `public_key`; panics with the reason otherwise.
    pub fn verify(
        token: &str,
        alg: &'static dyn signature::VerificationAlgorithm,
        public_key: &[u8],
    ) -> Verified {
        try_verify(token, alg, public_key).unwrap_or_else(|e| panic!("{e}: {token}"))
    }

    /// Verifies `token` with `alg` and `public_key`, saying what is wrong otherwise.
    pub fn try_verify(
        token: &str,
        alg: &'static dyn signature::VerificationAlgorithm,
        public_key: &[u8],
    ) -> Result<Verified, String> {
        let parts: Vec<&str> = token.split('.').collect();
        let [h, c, s] = parts[..] else {
            return Err("a compact JWS has three parts".into());
        };
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("signature is not base64url: {e}"))?;
        signature::UnparsedPublicKey::new(alg, public_key)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| "signature does not verify with the public key".to_owned())?;
        let json = |s: &str| -> Result<serde_json::Value, String> {
            let bytes = URL_SAFE_NO_PAD
                .decode(s)
                .map_err(|e| format!("part is not base64url: {e}"))?;
            serde_json::from_slice(&bytes).map_err(|e| format!("part is not JSON: {e}"))
        };
        Ok(Verified {
            header: json(h)?,
            claims: json(c)?,
        })
    }

    /// A fresh P-256 key as a `.p8` PEM, like the one App Store Connect lets a team download.
    pub fn generate_p8() -> String {
        let der = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .expect("generate P-256 key");
        pem_wrap("PRIVATE KEY", der.as_ref())
    }

    fn pem_wrap(label: &str, der: &[u8]) -> String {
        use base64::engine::general_purpose::STANDARD;
        let b64 = STANDARD.encode(der);
        let mut out = format!("-----BEGIN {label}-----\n");
        for chunk in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
            out.push('\n');
        }
        out.push_str(&format!("-----END {label}-----\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::verify::*;
    use super::*;

    #[test]
    fn es256_signature_is_raw_r_s_and_verifies() {
        let key = Es256Key::from_pkcs8_pem(generate_p8().as_bytes(), "test key").unwrap();
        let token = key
            .sign_jwt(
                &serde_json::json!({"alg": "ES256"}),
                &serde_json::json!({"a": 1}),
            )
            .unwrap();
        let sig = URL_SAFE_NO_PAD
            .decode(token.rsplit('.').next().unwrap())
            .unwrap();
        assert_eq!(sig.len(), 64, "JWS ES256 is r‖s, not DER");
        let v = verify(
            &token,
            &signature::ECDSA_P256_SHA256_FIXED,
            key.public_key(),
        );
        assert_eq!(v.claims["a"], 1);
    }

    #[test]
    fn reads_a_key_shaped_like_apples_authkey_p8() {
        // Apple's .p8 keys (`MIGTAgEAMBMG…`) carry the curve parameters inside ECPrivateKey,
        // which ring-generated keys do not; the fixture has that shape (see the README).
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/sources/AuthKey_TEST000000.p8"
        ))
        .unwrap();
        assert!(pem.starts_with(b"-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMG"));
        let key = Es256Key::from_pkcs8_pem(&pem, "AuthKey_TEST000000.p8").unwrap();
        // The public point as `openssl pkey -pubout` prints it.
        let expected = "046ecd43398e5a0cc957c2c4e4413e27a8bf90ee48cd371076382f12f7edab1d\
                        720f2f2b7a3f745b97c49b0a09a39a0a56d92dc8fd8f0e0f2b9a1e5f944a47729f";
        assert_eq!(hex::encode(key.public_key()), expected);
        let token = key
            .sign_jwt(&serde_json::json!({"alg": "ES256"}), &serde_json::json!({}))
            .unwrap();
        verify(
            &token,
            &signature::ECDSA_P256_SHA256_FIXED,
            key.public_key(),
        );
    }

    #[test]
    fn wrong_key_types_are_named_errors() {
        let err = Es256Key::from_pkcs8_pem(b"not a pem", "AuthKey_X.p8")
            .err()
            .unwrap();
        assert!(err.to_string().contains("AuthKey_X.p8"), "{err}");
        assert!(err.to_string().contains("BEGIN PRIVATE KEY"), "{err}");
        // An RSA key is a well-formed PKCS#8 key, but not P-256.
        let sa = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/sources/test-service-account.json"
        ))
        .unwrap();
        let sa: serde_json::Value = serde_json::from_str(&sa).unwrap();
        let rsa_pem = sa["private_key"].as_str().unwrap();
        let err = Es256Key::from_pkcs8_pem(rsa_pem.as_bytes(), "AuthKey_X.p8")
            .err()
            .unwrap();
        assert!(matches!(err, KeyError::Rejected { .. }), "{err}");
        // And the other way round.
        let err = Rs256Key::from_pem(generate_p8().as_bytes(), "sa.json")
            .err()
            .unwrap();
        assert!(matches!(err, KeyError::Rejected { .. }), "{err}");
    }
}
