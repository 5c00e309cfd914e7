//! `Units`: an exact decimal count with two fractional digits. Apple's `Units` column is
//! DECIMAL(18,2) and negative for refunds; summing floats would drift, so counts are kept as
//! integer hundredths. Google's whole-number counts convert exactly.

use std::fmt;
use std::ops::{Add, AddAssign, Neg};

/// An exact count in hundredths (`Units(150)` = 1.5). May be negative (refunds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Units(i64);

impl Units {
    pub const ZERO: Units = Units(0);

    pub const fn from_hundredths(h: i64) -> Self {
        Units(h)
    }

    pub const fn whole(n: i64) -> Self {
        Units(n * 100)
    }

    pub const fn hundredths(self) -> i64 {
        self.0
    }

    pub fn to_f64(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// Parses `12`, `-1`, `1.5`, `-0.25`, `+3.00`; at most two fractional digits.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (neg, digits) = match s.as_bytes().first()? {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        if (int.is_empty() && frac.is_empty())
            || frac.len() > 2
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let int: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let frac: i64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<i64>().ok()? * 10,
            _ => frac.parse().ok()?,
        };
        let h = int.checked_mul(100)?.checked_add(frac)?;
        Some(Units(if neg { -h } else { h }))
    }
}

impl Add for Units {
    type Output = Units;
    fn add(self, rhs: Units) -> Units {
        Units(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Units {
    fn add_assign(&mut self, rhs: Units) {
        *self = *self + rhs;
    }
}

impl Neg for Units {
    type Output = Units;
    fn neg(self) -> Units {
        Units(-self.0)
    }
}

impl fmt::Display for Units {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        if abs.is_multiple_of(100) {
            write!(f, "{sign}{}", abs / 100)
        } else {
            write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
        }
    }
}

impl serde::Serialize for Units {
    /// A JSON number: integral counts stay integers.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 % 100 == 0 {
            s.serialize_i64(self.0 / 100)
        } else {
            s.serialize_f64(self.to_f64())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apple_decimals() {
        assert_eq!(Units::parse("12"), Some(Units::whole(12)));
        assert_eq!(Units::parse("-1"), Some(Units::whole(-1)));
        assert_eq!(Units::parse("1.5"), Some(Units::from_hundredths(150)));
        assert_eq!(Units::parse("-0.25"), Some(Units::from_hundredths(-25)));
        assert_eq!(Units::parse(" +3.00 "), Some(Units::whole(3)));
        assert_eq!(Units::parse(".5"), Some(Units::from_hundredths(50)));
        for bad in ["", "-", ".", "1.234", "1e3", "abc", "1,5", "--1"] {
            assert_eq!(Units::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn displays_and_sums_exactly() {
        let sum = (0..10).fold(Units::ZERO, |a, _| a + Units::from_hundredths(10));
        assert_eq!(sum, Units::whole(1));
        assert_eq!(Units::from_hundredths(-105).to_string(), "-1.05");
        assert_eq!(Units::whole(7).to_string(), "7");
        assert_eq!(serde_json::to_string(&Units::whole(7)).unwrap(), "7");
        assert_eq!(
            serde_json::to_string(&Units::from_hundredths(150)).unwrap(),
            "1.5"
        );
    }
}
