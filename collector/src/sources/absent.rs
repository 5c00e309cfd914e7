//! Stand-in for [`crate::sources`] in a collector built without the `apps` feature: the
//! config's `[sources]` section, refused with the reason when it names any source.

use serde::Deserialize;

/// What the error names: the feature that would have read `[sources]`.
pub const WITHOUT_APPS: &str = "this collector was built without the apps feature";

/// `[sources]` without the `apps` feature: accepted only empty.
#[derive(Clone, Debug, Default)]
pub struct SourcesConfig {}

impl<'de> Deserialize<'de> for SourcesConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let tables = std::collections::BTreeMap::<String, serde::de::IgnoredAny>::deserialize(d)?;
        match tables.keys().next() {
            None => Ok(SourcesConfig {}),
            Some(name) => Err(serde::de::Error::custom(format!(
                "[sources.{name}]: {WITHOUT_APPS} (rebuild with the default features, or remove [sources])"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::CollectorConfig;

    #[test]
    fn a_source_is_refused_by_name_and_an_empty_section_is_not() {
        let text = "[sources.matomo]\nbase_url = \"https://m/\"\ntoken_file = \"/t\"\n";
        let e = CollectorConfig::parse(text, Path::new("c.toml")).unwrap_err();
        let message = e.to_string();
        assert!(message.contains("[sources.matomo]"), "{message}");
        assert!(
            message.contains("built without the apps feature"),
            "{message}"
        );
        assert!(CollectorConfig::parse("[sources]\n", Path::new("c.toml")).is_ok());
        assert!(CollectorConfig::parse("", Path::new("c.toml")).is_ok());
    }
}
