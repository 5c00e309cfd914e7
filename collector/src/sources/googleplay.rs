//! Google Play install statistics, read from the developer account's Cloud Storage bucket.
//!
//! Google writes one CSV per package, month and dimension
//! (`stats/installs/installs_<package>_<YYYYMM>_<dimension>.csv`) and rewrites the current
//! month's files daily, so the poller lists the month's objects and re-downloads those whose
//! `generation` changed ([`objects_to_fetch`]). Files are UTF-16LE with a BOM and their header
//! names vary in case and across Google's 2019 renames, so [`parse_installs_csv`] decodes by BOM
//! and matches columns case-insensitively; a blank cell means "not reported", never 0.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use jiff::civil::Date;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};

use super::jwt::{KeyError, Rs256Key, read_key_file};
use super::text::{self, Header, TextError, cell};
use super::{DailyDownloads, DownloadCounts, Store, Units};

/// Cloud Storage JSON API root.
pub const DEFAULT_STORAGE_BASE_URL: &str = "https://storage.googleapis.com";
/// Google's OAuth token endpoint (used when the key file has no `token_uri`).
pub const DEFAULT_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// Read-only access to the bucket is all the poller needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_only";
/// Assertion lifetime (Google's maximum is one hour).
pub const ASSERTION_LIFETIME_SECS: i64 = 3600;
/// A cached access token is renewed this long before it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(120);

/// `[sources.google_play]`: the service account and the packages to collect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GooglePlayConfig {
    /// The service account's JSON key file (Cloud Console → IAM → Service accounts → Keys).
    /// The account must be invited in Play Console with "View app information and download
    /// bulk reports"; that can take a day to take effect.
    pub service_account_file: PathBuf,
    /// The reports bucket, as Play Console's "Copy Cloud Storage URI" shows it, e.g.
    /// `pubsite_prod_rev_01234567890987654321` (a `gs://…/` form is accepted too).
    pub bucket: String,
    /// Package name → tenant, e.g. `"com.example.radio" = "example"`.
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
    /// Cloud Storage API root; change only for tests.
    #[serde(default = "default_storage_base_url")]
    pub storage_base_url: String,
    /// OAuth token endpoint; overrides the key file's `token_uri`. For tests.
    #[serde(default)]
    pub token_url: Option<String>,
}

fn default_storage_base_url() -> String {
    DEFAULT_STORAGE_BASE_URL.to_owned()
}

impl GooglePlayConfig {
    /// The bare bucket name from `pubsite_…`, `gs://pubsite_…` or `gs://pubsite_…/stats/installs/`.
    pub fn bucket_name(&self) -> &str {
        let b = self.bucket.trim();
        let b = b.strip_prefix("gs://").unwrap_or(b);
        b.split('/').next().unwrap_or(b)
    }
}

/// The fields of a service-account JSON key the poller uses (the file has more).
#[derive(Debug, Clone, Deserialize)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// One row of an installs CSV: one day, for the whole app (`overview`) or one dimension value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct InstallRow {
    #[serde(serialize_with = "crate::sources::serialize_date")]
    pub date: Date,
    pub package: String,
    /// The `Country` column of `*_country.csv`.
    pub country: Option<String>,
    /// (column, value) of another breakdown (`Device`, `Language`, …) when the file has one;
    /// such rows are parts of a whole, not totals.
    pub other_dimension: Option<(String, String)>,
    pub daily_device_installs: Option<i64>,
    pub daily_user_installs: Option<i64>,
    pub daily_device_uninstalls: Option<i64>,
    pub daily_user_uninstalls: Option<i64>,
    pub daily_device_upgrades: Option<i64>,
    pub total_user_installs: Option<i64>,
    pub active_device_installs: Option<i64>,
    pub install_events: Option<i64>,
    pub update_events: Option<i64>,
    pub uninstall_events: Option<i64>,
}

/// Breakdown columns of the non-country dimension files.
const OTHER_DIMENSIONS: &[&str] = &[
    "device",
    "app version code",
    "android os version",
    "language",
    "carrier",
];

