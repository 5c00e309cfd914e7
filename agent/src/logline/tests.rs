use super::*;

/// How a captured sample payload must come out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Http,
    Tcp,
    NotTraffic,
    Custom,
}

/// Every distinct HAProxy message in `tests/data/haproxy-2.6/` and `haproxy-3.2/` (captured
/// 2026-11-28 from HAProxy 2.6.12 and 3.2.0, see `tests/data/README.md`), without its syslog
/// envelope. The sample files hold these under the envelopes in [`ENVELOPES`].
const SAMPLES: &[(&str, Class)] = &[
    (
        r##"::ffff:127.0.0.1:48818 [28/Nov/2026:04:30:06.560] fe_dual fe_dual/<NOSRV> 0/-1/-1/-1/0 200 73 - - LR-- 1/1/0/0/0 0/0 "GET /v4-on-dual-stack HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"::1:60076 [28/Nov/2026:04:30:06.570] fe_dual fe_dual/<NOSRV> 0/-1/-1/-1/0 200 73 - - LR-- 1/1/0/0/0 0/0 "GET /v6 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:50492 [28/Nov/2026:04:22:59.312] fe_http be_nosrv/<NOSRV> 0/-1/-1/-1/0 503 217 - - SC-- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:18080} {} "GET /nosrv/x HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:43308 [28/Nov/2026:04:22:59.321] fe_https/1: SSL handshake failure"##,
        Class::NotTraffic,
    ),
    (
        r##"127.0.0.1:50508 [28/Nov/2026:04:22:59.329] fe_http fe_http/<NOSRV> -1/-1/-1/-1/0 400 0 - - CR-- 1/1/0/0/0 0/0 "<BADREQ>""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:50522 [28/Nov/2026:04:22:59.332] fe_http fe_http/<NOSRV> -1/-1/-1/-1/2001 408 0 - - cR-- 1/1/0/0/0 0/0 "<BADREQ>""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:46406 [28/Nov/2026:04:27:16.154] fe_http be_app/app1 0/0/1/0/1 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA|127.0.0.1:18080} {text/plain} "GET /ka1 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:46406 [28/Nov/2026:04:27:16.155] fe_http be_app/app1 0/0/0/0/41 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA|127.0.0.1:18080} {text/plain} "GET /ka2 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:46408 [28/Nov/2026:04:27:16.204] fe_http be_app/app1 0/0/0/1/1 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:18080} {text/plain} "GET /http10 HTTP/1.0""##,
        Class::Http,
    ),
    (
        r##"{"ci":"127.0.0.1","cp":34202,"tr":"28/Nov/2026:04:27:19.563","ft":"fe_json","b":"be_app","s":"app1","TR":0,"Tw":0,"Tc":0,"Tr":2,"Ta":3207,"Tt":3207,"ST":200,"B":17121,"tsc":"CD--","ac":2,"fc":2,"bc":0,"sc":0,"rc":0,"sq":0,"bq":0,"hr":"{VLC/3.0.18 LibVLC/3.0.18}","r":"GET /stream/json.mp3 HTTP/1.1","ua":"VLC\/3.0.18 LibVLC\/3.0.18"}"##,
        Class::Custom,
    ),
    (
        r##"{"ci":"127.0.0.1","cp":34208,"tr":"28/Nov/2026:04:27:24.067","ft":"fe_json","b":"be_app","s":"app1","TR":0,"Tw":0,"Tc":0,"Tr":3,"Ta":3,"Tt":1503,"ST":200,"B":186,"tsc":"----","ac":1,"fc":1,"bc":0,"sc":0,"rc":0,"sq":0,"bq":0,"hr":"{}","r":"GET /idle-then-request HTTP/1.1","ua":"-"}"##,
        Class::Custom,
    ),
    (
        r##"Proxy fe_http stopped (cumulated conns: FE: 6, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_logasap stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_https stopped (cumulated conns: FE: 1, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_json stopped (cumulated conns: FE: 2, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_tcp stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy st_ip stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy st_ip6 stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy st_noexp stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy st_mount stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy be_app stopped (cumulated conns: FE: 0, BE: 5)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy be_nosrv stopped (cumulated conns: FE: 0, BE: 1)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy be_tcp stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy <HTTPCLIENT> stopped (cumulated conns: FE: 0, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"127.0.0.1:57542 [28/Nov/2026:04:20:12.895] fe_http be_app/app1 0/0/1/1/2 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:18080} {text/plain} "GET /index.html?x=1 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:57556 [28/Nov/2026:04:20:12.903] fe_http be_app/app1 0/0/0/0/0 200 186 SRVID=client-cookie-1 SRVID=abc123 ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (X11; Linux x86_64) #22quoted#22 #7Bbrace#7D #7Cpipe#7C #23hash|127.0.0.1:18080} {text/plain} "GET / HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"::1:48878 [28/Nov/2026:04:20:12.910] fe_http be_app/app1 0/0/0/0/0 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|[::1]:18080} {text/plain} "GET /live.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:57566 [28/Nov/2026:04:20:12.918] fe_http be_app/app1 0/0/0/0/0 501 533 - - ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:18080} {text/html;charset=utf-8} "POST /api HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:37020 [28/Nov/2026:04:20:12.927] fe_https~ be_app/app1 0/0/0/1/1 200 186 - - ---- 1/1/0/0/0 0/0 "GET /secure HTTP/1.1" 0/0000000000000000/0/0/0 -/TLSv1.3/TLS_AES_256_GCM_SHA384"##,
        Class::Http,
    ),
    (
        r##"{"ci":"127.0.0.1","cp":52020,"tr":"28/Nov/2026:04:20:12.933","ft":"fe_json","b":"be_app","s":"app1","TR":0,"Tw":0,"Tc":0,"Tr":0,"Ta":0,"Tt":0,"ST":200,"B":186,"tsc":"----","ac":1,"fc":1,"bc":0,"sc":0,"rc":0,"sq":0,"bq":0,"hr":"{Mozilla/5.0 #22json test#22}","r":"GET /json?q=1 HTTP/1.1","ua":"Mozilla\/5.0 \"json test\""}"##,
        Class::Custom,
    ),
    (
        r##"127.0.0.1:44186 [28/Nov/2026:04:20:12.940] fe_tcp be_tcp/app1 1/0/1 191 -- 1/1/0/0/0 0/0"##,
        Class::Tcp,
    ),
    (
        r##"127.0.0.1:52702 [28/Nov/2026:04:20:12.958] fe_logasap be_app/app1 0/0/0/2/+2 200 +121 - - ---- 5/1/3/3/0 0/0 {VLC/3.0.18 LibVLC/3.0.18} "GET /stream/logasap.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:44200 [28/Nov/2026:04:20:12.960] fe_tcp be_tcp/app1 1/0/5207 27137 CD 5/1/0/0/0 0/0"##,
        Class::Tcp,
    ),
    (
        r##"127.0.0.1:57568 [28/Nov/2026:04:20:12.946] fe_http be_app/app1 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 {VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:18080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:57576 [28/Nov/2026:04:20:12.957] fe_http be_app/app1 0/0/0/2/8212 200 42121 - - CD-- 2/2/1/1/0 0/0 {Winamp/5.9|127.0.0.1:18080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"::1:48890 [28/Nov/2026:04:20:12.960] fe_http be_app/app1 0/0/0/0/8209 200 42121 - - CD-- 1/1/0/0/0 0/0 {foobar2000/1.6|[::1]:18080} {audio/mpeg} "GET /stream/radio2.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:37408 [28/Nov/2026:04:27:38.837] fe_devlog be_app/app1 0/0/0/1/1 200 186 - - ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (Linux; Android 14) Radio/2.1} "GET /devlog-test HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:54816 [28/Nov/2026:04:19:46.616] fe_http be_app/app1 0/0/1/1/2 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:8080} {text/plain} "GET /index.html?x=1 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:54820 [28/Nov/2026:04:19:46.627] fe_http be_app/app1 0/0/0/1/1 200 186 SRVID=client-cookie-1 SRVID=abc123 ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (X11; Linux x86_64) #22quoted#22 #7Bbrace#7D #7Cpipe#7C #23hash|127.0.0.1:8080} {text/plain} "GET / HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"::1:40732 [28/Nov/2026:04:19:46.635] fe_http be_app/app1 0/0/0/0/0 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|[::1]:8080} {text/plain} "GET /live.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:54830 [28/Nov/2026:04:19:46.642] fe_http be_app/app1 0/0/0/1/1 501 533 - - ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:8080} {text/html;charset=utf-8} "POST /api HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:47772 [28/Nov/2026:04:19:46.657] fe_logasap be_app/app1 0/0/0/2/+2 200 +1121 - - ---- 4/1/4/4/0 0/0 {VLC/3.0.18 LibVLC/3.0.18} "GET /stream/logasap.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:54850 [28/Nov/2026:04:19:46.654] fe_http be_app/app1 0/0/0/4/8218 200 42121 - - CD-- 3/3/2/2/0 0/0 {Winamp/5.9|127.0.0.1:8080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"::1:40740 [28/Nov/2026:04:19:46.659] fe_http be_app/app1 0/0/0/1/8214 200 42121 - - CD-- 2/2/1/1/0 0/0 {foobar2000/1.6|[::1]:8080} {audio/mpeg} "GET /stream/radio2.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:54836 [28/Nov/2026:04:19:46.652] fe_http be_app/app1 0/0/0/5/8221 200 42121 - - CD-- 1/1/0/0/0 0/0 {VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:8080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:38062 [28/Nov/2026:04:23:19.236] fe_http be_app/app1 0/0/0/5/5 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:28080} {text/plain} "GET /index.html?x=1 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:38076 [28/Nov/2026:04:23:19.250] fe_http be_app/app1 0/0/0/3/3 200 186 SRVID=client-cookie-1 SRVID=abc123 ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (X11; Linux x86_64) #22quoted#22 #7Bbrace#7D #7Cpipe#7C #23hash|127.0.0.1:28080} {text/plain} "GET / HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"::1:45146 [28/Nov/2026:04:23:19.262] fe_http be_app/app1 0/0/0/3/3 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|[::1]:28080} {text/plain} "GET /live.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:33372 [28/Nov/2026:04:23:19.277] fe_https~ be_app/app1 0/0/0/0/48 200 186 - - ---- 1/1/0/0/0 0/0 "GET https://127.0.0.1:28443/secure HTTP/2.0" 0/0000000000000000/0/0/0 -/TLSv1.3/TLS_AES_256_GCM_SHA384"##,
        Class::Http,
    ),
    (
        r##"{"ci":"127.0.0.1","cp":60092,"tr":"28/Nov/2026:04:23:19.335","ft":"fe_json","b":"be_app","s":"app1","TR":0,"Tw":0,"Tc":0,"Tr":2,"Ta":2,"Tt":2,"ST":200,"B":186,"tsc":"----","ac":1,"fc":1,"bc":0,"sc":0,"rc":0,"sq":0,"bq":0,"hr":"{Mozilla/5.0 #22json test#22}","r":"GET /json?q=1 HTTP/1.1","ua":"Mozilla\/5.0 \"json test\""}"##,
        Class::Custom,
    ),
    (
        r##"{"client_ip": "127.0.0.1", "client_port": 38338, "request_date": "28/Nov/2026:04:23:19.346", "frontend": "fe_json3", "backend": "be_app", "server": "app1", "TR": 0, "Tw": 0, "Tc": 0, "Tr": 3, "Ta": 3, "Tt": 3, "status": 200, "bytes_read": 186, "termination_state": "----", "actconn": 1, "feconn": 1, "beconn": 0, "srv_conn": 0, "retries": 0, "srv_queue": 0, "backend_queue": 0, "req_headers": "{Mozilla/5.0 #22json test#22}", "request": "GET /json3?q=1 HTTP/1.1", "user_agent": "Mozilla/5.0 \"json test\""}"##,
        Class::Custom,
    ),
    (
        r##"127.0.0.1:55916 [28/Nov/2026:04:23:19.355] fe_tcp be_tcp/app1 1/0/3 191 -- 1/1/0/0/0 0/0"##,
        Class::Tcp,
    ),
    (
        r##"127.0.0.1:38092 [28/Nov/2026:04:23:19.365] fe_http be_nosrv/<NOSRV> 0/-1/-1/-1/0 503 217 - - SC-- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:28080} {} "GET /nosrv/x HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:33384 [28/Nov/2026:04:23:19.370] fe_https/1: SSL handshake failure (error:0A00009C:SSL routines::http request)"##,
        Class::NotTraffic,
    ),
    (
        r##"127.0.0.1:38102 [28/Nov/2026:04:23:19.376] fe_http fe_http/<NOSRV> -1/-1/-1/-1/0 400 0 - - CR-- 1/1/0/0/0 0/0 "<BADREQ>""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:57760 [28/Nov/2026:04:23:19.395] fe_logasap be_app/app1 0/0/0/0/+0 200 +1121 - - ---- 4/1/4/3/0 0/0 {VLC/3.0.18 LibVLC/3.0.18} "GET /stream/logasap.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:55926 [28/Nov/2026:04:23:19.396] fe_tcp be_tcp/app1 1/0/4209 22137 CD 5/1/0/0/0 0/0"##,
        Class::Tcp,
    ),
    (
        r##"127.0.0.1:38118 [28/Nov/2026:04:23:19.387] fe_http be_app/app1 0/0/0/2/6216 200 32121 - - CD-- 3/3/2/2/0 0/0 {Winamp/5.9|127.0.0.1:28080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"127.0.0.1:38112 [28/Nov/2026:04:23:19.386] fe_http be_app/app1 0/0/0/1/6217 200 32121 - - CD-- 2/2/1/1/0 0/0 {VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:28080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"::1:45154 [28/Nov/2026:04:23:19.395] fe_http be_app/app1 0/0/0/0/6213 200 32121 - - CD-- 1/1/0/0/0 0/0 {foobar2000/1.6|[::1]:28080} {audio/mpeg} "GET /stream/radio2.mp3 HTTP/1.1""##,
        Class::Http,
    ),
    (
        r##"Proxy fe_http stopped (cumulated conns: FE: 8, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_logasap stopped (cumulated conns: FE: 1, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_https stopped (cumulated conns: FE: 2, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_json stopped (cumulated conns: FE: 1, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_json3 stopped (cumulated conns: FE: 1, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy fe_tcp stopped (cumulated conns: FE: 2, BE: 0)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy be_app stopped (cumulated conns: FE: 0, BE: 10)."##,
        Class::NotTraffic,
    ),
    (
        r##"Proxy be_tcp stopped (cumulated conns: FE: 0, BE: 2)."##,
        Class::NotTraffic,
    ),
];

