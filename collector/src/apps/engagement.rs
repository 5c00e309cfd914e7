//! Matomo reports for any range, through a per-day cache in `apps.db`, so a dashboard does
//! not hit Matomo on every view.
//!
//! Reports are fetched and cached per day (`period=day`, one call per run of missing days)
//! and summed here, which makes any range a union of cached days. A day is *closed* once it
//! was fetched [`CLOSED_AFTER_MS`] after it ended in the tenant's time zone (Matomo's own
//! archiving has then seen the whole day); a closed day is never fetched again. Today, and a
//! day fetched too early, are re-fetched when their copy is older than [`REFRESH_MS`].
//! Unique visitors cannot be summed: they are given for one-day ranges and buckets only.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::ToSpan;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_json::Value;

use super::db::{AppsDb, AppsDbError, CachedDay};
use super::downloads::DayGranularity;
use crate::sources::matomo::{
    LabeledRow, MatomoClient, MatomoError, VisitMetrics, parse_labeled_rows, parse_visits_summary,
};

/// A day fetched this long after it ended is final.
pub const CLOSED_AFTER_MS: i64 = 2 * 3_600_000;
/// An open day's copy is used for this long.
pub const REFRESH_MS: i64 = 5 * 60_000;

/// The reports cached per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Visits,
    DeviceTypes,
    OsFamilies,
}

impl Report {
    pub const ALL: [Report; 3] = [Report::Visits, Report::DeviceTypes, Report::OsFamilies];

    fn method(self) -> &'static str {
        match self {
            Report::Visits => "VisitsSummary.get",
            Report::DeviceTypes => "DevicesDetection.getType",
            Report::OsFamilies => "DevicesDetection.getOsFamilies",
        }
    }

    /// The cache key.
    fn key(self) -> &'static str {
        match self {
            Report::Visits => "visits",
            Report::DeviceTypes => "device",
            Report::OsFamilies => "os",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngagementError {
    #[error(transparent)]
    Matomo(#[from] MatomoError),
    #[error(transparent)]
    Db(#[from] AppsDbError),
    #[error("Matomo {method}: unexpected answer for {day}: {reason}")]
    Unexpected {
        method: &'static str,
        day: Date,
        reason: String,
    },
    #[error("internal error: {0}")]
    Task(String),
}

/// The days of `[from, to)` to fetch now: not cached, or open and older than [`REFRESH_MS`].
/// Days after `today` have no data yet and are not fetched.
pub fn days_to_fetch(
    from: Date,
    to: Date,
    today: Date,
    cached: &BTreeMap<Date, CachedDay>,
    now_ms: i64,
) -> Vec<Date> {
    let mut out = Vec::new();
    let mut d = from;
    while d < to && d <= today {
        match cached.get(&d) {
            Some(c) if c.closed || now_ms - c.fetched_ms < REFRESH_MS => {}
            _ => out.push(d),
        }
        d = d.tomorrow().unwrap_or(Date::MAX);
    }
    out
}

/// Consecutive days grouped into runs `(first, last)`.
fn runs(days: &[Date]) -> Vec<(Date, Date)> {
    let mut out: Vec<(Date, Date)> = Vec::new();
    for &d in days {
        match out.last_mut() {
            Some((_, last)) if last.tomorrow().ok() == Some(d) => *last = d,
            _ => out.push((d, d)),
        }
    }
    out
}

/// Splits a `period=day&date=a,b` answer into days. Matomo keys it by date (a day without
/// data is `[]`); a bare value is taken as the answer for a one-day run.
fn split_by_day(v: Value, first: Date, last: Date) -> BTreeMap<Date, Value> {
    let mut out = BTreeMap::new();
    match v {
        Value::Object(map) if map.keys().all(|k| k.parse::<Date>().is_ok()) && !map.is_empty() => {
            for (k, v) in map {
                if let Ok(d) = k.parse::<Date>() {
                    out.insert(d, v);
                }
            }
        }
        other if first == last => {
            out.insert(first, other);
        }
        _ => {}
    }
    out
}

/// The end of `day` in `tz`, as UTC ms.
fn day_end_ms(day: Date, tz: &TimeZone) -> i64 {
    day.tomorrow()
        .ok()
        .and_then(|d| d.to_zoned(tz.clone()).ok())
        .map_or(i64::MAX, |z| z.timestamp().as_millisecond())
}

/// Where engagement reports come from: the Matomo client and the cache.
pub struct EngagementSource {
    client: MatomoClient,
    db: Arc<AppsDb>,
}

impl std::fmt::Debug for EngagementSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngagementSource")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// One report's days over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngagementDays {
    pub visits: BTreeMap<Date, VisitMetrics>,
    pub devices: BTreeMap<Date, Vec<LabeledRow>>,
    pub os: BTreeMap<Date, Vec<LabeledRow>>,
    /// Days fetched from Matomo by this call (the rest came from the cache).
    pub fetched_days: usize,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppsDbError> + Send + 'static,
) -> Result<T, EngagementError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| EngagementError::Task(e.to_string()))?
        .map_err(EngagementError::from)
}

