//! The built-in User-Agent rules: what radio platforms actually see in their logs.
//!
//! Three ordered tables, each compiled into one `RegexSet` where the first (lowest-index)
//! matching rule wins: `CLIENT_RULES` (bots first, then apps, players, libraries, browsers),
//! `DEVICE_RULES` and `OS_RULES`. Device and OS are read from the UA's platform tokens, not
//! from the client, so "VLC on Android" and "VLC on Windows" both come out right; the device
//! table lists the specific kinds (watch, car, speaker, console, tv) before the general ones
//! (tablet, phone, computer) so that e.g. an Echo, whose player says "Linux;Android", is a
//! speaker. Patterns are matched on bytes without Unicode classes (`\d` is `[0-9]`, as in
//! JavaScript), which keeps the sets small and fast.

/// What a client rule says about the UA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientKind {
    Bot,
    App,
    Library,
    Browser,
}

pub(crate) struct ClientRule {
    pub name: &'static str,
    pub kind: ClientKind,
    pub pattern: &'static str,
}

const fn bot(name: &'static str, pattern: &'static str) -> ClientRule {
    ClientRule {
        name,
        kind: ClientKind::Bot,
        pattern,
    }
}
const fn app(name: &'static str, pattern: &'static str) -> ClientRule {
    ClientRule {
        name,
        kind: ClientKind::App,
        pattern,
    }
}
const fn lib(name: &'static str, pattern: &'static str) -> ClientRule {
    ClientRule {
        name,
        kind: ClientKind::Library,
        pattern,
    }
}
const fn browser(name: &'static str, pattern: &'static str) -> ClientRule {
    ClientRule {
        name,
        kind: ClientKind::Browser,
        pattern,
    }
}

