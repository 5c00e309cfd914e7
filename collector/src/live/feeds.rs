//! What the live store shows besides listener counts: Matomo's live counters per tenant and
//! the platform's own events ([`crate::events`]). Both change a tenant's version like a
//! listener change does, so `/live` and `live/stream` carry them with the same event ids.
//!
//! What must stay true: every event id is above the tenant's version before it, and the
//! tenant's version is at least its last event id, so a `live/stream` client that has seen
//! version V has seen every event up to V (the stream sends events before the state).
//! Neither is saved in `live.db`: after a restart the Matomo poller refills the counters
//! within a minute, and events are short-lived by design.

use std::collections::BTreeMap;

use super::{Inner, LiveStore};
use crate::events::{Event, EventLimits, EventLog, EventQuery, NewEvent, TenantEvents};

/// Matomo's `Live.getCounters` for a tenant's site, as last polled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngagementNow {
    pub visits: u64,
    pub actions: u64,
    pub visitors: u64,
    pub visits_converted: u64,
    /// The window the counters cover (`lastMinutes`).
    pub last_minutes: u32,
    /// When they were polled (collector clock).
    pub updated_ms: i64,
}

impl EngagementNow {
    fn same_values(&self, other: &EngagementNow) -> bool {
        (
            self.visits,
            self.actions,
            self.visitors,
            self.visits_converted,
            self.last_minutes,
        ) == (
            other.visits,
            other.actions,
            other.visitors,
            other.visits_converted,
            other.last_minutes,
        )
    }
}

#[derive(Debug, Default)]
pub(super) struct Feeds {
    pub(super) engagement: BTreeMap<String, EngagementNow>,
    pub(super) events: EventLog,
}

impl Feeds {
    /// Whether the tenant must stay in the store although it has no listener data.
    pub(super) fn holds(&self, tenant: &str) -> bool {
        self.engagement.contains_key(tenant) || self.events.knows(tenant)
    }
}

/// What a POST of events did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PushOutcome {
    pub accepted: usize,
    pub first_id: u64,
    pub last_id: u64,
    /// Older events (of any tenant) dropped to make room.
    pub dropped: usize,
}

impl Inner {
    /// Gives the tenant a new version (after a feed change) and returns it.
    fn bump(&mut self, tenant: &str, now_ms: i64) -> u64 {
        let id = self.next_id(now_ms);
        self.tenants.entry(tenant.to_string()).or_default().version = id;
        id
    }
}

impl LiveStore {
    /// How long events are kept and how many (`[events]`).
    pub fn set_event_limits(&self, limits: EventLimits) {
        self.lock().feeds.events.set_limits(limits);
    }

    pub fn event_limits(&self) -> EventLimits {
        self.lock().feeds.events.limits()
    }

    /// Takes a Matomo live poll. The tenant's version changes only if the values did.
    pub fn record_engagement(&self, tenant: &str, now: EngagementNow) -> bool {
        let mut inner = self.lock();
        let changed = inner
            .feeds
            .engagement
            .get(tenant)
            .is_none_or(|old| !old.same_values(&now));
        inner.feeds.engagement.insert(tenant.to_string(), now);
        if changed {
            inner.bump(tenant, now.updated_ms);
            self.changed.send_replace(inner.last_id);
        }
        changed
    }

    /// Keeps a tenant's posted events, in order, and wakes `live/stream`.
    pub fn push_events(&self, tenant: &str, events: Vec<NewEvent>, now_ms: i64) -> PushOutcome {
        let mut inner = self.lock();
        let mut out = PushOutcome::default();
        for e in events {
            let id = inner.next_id(now_ms);
            out.dropped += inner.feeds.events.push(tenant, e, id, now_ms);
            out.first_id = if out.accepted == 0 { id } else { out.first_id };
            out.last_id = id;
            out.accepted += 1;
        }
        if out.accepted > 0 {
            inner.tenants.entry(tenant.to_string()).or_default().version = out.last_id;
            self.changed.send_replace(inner.last_id);
        }
        out
    }

    /// `GET …/events`: the matching events (oldest first), whether more matched, the counts.
    pub fn events(&self, tenant: &str, q: &EventQuery) -> (Vec<Event>, bool, TenantEvents) {
        let inner = self.lock();
        let (events, more) = inner.feeds.events.query(tenant, q);
        (events, more, inner.feeds.events.stats(tenant))
    }

    /// What `live/stream` sends next: the tenant's state, and its events after `after_id`
    /// (at most `limit`), read together so that the events are never newer than the state.
    pub fn now_with_events(
        &self,
        tenant: &str,
        after_id: u64,
        limit: usize,
    ) -> (super::TenantNow, Vec<Event>) {
        let inner = self.lock();
        let events = inner.feeds.events.after(tenant, after_id, limit);
        (inner.now_of(tenant), events)
    }

    /// The id of the tenant's last event (0: none since the start).
    pub fn last_event_id(&self, tenant: &str) -> u64 {
        self.lock().feeds.events.stats(tenant).last_id
    }
}

#[cfg(test)]
mod tests {
    use super::super::LiveSettings;
    use super::*;
    use crate::events::parse_json_lines;

    const T0: i64 = 1_770_000_000_000;

    fn engagement(visits: u64, at: i64) -> EngagementNow {
        EngagementNow {
            visits,
            actions: 5,
            visitors: 2,
            visits_converted: 0,
            last_minutes: 30,
            updated_ms: at,
        }
    }

    #[test]
    fn engagement_changes_the_version_only_when_values_change() {
        let live = LiveStore::new(LiveSettings::default());
        assert!(live.record_engagement("r1", engagement(3, T0)));
        let v1 = live.version("r1");
        assert!(v1 >= T0 as u64);
        assert!(!live.record_engagement("r1", engagement(3, T0 + 60_000)));
        assert_eq!(live.version("r1"), v1);
        let now = live.now("r1");
        assert_eq!(now.engagement.map(|e| e.updated_ms), Some(T0 + 60_000));
        assert!(live.record_engagement("r1", engagement(4, T0 + 120_000)));
        assert!(live.version("r1") > v1);
        // A tenant with only engagement is not dropped by the tick.
        live.tick(T0 + 10 * 3_600_000);
        assert_eq!(live.now("r1").engagement.map(|e| e.visits), Some(4));
    }

    #[test]
    fn events_take_ids_above_the_version_and_raise_it() {
        let live = LiveStore::new(LiveSettings::default());
        live.record_engagement("r1", engagement(1, T0));
        let v = live.version("r1");
        let lines = b"{\"type\":\"a\"}\n{\"type\":\"b\"}\n";
        let out = live.push_events("r1", parse_json_lines(lines).unwrap(), T0);
        assert_eq!(out.accepted, 2);
        assert!(out.first_id > v && out.last_id == out.first_id + 1);
        assert_eq!(live.version("r1"), out.last_id);
        let (now, events) = live.now_with_events("r1", out.first_id, 10);
        assert_eq!(now.version, out.last_id);
        assert_eq!(events.len(), 1);
        assert_eq!(now.events.last_id, out.last_id);
        assert_eq!(live.last_event_id("r1"), out.last_id);
        // Expired with the retention, by the tick.
        live.tick(T0 + crate::events::DEFAULT_RETENTION_MS + 1000);
        assert_eq!(live.now("r1").events.retained, 0);
    }
}
