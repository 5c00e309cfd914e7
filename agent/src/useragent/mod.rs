//! User-Agent classification: the `client`, `device` and `os` dimensions and the bot flag.
//!
//! Bot sessions are left out of every listener metric, so a false "bot" hides a real listener
//! and a missed bot inflates the audience; the rules lean towards naming a bot only on clear
//! evidence (a known name, a bot word that is not part of a phone brand or an app's name, the
//! "+https://" contact-URL convention).
//!
//! Two rule sources:
//! - the built-in rules (`builtin.rs`), tuned for what radio platforms see: browsers, radio and
//!   podcast apps, desktop players, smart speakers and TVs, HTTP libraries, crawlers and uptime
//!   monitors;
//! - optionally the OPAWG user-agents-v2 files, which know hundreds of podcast apps and bots.
//!
//! Where both have an answer the more specific one wins, in this order: an OPAWG bot, an OPAWG
//! app, a built-in bot, a built-in app or player, an OPAWG library, a built-in library, a
//! browser (OPAWG's name, unless the built-in rules know a finer family such as Samsung
//! Internet), and last the UA's own leading product token ("Radio/2.1" → "Radio"). An OPAWG
//! library with `category: "bot"` (Java, Go, aiohttp, …) is a bot, except ffmpeg and okhttp:
//! OPAWG judges them for podcast downloads, but on live radio they are what many real players
//! (ffmpeg-based players, Android apps on OkHttp) send. The built-in rules alone treat HTTP
//! libraries as clients, not bots; with OPAWG, its bots.json also makes curl, Wget and
//! python-requests bots.
//!
//! Device and OS come from the UA's platform tokens. OPAWG's `devices.json`, when loaded, fills
//! them in where the built-in rules found nothing, and turns a phone/tablet/computer into the
//! speaker, TV, watch or car it names (see `opawg_device` for why not more).
//!
//! Classification is pure and allocation-light, but not free (several `RegexSet` passes, a
//! few µs): callers cache the result per distinct UA.

mod builtin;
mod opawg;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use regex::bytes::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};

use builtin::{ClientKind, DeviceGuess};
pub use opawg::SkippedPattern;

/// What a User-Agent says about the listener's software and hardware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UaInfo {
    /// App, player or browser family ("VLC", "Chrome", "TuneIn", "curl", …); "unknown" when
    /// nothing matched. For a bot, the bot's name.
    pub client: String,
    /// One of `DEVICES`.
    pub device: &'static str,
    /// "iOS", "Android", "Windows", "macOS", "Linux", "ChromeOS", "watchOS", "tvOS", … or
    /// "unknown".
    pub os: String,
    /// A crawler, monitor or other non-listener: its sessions are `bot_sessions`.
    pub bot: bool,
}

/// Every value `UaInfo::device` takes.
pub const DEVICES: [&str; 9] = [
    "phone", "tablet", "computer", "speaker", "tv", "car", "watch", "console", "unknown",
];

pub const UNKNOWN: &str = "unknown";

impl UaInfo {
    fn unknown() -> UaInfo {
        UaInfo {
            client: UNKNOWN.into(),
            device: UNKNOWN,
            os: UNKNOWN.into(),
            bot: false,
        }
    }

    fn bot(name: &str) -> UaInfo {
        // A bot's "device" is meaningless (Googlebot claims to be an Android phone).
        UaInfo {
            client: name.into(),
            device: UNKNOWN,
            os: UNKNOWN.into(),
            bot: true,
        }
    }
}

/// Why OPAWG pattern files could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum UaError {
    #[error("cannot read OPAWG pattern file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("OPAWG pattern file {} is not valid JSON of the expected shape: {source}", path.display())]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("OPAWG pattern file {} is invalid: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error("OPAWG pattern file {}: cannot build its pattern set: {source}", path.display())]
    Build {
        path: PathBuf,
        #[source]
        source: regex::Error,
    },
}

/// Classifies User-Agents; build once, share between threads (`Send + Sync`).
pub struct UaClassifier {
    builtin: Builtin,
    opawg: Option<Opawg>,
}

