//! Listener identity: a keyed hash of (tenant, client IP, User-Agent).
//!
//! The key is derived per tenant and per epoch (a calendar month) from a secret that every
//! agent of a deployment shares, so one listener hashes the same on every host within an epoch
//! and cannot be followed across epochs. IPv6 addresses are truncated to their /64 before
//! hashing. The raw address is only ever borrowed here; nothing keeps it.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The first 64 bits of the listener's HMAC. Uniform, so sketches use it directly.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct ListenerId(pub u64);

/// The per-(tenant, epoch) hashing key, derived from the deployment secret.
#[derive(Clone)]
pub struct ListenerKeyring {
    mac: HmacSha256,
}

impl ListenerKeyring {
    /// Derives the key for `tenant` in `epoch` (e.g. `2026-11`) from the shared secret.
    pub fn derive(secret: &[u8], tenant: &str, epoch: &str) -> Self {
        let mut kdf = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        kdf.update(b"earshot/listener/v1\0");
        kdf.update(tenant.as_bytes());
        kdf.update(b"\0");
        kdf.update(epoch.as_bytes());
        let key = kdf.finalize().into_bytes();
        ListenerKeyring {
            mac: HmacSha256::new_from_slice(&key).expect("HMAC takes keys of any length"),
        }
    }

    /// Hashes one listener. `user_agent` is the User-Agent as logged (after unescaping).
    pub fn listener(&self, ip: IpAddr, user_agent: &[u8]) -> ListenerId {
        let mut mac = self.mac.clone();
        match canonical_ip(ip) {
            IpAddr::V4(v4) => {
                mac.update(&[4]);
                mac.update(&v4.octets());
            }
            IpAddr::V6(v6) => {
                mac.update(&[6]);
                mac.update(&v6.octets()[..8]);
            }
        }
        mac.update(user_agent);
        let out = mac.finalize().into_bytes();
        ListenerId(u64::from_be_bytes(
            out[..8].try_into().expect("32-byte HMAC"),
        ))
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 listener it carries.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_listener_same_hash_different_tenant_or_epoch_differs() {
        let k = ListenerKeyring::derive(b"secret", "radio1", "2026-11");
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let a = k.listener(ip, b"VLC/3.0");
        assert_eq!(a, k.listener(ip, b"VLC/3.0"));
        assert_ne!(a, k.listener(ip, b"VLC/3.1"));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(a, k.listener(mapped, b"VLC/3.0"));
        assert_ne!(
            a,
            ListenerKeyring::derive(b"secret", "radio2", "2026-11").listener(ip, b"VLC/3.0")
        );
        assert_ne!(
            a,
            ListenerKeyring::derive(b"secret", "radio1", "2026-12").listener(ip, b"VLC/3.0")
        );
        assert_ne!(
            a,
            ListenerKeyring::derive(b"other", "radio1", "2026-11").listener(ip, b"VLC/3.0")
        );
    }

    #[test]
    fn ipv6_is_truncated_to_64() {
        let k = ListenerKeyring::derive(b"s", "t", "2026-11");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(k.listener(a, b"x"), k.listener(b, b"x"));
        assert_ne!(k.listener(a, b"x"), k.listener(c, b"x"));
    }
}
