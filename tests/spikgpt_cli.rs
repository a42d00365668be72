//! End-to-end `spikgpt train` / `annotate` / `evaluate` on the bundled immune data, and the bad-input
//! cases (wrong dimension, unlabelled cells, a single class, NaN embeddings): one-line error, nothing
//! written.
//!
//! Embeddings: tests/fixtures/spikgpt/immune1000_pca50.safetensors, the first 50 principal components
//! of data/immune1000.h5ad's log expression (scikit-learn PCA, scripts/spikgpt/make_embeddings.py),
//! standing in for scGPT CLS embeddings, which cannot be computed here without the pretrained weights.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use scsae::io::matrix::{read_matrix, DenseMatrix};
use serde_json::Value;

mod spikgpt_common;
use spikgpt_common::{small_model_args, DATA, EMB, KEY};

fn spikgpt() -> Command {
    Command::cargo_bin("spikgpt").unwrap()
}

fn json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn train_immune(out: &Path) {
    let mut cmd = spikgpt();
    cmd.args([
        "train",
        "--embeddings",
        EMB,
        "--data",
        DATA,
        "--label-key",
        KEY,
        "--hold-out",
        "NK",
    ])
    .arg("--out")
    .arg(out)
    .args(small_model_args());
    let o = cmd.assert().success();
    let text = String::from_utf8_lossy(&o.get_output().stdout).to_string();
    assert!(text.contains("held-out rejected"), "{text}");
}

#[test]
fn immune_end_to_end_with_nk_held_out() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    train_immune(&model);
    for f in [
        "model.safetensors",
        "config.json",
        "labels.json",
        "baseline.safetensors",
        "training_curve.csv",
        "training_curve.json",
        "training_curve.png",
        "validation_report.json",
        "validation_report_confusion.png",
        "validation_report_threshold_sweep.png",
        "validation_predictions.csv",
    ] {
        assert!(model.join(f).exists(), "missing {f}");
    }
    // Accuracy: the best epoch's validation accuracy (arg-max) against the majority class.
    let curve = json(&model.join("training_curve.json"));
    let cfg = json(&model.join("config.json"));
    let best = cfg["best_epoch"].as_u64().unwrap() as usize;
    let acc = curve[best - 1]["val_accuracy"].as_f64().unwrap();
    // majority class CD8_T: 324 of the 963 non-NK cells
    let majority = 324.0 / 963.0;
    assert!(
        acc > majority + 0.3,
        "validation accuracy {acc} vs majority {majority}"
    );
    // Rejection of the held-out NK cells at 0.95, and the known cells kept.
    let rep = json(&model.join("validation_report.json"));
    let rej = &rep["rejection"][0];
    assert_eq!(rej["model"], "spikgpt");
    assert_eq!(rej["n_held_out"].as_u64().unwrap(), 37);
    let ho = rej["held_out_rejected"].as_f64().unwrap();
    let kn = rej["known_rejected"].as_f64().unwrap();
    assert!(ho > 0.5, "NK rejected {ho}");
    assert!(kn < 0.5, "known falsely rejected {kn}");
    assert!(rej["auroc"].as_f64().unwrap() > 0.65);
    assert_eq!(rep["rejection"][1]["model"], "logistic_regression");
    assert!(rep["spiking"]["energy_pj_per_cell"].as_f64().unwrap() > 0.0);

    // Annotate all cells; the same cells in reverse order get the same labels.
    let pred = dir.path().join("pred/predictions.csv");
    spikgpt()
        .args(["annotate", "--embeddings", EMB])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&pred)
        .assert()
        .success();
    let m = read_matrix(Path::new(EMB), None).unwrap();
    let rev: Vec<usize> = (0..m.n_rows).rev().collect();
    let rev_path = dir.path().join("rev.safetensors");
    m.select_rows(&rev)
        .write_safetensors(&rev_path, "embeddings")
        .unwrap();
    let pred_rev = dir.path().join("pred/reversed.csv");
    spikgpt()
        .args(["annotate", "--batch-size", "100"])
        .arg("--model")
        .arg(&model)
        .arg("--embeddings")
        .arg(&rev_path)
        .arg("--out")
        .arg(&pred_rev)
        .assert()
        .success();
    let read = |p: &PathBuf| -> std::collections::HashMap<String, String> {
        let text = std::fs::read_to_string(p).unwrap();
        text.lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (f[0].to_string(), f[1].to_string())
            })
            .collect()
    };
    let (a, b) = (read(&pred), read(&pred_rev));
    assert_eq!(a.len(), 1000);
    assert_eq!(a, b, "labels depend on cell order / batch size");
    assert!(dir.path().join("pred/predictions_baseline.csv").exists());
    assert!(dir.path().join("pred/predictions_spiking.json").exists());

    // Evaluate.
    let o = spikgpt()
        .args([
            "evaluate",
            "--data",
            DATA,
            "--label-key",
            KEY,
            "--held-out",
            "NK",
        ])
        .arg("--predictions")
        .arg(&pred)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&o.get_output().stdout).to_string();
    for want in [
        "accuracy",
        "macro F1",
        "held-out rejected",
        "logistic_regression",
        "firing rate",
        "nJ",
    ] {
        assert!(text.contains(want), "missing '{want}' in:\n{text}");
    }
    for f in [
        "evaluation.json",
        "evaluation_per_class.csv",
        "evaluation_confusion.png",
        "evaluation_threshold_sweep.csv",
    ] {
        assert!(dir.path().join("pred").join(f).exists(), "missing {f}");
    }

    // Bad input: embeddings whose dimension disagrees with the model.
    let narrow = DenseMatrix {
        n_rows: 3,
        n_cols: 49,
        data: vec![0.5; 147],
        row_ids: Some(vec!["a".into(), "b".into(), "c".into()]),
        col_names: None,
    };
    let narrow_path = dir.path().join("narrow.safetensors");
    narrow.write_safetensors(&narrow_path, "e").unwrap();
    let bad_out = dir.path().join("bad/pred.csv");
    let o = spikgpt()
        .arg("annotate")
        .arg("--model")
        .arg(&model)
        .arg("--embeddings")
        .arg(&narrow_path)
        .arg("--out")
        .arg(&bad_out)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("narrow.safetensors") && err.contains("49 dimensions"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.path().join("bad").exists());
}

