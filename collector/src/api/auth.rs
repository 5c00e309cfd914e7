//! Bearer tokens. Only SHA-256 digests of tokens are configured, so a leaked config file does
//! not leak tokens; a presented token is hashed and compared with every digest in constant
//! time (no early exit on the first differing byte, none on the first matching token).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use earshot_common::tenant::{Scope, TenantName};
use sha2::{Digest, Sha256};

use super::{ApiError, ApiToken};
use crate::config::Sha256Digest;

/// The scope that reads every tenant.
pub const ADMIN_SCOPE: &str = earshot_common::tenant::ALL_TENANTS;

/// SHA-256 of a token, as configured in [`ApiToken::token_sha256`].
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A known token: its digest and what it may read (or, for an ingest token, post for).
#[derive(Debug, Clone)]
pub(super) struct Credential {
    pub name: String,
    digest: Sha256Digest,
    pub scopes: Vec<Scope>,
}

impl Credential {
    /// `tenants` entries that are neither a tenant name nor `"*"` allow nothing (the config
    /// refuses them; a hand-made [`ApiToken`] may still hold one).
    pub fn new(token: &ApiToken) -> Credential {
        let scopes = token
            .tenants
            .iter()
            .filter_map(|t| match t.parse::<Scope>() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(token = token.name, "API token scope ignored: {e}");
                    None
                }
            })
            .collect();
        Credential {
            name: token.name.clone(),
            digest: Sha256Digest(token.token_sha256),
            scopes,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.scopes.iter().any(Scope::is_all)
    }

    pub fn may_read(&self, tenant: &TenantName) -> bool {
        earshot_common::tenant::any_allows(&self.scopes, tenant)
    }
}

/// The tenant named by a path: 404 for what cannot be a tenant name.
pub(super) fn tenant_of_path(text: &str) -> Result<TenantName, ApiError> {
    TenantName::new(text)
        .map_err(|_| ApiError::not_found(format!("no such tenant: {}", TenantName::RULE)))
}

/// The token the request presents, or 401.
pub(super) fn authenticate<'a>(
    tokens: &'a [Credential],
    headers: &HeaderMap,
) -> Result<&'a Credential, ApiError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing `Authorization: Bearer <token>` header",
            false,
        ));
    };
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`", true)
        })?;
    let digest = Sha256Digest::of(presented.as_bytes());
    // Every digest is compared (in constant time), whichever matches.
    let mut found = None;
    for t in tokens {
        if t.digest == digest && found.is_none() {
            found = Some(t);
        }
    }
    found.ok_or_else(|| ApiError::unauthorized("unknown token", true))
}

/// 403 unless the token's scope holds the tenant.
pub(super) fn authorize(token: &Credential, tenant: &TenantName) -> Result<(), ApiError> {
    if token.may_read(tenant) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token `{}` may not read tenant `{tenant}`",
            token.name
        )))
    }
}
