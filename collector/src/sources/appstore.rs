//! Apple App Store Connect: daily Summary Sales reports → per-app download counts.
//!
//! Apple publishes one gzip TSV per vendor and day (usually the next day); a 404 means "no sales
//! that day" *or* "not published yet", which is why [`dates_to_fetch`] re-asks for recent days
//! until a 404 is old enough to be believed. Parsing ([`parse_sales_tsv`]) is pure and matches
//! columns by header name, since Apple has added columns over the years (27 vs 28 columns).

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use super::jwt::{Es256Key, KeyError, read_key_file};
use super::text::{self, Header, TextError, cell};
use super::{DailyDownloads, DownloadCounts, Store, Units};

/// App Store Connect's API root.
pub const DEFAULT_BASE_URL: &str = "https://api.appstoreconnect.apple.com";
/// The JWT audience App Store Connect requires.
pub const AUDIENCE: &str = "appstoreconnect-v1";
/// Token lifetime. Apple rejects tokens expiring more than 20 minutes ahead *by its clock*;
/// 15 minutes leaves room for our clock running ahead.
pub const TOKEN_LIFETIME_SECS: i64 = 15 * 60;

/// `[sources.appstore]`: the App Store Connect API key and the apps to collect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppStoreConfig {
    /// Key ID of the team API key (App Store Connect → Users and Access → Integrations), e.g.
    /// `2X9R4HXF34`. Sent as the JWT `kid`. The key needs the Sales, Finance or Admin role.
    pub key_id: String,
    /// Issuer ID shown above the key list (a UUID). Sent as the JWT `iss`.
    pub issuer_id: String,
    /// The downloaded `AuthKey_<key id>.p8` (PKCS#8 PEM, P-256). Keep it readable by the
    /// collector only.
    pub private_key_file: PathBuf,
    /// Vendor number from Payments and Financial Reports, e.g. `85012345`.
    pub vendor_number: String,
    /// API root; change only for tests. Default `https://api.appstoreconnect.apple.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// How many past days to keep asking for until each has a report (or a believable
    /// "no sales"). Default 14.
    #[serde(default = "default_backfill_days")]
    pub backfill_days: u16,
    /// App SKU or Apple Identifier (numeric app id) → tenant. Rows of other apps are skipped.
    #[serde(default)]
    pub apps: BTreeMap<String, String>,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_backfill_days() -> u16 {
    14
}

impl AppStoreConfig {
    /// The tenant owning an app, looked up by Apple Identifier first, then SKU.
    pub fn tenant_for(&self, sku: &str, apple_id: Option<&str>) -> Option<&str> {
        apple_id
            .and_then(|id| self.apps.get(id))
            .or_else(|| self.apps.get(sku))
            .map(String::as_str)
    }
}

/// One row of a Summary Sales report (one product × country × … aggregate for one day).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesRow {
    /// `Begin Date` (the report day for daily reports).
    #[serde(serialize_with = "crate::sources::serialize_date")]
    pub date: Date,
    pub sku: String,
    /// `Apple Identifier`, the numeric app/product id.
    pub apple_id: Option<String>,
    pub title: Option<String>,
    /// `Product Type Identifier`, e.g. `1F`; see [`ProductKind::classify`].
    pub product_type: String,
    /// Negative for refunds.
    pub units: Units,
    /// `Country Code` (the customer's storefront), e.g. `US`.
    pub country: Option<String>,
    /// `Parent Identifier`: the parent app's SKU for in-app purchases.
    pub parent_identifier: Option<String>,
}

/// What a product type identifier counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// First-time download or purchase: `1`, `1F`, `1T`, `F1`.
    Download,
    /// `3`, `3F`.
    Redownload,
    /// `7`, `7F`, `7T`, `F7`.
    Update,
    /// In-app purchases and subscriptions (`IA*`, `FI*`).
    InApp,
    /// Anything else (custom B2B apps, bundles, codes Apple adds later).
    Other,
}

impl ProductKind {
    /// Classifies Apple's Product Type Identifier (case and surrounding space ignored).
    pub fn classify(code: &str) -> Self {
        let code = code.trim().to_ascii_uppercase();
        match code.as_str() {
            "1" | "1F" | "1T" | "F1" => Self::Download,
            "3" | "3F" => Self::Redownload,
            "7" | "7F" | "7T" | "F7" => Self::Update,
            c if c.starts_with("IA") || c.starts_with("FI") => Self::InApp,
            _ => Self::Other,
        }
    }
}

