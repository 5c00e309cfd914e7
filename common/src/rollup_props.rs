//! Merge laws. The collector merges rollups from many hosts in whatever order batches arrive,
//! and re-merges stored rollups into ranges, so `merge` must be associative and commutative and
//! merging a set in any order must give the same rollup — to the bit, since sketches compare by
//! their canonical form. The encodings must round-trip, and decoding untrusted bytes must fail
//! cleanly, never panic.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use crate::rollup::{DimCounts, Dimension, HourRollup, LENGTH_BUCKETS, Protocol, QuarterRollup};
use crate::sketch::UniqueSketch;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Listeners `start .. start + len` of one shared universe, so that sketches generated side by
/// side overlap. Mostly small (sparse); now and then around and past the sparse limit, so that
/// merges turn sketches dense and mix the two forms.
pub(crate) fn sketch() -> BoxedStrategy<UniqueSketch> {
    prop_oneof![
        8 => (0u64..300, 0u64..60),
        1 => (0u64..3_000, 1_500u64..6_000),
    ]
    .prop_map(|(start, len)| {
        let mut s = UniqueSketch::new();
        for i in start..start + len {
            s.insert(splitmix64(i));
        }
        s
    })
    .boxed()
}

pub(crate) fn dim_key() -> impl Strategy<Value = (Dimension, String)> {
    (
        prop::sample::select(Dimension::ALL.to_vec()),
        prop::sample::select(vec!["VLC", "phone", "DE", "direct", ""]),
    )
        .prop_map(|(d, v)| (d, v.to_string()))
}

/// Counters stay far below overflow however many rollups a test merges.
fn count() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), 0u64..10, 0u64..1 << 40]
}

fn quarter() -> BoxedStrategy<QuarterRollup> {
    (
        [
            count(),
            count(),
            count(),
            count(),
            count(),
            count(),
            count(),
        ],
        prop::array::uniform13(count()),
        sketch(),
        btree_map(
            dim_key(),
            (count(), count()).prop_map(|(sessions, listening_ms)| DimCounts {
                sessions,
                listening_ms,
            }),
            0..4,
        ),
    )
        .prop_map(|(c, lengths, uniques, dims)| {
            let lengths: [u64; LENGTH_BUCKETS] = lengths;
            QuarterRollup {
                sessions: c[0],
                short_sessions: c[1],
                bot_sessions: c[2],
                completed: c[3],
                carried_in: c[4],
                listening_ms: c[5],
                aqh_listeners: c[6],
                aqh_tenant_listeners: c[6] / 2,
                lengths,
                uniques,
                dims,
            }
        })
        .boxed()
}

pub(crate) fn hour() -> BoxedStrategy<HourRollup> {
    (
        prop_oneof![Just(Protocol::Icecast), Just(Protocol::Hls)],
        vec(0u32..1 << 20, 60),
        prop::array::uniform4(quarter()),
        btree_map(dim_key(), sketch(), 0..4),
    )
        .prop_map(|(protocol, minutes, quarters, dim_uniques)| HourRollup {
            protocol,
            minutes,
            quarters,
            dim_uniques,
        })
        .boxed()
}

fn merged(a: &HourRollup, b: &HourRollup) -> HourRollup {
    let mut out = a.clone();
    out.merge(b);
    out
}

fn merged_sketch(a: &UniqueSketch, b: &UniqueSketch) -> UniqueSketch {
    let mut out = a.clone();
    out.merge(b);
    out
}

