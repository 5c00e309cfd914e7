//! logrotate gone wrong under a running agent (`tests/e2e/rotation.rs` covers the shapes
//! logrotate makes when it works): the syslog daemon never told of the rotation, so it keeps
//! appending to the renamed file; a file rotated while shorter than the agent's fingerprint
//! and grown since; a rotated file truncated and written again; a rotated name replaced by
//! other content; the agent stopped (and killed) across several rotations with compression.
//! No line is counted twice or lost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use earshot_loadgen::{Scenario, truth};
use earshot_tests::*;

fn content(path: &Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    if raw.starts_with(&[0x1f, 0x8b]) {
        return Command::new("gzip")
            .arg("-dc")
            .arg(path)
            .output()
            .unwrap()
            .stdout;
    }
    raw
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

/// logrotate's numbering with `compress` + `delaycompress`: `.1` stays plain, older ones gz.
fn shift(dir: &Path) {
    for i in (1..30).rev() {
        let gz = dir.join(format!("haproxy.log.{i}.gz"));
        if gz.exists() {
            std::fs::rename(&gz, dir.join(format!("haproxy.log.{}.gz", i + 1))).unwrap();
        }
        let plain = dir.join(format!("haproxy.log.{i}"));
        if plain.exists() {
            let next = dir.join(format!("haproxy.log.{}", i + 1));
            std::fs::rename(&plain, &next).unwrap();
            assert!(
                Command::new("gzip")
                    .arg("-f")
                    .arg(&next)
                    .status()
                    .unwrap()
                    .success()
            );
        }
    }
}

fn rotate(dir: &Path) {
    shift(dir);
    std::fs::rename(dir.join("haproxy.log"), dir.join("haproxy.log.1")).unwrap();
    std::fs::write(dir.join("haproxy.log"), b"").unwrap();
}

/// Splits at a line boundary near `at` bytes.
fn split_at_line(bytes: &[u8], at: usize) -> (&[u8], &[u8]) {
    let cut = bytes[..at.min(bytes.len())]
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |i| i + 1);
    bytes.split_at(cut)
}

struct Agent<'a> {
    config: PathBuf,
    log: PathBuf,
    live: PathBuf,
    reads: usize,
    _d: &'a Deployment,
}

impl Agent<'_> {
    fn reads_now(&self) -> usize {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.matches("ingested").count() - text.matches("already ingested").count()
    }

    /// notify, then wait until the agent has read `files` more files (or parts of files).
    fn notify_and_wait(&mut self, files: usize) {
        notify_agent(&self.config, &self.live);
        let want = self.reads + files;
        wait_for(Duration::from_secs(60), || {
            (self.reads_now() >= want).then_some(())
        })
        .unwrap_or_else(|| panic!("the agent read {} times, expected {want}", self.reads_now()));
        self.reads = self.reads_now();
    }
}

