//! Reads a rotated HAProxy log file a buffer's worth of lines at a time, plain or gzip, from a
//! checkpoint.
//!
//! Rotated files are the agent's input (logrotate leaves `haproxy.log.1` plain and compresses
//! older ones), so the reader recognises gzip by its magic bytes rather than by the file
//! name, and counts its position in *decompressed* bytes: that is the checkpoint the agent
//! stores, and it means the same thing whether the file has been compressed since or not.
//!
//! Memory stays bounded whatever the file holds: lines are handed out as slices of one
//! internal buffer (no copy when they sit inside it), and a line longer than `max_line` is
//! skipped to its newline without being buffered, reported only by its length.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use memchr::{memchr, memrchr};

/// Lines longer than this (in bytes, without the newline) are skipped by default. HAProxy's
/// own syslog limit is 1024 bytes by default and 65535 at most.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// Size of the read buffer when `max_line` is smaller.
const BUFFER_SIZE: usize = 256 * 1024;

/// Refuse a `max_line` that would make the buffer absurdly large.
const MAX_MAX_LINE: usize = 1 << 30;

/// One line from [`LineReader::next_lines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// The line without its `\n` and a trailing `\r`.
    Text(&'a [u8]),
    /// A line longer than `max_line`, skipped; `len` is its length in bytes without the `\n`.
    TooLong { len: u64 },
}

/// The lines of one [`LineReader::next_lines`]. The reader's offset is already past all
/// of them; [`Lines::consumed`] says how far into them the iteration is.
pub struct Lines<'a> {
    rest: &'a [u8],
    /// The stream bytes these lines take, newlines included.
    len: u64,
    max_line: usize,
    /// The length of a line too long for the buffer, skipped by the reader: the only item
    /// (`len` is then the bytes it took, with its newline when it had one).
    skipped: Option<u64>,
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if let Some(len) = self.skipped.take() {
            return Some(Line::TooLong { len });
        }
        if self.rest.is_empty() {
            return None;
        }
        let (mut line, rest) = match memchr(b'\n', self.rest) {
            Some(i) => (&self.rest[..i], &self.rest[i + 1..]),
            None => (self.rest, &[][..]),
        };
        self.rest = rest;
        if line.len() > self.max_line {
            return Some(Line::TooLong {
                len: line.len() as u64,
            });
        }
        if let Some((b'\r', head)) = line.split_last() {
            line = head;
        }
        Some(Line::Text(line))
    }
}

impl Lines<'_> {
    /// Bytes of the stream taken by the lines handed out so far, newlines included.
    pub fn consumed(&self) -> u64 {
        match self.skipped {
            Some(_) => 0,
            None => self.len - self.rest.len() as u64,
        }
    }
}

enum Source {
    Plain(File),
    Gzip(Box<MultiGzDecoder<File>>),
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(f) => f.read(buf),
            Source::Gzip(d) => d.read(buf),
        }
    }
}

/// A line reader over one log file. See the module docs.
pub struct LineReader {
    source: Source,
    gzip: bool,
    buf: Box<[u8]>,
    /// Unconsumed data is `buf[start..end]`.
    start: usize,
    end: usize,
    /// `buf[start..scanned]` is known to hold no `\n`, so it is not searched twice.
    scanned: usize,
    eof: bool,
    max_line: usize,
    /// Decompressed bytes consumed, including the last returned line's newline.
    offset: u64,
}

impl LineReader {
    /// Opens `path`, skipping the first `start_offset` bytes of the (decompressed) stream:
    /// a seek for a plain file, decompress-and-discard for gzip (multi-member gzip is read
    /// to the end). `start_offset` is normally a previous [`LineReader::offset`].
    ///
    /// Fails with `InvalidInput` when `start_offset` lies past the end of the stream (the
    /// file is not the one the checkpoint was taken on) or `max_line` is over 1 GiB.
    pub fn open(path: &Path, start_offset: u64, max_line: usize) -> io::Result<LineReader> {
        LineReader::from_file(File::open(path)?, start_offset, max_line)
    }

