//! The schedules: Apple's daily reports with back-fill, Google's monthly files re-read when
//! rewritten, Matomo's live counters every minute. Each `*_once` does one round and returns
//! what it did (tests call them against local servers); the `*_loop`s repeat them until
//! shutdown. A failed round is logged and retried at the next one: nothing is marked done
//! unless it was stored.

use std::sync::Arc;
use std::time::Duration;

use jiff::civil::Date;
use tokio_util::sync::CancellationToken;

use super::db::{AppsDb, AppsDbError};
use crate::live::{EngagementNow, LiveStore};
use crate::sources::DailyDownloads;
use crate::sources::appstore::{self, AppStoreClient, AppStoreError, DayState};
use crate::sources::googleplay::{self, GooglePlayClient, GooglePlayError};
use crate::sources::matomo::MatomoClient;

/// Between two App Store Connect rounds (only days still missing are asked for).
pub const APPSTORE_INTERVAL: Duration = Duration::from_secs(3600);
/// Between two listings of the Google Play bucket (only rewritten files are downloaded).
pub const GOOGLE_PLAY_INTERVAL: Duration = Duration::from_secs(3600);
/// Between two `Live.getCounters` polls.
pub const MATOMO_LIVE_INTERVAL: Duration = Duration::from_secs(60);
/// The window of Matomo's live counters (`lastMinutes`), as Matomo's own real-time widget.
pub const MATOMO_LIVE_MINUTES: u32 = 30;
/// During the first days of a month Google still rewrites the previous month's file.
pub const GOOGLE_PLAY_GRACE_DAYS: i8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    AppStore(#[from] AppStoreError),
    #[error(transparent)]
    GooglePlay(#[from] GooglePlayError),
    #[error(transparent)]
    Db(#[from] AppsDbError),
    #[error("Google Play file {name}: {reason}")]
    GoogleFile { name: String, reason: String },
    #[error("internal error: {0}")]
    Task(String),
}

/// What one round stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Days (Apple) or files (Google) imported.
    pub imported: Vec<String>,
    /// Days Apple answered "no report" for.
    pub no_report: Vec<Date>,
    pub rows: usize,
    /// Rows of apps no tenant is configured for.
    pub unmapped_rows: usize,
    pub errors: Vec<String>,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AppsDbError> + Send + 'static,
) -> Result<T, PollError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| PollError::Task(e.to_string()))?
        .map_err(PollError::from)
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn today_utc() -> Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

/// One App Store Connect round on `today`: every back-fill day without a report (or a
/// believable "no sales") is asked for, oldest first.
pub async fn appstore_once(
    client: &AppStoreClient,
    db: &Arc<AppsDb>,
    today: Date,
) -> Result<PollReport, PollError> {
    let config = client.config().clone();
    let vendor = config.vendor_number.clone();
    let since = today
        .checked_sub(jiff::Span::new().days(i64::from(config.backfill_days) + 1))
        .unwrap_or(today);
    let db2 = db.clone();
    let v = vendor.clone();
    let known = blocking(move || db2.appstore_days(&v, since)).await?;
    let dates = appstore::dates_to_fetch(today, config.backfill_days, |d| {
        known.get(&d).copied().unwrap_or(DayState::NotFetched)
    });
    let mut report = PollReport::default();
    for date in dates {
        match client.fetch_daily(date).await {
            Ok(Some(rows)) => {
                let mut mapped = Vec::new();
                for d in appstore::summarize_sales(&rows) {
                    match config.tenant_for(&d.app, d.apple_id.as_deref()) {
                        Some(t) => mapped.push((t.to_string(), d)),
                        None => report.unmapped_rows += 1,
                    }
                }
                let db2 = db.clone();
                let (v, n) = (vendor.clone(), mapped.len());
                blocking(move || {
                    db2.replace_downloads(&mapped, "app_store_api", now_ms())?;
                    db2.set_appstore_day(&v, date, DayState::Fetched, today)
                })
                .await?;
                report.rows += n;
                report.imported.push(date.to_string());
            }
            Ok(None) => {
                let db2 = db.clone();
                let v = vendor.clone();
                blocking(move || {
                    db2.set_appstore_day(&v, date, DayState::NoSales { checked_on: today }, today)
                })
                .await?;
                report.no_report.push(date);
            }
            // A refused key fails every day alike: stop the round.
            Err(e @ AppStoreError::Unauthorized { .. }) => return Err(e.into()),
            Err(e) => report.errors.push(format!("{date}: {e}")),
        }
    }
    Ok(report)
}