/// Client and bot rules, first match wins.
pub(crate) const CLIENT_RULES: &[ClientRule] = &[
    // --- Search engines, link previews, AI crawlers.
    bot(
        "Googlebot",
        r"Googlebot|AdsBot-Google|Mediapartners-Google|Google-InspectionTool|GoogleOther|Storebot-Google|Feedfetcher-Google|APIs-Google|Google-Read-Aloud",
    ),
    bot("bingbot", r"bingbot|BingPreview|msnbot|adidxbot"),
    bot("YandexBot", r"Yandex[A-Za-z]*Bot"),
    bot("Baiduspider", r"Baiduspider"),
    bot("DuckDuckBot", r"DuckDuckBot|DuckAssistBot"),
    bot("Applebot", r"Applebot"),
    bot(
        "facebookexternalhit",
        r"facebookexternalhit|facebookcatalog|meta-externalagent",
    ),
    bot("Twitterbot", r"Twitterbot"),
    bot("Slackbot", r"Slackbot|Slack-ImgProxy"),
    bot("Discordbot", r"Discordbot"),
    bot("TelegramBot", r"TelegramBot"),
    bot("AhrefsBot", r"AhrefsBot"),
    bot("SemrushBot", r"SemrushBot"),
    bot("MJ12bot", r"MJ12bot"),
    bot("PetalBot", r"PetalBot"),
    bot("Bytespider", r"Bytespider"),
    bot("GPTBot", r"GPTBot|ChatGPT-User|OAI-SearchBot"),
    bot("ClaudeBot", r"ClaudeBot|Claude-Web|anthropic-ai"),
    bot("CCBot", r"CCBot"),
    bot("Amazonbot", r"Amazonbot"),
    bot("Yahoo! Slurp", r"Yahoo! Slurp"),
    // --- Uptime and stream monitors.
    bot("UptimeRobot", r"UptimeRobot"),
    bot("Pingdom", r"Pingdom"),
    bot("StatusCake", r"StatusCake"),
    bot("Site24x7", r"Site24x7"),
    bot("check_http", r"check_http|check_curl|check_icecast"),
    bot("Nagios", r"Nagios"),
    bot("Zabbix", r"Zabbix"),
    bot("Uptime Kuma", r"Uptime-Kuma"),
    bot("Better Stack", r"Better ?Uptime|BetterStack"),
    bot("HetrixTools", r"HetrixTools"),
    bot("Freshping", r"Freshping"),
    bot("updown.io", r"updown\.io"),
    bot(
        "Datadog Synthetics",
        r"DatadogSynthetics|Datadog/Synthetics",
    ),
    bot(
        "New Relic Synthetics",
        r"NewRelicPinger|New Relic Synthetics",
    ),
    bot("Prometheus", r"blackbox[_-]exporter|^Prometheus/"),
    bot("Icecast monitor", r"(?i)icecast[ _-]?monitor"),
    bot("Stream monitor", r"(?i)stream[ _-]?monitor"),
    bot("Icecast relay", r"^Icecast \d"),
    bot("Liquidsoap", r"(?i)^liquidsoap"),
    bot(
        "HeadlessChrome",
        r"HeadlessChrome|PhantomJS|Chrome-Lighthouse",
    ),
    bot("Scrapy", r"Scrapy/"),
    // --- Smart speakers, TVs and radio devices.
    app(
        "Alexa",
        r"AlexaMediaPlayer|Amazon Echo|^Echo/|AlexaService|Alexa Mobile Voice|AmazonAVS|AvsDeviceSdk",
    ),
    app("Sonos", r"Sonos"),
    app(
        "Google Home",
        r"CrKey.*DeviceType/SmartSpeaker|GoogleChirp|Google-Speech-Actions",
    ),
    app("Chromecast", r"CrKey"),
    app("Roku", r"Roku"),
    app("Bose", r"^Bose"),
    app("HEOS", r"HEOS"),
    app("Bluesound", r"Bluesound|BluOS"),
    app("Frontier Silicon", r"FSL IR|Frontier Silicon"),
    app("Reciva", r"Reciva"),
    app("vTuner", r"vTuner"),
    app(
        "Squeezebox",
        r"SqueezePlay|Squeezebox|Logitech Media Server|^LMS/",
    ),
    app("Volumio", r"Volumio"),
    // --- Radio and podcast apps.
    app("TuneIn", r"TuneIn"),
    app("radio.de", r"^radio\.[a-z]{2,3}[ /]\d"),
    app("iHeartRadio", r"iHeartRadio|^iHeart"),
    app("myTuner", r"(?i)^my ?tuner"),
    app("Radioplayer", r"(?i)^radioplayer"),
    app("Radio Garden", r"(?i)radio ?garden"),
    app("Simple Radio", r"Simple ?Radio|Streema"),
    app("Replaio", r"Replaio"),
    app("RadioDroid", r"RadioDroid"),
    app("Transistor", r"^Transistor/"),
    app("phonostar", r"(?i)phonostar"),
    app("Radioline", r"Radioline"),
    app("Audials", r"Audials"),
    app("Screamer Radio", r"Screamer"),
    app("RadioSure", r"RadioSure|Radio Sure"),
    app("Streamripper", r"(?i)streamripper"),
    app("Spotify", r"Spotify|^spotify_"),
    app(
        "Apple Podcasts",
        r"^Podcasts/|^Balados/|^Podcasti/|^Podcasty/|^Podkaster/|^AirPodcasts/",
    ),
    app("Apple Music", r"^Music/\d"),
    app("iTunes", r"^iTunes"),
    app("Deezer", r"Deezer"),
    app("Amazon Music", r"^AmazonMusic"),
    app("Pocket Casts", r"Pocket ?Casts"),
    app("Overcast", r"^Overcast/"),
    app("Castbox", r"(?i)^castbox"),
    app("AntennaPod", r"AntennaPod"),
    app("Podcast Addict", r"PodcastAddict"),
    app("Facebook", r"FBAN/|FBAV/|FB_IAB"),
    app("Instagram", r"Instagram"),
    // --- Desktop and embedded players.
    app("VLC", r"\bVLC/|LibVLC|^VLC\b"),
    app("Winamp", r"^Winamp|WinampMPEG"),
    app("foobar2000", r"(?i)foobar2000"),
    app("mpv", r"^(?:lib)?mpv\b"),
    app("MPlayer", r"^MPlayer"),
    app("Kodi", r"^Kodi/|XBMC"),
    app("RealPlayer", r"RealPlayer|RealMedia|^RMA/"),
    app(
        "Windows Media Player",
        r"^NSPlayer|WMPlayer|Windows-Media-Player|WMFSDK",
    ),
    app("BASS", r"\bBASS/\d"),
    app("MusicBee", r"MusicBee"),
    app("AIMP", r"^AIMP"),
    app("XMPlay", r"XMPlay"),
    app("MediaMonkey", r"MediaMonkey"),
    app("Clementine", r"^Clementine"),
    app("Strawberry", r"^Strawberry"),
    app("Audacious", r"Audacious"),
    app("Rhythmbox", r"Rhythmbox"),
    app("Amarok", r"Amarok"),
    app("QuickTime", r"QuickTime"),
    app("Music Player Daemon", r"^Music Player Daemon|^MPD/"),
    app(
        "Smart TV",
        r"TV Safari|SmartTV|SMART-TV|Web0S|NetCast|HbbTV",
    ),
    // --- Media frameworks and HTTP libraries.
    lib("ffmpeg", r"^Lavf|(?i)\bffmpeg"),
    lib("GStreamer", r"GStreamer"),
    lib("ExoPlayer", r"ExoPlayer|^Exo2/|AndroidXMedia3"),
    lib("stagefright", r"stagefright"),
    lib("AppleCoreMedia", r"AppleCoreMedia"),
    lib("curl", r"^curl/|libcurl"),
    lib("Wget", r"(?i)^wget/"),
    lib("python-requests", r"python-requests"),
    lib("Python", r"(?i)^python|aiohttp|httpx"),
    lib("okhttp", r"okhttp"),
    lib("Go-http-client", r"Go-http-client"),
    lib("Java", r"^Java/|Java-http-client|Apache-HttpClient"),
    lib("Dalvik", r"^Dalvik"),
    lib("Node.js", r"node-fetch|^axios/|^undici"),
    lib("libsoup", r"libsoup"),
    lib("PowerShell", r"PowerShell"),
    // --- Browsers: the specific families before the engines they are built on.
    browser("Samsung Internet", r"SamsungBrowser"),
    browser("Opera", r"OPR/|Opera|OPT/|OPiOS/"),
    browser("Edge", r"Edg(?:e|A|iOS)?/"),
    browser("Yandex Browser", r"YaBrowser"),
    browser("Vivaldi", r"Vivaldi"),
    browser("Brave", r"Brave"),
    browser("UC Browser", r"UCBrowser|UCWEB"),
    browser("Silk", r"Silk/"),
    browser("Firefox", r"Firefox/|FxiOS/|Focus/"),
    browser("Android WebView", r"; wv\)"),
    browser("Chrome", r"Chrome/|CriOS/|Chromium/"),
    browser("Internet Explorer", r"MSIE |Trident/"),
    browser("Safari", r"Safari/|^MobileSafari"),
    browser(
        "iOS WebView",
        r"\((?:iPhone|iPad|iPod).*AppleWebKit/.*Mobile/[0-9A-Za-z]+$",
    ),
];

