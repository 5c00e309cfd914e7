//! One HAProxy access-log line → one [`LogRecord`], without allocating.
//!
//! This is the agent's hot path: the whole pipeline has to keep up with about three million
//! lines a second on one core, so the parser works on `&[u8]`, returns slices of the line,
//! never validates the whole line as UTF-8 and never allocates. Callers that need text
//! validate (or lossily convert) only the few fields they keep.
//!
//! What it understands (see `shared/reference/FORMATS.md` §1):
//! - the default `option httplog` line with 0, 1 or 2 `{capture}` blocks (absent on
//!   `"<BADREQ>"` lines), `option httpslog` (httplog plus trailing TLS fields, ignored) and
//!   `option tcplog`;
//! - every syslog envelope HAProxy or rsyslog writes in front of it (none, `<PRI>`, `local`,
//!   `rfc3164`, `rfc5424`, `iso`, `timed`, rsyslog's traditional and Debian 12's RFC 3339
//!   file formats). The envelope's own timestamp is ignored: the `[date]` inside the payload
//!   is the one that counts;
//! - request lines cut short by the syslog length limit (no closing quote): still a record
//!   when the method and some of the path survived.
//!
//! Lines that HAProxy writes into the same stream but that are not traffic (soft-stop
//! messages, server up/down, "has no server available!", TLS handshake failures and other
//! connection-level error lines) are `Ok(None)`. Anything else is an `Err(Malformed)` whose
//! [`Malformed::as_str`] is a stable counter name, so an operator sees malformed lines as
//! numbers rather than as log spam.

use std::borrow::Cow;
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use earshot_common::time::days_from_civil;
use memchr::memchr;

/// Which of HAProxy's standard formats a line was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LineKind {
    /// `option httplog` or `option httpslog`: one line per HTTP request.
    Http,
    /// `option tcplog`: one line per TCP connection.
    Tcp,
}

/// One traffic line, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// httplog/httpslog or tcplog.
    pub kind: LineKind,
    /// The client address (`%ci`) as written: IPv6 without brackets, `::ffff:a.b.c.d` for an
    /// IPv4 client on a dual-stack bind. Only its length is checked here;
    /// [`LogRecord::client_ip`] parses it, which the agent does once per listener rather than
    /// once per line.
    pub client: &'a [u8],
    /// The `[dd/Mon/yyyy:HH:MM:SS.mmm]` date as written, as milliseconds since
    /// 1970-01-01T00:00:00 *of that wall clock*. HAProxy writes the host's local time with no
    /// zone, so this is a naive time: the caller applies the host's zone.
    pub accept_naive_ms: i64,
    /// Frontend name (`%ft`) without the trailing `~`.
    pub frontend: &'a [u8],
    /// The frontend name had the `~` suffix: the connection came over TLS.
    pub tls: bool,
    /// Backend name (`%b`); the frontend's name when no backend was chosen.
    pub backend: &'a [u8],
    /// Server name (`%s`), e.g. `app1`, `<NOSRV>`, `<STATS>`.
    pub server: &'a [u8],
    /// The duration in ms: `Ta` (5th timer) for HTTP, `Tt` (3rd timer) for TCP. `-1` when
    /// HAProxy did not know it.
    pub duration_ms: i64,
    /// The duration had a `+` prefix (`option logasap`): the line was written early and the
    /// duration and byte count are partial.
    pub logasap: bool,
    /// HTTP status (`%ST`), `-1` when no response was sent; `0` on TCP lines.
    pub status: i32,
    /// Bytes sent to the client, headers included (`%B`); a `+` prefix is accepted.
    pub bytes: u64,
    /// From the termination state on, the fields before the blocks (HTTP: `%tsc
    /// %ac/%fc/%bc/%sc/%rc %sq/%bq `; TCP: `%ts %ac/… %sq/%bq`): nothing earshot counts, so
    /// left as text (see [`LogRecord::termination`]).
    pub state_fields: &'a [u8],
    /// The contents (without braces) of the first `{...}` block, i.e. the captured request
    /// headers separated by `|`, still `#XX`-escaped (see [`captured_field`] and
    /// [`unescape`]). `None` when the line has no block (no captures configured, `<BADREQ>`
    /// lines, TCP lines). When only response headers are captured, the one block present is
    /// those: the line itself cannot tell them apart.
    pub captured_request: Option<&'a [u8]>,
    /// The request line, split; `None` on TCP lines and `"<BADREQ>"`.
    pub request: Option<Request<'a>>,
}

