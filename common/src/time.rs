//! Time bucketing. All instants are UTC milliseconds since the Unix epoch (`i64`).
//!
//! Rollups are kept per clock hour, split into quarter-hours (so every real time zone's local
//! hours, +5:30 and +5:45 included, are whole numbers of quarters) and minutes (for
//! concurrency).

pub const MINUTE_MS: i64 = 60_000;
pub const QUARTER_MS: i64 = 15 * MINUTE_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Start of the bucket of width `width_ms` that contains `t_ms`.
pub fn floor_to(t_ms: i64, width_ms: i64) -> i64 {
    t_ms.div_euclid(width_ms) * width_ms
}

/// Start of the clock hour containing `t_ms`.
pub fn hour_start(t_ms: i64) -> i64 {
    floor_to(t_ms, HOUR_MS)
}

/// Start of the quarter-hour containing `t_ms`.
pub fn quarter_start(t_ms: i64) -> i64 {
    floor_to(t_ms, QUARTER_MS)
}

/// Overlap in milliseconds of `[a0, a1)` and `[b0, b1)`.
pub fn overlap_ms(a0: i64, a1: i64, b0: i64, b1: i64) -> i64 {
    (a1.min(b1) - a0.max(b0)).max(0)
}

/// Identity-salt epoch of an instant: the calendar month (UTC), as `YYYY-MM`.
pub fn epoch_label(t_ms: i64) -> String {
    let (y, m, _) = civil_from_days(t_ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}")
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for z in [-800_000i64, -1, 0, 1, 19_000, 20_785, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2026-11-28 is day 20_785.
        assert_eq!(days_from_civil(2026, 11, 28), 20_785);
    }

    #[test]
    fn buckets() {
        assert_eq!(floor_to(-1, HOUR_MS), -HOUR_MS);
        assert_eq!(quarter_start(16 * MINUTE_MS + 5), QUARTER_MS);
        assert_eq!(overlap_ms(0, 10, 5, 20), 5);
        assert_eq!(overlap_ms(0, 10, 10, 20), 0);
        assert_eq!(
            epoch_label(days_from_civil(2026, 11, 28) * DAY_MS),
            "2026-11"
        );
    }
}
