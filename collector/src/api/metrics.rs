//! `/metrics` in Prometheus' text format (0.0.4): live listeners per tenant, stream and
//! protocol; the collector's own health (agents connected, batches, datagrams, API requests
//! by status, names its bounds folded); and each agent's own counters — lines, malformed
//! lines, requests that were not sessions and the agent's folds as merged from its batches
//! (exactly once, so they survive restarts of either side), the rest from its latest health
//! report.
//!
//! Why an admin token is required: the live counts of every tenant are on one page, and
//! tenants' tokens must not read each other's audiences. Prometheus sends one with
//! `authorization: { credentials_file: … }` in the scrape config.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::extract::Admin;
use super::{ApiError, AppState};

/// API responses by status code.
#[derive(Debug, Default)]
pub struct RequestStats {
    by_status: Mutex<BTreeMap<u16, u64>>,
}

impl RequestStats {
    pub fn count(&self, status: StatusCode) {
        let mut m = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(status.as_u16()).or_default() += 1;
    }

    pub fn snapshot(&self) -> Vec<(u16, u64)> {
        let m = self.by_status.lock().unwrap_or_else(|p| p.into_inner());
        m.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

/// Middleware: counts every response by its status (a `live/stream` when it starts).
pub(super) async fn count_requests(
    State(stats): State<std::sync::Arc<RequestStats>>,
    request: Request,
    next: Next,
) -> Response {
    let response = next.run(request).await;
    stats.count(response.status());
    response
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes Prometheus text: `# HELP` and `# TYPE` once per family, then its samples.
#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn family(&mut self, name: &str, kind: &str, help: &str) -> &mut Self {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
        self
    }

    pub fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) -> &mut Self {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn load(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

pub(super) async fn metrics(State(st): State<AppState>, _: Admin) -> Result<Response, ApiError> {
    let s = &st.services;
    let agents = s.agents.snapshot();
    let ids: Vec<String> = agents.iter().map(|(id, _)| id.clone()).collect();
    let store = st.store.clone();
    let totals = super::blocking(move || {
        ids.into_iter()
            .map(|id| store.agent_counters(&id).map(|t| (id, t)))
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    let totals: BTreeMap<String, _> = totals.into_iter().collect();
    let store = st.store.clone();
    let collector_folds = super::blocking(move || store.collector_folds()).await?;

    let mut e = Exposition::default();
    e.family(
        "earshot_live_listeners",
        "gauge",
        "Listeners now per tenant, stream and protocol: the sum over hosts whose samples are fresh (see stale_after_secs).",
    );
    for (tenant, stream, protocol, n) in s.live.all_sums() {
        e.sample(
            "earshot_live_listeners",
            &[
                ("tenant", &tenant),
                ("stream", &stream),
                ("protocol", protocol.as_str()),
            ],
            n,
        );
    }
    let link = &s.link;
    let counters: [(&str, &str, &str, u64); 12] = [
        (
            "earshot_agents_connected",
            "gauge",
            "Agent connections open now.",
            load(&link.agents_connected),
        ),
        (
            "earshot_agent_connections_total",
            "counter",
            "QUIC connections accepted (before authentication).",
            load(&link.connections),
        ),
        (
            "earshot_agents_admitted_total",
            "counter",
            "Agent connections admitted (Hello with a known agent and its token).",
            load(&link.agents_admitted),
        ),
        (
            "earshot_agents_refused_total",
            "counter",
            "Agent connections refused (unknown agent, wrong token, wrong protocol version).",
            load(&link.agents_refused),
        ),
        (
            "earshot_handshakes_failed_total",
            "counter",
            "QUIC/TLS handshakes that failed or timed out.",
            load(&link.handshakes_failed),
        ),
        (
            "earshot_batches_merged_total",
            "counter",
            "Batches merged into the store.",
            load(&link.batches_merged),
        ),
        (
            "earshot_batches_duplicate_total",
            "counter",
            "Batches received again after their merge (acknowledged, not merged again).",
            load(&link.batches_duplicate),
        ),
        (
            "earshot_batches_refused_total",
            "counter",
            "Batches refused (a tenant the agent may not report for, a wrong agent id).",
            load(&link.batches_refused),
        ),
        (
            "earshot_frames_rejected_total",
            "counter",
            "Frames that were undecodable, oversized or too slow (their connection or stream was closed).",
            load(&link.frames_rejected),
        ),
        (
            "earshot_store_errors_total",
            "counter",
            "Merges the store failed (the agent retries).",
            load(&link.store_errors),
        ),
        (
            "earshot_live_datagrams_total",
            "counter",
            "Live-sample datagrams received and decoded.",
            load(&link.live_samples),
        ),
        (
            "earshot_live_rejected_total",
            "counter",
            "Undecodable live datagrams plus live entries for tenants their agent may not report for.",
            load(&link.live_rejected),
        ),
    ];
    for (name, kind, help, value) in counters {
        e.family(name, kind, help).sample(name, &[], value);
    }
    e.family(
        "earshot_agent_health_reports_total",
        "counter",
        "Health reports received from agents.",
    )
    .sample(
        "earshot_agent_health_reports_total",
        &[],
        load(&link.health_reports),
    );
    e.family(
        "earshot_collector_folded_total",
        "counter",
        "Distinct names the collector's [limits] folded into (other) on merge, by tenant and what (stream or a dimension), summed over UTC hours.",
    );
    for ((tenant, what), n) in &collector_folds {
        e.sample(
            "earshot_collector_folded_total",
            &[("tenant", tenant), ("what", what)],
            n,
        );
    }
    e.family(
        "earshot_api_requests_total",
        "counter",
        "HTTP API responses by status code (a live/stream counts when it starts).",
    );
    for (status, n) in s.requests.snapshot() {
        e.sample(
            "earshot_api_requests_total",
            &[("status", &status.to_string())],
            n,
        );
    }

    // Per agent. Families are written whole, one after the other, as the format wants.
    e.family(
        "earshot_agent_up",
        "gauge",
        "1 while the agent has a connection open, else 0.",
    );
    for (id, a) in &agents {
        e.sample(
            "earshot_agent_up",
            &[("agent", id)],
            u8::from(a.connections > 0),
        );
    }
    e.family(
        "earshot_agent_lines_total",
        "counter",
        "Log lines the agent read, from its merged batches.",
    );
    for (id, t) in &totals {
        e.sample(
            "earshot_agent_lines_total",
            &[("agent", id)],
            t.as_ref().map_or(0, |t| t.lines),
        );
    }
    e.family(
        "earshot_agent_batches_total",
        "counter",
        "Batches of the agent merged into the store.",
    );
    for (id, t) in &totals {
        e.sample(
            "earshot_agent_batches_total",
            &[("agent", id)],
            t.as_ref().map_or(0, |t| t.batches),
        );
    }
    e.family(
        "earshot_agent_malformed_lines_total",
        "counter",
        "Log lines the agent could not parse, by reason, from its merged batches.",
    );
    for (id, t) in &totals {
        for (reason, n) in t.iter().flat_map(|t| t.malformed.iter()) {
            e.sample(
                "earshot_agent_malformed_lines_total",
                &[("agent", id), ("reason", reason)],
                n,
            );
        }
    }
    e.family(
        "earshot_agent_not_sessions_total",
        "counter",
        "Successful (2xx) requests that were not audio and so no session, by tenant and kind (document, image, script, player_file, status_page, method, other, ignored), from the agent's merged batches.",
    );
    for (id, t) in &totals {
        for ((tenant, kind), n) in t.iter().flat_map(|t| t.not_sessions.iter()) {
            e.sample(
                "earshot_agent_not_sessions_total",
                &[("agent", id), ("tenant", tenant), ("kind", kind)],
                n,
            );
        }
    }
    e.family(
        "earshot_agent_folded_total",
        "counter",
        "Distinct names the agent folded into (other) by its cardinality bounds, by tenant and what (stream or a dimension), from its merged batches.",
    );
    for (id, t) in &totals {
        for ((tenant, what), n) in t.iter().flat_map(|t| t.folded.iter()) {
            e.sample(
                "earshot_agent_folded_total",
                &[("agent", id), ("tenant", tenant), ("what", what)],
                n,
            );
        }
    }
    type Field = fn(&earshot_common::wire::AgentHealth) -> u64;
    let health: [(&str, &str, &str, Field); 8] = [
        (
            "earshot_agent_spool_dropped_batches_total",
            "counter",
            "Batches the agent dropped because its spool was full ([spool] when_full).",
            |h| h.spool_dropped_batches,
        ),
        (
            "earshot_agent_sessions_open",
            "gauge",
            "Sessions open in the agent's sessionizer (its last report).",
            |h| h.sessions_open,
        ),
        (
            "earshot_agent_spool_batches",
            "gauge",
            "Batches in the agent's spool not yet acknowledged (its last report).",
            |h| h.spool_batches,
        ),
        (
            "earshot_agent_spool_bytes",
            "gauge",
            "Bytes of those batches (its last report).",
            |h| h.spool_bytes,
        ),
        (
            "earshot_agent_send_failures_total",
            "counter",
            "Attempts of the agent to ship its spool that failed, since the agent started.",
            |h| h.send_failures,
        ),
        (
            "earshot_agent_live_sent_total",
            "counter",
            "Live datagrams the agent sent, since it started.",
            |h| h.live_sent,
        ),
        (
            "earshot_agent_live_dropped_total",
            "counter",
            "Live samples the agent dropped (no connection, too large, behind), since it started.",
            |h| h.live_dropped,
        ),
        (
            "earshot_agent_live_polls_failed_total",
            "counter",
            "Polls of the agent's live sources (HAProxy, Icecast) that failed, since it started.",
            |h| h.live_polls_failed,
        ),
    ];
    for (name, kind, help, field) in health {
        e.family(name, kind, help);
        for (id, a) in &agents {
            if let Some((h, _)) = &a.health {
                e.sample(name, &[("agent", id)], field(h));
            }
        }
    }
    e.family(
        "earshot_agent_last_report_timestamp_seconds",
        "gauge",
        "When the agent's last health report arrived (Unix time, collector's clock).",
    );
    for (id, a) in &agents {
        if let Some((_, received)) = &a.health {
            e.sample(
                "earshot_agent_last_report_timestamp_seconds",
                &[("agent", id)],
                format!("{:.3}", *received as f64 / 1000.0),
            );
        }
    }
    e.family(
        "earshot_agent_start_timestamp_seconds",
        "gauge",
        "When the agent process started (Unix time, agent's clock); a change means a restart.",
    );
    for (id, a) in &agents {
        if let Some((h, _)) = &a.health {
            e.sample(
                "earshot_agent_start_timestamp_seconds",
                &[("agent", id)],
                format!("{:.3}", h.started_ms as f64 / 1000.0),
            );
        }
    }
    let mut resp = e.finish().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        let mut e = Exposition::default();
        e.family("x", "gauge", "An x.")
            .sample("x", &[("stream", "/a\"b\\c\nd")], 3);
        assert_eq!(
            e.finish(),
            "# HELP x An x.\n# TYPE x gauge\nx{stream=\"/a\\\"b\\\\c\\nd\"} 3\n"
        );
    }
}