impl<'a> LogRecord<'a> {
    /// Termination state: 4 chars in HTTP (`%tsc`), 2 in TCP (`%ts`).
    pub fn termination(&self) -> &'a [u8] {
        self.state_fields
            .split(|&b| b == b' ')
            .next()
            .unwrap_or_default()
    }

    /// The client address, `None` when its text is not a valid IPv4 or IPv6 address (e.g.
    /// `300.0.0.1`). A `::ffff:`-mapped address stays the IPv6 address HAProxy wrote: the
    /// listener hasher canonicalises it.
    pub fn client_ip(&self) -> Option<IpAddr> {
        parse_ip(self.client)
    }
}

/// The quoted request line of an HTTP record, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a [u8],
    /// The path without the query. An absolute-form URI (HTTP/2, proxies) is reduced to its
    /// path (`https://host:port/secure` → `/secure`; no path at all → `/`). Other targets
    /// (`*`, CONNECT's `host:port`) are returned as written. On a line cut short by the
    /// syslog length limit this is whatever part of the path survived.
    pub path: &'a [u8],
    /// The query after the first `?`, without the `?`; `None` when there is no `?`.
    pub query: Option<&'a [u8]>,
    /// `host[:port]` of an absolute-form URI; `None` for origin-form (`/path`).
    pub authority: Option<&'a [u8]>,
}

/// Why a line is not a record. [`Malformed::as_str`] gives stable counter names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Malformed {
    /// Nothing but whitespace (or a syslog envelope with no message).
    #[error("empty line")]
    Empty,
    /// A custom `log-format` (the payload starts with `{`, e.g. JSON): not one of the
    /// standard httplog/httpslog/tcplog formats earshot reads.
    #[error("custom log-format line (JSON?), not httplog/tcplog")]
    CustomFormat,
    /// The payload does not start with `address:port [` and is not a known HAProxy message.
    #[error("no client address at the start of the message")]
    NoClientAddress,
    /// The client is a unix socket (`unix:N`): there is no IP to count a listener by.
    #[error("client connected over a unix socket, no IP address")]
    UnixClient,
    /// The client port does not parse, or the address is empty or longer than any address.
    /// (Other text that is not an address, such as `300.0.0.1`, is found by
    /// [`LogRecord::client_ip`]; the agent counts it under the same name when the line would
    /// form a session, and by its status like any other line otherwise.)
    #[error("client address or port does not parse")]
    BadAddress,
    /// The `[dd/Mon/yyyy:HH:MM:SS.mmm]` date does not parse.
    #[error("bad [date]")]
    BadDate,
    /// The timers are not numbers, or neither 3 (tcplog) nor 5 (httplog) of them.
    #[error("bad timers (expected TR/Tw/Tc/Tr/Ta or Tw/Tc/Tt)")]
    BadTimers,
    /// The HTTP status is not a number.
    #[error("bad status code")]
    BadStatus,
    /// The byte count is not a number.
    #[error("bad byte count")]
    BadBytes,
    /// A positional field has the wrong shape (e.g. `backend/server` without `/`).
    #[error("unexpected field layout")]
    BadFields,
    /// The quoted request is neither `METHOD URI ...` nor `<BADREQ>`.
    #[error("bad request line")]
    BadRequest,
    /// The line ends before the fields a record needs (cut by a length limit or a crash).
    #[error("line truncated")]
    Truncated,
}

impl Malformed {
    /// Every reason, for registering counters up front.
    pub const ALL: [Malformed; 12] = [
        Malformed::Empty,
        Malformed::CustomFormat,
        Malformed::NoClientAddress,
        Malformed::UnixClient,
        Malformed::BadAddress,
        Malformed::BadDate,
        Malformed::BadTimers,
        Malformed::BadStatus,
        Malformed::BadBytes,
        Malformed::BadFields,
        Malformed::BadRequest,
        Malformed::Truncated,
    ];

    /// A stable snake_case name for metrics and counters. Never change one: dashboards and
    /// alerts key on them.
    pub fn as_str(&self) -> &'static str {
        match self {
            Malformed::Empty => "empty",
            Malformed::CustomFormat => "custom_format",
            Malformed::NoClientAddress => "no_client_address",
            Malformed::UnixClient => "unix_client",
            Malformed::BadAddress => "bad_address",
            Malformed::BadDate => "bad_date",
            Malformed::BadTimers => "bad_timers",
            Malformed::BadStatus => "bad_status",
            Malformed::BadBytes => "bad_bytes",
            Malformed::BadFields => "bad_fields",
            Malformed::BadRequest => "bad_request",
            Malformed::Truncated => "truncated",
        }
    }
}

