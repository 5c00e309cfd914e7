//! Following HAProxy's logs through rotation.
//!
//! The agent reads a log file once it has been rotated, never the live file: a rotated file
//! is complete, so its lines can be turned into sessions and checkpointed without guessing
//! what is still being written. A file is known by a fingerprint of its first bytes
//! (decompressed), not by its name or inode, so the shapes logrotate produces all look the
//! same: `haproxy.log.1` compressed later into `haproxy.log.2.gz` is the same file, a
//! copytruncate copy is a new file, and a file rotated twice before the agent looked is two
//! new files, read oldest first.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use crate::ingest::Ingestor;
use crate::reader::LineReader;
use crate::spool::{Checkpoint, Spool, SpoolError};

/// Bytes of a file's (decompressed) start that identify it.
const FINGERPRINT_BYTES: usize = 4096;
/// Lines between two spool commits inside one file: bounds what a crash makes the agent
/// re-read, and the memory a batch holds.
pub const LINES_PER_COMMIT: u64 = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path}: renamed away and the name given to another file before it was read; read at the next scan"
    )]
    Replaced { path: PathBuf },
    #[error("spool: {0}")]
    Spool(#[from] SpoolError),
}

/// The rotated siblings of a live log file, oldest first: `NAME.1`, `NAME.2.gz`,
/// `NAME-20261128`, `NAME-20261128.gz`, … (anything `NAME.*` or `NAME-*` in its directory).
///
/// The directory is listed afresh before each file is handed out, and each file (by device
/// and inode, not by name) is handed out once. Reading a file can take long enough for
/// logrotate to run meanwhile: a list taken before the read would still say `NAME.1` for what
/// is now `NAME.2.gz`, hand out the new `NAME.1` next, and so have a newer hour read before an
/// older one (which splits the sessions that cross from one into the other). Only the first
/// listing's error is returned; a later one ends the iteration, and the next scan lists again.
pub fn rotated_siblings(live: &Path) -> std::io::Result<Siblings> {
    let first = list_siblings(live)?;
    Ok(Siblings {
        live: live.to_path_buf(),
        first: Some(first),
        handed_out: HashSet::new(),
    })
}

/// The iterator [`rotated_siblings`] returns.
pub struct Siblings {
    live: PathBuf,
    first: Option<Vec<Sibling>>,
    handed_out: HashSet<FileId>,
}

/// Device, inode and (where the file system keeps it) birth time: a file, whatever its name
/// is by now. The birth time tells a new file from a removed one whose inode it reuses.
type FileId = (u64, u64, Option<std::time::SystemTime>);

struct Sibling {
    path: PathBuf,
    id: FileId,
}

impl Iterator for Siblings {
    type Item = PathBuf;

    fn next(&mut self) -> Option<PathBuf> {
        let listed = match self.first.take() {
            Some(first) => first,
            None => list_siblings(&self.live).ok()?,
        };
        let next = listed
            .into_iter()
            .find(|s| !self.handed_out.contains(&s.id))?;
        self.handed_out.insert(next.id);
        Some(next.path)
    }
}

/// One listing of the rotated siblings, oldest first.
fn list_siblings(live: &Path) -> std::io::Result<Vec<Sibling>> {
    use std::os::unix::fs::MetadataExt;
    let dir = live
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Some(name) = live.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let Some(rest) = n.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('.') || rest.starts_with('-')) || rest.len() < 2 {
            continue;
        }
        let meta = match entry.metadata() {
            Ok(m) => m,
            // Renamed or removed since the directory was read: the next listing has it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
        let sibling = Sibling {
            path: entry.path(),
            id: (meta.dev(), meta.ino(), meta.created().ok()),
        };
        found.push((mtime, rotation_rank(rest), sibling));
    }
    // Oldest first; for equal times the higher rotation number is older.
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    Ok(found.into_iter().map(|(_, _, s)| s).collect())
}

