//! Bytes exactly as HAProxy (default `option httplog`, two captured request headers) and
//! Debian 12's rsyslog write them. Hand-rolled number and date formatting: this is the inner
//! loop of the 5-million-line benchmark file.

pub const MINUTE_MS: i64 = 60_000;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), proleptic Gregorian (Hinnant).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

struct Civil {
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    ms: u32,
}

fn civil(ms: i64) -> Civil {
    let (y, mo, d) = civil_from_days(ms.div_euclid(DAY_MS));
    let tod = ms.rem_euclid(DAY_MS);
    Civil {
        y,
        mo,
        d,
        h: (tod / HOUR_MS) as u32,
        mi: (tod / MINUTE_MS % 60) as u32,
        s: (tod / 1000 % 60) as u32,
        ms: (tod % 1000) as u32,
    }
}

fn push_digits(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let len = (buf.len() - i).max(width);
    out.extend_from_slice(&buf[buf.len() - len..]);
}

pub fn push_u64(out: &mut Vec<u8>, v: u64) {
    push_digits(out, v, 1);
}

pub fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_digits(out, v.unsigned_abs(), 1);
}

/// `28/Nov/2026:04:20:12.946` for a wall-clock instant already shifted to local time.
pub fn push_accept_date(out: &mut Vec<u8>, local_ms: i64) {
    let c = civil(local_ms);
    push_digits(out, u64::from(c.d), 2);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(c.mo - 1) as usize]);
    out.push(b'/');
    push_digits(out, c.y as u64, 4);
    out.push(b':');
    push_digits(out, u64::from(c.h), 2);
    out.push(b':');
    push_digits(out, u64::from(c.mi), 2);
    out.push(b':');
    push_digits(out, u64::from(c.s), 2);
    out.push(b'.');
    push_digits(out, u64::from(c.ms), 3);
}

/// `2026-11-28T04:27:38.839063+00:00`: `utc_ms` plus `micros` (0–999) shown at `offset_min`.
pub fn push_rfc3339_micros(out: &mut Vec<u8>, utc_ms: i64, micros: u32, offset_min: i32) {
    let c = civil(utc_ms + i64::from(offset_min) * MINUTE_MS);
    push_digits(out, c.y as u64, 4);
    out.push(b'-');
    push_digits(out, u64::from(c.mo), 2);
    out.push(b'-');
    push_digits(out, u64::from(c.d), 2);
    out.push(b'T');
    push_digits(out, u64::from(c.h), 2);
    out.push(b':');
    push_digits(out, u64::from(c.mi), 2);
    out.push(b':');
    push_digits(out, u64::from(c.s), 2);
    out.push(b'.');
    push_digits(out, u64::from(c.ms) * 1000 + u64::from(micros), 6);
    push_offset(out, offset_min);
}

/// `+05:30`, `-01:00`, `+00:00`.
pub fn push_offset(out: &mut Vec<u8>, offset_min: i32) {
    out.push(if offset_min < 0 { b'-' } else { b'+' });
    let a = offset_min.unsigned_abs();
    push_digits(out, u64::from(a / 60), 2);
    out.push(b':');
    push_digits(out, u64::from(a % 60), 2);
}

