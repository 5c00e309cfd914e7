//! The collector's stop on SIGTERM, end to end: SIGTERM lands while an agent ships a stream
//! of batches and after a live sample came in. The collector exits 0, having logged its stop
//! steps in their order (live streams closed, tasks cancelled, QUIC drained, tasks stopped,
//! live state saved); restarted, it shows the live count from before the stop (read back
//! from `live.db`, as nothing else holds it), and once the agent has shipped the rest every
//! session is in the store exactly once (the generator's truth, per tenant).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use earshot_agent::config::AgentConfig;
use earshot_agent::ship::Shipper;
use earshot_common::rollup::Protocol;
use earshot_common::wire::{LiveEntry, LiveSample};
use earshot_loadgen::{Scenario, truth};
use earshot_tests::*;

const HOUR: i64 = 3_600_000;
const STEPS: [&str; 5] = [
    "step=LiveClosed",
    "step=Cancelled",
    "step=QuicDrained",
    "step=TasksStopped",
    "step=LiveSaved",
];

fn start_collector(d: &mut Deployment, log: &Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    d.collector = Some(Proc::spawn(
        "earshot-collector",
        Command::new(bin("earshot-collector"))
            .args(["run", "--config"])
            .arg(d.dir.join("collector.toml"))
            .env("RUST_LOG", "info,earshot_collector::link=debug")
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

fn live_listeners(d: &Deployment) -> u64 {
    d.api("/api/v1/tenants/radio-live/live")["listeners"]
        .as_u64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_merges_saves_the_live_state_and_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let scenario = Scenario {
        seed: 41,
        hosts: 1,
        hours: 2,
        stations: 4,
        listeners: 500,
        start_ms: 1_795_906_800_000 - 2 * HOUR,
        ..Scenario::default()
    };
    let generated = earshot_loadgen::generate(&scenario, &root.join("gen")).unwrap();
    // Many small rotated files: one batch each, a stream of merges for SIGTERM to land in.
    let chunks = split_log(
        &generated.files[0].1,
        300,
        &root.join("logs"),
        "haproxy.log",
    );
    let tenants = tenants_of(&generated.sessions);
    let range = truth::all_time(&generated.sessions);

    let dir = root.join("deployment");
    let http = free_port();
    run_ok(
        Command::new(bin("earshot-collector"))
            .args(["init", "--dir"])
            .arg(&dir)
            .args(["--quic-listen", &format!("127.0.0.1:{}", free_udp_port())])
            .args(["--http-listen", &format!("127.0.0.1:{http}")]),
    );
    let mut d = Deployment {
        token: std::fs::read_to_string(dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_string(),
        dir: dir.clone(),
        http: format!("127.0.0.1:{http}").parse().unwrap(),
        collector: None,
    };
    let log = dir.join("collector.log");
    start_collector(&mut d, &log);

    // A live count only the collector's memory holds (the periodic snapshot is a minute away).
    let agent = AgentConfig::load(&d.agent_config(1)).unwrap();
    let mut shipper = Shipper::new(agent.collector.as_ref().unwrap()).unwrap();
    shipper.connect().await.unwrap();
    shipper
        .send_live(&LiveSample {
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64,
            entries: vec![LiveEntry {
                tenant: "radio-live".into(),
                stream: "/live.mp3".into(),
                protocol: Protocol::Icecast,
                listeners: 17,
            }],
        })
        .unwrap();
    let seen = wait_for(Duration::from_secs(10), || {
        (live_listeners(&d) == 17).then_some(())
    });
    assert!(seen.is_some(), "the live sample did not arrive");

    let agent_log = root.join("agent.log");
    let mut ingest = Proc::spawn(
        "earshot-agent ingest",
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--timeout-secs", "120", "--config"])
            .arg(d.agent_config(1))
            .args(&chunks)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap()),
    );
    let merging = wait_for(Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("batch merged").then_some(())
    });
    assert!(merging.is_some(), "no batch merged");
    let status = d
        .collector
        .take()
        .unwrap()
        .terminate(Duration::from_secs(30))
        .expect("the collector stops");
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(0), "{status}\n{text}");
    let merged_before_stop = text.matches("batch merged").count();
    assert!(
        merged_before_stop < chunks.len(),
        "SIGTERM came after every batch was merged: nothing was in flight"
    );

    // The stop steps, each once, in their order.
    let at: Vec<usize> = STEPS
        .iter()
        .map(|step| {
            assert_eq!(text.matches(step).count(), 1, "{step}\n{text}");
            text.find(step).unwrap()
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{at:?}\n{text}");

    // Up again: the live count comes back from live.db before any agent sends a sample.
    drop(shipper);
    start_collector(&mut d, &log);
    assert_eq!(live_listeners(&d), 17);

    // The agent ships what was not acknowledged before the stop; nothing is lost or doubled.
    let done = wait_for(Duration::from_secs(120), || {
        ingest.child.try_wait().unwrap()
    })
    .expect("the agent finishes shipping");
    assert!(
        done.success(),
        "{}",
        std::fs::read_to_string(&agent_log).unwrap()
    );
    for t in &tenants {
        let want = truth::metrics(&generated.sessions, t, None, range.0, range.1);
        let got = d.api(&format!(
            "/api/v1/tenants/{t}/streaming/summary?from={}&to={}",
            rfc3339(range.0),
            rfc3339(range.1)
        ));
        assert_eq!(got["sessions"].as_u64(), Some(want.sessions), "{t}");
    }
    let text = std::fs::read_to_string(&log).unwrap();
    eprintln!(
        "{} files; {merged_before_stop} batches merged before SIGTERM, {} in all",
        chunks.len(),
        text.matches("batch merged").count()
    );
}
