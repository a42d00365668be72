//! The SAE's arithmetic against independent references: PyTorch training steps
//! (scripts/sae/reference_step.py), finite differences of a naive f64 loss, and the unit-norm
//! decoder constraint after every step.

use candle_core::Device;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::sae::config::{Arch, LossConvention, TrainConfig};
use scsae::sae::kernel::{loss_and_grads, AuxK, JumpTerms, LossTerms, Sparsifier};
use scsae::sae::params::Params;
use scsae::sae::train::{initial_state, train_step};
use serde_json::Value;

use crate::common::f32s;

fn assert_close(a: &[f32], b: &[f32], rtol: f32, atol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= atol + rtol * y.abs(),
            "{what}[{i}]: {x} vs reference {y}"
        );
    }
}

#[test]
fn training_steps_match_pytorch() {
    let text = std::fs::read_to_string("tests/fixtures/sae/reference_steps.json").unwrap();
    let fixture: Value = serde_json::from_str(&text).unwrap();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let d = case["d_in"].as_u64().unwrap() as usize;
        let m = case["d_sae"].as_u64().unwrap() as usize;
        let arch = match case["arch"].as_str().unwrap() {
            "topk" => Arch::Topk,
            "matryoshka_batchtopk" => Arch::Matryoshka,
            "jumprelu" => Arch::Jumprelu,
            _ => Arch::Standard,
        };
        let cfg = TrainConfig {
            d_sae: m,
            arch,
            k: case["k"].as_u64().unwrap().max(1) as usize,
            lambda: case["lambda"].as_f64().unwrap(),
            loss: if case["loss"] == "sum" {
                LossConvention::Sum
            } else {
                LossConvention::Mean
            },
            lr: case["lr"].as_f64().unwrap(),
            aux_k_coef: case["aux_k_coef"].as_f64().unwrap(),
            dead_window: case["dead_window"].as_u64().unwrap() as usize,
            matryoshka_widths: case["matryoshka_widths"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_u64().unwrap() as usize).collect())
                .unwrap_or_default(),
            jumprelu_init_threshold: case["jumprelu"]["init_threshold"].as_f64().unwrap_or(0.01),
            jumprelu_bandwidth: case["jumprelu"]["bandwidth"].as_f64().unwrap_or(0.05),
            ..TrainConfig::default()
        };
        let levels = cfg.matryoshka_levels();
        let prefixes: Vec<usize> = if arch == Arch::Matryoshka {
            levels[..levels.len() - 1].to_vec()
        } else {
            Vec::new()
        };
        let total = case["total_steps"].as_u64().unwrap() as usize;
        let mut state = initial_state(&cfg, d, String::new());
        let init: Vec<Vec<f32>> = case["init"].as_array().unwrap().iter().map(f32s).collect();
        state.params = Params {
            d_in: d,
            d_sae: m,
            w_enc: init[0].clone(),
            w_dec: init[1].clone(),
            b_enc: init[2].clone(),
            b_dec: init[3].clone(),
            threshold: if arch == Arch::Jumprelu {
                vec![cfg.jumprelu_init_threshold as f32; m]
            } else {
                Vec::new()
            },
        };
        if let Some(since) = case["since_fired"].as_array() {
            state.since_fired = since.iter().map(|v| v.as_u64().unwrap()).collect();
        }
        let batches = case["batches"].as_array().unwrap();
        let rows = case["batch_rows"].as_array().unwrap();
        for (s, step) in case["steps"].as_array().unwrap().iter().enumerate() {
            let x = f32s(&batches[s]);
            let n = rows[s].as_u64().unwrap() as usize;
            let sp = match arch {
                Arch::Topk => Sparsifier::TopK(cfg.k),
                Arch::Matryoshka => Sparsifier::BatchTopK(cfg.k),
                Arch::Jumprelu => Sparsifier::Threshold(&state.params.threshold),
                _ => Sparsifier::Relu,
            };
            let lambda = if matches!(arch, Arch::Standard | Arch::Jumprelu) {
                cfg.lambda
            } else {
                0.0
            };
            // the dead mask PyTorch used; train_step below must derive the same from its counts
            let dead: Option<Vec<bool>> = step["dead"]
                .as_array()
                .map(|a| a.iter().map(|v| v.as_bool().unwrap()).collect());
            if let Some(dead) = &dead {
                let ours: Vec<bool> = state
                    .since_fired
                    .iter()
                    .map(|&c| c > cfg.dead_window as u64)
                    .collect();
                assert_eq!(&ours, dead, "{name} step {s}: dead mask");
            }
            // the dense products, then the sparse ones (sparse_kernel), both against PyTorch
            for (products, max_sparse_density) in [("dense", 0.0), ("sparse", 1.0)] {
                let (stats, g) = loss_and_grads(
                    &Device::Cpu,
                    &state.params.view(),
                    &x,
                    n,
                    sp,
                    &LossTerms {
                        lambda,
                        conv: cfg.loss,
                        aux: dead.as_deref().map(|dead| AuxK {
                            dead,
                            coef: cfg.aux_k_coef,
                        }),
                        prefixes: &prefixes,
                        jump: (arch == Arch::Jumprelu).then_some(JumpTerms {
                            threshold: &state.params.threshold,
                            bandwidth: cfg.jumprelu_bandwidth,
                        }),
                        max_sparse_density,
                    },
                )
                .unwrap();
                let want_loss = step["loss"].as_f64().unwrap();
                assert!(
                    (stats.loss - want_loss).abs() < 1e-5 * want_loss.abs().max(1.0),
                    "{name} step {s} ({products} products): loss {} vs torch {want_loss}",
                    stats.loss
                );
                let want_g: Vec<Vec<f32>> =
                    step["grads"].as_array().unwrap().iter().map(f32s).collect();
                assert_eq!(want_g.len(), 4 + usize::from(arch == Arch::Jumprelu));
                for (k, (got, want)) in [&g.w_enc, &g.w_dec, &g.b_enc, &g.b_dec, &g.threshold]
                    .iter()
                    .zip(&want_g)
                    .enumerate()
                {
                    assert_close(
                        got,
                        want,
                        1e-4,
                        1e-6,
                        &format!("{name} step {s} grad {k} ({products} products)"),
                    );
                }
            }
            train_step(&Device::Cpu, &mut state, &x, n, &cfg, total).unwrap();
            state.meta.step += 1;
            let after: Vec<Vec<f32>> = step["params_after"]
                .as_array()
                .unwrap()
                .iter()
                .map(f32s)
                .collect();
            let p = &state.params;
            for (k, (got, want)) in [&p.w_enc, &p.w_dec, &p.b_enc, &p.b_dec, &p.threshold]
                .iter()
                .zip(&after)
                .enumerate()
            {
                assert_close(got, want, 1e-4, 2e-6, &format!("{name} step {s} param {k}"));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
/// Naive f64 loss of the standard / TopK SAE, written from the formulas (no shared code).
fn naive_loss(
    p: &[Vec<f64>],
    d: usize,
    m: usize,
    x: &[f64],
    n: usize,
    lambda: f64,
    sum: bool,
    topk: Option<usize>,
) -> f64 {
    let (w_enc, w_dec, b_enc, b_dec) = (&p[0], &p[1], &p[2], &p[3]);
    let mut sq = 0.0;
    let mut l1 = 0.0;
    for r in 0..n {
        let xr = &x[r * d..(r + 1) * d];
        let mut pre: Vec<f64> = (0..m)
            .map(|j| {
                b_enc[j]
                    + (0..d)
                        .map(|i| (xr[i] - b_dec[i]) * w_enc[i * m + j])
                        .sum::<f64>()
            })
            .collect();
        if let Some(k) = topk {
            let mut sorted = pre.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let kth = sorted[k - 1];
            for v in pre.iter_mut() {
                if *v < kth {
                    *v = 0.0;
                }
            }
        }
        let z: Vec<f64> = pre.iter().map(|v| v.max(0.0)).collect();
        for i in 0..d {
            let h = b_dec[i] + (0..m).map(|j| z[j] * w_dec[j * d + i]).sum::<f64>();
            sq += (h - xr[i]).powi(2);
        }
        l1 += z.iter().map(|v| v.abs()).sum::<f64>();
    }
    if sum {
        (sq + lambda * l1) / n as f64
    } else {
        sq / (n * d) as f64 + lambda * l1 / (n * m) as f64
    }
}

#[test]
fn gradients_match_finite_differences() {
    let (d, m, n) = (5, 7, 6);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-1.5f32..1.5)).collect();
    let mut p = Params::init(d, m, &mut rng);
    for v in p.b_enc.iter_mut().chain(p.b_dec.iter_mut()) {
        *v = rng.random_range(-0.2f32..0.2);
    }
    for (sum, topk, lambda) in [(false, None, 3.0), (true, None, 0.7), (false, Some(3), 0.0)] {
        let conv = if sum {
            LossConvention::Sum
        } else {
            LossConvention::Mean
        };
        let sp = match topk {
            Some(k) => Sparsifier::TopK(k),
            None => Sparsifier::Relu,
        };
        let (_, g) = loss_and_grads(
            &Device::Cpu,
            &p.view(),
            &x,
            n,
            sp,
            &LossTerms::plain(lambda, conv),
        )
        .unwrap();
        let grads = [&g.w_enc, &g.w_dec, &g.b_enc, &g.b_dec];
        let base: Vec<Vec<f64>> = [&p.w_enc, &p.w_dec, &p.b_enc, &p.b_dec]
            .iter()
            .map(|v| v.iter().map(|a| *a as f64).collect())
            .collect();
        let xd: Vec<f64> = x.iter().map(|a| *a as f64).collect();
        let h = 1e-6;
        let mut checked = 0;
        for k in 0..4 {
            for i in 0..base[k].len() {
                let mut plus = base.clone();
                plus[k][i] += h;
                let mut minus = base.clone();
                minus[k][i] -= h;
                let fd = (naive_loss(&plus, d, m, &xd, n, lambda, sum, topk)
                    - naive_loss(&minus, d, m, &xd, n, lambda, sum, topk))
                    / (2.0 * h);
                let an = grads[k][i] as f64;
                assert!(
                    (fd - an).abs() <= 1e-4 + 1e-3 * fd.abs(),
                    "sum={sum} topk={topk:?} param {k}[{i}]: analytic {an} vs finite difference {fd}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 2 * d * m + d + m);
    }
}

#[test]
fn decoder_rows_have_unit_norm_after_every_step() {
    let (d, n) = (6, 40);
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let x: Vec<f32> = (0..n * d).map(|_| rng.random_range(-2f32..2.0)).collect();
    for arch in [Arch::Standard, Arch::Topk, Arch::Batchtopk] {
        let cfg = TrainConfig {
            d_sae: 12,
            arch,
            k: 3,
            lr: 0.05,
            project_decoder_grad: arch == Arch::Topk,
            ..TrainConfig::default()
        };
        let mut state = initial_state(&cfg, d, String::new());
        for step in 0..25 {
            let rows = &x[(step % 4) * 10 * d..((step % 4) + 1) * 10 * d];
            train_step(&Device::Cpu, &mut state, rows, 10, &cfg, 25).unwrap();
            state.meta.step += 1;
            for (j, row) in state.params.w_dec.chunks(d).enumerate() {
                let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                assert!(
                    (norm - 1.0).abs() < 1e-5,
                    "{arch} step {step} row {j}: norm {norm}"
                );
            }
        }
    }
}
