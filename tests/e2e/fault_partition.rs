//! The network between a running agent and the collector cut for a while: the collector runs
//! in its own network namespace joined by a veth pair, and the link is taken down (every
//! packet lost, as when a cable or a route goes) while the agent keeps reading rotated files.
//! When the link comes back, every metric equals an uninterrupted run's. Without network
//! namespaces (not root), the collector is frozen with SIGSTOP instead: a peer that answers
//! nothing.
//!
//! `EARSHOT_FAULT_CUT_SECS` sets the cut (CI: 20 s; the reliability report's run: 180 s, past
//! the QUIC idle timeout of 60 s).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use earshot_loadgen::{Scenario, truth};
use earshot_tests::*;

const HOUR: i64 = 3_600_000;

fn ingested(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.matches("ingested").count() - text.matches("already ingested").count()
}

fn pending(state: &Path) -> u64 {
    earshot_agent::spool::Spool::open(&state.join("spool.db"))
        .map(|s| s.pending_count().unwrap_or(u64::MAX))
        .unwrap_or(u64::MAX)
}

/// Moves chunk files into the agent's log directory (renames keep their mtimes, so the agent
/// reads them oldest first) and tells the agent.
fn rotate_in(chunks: &[PathBuf], logs: &Path, config: &Path) {
    for c in chunks {
        std::fs::rename(c, logs.join(c.file_name().unwrap())).unwrap();
    }
    notify_agent(config, &logs.join("haproxy.log"));
}

fn wait_ingested(log: &Path, n: usize, timeout: Duration) {
    wait_for(timeout, || (ingested(log) >= n).then_some(()))
        .unwrap_or_else(|| panic!("the agent read {} of {n} files", ingested(log)));
}

#[test]
fn a_network_cut_between_agent_and_collector_loses_and_doubles_nothing() {
    let cut_secs = env_secs("EARSHOT_FAULT_CUT_SECS", 20);
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let scenario = Scenario {
        seed: 33,
        hosts: 1,
        hours: 3,
        stations: 5,
        listeners: 600,
        start_ms: 1_795_906_800_000 - 2 * HOUR,
        ..Scenario::default()
    };
    let generated = earshot_loadgen::generate(&scenario, &root.join("gen")).unwrap();
    let tenants = tenants_of(&generated.sessions);
    let (from, to) = truth::all_time(&generated.sessions);

    // The uninterrupted run: the same files, the same `run`, no fault.
    let reference = Deployment::start(&root.join("reference"), 1);
    let ref_logs = root.join("ref-logs");
    let ref_chunks = split_log(
        &generated.files[0].1,
        2_000,
        &root.join("ref-chunks"),
        "haproxy.log",
    );
    std::fs::create_dir_all(&ref_logs).unwrap();
    set_agent_files(&reference.agent_config(1), &[ref_logs.join("haproxy.log")]);
    let ref_log = root.join("ref-agent.log");
    let mut ref_agent = spawn_agent_run(&reference.agent_config(1), &ref_log, "info");
    rotate_in(&ref_chunks, &ref_logs, &reference.agent_config(1));
    wait_ingested(&ref_log, ref_chunks.len(), Duration::from_secs(60));

    // The faulted run: the collector in its own network namespace.
    let ns = NetNs::create();
    let method = if ns.is_some() {
        "veth link down between network namespaces"
    } else {
        "SIGSTOP of the collector"
    };
    let dir = root.join("faulted");
    let (quic, http) = (free_udp_port(), free_port());
    let host = ns
        .as_ref()
        .map_or("127.0.0.1".to_string(), |n| n.inner_ip.clone());
    run_ok(
        Command::new(bin("earshot-collector"))
            .args(["init", "--dir"])
            .arg(&dir)
            .args([
                "--quic-listen",
                &format!("{host}:{quic}"),
                "--http-listen",
                &format!("{host}:{http}"),
            ]),
    );
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let mut d = Deployment {
        dir: dir.clone(),
        http: format!("{host}:{http}").parse().unwrap(),
        token,
        collector: None,
    };
    let collector_log = std::fs::File::create(dir.join("collector.log")).unwrap();
    let mut cmd = match &ns {
        Some(ns) => ns.command(&bin("earshot-collector")),
        None => Command::new(bin("earshot-collector")),
    };
    cmd.args(["run", "--config"])
        .arg(dir.join("collector.toml"))
        .stdout(Stdio::null())
        .stderr(collector_log);
    d.collector = Some(Proc::spawn("earshot-collector", &mut cmd));
    wait_for(Duration::from_secs(20), || {
        http_get(d.http, "/healthz", None)
            .ok()
            .filter(|(s, _)| *s == 200)
    })
    .expect("the collector in its namespace is healthy");

    let logs = root.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let chunks = split_log(
        &generated.files[0].1,
        2_000,
        &root.join("chunks"),
        "haproxy.log",
    );
    let third = chunks.len() / 3;
    set_agent_files(&d.agent_config(1), &[logs.join("haproxy.log")]);
    let agent_log = root.join("agent.log");
    let state = dir.join("agent-state");
    let mut agent = spawn_agent_run(&d.agent_config(1), &agent_log, "info");

    // A third arrives while all is well.
    rotate_in(&chunks[..third], &logs, &d.agent_config(1));
    wait_ingested(&agent_log, third, Duration::from_secs(60));
    wait_for(Duration::from_secs(30), || {
        (pending(&state) == 0).then_some(())
    })
    .expect("the first third is shipped");

    // Cut. Another third is rotated and read during the cut: it can only be spooled.
    let t_cut = Instant::now();
    match &ns {
        Some(ns) => ns.cut(),
        None => d.collector.as_ref().unwrap().pause(),
    }
    rotate_in(&chunks[third..2 * third], &logs, &d.agent_config(1));
    wait_ingested(&agent_log, 2 * third, Duration::from_secs(60));
    let spooled_during_cut = pending(&state);
    assert!(spooled_during_cut > 0, "nothing was spooled during the cut");
    std::thread::sleep(Duration::from_secs(cut_secs).saturating_sub(t_cut.elapsed()));
    let cut_for = t_cut.elapsed();
    match &ns {
        Some(ns) => ns.heal(),
        None => d.collector.as_ref().unwrap().resume(),
    }
    // The rest after the link is back.
    let t_heal = Instant::now();
    rotate_in(&chunks[2 * third..], &logs, &d.agent_config(1));
    wait_ingested(&agent_log, chunks.len(), Duration::from_secs(60));

    let want = metric_snapshot(&reference, &tenants, from, to);
    let settled = wait_for(Duration::from_secs(150), || {
        let got = metric_snapshot(&d, &tenants, from, to);
        snapshot_diff(&want, &got).is_none().then_some(())
    });
    let recovered = t_heal.elapsed();
    if settled.is_none() {
        let got = metric_snapshot(&d, &tenants, from, to);
        panic!(
            "after a {cut_for:?} cut ({method}) the API differs from the uninterrupted run: {}\n{}",
            snapshot_diff(&want, &got).unwrap(),
            std::fs::read_to_string(&agent_log).unwrap_or_default()
        );
    }
    // Nothing more arrives later either.
    std::thread::sleep(Duration::from_secs(2));
    assert!(snapshot_diff(&want, &metric_snapshot(&d, &tenants, from, to)).is_none());
    agent.terminate(Duration::from_secs(20));
    ref_agent.terminate(Duration::from_secs(20));
    eprintln!(
        "network cut for {cut_for:?} by {method}: {spooled_during_cut} batches spooled during the cut; equal to the uninterrupted run {recovered:?} after the link came back"
    );
}
