//! HAProxy stick tables read over the runtime API (`show table`), turned into listener counts.
//!
//! Why two ways of counting: a progressive listener holds one connection, so the sum of
//! `conn_cur` is the head-count (entries themselves linger until `expire`, and counting them
//! would count people who left). An HLS listener makes short requests, so `conn_cur` is near
//! zero; there an entry of a table keyed by listener, with an `expire` of a few segment
//! durations, means "fetched within that window", and the entries are the count.
//!
//! The parsing is pure (`split_outputs`, `parse_table_dump`, `unescape_key`); the
//! [`StickTableReader`] is the IO around it: one connection per batch of commands, all the
//! tables' commands on as few lines as the CLI's buffer allows, read to EOF.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use earshot_common::Protocol;
use earshot_common::wire::{LiveEntry, LiveSample};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::config::{CountMode, HaproxyLiveConfig, KeyMapper, LiveConfigError, SocketAddress};
use super::{LiveError, LiveStats, OutageLog, now_ms};

/// The longest command line sent on one connection. HAProxy reads a CLI line into a buffer of
/// `tune.bufsize` (16 KB by default, less a reserve); lines past it are refused, so stay well
/// under and open another connection for the rest.
pub const MAX_COMMAND_LINE: usize = 8000;

/// The most a single answer may hold before the poll is abandoned (a runaway table).
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// `# table: <name>, type: <type>, size:<n>, used:<n>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableHeader<'a> {
    pub name: &'a str,
    pub key_type: &'a str,
    pub size: u64,
    /// Every entry, idle ones waiting for expiry included.
    pub used: u64,
}

/// One entry line: `0x…: key=<key> use=<n> exp=<ms> [shard=<n>] <data>=<value> …`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StickEntry<'a> {
    /// Unescaped (`a\ b\=c` → `a b=c`).
    pub key: Cow<'a, str>,
    pub use_count: u64,
    pub exp_ms: u64,
    /// None when the table does not store `conn_cur`.
    pub conn_cur: Option<u64>,
}

/// What one `show table <name>` command answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TableDump<'a> {
    Entries {
        header: TableHeader<'a>,
        entries: Vec<StickEntry<'a>>,
        /// Lines that were neither a header nor an entry.
        malformed: usize,
    },
    /// `No such table`.
    NoSuchTable,
    /// The socket's level is below `operator`: the header, then
    /// `# contents not dumped due to insufficient privileges`.
    NotPermitted { header: TableHeader<'a> },
    /// Any other answer (an error message such as `Data type not stored in this table`).
    Failed(&'a str),
}

/// Splits the answer to a `;`-separated command line into one block per command. HAProxy
/// ends each command's output with an empty line and never prints one inside an output.
pub fn split_outputs(answer: &str) -> Vec<&str> {
    let mut blocks = Vec::new();
    let mut start = 0;
    let bytes = answer.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // An empty line: a '\n' at the start of a block or right after another '\n'.
        if bytes[i] == b'\n' && (i == start || bytes[i - 1] == b'\n') {
            let end = if i > start { i - 1 } else { i };
            blocks.push(&answer[start..end]);
            start = i + 1;
        }
        i += 1;
    }
    blocks
}

/// Parses one command's output (without its terminating empty line).
pub fn parse_table_dump(block: &str) -> TableDump<'_> {
    let mut lines = block.split('\n');
    let first = lines.next().unwrap_or("");
    let Some(header) = parse_header(first) else {
        let text = block.trim();
        return if text == "No such table" || text == "No such table." {
            TableDump::NoSuchTable
        } else {
            TableDump::Failed(text)
        };
    };
    let mut entries = Vec::new();
    let mut malformed = 0;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("# contents not dumped") {
            return TableDump::NotPermitted { header };
        }
        match parse_entry(line) {
            Some(e) => entries.push(e),
            // `show table` without a name lists every table's header: not ours to read.
            None if line.starts_with("# table: ") => {}
            None => malformed += 1,
        }
    }
    TableDump::Entries {
        header,
        entries,
        malformed,
    }
}

/// `# table: st_mount, type: string, size:1024, used:6`.
pub fn parse_header(line: &str) -> Option<TableHeader<'_>> {
    let rest = line.strip_prefix("# table: ")?;
    let (name, rest) = rest.split_once(", type: ")?;
    let (key_type, rest) = rest.split_once(", size:")?;
    let (size, used) = rest.split_once(", used:")?;
    Some(TableHeader {
        name,
        key_type,
        size: size.trim().parse().ok()?,
        used: used.trim().parse().ok()?,
    })
}

