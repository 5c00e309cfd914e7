//! Bytes → text → records for the store reports: gzip sniffing, BOM-driven decoding (Google
//! Play writes UTF-16LE with a BOM, Apple plain UTF-8), and a small RFC 4180 CSV reader.
//! The reports are a few kilobytes of simple, header-first tables, so a dedicated CSV crate
//! would buy nothing but a dependency.

use std::io::Read as _;

/// Why report bytes could not be turned into text.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    #[error("gzip stream is corrupt: {0}")]
    Gzip(std::io::Error),
    #[error("UTF-16 text has an odd number of bytes ({0})")]
    OddUtf16Length(usize),
    #[error("UTF-16 text has an unpaired surrogate at byte {0}")]
    BadUtf16(usize),
    #[error("text is neither UTF-8 nor UTF-16 with a BOM (invalid UTF-8 at byte {0})")]
    BadUtf8(usize),
    #[error("line {line}: unterminated quoted field")]
    UnterminatedQuote { line: usize },
}

/// Whether `bytes` start with the gzip magic number.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// Gunzips `bytes` if they are gzip (multi-member streams included), else borrows them.
pub fn maybe_gunzip(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, TextError> {
    if !is_gzip(bytes) {
        return Ok(bytes.into());
    }
    let mut out = Vec::with_capacity(bytes.len() * 8);
    flate2::read::MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(TextError::Gzip)?;
    Ok(out.into())
}

/// Decodes by BOM: `FF FE` UTF-16LE, `FE FF` UTF-16BE, `EF BB BF` or none UTF-8. The BOM is
/// dropped.
pub fn decode_text(bytes: &[u8]) -> Result<String, TextError> {
    if let Some(rest) = bytes.strip_prefix(&[0xff, 0xfe]) {
        decode_utf16(rest, u16::from_le_bytes)
    } else if let Some(rest) = bytes.strip_prefix(&[0xfe, 0xff]) {
        decode_utf16(rest, u16::from_be_bytes)
    } else {
        let rest = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(bytes);
        std::str::from_utf8(rest)
            .map(str::to_owned)
            .map_err(|e| TextError::BadUtf8(e.valid_up_to()))
    }
}

fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, TextError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(TextError::OddUtf16Length(bytes.len()));
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    let mut out = String::with_capacity(bytes.len() / 2);
    for (i, ch) in char::decode_utf16(units).enumerate() {
        // `i` counts chars, not units; close enough to point at the problem.
        out.push(ch.map_err(|_| TextError::BadUtf16(2 + 2 * i))?);
    }
    Ok(out)
}

/// One parsed record and the 1-based line it started on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Splits RFC 4180 CSV (quotes, doubled quotes, `\r\n` or `\n`) into records; blank lines are
/// skipped, so a trailing empty line is harmless.
pub fn parse_csv(text: &str) -> Result<Vec<Record>, TextError> {
    let mut records = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut start_line = 1;
    let mut in_quotes = false;
    let mut chars = text.chars().peekable();
    let mut any = false; // whether the current record has any content
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                any = true;
            }
            ',' => {
                fields.push(std::mem::take(&mut field));
                any = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\r' => {
                if any || !field.is_empty() {
                    fields.push(std::mem::take(&mut field));
                    records.push(Record {
                        line: start_line,
                        fields: std::mem::take(&mut fields),
                    });
                }
                any = false;
                line += 1;
                start_line = line;
            }
            _ => {
                field.push(c);
                any = true;
            }
        }
    }
    if in_quotes {
        return Err(TextError::UnterminatedQuote { line: start_line });
    }
    if any || !field.is_empty() {
        fields.push(field);
        records.push(Record {
            line: start_line,
            fields,
        });
    }
    Ok(records)
}

/// Splits tab-separated text (no quoting, as Apple writes it) into records; blank lines skipped.
pub fn parse_tsv(text: &str) -> Vec<Record> {
    text.split('\n')
        .enumerate()
        .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(line, l)| Record {
            line,
            fields: l.split('\t').map(|f| f.trim().to_owned()).collect(),
        })
        .collect()
}

/// Finds columns by case-insensitive, whitespace-trimmed header name.
pub struct Header {
    names: Vec<String>,
}

impl Header {
    pub fn new(fields: &[String]) -> Self {
        Self {
            names: fields.iter().map(|f| f.trim().to_lowercase()).collect(),
        }
    }

    /// The index of the first column named like any of `names` (lower-case).
    pub fn find(&self, names: &[&str]) -> Option<usize> {
        self.names.iter().position(|n| names.contains(&n.as_str()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(&[name]).is_some()
    }
}

/// The trimmed cell at `idx`, `None` when the column is absent, the row short or the cell blank.
pub fn cell(fields: &[String], idx: Option<usize>) -> Option<&str> {
    let v = fields.get(idx?)?.trim();
    (!v.is_empty()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_by_bom() {
        let mut le = vec![0xff, 0xfe];
        le.extend("Date,Ü\r\n".encode_utf16().flat_map(u16::to_le_bytes));
        assert_eq!(decode_text(&le).unwrap(), "Date,Ü\r\n");
        let mut be = vec![0xfe, 0xff];
        be.extend("ab".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(decode_text(&be).unwrap(), "ab");
        assert_eq!(decode_text(b"\xef\xbb\xbfab").unwrap(), "ab");
        assert_eq!(decode_text(b"ab").unwrap(), "ab");
        assert!(matches!(
            decode_text(&[0xff, 0xfe, 0x41]),
            Err(TextError::OddUtf16Length(1))
        ));
        assert!(matches!(
            decode_text(&[0xff, 0xfe, 0x00, 0xd8]),
            Err(TextError::BadUtf16(_))
        ));
        assert!(matches!(decode_text(b"a\xff"), Err(TextError::BadUtf8(1))));
    }

    #[test]
    fn csv_quotes_crlf_and_blank_lines() {
        let recs = parse_csv("a,b,c\r\n\"x,1\",\"say \"\"hi\"\"\",\r\n\r\n1,,3\n").unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].fields, ["x,1", "say \"hi\"", ""]);
        assert_eq!(recs[2].fields, ["1", "", "3"]);
        assert_eq!(recs[2].line, 4);
        assert_eq!(parse_csv("a\nb").unwrap()[1].fields, ["b"]);
        assert!(matches!(
            parse_csv("a\n\"b"),
            Err(TextError::UnterminatedQuote { line: 2 })
        ));
    }

    #[test]
    fn tsv_and_header_lookup() {
        let recs = parse_tsv("Provider\tSKU \r\nAPPLE\tabc\n\n");
        assert_eq!(recs.len(), 2);
        let h = Header::new(&recs[0].fields);
        assert_eq!(h.find(&["sku"]), Some(1));
        assert_eq!(cell(&recs[1].fields, h.find(&["sku"])), Some("abc"));
        assert_eq!(cell(&recs[1].fields, Some(7)), None);
    }

    #[test]
    fn gunzip_only_when_gzip() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"hello").unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(&*maybe_gunzip(&gz).unwrap(), b"hello");
        assert_eq!(&*maybe_gunzip(b"plain").unwrap(), b"plain");
        assert!(maybe_gunzip(&gz[..gz.len() - 4]).is_err());
    }
}