/// Envelopes as captured (FORMATS.md §1.6) plus variants the formats allow.
const ENVELOPES: &[&str] = &[
    "",
    "<6>",
    "<132>",
    "<134>Nov 28 04:19:46 haproxy[5710]: ",
    "<134>Nov 28 04:20:12 localhost haproxy[6231]: ",
    "<134>Nov  3 04:20:12 localhost haproxy[6231]: ",
    "<134>1 2026-11-28T04:20:12.898583+00:00 - haproxy 6231 - - ",
    "<134>1 2026-11-28T04:20:12.898583+00:00 stream-host-1.example haproxy 6231 - - ",
    r#"<134>1 2026-11-28T04:20:12.898583+00:00 h haproxy 6231 - [meta a="x\]y z"][b c="d"] "#,
    "2026-11-28T04:20:12.898598+00:00 ",
    "<6>2026-11-28T04:20:12.898601+00:00 ",
    "Nov 28 04:27:38 vm haproxy[20777]: ",
    "2026-11-28T04:27:38.839063+00:00 vm haproxy[20777]: ",
    "2026-11-28T04:20:12+00:00 localhost haproxy[6231]: ",
    "<134>Nov 28 04:27:38 haproxy[20777]: ",
    "Nov 28 04:27:38 vm haproxy: ",
];

