//! The conversions between the in-memory aggregates and protocol 1's forms are exact: a value
//! taken to its v1 form and back is the value, and so is a batch encoded, deflated, inflated
//! and decoded. That the formats keep their bytes is `crate::golden`'s to show; here the kept
//! batch is also read as a [`BatchV1`] alone.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

use super::v1::{AgentCountersV1, BatchV1, DimensionV1, HourKeyV1, HourRollupV1, ProtocolV1};
use super::{AgentCounters, Batch, compress_batch, decode_batch, decompress_batch};
use crate::rollup::{Dimension, HourKey, HourRollup, Protocol};
use crate::rollup_props::hour;

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "",
        "radio-one",
        "/live.mp3",
        "bad_date",
        "(other)",
        "é/ü",
    ])
    .prop_map(str::to_string)
}

fn key() -> impl Strategy<Value = HourKey> {
    (name(), name(), any::<i64>()).prop_map(|(tenant, stream, hour_ms)| HourKey {
        tenant,
        stream,
        hour_ms,
    })
}

/// An hour whose minutes are not always 60 (what a decoder may be handed) and whose
/// dimension values are any of a few names.
fn any_hour() -> impl Strategy<Value = HourRollup> {
    (hour(), vec(any::<u32>(), 0..70), prop::bool::ANY).prop_map(|(mut h, minutes, cut)| {
        if cut {
            h.minutes = minutes;
        }
        h
    })
}

fn counters() -> impl Strategy<Value = AgentCounters> {
    (
        any::<u64>(),
        btree_map(name(), any::<u64>(), 0..3),
        btree_map((name(), any::<i32>()), any::<u64>(), 0..3),
        btree_map((name(), name()), any::<u64>(), 0..3),
        btree_map((name(), name()), any::<u64>(), 0..3),
    )
        .prop_map(
            |(lines, malformed, by_status, not_sessions, folded)| AgentCounters {
                lines,
                malformed,
                by_status,
                not_sessions,
                folded,
            },
        )
}

fn batch() -> impl Strategy<Value = Batch> {
    (
        name(),
        any::<u64>(),
        vec((key(), any_hour()), 0..4),
        counters(),
    )
        .prop_map(|(agent_id, seq, rollups, counters)| Batch {
            agent_id,
            seq,
            rollups,
            counters,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn an_hour_comes_back_from_its_v1_form(h in any_hour(), k in key()) {
        prop_assert_eq!(HourRollup::from(HourRollupV1::from(h.clone())), h);
        prop_assert_eq!(HourKey::from(HourKeyV1::from(k.clone())), k);
    }

    #[test]
    fn counters_come_back_from_their_v1_form(c in counters()) {
        prop_assert_eq!(AgentCounters::from(AgentCountersV1::from(c.clone())), c);
    }

    #[test]
    fn a_batch_comes_back_from_its_v1_form_and_its_bytes(b in batch()) {
        prop_assert_eq!(Batch::from(BatchV1::from(b.clone())), b.clone());
        prop_assert_eq!(decode_batch(&postcard::to_stdvec(&b).unwrap()).unwrap(), b.clone());
        prop_assert_eq!(decompress_batch(&compress_batch(&b).unwrap()).unwrap(), b);
    }
}

/// The codes are the variants' places, as protocol 1 fixed them (worked out from the
/// protocol, not from the enums).
#[test]
fn dimension_and_protocol_codes_are_protocol_1s() {
    let dims = [
        (Dimension::Client, 0u8),
        (Dimension::Device, 1),
        (Dimension::Os, 2),
        (Dimension::Country, 3),
        (Dimension::Referrer, 4),
        (Dimension::Source, 5),
        (Dimension::Rendition, 6),
    ];
    for (d, code) in dims {
        assert_eq!(postcard::to_stdvec(&DimensionV1::from(d)).unwrap(), [code]);
        assert_eq!(postcard::to_stdvec(&d).unwrap(), [code]);
        assert_eq!(postcard::from_bytes::<Dimension>(&[code]).unwrap(), d);
    }
    assert!(postcard::from_bytes::<Dimension>(&[7]).is_err());
    for (p, code) in [(Protocol::Icecast, 0u8), (Protocol::Hls, 1)] {
        assert_eq!(postcard::to_stdvec(&ProtocolV1::from(p)).unwrap(), [code]);
        assert_eq!(postcard::to_stdvec(&p).unwrap(), [code]);
    }
    // A map keyed by dimension keeps protocol 1's order of codes.
    let m = BTreeMap::from([
        ((Dimension::Rendition, String::new()), 1u8),
        ((Dimension::Client, String::new()), 2),
    ]);
    assert_eq!(postcard::to_stdvec(&m).unwrap(), [2, 0, 0, 2, 6, 0, 1]);
}

/// The kept batch of protocol 1 is a [`BatchV1`] by itself: decoded as one and encoded again
/// it is the same bytes, and it is the golden batch's v1 form.
#[test]
fn the_kept_batch_is_a_batch_v1() {
    let fresh = postcard::to_stdvec(&BatchV1::from(crate::golden::batch())).unwrap();
    let kept = crate::golden::kept("batch-v1.postcard", &fresh);
    let decoded: BatchV1 = postcard::from_bytes(&kept).unwrap();
    assert_eq!(decoded, BatchV1::from(crate::golden::batch()));
    assert!(postcard::to_stdvec(&decoded).unwrap() == kept);
    assert!(fresh == kept);
}
