//! Download counts over a range: per app and day, then per bucket (day, week, month), store
//! and country. Pure: stored rows in, report out.
//!
//! Why an app-day total is "the overview row, else the sum of the country rows": Google
//! publishes both an `overview` and a `country` file for the same days, and an operator may
//! import either or both; adding them would count every install twice. Country breakdowns
//! use the country rows only.

use std::collections::BTreeMap;

use jiff::ToSpan;
use jiff::civil::Date;
use serde::Serialize;

use super::db::StoredDownload;
use crate::sources::{DownloadCounts, Store, Units};

/// Bucket size of a downloads or engagement timeseries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayGranularity {
    Day,
    /// ISO weeks, Monday first.
    Week,
    Month,
}

impl DayGranularity {
    pub const NAMES: [&'static str; 3] = ["day", "week", "month"];

    pub fn parse(s: &str) -> Option<DayGranularity> {
        match s {
            "day" => Some(DayGranularity::Day),
            "week" => Some(DayGranularity::Week),
            "month" => Some(DayGranularity::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DayGranularity::Day => "day",
            DayGranularity::Week => "week",
            DayGranularity::Month => "month",
        }
    }

    fn start_of(self, d: Date) -> Date {
        match self {
            DayGranularity::Day => d,
            DayGranularity::Week => d
                .checked_sub(i64::from(d.weekday().to_monday_zero_offset()).days())
                .unwrap_or(d),
            DayGranularity::Month => d.first_of_month(),
        }
    }

    fn next(self, start: Date) -> Date {
        let step = match self {
            DayGranularity::Day => 1.day(),
            DayGranularity::Week => 7.days(),
            DayGranularity::Month => 1.month(),
        };
        start.checked_add(step).unwrap_or(Date::MAX)
    }

    /// The buckets covering `[from, to)`, clipped to it.
    pub fn buckets(self, from: Date, to: Date) -> Vec<(Date, Date)> {
        let mut out = Vec::new();
        let mut start = self.start_of(from);
        while start < to {
            let end = self.next(start);
            out.push((start.max(from), end.min(to)));
            start = end;
        }
        out
    }
}

/// Adds counts; a kind stays `None` (not reported) only if neither side reports it.
pub fn add_counts(a: &mut DownloadCounts, b: &DownloadCounts) {
    fn add(x: &mut Option<Units>, y: Option<Units>) {
        if let Some(y) = y {
            *x.get_or_insert(Units::ZERO) += y;
        }
    }
    add(&mut a.downloads, b.downloads);
    add(&mut a.redownloads, b.redownloads);
    add(&mut a.updates, b.updates);
    add(&mut a.uninstalls, b.uninstalls);
}

/// One app's Apple id (where known) and its counts per date.
pub type AppDays = (Option<String>, BTreeMap<Date, DownloadCounts>);

/// Per (store, app): per date, the overview row if there is one, else the sum of the country
/// rows. Also the app's Apple id where known.
pub fn app_days(rows: &[StoredDownload]) -> BTreeMap<(Store, String), AppDays> {
    let mut overview: BTreeMap<(Store, &str, Date), DownloadCounts> = BTreeMap::new();
    let mut countries: BTreeMap<(Store, &str, Date), DownloadCounts> = BTreeMap::new();
    let mut apple_ids: BTreeMap<(Store, &str), Option<String>> = BTreeMap::new();
    for r in rows {
        let key = (r.store, r.app.as_str(), r.date);
        let target = if r.country.is_none() {
            &mut overview
        } else {
            &mut countries
        };
        add_counts(target.entry(key).or_default(), &r.counts);
        let id = apple_ids.entry((r.store, r.app.as_str())).or_default();
        if id.is_none() {
            id.clone_from(&r.apple_id);
        }
    }
    for (k, v) in overview {
        countries.insert(k, v);
    }
    let mut out: BTreeMap<(Store, String), AppDays> = BTreeMap::new();
    for ((store, app, date), counts) in countries {
        let entry = out.entry((store, app.to_string())).or_insert_with(|| {
            (
                apple_ids.get(&(store, app)).cloned().flatten(),
                BTreeMap::new(),
            )
        });
        entry.1.insert(date, counts);
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BucketCounts {
    #[serde(serialize_with = "crate::sources::serialize_date")]
    pub from: Date,
    /// Exclusive.
    #[serde(serialize_with = "crate::sources::serialize_date")]
    pub to: Date,
    #[serde(flatten)]
    pub counts: DownloadCounts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppSeries {
    pub store: Store,
    pub app: String,
    pub apple_id: Option<String>,
    pub totals: DownloadCounts,
    pub rows: Vec<BucketCounts>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreTotals {
    pub store: Store,
    #[serde(flatten)]
    pub counts: DownloadCounts,
}

/// `/apps/downloads`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadsReport {
    pub totals: DownloadCounts,
    pub by_store: Vec<StoreTotals>,
    /// Every app, over the buckets.
    pub rows: Vec<BucketCounts>,
    pub apps: Vec<AppSeries>,
}

fn series(days: &BTreeMap<Date, DownloadCounts>, buckets: &[(Date, Date)]) -> Vec<BucketCounts> {
    buckets
        .iter()
        .map(|&(from, to)| {
            let mut counts = DownloadCounts::default();
            for (_, c) in days.range(from..to) {
                add_counts(&mut counts, c);
            }
            BucketCounts { from, to, counts }
        })
        .collect()
}

/// Totals, per store, per bucket and per app over `[from, to)`.
pub fn report(
    rows: &[StoredDownload],
    from: Date,
    to: Date,
    granularity: DayGranularity,
) -> DownloadsReport {
    let buckets = granularity.buckets(from, to);
    let mut totals = DownloadCounts::default();
    let mut by_store: BTreeMap<Store, DownloadCounts> = BTreeMap::new();
    let mut all_days: BTreeMap<Date, DownloadCounts> = BTreeMap::new();
    let mut apps = Vec::new();
    for ((store, app), (apple_id, days)) in app_days(rows) {
        let mut app_totals = DownloadCounts::default();
        for (date, c) in &days {
            add_counts(&mut app_totals, c);
            add_counts(all_days.entry(*date).or_default(), c);
        }
        add_counts(&mut totals, &app_totals);
        add_counts(by_store.entry(store).or_default(), &app_totals);
        apps.push(AppSeries {
            store,
            app,
            apple_id,
            totals: app_totals,
            rows: series(&days, &buckets),
        });
    }
    DownloadsReport {
        totals,
        by_store: by_store
            .into_iter()
            .map(|(store, counts)| StoreTotals { store, counts })
            .collect(),
        rows: series(&all_days, &buckets),
        apps,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountryRow {
    pub country: String,
    #[serde(flatten)]
    pub counts: DownloadCounts,
}

/// `/apps/downloads/by/country`: country rows only, highest downloads first.
pub fn by_country(rows: &[StoredDownload]) -> Vec<CountryRow> {
    let mut sums: BTreeMap<&str, DownloadCounts> = BTreeMap::new();
    for r in rows {
        if let Some(c) = &r.country {
            add_counts(sums.entry(c).or_default(), &r.counts);
        }
    }
    let mut out: Vec<CountryRow> = sums
        .into_iter()
        .map(|(country, counts)| CountryRow {
            country: country.to_string(),
            counts,
        })
        .collect();
    out.sort_by(|a, b| {
        b.counts
            .downloads
            .cmp(&a.counts.downloads)
            .then_with(|| a.country.cmp(&b.country))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn buckets_are_clipped_to_the_range() {
        let b = DayGranularity::Week.buckets(date(2026, 11, 25), date(2026, 12, 4));
        // 2026-11-25 is a Wednesday; weeks start on Mondays (11-30).
        assert_eq!(
            b,
            [
                (date(2026, 11, 25), date(2026, 11, 30)),
                (date(2026, 11, 30), date(2026, 12, 4))
            ]
        );
        let m = DayGranularity::Month.buckets(date(2026, 11, 15), date(2027, 1, 2));
        assert_eq!(m.len(), 3);
        assert_eq!(m[1], (date(2026, 12, 1), date(2027, 1, 1)));
        assert_eq!(
            DayGranularity::Day
                .buckets(date(2026, 1, 1), date(2026, 1, 3))
                .len(),
            2
        );
    }

    fn row(country: Option<&str>, d: i8, downloads: Option<i64>) -> StoredDownload {
        StoredDownload {
            store: Store::GooglePlay,
            app: "p".into(),
            apple_id: None,
            date: date(2026, 11, d),
            country: country.map(str::to_string),
            counts: DownloadCounts {
                downloads: downloads.map(Units::whole),
                ..Default::default()
            },
        }
    }

    #[test]
    fn the_overview_row_wins_over_country_rows_and_blanks_stay_null() {
        let rows = [
            row(Some("DE"), 1, Some(3)),
            row(Some("US"), 1, Some(6)),
            row(None, 1, Some(9)),
            row(Some("DE"), 2, Some(2)),
            row(Some("US"), 2, None),
        ];
        let r = report(
            &rows,
            date(2026, 11, 1),
            date(2026, 11, 4),
            DayGranularity::Day,
        );
        assert_eq!(r.totals.downloads, Some(Units::whole(11)));
        assert_eq!(r.totals.updates, None);
        assert_eq!(r.rows[0].counts.downloads, Some(Units::whole(9)));
        assert_eq!(r.rows[1].counts.downloads, Some(Units::whole(2)));
        assert_eq!(r.rows[2].counts.downloads, None);
        let c = by_country(&rows);
        assert_eq!(
            c.iter()
                .map(|c| (c.country.as_str(), c.counts.downloads))
                .collect::<Vec<_>>(),
            [("US", Some(Units::whole(6))), ("DE", Some(Units::whole(5)))]
        );
    }
}
