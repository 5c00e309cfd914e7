//! The cardinality bounds (`[limits]`), applied to a batch inside its merge transaction, before
//! anything of it is written: per (tenant, UTC hour) at most `max_streams` streams and, per
//! dimension, at most `max_values` values are stored; a name not yet stored for the hour when
//! its budget is spent is folded into [`OTHER`]. Totals stay exact: a folded stream's rollup
//! is added to the stream `(other)`, a folded value's counters and sketch to the value
//! `(other)`, so every sum over names is what it was.
//!
//! The names stored per (tenant, hour) are kept in `hour_names`: a name of the batch costs one
//! point lookup there, and a batch with new names one count of the hour's names, so the check
//! costs what the batch brings, not what the hour holds. Among a batch's new names the
//! heaviest (sessions, then listening time, then the name) are admitted first. A name is
//! admitted for good: later batches of it are never folded, and a folded name stays folded
//! for that hour. `(other)` is never stored in `hour_names` and counts against no budget.
//!
//! Folds are counted per (tenant, hour, what) as a sketch of the folded names' hashes (exact
//! up to 4096 names an hour), so a name folded again by a later batch is not counted twice,
//! and their sum per (tenant, what) in `folded_totals`, which backs
//! `earshot_collector_folded_total`.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use earshot_common::UniqueSketch;
use earshot_common::rollup::{DimCounts, Dimension, HourKey, HourRollup, Protocol};
use earshot_common::time::{HOUR_MS, floor_to};
use rusqlite::{OptionalExtension, Transaction, params};

use super::merge::sql_int;
use super::{StoreError, decode_sketch, encode_sketch};

/// The name that folded streams and values are merged into.
pub const OTHER: &str = "(other)";
/// The `what` of streams (dimensions use their own names).
pub const STREAM: &str = "stream";

/// How many names the store keeps per (tenant, UTC hour).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Streams per (tenant, hour), `(other)` aside.
    pub max_streams: usize,
    /// Values per (tenant, hour, dimension), `(other)` aside.
    pub max_values: usize,
}

impl Limits {
    pub const DEFAULT_MAX_STREAMS: usize = 200;
    pub const DEFAULT_MAX_VALUES: usize = 500;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams: Self::DEFAULT_MAX_STREAMS,
            max_values: Self::DEFAULT_MAX_VALUES,
        }
    }
}

/// A (tenant, hour, what) whose folds a batch counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldNote {
    pub tenant: String,
    pub hour_ms: i64,
    pub what: String,
    /// Distinct names newly counted as folded.
    pub names: u64,
    /// Whether this is the first fold of that (tenant, hour, what) (to log once).
    pub first: bool,
}

pub(super) type Bounded<'a> = Vec<(Cow<'a, HourKey>, Cow<'a, HourRollup>)>;

/// Sessions and listening time of a name in the batch: heavier names are admitted first.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Weight {
    sessions: u64,
    listening_ms: u64,
}

impl Weight {
    fn add(&mut self, sessions: u64, listening_ms: u64) {
        self.sessions = self.sessions.saturating_add(sessions);
        self.listening_ms = self.listening_ms.saturating_add(listening_ms);
    }
}

fn rollup_weight(r: &HourRollup) -> Weight {
    let mut w = Weight::default();
    for q in &r.quarters {
        w.add(q.sessions, q.listening_ms);
    }
    w
}

