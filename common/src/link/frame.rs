//! Reading one length-prefixed frame as its bytes arrive, in whatever pieces.

use crate::wire::MAX_FRAME;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix says more than the reader allows: refused before allocating.
    #[error("frame of {len} bytes is over the limit")]
    TooLarge { len: usize, max: usize },
    /// The stream ended before the frame did.
    #[error("stream ended after {got} of {len} bytes")]
    Truncated { got: usize, len: usize },
}

/// One frame: a 4-byte big-endian length, then that many bytes of postcard (see
/// [`crate::wire::encode_frame`]). The length is checked against the limit as soon as its four
/// bytes are in, and the body grows only as bytes arrive, so a peer that announces 4 GiB and
/// sends nothing costs nothing. The driver asks for [`wanted`](FrameReader::wanted) bytes at
/// a time, so it never reads past the frame.
#[derive(Debug)]
pub struct FrameReader {
    max: usize,
    prefix: [u8; 4],
    prefix_got: usize,
    body: Vec<u8>,
    len: Option<usize>,
}

impl FrameReader {
    /// A reader for one frame of at most `max` bytes (never more than [`MAX_FRAME`]).
    pub fn new(max: usize) -> FrameReader {
        FrameReader {
            max: max.min(MAX_FRAME),
            prefix: [0; 4],
            prefix_got: 0,
            body: Vec::new(),
            len: None,
        }
    }

    /// How many more bytes the frame needs: 0 once it is complete.
    pub fn wanted(&self) -> usize {
        match self.len {
            None => 4 - self.prefix_got,
            Some(len) => len - self.body.len(),
        }
    }

    /// Takes up to [`wanted`](FrameReader::wanted) bytes of `bytes` and returns how many it
    /// took (the rest belongs to whatever follows the frame).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<usize, FrameError> {
        let mut taken = 0;
        if self.len.is_none() {
            let n = (4 - self.prefix_got).min(bytes.len());
            self.prefix[self.prefix_got..self.prefix_got + n].copy_from_slice(&bytes[..n]);
            self.prefix_got += n;
            taken = n;
            if self.prefix_got < 4 {
                return Ok(taken);
            }
            let len = u32::from_be_bytes(self.prefix) as usize;
            if len > self.max {
                return Err(FrameError::TooLarge { len, max: self.max });
            }
            self.len = Some(len);
        }
        let n = self.wanted().min(bytes.len() - taken);
        self.body.extend_from_slice(&bytes[taken..taken + n]);
        Ok(taken + n)
    }

    /// The error for a stream that ended now.
    pub fn ended(&self) -> FrameError {
        match self.len {
            None => FrameError::Truncated {
                got: self.prefix_got,
                len: 4,
            },
            Some(len) => FrameError::Truncated {
                got: self.body.len(),
                len,
            },
        }
    }

    /// The frame's body, once [`wanted`](FrameReader::wanted) is 0.
    pub fn into_body(self) -> Result<Vec<u8>, FrameError> {
        match self.wanted() {
            0 => Ok(self.body),
            _ => Err(self.ended()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{self, CollectorMessage};

    #[test]
    fn a_frame_fed_a_byte_at_a_time_is_the_frame() {
        let frame = wire::encode_frame(&CollectorMessage::Ack { seq: 300 }).unwrap();
        // Ack is variant 1, seq 300 is the varint ac 02: three bytes behind the prefix.
        assert_eq!(frame, [0, 0, 0, 3, 1, 0xac, 0x02]);
        let mut r = FrameReader::new(64);
        let mut wanted = Vec::new();
        for b in &frame {
            wanted.push(r.wanted());
            assert_eq!(r.feed(std::slice::from_ref(b)).unwrap(), 1);
        }
        assert_eq!(wanted, [4, 3, 2, 1, 3, 2, 1]);
        assert_eq!(r.wanted(), 0);
        assert_eq!(r.into_body().unwrap(), [1, 0xac, 0x02]);
    }

    #[test]
    fn bytes_past_the_frame_are_left_alone() {
        let mut r = FrameReader::new(64);
        assert_eq!(r.feed(&[0, 0, 0, 2, 7, 8, 9, 9]).unwrap(), 6);
        assert_eq!(r.feed(&[9]).unwrap(), 0);
        assert_eq!(r.into_body().unwrap(), [7, 8]);
        let mut empty = FrameReader::new(64);
        assert_eq!(empty.feed(&[0, 0, 0, 0]).unwrap(), 4);
        assert_eq!(empty.into_body().unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn a_length_over_the_limit_is_refused_at_the_prefix() {
        let mut r = FrameReader::new(10);
        assert_eq!(r.feed(&[0, 0]).unwrap(), 2);
        assert_eq!(
            r.feed(&[0, 11, 1]),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        // The limit is never above MAX_FRAME, whatever is asked.
        let mut r = FrameReader::new(usize::MAX);
        assert_eq!(
            r.feed(&[0xff; 4]),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: MAX_FRAME
            })
        );
        assert_eq!(
            FrameError::TooLarge { len: 11, max: 10 }.to_string(),
            "frame of 11 bytes is over the limit"
        );
    }

    #[test]
    fn a_stream_that_ends_early_says_how_far_it_got() {
        let mut r = FrameReader::new(64);
        r.feed(&[0, 0]).unwrap();
        assert_eq!(r.ended(), FrameError::Truncated { got: 2, len: 4 });
        r.feed(&[0, 5, 1, 2]).unwrap();
        assert_eq!(r.wanted(), 3);
        assert_eq!(r.into_body(), Err(FrameError::Truncated { got: 2, len: 5 }));
    }
}