fn parse(s: &str) -> Result<Option<LogRecord<'_>>, Malformed> {
    parse_line(s.as_bytes())
}

fn record(s: &str) -> LogRecord<'_> {
    match parse(s) {
        Ok(Some(r)) => r,
        other => panic!("expected a record from {s:?}, got {other:?}"),
    }
}

fn class_of(result: &Result<Option<LogRecord<'_>>, Malformed>) -> Option<Class> {
    match result {
        Ok(Some(r)) if r.kind == LineKind::Http => Some(Class::Http),
        Ok(Some(_)) => Some(Class::Tcp),
        Ok(None) => Some(Class::NotTraffic),
        Err(Malformed::CustomFormat) => Some(Class::Custom),
        Err(_) => None,
    }
}

fn naive_ms(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64, ms: i64) -> i64 {
    days_from_civil(y, mo, d) * 86_400_000 + h * 3_600_000 + mi * 60_000 + s * 1000 + ms
}

#[test]
fn every_sample_payload_under_every_envelope() {
    for &(payload, class) in SAMPLES {
        let bare = parse(payload);
        assert_eq!(class_of(&bare), Some(class), "{payload}");
        for env in ENVELOPES {
            for end in ["", "\n", "\r\n"] {
                let line = format!("{env}{payload}{end}");
                assert_eq!(parse_line(line.as_bytes()), bare, "{line:?}");
            }
        }
    }
}

