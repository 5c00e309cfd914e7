//! What a request's Referer and query give a session: the referrer host and `source=`.

use crate::logline;

/// The host of a Referer URL, lower-cased, without port or credentials.
pub fn referrer_host(raw: &[u8]) -> Option<String> {
    let text = logline::unescape(raw);
    let text = std::str::from_utf8(&text).ok()?.trim();
    if text.is_empty() || text == "-" {
        return None;
    }
    let rest = text.split_once("://").map(|(_, r)| r).unwrap_or(text);
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit('@').next()?;
    let host = if host.starts_with('[') {
        host.split(']').next()?.trim_start_matches('[')
    } else {
        host.split(':').next()?
    };
    let host = host.to_ascii_lowercase();
    (!host.is_empty() && host.len() <= 253).then_some(host)
}

/// The `source=` query parameter, lower-cased and bounded.
pub fn source_param(query: &[u8]) -> Option<String> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let value = pair.strip_prefix(b"source=")?;
        let value = std::str::from_utf8(value).ok()?;
        let value: String = value
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            .take(64)
            .collect::<String>()
            .to_ascii_lowercase();
        (!value.is_empty()).then_some(value)
    })
}
