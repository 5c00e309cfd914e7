//! Matomo's HTTP Reporting API: live counters and visit/device/OS reports per tenant's site.
//!
//! Matomo 5 tokens are "secure only" by default and are refused when `token_auth` appears in
//! the query string, so every call is a POST with *all* parameters, the token included, in the
//! form body and nothing in the URL. Matomo reports most errors as
//! `{"result":"error","message":…}` with HTTP 200, so the body is checked whatever the status.
//! Parsing is separate ([`parse_response`] and friends) and tolerant of Matomo's typing: numbers
//! may be JSON numbers or numeric strings, and an empty period is `[]`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// `[sources.matomo]`: where Matomo is and which site belongs to which tenant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatomoConfig {
    /// Matomo's root URL, e.g. `https://matomo.example/` (`…/index.php` is accepted too).
    pub base_url: String,
    /// A file holding the `token_auth` (Matomo → Personal → Security → Auth tokens; a
    /// view-access user suffices). Read at start; surrounding whitespace is ignored.
    pub token_file: PathBuf,
    /// Tenant → Matomo site id (`idSite`).
    #[serde(default)]
    pub sites: BTreeMap<String, u32>,
}

impl MatomoConfig {
    pub fn site_for(&self, tenant: &str) -> Option<u32> {
        self.sites.get(tenant).copied()
    }
}

/// Reporting period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day,
    Week,
    Month,
    Year,
    /// With `date=YYYY-MM-DD,YYYY-MM-DD`.
    Range,
}

impl Period {
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
            Period::Range => "range",
        }
    }
}

/// A failed Matomo call.
#[derive(Debug, thiserror::Error)]
pub enum MatomoError {
    #[error("cannot read the Matomo token file {path}: {source}")]
    TokenFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the Matomo token file {0} is empty")]
    EmptyToken(String),
    #[error("Matomo base_url {0:?} is not a valid URL")]
    BadBaseUrl(String),
    #[error("Matomo request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error(
        "Matomo refused the token (HTTP {status}): {message} — check token_file and that the token's user has view access to the site"
    )]
    Unauthorized { status: u16, message: String },
    #[error("Matomo {method} failed: {message}")]
    Api { method: String, message: String },
    #[error("Matomo answered HTTP {status}: {detail}")]
    Status { status: u16, detail: String },
    #[error("Matomo {method}: unexpected response ({reason}): {excerpt}")]
    Unexpected {
        method: String,
        reason: String,
        excerpt: String,
    },
    #[error("Live.getCounters lastMinutes must be 1..=2880, got {0}")]
    BadLastMinutes(u32),
}

/// `Live.getCounters`: activity in the last N minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct LiveCounters {
    #[serde(default, deserialize_with = "flex_u64")]
    pub visits: u64,
    #[serde(default, deserialize_with = "flex_u64")]
    pub actions: u64,
    #[serde(default, deserialize_with = "flex_u64")]
    pub visitors: u64,
    #[serde(default, rename = "visitsConverted", deserialize_with = "flex_u64")]
    pub visits_converted: u64,
}

/// Visit metrics shared by `VisitsSummary.get` and the `DevicesDetection.*` rows. Absent
/// metrics are 0, except unique visitors/users, which Matomo does not compute for years and
/// ranges by default (absent ≠ 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct VisitMetrics {
    #[serde(default, deserialize_with = "flex_u64")]
    pub nb_visits: u64,
    #[serde(default, deserialize_with = "flex_u64")]
    pub nb_actions: u64,
    #[serde(default, deserialize_with = "flex_opt_u64")]
    pub nb_uniq_visitors: Option<u64>,
    #[serde(default, deserialize_with = "flex_opt_u64")]
    pub nb_users: Option<u64>,
    /// Seconds.
    #[serde(default, deserialize_with = "flex_u64")]
    pub sum_visit_length: u64,
    #[serde(default, deserialize_with = "flex_u64")]
    pub bounce_count: u64,
    #[serde(default, deserialize_with = "flex_u64")]
    pub max_actions: u64,
    #[serde(default, deserialize_with = "flex_u64")]
    pub nb_visits_converted: u64,
}

/// A report row: a label (`Smartphone`, `Android`, …) and its metrics.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct LabeledRow {
    #[serde(deserialize_with = "flex_string")]
    pub label: String,
    #[serde(flatten)]
    pub metrics: VisitMetrics,
}

fn flex_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v => number_of(&v).map(Some).map_err(serde::de::Error::custom),
    }
}

fn flex_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    flex_opt_u64(d).map(Option::unwrap_or_default)
}

fn flex_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        v => Ok(v.to_string()),
    }
}

