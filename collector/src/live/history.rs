//! The history of one live sum: its change points over the last `live_retention`.
//!
//! Why change points rather than a fixed ring of slots: most streams change rarely, so a
//! step function costs a few points where a one-second ring would cost 7200; and the sum's
//! exact value at any instant stays answerable at any step. A series that changes all the
//! time is bounded anyway: points are kept at most one per second (a later value in the same
//! second replaces the earlier one), so two hours hold at most 7200 points.
//!
//! What must stay true: points are in time order and no two neighbours carry the same value;
//! after [`Series::prune`] the first point is at or before the cutoff whenever the series had
//! a value then, so the value at the cutoff is still known.

use serde::Serialize;

/// Points are kept at most one per this many milliseconds.
pub const RESOLUTION_MS: i64 = 1000;

/// A step function of time: the value from each point's time until the next point's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Series {
    points: Vec<(i64, u64)>,
}

/// One step of a history answer: the bucket `[end - step, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Point {
    pub end_ms: i64,
    /// The value at the bucket's end (for the bucket that holds "now": the value now); `None`
    /// before the series' first point.
    pub listeners: Option<u64>,
    /// The highest value within the bucket.
    pub peak: Option<u64>,
}

impl Series {
    pub fn from_points(mut points: Vec<(i64, u64)>) -> Series {
        points.sort_by_key(|p| p.0);
        let mut s = Series::default();
        for (t, v) in points {
            s.push(t, v);
        }
        s
    }

    pub fn points(&self) -> &[(i64, u64)] {
        &self.points
    }

    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    pub fn last(&self) -> Option<u64> {
        self.points.last().map(|p| p.1)
    }

    /// Records that the value is `value` from `t_ms` on. A time before the last point's is
    /// taken as the last point's (the collector's clock stepped back).
    pub fn push(&mut self, t_ms: i64, value: u64) {
        let Some(&(last_t, last_v)) = self.points.last() else {
            self.points.push((t_ms, value));
            return;
        };
        if value == last_v {
            return;
        }
        let t_ms = t_ms.max(last_t);
        if t_ms.div_euclid(RESOLUTION_MS) == last_t.div_euclid(RESOLUTION_MS) {
            self.points.pop();
            if self.points.last().map(|p| p.1) != Some(value) {
                self.points.push((last_t, value));
            }
        } else {
            self.points.push((t_ms, value));
        }
    }

    /// Forgets what is not needed to answer for times from `cutoff_ms` on. A series whose
    /// only remaining knowledge is "0 since before the cutoff" becomes empty.
    pub fn prune(&mut self, cutoff_ms: i64) {
        let keep_from = self
            .points
            .iter()
            .rposition(|p| p.0 <= cutoff_ms)
            .unwrap_or(0);
        self.points.drain(..keep_from);
        if let [(t, 0)] = self.points[..]
            && t <= cutoff_ms
        {
            self.points.clear();
        }
    }

    /// The value at `t_ms`, `None` before the first point.
    pub fn value_at(&self, t_ms: i64) -> Option<u64> {
        let i = self.points.partition_point(|p| p.0 <= t_ms);
        i.checked_sub(1).map(|i| self.points[i].1)
    }

    /// Buckets of `step_ms` ending at `first_end_ms`, `first_end_ms + step_ms`, … up to
    /// `last_end_ms`.
    pub fn buckets(&self, first_end_ms: i64, last_end_ms: i64, step_ms: i64) -> Vec<Point> {
        let mut out = Vec::new();
        let mut end = first_end_ms;
        while end <= last_end_ms {
            let start = end - step_ms;
            let listeners = self.value_at(end);
            let from = self.points.partition_point(|p| p.0 <= start);
            let to = self.points.partition_point(|p| p.0 <= end);
            let inside = self.points[from..to].iter().map(|p| p.1).max();
            let peak = match (self.value_at(start), inside) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            out.push(Point {
                end_ms: end,
                listeners,
                peak,
            });
            end += step_ms;
        }
        out
    }