#[test]
fn every_line_of_the_sample_files() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data"));
    let mut checked = 0;
    for version in ["haproxy-2.6", "haproxy-3.2"] {
        let entries = std::fs::read_dir(dir.join(version))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(version).display()));
        for entry in entries {
            let entry = entry.expect("read the fixture directory");
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_log = name.ends_with(".stdout")
                || name.ends_with(".stderr")
                || name.starts_with("rsyslog-")
                || name.starts_with("udp-")
                || name == "keepalive_and_truncation.txt";
            if !is_log {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).expect("read sample");
            for raw in text.lines() {
                let line = if name.starts_with("udp-") {
                    python_bytes_repr(raw)
                } else if name.contains("debugformat") {
                    match raw.split_once("rawmsg: '") {
                        Some((_, rest)) => rest.trim_end_matches('\'').as_bytes().to_vec(),
                        None => continue,
                    }
                } else {
                    raw.as_bytes().to_vec()
                };
                let Some(&(payload, class)) = SAMPLES
                    .iter()
                    .find(|(p, _)| trim_line_end(&line).ends_with(p.as_bytes()))
                else {
                    panic!("{name}: line not in SAMPLES: {raw}");
                };
                let got = parse_line(&line);
                assert_eq!(got, parse(payload), "{name}: {raw}");
                assert_eq!(class_of(&got), Some(class), "{name}: {raw}");
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "only {checked} sample lines found");
}

/// Decodes one line of a `udp-*.raw.txt` file: Python's repr of the datagram, `b'...'`.
fn python_bytes_repr(s: &str) -> Vec<u8> {
    let body = s
        .strip_prefix("b'")
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix("b\"").and_then(|s| s.strip_suffix('"')))
        .expect("b'...' repr");
    let b = body.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            match b[i + 1] {
                b'n' => out.push(b'\n'),
                b'r' => out.push(b'\r'),
                b't' => out.push(b'\t'),
                b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
                    out.push(u8::from_str_radix(hex, 16).expect("hex"));
                    i += 2;
                }
                other => out.push(other),
            }
            i += 2;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn vlc_stream_line() {
    let r = record(
        r#"127.0.0.1:57568 [28/Nov/2026:04:20:12.946] fe_http be_app/app1 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 {VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:18080} {audio/mpeg} "GET /stream/radio1.mp3 HTTP/1.1""#,
    );
    assert_eq!(r.kind, LineKind::Http);
    assert_eq!(
        r.client_ip().expect("address"),
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1))
    );
    assert_eq!(r.accept_naive_ms, 1_795_839_612_946);
    assert_eq!(r.accept_naive_ms, naive_ms(2026, 11, 28, 4, 20, 12, 946));
    assert_eq!(r.frontend, b"fe_http");
    assert!(!r.tls);
    assert_eq!(r.backend, b"be_app");
    assert_eq!(r.server, b"app1");
    assert_eq!(r.duration_ms, 8220);
    assert!(!r.logasap);
    assert_eq!(r.status, 200);
    assert_eq!(r.bytes, 42121);
    assert_eq!(r.termination(), b"CD--");
    let block = r.captured_request.expect("capture block");
    assert_eq!(block, b"VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:18080");
    assert_eq!(
        captured_field(block, 0),
        Some(&b"VLC/3.0.18 LibVLC/3.0.18"[..])
    );
    assert_eq!(captured_field(block, 1), Some(&b"127.0.0.1:18080"[..]));
    assert_eq!(captured_field(block, 2), None);
    let req = r.request.expect("request");
    assert_eq!(req.method, b"GET");
    assert_eq!(req.path, b"/stream/radio1.mp3");
    assert_eq!(req.query, None);
    assert_eq!(req.authority, None);
}

#[test]
fn query_cookies_and_other_fields() {
    let r = record(
        r#"127.0.0.1:57542 [28/Nov/2026:04:20:12.895] fe_http be_app/app1 0/0/1/1/2 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:18080} {text/plain} "GET /index.html?x=1 HTTP/1.1""#,
    );
    assert_eq!(r.duration_ms, 2);
    assert_eq!(r.bytes, 186);
    assert_eq!(r.termination(), b"----");
    let req = r.request.expect("request");
    assert_eq!(req.path, b"/index.html");
    assert_eq!(req.query, Some(&b"x=1"[..]));

    let r = record(
        r#"127.0.0.1:57566 [28/Nov/2026:04:20:12.918] fe_http be_app/app1 0/0/0/0/0 501 533 - - ---- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:18080} {text/html;charset=utf-8} "POST /api HTTP/1.1""#,
    );
    assert_eq!(r.status, 501);
    assert_eq!(r.request.expect("request").method, b"POST");
}

#[test]
fn escaped_user_agent_unescapes_to_the_original() {
    let r = record(
        r#"127.0.0.1:57556 [28/Nov/2026:04:20:12.903] fe_http be_app/app1 0/0/0/0/0 200 186 SRVID=client-cookie-1 SRVID=abc123 ---- 1/1/0/0/0 0/0 {Mozilla/5.0 (X11; Linux x86_64) #22quoted#22 #7Bbrace#7D #7Cpipe#7C #23hash|127.0.0.1:18080} {text/plain} "GET / HTTP/1.1""#,
    );
    let ua = captured_field(r.captured_request.expect("block"), 0).expect("ua");
    assert_eq!(
        unescape(ua).as_ref(),
        br#"Mozilla/5.0 (X11; Linux x86_64) "quoted" {brace} |pipe| #hash"#
    );
    assert_eq!(
        captured_field(r.captured_request.expect("block"), 1),
        Some(&b"127.0.0.1:18080"[..])
    );
    assert_eq!(r.request.expect("request").path, b"/");
}

