//! Loading the OPAWG user-agents-v2 pattern files (`apps.json`, `bots.json`, …).
//!
//! Each file's patterns are compiled into one `RegexSet`, so a UA is checked against a whole
//! file in one pass; the lowest matching index is the file's "first entry matched". The
//! patterns are written for JavaScript/PCRE: the few that Rust's `regex` cannot compile
//! (lookaround, backreferences) are skipped and counted rather than failing the load.

use std::path::{Path, PathBuf};

use regex::bytes::{RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::UaError;

/// The files' JSON, as far as earshot uses it; other keys are allowed and ignored.
#[derive(Deserialize)]
struct FileJson {
    entries: Vec<EntryJson>,
}

#[derive(Deserialize)]
struct EntryJson {
    name: String,
    pattern: String,
    #[serde(default)]
    category: Option<String>,
}

/// One usable entry of a pattern file, in file order (skipped entries are left out).
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub name: String,
    pub category: Option<String>,
}

/// An OPAWG entry whose pattern Rust's `regex` cannot compile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedPattern {
    pub file: String,
    pub name: String,
    pub reason: String,
}

/// One compiled pattern file.
pub(crate) struct PatternFile {
    entries: Vec<Entry>,
    set: RegexSet,
}

impl PatternFile {
    /// The first entry (in file order) whose pattern matches.
    pub fn first_match(&self, ua: &[u8]) -> Option<&Entry> {
        // `matches` iterates in index order, so the first one is the file's first entry.
        let first = self.set.matches(ua).iter().next()?;
        self.entries.get(first)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Compiles one pattern the way the file's set compiles it; `Err` says why it cannot be used.
fn builder_for(pattern: &str) -> Result<(), regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .size_limit(SIZE_LIMIT)
        .build()
        .map(|_| ())
}

const SIZE_LIMIT: usize = 64 << 20;

fn set_builder<I, S>(patterns: I) -> RegexSetBuilder
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut b = RegexSetBuilder::new(patterns);
    // JavaScript's `\d`, `\w` and `\b` are ASCII; without Unicode classes the automata stay small.
    b.unicode(false)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(SIZE_LIMIT);
    b
}

/// Reads and compiles `dir/<stem>.json`, appending skipped patterns to `skipped`.
pub(crate) fn load(
    dir: &Path,
    stem: &str,
    skipped: &mut Vec<SkippedPattern>,
) -> Result<PatternFile, UaError> {
    let path = dir.join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).map_err(|source| UaError::Read {
        path: path.clone(),
        source,
    })?;
    let json: FileJson = serde_json::from_str(&text).map_err(|source| UaError::Parse {
        path: path.clone(),
        source,
    })?;
    compile(path, stem, json, skipped)
}

fn compile(
    path: PathBuf,
    stem: &str,
    json: FileJson,
    skipped: &mut Vec<SkippedPattern>,
) -> Result<PatternFile, UaError> {
    if json.entries.is_empty() {
        return Err(UaError::Invalid {
            path,
            reason: "\"entries\" is empty".into(),
        });
    }
    for (i, e) in json.entries.iter().enumerate() {
        if e.name.is_empty() || e.pattern.is_empty() {
            return Err(UaError::Invalid {
                path,
                reason: format!("entry {i} has an empty \"name\" or \"pattern\""),
            });
        }
    }
    // Fast path: every pattern compiles, as is usual. Only when the set fails is each pattern
    // compiled alone to find the ones to skip.
    let all = set_builder(json.entries.iter().map(|e| e.pattern.as_str())).build();
    let (entries, set) = match all {
        Ok(set) => {
            let entries = json.entries.into_iter().map(|e| Entry {
                name: e.name,
                category: e.category,
            });
            (entries.collect::<Vec<_>>(), set)
        }
        Err(_) => {
            let mut entries = Vec::new();
            let mut patterns = Vec::new();
            for e in json.entries {
                match builder_for(&e.pattern) {
                    Ok(()) => {
                        patterns.push(e.pattern);
                        entries.push(Entry {
                            name: e.name,
                            category: e.category,
                        });
                    }
                    Err(err) => {
                        let reason = err.to_string();
                        tracing::warn!(
                            file = %path.display(),
                            entry = %e.name,
                            pattern = %e.pattern,
                            "skipping OPAWG pattern that Rust's regex cannot compile: {reason}"
                        );
                        skipped.push(SkippedPattern {
                            file: stem.to_string(),
                            name: e.name,
                            reason,
                        });
                    }
                }
            }
            let set = set_builder(&patterns)
                .build()
                .map_err(|source| UaError::Build {
                    path: path.clone(),
                    source,
                })?;
            (entries, set)
        }
    };
    if entries.is_empty() {
        return Err(UaError::Invalid {
            path,
            reason: "no entry has a usable pattern".into(),
        });
    }
    Ok(PatternFile { entries, set })
}

#[cfg(test)]
pub(crate) fn compile_str(
    stem: &str,
    text: &str,
    skipped: &mut Vec<SkippedPattern>,
) -> Result<PatternFile, UaError> {
    let path = PathBuf::from(format!("{stem}.json"));
    let json: FileJson = serde_json::from_str(text).map_err(|source| UaError::Parse {
        path: path.clone(),
        source,
    })?;
    compile(path, stem, json, skipped)
}
