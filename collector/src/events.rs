//! The platform's own events (`POST /api/v1/tenants/{tenant}/events`, one JSON object per
//! line): parsed here, kept for `[events] retention_secs` in the live store, read back with
//! `GET …/events?since=` and pushed on `live/stream`.
//!
//! Why a hard bound and not only a retention: events come from outside at whatever rate the
//! producer chooses, and the log is in memory. [`EventLog`] holds at most `max_events` (across
//! all tenants) of at most [`MAX_EVENT_BYTES`] each; when full, the oldest go first and are
//! counted per tenant (`dropped`), so a flood costs bounded memory and is visible as a number.
//!
//! This module is pure (no clock, no IO): the caller passes `now_ms` and the event ids, which
//! the live store hands out from the same sequence as its `live/stream` event ids.

use std::collections::{BTreeMap, VecDeque};

use jiff::Timestamp;
use serde_json::{Map, Value};

/// Default `[events] retention_secs`, in ms.
pub const DEFAULT_RETENTION_MS: i64 = 2 * 3_600_000;
/// Default `[events] max_events`.
pub const DEFAULT_MAX_EVENTS: usize = 10_000;
/// The longest line (one event) accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 4096;
/// The most events one POST may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 10_000;
/// The longest `type`.
pub const MAX_TYPE_LEN: usize = 100;

/// How long events are kept and how many at most.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLimits {
    pub retention_ms: i64,
    /// Across all tenants.
    pub max_events: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            retention_ms: DEFAULT_RETENTION_MS,
            max_events: DEFAULT_MAX_EVENTS,
        }
    }
}

/// A posted event, checked, before it has an id.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// `at` as sent (RFC 3339), if it was.
    pub at_ms: Option<i64>,
    /// `type` (required).
    pub kind: String,
    /// `stream`, if sent.
    pub stream: Option<String>,
    /// The whole object as sent, compact JSON (at most [`MAX_EVENT_BYTES`]).
    pub body: Box<str>,
}

/// A kept event.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// From the live store's id sequence: grows with every event and every live change.
    pub id: u64,
    pub tenant: String,
    pub received_ms: i64,
    /// `at` as sent, else `received_ms`.
    pub at_ms: i64,
    pub kind: String,
    pub stream: Option<String>,
    pub body: Box<str>,
}

impl Event {
    /// The event as the API shows it: the object as sent, with `id` (a string, like
    /// `live/stream` ids), `at` (RFC 3339, the receive time when it was not sent) and
    /// `received_at` set by the collector.
    pub fn to_json(&self) -> Value {
        let mut obj: Map<String, Value> = serde_json::from_str(&self.body).unwrap_or_default();
        obj.insert("id".into(), Value::String(self.id.to_string()));
        obj.insert("at".into(), Value::String(crate::time::rfc3339(self.at_ms)));
        obj.insert(
            "received_at".into(),
            Value::String(crate::time::rfc3339(self.received_ms)),
        );
        Value::Object(obj)
    }
}

/// Why a posted body was refused (nothing of it is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
    #[error("no events in the body (expected one JSON object per line)")]
    Empty,
    #[error("more than {MAX_EVENTS_PER_REQUEST} events in one request; split it")]
    TooMany,
}

/// Parses a JSON-lines body. Each non-empty line is an object with a string `type`, and
/// optionally `at` (RFC 3339) and `stream` (a string); other fields are kept as sent. The
/// whole body is refused if any line is bad, naming the first bad line.
pub fn parse_json_lines(body: &[u8]) -> Result<Vec<NewEvent>, EventError> {
    let mut out = Vec::new();
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let bad = |reason: String| EventError::Line { line, reason };
        let raw = raw.trim_ascii();
        if raw.is_empty() {
            continue;
        }
        if out.len() == MAX_EVENTS_PER_REQUEST {
            return Err(EventError::TooMany);
        }
        if raw.len() > MAX_EVENT_BYTES {
            return Err(bad(format!(
                "{} bytes; an event may have at most {MAX_EVENT_BYTES}",
                raw.len()
            )));
        }
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(obj) = value else {
            return Err(bad("expected a JSON object".into()));
        };
        let kind = match obj.get("type") {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_TYPE_LEN => s.clone(),
            Some(Value::String(_)) => {
                return Err(bad(format!(
                    "`type` must be 1 to {MAX_TYPE_LEN} characters"
                )));
            }
            _ => return Err(bad("expected a string field `type`".into())),
        };
        let at_ms = match obj.get("at") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(
                s.parse::<Timestamp>()
                    .map_err(|_| bad(format!("`at` is not an RFC 3339 time: {s:?}")))?
                    .as_millisecond(),
            ),
            Some(_) => return Err(bad("`at` must be an RFC 3339 string".into())),
        };
        let stream = match obj.get("stream") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(bad("`stream` must be a string".into())),
        };
        out.push(NewEvent {
            at_ms,
            kind,
            stream,
            body: Value::Object(obj).to_string().into_boxed_str(),
        });
    }
    if out.is_empty() {
        return Err(EventError::Empty);
    }
    Ok(out)
}

