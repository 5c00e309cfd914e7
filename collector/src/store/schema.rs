//! The SQLite schema and its migrations.
//!
//! Resolutions: quarter-hours (counters, sketches, dimension counters), minutes (concurrency,
//! nonzero only), hours (per-dimension-value sketches), and whole UTC days pre-merged from the
//! same batches (counters summed, sketches unioned, the day's peak concurrency with its
//! minute), so a long range reads one row per day and quarters only for its ragged edges.
//! Sketches live in their own tables so that counter scans never page through blobs.
//! Every table is keyed tenant first, then time, so a tenant's range is one b-tree scan.

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// Bump together with a new entry in `MIGRATIONS`.
pub const SCHEMA_VERSION: i64 = 2;

/// `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1, V2];

const V1: &str = "
CREATE TABLE merged_batches (
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    merged_at_ms INTEGER NOT NULL,
    PRIMARY KEY (agent_id, seq)
) WITHOUT ROWID;
CREATE INDEX merged_batches_by_time ON merged_batches (merged_at_ms);

CREATE TABLE agents (
    agent_id TEXT NOT NULL PRIMARY KEY,
    batches INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    last_merged_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE agent_malformed (
    agent_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    lines INTEGER NOT NULL,
    PRIMARY KEY (agent_id, reason)
) WITHOUT ROWID;
CREATE TABLE agent_status (
    agent_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    status INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    PRIMARY KEY (agent_id, tenant, status)
) WITHOUT ROWID;

CREATE TABLE tenants (
    tenant TEXT NOT NULL PRIMARY KEY,
    first_hour_ms INTEGER NOT NULL,
    last_hour_ms INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE quarters (
    tenant TEXT NOT NULL,
    quarter_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    protocol TEXT NOT NULL,
    sessions INTEGER NOT NULL,
    short_sessions INTEGER NOT NULL,
    bot_sessions INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    carried_in INTEGER NOT NULL,
    listening_ms INTEGER NOT NULL,
    aqh_listeners INTEGER NOT NULL,
    len_0 INTEGER NOT NULL, len_1 INTEGER NOT NULL, len_2 INTEGER NOT NULL,
    len_3 INTEGER NOT NULL, len_4 INTEGER NOT NULL, len_5 INTEGER NOT NULL,
    len_6 INTEGER NOT NULL, len_7 INTEGER NOT NULL, len_8 INTEGER NOT NULL,
    len_9 INTEGER NOT NULL, len_10 INTEGER NOT NULL, len_11 INTEGER NOT NULL,
    len_12 INTEGER NOT NULL,
    aqh_tenant_listeners INTEGER NOT NULL,
    PRIMARY KEY (tenant, quarter_ms, stream, protocol)
) WITHOUT ROWID;

-- carried_in: of the day's first quarter; aqh_listeners: summed over the day's quarters.
CREATE TABLE days (
    tenant TEXT NOT NULL,
    day_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    protocol TEXT NOT NULL,
    sessions INTEGER NOT NULL,
    short_sessions INTEGER NOT NULL,
    bot_sessions INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    carried_in INTEGER NOT NULL,
    listening_ms INTEGER NOT NULL,
    aqh_listeners INTEGER NOT NULL,
    len_0 INTEGER NOT NULL, len_1 INTEGER NOT NULL, len_2 INTEGER NOT NULL,
    len_3 INTEGER NOT NULL, len_4 INTEGER NOT NULL, len_5 INTEGER NOT NULL,
    len_6 INTEGER NOT NULL, len_7 INTEGER NOT NULL, len_8 INTEGER NOT NULL,
    len_9 INTEGER NOT NULL, len_10 INTEGER NOT NULL, len_11 INTEGER NOT NULL,
    len_12 INTEGER NOT NULL,
    aqh_tenant_listeners INTEGER NOT NULL,
    PRIMARY KEY (tenant, day_ms, stream, protocol)
) WITHOUT ROWID;

CREATE TABLE quarter_uniques (
    tenant TEXT NOT NULL,
    quarter_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    protocol TEXT NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (tenant, quarter_ms, stream, protocol)
) WITHOUT ROWID;
CREATE TABLE day_uniques (
    tenant TEXT NOT NULL,
    day_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    protocol TEXT NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (tenant, day_ms, stream, protocol)
) WITHOUT ROWID;

CREATE TABLE minutes (
    tenant TEXT NOT NULL,
    minute_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    listeners INTEGER NOT NULL,
    PRIMARY KEY (tenant, minute_ms, stream)
) WITHOUT ROWID;
-- The day's highest concurrency summed over all the tenant's streams, first minute on ties.
CREATE TABLE day_peaks (
    tenant TEXT NOT NULL,
    day_ms INTEGER NOT NULL,
    peak INTEGER NOT NULL,
    peak_minute_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, day_ms)
) WITHOUT ROWID;
CREATE TABLE day_stream_peaks (
    tenant TEXT NOT NULL,
    day_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    peak INTEGER NOT NULL,
    peak_minute_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, day_ms, stream)
) WITHOUT ROWID;