/// The batch's rollups with the bounds applied, and the folds counted.
pub(super) fn apply<'a>(
    tx: &Transaction,
    rollups: &'a [(HourKey, HourRollup)],
    limits: Limits,
) -> Result<(Bounded<'a>, Vec<FoldNote>), StoreError> {
    let mut groups: BTreeMap<(&str, i64), Vec<usize>> = BTreeMap::new();
    for (i, (key, _)) in rollups.iter().enumerate() {
        groups
            .entry((key.tenant.as_str(), floor_to(key.hour_ms, HOUR_MS)))
            .or_default()
            .push(i);
    }
    let mut out: Bounded<'a> = Vec::with_capacity(rollups.len());
    let mut notes = Vec::new();
    for ((tenant, hour_ms), members) in groups {
        // Streams.
        let mut weights: BTreeMap<&str, Weight> = BTreeMap::new();
        for &i in &members {
            let (key, r) = &rollups[i];
            if key.stream != OTHER {
                let w = rollup_weight(r);
                weights
                    .entry(key.stream.as_str())
                    .or_default()
                    .add(w.sessions, w.listening_ms);
            }
        }
        let folded_streams = admit(tx, tenant, hour_ms, STREAM, weights, limits.max_streams)?;
        let mut hour: Vec<(Cow<'a, HourKey>, Cow<'a, HourRollup>)> = Vec::new();
        let mut others: BTreeMap<Protocol, HourRollup> = BTreeMap::new();
        for &i in &members {
            let (key, r) = &rollups[i];
            if folded_streams.contains(key.stream.as_str()) {
                // Merged per protocol: the store keeps a stream's rows per protocol, so the
                // by-protocol totals stay exact whichever batch a rollup came in.
                match others.entry(r.protocol) {
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert(r.clone());
                    }
                    std::collections::btree_map::Entry::Occupied(mut o) => o.get_mut().merge(r),
                }
            } else {
                hour.push((Cow::Borrowed(key), Cow::Borrowed(r)));
            }
        }
        for (_, r) in others {
            let key = HourKey {
                tenant: tenant.to_owned(),
                stream: OTHER.to_owned(),
                hour_ms,
            };
            hour.push((Cow::Owned(key), Cow::Owned(r)));
        }
        let mut folds: Vec<(String, Vec<String>)> = Vec::new();
        if !folded_streams.is_empty() {
            folds.push((
                STREAM.to_owned(),
                folded_streams.into_iter().map(str::to_owned).collect(),
            ));
        }

        // Values, over every stream of the hour (folded ones included).
        let mut by_dim: BTreeMap<Dimension, BTreeMap<&str, Weight>> = BTreeMap::new();
        for (_, r) in &hour {
            let r: &HourRollup = r;
            for q in &r.quarters {
                for ((dim, value), c) in &q.dims {
                    if value != OTHER {
                        by_dim
                            .entry(*dim)
                            .or_default()
                            .entry(value.as_str())
                            .or_default()
                            .add(c.sessions, c.listening_ms);
                    }
                }
            }
            for (dim, value) in r.dim_uniques.keys() {
                if value != OTHER {
                    by_dim
                        .entry(*dim)
                        .or_default()
                        .entry(value.as_str())
                        .or_default();
                }
            }
        }
        let mut folded_values: BTreeMap<Dimension, BTreeSet<String>> = BTreeMap::new();
        for (dim, weights) in by_dim {
            let folded = admit(
                tx,
                tenant,
                hour_ms,
                dim.as_str(),
                weights,
                limits.max_values,
            )?;
            if !folded.is_empty() {
                let names: BTreeSet<String> = folded.into_iter().map(str::to_owned).collect();
                folds.push((dim.as_str().to_owned(), names.iter().cloned().collect()));
                folded_values.insert(dim, names);
            }
        }
        if !folded_values.is_empty() {
            for (_, r) in &mut hour {
                if touches(r, &folded_values) {
                    fold_values(r.to_mut(), &folded_values);
                }
            }
        }
        for (what, names) in folds {
            notes.push(count_folds(tx, tenant, hour_ms, &what, &names)?);
        }
        out.extend(hour);
    }
    Ok((out, notes))
}

/// Admits the batch's names of one (tenant, hour, what) that are new, heaviest first, while
/// the budget lasts; returns those that did not fit.
fn admit<'n>(
    tx: &Transaction,
    tenant: &str,
    hour_ms: i64,
    what: &str,
    names: BTreeMap<&'n str, Weight>,
    budget: usize,
) -> Result<BTreeSet<&'n str>, StoreError> {
    let mut known = tx.prepare_cached(
        "SELECT 1 FROM hour_names WHERE tenant = ?1 AND hour_ms = ?2 AND what = ?3 AND name = ?4",
    )?;
    let mut new: Vec<(&str, Weight)> = Vec::new();
    for (name, w) in names {
        if known
            .query_row(params![tenant, hour_ms, what, name], |_| Ok(()))
            .optional()?
            .is_none()
        {
            new.push((name, w));
        }
    }
    if new.is_empty() {
        return Ok(BTreeSet::new());
    }
    let stored: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM hour_names WHERE tenant = ?1 AND hour_ms = ?2 AND what = ?3",
        )?
        .query_row(params![tenant, hour_ms, what], |r| r.get(0))?;
    let room = budget.saturating_sub(stored.max(0) as usize);
    // Heaviest first; ties by name, so the choice does not depend on map order.
    new.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut insert = tx.prepare_cached(
        "INSERT INTO hour_names (tenant, hour_ms, what, name) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (name, _) in new.iter().take(room) {
        insert.execute(params![tenant, hour_ms, what, name])?;
    }
    Ok(new.into_iter().skip(room).map(|(n, _)| n).collect())
}

