//! `state_dir/apps.db`: app downloads, the pollers' memory (which Apple days and Google
//! objects were imported) and the Matomo report cache. A file of its own, apart from the
//! listener rollups (`earshot.db`): these rows are replaced, not merged, and come from
//! other places on other schedules, so neither store's SQL needs to know about the other.
//!
//! Invariant: a report replaces what an earlier copy of it stored. Download rows are keyed
//! (tenant, store, app, date, country) and a report's rows for an (app, date) replace every
//! earlier row of that app and date *of the same kind* (per-country rows, or the
//! country-less overview row Google also publishes), so re-importing or re-fetching a report
//! never doubles a count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Mutex;

use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension, params};

use crate::sources::appstore::DayState;
use crate::sources::{DailyDownloads, DownloadCounts, Store, Units};

pub use crate::config::APPS_DB_FILE;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS downloads (
    tenant TEXT NOT NULL,
    store TEXT NOT NULL,
    app TEXT NOT NULL,
    day TEXT NOT NULL,
    country TEXT NOT NULL,          -- '' = the report has no country breakdown
    apple_id TEXT,
    downloads INTEGER,              -- hundredths; NULL = not reported
    redownloads INTEGER,
    updates INTEGER,
    uninstalls INTEGER,
    source TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, store, app, day, country)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS downloads_by_app_day ON downloads (store, app, day);
CREATE TABLE IF NOT EXISTS appstore_days (
    vendor TEXT NOT NULL,
    day TEXT NOT NULL,
    state TEXT NOT NULL,            -- 'fetched' | 'no_sales'
    checked_on TEXT NOT NULL,
    PRIMARY KEY (vendor, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gcs_objects (
    bucket TEXT NOT NULL,
    name TEXT NOT NULL,
    generation TEXT NOT NULL,
    imported_ms INTEGER NOT NULL,
    PRIMARY KEY (bucket, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS matomo_days (
    site INTEGER NOT NULL,
    report TEXT NOT NULL,
    day TEXT NOT NULL,
    body TEXT NOT NULL,             -- Matomo's JSON for that day
    fetched_ms INTEGER NOT NULL,
    closed INTEGER NOT NULL,        -- 1: fetched after the day was over; never fetched again
    PRIMARY KEY (site, report, day)
) WITHOUT ROWID;
";

#[derive(Debug, thiserror::Error)]
pub enum AppsDbError {
    #[error("apps database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("apps database: bad stored value {0:?}")]
    BadValue(String),
}

/// One stored download row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDownload {
    pub store: Store,
    pub app: String,
    pub apple_id: Option<String>,
    pub date: Date,
    /// `None`: a country-less (overview) row.
    pub country: Option<String>,
    pub counts: DownloadCounts,
}

/// What one import or fetch stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaceOutcome {
    pub rows: usize,
    /// Earlier rows the report replaced.
    pub replaced: usize,
}

/// A cached Matomo day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedDay {
    pub body: String,
    pub fetched_ms: i64,
    pub closed: bool,
}

pub fn parse_store(s: &str) -> Option<Store> {
    match s {
        "app_store" => Some(Store::AppStore),
        "google_play" => Some(Store::GooglePlay),
        _ => None,
    }
}

/// The apps database: one connection (writes are rare and small).
pub struct AppsDb {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for AppsDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppsDb").finish_non_exhaustive()
    }
}

fn units(v: Option<i64>) -> Option<Units> {
    v.map(Units::from_hundredths)
}

fn hundredths(u: Option<Units>) -> Option<i64> {
    u.map(Units::hundredths)
}

fn date(s: String) -> Result<Date, AppsDbError> {
    s.parse().map_err(|_| AppsDbError::BadValue(s))
}

