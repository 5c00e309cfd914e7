//! What every endpoint checks before it does anything, as axum extractors, in this order:
//! the bearer token (401), the path's tenant (404 for what is not a tenant name, 403 outside
//! the token's scope), then the query string: a parameter a tenant's endpoint does not take
//! is a 400 naming the ones it does, and the ones it takes are parsed into the endpoint's own
//! type (400 with what was expected). A handler that receives a [`TenantRequest`] has
//! nothing left to check.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use earshot_common::tenant::TenantName;

use super::auth::{self, Credential};
use super::routes::Param;
use super::{ApiError, AppState};

/// The query string, by name (a repeated name keeps its last value).
pub(super) type QueryArgs = HashMap<String, String>;

/// What an endpoint's own parameters are parsed from.
pub(super) struct Args<'a> {
    pub state: &'a AppState,
    pub tenant: &'a TenantName,
    /// The path's parameters besides the tenant (`dimension`).
    pub path: &'a HashMap<String, String>,
    pub query: &'a QueryArgs,
}

impl Args<'_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// The parameter, unless absent or empty.
    pub fn nonempty(&self, name: &str) -> Option<String> {
        self.get(name).filter(|s| !s.is_empty()).map(str::to_owned)
    }
}

/// An endpoint's query parameters as a type: the names it takes (what the route table and
/// the OpenAPI document list) and how they are parsed.
pub(super) trait QueryParams: Sized {
    const QUERY: &'static [Param];
    fn parse(args: &Args<'_>) -> Result<Self, ApiError>;
}

/// No parameters.
impl QueryParams for () {
    const QUERY: &'static [Param] = &[];
    fn parse(_: &Args<'_>) -> Result<(), ApiError> {
        Ok(())
    }
}

/// 400 for the first (by name) parameter that is not in `allowed`.
pub(super) fn only(query: &QueryArgs, allowed: &[&str]) -> Result<(), ApiError> {
    let unknown = query
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .min();
    match unknown {
        None => Ok(()),
        Some(unknown) => {
            let takes = if allowed.is_empty() {
                "no parameters".to_string()
            } else {
                allowed.join(", ")
            };
            Err(ApiError::bad_request(format!(
                "unknown parameter `{unknown}`; this endpoint takes {takes}"
            )))
        }
    }
}

fn names(params: &[Param]) -> Vec<&'static str> {
    params.iter().map(|p| p.name).collect()
}

async fn query_args(parts: &mut Parts, st: &AppState) -> Result<QueryArgs, ApiError> {
    let Query(q) = Query::<QueryArgs>::from_request_parts(parts, st)
        .await
        .map_err(|e| ApiError::bad_request(format!("bad query string: {e}")))?;
    Ok(q)
}

/// The path's parameters; the tenant taken out, not yet checked.
async fn path_args(
    parts: &mut Parts,
    st: &AppState,
) -> Result<(String, HashMap<String, String>), ApiError> {
    let Path(mut path) = Path::<HashMap<String, String>>::from_request_parts(parts, st)
        .await
        .map_err(|e| ApiError::bad_request(format!("bad tenant in the path: {e}")))?;
    let tenant = path.remove("tenant").unwrap_or_default();
    Ok((tenant, path))
}

/// A read token for the path's tenant, and the query string: what [`TenantRequest`] checks
/// before it parses the endpoint's parameters. An endpoint whose parameters are no
/// [`QueryParams`] type checks them with [`TenantScoped::only`].
pub(super) struct TenantScoped {
    pub tenant: TenantName,
    pub path: HashMap<String, String>,
    pub query: QueryArgs,
}

impl TenantScoped {
    /// The tenant and the query string, if it holds only parameters of `allowed`.
    pub fn only(self, allowed: &[&str]) -> Result<(TenantName, QueryArgs), ApiError> {
        only(&self.query, allowed)?;
        Ok((self.tenant, self.query))
    }
}

impl FromRequestParts<AppState> for TenantScoped {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = auth::authenticate(&st.credentials.read, &parts.headers)?;
        let (tenant, path) = path_args(parts, st).await?;
        let tenant = auth::tenant_of_path(&tenant)?;
        auth::authorize(token, &tenant)?;
        let query = query_args(parts, st).await?;
        Ok(TenantScoped {
            tenant,
            path,
            query,
        })
    }
}

/// An authorized request for a tenant with its parameters parsed.
pub(super) struct TenantRequest<P> {
    pub tenant: TenantName,
    pub params: P,
}

impl<P: QueryParams> FromRequestParts<AppState> for TenantRequest<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let mut scoped = TenantScoped::from_request_parts(parts, st).await?;
        let path = std::mem::take(&mut scoped.path);
        let (tenant, query) = scoped.only(&names(P::QUERY))?;
        let params = P::parse(&Args {
            state: st,
            tenant: &tenant,
            path: &path,
            query: &query,
        })?;
        Ok(TenantRequest { tenant, params })
    }
}

/// Any read token (`/api/v1/tenants`). It takes no parameters and, as before tenants had
/// any, ignores a query string.
pub(super) struct Reader(pub Credential);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = auth::authenticate(&st.credentials.read, &parts.headers)?.clone();
        Ok(Reader(token))
    }
}

/// A token with the admin scope (`/metrics`). It takes no parameters and ignores a query
/// string (a scrape config's `params` may add one).
pub(super) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let token = auth::authenticate(&st.credentials.read, &parts.headers)?;
        if !token.is_admin() {
            return Err(ApiError::forbidden(format!(
                "token `{}` may not read {}: it needs the admin scope (\"*\")",
                token.name,
                parts.uri.path()
            )));
        }
        Ok(Admin)
    }
}

/// An ingest token (`scope = "ingest"`) for the path's tenant, no parameters. A read token
/// is known but refused (403, saying what it needs).
pub(super) struct Ingest {
    pub tenant: TenantName,
}

impl FromRequestParts<AppState> for Ingest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let (tenant, _) = path_args(parts, st).await?;
        let token = match auth::authenticate(&st.credentials.ingest, &parts.headers) {
            Ok(token) => token,
            Err(e) => {
                return Err(
                    match auth::authenticate(&st.credentials.read, &parts.headers) {
                        Ok(token) => ApiError::forbidden(format!(
                            "token `{}` may not post events: that needs a token with scope = \"ingest\"",
                            token.name
                        )),
                        Err(_) => e,
                    },
                );
            }
        };
        let tenant = auth::tenant_of_path(&tenant)?;
        if !token.may_read(&tenant) {
            return Err(ApiError::forbidden(format!(
                "token `{}` may not post events for tenant `{tenant}`",
                token.name
            )));
        }
        only(&query_args(parts, st).await?, &[])?;
        Ok(Ingest { tenant })
    }
}
