//! Explanation speed: attribution of 1000 bundled immune cells (PCA-50 stand-in embeddings) to the
//! features of a 200-feature SAE, by gradient x activation and by integrated gradients (32 steps),
//! and one ablation pass (every cell re-annotated without its top feature). SpikGPT m = 8, width 64,
//! 4 heads, T = 4, random weights (speed does not depend on training).
//!
//! Run: `RAYON_NUM_THREADS=2 cargo bench --bench explain`

use std::path::Path;

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::explain::ablation::probs_without;
use scsae::explain::attribution::{attribute, AttributionOptions, Method};
use scsae::explain::decompose::Decomposition;
use scsae::io::matrix::read_matrix;
use scsae::sae::saelens::{SaeConfig, SaeTensors};
use scsae::sae::Sae;
use scsae::spikgpt::config::ModelConfig;
use scsae::spikgpt::model::SpikGpt;

fn bench(c: &mut Criterion) {
    let m = read_matrix(
        Path::new("tests/fixtures/spikgpt/immune1000_pca50.safetensors"),
        None,
    )
    .expect("fixture");
    let (k, f) = (m.n_cols, 200);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut w =
        |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| rng.random_range(-s..s)).collect() };
    let sae = Sae::from_parts(
        SaeConfig {
            d_in: k,
            d_sae: f,
            architecture: "standard".into(),
            ..SaeConfig::default()
        },
        SaeTensors {
            w_enc: w(k * f, 0.2),
            w_dec: w(f * k, 0.2),
            b_enc: vec![0.0; f],
            b_dec: vec![0.0; k],
            input_mean: vec![0.0; k],
            input_std: vec![1.0; k],
            threshold: None,
        },
        None,
    );
    let dec = Decomposition::new(&sae, &m).expect("decompose");
    let cfg = ModelConfig {
        input_dim: k,
        width: 64,
        heads: 4,
        tokens: 8,
        ..ModelConfig::default()
    };
    let model = SpikGpt::new(&cfg, 14, &Device::Cpu, 1).expect("model");
    let mut group = c.benchmark_group("explain");
    group.sample_size(10);
    for (name, method) in [
        ("attribute_1000_grad", Method::GradientXActivation),
        (
            "attribute_1000_ig32",
            Method::IntegratedGradients { steps: 32 },
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                attribute(
                    &model,
                    &dec,
                    &AttributionOptions {
                        method,
                        ..AttributionOptions::default()
                    },
                )
                .expect("attribute")
            })
        });
    }
    let attrs = attribute(&model, &dec, &AttributionOptions::default()).expect("attribute");
    let drop: Vec<Vec<usize>> = attrs
        .iter()
        .map(|a| a.shares.iter().take(1).map(|s| s.feature).collect())
        .collect();
    group.bench_function("ablate_top1_1000", |b| {
        b.iter(|| probs_without(&model, &dec, &drop, 256).expect("ablate"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