impl EngagementSource {
    pub fn new(client: MatomoClient, db: Arc<AppsDb>) -> EngagementSource {
        EngagementSource { client, db }
    }

    pub fn site_for(&self, tenant: &str) -> Option<u32> {
        self.client.config().site_for(tenant)
    }

    pub fn client(&self) -> &MatomoClient {
        &self.client
    }

    /// The site's days `[from, to)`: cached where closed or fresh, fetched otherwise.
    pub async fn days(
        &self,
        site: u32,
        from: Date,
        to: Date,
        tz: &TimeZone,
        now_ms: i64,
    ) -> Result<EngagementDays, EngagementError> {
        let today = jiff::Timestamp::from_millisecond(now_ms)
            .map(|t| t.to_zoned(tz.clone()).date())
            .unwrap_or(from);
        let mut out = EngagementDays::default();
        for report in Report::ALL {
            let db = self.db.clone();
            let mut cached = blocking(move || db.matomo_days(site, report.key(), from, to)).await?;
            let stale = days_to_fetch(from, to, today, &cached, now_ms);
            out.fetched_days += stale.len();
            for (first, last) in runs(&stale) {
                let fresh = self.fetch(site, report, first, last, tz, now_ms).await?;
                let rows: Vec<(Date, CachedDay)> = fresh.into_iter().collect();
                cached.extend(rows.iter().cloned());
                let db = self.db.clone();
                blocking(move || db.put_matomo_days(site, report.key(), &rows)).await?;
            }
            for (day, c) in cached {
                let v: Value = serde_json::from_str(&c.body).unwrap_or(Value::Array(vec![]));
                let bad = |reason: String| EngagementError::Unexpected {
                    method: report.method(),
                    day,
                    reason,
                };
                match report {
                    Report::Visits => {
                        let m = parse_visits_summary(v).map_err(|p| bad(format!("{p:?}")))?;
                        out.visits.insert(day, m);
                    }
                    Report::DeviceTypes | Report::OsFamilies => {
                        let rows = parse_labeled_rows(v).map_err(|p| bad(format!("{p:?}")))?;
                        let target = if report == Report::DeviceTypes {
                            &mut out.devices
                        } else {
                            &mut out.os
                        };
                        target.insert(day, rows);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One Matomo call for the days `first..=last`; every day of the run gets a row (`[]`
    /// when Matomo left it out).
    async fn fetch(
        &self,
        site: u32,
        report: Report,
        first: Date,
        last: Date,
        tz: &TimeZone,
        now_ms: i64,
    ) -> Result<BTreeMap<Date, CachedDay>, EngagementError> {
        let (site_s, dates) = (site.to_string(), format!("{first},{last}"));
        let mut params = vec![
            ("idSite", site_s.as_str()),
            ("period", "day"),
            ("date", dates.as_str()),
        ];
        if report != Report::Visits {
            params.push(("filter_limit", "-1"));
        }
        let v = self.client.call(report.method(), &params).await?;
        let mut by_day = split_by_day(v, first, last);
        let mut out = BTreeMap::new();
        let mut d = first;
        while d <= last {
            let body = by_day.remove(&d).unwrap_or(Value::Array(vec![]));
            out.insert(
                d,
                CachedDay {
                    body: body.to_string(),
                    fetched_ms: now_ms,
                    closed: now_ms >= day_end_ms(d, tz).saturating_add(CLOSED_AFTER_MS),
                },
            );
            d = match d.checked_add(1.day()) {
                Ok(n) => n,
                Err(_) => break,
            };
        }
        Ok(out)
    }
}

/// Visit metrics over several days, with Matomo's derived ratios.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct VisitTotals {
    pub nb_visits: u64,
    pub nb_actions: u64,
    /// Only for a single day (Matomo's unique counts cannot be summed).
    pub nb_uniq_visitors: Option<u64>,
    pub nb_users: Option<u64>,
    pub sum_visit_length: u64,
    pub bounce_count: u64,
    pub max_actions: u64,
    pub nb_visits_converted: u64,
    /// `bounce_count / nb_visits` (0..1); null without visits.
    pub bounce_rate: Option<f64>,
    /// Seconds; null without visits.
    pub avg_time_on_site: Option<f64>,
    pub nb_actions_per_visit: Option<f64>,
}

pub fn visit_totals<'a>(days: impl IntoIterator<Item = &'a VisitMetrics>) -> VisitTotals {
    let mut t = VisitTotals::default();
    let mut n = 0;
    let mut single = VisitMetrics::default();
    for m in days {
        n += 1;
        single = *m;
        t.nb_visits += m.nb_visits;
        t.nb_actions += m.nb_actions;
        t.sum_visit_length += m.sum_visit_length;
        t.bounce_count += m.bounce_count;
        t.max_actions = t.max_actions.max(m.max_actions);
        t.nb_visits_converted += m.nb_visits_converted;
    }
    if n == 1 {
        t.nb_uniq_visitors = single.nb_uniq_visitors;
        t.nb_users = single.nb_users;
    }
    if t.nb_visits > 0 {
        let v = t.nb_visits as f64;
        t.bounce_rate = Some(t.bounce_count as f64 / v);
        t.avg_time_on_site = Some(t.sum_visit_length as f64 / v);
        t.nb_actions_per_visit = Some(t.nb_actions as f64 / v);
    }
    t
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngagementBucket {
    #[serde(serialize_with = "crate::sources::serialize_date")]
    pub from: Date,
    #[serde(serialize_with = "crate::sources::serialize_date")]
    pub to: Date,
    #[serde(flatten)]
    pub metrics: VisitTotals,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelTotals {
    pub label: String,
    #[serde(flatten)]
    pub metrics: VisitTotals,
}

/// `/apps/engagement`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngagementReport {
    pub summary: VisitTotals,
    pub timeseries: Vec<EngagementBucket>,
    pub by_device: Vec<LabelTotals>,
    pub by_os: Vec<LabelTotals>,
}

/// Rows summed by label over the days, most visits first; labels without visits left out.
fn by_label(days: &BTreeMap<Date, Vec<LabeledRow>>) -> Vec<LabelTotals> {
    let mut per: BTreeMap<&str, Vec<&VisitMetrics>> = BTreeMap::new();
    for rows in days.values() {
        for r in rows {
            per.entry(r.label.as_str()).or_default().push(&r.metrics);
        }
    }
    let mut out: Vec<LabelTotals> = per
        .into_iter()
        .map(|(label, ms)| {
            let mut t = visit_totals(ms);
            if days.len() != 1 {
                t.nb_uniq_visitors = None;
                t.nb_users = None;
            }
            LabelTotals {
                label: label.to_string(),
                metrics: t,
            }
        })
        .filter(|l| l.metrics.nb_visits > 0)
        .collect();
    out.sort_by(|a, b| {
        b.metrics
            .nb_visits
            .cmp(&a.metrics.nb_visits)
            .then_with(|| a.label.cmp(&b.label))
    });
    out
}

pub fn report(
    days: &EngagementDays,
    from: Date,
    to: Date,
    granularity: DayGranularity,
) -> EngagementReport {
    let mut summary = visit_totals(days.visits.values());
    if to != from.tomorrow().unwrap_or(to) {
        summary.nb_uniq_visitors = None;
        summary.nb_users = None;
    }
    let timeseries = granularity
        .buckets(from, to)
        .into_iter()
        .map(|(bf, bt)| {
            let mut metrics = visit_totals(days.visits.range(bf..bt).map(|(_, m)| m));
            if bt != bf.tomorrow().unwrap_or(bt) {
                metrics.nb_uniq_visitors = None;
                metrics.nb_users = None;
            }
            EngagementBucket {
                from: bf,
                to: bt,
                metrics,
            }
        })
        .collect();
    EngagementReport {
        summary,
        timeseries,
        by_device: by_label(&days.devices),
        by_os: by_label(&days.os),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn closed_days_are_never_fetched_again_open_ones_after_the_refresh() {
        let now = 1_000_000_000;
        let cached = BTreeMap::from([
            (
                date(2026, 11, 1),
                CachedDay {
                    body: "[]".into(),
                    fetched_ms: 0,
                    closed: true,
                },
            ),
            (
                date(2026, 11, 2),
                CachedDay {
                    body: "[]".into(),
                    fetched_ms: now - REFRESH_MS - 1,
                    closed: false,
                },
            ),
            (
                date(2026, 11, 3),
                CachedDay {
                    body: "[]".into(),
                    fetched_ms: now - 1000,
                    closed: false,
                },
            ),
        ]);
        let days = days_to_fetch(
            date(2026, 11, 1),
            date(2026, 11, 10),
            date(2026, 11, 5),
            &cached,
            now,
        );
        assert_eq!(
            days,
            [date(2026, 11, 2), date(2026, 11, 4), date(2026, 11, 5)]
        );
        assert_eq!(
            runs(&days),
            [
                (date(2026, 11, 2), date(2026, 11, 2)),
                (date(2026, 11, 4), date(2026, 11, 5))
            ]
        );
    }

    #[test]
    fn answers_split_by_day() {
        let v: Value =
            serde_json::from_str(r#"{"2026-11-01":{"nb_visits":2},"2026-11-02":[]}"#).unwrap();
        let d = split_by_day(v, date(2026, 11, 1), date(2026, 11, 2));
        assert_eq!(d.len(), 2);
        let bare: Value = serde_json::from_str(r#"{"nb_visits":2}"#).unwrap();
        let d = split_by_day(bare, date(2026, 11, 1), date(2026, 11, 1));
        assert_eq!(d[&date(2026, 11, 1)]["nb_visits"], 2);
    }
}
