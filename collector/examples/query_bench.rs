//! Loads synthetic rollups (a year for many tenants, through the real `merge_batch`) and
//! prints median query latencies.
//!
//! cargo run --release -p earshot-collector --example query_bench -- [--tenants 200] [--days 365]
//!     [--streams 1] [--db PATH (reused when it exists)] [--runs 21]
//!
//! Targets: `summary` over one year for one tenant under 20 ms median; a daily `timeseries`
//! over that year under 50 ms.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use earshot_collector::query::{self, Bucket, Granularity, TimeRange};
use earshot_collector::store::{Breakdown, Selection, Store};
use earshot_common::rollup::{DimCounts, Dimension, HourKey, HourRollup, Protocol};
use earshot_common::time::{DAY_MS, HOUR_MS, days_from_civil};
use earshot_common::wire::{AgentCounters, Batch};

struct Args {
    tenants: usize,
    days: i64,
    streams: usize,
    db: Option<PathBuf>,
    runs: usize,
}

fn args() -> Args {
    let mut a = Args {
        tenants: 200,
        days: 365,
        streams: 1,
        db: None,
        runs: 21,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--tenants" => a.tenants = v.parse().expect("--tenants N"),
            "--days" => a.days = v.parse().expect("--days N"),
            "--streams" => a.streams = v.parse().expect("--streams N"),
            "--db" => a.db = Some(PathBuf::from(v)),
            "--runs" => a.runs = v.parse().expect("--runs N"),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const CLIENTS: [&str; 4] = ["VLC", "Chrome", "Safari", "RadioApp"];
const DEVICES: [&str; 3] = ["phone", "computer", "speaker"];
const COUNTRIES: [&str; 3] = ["DE", "FR", "US"];

/// One hour of one stream: a diurnal audience scaled by the tenant's size.
fn hour_rollup(rng: &mut Rng, tenant: usize, hour_ms: i64) -> HourRollup {
    let size = 1 + (tenant % 10) as u64;
    let local_hour = (hour_ms / HOUR_MS) % 24;
    let diurnal = [
        1, 1, 1, 1, 1, 2, 4, 8, 10, 9, 8, 8, 9, 8, 7, 7, 8, 9, 10, 9, 7, 5, 3, 2,
    ][local_hour as usize];
    let month = hour_ms / (30 * DAY_MS);
    let pool = 40 * size;
    let mut r = HourRollup::new(Protocol::Icecast);
    for q in &mut r.quarters {
        let n = size * diurnal;
        q.sessions = n;
        q.short_sessions = n / 3;
        q.bot_sessions = n / 10;
        q.completed = n;
        q.carried_in = 2 * n;
        q.listening_ms = 3 * n * 240_000;
        q.aqh_listeners = 2 * n;
        q.lengths[rng.below(13) as usize] = n;
        for _ in 0..n {
            // Listener ids are stable within a month (the identity epoch).
            q.uniques.insert(
                month.wrapping_mul(1_000_003) as u64 ^ ((tenant as u64) << 32) ^ rng.below(pool),
            );
        }
        let c = CLIENTS[rng.below(4) as usize];
        let d = DEVICES[rng.below(3) as usize];
        let k = COUNTRIES[rng.below(3) as usize];
        for (dim, v) in [
            (Dimension::Client, c),
            (Dimension::Device, d),
            (Dimension::Country, k),
        ] {
            q.dims.insert(
                (dim, v.into()),
                DimCounts {
                    sessions: n,
                    listening_ms: 3 * n * 240_000,
                },
            );
        }
    }
    r.minutes = (0..60)
        .map(|_| (3 * size * diurnal) as u32 + rng.below(5) as u32)
        .collect();
    for dim in [Dimension::Client, Dimension::Country] {
        let v = if dim == Dimension::Client {
            CLIENTS[0]
        } else {
            COUNTRIES[0]
        };
        let s = r.dim_uniques.entry((dim, v.into())).or_default();
        for _ in 0..size * diurnal {
            s.insert(rng.below(pool));
        }
    }
    r
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut out = f(); // warm-up
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        out = f();
        times.push(t.elapsed());
    }
    (median(times), out)
}

fn main() {
    let a = args();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = a.db.clone().unwrap_or_else(|| dir.path().join("bench.db"));
    let existed = path.exists();
    let store = Store::open(&path).expect("open store");
    let start = days_from_civil(2025, 1, 1) * DAY_MS;
    if !existed {
        let t0 = Instant::now();
        let mut rollups_total = 0usize;
        for day in 0..a.days {
            let mut rng = Rng(day as u64);
            let mut rollups = Vec::new();
            for tenant in 0..a.tenants {
                for s in 0..a.streams {
                    for h in 0..24 {
                        let hour_ms = start + day * DAY_MS + h * HOUR_MS;
                        let key = HourKey {
                            tenant: format!("t{tenant:03}"),
                            stream: format!("/s{s}.mp3"),
                            hour_ms,
                        };
                        rollups.push((key, hour_rollup(&mut rng, tenant, hour_ms)));
                    }
                }
            }
            rollups_total += rollups.len();
            let batch = Batch {
                agent_id: "bench".into(),
                seq: day as u64,
                rollups,
                counters: AgentCounters::default(),
            };
            store.merge_batch(&batch).expect("merge");
            if day % 30 == 29 {
                let el = t0.elapsed().as_secs_f64();
                eprintln!(
                    "loaded {} days, {rollups_total} hour rollups, {el:.0} s ({:.0} rollups/s)",
                    day + 1,
                    rollups_total as f64 / el
                );
            }
        }
        let el = t0.elapsed().as_secs_f64();
        println!(
            "load: {rollups_total} hour rollups in {el:.1} s ({:.0} rollups/s)",
            rollups_total as f64 / el
        );
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "store: {} MiB, {} tenants x {} streams x {} days",
        size >> 20,
        a.tenants,
        a.streams,
        a.days
    );

    let year = TimeRange::new(start, start + a.days * DAY_MS, 400).expect("range");
    let ragged = TimeRange::new(
        start + 6 * HOUR_MS + 10 * 60_000,
        start + (a.days - 1) * DAY_MS + 18 * HOUR_MS + 20 * 60_000,
        400,
    )
    .expect("range");
    let sel = |range: TimeRange, stream: Option<&str>| Selection {
        tenant: "t007".into(),
        stream: stream.map(str::to_owned),
        range,
    };
    let runs = a.runs;
    let report =
        |name: &str, d: Duration| println!("{name:<48} median {:>8.2} ms", d.as_secs_f64() * 1e3);

    let (d, m) = time(runs, || store.summary(&sel(year, None)).expect("summary"));
    report("summary, whole UTC days", d);
    eprintln!(
        "  sessions {} uniques {} peak {} at {:?}",
        m.sessions, m.unique_listeners, m.peak_concurrent, m.peak_at
    );
    let (d, _) = time(runs, || store.summary(&sel(ragged, None)).expect("summary"));
    report("summary, ragged edges (06:10 .. 18:20)", d);
    let (d, _) = time(runs, || {
        store.summary(&sel(year, Some("/s0.mp3"))).expect("summary")
    });
    report("summary, one stream", d);

    for (tz_name, tz) in [
        ("UTC", jiff::tz::TimeZone::UTC),
        (
            "Europe/Paris",
            query::parse_time_zone("Europe/Paris").expect("tz"),
        ),
    ] {
        let buckets: Vec<Bucket> = query::buckets(year, Granularity::Day, &tz).expect("buckets");
        let (d, rows) = time(runs, || {
            store
                .timeseries(&sel(year, None), &buckets, Granularity::Day)
                .expect("timeseries")
        });
        report(
            &format!("timeseries day ({tz_name}), {} rows", rows.len()),
            d,
        );
    }
    let months =
        query::buckets(year, Granularity::Month, &jiff::tz::TimeZone::UTC).expect("buckets");
    let (d, _) = time(runs, || {
        store
            .timeseries(&sel(year, None), &months, Granularity::Month)
            .expect("timeseries")
    });
    report("timeseries month (UTC)", d);
    let (d, _) = time(runs, || {
        store.session_lengths(&sel(year, None)).expect("lengths")
    });
    report("session-lengths", d);
    let (d, _) = time(runs, || {
        store
            .breakdown(&sel(year, None), Breakdown::Dimension(Dimension::Country))
            .expect("by")
    });
    report("by/country", d);
    let (d, _) = time(runs, || {
        store
            .breakdown(&sel(year, None), Breakdown::Stream)
            .expect("by")
    });
    report("by/stream", d);
    let (d, _) = time(runs.min(5), || {
        store
            .by_hour(&sel(year, None), &jiff::tz::TimeZone::UTC)
            .expect("by-hour")
    });
    report("by-hour (all quarters of the year)", d);
}
