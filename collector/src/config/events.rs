//! `[events]`: how long posted events are kept, and how many at most.

use serde::Deserialize;

use super::Check;

/// `[events]`: how long posted events are kept in memory, and how many at most.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// Seconds an event is kept (what `GET …/events` can return). Default 7200 (2 h).
    #[serde(default = "default_events_retention")]
    pub retention_secs: u64,
    /// The most events kept, all tenants together; past it the oldest are dropped (and
    /// counted as `dropped`). Each event is at most 4 KiB, so this bounds the memory.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            retention_secs: default_events_retention(),
            max_events: default_max_events(),
        }
    }
}

impl EventsConfig {
    pub fn limits(&self) -> crate::events::EventLimits {
        crate::events::EventLimits {
            retention_ms: self.retention_secs as i64 * 1000,
            max_events: self.max_events,
        }
    }

    pub(super) fn check(&self) -> Check {
        if !(60..=7 * 86_400).contains(&self.retention_secs) {
            return Err((
                "events.retention_secs".into(),
                "expected between 60 seconds and 7 days (604800)".into(),
            ));
        }
        if !(1..=1_000_000).contains(&self.max_events) {
            return Err((
                "events.max_events".into(),
                "expected between 1 and 1000000".into(),
            ));
        }
        Ok(())
    }
}

fn default_events_retention() -> u64 {
    7200
}
fn default_max_events() -> usize {
    crate::events::DEFAULT_MAX_EVENTS
}

#[cfg(test)]
mod tests {
    use super::super::tests::{fails, parse};

    #[test]
    fn events_default_parse_and_are_checked() {
        let d = parse("").unwrap();
        assert_eq!(
            (d.events.retention_secs, d.events.max_events),
            (7200, 10_000)
        );
        let c = parse("[events]\nretention_secs = 600\nmax_events = 50\n").unwrap();
        assert_eq!(c.events.limits().retention_ms, 600_000);
        assert_eq!(c.events.limits().max_events, 50);
        fails(
            "[events]\nmax_events = 0\n",
            "events.max_events",
            "between 1",
        );
        fails(
            "[events]\nretention_secs = 5\n",
            "events.retention_secs",
            "between 60",
        );
    }
}
