//! The generator's fixed vocabulary: User-Agents (and which are bots), referrers, `source=`
//! values and the address blocks listeners come from.
//!
//! Public so that tests can see exactly what the logs may contain: the bot flag here *is* the
//! ground truth for `bot_sessions`, and [`ADDRESS_BLOCKS`] lets a test build a small MaxMind
//! database that maps listeners to the same countries as [`crate::TruthSession::country`].

/// The kind of client behind a User-Agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    Browser,
    App,
    Player,
    Speaker,
    Car,
    Tv,
    Watch,
    Tool,
    Bot,
}

/// One User-Agent string as the client sends it (before HAProxy's `#XX` escaping).
#[derive(Clone, Copy, Debug)]
pub struct UserAgent {
    pub ua: &'static str,
    pub kind: ClientKind,
    /// Relative frequency among listeners.
    pub weight: u32,
    /// Browsers send a Referer.
    pub sends_referer: bool,
}

/// HAProxy's `capture request header User-Agent len 128` keeps this many bytes.
pub const UA_CAPTURE_LEN: usize = 128;

impl UserAgent {
    pub fn is_bot(&self) -> bool {
        self.kind == ClientKind::Bot
    }

    /// The User-Agent as it appears in the log (before escaping): cut to [`UA_CAPTURE_LEN`]
    /// bytes. This is the UA of the truth's listener key.
    pub fn logged(&self) -> &'static str {
        &self.ua[..self.ua.len().min(UA_CAPTURE_LEN)]
    }
}

const fn ua(ua: &'static str, kind: ClientKind, weight: u32, sends_referer: bool) -> UserAgent {
    UserAgent {
        ua,
        kind,
        weight,
        sends_referer,
    }
}

use ClientKind::*;

/// Every User-Agent the generator uses. One (iPhone Safari, 135 bytes) is longer than the
/// 128-byte capture and is logged cut short; two carry characters that HAProxy escapes (`"`,
/// `{`, `|`, `}`, `#`, non-ASCII).
pub const USER_AGENTS: &[UserAgent] = &[
    ua(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
        Browser,
        120,
        true,
    ),
    ua(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
        Browser,
        40,
        true,
    ),
    ua(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        Browser,
        40,
        true,
    ),
    ua(
        "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        Browser,
        25,
        true,
    ),
    ua(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
        Browser,
        60,
        true,
    ),
    ua(
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
        Browser,
        60,
        true,
    ),
    ua(
        "AppleCoreMedia/1.0.0.22B83 (iPhone; U; CPU OS 18_1 like Mac OS X; de_de)",
        App,
        80,
        false,
    ),
    ua(
        "RadioApp/4.2.1 (iPhone; iOS 18.1; Scale/3.00)",
        App,
        50,
        false,
    ),
    ua(
        "Dalvik/2.1.0 (Linux; U; Android 14; Pixel 8 Build/AP2A.240905.003)",
        App,
        45,
        false,
    ),
    ua(
        "TuneIn Radio/29.3 (Android 14; SM-A546B; Java)",
        App,
        40,
        false,
    ),
    ua("ExoPlayerLib/2.19.1", App, 20, false),
    ua("Radio K\u{f6}ln/3.1 (iPhone; iOS 17.6)", App, 10, false),
    ua("FooRadio/1.0 (build #42; \"beta\"|{test})", App, 5, false),
    ua("VLC/3.0.20 LibVLC/3.0.20", Player, 30, false),
    ua("VLC/3.0.18 LibVLC/3.0.18", Player, 10, false),
    ua("Lavf/60.16.100", Player, 8, false),
    ua("foobar2000/2.1.5", Player, 6, false),
    ua(
        "iTunes/12.13 (Windows; Microsoft Windows 10 x64) AppleWebKit/7618.1.15.11.14",
        Player,
        6,
        false,
    ),
    ua("Winamp/5.666", Player, 3, false),
    ua(
        "AlexaMediaPlayer/2.1.4676.0 (Linux;Android 5.1.1) ExoPlayerLib/1.5.9",
        Speaker,
        30,
        false,
    ),
    ua(
        "Linux UPnP/1.0 Sonos/80.1-55014 (ZPS27)",
        Speaker,
        20,
        false,
    ),
    ua(
        "Mozilla/5.0 (Linux; Android) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36 CrKey/1.56.500000",
        Speaker,
        15,
        false,
    ),
    ua(
        "Mozilla/5.0 (X11; Linux) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/106.0.0.0 Safari/537.36 Tesla/2024.38.6",
        Car,
        8,
        false,
    ),
    ua(
        "Dalvik/2.1.0 (Linux; U; Android 11; Android Automotive Build/RQ3A.211001.001)",
        Car,
        6,
        false,
    ),
    ua(
        "Mozilla/5.0 (SMART-TV; LINUX; Tizen 7.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/7.0 TV Safari/537.36",
        Tv,
        8,
        false,
    ),
    ua(
        "AppleCoreMedia/1.0.0.22R359 (Watch; U; CPU OS 11_1 like Mac OS X; en_us)",
        Watch,
        4,
        false,
    ),
    ua("curl/8.4.0", Tool, 4, false),
    ua(
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        Bot,
        6,
        false,
    ),
    ua(
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        Bot,
        4,
        false,
    ),
    ua(
        "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
        Bot,
        6,
        false,
    ),
    ua(
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        Bot,
        3,
        false,
    ),
    ua(
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        Bot,
        3,
        false,
    ),
];

