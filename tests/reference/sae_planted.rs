//! Training behaviour on planted ground truth: SAEs trained on sparse combinations of known unit
//! atoms recover the atoms (L1, TopK, BatchTopK); L1 warm-up and dead-feature resampling act as
//! documented.

use scsae::activations::Provenance;
use scsae::data::DenseMatrix;
use scsae::runtime::Runtime;
use scsae::sae::config::{Arch, InputLevel, TrainConfig};
use scsae::sae::input::Inputs;
use scsae::sae::train::{train, TrainOptions, TrainedRun};

use crate::common::sae::{fraction_recovered, planted};

fn inputs(m: DenseMatrix) -> Inputs {
    Inputs {
        matrix: m,
        tokens: None,
        source: Provenance::default(),
        level: InputLevel::Tokens,
    }
}

/// 24 unit atoms in 16 dims, 3 per sample with coefficients in [1, 2), noise sd 0.02, an offset.
fn data() -> (Vec<Vec<f64>>, DenseMatrix) {
    planted(16, 24, 4000, 3, 0.02, 1)
}

fn run(x: &DenseMatrix, cfg: &TrainConfig) -> TrainedRun {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::cpu().unwrap();
    train(
        &rt,
        &inputs(x.clone()),
        cfg,
        &dir.path().join("sae"),
        &TrainOptions::default(),
    )
    .unwrap()
}

fn small(arch: Arch, epochs: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        d_sae: 48,
        arch,
        k: 3,
        lambda: 3.0,
        epochs,
        batch_size: 128,
        lr,
        tied_init: arch != Arch::Standard,
        ..TrainConfig::default()
    }
}

#[test]
fn l1_sae_recovers_planted_atoms() {
    let (atoms, x) = data();
    let run = run(&x, &small(Arch::Standard, 60, 1e-2));
    let frac = fraction_recovered(&atoms, &run.sae.w_dec, &run.sae.input_std, 0.9);
    assert!(
        frac >= 0.8,
        "only {:.0}% of atoms matched with cosine > 0.9",
        100.0 * frac
    );
    // and an SAE that has not learnt (random init, no training) does not pass the same bar
    let untrained = run_untrained(&x);
    let base = fraction_recovered(&atoms, &untrained, &[1.0; 16], 0.9);
    assert!(base < 0.2, "random decoder already matches {base}");
}

fn run_untrained(x: &DenseMatrix) -> Vec<f32> {
    let cfg = small(Arch::Standard, 1, 1e-12);
    run(x, &cfg).sae.w_dec
}

#[test]
fn topk_sae_recovers_planted_atoms_with_exactly_k_active() {
    let (atoms, x) = data();
    let run = run(&x, &small(Arch::Topk, 40, 3e-3));
    let frac = fraction_recovered(&atoms, &run.sae.w_dec, &run.sae.input_std, 0.9);
    assert!(frac >= 0.8, "only {:.0}% of atoms recovered", 100.0 * frac);
    let codes = run.sae.encode(&x).unwrap();
    for row in codes.data.chunks(48) {
        assert!(row.iter().filter(|v| **v > 0.0).count() <= 3);
    }
    let l0 = run.metrics.metrics.l0;
    assert!(l0 <= 3.0 && l0 > 2.9, "L0 {l0}");
}

#[test]
fn batch_topk_sae_recovers_planted_atoms_and_keeps_l0_near_k() {
    let (atoms, x) = data();
    let run = run(&x, &small(Arch::Batchtopk, 80, 3e-3));
    let frac = fraction_recovered(&atoms, &run.sae.w_dec, &run.sae.input_std, 0.9);
    assert!(frac >= 0.8, "only {:.0}% of atoms recovered", 100.0 * frac);
    // inference uses the learned JumpReLU threshold; its L0 stays near k on average
    let l0 = run.metrics.metrics.l0;
    assert!(
        (2.0..=4.5).contains(&l0),
        "inference L0 {l0} far from k = 3"
    );
    let th = run.sae.threshold.as_ref().unwrap();
    assert!(th.iter().all(|v| *v > 0.0 && *v == th[0]));
    // rows have different numbers of active latents (not a per-row TopK)
    let codes = run.sae.encode(&x).unwrap();
    let counts: Vec<usize> = codes
        .data
        .chunks(48)
        .map(|r| r.iter().filter(|v| **v > 0.0).count())
        .collect();
    assert!(counts.iter().any(|&c| c != counts[0]));
}

