//! Hostile HTTP against a running collector: bad and huge ranges, injection attempts in every
//! parameter and path segment, oversized bodies, slow clients. Each gets a 4xx and nothing
//! else: the collector keeps answering, and the stored numbers do not change.

use std::io::{Read, Write};
use std::time::Duration;

use earshot_loadgen::Scenario;
use earshot_tests::*;

const HOSTILE: [&str; 9] = [
    "'%20OR%201=1--",
    "radio001';DROP%20TABLE%20quarters;--",
    "%3Cscript%3Ealert(1)%3C/script%3E",
    "..%2F..%2Fetc%2Fpasswd",
    "%00",
    "%E2%80%AE%FF%FE",
    "9999999999999999999999999",
    "-99:99",
    "2026-13-45T99:99:99Z",
];

fn status(d: &Deployment, path: &str) -> u16 {
    http_get(d.http, path, Some(&d.token))
        .map(|(s, _)| s)
        .unwrap_or(0)
}

#[test]
fn hostile_requests_get_4xx_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let scenario = Scenario {
        hosts: 1,
        hours: 2,
        stations: 2,
        listeners: 200,
        ..Scenario::default()
    };
    let generated = earshot_loadgen::generate(&scenario, &tmp.path().join("logs")).unwrap();
    let d = Deployment::start(&tmp.path().join("earshot"), 1);
    let out = d.ingest(1, &generated.files[0].1, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (from, to) = (
        rfc3339(generated.window_start_ms),
        rfc3339(generated.window_end_ms),
    );
    let good = format!("/api/v1/tenants/radio001/streaming/summary?from={from}&to={to}");
    let before = d.api(&good);

    let endpoints = [
        "summary",
        "timeseries",
        "by-hour",
        "session-lengths",
        "by/client",
    ];
    let mut checked = 0;
    for ep in endpoints {
        let base = format!("/api/v1/tenants/radio001/streaming/{ep}");
        // Bad and huge ranges.
        for q in [
            format!("from={to}&to={from}"),
            format!("from={from}&to={from}"),
            "from=1900-01-01T00:00:00Z&to=2900-01-01T00:00:00Z".to_string(),
            format!("from={from}"),
            "to=2026-01-01T00:00:00Z".to_string(),
            String::new(),
        ] {
            let s = status(&d, &format!("{base}?{q}"));
            assert!((400..500).contains(&s), "{base}?{q}: {s}");
            checked += 1;
        }
        // Injection attempts in every parameter.
        for h in HOSTILE {
            for q in [
                format!("from={h}&to={to}"),
                format!("from={from}&to={h}"),
                format!("from={from}&to={to}&stream={h}"),
                format!("from={from}&to={to}&tz={h}"),
                format!("from={from}&to={to}&granularity={h}"),
                format!("from={from}&to={to}&{h}=1"),
            ] {
                let s = status(&d, &format!("{base}?{q}"));
                // A hostile stream name is a valid filter that matches nothing: 200 with zeros.
                assert!(
                    (400..500).contains(&s) || (q.contains("stream=") && s == 200),
                    "{base}?{q}: {s}"
                );
                checked += 1;
            }
        }
    }
    for h in HOSTILE {
        for path in [
            format!("/api/v1/tenants/{h}/streaming/summary?from={from}&to={to}"),
            format!("/api/v1/tenants/radio001/streaming/by/{h}?from={from}&to={to}"),
            format!("/api/v1/tenants/radio001/{h}"),
        ] {
            let s = status(&d, &path);
            // A plain name (digits) is a tenant without data: the admin token reads zeros.
            let plain = h.bytes().all(|b| b.is_ascii_alphanumeric());
            assert!(
                (400..500).contains(&s) || (plain && s == 200),
                "{path}: {s}"
            );
            checked += 1;
        }
    }

    // An oversized body.
    let mut conn = std::net::TcpStream::connect(d.http).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let body = vec![b'x'; 64 * 1024 * 1024];
    let head = format!(
        "POST /api/v1/tenants/radio001/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        d.token,
        body.len()
    );
    conn.write_all(head.as_bytes()).unwrap();
    let _ = conn.write_all(&body);
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let s: u16 = String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!((400..500).contains(&s), "a 64 MiB body: {s}");

    // Slow clients: connections that send half a request line and stall do not stop others.
    let slow: Vec<_> = (0..50)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(d.http).unwrap();
            let _ = c.write_all(b"GET /api/v1/tenants HTTP/1.1\r\nHost: x\r\n");
            c
        })
        .collect();
    assert_eq!(status(&d, "/healthz"), 200);
    assert_eq!(d.api(&good), before, "the stored numbers must not change");
    drop(slow);
    eprintln!("hostile HTTP: {checked} requests, each a 4xx (or an empty 200 for a stream filter)");
}
