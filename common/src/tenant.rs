//! What a tenant name is, and what a scope of tenants (an agent's, an API token's) allows.
//!
//! Tenant names travel in URL paths (`/api/v1/tenants/{tenant}/…`), SQL keys, metric labels
//! and log fields, so they are kept plain: **1 to 64 ASCII letters, digits, `-`, `_` and
//! `.`, and neither `.` nor `..`** (URLs remove those two as path segments, so the API could
//! not be asked for them). The agent routes only such names, the collector's config accepts
//! only such names and the API answers 404 for anything else: the rule is written here once.
//!
//! A scope is one tenant or `"*"`, every tenant. For an agent, `"*"` lets it report for any
//! tenant; for an API token, `"*"` is the admin scope (every tenant, and `/metrics`).

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest tenant name, in bytes.
pub const MAX_TENANT_NAME: usize = 64;

/// The text of the scope that allows every tenant.
pub const ALL_TENANTS: &str = "*";

/// A valid tenant name (see the [module docs](self) for the rule).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantName(String);

/// A text that is not a tenant name; its message quotes the text and states the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a tenant name: {}", TenantName::RULE)]
pub struct TenantNameError {
    pub name: String,
}

impl TenantName {
    /// The rule, as error messages and docs state it.
    pub const RULE: &'static str =
        "tenant names are 1 to 64 ASCII letters, digits, '-', '_' and '.', and not \".\" or \"..\"";

    /// Whether `name` is a tenant name, without making one.
    pub fn is_valid(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_TENANT_NAME
            && name != "."
            && name != ".."
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    }

    pub fn new(name: impl Into<String>) -> Result<TenantName, TenantNameError> {
        let name = name.into();
        if TenantName::is_valid(&name) {
            Ok(TenantName(name))
        } else {
            Err(TenantNameError { name })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for TenantName {
    type Err = TenantNameError;
    fn from_str(s: &str) -> Result<TenantName, TenantNameError> {
        TenantName::new(s)
    }
}

impl TryFrom<String> for TenantName {
    type Error = TenantNameError;
    fn try_from(s: String) -> Result<TenantName, TenantNameError> {
        TenantName::new(s)
    }
}

impl TryFrom<&str> for TenantName {
    type Error = TenantNameError;
    fn try_from(s: &str) -> Result<TenantName, TenantNameError> {
        TenantName::new(s)
    }
}

impl From<TenantName> for String {
    fn from(t: TenantName) -> String {
        t.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for TenantName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TenantName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TenantName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for TenantName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TenantName, D::Error> {
        let text = String::deserialize(d)?;
        TenantName::new(text).map_err(serde::de::Error::custom)
    }
}

/// What an agent may report for, or an API token may read: one tenant, or every tenant.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// `"*"`: every tenant (for an API token, the admin scope).
    All,
    Tenant(TenantName),
}

/// A text that is neither a tenant name nor `"*"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{name:?} is neither a tenant name nor \"*\" (every tenant): {}",
    TenantName::RULE
)]
pub struct ScopeError {
    pub name: String,
}

impl Scope {
    pub fn allows(&self, tenant: &TenantName) -> bool {
        match self {
            Scope::All => true,
            Scope::Tenant(t) => t == tenant,
        }
    }

    /// [`allows`](Scope::allows) for a name that arrives as text: a text that is not a
    /// tenant name is allowed by no scope.
    pub fn allows_name(&self, tenant: &str) -> bool {
        match self {
            Scope::All => TenantName::is_valid(tenant),
            Scope::Tenant(t) => t.as_str() == tenant,
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Scope::All)
    }

    /// The tenant, for a one-tenant scope.
    pub fn tenant(&self) -> Option<&TenantName> {
        match self {
            Scope::All => None,
            Scope::Tenant(t) => Some(t),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Scope::All => ALL_TENANTS,
            Scope::Tenant(t) => t.as_str(),
        }
    }
}

/// Whether any of `scopes` allows `tenant`.
pub fn any_allows<'a>(scopes: impl IntoIterator<Item = &'a Scope>, tenant: &TenantName) -> bool {
    scopes.into_iter().any(|s| s.allows(tenant))
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        if s == ALL_TENANTS {
            return Ok(Scope::All);
        }
        TenantName::new(s)
            .map(Scope::Tenant)
            .map_err(|e| ScopeError { name: e.name })
    }
}

impl TryFrom<String> for Scope {
    type Error = ScopeError;
    fn try_from(s: String) -> Result<Scope, ScopeError> {
        if s == ALL_TENANTS {
            return Ok(Scope::All);
        }
        TenantName::new(s)
            .map(Scope::Tenant)
            .map_err(|e| ScopeError { name: e.name })
    }
}

impl From<TenantName> for Scope {
    fn from(t: TenantName) -> Scope {
        Scope::Tenant(t)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scope, D::Error> {
        let text = String::deserialize(d)?;
        Scope::try_from(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule() {
        for ok in [
            "radio1",
            "a",
            "Radio-1_b.c",
            "1",
            "...",
            ".hidden",
            &"x".repeat(64),
        ] {
            assert!(TenantName::is_valid(ok), "{ok:?}");
            assert_eq!(ok.parse::<TenantName>().unwrap().as_str(), ok);
        }
        for bad in [
            "",
            ".",
            "..",
            "a b",
            "a/b",
            "*",
            "ä",
            "a%20b",
            "a?b",
            &"x".repeat(65),
        ] {
            assert!(!TenantName::is_valid(bad), "{bad:?}");
            let e = bad.parse::<TenantName>().unwrap_err();
            assert_eq!(e.name, bad);
        }
    }

    #[test]
    fn the_error_quotes_the_name_and_states_the_rule() {
        let e = TenantName::try_from("a b".to_string()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"a b\" is not a tenant name: tenant names are 1 to 64 ASCII letters, digits, '-', '_' and '.', and not \".\" or \"..\""
        );
    }

    #[test]
    fn serde_round_trip_and_refusal() {
        let t: TenantName = serde_json::from_str("\"radio1\"").unwrap();
        assert_eq!(t, "radio1");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"radio1\"");
        let e = serde_json::from_str::<TenantName>("\"a b\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"a b\" is not a tenant name"), "{e}");
        assert!(e.contains("1 to 64 ASCII letters"), "{e}");
        let s: Vec<Scope> = serde_json::from_str("[\"*\", \"radio2\"]").unwrap();
        assert_eq!(
            s,
            vec![
                Scope::All,
                Scope::Tenant(TenantName::new("radio2").unwrap())
            ]
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), "[\"*\",\"radio2\"]");
        let e = serde_json::from_str::<Scope>("\"a b\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("neither a tenant name nor \"*\""), "{e}");
    }

    #[test]
    fn scopes_allow() {
        let r1 = TenantName::new("radio1").unwrap();
        let r2 = TenantName::new("radio2").unwrap();
        let one: Scope = "radio1".parse().unwrap();
        assert!(one.allows(&r1) && !one.allows(&r2));
        assert!(Scope::All.allows(&r1) && Scope::All.allows(&r2));
        assert!(one.allows_name("radio1") && !one.allows_name("radio10"));
        assert!(Scope::All.allows_name("radio9") && !Scope::All.allows_name("a b"));
        assert!(any_allows(std::slice::from_ref(&one), &r1) && !any_allows(&[one], &r2));
        assert!(!any_allows(&[], &r1));
        assert_eq!("*".parse::<Scope>().unwrap(), Scope::All);
        assert_eq!(Scope::All.to_string(), "*");
    }
}