/// One Google Play round on `today`: for each configured package, the `overview` and
/// `country` files of the months Google may still rewrite, downloaded when their generation
/// changed.
pub async fn google_play_once(
    client: &GooglePlayClient,
    db: &Arc<AppsDb>,
    today: Date,
) -> Result<PollReport, PollError> {
    let config = client.config().clone();
    let bucket = config.bucket_name().to_string();
    let mut report = PollReport::default();
    for (package, tenant) in &config.packages {
        for (year, month) in googleplay::months_to_poll(today, GOOGLE_PLAY_GRACE_DAYS) {
            let prefix = googleplay::installs_prefix(package, year, month);
            let listed: Vec<_> = client
                .list_objects(&prefix)
                .await?
                .into_iter()
                .filter(|o| {
                    matches!(
                        googleplay::object_dimension(&o.name, &prefix),
                        Some("overview" | "country")
                    )
                })
                .collect();
            let mut seen = std::collections::BTreeMap::new();
            for o in &listed {
                let (db2, b, n) = (db.clone(), bucket.clone(), o.name.clone());
                seen.insert(
                    o.name.clone(),
                    blocking(move || db2.gcs_generation(&b, &n)).await?,
                );
            }
            let wanted = googleplay::objects_to_fetch(&listed, |n| seen.get(n).cloned().flatten());
            for object in wanted {
                let body = match client.download(&object.name).await {
                    Ok(b) => b,
                    Err(e) => {
                        report.errors.push(format!("{}: {e}", object.name));
                        continue;
                    }
                };
                let rows = match googleplay::parse_installs_csv(&body) {
                    Ok(r) => r,
                    Err(e) => {
                        report.errors.push(format!("{}: {e}", object.name));
                        continue;
                    }
                };
                let mapped: Vec<(String, DailyDownloads)> = googleplay::summarize_installs(&rows)
                    .into_iter()
                    .filter(|d| d.app == *package)
                    .map(|d| (tenant.clone(), d))
                    .collect();
                let n = mapped.len();
                let (db2, b, name) = (db.clone(), bucket.clone(), object.name.clone());
                let generation = object.generation.clone().unwrap_or_default();
                blocking(move || {
                    db2.replace_downloads(&mapped, "google_play_api", now_ms())?;
                    db2.set_gcs_generation(&b, &name, &generation, now_ms())
                })
                .await?;
                report.rows += n;
                report.imported.push(object.name.clone());
            }
        }
    }
    Ok(report)
}

/// One `Live.getCounters` poll per configured site into the live store.
pub async fn matomo_live_once(client: &MatomoClient, live: &LiveStore) -> Vec<String> {
    let mut errors = Vec::new();
    for (tenant, &site) in &client.config().sites {
        match client.live_counters(site, MATOMO_LIVE_MINUTES).await {
            Ok(c) => {
                live.record_engagement(
                    tenant,
                    EngagementNow {
                        visits: c.visits,
                        actions: c.actions,
                        visitors: c.visitors,
                        visits_converted: c.visits_converted,
                        last_minutes: MATOMO_LIVE_MINUTES,
                        updated_ms: now_ms(),
                    },
                );
            }
            Err(e) => errors.push(format!("tenant {tenant} (site {site}): {e}")),
        }
    }
    errors
}

