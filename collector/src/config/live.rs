//! `[live]`: how long live counts and their history are kept, and how often they are saved.

use serde::Deserialize;

use super::Check;

/// `[live]`: the live listener counts the agents send as datagrams, kept in memory with their
/// recent history and saved to `state_dir/live.db` so that a restart keeps them.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveConfig {
    /// Seconds of history kept per tenant and stream (what `live/history` can show). Held in
    /// memory: at most one point per second per stream, fewer when the count is steady.
    #[serde(default = "default_live_retention")]
    pub live_retention_secs: u64,
    /// A host (agent) whose samples for a stream stop is dropped from the live sum after this
    /// many seconds. Keep it a few times the agents' `[live] interval_secs`.
    #[serde(default = "default_stale_after")]
    pub stale_after_secs: u64,
    /// Seconds between two saves of the live state to `state_dir/live.db` (it is also saved
    /// on shutdown). A crash loses at most this much history.
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval_secs: u64,
    /// Seconds between two heartbeats (SSE comments) on an idle `live/stream`, which keep
    /// proxies from closing it and let clients notice a dead connection.
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
}

impl Default for LiveConfig {
    fn default() -> Self {
        LiveConfig {
            live_retention_secs: default_live_retention(),
            stale_after_secs: default_stale_after(),
            snapshot_interval_secs: default_snapshot_interval(),
            heartbeat_secs: default_heartbeat(),
        }
    }
}

impl LiveConfig {
    pub fn settings(&self) -> crate::live::LiveSettings {
        crate::live::LiveSettings {
            retention_ms: self.live_retention_secs as i64 * 1000,
            stale_after_ms: self.stale_after_secs as i64 * 1000,
        }
    }

    pub(super) fn check(&self) -> Check {
        if !(60..=7 * 86_400).contains(&self.live_retention_secs) {
            return Err((
                "live.live_retention_secs".into(),
                "expected between 60 seconds and 7 days (604800)".into(),
            ));
        }
        if !(1..=86_400).contains(&self.stale_after_secs) {
            return Err((
                "live.stale_after_secs".into(),
                "expected between 1 and 86400 seconds".into(),
            ));
        }
        if !(1..=86_400).contains(&self.snapshot_interval_secs) {
            return Err((
                "live.snapshot_interval_secs".into(),
                "expected between 1 and 86400 seconds".into(),
            ));
        }
        if !(1..=300).contains(&self.heartbeat_secs) {
            return Err((
                "live.heartbeat_secs".into(),
                "expected between 1 and 300 seconds".into(),
            ));
        }
        Ok(())
    }
}

fn default_live_retention() -> u64 {
    7200
}
fn default_stale_after() -> u64 {
    30
}
fn default_snapshot_interval() -> u64 {
    60
}
fn default_heartbeat() -> u64 {
    15
}

#[cfg(test)]
mod tests {
    use super::super::tests::fails;

    #[test]
    fn live_values_out_of_range() {
        fails(
            "[live]\nlive_retention_secs = 10\n",
            "live.live_retention_secs",
            "between 60 seconds",
        );
        fails(
            "[live]\nstale_after_secs = 0\n",
            "live.stale_after_secs",
            "between 1",
        );
        fails(
            "[live]\nsnapshot_interval_secs = 0\n",
            "live.snapshot_interval_secs",
            "between 1",
        );
        fails(
            "[live]\nheartbeat_secs = 0\n",
            "live.heartbeat_secs",
            "between 1",
        );
        fails(
            "[live]\nstale_after = 5\n",
            "live.stale_after",
            "unknown field",
        );
    }
}