/// Whether a User-Agent string (as logged, unescaped) is one of the generator's bots.
pub fn is_bot_ua(ua: &str) -> bool {
    USER_AGENTS.iter().any(|u| u.logged() == ua && u.is_bot())
}

/// Referer headers browsers send; the truth's `referrer_host` is the host part.
pub const REFERERS: &[(&str, &str)] = &[
    (
        "https://www.example-radio.de/player",
        "www.example-radio.de",
    ),
    ("https://www.google.com/", "www.google.com"),
    ("https://www.facebook.com/", "www.facebook.com"),
    ("https://tunein.com/radio/s12345/", "tunein.com"),
    (
        "https://player.example.org/embed?theme=dark",
        "player.example.org",
    ),
];

/// Values players put in a `?source=` query parameter.
pub const SOURCES: &[&str] = &["facebook", "app", "newsletter", "alexa", "website"];

/// Address blocks with the country the generator attributes to them: (network, prefix length,
/// ISO country). IPv6 blocks are /32 or shorter; every IPv6 listener has its own /64 inside one.
pub const ADDRESS_BLOCKS: &[(&str, u8, &str)] = &[
    ("84.128.0.0", 10, "DE"),
    ("90.0.0.0", 9, "FR"),
    ("86.0.0.0", 11, "GB"),
    ("73.0.0.0", 8, "US"),
    ("49.32.0.0", 11, "IN"),
    ("177.0.0.0", 10, "BR"),
    ("2003::", 19, "DE"),
    ("2a01:c000::", 19, "FR"),
    ("2600:1700::", 24, "US"),
    ("2405:200::", 29, "IN"),
];

/// Addresses of the scanners and misconfigured clients that produce the noise lines; never a
/// listener's address.
pub const NOISE_BLOCK: (&str, u8) = ("45.155.204.0", 22);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_fit_the_capture_length_and_are_distinct() {
        for (i, u) in USER_AGENTS.iter().enumerate() {
            assert!(u.ua.is_ascii() || u.ua.len() <= UA_CAPTURE_LEN, "{}", u.ua);
            assert!(USER_AGENTS[..i].iter().all(|o| o.logged() != u.logged()));
            // Clear bots say so; nobody else does.
            let says_bot =
                u.ua.to_ascii_lowercase().contains("bot") || u.ua.contains("externalhit");
            assert_eq!(says_bot, u.is_bot(), "{}", u.ua);
        }
    }

    #[test]
    fn one_user_agent_is_cut_by_the_capture() {
        let long: Vec<_> = USER_AGENTS
            .iter()
            .filter(|u| u.ua.len() > UA_CAPTURE_LEN)
            .collect();
        assert_eq!(long.len(), 1);
        assert_eq!(long[0].logged().len(), UA_CAPTURE_LEN);
    }
}