/// Messages HAProxy logs into the same stream that are not traffic. Matched at the start of
/// the payload (after the syslog envelope).
const NON_TRAFFIC_PREFIXES: &[&[u8]] = &[
    b"Proxy ",            // "Proxy fe stopped (...)", "Proxy X started."
    b"Server ",           // "Server be/s is DOWN, reason: ...", "... is UP", maintenance
    b"Backup Server ",    // same for backup servers
    b"backend ",          // "backend X has no server available!"
    b"Health check for ", // check results (log-health-checks)
    b"Agent check for ",  // agent check results
    b"Stopping ",         // "Stopping frontend X in N ms."
    b"Pausing ",          // "Pausing frontend X."
    b"Resuming ",         // "Resuming frontend X."
    b"Enabling ",         // runtime API enable/disable messages
    b"Disabling ",        //
    b"Connect from ",     // pre-1.x "Connect from" lines of `option logasap`-less TCP
    b"[NOTICE]",          // master/worker messages when stderr shares the stream
    b"[WARNING]",         //
    b"[ALERT]",           //
];

/// Parses one line (with or without a trailing `\n`/`\r\n`).
///
/// `Ok(Some(_))` for a traffic line, `Ok(None)` for a recognised HAProxy line that is not
/// traffic (see the module docs), `Err` for everything else. Never panics, whatever the
/// input.
#[inline(always)]
pub fn parse_line(line: &[u8]) -> Result<Option<LogRecord<'_>>, Malformed> {
    let line = trim_line_end(line);
    let payload = trim_leading_spaces(strip_envelope(line));
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(Malformed::Empty);
    }
    if payload[0] == b'{' {
        return Err(Malformed::CustomFormat);
    }

    // `%ci:%cp [` — the address token is followed by the date.
    let Some(sp) = find_short(payload, b' ') else {
        return non_traffic(payload);
    };
    let addr = &payload[..sp];
    let rest = &payload[sp + 1..];
    if rest.first() != Some(&b'[') {
        return non_traffic(payload);
    }
    let Some(colon) = addr.iter().rposition(|&b| b == b':') else {
        return non_traffic(payload);
    };
    let ip = &addr[..colon];
    parse_port(&addr[colon + 1..]).ok_or(Malformed::BadAddress)?;
    if ip == b"unix" {
        return Err(Malformed::UnixClient);
    }
    if !address_shaped(ip) {
        return Err(Malformed::BadAddress);
    }
    let client = ip;

    // `[dd/Mon/yyyy:HH:MM:SS.mmm] ` is 27 bytes with its brackets and the space.
    if rest.len() < 27 {
        return Err(Malformed::Truncated);
    }
    if rest[25] != b']' || rest[26] != b' ' {
        return Err(Malformed::BadDate);
    }
    let accept_naive_ms = parse_date(&rest[1..25]).ok_or(Malformed::BadDate)?;
    let mut cur = Fields::new(&rest[27..]);

    let frontend = cur.next().ok_or(Malformed::Truncated)?;
    // The short connection-error line: `... [date] fe_https/1: SSL handshake failure`.
    if frontend.last() == Some(&b':') {
        return Ok(None);
    }
    let (frontend, tls) = match frontend.split_last() {
        Some((b'~', name)) => (name, true),
        _ => (frontend, false),
    };

    let be_srv = cur.next().ok_or(Malformed::Truncated)?;
    let slash = find_short(be_srv, b'/').ok_or(Malformed::BadFields)?;
    let backend = &be_srv[..slash];
    let server = &be_srv[slash + 1..];

    let timers = cur.next().ok_or(Malformed::Truncated)?;
    let (count, duration_ms, logasap) = parse_timers(timers).ok_or(Malformed::BadTimers)?;
    let kind = match count {
        5 => LineKind::Http,
        3 => LineKind::Tcp,
        _ => return Err(Malformed::BadTimers),
    };

    if kind == LineKind::Tcp {
        // %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
        let bytes = parse_bytes(cur.next().ok_or(Malformed::Truncated)?)?;
        let state_fields = cur.rest();
        let _termination = cur.next().ok_or(Malformed::Truncated)?;
        let _conns = cur.next().ok_or(Malformed::Truncated)?;
        let _queues = cur.next().ok_or(Malformed::Truncated)?;
        return Ok(Some(LogRecord {
            kind,
            client,
            accept_naive_ms,
            frontend,
            tls,
            backend,
            server,
            duration_ms,
            logasap,
            status: 0,
            bytes,
            state_fields,
            captured_request: None,
            request: None,
        }));
    }

    // %ST %B %CC %CS %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq, then blocks and the quoted request.
    let status = parse_status(cur.next().ok_or(Malformed::Truncated)?)?;
    let bytes = parse_bytes(cur.next().ok_or(Malformed::Truncated)?)?;
    let _cookie_req = cur.next().ok_or(Malformed::Truncated)?;
    let _cookie_resp = cur.next().ok_or(Malformed::Truncated)?;
    // The termination state, connection counts and queues hold no `{` and no `"`: one search
    // for what comes after them (a block or the request) skips them.
    let rest = cur.rest();
    let blocks = find_either(rest, b'{', b'"').ok_or(Malformed::Truncated)?;
    let (state_fields, tail) = rest.split_at(blocks);

    // The first block is the captured request headers. `{`, `|`, `}` and `"` inside captures
    // are #XX-escaped, so the first `}` closes it and the first `"` after the blocks opens
    // the request line.
    let (captured_request, after_blocks) = match tail.first() {
        Some(b'{') => {
            let close = memchr(b'}', tail).ok_or(Malformed::Truncated)?;
            (Some(&tail[1..close]), &tail[close + 1..])
        }
        _ => (None, tail),
    };
    let open = find_short(after_blocks, b'"').ok_or(Malformed::Truncated)?;
    let quoted = &after_blocks[open + 1..];
    let request = if quoted.starts_with(b"<BADREQ>\"") {
        None
    } else {
        Some(parse_request(quoted)?)
    };

    Ok(Some(LogRecord {
        kind,
        client,
        accept_naive_ms,
        frontend,
        tls,
        backend,
        server,
        duration_ms,
        logasap,
        status,
        bytes,
        state_fields,
        captured_request,
        request,
    }))
}

