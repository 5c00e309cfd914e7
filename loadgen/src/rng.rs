//! A tiny deterministic generator (SplitMix64) behind `rand`'s traits.
//!
//! Its state is one `u64`, so every session can carry its own stream and replay it: the HLS
//! requests of a session are walked once to compute the truth and again to write the lines,
//! without keeping them. The output depends only on the seed, never on the platform.

use rand::{Rng, RngCore};

#[derive(Clone, Debug)]
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// A generator for sub-stream `(a, b)` of `seed`, independent of the others.
    pub fn derive(seed: u64, a: u64, b: u64) -> Self {
        let mut s = SplitMix(seed ^ 0x5851_F42D_4C95_7F2D);
        let x = s.next_u64() ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut s = SplitMix(x);
        let y = s.next_u64() ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        SplitMix(y)
    }

    /// Uniform in `[lo, hi)` on a log scale.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let u: f64 = self.r#gen();
        (lo.ln() + u * (hi.ln() - lo.ln())).exp()
    }

    /// Index drawn with the given weights (cumulative, last = total).
    pub fn pick_cumulative(&mut self, cumulative: &[u64]) -> usize {
        let total = *cumulative.last().expect("non-empty weights");
        let x = self.gen_range(0..total);
        cumulative.partition_point(|&c| c <= x)
    }
}

impl RngCore for SplitMix {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

/// Cumulative sums of weights, for [`SplitMix::pick_cumulative`].
pub fn cumulative(weights: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut acc = 0;
    weights
        .into_iter()
        .map(|w| {
            acc += w;
            acc
        })
        .collect()
}
