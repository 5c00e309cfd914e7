//! SHA-256 digests of secrets (agent and API tokens), as the config writes them. Only digests
//! are configured, so a leaked config file leaks no token; a presented token is hashed and
//! its digest compared in constant time, so the time an answer takes tells nothing about how
//! much of a digest matched.

use std::fmt;

use serde::Deserialize;
use subtle::ConstantTimeEq;

/// A SHA-256 digest written as 64 hex digits. `==` compares in constant time.
#[derive(Clone, Copy)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn of(data: &[u8]) -> Sha256Digest {
        use sha2::Digest;
        Sha256Digest(sha2::Sha256::digest(data).into())
    }

    /// Whether `secret` hashes to this digest (in constant time).
    pub fn matches(&self, secret: &[u8]) -> bool {
        *self == Sha256Digest::of(secret)
    }
}

impl ConstantTimeEq for Sha256Digest {
    fn ct_eq(&self, other: &Sha256Digest) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Sha256Digest {
    fn eq(&self, other: &Sha256Digest) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Sha256Digest {}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", hex::encode(self.0))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut out).map_err(|_| {
            serde::de::Error::custom(format!("expected 64 hex digits (a SHA-256), got {text:?}"))
        })?;
        Ok(Sha256Digest(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_compare_by_value() {
        // SHA-256("test"), as `sha256sum` prints it.
        let d = Sha256Digest::of(b"test");
        assert_eq!(
            d.to_string(),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert!(d.matches(b"test") && !d.matches(b"tesu"));
        let mut other = d;
        other.0[31] ^= 1;
        assert_ne!(d, other);
        assert_eq!(d, Sha256Digest::of(b"test"));
    }
}