#[test]
fn misbehaving_rotations_count_every_line_once() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        hosts: 1,
        hours: 9,
        stations: 3,
        listeners: 300,
        seed: 41,
        ..Scenario::default()
    };
    let generated = earshot_loadgen::generate(&scenario, &tmp.path().join("gen")).unwrap();
    let hours: Vec<Vec<u8>> = generated.files[0].1.iter().map(|p| content(p)).collect();
    assert_eq!(hours.len(), 9);

    let d = Deployment::start(&tmp.path().join("earshot"), 1);
    let logs = tmp.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let live = logs.join("haproxy.log");
    set_agent_files(&d.agent_config(1), std::slice::from_ref(&live));
    let log = tmp.path().join("agent.log");
    let mut proc = spawn_agent_run(&d.agent_config(1), &log, "info");
    let mut agent = Agent {
        config: d.agent_config(1),
        log: log.clone(),
        live: live.clone(),
        reads: 0,
        _d: &d,
    };

    // Hour 0: a plain rotation.
    append(&live, &hours[0]);
    rotate(&logs);
    agent.notify_and_wait(1);

    // Hour 1: rsyslog is never told (no postrotate HUP): after the rename it keeps writing the
    // second half of the hour into haproxy.log.1, which the agent has already read.
    let (first, second) = split_at_line(&hours[1], hours[1].len() / 2);
    append(&live, first);
    rotate(&logs);
    agent.notify_and_wait(1);
    append(&logs.join("haproxy.log.1"), second);
    agent.notify_and_wait(1);

    // Hour 2: rotated while it held a few lines (under the 4 KiB fingerprint), grown after.
    let (few, rest) = split_at_line(&hours[2], 1_500);
    append(&live, few);
    rotate(&logs);
    agent.notify_and_wait(1);
    append(&logs.join("haproxy.log.1"), rest);
    agent.notify_and_wait(1);

    // Hour 3: rotated normally; then haproxy.log.1 is truncated and written again with the
    // same lines (a copytruncate pointed at the wrong file, a restore from backup).
    append(&live, &hours[3]);
    rotate(&logs);
    agent.notify_and_wait(1);
    let one = logs.join("haproxy.log.1");
    let same = std::fs::read(&one).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&one)
        .unwrap();
    notify_agent(&agent.config, &live);
    std::thread::sleep(Duration::from_millis(500));
    append(&one, &same);
    notify_agent(&agent.config, &live);

    // Hour 4: haproxy.log.1 is replaced in place by other content (a rotation the agent
    // never saw as a rename): the old lines were read, the new ones are.
    append(&live, &hours[4]);
    rotate(&logs);
    agent.notify_and_wait(1);
    let two = logs.join("haproxy.log.2.gz");
    assert!(two.exists());
    std::fs::write(&one, &hours[5]).unwrap();
    agent.notify_and_wait(1);
    // (hour 5 is now read; the live file starts hour 6)

    // Hours 6–8: the agent is stopped, three rotations with compression happen, it is started
    // and killed with SIGKILL while catching up, and started again.
    proc.terminate(Duration::from_secs(20));
    for h in &hours[6..9] {
        append(&live, h);
        rotate(&logs);
    }
    proc = spawn_agent_run(&d.agent_config(1), &log, "info");
    std::thread::sleep(Duration::from_millis(300));
    proc.kill9();
    proc = spawn_agent_run(&d.agent_config(1), &log, "info");
    notify_agent(&agent.config, &live);

    let tenants = tenants_of(&generated.sessions);
    let (from, to) = truth::all_time(&generated.sessions);
    let summary = |t: &str| {
        d.api(&format!(
            "/api/v1/tenants/{t}/streaming/summary?from={}&to={}",
            rfc3339(from),
            rfc3339(to)
        ))
    };
    for t in &tenants {
        let want = truth::metrics(&generated.sessions, t, None, from, to);
        let got = wait_for(Duration::from_secs(60), || {
            let got = summary(t);
            (got["sessions"].as_u64() == Some(want.sessions)).then_some(got)
        })
        .unwrap_or_else(|| {
            panic!(
                "{t}: the API has {} sessions, the logs {}\n{}",
                summary(t)["sessions"],
                want.sessions,
                std::fs::read_to_string(&log).unwrap()
            )
        });
        assert_eq!(
            got["short_sessions"].as_u64(),
            Some(want.short_sessions),
            "{t} short"
        );
        assert_eq!(
            got["bot_sessions"].as_u64(),
            Some(want.bot_sessions),
            "{t} bots"
        );
        assert_eq!(
            got["active_sessions"].as_u64(),
            Some(want.active_sessions),
            "{t} active"
        );
        assert_eq!(
            got["peak_concurrent"].as_u64(),
            Some(want.peak_concurrent),
            "{t} peak"
        );
        let ls = got["listening_seconds"].as_f64().unwrap();
        assert!(
            (ls - want.listening_seconds).abs() < 1e-3,
            "{t}: listening {ls} vs {}",
            want.listening_seconds
        );
    }
    // Nothing is read again later.
    notify_agent(&agent.config, &live);
    std::thread::sleep(Duration::from_secs(2));
    for t in &tenants {
        let want = truth::metrics(&generated.sessions, t, None, from, to);
        assert_eq!(
            summary(t)["sessions"].as_u64(),
            Some(want.sessions),
            "{t} after a rescan"
        );
    }
    proc.terminate(Duration::from_secs(20));
}