/// A device guess from the platform tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeviceGuess {
    Is(&'static str),
    /// An Android browser: a phone if the UA says "Mobile", else a tablet (Google's convention).
    AndroidBrowser,
}

pub(crate) struct DeviceRule {
    pub device: DeviceGuess,
    pub pattern: &'static str,
}

const fn dev(device: &'static str, pattern: &'static str) -> DeviceRule {
    DeviceRule {
        device: DeviceGuess::Is(device),
        pattern,
    }
}

/// Device rules, first match wins: specific kinds before general ones.
pub(crate) const DEVICE_RULES: &[DeviceRule] = &[
    dev(
        "watch",
        r"(?i)watch ?os|Apple Watch|Wear ?OS|^Watch/\d+ CFNetwork/|\(Watch;|Garmin",
    ),
    dev(
        "car",
        r"Android Automotive|Automotive|CarPlay|\bAAOS\b|Tesla/|QtCarBrowser|Polestar|Volvo|gminfo|Rivian|Android Auto\b",
    ),
    dev(
        "speaker",
        r"Sonos|AlexaMediaPlayer|Amazon Echo|^Echo/|AmazonAVS|AvsDeviceSdk|HomePod|AirPodcasts/|CrKey.*SmartSpeaker|GoogleChirp|Google-Speech-Actions|Google Home|^Bose|Bluesound|BluOS|HEOS|MusicCast|Libratone|FSL IR|Frontier Silicon|Reciva|vTuner|SqueezePlay|Squeezebox|Logitech Media Server|Volumio|BangAndOlufsen|Devialet|WiiM",
    ),
    dev("console", r"Xbox|PlayStation|PLAYSTATION|Nintendo"),
    dev(
        "tv",
        r"Apple ?TV|tvOS|SMART-TV|SmartTV|SMART_TV|Smart-TV|smart-tv|Tizen|Web0S|WebOS|NetCast|HbbTV|Roku|CrKey|Chromecast|Android ?TV|GoogleTV|Google TV|BRAVIA|AFT[A-Z]{1,5}(?: Build|\)|;)|Opera TV|TV Safari|Viera|AQUOS|VIDAA|MiTV|MIBOX|SHIELD Android TV|Fire ?TV|Kodi/.*Android",
    ),
    dev(
        "tablet",
        r"iPad|Tablet|tablet|Kindle|Silk/|SM-[TXP]\d|GT-P\d|Nexus (?:7|9|10)\b|Lenovo TB|Lenovo Tab|MediaPad|MatePad|KF[A-Z]{2,4} Build",
    ),
    DeviceRule {
        device: DeviceGuess::AndroidBrowser,
        pattern: r"^Mozilla/.*Android",
    },
    // macOS apps say which CPU after Darwin/; iOS apps do not.
    dev(
        "computer",
        r"CFNetwork/.*Darwin/[\d.]+ \((?:x86_64|arm64|i386|Mac)",
    ),
    dev(
        "phone",
        r"iPhone|iPod|\biOS\b|CFNetwork/|Android|android|Dalvik|Windows Phone|KAIOS|KaiOS|HarmonyOS|BlackBerry|BB10|Mobile Safari|ExoPlayer|AndroidXMedia3|stagefright|Opera Mini|Symbian|Nokia|\(phone;",
    ),
    dev(
        "computer",
        r"Windows|Win32|Win64|WinNT|Macintosh|Mac OS X|Mac_PowerPC|macOS|OS X|CrOS|X11|Linux|Ubuntu|FreeBSD|OpenBSD|NSPlayer|Winamp|foobar2000|iTunes|^Music/\d|VLC|Lavf|^(?:lib)?mpv\b|MPlayer|RealPlayer|RealMedia|MusicBee|^AIMP|XMPlay|MediaMonkey|Clementine|Strawberry|Audacious|Rhythmbox|Amarok|Screamer|RadioSure|Audials|QuickTime",
    ),
];