    /// [`LineReader::open`] on a file already open (read from its start, wherever its
    /// position is): the caller can check what the file is and read that same file, even if
    /// its name has meanwhile been given to another.
    pub fn from_file(mut file: File, start_offset: u64, max_line: usize) -> io::Result<LineReader> {
        if max_line > MAX_MAX_LINE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("max_line {max_line} is over the 1 GiB limit"),
            ));
        }
        file.seek(SeekFrom::Start(0))?;
        let mut magic = [0u8; 2];
        let got = read_up_to(&mut file, &mut magic)?;
        let gzip = got == 2 && magic == [0x1f, 0x8b];
        let source = if gzip {
            file.seek(SeekFrom::Start(0))?;
            let mut decoder = MultiGzDecoder::new(file);
            let skipped = io::copy(&mut (&mut decoder).take(start_offset), &mut io::sink())?;
            if skipped < start_offset {
                return Err(past_end(start_offset, skipped));
            }
            Source::Gzip(Box::new(decoder))
        } else {
            let len = file.metadata()?.len();
            if start_offset > len {
                return Err(past_end(start_offset, len));
            }
            file.seek(SeekFrom::Start(start_offset))?;
            Source::Plain(file)
        };
        let size = BUFFER_SIZE.max(max_line.saturating_add(1));
        Ok(LineReader {
            source,
            gzip,
            buf: vec![0u8; size].into_boxed_slice(),
            start: 0,
            end: 0,
            scanned: 0,
            eof: false,
            max_line,
            offset: start_offset,
        })
    }

    /// The next lines: every complete line the buffer holds (refilling it when it holds
    /// none), `None` at the end of the stream. A last line without `\n` comes too. A line over
    /// `max_line` bytes comes as [`Line::TooLong`], skipped without being buffered when it
    /// does not fit. Handing out many lines at once lets the caller look one line ahead.
    pub fn next_lines(&mut self) -> io::Result<Option<Lines<'_>>> {
        // Indices are computed in the loop and the slice taken after it, so the borrow of
        // `self.buf` does not overlap the refills.
        let (from, to) = loop {
            if let Some(i) = memrchr(b'\n', &self.buf[self.scanned..self.end]) {
                let from = self.start;
                self.start = self.scanned + i + 1;
                self.scanned = self.start;
                self.offset += (self.start - from) as u64;
                break (from, self.start);
            }
            self.scanned = self.end;
            let pending = self.end - self.start;
            if pending > self.max_line {
                let at = self.offset;
                let len = self.skip_long_line(pending as u64)?;
                return Ok(Some(Lines {
                    rest: &[],
                    len: self.offset - at,
                    max_line: self.max_line,
                    skipped: Some(len),
                }));
            }
            if self.eof {
                if pending == 0 {
                    return Ok(None);
                }
                let from = self.start;
                self.start = self.end;
                self.offset += pending as u64;
                break (from, self.end);
            }
            self.fill()?;
        };
        Ok(Some(Lines {
            rest: &self.buf[from..to],
            len: (to - from) as u64,
            max_line: self.max_line,
            skipped: None,
        }))
    }

    /// Decompressed bytes consumed so far, up to and including the newline of the last line
    /// handed out by [`LineReader::next_lines`] (plus the `start_offset` given to
    /// [`LineReader::open`]).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Reads more data after `buf[..end]`, first moving the pending partial line to the
    /// front when the free tail runs short. Sets `eof` on a zero read.
    fn fill(&mut self) -> io::Result<()> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            self.scanned = 0;
        } else if self.buf.len() - self.end < self.buf.len() / 4 {
            // The pending part is at most max_line < buf.len() bytes, so this frees room.
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.scanned -= self.start;
            self.start = 0;
        }
        let n = read_retrying(&mut self.source, &mut self.buf[self.end..])?;
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }

    /// Discards the current over-long line, `already` bytes of which are buffered and hold no
    /// newline, through its `\n` (or the end of the stream). Returns its length without the
    /// newline.
    fn skip_long_line(&mut self, already: u64) -> io::Result<u64> {
        let mut len = already;
        self.offset += already;
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        loop {
            if self.eof {
                return Ok(len);
            }
            let n = read_retrying(&mut self.source, &mut self.buf)?;
            if n == 0 {
                self.eof = true;
                return Ok(len);
            }
            match memchr(b'\n', &self.buf[..n]) {
                Some(i) => {
                    len += i as u64;
                    self.offset += i as u64 + 1;
                    self.start = i + 1;
                    self.scanned = i + 1;
                    self.end = n;
                    return Ok(len);
                }
                None => {
                    len += n as u64;
                    self.offset += n as u64;
                }
            }
        }
    }
}