fn expect_train_error(emb: &Path, out: &Path, extra: &[&str], want: &[&str]) {
    let o = spikgpt()
        .args([
            "train",
            "--data",
            DATA,
            "--label-key",
            KEY,
            "--epochs",
            "1",
            "--tokens",
            "2",
            "--width",
            "16",
            "--heads",
            "2",
        ])
        .arg("--embeddings")
        .arg(emb)
        .arg("--out")
        .arg(out)
        .args(extra)
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    for w in want {
        assert!(err.contains(w), "expected '{w}' in: {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists(), "output written despite the error");
}

#[test]
fn bad_training_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let m = read_matrix(Path::new(EMB), None).unwrap();
    // Cells without labels.
    let mut unknown = m.select_rows(&[0, 1, 2, 3]);
    if let Some(ids) = unknown.row_ids.as_mut() {
        ids[2] = "not-a-cell".into();
    }
    let p = dir.path().join("unlabelled.safetensors");
    unknown.write_safetensors(&p, "e").unwrap();
    expect_train_error(
        &p,
        &dir.path().join("o1"),
        &[],
        &["unlabelled.safetensors", "no label", "not-a-cell"],
    );
    // NaN embeddings.
    let mut nan = m.select_rows(&[0, 1, 2, 3]);
    nan.data[50 + 7] = f32::NAN; // row 1, column 7
    let p = dir.path().join("nan.safetensors");
    nan.write_safetensors(&p, "e").unwrap();
    expect_train_error(
        &p,
        &dir.path().join("o2"),
        &[],
        &["nan.safetensors", "row 1, column 7"],
    );
    // A single-class training set: only CD8_T cells.
    let ds = scsae::data::load(Path::new(DATA), &Default::default()).unwrap();
    let labels = ds.labels(KEY).unwrap();
    let idx = ds.cell_index();
    let ids = m.row_ids.clone().unwrap();
    let rows: Vec<usize> = (0..m.n_rows)
        .filter(|&i| labels[idx[ids[i].as_str()]] == "CD8_T")
        .take(30)
        .collect();
    let p = dir.path().join("one_class.safetensors");
    m.select_rows(&rows).write_safetensors(&p, "e").unwrap();
    expect_train_error(&p, &dir.path().join("o3"), &[], &["single-class"]);
    // Holding out a type that does not exist.
    expect_train_error(
        Path::new(EMB),
        &dir.path().join("o4"),
        &["--hold-out", "Martian"],
        &["Martian", "no cell has this label"],
    );
    // A matrix without ids and a different cell count cannot be matched.
    let no_ids = DenseMatrix::new(5, 50, vec![0.1; 250]).unwrap();
    let p = dir.path().join("noids.npy");
    let mut f = std::fs::File::create(&p).unwrap();
    scsae::io::npy::write_npy_f32(&mut f, 5, 50, &no_ids.data).unwrap();
    drop(f);
    expect_train_error(
        &p,
        &dir.path().join("o5"),
        &[],
        &["noids.npy", "no cell ids"],
    );
}
