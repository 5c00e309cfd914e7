//! Live listeners from a real Icecast (Debian's icecast2) through the real agent (`run` with
//! `[[live.icecast]]`), QUIC datagrams and the real collector to `/live`: the API follows the
//! true count within one poll interval plus one second.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use earshot_tests::*;

use crate::live_icecast::{ADMIN_PASSWORD, feed, icecast_config, listen};

const INTERVAL_SECS: u64 = 1;

fn live_listeners(d: &Deployment) -> Option<u64> {
    d.api("/api/v1/tenants/radio1/live")["listeners"].as_u64()
}

fn until(
    d: &Deployment,
    want: u64,
    since: Instant,
    within: Duration,
    agent_log: &std::path::Path,
) -> Duration {
    loop {
        if live_listeners(d) == Some(want) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "/live did not reach {want} within {within:?} (has {:?})\nagent: {}",
            live_listeners(d),
            std::fs::read_to_string(agent_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_api_follows_icecast_listeners() {
    let tmp = tempfile::tempdir().unwrap();
    let icedir = tmp.path().join("icecast");
    std::fs::create_dir_all(&icedir).unwrap();
    let port = free_port();
    let cfg = icedir.join("icecast.xml");
    std::fs::write(&cfg, icecast_config(&icedir, port)).unwrap();
    let _icecast = Proc::spawn(
        "icecast2",
        Command::new("icecast2")
            .arg("-c")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let icecast: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(
        wait_for_port(icecast, Duration::from_secs(10)),
        "icecast2 did not start"
    );
    let password_file = tmp.path().join("icecast.pass");
    std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n")).unwrap();

    let d = Deployment::start(&tmp.path().join("earshot"), 1);
    let agent_config = d.agent_config(1);
    let mut text = std::fs::read_to_string(&agent_config).unwrap();
    text.push_str(&format!(
        "\n[live]\ninterval_secs = {INTERVAL_SECS}\n[[live.icecast]]\nurl = \"http://{icecast}\"\n\
         password_file = \"{}\"\nmounts = {{ \"/radio1/live.mp3\" = {{ tenant = \"radio1\", stream = \"/radio1/live.mp3\" }} }}\n",
        password_file.display()
    ));
    std::fs::write(&agent_config, text).unwrap();
    let agent_log = tmp.path().join("agent.log");
    let mut agent = Proc::spawn(
        "earshot-agent",
        Command::new(bin("earshot-agent"))
            .args(["run", "--config"])
            .arg(&agent_config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&agent_log).unwrap()),
    );

    let source = feed(icecast, "/radio1/live.mp3", "radio1").await;
    // The agent reports the mount (0 listeners) before anyone connects.
    until(&d, 0, Instant::now(), Duration::from_secs(20), &agent_log);
    let follow = Duration::from_secs(INTERVAL_SECS + 1);

    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(listen(icecast, "/radio1/live.mp3").await);
    }
    let took_up = until(&d, 3, Instant::now(), follow, &agent_log);
    for l in listeners.drain(..2) {
        l.abort();
    }
    let took_down = until(&d, 1, Instant::now(), follow, &agent_log);
    let live = d.api("/api/v1/tenants/radio1/live");
    assert_eq!(live["by_stream"][0]["stream"], "/radio1/live.mp3", "{live}");
    assert_eq!(live["by_protocol"][0]["protocol"], "icecast", "{live}");
    eprintln!("icecast → /live: 3 listeners after {took_up:?}, 1 after {took_down:?}");
    source.abort();
    agent.terminate(Duration::from_secs(20));
}