fn log_round(source: &str, r: &Result<PollReport, PollError>) {
    match r {
        Ok(r) => {
            if !r.imported.is_empty() || !r.no_report.is_empty() {
                tracing::info!(
                    source,
                    imported = r.imported.len(),
                    rows = r.rows,
                    no_report = r.no_report.len(),
                    unmapped_rows = r.unmapped_rows,
                    "app downloads fetched"
                );
            }
            for e in &r.errors {
                tracing::warn!(source, "app downloads: {e}");
            }
        }
        Err(e) => tracing::warn!(source, "app downloads round failed: {e}"),
    }
}

async fn every(interval: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(interval) => true,
        _ = shutdown.cancelled() => false,
    }
}

pub async fn appstore_loop(client: AppStoreClient, db: Arc<AppsDb>, shutdown: CancellationToken) {
    loop {
        let r = appstore_once(&client, &db, today_utc()).await;
        log_round("app_store", &r);
        if !every(APPSTORE_INTERVAL, &shutdown).await {
            return;
        }
    }
}

pub async fn google_play_loop(
    client: GooglePlayClient,
    db: Arc<AppsDb>,
    shutdown: CancellationToken,
) {
    loop {
        let r = google_play_once(&client, &db, today_utc()).await;
        log_round("google_play", &r);
        if !every(GOOGLE_PLAY_INTERVAL, &shutdown).await {
            return;
        }
    }
}

pub async fn matomo_live_loop(
    client: Arc<crate::apps::EngagementSource>,
    live: Arc<LiveStore>,
    shutdown: CancellationToken,
) {
    loop {
        for e in matomo_live_once(client.client(), &live).await {
            tracing::warn!("Matomo live counters: {e}");
        }
        if !every(MATOMO_LIVE_INTERVAL, &shutdown).await {
            return;
        }
    }
}

/// The configured app-store and Matomo clients, built before the collector starts so that a
/// missing key file or a bad URL stops it with the key named.
#[derive(Default)]
pub struct Pollers {
    appstore: Option<AppStoreClient>,
    google_play: Option<GooglePlayClient>,
    /// Also what `apps/engagement` answers from.
    pub engagement: Option<Arc<crate::apps::EngagementSource>>,
}

impl Pollers {
    pub fn open(
        sources: &crate::config::SourcesConfig,
        db: &Arc<AppsDb>,
    ) -> anyhow::Result<Pollers> {
        use anyhow::Context;
        Ok(Pollers {
            appstore: sources
                .appstore
                .clone()
                .map(AppStoreClient::new)
                .transpose()
                .context("[sources.appstore]")?,
            google_play: sources
                .google_play
                .clone()
                .map(GooglePlayClient::new)
                .transpose()
                .context("[sources.google_play]")?,
            engagement: sources
                .matomo
                .clone()
                .map(MatomoClient::new)
                .transpose()
                .context("[sources.matomo]")?
                .map(|c| Arc::new(crate::apps::EngagementSource::new(c, db.clone()))),
        })
    }

    /// Starts a loop for each configured source.
    pub fn spawn(
        self,
        db: &Arc<AppsDb>,
        live: &Arc<LiveStore>,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        if let Some(c) = self.appstore {
            tracing::info!(
                apps = c.config().apps.len(),
                "App Store Connect poller started"
            );
            tasks.push(tokio::spawn(appstore_loop(c, db.clone(), shutdown.clone())));
        }
        if let Some(c) = self.google_play {
            tracing::info!(
                packages = c.config().packages.len(),
                "Google Play poller started"
            );
            tasks.push(tokio::spawn(google_play_loop(
                c,
                db.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(e) = self.engagement {
            tracing::info!(
                sites = e.client().config().sites.len(),
                "Matomo live poller started"
            );
            tasks.push(tokio::spawn(matomo_live_loop(
                e,
                live.clone(),
                shutdown.clone(),
            )));
        }
        tasks
    }
}