/// A count from a JSON number or numeric string (`3`, `"3"`, `3.0`, `""` = 0).
fn number_of(v: &Value) -> Result<u64, String> {
    let bad = || format!("expected a count, got {v}");
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(bad),
        Value::String(s) if s.trim().is_empty() => Ok(0),
        Value::String(s) => s
            .trim()
            .parse::<u64>()
            .ok()
            .or_else(|| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// How a response body failed the Matomo contract (without the HTTP context).
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseProblem {
    /// `{"result":"error","message":…}`.
    ApiError(String),
    /// Not JSON, or not the shape expected.
    Unexpected(String),
}

/// Checks a body for Matomo's error document; returns the JSON otherwise.
pub fn parse_response(body: &[u8]) -> Result<Value, ResponseProblem> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ResponseProblem::Unexpected(format!("not JSON: {e}")))?;
    if v.get("result").and_then(Value::as_str) == Some("error") {
        let msg = v
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        return Err(ResponseProblem::ApiError(msg.to_owned()));
    }
    Ok(v)
}

fn shape<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ResponseProblem> {
    serde_json::from_value(v).map_err(|e| ResponseProblem::Unexpected(e.to_string()))
}

/// `Live.getCounters`' one-element array (an empty array or a bare object are accepted).
pub fn parse_live_counters(v: Value) -> Result<LiveCounters, ResponseProblem> {
    match v {
        Value::Array(mut items) if items.len() <= 1 => {
            items.pop().map_or(Ok(LiveCounters::default()), shape)
        }
        v @ Value::Object(_) => shape(v),
        other => Err(ResponseProblem::Unexpected(format!(
            "expected a one-element array, got {}",
            kind_of(&other)
        ))),
    }
}

/// One period of `VisitsSummary.get`; `[]` (no data) gives zeros.
pub fn parse_visits_summary(v: Value) -> Result<VisitMetrics, ResponseProblem> {
    match v {
        Value::Array(a) if a.is_empty() => Ok(VisitMetrics::default()),
        v @ Value::Object(_) => shape(v),
        other => Err(ResponseProblem::Unexpected(format!(
            "expected an object or [], got {}",
            kind_of(&other)
        ))),
    }
}

/// `VisitsSummary.get` over several dates: an object keyed by date, `[]` for a day without data.
pub fn parse_visits_summary_by_date(
    v: Value,
) -> Result<BTreeMap<String, VisitMetrics>, ResponseProblem> {
    match v {
        Value::Object(map) => map
            .into_iter()
            .map(|(date, day)| Ok((date, parse_visits_summary(day)?)))
            .collect(),
        Value::Array(a) if a.is_empty() => Ok(BTreeMap::new()),
        other => Err(ResponseProblem::Unexpected(format!(
            "expected an object keyed by date, got {}",
            kind_of(&other)
        ))),
    }
}