/// One entry line. Data fields are read by name: 2.7+ inserts `shard=`, and the order of data
/// columns is HAProxy's internal one, not the `store` order.
pub fn parse_entry(line: &str) -> Option<StickEntry<'_>> {
    let (ptr, rest) = line.split_once(": key=")?;
    if !ptr.starts_with("0x") {
        return None;
    }
    let bytes = rest.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end] != b' ' {
        end += if bytes[end] == b'\\' { 2 } else { 1 };
    }
    let end = end.min(bytes.len());
    let key = unescape_key(&rest[..end]);
    let mut entry = StickEntry {
        key,
        use_count: 0,
        exp_ms: 0,
        conn_cur: None,
    };
    let mut saw_use = false;
    for field in rest[end..].split_ascii_whitespace() {
        let Some((name, value)) = field.split_once('=') else {
            continue;
        };
        match name {
            "use" => {
                entry.use_count = value.parse().ok()?;
                saw_use = true;
            }
            "exp" => entry.exp_ms = value.parse().ok()?,
            "conn_cur" => entry.conn_cur = Some(value.parse().ok()?),
            _ => {}
        }
    }
    saw_use.then_some(entry)
}

/// Undoes HAProxy's `dump_text()`: `\ ` `\=` `\\` `\t` `\n` `\r` `\e` and `\xHH`. Bytes that
/// are not UTF-8 become U+FFFD.
pub fn unescape_key(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'\\' || i + 1 >= bytes.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let next = bytes[i + 1];
        i += 2;
        match next {
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'e' => out.push(0x1b),
            b'x' => {
                let hex = text
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.extend_from_slice(b"\\x"),
                }
            }
            other => out.push(other),
        }
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// Escapes `;` and `\` in a CLI argument (HAProxy splits the line on unescaped `;`).
pub fn escape_cli_arg(arg: &str) -> Cow<'_, str> {
    if !arg.contains([';', '\\']) {
        return Cow::Borrowed(arg);
    }
    let mut out = String::with_capacity(arg.len() + 4);
    for c in arg.chars() {
        if c == ';' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    Cow::Owned(out)
}

/// The command that reads one table. `conn_cur` tables are filtered on `conn_cur > 0`, so
/// lingering idle entries are not even sent.
pub fn table_command(table: &str, count: CountMode) -> String {
    let name = escape_cli_arg(table);
    match count {
        CountMode::ConnCur => format!("show table {name} data.conn_cur gt 0"),
        CountMode::Entries => format!("show table {name}"),
    }
}

/// Groups commands into lines of at most `max_line` bytes (newline included); each line
/// goes on its own connection. Returns (index of the first command, line).
pub fn batch_commands(commands: &[String], max_line: usize) -> Vec<(usize, usize, String)> {
    let mut batches = Vec::new();
    let mut line = String::new();
    let mut first = 0;
    for (i, cmd) in commands.iter().enumerate() {
        let extra = cmd.len() + 1;
        if !line.is_empty() && line.len() + extra + 1 > max_line {
            line.push('\n');
            batches.push((first, i - first, std::mem::take(&mut line)));
            first = i;
        }
        if !line.is_empty() {
            line.push(';');
        }
        line.push_str(cmd);
    }
    if !line.is_empty() {
        line.push('\n');
        batches.push((first, commands.len() - first, line));
    }
    batches
}

/// One configured table, ready to be read.
#[derive(Debug)]
struct Table {
    name: String,
    count: CountMode,
    protocol: Protocol,
    mapper: KeyMapper,
    outage: OutageLog,
    unmatched_logged: bool,
}

/// Reads the configured stick tables, one round trip per batch of tables.
#[derive(Debug)]
pub struct StickTableReader {
    address: SocketAddress,
    tables: Vec<Table>,
    batches: Vec<(usize, usize, String)>,
    timeout: Duration,
    stats: Arc<LiveStats>,
}

/// The per-(tenant, stream, protocol) sums one poll produced.
pub type Counts = BTreeMap<(String, String, Protocol), u64>;