/// A list and a permutation of it.
fn shuffled<T: Clone + std::fmt::Debug>(
    items: impl Strategy<Value = Vec<T>>,
) -> impl Strategy<Value = (Vec<T>, Vec<T>)> {
    items.prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn hour_merge_is_commutative(a in hour(), b in hour()) {
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
    }

    #[test]
    fn hour_merge_is_associative(a in hour(), b in hour(), c in hour()) {
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn hour_merge_in_any_order_agrees((list, permuted) in shuffled(vec(hour(), 1..6))) {
        let fold = |rollups: &[HourRollup]| {
            let mut out = rollups[0].clone();
            for r in &rollups[1..] {
                out.merge(r);
            }
            out
        };
        let (x, y) = (fold(&list), fold(&permuted));
        prop_assert_eq!(postcard::to_stdvec(&x).unwrap(), postcard::to_stdvec(&y).unwrap());
        prop_assert_eq!(x, y);
    }

    #[test]
    fn empty_hour_is_the_identity(a in hour()) {
        let empty = HourRollup::new(a.protocol);
        prop_assert_eq!(merged(&a, &empty), a.clone());
        prop_assert_eq!(merged(&empty, &a), a);
    }

    #[test]
    fn hour_postcard_round_trip(a in hour()) {
        let bytes = postcard::to_stdvec(&a).unwrap();
        let back: HourRollup = postcard::from_bytes(&bytes).unwrap();
        prop_assert_eq!(postcard::to_stdvec(&back).unwrap(), bytes);
        prop_assert_eq!(back, a);
    }
}

proptest! {
    #[test]
    fn sketch_merge_is_commutative(a in sketch(), b in sketch()) {
        prop_assert_eq!(merged_sketch(&a, &b), merged_sketch(&b, &a));
    }

    #[test]
    fn sketch_merge_is_associative(a in sketch(), b in sketch(), c in sketch()) {
        let left = merged_sketch(&merged_sketch(&a, &b), &c);
        let right = merged_sketch(&a, &merged_sketch(&b, &c));
        prop_assert_eq!(left.to_bytes(), right.to_bytes());
        prop_assert_eq!(left, right);
    }

    #[test]
    fn sketch_merge_is_idempotent(a in sketch()) {
        prop_assert_eq!(merged_sketch(&a, &a), a);
    }

    /// Merging the sketches of some lists of listeners, in any order, is the sketch of their
    /// concatenation, whichever forms the parts and the whole are in.
    #[test]
    fn sketch_merge_is_the_sketch_of_the_union(
        (parts, permuted) in shuffled(vec((0u64..5_000, 0u64..3_000), 1..5)),
    ) {
        let sketch_of = |ranges: &[(u64, u64)]| {
            let mut s = UniqueSketch::new();
            for &(start, len) in ranges {
                for i in start..start + len {
                    s.insert(splitmix64(i));
                }
            }
            s
        };
        let whole = sketch_of(&parts);
        let mut merged = UniqueSketch::new();
        for part in &permuted {
            merged.merge(&sketch_of(std::slice::from_ref(part)));
        }
        prop_assert_eq!(merged.estimate(), whole.estimate());
        prop_assert_eq!(merged.to_bytes(), whole.to_bytes());
        prop_assert_eq!(merged, whole);
    }

    #[test]
    fn sketch_bytes_round_trip(a in sketch()) {
        let bytes = a.to_bytes();
        let back = UniqueSketch::from_bytes(&bytes).unwrap();
        prop_assert_eq!(back.to_bytes(), bytes);
        prop_assert_eq!(back.estimate(), a.estimate());
        prop_assert_eq!(back, a);
    }

    /// Untrusted bytes: an error or a sketch, never a panic. Whatever decodes is canonical,
    /// so it re-encodes to the same bytes.
    #[test]
    fn sketch_from_arbitrary_bytes_never_panics(
        header in prop_oneof![Just(vec![]), Just(vec![1u8]), Just(vec![1, 0]), Just(vec![1, 1])],
        tail in vec(any::<u8>(), 0..64),
    ) {
        let bytes = [header, tail].concat();
        if let Ok(s) = UniqueSketch::from_bytes(&bytes) {
            prop_assert_eq!(s.to_bytes(), bytes);
            let _ = s.estimate();
        }
    }

    /// Valid encodings with one byte changed, cut short or extended.
    #[test]
    fn sketch_from_corrupted_bytes_never_panics(
        a in sketch(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
        extra in vec(any::<u8>(), 0..4),
    ) {
        let mut bytes = a.to_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        for candidate in [bytes.clone(), bytes[..cut.index(bytes.len())].to_vec(), [bytes, extra].concat()] {
            if let Ok(s) = UniqueSketch::from_bytes(&candidate) {
                prop_assert_eq!(s.to_bytes(), candidate);
                let _ = s.estimate();
            }
        }
    }

    #[test]
    fn hour_from_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let _ = postcard::from_bytes::<HourRollup>(&bytes);
        let _ = postcard::from_bytes::<BTreeMap<(Dimension, String), UniqueSketch>>(&bytes);
    }
}