    /// The pointwise sum of several series (a time before a series' first point adds 0 from
    /// it; the sum starts at the earliest first point).
    pub fn sum<'a>(series: impl IntoIterator<Item = &'a Series>) -> Series {
        let series: Vec<&Series> = series.into_iter().collect();
        let mut times: Vec<i64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        times.sort_unstable();
        times.dedup();
        let mut idx = vec![0usize; series.len()];
        let mut out = Series::default();
        for t in times {
            let mut total = 0u64;
            for (s, i) in series.iter().zip(idx.iter_mut()) {
                while *i < s.points.len() && s.points[*i].0 <= t {
                    *i += 1;
                }
                if *i > 0 {
                    total += s.points[*i - 1].1;
                }
            }
            // Summing series that are already one point per second keeps that resolution, so
            // push's same-second merge never drops a real change here.
            match out.points.last() {
                Some(&(_, v)) if v == total => {}
                _ => out.points.push((t, total)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_and_same_second_changes_do_not_add_points() {
        let mut s = Series::default();
        s.push(1_000, 3);
        s.push(1_500, 3);
        assert_eq!(s.points(), [(1_000, 3)]);
        s.push(2_100, 4);
        s.push(2_900, 5);
        assert_eq!(s.points(), [(1_000, 3), (2_100, 5)]);
        // Back to the previous value within the second: the change never happened.
        s.push(2_950, 3);
        assert_eq!(s.points(), [(1_000, 3)]);
        // A clock that steps back is held at the last point's time.
        s.push(5_000, 1);
        s.push(4_000, 2);
        assert_eq!(s.points(), [(1_000, 3), (5_000, 2)]);
    }

    #[test]
    fn a_second_of_constant_changes_is_bounded() {
        let mut s = Series::default();
        for i in 0..10_000 {
            s.push(i * 10, (i % 7) as u64);
        }
        assert!(s.points().len() <= 101, "{}", s.points().len());
    }

    #[test]
    fn prune_keeps_the_value_at_the_cutoff() {
        let mut s = Series::from_points(vec![(1_000, 1), (5_000, 2), (9_000, 3)]);
        s.prune(6_000);
        assert_eq!(s.points(), [(5_000, 2), (9_000, 3)]);
        assert_eq!(s.value_at(6_000), Some(2));
        s.prune(10_000);
        assert_eq!(s.points(), [(9_000, 3)]);
        let mut z = Series::from_points(vec![(1_000, 4), (2_000, 0)]);
        z.prune(3_000);
        assert!(z.is_empty(), "only an old zero is left: nothing to say");
        let mut young = Series::from_points(vec![(5_000, 0)]);
        young.prune(3_000);
        assert_eq!(young.points(), [(5_000, 0)]);
    }

    #[test]
    fn buckets_give_the_end_value_and_the_peak_within() {
        let s = Series::from_points(vec![(10_000, 2), (12_000, 7), (13_000, 1), (31_000, 4)]);
        let b = s.buckets(10_000, 40_000, 10_000);
        let got: Vec<_> = b.iter().map(|p| (p.end_ms, p.listeners, p.peak)).collect();
        assert_eq!(
            got,
            [
                (10_000, Some(2), Some(2)),
                (20_000, Some(1), Some(7)),
                (30_000, Some(1), Some(1)),
                (40_000, Some(4), Some(4)),
            ]
        );
        let before = s.buckets(5_000, 5_000, 1_000);
        assert_eq!((before[0].listeners, before[0].peak), (None, None));
    }

    #[test]
    fn sums_add_step_functions() {
        let a = Series::from_points(vec![(1_000, 1), (3_000, 2)]);
        let b = Series::from_points(vec![(2_000, 5), (3_000, 4)]);
        let s = Series::sum([&a, &b]);
        assert_eq!(s.points(), [(1_000, 1), (2_000, 6)]);
        assert_eq!(s.value_at(3_500), Some(6));
        assert!(Series::sum([]).is_empty());
    }
}
