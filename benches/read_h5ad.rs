//! Reading the bundled .h5ad files (both AnnData layouts) into a CSR matrix with obs and var.
//! Compare with `python scripts/data/bench_anndata.py` (anndata.read_h5ad on the same files).

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use scsae::data::{load, LoadOptions, MatrixLayer};

fn bench(c: &mut Criterion) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let immune = root.join("data/immune1000.h5ad");
    let pbmc = root.join("data/pbmc68k_reduced.h5ad");
    c.bench_function("read immune1000.h5ad (CSR, anndata>=0.8)", |b| {
        b.iter(|| load(&immune, &LoadOptions::default()).unwrap())
    });
    let raw = LoadOptions {
        layer: MatrixLayer::Raw,
        ..Default::default()
    };
    c.bench_function("read pbmc68k_reduced.h5ad raw (legacy, gzip)", |b| {
        b.iter(|| load(&pbmc, &raw).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