impl StickTableReader {
    /// `timeout` bounds one whole poll (connects, writes and reads).
    pub fn new(
        config: &HaproxyLiveConfig,
        timeout: Duration,
        stats: Arc<LiveStats>,
    ) -> Result<StickTableReader, LiveConfigError> {
        let address = SocketAddress::parse(&config.socket).map_err(|message| LiveConfigError {
            key: "live.haproxy.socket".into(),
            message,
        })?;
        let mut tables = Vec::with_capacity(config.tables.len());
        for (i, t) in config.tables.iter().enumerate() {
            let mapper = KeyMapper::new(t).map_err(|(field, message)| LiveConfigError {
                key: format!("live.haproxy.tables[{i}]{field}"),
                message,
            })?;
            tables.push(Table {
                name: t.table.clone(),
                count: t.count,
                protocol: t.protocol(),
                mapper,
                outage: OutageLog::new(format!("stick table {:?}", t.table)),
                unmatched_logged: false,
            });
        }
        let commands: Vec<String> = tables
            .iter()
            .map(|t| table_command(&t.name, t.count))
            .collect();
        let batches = batch_commands(&commands, MAX_COMMAND_LINE);
        Ok(StickTableReader {
            address,
            tables,
            batches,
            timeout,
            stats,
        })
    }

    pub fn address(&self) -> &SocketAddress {
        &self.address
    }

    /// How many connections one poll opens.
    pub fn connections_per_poll(&self) -> usize {
        self.batches.len()
    }

    /// Reads every table once. Fails only when HAProxy cannot be asked (down, restarting,
    /// the socket gone); a table that is missing or unreadable is logged (once per outage),
    /// counted, and left out.
    pub async fn poll_once(&mut self) -> Result<LiveSample, LiveError> {
        let at_ms = now_ms();
        let mut answers = Vec::with_capacity(self.batches.len());
        let deadline = tokio::time::Instant::now() + self.timeout;
        for (_, n, line) in &self.batches {
            let answer = tokio::time::timeout_at(deadline, self.ask(line))
                .await
                .map_err(|_| LiveError::Timeout {
                    what: format!("HAProxy runtime API at {}", self.address),
                    after: self.timeout,
                })??;
            answers.push((*n, answer));
        }
        let mut counts = Counts::new();
        let mut table = 0;
        for (n, answer) in &answers {
            let text = String::from_utf8_lossy(answer);
            let blocks = split_outputs(&text);
            if blocks.len() < *n {
                return Err(LiveError::Truncated {
                    address: self.address.to_string(),
                    got: blocks.len(),
                    expected: *n,
                });
            }
            for block in blocks.iter().take(*n) {
                let dump = parse_table_dump(block);
                self.count_table(table, &dump, &mut counts);
                table += 1;
            }
        }
        Ok(to_sample(at_ms, counts))
    }

    /// Sends one command line and reads the answer to EOF.
    async fn ask(&self, line: &str) -> Result<Vec<u8>, LiveError> {
        let io = |source: std::io::Error| LiveError::Haproxy {
            address: self.address.to_string(),
            source,
        };
        match &self.address {
            SocketAddress::Unix(path) => {
                let conn = tokio::net::UnixStream::connect(path).await.map_err(io)?;
                exchange(conn, line).await.map_err(io)
            }
            SocketAddress::Tcp(addr) => {
                let conn = tokio::net::TcpStream::connect(addr.as_str())
                    .await
                    .map_err(io)?;
                exchange(conn, line).await.map_err(io)
            }
        }
    }