pub(crate) struct OsRule {
    pub os: &'static str,
    pub pattern: &'static str,
}

const fn os(os: &'static str, pattern: &'static str) -> OsRule {
    OsRule { os, pattern }
}

/// Operating system rules, first match wins.
pub(crate) const OS_RULES: &[OsRule] = &[
    os("Wear OS", r"Wear ?OS"),
    os(
        "watchOS",
        r"(?i)watch ?os|Apple Watch|^Watch/\d+ CFNetwork/|\(Watch;",
    ),
    os("tvOS", r"tvOS|Apple ?TV"),
    os(
        "iOS",
        r"iPhone|iPad|iPod|\biOS\b|like Mac OS X|CPU OS \d|AirPodcasts/|HomePod",
    ),
    os(
        "macOS",
        r"CFNetwork/.*Darwin/[\d.]+ \((?:x86_64|arm64|i386|Mac)",
    ),
    os("iOS", r"CFNetwork/"),
    os("Windows Phone", r"Windows Phone"),
    os("HarmonyOS", r"HarmonyOS"),
    os(
        "Android",
        r"Android|android|Dalvik|ExoPlayer|AndroidXMedia3|stagefright|; wv\)",
    ),
    os("KaiOS", r"KAIOS|KaiOS"),
    os("Tizen", r"Tizen"),
    os("webOS", r"Web0S|WebOS|webOS|NetCast"),
    os("Roku", r"Roku"),
    os("ChromeOS", r"CrOS"),
    os("PlayStation", r"PlayStation|PLAYSTATION"),
    os(
        "Windows",
        r"Windows|Win32|Win64|WinNT|NSPlayer|WMPlayer|WinampMPEG|^Winamp|foobar2000|MusicBee|^AIMP|XMPlay|MediaMonkey|Screamer|RadioSure",
    ),
    os(
        "macOS",
        r"Macintosh|Mac OS X|Mac_PowerPC|macOS|OS X|Darwin|^Music/\d",
    ),
    os("Linux", r"Linux|X11|Ubuntu|Fedora|Debian|Raspbian"),
    os("FreeBSD", r"FreeBSD"),
    os("OpenBSD", r"OpenBSD"),
];

/// Words that give a bot away when no rule named it ("SomeBot/1.0", "a-crawler").
pub(crate) const BOT_WORD: &str = r"(?i)[a-z0-9_.-]*(?:bots?|spiders?|crawlers?|crawl|scrapers?|monitor(?:ing)?|checker|validator|headless)\b";

/// Words that end in "bot" but are not bots: the Cubot phone brand, app names with "Robot".
pub(crate) fn is_innocent_bot_word(word: &str) -> bool {
    let w = word.to_ascii_lowercase();
    let w = w.trim_end_matches('s');
    w.ends_with("robot") || w.ends_with("cubot") || w == "talbot" || w == "abbot"
}

/// The bot convention of a contact URL in the UA: "(compatible; X/1.0; +https://x.example/bot)".
pub(crate) const BOT_URL: &str = r"\+https?://";

/// The leading product token of an app's own UA ("Radio/2.1", "My%20App/3 CFNetwork/…"):
/// the client name when no rule matched.
pub(crate) const PRODUCT_TOKEN: &str = r"^([A-Za-z][A-Za-z0-9 ._%+-]{0,39}?)/v?\d";
