//! `spikgpt annotate --sae` and `spikgpt ablate`: explanations of SpikGPT's calls through SAE
//! features.
//!
//! - A planted case: the class depends on one SAE feature only; that feature must rank first.
//! - The bundled immune data (PCA-50 stand-in embeddings, NK held out): the terms add up to the logit
//!   difference computed independently by the model's forward pass; integrated gradients on the
//!   smooth surrogate network satisfy completeness without normalisation; removing the top-attributed
//!   features changes calls far more often than removing size-matched random features.
//! - Mismatched SAEs (width, layer) are refused before anything is written.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::data::DenseMatrix;
use scsae::explain::attribution::{attribute, AttributionOptions, Method};
use scsae::explain::decompose::Decomposition;
use scsae::io::matrix::read_matrix;
use scsae::sae::saelens::{SaeConfig, SaeTensors};
use scsae::sae::Sae;
use scsae::spikgpt::annotate::load_model_dir;
use scsae::spikgpt::layers::Pass;
use scsae::spikgpt::lif::FireMode;
use scsae::spikgpt::train::{train, TrainData, TrainOptions};
use scsae::spikgpt::{ModelConfig, SpikGpt, TrainConfig};
use scsae::Runtime;

use crate::common::json;
use crate::common::spikgpt::{immune_train_args, small_model_args, DATA, EMB, KEY};

fn bin(name: &str) -> Command {
    let mut c = Command::cargo_bin(name).unwrap();
    c.args(["--threads", "1"]);
    c
}

/// `spikgpt <sub> --model M --embeddings E --sae S --out O` (more options appended by the caller).
fn explain_cmd(sub: &str, model: &Path, emb: &Path, sae: &Path, out: &Path) -> Command {
    let mut c = bin("spikgpt");
    c.arg(sub)
        .arg("--model")
        .arg(model)
        .arg("--embeddings")
        .arg(emb)
        .arg("--sae")
        .arg(sae)
        .arg("--out")
        .arg(out);
    c
}

/// The error message of a command that must fail.
fn failure_text(mut c: Command) -> String {
    let o = c.assert().failure();
    String::from_utf8_lossy(&o.get_output().stderr).to_string()
}

/// Model, SAE and SAE analysis on the immune data, built once for all tests of this file.
struct Immune {
    _dir: tempfile::TempDir,
    model: PathBuf,
    sae: PathBuf,
    analysis: PathBuf,
}

fn immune() -> &'static Immune {
    static CELL: OnceLock<Immune> = OnceLock::new();
    CELL.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        bin("spikgpt")
            .args(immune_train_args("NK"))
            .args(small_model_args())
            .arg("--out")
            .arg(&model)
            .assert()
            .success();
        let sae = dir.path().join("sae");
        bin("scsae")
            .args([
                "train",
                "--activations",
                EMB,
                "--level",
                "cells",
                "--features",
                "200",
            ])
            .args([
                "--lambda",
                "3",
                "--epochs",
                "100",
                "--batch-size",
                "128",
                "--lr",
                "0.001",
            ])
            .args(["--quiet", "--out"])
            .arg(&sae)
            .assert()
            .success();
        let codes = dir.path().join("codes.safetensors");
        bin("scsae")
            .args(["encode", "--activations", EMB, "--sae"])
            .arg(&sae)
            .arg("--out")
            .arg(&codes)
            .assert()
            .success();
        let analysis = dir.path().join("analysis");
        bin("scsae")
            .args(["analyze", "--data", DATA, "--label-key", KEY, "--features"])
            .arg(&codes)
            .arg("--out")
            .arg(&analysis)
            .assert()
            .success();
        Immune {
            model,
            sae,
            analysis,
            _dir: dir,
        }
    })
}