/// Why an installs CSV could not be parsed.
#[derive(Debug, thiserror::Error)]
pub enum InstallsParseError {
    #[error(transparent)]
    Text(#[from] TextError),
    #[error("installs CSV is empty (no header line)")]
    Empty,
    #[error("installs CSV has no `{0}` column")]
    MissingColumn(&'static str),
    #[error("installs CSV line {line}: `{column}` is empty")]
    MissingCell { line: usize, column: &'static str },
    #[error("installs CSV line {line}: `Date` is not YYYY-MM-DD: {value:?}")]
    BadDate { line: usize, value: String },
    #[error("installs CSV line {line}: `{column}` is not an integer: {value:?}")]
    BadNumber {
        line: usize,
        column: String,
        value: String,
    },
}

/// Whether decoded text is an installs CSV: a comma-separated header with `Date` and
/// `Package Name` (any case).
pub fn looks_like_installs_csv(text: &str) -> bool {
    let first = text.lines().next().unwrap_or("");
    let Ok(recs) = text::parse_csv(first) else {
        return false;
    };
    recs.first().is_some_and(|r| {
        let h = Header::new(&r.fields);
        h.has("date") && h.has("package name")
    })
}

/// Parses an installs CSV: UTF-16 with a BOM (as Google writes it) or UTF-8.
pub fn parse_installs_csv(bytes: &[u8]) -> Result<Vec<InstallRow>, InstallsParseError> {
    let plain = text::maybe_gunzip(bytes)?;
    let decoded = text::decode_text(&plain)?;
    let mut records = text::parse_csv(&decoded)?.into_iter();
    let header_rec = records.next().ok_or(InstallsParseError::Empty)?;
    let header = Header::new(&header_rec.fields);
    let date_i = header.find(&["date"]);
    let package_i = header.find(&["package name"]);
    date_i.ok_or(InstallsParseError::MissingColumn("Date"))?;
    package_i.ok_or(InstallsParseError::MissingColumn("Package Name"))?;
    let country_i = header.find(&["country"]);
    let other_i = header.find(OTHER_DIMENSIONS);
    let other_name = other_i.map(|i| header_rec.fields[i].trim().to_owned());
    let metric = |name: &str| {
        header
            .find(&[name])
            .map(|i| (i, header_rec.fields[i].trim()))
    };
    let cols = [
        metric("daily device installs"),
        metric("daily user installs"),
        metric("daily device uninstalls"),
        metric("daily user uninstalls"),
        metric("daily device upgrades"),
        metric("total user installs"),
        metric("active device installs"),
        metric("install events"),
        metric("update events"),
        metric("uninstall events"),
    ];

    records
        .map(|rec| {
            let f = &rec.fields;
            let line = rec.line;
            let date_s = cell(f, date_i).ok_or(InstallsParseError::MissingCell {
                line,
                column: "Date",
            })?;
            let date = date_s
                .parse::<Date>()
                .map_err(|_| InstallsParseError::BadDate {
                    line,
                    value: date_s.to_owned(),
                })?;
            let package = cell(f, package_i)
                .ok_or(InstallsParseError::MissingCell {
                    line,
                    column: "Package Name",
                })?
                .to_owned();
            let mut n = [None; 10];
            for (slot, col) in n.iter_mut().zip(cols) {
                let Some((i, name)) = col else { continue };
                if let Some(v) = cell(f, Some(i)) {
                    *slot = Some(
                        v.parse::<i64>()
                            .map_err(|_| InstallsParseError::BadNumber {
                                line,
                                column: name.to_owned(),
                                value: v.to_owned(),
                            })?,
                    );
                }
            }
            Ok(InstallRow {
                date,
                package,
                country: cell(f, country_i).map(str::to_owned),
                other_dimension: other_name
                    .clone()
                    .and_then(|name| Some((name, cell(f, other_i)?.to_owned()))),
                daily_device_installs: n[0],
                daily_user_installs: n[1],
                daily_device_uninstalls: n[2],
                daily_user_uninstalls: n[3],
                daily_device_upgrades: n[4],
                total_user_installs: n[5],
                active_device_installs: n[6],
                install_events: n[7],
                update_events: n[8],
                uninstall_events: n[9],
            })
        })
        .collect()
}

/// Sums rows into per (day, package, country) download counts. Rows of other breakdowns
/// (device, language, …) are skipped: summed with overview rows they would count twice. Feed
/// either `overview` or `country` files, not both, for the same package and month.
pub fn summarize_installs(rows: &[InstallRow]) -> Vec<DailyDownloads> {
    fn add(slot: &mut Option<Units>, v: Option<i64>) {
        if let Some(v) = v {
            *slot.get_or_insert(Units::ZERO) += Units::whole(v);
        }
    }
    let mut out: BTreeMap<(Date, &str, Option<&str>), DailyDownloads> = BTreeMap::new();
    for row in rows.iter().filter(|r| r.other_dimension.is_none()) {
        let entry = out
            .entry((row.date, &row.package, row.country.as_deref()))
            .or_insert_with(|| DailyDownloads {
                store: Store::GooglePlay,
                app: row.package.clone(),
                apple_id: None,
                date: row.date,
                country: row.country.clone(),
                counts: DownloadCounts::default(),
            });
        add(&mut entry.counts.downloads, row.daily_user_installs);
        add(&mut entry.counts.updates, row.daily_device_upgrades);
        add(&mut entry.counts.uninstalls, row.daily_device_uninstalls);
    }
    out.into_values().collect()
}

/// The listing prefix for one package and month: `stats/installs/installs_<pkg>_<YYYYMM>`.
pub fn installs_prefix(package: &str, year: i16, month: i8) -> String {
    format!("stats/installs/installs_{package}_{year:04}{month:02}")
}

/// The dimension (`country`, `overview`, `os_version`, …) of an object listed under
/// [`installs_prefix`]`(package, …)`, or `None` if the name belongs to something else.
pub fn object_dimension<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    name.strip_prefix(prefix)?
        .strip_prefix('_')?
        .strip_suffix(".csv")
        .filter(|d| !d.is_empty())
}

/// The months to poll on `today`: this month, and during its first `grace_days` days also the
/// previous one, whose last days Google is still rewriting.
pub fn months_to_poll(today: Date, grace_days: i8) -> Vec<(i16, i8)> {
    let mut months = Vec::with_capacity(2);
    if today.day() <= grace_days {
        let prev = today.first_of_month().yesterday().unwrap_or(today);
        months.push((prev.year(), prev.month()));
    }
    months.push((today.year(), today.month()));
    months
}

/// An entry of a bucket listing (`storage#object`, the fields the poller uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageObject {
    pub name: String,
    /// A uint64 sent as a JSON string.
    #[serde(default)]
    pub size: Option<String>,
    /// Changes on every rewrite; the poller's "did it change" key.
    #[serde(default)]
    pub generation: Option<String>,
    #[serde(default)]
    pub updated: Option<String>,
    #[serde(default)]
    pub md5_hash: Option<String>,
    #[serde(default)]
    pub content_encoding: Option<String>,
}

/// The listed objects whose generation differs from the one last imported (`seen(name)`).
pub fn objects_to_fetch(
    listed: &[StorageObject],
    seen: impl Fn(&str) -> Option<String>,
) -> Vec<&StorageObject> {
    listed
        .iter()
        .filter(|o| match (&o.generation, seen(&o.name)) {
            (Some(now), Some(before)) => *now != before,
            _ => true,
        })
        .collect()
}

/// A failed Google request.
#[derive(Debug, thiserror::Error)]
pub enum GooglePlayError {
    #[error("Google service account key: {0}")]
    Key(#[from] KeyError),
    #[error("Google service account file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("Google {what} URL {url:?} is not valid")]
    BadUrl { what: &'static str, url: String },
    #[error("Google request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error(
        "Google refused the service account (HTTP {status}): {detail} — check the key file and the account's Play Console permission"
    )]
    Unauthorized { status: u16, detail: String },
    #[error("Google OAuth token endpoint answered HTTP {status}: {detail}")]
    Token { status: u16, detail: String },
    #[error("Cloud Storage answered HTTP {status} for {what}: {detail}")]
    Storage {
        status: u16,
        what: String,
        detail: String,
    },
    #[error("Cloud Storage listing is not the expected JSON: {0}")]
    BadListing(serde_json::Error),
}

/// Path segment encoding: everything but RFC 3986 unreserved, so `/` becomes `%2F`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Serialize)]
struct JwtHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    kid: Option<&'a str>,
}