fn rotation_rank(suffix: &str) -> u64 {
    suffix
        .trim_start_matches(['.', '-'])
        .split('.')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// SHA-256 of the first bytes of the decompressed content; None for an empty file.
pub fn fingerprint(path: &Path) -> std::io::Result<Option<String>> {
    fingerprint_prefix(path, FINGERPRINT_BYTES)
}

/// SHA-256 of the first `limit` bytes of the decompressed content (fewer if the file is
/// shorter); None for an empty file.
fn fingerprint_prefix(path: &Path, limit: usize) -> std::io::Result<Option<String>> {
    fingerprint_of(&std::fs::File::open(path)?, limit)
}

/// [`fingerprint_prefix`] of a file already open, read from its start.
fn fingerprint_of(file: &std::fs::File, limit: usize) -> std::io::Result<Option<String>> {
    use std::io::{BufRead, Seek};
    let mut file = file;
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut probe = std::io::BufReader::new(file);
    let gzip = probe.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let mut content: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(probe))
    } else {
        Box::new(probe)
    };
    let mut buf = Vec::with_capacity(limit);
    content.by_ref().take(limit as u64).read_to_end(&mut buf)?;
    if buf.is_empty() {
        return Ok(None);
    }
    Ok(Some(hex::encode(Sha256::digest(&buf))))
}

/// Reads files into an ingestor and commits to the spool, resuming where checkpoints say.
pub struct Follower {
    pub checkpoints: HashMap<String, Checkpoint>,
    max_line: usize,
    /// Fingerprints of files that grew since they were read while shorter than the
    /// fingerprint, mapped to the key they were read under.
    aliases: HashMap<String, String>,
}

pub struct FileOutcome {
    pub lines: u64,
    pub commits: u64,
}

impl Follower {
    pub fn new(spool: &Mutex<Spool>, max_line: usize) -> Result<Follower, FollowError> {
        let checkpoints = lock(spool)
            .checkpoints()?
            .into_iter()
            .map(|c| (c.file_key.clone(), c))
            .collect();
        Ok(Follower {
            checkpoints,
            max_line,
            aliases: HashMap::new(),
        })
    }

    /// The key a file is known by. A file read while it was shorter than the fingerprint
    /// (a quiet hour's log) and appended to since has a new fingerprint: it is recognised by
    /// the hash of the bytes it had then, so its old lines are not read a second time.
    pub fn known_key(&mut self, path: &Path, key: String) -> String {
        if self.checkpoints.contains_key(&key) {
            return key;
        }
        if let Some(alias) = self.aliases.get(&key) {
            return alias.clone();
        }
        let short: Vec<(String, u64)> = self
            .checkpoints
            .values()
            .filter(|c| c.offset > 0 && c.offset < FINGERPRINT_BYTES as u64)
            .map(|c| (c.file_key.clone(), c.offset))
            .collect();
        for (old, len) in short {
            if fingerprint_prefix(path, len as usize)
                .ok()
                .flatten()
                .as_deref()
                == Some(old.as_str())
            {
                self.aliases.insert(key, old.clone());
                return old;
            }
        }
        key
    }

    /// Whether `key` was read to its end already.
    pub fn is_finished(&self, key: &str) -> bool {
        self.checkpoints.get(key).is_some_and(|c| c.finished)
    }

