//! Bearer tokens. Only SHA-256 digests of tokens are configured, so a leaked config file does
//! not leak tokens; a presented token is hashed and compared with every digest in constant
//! time (no early exit on the first differing byte, none on the first matching token).

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use sha2::{Digest, Sha256};

use super::{ApiError, ApiToken};

/// The scope that reads every tenant.
pub const ADMIN_SCOPE: &str = "*";

fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

/// SHA-256 of a token, as configured in [`ApiToken::token_sha256`].
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token the request presents, or 401.
pub fn authenticate<'a>(
    tokens: &'a [ApiToken],
    headers: &HeaderMap,
) -> Result<&'a ApiToken, ApiError> {
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
    let digest = token_digest(presented);
    let mut found = None;
    for t in tokens {
        if ct_eq(&t.token_sha256, &digest) && found.is_none() {
            found = Some(t);
        }
    }
    found.ok_or_else(|| ApiError::unauthorized("unknown token", true))
}

impl ApiToken {
    pub fn is_admin(&self) -> bool {
        self.tenants.iter().any(|t| t == ADMIN_SCOPE)
    }

    pub fn may_read(&self, tenant: &str) -> bool {
        self.is_admin() || self.tenants.iter().any(|t| t == tenant)
    }
}

/// 404 for what cannot be a tenant name (letters, digits, '-', '_', '.'; at most 64), then
/// 403 unless the token's scope holds the tenant.
pub fn authorize(token: &ApiToken, tenant: &str) -> Result<(), ApiError> {
    let plain = !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "no such tenant: tenant names are letters, digits, '-', '_' and '.', at most 64",
        ));
    }
    if token.may_read(tenant) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "token `{}` may not read tenant `{tenant}`",
            token.name
        )))
    }
}