/// Rows of a CSV as maps from column to text.
fn csv_rows(p: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(p).unwrap();
    let mut lines = text.lines();
    let head: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            head.iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

/// Logits of the target class computed directly by the model's forward pass.
fn forward_logits(model: &SpikGpt, x: &[f32], fire: FireMode) -> Vec<Vec<f32>> {
    let k = model.config.input_dim;
    let t = Tensor::from_slice(x, (x.len() / k, k), &model.params.device).unwrap();
    let mut pass = Pass {
        train: false,
        fire,
        rng: None,
        stats: None,
        multiplicity: 1,
    };
    model
        .forward(&t, &mut pass)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
}

#[test]
fn terms_add_up_to_the_logit_difference_of_the_model() {
    let fx = immune();
    let rt = Runtime::cpu().unwrap();
    let loaded = load_model_dir(&fx.model, &rt).unwrap();
    let sae = Sae::load(&fx.sae).unwrap();
    let emb = read_matrix(Path::new(EMB), None).unwrap();
    let dec = Decomposition::new(&sae, &emb).unwrap();
    let model = &loaded.model;
    // independent logit differences: forward on the embeddings and on the all-zero-code point
    // e0 = mean + std * b_dec, computed here from the SAE's tensors
    let e0: Vec<f32> = (0..sae.d_in())
        .map(|j| sae.input_mean[j] + sae.input_std[j] * sae.b_dec[j])
        .collect();
    let cell = forward_logits(model, &emb.data, FireMode::SpikeNoGrad);
    let base = forward_logits(model, &e0, FireMode::SpikeNoGrad);
    for method in [
        Method::GradientXActivation,
        Method::IntegratedGradients { steps: 16 },
    ] {
        let attrs = attribute(
            model,
            &dec,
            &AttributionOptions {
                method,
                batch_size: 97,
                ..AttributionOptions::default()
            },
        )
        .unwrap();
        let mut complete = 0;
        for (i, a) in attrs.iter().enumerate() {
            let row = &cell[i];
            let t = (0..row.len())
                .max_by(|&x, &y| row[x].total_cmp(&row[y]).then(y.cmp(&x)))
                .unwrap();
            assert_eq!(a.target, t, "explained class of cell {i}");
            let delta = (row[t] - base[0][t]) as f64;
            assert!(
                (a.delta() - delta).abs() < 1e-4,
                "cell {i}: {} vs {delta}",
                a.delta()
            );
            let sum: f64 = a.shares.iter().map(|s| s.attribution).sum::<f64>() + a.error_term;
            // every active feature is listed, and the residual is what the terms leave
            let active = dec.z(i).iter().filter(|z| **z != 0.0).count();
            assert_eq!(a.shares.len(), active);
            assert!((delta - sum - a.residual).abs() < 1e-3 * delta.abs().max(1.0));
            if (sum - delta).abs() <= 1e-4 * delta.abs().max(1.0) {
                complete += 1;
            }
        }
        // completeness normalisation fails only where the surrogate gradient predicts a change of
        // the wrong sign
        assert!(
            complete as f64 >= 0.9 * attrs.len() as f64,
            "{method:?}: {complete} of {} cells add up",
            attrs.len()
        );
    }
}

#[test]
fn integrated_gradients_are_complete_on_the_smooth_network() {
    let fx = immune();
    let rt = Runtime::cpu().unwrap();
    let loaded = load_model_dir(&fx.model, &rt).unwrap();
    let sae = Sae::load(&fx.sae).unwrap();
    let emb = read_matrix(Path::new(EMB), None).unwrap();
    let first: Vec<usize> = (0..60).collect();
    let emb = emb.select_rows(&first);
    let dec = Decomposition::new(&sae, &emb).unwrap();
    // the smooth network is differentiable only with the reset on the gradient path
    let mut cfg = loaded.file.model.clone();
    cfg.lif.detach_reset = false;
    let smooth = SpikGpt::new(&cfg, loaded.model.n_classes, &rt.device, 0).unwrap();
    smooth
        .params
        .load(&fx.model.join("model.safetensors"))
        .unwrap();
    let model = &smooth;
    let attrs = attribute(
        model,
        &dec,
        &AttributionOptions {
            method: Method::IntegratedGradients { steps: 64 },
            fire: FireMode::Smooth,
            normalise: false,
            ..AttributionOptions::default()
        },
    )
    .unwrap();
    let e0: Vec<f32> = (0..sae.d_in())
        .map(|j| sae.input_mean[j] + sae.input_std[j] * sae.b_dec[j])
        .collect();
    let cell = forward_logits(model, &emb.data, FireMode::Smooth);
    let base = forward_logits(model, &e0, FireMode::Smooth);
    let mut worst = 0f64;
    for (i, a) in attrs.iter().enumerate() {
        assert_eq!(a.scale, 1.0);
        let t = a.target;
        let delta = (cell[i][t] - base[0][t]) as f64;
        let sum: f64 = a.shares.iter().map(|s| s.attribution).sum::<f64>() + a.error_term;
        worst = worst.max((sum - delta).abs() / delta.abs().max(0.1));
    }
    // midpoint rule with 64 steps on a smooth function: well under 2 %
    assert!(worst < 0.02, "worst relative completeness gap {worst}");
}

#[test]
fn planted_feature_ranks_first() {
    // 8 features, identity dictionary: z = relu(x) = x for positive x, no reconstruction error.
    let k = 8;
    let planted = 3;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let n = 600;
    let x: Vec<f32> = (0..n * k).map(|_| rng.random_range(0.0..2.0)).collect();
    let labels: Vec<String> = (0..n)
        .map(|i| {
            if x[i * k + planted] > 1.0 {
                "high"
            } else {
                "low"
            }
            .to_string()
        })
        .collect();
    let eye: Vec<f32> = (0..k * k)
        .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
        .collect();
    let sae = Sae::from_parts(
        SaeConfig {
            d_in: k,
            d_sae: k,
            architecture: "standard".into(),
            ..SaeConfig::default()
        },
        SaeTensors {
            w_enc: eye.clone(),
            w_dec: eye,
            b_enc: vec![0.0; k],
            b_dec: vec![0.0; k],
            input_mean: vec![0.0; k],
            input_std: vec![1.0; k],
            threshold: None,
        },
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::cpu().unwrap();
    let data = TrainData {
        x: x.clone(),
        dim: k,
        labels: labels.clone(),
        cell_ids: (0..n).map(|i| format!("c{i}")).collect(),
        label_source: PathBuf::from("planted"),
        label_key: "class".into(),
        embedding: Default::default(),
    };
    let opts = TrainOptions {
        model: ModelConfig {
            width: 32,
            heads: 2,
            tokens: 4,
            dropout: 0.0,
            ..ModelConfig::default()
        },
        train: TrainConfig {
            epochs: 30,
            lr: 0.05,
            batch_size: 64,
            seed: 3,
            ..TrainConfig::default()
        },
        ..TrainOptions::default()
    };
    let out = train(&rt, &data, &opts, &dir.path().join("model")).unwrap();
    let emb = DenseMatrix::new(n, k, x).unwrap();
    let dec = Decomposition::new(&sae, &emb).unwrap();
    let attrs = attribute(
        &out.model,
        &dec,
        &AttributionOptions {
            method: Method::IntegratedGradients { steps: 16 },
            ..AttributionOptions::default()
        },
    )
    .unwrap();
    let high = out
        .prepared
        .classes
        .iter()
        .position(|c| c == "high")
        .unwrap();
    let (mut correct, mut n_high) = (0, 0);
    let mut mean_abs = vec![0f64; k];
    for (i, a) in attrs.iter().enumerate() {
        correct += (out.prepared.classes[a.target] == labels[i]) as usize;
        for s in &a.shares {
            mean_abs[s.feature] += s.attribution.abs() / n as f64;
        }
        if a.target == high {
            // the planted feature is the strongest driver of every "high" call
            n_high += 1;
            assert_eq!(a.shares[0].feature, planted, "cell {i}: {:?}", a.shares);
        }
    }
    assert!(
        correct as f64 > 0.9 * n as f64,
        "model accuracy {correct}/{n}"
    );
    assert!(n_high > n / 4, "{n_high} high calls");
    // over all cells it carries by far the most attribution
    let mut others = mean_abs.clone();
    others.remove(planted);
    let runner_up = others.iter().cloned().fold(0.0, f64::max);
    assert!(
        mean_abs[planted] > 3.0 * runner_up,
        "mean |attribution| per feature: {mean_abs:?}"
    );
}

#[test]
fn immune_annotation_is_explained_and_top_features_are_causal() {
    let fx = immune();
    let dir = tempfile::tempdir().unwrap();
    let pred = dir.path().join("pred.csv");
    let o = explain_cmd("annotate", &fx.model, Path::new(EMB), &fx.sae, &pred)
        .arg("--analysis")
        .arg(&fx.analysis)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&o.get_output().stdout).to_string();
    assert!(text.contains("explained 1000 cells"), "{text}");
    for f in [
        "pred_attribution.csv",
        "pred_attribution.parquet",
        "pred_features.csv",
        "pred_class_drivers.csv",
        "pred_unknown_features.csv",
        "pred_class_heatmap.png",
        "pred_class_heatmap.svg",
        "pred_ablation.csv",
        "pred_explain.json",
    ] {
        assert!(dir.path().join(f).exists(), "missing {f}");
    }
    // per cell: terms add up (features_total + error_term + residual = delta)
    let cells = csv_rows(&dir.path().join("pred_attribution.csv"));
    assert_eq!(cells.len(), 1000);
    let num = |r: &std::collections::HashMap<String, String>, c: &str| -> f64 {
        r[c].parse::<f64>().unwrap()
    };
    for r in &cells {
        let d = num(r, "logit") - num(r, "baseline_logit");
        assert!((d - num(r, "logit_delta")).abs() < 1e-6);
        let sum = num(r, "features_total") + num(r, "error_term") + num(r, "residual");
        assert!((sum - d).abs() < 1e-6 * d.abs().max(1.0));
    }
    // the same cells in other batches and on another number of threads give the same bytes
    let pred_b = dir.path().join("batch64.csv");
    Command::cargo_bin("spikgpt")
        .unwrap()
        .args(["--threads", "3", "annotate", "--embeddings", EMB, "--model"])
        .arg(&fx.model)
        .arg("--sae")
        .arg(&fx.sae)
        .arg("--analysis")
        .arg(&fx.analysis)
        .args(["--batch-size", "64", "--no-ablation", "--out"])
        .arg(&pred_b)
        .assert()
        .success();
    for stem in [
        "attribution",
        "features",
        "class_drivers",
        "unknown_features",
    ] {
        assert_eq!(
            std::fs::read(dir.path().join(format!("pred_{stem}.csv"))).unwrap(),
            std::fs::read(dir.path().join(format!("batch64_{stem}.csv"))).unwrap(),
            "{stem} depends on batch size or threads"
        );
    }
    // the top features carry their interpretation from `scsae analyze`
    let feats = csv_rows(&dir.path().join("pred_features.csv"));
    assert!(feats.len() >= 1000);
    let named = feats.iter().filter(|r| !r["best_type"].is_empty()).count();
    assert!(named as f64 > 0.9 * feats.len() as f64);
    // Unknown cells include the held-out NK cells: NK features are among their novel features
    let novel = csv_rows(&dir.path().join("pred_unknown_features.csv"));
    assert!(!novel.is_empty());
    // causal check: the top-attributed features change calls far more often than random ones
    let summary = json(&dir.path().join("pred_explain.json"));
    let rows = summary["ablation"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    for r in rows {
        let (k, top, rnd) = (
            r["k"].as_u64().unwrap(),
            r["top_call_changed"].as_f64().unwrap(),
            r["random_call_changed"].as_f64().unwrap(),
        );
        assert!(r["cells"].as_u64().unwrap() > 500);
        assert!(
            top > 2.0 * rnd && top > rnd + 0.08,
            "k={k}: top {top} vs random {rnd}"
        );
    }
    let k3 = &rows[1];
    assert!(
        k3["top_call_changed"].as_f64().unwrap()
            > k3["random_call_changed"].as_f64().unwrap() + 0.2
    );

    // `spikgpt ablate` with the strongest driver of CD8_T: calls leave CD8_T, and the cells where the
    // feature is inactive keep their calls
    let drivers = csv_rows(&dir.path().join("pred_class_drivers.csv"));
    let f = drivers
        .iter()
        .find(|r| r["class"] == "CD8_T" && r["rank"] == "1")
        .map(|r| r["feature"].clone())
        .unwrap();
    let abl = dir.path().join("ablate.csv");
    explain_cmd("ablate", &fx.model, Path::new(EMB), &fx.sae, &abl)
        .args(["--feature", &f])
        .assert()
        .success();
    let s = json(&dir.path().join("ablate_summary.json"));
    assert!(s["call_changed"].as_u64().unwrap() > 0);
    let from_cd8: u64 = s["transitions"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(t, _)| t.starts_with("CD8_T ->"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert!(from_cd8 * 2 > s["call_changed"].as_u64().unwrap());
    for r in csv_rows(&abl) {
        if num(&r, "removed_activation") == 0.0 {
            assert_eq!(r["call_changed"], "false", "{r:?}");
            assert_eq!(r["prob_change"].parse::<f64>().unwrap(), 0.0);
        }
    }
}

#[test]
fn mismatched_sae_is_refused_before_writing() {
    let fx = immune();
    let dir = tempfile::tempdir().unwrap();
    // an SAE for 49-dimensional inputs
    let narrow = dir.path().join("narrow.safetensors");
    let emb = read_matrix(Path::new(EMB), None).unwrap();
    let cols: Vec<f32> = (0..emb.n_rows)
        .flat_map(|i| emb.row(i)[..49].to_vec())
        .collect();
    let mut m = DenseMatrix::new(emb.n_rows, 49, cols).unwrap();
    m.row_ids = emb.row_ids.clone();
    m.write_safetensors(&narrow, "embeddings").unwrap();
    let sae49 = dir.path().join("sae49");
    bin("scsae")
        .args([
            "train",
            "--level",
            "cells",
            "--features",
            "20",
            "--epochs",
            "2",
            "--quiet",
        ])
        .arg("--activations")
        .arg(&narrow)
        .arg("--out")
        .arg(&sae49)
        .assert()
        .success();
    let pred = dir.path().join("out/pred.csv");
    let err = failure_text(explain_cmd(
        "annotate",
        &fx.model,
        Path::new(EMB),
        &sae49,
        &pred,
    ));
    assert!(
        err.contains("49-dimensional") && err.contains("50-dimensional") && err.contains("sae49"),
        "{err}"
    );
    assert!(!pred.exists(), "predictions written despite the error");
    // a feature the SAE does not have, and an analysis of another SAE
    let mut c = explain_cmd(
        "ablate",
        &fx.model,
        Path::new(EMB),
        &fx.sae,
        &dir.path().join("abl.csv"),
    );
    c.args(["--feature", "200"]);
    let err = failure_text(c);
    assert!(
        err.contains("--feature 200") && err.contains("200 features"),
        "{err}"
    );
    assert!(!dir.path().join("abl.csv").exists());
    let other = dir.path().join("other_analysis.csv");
    std::fs::write(
        &other,
        "feature,index,best_type,best_auroc,best_set,best_set_q\nf0,0,B,0.9,,\n",
    )
    .unwrap();
    let mut c = explain_cmd("annotate", &fx.model, Path::new(EMB), &fx.sae, &pred);
    c.arg("--analysis").arg(&other);
    let err = failure_text(c);
    assert!(
        err.contains("other_analysis.csv") && err.contains("describes 1 features"),
        "{err}"
    );
    assert!(!pred.exists());
    // ablation sizes of 0 or beyond the dictionary (they used to give tables of NaN)
    for k in ["0", "201"] {
        let mut c = explain_cmd("annotate", &fx.model, Path::new(EMB), &fx.sae, &pred);
        c.args(["--ablation-k", k]);
        let err = failure_text(c);
        assert!(
            err.contains(&format!("--ablation-k {k}")) && err.contains("200 features"),
            "{err}"
        );
        assert!(!pred.exists());
    }
}

#[test]
fn sae_of_another_layer_is_refused() {
    // a real extraction store (tiny scGPT fixture): SpikGPT on the CLS embeddings, an SAE on layer 0
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("acts");
    bin("scsae")
        .args([
            "extract",
            "--model",
            "tests/fixtures/scgpt/tiny",
            "--data",
            DATA,
        ])
        .args(["--first-cells", "200", "--out"])
        .arg(&store)
        .assert()
        .success();
    let model = dir.path().join("model");
    bin("spikgpt")
        .args([
            "train",
            "--data",
            DATA,
            "--label-key",
            KEY,
            "--embedding-layer",
            "cls",
        ])
        .args([
            "--tokens", "2", "--width", "16", "--heads", "2", "--epochs", "1",
        ])
        .args(["--dropout", "0", "--embeddings"])
        .arg(&store)
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    let sae = dir.path().join("sae_l0");
    bin("scsae")
        .args([
            "train",
            "--layer",
            "0",
            "--level",
            "cells",
            "--features",
            "32",
        ])
        .args(["--epochs", "2", "--quiet", "--activations"])
        .arg(&store)
        .arg("--out")
        .arg(&sae)
        .assert()
        .success();
    let pred = dir.path().join("pred.csv");
    let mut c = explain_cmd("annotate", &model, &store, &sae, &pred);
    c.args(["--embedding-layer", "cls"]);
    let err = failure_text(c);
    assert!(
        err.contains("trained on layer 0") && err.contains("layer cls"),
        "{err}"
    );
    assert!(!pred.exists());
    // the same SAE on layer 0 embeddings is accepted by `ablate` (layer and model agree)
    // while the model was trained on cls: refused there too
    let mut c = explain_cmd("ablate", &model, &store, &sae, &dir.path().join("abl.csv"));
    c.args(["--embedding-layer", "0", "--feature", "0"]);
    let err = failure_text(c);
    assert!(err.contains("training embeddings"), "{err}");
}
