//! The local spool: batches waiting for the collector's acknowledgement, the file checkpoints
//! and the ingestor's open-session state, in one SQLite file.
//!
//! What must stay true: a batch, the checkpoints that say which lines it covers and the state
//! that carries open sessions past those lines are committed in one transaction, durably
//! (`synchronous=FULL`), so a crash at any instant neither loses nor doubles a line. Sequence
//! numbers come from a counter that only grows, so a batch acknowledged and deleted never
//! lends its number to a later one (the collector deduplicates by `(agent_id, seq)`).

use std::path::{Path, PathBuf};

use earshot_common::rollup::{HourKey, HourRollup};
use earshot_common::wire::{AgentCounters, Batch, v1};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// How long a writer waits for another connection's lock before giving up.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS checkpoints (
    file_key TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    offset INTEGER NOT NULL,
    finished INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
";

/// The `[spool]` table: the bound on what waits for the collector.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Most bytes of unacknowledged batches kept in the spool (encoded size). When a commit
    /// takes the spool past it, batches are dropped by `when_full`, logged as a warning and
    /// counted (`earshot_agent_spool_dropped_batches_total` in the state, and in the log).
    /// Default 1 GiB.
    #[serde(default = "default_spool_max_bytes")]
    pub max_bytes: u64,
    /// Which batches go when the spool is full: `"drop_oldest"` (default: the newest hours
    /// are kept, the oldest unsent ones are lost) or `"drop_newest"` (what is spooled stays;
    /// new batches are dropped until the collector takes some).
    #[serde(default)]
    pub when_full: SpoolFullPolicy,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SpoolFullPolicy {
    #[default]
    DropOldest,
    DropNewest,
}

fn default_spool_max_bytes() -> u64 {
    1 << 30
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            max_bytes: default_spool_max_bytes(),
            when_full: SpoolFullPolicy::default(),
        }
    }
}

impl SpoolConfig {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.max_bytes < 64 * 1024 {
            return Err(("max_bytes".into(), "must be at least 65536".into()));
        }
        Ok(())
    }
}

/// Where the reader stands in one log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identity of the file, independent of its name (rotation renames it): e.g. `dev:inode`
    /// plus a fingerprint of its first bytes.
    pub file_key: String,
    /// Where the file was last seen (for humans and logs).
    pub path: String,
    /// Bytes of the file already turned into aggregates.
    pub offset: u64,
    /// The file was rotated away and read to its end: it will not grow again.
    pub finished: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    // The cause is part of the message (not a `source`), so that a chain printed with
    // `{:#}` says it once.
    #[error("spool {path}: {error}")]
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
    #[error("spool {path}: cannot encode batch: {error}")]
    Encode {
        path: PathBuf,
        error: postcard::Error,
    },
    #[error("spool {path}: batch {seq} is unreadable: {error}")]
    Corrupt {
        path: PathBuf,
        seq: u64,
        error: postcard::Error,
    },
}

/// What a stored batch row holds, in protocol 1's form; agent id and seq are added when it
/// is read back.
#[derive(Serialize, Deserialize)]
struct StoredBatch {
    rollups: Vec<(v1::HourKeyV1, v1::HourRollupV1)>,
    counters: v1::AgentCountersV1,
}

pub struct Spool {
    conn: Connection,
    path: PathBuf,
    cap: SpoolCap,
}

/// The bound on unacknowledged batches (`[spool]` of agent.toml) and what goes when it is hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolCap {
    pub max_bytes: u64,
    pub when_full: SpoolFullPolicy,
}

impl Default for SpoolCap {
    fn default() -> Self {
        let c = SpoolConfig::default();
        SpoolCap {
            max_bytes: c.max_bytes,
            when_full: c.when_full,
        }
    }
}

