//! SpikGPT speed: one training step (batch 128; an epoch of the 700-cell split is 6 steps) and
//! annotation of the 1000 bundled immune cells, for m = 300 and m = 8 tokens (width 64, 4 heads,
//! T = 4, 1 block, dropout 0.1 so training computes every token). Annotation is measured with the
//! exact collapse of identical token copies (default) and with all m tokens computed.
//! Compare with scripts/spikgpt/bench_torch.py (the same model in PyTorch, same sizes and threads).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench --bench spikgpt`

use std::path::Path;

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use scsae::io::matrix::read_matrix;
use scsae::spikgpt::annotate::predict_proba;
use scsae::spikgpt::config::ModelConfig;
use scsae::spikgpt::layers::Pass;
use scsae::spikgpt::lif::FireMode;
use scsae::spikgpt::model::SpikGpt;
use scsae::spikgpt::optim::Sgd;

fn bench(c: &mut Criterion) {
    let m = read_matrix(
        Path::new("tests/fixtures/spikgpt/immune1000_pca50.safetensors"),
        None,
    )
    .expect("fixture");
    let k = m.n_cols;
    let mut group = c.benchmark_group("spikgpt");
    group.sample_size(10);
    for tokens in [8usize, 300] {
        let cfg = ModelConfig {
            input_dim: k,
            width: 64,
            heads: 4,
            tokens,
            ..ModelConfig::default()
        };
        let model = SpikGpt::new(&cfg, 14, &Device::Cpu, 1).expect("model");
        let xb = Tensor::from_slice(&m.data[..128 * k], (128, k), &Device::Cpu).expect("batch");
        let yb = Tensor::from_vec(
            (0..128u32).map(|i| i % 14).collect::<Vec<u32>>(),
            128,
            &Device::Cpu,
        )
        .expect("labels");
        let mut opt = Sgd::new(0.9, 1e-4);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        group.bench_function(format!("train_step_b128_m{tokens}"), |b| {
            b.iter(|| {
                let mut pass = Pass {
                    train: true,
                    fire: FireMode::Spike,
                    rng: Some(&mut rng),
                    stats: None,
                    multiplicity: 1,
                };
                let logits = model.forward(&xb, &mut pass).expect("forward");
                let loss = candle_nn::loss::cross_entropy(&logits, &yb).expect("loss");
                let grads = loss.backward().expect("backward");
                opt.step(&model.params.trainable, &grads, 0.01)
                    .expect("step");
            })
        });
        group.bench_function(format!("annotate_1000_m{tokens}_collapsed"), |b| {
            b.iter(|| predict_proba(&model, &m.data, 256, None).expect("predict"))
        });
        let mut full = model.clone();
        full.collapse_identical_tokens = false;
        group.bench_function(format!("annotate_1000_m{tokens}_all_tokens"), |b| {
            b.iter(|| predict_proba(&full, &m.data, 256, None).expect("predict"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