/// A `DevicesDetection.*` report: an array of labeled rows (`[]` when empty). Matomo also
/// returns zero rows for every known device type; they are kept.
pub fn parse_labeled_rows(v: Value) -> Result<Vec<LabeledRow>, ResponseProblem> {
    match v {
        v @ Value::Array(_) => shape(v),
        other => Err(ResponseProblem::Unexpected(format!(
            "expected an array of rows, got {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The Matomo Reporting API client.
pub struct MatomoClient {
    config: MatomoConfig,
    token: String,
    endpoint: reqwest::Url,
    http: reqwest::Client,
}

impl std::fmt::Debug for MatomoClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("MatomoClient")
            .field("endpoint", &self.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl MatomoClient {
    /// Reads the token file and checks the base URL.
    pub fn new(config: MatomoConfig) -> Result<Self, MatomoError> {
        let path = config.token_file.display().to_string();
        let token = std::fs::read_to_string(&config.token_file)
            .map_err(|source| MatomoError::TokenFile {
                path: path.clone(),
                source,
            })?
            .trim()
            .to_owned();
        if token.is_empty() {
            return Err(MatomoError::EmptyToken(path));
        }
        let endpoint = endpoint_url(&config.base_url)
            .ok_or_else(|| MatomoError::BadBaseUrl(config.base_url.clone()))?;
        Ok(Self {
            config,
            token,
            endpoint,
            http: super::http_client()?,
        })
    }

    pub fn config(&self) -> &MatomoConfig {
        &self.config
    }

    /// Calls `method` with `params`; returns the JSON body unless it is an error.
    pub async fn call(&self, method: &str, params: &[(&str, &str)]) -> Result<Value, MatomoError> {
        let mut form: Vec<(&str, &str)> = vec![("module", "API"), ("method", method)];
        form.extend_from_slice(params);
        form.extend([("format", "JSON"), ("token_auth", self.token.as_str())]);
        let resp = self
            .http
            .post(self.endpoint.clone())
            .form(&form)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        match parse_response(&body) {
            Err(ResponseProblem::ApiError(message)) if status == 401 || status == 403 => {
                Err(MatomoError::Unauthorized { status, message })
            }
            Err(ResponseProblem::ApiError(message)) => Err(MatomoError::Api {
                method: method.to_owned(),
                message,
            }),
            _ if status == 401 || status == 403 => Err(MatomoError::Unauthorized {
                status,
                message: super::body_excerpt(&body),
            }),
            _ if !(200..300).contains(&status) => Err(MatomoError::Status {
                status,
                detail: super::body_excerpt(&body),
            }),
            Err(ResponseProblem::Unexpected(reason)) => Err(MatomoError::Unexpected {
                method: method.to_owned(),
                reason,
                excerpt: super::body_excerpt(&body),
            }),
            Ok(v) => Ok(v),
        }
    }

    async fn call_parsed<T>(
        &self,
        method: &str,
        params: &[(&str, &str)],
        parse: impl FnOnce(Value) -> Result<T, ResponseProblem>,
    ) -> Result<T, MatomoError> {
        let v = self.call(method, params).await?;
        let excerpt = super::body_excerpt(v.to_string().as_bytes());
        parse(v).map_err(|p| MatomoError::Unexpected {
            method: method.to_owned(),
            reason: match p {
                ResponseProblem::ApiError(m) | ResponseProblem::Unexpected(m) => m,
            },
            excerpt,
        })
    }

    /// `Live.getCounters` for the last `last_minutes` (1..=2880) minutes.
    pub async fn live_counters(
        &self,
        id_site: u32,
        last_minutes: u32,
    ) -> Result<LiveCounters, MatomoError> {
        if !(1..=2880).contains(&last_minutes) {
            return Err(MatomoError::BadLastMinutes(last_minutes));
        }
        let (site, minutes) = (id_site.to_string(), last_minutes.to_string());
        self.call_parsed(
            "Live.getCounters",
            &[("idSite", &site), ("lastMinutes", &minutes)],
            parse_live_counters,
        )
        .await
    }

    /// `VisitsSummary.get` for one period (`date` = `YYYY-MM-DD`, `today`, `yesterday`, or a
    /// `from,to` pair with [`Period::Range`]).
    pub async fn visits_summary(
        &self,
        id_site: u32,
        period: Period,
        date: &str,
    ) -> Result<VisitMetrics, MatomoError> {
        let site = id_site.to_string();
        self.call_parsed(
            "VisitsSummary.get",
            &[
                ("idSite", &site),
                ("period", period.as_str()),
                ("date", date),
            ],
            parse_visits_summary,
        )
        .await
    }

    /// `VisitsSummary.get` with `period=day` for each day of `from..=to` (for back-fill).
    pub async fn visits_summary_by_day(
        &self,
        id_site: u32,
        from: jiff::civil::Date,
        to: jiff::civil::Date,
    ) -> Result<BTreeMap<String, VisitMetrics>, MatomoError> {
        let (site, dates) = (id_site.to_string(), format!("{from},{to}"));
        self.call_parsed(
            "VisitsSummary.get",
            &[("idSite", &site), ("period", "day"), ("date", &dates)],
            parse_visits_summary_by_date,
        )
        .await
    }

    /// `DevicesDetection.getType`: visits by device type (Desktop, Smartphone, Tablet, …).
    pub async fn device_types(
        &self,
        id_site: u32,
        period: Period,
        date: &str,
    ) -> Result<Vec<LabeledRow>, MatomoError> {
        self.report_rows("DevicesDetection.getType", id_site, period, date)
            .await
    }

    /// `DevicesDetection.getOsFamilies`: visits by OS family (Android, iOS, Windows, …).
    pub async fn os_families(
        &self,
        id_site: u32,
        period: Period,
        date: &str,
    ) -> Result<Vec<LabeledRow>, MatomoError> {
        self.report_rows("DevicesDetection.getOsFamilies", id_site, period, date)
            .await
    }

    async fn report_rows(
        &self,
        method: &str,
        id_site: u32,
        period: Period,
        date: &str,
    ) -> Result<Vec<LabeledRow>, MatomoError> {
        let site = id_site.to_string();
        self.call_parsed(
            method,
            &[
                ("idSite", &site),
                ("period", period.as_str()),
                ("date", date),
                ("filter_limit", "-1"),
            ],
            parse_labeled_rows,
        )
        .await
    }
}

/// `{base}/index.php`, accepting a base that already names `index.php`.
fn endpoint_url(base: &str) -> Option<reqwest::Url> {
    let base = base.trim();
    let url = if base.ends_with(".php") {
        reqwest::Url::parse(base).ok()?
    } else {
        let with_slash = if base.ends_with('/') {
            base.to_owned()
        } else {
            format!("{base}/")
        };
        reqwest::Url::parse(&with_slash)
            .ok()?
            .join("index.php")
            .ok()?
    };
    matches!(url.scheme(), "http" | "https").then_some(url)
}

#[cfg(test)]
mod tests;
