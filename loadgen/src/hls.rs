//! The requests of one HLS session, replayable from a seed.
//!
//! Every ~10 s (one segment) the player fetches the playlist and then the newest segment. Now
//! and then it pauses for 20–150 s, which keeps the accept-to-accept gap under 175 s, clear of
//! the 180 s `hls_session_gap` by more than 5 s: a pause inside a session never splits it. The
//! planner keeps separate sessions of one listener on one stream at least 190 s apart.
//!
//! Each request starts after the previous one ended, so the write times (accept + Ta) of a
//! session are increasing and the writer can merge sessions with a heap.

use rand::Rng;

use crate::rng::SplitMix;

pub const SEGMENT_MS: i64 = 10_000;
/// Longest pause inside one session, accept to accept, including the normal tick.
pub const MAX_INNER_GAP_MS: i64 = SEGMENT_MS + 1_500 + 150_000;
const _: () = assert!(MAX_INNER_GAP_MS < 180_000 - 5_000);

#[derive(Clone, Debug)]
pub struct HlsRequest {
    pub accept_ms: i64,
    pub tr_ms: i64,
    pub ta_ms: i64,
    /// `None` for the playlist.
    pub segment: Option<u64>,
    pub status: i32,
    pub bytes: u64,
}

impl HlsRequest {
    pub fn write_ms(&self) -> i64 {
        self.accept_ms + self.ta_ms
    }
}

#[derive(Clone, Debug)]
pub struct HlsWalk {
    rng: SplitMix,
    tick_ms: i64,
    planned_end_ms: i64,
    /// Requests written after this are not logged (the log ends).
    last_write_ms: i64,
    segment_bytes: u64,
    next: Option<HlsRequest>,
}

impl HlsWalk {
    /// A session whose first playlist request is at `start_ms` and which asks for no new
    /// playlist after `planned_end_ms`, cut before the first request written after
    /// `last_write_ms`. `segment_bytes` is one segment's body size.
    pub fn new(
        seed: u64,
        start_ms: i64,
        planned_end_ms: i64,
        segment_bytes: u64,
        last_write_ms: i64,
    ) -> Self {
        let mut walk = HlsWalk {
            rng: SplitMix::new(seed),
            tick_ms: start_ms,
            planned_end_ms,
            last_write_ms,
            segment_bytes,
            next: None,
        };
        let first = walk.playlist(start_ms);
        walk.next = (first.write_ms() <= last_write_ms).then_some(first);
        walk
    }

    pub fn peek(&self) -> Option<&HlsRequest> {
        self.next.as_ref()
    }

    pub fn advance(&mut self) {
        let Some(cur) = self.next.take() else { return };
        self.next = match cur.segment {
            None => {
                let accept = cur.write_ms() + self.rng.gen_range(5..120);
                Some(self.segment(accept))
            }
            Some(_) => {
                let mut tick = self.tick_ms + SEGMENT_MS + self.rng.gen_range(-1_500..=1_500);
                if self.rng.gen_range(0..60) == 0 {
                    tick += self.rng.gen_range(20_000..=150_000);
                }
                self.tick_ms = tick;
                (tick <= self.planned_end_ms).then(|| self.playlist(tick))
            }
        };
        if self
            .next
            .as_ref()
            .is_some_and(|r| r.write_ms() > self.last_write_ms)
        {
            self.next = None;
        }
    }

    fn playlist(&mut self, accept_ms: i64) -> HlsRequest {
        let ta = self.rng.gen_range(5..=60);
        HlsRequest {
            accept_ms,
            tr_ms: self.rng.gen_range(0..=ta / 2),
            ta_ms: ta,
            segment: None,
            status: 200,
            bytes: self.rng.gen_range(420..=640),
        }
    }

    fn segment(&mut self, accept_ms: i64) -> HlsRequest {
        let ta = self.rng.gen_range(20..=300);
        let partial = self.rng.gen_range(0..50) == 0;
        let body = if partial {
            self.rng.gen_range(1_000..self.segment_bytes)
        } else {
            self.segment_bytes
        };
        HlsRequest {
            accept_ms,
            tr_ms: self.rng.gen_range(0..=ta / 4),
            ta_ms: ta,
            segment: Some((self.tick_ms / SEGMENT_MS) as u64 - 3),
            status: if partial { 206 } else { 200 },
            bytes: body + 310,
        }
    }
}

/// What the planner needs to know of a session without keeping its requests.
pub struct HlsSummary {
    pub requests: u32,
    pub first_write_ms: i64,
    pub end_ms: i64,
}

pub fn summarize(walk: &HlsWalk) -> HlsSummary {
    let mut walk = walk.clone();
    let first_write_ms = walk.peek().map_or(0, HlsRequest::write_ms);
    // Requests start after the previous one ended, so the last written is the session's end.
    let mut requests = 0;
    let mut end_ms = 0;
    while let Some(r) = walk.peek() {
        requests += 1;
        end_ms = r.write_ms();
        walk.advance();
    }
    HlsSummary {
        requests,
        first_write_ms,
        end_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_ordered_and_never_near_the_gap() {
        for seed in 0..200 {
            let mut walk =
                HlsWalk::new(seed, 1_000_000, 1_000_000 + 3 * 3_600_000, 80_000, i64::MAX);
            let mut prev: Option<HlsRequest> = None;
            while let Some(r) = walk.peek().cloned() {
                if let Some(p) = &prev {
                    assert!(r.accept_ms > p.write_ms());
                    assert!(r.accept_ms - p.accept_ms <= MAX_INNER_GAP_MS);
                    assert!(r.accept_ms - p.accept_ms < 175_000);
                }
                assert!((5..=300).contains(&r.ta_ms));
                prev = Some(r);
                walk.advance();
            }
        }
    }
}
