//! Pollers for numbers earshot does not measure itself: app downloads from the two stores
//! (Apple App Store Connect, Google Play via Cloud Storage) and app/web engagement from Matomo.
//!
//! Each source is a pure parser over the documented wire format (bytes in, rows out, tested
//! against fixture files) plus a thin async client that fetches those bytes. Nothing here
//! touches the store: the caller decides where rows go, so the same parsers serve the pollers
//! and `earshot-collector import-downloads`.
//!
//! Invariants: credentials (the `.p8` key, the service-account key, the Matomo token) are only
//! read from files named in the config and never logged; the Matomo token travels in POST
//! bodies only, never in a URL.

pub mod appstore;
pub mod googleplay;
pub mod jwt;
pub mod matomo;
pub mod text;
mod units;

#[cfg(test)]
pub(crate) mod test_server;

use jiff::civil::Date;
use serde::Serialize;

pub use units::Units;

/// Which store a download count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    AppStore,
    GooglePlay,
}

impl Store {
    pub fn as_str(self) -> &'static str {
        match self {
            Store::AppStore => "app_store",
            Store::GooglePlay => "google_play",
        }
    }
}

/// Store-agnostic counts for one app and day. `None` = this store/report does not report it
/// (Apple has no uninstalls; Google has no re-downloads), which is not the same as zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DownloadCounts {
    /// Apple: first-time downloads (`1`, `1F`, `1T`, `F1`), net of refunds.
    /// Google: `Daily User Installs` (first installs per user, the closest to Apple's
    /// per-Apple-ID count).
    pub downloads: Option<Units>,
    /// Apple: re-downloads (`3`, `3F`). Google: not reported.
    pub redownloads: Option<Units>,
    /// Apple: updates (`7`, `7F`, `7T`, `F7`). Google: `Daily Device Upgrades`.
    pub updates: Option<Units>,
    /// Apple: not reported. Google: `Daily Device Uninstalls`.
    pub uninstalls: Option<Units>,
}

/// One app's download counts for one day (and one country, when the report has that breakdown).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyDownloads {
    pub store: Store,
    /// Apple: the SKU. Google: the package name.
    pub app: String,
    /// Apple: the numeric Apple Identifier when the report has it.
    pub apple_id: Option<String>,
    #[serde(serialize_with = "crate::sources::serialize_date")]
    pub date: Date,
    /// ISO 3166 alpha-2 country, `None` for a report without a country breakdown.
    pub country: Option<String>,
    pub counts: DownloadCounts,
}

/// A report file read by hand (`earshot-collector import-downloads`), store detected from content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportedReport {
    /// An App Store Connect Summary Sales report (gzip or plain TSV).
    AppStoreSales(Vec<appstore::SalesRow>),
    /// A Google Play `installs_*.csv` (UTF-16 with BOM, or UTF-8).
    GooglePlayInstalls(Vec<googleplay::InstallRow>),
}

impl ImportedReport {
    pub fn store(&self) -> Store {
        match self {
            ImportedReport::AppStoreSales(_) => Store::AppStore,
            ImportedReport::GooglePlayInstalls(_) => Store::GooglePlay,
        }
    }

    /// Per app, day and country download counts.
    pub fn daily_downloads(&self) -> Vec<DailyDownloads> {
        match self {
            ImportedReport::AppStoreSales(rows) => appstore::summarize_sales(rows),
            ImportedReport::GooglePlayInstalls(rows) => googleplay::summarize_installs(rows),
        }
    }
}

/// Why a report file could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Text(#[from] text::TextError),
    #[error(
        "not a recognized report: expected an App Store Connect Summary Sales report (tab-separated, with a `Product Type Identifier` column) or a Google Play installs CSV (with `Date` and `Package Name` columns)"
    )]
    Unrecognized,
    #[error(transparent)]
    AppStore(#[from] appstore::SalesParseError),
    #[error(transparent)]
    GooglePlay(#[from] googleplay::InstallsParseError),
}

/// Tells an Apple sales report from a Google Play installs CSV by content and parses it.
pub fn detect_and_parse(bytes: &[u8]) -> Result<ImportedReport, ImportError> {
    let plain = text::maybe_gunzip(bytes)?;
    let decoded = text::decode_text(&plain)?;
    if appstore::looks_like_sales_report(&decoded) {
        Ok(ImportedReport::AppStoreSales(appstore::parse_sales_tsv(
            &plain,
        )?))
    } else if googleplay::looks_like_installs_csv(&decoded) {
        Ok(ImportedReport::GooglePlayInstalls(
            googleplay::parse_installs_csv(&plain)?,
        ))
    } else {
        Err(ImportError::Unrecognized)
    }
}

/// Dates as `YYYY-MM-DD` strings (the workspace builds jiff without its serde feature).
pub(crate) fn serialize_date<S: serde::Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

/// The HTTP client all sources share: bounded timeouts, an honest user agent, rustls.
pub(crate) fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("earshot-collector/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()
}

/// The first 200 characters of a response body, for error messages.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests;