impl Spool {
    /// Opens (creating if needed) the spool at `path`.
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        let conn = Connection::open(path).map_err(|e| sqlite_err(path, e))?;
        let spool = Spool {
            conn,
            path: path.to_path_buf(),
            cap: SpoolCap::default(),
        };
        spool.init().map_err(|e| spool.err(e))?;
        Ok(spool)
    }

    fn init(&self) -> rusqlite::Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        // `journal_mode` answers with the mode in force; WAL is unavailable on some
        // filesystems, where SQLite keeps its rollback journal (still atomic).
        let _mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        self.conn.execute_batch("PRAGMA synchronous=FULL;")?;
        self.conn.execute_batch(SCHEMA)
    }

    /// Sets the bound applied after every commit.
    pub fn set_cap(&mut self, cap: SpoolCap) {
        self.cap = cap;
    }

    /// Batches dropped so far because the spool was full (kept across restarts).
    pub fn dropped_batches(&self) -> Result<u64, SpoolError> {
        self.conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'dropped_batches'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|n| n.unwrap_or(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// Drops batches until the spool is within its cap: the oldest or the newest, by policy.
    /// The last remaining batch is kept even if it alone is over the cap with `drop_oldest`
    /// (it is the newest data). Returns how many were dropped now.
    fn enforce_cap(&mut self) -> Result<u64, SpoolError> {
        let cap = self.cap;
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sqlite_err(&path, e))?;
        let dropped = (|| -> rusqlite::Result<u64> {
            let mut total: i64 = tx.query_row(
                "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM batches",
                [],
                |r| r.get(0),
            )?;
            let mut dropped = 0u64;
            let order = match cap.when_full {
                SpoolFullPolicy::DropOldest => "ASC",
                SpoolFullPolicy::DropNewest => "DESC",
            };
            while total as u64 > cap.max_bytes {
                let count: i64 = tx.query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))?;
                if count == 0 || (count == 1 && cap.when_full == SpoolFullPolicy::DropOldest) {
                    break;
                }
                let (seq, len): (i64, i64) = tx.query_row(
                    &format!("SELECT seq, LENGTH(body) FROM batches ORDER BY seq {order} LIMIT 1"),
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                tx.execute("DELETE FROM batches WHERE seq = ?1", params![seq])?;
                total -= len;
                dropped += 1;
            }
            if dropped > 0 {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('dropped_batches', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
                    params![dropped as i64],
                )?;
            }
            Ok(dropped)
        })()
        .map_err(|e| sqlite_err(&path, e))?;
        tx.commit().map_err(|e| sqlite_err(&path, e))?;
        if dropped > 0 {
            let total = self.dropped_batches().unwrap_or(0);
            tracing::warn!(
                dropped,
                earshot_agent_spool_dropped_batches_total = total,
                max_bytes = cap.max_bytes,
                policy = ?cap.when_full,
                "the spool is full (the collector has not taken batches): dropped {} batches; their numbers are lost",
                match cap.when_full {
                    SpoolFullPolicy::DropOldest => "the oldest",
                    SpoolFullPolicy::DropNewest => "the newest",
                }
            );
        }
        Ok(dropped)
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        sqlite_err(&self.path, source)
    }

    /// In one transaction: stores a new batch (unless `rollups` is empty and `counters` are
    /// zero), upserts `checkpoints` and replaces the agent state blob. Returns the new batch's
    /// sequence number.
    pub fn commit(
        &mut self,
        rollups: Vec<(HourKey, HourRollup)>,
        counters: AgentCounters,
        checkpoints: &[Checkpoint],
        state: &[u8],
    ) -> Result<Option<u64>, SpoolError> {
        let has_batch = !rollups.is_empty() || counters != AgentCounters::default();
        let body = if has_batch {
            let stored = StoredBatch {
                rollups: earshot_common::wire::rollups_to_v1(rollups),
                counters: counters.into(),
            };
            Some(
                postcard::to_stdvec(&stored).map_err(|error| SpoolError::Encode {
                    path: self.path.clone(),
                    error,
                })?,
            )
        } else {
            None
        };
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| sqlite_err(&path, e))?;
        let seq = (|| -> rusqlite::Result<Option<u64>> {
            let seq = match body {
                Some(body) => {
                    let next: i64 = tx
                        .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| r.get(0))
                        .optional()?
                        .unwrap_or(1);
                    tx.execute("INSERT INTO batches (seq, body) VALUES (?1, ?2)", params![next, body])?;
                    tx.execute(
                        "INSERT INTO meta (key, value) VALUES ('next_seq', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        params![next + 1],
                    )?;
                    Some(next as u64)
                }
                None => None,
            };
            for c in checkpoints {
                tx.execute(
                    "INSERT INTO checkpoints (file_key, path, offset, finished) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (file_key) DO UPDATE SET
                        path = excluded.path, offset = excluded.offset, finished = excluded.finished",
                    params![c.file_key, c.path, c.offset as i64, c.finished],
                )?;
            }
            tx.execute(
                "INSERT INTO meta (key, value) VALUES ('state', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![state],
            )?;
            Ok(seq)
        })()
        .map_err(|e| sqlite_err(&path, e))?;
        // Dropping `tx` on an error above rolls everything back.
        tx.commit().map_err(|e| sqlite_err(&path, e))?;
        if seq.is_some() {
            self.enforce_cap()?;
        }
        Ok(seq)
    }

    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, SpoolError> {
        let mut stmt = self
            .conn
            .prepare("SELECT file_key, path, offset, finished FROM checkpoints ORDER BY file_key")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Checkpoint {
                    file_key: r.get(0)?,
                    path: r.get(1)?,
                    offset: r.get::<_, i64>(2)? as u64,
                    finished: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        Ok(rows)
    }

    /// The opaque state blob of the last commit, if any.
    pub fn state(&self) -> Result<Option<Vec<u8>>, SpoolError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = 'state'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Up to `limit` unacknowledged batches, oldest first, stamped with `agent_id`.
    pub fn pending(&self, agent_id: &str, limit: usize) -> Result<Vec<Batch>, SpoolError> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body FROM batches ORDER BY seq LIMIT ?1")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(params![limit.min(i64::MAX as usize) as i64], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, Vec<u8>>(1)?))
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(seq, body)| {
                // A batch spooled by an agent from before the counters grew decodes too.
                let stored: StoredBatch =
                    v1::decode_with_counters(&body, |old: v1::RollupsBefore| {
                        let (rollups, counters) = old.into_parts();
                        StoredBatch { rollups, counters }
                    })
                    .map_err(|error| SpoolError::Corrupt {
                        path: self.path.clone(),
                        seq,
                        error,
                    })?;
                Ok(Batch {
                    agent_id: agent_id.to_string(),
                    seq,
                    rollups: earshot_common::wire::rollups_from_v1(stored.rollups),
                    counters: stored.counters.into(),
                })
            })
            .collect()
    }

    pub fn pending_count(&self) -> Result<u64, SpoolError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM batches", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Encoded size of the unacknowledged batches.
    pub fn pending_bytes(&self) -> Result<u64, SpoolError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM batches",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    /// Forgets batch `seq` (the collector has acknowledged it). Unknown seqs are ignored:
    /// an acknowledgement may arrive twice.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        self.conn
            .execute("DELETE FROM batches WHERE seq = ?1", params![seq as i64])
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

