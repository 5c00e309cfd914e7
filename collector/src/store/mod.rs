//! The collector's storage: one SQLite file (WAL) behind one narrow interface — merge a batch
//! exactly once ([`Store::merge_batch`]); answer a query over a range from rollups (the
//! `summary`, `timeseries`, … methods). Nothing above this module sees SQL, so another
//! backend (DESIGN.md, "Growing past one machine") can take its place.
//!
//! Invariants:
//! - a batch `(agent_id, seq)` is merged at most once: the merge and its record in
//!   `merged_batches` commit in one transaction;
//! - the day rollups are the sum (sketches: the union) of that day's quarter rollups and the
//!   day peaks the maximum of that day's minutes, because both are written by the same
//!   transaction from the same batch;
//! - per (tenant, UTC hour) at most [`Limits`] streams and values per dimension are stored,
//!   the rest folded into `(other)` by the merge (totals stay exact; see `bounds`);
//! - only one connection writes; readers use their own connections (WAL lets them run beside
//!   the writer).

mod bounds;
#[cfg(test)]
mod bounds_tests;
mod merge;
mod read;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use earshot_common::UniqueSketch;
use earshot_common::time::DAY_MS;
use earshot_common::wire::Batch;
use jiff::tz::TimeZone;
use rusqlite::{Connection, OpenFlags};

use crate::query::{
    self, Accumulator, BreakdownRow, Bucket, Granularity, HourOfDayRow, LengthRow, Metrics,
    PeakRow, Segment, TimeRange,
};

pub use bounds::{FoldNote, Limits, OTHER};
pub use read::AgentTotals;
pub use schema::SCHEMA_VERSION;

/// Read connections kept open between queries.
const READER_POOL: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store's schema is version {found}, newer than this collector's {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("undecodable sketch in table {table}: {message}")]
    BadSketch {
        table: &'static str,
        message: String,
    },
    #[error("unknown protocol {0:?} in the store")]
    BadProtocol(String),
    #[error("a store lock was poisoned by a panic")]
    Poisoned,
}

/// Whether a batch was merged now or had been merged before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeOutcome {
    Merged,
    Duplicate,
}

/// What a query selects: one tenant, optionally one stream, over a quarter-aligned range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub tenant: String,
    pub stream: Option<String>,
    pub range: TimeRange,
}

/// What a breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakdown {
    Stream,
    Protocol,
    Dimension(earshot_common::Dimension),
}

impl Breakdown {
    /// Every breakdown: the rollup keys, then [`earshot_common::Dimension::ALL`] in order.
    pub const NAMES: [&'static str; 2 + earshot_common::Dimension::COUNT] = [
        "stream",
        "protocol",
        "client",
        "device",
        "os",
        "country",
        "referrer",
        "source",
        "rendition",
    ];

    pub fn parse(s: &str) -> Option<Breakdown> {
        match s {
            "stream" => Some(Breakdown::Stream),
            "protocol" => Some(Breakdown::Protocol),
            _ => earshot_common::Dimension::parse(s).map(Breakdown::Dimension),
        }
    }
}

/// The session length breakdown of a range.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLengths {
    pub sessions: u64,
    pub short_sessions: u64,
    pub rows: Vec<LengthRow>,
}

/// A cheap handle: clones share the connections.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    limits: Limits,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// The one place sketches become bytes and back (the sketch's own `to_bytes`/`from_bytes`
/// replace postcard here when they land).
pub(crate) fn encode_sketch(sketch: &UniqueSketch) -> Vec<u8> {
    postcard::to_stdvec(sketch).unwrap_or_default()
}

pub(crate) fn decode_sketch(bytes: &[u8], table: &'static str) -> Result<UniqueSketch, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::BadSketch {
        table,
        message: e.to_string(),
    })
}

