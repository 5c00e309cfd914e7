//! UniqueSketch costs: insert sits in the agent's hot path (every listener, every quarter-hour),
//! merge and the encoding in the collector's.
//!
//! `cargo bench -p earshot-common --bench sketch`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use earshot_common::UniqueSketch;

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hashes(start: u64, n: u64) -> Vec<u64> {
    (start..start + n).map(splitmix64).collect()
}

fn sketch_of(hashes: &[u64]) -> UniqueSketch {
    let mut s = UniqueSketch::new();
    for &h in hashes {
        s.insert(h);
    }
    s
}

fn insert(c: &mut Criterion) {
    let mut g = c.benchmark_group("insert");

    // A fresh sketch up to 1 000 (and 4 000) distinct listeners: sparse throughout, allocation
    // and the buffer's sorting included.
    for n in [1_000u64, 4_000] {
        let hs = hashes(0, n);
        g.throughput(Throughput::Elements(n));
        g.bench_function(format!("sparse_fresh_{n}"), |b| {
            b.iter(|| black_box(sketch_of(black_box(&hs))))
        });
    }

    // 1 000 listeners, each seen four times, interleaved: the agent's usual pattern.
    let repeats: Vec<u64> = (0..4_000).map(|i| splitmix64(i % 1_000)).collect();
    g.throughput(Throughput::Elements(repeats.len() as u64));
    g.bench_function("sparse_repeats_4000_of_1000", |b| {
        b.iter(|| black_box(sketch_of(black_box(&repeats))))
    });

    // Into a sketch already dense.
    let hs = hashes(1 << 32, 100_000);
    let dense = sketch_of(&hashes(0, 10_000));
    g.throughput(Throughput::Elements(hs.len() as u64));
    g.bench_function("dense", |b| {
        b.iter_batched_ref(
            || dense.clone(),
            |s| {
                for &h in &hs {
                    s.insert(h);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn merge_and_estimate(c: &mut Criterion) {
    let small_a = sketch_of(&hashes(0, 1_000));
    let small_b = sketch_of(&hashes(500, 1_000));
    let dense_a = sketch_of(&hashes(0, 100_000));
    let dense_b = sketch_of(&hashes(50_000, 100_000));
    let mut g = c.benchmark_group("merge");
    g.bench_function("sparse_1000_into_sparse_1000", |b| {
        b.iter_batched_ref(
            || small_a.clone(),
            |s| s.merge(&small_b),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("sparse_1000_into_dense", |b| {
        b.iter_batched_ref(
            || dense_a.clone(),
            |s| s.merge(&small_b),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("dense_into_dense", |b| {
        b.iter_batched_ref(
            || dense_a.clone(),
            |s| s.merge(&dense_b),
            BatchSize::SmallInput,
        )
    });
    g.finish();

    let mut g = c.benchmark_group("estimate");
    g.bench_function("sparse_1000", |b| b.iter(|| black_box(&small_a).estimate()));
    g.bench_function("dense", |b| b.iter(|| black_box(&dense_a).estimate()));
    g.finish();
}

fn encoding(c: &mut Criterion) {
    let mut g = c.benchmark_group("encoding");
    for (name, s) in [
        ("sparse_1000", sketch_of(&hashes(0, 1_000))),
        ("dense", sketch_of(&hashes(0, 100_000))),
    ] {
        let bytes = s.to_bytes();
        g.bench_function(format!("to_bytes_{name}"), |b| {
            b.iter(|| black_box(&s).to_bytes())
        });
        g.bench_function(format!("from_bytes_{name}"), |b| {
            b.iter(|| UniqueSketch::from_bytes(black_box(&bytes)))
        });
    }
    g.finish();
}

criterion_group!(benches, insert, merge_and_estimate, encoding);
criterion_main!(benches);