#[test]
fn ipv6_clients() {
    let r = record(
        r#"::1:48890 [28/Nov/2026:04:20:12.960] fe_http be_app/app1 0/0/0/0/8209 200 42121 - - CD-- 1/1/0/0/0 0/0 {foobar2000/1.6|[::1]:18080} {audio/mpeg} "GET /stream/radio2.mp3 HTTP/1.1""#,
    );
    assert_eq!(
        r.client_ip().expect("address"),
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    );
    assert_eq!(r.duration_ms, 8209);
    assert_eq!(
        captured_field(r.captured_request.expect("block"), 1),
        Some(&b"[::1]:18080"[..])
    );

    // An IPv4 client on a dual-stack bind stays the mapped IPv6 address.
    let r = record(
        r#"::ffff:127.0.0.1:48818 [28/Nov/2026:04:30:06.560] fe_dual fe_dual/<NOSRV> 0/-1/-1/-1/0 200 73 - - LR-- 1/1/0/0/0 0/0 "GET /v4-on-dual-stack HTTP/1.1""#,
    );
    assert_eq!(
        r.client_ip().expect("address"),
        IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped())
    );
    assert_eq!(r.backend, b"fe_dual");
    assert_eq!(r.server, b"<NOSRV>");
    assert_eq!(r.termination(), b"LR--");
    assert_eq!(r.captured_request, None);
    assert_eq!(r.request.expect("request").path, b"/v4-on-dual-stack");

    let r = record(
        r#"2001:db8::7:1234 [28/Nov/2026:04:30:06.560] fe be/s 0/0/0/0/1 200 1 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1""#,
    );
    assert_eq!(
        r.client_ip().expect("address"),
        "2001:db8::7".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn httpslog_and_http2_absolute_form() {
    let r = record(
        r#"127.0.0.1:37020 [28/Nov/2026:04:20:12.927] fe_https~ be_app/app1 0/0/0/1/1 200 186 - - ---- 1/1/0/0/0 0/0 "GET /secure HTTP/1.1" 0/0000000000000000/0/0/0 -/TLSv1.3/TLS_AES_256_GCM_SHA384"#,
    );
    assert_eq!(r.frontend, b"fe_https");
    assert!(r.tls);
    assert_eq!(r.captured_request, None);
    assert_eq!(r.request.expect("request").path, b"/secure");

    let r = record(
        r#"127.0.0.1:33372 [28/Nov/2026:04:23:19.277] fe_https~ be_app/app1 0/0/0/0/48 200 186 - - ---- 1/1/0/0/0 0/0 "GET https://127.0.0.1:28443/secure HTTP/2.0" 0/0000000000000000/0/0/0 -/TLSv1.3/TLS_AES_256_GCM_SHA384"#,
    );
    assert!(r.tls);
    assert_eq!(r.duration_ms, 48);
    assert_eq!(r.accept_naive_ms, 1_795_839_799_277);
    let req = r.request.expect("request");
    assert_eq!(req.method, b"GET");
    assert_eq!(req.path, b"/secure");
    assert_eq!(req.query, None);
    assert_eq!(req.authority, Some(&b"127.0.0.1:28443"[..]));

    let r = record(
        r#"127.0.0.1:1 [28/Nov/2026:04:23:19.277] fe~ be/s 0/0/0/0/48 200 186 - - ---- 1/1/0/0/0 0/0 "GET https://radio.example?x=1 HTTP/2.0""#,
    );
    let req = r.request.expect("request");
    assert_eq!(
        (req.path, req.query, req.authority),
        (&b"/"[..], Some(&b"x=1"[..]), Some(&b"radio.example"[..]))
    );
}

#[test]
fn badreq_lines_have_no_blocks_and_no_request() {
    let r = record(
        r#"127.0.0.1:50508 [28/Nov/2026:04:22:59.329] fe_http fe_http/<NOSRV> -1/-1/-1/-1/0 400 0 - - CR-- 1/1/0/0/0 0/0 "<BADREQ>""#,
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.duration_ms, 0);
    assert_eq!(r.bytes, 0);
    assert_eq!(r.captured_request, None);
    assert_eq!(r.request, None);
    let r = record(
        r#"127.0.0.1:50522 [28/Nov/2026:04:22:59.332] fe_http fe_http/<NOSRV> -1/-1/-1/-1/2001 408 0 - - cR-- 1/1/0/0/0 0/0 "<BADREQ>""#,
    );
    assert_eq!((r.status, r.duration_ms), (408, 2001));
    assert_eq!(r.termination(), b"cR--");
}

#[test]
fn nosrv_with_empty_response_block() {
    let r = record(
        r#"127.0.0.1:50492 [28/Nov/2026:04:22:59.312] fe_http be_nosrv/<NOSRV> 0/-1/-1/-1/0 503 217 - - SC-- 1/1/0/0/0 0/0 {curl/7.88.1|127.0.0.1:18080} {} "GET /nosrv/x HTTP/1.1""#,
    );
    assert_eq!((r.backend, r.server), (&b"be_nosrv"[..], &b"<NOSRV>"[..]));
    assert_eq!(r.status, 503);
    assert_eq!(
        r.captured_request,
        Some(&b"curl/7.88.1|127.0.0.1:18080"[..])
    );
    assert_eq!(r.request.expect("request").path, b"/nosrv/x");
}

#[test]
fn logasap_and_retries() {
    let r = record(
        r#"127.0.0.1:52702 [28/Nov/2026:04:20:12.958] fe_logasap be_app/app1 0/0/0/2/+2 200 +121 - - ---- 5/1/3/3/0 0/0 {VLC/3.0.18 LibVLC/3.0.18} "GET /stream/logasap.mp3 HTTP/1.1""#,
    );
    assert!(r.logasap);
    assert_eq!((r.duration_ms, r.bytes), (2, 121));
    assert_eq!(r.captured_request, Some(&b"VLC/3.0.18 LibVLC/3.0.18"[..]));

    let r = record(
        r#"10.1.2.3:40000 [28/Nov/2026:04:20:12.958] fe be/s2 0/0/3012/2/60000 200 5000 - - CD-- 5/1/3/3/+1 0/0 "GET /a.mp3 HTTP/1.1""#,
    );
    assert!(!r.logasap);
    assert_eq!(r.duration_ms, 60000);
    assert_eq!(
        r.client_ip().expect("address"),
        IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
    );
}

#[test]
fn tcplog_lines() {
    let r = record(
        "127.0.0.1:44200 [28/Nov/2026:04:20:12.960] fe_tcp be_tcp/app1 1/0/5207 27137 CD 5/1/0/0/0 0/0",
    );
    assert_eq!(r.kind, LineKind::Tcp);
    assert_eq!(r.duration_ms, 5207);
    assert_eq!(r.bytes, 27137);
    assert_eq!(r.status, 0);
    assert_eq!(r.termination(), b"CD");
    assert_eq!(
        (r.frontend, r.backend, r.server),
        (&b"fe_tcp"[..], &b"be_tcp"[..], &b"app1"[..])
    );
    assert_eq!(r.captured_request, None);
    assert_eq!(r.request, None);
    let r = record(
        "127.0.0.1:55926 [28/Nov/2026:04:23:19.396] fe_tcp be_tcp/app1 1/0/4209 22137 CD 5/1/0/0/0 0/0",
    );
    assert_eq!(r.duration_ms, 4209);
    let r = record(
        "127.0.0.1:55926 [28/Nov/2026:04:23:19.396] fe_tcp be_tcp/app1 1/0/+9 22 -- 5/1/0/0/0 0/0",
    );
    assert!(r.logasap);
}

#[test]
fn keepalive_lines_and_truncated_capture() {
    let ua128 = "A".repeat(128);
    let line = format!(
        r#"127.0.0.1:46406 [28/Nov/2026:04:27:16.155] fe_http be_app/app1 0/0/0/0/41 200 186 - SRVID=abc123 ---- 1/1/0/0/0 0/0 {{{ua128}|127.0.0.1:18080}} {{text/plain}} "GET /ka2 HTTP/1.1""#
    );
    let r = record(&line);
    assert_eq!(r.duration_ms, 41);
    assert_eq!(
        captured_field(r.captured_request.expect("block"), 0),
        Some(ua128.as_bytes())
    );
    assert_eq!(r.accept_naive_ms, naive_ms(2026, 11, 28, 4, 27, 16, 155));
}

#[test]
fn non_traffic_lines_are_none() {
    for msg in [
        "Proxy fe_http stopped (cumulated conns: FE: 6, BE: 0).",
        "Proxy <HTTPCLIENT> stopped (cumulated conns: FE: 0, BE: 0).",
        "Proxy fe_http started.",
        "Server be_app/app1 is DOWN, reason: Layer4 connection problem, info: \"Connection refused\", check duration: 0ms. 0 active and 0 backup servers left. 0 sessions active, 0 requeued, 0 remaining in queue.",
        "Server be_app/app1 is UP, reason: Layer4 check passed, check duration: 0ms. 1 active and 0 backup servers online. 0 sessions requeued, 0 total in queue.",
        "backend be_app has no server available!",
        "[NOTICE]   (1) : New worker (8) forked",
        "127.0.0.1:43308 [28/Nov/2026:04:22:59.321] fe_https/1: SSL handshake failure",
        "127.0.0.1:33384 [28/Nov/2026:04:23:19.370] fe_https/1: SSL handshake failure (error:0A00009C:SSL routines::http request)",
        "::1:33384 [28/Nov/2026:04:23:19.370] fe_https/1: Received something which does not look like a PROXY protocol header",
    ] {
        for env in ENVELOPES {
            let line = format!("{env}{msg}");
            assert_eq!(parse(&line), Ok(None), "{line}");
        }
    }
}

#[test]
fn truncated_request_line_keeps_what_is_there() {
    let head = r#"127.0.0.1:57568 [28/Nov/2026:04:20:12.946] fe_http be_app/app1 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 {VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:18080} {audio/mpeg} "#;
    let cut = format!("{head}\"GET /stream/rad");
    let r = record(&cut);
    let req = r.request.expect("request");
    assert_eq!((req.method, req.path), (&b"GET"[..], &b"/stream/rad"[..]));
    assert_eq!(r.duration_ms, 8220);
    let cut = format!("{head}\"GET /stream/radio1.mp3?token=ab");
    let r = record(&cut);
    assert_eq!(r.request.expect("request").query, Some(&b"token=ab"[..]));
    let cut = format!("{head}\"GET /stream/radio1.mp3 HTT");
    let r = record(&cut);
    assert_eq!(r.request.expect("request").path, b"/stream/radio1.mp3");
    for cut in ["\"", "\"GE", "\"GET", "\"GET ", "", "{VLC/3.0"] {
        assert_eq!(
            parse(&format!("{head}{cut}")),
            Err(Malformed::Truncated),
            "{cut}"
        );
    }
}

#[test]
fn malformed_reasons() {
    let ok = r#"127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#;
    assert!(matches!(parse(ok), Ok(Some(_))));
    let cases: &[(&str, Malformed)] = &[
        ("", Malformed::Empty),
        ("   \t", Malformed::Empty),
        ("\n", Malformed::Empty),
        (
            "<134>Nov 28 04:20:12 localhost haproxy[6231]: ",
            Malformed::Empty,
        ),
        (r#"{"ci":"127.0.0.1"}"#, Malformed::CustomFormat),
        ("hello world", Malformed::NoClientAddress),
        (
            "Nov 28 04:20:12 host sshd[1]: Accepted publickey",
            Malformed::NoClientAddress,
        ),
        (
            r#"unix:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::UnixClient,
        ),
        (
            r#"1234567890123456789012345678901234567890123456:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadAddress,
        ),
        (
            r#"127.0.0.1:99999 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadAddress,
        ),
        (
            r#"127.0.0.1:1 [28/Foo/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadDate,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026:24:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadDate,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026 04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadDate,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe bes 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadFields,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadTimers,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/x/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadTimers,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 OK 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadStatus,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 -5 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#,
            Malformed::BadBytes,
        ),
        (
            r#"127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "-""#,
            Malformed::BadRequest,
        ),
        (
            "127.0.0.1:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0",
            Malformed::Truncated,
        ),
        ("127.0.0.1:1 [28/Nov/2026:04:2", Malformed::Truncated),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line), Err(*want), "{line}");
    }
    let mut names: Vec<&str> = Malformed::ALL.iter().map(Malformed::as_str).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), Malformed::ALL.len());
    assert!(
        names
            .iter()
            .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
    );
}

