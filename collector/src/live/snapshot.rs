//! The live state on disk: `state_dir/live.db`, a SQLite file of its own, written whole now
//! and then and on shutdown, read once at start.
//!
//! Why a file of its own rather than tables in `earshot.db`: the live state is a cache that
//! may be lost (the agents refill it within one poll), written whole every minute; keeping it
//! out of the rollup store keeps those writes off the store's writer lock and its schema
//! migrations. A file that cannot be read is logged and started over, never fatal.
//!
//! Layout (schema 1, `PRAGMA user_version`): `live_meta(key, value)` holds `last_id` and
//! `saved_ms`; `live_tenants(tenant, version, updated_ms)`; `live_readings` one row per
//! (tenant, stream, protocol, host); `live_history(tenant, stream, protocol, points)` with
//! the change points as 16-byte little-endian `(ms i64, listeners u64)` pairs.

use std::path::{Path, PathBuf};

use earshot_common::Protocol;
use rusqlite::{Connection, OptionalExtension, params};

use super::{LiveState, Reading, ReadingKey, Series, TenantState};

/// The snapshot file inside `state_dir`.
pub const LIVE_DB_FILE: &str = "live.db";
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS live_meta (
    key TEXT NOT NULL PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS live_tenants (
    tenant TEXT NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL,
    updated_ms INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS live_readings (
    tenant TEXT NOT NULL,
    stream TEXT NOT NULL,
    protocol TEXT NOT NULL,
    host TEXT NOT NULL,
    listeners INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, stream, protocol, host)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS live_history (
    tenant TEXT NOT NULL,
    stream TEXT NOT NULL,
    protocol TEXT NOT NULL,
    points BLOB NOT NULL,
    PRIMARY KEY (tenant, stream, protocol)
) WITHOUT ROWID;
";

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{path}: SQLite: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{path}: schema version {found} is newer than this collector's {SCHEMA_VERSION}")]
    TooNew { path: PathBuf, found: i64 },
    #[error("{path}: {what}")]
    Corrupt { path: PathBuf, what: String },
}

/// The open snapshot file. Used from one thread at a time (the snapshot task).
pub struct LiveDb {
    path: PathBuf,
    conn: Connection,
}

impl std::fmt::Debug for LiveDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveDb").field("path", &self.path).finish()
    }
}

fn protocol_name(p: Protocol) -> &'static str {
    p.as_str()
}

fn parse_protocol(s: &str) -> Option<Protocol> {
    match s {
        "icecast" => Some(Protocol::Icecast),
        "hls" => Some(Protocol::Hls),
        _ => None,
    }
}