struct Builtin {
    clients: RegexSet,
    devices: RegexSet,
    oses: RegexSet,
    bot_word: Regex,
    bot_url: Regex,
    product: Regex,
}

struct Opawg {
    bots: opawg::PatternFile,
    apps: opawg::PatternFile,
    libraries: opawg::PatternFile,
    browsers: opawg::PatternFile,
    devices: opawg::PatternFile,
    skipped: Vec<SkippedPattern>,
}

/// Browser families OPAWG's browsers.json also names. A built-in family not in this list
/// (Samsung Internet, Vivaldi, Android WebView, …) is finer than what OPAWG says (mostly
/// "Chrome"), so it is kept.
const OPAWG_BROWSER_FAMILIES: &[&str] = &[
    "Chrome",
    "Safari",
    "Firefox",
    "Edge",
    "Opera",
    "Brave",
    "Internet Explorer",
    "iOS WebView",
];

/// A client verdict before the two sources are merged.
#[derive(Debug)]
struct ClientVerdict<'a> {
    name: std::borrow::Cow<'a, str>,
    kind: ClientKind,
    /// Came from the product-token fallback rather than a rule.
    fallback: bool,
}

fn set(patterns: impl IntoIterator<Item = &'static str>) -> RegexSet {
    RegexSetBuilder::new(patterns)
        .unicode(false)
        .build()
        .expect("built-in User-Agent rules compile")
}

fn one(pattern: &str) -> Regex {
    RegexBuilder::new(pattern)
        .unicode(false)
        .build()
        .expect("built-in User-Agent rule compiles")
}

impl Builtin {
    fn new() -> Builtin {
        Builtin {
            clients: set(builtin::CLIENT_RULES.iter().map(|r| r.pattern)),
            devices: set(builtin::DEVICE_RULES.iter().map(|r| r.pattern)),
            oses: set(builtin::OS_RULES.iter().map(|r| r.pattern)),
            bot_word: one(builtin::BOT_WORD),
            bot_url: one(builtin::BOT_URL),
            product: one(builtin::PRODUCT_TOKEN),
        }
    }

    fn client<'a>(&self, ua: &'a [u8]) -> Option<ClientVerdict<'a>> {
        let rule = self
            .clients
            .matches(ua)
            .iter()
            .next()
            .map(|i| &builtin::CLIENT_RULES[i]);
        if let Some(r) = rule
            && r.kind == ClientKind::Bot
        {
            return Some(ClientVerdict {
                name: r.name.into(),
                kind: r.kind,
                fallback: false,
            });
        }
        if let Some(name) = self.bot_evidence(ua) {
            return Some(ClientVerdict {
                name,
                kind: ClientKind::Bot,
                fallback: false,
            });
        }
        if let Some(r) = rule {
            return Some(ClientVerdict {
                name: r.name.into(),
                kind: r.kind,
                fallback: false,
            });
        }
        let caps = self.product.captures(ua)?;
        let token = caps.get(1)?.as_bytes();
        if token.eq_ignore_ascii_case(b"Mozilla") {
            return None;
        }
        let name = percent_decode(token);
        Some(ClientVerdict {
            name: name.into(),
            kind: ClientKind::App,
            fallback: true,
        })
    }

    /// A bot word or contact URL that no rule named: the bot's name is the word.
    fn bot_evidence<'a>(&self, ua: &'a [u8]) -> Option<std::borrow::Cow<'a, str>> {
        for m in self.bot_word.find_iter(ua) {
            let word = String::from_utf8_lossy(m.as_bytes());
            if builtin::is_innocent_bot_word(&word) {
                continue;
            }
            let word = word.trim_matches(|c| matches!(c, '.' | '-' | '_'));
            return Some(if word.is_empty() {
                "bot".into()
            } else {
                word.to_string().into()
            });
        }
        if self.bot_url.is_match(ua) {
            let name = self
                .product
                .captures(ua)
                .and_then(|c| c.get(1))
                .filter(|t| !t.as_bytes().eq_ignore_ascii_case(b"Mozilla"))
                .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
                .unwrap_or_else(|| "bot".to_string());
            return Some(name.into());
        }
        None
    }

    fn device(&self, ua: &[u8]) -> &'static str {
        let Some(i) = self.devices.matches(ua).iter().next() else {
            return UNKNOWN;
        };
        match builtin::DEVICE_RULES[i].device {
            DeviceGuess::Is(d) => d,
            DeviceGuess::AndroidBrowser => {
                if memchr::memmem::find(ua, b"Mobile").is_some() {
                    "phone"
                } else {
                    "tablet"
                }
            }
        }
    }

    fn os(&self, ua: &[u8]) -> &'static str {
        match self.oses.matches(ua).iter().next() {
            Some(i) => builtin::OS_RULES[i].os,
            None => UNKNOWN,
        }
    }
}

