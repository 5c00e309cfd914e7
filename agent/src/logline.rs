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
mod tests;
