//! Countries come from a MaxMind-format database looked up on the agent, before the address
//! is dropped. The test builds a small database with Debian's MaxMind::DB::Writer.

use std::process::Command;

use earshot_tests::*;
use serde_json::Value;

const WRITER: &str = r#"
use MaxMind::DB::Writer::Tree;
my %types = (country => 'map', iso_code => 'utf8_string', names => 'map', en => 'utf8_string');
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version => 6, record_size => 24, database_type => 'GeoLite2-Country',
    languages => ['en'], description => { en => 'earshot test' },
    remove_reserved_networks => 0,
    map_key_type_callback => sub { $types{ $_[0] } },
);
$tree->insert_network('192.0.2.0/24', { country => { iso_code => 'DE', names => { en => 'Germany' } } });
$tree->insert_network('2001:db8::/32', { country => { iso_code => 'FR', names => { en => 'France' } } });
open my $fh, '>:raw', $ARGV[0] or die;
$tree->write_tree($fh);
"#;

fn line(ip: &str, port: u16, ua: &str) -> String {
    format!(
        "{ip}:{port} [28/Nov/2026:10:00:00.000] fe_radio be_radio1/origin 0/0/0/1/120000 200 99999 - - CD-- 1/1/1/1/0 0/0 {{{ua}|}} \"GET /radio1/live.mp3 HTTP/1.1\""
    )
}

#[test]
fn countries_come_from_the_configured_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("countries.mmdb");
    run_ok(Command::new("perl").arg("-e").arg(WRITER).arg(&db));
    let log = dir.path().join("haproxy.log");
    let lines = [
        line("192.0.2.10", 40000, "VLC/3.0.18 LibVLC/3.0.18"),
        line("192.0.2.11", 40001, "VLC/3.0.18 LibVLC/3.0.18"),
        line("2001:db8:1::7", 40002, "VLC/3.0.18 LibVLC/3.0.18"),
        line("198.51.100.7", 40003, "VLC/3.0.18 LibVLC/3.0.18"),
    ];
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "[inputs]\nlog_timezone = \"UTC\"\n[classify]\ngeoip_db = \"{}\"\n",
            db.display()
        ),
    )
    .unwrap();
    let out = run_ok(
        Command::new(bin("earshot-agent"))
            .args(["ingest", "--dry-run", "--config"])
            .arg(&cfg)
            .arg(&log),
    );
    let report: Value = serde_json::from_str(&out).unwrap();
    let countries = &report["tenants"]["radio1"]["breakdowns"]["country"];
    assert_eq!(countries["DE"], 2, "{out}");
    assert_eq!(countries["FR"], 1, "{out}");
    assert_eq!(countries["unknown"], 1, "{out}");
}