fn sqlite_err(path: &Path, error: rusqlite::Error) -> SpoolError {
    SpoolError::Sqlite {
        path: path.to_path_buf(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use earshot_common::rollup::Protocol;

    fn rollup(tenant: &str, sessions: u64) -> Vec<(HourKey, HourRollup)> {
        let mut r = HourRollup::new(Protocol::Icecast);
        r.quarters[0].sessions = sessions;
        r.quarters[0].uniques.insert(sessions);
        vec![(
            HourKey {
                tenant: tenant.into(),
                stream: "/live".into(),
                hour_ms: 3_600_000,
            },
            r,
        )]
    }

    fn checkpoint(offset: u64) -> Checkpoint {
        Checkpoint {
            file_key: "8:1234:abcd".into(),
            path: "/var/log/haproxy.log".into(),
            offset,
            finished: false,
        }
    }

    fn open() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool.db")).unwrap();
        (dir, spool)
    }

    #[test]
    fn commit_pending_ack() {
        let (_dir, mut spool) = open();
        assert_eq!(spool.pending_count().unwrap(), 0);
        assert_eq!(spool.state().unwrap(), None);
        let s1 = spool
            .commit(
                rollup("t", 1),
                AgentCounters::default(),
                &[checkpoint(10)],
                b"s1",
            )
            .unwrap();
        let mut counters = AgentCounters {
            lines: 5,
            ..Default::default()
        };
        counters.malformed.insert("bad_date".into(), 2);
        let s2 = spool
            .commit(rollup("t", 2), counters.clone(), &[checkpoint(20)], b"s2")
            .unwrap();
        assert_eq!((s1, s2), (Some(1), Some(2)));
        assert_eq!(spool.pending_count().unwrap(), 2);
        assert!(spool.pending_bytes().unwrap() > 0);

        let pending = spool.pending("agent-1", 10).unwrap();
        assert_eq!(
            pending.iter().map(|b| b.seq).collect::<Vec<_>>(),
            vec![1, 2]
        );
        assert!(pending.iter().all(|b| b.agent_id == "agent-1"));
        assert_eq!(pending[0].rollups, rollup("t", 1));
        assert_eq!(pending[1].counters, counters);
        assert_eq!(spool.pending("agent-1", 1).unwrap().len(), 1);

        assert_eq!(spool.checkpoints().unwrap(), vec![checkpoint(20)]);
        assert_eq!(spool.state().unwrap().as_deref(), Some(&b"s2"[..]));

        spool.ack(1).unwrap();
        spool.ack(1).unwrap();
        assert_eq!(
            spool
                .pending("agent-1", 10)
                .unwrap()
                .iter()
                .map(|b| b.seq)
                .collect::<Vec<_>>(),
            vec![2]
        );
        spool.ack(2).unwrap();
        assert_eq!(spool.pending_count().unwrap(), 0);
        assert_eq!(spool.pending_bytes().unwrap(), 0);
    }

    #[test]
    fn empty_commit_saves_checkpoints_and_state_but_no_batch() {
        let (_dir, mut spool) = open();
        let seq = spool
            .commit(
                Vec::new(),
                AgentCounters::default(),
                &[checkpoint(7)],
                b"st",
            )
            .unwrap();
        assert_eq!(seq, None);
        assert_eq!(spool.pending_count().unwrap(), 0);
        assert_eq!(spool.checkpoints().unwrap(), vec![checkpoint(7)]);
        assert_eq!(spool.state().unwrap().as_deref(), Some(&b"st"[..]));
        // Counters alone make a batch.
        let counters = AgentCounters {
            lines: 3,
            ..Default::default()
        };
        assert_eq!(
            spool.commit(Vec::new(), counters, &[], b"st").unwrap(),
            Some(1)
        );
    }

    #[test]
    fn seq_is_never_reused_after_ack_or_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(
            spool
                .commit(rollup("t", 1), AgentCounters::default(), &[], b"")
                .unwrap(),
            Some(1)
        );
        spool.ack(1).unwrap();
        assert_eq!(
            spool
                .commit(rollup("t", 1), AgentCounters::default(), &[], b"")
                .unwrap(),
            Some(2)
        );
        spool.ack(2).unwrap();
        drop(spool);
        let mut spool = Spool::open(&path).unwrap();
        assert_eq!(
            spool
                .commit(rollup("t", 1), AgentCounters::default(), &[], b"")
                .unwrap(),
            Some(3)
        );
    }

    #[test]
    fn checkpoints_upsert_by_file_key() {
        let (_dir, mut spool) = open();
        let other = Checkpoint {
            file_key: "8:99:ffff".into(),
            path: "/var/log/haproxy.log.1".into(),
            offset: 5,
            finished: true,
        };
        spool
            .commit(
                Vec::new(),
                AgentCounters::default(),
                &[checkpoint(1), other.clone()],
                b"",
            )
            .unwrap();
        let moved = Checkpoint {
            path: "/var/log/haproxy.log.1".into(),
            offset: 99,
            finished: true,
            ..checkpoint(0)
        };
        spool
            .commit(
                Vec::new(),
                AgentCounters::default(),
                std::slice::from_ref(&moved),
                b"",
            )
            .unwrap();
        assert_eq!(spool.checkpoints().unwrap(), vec![moved, other]);
    }

    fn snapshot(spool: &Spool) -> (Vec<Batch>, Vec<Checkpoint>, Option<Vec<u8>>) {
        (
            spool.pending("a", 100).unwrap(),
            spool.checkpoints().unwrap(),
            spool.state().unwrap(),
        )
    }

    #[test]
    fn a_failure_midway_through_commit_changes_nothing() {
        let (_dir, mut spool) = open();
        spool
            .commit(
                rollup("t", 1),
                AgentCounters::default(),
                &[checkpoint(10)],
                b"before",
            )
            .unwrap();
        let before = snapshot(&spool);
        // The batch row is written first; the checkpoint write then fails.
        spool
            .conn
            .execute_batch(
                "CREATE TRIGGER fail_checkpoint BEFORE INSERT ON checkpoints
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let err = spool
            .commit(
                rollup("t", 2),
                AgentCounters::default(),
                &[checkpoint(20)],
                b"after",
            )
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(snapshot(&spool), before);

        // And the failed commit did not burn a sequence number either.
        spool
            .conn
            .execute_batch("DROP TRIGGER fail_checkpoint")
            .unwrap();
        assert_eq!(
            spool
                .commit(
                    rollup("t", 2),
                    AgentCounters::default(),
                    &[checkpoint(20)],
                    b"after"
                )
                .unwrap(),
            Some(2)
        );
    }

    #[test]
    fn a_read_only_database_refuses_the_commit_whole() {
        let (_dir, mut spool) = open();
        spool
            .commit(
                rollup("t", 1),
                AgentCounters::default(),
                &[checkpoint(10)],
                b"before",
            )
            .unwrap();
        let before = snapshot(&spool);
        spool.conn.execute_batch("PRAGMA query_only = ON").unwrap();
        assert!(
            spool
                .commit(
                    rollup("t", 2),
                    AgentCounters::default(),
                    &[checkpoint(20)],
                    b"after"
                )
                .is_err()
        );
        assert!(spool.ack(1).is_err());
        spool.conn.execute_batch("PRAGMA query_only = OFF").unwrap();
        assert_eq!(snapshot(&spool), before);
    }

    #[test]
    fn a_locked_database_refuses_the_commit_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        let mut spool = Spool::open(&path).unwrap();
        spool
            .commit(
                rollup("t", 1),
                AgentCounters::default(),
                &[checkpoint(10)],
                b"before",
            )
            .unwrap();
        let before = snapshot(&spool);
        spool
            .conn
            .busy_timeout(std::time::Duration::from_millis(50))
            .unwrap();
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN EXCLUSIVE").unwrap();
        assert!(
            spool
                .commit(
                    rollup("t", 2),
                    AgentCounters::default(),
                    &[checkpoint(20)],
                    b"after"
                )
                .is_err()
        );
        other.execute_batch("ROLLBACK").unwrap();
        assert_eq!(snapshot(&spool), before);
    }
}