fn encode_points(series: &Series) -> Vec<u8> {
    let mut out = Vec::with_capacity(series.points().len() * 16);
    for &(t, v) in series.points() {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_points(bytes: &[u8]) -> Option<Series> {
    if !bytes.len().is_multiple_of(16) {
        return None;
    }
    let points = bytes
        .chunks_exact(16)
        .map(|c| {
            let t = i64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
            let v = u64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
            (t, v)
        })
        .collect();
    Some(Series::from_points(points))
}

impl LiveDb {
    /// Opens (creating if needed) the snapshot file.
    pub fn open(path: &Path) -> Result<LiveDb, SnapshotError> {
        let err = |source| SnapshotError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(SnapshotError::TooNew {
                path: path.to_path_buf(),
                found,
            });
        }
        conn.execute_batch(SCHEMA).map_err(err)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err)?;
        Ok(LiveDb {
            path: path.to_path_buf(),
            conn,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite(&self, source: rusqlite::Error) -> SnapshotError {
        SnapshotError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Replaces the saved state with `state`, in one transaction.
    pub fn save(&mut self, state: &LiveState, saved_ms: i64) -> Result<(), SnapshotError> {
        let path = self.path.clone();
        let err = |source| SnapshotError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute_batch(
            "DELETE FROM live_tenants; DELETE FROM live_readings; DELETE FROM live_history;",
        )
        .map_err(err)?;
        {
            let mut meta = tx
                .prepare("INSERT OR REPLACE INTO live_meta (key, value) VALUES (?1, ?2)")
                .map_err(err)?;
            meta.execute(params!["last_id", state.last_id as i64])
                .map_err(err)?;
            meta.execute(params!["saved_ms", saved_ms]).map_err(err)?;
            let mut tenant = tx
                .prepare(
                    "INSERT INTO live_tenants (tenant, version, updated_ms) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            let mut reading = tx
                .prepare(
                    "INSERT INTO live_readings (tenant, stream, protocol, host, listeners, at_ms, received_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(err)?;
            let mut history = tx
                .prepare(
                    "INSERT INTO live_history (tenant, stream, protocol, points) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            for t in &state.tenants {
                tenant
                    .execute(params![t.tenant, t.version as i64, t.updated_ms])
                    .map_err(err)?;
                for (k, r) in &t.readings {
                    reading
                        .execute(params![
                            t.tenant,
                            k.stream,
                            protocol_name(k.protocol),
                            k.host,
                            r.listeners as i64,
                            r.at_ms,
                            r.received_ms
                        ])
                        .map_err(err)?;
                }
                for (stream, protocol, series) in &t.history {
                    history
                        .execute(params![
                            t.tenant,
                            stream,
                            protocol_name(*protocol),
                            encode_points(series)
                        ])
                        .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }

    /// The saved state; `None` if nothing was ever saved.
    pub fn load(&self) -> Result<Option<LiveState>, SnapshotError> {
        let last_id: Option<i64> = self
            .conn
            .query_row(
                "SELECT value FROM live_meta WHERE key = 'last_id'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.sqlite(e))?;
        let Some(last_id) = last_id else {
            return Ok(None);
        };
        let corrupt = |what: String| SnapshotError::Corrupt {
            path: self.path.clone(),
            what,
        };
        let mut tenants: Vec<TenantState> = Vec::new();
        {
            let mut stmt = self
                .conn
                .prepare("SELECT tenant, version, updated_ms FROM live_tenants ORDER BY tenant")
                .map_err(|e| self.sqlite(e))?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(TenantState {
                        tenant: r.get(0)?,
                        version: r.get::<_, i64>(1)?.max(0) as u64,
                        updated_ms: r.get(2)?,
                        readings: Vec::new(),
                        history: Vec::new(),
                    })
                })
                .map_err(|e| self.sqlite(e))?;
            for row in rows {
                tenants.push(row.map_err(|e| self.sqlite(e))?);
            }
        }
        let index: std::collections::HashMap<String, usize> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.tenant.clone(), i))
            .collect();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tenant, stream, protocol, host, listeners, at_ms, received_ms FROM live_readings \
                 ORDER BY tenant, stream, protocol, host",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        for row in rows {
            let (tenant, stream, protocol, host, listeners, at_ms, received_ms) =
                row.map_err(|e| self.sqlite(e))?;
            let protocol = parse_protocol(&protocol)
                .ok_or_else(|| corrupt(format!("unknown protocol {protocol:?}")))?;
            let &i = index
                .get(&tenant)
                .ok_or_else(|| corrupt(format!("a reading of unknown tenant {tenant:?}")))?;
            tenants[i].readings.push((
                ReadingKey {
                    stream,
                    protocol,
                    host,
                },
                Reading {
                    listeners: listeners.max(0) as u64,
                    at_ms,
                    received_ms,
                },
            ));
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT tenant, stream, protocol, points FROM live_history ORDER BY tenant, stream, protocol",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        for row in rows {
            let (tenant, stream, protocol, points) = row.map_err(|e| self.sqlite(e))?;
            let protocol = parse_protocol(&protocol)
                .ok_or_else(|| corrupt(format!("unknown protocol {protocol:?}")))?;
            let series = decode_points(&points)
                .ok_or_else(|| corrupt(format!("history of {tenant} {stream}: bad points")))?;
            let &i = index
                .get(&tenant)
                .ok_or_else(|| corrupt(format!("history of unknown tenant {tenant:?}")))?;
            tenants[i].history.push((stream, protocol, series));
        }
        Ok(Some(LiveState {
            last_id: last_id.max(0) as u64,
            tenants,
        }))
    }
}

#[cfg(test)]
mod tests {
    use earshot_common::wire::{LiveEntry, LiveSample};

    use super::super::{LiveSettings, LiveStore};
    use super::*;

    #[test]
    fn a_saved_state_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LIVE_DB_FILE);
        let store = LiveStore::new(LiveSettings::default());
        let t0 = 1_770_000_000_000;
        for (i, host) in ["a", "b"].iter().enumerate() {
            for step in 0..3 {
                let sample = LiveSample {
                    at_ms: t0 + step * 5_000,
                    entries: vec![
                        LiveEntry {
                            tenant: "r1".into(),
                            stream: "/live.mp3".into(),
                            protocol: Protocol::Icecast,
                            listeners: (i as u64 + 1) * (step as u64 + 1),
                        },
                        LiveEntry {
                            tenant: "r2".into(),
                            stream: "/hls/r2".into(),
                            protocol: Protocol::Hls,
                            listeners: 7,
                        },
                    ],
                };
                store.record(host, &sample, t0 + step * 5_000 + i as i64);
            }
        }
        let state = store.state();
        assert_eq!(state.tenants.len(), 2);
        let mut db = LiveDb::open(&path).unwrap();
        assert_eq!(db.load().unwrap(), None);
        db.save(&state, t0).unwrap();
        db.save(&state, t0).unwrap();
        drop(db);
        let db = LiveDb::open(&path).unwrap();
        assert_eq!(db.load().unwrap(), Some(state));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LIVE_DB_FILE);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", 9)
            .unwrap();
        let e = LiveDb::open(&path).unwrap_err().to_string();
        assert!(e.contains("newer"), "{e}");
    }
}
