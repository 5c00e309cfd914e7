//! The collector's clock and how it writes times: every "now" of the collector's IO edge
//! comes from here, and every time the API answers is written by [`rfc3339`].

use jiff::Timestamp;

/// Milliseconds since the Unix epoch, by the collector's clock.
pub fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

/// RFC 3339 in UTC, as the API answers times.
pub fn rfc3339(t_ms: i64) -> String {
    match Timestamp::from_millisecond(t_ms) {
        Ok(t) => t.to_string(),
        Err(_) => t_ms.to_string(),
    }
}