    /// Whether `path` (fingerprint `key`) has lines the agent has not read: a file never read
    /// to its end, or a plain rotated file that grew past its checkpoint after it was read.
    /// The latter is logrotate without a working `postrotate` (or the moment before it runs):
    /// the syslog daemon keeps appending to the renamed file until it reopens its log, and
    /// those lines must not be lost. Compressed files are written once and not re-checked.
    pub fn has_unread(&self, key: &str, path: &Path) -> bool {
        let Some(c) = self.checkpoints.get(key).filter(|c| c.finished) else {
            return true;
        };
        let Ok(mut file) = std::fs::File::open(path) else {
            return false;
        };
        let mut magic = [0u8; 2];
        if file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b] {
            return false;
        }
        file.metadata().is_ok_and(|m| m.len() > c.offset)
    }

    /// Reads `path` (fingerprint `key`) from its checkpoint to the end, committing after
    /// the block of lines that reaches [`LINES_PER_COMMIT`] and at the end. Stops early,
    /// committed, when `stop` is set.
    pub fn ingest_file(
        &mut self,
        ingestor: &mut Ingestor,
        spool: &Mutex<Spool>,
        path: &Path,
        key: &str,
        stop: &AtomicBool,
    ) -> Result<FileOutcome, FollowError> {
        let start = self.checkpoints.get(key).map_or(0, |c| c.offset);
        let io = |source| FollowError::Io {
            path: path.to_path_buf(),
            source,
        };
        // The file is opened once, checked to be the one `key` names, and read from that
        // handle: between the caller's fingerprint and this open, logrotate may have given
        // the name to the next file (`NAME.1` renamed away, the live file renamed to it).
        // Read under the old key, the newer file would be read from the older one's offset
        // and marked finished in its place: the older file lost, the newer read again later.
        let file = std::fs::File::open(path).map_err(io)?;
        if !self.is_file_of(&file, key).map_err(io)? {
            return Err(FollowError::Replaced {
                path: path.to_path_buf(),
            });
        }
        let mut reader = LineReader::from_file(file, start, self.max_line).map_err(io)?;
        let mut outcome = FileOutcome {
            lines: 0,
            commits: 0,
        };
        let mut since_commit = 0u64;
        loop {
            let lines = match reader.next_lines() {
                Ok(lines) => lines,
                Err(e) => {
                    // E.g. a .gz still being written. The lines read so far are in the
                    // ingestor: commit them with the offset they end at, so that the retry
                    // starts after them instead of counting them twice.
                    if since_commit > 0 {
                        self.commit(ingestor, spool, path, key, reader.offset(), false)?;
                    }
                    return Err(io(e));
                }
            };
            let Some(lines) = lines else { break };
            let n = ingestor.feed_lines(lines);
            outcome.lines += n;
            since_commit += n;
            if since_commit >= LINES_PER_COMMIT {
                since_commit = 0;
                self.commit(ingestor, spool, path, key, reader.offset(), false)?;
                outcome.commits += 1;
                if stop.load(Ordering::Relaxed) {
                    return Ok(outcome);
                }
            }
        }
        self.commit(ingestor, spool, path, key, reader.offset(), true)?;
        outcome.commits += 1;
        Ok(outcome)
    }

    /// Whether the open `file` is the one known by `key`: its fingerprint, or a fingerprint
    /// [`Follower::known_key`] maps to it.
    fn is_file_of(&self, file: &std::fs::File, key: &str) -> std::io::Result<bool> {
        let Some(now) = fingerprint_of(file, FINGERPRINT_BYTES)? else {
            return Ok(false);
        };
        if now == key || self.aliases.get(&now).is_some_and(|k| k == key) {
            return Ok(true);
        }
        match self.checkpoints.get(key) {
            Some(c) if c.offset > 0 && c.offset < FINGERPRINT_BYTES as u64 => {
                Ok(fingerprint_of(file, c.offset as usize)?.as_deref() == Some(key))
            }
            _ => Ok(false),
        }
    }

    /// Commits what the ingestor holds, with the state that goes with it.
    pub fn commit(
        &mut self,
        ingestor: &mut Ingestor,
        spool: &Mutex<Spool>,
        path: &Path,
        key: &str,
        offset: u64,
        finished: bool,
    ) -> Result<Option<u64>, FollowError> {
        let (rollups, counters) = ingestor.take();
        let checkpoint = Checkpoint {
            file_key: key.to_string(),
            path: path.display().to_string(),
            offset,
            finished,
        };
        let state = ingestor.save_state();
        // A grown file is also recorded under its new fingerprint, so that after a restart
        // (when the short checkpoint's offset has moved past the fingerprint's length) it is
        // still known.
        let mut checkpoints = vec![checkpoint.clone()];
        for (new, old) in &self.aliases {
            if old == key && !self.checkpoints.contains_key(new) {
                checkpoints.push(Checkpoint {
                    file_key: new.clone(),
                    ..checkpoint.clone()
                });
            }
        }
        let seq = lock(spool).commit(rollups, counters, &checkpoints, &state)?;
        for c in checkpoints {
            self.checkpoints.insert(c.file_key.clone(), c);
        }
        Ok(seq)
    }
}

