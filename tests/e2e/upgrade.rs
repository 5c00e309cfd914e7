//! An upgrade over the previous release's data. The previous release (tag `v0.1.0`, named
//! here by its commit: a clone of main has the commit even without its tags) is built once
//! from `git archive` into `target/earshot-previous/`. Its collector and agent (`run`) follow
//! a rotated log until part of it is merged; its collector stops, so its agent spools the
//! files rotated next; its agent stops on SIGTERM with open HLS sessions in its saved state.
//! More files arrive while nothing runs. Then this version's collector runs on the old data
//! directory (the store migrated in place) and this version's agent on the old state
//! directory and the same files. Once everything is shipped the API's numbers equal the
//! generator's truth for the whole log, and every metric equals a run of this version alone
//! on the same log: nothing lost, nothing counted twice. On the wire, the previous agent ships
//! to this collector; this agent's batches, which the previous collector cannot decode, wait
//! in its spool until the collector is upgraded in place.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use earshot_loadgen::{Generated, Scenario, truth};
use earshot_tests::*;

use crate::pipeline::check_summary;

/// The previous release, `v0.1.0`.
const PREVIOUS: &str = "69c11b708ef232d03acc0cf1be90ad0487f15fe5";

const HOUR: i64 = 3_600_000;

/// The previous release's binaries.
struct Previous {
    agent: PathBuf,
    collector: PathBuf,
}

/// Builds the previous release once per test process; a file lock makes a second process
/// wait for the first one's build, and a stamp naming the commit skips the build next time.
fn previous_release() -> &'static Previous {
    static BUILT: OnceLock<Previous> = OnceLock::new();
    BUILT.get_or_init(build_previous)
}