/// Where `GET …/events` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// Events with a larger id.
    AfterId(u64),
    /// Events whose `at` is at or after this time.
    AtOrAfter(i64),
}

impl Since {
    /// An event id (digits) or an RFC 3339 time.
    pub fn parse(s: &str) -> Option<Since> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return s.parse().ok().map(Since::AfterId);
        }
        s.parse::<Timestamp>()
            .ok()
            .map(|t| Since::AtOrAfter(t.as_millisecond()))
    }
}

/// What `GET …/events` selects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventQuery {
    pub since: Option<Since>,
    pub kind: Option<String>,
    pub stream: Option<String>,
    /// The most events returned (oldest first).
    pub limit: usize,
}

/// A tenant's event counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantEvents {
    /// Kept now.
    pub retained: usize,
    /// Dropped to stay under `max_events` since the collector started.
    pub dropped: u64,
    /// The id of the tenant's last event (0: none since the start).
    pub last_id: u64,
}

/// The bounded event log of every tenant, oldest first.
#[derive(Debug, Default)]
pub struct EventLog {
    limits: EventLimits,
    events: VecDeque<Event>,
    tenants: BTreeMap<String, TenantEvents>,
}

impl EventLog {
    pub fn new(limits: EventLimits) -> EventLog {
        EventLog {
            limits,
            ..Default::default()
        }
    }

    pub fn limits(&self) -> EventLimits {
        self.limits
    }

    /// New limits; a smaller `max_events` drops the oldest at once.
    pub fn set_limits(&mut self, limits: EventLimits) {
        self.limits = limits;
        while self.events.len() > limits.max_events {
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some(old) = self.events.pop_front()
            && let Some(t) = self.tenants.get_mut(&old.tenant)
        {
            t.retained -= 1;
            t.dropped += 1;
        }
    }

    /// Keeps `event` (whose id must be above every id kept). Returns how many older events
    /// were dropped to make room.
    pub fn push(&mut self, tenant: &str, new: NewEvent, id: u64, now_ms: i64) -> usize {
        if self.limits.max_events == 0 {
            let t = self.tenants.entry(tenant.to_string()).or_default();
            t.dropped += 1;
            t.last_id = id;
            return 1;
        }
        let mut dropped = 0;
        while self.events.len() >= self.limits.max_events {
            self.drop_oldest();
            dropped += 1;
        }
        self.events.push_back(Event {
            id,
            tenant: tenant.to_string(),
            received_ms: now_ms,
            at_ms: new.at_ms.unwrap_or(now_ms),
            kind: new.kind,
            stream: new.stream,
            body: new.body,
        });
        let t = self.tenants.entry(tenant.to_string()).or_default();
        t.retained += 1;
        t.last_id = id;
        dropped
    }

    /// Forgets events received more than the retention before `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.limits.retention_ms);
        while self.events.front().is_some_and(|e| e.received_ms < cutoff) {
            if let Some(old) = self.events.pop_front()
                && let Some(t) = self.tenants.get_mut(&old.tenant)
            {
                t.retained -= 1;
            }
        }
    }

    pub fn stats(&self, tenant: &str) -> TenantEvents {
        self.tenants.get(tenant).copied().unwrap_or_default()
    }

    /// The tenant's events matching `q`, oldest first, at most `q.limit`; and whether more
    /// matched.
    pub fn query(&self, tenant: &str, q: &EventQuery) -> (Vec<Event>, bool) {
        let mut out = Vec::new();
        let matching = self.events.iter().filter(|e| {
            e.tenant == tenant
                && match q.since {
                    None => true,
                    Some(Since::AfterId(id)) => e.id > id,
                    Some(Since::AtOrAfter(t)) => e.at_ms >= t,
                }
                && q.kind.as_deref().is_none_or(|k| e.kind == k)
                && q.stream
                    .as_deref()
                    .is_none_or(|s| e.stream.as_deref() == Some(s))
        });
        for e in matching {
            if out.len() == q.limit {
                return (out, true);
            }
            out.push(e.clone());
        }
        (out, false)
    }

