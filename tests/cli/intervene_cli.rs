//! `scsae fidelity` and `scsae steer` on the committed tiny checkpoint, with planted SAEs whose
//! effect is known exactly: an identity SAE (codes relu(x), relu(-x); reconstruction = x) must
//! recover everything, a zero SAE nothing; steering by a factor of 1 must change nothing. Bad
//! input fails with one line and writes nothing.

use std::path::{Path, PathBuf};

use predicates::prelude::*;
use scsae::sae::saelens::{save, SaeConfig, SaeTensors};
use scsae::sae::InputLevel;

use crate::common::{json, root, scsae};

const D: usize = 64;

fn tiny() -> PathBuf {
    root().join("tests/fixtures/scgpt/tiny")
}

/// Write an SAE of layer `layer` with the given tensors.
fn write_sae(dir: &Path, layer: &str, d: usize, identity: bool, level: InputLevel) {
    let m = 2 * d;
    let mut w_enc = vec![0.0f32; d * m];
    let mut w_dec = vec![0.0f32; m * d];
    if identity {
        for i in 0..d {
            w_enc[i * m + i] = 1.0;
            w_enc[i * m + d + i] = -1.0;
            w_dec[i * d + i] = 1.0;
            w_dec[(d + i) * d + i] = -1.0;
        }
    }
    let mut cfg = SaeConfig {
        d_in: d,
        d_sae: m,
        ..SaeConfig::default()
    };
    cfg.scsae.level = level;
    cfg.scsae.source.layer = Some(layer.to_string());
    std::fs::create_dir_all(dir).unwrap();
    save(
        dir,
        &cfg,
        &SaeTensors {
            w_enc,
            w_dec,
            b_enc: vec![0.0; m],
            b_dec: vec![0.0; d],
            input_mean: vec![0.0; d],
            input_std: vec![1.0; d],
            threshold: None,
        },
    )
    .unwrap();
}

fn run(cmd: &str, sae: &Path, out: &Path, extra: &[&str]) -> assert_cmd::assert::Assert {
    scsae()
        .args([cmd, "--model"])
        .arg(tiny())
        .arg("--sae")
        .arg(sae)
        .arg("--data")
        .arg(root().join("data/immune1000.h5ad"))
        .args([
            "--first-cells",
            "40",
            "--label-key",
            "cell_type_annotations",
        ])
        .args(["--knn-k", "5"].iter().filter(|_| cmd == "fidelity"))
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
}

/// Two CSV texts with the same text fields and numbers equal to 1e-6 (relative).
fn same_table(a: &str, b: &str) {
    assert_eq!(a.lines().count(), b.lines().count());
    for (la, lb) in a.lines().zip(b.lines()) {
        for (x, y) in la.split(',').zip(lb.split(',')) {
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(u), Ok(v)) => assert!(
                    (u - v).abs() <= 1e-6 * u.abs().max(v.abs()).max(1e-9),
                    "{x} vs {y} in\n{la}\n{lb}"
                ),
                _ => assert_eq!(x, y),
            }
        }
    }
}