impl Store {
    /// Opens (creating if needed) the store at `path` and migrates its schema; merges keep
    /// the default [`Limits`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_limits(path, Limits::default())
    }

    /// [`open`](Self::open), with merges keeping `limits`.
    pub fn open_with_limits(path: &Path, limits: Limits) -> Result<Store, StoreError> {
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                limits,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// Merges every rollup of the batch (within the [`Limits`]) and records `(agent_id, seq)`
    /// in one transaction, unless that pair was merged before. The first fold of a (tenant,
    /// hour, what) is logged.
    pub fn merge_batch(&self, batch: &Batch) -> Result<MergeOutcome, StoreError> {
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let (outcome, folds) = {
            let mut conn = self.inner.writer.lock().map_err(|_| StoreError::Poisoned)?;
            merge::merge_batch(&mut conn, batch, now_ms, self.inner.limits)?
        };
        for f in folds.iter().filter(|f| f.first) {
            let limit = if f.what == bounds::STREAM {
                self.inner.limits.max_streams
            } else {
                self.inner.limits.max_values
            };
            let hour = jiff::Timestamp::from_millisecond(f.hour_ms)
                .map(|t| t.to_string())
                .unwrap_or_else(|_| f.hour_ms.to_string());
            tracing::warn!(
                tenant = %f.tenant,
                %hour,
                what = %f.what,
                agent = %batch.agent_id,
                "the hour already holds {limit} names of `{}` ([limits]); further ones are merged into `{OTHER}` (earshot_collector_folded_total counts them)",
                f.what,
            );
        }
        Ok(outcome)
    }

    /// Deletes rollups (and batch records) older than `older_than_ms`, rounded down to a UTC
    /// day so that day rollups and their quarters always go together. A batch record is
    /// dropped with the data of its time: an agent does not resend a batch it had
    /// acknowledged that long ago.
    pub fn prune(&self, older_than_ms: i64) -> Result<(), StoreError> {
        let cutoff = earshot_common::time::floor_to(older_than_ms, DAY_MS);
        let mut conn = self.inner.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let tx = conn.transaction()?;
        for (table, column) in [
            ("quarters", "quarter_ms"),
            ("quarter_uniques", "quarter_ms"),
            ("days", "day_ms"),
            ("day_uniques", "day_ms"),
            ("minutes", "minute_ms"),
            ("day_peaks", "day_ms"),
            ("day_stream_peaks", "day_ms"),
            ("quarter_dims", "quarter_ms"),
            ("day_dims", "day_ms"),
            ("hour_dim_uniques", "hour_ms"),
            ("day_dim_uniques", "day_ms"),
            ("hour_names", "hour_ms"),
            ("hour_folds", "hour_ms"),
            ("merged_batches", "merged_at_ms"),
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE {column} < ?1"),
                [cutoff],
            )?;
        }
        tx.execute(
            "DELETE FROM tenants WHERE last_hour_ms < ?1 AND NOT EXISTS
                (SELECT 1 FROM quarters q WHERE q.tenant = tenants.tenant)",
            [cutoff],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Tenants that have data.
    pub fn tenants(&self) -> Result<Vec<String>, StoreError> {
        self.with_reader(read::tenants)
    }

    /// Whether the store answers (for `/healthz`).
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with_reader(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    /// The agent's counters summed over its merged batches.
    pub fn agent_counters(&self, agent_id: &str) -> Result<Option<read::AgentTotals>, StoreError> {
        self.with_reader(|c| read::agent_totals(c, agent_id))
    }

    /// Names the collector's bounds folded into `(other)`, by (tenant, what), summed over the
    /// hours (what: `stream` or a dimension).
    pub fn collector_folds(&self) -> Result<BTreeMap<(String, String), u64>, StoreError> {
        self.with_reader(read::folded_totals)
    }

    /// The metrics of DESIGN.md over the selection.
    pub fn summary(&self, sel: &Selection) -> Result<Metrics, StoreError> {
        let bucket = [Bucket {
            from_ms: sel.range.from_ms,
            to_ms: sel.range.to_ms,
        }];
        let acc = &self.bucket_accumulators(sel, &bucket, true)?[0];
        Ok(match sel.stream {
            None => acc.tenant_metrics(sel.range),
            Some(_) => acc.metrics(sel.range),
        })
    }

    /// The metrics per bucket (cut by [`query::buckets`]). For minute buckets only concurrency
    /// is filled in (the rest is kept per quarter-hour): the API reports the others as null.
    pub fn timeseries(
        &self,
        sel: &Selection,
        buckets: &[Bucket],
        granularity: Granularity,
    ) -> Result<Vec<Metrics>, StoreError> {
        let acc = if granularity == Granularity::Minute {
            let peaks = self.with_reader(|c| {
                read::minute_peaks(
                    c,
                    &sel.tenant,
                    sel.stream.as_deref(),
                    sel.range.from_ms,
                    sel.range.to_ms,
                )
            })?;
            query::accumulate(buckets, &[], &peaks)
        } else {
            self.bucket_accumulators(sel, buckets, true)?
        };
        Ok(buckets
            .iter()
            .zip(acc)
            .map(|(b, a)| match sel.stream {
                None => a.tenant_metrics(b.range()),
                Some(_) => a.metrics(b.range()),
            })
            .collect())
    }

    /// The 24 local hours of `tz` over the days of the range.
    pub fn by_hour(&self, sel: &Selection, tz: &TimeZone) -> Result<Vec<HourOfDayRow>, StoreError> {
        let seg = [Segment::Quarters {
            from_ms: sel.range.from_ms,
            to_ms: sel.range.to_ms,
        }];
        let rows = self.with_reader(|c| {
            read::counter_rows(c, &sel.tenant, sel.stream.as_deref(), &seg, true)
        })?;
        Ok(query::by_hour(sel.range, &rows, tz))
    }

    pub fn session_lengths(&self, sel: &Selection) -> Result<SessionLengths, StoreError> {
        let bucket = [Bucket {
            from_ms: sel.range.from_ms,
            to_ms: sel.range.to_ms,
        }];
        let segs = query::segments(&bucket);
        let rows = self.with_reader(|c| {
            read::counter_rows(c, &sel.tenant, sel.stream.as_deref(), &segs, false)
        })?;
        let acc = &query::accumulate(&bucket, &rows, &[])[0];
        Ok(SessionLengths {
            sessions: acc.sessions,
            short_sessions: acc.short_sessions,
            rows: query::length_rows(&acc.lengths),
        })
    }

    /// Values of one breakdown, highest sessions first.
    pub fn breakdown(
        &self,
        sel: &Selection,
        by: Breakdown,
    ) -> Result<Vec<BreakdownRow>, StoreError> {
        let bucket = [Bucket {
            from_ms: sel.range.from_ms,
            to_ms: sel.range.to_ms,
        }];
        let segs = query::segments(&bucket);
        let stream = sel.stream.as_deref();
        self.with_reader(|c| match by {
            Breakdown::Stream => {
                let rows = read::counter_rows(c, &sel.tenant, stream, &segs, true)?;
                let peaks = read::stream_peak_rows(c, &sel.tenant, stream, &segs)?;
                Ok(query::key_breakdown(sel.range, &rows, Some(&peaks), |r| {
                    r.stream.clone()
                }))
            }
            Breakdown::Protocol => {
                let rows = read::counter_rows(c, &sel.tenant, stream, &segs, true)?;
                Ok(query::key_breakdown(sel.range, &rows, None, |r| {
                    r.protocol
                        .map(|p| p.as_str())
                        .unwrap_or("unknown")
                        .to_owned()
                }))
            }
            Breakdown::Dimension(dim) => {
                let counts = read::dim_count_rows(c, &sel.tenant, dim, stream, &segs)?;
                let sketches = read::dim_sketches(c, &sel.tenant, dim, stream, &segs)?;
                Ok(query::dimension_breakdown(&counts, sketches))
            }
        })
    }

    fn bucket_accumulators(
        &self,
        sel: &Selection,
        buckets: &[Bucket],
        with_uniques: bool,
    ) -> Result<Vec<Accumulator>, StoreError> {
        let segs = query::segments(buckets);
        let (rows, peaks): (Vec<_>, Vec<PeakRow>) = self.with_reader(|c| {
            let rows =
                read::counter_rows(c, &sel.tenant, sel.stream.as_deref(), &segs, with_uniques)?;
            let peaks = read::peak_rows(c, &sel.tenant, sel.stream.as_deref(), &segs)?;
            Ok((rows, peaks))
        })?;
        Ok(query::accumulate(buckets, &rows, &peaks))
    }

    /// Runs `f` on a pooled read connection (opened on demand, returned after use).
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self
            .inner
            .readers
            .lock()
            .map_err(|_| StoreError::Poisoned)?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    &self.inner.path,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX
                        | OpenFlags::SQLITE_OPEN_URI,
                )?;
                schema::configure(&c)?;
                c.pragma_update(None, "query_only", "ON")?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.inner.readers.lock()
            && pool.len() < READER_POOL
        {
            pool.push(conn);
        }
        out
    }
}
