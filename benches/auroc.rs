//! AUROC for every (feature, type) pair: 2048 features x 14 types x 1000 cells (SAE-like sparse codes),
//! plus Pearson gene attribution (2048 features x 2000 genes). Compare with
//! `scripts/analysis/bench_sklearn.py` (the sklearn `roc_auc_score` loop and numpy on the same data).
//!
//! The `atlas` group times the exact AUROC from column-sparse codes at atlas size: 2048 features x 14
//! types x 10^6 cells (`SCSAE_ATLAS_CELLS` overrides the cell count), SAE-like codes generated sparse
//! directly (feature densities 0.1-5 %, about 53 non-zeros per cell). Run it alone:
//! `cargo bench --bench auroc -- atlas` (`scripts/bench/atlas_memory.sh` also reports the peak RSS).

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::analysis::auroc::{auroc_table, Direction, LabelCodes};
use scsae::analysis::correlation::{attribute_genes, AttributionOptions};
use scsae::analysis::sparse_auroc::auroc_table_sparse;
use scsae::analysis::sparse_codes::{SparseCodes, SparseColumn};
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

/// Sparse SAE-like codes generated column by column: feature `j` is active on each cell with
/// probability `0.001 + 0.049 u_j` (`u_j` uniform), gaps drawn geometrically; values are
/// `Exp(1)` rounded to 1e-3 (ties). Labels uniform over `t` types. Deterministic for a seed.
fn sparse_data(n: usize, f: usize, t: usize, seed: u64) -> (SparseCodes, LabelCodes) {
    use rayon::prelude::*;
    let columns: Vec<SparseColumn> = (0..f)
        .into_par_iter()
        .map(|j| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_mul(1_000_003) + j as u64);
            let density = 0.001 + 0.049 * rng.random::<f64>();
            let log_q = (1.0 - density).ln();
            let mut col = SparseColumn::default();
            let mut row = 0usize;
            loop {
                let u: f64 = 1.0 - rng.random::<f64>();
                row += (u.ln() / log_q).floor() as usize;
                if row >= n {
                    break col;
                }
                let v = (-(1.0 - rng.random::<f64>()).ln() * 1000.0).round() / 1000.0;
                col.rows.push(row as u32);
                col.values.push((v as f32).max(0.001));
                row += 1;
            }
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xA7_1A5);
    let labels: Vec<String> = (0..n)
        .map(|_| format!("type{}", rng.random_range(0..t)))
        .collect();
    let x = SparseCodes {
        n_rows: n,
        columns,
        row_ids: None,
        col_names: None,
    };
    (x, LabelCodes::new(&labels))
}

fn atlas(c: &mut Criterion) {
    let n: usize = std::env::var("SCSAE_ATLAS_CELLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let data = OnceLock::new();
    let mut g = c.benchmark_group("atlas");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
    g.bench_function(
        format!("sparse auroc 2048 features x 14 types x {n} cells"),
        |b| {
            let (x, labels): &(SparseCodes, LabelCodes) =
                data.get_or_init(|| sparse_data(n, 2048, 14, 7));
            let feats: Vec<usize> = (0..x.n_cols()).collect();
            let types: Vec<usize> = (0..labels.names.len()).collect();
            b.iter(|| {
                auroc_table_sparse(black_box(x), labels, &feats, &types, Direction::Greater)
                    .unwrap()
            })
        },
    );
    g.finish();
}

fn bench(c: &mut Criterion) {
    let (x, labels) = data(1000, 2048, 14, 0);
    let codes = LabelCodes::new(&labels);
    let feats: Vec<usize> = (0..x.n_cols).collect();
    let types: Vec<usize> = (0..codes.names.len()).collect();
    c.bench_function("auroc 2048 features x 14 types x 1000 cells", |b| {
        b.iter(|| auroc_table(black_box(&x), &codes, &feats, &types, Direction::Greater).unwrap())
    });
    let sparse = SparseCodes::from_dense(&x).unwrap();
    c.bench_function("sparse auroc 2048 features x 14 types x 1000 cells", |b| {
        b.iter(|| {
            auroc_table_sparse(
                black_box(&sparse),
                &codes,
                &feats,
                &types,
                Direction::Greater,
            )
            .unwrap()
        })
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

criterion_group!(benches, bench, atlas);
criterion_main!(benches);