#[derive(Serialize)]
struct JwtClaims<'a> {
    iss: &'a str,
    scope: &'static str,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

struct CachedToken {
    token: String,
    renew_at: Instant,
}

/// The Cloud Storage client for the Play reports bucket.
pub struct GooglePlayClient {
    config: GooglePlayConfig,
    account: ServiceAccountKey,
    key: Rs256Key,
    token_url: String,
    http: reqwest::Client,
    token: tokio::sync::Mutex<Option<CachedToken>>,
}

impl GooglePlayClient {
    /// Reads and checks the service-account key file.
    pub fn new(config: GooglePlayConfig) -> Result<Self, GooglePlayError> {
        let path = config.service_account_file.display().to_string();
        let raw = read_key_file(&config.service_account_file)?;
        let account: ServiceAccountKey =
            serde_json::from_slice(&raw).map_err(|e| GooglePlayError::KeyFile {
                path: path.clone(),
                reason: format!("not a service-account JSON key ({e})"),
            })?;
        let key = Rs256Key::from_pem(account.private_key.as_bytes(), &path)?;
        let token_url = config
            .token_url
            .clone()
            .or_else(|| account.token_uri.clone())
            .unwrap_or_else(|| DEFAULT_TOKEN_URL.to_owned());
        Ok(Self {
            config,
            account,
            key,
            token_url,
            http: super::http_client()?,
            token: tokio::sync::Mutex::new(None),
        })
    }