#[test]
fn l1_warmup_lowers_the_early_penalty() {
    let (_, x) = data();
    let base = small(Arch::Standard, 2, 1e-2);
    let plain = run(&x, &base);
    let warm = run(
        &x,
        &TrainConfig {
            l1_warmup_steps: 64,
            ..base
        },
    );
    let (p, w) = (&plain.metrics.history[0], &warm.metrics.history[0]);
    // 32 steps per epoch: lambda averages about 1/4 of its value over epoch 1 with a 64-step warm-up
    assert!(
        w.l1_loss < 0.6 * p.l1_loss,
        "warm-up l1 {} vs plain {}",
        w.l1_loss,
        p.l1_loss
    );
    assert!(w.l0 > p.l0, "warm-up L0 {} vs plain {}", w.l0, p.l0);
}

#[test]
fn resampling_revives_dead_features() {
    let (_, x) = data();
    let base = TrainConfig {
        lambda: 10.0,
        ..small(Arch::Standard, 30, 3e-3)
    };
    let plain = run(&x, &base);
    let rs = run(
        &x,
        &TrainConfig {
            resample_every: 100,
            ..base
        },
    );
    let resampled: usize = rs.metrics.history.iter().map(|h| h.resampled).sum();
    assert!(resampled > 0, "nothing was resampled");
    assert_eq!(
        plain
            .metrics
            .history
            .iter()
            .map(|h| h.resampled)
            .sum::<usize>(),
        0
    );
    assert!(
        rs.metrics.metrics.dead < plain.metrics.metrics.dead,
        "dead with resampling {} vs without {}",
        rs.metrics.metrics.dead,
        plain.metrics.metrics.dead
    );
}

/// The TopK auxiliary loss (SAELens `aux_loss_coefficient`, `dead_feature_window`) pulls latents
/// that stopped firing back towards the residual: with a dictionary twice the 24 planted atoms and
/// independent (untied) initialisation, which leaves many latents dead, fewer latents end dead or
/// never fire with it than without, and the planted atoms are still recovered.
#[test]
fn topk_auxiliary_loss_revives_dead_latents() {
    let (atoms, x) = data();
    let base = TrainConfig {
        d_sae: 48,
        dead_window: 20,
        tied_init: false,
        ..small(Arch::Topk, 15, 1e-2)
    };
    let off = run(
        &x,
        &TrainConfig {
            aux_k_coef: 0.0,
            ..base.clone()
        },
    );
    let on = run(&x, &base);
    let (d_on, d_off) = (on.metrics.metrics.dead, off.metrics.metrics.dead);
    assert!(
        d_off > 10,
        "the test needs dead latents without the loss: {d_off}"
    );
    assert!(
        d_on < d_off,
        "dead with the auxiliary loss {d_on} vs without {d_off}"
    );
    let frac = fraction_recovered(&atoms, &on.sae.w_dec, &on.sae.input_std, 0.9);
    assert!(frac >= 0.8, "recovered {frac}");
}

/// R^2 (z-scored space) of the reconstruction from the first `w` latents only: `z[:, :w] W_dec[:w] +
/// b_dec`, computed here from the saved weights.
fn prefix_r2(sae: &scsae::sae::Sae, x: &DenseMatrix, w: usize) -> f64 {
    let z = sae.encode(x).unwrap();
    let (d, m) = (x.n_cols, z.n_cols);
    let (mut sse, mut sst) = (0f64, 0f64);
    let xz: Vec<f64> = x
        .data
        .iter()
        .enumerate()
        .map(|(i, v)| ((v - sae.input_mean[i % d]) / sae.input_std[i % d]) as f64)
        .collect();
    for r in 0..x.n_rows {
        for i in 0..d {
            let mut h = sae.b_dec[i] as f64;
            for j in 0..w {
                h += z.data[r * m + j] as f64 * sae.w_dec[j * d + i] as f64;
            }
            let t = xz[r * d + i];
            sse += (h - t) * (h - t);
            sst += t * t;
        }
    }
    1.0 - sse / sst
}

