//! Training throughput of the paper's SAE recipe: one optimiser step (forward, hand-derived backward,
//! clipping, Adam, decoder renormalisation) on a 512 x 512 batch with M = 2048, the shape of the
//! paper's runs (50,000 tokens x 512 dims). Compare with `scripts/sae/bench_torch.py` (same recipe in
//! plain PyTorch, same shapes, same thread count).
//!
//! A second group times the five dense products of an L1 step (`sae::linalg::matmul`, the trainer's
//! call, on the step's shapes and transposes; 512 x 512 x 2048 multiply-adds each): the part of the
//! step no element pass can shorten.
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench --bench sae_train`

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::sae::config::{Arch, TrainConfig};
use scsae::sae::linalg::{matmul, Operand};
use scsae::sae::train::{initial_state, train_step};

fn bench(c: &mut Criterion) {
    let (d, batch) = (512, 512);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..batch * d)
        .map(|_| rng.random_range(-1.7f32..1.7))
        .collect();
    let mut group = c.benchmark_group("sae_train_step");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    for (name, arch) in [("standard_l1", Arch::Standard), ("topk32", Arch::Topk)] {
        let cfg = TrainConfig {
            arch,
            ..TrainConfig::default()
        };
        let mut state = initial_state(&cfg, d, String::new());
        group.bench_function(name, |b| {
            b.iter(|| {
                train_step(&Device::Cpu, &mut state, &x, batch, &cfg, 3920).unwrap();
                state.meta.step += 1;
            })
        });
    }
    group.finish();
}

fn bench_products(c: &mut Criterion) {
    let (n, d, m) = (512usize, 512usize, 2048usize);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut r =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1f32..1.0)).collect() };
    let (xc, w_enc, z, w_dec, g_out, g_pre) =
        (r(n * d), r(d * m), r(n * m), r(m * d), r(n * d), r(n * m));
    let mut group = c.benchmark_group("sae_l1_dense_products");
    group.sample_size(10);
    group.throughput(Throughput::Elements((2 * n * d * m) as u64)); // flops
    let cases = [
        (
            "pre = xc W_enc",
            Operand::n(&xc, n, d),
            Operand::n(&w_enc, d, m),
        ),
        (
            "x_hat = z W_dec",
            Operand::n(&z, n, m),
            Operand::n(&w_dec, m, d),
        ),
        (
            "dW_dec = z^T g_out",
            Operand::t(&z, n, m),
            Operand::n(&g_out, n, d),
        ),
        (
            "g_pre = g_out W_dec^T",
            Operand::n(&g_out, n, d),
            Operand::t(&w_dec, m, d),
        ),
        (
            "dW_enc = xc^T g_pre",
            Operand::t(&xc, n, d),
            Operand::n(&g_pre, n, m),
        ),
    ];
    for (name, a, b) in cases {
        group.bench_function(name, |bn| bn.iter(|| matmul(&Device::Cpu, a, b).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench, bench_products);
criterion_main!(benches);