impl AppsDb {
    pub fn open(path: &Path) -> Result<AppsDb, AppsDbError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(AppsDb {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a report's rows, each for its tenant, replacing earlier rows of the same app,
    /// date and kind (country rows / overview row) whatever tenant they were stored for.
    pub fn replace_downloads(
        &self,
        rows: &[(String, DailyDownloads)],
        source: &str,
        now_ms: i64,
    ) -> Result<ReplaceOutcome, AppsDbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut out = ReplaceOutcome::default();
        let groups: BTreeSet<(&str, &str, String, bool)> = rows
            .iter()
            .map(|(_, d)| {
                (
                    d.store.as_str(),
                    d.app.as_str(),
                    d.date.to_string(),
                    d.country.is_none(),
                )
            })
            .collect();
        for (store, app, day, overview) in &groups {
            out.replaced += tx.execute(
                "DELETE FROM downloads WHERE store = ?1 AND app = ?2 AND day = ?3 AND (country = '') = ?4",
                params![store, app, day, overview],
            )?;
        }
        {
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO downloads (tenant, store, app, day, country, apple_id, downloads, redownloads, updates, uninstalls, source, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for (tenant, d) in rows {
                insert.execute(params![
                    tenant,
                    d.store.as_str(),
                    d.app,
                    d.date.to_string(),
                    d.country.as_deref().unwrap_or(""),
                    d.apple_id,
                    hundredths(d.counts.downloads),
                    hundredths(d.counts.redownloads),
                    hundredths(d.counts.updates),
                    hundredths(d.counts.uninstalls),
                    source,
                    now_ms,
                ])?;
                out.rows += 1;
            }
        }
        tx.commit()?;
        Ok(out)
    }

    /// A tenant's rows with `from <= date < to`, optionally of one store and app.
    pub fn downloads(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
        store: Option<Store>,
        app: Option<&str>,
    ) -> Result<Vec<StoredDownload>, AppsDbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT store, app, apple_id, day, country, downloads, redownloads, updates, uninstalls
             FROM downloads
             WHERE tenant = ?1 AND day >= ?2 AND day < ?3
               AND (?4 IS NULL OR store = ?4) AND (?5 IS NULL OR app = ?5)
             ORDER BY store, app, day, country",
        )?;
        let rows = stmt.query_map(
            params![
                tenant,
                from.to_string(),
                to.to_string(),
                store.map(Store::as_str),
                app
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    [
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                        r.get::<_, Option<i64>>(8)?,
                    ],
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (store, app, apple_id, day, country, n) = row?;
            out.push(StoredDownload {
                store: parse_store(&store).ok_or(AppsDbError::BadValue(store))?,
                app,
                apple_id,
                date: date(day)?,
                country: (!country.is_empty()).then_some(country),
                counts: DownloadCounts {
                    downloads: units(n[0]),
                    redownloads: units(n[1]),
                    updates: units(n[2]),
                    uninstalls: units(n[3]),
                },
            });
        }
        Ok(out)
    }

    /// What the Apple poller knows of each day since `from`.
    pub fn appstore_days(
        &self,
        vendor: &str,
        from: Date,
    ) -> Result<BTreeMap<Date, DayState>, AppsDbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT day, state, checked_on FROM appstore_days WHERE vendor = ?1 AND day >= ?2",
        )?;
        let rows = stmt.query_map(params![vendor, from.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (day, state, checked_on) = row?;
            let state = match state.as_str() {
                "fetched" => DayState::Fetched,
                "no_sales" => DayState::NoSales {
                    checked_on: date(checked_on)?,
                },
                _ => return Err(AppsDbError::BadValue(state)),
            };
            out.insert(date(day)?, state);
        }
        Ok(out)
    }

    pub fn set_appstore_day(
        &self,
        vendor: &str,
        day: Date,
        state: DayState,
        today: Date,
    ) -> Result<(), AppsDbError> {
        let (state, checked_on) = match state {
            DayState::NotFetched => {
                self.conn().execute(
                    "DELETE FROM appstore_days WHERE vendor = ?1 AND day = ?2",
                    params![vendor, day.to_string()],
                )?;
                return Ok(());
            }
            DayState::Fetched => ("fetched", today),
            DayState::NoSales { checked_on } => ("no_sales", checked_on),
        };
        self.conn().execute(
            "INSERT OR REPLACE INTO appstore_days (vendor, day, state, checked_on) VALUES (?1, ?2, ?3, ?4)",
            params![vendor, day.to_string(), state, checked_on.to_string()],
        )?;
        Ok(())
    }

    /// The generation of a bucket object last imported.
    pub fn gcs_generation(&self, bucket: &str, name: &str) -> Result<Option<String>, AppsDbError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT generation FROM gcs_objects WHERE bucket = ?1 AND name = ?2",
                params![bucket, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_gcs_generation(
        &self,
        bucket: &str,
        name: &str,
        generation: &str,
        now_ms: i64,
    ) -> Result<(), AppsDbError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO gcs_objects (bucket, name, generation, imported_ms) VALUES (?1, ?2, ?3, ?4)",
            params![bucket, name, generation, now_ms],
        )?;
        Ok(())
    }

    /// Cached Matomo days of one report, `from <= day < to`.
    pub fn matomo_days(
        &self,
        site: u32,
        report: &str,
        from: Date,
        to: Date,
    ) -> Result<BTreeMap<Date, CachedDay>, AppsDbError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT day, body, fetched_ms, closed FROM matomo_days
             WHERE site = ?1 AND report = ?2 AND day >= ?3 AND day < ?4",
        )?;
        let rows = stmt.query_map(
            params![site, report, from.to_string(), to.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    CachedDay {
                        body: r.get(1)?,
                        fetched_ms: r.get(2)?,
                        closed: r.get(3)?,
                    },
                ))
            },
        )?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (day, cached) = row?;
            out.insert(date(day)?, cached);
        }
        Ok(out)
    }

    pub fn put_matomo_days(
        &self,
        site: u32,
        report: &str,
        days: &[(Date, CachedDay)],
    ) -> Result<(), AppsDbError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare(
                "INSERT OR REPLACE INTO matomo_days (site, report, day, body, fetched_ms, closed) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (day, c) in days {
                stmt.execute(params![
                    site,
                    report,
                    day.to_string(),
                    c.body,
                    c.fetched_ms,
                    c.closed
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