fn condition(summary: &serde_json::Value, name: &str) -> serde_json::Value {
    summary["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["condition"] == name)
        .unwrap()
        .clone()
}

#[test]
fn fidelity_of_planted_saes() {
    let tmp = tempfile::tempdir().unwrap();
    let ident = tmp.path().join("identity");
    let zero = tmp.path().join("zero");
    write_sae(&ident, "0", D, true, InputLevel::Tokens);
    write_sae(&zero, "0", D, false, InputLevel::Tokens);

    let out = tmp.path().join("fid_identity");
    run("fidelity", &ident, &out, &["--mask-ratio", "0.4"]).success();
    let s = json(&out.join("fidelity.json"));
    let (clean, sae, zero_c) = (
        condition(&s, "clean"),
        condition(&s, "sae"),
        condition(&s, "zero_ablation"),
    );
    // the reconstruction is exact, so the spliced run is the clean run
    assert_eq!(sae["mlm_mse"], clean["mlm_mse"]);
    assert_eq!(sae["knn_accuracy"], clean["knn_accuracy"]);
    assert!(sae["cls_cosine_mean"].as_f64().unwrap() > 1.0 - 1e-9);
    assert_ne!(zero_c["mlm_mse"], clean["mlm_mse"]);
    assert!((s["reconstruction_r2"].as_f64().unwrap() - 1.0).abs() < 1e-12);
    let (lc, lz) = (
        clean["mlm_mse"].as_f64().unwrap(),
        zero_c["mlm_mse"].as_f64().unwrap(),
    );
    let gap = s["zero_ablation_relative_gap"].as_f64().unwrap();
    assert!((gap - (lz - lc) / lc).abs() < 1e-12, "{gap}");
    if let Some(r) = s["loss_recovered"].as_f64() {
        assert!((r - 1.0).abs() < 1e-12, "{r}");
    }
    assert_eq!(s["n_cells"], 40);
    for f in [
        "cells.csv",
        "cells.parquet",
        "summary.csv",
        "summary.parquet",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let cells = std::fs::read_to_string(out.join("cells.csv")).unwrap();
    assert_eq!(cells.lines().count(), 41);
    // results do not depend on the batch size (to float rounding: the linear layers see the batch's
    // row count)
    let out3 = tmp.path().join("fid_identity_b3");
    run(
        "fidelity",
        &ident,
        &out3,
        &["--mask-ratio", "0.4", "--batch-size", "3"],
    )
    .success();
    same_table(
        &cells,
        &std::fs::read_to_string(out3.join("cells.csv")).unwrap(),
    );
    assert!(cells.starts_with("cell_id,cell_type_annotations,n_tokens,"));

    let out = tmp.path().join("fid_zero");
    run("fidelity", &zero, &out, &["--mask-ratio", "0.25,0.5"]).success();
    let s = json(&out.join("fidelity.json"));
    let (sae, zero_c) = (condition(&s, "sae"), condition(&s, "zero_ablation"));
    // a zero reconstruction is zero-ablation
    assert_eq!(sae["mlm_mse"], zero_c["mlm_mse"]);
    assert_eq!(sae["cls_cosine_mean"], zero_c["cls_cosine_mean"]);
    assert_eq!(s["n_masked_by_ratio"].as_array().unwrap().len(), 2);
    if let Some(r) = s["loss_recovered"].as_f64() {
        assert!(r.abs() < 1e-12, "{r}");
    }
    // a finished folder is not overwritten without --force
    let a = run("fidelity", &zero, &out, &["--mask-ratio", "0.25"]).failure();
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("--force"), "{err}");
    run(
        "fidelity",
        &zero,
        &out,
        &["--mask-ratio", "0.25", "--force"],
    )
    .success();
    assert_eq!(
        json(&out.join("fidelity.json"))["n_masked_by_ratio"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn steering_by_one_changes_nothing_and_removing_a_feature_moves_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let ident = tmp.path().join("identity");
    write_sae(&ident, "0", D, true, InputLevel::Tokens);
    let out = tmp.path().join("steer1");
    run("steer", &ident, &out, &["--feature", "3", "--scale", "1"]).success();
    let s = json(&out.join("steer.json"));
    assert!(s["cls_cosine_min"].as_f64().unwrap() > 1.0 - 1e-9);
    let genes = std::fs::read_to_string(out.join("genes.csv")).unwrap();
    assert!(genes.starts_with("gene,n_cells,pred_clean,pred_steered,change"));
    for row in genes.lines().skip(1) {
        let change: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
        assert_eq!(change, 0.0, "{row}");
    }
    assert!(out.join("labels.csv").exists());
    // feature 3 of the identity SAE is relu(x_3): removing it everywhere moves every cell where
    // it fires, and only those
    let out0 = tmp.path().join("steer0");
    run("steer", &ident, &out0, &["--feature", "3", "--scale", "0"]).success();
    let s0 = json(&out0.join("steer.json"));
    assert!(s0["feature_token_fraction"].as_f64().unwrap() > 0.0);
    assert!(s0["cls_shift_mean"].as_f64().unwrap() > 0.0);
    let cells = std::fs::read_to_string(out0.join("cells.csv")).unwrap();
    let head: Vec<&str> = cells.lines().next().unwrap().split(',').collect();
    let (fa, cc) = (
        head.iter()
            .position(|&h| h == "feature_active_fraction")
            .unwrap(),
        head.iter().position(|&h| h == "cls_cosine").unwrap(),
    );
    let mut moved = 0;
    for row in cells.lines().skip(1) {
        let v: Vec<&str> = row.split(',').collect();
        let active: f64 = v[fa].parse().unwrap();
        let cos: f64 = v[cc].parse().unwrap();
        if active == 0.0 {
            assert!(cos > 1.0 - 1e-9, "{row}");
        } else {
            moved += usize::from(cos < 1.0);
        }
    }
    assert!(moved > 0);
    // clamping it on at every token moves every cell clearly
    let outc = tmp.path().join("steer_clamp");
    run("steer", &ident, &outc, &["--feature", "3", "--clamp", "5"]).success();
    let sc = json(&outc.join("steer.json"));
    assert!(sc["cls_cosine_min"].as_f64().unwrap() < 0.99, "{sc}");
    let outc5 = tmp.path().join("steer_clamp_b5");
    run(
        "steer",
        &ident,
        &outc5,
        &["--feature", "3", "--clamp", "5", "--batch-size", "5"],
    )
    .success();
    for f in ["cells.csv", "genes.csv", "labels.csv"] {
        same_table(
            &std::fs::read_to_string(outc.join(f)).unwrap(),
            &std::fs::read_to_string(outc5.join(f)).unwrap(),
        );
    }
    assert!(sc["top_genes"][0]["change"].as_f64().unwrap().abs() > 0.0);
}

/// `scsae CMD` fails with one line containing `needle` and writes nothing at `out`.
fn fails(cmd: &str, sae: &Path, extra: &[&str], needle: &str) {
    let out = sae.parent().unwrap().join(format!("out_{cmd}"));
    let a = run(cmd, sae, &out, extra)
        .failure()
        .code(1)
        .stderr(predicate::str::starts_with("error: "));
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
    assert!(!out.exists(), "nothing written for: {err}");
}

#[test]
fn bad_interventions_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    // an SAE of a layer the model does not have
    write_sae(&p.join("l7"), "7", D, true, InputLevel::Tokens);
    fails("fidelity", &p.join("l7"), &[], "has 2 blocks");
    // an SAE of another model's width
    write_sae(&p.join("narrow"), "0", 32, true, InputLevel::Tokens);
    fails("fidelity", &p.join("narrow"), &[], "model's width is 64");
    // an SAE of pooled cell vectors, and one of the CLS embedding
    write_sae(&p.join("cells"), "0", D, true, InputLevel::Cells);
    fails(
        "steer",
        &p.join("cells"),
        &["--feature", "0", "--scale", "2"],
        "per-cell mean",
    );
    write_sae(&p.join("cls"), "cls", D, true, InputLevel::Tokens);
    fails(
        "fidelity",
        &p.join("cls"),
        &[],
        "not a residual-stream site",
    );
    // an SAE whose recorded model has other sizes (same width)
    write_sae(&p.join("other"), "0", D, true, InputLevel::Tokens);
    let cfg_path = p.join("other/cfg.json");
    let mut cfg = json(&cfg_path);
    cfg["scsae"]["source"]["model"] = serde_json::json!({
        "kind": "scGPT",
        "sizes": {"d_hid": 64, "d_model": 64, "nheads": 4, "nlayers": 12, "vocab_size": 60697}
    });
    std::fs::write(&cfg_path, serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    fails("fidelity", &p.join("other"), &[], "another scGPT model");
    // a feature index out of range
    write_sae(&p.join("ok"), "1", D, true, InputLevel::Tokens);
    fails(
        "steer",
        &p.join("ok"),
        &["--feature", "128", "--scale", "0"],
        "out of range",
    );
    fails(
        "fidelity",
        &p.join("ok"),
        &["--mask-ratio", "1.5"],
        "between 0 and 1",
    );
    // a checkpoint without the expression head
    let headless = p.join("headless.safetensors");
    let t =
        candle_core::safetensors::load(tiny().join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let kept: std::collections::HashMap<String, candle_core::Tensor> = t
        .into_iter()
        .filter(|(k, _)| !k.starts_with("decoder."))
        .collect();
    candle_core::safetensors::save(&kept, &headless).unwrap();
    fails(
        "fidelity",
        &p.join("ok"),
        &["--weights", headless.to_str().unwrap()],
        "no expression head",
    );
}
