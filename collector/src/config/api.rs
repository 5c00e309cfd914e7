//! `[http]` and `[[api_tokens]]`: where the HTTP API listens, and who may ask it what.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use earshot_common::tenant::Scope;
use serde::Deserialize;

use super::{Check, Sha256Digest};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// TCP address of the HTTP API, `IP:port`. The API speaks plain HTTP: put a TLS proxy in
    /// front of it before exposing it beyond the host.
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// Longest `from`..`to` range one query may ask for, in days.
    #[serde(default = "default_max_range_days")]
    pub max_range_days: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: default_http_listen(),
            max_range_days: default_max_range_days(),
        }
    }
}

impl HttpConfig {
    pub(super) fn check(&self) -> Check {
        if self.max_range_days == 0 {
            return Err((
                "http.max_range_days".into(),
                "expected at least 1 day".into(),
            ));
        }
        Ok(())
    }
}

/// What an API token may do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenScope {
    /// Read its tenants' data (every GET).
    #[default]
    Read,
    /// Only `POST …/events` for its tenants; it reads nothing.
    Ingest,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenEntry {
    /// Who holds the token (shown in logs, never the token).
    pub name: String,
    /// SHA-256 (64 hex digits) of the bearer token.
    pub token_sha256: Sha256Digest,
    /// Tenants this token may read; `"*"` = all, and the admin scope. Each is a tenant name
    /// (see [`earshot_common::tenant`]) or `"*"`.
    pub tenants: Vec<Scope>,
    /// `"read"` (default): reads its tenants. `"ingest"`: may only post events for its
    /// tenants (`POST …/events`), for the platform's own event producers.
    #[serde(default)]
    pub scope: TokenScope,
}

pub(super) fn check_tokens(tokens: &[ApiTokenEntry]) -> Check {
    let mut names = BTreeSet::new();
    let mut hashes = BTreeSet::new();
    for (i, token) in tokens.iter().enumerate() {
        if !names.insert(token.name.as_str()) {
            return Err((
                format!("api_tokens[{i}].name"),
                format!("token {:?} is listed twice", token.name),
            ));
        }
        // At start, not per request: no timing to learn from.
        if !hashes.insert(token.token_sha256.0) {
            return Err((
                format!("api_tokens[{i}].token_sha256"),
                "the same token is listed twice".into(),
            ));
        }
        super::agents::check_scopes(&token.tenants)
            .map_err(|reason| (format!("api_tokens[{i}].tenants"), reason))?;
    }
    Ok(())
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_range_days() -> u32 {
    400
}

#[cfg(test)]
mod tests {
    use super::super::tests::{HASH, fails, parse};
    use super::*;

    #[test]
    fn bad_socket_address() {
        fails(
            "[http]\nlisten = \"localhost\"\n",
            "http.listen",
            "socket address",
        );
    }

    #[test]
    fn token_scopes() {
        let text = format!(
            r#"
[[api_tokens]]
name = "reader"
token_sha256 = "{HASH}"
tenants = ["radio1"]
[[api_tokens]]
name = "producer"
token_sha256 = "{}"
tenants = ["radio1"]
scope = "ingest"
"#,
            "a".repeat(64)
        );
        let c = parse(&text).unwrap();
        assert_eq!(c.api_tokens[0].scope, TokenScope::Read);
        assert_eq!(c.api_tokens[1].scope, TokenScope::Ingest);
        let api = crate::api::ApiConfig::from_config(&c);
        assert_eq!(api.tokens.len(), 2);
        assert!(
            api.tokens[1].tenants.is_empty(),
            "an ingest token reads nothing"
        );
        let ingest = crate::api::ApiConfig::ingest_tokens(&c);
        assert_eq!(
            (ingest.len(), ingest[0].tenants.as_slice()),
            (1, &["radio1".to_string()][..])
        );
        fails(
            &format!(
                "[[api_tokens]]\nname = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"*\"]\nscope = \"write\"\n"
            ),
            "api_tokens[0].scope",
            "unknown variant `write`",
        );
    }

    #[test]
    fn token_mistakes() {
        fails(
            &format!("[[api_tokens]]\nname = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = []\n"),
            "api_tokens[0].tenants",
            "at least one tenant",
        );
        fails(
            &format!(
                "[[api_tokens]]\nname = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"radio/1\"]\n"
            ),
            "api_tokens[0].tenants[0]",
            "\"radio/1\" is neither a tenant name nor \"*\"",
        );
        let one =
            format!("[[api_tokens]]\nname = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"*\"]\n");
        fails(&format!("{one}{one}"), "api_tokens[1].name", "listed twice");
        let other = one.replace("name = \"a\"", "name = \"b\"");
        fails(
            &format!("{one}{other}"),
            "api_tokens[1].token_sha256",
            "listed twice",
        );
    }
}
