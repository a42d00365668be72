//! AUROC for every (feature, type) pair: 2048 features x 14 types x 1000 cells (SAE-like sparse codes),
//! plus Pearson gene attribution (2048 features x 2000 genes). Compare with
//! `scripts/analysis/bench_sklearn.py` (the sklearn `roc_auc_score` loop and numpy on the same data).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::analysis::auroc::{auroc_table, Direction, LabelCodes};
use scsae::analysis::correlation::{attribute_genes, AttributionOptions};
use scsae::data::CsrMatrix;
use scsae::data::DenseMatrix;

/// Same generator as the Python script: codes are ReLU(N(0,1) - 1) rounded to 1e-3 (ties and zeros),
/// labels uniform over 14 types.
fn data(n: usize, f: usize, t: usize, seed: u64) -> (DenseMatrix, Vec<String>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = Vec::with_capacity(n * f);
    for _ in 0..n * f {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        x.push((((z - 1.0).max(0.0) * 1000.0).round() / 1000.0) as f32);
    }
    let labels = (0..n)
        .map(|_| format!("type{}", rng.random_range(0..t)))
        .collect();
    (DenseMatrix::new(n, f, x).unwrap(), labels)
}

fn bench(c: &mut Criterion) {
    let (x, labels) = data(1000, 2048, 14, 0);
    let codes = LabelCodes::new(&labels);
    let feats: Vec<usize> = (0..x.n_cols).collect();
    let types: Vec<usize> = (0..codes.names.len()).collect();
    c.bench_function("auroc 2048 features x 14 types x 1000 cells", |b| {
        b.iter(|| auroc_table(black_box(&x), &codes, &feats, &types, Direction::Greater).unwrap())
    });
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let genes: Vec<f32> = (0..1000 * 2000)
        .map(|_| {
            if rng.random::<f64>() < 0.2 {
                rng.random_range(0..20) as f32
            } else {
                0.0
            }
        })
        .collect();
    let expr = CsrMatrix::from_dense(1000, 2000, &genes);
    let mut g = c.benchmark_group("attribution");
    g.sample_size(10);
    g.bench_function("pearson 2048 features x 2000 genes x 1000 cells", |b| {
        b.iter(|| attribute_genes(black_box(&x), &expr, &AttributionOptions::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