#[test]
fn addresses_are_parsed_on_demand() {
    let line = |addr: &str| {
        format!(
            r#"{addr}:1 [28/Nov/2026:04:20:12.946] fe be/s 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 "GET / HTTP/1.1""#
        )
    };
    for bad in [
        "300.0.0.1",
        "1.2.3",
        "1:2:3",
        "::1::2",
        "12345::1",
        "1.2.3.4.5",
        "10.0.0.x",
        "fe80::1%eth0",
    ] {
        let text = line(bad);
        let r = record(&text);
        assert_eq!(r.client, bad.as_bytes());
        assert_eq!(r.client_ip(), None, "{bad}");
    }
    for bad in ["", &"1".repeat(46)] {
        assert_eq!(parse(&line(bad)), Err(Malformed::BadAddress), "{bad:?}");
    }
}

#[test]
fn date_cache_follows_day_changes() {
    let line = |date: &str| {
        format!(
            r#"127.0.0.1:1 [{date}] fe be/s 0/0/0/0/1 200 1 - - ---- 1/1/0/0/0 0/0 "GET / HTTP/1.1""#
        )
    };
    for (date, want) in [
        (
            "31/Dec/2026:23:59:59.999",
            naive_ms(2026, 12, 31, 23, 59, 59, 999),
        ),
        ("01/Jan/2027:00:00:00.000", naive_ms(2027, 1, 1, 0, 0, 0, 0)),
        (
            "29/Feb/2028:12:00:00.500",
            naive_ms(2028, 2, 29, 12, 0, 0, 500),
        ),
        ("01/Jan/1970:00:00:00.000", 0),
        (
            "31/Dec/2026:00:00:00.001",
            naive_ms(2026, 12, 31, 0, 0, 0, 1),
        ),
    ] {
        assert_eq!(record(&line(date)).accept_naive_ms, want, "{date}");
    }
    // The cache is seeded with a valid prefix: garbage that matches nothing stays an error.
    assert_eq!(
        parse(&line("\0\0/\0\0\0/\0\0\0\0:00:00:00.000")),
        Err(Malformed::BadDate)
    );
}

