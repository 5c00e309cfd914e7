//! `[sources]`: where app downloads and engagement come from, and what the collector makes of
//! that config (the apps database, an app's tenant).

use std::path::PathBuf;

use earshot_common::tenant::TenantName;
use serde::Deserialize;

use super::{Check, CollectorConfig};

/// `[sources]`: where app downloads and engagement come from. The tables' keys are
/// documented on their structs in `sources/`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    /// App Store Connect Sales reports: a team API key, the vendor number, app → tenant.
    pub appstore: Option<crate::sources::appstore::AppStoreConfig>,
    /// Google Play install statistics from the Play Console's Cloud Storage bucket.
    pub google_play: Option<crate::sources::googleplay::GooglePlayConfig>,
    /// Matomo: the server, a token file and tenant → site id.
    pub matomo: Option<crate::sources::matomo::MatomoConfig>,
}

impl SourcesConfig {
    /// `[sources.*]`: tenants named, ids in range.
    pub(super) fn check(&self) -> Check {
        let named = |key: String, tenant: &str| {
            TenantName::new(tenant)
                .map(drop)
                .map_err(|e| (key, e.to_string()))
        };
        if let Some(a) = &self.appstore {
            if !(1..=365).contains(&a.backfill_days) {
                return Err((
                    "sources.appstore.backfill_days".into(),
                    "expected between 1 and 365 days".into(),
                ));
            }
            for (app, tenant) in &a.apps {
                named(format!("sources.appstore.apps.{app}"), tenant)?;
            }
        }
        if let Some(g) = &self.google_play {
            if g.bucket_name().is_empty() {
                return Err((
                    "sources.google_play.bucket".into(),
                    "expected the bucket, e.g. \"pubsite_prod_rev_01234567890987654321\"".into(),
                ));
            }
            for (package, tenant) in &g.packages {
                named(format!("sources.google_play.packages.{package}"), tenant)?;
            }
        }
        if let Some(m) = &self.matomo {
            for (tenant, site) in &m.sites {
                named(format!("sources.matomo.sites.{tenant}"), tenant)?;
                if *site == 0 {
                    return Err((
                        format!("sources.matomo.sites.{tenant}"),
                        "expected a Matomo site id (idSite, 1 or more)".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The app downloads and Matomo cache's file inside `state_dir`.
pub const APPS_DB_FILE: &str = "apps.db";

impl CollectorConfig {
    /// The app downloads and Matomo cache, `state_dir/apps.db`.
    pub fn apps_db_path(&self) -> PathBuf {
        self.state_dir.join(APPS_DB_FILE)
    }

    /// The tenant an app is mapped to in `[sources.appstore] apps` or
    /// `[sources.google_play] packages`.
    pub fn app_owner(
        &self,
        store: crate::sources::Store,
        app: &str,
        apple_id: Option<&str>,
    ) -> Option<String> {
        match store {
            crate::sources::Store::AppStore => self
                .sources
                .appstore
                .as_ref()?
                .tenant_for(app, apple_id)
                .map(str::to_owned),
            crate::sources::Store::GooglePlay => self
                .sources
                .google_play
                .as_ref()?
                .packages
                .get(app)
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::{fails, parse};

    #[test]
    fn sources_parse() {
        let text = r#"
[sources.appstore]
key_id = "2X9R4HXF34"
issuer_id = "57246542-96fe-1a63-e053-0824d011072a"
private_key_file = "/etc/earshot/AuthKey_2X9R4HXF34.p8"
vendor_number = "85012345"
apps = { "1234567890" = "radio1" }
[sources.google_play]
service_account_file = "/etc/earshot/play.json"
bucket = "gs://pubsite_prod_rev_01234567890987654321/stats/installs/"
packages = { "com.example.radio" = "radio1" }
[sources.matomo]
base_url = "https://matomo.example/"
token_file = "/etc/earshot/matomo.token"
sites = { radio1 = 3 }
"#;
        let c = parse(text).unwrap();
        assert_eq!(c.sources.appstore.as_ref().unwrap().backfill_days, 14);
        assert_eq!(
            c.sources.matomo.as_ref().unwrap().site_for("radio1"),
            Some(3)
        );
        use crate::sources::Store;
        assert_eq!(
            c.app_owner(Store::AppStore, "sku", Some("1234567890"))
                .as_deref(),
            Some("radio1")
        );
        assert_eq!(
            c.app_owner(Store::GooglePlay, "com.example.radio", None)
                .as_deref(),
            Some("radio1")
        );
        assert_eq!(c.app_owner(Store::GooglePlay, "other", None), None);
        assert_eq!(
            c.apps_db_path(),
            Path::new("/var/lib/earshot-collector/apps.db")
        );
        let d = parse("").unwrap();
        assert!(d.sources.appstore.is_none() && d.sources.matomo.is_none());
    }

    #[test]
    fn source_mistakes() {
        fails(
            "[sources.matomo]\nbase_url = \"https://m/\"\ntoken_file = \"/t\"\nsites = { radio1 = 0 }\n",
            "sources.matomo.sites.radio1",
            "site id",
        );
        fails(
            "[sources.matomo]\nbase_url = \"https://m/\"\ntoken_file = \"/t\"\nsites = { \"radio 1\" = 2 }\n",
            "sources.matomo.sites.radio 1",
            "\"radio 1\" is not a tenant name",
        );
        fails(
            "[sources.matomo]\nbase_url = \"https://m/\"\ntoken_file = \"/t\"\nsite = 1\n",
            "sources.matomo.site",
            "unknown field `site`",
        );
        fails(
            "[sources.google_play]\nservice_account_file = \"/k\"\nbucket = \"b\"\npackages = { \"com.x\" = \"\" }\n",
            "sources.google_play.packages.com.x",
            "tenant name",
        );
        fails(
            "[sources.google_play]\nservice_account_file = \"/k\"\nbucket = \"b\"\npackages = { \"com.x\" = \"*\" }\n",
            "sources.google_play.packages.com.x",
            "\"*\" is not a tenant name",
        );
        fails(
            "[sources.itunes]\n",
            "sources.itunes",
            "unknown field `itunes`",
        );
    }
}