fn build_previous() -> Previous {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace");
    // target/debug/deps/e2e-… → target
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.ancestors().nth(3).expect("target dir");
    let base = target.join("earshot-previous");
    std::fs::create_dir_all(&base).unwrap();
    let lock = File::create(base.join("build.lock")).unwrap();
    lock.lock().expect("lock target/earshot-previous");

    let bin_dir = base.join("bin");
    let built = Previous {
        agent: bin_dir.join("earshot-agent"),
        collector: bin_dir.join("earshot-collector"),
    };
    let stamp = bin_dir.join("commit");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == PREVIOUS)
        && built.agent.exists()
        && built.collector.exists()
    {
        return built;
    }

    let known = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["cat-file", "-e", &format!("{PREVIOUS}^{{commit}}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        known,
        "commit {PREVIOUS} (v0.1.0) is not in {}: the upgrade test needs the history (`git fetch --unshallow`)",
        repo.display()
    );
    let src = base.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", PREVIOUS])
        .stdout(Stdio::piped())
        .spawn()
        .expect("git runs");
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(archive.stdout.take().unwrap())
        .status()
        .expect("tar runs");
    assert!(
        archive.wait().unwrap().success() && untar.success(),
        "git archive {PREVIOUS} | tar -x failed"
    );

    // The binaries go to a target directory of their own (the old crates have the same
    // names: they must not replace this version's in target/debug); the intermediate
    // artifacts go to this build's own build directory, where cargo finds every registry
    // dependency of the same version and features already built, so only the old workspace's
    // crates are compiled.
    let t0 = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&src)
        .args(["build", "--locked", "--bins"])
        .args(["-p", "earshot-agent", "-p", "earshot-collector"])
        .env("CARGO_TARGET_DIR", base.join("target"))
        .env("CARGO_BUILD_BUILD_DIR", target)
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "building {PREVIOUS} failed:\n{}",
        &log[log.len().saturating_sub(6000)..]
    );
    std::fs::create_dir_all(&bin_dir).unwrap();
    for name in ["earshot-agent", "earshot-collector"] {
        let from = base.join("target/debug").join(name);
        std::fs::copy(&from, bin_dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
    std::fs::write(&stamp, format!("{PREVIOUS}\n")).unwrap();
    eprintln!(
        "previous release {PREVIOUS} built in {:.0?} into {}",
        t0.elapsed(),
        base.display()
    );
    built
}

fn scenario() -> Scenario {
    Scenario {
        seed: 61,
        hosts: 1,
        hours: 2,
        stations: 5,
        listeners: 100,
        start_ms: 1_795_906_800_000 - 2 * HOUR, // 2026-11-28T21:00Z, over midnight
        rotate_minutes: 0,
        ..Scenario::default()
    }
}

/// `earshot-collector init` by `collector` (either version), on free loopback ports.
fn init(collector: &Path, dir: &Path, agents: u32) -> Deployment {
    let (quic, http) = (free_udp_port(), free_port());
    run_ok(
        Command::new(collector)
            .args(["init", "--dir"])
            .arg(dir)
            .args(["--quic-listen", &format!("127.0.0.1:{quic}")])
            .args(["--http-listen", &format!("127.0.0.1:{http}")])
            .args(["--agents", &agents.to_string()]),
    );
    Deployment {
        token: std::fs::read_to_string(dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string(),
        dir: dir.to_path_buf(),
        http: format!("127.0.0.1:{http}").parse().unwrap(),
        collector: None,
    }
}

/// `collector run` on the deployment's config, stderr appended to `collector.log`.
fn start_collector(d: &mut Deployment, collector: &Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.dir.join("collector.log"))
        .unwrap();
    d.collector = Some(Proc::spawn(
        "earshot-collector",
        Command::new(collector)
            .args(["run", "--config"])
            .arg(d.dir.join("collector.toml"))
            .env("RUST_LOG", "info,earshot_collector::link=debug")
            .stdout(Stdio::null())
            .stderr(log),
    ));
    let ok = wait_for(Duration::from_secs(30), || {
        http_get(d.http, "/healthz", None)
            .ok()
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });
    assert!(
        ok.is_some(),
        "{} did not become healthy:\n{}",
        collector.display(),
        read(&d.dir.join("collector.log"))
    );
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// `ingest --config` of agent 1 by `agent` (either version); panics unless it ships it all.
fn ingest(agent: &Path, d: &Deployment, files: &[PathBuf]) {
    let out = Command::new(agent)
        .args(["ingest", "--config"])
        .arg(d.agent_config(1))
        .args(files)
        .stdin(Stdio::null())
        .output()
        .expect("earshot-agent runs");
    assert!(
        out.status.success(),
        "{} ingest failed: {}",
        agent.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sessions of every tenant in the store over `[from, to)`.
fn stored_sessions(d: &Deployment, tenants: &[String], from: i64, to: i64) -> u64 {
    tenants
        .iter()
        .map(|t| {
            let path = format!(
                "/api/v1/tenants/{t}/streaming/summary?from={}&to={}",
                rfc3339(from),
                rfc3339(to)
            );
            http_get(d.http, &path, Some(&d.token))
                .ok()
                .filter(|(s, _)| *s == 200)
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|v| v["sessions"].as_u64())
                .unwrap_or(0)
        })
        .sum()
}

/// The spooled batches and open HLS sessions in a copy of an agent's state directory (the
/// copy keeps the original as the previous agent left it). The spool is opened by this
/// version's code; the open sessions are counted in the previous release's saved state
/// (version 1: postcard of the version, the log's clock and the list of open sessions).
fn spooled_and_open(state: &Path, scratch: &Path) -> (u64, u64) {
    std::fs::create_dir_all(scratch).unwrap();
    for entry in std::fs::read_dir(state).unwrap().flatten() {
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), scratch.join(entry.file_name())).unwrap();
        }
    }
    let spool = earshot_agent::spool::Spool::open(&scratch.join("spool.db")).unwrap();
    let saved = spool.state().unwrap().expect("a saved ingest state");
    let ((version, _log_now_ms, open), _) =
        postcard::take_from_bytes::<(u32, i64, u64)>(&saved).expect("a saved state's head");
    assert_eq!(version, 1, "the previous release saves state version 1");
    (spool.pending_count().unwrap(), open)
}

