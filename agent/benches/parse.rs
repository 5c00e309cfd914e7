//! Throughput of `logline::parse_line` over a mix of HAProxy lines (some from the captures in
//! `tests/data/`, the rest shaped like them), under the envelopes rsyslog and HAProxy write.
//! The pipeline budget is about 3 million lines a second on one core, so a line must parse in
//! well under ~150 ns.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use earshot_agent::logline::parse_line;

/// Mostly listening sessions (long `CD--` streams, HLS-like short requests), plus the
/// envelopes, a tcplog line, a BADREQ line and a non-traffic line, roughly as a real file mixes
/// them.
const LINES: &[&str] = &[
    r#"127.0.0.1:57568 [28/Nov/2026:04:20:12.946] fe_http be_app/app1 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 {VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:18080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""#,
    r#"2026-11-28T04:27:38.839063+00:00 vm haproxy[20777]: 203.0.113.17:37408 [28/Nov/2026:04:27:38.837] fe_http~ be_radio1/icecast1 0/0/0/1/3605112 200 57685231 - - CD-- 812/790/788/788/0 0/0 {Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36|radio.example.com} "GET /radio1/live.mp3?source=app HTTP/1.1""#,
    r#"Nov 28 04:27:38 vm haproxy[20777]: 198.51.100.4:51112 [28/Nov/2026:04:27:38.901] fe_https~ be_hls/edge2 0/0/1/2/4 200 188012 - - ---- 802/781/40/20/0 0/0 {AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X; en_us)|hls.example.com} "GET /radio2/hls/segment_184467.aac HTTP/1.1""#,
    r#"<134>1 2026-11-28T04:20:12.898583+00:00 - haproxy 6231 - - ::1:48890 [28/Nov/2026:04:20:12.960] fe_http be_app/app1 0/0/0/0/8209 200 42121 - - CD-- 1/1/0/0/0 0/0 {foobar2000/1.6|[::1]:18080} {audio/mpeg} "GET /stream/radio2.mp3 HTTP/1.1""#,
    r#"2001:db8:1f70::999:de8:7648:6e8:443 [28/Nov/2026:04:30:06.570] fe_https~ be_radio3/icecast2 0/0/0/0/912345 200 14597120 - - CD-- 1/1/0/0/0 0/0 {Sonos/79.1-55240 (ZPS27)|radio.example.com} "GET https://radio.example.com/radio3.aac HTTP/2.0" 0/0000000000000000/0/0/0 radio.example.com/TLSv1.3/TLS_AES_256_GCM_SHA384"#,
    r#"127.0.0.1:57556 [28/Nov/2026:04:20:12.903] fe_http be_app/app1 0/0/0/0/0 200 186 SRVID=client-cookie-1 SRVID=abc123 ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (X11; Linux x86_64) #22quoted#22 #7Bbrace#7D #7Cpipe#7C #23hash|127.0.0.1:18080} {text/plain} "GET / HTTP/1.1""#,
    r#"<134>Nov 28 04:20:12 localhost haproxy[6231]: 192.0.2.55:44200 [28/Nov/2026:04:20:12.960] fe_tcp be_tcp/app1 1/0/5207 27137 CD 5/1/0/0/0 0/0"#,
    r#"2026-11-28T04:20:12.898598+00:00 10.0.0.8:50508 [28/Nov/2026:04:22:59.329] fe_http fe_http/<NOSRV> -1/-1/-1/-1/0 400 0 - - CR-- 1/1/0/0/0 0/0 "<BADREQ>""#,
    r#"127.0.0.1:52702 [28/Nov/2026:04:20:12.958] fe_logasap be_app/app1 0/0/0/2/+2 200 +121 - - ---- 5/1/3/3/0 0/0 {VLC/3.0.18 LibVLC/3.0.18} "GET /stream/logasap.mp3 HTTP/1.1""#,
    r#"Nov 28 04:29:26 localhost haproxy[10986]: Proxy fe_http stopped (cumulated conns: FE: 6, BE: 0)."#,
];

/// The bench mix, weighted toward the common case: the first three shapes make up most traffic.
fn mix() -> Vec<&'static [u8]> {
    let mut mix: Vec<&[u8]> = Vec::new();
    for _ in 0..4 {
        mix.extend(LINES[..3].iter().map(|l| l.as_bytes()));
    }
    mix.extend(LINES.iter().map(|l| l.as_bytes()));
    mix
}

/// This thread's CPU time in ns (Linux `schedstat`), `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Criterion reports wall time, which on a shared machine includes other processes' turns.
/// This prints the mix's cost in this thread's CPU time as well, the number to compare with
/// the ~150 ns/line budget.
fn report_cpu_time(_c: &mut Criterion) {
    let mix = mix();
    let rounds = 100_000;
    let wall = std::time::Instant::now();
    let cpu0 = thread_cpu_ns();
    for _ in 0..rounds {
        for line in &mix {
            let record = parse_line(black_box(line));
            black_box(&record);
        }
    }
    let cpu1 = thread_cpu_ns();
    let lines = (rounds * mix.len()) as f64;
    let wall_ns = wall.elapsed().as_nanos() as f64 / lines;
    match cpu0.zip(cpu1) {
        Some((a, b)) => println!(
            "parse_line mix: {:.1} ns/line CPU time, {wall_ns:.1} ns/line wall ({lines} lines)",
            (b - a) as f64 / lines
        ),
        None => println!("parse_line mix: {wall_ns:.1} ns/line wall ({lines} lines)"),
    }
}

fn bench_parse(c: &mut Criterion) {
    let mix = mix();
    for line in &mix {
        assert!(
            parse_line(line).is_ok(),
            "bench line does not parse: {:?}",
            String::from_utf8_lossy(line)
        );
    }
    let bytes: usize = mix.iter().map(|l| l.len()).sum();

    let mut group = c.benchmark_group("parse_line");
    group.throughput(Throughput::Elements(mix.len() as u64));
    group.bench_function("mix", |b| {
        b.iter(|| {
            for line in &mix {
                let record = parse_line(black_box(line));
                black_box(&record);
            }
        })
    });
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("mix_bytes", |b| {
        b.iter(|| {
            for line in &mix {
                let record = parse_line(black_box(line));
                black_box(&record);
            }
        })
    });
    let vlc = LINES[0].as_bytes();
    group.throughput(Throughput::Elements(1));
    group.bench_function("httplog_stream_line", |b| {
        b.iter(|| {
            let record = parse_line(black_box(vlc));
            black_box(&record);
        })
    });
    group.finish();
}

criterion_group!(benches, report_cpu_time, bench_parse);
criterion_main!(benches);
