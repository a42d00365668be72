//! Training throughput of the paper's SAE recipe: one optimiser step (forward, hand-derived backward,
//! clipping, Adam, decoder renormalisation) on a 512 x 512 batch with M = 2048, the shape of the
//! paper's runs (50,000 tokens x 512 dims). Compare with `scripts/sae/bench_torch.py` (same recipe in
//! plain PyTorch, same shapes, same thread count).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench --bench sae_train`

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::sae::config::{Arch, TrainConfig};
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

criterion_group!(benches, bench);
criterion_main!(benches);
