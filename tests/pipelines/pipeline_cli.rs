//! The pipeline end to end through the CLI: `extract` (committed official-format checkpoint) ->
//! `train` -> `analyze --sae`. The AUROC table is checked against a brute-force recomputation from the
//! saved SAE weights (z-score, ReLU encoder written out here) and O(n^2) pair counting.

use std::collections::HashMap;
use std::path::Path;

use assert_cmd::Command;
use scsae::activations::ActivationStore;
use scsae::io::table::{read_dataframe, string_column};

use crate::common::root;

pub(super) fn scsae(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("scsae")
        .unwrap()
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tensor(path: &Path, name: &str) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor(name).unwrap();
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// P(score of a random positive > score of a random negative), ties 1/2, by counting pairs.
fn auroc_by_pairs(pos: &[f64], neg: &[f64]) -> f64 {
    let mut s = 0.0;
    for &p in pos {
        for &n in neg {
            s += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (pos.len() * neg.len()) as f64
}

/// `scsae analyze --sae SAE --activations ACTS --layer LAYER` on the PBMC raw matrix into `out`.
fn analyze(sae: &str, acts: &str, layer: &str, out: &str) -> std::process::Output {
    scsae(&[
        "analyze",
        "--sae",
        sae,
        "--activations",
        acts,
        "--layer",
        layer,
        "--data",
        "data/pbmc68k_reduced.h5ad",
        "--data-layer",
        "raw",
        "--label-key",
        "bulk_labels",
        "--out",
        out,
    ])
}

#[test]
fn extract_train_analyze_with_sae() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).to_str().unwrap().to_string();
    ok(scsae(&[
        "extract",
        "--model",
        "tests/fixtures/scgpt/tiny",
        "--data",
        "data/pbmc68k_reduced.h5ad",
        "--layer",
        "raw",
        "--layers",
        "all",
        "--out",
        &d("acts"),
    ]));
    ok(scsae(&[
        "train",
        "--activations",
        &d("acts"),
        "--layer",
        "1",
        "--level",
        "cells",
        "--features",
        "32",
        "--epochs",
        "5",
        "--lambda",
        "1",
        "--quiet",
        "--out",
        &d("sae"),
    ]));
    ok(analyze(&d("sae"), &d("acts"), "1", &d("analysis")));
    for f in [
        "features.csv",
        "auroc.parquet",
        "comparison.csv",
        "report.md",
    ] {
        assert!(dir.path().join("analysis").join(f).exists(), "{f}");
    }

    // brute force: codes from the saved weights, labels from the h5ad, AUROC by pair counting
    let store = ActivationStore::open(&dir.path().join("acts")).unwrap();
    let x = store.cell_matrix("1").unwrap();
    let w = dir.path().join("sae/sae_weights.safetensors");
    let (w_enc, b_enc, b_dec) = (
        tensor(&w, "W_enc"),
        tensor(&w, "b_enc"),
        tensor(&w, "b_dec"),
    );
    let (mean, std) = (tensor(&w, "input_mean"), tensor(&w, "input_std"));
    let (n, d_in, m) = (x.n_rows, x.n_cols, b_enc.len());
    let mut codes = vec![0f64; n * m];
    for i in 0..n {
        for j in 0..m {
            let mut acc = b_enc[j] as f64;
            for k in 0..d_in {
                let xz = (x.data[i * d_in + k] as f64 - mean[k] as f64) / std[k] as f64;
                acc += (xz - b_dec[k] as f64) * w_enc[k * m + j] as f64;
            }
            codes[i * m + j] = acc.max(0.0);
        }
    }
    let ds = scsae::data::load(
        &root().join("data/pbmc68k_reduced.h5ad"),
        &scsae::data::LoadOptions {
            layer: scsae::data::MatrixLayer::Raw,
            ..Default::default()
        },
    )
    .unwrap();
    let labels = ds.labels("bulk_labels").unwrap();
    let row_of: HashMap<&str, usize> = x
        .row_ids
        .as_ref()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let features = read_dataframe(&dir.path().join("analysis/features.csv")).unwrap();
    let fname = string_column(features.column("feature").unwrap()).unwrap();
    let findex = string_column(features.column("index").unwrap()).unwrap();
    let index_of: HashMap<String, usize> = fname
        .into_iter()
        .zip(findex)
        .map(|(f, i)| (f, i.parse().unwrap()))
        .collect();
    let table = read_dataframe(&dir.path().join("analysis/auroc.csv")).unwrap();
    let feats = string_column(table.column("feature").unwrap()).unwrap();
    let types = string_column(table.column("cell_type").unwrap()).unwrap();
    let aurocs = string_column(table.column("auroc").unwrap()).unwrap();
    assert!(!feats.is_empty());
    let mut checked = 0;
    for k in (0..feats.len()).step_by((feats.len() / 25).max(1)) {
        let j = index_of[&feats[k]];
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for (c, id) in ds.cell_ids.iter().enumerate() {
            let v = codes[row_of[id.as_str()] * m + j];
            if labels[c] == types[k] {
                pos.push(v)
            } else {
                neg.push(v)
            }
        }
        let expect = auroc_by_pairs(&pos, &neg);
        let got: f64 = aurocs[k].parse().unwrap();
        // f32 encoder in the tool vs f64 here: near-ties may flip, hence the tolerance
        assert!(
            (got - expect).abs() < 2e-3,
            "{} / {}: {got} vs {expect}",
            feats[k],
            types[k]
        );
        checked += 1;
    }
    assert!(checked >= 10);

    // an SAE trained on layer 1 is refused for layer 0, and nothing is written
    let out = analyze(&d("sae"), &d("acts"), "0", &d("analysis0"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("layer"), "{err}");
    assert!(!dir.path().join("analysis0").exists());
}
