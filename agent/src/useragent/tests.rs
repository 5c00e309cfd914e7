use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use regex::bytes::RegexBuilder;

use super::*;

/// Where the OPAWG files are without `EARSHOT_OPAWG_DIR`: the reference tree beside the checkout.
const DEFAULT_OPAWG_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/opawg");

/// The OPAWG pattern files (MIT, kept outside the repository as optional data), or `None`
/// where they are absent.
fn opawg_dir() -> Option<PathBuf> {
    optional_data_dir("OPAWG files", "EARSHOT_OPAWG_DIR", DEFAULT_OPAWG_DIR)
}

/// An optional data set's directory: `$var` if set, else `default`. When it is missing the
/// test is skipped with a line on the real stderr (not the captured one, so the skip shows in
/// every test run), or fails under `EARSHOT_REQUIRE_OPTIONAL_DATA=1`, so that CI, which has the
/// data, cannot pass by skipping.
fn optional_data_dir(what: &str, var: &str, default: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(var).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if dir.is_dir() {
        return Some(dir);
    }
    let missing = format!(
        "{what} not found at {}; set {var} to their directory",
        dir.display()
    );
    if std::env::var_os("EARSHOT_REQUIRE_OPTIONAL_DATA").is_some_and(|v| v == "1") {
        panic!("{missing} (EARSHOT_REQUIRE_OPTIONAL_DATA=1: a missing data set is a failure)");
    }
    let _ = writeln!(std::io::stderr().lock(), "SKIPPED: {missing}");
    None
}

const U: &str = "unknown";