#[test]
fn ipv6_parser_agrees_with_std() {
    let mut cases: Vec<String> = [
        "::",
        "::1",
        "1::",
        "1::2",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7::",
        "::2:3:4:5:6:7:8",
        "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5::1.2.3.4",
        "2001:DB8::Ab:1",
        "fe80::1:2",
        ":",
        ":::",
        "1:::2",
        "1::2::3",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7",
        "12345::",
        "::g",
        "1:",
        ":1",
        "1::2:",
        "::1.2.3",
        "::1.2.3.4.5",
        "1:2:3:4:5:6:7:1.2.3.4",
        "::1.2.3.4:5",
        "1.2.3.4::",
        "",
        "::ffff:256.0.0.1",
        "0:0:0:0:0:0:0:0",
        "::0:0:0:0:0:0:0",
        "::0:0:0:0:0:0:0:0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let raw = u128::from(next()) << 64 | u128::from(next());
        // Zero runs, so that `::` compression shows up in many places.
        let mask = u128::from(next()) << 64 | u128::from(next());
        let addr = Ipv6Addr::from(raw & mask & (mask >> 7));
        cases.push(addr.to_string());
        let full: Vec<String> = addr.segments().iter().map(|g| format!("{g:x}")).collect();
        cases.push(full.join(":"));
        let alphabet = b"0123456789abcdefF:.";
        let len = (next() % 24) as usize;
        let junk: String = (0..len)
            .map(|_| alphabet[(next() as usize) % alphabet.len()] as char)
            .collect();
        cases.push(junk);
    }
    for case in cases {
        assert_eq!(
            parse_ipv6(case.as_bytes()),
            case.parse::<Ipv6Addr>().ok(),
            "{case:?}"
        );
    }
}