    /// The tenant's events with an id above `after_id`, oldest first, at most `limit`.
    pub fn after(&self, tenant: &str, after_id: u64, limit: usize) -> Vec<Event> {
        // Ids grow along the deque: skip the older part by binary search.
        let start = self.events.partition_point(|e| e.id <= after_id);
        self.events
            .range(start..)
            .filter(|e| e.tenant == tenant)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Whether the tenant has events kept or was ever seen (its counts must stay visible).
    pub fn knows(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str) -> NewEvent {
        parse_json_lines(format!(r#"{{"type":"{kind}"}}"#).as_bytes())
            .unwrap()
            .remove(0)
    }

    #[test]
    fn json_lines_parse_and_keep_extra_fields() {
        let body = b"{\"type\":\"play\",\"stream\":\"/live.mp3\",\"at\":\"2026-11-27T10:00:00Z\",\"user\":7}\r\n\n  {\"type\":\"stop\"}  \n";
        let events = parse_json_lines(body).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, "play");
        assert_eq!(events[0].stream.as_deref(), Some("/live.mp3"));
        assert_eq!(events[0].at_ms, Some(1_795_773_600_000));
        assert!(events[0].body.contains("\"user\":7"));
        assert_eq!(events[1].at_ms, None);
    }

    #[test]
    fn a_bad_line_refuses_the_body_naming_it() {
        let cases: [(&[u8], &str); 6] = [
            (b"{\"type\":\"a\"}\nnot json\n", "line 2: not JSON"),
            (b"[1,2]", "line 1: expected a JSON object"),
            (
                b"{\"kind\":\"a\"}",
                "line 1: expected a string field `type`",
            ),
            (b"{\"type\":\"\"}", "line 1: `type` must be"),
            (
                b"{\"type\":\"a\",\"at\":\"yesterday\"}",
                "`at` is not an RFC 3339",
            ),
            (
                b"{\"type\":\"a\",\"stream\":5}",
                "`stream` must be a string",
            ),
        ];
        for (body, want) in cases {
            let err = parse_json_lines(body).unwrap_err().to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        }
        assert_eq!(parse_json_lines(b"\n \n"), Err(EventError::Empty));
        let long = format!(r#"{{"type":"a","pad":"{}"}}"#, "x".repeat(MAX_EVENT_BYTES));
        assert!(
            parse_json_lines(long.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("at most 4096")
        );
    }

    #[test]
    fn a_flood_drops_the_oldest_and_counts_them() {
        let mut log = EventLog::new(EventLimits {
            retention_ms: 3_600_000,
            max_events: 100,
        });
        let mut dropped = 0;
        for id in 1..=250u64 {
            let tenant = if id % 2 == 0 { "a" } else { "b" };
            dropped += log.push(tenant, ev("x"), id, 1000);
        }
        assert_eq!(dropped, 150);
        let (a, b) = (log.stats("a"), log.stats("b"));
        assert_eq!(a.retained + b.retained, 100);
        assert_eq!(a.dropped + b.dropped, 150);
        assert_eq!((a.dropped, b.dropped), (75, 75));
        assert_eq!((a.last_id, b.last_id), (250, 249));
        // The newest 100 are kept: ids 151..=250.
        let q = EventQuery {
            limit: 1000,
            ..Default::default()
        };
        let (kept, more) = log.query("a", &q);
        assert!(!more);
        assert_eq!(kept.first().map(|e| e.id), Some(152));
        assert_eq!(kept.len(), 50);
    }

    #[test]
    fn queries_filter_page_and_expire() {
        let mut log = EventLog::new(EventLimits {
            retention_ms: 60_000,
            max_events: 1000,
        });
        let lines = b"{\"type\":\"play\",\"stream\":\"s1\",\"at\":\"2026-01-01T00:00:00Z\"}\n{\"type\":\"stop\",\"stream\":\"s1\"}\n{\"type\":\"play\",\"stream\":\"s2\"}\n";
        for (i, e) in parse_json_lines(lines).unwrap().into_iter().enumerate() {
            log.push("t", e, 10 + i as u64, 1_000_000 + i as i64 * 10_000);
        }
        let all = |q: EventQuery| {
            log.query("t", &EventQuery { limit: 10, ..q })
                .0
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(all(EventQuery::default()), [10, 11, 12]);
        assert_eq!(
            all(EventQuery {
                since: Some(Since::AfterId(10)),
                ..Default::default()
            }),
            [11, 12]
        );
        assert_eq!(
            all(EventQuery {
                kind: Some("play".into()),
                ..Default::default()
            }),
            [10, 12]
        );
        // `at` as sent for the first (2026-01-01), the receive time for the others.
        assert_eq!(
            all(EventQuery {
                stream: Some("s1".into()),
                since: Some(Since::AtOrAfter(1_767_225_600_000)),
                ..Default::default()
            }),
            [10]
        );
        assert_eq!(
            all(EventQuery {
                since: Some(Since::AtOrAfter(1_015_000)),
                ..Default::default()
            }),
            [10, 12]
        );
        let (page, more) = log.query(
            "t",
            &EventQuery {
                limit: 2,
                ..Default::default()
            },
        );
        assert!(more && page.len() == 2);
        assert_eq!(log.after("t", 10, 10).len(), 2);
        assert!(log.query("other", &EventQuery::default()).0.is_empty());
        // Received at 1_000_000, 1_010_000, 1_020_000; retention 60 s.
        log.expire(1_075_000);
        assert_eq!(log.stats("t").retained, 1);
        assert_eq!(log.stats("t").dropped, 0);
        let json = log.after("t", 0, 1)[0].to_json();
        assert_eq!(json["id"], "12");
        assert_eq!(json["type"], "play");
        assert_eq!(json["received_at"], json["at"]);
    }

    #[test]
    fn since_parses_ids_and_times() {
        assert_eq!(Since::parse("42"), Some(Since::AfterId(42)));
        assert_eq!(
            Since::parse("2026-01-01T00:00:00Z"),
            Some(Since::AtOrAfter(1_767_225_600_000))
        );
        assert_eq!(Since::parse("soon"), None);
        assert_eq!(Since::parse(""), None);
    }
}