fn touches(r: &HourRollup, folded: &BTreeMap<Dimension, BTreeSet<String>>) -> bool {
    let hit =
        |(dim, value): &(Dimension, String)| folded.get(dim).is_some_and(|s| s.contains(value));
    r.quarters.iter().any(|q| q.dims.keys().any(hit)) || r.dim_uniques.keys().any(hit)
}

/// Moves the folded values' counters and sketches into `(other)`'s.
fn fold_values(r: &mut HourRollup, folded: &BTreeMap<Dimension, BTreeSet<String>>) {
    let is_folded =
        |dim: &Dimension, value: &String| folded.get(dim).is_some_and(|s| s.contains(value));
    for q in &mut r.quarters {
        let dims = std::mem::take(&mut q.dims);
        let mut others: BTreeMap<Dimension, DimCounts> = BTreeMap::new();
        for ((dim, value), c) in dims {
            if is_folded(&dim, &value) {
                others.entry(dim).or_default().merge(&c);
            } else {
                q.dims.insert((dim, value), c);
            }
        }
        for (dim, c) in others {
            q.dims.entry((dim, OTHER.to_owned())).or_default().merge(&c);
        }
    }
    let sketches = std::mem::take(&mut r.dim_uniques);
    let mut others: BTreeMap<Dimension, UniqueSketch> = BTreeMap::new();
    for ((dim, value), s) in sketches {
        if is_folded(&dim, &value) {
            others.entry(dim).or_default().merge(&s);
        } else {
            r.dim_uniques.insert((dim, value), s);
        }
    }
    for (dim, s) in others {
        r.dim_uniques
            .entry((dim, OTHER.to_owned()))
            .or_default()
            .merge(&s);
    }
}

/// A name's hash for the folds' sketch.
fn name_hash(name: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap_or_default())
}

/// Adds the names folded in the hour to its sketch and what that adds to the total.
fn count_folds(
    tx: &Transaction,
    tenant: &str,
    hour_ms: i64,
    what: &str,
    names: &[String],
) -> Result<FoldNote, StoreError> {
    let old: Option<Vec<u8>> = tx
        .prepare_cached(
            "SELECT sketch FROM hour_folds WHERE tenant = ?1 AND hour_ms = ?2 AND what = ?3",
        )?
        .query_row(params![tenant, hour_ms, what], |r| r.get(0))
        .optional()?;
    let first = old.is_none();
    let mut sketch = match &old {
        Some(b) => decode_sketch(b, "hour_folds")?,
        None => UniqueSketch::new(),
    };
    let before = sketch.estimate();
    for n in names {
        sketch.insert(name_hash(n));
    }
    let added = sketch.estimate().saturating_sub(before);
    tx.prepare_cached(
        "INSERT INTO hour_folds (tenant, hour_ms, what, sketch) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, hour_ms, what) DO UPDATE SET sketch = excluded.sketch",
    )?
    .execute(params![tenant, hour_ms, what, encode_sketch(&sketch)])?;
    if added > 0 {
        tx.prepare_cached(
            "INSERT INTO folded_totals (tenant, what, names) VALUES (?1, ?2, ?3)
             ON CONFLICT (tenant, what) DO UPDATE SET names = names + excluded.names",
        )?
        .execute(params![tenant, what, sql_int(added)])?;
    }
    Ok(FoldNote {
        tenant: tenant.to_owned(),
        hour_ms,
        what: what.to_owned(),
        names: added,
        first,
    })
}
