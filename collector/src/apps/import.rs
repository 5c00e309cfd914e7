//! `earshot-collector import-downloads --tenant T FILE…`: report files read by hand (either
//! store, told apart by content) for back-fill and for operators without API keys. The rows
//! replace what an earlier import or fetch of the same report stored, so importing a file
//! twice changes nothing.

use std::collections::BTreeSet;

use jiff::civil::Date;

use super::db::{AppsDb, AppsDbError};
use crate::sources::{ImportError, Store, detect_and_parse};

#[derive(Debug, thiserror::Error)]
pub enum ImportFileError {
    #[error(transparent)]
    Parse(#[from] ImportError),
    #[error(transparent)]
    Db(#[from] AppsDbError),
}

/// What one file brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportOutcome {
    pub store: Store,
    /// (app, date, country) rows stored.
    pub rows: usize,
    /// Earlier rows replaced.
    pub replaced: usize,
    pub apps: BTreeSet<String>,
    pub first_day: Option<Date>,
    pub last_day: Option<Date>,
    /// Apps left out because the config maps them to another tenant: (app, tenant).
    pub skipped: BTreeSet<(String, String)>,
}

/// Imports one report file for `tenant`. `owner(store, app, apple_id)` is the tenant the
/// config maps the app to, if any: an app mapped to another tenant is skipped (reported),
/// an unmapped app goes to `tenant`.
pub fn import_report(
    db: &AppsDb,
    tenant: &str,
    bytes: &[u8],
    owner: impl Fn(Store, &str, Option<&str>) -> Option<String>,
    now_ms: i64,
) -> Result<ImportOutcome, ImportFileError> {
    let report = detect_and_parse(bytes)?;
    let store = report.store();
    let mut out = ImportOutcome {
        store,
        rows: 0,
        replaced: 0,
        apps: BTreeSet::new(),
        first_day: None,
        last_day: None,
        skipped: BTreeSet::new(),
    };
    let mut rows = Vec::new();
    for d in report.daily_downloads() {
        if let Some(other) = owner(store, &d.app, d.apple_id.as_deref()).filter(|o| o != tenant) {
            out.skipped.insert((d.app.clone(), other));
            continue;
        }
        out.apps.insert(d.app.clone());
        out.first_day = Some(out.first_day.map_or(d.date, |f| f.min(d.date)));
        out.last_day = Some(out.last_day.map_or(d.date, |l| l.max(d.date)));
        rows.push((tenant.to_string(), d));
    }
    let source = match store {
        Store::AppStore => "app_store_import",
        Store::GooglePlay => "google_play_import",
    };
    let r = db.replace_downloads(&rows, source, now_ms)?;
    out.rows = r.rows;
    out.replaced = r.replaced;
    Ok(out)
}