/// "My%20Radio" → "My Radio" (iOS apps percent-encode their bundle name in the UA).
fn percent_decode(token: &[u8]) -> String {
    let mut out = Vec::with_capacity(token.len());
    let mut i = 0;
    while i < token.len() {
        if token[i] == b'%'
            && i + 2 < token.len()
            && let (Some(h), Some(l)) = (hex(token[i + 1]), hex(token[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(token[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).trim().to_string()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The device an OPAWG `devices.json` match makes of the built-in guess.
///
/// The built-in guess stands unless it is "unknown", or OPAWG names a specific kind (speaker,
/// TV, watch, car) where the built-in rules only saw a phone, tablet or computer. devices.json
/// is first-match over broad words ("Android", "CFNetwork", "OS X"), so on its own it makes
/// an Echo (whose player says "Linux;Android") a phone, a Mac app a phone and an Apple Watch a
/// computer; its brand lists of speakers and TVs are where it adds knowledge.
fn opawg_device(entry: &opawg::Entry, builtin_device: &'static str) -> Option<&'static str> {
    let theirs = match entry.category.as_deref()? {
        "smart_speaker" => "speaker",
        "smart_tv" => "tv",
        "watch" => "watch",
        "auto" => "car",
        "computer" => "computer",
        // OPAWG's "mobile" does not tell phones from tablets; its entry names do.
        "mobile" if entry.name.contains("iPad") || entry.name.contains("Tablet") => "tablet",
        "mobile" => "phone",
        _ => return None,
    };
    let specific = |d: &str| matches!(d, "speaker" | "tv" | "watch" | "car" | "console");
    if builtin_device == UNKNOWN || (specific(theirs) && !specific(builtin_device)) {
        Some(theirs)
    } else {
        None
    }
}

fn opawg_os(entry: &opawg::Entry) -> Option<&'static str> {
    Some(match entry.name.as_str() {
        "Apple iPad" | "Apple iPhone" | "Apple iPod" | "Apple HomePod" => "iOS",
        "Apple TV" => "tvOS",
        "Apple Watch" => "watchOS",
        "Apple Computer" => "macOS",
        "Google Chromebook" => "ChromeOS",
        "Android Tablet" | "Android Phone" => "Android",
        "Windows Computer" => "Windows",
        _ => return None,
    })
}

impl UaClassifier {
    /// The built-in rules only.
    pub fn builtin() -> UaClassifier {
        UaClassifier {
            builtin: Builtin::new(),
            opawg: None,
        }
    }

    /// Built-in rules plus the OPAWG user-agents-v2 files found in `dir` (apps, bots, browsers,
    /// libraries, devices). OPAWG matches take precedence over built-in ones for client and
    /// bot (see the module documentation for the exact order); devices.json gives the device
    /// where it matches. A missing or invalid file is an error naming the file and what is
    /// wrong; a pattern Rust's `regex` cannot compile is skipped with a warning
    /// (`opawg_skipped`).
    pub fn with_opawg(dir: &Path) -> Result<UaClassifier, UaError> {
        let mut skipped = Vec::new();
        let bots = opawg::load(dir, "bots", &mut skipped)?;
        let apps = opawg::load(dir, "apps", &mut skipped)?;
        let libraries = opawg::load(dir, "libraries", &mut skipped)?;
        let browsers = opawg::load(dir, "browsers", &mut skipped)?;
        let devices = opawg::load(dir, "devices", &mut skipped)?;
        Ok(UaClassifier {
            builtin: Builtin::new(),
            opawg: Some(Opawg {
                bots,
                apps,
                libraries,
                browsers,
                devices,
                skipped,
            }),
        })
    }

    /// OPAWG entries left out because their pattern does not compile with Rust's `regex`.
    pub fn opawg_skipped(&self) -> &[SkippedPattern] {
        self.opawg.as_ref().map_or(&[], |o| &o.skipped)
    }

    /// How many OPAWG entries are in use (0 without OPAWG).
    pub fn opawg_entries(&self) -> usize {
        self.opawg.as_ref().map_or(0, |o| {
            o.bots.len() + o.apps.len() + o.libraries.len() + o.browsers.len() + o.devices.len()
        })
    }

    /// How many built-in rules there are (client, device, OS, and the two bot heuristics).
    pub fn builtin_rules() -> usize {
        builtin::CLIENT_RULES.len() + builtin::DEVICE_RULES.len() + builtin::OS_RULES.len() + 2
    }

    pub fn classify(&self, user_agent: &str) -> UaInfo {
        let ua = user_agent.trim();
        if ua.is_empty() || ua == "-" {
            return UaInfo::unknown();
        }
        let bytes = ua.as_bytes();
        let opawg = self.opawg.as_ref();

        if let Some(e) = opawg.and_then(|o| o.bots.first_match(bytes)) {
            return UaInfo::bot(&e.name);
        }
        let own = self.builtin.client(bytes);
        let (client, bot) = match opawg.and_then(|o| o.client(bytes)) {
            Some(theirs) => merge(theirs, own),
            None => match own {
                Some(v) => (v.name.into_owned(), v.kind == ClientKind::Bot),
                None => (UNKNOWN.to_string(), false),
            },
        };
        if bot {
            return UaInfo::bot(&client);
        }

        let mut device = self.builtin.device(bytes);
        let mut os = self.builtin.os(bytes);
        if let Some(e) = opawg.and_then(|o| o.devices.first_match(bytes)) {
            if let Some(d) = opawg_device(e, device) {
                device = d;
            }
            if os == UNKNOWN
                && let Some(o) = opawg_os(e)
            {
                os = o;
            }
        }
        UaInfo {
            client,
            device,
            os: os.to_string(),
            bot: false,
        }
    }
}

/// Libraries OPAWG marks `category: "bot"` that real radio players send as their own UA:
/// ffmpeg-based players (`Lavf/`) and Android apps on OkHttp.
const LISTENER_LIBRARIES: &[&str] = &["ffmpeg", "okhttp"];

/// Merges an OPAWG app, library or browser match with the built-in verdict (module docs).
fn merge(theirs: OpawgMatch<'_>, own: Option<ClientVerdict<'_>>) -> (String, bool) {
    let OpawgMatch { tier, entry } = theirs;
    if tier == OpawgTier::App {
        return (entry.name.clone(), false);
    }
    if let Some(v) = &own {
        let keep_own = match v.kind {
            ClientKind::Bot => true,
            ClientKind::App => !v.fallback,
            ClientKind::Library => tier == OpawgTier::Browser,
            ClientKind::Browser => {
                tier == OpawgTier::Browser && !OPAWG_BROWSER_FAMILIES.contains(&&*v.name)
            }
        };
        if keep_own {
            return (v.name.to_string(), v.kind == ClientKind::Bot);
        }
    }
    let bot = tier == OpawgTier::Library
        && entry.category.as_deref() == Some("bot")
        && !LISTENER_LIBRARIES.contains(&entry.name.as_str());
    (entry.name.clone(), bot)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpawgTier {
    App,
    Library,
    Browser,
}

struct OpawgMatch<'a> {
    tier: OpawgTier,
    entry: &'a opawg::Entry,
}

impl Opawg {
    /// The first OPAWG entry matched in file order apps, libraries, browsers (bots are checked
    /// before).
    fn client(&self, ua: &[u8]) -> Option<OpawgMatch<'_>> {
        let tiers = [
            (OpawgTier::App, &self.apps),
            (OpawgTier::Library, &self.libraries),
            (OpawgTier::Browser, &self.browsers),
        ];
        tiers
            .into_iter()
            .find_map(|(tier, file)| file.first_match(ua).map(|entry| OpawgMatch { tier, entry }))
    }
}
