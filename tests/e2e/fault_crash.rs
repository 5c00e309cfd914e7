//! Exactly once under crashes and partitions: the agent killed with SIGKILL at random points
//! while it reads, spools, sends and waits for acks, and restarted each time; the collector
//! killed with SIGKILL at random points while it merges; the network between them cut for a
//! while (a veth pair into a network namespace taken down). After each, every metric the API
//! serves equals an uninterrupted run's, byte for byte.
//!
//! `EARSHOT_FAULT_SEED` replays a run; `EARSHOT_FAULT_KILLS` and `EARSHOT_FAULT_CUT_SECS` make
//! longer local runs (CI: 30 kills each, a 20 s cut).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use earshot_loadgen::{Generated, Scenario, truth};
use earshot_tests::*;

const HOUR: i64 = 3_600_000;

fn scenario(seed: u64) -> Scenario {
    Scenario {
        seed,
        hosts: 1,
        hours: 3,
        stations: 6,
        listeners: 800,
        start_ms: 1_795_906_800_000 - 2 * HOUR,
        ..Scenario::default()
    }
}

struct Prepared {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    generated: Generated,
    chunks: Vec<PathBuf>,
    tenants: Vec<String>,
    range: (i64, i64),
}

/// The generator's logs split into 1,000-line rotated files (so the agent commits and ships
/// one batch per file: many commits and many merges to land in).
fn prepare(seed: u64) -> Prepared {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let generated = earshot_loadgen::generate(&scenario(seed), &root.join("gen")).unwrap();
    let chunks = split_log(
        &generated.files[0].1,
        1_000,
        &root.join("logs"),
        "haproxy.log",
    );
    let tenants = tenants_of(&generated.sessions);
    let range = truth::all_time(&generated.sessions);
    Prepared {
        _tmp: tmp,
        root,
        generated,
        chunks,
        tenants,
        range,
    }
}

/// An uninterrupted `ingest` of every chunk: the snapshot faulted runs must equal, and how
/// long it took.
fn reference(p: &Prepared) -> (Vec<(String, serde_json::Value)>, Duration) {
    let d = Deployment::start(&p.root.join("reference"), 1);
    let t0 = Instant::now();
    let out = d.ingest(1, &p.chunks, &[]);
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let snap = metric_snapshot(&d, &p.tenants, p.range.0, p.range.1);
    // The reference itself is right: sessions equal the generator's truth.
    for t in &p.tenants {
        let want = truth::metrics(&p.generated.sessions, t, None, p.range.0, p.range.1);
        let got = snap
            .iter()
            .find(|(path, _)| path.contains(&format!("/{t}/streaming/summary")))
            .unwrap();
        assert_eq!(
            got.1["sessions"].as_u64(),
            Some(want.sessions),
            "reference {t}"
        );
    }
    (snap, took)
}

fn agent_ingest(config: &Path, files: &[PathBuf], log: &Path, extra: &[&str]) -> Proc {
    let log = std::fs::File::create(log).unwrap();
    Proc::spawn(
        "earshot-agent ingest",
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--config"])
            .arg(config)
            .args(extra)
            .args(files)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log),
    )
}

fn spool_state(state: &Path) -> (u64, usize) {
    let spool = earshot_agent::spool::Spool::open(&state.join("spool.db")).unwrap();
    let finished = spool
        .checkpoints()
        .unwrap()
        .iter()
        .filter(|c| c.finished)
        .count();
    (spool.pending_count().unwrap(), finished)
}

#[test]
fn the_agent_killed_at_random_points_ships_every_line_once() {
    let kills_wanted = env_secs("EARSHOT_FAULT_KILLS", 30);
    let p = prepare(31);
    let (want, t_ref) = reference(&p);
    let mut rng = FaultRng::from_env();
    let mut phases: BTreeMap<&str, u32> = BTreeMap::new();
    let (mut kills, mut runs) = (0u64, 0u32);
    let t0 = Instant::now();
    while kills < kills_wanted {
        runs += 1;
        let d = Deployment::start(&p.root.join(format!("faulted-{runs}")), 1);
        let state = d.dir.join("agent-state");
        // Each life gets a random share of the uninterrupted run's time, so that the kills
        // spread over the whole way (reading and spooling first, then sending and acks).
        let share = t_ref.as_millis() as u64 * 2 / kills_wanted.max(1);
        loop {
            let before = if state.join("spool.db").exists() {
                spool_state(&state)
            } else {
                (0, 0)
            };
            let log = p.root.join(format!("agent-{runs}-{kills}.log"));
            let mut agent = agent_ingest(&d.agent_config(1), &p.chunks, &log, &[]);
            std::thread::sleep(Duration::from_millis(40 + rng.below(share + 1)));
            if agent.child.try_wait().unwrap().is_some() {
                break; // it finished everything before this kill: this run is complete
            }
            agent.kill9();
            kills += 1;
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let after = spool_state(&state);
            let phase = if !text.contains("files read; shipping") {
                if after.1 > before.1 {
                    "reading and spooling (some files committed)"
                } else {
                    "starting or reading the first file"
                }
            } else if after.0 < before.0 + (after.1 - before.1) as u64 {
                "acknowledged batches being deleted (acking)"
            } else if text.contains("connected to the collector") {
                "sending (connected, no ack yet)"
            } else {
                "connecting to ship"
            };
            *phases.entry(phase).or_default() += 1;
            if kills >= kills_wanted {
                break;
            }
        }
        // Restarted once more, it finishes; every metric equals the uninterrupted run's.
        let out = d.ingest(1, &p.chunks, &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = metric_snapshot(&d, &p.tenants, p.range.0, p.range.1);
        if let Some(diff) = snapshot_diff(&want, &got) {
            panic!(
                "after {kills} kills (run {runs}), the API differs from the uninterrupted run: {diff}\nphases: {phases:?}"
            );
        }
    }
    eprintln!(
        "agent SIGKILLed at {kills} points over {runs} deployments in {:?} (uninterrupted run {:?}); phases: {phases:?}",
        t0.elapsed(),
        t_ref
    );
}

fn start_collector_logged(d: &mut Deployment, rust_log: &str) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.dir.join("collector.log"))
        .unwrap();
    d.collector = Some(Proc::spawn(
        "earshot-collector",
        Command::new(bin("earshot-collector"))
            .args(["run", "--config"])
            .arg(d.dir.join("collector.toml"))
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::null())
            .stderr(log),
    ));
    let ok = wait_for(Duration::from_secs(20), || {
        http_get(d.http, "/healthz", None)
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });
    assert!(ok.is_some(), "the collector did not become healthy");
}