/// The `index`-th (from 0) `|`-separated field of a capture block, still escaped. A `|`
/// inside a captured value is logged as `#7C`, so a plain split is exact. `None` when the
/// block has fewer fields; `Some(b"")` for a header that was absent.
pub fn captured_field(block: &[u8], index: usize) -> Option<&[u8]> {
    let mut rest = block;
    for _ in 0..index {
        let bar = memchr(b'|', rest)?;
        rest = &rest[bar + 1..];
    }
    Some(match memchr(b'|', rest) {
        Some(bar) => &rest[..bar],
        None => rest,
    })
}

/// Undoes HAProxy's `#XX` escaping of captures and the request line (`#22` → `"`). Borrows
/// when there is nothing to undo. A `#` not followed by two hex digits is kept as is (HAProxy
/// always escapes `#` itself, so that only happens on a truncated capture).
pub fn unescape(field: &[u8]) -> Cow<'_, [u8]> {
    let Some(first) = memchr(b'#', field) else {
        return Cow::Borrowed(field);
    };
    let mut out = Vec::with_capacity(field.len());
    out.extend_from_slice(&field[..first]);
    let mut i = first;
    while i < field.len() {
        let b = field[i];
        if b == b'#'
            && let (Some(hi), Some(lo)) = (
                field.get(i + 1).and_then(|&c| hex_value(c)),
                field.get(i + 2).and_then(|&c| hex_value(c)),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// `Ok(None)` for a known non-traffic message, `Err(NoClientAddress)` otherwise.
fn non_traffic(payload: &[u8]) -> Result<Option<LogRecord<'_>>, Malformed> {
    if NON_TRAFFIC_PREFIXES.iter().any(|p| payload.starts_with(p)) {
        Ok(None)
    } else {
        Err(Malformed::NoClientAddress)
    }
}

fn trim_line_end(mut line: &[u8]) -> &[u8] {
    while let Some((b'\n' | b'\r', head)) = line.split_last() {
        line = head;
    }
    line
}

fn trim_leading_spaces(mut s: &[u8]) -> &[u8] {
    while let Some((b' ', tail)) = s.split_first() {
        s = tail;
    }
    s
}

/// Strips whatever syslog envelope precedes the HAProxy message (FORMATS.md §1.6). Works by
/// shape, not by configuration, because one log file can mix sources. When nothing matches,
/// the line is returned unchanged (raw / stdout format).
fn strip_envelope(line: &[u8]) -> &[u8] {
    let mut s = line;
    let mut had_pri = false;
    // `<PRI>`: 1 to 3 digits.
    if s.first() == Some(&b'<') {
        let digits = s[1..]
            .iter()
            .take(4)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if (1..=3).contains(&digits) && s.get(1 + digits) == Some(&b'>') {
            s = &s[digits + 2..];
            had_pri = true;
        }
    }
    // RFC 5424: `1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG`.
    if had_pri && s.starts_with(b"1 ") {
        return skip_rfc5424_header(&s[2..]).unwrap_or(s);
    }
    if is_bsd_timestamp(s) {
        return skip_host_and_tag(&s[16..]);
    }
    if is_iso_timestamp(s) {
        return match find_short(s, b' ') {
            Some(sp) => skip_host_and_tag(&s[sp + 1..]),
            None => &s[s.len()..],
        };
    }
    s
}

/// `Mmm dd HH:MM:SS ` (day space-padded), 16 bytes.
fn is_bsd_timestamp(s: &[u8]) -> bool {
    s.len() >= 16
        && s[0].is_ascii_uppercase()
        && s[1].is_ascii_lowercase()
        && s[2].is_ascii_lowercase()
        && s[3] == b' '
        && (s[4] == b' ' || s[4].is_ascii_digit())
        && s[5].is_ascii_digit()
        && s[6] == b' '
        && s[9] == b':'
        && s[12] == b':'
        && s[15] == b' '
}

/// `yyyy-mm-ddT...` (RFC 3339 as HAProxy's iso/timed formats and Debian's rsyslog write).
fn is_iso_timestamp(s: &[u8]) -> bool {
    s.len() >= 11
        && s[..4].iter().all(u8::is_ascii_digit)
        && s[4] == b'-'
        && s[7] == b'-'
        && s[10] == b'T'
}

/// After a syslog timestamp: `HOST TAG: msg` (rsyslog files, rfc3164), `TAG: msg` (HAProxy's
/// `local` format) or just `msg` (HAProxy's `iso` and `timed` formats). A tag ends with `:`;
/// the first token of a HAProxy message never does (`ip:port`, `Proxy`, `[NOTICE]`...), and
/// its second token is `[date]` or a name, which does not either.
fn skip_host_and_tag(s: &[u8]) -> &[u8] {
    let Some(sp1) = find_short(s, b' ') else {
        return s;
    };
    if is_tag(&s[..sp1]) {
        return &s[sp1 + 1..];
    }
    let rest = &s[sp1 + 1..];
    match find_short(rest, b' ') {
        Some(sp2) if is_tag(&rest[..sp2]) => &rest[sp2 + 1..],
        _ => s,
    }
}

/// A syslog tag: `haproxy[1234]:` or `haproxy:`. The first-byte check keeps a JSON payload's
/// `{"client_ip":` from passing for one.
fn is_tag(token: &[u8]) -> bool {
    token.len() >= 2
        && token[token.len() - 1] == b':'
        && (token[0].is_ascii_alphanumeric() || matches!(token[0], b'_' | b'-' | b'.' | b'/'))
}

/// Skips TIMESTAMP HOSTNAME APP-NAME PROCID MSGID and the structured data (`-` or one or
/// more `[...]` elements, in which `\]` is an escaped bracket). `None` if the header is
/// incomplete.
fn skip_rfc5424_header(s: &[u8]) -> Option<&[u8]> {
    let mut s = s;
    for _ in 0..5 {
        let sp = find_short(s, b' ')?;
        s = &s[sp + 1..];
    }
    if s.first() == Some(&b'[') {
        let mut i = 0;
        while s.get(i) == Some(&b'[') {
            i += 1;
            loop {
                match s.get(i)? {
                    b'\\' => i += 2,
                    b']' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
        }
        match s.get(i) {
            Some(b' ') => Some(&s[i + 1..]),
            None => Some(&s[i..]),
            Some(_) => None,
        }
    } else {
        let sp = find_short(s, b' ')?;
        Some(&s[sp + 1..])
    }
}

/// First `needle`, testing 8 bytes at a time in a `u64` (SWAR), for spans expected to be
/// short (an address, a URI part, an envelope token), where memchr's dispatch and vector
/// setup cost more than they save. The capture block, which runs to hundreds of bytes, uses
/// memchr.
#[inline]
fn find_short(haystack: &[u8], needle: u8) -> Option<usize> {
    let pattern = LO * u64::from(needle);
    find_word(haystack, |w| zero_bytes(w ^ pattern), |b| b == needle)
}

/// First `a` or `b`, a word at a time like [`find_short`].
#[inline]
fn find_either(haystack: &[u8], a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    find_word(
        haystack,
        |w| zero_bytes(w ^ pa) | zero_bytes(w ^ pb),
        |c| c == a || c == b,
    )
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each zero byte of `x` set. Borrows can only flag bytes above a real zero,
/// so the lowest flagged byte is exact (which is all the searches use).
#[inline(always)]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// The first byte that `flags` marks in its 8-byte word (little-endian), or that `matches`
/// accepts among the last bytes that do not fill a word.
#[inline(always)]
fn find_word(
    haystack: &[u8],
    flags: impl Fn(u64) -> u64,
    matches: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut chunks = haystack.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let found = flags(u64::from_le_bytes(bytes));
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| matches(b))
        .map(|p| base + p)
}

/// Space-separated fields, left to right, each found when asked for: the fields are short,
/// so a word-at-a-time search per field costs less than splitting the line up front.
struct Fields<'a> {
    s: &'a [u8],
    start: usize,
}

impl<'a> Fields<'a> {
    #[inline]
    fn new(s: &'a [u8]) -> Self {
        Fields { s, start: 0 }
    }

    /// The next field; `None` at the end of the line.
    #[inline(always)]
    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.s.get(self.start..).filter(|r| !r.is_empty())?;
        let len = find_short(rest, b' ').unwrap_or(rest.len());
        self.start += len + 1;
        Some(&rest[..len])
    }

    /// Everything after the fields returned so far.
    fn rest(&self) -> &'a [u8] {
        self.s.get(self.start..).unwrap_or(&[])
    }
}