pub fn lock(spool: &Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    // A panic while holding the lock leaves the SQLite transaction rolled back: the spool
    // itself is consistent, so the poison carries no information.
    spool.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_gz_still_being_written_is_read_once_across_the_retry() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Mutex::new(Spool::open(&dir.path().join("spool.db")).unwrap());
        let mut follower = Follower::new(&spool, 64 * 1024).unwrap();
        let mut ingestor = Ingestor::with_defaults(None, vec![7; 32]);
        // 20,000 listeners, each one two-minute progressive session: one line, one session.
        let n = 20_000u32;
        let gz = gzip(&session_lines(0, n, 10));
        let path = dir.path().join("haproxy.log.2.gz");
        // Half written: the lines that decompress are read, then the stream breaks off.
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let stop = AtomicBool::new(false);
        let key = fingerprint(&path).unwrap().unwrap();
        let err = follower.ingest_file(&mut ingestor, &spool, &path, &key, &stop);
        assert!(matches!(err, Err(FollowError::Io { .. })));
        std::fs::write(&path, &gz).unwrap();
        assert_eq!(fingerprint(&path).unwrap().as_deref(), Some(key.as_str()));
        follower
            .ingest_file(&mut ingestor, &spool, &path, &key, &stop)
            .unwrap();

        let batches = spool.lock().unwrap().pending("a", 100).unwrap();
        assert!(
            batches.len() >= 2,
            "the part read before the break was committed"
        );
        let lines: u64 = batches.iter().map(|b| b.counters.lines).sum();
        let sessions: u64 = batches
            .iter()
            .flat_map(|b| &b.rollups)
            .flat_map(|(_, r)| &r.quarters)
            .map(|q| q.sessions)
            .sum();
        assert_eq!(lines, u64::from(n));
        assert_eq!(sessions, u64::from(n));
    }

    /// `n` one-line progressive sessions of listeners `first..first + n` at 28 Nov 2026
    /// `hour`:00–59.
    fn session_lines(first: u32, n: u32, hour: u32) -> Vec<u8> {
        let mut text = Vec::new();
        for i in first..first + n {
            writeln!(
                text,
                r#"10.{}.{}.{}:4000 [28/Nov/2026:{hour:02}:{:02}:00.000] fe be_radio1/s1 0/0/0/1/120000 200 1000 - - CD-- 1/1/1/1/0 0/0 {{VLC/3.0.20 LibVLC/3.0.20|}} "GET /radio1/live.mp3 HTTP/1.1""#,
                i >> 16,
                (i >> 8) & 255,
                i & 255,
                i % 60
            )
            .unwrap();
        }
        text
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn decompressed(path: &Path) -> Vec<u8> {
        let raw = std::fs::read(path).unwrap();
        if !raw.starts_with(&[0x1f, 0x8b]) {
            return raw;
        }
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    fn set_age(path: &Path, secs: u64) {
        let t = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(t)
            .unwrap();
    }

    #[test]
    fn a_rotation_during_a_read_still_hands_out_the_older_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let name = |s: &str| dir.path().join(format!("haproxy.log{s}"));
        let hours = [
            "hour 0\n".repeat(50),
            "hour 1\n".repeat(60),
            "hour 2\n".repeat(70),
        ];
        std::fs::write(name(""), b"").unwrap();
        std::fs::write(name(".2.gz"), gzip(hours[0].as_bytes())).unwrap();
        set_age(&name(".2.gz"), 7200);
        std::fs::write(name(".1"), &hours[1]).unwrap();
        set_age(&name(".1"), 3600);

        let mut read = Vec::new();
        for path in rotated_siblings(&name("")).unwrap() {
            read.push(String::from_utf8(decompressed(&path)).unwrap());
            if read.len() == 1 {
                // logrotate runs while the oldest file is read: `.2.gz` becomes `.3.gz`, `.1`
                // is compressed into `.2.gz` (its time kept), the live file becomes `.1`.
                std::fs::rename(name(".2.gz"), name(".3.gz")).unwrap();
                std::fs::write(name(".2.gz"), gzip(hours[1].as_bytes())).unwrap();
                set_age(&name(".2.gz"), 3600);
                std::fs::remove_file(name(".1")).unwrap();
                std::fs::write(name(".1"), &hours[2]).unwrap();
            }
        }
        assert_eq!(read, hours, "each hour once, oldest first");
    }

    #[test]
    fn a_name_given_to_the_next_file_after_its_fingerprint_reads_each_file_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Mutex::new(Spool::open(&dir.path().join("spool.db")).unwrap());
        let mut follower = Follower::new(&spool, 64 * 1024).unwrap();
        let mut ingestor = Ingestor::with_defaults(None, vec![7; 32]);
        let stop = AtomicBool::new(false);
        let live = dir.path().join("haproxy.log");
        let one = dir.path().join("haproxy.log.1");
        // Hour 10 has 1,000 sessions, hour 11 has 1,500 (a longer file).
        std::fs::write(&live, session_lines(1000, 1500, 11)).unwrap();
        std::fs::write(&one, session_lines(0, 1000, 10)).unwrap();
        set_age(&one, 3600);

        let key = fingerprint(&one).unwrap().unwrap();
        let key = follower.known_key(&one, key);
        assert!(follower.has_unread(&key, &one));
        // logrotate between the fingerprint and the read: `.1` renamed to `.2`, the live
        // file to `.1`.
        std::fs::rename(&one, dir.path().join("haproxy.log.2")).unwrap();
        std::fs::rename(&live, &one).unwrap();
        std::fs::write(&live, b"").unwrap();
        let r = follower.ingest_file(&mut ingestor, &spool, &one, &key, &stop);
        assert!(
            matches!(r, Err(FollowError::Replaced { .. })),
            "hour 11 is not read as hour 10"
        );

        // The next scan.
        for path in rotated_siblings(&live).unwrap() {
            let key = follower.known_key(&path, fingerprint(&path).unwrap().unwrap());
            if follower.has_unread(&key, &path) {
                follower
                    .ingest_file(&mut ingestor, &spool, &path, &key, &stop)
                    .unwrap();
            }
        }
        let batches = spool.lock().unwrap().pending("a", 100).unwrap();
        let lines: u64 = batches.iter().map(|b| b.counters.lines).sum();
        let sessions: u64 = batches
            .iter()
            .flat_map(|b| &b.rollups)
            .flat_map(|(_, r)| &r.quarters)
            .map(|q| q.sessions)
            .sum();
        assert_eq!(lines, 2500);
        assert_eq!(sessions, 2500);
        assert!(
            rotated_siblings(&live)
                .unwrap()
                .all(|p| { !follower.has_unread(&fingerprint(&p).unwrap().unwrap(), &p) }),
            "both files finished"
        );
    }

    #[test]
    fn siblings_oldest_first_and_fingerprint_ignores_compression() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("haproxy.log");
        std::fs::write(&live, b"live\n").unwrap();
        std::fs::write(dir.path().join("haproxy.log.1"), b"newer\n").unwrap();
        let gz = dir.path().join("haproxy.log.2.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"older\n").unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        std::fs::write(dir.path().join("haproxy.logger"), b"other\n").unwrap();
        std::fs::write(dir.path().join("other.log.1"), b"other\n").unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&gz)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let found: Vec<_> = rotated_siblings(&live).unwrap().collect();
        let names: Vec<_> = found
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["haproxy.log.2.gz", "haproxy.log.1"]);

        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"older\n").unwrap();
        assert_eq!(fingerprint(&gz).unwrap(), fingerprint(&plain).unwrap());
        assert_ne!(fingerprint(&gz).unwrap(), fingerprint(&live).unwrap());
        std::fs::write(&plain, b"").unwrap();
        assert_eq!(fingerprint(&plain).unwrap(), None);
    }
}