fn merged_lines(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    (
        text.matches("batch merged").count(),
        text.matches("batch seen before").count(),
    )
}

#[test]
fn the_collector_killed_while_it_merges_merges_every_batch_once() {
    let kills_wanted = env_secs("EARSHOT_FAULT_KILLS", 30);
    let p = prepare(32);
    let (want, _) = reference(&p);
    let mut rng = FaultRng::from_env();

    let mut d = Deployment::start(&p.root.join("faulted"), 1);
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    // The agent reads everything into its spool while the collector is down; it is stopped
    // once every file is committed.
    let state = d.dir.join("agent-state");
    let mut agent = agent_ingest(
        &d.agent_config(1),
        &p.chunks,
        &p.root.join("spooling.log"),
        &[],
    );
    wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(p.root.join("spooling.log"))
            .ok()
            .filter(|t| t.contains("files read; shipping"))
            .map(|_| ())
    })
    .expect("the agent reads every file");
    agent.kill9();
    let (spooled, _) = spool_state(&state);
    assert!(
        spooled as usize >= p.chunks.len(),
        "{spooled} batches spooled"
    );
    copy_dir(&state, &p.root.join("spool-before-acks"));

    let log = d.dir.join("collector.log");
    let (mut kills, mut in_merge, mut replays) = (0u64, 0u64, 0u32);
    let mut merged_total = 0;
    while kills < kills_wanted {
        if spool_state(&state).0 == 0 {
            // Everything was merged before the kills ran out: the agent "forgets" its acks (its
            // spool as it was before any ack), so every batch comes again and the collector
            // must recognise each one while it keeps being killed.
            replays += 1;
            let fresh = prepare_spool_replay(&p, &d, &state);
            assert!(fresh);
        }
        let (merged_before, _) = merged_lines(&log);
        start_collector_logged(&mut d, "info,earshot_collector::link=debug");
        let mut agent = agent_ingest(
            &d.agent_config(1),
            &p.chunks,
            &p.root.join(format!("ship-{kills}.log")),
            &[],
        );
        // Kill at a random moment after the first merge of this life.
        let started = wait_for(Duration::from_secs(20), || {
            let (m, dup) = merged_lines(&log);
            (m + dup > merged_before).then_some(())
        });
        std::thread::sleep(Duration::from_millis(rng.below(60)));
        let done = agent.child.try_wait().unwrap().is_some();
        d.collector.as_mut().unwrap().kill9();
        agent.kill9();
        kills += 1;
        if started.is_some() && !done {
            in_merge += 1;
        }
        merged_total = merged_lines(&log).0;
    }
    // Up again for good: the agent ships what is left.
    start_collector_logged(&mut d, "info");
    let out = d.ingest(1, &p.chunks, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = metric_snapshot(&d, &p.tenants, p.range.0, p.range.1);
    if let Some(diff) = snapshot_diff(&want, &got) {
        panic!("after {kills} collector kills the API differs from the uninterrupted run: {diff}");
    }
    assert!(
        in_merge >= kills_wanted * 2 / 3,
        "only {in_merge} of {kills} kills landed while merging"
    );
    eprintln!(
        "collector SIGKILLed {kills} times ({in_merge} while merging a stream of batches; {merged_total} merges committed before the last kill; spool replayed {replays} times)"
    );
}

/// Restores the agent's spool from the copy taken when everything was spooled (see the
/// collector kill test), as after an agent that lost its acks.
fn prepare_spool_replay(p: &Prepared, d: &Deployment, state: &Path) -> bool {
    let copy = p.root.join("spool-before-acks");
    if !copy.exists() {
        return false;
    }
    let _ = d;
    std::fs::remove_dir_all(state).unwrap();
    copy_dir(&copy, state);
    true
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}