/// Real-world User-Agents, with what they say read by hand: (UA, client, device, os, bot).
#[rustfmt::skip]
const TABLE: &[(&str, &str, &str, &str, bool)] = &[
    // Desktop browsers.
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Chrome", "computer", "Windows", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
        "Edge", "computer", "Windows", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36 OPR/105.0.0.0",
        "Opera", "computer", "Windows", false),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
        "Firefox", "computer", "Linux", false),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Safari/605.1.15",
        "Safari", "computer", "macOS", false),
    ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
        "Chrome", "computer", "ChromeOS", false),
    // Mobile browsers.
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.2 Mobile/15E148 Safari/604.1",
        "Safari", "phone", "iOS", false),
    ("Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
        "Safari", "tablet", "iOS", false),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/120.0.6099.119 Mobile/15E148 Safari/604.1",
        "Chrome", "phone", "iOS", false),
    ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        "Chrome", "phone", "Android", false),
    ("Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
        "Chrome", "tablet", "Android", false),
    ("Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
        "Samsung Internet", "phone", "Android", false),
    ("Mozilla/5.0 (Android 14; Mobile; rv:121.0) Gecko/121.0 Firefox/121.0",
        "Firefox", "phone", "Android", false),
    ("Mozilla/5.0 (Linux; Android 10; Cubot P40) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
        "Chrome", "phone", "Android", false),
    // Radio and podcast apps.
    ("Radio/2.1", "Radio", U, U, false),
    ("radio.de/5.2 (iPhone; iOS 17.1)", "radio.de", "phone", "iOS", false),
    ("TuneIn Radio/31.2.0; iPhone14,2; iOS/17.0", "TuneIn", "phone", "iOS", false),
    ("iHeartRadio/10.24.0 (iPhone; iOS 16.6; Scale/3.00)", "iHeartRadio", "phone", "iOS", false),
    ("Podcasts/4023.400.2 CFNetwork/1494.0.7 Darwin/23.4.0", "Apple Podcasts", "phone", "iOS", false),
    ("Deutschlandfunk/4.2.1 CFNetwork/1474 Darwin/23.0.0", "Deutschlandfunk", "phone", "iOS", false),
    ("Radio%20Paradise/2023.1 CFNetwork/1408.0.4 Darwin/22.5.0", "Radio Paradise", "phone", "iOS", false),
    ("Overcast/3.0 CFNetwork/1410.0.3 Darwin/22.4.0 (x86_64)", "Overcast", "computer", "macOS", false),
    ("Spotify/8.8.96 Android/33 (SM-G991B)", "Spotify", "phone", "Android", false),
    ("Dalvik/2.1.0 (Linux; U; Android 13; SM-G991B Build/TP1A)", "Dalvik", "phone", "Android", false),
    ("AppleCoreMedia/1.0.0.21A351 (iPhone; U; CPU OS 17_0 like Mac OS X; en_us)",
        "AppleCoreMedia", "phone", "iOS", false),
    ("AppleCoreMedia/1.0.0.21R355 (Watch; U; CPU OS 10_0 like Mac OS X; en_us)",
        "AppleCoreMedia", "watch", "watchOS", false),
    ("myradio/1.0 (Linux;Android 11) ExoPlayerLib/2.18.1", "ExoPlayer", "phone", "Android", false),
    ("RadioRobot/2.0 (Linux;Android 12) ExoPlayerLib/2.18.7", "ExoPlayer", "phone", "Android", false),
    ("stagefright/1.2 (Linux;Android 5.1.1)", "stagefright", "phone", "Android", false),
    ("radioplayer/2.3.1 (Linux;Android 10; Android Automotive) ExoPlayerLib/2.14.2",
        "Radioplayer", "car", "Android", false),
    ("Mozilla/5.0 (X11; GNU/Linux) AppleWebKit/537.36 (KHTML, like Gecko) Chromium/79.0.3945.130 Chrome/79.0.3945.130 Safari/537.36 Tesla/2021.44.30.7-1e6a4b4e5a0d",
        "Chrome", "car", "Linux", false),
    // Players.
    ("VLC/3.0.18 LibVLC/3.0.18", "VLC", "computer", U, false),
    ("Lavf/58.76.100", "ffmpeg", "computer", U, false),
    ("WinampMPEG/5.66, Ultravox/2.1", "Winamp", "computer", "Windows", false),
    ("foobar2000/1.6.16", "foobar2000", "computer", "Windows", false),
    ("iTunes/12.12.10 (Windows; Microsoft Windows 10 x64; x64) AppleWebKit/7613.2007.1014.14 (dt:2)",
        "iTunes", "computer", "Windows", false),
    ("Music/1.3.5 (Macintosh; OS X 13.4.1) AppleWebKit/615.2.9.11.7", "Apple Music", "computer", "macOS", false),
    ("libmpv", "mpv", "computer", U, false),
    ("MPlayer 1.4-10", "MPlayer", "computer", U, false),
    ("Kodi/20.2 (Windows NT 10.0.19045.3693; Win64; x64) App_Bitness/64 Version/20.2-(20.2.0)-Git:20230629-5f418d0b13",
        "Kodi", "computer", "Windows", false),
    ("RMA/1.0 (compatible; RealMedia)", "RealPlayer", "computer", U, false),
    ("NSPlayer/12.00.19041.3636 WMFSDK/12.00.19041.3636", "Windows Media Player", "computer", "Windows", false),
    ("Windows-Media-Player/12.0.19041.3636", "Windows Media Player", "computer", "Windows", false),
    ("BASS/2.4", "BASS", U, U, false),
    // Speakers, TVs, consoles, radios.
    ("Linux UPnP/1.0 Sonos/78.1-51030 (ZPS23)", "Sonos", "speaker", "Linux", false),
    ("AlexaMediaPlayer/2.1.4676.0 (Linux;Android 6.0.1) ExoPlayerLib/1.5.9", "Alexa", "speaker", "Android", false),
    ("Echo/1.0(APNG)", "Alexa", "speaker", U, false),
    ("Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.225 Safari/537.36 CrKey/1.56.500000 DeviceType/SmartSpeaker",
        "Google Home", "speaker", "Linux", false),
    ("Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.225 Safari/537.36 CrKey/1.56.500000",
        "Chromecast", "tv", "Linux", false),
    ("Roku/DVP-12.5 (12.5.0.4178-88)", "Roku", "tv", "Roku", false),
    ("Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 85.0.4183.93/6.0 TV Safari/537.36",
        "Smart TV", "tv", "Tizen", false),
    ("Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 Safari/537.36 WebAppManager",
        "Smart TV", "tv", "webOS", false),
    ("Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7242) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
        "Chrome", "tv", "Android", false),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; Xbox; Xbox One) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0",
        "Edge", "console", "Windows", false),
    ("FSL IR/0.1", "Frontier Silicon", "speaker", U, false),
    // Libraries.
    ("curl/8.4.0", "curl", U, U, false),
    ("Wget/1.21.2", "Wget", U, U, false),
    ("python-requests/2.31.0", "python-requests", U, U, false),
    ("okhttp/4.12.0", "okhttp", U, U, false),
    ("Go-http-client/1.1", "Go-http-client", U, U, false),
    ("Java/1.8.0_292", "Java", U, U, false),
    // Bots and monitors.
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", U, U, true),
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Googlebot", U, U, true),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "bingbot", U, U, true),
    ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "UptimeRobot", U, U, true),
    ("Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)", "Pingdom", U, U, true),
    ("check_http/v2.3.3 (monitoring-plugins 2.3.3)", "check_http", U, U, true),
    ("Mozilla/5.0 (compatible; SeekportBot; +https://bot.seekport.com)", "SeekportBot", U, U, true),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.0.0 Safari/537.36",
        "HeadlessChrome", U, U, true),
    ("Icecast 2.4.4", "Icecast relay", U, U, true),
    // Nothing to go on.
    ("", U, U, U, false),
    ("-", U, U, U, false),
    ("Mozilla/5.0", U, U, U, false),
    ("xq7!!zz", U, U, U, false),
];