    fn count_table(&mut self, index: usize, dump: &TableDump<'_>, counts: &mut Counts) {
        let stats = self.stats.clone();
        let t = &mut self.tables[index];
        match dump {
            TableDump::Entries {
                header,
                entries,
                malformed,
            } => {
                if header.name != t.name {
                    // Answers arrive in command order; a mismatch means a confused stream.
                    t.outage
                        .failed(&format!("the answer was for table {:?}", header.name));
                    stats.table_failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                t.outage.ok();
                if *malformed > 0 {
                    stats
                        .malformed_lines
                        .fetch_add(*malformed as u64, Ordering::Relaxed);
                }
                if let Some((tenant, stream)) = t.mapper.fixed() {
                    counts
                        .entry((tenant.to_string(), stream.to_string(), t.protocol))
                        .or_insert(0);
                }
                let mut unmatched = 0u64;
                // Summed per table under borrowed keys first: one allocation per stream, not
                // per entry.
                let mut local: BTreeMap<(&str, &str), u64> = BTreeMap::new();
                for e in entries {
                    let n = match t.count {
                        CountMode::ConnCur => e.conn_cur.unwrap_or(0),
                        CountMode::Entries => 1,
                    };
                    match t.mapper.map(&e.key) {
                        Some(ts) => *local.entry(ts).or_insert(0) += n,
                        None => unmatched += 1,
                    }
                }
                for ((tenant, stream), n) in local {
                    *counts
                        .entry((tenant.to_string(), stream.to_string(), t.protocol))
                        .or_insert(0) += n;
                }
                if unmatched > 0 {
                    stats.keys_unmatched.fetch_add(unmatched, Ordering::Relaxed);
                    if !t.unmatched_logged {
                        t.unmatched_logged = true;
                        tracing::warn!(
                            table = %t.name,
                            keys = unmatched,
                            "stick table keys match no tenant rule and are not counted (see key_pattern); logged once"
                        );
                    }
                }
            }
            TableDump::NoSuchTable => {
                stats.table_failures.fetch_add(1, Ordering::Relaxed);
                t.outage
                    .failed(&"HAProxy has no such table (check the name and haproxy.cfg)");
            }
            TableDump::NotPermitted { .. } => {
                stats.table_failures.fetch_add(1, Ordering::Relaxed);
                t.outage.failed(
                    &"contents not dumped due to insufficient privileges: give the stats socket `level operator` or `admin`",
                );
            }
            TableDump::Failed(text) => {
                stats.table_failures.fetch_add(1, Ordering::Relaxed);
                let hint = if t.count == CountMode::ConnCur && text.contains("not stored") {
                    " (count = \"conn_cur\" needs `store conn_cur` on the table)"
                } else {
                    ""
                };
                t.outage.failed(&format!("HAProxy answered {text:?}{hint}"));
            }
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: S,
    line: &str,
) -> std::io::Result<Vec<u8>> {
    conn.write_all(line.as_bytes()).await?;
    let mut answer = Vec::with_capacity(4096);
    let mut limited = (&mut conn).take(MAX_ANSWER_BYTES as u64 + 1);
    limited.read_to_end(&mut answer).await?;
    if answer.len() > MAX_ANSWER_BYTES {
        return Err(std::io::Error::other(format!(
            "answer over {MAX_ANSWER_BYTES} bytes"
        )));
    }
    Ok(answer)
}

pub(crate) fn to_sample(at_ms: i64, counts: Counts) -> LiveSample {
    LiveSample {
        at_ms,
        entries: counts
            .into_iter()
            .map(|((tenant, stream, protocol), listeners)| LiveEntry {
                tenant,
                stream,
                protocol,
                listeners,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(path: &str) -> String {
        let p =
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/data")).join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn one_block(text: &str) -> &str {
        let blocks = split_outputs(text);
        assert_eq!(blocks.len(), 1, "{text:?}");
        blocks[0]
    }

    fn conn_cur_sum(dump: &TableDump<'_>) -> u64 {
        match dump {
            TableDump::Entries { entries, .. } => entries.iter().map(|e| e.conn_cur.unwrap()).sum(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn haproxy_26_mount_table() {
        let text = sample("haproxy-2.6/show_table_st_mount.txt");
        let dump = parse_table_dump(one_block(&text));
        let TableDump::Entries {
            header,
            entries,
            malformed,
        } = &dump
        else {
            panic!()
        };
        assert_eq!(
            header,
            &TableHeader {
                name: "st_mount",
                key_type: "string",
                size: 1024,
                used: 6
            }
        );
        assert_eq!(*malformed, 0);
        assert_eq!(entries.len(), 6);
        assert_eq!(entries[4].key, "/stream/radio1.mp3");
        assert_eq!(
            (entries[4].use_count, entries[4].exp_ms, entries[4].conn_cur),
            (2, 27494, Some(2))
        );
        assert_eq!(conn_cur_sum(&dump), 3);
    }

    #[test]
    fn haproxy_32_has_shard_and_same_counts() {
        let text = sample("haproxy-3.2/show_table_st_mount.txt");
        let dump = parse_table_dump(one_block(&text));
        assert_eq!(conn_cur_sum(&dump), 3);
        let TableDump::Entries { entries, .. } = &dump else {
            panic!()
        };
        assert_eq!(entries[0].key, "/stream/radio2.mp3");
        assert_eq!(entries[0].exp_ms, 27979);

        let filtered = sample("haproxy-3.2/show_table_st_mount_filter.txt");
        assert_eq!(conn_cur_sum(&parse_table_dump(one_block(&filtered))), 3);
    }

    #[test]
    fn ip_and_ipv6_tables() {
        for (file, keys, sum) in [
            ("haproxy-2.6/show_table_st_ip.txt", vec!["127.0.0.1"], 2),
            (
                "haproxy-2.6/show_table_st_ip6.txt",
                vec!["::1", "::ffff:127.0.0.1"],
                3,
            ),
            (
                "haproxy-3.2/show_table_st_ip.txt",
                vec!["0.0.0.1", "127.0.0.1"],
                3,
            ),
            (
                "haproxy-3.2/show_table_st_ip6.txt",
                vec!["::ffff:127.0.0.1", "::1"],
                3,
            ),
        ] {
            let text = sample(file);
            let dump = parse_table_dump(one_block(&text));
            let TableDump::Entries { entries, .. } = &dump else {
                panic!("{file}")
            };
            let got: Vec<&str> = entries.iter().map(|e| e.key.as_ref()).collect();
            assert_eq!(got, keys, "{file}");
            assert_eq!(conn_cur_sum(&dump), sum, "{file}");
        }
    }

    #[test]
    fn escaped_keys_from_the_captured_multi_command_answer() {
        // The raw bytes of FORMATS.md §2.2 for "show table;show table st_noexp\n".
        let answer = "# table: st_mount, type: string, size:1024, used:6\n# table: st_noexp, type: string, size:1024, used:2\n\n# table: st_noexp, type: string, size:1024, used:2\n0x55c6f48a7fb8: key=a\\ b\\=c use=0 exp=0 gpc0=7 conn_cur=3\n0x7f600003a598: key=plain use=0 exp=0 gpc0=1 conn_cur=0\n\n";
        let blocks = split_outputs(answer);
        assert_eq!(blocks.len(), 2);
        let TableDump::Entries { entries, .. } = parse_table_dump(blocks[1]) else {
            panic!()
        };
        assert_eq!(entries[0].key, "a b=c");
        assert_eq!(entries[0].conn_cur, Some(3));
        assert_eq!(entries[1].key, "plain");
        // The list (no table name) is headers only: no entries, nothing malformed.
        let TableDump::Entries {
            entries, malformed, ..
        } = parse_table_dump(blocks[0])
        else {
            panic!()
        };
        assert!(entries.is_empty());
        assert_eq!(malformed, 0);
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape_key("plain"), "plain");
        assert_eq!(unescape_key("a\\ b\\=c"), "a b=c");
        assert_eq!(unescape_key("back\\\\slash"), "back\\slash");
        assert_eq!(unescape_key("t\\tn\\nr\\re\\e"), "t\tn\nr\re\x1b");
        assert_eq!(unescape_key("caf\\xc3\\xa9"), "café");
        assert_eq!(unescape_key("bad\\xZZ"), "bad\\xZZ");
        assert_eq!(unescape_key("trailing\\"), "trailing\\");
        let e = parse_entry("0x1: key=/a\\ b\\\\ use=1 exp=0 shard=3 conn_cur=4").unwrap();
        assert_eq!((e.key.as_ref(), e.conn_cur), ("/a b\\", Some(4)));
    }

    #[test]
    fn no_such_table_and_privileges_and_errors() {
        let text = sample("haproxy-2.6/show_table_nosuch.txt");
        assert_eq!(parse_table_dump(one_block(&text)), TableDump::NoSuchTable);
        let denied = "# table: st_mount, type: string, size:1024, used:6\n# contents not dumped due to insufficient privileges\n\n";
        assert!(matches!(
            parse_table_dump(one_block(denied)),
            TableDump::NotPermitted { .. }
        ));
        let err = "Data type not stored in this table\n\n";
        assert_eq!(
            parse_table_dump(one_block(err)),
            TableDump::Failed("Data type not stored in this table")
        );
    }

    #[test]
    fn malformed_lines_are_counted() {
        let text = "# table: t, type: ip, size:10, used:2\n0x1: key=1.2.3.4 use=0 exp=10 conn_cur=1\ngarbage\n0x2: key=1.2.3.5 use=x exp=1\n\n";
        let TableDump::Entries {
            entries, malformed, ..
        } = parse_table_dump(one_block(text))
        else {
            panic!()
        };
        assert_eq!(entries.len(), 1);
        assert_eq!(malformed, 2);
    }

    #[test]
    fn empty_outputs_and_truncation() {
        assert_eq!(split_outputs("\n"), vec![""]);
        assert_eq!(split_outputs("a\n\n\nb\n\n"), vec!["a", "", "b"]);
        // Cut short (HAProxy went away): the unterminated tail is not a block.
        assert_eq!(split_outputs("a\n\nb\n0x1: key"), vec!["a"]);
        assert_eq!(split_outputs(""), Vec::<&str>::new());
    }

    #[test]
    fn commands_are_escaped_and_batched_under_the_line_limit() {
        assert_eq!(
            table_command("st_mount", CountMode::ConnCur),
            "show table st_mount data.conn_cur gt 0"
        );
        assert_eq!(
            table_command("a;b\\c", CountMode::Entries),
            "show table a\\;b\\\\c"
        );
        let commands: Vec<String> = (0..1000).map(|i| format!("show table st_{i:04}")).collect();
        let batches = batch_commands(&commands, MAX_COMMAND_LINE);
        assert!(batches.len() >= 3, "{}", batches.len());
        let mut next = 0;
        for (first, n, line) in &batches {
            assert_eq!(*first, next);
            assert!(line.len() <= MAX_COMMAND_LINE);
            assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
            assert_eq!(line.trim_end().split(';').count(), *n);
            next += n;
        }
        assert_eq!(next, 1000);
        assert!(batch_commands(&[], MAX_COMMAND_LINE).is_empty());
    }

    /// The parsing half of the CPU figure (the e2e `cpu_polling_1000_tables` measures the
    /// whole poll against a real HAProxy): 1,000 table dumps, 15,000 entries.
    #[test]
    #[ignore = "a measurement: cargo test -p earshot-agent --lib parse_1000_tables -- --ignored --nocapture"]
    fn parse_1000_tables() {
        let mut tables = Vec::new();
        let mut answer = String::new();
        for i in 0..1000 {
            if i % 2 == 0 {
                tables.push(format!("{{ table = \"st_m{i}\", count = \"conn_cur\" }}"));
                answer.push_str(&format!(
                    "# table: st_m{i}, type: string, size:1024, used:10\n"
                ));
                for k in 0..10 {
                    answer.push_str(&format!(
                        "0x55ddde41{k:04x}: key=/t{i}/stream{k}.mp3 use={c} exp=0 shard=0 conn_cur={c} http_req_rate(10000)=3\n",
                        c = k + 1
                    ));
                }
            } else {
                tables.push(format!(
                    "{{ table = \"st_h{i}\", count = \"entries\", tenant = \"t{i}\", stream = \"/hls/live\" }}"
                ));
                answer.push_str(&format!("# table: st_h{i}, type: ip, size:1024, used:20\n"));
                for k in 0..20 {
                    answer.push_str(&format!(
                        "0x55ddde41{k:04x}: key=10.{}.{}.{k} use=0 exp=2500 shard=0 conn_cur=0 http_req_rate(10000)=4\n",
                        i / 256,
                        i % 256
                    ));
                }
            }
            answer.push('\n');
        }
        let config: HaproxyLiveConfig = toml::from_str(&format!(
            "socket = \"tcp:127.0.0.1:1\"\ntables = [{}]",
            tables.join(", ")
        ))
        .unwrap();
        let mut reader =
            StickTableReader::new(&config, Duration::from_secs(5), Arc::default()).unwrap();
        let rounds = 20;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            let mut counts = Counts::new();
            for (i, block) in split_outputs(&answer).iter().enumerate() {
                reader.count_table(i, &parse_table_dump(block), &mut counts);
            }
            assert_eq!(counts.len(), 5500);
            std::hint::black_box(to_sample(0, counts));
        }
        let per_poll = started.elapsed() / rounds;
        println!(
            "parsing and counting 1,000 tables ({} bytes): {per_poll:?} per poll, {:.3} % of a core at one poll per 5 s",
            answer.len(),
            per_poll.as_secs_f64() / 5.0 * 100.0
        );
    }
}