/// Matryoshka BatchTopK (SAELens `matryoshka_batchtopk`): the nested losses make the first level's
/// latents a usable dictionary on their own. With levels 8 / 48 on the 24 planted atoms, the first 8
/// latents alone reconstruct the data much better than the first 8 of a plain BatchTopK SAE trained
/// the same way, and the full dictionary still reconstructs well and recovers half the atoms.
#[test]
fn matryoshka_first_level_reconstructs_on_its_own() {
    let (atoms, x) = data();
    let base = small(Arch::Batchtopk, 30, 1e-2);
    let plain = run(&x, &base);
    let nested = run(
        &x,
        &TrainConfig {
            arch: Arch::Matryoshka,
            matryoshka_widths: vec![8, 48],
            ..base
        },
    );
    let (rp, rn) = (prefix_r2(&plain.sae, &x, 8), prefix_r2(&nested.sae, &x, 8));
    assert!(
        rn > rp + 0.3,
        "first 8 latents: R2 {rn} (matryoshka) vs {rp} (batchtopk)"
    );
    let frac = fraction_recovered(&atoms, &nested.sae.w_dec, &nested.sae.input_std, 0.9);
    // measured: first-8 R2 0.57 vs 0.08; full R2 0.85 vs 0.94; atoms recovered 50% vs 96% (the 8
    // first-level latents absorb mixtures of the 24 equally frequent atoms: the price of nesting)
    assert!(
        nested.metrics.metrics.r2 > 0.75,
        "{}",
        nested.metrics.metrics.r2
    );
    assert!(frac >= 0.4, "recovered {frac}");
    assert_eq!(nested.sae.cfg.architecture, "matryoshka_batchtopk");
}

/// JumpReLU (SAELens defaults: threshold 0.01, bandwidth 0.05; L0 penalty lambda): the thresholds
/// are learned (they rise far above their start), the L0 settles near the 3 planted atoms per
/// sample, every atom is recovered, and a smaller penalty leaves more latents active. Measured:
/// lambda 3 gives L0 2.8, R^2 0.93, all atoms, mean threshold 1.1; lambda 0.3 gives L0 9.4.
#[test]
fn jumprelu_learns_thresholds_and_recovers_planted_atoms() {
    let (atoms, x) = data();
    let cfg = |lambda: f64| TrainConfig {
        lambda,
        ..small(Arch::Jumprelu, 30, 1e-2)
    };
    let r = run(&x, &cfg(3.0));
    let m = &r.metrics.metrics;
    assert!((2.0..4.0).contains(&m.l0), "L0 {}", m.l0);
    assert!(m.r2 > 0.85, "R2 {}", m.r2);
    let frac = fraction_recovered(&atoms, &r.sae.w_dec, &r.sae.input_std, 0.9);
    assert!(frac >= 0.9, "recovered {frac}");
    let th = r
        .sae
        .threshold
        .clone()
        .expect("a JumpReLU SAE saves its thresholds");
    let mean = th.iter().sum::<f32>() / th.len() as f32;
    assert!(
        mean > 0.1 && th.iter().all(|t| *t >= 0.0),
        "thresholds {th:?}"
    );
    assert_eq!(r.sae.cfg.architecture, "jumprelu");
    let loose = run(&x, &cfg(0.3));
    assert!(
        loose.metrics.metrics.l0 > m.l0 + 2.0,
        "{} vs {}",
        loose.metrics.metrics.l0,
        m.l0
    );
}
