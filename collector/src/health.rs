//! What the QUIC endpoint reports of itself and of its agents: counters and each agent's
//! connections and last health report. Written by `link`, read by the API's `/metrics`
//! (which so never needs `link`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use earshot_common::wire::AgentHealth;

/// Counters of the link (exposed as metrics later). Every refusal and every rejected frame is
/// counted here as well as logged.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub connections: AtomicU64,
    pub handshakes_failed: AtomicU64,
    pub agents_admitted: AtomicU64,
    pub agents_refused: AtomicU64,
    pub batches_merged: AtomicU64,
    pub batches_duplicate: AtomicU64,
    pub batches_refused: AtomicU64,
    /// Frames that closed their connection (undecodable, oversized) or were cut off (slow).
    pub frames_rejected: AtomicU64,
    pub store_errors: AtomicU64,
    /// Live-sample datagrams received and decoded.
    pub live_samples: AtomicU64,
    /// Undecodable datagrams and live entries for tenants the agent may not report for.
    pub live_rejected: AtomicU64,
    /// Agent connections admitted and not yet closed (a gauge).
    pub agents_connected: AtomicU64,
    /// Health reports received from agents.
    pub health_reports: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// What the collector knows of an agent now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// Connections of this agent that are open (more than one only briefly, on reconnect).
    pub connections: u32,
    /// The agent's last health report and when it arrived (collector's clock, ms).
    pub health: Option<(AgentHealth, i64)>,
}

/// Every configured agent's status, for `/metrics`.
#[derive(Debug, Default)]
pub struct AgentBoard {
    agents: Mutex<BTreeMap<String, AgentStatus>>,
}

impl AgentBoard {
    /// A board listing the configured agents (each shown even before it connects).
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> AgentBoard {
        AgentBoard {
            agents: Mutex::new(
                ids.into_iter()
                    .map(|id| (id.to_string(), AgentStatus::default()))
                    .collect(),
            ),
        }
    }

    pub(crate) fn update(&self, id: &str, f: impl FnOnce(&mut AgentStatus)) {
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        f(agents.entry(id.to_string()).or_default());
    }

    pub fn snapshot(&self) -> Vec<(String, AgentStatus)> {
        let agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        agents.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}