/// Every tenant's numbers against the generator's truth: the summary, and each stream's
/// sessions, listening time and unique listeners.
fn check_truth(d: &Deployment, generated: &Generated, tenants: &[String], what: &str) {
    let sessions = &generated.sessions;
    let (from, to) = truth::all_time(sessions);
    let range = format!("from={}&to={}", rfc3339(from), rfc3339(to));
    for t in tenants {
        let got = d.api(&format!("/api/v1/tenants/{t}/streaming/summary?{range}"));
        let want = truth::metrics(sessions, t, None, from, to);
        check_summary(&got, &want, &format!("{what}: {t}"));

        let rows = d.api(&format!("/api/v1/tenants/{t}/streaming/by/stream?{range}"));
        let rows = rows["rows"].as_array().unwrap();
        let mut streams: Vec<&str> = sessions
            .iter()
            .filter(|s| &s.tenant == t)
            .map(|s| s.stream.as_str())
            .collect();
        streams.sort();
        streams.dedup();
        let mut listed: Vec<&str> = rows.iter().map(|r| r["value"].as_str().unwrap()).collect();
        listed.sort();
        assert_eq!(listed, streams, "{what}: {t}'s streams");
        for row in rows {
            let stream = row["value"].as_str().unwrap();
            let want = truth::metrics(sessions, t, Some(stream), from, to);
            let label = format!("{what}: {t} {stream}");
            assert_eq!(row["sessions"].as_u64(), Some(want.sessions), "{label}");
            let ls = row["listening_seconds"].as_f64().unwrap();
            assert!(
                (ls - want.listening_seconds).abs() <= 1e-6 * want.listening_seconds.max(1.0),
                "{label}: listening {ls}, truth {}",
                want.listening_seconds
            );
            let uniques = row["unique_listeners"].as_u64().unwrap();
            assert!(
                uniques.abs_diff(want.unique_listeners) <= want.unique_listeners / 50,
                "{label}: {uniques} unique listeners, truth {}",
                want.unique_listeners
            );
        }
    }
}

/// The previous release's saved state (version 1) holds no learned layout: this agent takes
/// the open sessions' streams as playlist directories (`From<SavedStateV1>` in
/// `agent/src/ingest/state.rs`), or the first segment it reads after the upgrade from such a
/// directory (`/hls/radio001/seg_179590385.aac` here) would be a one-line progressive session.
#[test]
fn this_version_carries_on_from_the_previous_releases_spool_state_and_store() {
    let old = previous_release();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let generated = earshot_loadgen::generate(&scenario(), &root.join("gen")).unwrap();
    let full = generated.files[0].1[0].clone();
    let tenants = tenants_of(&generated.sessions);
    let (from, to) = truth::all_time(&generated.sessions);
    assert!(
        generated.sessions.iter().any(|s| s.protocol == "hls")
            && generated.sessions.iter().any(|s| s.protocol == "icecast"),
        "the log has HLS and Icecast sessions"
    );

    // The log as six rotated files (`run` reads a file once it is rotated): two while both
    // old daemons run, two while the old collector is down, two after the old agent stopped.
    let chunk_lines = (generated.lines as usize).div_ceil(6);
    let chunks = split_log(
        std::slice::from_ref(&full),
        chunk_lines,
        &root.join("staged"),
        "haproxy.log",
    );
    assert_eq!(chunks.len(), 6);
    eprintln!(
        "{} lines, {} sessions, in files of {chunk_lines} lines",
        generated.lines,
        generated.sessions.len()
    );
    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let live = logs.join("haproxy.log");
    std::fs::write(&live, b"").unwrap();
    // Rotation moves files in (keeping their times, oldest first).
    let rotate_in = |range: std::ops::Range<usize>| -> Vec<PathBuf> {
        chunks[range]
            .iter()
            .map(|c| {
                let to = logs.join(c.file_name().unwrap());
                std::fs::rename(c, &to).unwrap();
                to
            })
            .collect()
    };

    // The previous release: collector and agent, as its own `init` set them up.
    let mut d = init(&old.collector, &root.join("upgraded"), 1);
    start_collector(&mut d, &old.collector);
    let config = d.agent_config(1);
    set_agent_files(&config, std::slice::from_ref(&live));
    let mut rotated = rotate_in(0..2);
    let agent_log = root.join("agent-previous.log");
    let mut agent = Proc::spawn(
        "earshot-agent (previous)",
        Command::new(&old.agent)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&agent_log).unwrap()),
    );
    let ingested = |n: usize| {
        wait_for(Duration::from_secs(60), || {
            (read(&agent_log).matches(" ingested ").count() >= n).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "the previous agent did not read {n} files\n{}",
                read(&agent_log)
            )
        })
    };
    ingested(2);
    let merged = wait_for(Duration::from_secs(60), || {
        let n = stored_sessions(&d, &tenants, from, to);
        (n > 0).then_some(n)
    })
    .unwrap_or_else(|| {
        panic!(
            "the first files never reached the API\n{}",
            read(&agent_log)
        )
    });
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(20))
        .expect("the previous collector stops");

    // Two more files, read and spooled while the collector is down.
    rotated.extend(rotate_in(2..4));
    let notified = wait_for(Duration::from_secs(15), || {
        Command::new(&old.agent)
            .args(["notify", "--config"])
            .arg(&config)
            .arg(&live)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()
            .filter(|s| s.success())
    });
    assert!(notified.is_some(), "the previous agent answers notify");
    ingested(4);
    // It stops after the connection attempt in progress (up to a 15 s handshake timeout)
    // and a last try at shipping.
    let status = agent
        .terminate(Duration::from_secs(60))
        .expect("the previous agent stops");
    assert!(
        status.success(),
        "the previous agent's stop: {status}\n{}",
        read(&agent_log)
    );

    let state = d.dir.join("agent-state");
    let (spooled, open) = spooled_and_open(&state, &root.join("state-copy"));
    eprintln!(
        "previous release stopped: {merged} sessions merged, {spooled} batches spooled, {open} HLS sessions open"
    );
    assert!(spooled >= 1, "the previous agent left no batch spooled");
    assert!(open >= 1, "the previous agent saved no open HLS session");

    // The last two files arrive while nothing runs; then this version takes over: its
    // collector on the old data directory, its agent on the old state and the same files
    // (the four read before are skipped by their checkpoints).
    rotated.extend(rotate_in(4..6));
    d.start_collector();
    ingest(&bin("earshot-agent"), &d, &rotated);

    // This version alone, uninterrupted, on the same log.
    let reference = Deployment::start(&root.join("reference"), 1);
    ingest(
        &bin("earshot-agent"),
        &reference,
        std::slice::from_ref(&full),
    );
    check_truth(&reference, &generated, &tenants, "this version alone");
    let want = metric_snapshot(&reference, &tenants, from, to);
    let got = metric_snapshot(&d, &tenants, from, to);
    let differing: Vec<String> = want
        .iter()
        .zip(&got)
        .filter(|(w, g)| w != g)
        .map(|((p, w), (_, g))| format!("{p}\n  upgraded: {g}\n  alone:    {w}"))
        .collect();
    if !differing.is_empty() {
        eprintln!(
            "{} of {} answers differ:\n{}",
            differing.len(),
            want.len(),
            differing.join("\n")
        );
    }
    check_truth(&d, &generated, &tenants, "upgraded");
    if let Some(diff) = snapshot_diff(&want, &got) {
        panic!("after the upgrade the API differs from this version alone: {diff}");
    }

    // Nothing is shipped twice: the upgraded agent, run again, finds nothing new.
    ingest(&bin("earshot-agent"), &d, &rotated);
    if let Some(diff) = snapshot_diff(&want, &metric_snapshot(&d, &tenants, from, to)) {
        panic!("a second ingest changed the numbers: {diff}");
    }
}