fn info(client: &str, device: &'static str, os: &str, bot: bool) -> UaInfo {
    UaInfo {
        client: client.into(),
        device,
        os: os.into(),
        bot,
    }
}

#[test]
fn builtin_table() {
    let c = UaClassifier::builtin();
    let mut wrong = Vec::new();
    for &(ua, client, device, os, bot) in TABLE {
        let got = c.classify(ua);
        if got != info(client, device, os, bot) {
            wrong.push(format!(
                "{ua}\n   got {got:?}\n  want ({client}, {device}, {os}, {bot})"
            ));
        }
    }
    assert!(TABLE.len() >= 40);
    assert!(
        wrong.is_empty(),
        "{} of {} wrong:\n{}",
        wrong.len(),
        TABLE.len(),
        wrong.join("\n")
    );
}

#[test]
fn every_device_value_is_listed() {
    let c = UaClassifier::builtin();
    for &(ua, ..) in TABLE {
        assert!(DEVICES.contains(&c.classify(ua).device), "{ua}");
    }
}

#[test]
fn classifier_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<UaClassifier>();
}

#[test]
fn junk_is_unknown_and_not_a_bot() {
    let c = UaClassifier::builtin();
    for ua in [
        "",
        "  ",
        "-",
        "\u{fffd}\u{1}",
        "(((",
        "Mozilla/5.0",
        "1234567",
    ] {
        assert_eq!(c.classify(ua), UaInfo::unknown(), "{ua:?}");
    }
}

#[test]
fn bot_words_without_false_positives() {
    let c = UaClassifier::builtin();
    for ua in [
        "MyCrawler/1.0",
        "stream-checker",
        "Mozilla/5.0 (compatible; Foo/1.0; +https://foo.example/about)",
    ] {
        assert!(c.classify(ua).bot, "{ua}");
    }
    for ua in [
        "CUBOT KINGKONG 5 Pro",
        "RoboRadio/1.0",
        "SuperRobot/3.1 CFNetwork/1410.0.3 Darwin/22.4.0",
        "Botswana Radio/1.0",
        "Mozilla/5.0 (Linux; Android 11; Talbot) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/100.0 Mobile Safari/537.36",
    ] {
        assert!(!c.classify(ua).bot, "{ua}");
    }
}

#[test]
fn missing_or_invalid_opawg_files_are_named() {
    let err = UaClassifier::with_opawg(Path::new("/nonexistent/opawg"))
        .err()
        .expect("error");
    assert!(matches!(err, UaError::Read { .. }));
    assert!(err.to_string().contains("bots.json"), "{err}");

    let mut skipped = Vec::new();
    let err = opawg::compile_str("apps", "{\"entries\": 3}", &mut skipped)
        .err()
        .expect("error");
    assert!(err.to_string().contains("apps.json"), "{err}");
    let err = opawg::compile_str("apps", "{\"entries\": []}", &mut skipped)
        .err()
        .expect("error");
    assert!(matches!(err, UaError::Invalid { .. }), "{err}");
    let err = opawg::compile_str("apps", r#"{"entries": [{"name": "x"}]}"#, &mut skipped)
        .err()
        .expect("error");
    assert!(err.to_string().contains("pattern"), "{err}");
}

#[test]
fn opawg_patterns_rust_cannot_compile_are_skipped_and_counted() {
    let mut skipped = Vec::new();
    let text = r#"{"entries": [
        {"name": "Look", "pattern": "^Foo(?=bar)"},
        {"name": "Back", "pattern": "(a)\\1"},
        {"name": "Ok", "pattern": "^Ok/"}
    ]}"#;
    let file = opawg::compile_str("apps", text, &mut skipped).expect("loads");
    assert_eq!(file.len(), 1);
    assert_eq!(skipped.len(), 2);
    assert_eq!(
        file.first_match(b"Ok/1").map(|e| e.name.as_str()),
        Some("Ok")
    );
}