/// HAProxy's escaping of captured header values: bytes outside 32..=126 and `# " { | }` become
/// `#` and two upper-case hex digits. Spaces stay.
pub fn push_capture(out: &mut Vec<u8>, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in value.as_bytes() {
        if !(32..=126).contains(&b) || matches!(b, b'#' | b'"' | b'{' | b'|' | b'}') {
            out.extend_from_slice(&[b'#', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// One default-httplog line's fields.
pub struct HttpLine<'a> {
    pub client_ip: &'a str,
    pub client_port: u16,
    /// UTC ms of the request's first byte.
    pub accept_ms: i64,
    pub frontend: &'a str,
    pub backend: &'a str,
    pub server: &'a str,
    /// TR/Tw/Tc/Tr/Ta, `-1` for "never happened".
    pub timers: [i64; 5],
    pub status: i32,
    pub bytes: u64,
    pub termination: &'a str,
    pub conns: [u32; 5],
    pub queues: [u32; 2],
    /// (User-Agent, Referer) as sent; `None` on `<BADREQ>` lines, where HAProxy omits the block.
    pub captures: Option<(&'a str, &'a str)>,
    /// The request line without quotes, e.g. `GET /radio001/live.mp3 HTTP/1.1` or `<BADREQ>`.
    pub request: &'a str,
}

impl HttpLine<'_> {
    /// Appends the line (without the newline); the date is written at `offset_min` from UTC.
    pub fn push(&self, out: &mut Vec<u8>, offset_min: i32) {
        out.extend_from_slice(self.client_ip.as_bytes());
        out.push(b':');
        push_u64(out, u64::from(self.client_port));
        out.extend_from_slice(b" [");
        push_accept_date(out, self.accept_ms + i64::from(offset_min) * MINUTE_MS);
        out.extend_from_slice(b"] ");
        out.extend_from_slice(self.frontend.as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.backend.as_bytes());
        out.push(b'/');
        out.extend_from_slice(self.server.as_bytes());
        out.push(b' ');
        for (i, t) in self.timers.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            push_i64(out, *t);
        }
        out.push(b' ');
        push_i64(out, i64::from(self.status));
        out.push(b' ');
        push_u64(out, self.bytes);
        out.extend_from_slice(b" - - ");
        out.extend_from_slice(self.termination.as_bytes());
        out.push(b' ');
        for (i, c) in self.conns.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            push_u64(out, u64::from(*c));
        }
        out.push(b' ');
        push_u64(out, u64::from(self.queues[0]));
        out.push(b'/');
        push_u64(out, u64::from(self.queues[1]));
        out.push(b' ');
        if let Some((ua, referer)) = self.captures {
            out.push(b'{');
            push_capture(out, ua);
            out.push(b'|');
            push_capture(out, referer);
            out.extend_from_slice(b"} ");
        }
        out.push(b'"');
        out.extend_from_slice(self.request.as_bytes());
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_agree_with_jiff() {
        for &ms in &[
            0i64,
            1_795_839_612_946,
            951_782_400_000,
            4_107_542_399_999,
            1_709_164_800_123,
        ] {
            let ts = jiff::Timestamp::from_millisecond(ms).unwrap();
            let z = ts.to_zoned(jiff::tz::TimeZone::UTC);
            let want = z.strftime("%d/%b/%Y:%H:%M:%S%.3f").to_string();
            let mut got = Vec::new();
            push_accept_date(&mut got, ms);
            assert_eq!(String::from_utf8(got).unwrap(), want);
            let mut got = Vec::new();
            push_rfc3339_micros(&mut got, ms, 63, 330);
            let z = ts.to_zoned(jiff::tz::TimeZone::fixed(jiff::tz::offset(0)));
            let local = z.datetime() + jiff::SignedDuration::from_mins(330);
            let want = format!("{}063+05:30", local.strftime("%Y-%m-%dT%H:%M:%S%.3f"));
            assert_eq!(String::from_utf8(got).unwrap(), want);
        }
    }

    #[test]
    fn captured_line_matches_haproxy() {
        let line = HttpLine {
            client_ip: "127.0.0.1",
            client_port: 57568,
            accept_ms: 1_795_839_612_946, // 2026-11-28T04:20:12.946Z
            frontend: "fe_http",
            backend: "be_app",
            server: "app1",
            timers: [0, 0, 0, 7, 8220],
            status: 200,
            bytes: 42121,
            termination: "CD--",
            conns: [3, 3, 2, 2, 0],
            queues: [0, 0],
            captures: Some(("VLC/3.0.18 LibVLC/3.0.18", "127.0.0.1:18080")),
            request: "GET /stream/radio1.mp3 HTTP/1.1",
        };
        let mut out = Vec::new();
        line.push(&mut out, 0);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "127.0.0.1:57568 [28/Nov/2026:04:20:12.946] fe_http be_app/app1 0/0/0/7/8220 200 42121 - - CD-- 3/3/2/2/0 0/0 {VLC/3.0.18 LibVLC/3.0.18|127.0.0.1:18080} \"GET /stream/radio1.mp3 HTTP/1.1\""
        );
    }

    #[test]
    fn capture_escaping_matches_haproxy() {
        let mut out = Vec::new();
        push_capture(
            &mut out,
            "Mozilla/5.0 (X11; Linux x86_64) \"quoted\" {brace} |pipe| #hash K\u{f6}ln",
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Mozilla/5.0 (X11; Linux x86_64) #22quoted#22 #7Bbrace#7D #7Cpipe#7C #23hash K#C3#B6ln"
        );
    }
}