/// Why a sales report could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum SalesParseError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("sales report is empty (no header line)")]
    Empty,
    #[error("sales report has no `{0}` column (is it a Summary Sales report?)")]
    MissingColumn(&'static str),
    #[error("sales report line {line}: `{column}` is empty")]
    MissingCell { line: usize, column: &'static str },
    #[error("sales report line {line}: `Units` is not a decimal: {value:?}")]
    BadUnits { line: usize, value: String },
    #[error("sales report line {line}: `Begin Date` is not MM/DD/YYYY or YYYY-MM-DD: {value:?}")]
    BadDate { line: usize, value: String },
}

/// Whether decoded text is a Sales report: a tab-separated header naming the product type.
pub fn looks_like_sales_report(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("").to_ascii_lowercase();
    first.contains('\t') && first.contains("product type identifier")
}

/// Parses a Summary Sales report, gzip (as the API sends it) or already unpacked.
pub fn parse_sales_tsv(bytes: &[u8]) -> Result<Vec<SalesRow>, SalesParseError> {
    let plain = text::maybe_gunzip(bytes)?;
    let decoded = text::decode_text(&plain)?;
    let mut records = text::parse_tsv(&decoded).into_iter();
    let header = Header::new(&records.next().ok_or(SalesParseError::Empty)?.fields);
    let need = |name: &'static str| {
        header
            .find(&[name.to_lowercase().as_str()])
            .ok_or(SalesParseError::MissingColumn(name))
    };
    let sku_i = Some(need("SKU")?);
    let type_i = Some(need("Product Type Identifier")?);
    let units_i = Some(need("Units")?);
    let date_i = Some(need("Begin Date")?);
    let apple_id_i = header.find(&["apple identifier"]);
    let title_i = header.find(&["title"]);
    let country_i = header.find(&["country code"]);
    let parent_i = header.find(&["parent identifier"]);

    records
        .map(|rec| {
            let f = &rec.fields;
            let line = rec.line;
            let required = |i, column| {
                cell(f, i)
                    .map(str::to_owned)
                    .ok_or(SalesParseError::MissingCell { line, column })
            };
            let units_s = required(units_i, "Units")?;
            let units = Units::parse(&units_s).ok_or(SalesParseError::BadUnits {
                line,
                value: units_s.clone(),
            })?;
            let date_s = required(date_i, "Begin Date")?;
            let date = parse_apple_date(&date_s).ok_or(SalesParseError::BadDate {
                line,
                value: date_s.clone(),
            })?;
            let opt = |i| cell(f, i).map(str::to_owned);
            Ok(SalesRow {
                date,
                sku: required(sku_i, "SKU")?,
                apple_id: opt(apple_id_i),
                title: opt(title_i),
                product_type: required(type_i, "Product Type Identifier")?,
                units,
                country: opt(country_i),
                parent_identifier: opt(parent_i),
            })
        })
        .collect()
}

/// `MM/DD/YYYY` (Apple's report convention) or ISO `YYYY-MM-DD`.
fn parse_apple_date(s: &str) -> Option<Date> {
    if let Ok(d) = s.parse::<Date>() {
        return Some(d);
    }
    let mut it = s.split('/');
    let (m, d, y) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?).ok()
}

/// Sums rows into per (day, SKU, country) download counts. In-app and other product types are
/// left out; refunds (negative units) reduce the count of their kind.
pub fn summarize_sales(rows: &[SalesRow]) -> Vec<DailyDownloads> {
    let mut out: BTreeMap<(Date, &str, Option<&str>), DailyDownloads> = BTreeMap::new();
    for row in rows {
        let kind = ProductKind::classify(&row.product_type);
        if !matches!(
            kind,
            ProductKind::Download | ProductKind::Redownload | ProductKind::Update
        ) {
            continue;
        }
        let entry = out
            .entry((row.date, &row.sku, row.country.as_deref()))
            .or_insert_with(|| DailyDownloads {
                store: Store::AppStore,
                app: row.sku.clone(),
                apple_id: row.apple_id.clone(),
                date: row.date,
                country: row.country.clone(),
                counts: DownloadCounts {
                    downloads: Some(Units::ZERO),
                    redownloads: Some(Units::ZERO),
                    updates: Some(Units::ZERO),
                    uninstalls: None,
                },
            });
        let slot = match kind {
            ProductKind::Download => &mut entry.counts.downloads,
            ProductKind::Redownload => &mut entry.counts.redownloads,
            _ => &mut entry.counts.updates,
        };
        *slot.get_or_insert(Units::ZERO) += row.units;
    }
    out.into_values().collect()
}

/// What the poller knows about one report day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayState {
    /// Never fetched, or the last try failed.
    NotFetched,
    /// A report was stored.
    Fetched,
    /// Apple answered 404 when asked on `checked_on`.
    NoSales { checked_on: Date },
}

/// How long after a report day a 404 is believed to mean "no sales" rather than "not
/// published yet". Apple usually publishes the next day; two days leaves a margin.
pub const NO_SALES_FINAL_AFTER_DAYS: i64 = 2;

/// The report days to ask for on `today`, oldest first: each of the last `backfill_days` days
/// (yesterday included, today excluded) that has no report and no believable 404.
pub fn dates_to_fetch(
    today: Date,
    backfill_days: u16,
    state: impl Fn(Date) -> DayState,
) -> Vec<Date> {
    (1..=i64::from(backfill_days))
        .rev()
        .filter_map(|back| today.checked_sub(jiff::Span::new().days(back)).ok())
        .filter(|&day| match state(day) {
            DayState::NotFetched => true,
            DayState::Fetched => false,
            DayState::NoSales { checked_on } => {
                let age = (checked_on - day).get_days();
                age < NO_SALES_FINAL_AFTER_DAYS as i32 && checked_on < today
            }
        })
        .collect()
}

