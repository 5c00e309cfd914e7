//! Bounded resources: the agent's spool under `[spool] max_bytes` while the collector is away
//! (both policies, said in the log and counted); the collector's disk full (a small tmpfs as
//! its state directory): it refuses batches, stays up, the agents keep them spooled, and it
//! recovers when space returns; the agent's memory under a log with no line breaks and under
//! a flood of distinct listeners.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use earshot_loadgen::{Scenario, truth};
use earshot_tests::*;

const HOUR: i64 = 3_600_000;

fn scenario(seed: u64) -> Scenario {
    Scenario {
        seed,
        hosts: 1,
        hours: 2,
        stations: 4,
        listeners: 500,
        start_ms: 1_795_906_800_000 - 2 * HOUR,
        ..Scenario::default()
    }
}

/// Reads every file into the agent's spool while no collector runs, and stops the agent once
/// everything is committed (it would otherwise wait for the collector).
fn spool_everything(d: &Deployment, files: &[PathBuf], log: &Path) -> String {
    let mut agent = Proc::spawn(
        "earshot-agent ingest",
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--config"])
            .arg(d.agent_config(1))
            .args(files)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap()),
    );
    wait_for(Duration::from_secs(60), || {
        std::fs::read_to_string(log)
            .ok()
            .filter(|t| t.contains("files read; shipping"))
            .map(|_| ())
    })
    .unwrap_or_else(|| {
        panic!(
            "the agent did not read its files: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    });
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "the agent must still be running (not crashed)"
    );
    agent.kill9();
    std::fs::read_to_string(log).unwrap()
}

fn spool_policy(policy: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let generated = earshot_loadgen::generate(&scenario(51), &tmp.path().join("gen")).unwrap();
    let chunks = split_log(
        &generated.files[0].1,
        1_000,
        &tmp.path().join("logs"),
        "haproxy.log",
    );
    let mut d = Deployment::start(&tmp.path().join("earshot"), 1);
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    let cap = 65_536u64;
    edit_file(&d.agent_config(1), |t| {
        format!("{t}\n[spool]\nmax_bytes = {cap}\nwhen_full = \"{policy}\"\n")
    });
    let log = spool_everything(&d, &chunks, &tmp.path().join("agent.log"));

    let spool = earshot_agent::spool::Spool::open(&d.dir.join("agent-state/spool.db")).unwrap();
    let (bytes, dropped) = (
        spool.pending_bytes().unwrap(),
        spool.dropped_batches().unwrap(),
    );
    let seqs: Vec<u64> = spool
        .pending("x", 10_000)
        .unwrap()
        .iter()
        .map(|b| b.seq)
        .collect();
    drop(spool);
    assert!(bytes <= cap, "{bytes} bytes spooled over a cap of {cap}");
    assert!(dropped > 0 && !seqs.is_empty());
    let total = dropped + seqs.len() as u64;
    match policy {
        // The newest hours are kept: what remains is the highest sequence numbers.
        "drop_oldest" => assert_eq!(
            seqs,
            ((total - seqs.len() as u64 + 1)..=total).collect::<Vec<_>>()
        ),
        // What was spooled first stays (a later, smaller batch may still fit under the cap).
        _ => {
            assert_eq!(seqs[0], 1, "{seqs:?}");
            assert!(!seqs.contains(&total), "{seqs:?}");
        }
    }
    assert!(
        log.contains("the spool is full")
            && log.contains("earshot_agent_spool_dropped_batches_total"),
        "{log}"
    );

    // The collector comes back: what was kept arrives, and no more than the logs hold.
    d.start_collector();
    let out = d.ingest(1, &chunks, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (from, to) = truth::all_time(&generated.sessions);
    for t in tenants_of(&generated.sessions) {
        let got = d.api(&format!(
            "/api/v1/tenants/{t}/streaming/summary?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        ));
        let want = truth::metrics(&generated.sessions, &t, None, from, to);
        assert!(
            got["sessions"].as_u64().unwrap() < want.sessions,
            "{t}: dropped batches cannot be in the API"
        );
    }
    eprintln!(
        "spool cap {cap} B, {policy}: {dropped} of {total} batches dropped, {} kept ({bytes} B)",
        seqs.len()
    );
}

#[test]
fn a_full_spool_drops_the_oldest_batches_by_default_and_says_so() {
    spool_policy("drop_oldest");
}

#[test]
fn a_full_spool_can_keep_the_oldest_batches_instead() {
    spool_policy("drop_newest");
}

/// A tmpfs mounted for the test (root only), unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(at.to_path_buf()))
    }

    /// Fills the disk to the last byte with a file `filler`.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while f.write_all(&small).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_makes_the_collector_refuse_batches_until_space_returns() {
    let tmp = tempfile::tempdir().unwrap();
    let generated = earshot_loadgen::generate(&scenario(52), &tmp.path().join("gen")).unwrap();
    let files = generated.files[0].1.clone();
    let disk_dir = tmp.path().join("disk");
    let Some(disk) = SmallDisk::mount(&disk_dir, "16m") else {
        eprintln!("SKIPPED: cannot mount a tmpfs (not root)");
        return;
    };
    // The collector's state directory on the small disk.
    let dir = tmp.path().join("earshot");
    let mut d = Deployment::start(&dir, 1);
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
    edit_file(&dir.join("collector.toml"), |t| {
        t.replace(
            &format!("state_dir = \"{}\"", dir.join("collector-state").display()),
            &format!("state_dir = \"{}\"", disk_dir.join("state").display()),
        )
    });
    d.start_collector();
    let filler = disk.fill();

    // Full: the agent's batches are refused (to retry), the agent keeps them, the collector
    // stays up and answers.
    let out = d.ingest(1, &files, &["--timeout-secs", "6"]);
    assert!(
        !out.status.success(),
        "nothing can be stored on a full disk"
    );
    let spool = earshot_agent::spool::Spool::open(&dir.join("agent-state/spool.db")).unwrap();
    let spooled = spool.pending_count().unwrap();
    drop(spool);
    assert!(spooled > 0);
    assert!(
        d.collector
            .as_mut()
            .unwrap()
            .child
            .try_wait()
            .unwrap()
            .is_none(),
        "the collector died of a full disk"
    );
    let (status, _) = http_get(d.http, "/healthz", None).unwrap();
    let log = std::fs::read_to_string(dir.join("collector.log")).unwrap();
    assert!(log.contains("cannot merge batch"), "{log}");
    let (from, to) = truth::all_time(&generated.sessions);
    let summary = |t: &str| {
        d.api(&format!(
            "/api/v1/tenants/{t}/streaming/summary?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        ))
    };
    assert_eq!(
        summary("radio001")["sessions"].as_u64(),
        Some(0),
        "a refused batch must not be half merged"
    );

    // Space returns: the same agent run ships everything, exactly once.
    std::fs::remove_file(filler).unwrap();
    let out = d.ingest(1, &files, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in tenants_of(&generated.sessions) {
        let want = truth::metrics(&generated.sessions, &t, None, from, to);
        let got = summary(&t);
        assert_eq!(got["sessions"].as_u64(), Some(want.sessions), "{t}");
        assert_eq!(
            got["peak_concurrent"].as_u64(),
            Some(want.peak_concurrent),
            "{t}"
        );
    }
    eprintln!(
        "disk full: {spooled} batches refused and kept by the agent; /healthz answered {status} while full; all merged once after space returned"
    );
    d.collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(10));
}

fn dry_run_memory(file: &Path) -> (serde_json::Value, u64) {
    let (out, peak) = run_measuring_memory(
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--dry-run"])
            .arg(file)
            .env("RUST_LOG", "error"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (serde_json::from_slice(&out.stdout).unwrap(), peak)
}

#[test]
fn memory_stays_bounded_without_line_breaks_and_under_a_flood_of_listeners() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 MiB without a single line break, then one good line.
    let endless = tmp.path().join("endless.log");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&endless).unwrap());
        let block = vec![b'A'; 1 << 20];
        for _ in 0..64 {
            f.write_all(&block).unwrap();
        }
        f.write_all(b"\n").unwrap();
    }
    let (report, endless_kib) = dry_run_memory(&endless);
    assert_eq!(
        report["malformed"]["too_long"].as_u64(),
        Some(1),
        "{report}"
    );
    assert!(
        endless_kib < 64 * 1024,
        "a 64 MiB line took {endless_kib} KiB"
    );

    // Distinct listeners (address and User-Agent), progressive 2-minute sessions, `n` of
    // them spread evenly over `hours` hours of log.
    let flood = |n: u32, hours: u32, path: &Path| {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let start_s = 1_795_906_800i64 - 3 * 3600; // 2026-11-28T21:00Z
        for i in 0..n {
            let (a, b, c) = (10 + i / 65_536, (i / 256) % 256, i % 256);
            let t = start_s + i64::from(i) * i64::from(hours) * 3600 / i64::from(n);
            let (y, mo, d) = earshot_common::time::civil_from_days(t.div_euclid(86_400));
            let month = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ][mo as usize - 1];
            let tod = t.rem_euclid(86_400);
            writeln!(
                f,
                "{a}.{b}.{c}.9:4000 [{d:02}/{month}/{y}:{:02}:{:02}:{:02}.000] fe_http be_radio001/s1 0/0/0/5/120000 200 1000 - - ---- 1/1/1/1/0 0/0 {{Player/{i}.0 (Flood)|}} \"GET /radio001/live.mp3 HTTP/1.1\"",
                tod / 3600,
                tod % 3600 / 60,
                tod % 60
            )
            .unwrap();
        }
    };
    let (one_hour, ten_hours, burst) = (
        tmp.path().join("1h.log"),
        tmp.path().join("10h.log"),
        tmp.path().join("burst.log"),
    );
    flood(20_000, 1, &one_hour);
    flood(200_000, 10, &ten_hours);
    flood(200_000, 1, &burst);
    let (r1, kib_1h) = dry_run_memory(&one_hour);
    let (r10, kib_10h) = dry_run_memory(&ten_hours);
    let (rb, kib_burst) = dry_run_memory(&burst);
    let sessions = |r: &serde_json::Value| r["tenants"]["radio001"]["sessions"].as_u64().unwrap();
    assert_eq!(
        (sessions(&r1), sessions(&r10), sessions(&rb)),
        (20_000, 200_000, 200_000)
    );
    eprintln!(
        "peak memory: 64 MiB line {endless_kib} KiB; 20,000 listeners in 1 h {kib_1h} KiB; 200,000 over 10 h {kib_10h} KiB; 200,000 in 1 h {kib_burst} KiB"
    );
    // The agent's per-listener state is capped (400,000 cached listener hashes, 50,000 User-
    // Agents) and AQH state is dropped an hour of log time after its quarter-hour: 200,000
    // listeners must stay far below a gigabyte-class leak (figures in docs/reliability.md).
    assert!(
        kib_10h < 120 * 1024,
        "200,000 listeners over 10 h took {kib_10h} KiB"
    );
    assert!(
        kib_burst < 120 * 1024,
        "200,000 listeners in 1 h took {kib_burst} KiB"
    );
}
