//! `[tenants.NAME]`: per-tenant settings. A tenant needs no entry to be stored or queried;
//! NAME is a tenant name (see [`earshot_common::tenant`]).

use std::collections::BTreeMap;

use earshot_common::tenant::TenantName;
use serde::Deserialize;

use super::Check;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// IANA time zone of the tenant's local hours and days ("Europe/Berlin"). Default: UTC.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".into()
}

pub(super) fn check(tenants: &BTreeMap<TenantName, TenantConfig>) -> Check {
    for (name, tenant) in tenants {
        if jiff::tz::TimeZone::get(&tenant.timezone).is_err() {
            return Err((
                format!("tenants.{name}.timezone"),
                format!(
                    "expected an IANA time zone name like \"Europe/Berlin\", got {:?}",
                    tenant.timezone
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fails, parse};
    use super::*;

    #[test]
    fn unknown_time_zone() {
        fails(
            "[tenants.radio1]\ntimezone = \"Europe/Atlantis\"\n",
            "tenants.radio1.timezone",
            "IANA time zone",
        );
    }

    #[test]
    fn a_tenant_that_is_no_tenant_name_is_refused() {
        let err = parse("[tenants.\"a b\"]\ntimezone = \"UTC\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/earshot/collector.toml"), "{msg}");
        assert_eq!(err.key(), Some("tenants.a b"), "{msg}");
        assert!(msg.contains("\"a b\" is not a tenant name"), "{msg}");
        assert!(msg.contains(TenantName::RULE), "{msg}");
        for bad in ["..", "radio/1", ""] {
            assert!(parse(&format!("[tenants.\"{bad}\"]\n")).is_err(), "{bad:?}");
        }
        let c = parse("[tenants.\"radio-1.b_c\"]\n").unwrap();
        assert_eq!(
            c.tenants[&TenantName::new("radio-1.b_c").unwrap()].timezone,
            "UTC"
        );
    }
}
