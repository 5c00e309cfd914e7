//! `[limits]`: the cardinality bounds of the store.

use serde::Deserialize;

use super::Check;

/// `[limits]`: how many distinct names the store keeps per tenant and UTC hour, so that a
/// misconfigured or hostile agent can grow neither the database nor a query's answer without
/// limit. A stream or dimension value that is new to an hour whose budget is spent is merged
/// into `(other)` (the stream `(other)`, the value `(other)`), which counts against no
/// budget; totals (sessions, listening time, unique listeners, concurrency) stay exact.
/// Among the new names of one batch the heaviest (sessions, then listening time) come
/// first; a name once stored is never folded later. Folded names are counted in `/metrics`
/// (`earshot_collector_folded_total{tenant,what}`) and logged once per tenant, hour and
/// what. The agents apply the same bounds (`[limits]` in agent.toml) before they ship.
///
/// ```toml
/// [limits]
/// max_streams = 200   # streams per tenant and hour
/// max_values = 500    # values per tenant, hour and dimension (client, country, …)
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Streams kept per tenant and UTC hour, `(other)` aside. Default 200; 1 to 10000.
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
    /// Values kept per tenant, UTC hour and dimension (client, device, os, country,
    /// referrer, source, rendition), `(other)` aside. Default 500; 1 to 10000.
    #[serde(default = "default_max_values")]
    pub max_values: usize,
}

/// The largest `[limits]` accepted: past it an hour's breakdown is no longer an answer.
pub const MAX_LIMIT: usize = 10_000;

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_streams: default_max_streams(),
            max_values: default_max_values(),
        }
    }
}

impl LimitsConfig {
    pub fn store_limits(&self) -> crate::store::Limits {
        crate::store::Limits {
            max_streams: self.max_streams,
            max_values: self.max_values,
        }
    }

    pub(super) fn check(&self) -> Check {
        for (key, value) in [
            ("limits.max_streams", self.max_streams),
            ("limits.max_values", self.max_values),
        ] {
            if !(1..=MAX_LIMIT).contains(&value) {
                return Err((
                    key.into(),
                    format!("expected between 1 and {MAX_LIMIT}, got {value}"),
                ));
            }
        }
        Ok(())
    }
}

fn default_max_streams() -> usize {
    crate::store::Limits::DEFAULT_MAX_STREAMS
}
fn default_max_values() -> usize {
    crate::store::Limits::DEFAULT_MAX_VALUES
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fails, parse};

    #[test]
    fn limits_default_parse_and_are_checked() {
        let d = parse("").unwrap();
        assert_eq!((d.limits.max_streams, d.limits.max_values), (200, 500));
        assert_eq!(d.limits.store_limits(), crate::store::Limits::default());
        let c = parse("[limits]\nmax_streams = 2\nmax_values = 10000\n").unwrap();
        assert_eq!(
            c.limits.store_limits(),
            crate::store::Limits {
                max_streams: 2,
                max_values: 10_000
            }
        );
        fails(
            "[limits]\nmax_streams = 0\n",
            "limits.max_streams",
            "between 1 and 10000, got 0",
        );
        fails(
            "[limits]\nmax_values = 10001\n",
            "limits.max_values",
            "between 1 and 10000, got 10001",
        );
        fails("[limits]\nmax_values = -1\n", "limits.max_values", "");
        fails(
            "[limits]\nmax_stream = 5\n",
            "limits.max_stream",
            "unknown field `max_stream`",
        );
    }
}
