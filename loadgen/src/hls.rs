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

/// What a request of the walk asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The master playlist, once at the start (layouts that have one).
    Master,
    /// The (rendition's) media playlist, refreshed every segment.
    Playlist,
    /// The rendition's init segment (fMP4), after each switch to it.
    Init,
    /// Media segment number n.
    Segment(u64),
}

#[derive(Clone, Debug)]
pub struct HlsRequest {
    pub accept_ms: i64,
    pub tr_ms: i64,
    pub ta_ms: i64,
    pub step: Step,
    /// Index of the rendition the request is for (0 when the stream has one).
    pub rendition: u8,
    pub status: i32,
    pub bytes: u64,
}

impl HlsRequest {
    pub fn write_ms(&self) -> i64 {
        self.accept_ms + self.ta_ms
    }
}

/// How a stream's requests go: master or not, init segments, renditions and switching.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub master: bool,
    pub init: bool,
    /// 1 to 3.
    pub renditions: u8,
    /// Chance per segment, in thousandths, that the player switches rendition (ABR).
    pub switch_per_mille: u16,
    /// One segment's body size, per rendition.
    pub segment_bytes: [u64; 3],
}

#[derive(Clone, Debug)]
pub struct HlsWalk {
    rng: SplitMix,
    tick_ms: i64,
    planned_end_ms: i64,
    /// Requests written after this are not logged (the log ends).
    last_write_ms: i64,
    shape: Shape,
    rendition: u8,
    need_init: bool,
    next: Option<HlsRequest>,
}

impl HlsWalk {
    /// A session whose first playlist request is at `start_ms` and which asks for no new
    /// playlist after `planned_end_ms`, cut before the first request written after
    /// `last_write_ms`.
    pub fn new(
        seed: u64,
        start_ms: i64,
        planned_end_ms: i64,
        shape: Shape,
        last_write_ms: i64,
    ) -> Self {
        let mut walk = HlsWalk {
            rng: SplitMix::new(seed),
            tick_ms: start_ms,
            planned_end_ms,
            last_write_ms,
            shape,
            rendition: 0,
            need_init: shape.init,
            next: None,
        };
        if shape.renditions > 1 {
            walk.rendition = walk.rng.gen_range(0..shape.renditions);
        }
        let first = if shape.master {
            walk.request(start_ms, Step::Master)
        } else {
            walk.request(start_ms, Step::Playlist)
        };
        walk.next = (first.write_ms() <= last_write_ms).then_some(first);
        walk
    }

    pub fn peek(&self) -> Option<&HlsRequest> {
        self.next.as_ref()
    }

    pub fn advance(&mut self) {
        let Some(cur) = self.next.take() else { return };
        self.next = match cur.step {
            Step::Master => {
                let accept = cur.write_ms() + self.rng.gen_range(5..120);
                Some(self.request(accept, Step::Playlist))
            }
            Step::Playlist | Step::Init => {
                let accept = cur.write_ms() + self.rng.gen_range(5..120);
                if self.need_init {
                    self.need_init = false;
                    Some(self.request(accept, Step::Init))
                } else {
                    Some(self.segment(accept))
                }
            }
            Step::Segment(_) => {
                let mut tick = self.tick_ms + SEGMENT_MS + self.rng.gen_range(-1_500..=1_500);
                if self.rng.gen_range(0..60) == 0 {
                    tick += self.rng.gen_range(20_000..=150_000);
                }
                if self.shape.switch_per_mille > 0
                    && self.rng.gen_range(0..1000) < self.shape.switch_per_mille
                {
                    let other = self.rng.gen_range(1..self.shape.renditions);
                    self.rendition = (self.rendition + other) % self.shape.renditions;
                    self.need_init = self.shape.init;
                }
                self.tick_ms = tick;
                (tick <= self.planned_end_ms).then(|| self.request(tick, Step::Playlist))
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

    /// A playlist (master or media) or an init segment: small, quick, always 200.
    fn request(&mut self, accept_ms: i64, step: Step) -> HlsRequest {
        let ta = self.rng.gen_range(5..=60);
        HlsRequest {
            accept_ms,
            tr_ms: self.rng.gen_range(0..=ta / 2),
            ta_ms: ta,
            step,
            rendition: self.rendition,
            status: 200,
            bytes: if step == Step::Init {
                self.rng.gen_range(600..=900)
            } else {
                self.rng.gen_range(420..=640)
            },
        }
    }

    fn segment(&mut self, accept_ms: i64) -> HlsRequest {
        let ta = self.rng.gen_range(20..=300);
        let full = self.shape.segment_bytes[usize::from(self.rendition)];
        let partial = self.rng.gen_range(0..50) == 0;
        let body = if partial {
            self.rng.gen_range(1_000..full)
        } else {
            full
        };
        HlsRequest {
            accept_ms,
            tr_ms: self.rng.gen_range(0..=ta / 4),
            ta_ms: ta,
            step: Step::Segment((self.tick_ms / SEGMENT_MS) as u64 - 3),
            rendition: self.rendition,
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
    /// Rendition of the last media segment, if it fetched any.
    pub last_rendition: Option<u8>,
}

pub fn summarize(walk: &HlsWalk) -> HlsSummary {
    let mut walk = walk.clone();
    let first_write_ms = walk.peek().map_or(0, HlsRequest::write_ms);
    // Requests start after the previous one ended, so the last written is the session's end.
    let mut requests = 0;
    let mut end_ms = 0;
    let mut last_rendition = None;
    while let Some(r) = walk.peek() {
        requests += 1;
        end_ms = r.write_ms();
        if let Step::Segment(_) = r.step {
            last_rendition = Some(r.rendition);
        }
        walk.advance();
    }
    HlsSummary {
        requests,
        first_write_ms,
        end_ms,
        last_rendition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_ordered_and_never_near_the_gap() {
        for seed in 0..200 {
            let mut walk = HlsWalk::new(
                seed,
                1_000_000,
                1_000_000 + 3 * 3_600_000,
                Shape {
                    master: seed % 2 == 0,
                    init: seed % 3 == 0,
                    renditions: 3,
                    switch_per_mille: 100,
                    segment_bytes: [40_000, 80_000, 160_000],
                },
                i64::MAX,
            );
            let mut prev: Option<HlsRequest> = None;
            while let Some(r) = walk.peek().cloned() {
                if let Some(p) = &prev {
                    assert!(r.accept_ms > p.write_ms());
                    assert!(r.accept_ms - p.accept_ms <= MAX_INNER_GAP_MS);
                    assert!(r.accept_ms - p.accept_ms < 175_000);
                }
                assert!((5..=300).contains(&r.ta_ms));
                assert!(r.rendition < 3);
                prev = Some(r);
                walk.advance();
            }
        }
    }
}