#[test]
fn fields_split_like_a_plain_scan() {
    // The reference: take up to the next space, or the rest; None once nothing is left.
    fn reference(mut rest: &[u8], n: usize) -> (Vec<&[u8]>, &[u8]) {
        let mut out = Vec::new();
        for _ in 0..n {
            if rest.is_empty() {
                break;
            }
            match rest.iter().position(|&b| b == b' ') {
                Some(sp) => {
                    out.push(&rest[..sp]);
                    rest = &rest[sp + 1..];
                }
                None => {
                    out.push(rest);
                    rest = &[];
                }
            }
        }
        (out, rest)
    }
    let mut state: u64 = 0xDEAD_BEEF_1234_5678;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let len = (next() % 200) as usize;
        let line: Vec<u8> = (0..len)
            .map(|_| if next() % 3 == 0 { b' ' } else { b'a' })
            .collect();
        for n in [7, 10, 13] {
            let mut fields = Fields::new(&line);
            let mut got = Vec::new();
            for _ in 0..n {
                match fields.next() {
                    Some(f) => got.push(f),
                    None => break,
                }
            }
            let (want, want_rest) = reference(&line, n);
            assert_eq!(got, want, "{line:?} n={n}");
            assert_eq!(fields.rest(), want_rest, "{line:?} n={n}");
        }
    }
}

#[test]
fn find_short_matches_a_plain_search() {
    let hay: Vec<u8> = (0..64u8)
        .map(|i| b"ab /?\"\x80\xff"[usize::from(i % 8)])
        .collect();
    for start in 0..hay.len() {
        for end in start..=hay.len().min(start + 40) {
            for needle in [b' ', b'/', b'?', b'z', 0x80, 0xff, 0x7f] {
                let h = &hay[start..end];
                assert_eq!(
                    find_short(h, needle),
                    h.iter().position(|&b| b == needle),
                    "{h:?} {needle}"
                );
                for other in [b'"', b'?', 0x80] {
                    assert_eq!(
                        find_either(h, needle, other),
                        h.iter().position(|&b| b == needle || b == other),
                        "{h:?} {needle} {other}"
                    );
                }
            }
        }
    }
}

#[test]
fn captured_field_and_unescape() {
    assert_eq!(captured_field(b"", 0), Some(&b""[..]));
    assert_eq!(captured_field(b"", 1), None);
    assert_eq!(captured_field(b"|host", 0), Some(&b""[..]));
    assert_eq!(captured_field(b"|host", 1), Some(&b"host"[..]));
    assert_eq!(captured_field(b"a|b|", 2), Some(&b""[..]));
    assert_eq!(captured_field(b"a#7Cb|c", 0), Some(&b"a#7Cb"[..]));
    assert!(matches!(unescape(b"plain"), Cow::Borrowed(b"plain")));
    assert_eq!(unescape(b"#22a#7cb#7D").as_ref(), b"\"a|b}");
    assert_eq!(unescape(b"caf#C3#A9").as_ref(), "café".as_bytes());
    assert_eq!(unescape(b"#").as_ref(), b"#");
    assert_eq!(unescape(b"#2").as_ref(), b"#2");
    assert_eq!(unescape(b"#zz#41").as_ref(), b"#zzA");
}

/// Good lines of every shape, for the hostile-input tests.
fn good_lines() -> Vec<String> {
    let mut lines: Vec<String> = SAMPLES.iter().map(|(p, _)| (*p).to_owned()).collect();
    for env in ENVELOPES {
        lines.push(format!("{env}{}", SAMPLES[2].0));
    }
    lines
}

#[test]
fn truncation_at_every_byte_never_panics() {
    for line in good_lines() {
        let bytes = line.as_bytes();
        for cut in 0..=bytes.len() {
            let _ = parse_line(&bytes[..cut]);
            let _ = parse_line(&bytes[cut..]);
        }
    }
}

#[test]
fn truncated_http_lines_are_records_or_truncated() {
    // Cut anywhere after the opening quote of the request and a method+path remain: a
    // record. Cut before: the line must not pass for a record with wrong fields.
    let line = SAMPLES[2].0; // 127.0.0.1:50492 ... "GET /nosrv/x HTTP/1.1"
    let open = line.find('"').expect("quote");
    let full = record(line);
    for cut in open + 6..line.len() {
        let r = record(&line[..cut]);
        assert_eq!(r.accept_naive_ms, full.accept_naive_ms);
        assert_eq!(r.status, full.status);
        assert_eq!(r.captured_request, full.captured_request);
    }
    for cut in 0..open + 6 {
        assert!(!matches!(parse(&line[..cut]), Ok(None)), "cut {cut}");
    }
}

#[test]
fn binary_garbage_never_panics() {
    // xorshift: deterministic, no dependency.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let good = SAMPLES[2].0.as_bytes();
    let alphabet = b" :/[]{}|\"<>~+-.0123456789Nov#\n\r";
    for round in 0..20_000 {
        let len = (next() % 400) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 {
            // Mutate a good line instead, with bytes from HAProxy's own alphabet.
            buf = good.to_vec();
            for _ in 0..(next() % 8 + 1) {
                let i = (next() as usize) % buf.len();
                buf[i] = alphabet[(next() as usize) % alphabet.len()];
            }
        }
        let _ = parse_line(&buf);
    }
}

#[test]
fn megabyte_lines() {
    let big_ua = "x".repeat(1 << 20);
    let line = format!(
        r#"127.0.0.1:57568 [28/Nov/2026:04:20:12.946] fe_http be_app/app1 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 {{{big_ua}|h}} {{audio/mpeg}} "GET /big HTTP/1.1""#
    );
    let r = record(&line);
    assert_eq!(r.request.expect("request").path, b"/big");
    assert_eq!(
        captured_field(r.captured_request.expect("block"), 1),
        Some(&b"h"[..])
    );

    assert_eq!(parse(&big_ua), Err(Malformed::NoClientAddress));
    let spaces = " ".repeat(1 << 20);
    assert_eq!(parse(&spaces), Err(Malformed::Empty));
    let no_close = format!(
        "{}{{{big_ua}",
        &SAMPLES[2].0[..SAMPLES[2].0.find('{').expect("block")]
    );
    assert_eq!(parse(&no_close), Err(Malformed::Truncated));
}