#[inline]
fn parse_port(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 {
        return None;
    }
    let mut n: u32 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u32::from(b - b'0');
    }
    u16::try_from(n).ok()
}

/// 1 to 45 bytes: the longest IPv6 text, with an IPv4 tail, is 45. What the bytes are is
/// [`LogRecord::client_ip`]'s to check, once per listener.
#[inline]
fn address_shaped(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= 45
}

/// An address as HAProxy writes `%ci` (see [`LogRecord::client_ip`]).
#[inline]
pub fn parse_ip(s: &[u8]) -> Option<IpAddr> {
    if let Some(v4) = parse_ipv4(s) {
        return Some(IpAddr::V4(v4));
    }
    parse_ipv6(s).map(IpAddr::V6)
}

/// RFC 4291 text form (`::` once, an optional dotted-quad tail), without going through
/// `str`: std's parser costs about ten times more, and IPv6 is a large share of listeners.
fn parse_ipv6(s: &[u8]) -> Option<Ipv6Addr> {
    let mut groups = [0u16; 8];
    let mut n = 0;
    let mut gap: Option<usize> = None;
    let mut i = 0;
    if s.starts_with(b"::") {
        gap = Some(0);
        i = 2;
    }
    while i < s.len() {
        let token_end = i + find_short(&s[i..], b':').unwrap_or(s.len() - i);
        let token = &s[i..token_end];
        if token_end == s.len() && find_short(token, b'.').is_some() {
            // Dotted IPv4 in the last two groups (`::ffff:192.0.2.1`).
            let v4 = parse_ipv4(token)?.octets();
            if n > 6 {
                return None;
            }
            groups[n] = u16::from_be_bytes([v4[0], v4[1]]);
            groups[n + 1] = u16::from_be_bytes([v4[2], v4[3]]);
            n += 2;
            i = token_end;
            break;
        }
        if token.is_empty() || token.len() > 4 || n == 8 {
            return None;
        }
        let mut value: u16 = 0;
        for &b in token {
            value = value << 4 | u16::from(hex_value(b)?);
        }
        groups[n] = value;
        n += 1;
        i = token_end;
        if i == s.len() {
            break;
        }
        // At a ':'. A second one right after is the gap.
        i += 1;
        if s.get(i) == Some(&b':') {
            if gap.is_some() {
                return None;
            }
            gap = Some(n);
            i += 1;
        } else if i == s.len() {
            return None; // a single trailing ':'
        }
    }
    if i != s.len() {
        return None;
    }
    match gap {
        Some(at) if n < 8 => {
            let tail = n - at;
            groups.copy_within(at..n, 8 - tail);
            groups[at..8 - tail].fill(0);
        }
        None if n == 8 => {}
        _ => return None,
    }
    Some(Ipv6Addr::from(groups))
}

