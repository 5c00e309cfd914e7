//! Byte searches for the short spans of a request path, a word at a time: a path's last
//! segment is a few bytes, where memchr's dispatch costs more than it saves.

/// Where `needle` last occurs in `s`. The last two words are searched a word at a time
/// (a path's last segment is short), the rest by `memrchr`.
#[inline]
pub fn rfind(s: &[u8], needle: u8) -> Option<usize> {
    let mut end = s.len();
    for _ in 0..2 {
        let Some(word) = s[..end].last_chunk::<8>() else {
            break;
        };
        let hits = bytes_equal(u64::from_le_bytes(*word), needle);
        if hits != 0 {
            return Some(end - 1 - (hits.leading_zeros() / 8) as usize);
        }
        end -= 8;
    }
    memchr::memrchr(needle, &s[..end])
}

/// The high bit of each byte of `word` that is `b`, and no other bit: exact, since no borrow
/// crosses from one byte to the next (unlike the usual `(x - LO) & !x & HI`).
#[inline(always)]
pub fn bytes_equal(word: u64, b: u8) -> u64 {
    let x = word ^ (LO * u64::from(b));
    !(((x & !HI) + !HI) | x) & HI
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
