//! `[[agents]]`: the agents allowed to send data, their token digests and the tenants each
//! may report for.

use std::collections::BTreeSet;

use earshot_common::tenant::Scope;
use serde::{Deserialize, Deserializer};

use super::{Check, Sha256Digest};

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentEntry {
    /// The agent's id, as in its `[collector] agent_id`.
    pub id: String,
    /// SHA-256 (64 hex digits) of the agent's token, as `earshot-collector enroll-agent`
    /// prints it. The token itself stays on the agent.
    pub token_sha256: Sha256Digest,
    /// Tenants this agent may report for; `"*"` = any. A batch with any other tenant is
    /// refused whole. Each is a tenant name (see [`earshot_common::tenant`]) or `"*"`.
    #[serde(deserialize_with = "scope_list")]
    pub tenants: Vec<String>,
}

/// A list of scopes (tenant names or `"*"`), kept as their text.
fn scope_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let scopes = Vec::<Scope>::deserialize(d)?;
    Ok(scopes.iter().map(|s| s.as_str().to_owned()).collect())
}

/// Whether `tenants` (a config list of scopes) admits `tenant`. A text that is not a tenant
/// name is admitted by none.
pub fn allows(tenants: &[String], tenant: &str) -> bool {
    tenants
        .iter()
        .filter_map(|t| t.parse::<Scope>().ok())
        .any(|s| s.allows_name(tenant))
}

/// A non-empty scope list: serde has checked each entry.
pub(super) fn check_scopes<T>(scopes: &[T]) -> Result<(), String> {
    if scopes.is_empty() {
        return Err("expected at least one tenant name, or \"*\" for all".into());
    }
    Ok(())
}

pub(super) fn check(agents: &[AgentEntry]) -> Check {
    let mut ids = BTreeSet::new();
    for (i, agent) in agents.iter().enumerate() {
        if agent.id.trim().is_empty() {
            return Err((
                format!("agents[{i}].id"),
                "expected a non-empty agent id".into(),
            ));
        }
        if !ids.insert(agent.id.as_str()) {
            return Err((
                format!("agents[{i}].id"),
                format!("agent {:?} is listed twice", agent.id),
            ));
        }
        check_scopes(&agent.tenants).map_err(|reason| (format!("agents[{i}].tenants"), reason))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{HASH, fails, parse};
    use super::*;

    #[test]
    fn agents_parse_and_allow_their_tenants() {
        let c = parse(&format!(
            "[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"*\"]\n\
             [[agents]]\nid = \"b\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"radio1\", \"radio2\"]\n"
        ))
        .unwrap();
        assert_eq!(c.agents[0].token_sha256.to_string(), HASH);
        assert!(allows(&c.agents[0].tenants, "anything"));
        assert!(!allows(&c.agents[0].tenants, "a b"));
        assert!(allows(&c.agents[1].tenants, "radio2") && !allows(&c.agents[1].tenants, "radio3"));
        assert_eq!(c.agent("b").unwrap().tenants, ["radio1", "radio2"]);
    }

    #[test]
    fn bad_token_hash() {
        fails(
            "[[agents]]\nid = \"a\"\ntoken_sha256 = \"abc\"\ntenants = [\"*\"]\n",
            "agents[0].token_sha256",
            "64 hex digits",
        );
    }

    #[test]
    fn missing_required_key() {
        fails(
            &format!("[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\n"),
            "agents[0]",
            "missing field `tenants`",
        );
    }

    #[test]
    fn empty_tenant_list() {
        fails(
            &format!("[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = []\n"),
            "agents[0].tenants",
            "at least one tenant",
        );
    }

    #[test]
    fn a_tenant_that_is_no_tenant_name() {
        fails(
            &format!(
                "[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"radio1\", \"radio 2\"]\n"
            ),
            "agents[0].tenants[1]",
            "\"radio 2\" is neither a tenant name nor \"*\"",
        );
    }

    #[test]
    fn duplicate_agent() {
        let one = format!("[[agents]]\nid = \"a\"\ntoken_sha256 = \"{HASH}\"\ntenants = [\"*\"]\n");
        fails(&format!("{one}{one}"), "agents[1].id", "listed twice");
    }
}