/// Dotted-quad IPv4, the common case, without going through `str`.
#[inline]
fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut part = 0;
    let mut value: u32 = 0;
    let mut digits = 0;
    for &b in s {
        match b {
            b'0'..=b'9' => {
                value = value * 10 + u32::from(b - b'0');
                digits += 1;
                if digits > 3 || value > 255 {
                    return None;
                }
            }
            b'.' => {
                if digits == 0 || part == 3 {
                    return None;
                }
                octets[part] = value as u8;
                part += 1;
                value = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if part != 3 || digits == 0 {
        return None;
    }
    octets[3] = value as u8;
    Some(Ipv4Addr::from(octets))
}

thread_local! {
    /// The last `dd/Mon/yyyy:` prefix seen and its day number: consecutive lines nearly
    /// always share the day, so the calendar arithmetic runs about once a day per thread.
    /// Seeded with a valid prefix so that no unvalidated input can ever hit the cache.
    static LAST_DAY: Cell<([u8; 12], i64)> = const { Cell::new((*b"01/Jan/1970:", 0)) };
}

/// `dd/Mon/yyyy:HH:MM:SS.mmm` → naive ms since the epoch of that wall clock.
#[inline(always)]
fn parse_date(d: &[u8]) -> Option<i64> {
    if d.len() != 24 {
        return None;
    }
    let prefix: [u8; 12] = d[..12].try_into().ok()?;
    let (cached_prefix, cached_day) = LAST_DAY.get();
    let day = if cached_prefix == prefix {
        cached_day
    } else {
        let day = parse_day(&prefix)?;
        LAST_DAY.set((prefix, day));
        day
    };
    if d[14] != b':' || d[17] != b':' || d[20] != b'.' {
        return None;
    }
    let hour = two_digits(d[12], d[13])?;
    let minute = two_digits(d[15], d[16])?;
    let second = two_digits(d[18], d[19])?;
    let milli = i64::from(two_digits(d[21], d[22])?) * 10 + i64::from(digit(d[23])?);
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(
        day * 86_400_000
            + i64::from(hour) * 3_600_000
            + i64::from(minute) * 60_000
            + i64::from(second) * 1_000
            + milli,
    )
}

/// `dd/Mon/yyyy:` → days since 1970-01-01.
fn parse_day(p: &[u8; 12]) -> Option<i64> {
    if p[2] != b'/' || p[6] != b'/' || p[11] != b':' {
        return None;
    }
    let day = two_digits(p[0], p[1])?;
    let month = match &p[3..6] {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    };
    let year = i64::from(two_digits(p[7], p[8])?) * 100 + i64::from(two_digits(p[9], p[10])?);
    if day == 0 || day > 31 {
        return None;
    }
    Some(days_from_civil(year, month, day))
}

fn digit(b: u8) -> Option<u32> {
    b.is_ascii_digit().then(|| u32::from(b - b'0'))
}

fn two_digits(a: u8, b: u8) -> Option<u32> {
    Some(digit(a)? * 10 + digit(b)?)
}

/// Slash-separated timers, each `-1`, `N` or `+N`, in one pass. Returns (count, last value,
/// last had `+`); `None` on anything else or more than 5 timers.
#[inline(always)]
fn parse_timers(s: &[u8]) -> Option<(usize, i64, bool)> {
    let mut count = 1;
    let mut value: i64 = 0;
    let mut digits = 0;
    let mut neg = false;
    let mut plus = false;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d < 10 {
            // Wrapping: a value of more than 18 digits is refused below, before it is used.
            value = value.wrapping_mul(10).wrapping_add(i64::from(d));
            digits += 1;
            continue;
        }
        match b {
            b'/' if digits > 0 && digits <= 18 && count < 5 => {
                count += 1;
                value = 0;
                digits = 0;
                neg = false;
                plus = false;
            }
            b'-' if digits == 0 && !neg && !plus => neg = true,
            b'+' if digits == 0 && !neg && !plus => plus = true,
            _ => return None,
        }
    }
    if digits == 0 || digits > 18 {
        return None;
    }
    Some((count, if neg { -value } else { value }, plus))
}

/// `-N`, `N` or `+N` (at most 18 digits, so it cannot overflow). The flag says a `+` was there.
#[inline]
fn parse_signed(s: &[u8]) -> Option<(i64, bool)> {
    let (neg, plus, digits) = match s.split_first()? {
        (b'-', tail) => (true, false, tail),
        (b'+', tail) => (false, true, tail),
        _ => (false, false, s),
    };
    let value = parse_unsigned(digits)?;
    let value = i64::try_from(value).ok()?;
    Some((if neg { -value } else { value }, plus))
}

#[inline]
fn parse_unsigned(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

#[inline]
fn parse_status(s: &[u8]) -> Result<i32, Malformed> {
    match parse_signed(s) {
        Some((v, false)) if (-1..=999).contains(&v) => Ok(v as i32),
        _ => Err(Malformed::BadStatus),
    }
}

#[inline]
fn parse_bytes(s: &[u8]) -> Result<u64, Malformed> {
    let digits = s.strip_prefix(b"+").unwrap_or(s);
    parse_unsigned(digits).ok_or(Malformed::BadBytes)
}

/// `METHOD URI [VERSION]"`, from just after the opening quote: only the method and the URI
/// are looked at, so the search stops at the URI's end. A request line cut short by the
/// syslog length limit (no closing quote) still counts when a method and at least one byte
/// of the URI survived.
#[inline(always)]
fn parse_request(quoted: &[u8]) -> Result<Request<'_>, Malformed> {
    // A method and a URI contain neither spaces nor quotes (HAProxy writes `"` as `#22`).
    let missing = || {
        if memchr(b'"', quoted).is_some() {
            Malformed::BadRequest
        } else {
            Malformed::Truncated
        }
    };
    let sp = match find_either(quoted, b' ', b'"') {
        Some(sp) if quoted[sp] == b' ' => sp,
        _ => return Err(missing()),
    };
    let method = &quoted[..sp];
    let after = &quoted[sp + 1..];
    let uri = match find_either(after, b' ', b'"') {
        Some(end) => &after[..end],
        None => after,
    };
    if method.is_empty() || uri.is_empty() {
        return Err(missing());
    }
    let (target, query) = match find_short(uri, b'?') {
        Some(q) => (&uri[..q], Some(&uri[q + 1..])),
        None => (uri, None),
    };
    if target.first() == Some(&b'/') {
        return Ok(Request {
            method,
            path: target,
            query,
            authority: None,
        });
    }
    // Absolute form `scheme://authority[/path]` (HTTP/2 requests, forward proxies).
    if let Some(scheme_end) = find_scheme_separator(target) {
        let hier = &target[scheme_end + 3..];
        let (authority, path): (&[u8], &[u8]) = match memchr(b'/', hier) {
            Some(slash) => (&hier[..slash], &hier[slash..]),
            None => (hier, b"/"),
        };
        return Ok(Request {
            method,
            path,
            query,
            authority: Some(authority),
        });
    }
    Ok(Request {
        method,
        path: target,
        query,
        authority: None,
    })
}

/// Position of `://` after a plausible scheme (letters, digits, `+-.`), if any.
fn find_scheme_separator(s: &[u8]) -> Option<usize> {
    let colon = s.iter().take(16).position(|&b| b == b':')?;
    let scheme = &s[..colon];
    let scheme_ok = !scheme.is_empty()
        && scheme[0].is_ascii_alphabetic()
        && scheme
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    (scheme_ok && s[colon..].starts_with(b"://")).then_some(colon)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How a captured sample payload must come out.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Class {
        Http,
        Tcp,
        NotTraffic,
        Custom,
    }

    /// Every distinct HAProxy message in `shared/reference/samples/haproxy-2.6/` and
    /// `haproxy-3.2/` (captured 2026-11-28 from HAProxy 2.6.12 and 3.2.0, see FORMATS.md
    /// Appendix A), without its syslog envelope. The sample files hold these under the
    /// envelopes in [`ENVELOPES`].
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
        // The captured files live in the shared reference tree beside the repository. When it
        // is not there (a bare clone), SAMPLES above still covers every distinct line.
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/samples");
        if !dir.is_dir() {
            eprintln!(
                "{} not found: skipping the on-disk sample check",
                dir.display()
            );
            return;
        }
        let mut checked = 0;
        for version in ["haproxy-2.6", "haproxy-3.2"] {
            let Ok(entries) = std::fs::read_dir(dir.join(version)) else {
                continue;
            };
            for entry in entries.flatten() {
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
}