CREATE TABLE quarter_dims (
    tenant TEXT NOT NULL,
    dim TEXT NOT NULL,
    quarter_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    value TEXT NOT NULL,
    sessions INTEGER NOT NULL,
    listening_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, dim, quarter_ms, stream, value)
) WITHOUT ROWID;
CREATE TABLE day_dims (
    tenant TEXT NOT NULL,
    dim TEXT NOT NULL,
    day_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    value TEXT NOT NULL,
    sessions INTEGER NOT NULL,
    listening_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, dim, day_ms, stream, value)
) WITHOUT ROWID;
CREATE TABLE hour_dim_uniques (
    tenant TEXT NOT NULL,
    dim TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    value TEXT NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (tenant, dim, hour_ms, stream, value)
) WITHOUT ROWID;
CREATE TABLE day_dim_uniques (
    tenant TEXT NOT NULL,
    dim TEXT NOT NULL,
    day_ms INTEGER NOT NULL,
    stream TEXT NOT NULL,
    value TEXT NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (tenant, dim, day_ms, stream, value)
) WITHOUT ROWID;
";

/// Version 2: the agents' counters of requests that are not sessions and of their own folds;
/// the cardinality bounds (`[limits]`): the names stored per (tenant, UTC hour) — streams
/// and each dimension's values, never `(other)` — and what was folded into `(other)`.
/// A store of version 1 gets its stored names filled in, so its hours count against the
/// bounds as if they had been merged under them.
const V2: &str = "
CREATE TABLE agent_not_sessions (
    agent_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    requests INTEGER NOT NULL,
    PRIMARY KEY (agent_id, tenant, kind)
) WITHOUT ROWID;
CREATE TABLE agent_folded (
    agent_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    what TEXT NOT NULL,
    names INTEGER NOT NULL,
    PRIMARY KEY (agent_id, tenant, what)
) WITHOUT ROWID;

-- what: 'stream' or a dimension's name.
CREATE TABLE hour_names (
    tenant TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,
    what TEXT NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (tenant, hour_ms, what, name)
) WITHOUT ROWID;
-- The distinct names folded in the hour, as a sketch of their hashes (exact while small).
CREATE TABLE hour_folds (
    tenant TEXT NOT NULL,
    hour_ms INTEGER NOT NULL,
    what TEXT NOT NULL,
    sketch BLOB NOT NULL,
    PRIMARY KEY (tenant, hour_ms, what)
) WITHOUT ROWID;
-- Names folded, summed over the hours (never pruned: it backs a counter).
CREATE TABLE folded_totals (
    tenant TEXT NOT NULL,
    what TEXT NOT NULL,
    names INTEGER NOT NULL,
    PRIMARY KEY (tenant, what)
) WITHOUT ROWID;

INSERT OR IGNORE INTO hour_names (tenant, hour_ms, what, name)
    SELECT DISTINCT tenant, quarter_ms / 3600000 * 3600000, 'stream', stream FROM quarters
    WHERE stream <> '(other)';
INSERT OR IGNORE INTO hour_names (tenant, hour_ms, what, name)
    SELECT DISTINCT tenant, minute_ms / 3600000 * 3600000, 'stream', stream FROM minutes
    WHERE stream <> '(other)';
INSERT OR IGNORE INTO hour_names (tenant, hour_ms, what, name)
    SELECT DISTINCT tenant, quarter_ms / 3600000 * 3600000, dim, value FROM quarter_dims
    WHERE value <> '(other)';
INSERT OR IGNORE INTO hour_names (tenant, hour_ms, what, name)
    SELECT DISTINCT tenant, hour_ms, dim, value FROM hour_dim_uniques
    WHERE value <> '(other)';
";

/// The schema of version 1, for the migration test.
#[cfg(test)]
pub(super) const V1_SCHEMA: &str = V1;

/// Connection settings for every connection (writer and readers).
pub fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // In WAL mode NORMAL loses no committed transaction on a process crash, only possibly the
    // last ones on a power loss; a batch is acknowledged after commit, so an agent resends.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "cache_size", -65_536i64)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Brings the schema to [`SCHEMA_VERSION`], refusing a newer one.
pub fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let found: Option<i64> = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?;
    let mut version = found.unwrap_or(0);
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    while version < SCHEMA_VERSION {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[version as usize])?;
        version += 1;
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [version],
        )?;
        tx.commit()?;
    }
    Ok(())
}