/// The OPAWG files, with one regex per entry, to find the first match the slow, obvious way.
/// One entry of a reference file: name, its own regex (if it compiles), examples.
type RefEntry = (String, Option<regex::bytes::Regex>, Vec<String>);

struct Reference {
    files: Vec<(String, Vec<RefEntry>)>,
}

impl Reference {
    fn load(dir: &Path) -> Reference {
        let mut files = Vec::new();
        for stem in ["bots", "apps", "libraries", "browsers"] {
            let text = std::fs::read_to_string(dir.join(format!("{stem}.json"))).expect("read");
            let json: serde_json::Value = serde_json::from_str(&text).expect("json");
            let entries = json["entries"]
                .as_array()
                .expect("entries")
                .iter()
                .map(|e| {
                    let pattern = e["pattern"].as_str().expect("pattern");
                    let re = RegexBuilder::new(pattern).unicode(false).build().ok();
                    let examples = e["examples"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(|x| x.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    (e["name"].as_str().expect("name").to_string(), re, examples)
                })
                .collect();
            files.push((stem.to_string(), entries));
        }
        Reference { files }
    }

    /// (file, name) of the first entry that matches, in OPAWG's order.
    fn first(&self, ua: &str) -> Option<(&str, &str)> {
        for (stem, entries) in &self.files {
            for (name, re, _) in entries {
                if re.as_ref().is_some_and(|re| re.is_match(ua.as_bytes())) {
                    return Some((stem, name));
                }
            }
        }
        None
    }

    fn examples(&self, stem: &str) -> impl Iterator<Item = (&str, &str)> {
        self.files
            .iter()
            .filter(move |(s, _)| s == stem)
            .flat_map(|(_, es)| es.iter())
            .flat_map(|(name, _, ex)| ex.iter().map(move |x| (name.as_str(), x.as_str())))
    }
}

#[test]
fn opawg_bot_examples_are_bots_with_their_names() {
    let Some(dir) = opawg_dir() else { return };
    let t = Instant::now();
    let c = UaClassifier::with_opawg(&dir).expect("OPAWG loads");
    eprintln!(
        "OPAWG loaded in {:?}: {} entries, {} skipped {:?}; {} built-in rules",
        t.elapsed(),
        c.opawg_entries(),
        c.opawg_skipped().len(),
        c.opawg_skipped(),
        UaClassifier::builtin_rules(),
    );
    let reference = Reference::load(&dir);
    let (mut total, mut not_bot, mut other_name, mut earlier_entry) =
        (0, Vec::new(), Vec::new(), 0);
    for (name, ua) in reference.examples("bots") {
        total += 1;
        let got = c.classify(ua);
        if !got.bot {
            not_bot.push(format!("{name}: {ua} -> {got:?}"));
            continue;
        }
        if got.client != name {
            // Order matters: an earlier bots.json entry may match this example first.
            match reference.first(ua) {
                Some(("bots", first)) if first == got.client => earlier_entry += 1,
                _ => other_name.push(format!("{name}: {ua} -> {got:?}")),
            }
        }
    }
    eprintln!("{total} bot examples; {earlier_entry} named by an earlier bots.json entry");
    assert!(total > 200);
    assert!(
        not_bot.is_empty(),
        "{} not bots:\n{}",
        not_bot.len(),
        not_bot.join("\n")
    );
    assert!(
        other_name.is_empty(),
        "{} misnamed:\n{}",
        other_name.len(),
        other_name.join("\n")
    );
}

#[test]
fn opawg_app_examples_name_the_app() {
    let Some(dir) = opawg_dir() else { return };
    let c = UaClassifier::with_opawg(&dir).expect("OPAWG loads");
    let reference = Reference::load(&dir);
    let (mut total, mut checked, mut wrong) = (0, 0, Vec::new());
    for (name, ua) in reference.examples("apps") {
        total += 1;
        let got = c.classify(ua);
        // The first match in OPAWG order is the truth; some app examples are claimed by a bot
        // or an earlier app entry, which the classifier must then follow too.
        let Some((stem, first)) = reference.first(ua) else {
            wrong.push(format!("{name}: {ua}: no reference match"));
            continue;
        };
        checked += 1;
        let ok = got.client == first && got.bot == (stem == "bots");
        if !ok {
            wrong.push(format!("{name}: {ua} -> {got:?}, want {stem}/{first}"));
        }
    }
    eprintln!("{checked} of {total} app examples checked");
    assert!(checked > 500);
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn opawg_keeps_the_table_sensible() {
    let Some(dir) = opawg_dir() else { return };
    let c = UaClassifier::with_opawg(&dir).expect("OPAWG loads");
    let mut diffs = Vec::new();
    for &(ua, client, device, os, bot) in TABLE {
        let got = c.classify(ua);
        if got != info(client, device, os, bot) {
            diffs.push(format!(
                "{ua}\n   got {got:?}\n  builtin ({client}, {device}, {os}, {bot})"
            ));
        }
        // A bot stays a bot, and a listener stays a listener, with or without OPAWG.
        if bot {
            assert!(got.bot, "{ua}: {got:?}");
        }
    }
    eprintln!(
        "{} of {} differ with OPAWG:\n{}",
        diffs.len(),
        TABLE.len(),
        diffs.join("\n")
    );
}

#[test]
fn opawg_classify_is_fast_enough() {
    let Some(dir) = opawg_dir() else { return };
    let c = UaClassifier::with_opawg(&dir).expect("OPAWG loads");
    let reference = Reference::load(&dir);
    let uas: Vec<&str> = TABLE
        .iter()
        .map(|r| r.0)
        .chain(reference.examples("apps").map(|(_, ua)| ua))
        .chain(reference.examples("bots").map(|(_, ua)| ua))
        .collect();
    for ua in &uas {
        c.classify(ua); // warm the lazy DFAs
    }
    let t = Instant::now();
    let rounds = 3;
    for _ in 0..rounds {
        for ua in &uas {
            std::hint::black_box(c.classify(ua));
        }
    }
    let per = t.elapsed() / (rounds * uas.len() as u32);
    eprintln!("classify with OPAWG: {per:?} per UA over {} UAs", uas.len());
    // Generous: this also runs in unoptimised test builds on shared machines.
    assert!(per.as_micros() < 500, "{per:?}");
}

#[test]
fn opawg_names_win_and_devices_only_refine() {
    let Some(dir) = opawg_dir() else { return };
    let c = UaClassifier::with_opawg(&dir).expect("OPAWG loads");
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, &str, bool)] = &[
        // OPAWG's app and bot names replace the built-in ones.
        ("VLC/3.0.18 LibVLC/3.0.18", "VLC media player", "computer", U, false),
        ("AlexaMediaPlayer/2.1.4676.0 (Linux;Android 6.0.1) ExoPlayerLib/1.5.9",
            "Alexa-enabled device", "speaker", "Android", false),
        ("TuneIn Radio/31.2.0; iPhone14,2; iOS/17.0", "TuneIn", "phone", "iOS", false),
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "Microsoft Bingbot", U, U, true),
        // bots.json makes scripts bots; libraries.json's "bot" category too, but not ffmpeg.
        ("curl/8.4.0", "curl", U, U, true),
        ("Java/1.8.0_292", "Java Platform Default", U, U, true),
        ("Lavf/58.76.100", "ffmpeg", "computer", U, false),
        // A finer built-in browser family stays; OPAWG alone would say Chrome.
        ("Mozilla/5.0 (Linux; Android 13; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/23.0 Chrome/115.0.0.0 Mobile Safari/537.36",
            "Samsung Internet", "phone", "Android", false),
        // devices.json says "Android Phone" / "Apple iPhone" / "Apple Computer" here; the
        // platform tokens know better.
        ("Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7242) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
            "Chrome", "tv", "Android", false),
        ("Overcast/3.0 CFNetwork/1410.0.3 Darwin/22.4.0 (x86_64)", "Overcast", "computer", "macOS", false),
        ("AppleCoreMedia/1.0.0.21R355 (Watch; U; CPU OS 10_0 like Mac OS X; en_us)",
            "AppleCoreMedia", "watch", "watchOS", false),
        // ... and where they know nothing, devices.json fills in.
        ("Yamaha;YAS_209;0123456789", U, "speaker", U, false),
    ];
    let mut wrong = Vec::new();
    for &(ua, client, device, os, bot) in cases {
        let got = c.classify(ua);
        if got != info(client, device, os, bot) {
            wrong.push(format!(
                "{ua}\n   got {got:?}\n  want ({client}, {device}, {os}, {bot})"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
