//! `earshot-agent run` following a log through logrotate's shapes — rename + create,
//! copytruncate, delaycompress + compress, a file rotated twice before the agent looks — with
//! `notify` as logrotate's postrotate, into a real collector. Every line is counted once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use earshot_loadgen::{Scenario, truth};
use earshot_tests::*;

fn content(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if raw.starts_with(&[0x1f, 0x8b]) {
        let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
        return out.stdout;
    }
    raw
}

/// logrotate's numbering: `.1` stays plain (delaycompress), older ones are compressed.
fn shift(dir: &Path) {
    for i in (1..20).rev() {
        let gz = dir.join(format!("haproxy.log.{i}.gz"));
        if gz.exists() {
            std::fs::rename(&gz, dir.join(format!("haproxy.log.{}.gz", i + 1))).unwrap();
        }
        let plain = dir.join(format!("haproxy.log.{i}"));
        if plain.exists() {
            let next = dir.join(format!("haproxy.log.{}", i + 1));
            std::fs::rename(&plain, &next).unwrap();
            let status = Command::new("gzip").arg("-f").arg(&next).status().unwrap();
            assert!(status.success());
        }
    }
}

fn rotate_rename(dir: &Path) {
    shift(dir);
    std::fs::rename(dir.join("haproxy.log"), dir.join("haproxy.log.1")).unwrap();
    std::fs::write(dir.join("haproxy.log"), b"").unwrap();
}

fn rotate_copytruncate(dir: &Path) {
    shift(dir);
    std::fs::copy(dir.join("haproxy.log"), dir.join("haproxy.log.1")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("haproxy.log"))
        .unwrap();
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn run_follows_every_rotation_shape_and_counts_each_line_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        hosts: 1,
        hours: 6,
        stations: 4,
        listeners: 500,
        seed: 11,
        ..Scenario::default()
    };
    let generated = earshot_loadgen::generate(&scenario, &tmp.path().join("gen")).unwrap();
    let hours: Vec<Vec<u8>> = generated.files[0].1.iter().map(|p| content(p)).collect();
    assert_eq!(hours.len(), 6);

    let d = Deployment::start(&tmp.path().join("earshot"), 1);
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let live = logs.join("haproxy.log");
    let config = d.agent_config(1);
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("files = []", &format!("files = [\"{}\"]", live.display())),
    )
    .unwrap();

    // Two hours are written and rotated (rename, then copytruncate) before the agent starts.
    append(&live, &hours[0]);
    rotate_rename(&logs);
    append(&live, &hours[1]);
    rotate_copytruncate(&logs);

    let agent_log = std::fs::File::create(tmp.path().join("agent.log")).unwrap();
    let mut agent = Proc::spawn(
        "earshot-agent",
        Command::new(bin("earshot-agent"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(agent_log),
    );
    let notify = |path: &PathBuf| {
        wait_for(Duration::from_secs(10), || {
            Command::new(bin("earshot-agent"))
                .args(["notify", "--config"])
                .arg(&config)
                .arg(path)
                .stderr(Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
        })
        .expect("the agent answers notify");
    };

    let tenant = "radio001";
    let (from, to) = truth::all_time(&generated.sessions);
    let summary_path = format!(
        "/api/v1/tenants/{tenant}/streaming/summary?from={}&to={}",
        rfc3339(from),
        rfc3339(to)
    );
    let lines_so_far = |d: &Deployment| d.api(&summary_path)["sessions"].as_u64().unwrap_or(0);

    // Hour 3 by rename, hour 4 by copytruncate with notify; hours 5 and 6 are rotated twice
    // before anyone tells the agent.
    let mut latencies = Vec::new();
    for (i, shape) in [(2, "rename"), (3, "copytruncate")] {
        append(&live, &hours[i]);
        let before = lines_so_far(&d);
        if shape == "rename" {
            rotate_rename(&logs)
        } else {
            rotate_copytruncate(&logs)
        }
        let t0 = Instant::now();
        notify(&live);
        wait_for(Duration::from_secs(60), || {
            (lines_so_far(&d) > before).then_some(())
        })
        .unwrap_or_else(|| panic!("hour {i} ({shape}) never reached the API"));
        latencies.push(t0.elapsed());
    }
    append(&live, &hours[4]);
    rotate_rename(&logs);
    append(&live, &hours[5]);
    rotate_rename(&logs);
    notify(&live);

    let want = truth::metrics(&generated.sessions, tenant, None, from, to);
    let settled = wait_for(Duration::from_secs(60), || {
        let got = d.api(&summary_path);
        (got["sessions"].as_u64() == Some(want.sessions)).then_some(got)
    });
    let mut log = String::new();
    std::fs::File::open(tmp.path().join("agent.log"))
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let got = settled.unwrap_or_else(|| {
        panic!(
            "the API never reached {} sessions (has {})\n{log}",
            want.sessions,
            lines_so_far(&d)
        )
    });
    assert_eq!(got["short_sessions"].as_u64(), Some(want.short_sessions));
    assert_eq!(got["bot_sessions"].as_u64(), Some(want.bot_sessions));
    assert_eq!(got["peak_concurrent"].as_u64(), Some(want.peak_concurrent));
    let ls = got["listening_seconds"].as_f64().unwrap();
    assert!(
        (ls - want.listening_seconds).abs() < 1e-3,
        "listening {ls} vs {}",
        want.listening_seconds
    );
    // Nothing is read twice: a later scan finds nothing new.
    notify(&live);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        d.api(&summary_path)["sessions"].as_u64(),
        Some(want.sessions)
    );
    agent.terminate(Duration::from_secs(20));
    eprintln!("rotation → API latency: {:?}", latencies);
}