/// A failed App Store Connect request.
#[derive(Debug, thiserror::Error)]
pub enum AppStoreError {
    #[error("App Store Connect key: {0}")]
    Key(#[from] KeyError),
    #[error("App Store Connect base_url {0:?} is not a valid URL")]
    BadBaseUrl(String),
    #[error("App Store Connect request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error(
        "App Store Connect refused the API key (HTTP {status}): {detail} — check key_id, issuer_id, the .p8 file, the key's role (Sales/Finance/Admin) and the clock"
    )]
    Unauthorized { status: u16, detail: String },
    #[error("App Store Connect answered HTTP {status}: {detail}")]
    Api { status: u16, detail: String },
    #[error("App Store Connect sales report: {0}")]
    Report(#[from] SalesParseError),
}

/// JWT header for App Store Connect.
#[derive(Debug, Serialize)]
struct JwtHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'static str,
}

/// JWT claims for App Store Connect.
#[derive(Debug, Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    iat: i64,
    exp: i64,
    aud: &'static str,
}

/// The App Store Connect Sales Reports client.
pub struct AppStoreClient {
    config: AppStoreConfig,
    key: Es256Key,
    http: reqwest::Client,
    base: reqwest::Url,
}

impl AppStoreClient {
    /// Reads the `.p8` key; fails with the file named if it is missing or not a P-256 key.
    pub fn new(config: AppStoreConfig) -> Result<Self, AppStoreError> {
        let pem = read_key_file(&config.private_key_file)?;
        let key = Es256Key::from_pkcs8_pem(&pem, &config.private_key_file.display().to_string())?;
        let base = reqwest::Url::parse(&config.base_url)
            .map_err(|_| AppStoreError::BadBaseUrl(config.base_url.clone()))?;
        Ok(Self {
            config,
            key,
            http: super::http_client()?,
            base,
        })
    }

    pub fn config(&self) -> &AppStoreConfig {
        &self.config
    }

    /// A bearer token valid from `now` for [`TOKEN_LIFETIME_SECS`].
    pub fn make_jwt(&self, now: Timestamp) -> Result<String, KeyError> {
        let iat = now.as_second();
        self.key.sign_jwt(
            &JwtHeader {
                alg: "ES256",
                kid: &self.config.key_id,
                typ: "JWT",
            },
            &JwtClaims {
                iss: &self.config.issuer_id,
                iat,
                exp: iat + TOKEN_LIFETIME_SECS,
                aud: AUDIENCE,
            },
        )
    }

    /// `GET /v1/salesReports` for one day's Summary Sales report.
    pub fn daily_report_url(&self, date: Date) -> reqwest::Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map(|mut p| {
                p.pop_if_empty().extend(["v1", "salesReports"]);
            })
            .ok();
        url.query_pairs_mut()
            .append_pair("filter[frequency]", "DAILY")
            .append_pair("filter[reportType]", "SALES")
            .append_pair("filter[reportSubType]", "SUMMARY")
            .append_pair("filter[vendorNumber]", &self.config.vendor_number)
            .append_pair("filter[reportDate]", &date.to_string())
            .append_pair("filter[version]", "1_0");
        url
    }

    /// One day's sales rows; `Ok(None)` when Apple has no report for that day (404).
    pub async fn fetch_daily(&self, date: Date) -> Result<Option<Vec<SalesRow>>, AppStoreError> {
        let jwt = self.make_jwt(Timestamp::now())?;
        let resp = self
            .http
            .get(self.daily_report_url(date))
            .bearer_auth(jwt)
            .header(reqwest::header::ACCEPT, "application/a-gzip")
            .send()
            .await?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = resp.bytes().await?;
        if !status.is_success() {
            let detail = asc_error_detail(&body);
            let status = status.as_u16();
            return Err(if status == 401 || status == 403 {
                AppStoreError::Unauthorized { status, detail }
            } else {
                AppStoreError::Api { status, detail }
            });
        }
        Ok(Some(parse_sales_tsv(&body)?))
    }
}

/// The `code: detail` of an App Store Connect error document, else the start of the body.
fn asc_error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Doc {
        errors: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        code: Option<String>,
        title: Option<String>,
        detail: Option<String>,
    }
    match serde_json::from_slice::<Doc>(body) {
        Ok(doc) if !doc.errors.is_empty() => doc
            .errors
            .iter()
            .map(|e| {
                let text = e.detail.as_deref().or(e.title.as_deref()).unwrap_or("");
                match &e.code {
                    Some(code) => format!("{code}: {text}"),
                    None => text.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => super::body_excerpt(body),
    }
}

#[cfg(test)]
mod tests;