#[test]
fn the_previous_agent_ships_to_this_collector_and_this_agent_waits_for_an_upgraded_one() {
    let old = previous_release();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let scenario = Scenario {
        seed: 62,
        stations: 3,
        listeners: 60,
        ..scenario()
    };
    let generated = earshot_loadgen::generate(&scenario, &root.join("gen")).unwrap();
    let files = generated.files[0].1.clone();
    let tenants = tenants_of(&generated.sessions);
    let (from, to) = truth::all_time(&generated.sessions);

    // The previous agent → this collector (the order README's upgrade asks for).
    let mut d = init(&bin("earshot-collector"), &root.join("this-collector"), 1);
    start_collector(&mut d, &bin("earshot-collector"));
    ingest(&old.agent, &d, &files);
    check_truth(&d, &generated, &tenants, "previous agent → this collector");

    // This agent → the previous collector (the other order): whatever that collector cannot
    // take stays spooled, and once it is upgraded in place everything is there exactly once.
    let mut d = init(&old.collector, &root.join("previous-collector"), 1);
    start_collector(&mut d, &old.collector);
    let out = Command::new(bin("earshot-agent"))
        .args(["ingest", "--timeout-secs", "10", "--config"])
        .arg(d.agent_config(1))
        .args(&files)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let before = stored_sessions(&d, &tenants, from, to);
    let undecodable = read(&d.dir.join("collector.log"))
        .matches("undecodable frame")
        .count();
    eprintln!(
        "this agent → the previous collector: ingest {}, {before} sessions stored, {undecodable} frames undecodable",
        out.status
    );
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(20))
        .expect("the previous collector stops");
    d.start_collector();
    ingest(&bin("earshot-agent"), &d, &files);
    check_truth(
        &d,
        &generated,
        &tenants,
        "this agent, collector upgraded in between",
    );
}
