//! Exit codes of the real binaries: a config that cannot be read, is not TOML or is invalid
//! exits 78 (EX_CONFIG, which the systemd units do not restart on); a good config that fails
//! for another reason (a port in use, a state directory that cannot be made) exits 1.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use earshot_tests::*;

const EX_CONFIG: i32 = 78;

/// Runs a binary to its end; (exit code, stderr).
fn exit_of(cmd: &mut Command) -> (i32, String) {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .expect("the binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("ended by a signal: {stderr}"));
    (code, stderr)
}

/// A deployment made by `init` on free ports: (dir, collector.toml, agent.toml).
fn deployment(root: &Path, http_port: u16) -> (PathBuf, PathBuf) {
    run_ok(
        Command::new(bin("earshot-collector"))
            .args(["init", "--dir"])
            .arg(root)
            .args(["--quic-listen", &format!("127.0.0.1:{}", free_udp_port())])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")]),
    );
    (root.join("collector.toml"), root.join("agent.toml"))
}

/// Configs that are bad in each way: missing file, not TOML, an unknown key, a value out
/// of range.
fn bad_configs(dir: &Path, good: &Path) -> Vec<(&'static str, PathBuf)> {
    let good_text = std::fs::read_to_string(good).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    vec![
        ("missing", dir.join("no-such.toml")),
        (
            "not TOML",
            write("syntax.toml", "[quic\nlisten = 1\n".into()),
        ),
        (
            "unknown key",
            write("unknown.toml", format!("colour = \"blue\"\n{good_text}")),
        ),
        (
            "bad value",
            write(
                "value.toml",
                format!("{good_text}\n[limits]\nmax_streams = 0\n"),
            ),
        ),
    ]
}

#[test]
fn the_collector_exits_78_on_a_bad_config_and_1_on_other_failures() {
    let root = tempfile::tempdir().unwrap();
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let (collector_toml, _) = deployment(&root.path().join("d"), held_port);

    for (what, config) in bad_configs(root.path(), &collector_toml) {
        let (code, stderr) = exit_of(
            Command::new(bin("earshot-collector"))
                .args(["run", "--config"])
                .arg(&config),
        );
        assert_eq!(code, EX_CONFIG, "run, {what}: {stderr}");
        assert!(
            stderr.contains(&*config.to_string_lossy()),
            "{what}: {stderr}"
        );
        let (code, stderr) = exit_of(
            Command::new(bin("earshot-collector"))
                .args(["enroll-agent", "agent-9", "--config"])
                .arg(&config),
        );
        assert_eq!(code, EX_CONFIG, "enroll-agent, {what}: {stderr}");
    }

    // A good config whose HTTP port is taken.
    let (code, stderr) = exit_of(
        Command::new(bin("earshot-collector"))
            .args(["run", "--config"])
            .arg(&collector_toml),
    );
    assert_eq!(code, 1, "port in use: {stderr}");
    assert!(stderr.contains("http.listen"), "{stderr}");
    drop(held);

    // A good config whose state directory cannot be made (a file is in the way).
    let blocked = root.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    edit_file(&collector_toml, |t| {
        let state_dir = t.lines().find(|l| l.starts_with("state_dir")).unwrap();
        t.replacen(
            state_dir,
            &format!(
                "state_dir = {:?}",
                blocked.join("state").display().to_string()
            ),
            1,
        )
    });
    let (code, stderr) = exit_of(
        Command::new(bin("earshot-collector"))
            .args(["run", "--config"])
            .arg(&collector_toml),
    );
    assert_eq!(code, 1, "state_dir blocked: {stderr}");
    assert!(stderr.contains("state_dir"), "{stderr}");
}

#[test]
fn the_agent_exits_78_on_a_bad_config_and_1_on_other_failures() {
    let root = tempfile::tempdir().unwrap();
    let (_, agent_toml) = deployment(&root.path().join("d"), free_port());

    let mut bad = bad_configs(root.path(), &agent_toml);
    let good_text = std::fs::read_to_string(&agent_toml).unwrap();
    // Valid TOML with valid keys, but naming what cannot be used.
    let zone = root.path().join("zone.toml");
    std::fs::write(
        &zone,
        good_text.replace("[inputs]\n", "[inputs]\nlog_timezone = \"Mars/Olympus\"\n"),
    )
    .unwrap();
    bad.push(("unknown time zone", zone));
    let no_secret = root.path().join("no-secret.toml");
    let secret_line = good_text
        .lines()
        .find(|l| l.starts_with("secret_file"))
        .unwrap();
    std::fs::write(
        &no_secret,
        good_text.replace(
            secret_line,
            &format!(
                "secret_file = {:?}",
                root.path().join("none").display().to_string()
            ),
        ),
    )
    .unwrap();
    bad.push(("missing secret", no_secret));

    for (what, config) in &bad {
        for args in [&["run"][..], &["check-config"], &["ingest", "--dry-run"]] {
            if *what == "missing secret" && args[0] == "ingest" {
                // A dry run uses a one-off secret when the file is missing.
                continue;
            }
            let mut cmd = Command::new(bin("earshot-agent"));
            cmd.args(args).arg("--config").arg(config);
            if args[0] == "ingest" {
                cmd.arg("/dev/null");
            }
            let (code, stderr) = exit_of(&mut cmd);
            assert_eq!(code, EX_CONFIG, "{args:?}, {what}: {stderr}");
        }
    }

    // A good config whose state directory cannot be made.
    let blocked = root.path().join("blocked");
    std::fs::write(&blocked, "").unwrap();
    edit_file(&agent_toml, |t| {
        let state_dir = t.lines().find(|l| l.starts_with("state_dir")).unwrap();
        t.replacen(
            state_dir,
            &format!(
                "state_dir = {:?}",
                blocked.join("state").display().to_string()
            ),
            1,
        )
    });
    let (code, stderr) = exit_of(
        Command::new(bin("earshot-agent"))
            .args(["check-config", "--config"])
            .arg(&agent_toml),
    );
    assert_eq!(code, 0, "the config itself is good: {stderr}");
    let (code, stderr) = exit_of(
        Command::new(bin("earshot-agent"))
            .args(["run", "--config"])
            .arg(&agent_toml),
    );
    assert_eq!(code, 1, "state_dir blocked: {stderr}");
    assert!(stderr.contains("state_dir"), "{stderr}");
}
