//! Planted ground truth: SAEs trained on sparse combinations of known unit atoms recover the atoms.

mod sae_common;

use sae_common::{fraction_recovered, planted};
use scsae::runtime::Runtime;
use scsae::sae::config::{Arch, InputLevel, TrainConfig};
use scsae::sae::input::Inputs;
use scsae::sae::saelens::SourceInfo;
use scsae::sae::train::{train, TrainOptions};

fn inputs(m: scsae::io::matrix::DenseMatrix) -> Inputs {
    Inputs {
        matrix: m,
        tokens: None,
        source: SourceInfo::default(),
        level: InputLevel::Tokens,
    }
}

fn run(cfg: &TrainConfig, seed: u64) -> (f64, scsae::sae::train::TrainedRun) {
    let (atoms, x) = planted(16, 24, 4000, 3, 0.02, seed);
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::cpu().unwrap();
    let run = train(&rt, &inputs(x), cfg, &dir.path().join("sae"), &TrainOptions::default()).unwrap();
    let frac = fraction_recovered(&atoms, &run.sae.w_dec, &run.sae.input_std, 0.9);
    (frac, run)
}

fn small(arch: Arch) -> TrainConfig {
    TrainConfig {
        d_sae: 48,
        arch,
        k: 3,
        lambda: 1.0,
        epochs: 30,
        batch_size: 128,
        lr: 3e-3,
        ..TrainConfig::default()
    }
}

#[test]
fn l1_sae_recovers_planted_atoms() {
    let (frac, run) = run(&small(Arch::Standard), 1);
    assert!(frac >= 0.8, "only {:.0}% of atoms recovered (metrics {:?})", 100.0 * frac, run.metrics.metrics.r2);
}

#[test]
fn topk_sae_recovers_planted_atoms_with_exactly_k_active() {
    let (frac, run) = run(&small(Arch::Topk), 2);
    assert!(frac >= 0.8, "only {:.0}% of atoms recovered", 100.0 * frac);
    assert!(run.metrics.metrics.l0 <= 3.0 + 1e-9 && run.metrics.metrics.l0 > 2.5, "L0 {}", run.metrics.metrics.l0);
}

#[test]
fn batch_topk_sae_recovers_planted_atoms_and_keeps_l0_near_k() {
    let (frac, run) = run(&small(Arch::Batchtopk), 3);
    assert!(frac >= 0.8, "only {:.0}% of atoms recovered", 100.0 * frac);
    let l0 = run.metrics.metrics.l0;
    assert!((1.5..=6.0).contains(&l0), "inference L0 {l0} far from k = 3");
    assert!(run.sae.threshold.as_ref().is_some_and(|t| t.iter().all(|v| *v > 0.0)));
}