    pub fn config(&self) -> &GooglePlayConfig {
        &self.config
    }

    /// The signed assertion for the token exchange, valid from `now`.
    pub fn make_assertion(&self, now: Timestamp) -> Result<String, KeyError> {
        let iat = now.as_second();
        self.key.sign_jwt(
            &JwtHeader {
                alg: "RS256",
                typ: "JWT",
                kid: self.account.private_key_id.as_deref(),
            },
            &JwtClaims {
                iss: &self.account.client_email,
                scope: SCOPE,
                aud: &self.token_url,
                iat,
                exp: iat + ASSERTION_LIFETIME_SECS,
            },
        )
    }

    /// A valid access token: the cached one, or a fresh one from the JWT-bearer exchange.
    pub async fn access_token(&self) -> Result<String, GooglePlayError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(t.token.clone());
        }
        #[derive(Deserialize)]
        struct TokenResponse {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
        }
        let assertion = self.make_assertion(Timestamp::now())?;
        let resp = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            let detail = oauth_error_detail(&body);
            return Err(match status.as_u16() {
                s @ (400 | 401 | 403) => GooglePlayError::Unauthorized { status: s, detail },
                s => GooglePlayError::Token { status: s, detail },
            });
        }
        let t: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| GooglePlayError::Token {
                status: status.as_u16(),
                detail: format!("unexpected token response ({e})"),
            })?;
        let lifetime = Duration::from_secs(t.expires_in.unwrap_or(3600));
        *cached = Some(CachedToken {
            token: t.access_token.clone(),
            renew_at: Instant::now() + lifetime.saturating_sub(TOKEN_RENEW_MARGIN),
        });
        Ok(t.access_token)
    }

    fn bucket_url(&self) -> String {
        format!(
            "{}/storage/v1/b/{}/o",
            self.config.storage_base_url.trim_end_matches('/'),
            utf8_percent_encode(self.config.bucket_name(), SEGMENT)
        )
    }

    /// GETs `url` with the access token; on 401 drops the cached token and retries once.
    async fn get_authorized(
        &self,
        url: reqwest::Url,
        what: &str,
    ) -> Result<bytes::Bytes, GooglePlayError> {
        for attempt in 0..2 {
            let token = self.access_token().await?;
            let resp = self.http.get(url.clone()).bearer_auth(token).send().await?;
            let status = resp.status();
            let body = resp.bytes().await?;
            if status.is_success() {
                return Ok(body);
            }
            if status == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                *self.token.lock().await = None;
                continue;
            }
            let detail = super::body_excerpt(&body);
            return Err(match status.as_u16() {
                s @ (401 | 403) => GooglePlayError::Unauthorized { status: s, detail },
                s => GooglePlayError::Storage {
                    status: s,
                    what: what.to_owned(),
                    detail,
                },
            });
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// All objects whose name starts with `prefix`, following `nextPageToken`.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<StorageObject>, GooglePlayError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            #[serde(default)]
            items: Vec<StorageObject>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        let base = self.bucket_url();
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        loop {
            let mut url = reqwest::Url::parse(&base).map_err(|_| GooglePlayError::BadUrl {
                what: "storage",
                url: base.clone(),
            })?;
            url.query_pairs_mut().append_pair("prefix", prefix);
            if let Some(t) = &page_token {
                url.query_pairs_mut().append_pair("pageToken", t);
            }
            let body = self
                .get_authorized(url, &format!("listing {prefix:?}"))
                .await?;
            let page: Page = serde_json::from_slice(&body).map_err(GooglePlayError::BadListing)?;
            out.extend(page.items);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => page_token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// An object's content (`alt=media`).
    pub async fn download(&self, name: &str) -> Result<bytes::Bytes, GooglePlayError> {
        let raw = format!(
            "{}/{}",
            self.bucket_url(),
            utf8_percent_encode(name, SEGMENT)
        );
        let mut url = reqwest::Url::parse(&raw).map_err(|_| GooglePlayError::BadUrl {
            what: "storage",
            url: raw.clone(),
        })?;
        url.query_pairs_mut().append_pair("alt", "media");
        self.get_authorized(url, name).await
    }
}

/// `error: error_description` of an OAuth error response, else the start of the body.
fn oauth_error_detail(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OAuthError {
        error: String,
        #[serde(default)]
        error_description: Option<String>,
    }
    match serde_json::from_slice::<OAuthError>(body) {
        Ok(e) => match e.error_description {
            Some(d) => format!("{}: {d}", e.error),
            None => e.error,
        },
        Err(_) => super::body_excerpt(body),
    }
}

#[cfg(test)]
mod tests;
