//! HAProxy's `[accept date]` has no zone: it is the host's wall clock. `LogClock` turns that
//! wall-clock time into UTC with the configured zone, caching the offset per wall-clock hour
//! so the hot path does one comparison per line.

use earshot_common::time::HOUR_MS;
use jiff::tz::{Offset, TimeZone};

pub struct LogClock {
    tz: TimeZone,
    cached_hour: i64,
    cached_offset_ms: i64,
}

impl LogClock {
    /// `zone`: an IANA name, "UTC", a fixed offset like "+05:30", or None for the host's zone.
    pub fn new(zone: Option<&str>) -> Result<LogClock, String> {
        let tz = match zone {
            None => TimeZone::system(),
            Some(z) => parse_zone(z)?,
        };
        Ok(LogClock {
            tz,
            cached_hour: i64::MIN,
            cached_offset_ms: 0,
        })
    }

    /// Wall-clock milliseconds (as if UTC) → UTC milliseconds.
    #[inline]
    pub fn to_utc_ms(&mut self, naive_ms: i64) -> i64 {
        // `cached_hour` is the start of the cached hour (ms): two comparisons, no division.
        if !(self.cached_hour..self.cached_hour.saturating_add(HOUR_MS)).contains(&naive_ms) {
            self.cached_hour = naive_ms.div_euclid(HOUR_MS) * HOUR_MS;
            self.cached_offset_ms = self.offset_at_naive(self.cached_hour);
        }
        naive_ms - self.cached_offset_ms
    }

    fn offset_at_naive(&self, naive_ms: i64) -> i64 {
        let Ok(ts) = jiff::Timestamp::from_millisecond(naive_ms) else {
            return 0;
        };
        let civil = ts.to_zoned(TimeZone::UTC).datetime();
        // In a repeated hour (DST end) the earlier offset is taken; a skipped hour cannot
        // appear in a log.
        match self.tz.to_ambiguous_timestamp(civil).compatible() {
            Ok(utc) => naive_ms - utc.as_millisecond(),
            Err(_) => 0,
        }
    }
}

/// Parses a zone the way every earshot config and query does.
pub fn parse_zone(z: &str) -> Result<TimeZone, String> {
    let z = z.trim();
    if z.eq_ignore_ascii_case("utc") || z == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(sign) = z.chars().next().filter(|c| *c == '+' || *c == '-') {
        let rest = &z[1..];
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let (Ok(h), Ok(m)) = (h.parse::<i32>(), m.parse::<i32>()) else {
            return Err(format!("{z:?} is not an offset like +05:30"));
        };
        if h > 14 || m > 59 {
            return Err(format!("{z:?} is out of range"));
        }
        let secs = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
        let off = Offset::from_seconds(secs).map_err(|e| e.to_string())?;
        return Ok(TimeZone::fixed(off));
    }
    TimeZone::get(z).map_err(|_| {
        format!(
            "unknown time zone {z:?} (an IANA name like \"Europe/Berlin\", \"UTC\" or \"+05:30\")"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_offsets_and_names() {
        let mut c = LogClock::new(Some("+05:30")).unwrap();
        assert_eq!(
            c.to_utc_ms(10 * HOUR_MS),
            10 * HOUR_MS - 5 * HOUR_MS - 30 * 60_000
        );
        let mut u = LogClock::new(Some("UTC")).unwrap();
        assert_eq!(u.to_utc_ms(123_456), 123_456);
        // 2026-07-01 12:00 in Berlin is 10:00 UTC (summer time), 2026-01-01 12:00 is 11:00.
        let mut b = LogClock::new(Some("Europe/Berlin")).unwrap();
        let jul = earshot_common::time::days_from_civil(2026, 7, 1) * 24 * HOUR_MS + 12 * HOUR_MS;
        assert_eq!(b.to_utc_ms(jul), jul - 2 * HOUR_MS);
        let jan = earshot_common::time::days_from_civil(2026, 1, 1) * 24 * HOUR_MS + 12 * HOUR_MS;
        assert_eq!(b.to_utc_ms(jan), jan - HOUR_MS);
        assert!(LogClock::new(Some("Nowhere/Land")).is_err());
        assert!(LogClock::new(Some("+5x")).is_err());
    }
}