fn past_end(start_offset: u64, available: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("start offset {start_offset} is past the end of the stream ({available} bytes)"),
    )
}

fn read_retrying(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match source.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads until `buf` is full or the end of the file; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = read_retrying(file, &mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;

    fn write_plain(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f.flush().expect("flush");
        f
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(bytes).expect("compress");
        enc.finish().expect("finish")
    }

    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Text(Vec<u8>),
        TooLong(u64),
    }

    /// All lines, with the offset after each.
    fn read_all(path: &Path, start: u64, max_line: usize) -> Vec<(Owned, u64)> {
        let mut r = LineReader::open(path, start, max_line).expect("open");
        let mut out = Vec::new();
        let mut before = r.offset();
        while let Some(mut lines) = r.next_lines().expect("read") {
            let mut ends = Vec::new();
            while let Some(line) = lines.next() {
                let owned = match line {
                    Line::Text(t) => Owned::Text(t.to_vec()),
                    Line::TooLong { len } => Owned::TooLong(len),
                };
                ends.push((owned, lines.consumed()));
            }
            // The reader's offset is already past all the lines it handed out.
            assert_eq!(ends.last().map(|l| before + l.1), Some(r.offset()));
            out.extend(ends.into_iter().map(|(l, end)| (l, before + end)));
            before = r.offset();
        }
        // At the end the offset is the whole stream.
        assert!(r.next_lines().expect("read after end").is_none());
        out
    }

    fn texts(lines: &[(Owned, u64)]) -> Vec<&[u8]> {
        lines
            .iter()
            .map(|(l, _)| match l {
                Owned::Text(t) => t.as_slice(),
                Owned::TooLong(_) => b"<too long>".as_slice(),
            })
            .collect()
    }

    fn sample() -> Vec<u8> {
        let mut s = Vec::new();
        for i in 0..5000 {
            writeln!(
                s,
                "127.0.0.1:{i} [28/Nov/2026:04:20:12.895] fe_http be_app/app1 0/0/1/1/{i} 200 186 - - ---- 1/1/0/0/0 0/0 \"GET /line/{i} HTTP/1.1\""
            )
            .expect("format");
        }
        s
    }

    #[test]
    fn plain_and_gzip_give_the_same_lines_and_offsets() {
        let data = sample();
        let plain = write_plain(&data);
        let gz = write_plain(&gzip(&data));
        let a = read_all(plain.path(), 0, DEFAULT_MAX_LINE);
        let b = read_all(gz.path(), 0, DEFAULT_MAX_LINE);
        assert_eq!(a.len(), 5000);
        assert_eq!(a, b);
        assert_eq!(a.last().map(|l| l.1), Some(data.len() as u64));
        assert!(
            !LineReader::open(plain.path(), 0, 100)
                .expect("open")
                .is_gzip()
        );
        assert!(LineReader::open(gz.path(), 0, 100).expect("open").is_gzip());
    }

    #[test]
    fn gzip_detected_by_magic_not_name_and_multi_member() {
        let mut data = gzip(b"first\nsecond\n");
        data.extend_from_slice(&gzip(b"third\n"));
        let f = write_plain(&data); // no .gz suffix
        let lines = read_all(f.path(), 0, DEFAULT_MAX_LINE);
        assert_eq!(
            texts(&lines),
            vec![b"first".as_slice(), b"second", b"third"]
        );
        assert_eq!(lines[2].1, 19);
    }

    #[test]
    fn resume_from_offset_gives_the_rest() {
        let data = sample();
        for bytes in [data.clone(), gzip(&data)] {
            let f = write_plain(&bytes);
            let all = read_all(f.path(), 0, DEFAULT_MAX_LINE);
            for cut in [0usize, 1, 17, 2500, 4999] {
                let offset = all[cut].1;
                let rest = read_all(f.path(), offset, DEFAULT_MAX_LINE);
                assert_eq!(rest.as_slice(), &all[cut + 1..]);
            }
            let end = all.last().map(|l| l.1).unwrap_or(0);
            assert!(read_all(f.path(), end, DEFAULT_MAX_LINE).is_empty());
            let err = LineReader::open(f.path(), end + 1, DEFAULT_MAX_LINE)
                .err()
                .map(|e| e.kind());
            assert_eq!(err, Some(io::ErrorKind::InvalidInput));
        }
    }

    #[test]
    fn crlf_and_missing_final_newline() {
        let f = write_plain(b"a\r\nb\n\r\nlast");
        let lines = read_all(f.path(), 0, DEFAULT_MAX_LINE);
        assert_eq!(texts(&lines), vec![b"a".as_slice(), b"b", b"", b"last"]);
        assert_eq!(
            lines.iter().map(|l| l.1).collect::<Vec<_>>(),
            vec![3, 5, 7, 11]
        );
    }

    #[test]
    fn empty_file() {
        let f = write_plain(b"");
        assert!(read_all(f.path(), 0, DEFAULT_MAX_LINE).is_empty());
        let g = write_plain(&gzip(b""));
        let mut r = LineReader::open(g.path(), 0, DEFAULT_MAX_LINE).expect("open");
        assert!(r.is_gzip());
        assert!(r.next_lines().expect("read").is_none());
        assert_eq!(r.offset(), 0);
    }

    #[test]
    fn five_megabyte_line_is_skipped_and_neighbours_survive() {
        let mut data = b"before\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', 5 << 20));
        data.extend_from_slice(b"\nafter\n");
        data.extend(std::iter::repeat_n(b'y', 5 << 20)); // and one at the very end
        for bytes in [data.clone(), gzip(&data)] {
            let f = write_plain(&bytes);
            let lines = read_all(f.path(), 0, DEFAULT_MAX_LINE);
            assert_eq!(
                lines,
                vec![
                    (Owned::Text(b"before".to_vec()), 7),
                    (Owned::TooLong(5 << 20), 7 + (5 << 20) + 1),
                    (Owned::Text(b"after".to_vec()), 7 + (5 << 20) + 1 + 6),
                    (Owned::TooLong(5 << 20), data.len() as u64),
                ]
            );
        }
    }

    #[test]
    fn max_line_boundary() {
        let f = write_plain(b"12345\n123456\n1234\n");
        let lines = read_all(f.path(), 0, 5);
        assert_eq!(
            lines,
            vec![
                (Owned::Text(b"12345".to_vec()), 6),
                (Owned::TooLong(6), 13),
                (Owned::Text(b"1234".to_vec()), 18),
            ]
        );
    }

    #[test]
    fn lines_straddling_buffer_refills() {
        // Lines of varied length so that many of them cross the 256 KiB buffer edge.
        let mut data = Vec::new();
        let mut expected = Vec::new();
        for i in 0..20_000usize {
            let line = vec![b'a' + (i % 26) as u8; (i * 37) % 200];
            data.extend_from_slice(&line);
            data.push(b'\n');
            expected.push(line);
        }
        let f = write_plain(&data);
        let lines = read_all(f.path(), 0, 1000);
        let got: Vec<Vec<u8>> = texts(&lines).into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(got, expected);
    }
}
