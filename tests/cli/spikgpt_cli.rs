//! End-to-end `spikgpt train` / `annotate` / `evaluate` on the bundled immune data, and the bad-input
//! cases (wrong dimension, unlabelled cells, a single class, NaN embeddings): one-line error, nothing
//! written.
//!
//! Embeddings: tests/fixtures/spikgpt/immune1000_pca50.safetensors, the first 50 principal components
//! of data/immune1000.h5ad's log expression (scikit-learn PCA, scripts/spikgpt/make_embeddings.py),
//! standing in for scGPT CLS embeddings, which cannot be computed here without the pretrained weights.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use scsae::data::DenseMatrix;
use scsae::io::matrix::read_matrix;
use serde_json::Value;

use crate::common::json;
use crate::common::spikgpt::{
    immune_train_args, small_model_args, small_model_args_with_dropout, DATA, EMB, KEY,
};

fn spikgpt() -> Command {
    Command::cargo_bin("spikgpt").unwrap()
}

/// Write `m` (cell ids as row ids) as the `cls` matrix of a finished extraction folder, in parts
/// cut at `bounds`.
fn write_cls_store(dir: &Path, m: &DenseMatrix, bounds: &[usize]) {
    use scsae::activations::StoreWriter;
    let ids = m.row_ids.clone().unwrap();
    let manifest = crate::common::test_manifest(
        serde_json::json!({"name": "stand-in"}),
        DATA,
        &[],
        (m.n_rows, m.n_cols),
        false,
    );
    let (mut w, _) = StoreWriter::create(dir, manifest, &ids, false).unwrap();
    for b in bounds.windows(2) {
        let rows: Vec<usize> = (b[0]..b[1]).collect();
        let cells: Vec<i64> = rows.iter().map(|&r| r as i64).collect();
        w.write_chunk(&cells, &[("cls".to_string(), &m.select_rows(&rows))], None)
            .unwrap();
    }
    w.finish().unwrap();
}

/// `spikgpt train` on the immune stand-in embeddings with `hold_out` removed, into `out`.
fn immune_train(hold_out: &str, out: &Path) -> Command {
    let mut cmd = spikgpt();
    cmd.args(immune_train_args(hold_out)).arg("--out").arg(out);
    cmd
}

fn train_immune(out: &Path) {
    let o = immune_train("NK", out)
        .args(small_model_args())
        .assert()
        .success();
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
        "validation_report_map.png",
        "validation_report_rejection_curve.png",
        "validation_predictions.csv",
        "calibration.json",
        "reference.safetensors",
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
    // NK cells sit next to CD8 T cells: the hard case. The calibrated rule keeps ~95 % of the known
    // validation cells; NK is detected above chance but mostly called a known type.
    assert!((0.0..=1.0).contains(&ho), "NK rejected {ho}");
    assert!(kn < 0.1, "known falsely rejected {kn}");
    assert!(rej["auroc"].as_f64().unwrap() > 0.7);
    assert_eq!(rep["rejection"][1]["model"], "logistic_regression");
    assert_eq!(rep["rejection"][2]["model"], "knn");
    let cal = json(&model.join("calibration.json"));
    let kept = cal["validation_kept"].as_f64().unwrap();
    assert!((0.95..0.97).contains(&kept), "validation kept {kept}");
    assert_eq!(
        cal["loto"].as_array().unwrap().len(),
        13,
        "one fold per known type"
    );
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
    // ... also into a copy of the data set: calls matched to the file's cells by id
    let h5ad = dir.path().join("calls.h5ad");
    spikgpt()
        .args(["annotate", "--batch-size", "100", "--data", DATA])
        .arg("--model")
        .arg(&model)
        .arg("--embeddings")
        .arg(&rev_path)
        .arg("--out")
        .arg(&pred_rev)
        .arg("--write-h5ad")
        .arg(&h5ad)
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
    let calls = scsae::data::load(&h5ad, &Default::default()).unwrap();
    let orig = scsae::data::load(Path::new(DATA), &Default::default()).unwrap();
    assert_eq!(calls.cell_ids, orig.cell_ids);
    assert_eq!(calls.matrix, orig.matrix);
    let labels = calls.obs.get("spikgpt_label").unwrap().values.as_strings();
    let unknown = calls
        .obs
        .get("spikgpt_unknown")
        .unwrap()
        .values
        .as_strings();
    for (i, id) in calls.cell_ids.iter().enumerate() {
        assert_eq!(labels[i].as_deref(), Some(a[id].as_str()), "cell {id}");
        let u = if a[id] == "Unknown" { "True" } else { "False" };
        assert_eq!(unknown[i].as_deref(), Some(u), "cell {id}");
    }
    assert!(dir.path().join("pred/predictions_baseline.csv").exists());
    assert!(dir.path().join("pred/predictions_spiking.json").exists());

    // The same embeddings as an extraction folder (parts of 400, 400 and 200 cells): annotated a
    // block at a time, with the same batches, so every table and the spiking statistics are
    // byte for byte those of the matrix file read whole.
    let store = dir.path().join("emb_store");
    write_cls_store(&store, &m, &[0, 400, 800, 1000]);
    let pred_store = dir.path().join("pred_store/predictions.csv");
    spikgpt()
        .args(["annotate", "--embedding-layer", "cls"])
        .arg("--embeddings")
        .arg(&store)
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&pred_store)
        .assert()
        .success();
    for f in [
        "predictions.csv",
        "predictions_baseline.csv",
        "predictions_spiking.json",
    ] {
        let a = std::fs::read(dir.path().join("pred").join(f)).unwrap();
        let b = std::fs::read(dir.path().join("pred_store").join(f)).unwrap();
        assert!(a == b, "{f} differs between the store and the matrix file");
    }
    // ... and cut into many chunks (of 3 batches of 16 cells, blocks of 4,096 rows re-cut): the
    // calls and statistics of one call on every cell
    let rt = scsae::runtime::Runtime::cpu().unwrap();
    let loaded = scsae::spikgpt::model_dir::load_model_dir(&model, &rt).unwrap();
    let rule = scsae::spikgpt::annotate::resolve_rule(&loaded, None, None, None).unwrap();
    let ids = m.row_ids.clone().unwrap();
    let mut whole_stats = Default::default();
    let whole = scsae::spikgpt::annotate::annotate(
        &loaded,
        &ids,
        &m.data,
        &rule,
        16,
        Some(&mut whole_stats),
    )
    .unwrap();
    let mut chunk_stats = Default::default();
    let chunked = scsae::spikgpt::annotate::annotate_rows(
        &loaded,
        &ids,
        &m,
        &rule,
        (16, 50),
        &mut chunk_stats,
    )
    .unwrap();
    assert_eq!(whole.main, chunked.main);
    assert_eq!(whole.baselines.len(), chunked.baselines.len());
    for (a, b) in whole.baselines.iter().zip(&chunked.baselines) {
        assert_eq!(a.table, b.table);
    }
    assert_eq!(format!("{whole_stats:?}"), format!("{chunk_stats:?}"));

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
        "knn",
        "firing rate",
        "nJ",
    ] {
        assert!(text.contains(want), "missing '{want}' in:\n{text}");
    }
    for f in [
        "evaluation.json",
        "evaluation_per_class.csv",
        "evaluation_confusion.png",
        "evaluation_map.png",
        "evaluation_rejection_curve.csv",
        "evaluation_rejection_curve.png",
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
    expect_failure(
        spikgpt()
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
            .args(extra),
        want,
        out,
    );
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

/// The command fails with one line containing every `want`, and `untouched` does not exist.
fn expect_failure(cmd: &mut Command, want: &[&str], untouched: &Path) {
    let o = cmd.assert().failure();
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    for w in want {
        assert!(err.contains(w), "expected '{w}' in: {err}");
    }
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!untouched.exists(), "output written despite the error");
}

#[test]
fn calibration_and_query_options_reject_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    // --keep outside (0, 1] at training.
    for keep in ["0", "1.5", "-0.2"] {
        let keep = format!("--keep={keep}");
        expect_train_error(
            Path::new(EMB),
            &dir.path().join("k"),
            &[keep.as_str()],
            &["--keep", "(0, 1]"],
        );
    }
    expect_train_error(
        Path::new(EMB),
        &dir.path().join("s"),
        &["--score", "entropy"],
        &["entropy"],
    );
    // A trained model for the annotate / evaluate cases.
    let model = dir.path().join("model");
    train_immune(&model);
    // A finished model folder is not overwritten without --force.
    let before = std::fs::read(model.join("model.safetensors")).unwrap();
    let o = immune_train("NK", &model)
        .args(small_model_args())
        .assert()
        .failure();
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("already holds a trained model") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(model.join("model.safetensors")).unwrap(),
        before
    );
    let out = dir.path().join("bad/pred.csv");
    expect_failure(
        spikgpt()
            .args(["annotate", "--embeddings", EMB, "--keep", "0"])
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out),
        &["--keep", "(0, 1]"],
        &dir.path().join("bad"),
    );
    expect_failure(
        spikgpt()
            .args([
                "annotate",
                "--embeddings",
                EMB,
                "--threshold",
                "0.9",
                "--keep",
                "0.9",
            ])
            .arg("--model")
            .arg(&model)
            .arg("--out")
            .arg(&out),
        &["--threshold", "--keep"],
        &dir.path().join("bad"),
    );
    // NaN query embeddings.
    let m = read_matrix(Path::new(EMB), None).unwrap();
    let mut nan = m.select_rows(&[0, 1, 2]);
    nan.data[50 * 2 + 3] = f32::NAN;
    let p = dir.path().join("nanq.safetensors");
    nan.write_safetensors(&p, "e").unwrap();
    expect_failure(
        spikgpt()
            .args(["annotate"])
            .arg("--model")
            .arg(&model)
            .arg("--embeddings")
            .arg(&p)
            .arg("--out")
            .arg(&out),
        &["nanq.safetensors", "row 2, column 3"],
        &dir.path().join("bad"),
    );
    // A label map that leaves query types unmapped names them.
    let pred = dir.path().join("pred/predictions.csv");
    spikgpt()
        .args(["annotate", "--embeddings", EMB])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&pred)
        .assert()
        .success();
    let map = dir.path().join("map.csv");
    std::fs::write(
        &map,
        "query_label,reference_label\nCD8_T,CD8_T\nCD4_T,CD4_T\n",
    )
    .unwrap();
    let eval_dir = dir.path().join("eval");
    expect_failure(
        spikgpt()
            .args(["evaluate", "--data", DATA, "--label-key", KEY])
            .arg("--predictions")
            .arg(&pred)
            .arg("--label-map")
            .arg(&map)
            .arg("--out-dir")
            .arg(&eval_dir),
        &["map.csv", "not in the label map", "'NK'"],
        &eval_dir,
    );
    // A map onto a type the model does not have.
    std::fs::write(&map, "query_label,reference_label\nCD8_T,Martian\n").unwrap();
    expect_failure(
        spikgpt()
            .args(["evaluate", "--data", DATA, "--label-key", KEY])
            .arg("--predictions")
            .arg(&pred)
            .arg("--label-map")
            .arg(&map)
            .arg("--out-dir")
            .arg(&eval_dir),
        &["map.csv", "'Martian' is not a class"],
        &eval_dir,
    );
}

#[test]
fn training_with_dropout_does_not_depend_on_threads() {
    // The paper's training mode (dropout 0.1: the bounded-memory per-token path) with 1 and 3
    // threads: the same model, calibration and validation predictions, byte for byte.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for threads in ["1", "3"] {
        let out = dir.path().join(format!("t{threads}"));
        immune_train("plasma", &out)
            .args([
                "--tokens", "12", "--width", "32", "--heads", "4", "--epochs", "2",
            ])
            .args(["--batch-size", "128", "--threads", threads])
            .assert()
            .success();
        let read = |f: &str| std::fs::read(out.join(f)).unwrap();
        bytes.push((
            read("model.safetensors"),
            read("calibration.json"),
            read("validation_predictions.csv"),
        ));
    }
    assert!(
        bytes[0].0 == bytes[1].0,
        "model bytes depend on the thread count"
    );
    assert!(
        bytes[0].1 == bytes[1].1,
        "calibration depends on the thread count"
    );
    assert!(
        bytes[0].2 == bytes[1].2,
        "predictions depend on the thread count"
    );
}

/// Train on the immune cells with `hold_out` removed (small model) and return the validation report.
fn held_out_report(dir: &Path, hold_out: &str) -> Value {
    let out = dir.join(hold_out);
    immune_train(hold_out, &out)
        .args(small_model_args())
        .assert()
        .success();
    json(&out.join("validation_report.json"))
}

#[test]
fn distinct_held_out_type_is_rejected_with_known_cells_kept() {
    // The target on a distinct type (plasma cells): held-out AUROC >= 0.9, >= 80 % of the
    // held-out cells rejected with <= 20 % of known validation cells rejected, at the default rule.
    let dir = tempfile::tempdir().unwrap();
    let rep = held_out_report(dir.path(), "plasma");
    let r = &rep["rejection"][0];
    assert_eq!(r["n_held_out"].as_u64().unwrap(), 32);
    let auroc = r["auroc"].as_f64().unwrap();
    let ho = r["held_out_rejected"].as_f64().unwrap();
    let kn = r["known_rejected"].as_f64().unwrap();
    assert!(auroc >= 0.9, "AUROC {auroc}");
    assert!(ho >= 0.8, "plasma rejected {ho}");
    assert!(kn <= 0.2, "known rejected {kn}");
    // The accuracy-rejection curve starts at the arg-max accuracy and ends with everything rejected.
    let curve = r["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 101);
    assert_eq!(curve[100]["rejected"].as_f64().unwrap(), 1.0);
}

#[test]
fn reference_to_query_across_chemistries() {
    // PBMC3k (10x v1) -> Kang 2018 (10x v2): another data set at annotation, a label map, a batch
    // key; Kang's activated T cells (absent from PBMC3k, an empty reference_label in the map) are
    // the unseen type. Embeddings: reference PCA with the query projected into it
    // (scripts/spikgpt/make_refquery_embeddings.py).
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    spikgpt()
        .args([
            "train",
            "--embeddings",
            "tests/fixtures/spikgpt/pbmc3k_ref_pca50.safetensors",
            "--data",
            "data/pbmc3k_ref.h5ad",
            "--label-key",
            "cell_type",
        ])
        .args(small_model_args_with_dropout())
        .arg("--out")
        .arg(&model)
        .assert()
        .success();
    let pred = dir.path().join("kang/predictions.csv");
    spikgpt()
        .args([
            "annotate",
            "--embeddings",
            "tests/fixtures/spikgpt/kang_query_pca50.safetensors",
        ])
        .arg("--model")
        .arg(&model)
        .arg("--out")
        .arg(&pred)
        .assert()
        .success();
    for f in [
        "predictions.csv",
        "predictions_baseline.csv",
        "predictions_knn.csv",
        "predictions_rules.json",
    ] {
        assert!(dir.path().join("kang").join(f).exists(), "missing {f}");
    }
    // The table carries probabilities, max_prob, confidence and every score.
    let head = std::fs::read_to_string(&pred).unwrap();
    let header = head.lines().next().unwrap();
    for col in [
        "cell_id",
        "label",
        "best_label",
        "max_prob",
        "confidence",
        "unknown",
        "score_knn_distance",
        "score_combined",
        "prob_CD4 T",
    ] {
        assert!(
            header.split(',').any(|c| c == col),
            "no column {col} in {header}"
        );
    }
    // Without the label map, Kang's names are all unknown types; with it, only T is.
    let o = spikgpt()
        .args([
            "evaluate",
            "--data",
            "data/kang_query.h5ad",
            "--label-key",
            "cell_type",
            "--label-map",
            "data/pbmc3k_kang_label_map.csv",
            "--batch-key",
            "batch",
        ])
        .arg("--predictions")
        .arg(&pred)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&o.get_output().stdout).to_string();
    assert!(text.contains("held-out types: T"), "{text}");
    let rep = json(&dir.path().join("kang/evaluation.json"));
    assert_eq!(rep["held_out"], serde_json::json!(["T"]));
    assert_eq!(rep["metrics"]["n_cells"].as_u64().unwrap(), 1430);
    let rej = rep["rejection"].as_array().unwrap();
    assert_eq!(rej.len(), 3);
    assert_eq!(rej[0]["n_held_out"].as_u64().unwrap(), 70);
    // Accuracy on the accepted known query cells, across the chemistry shift.
    let acc = rej[0]["operating_point"]["known_accuracy"]
        .as_f64()
        .unwrap();
    assert!(acc > 0.75, "accepted known accuracy {acc}");
    let knn_acc = rep["baseline_metrics"][1][1]["accuracy"].as_f64().unwrap();
    assert!(knn_acc > 0.7, "kNN accuracy {knn_acc}");
    // Two batches x three classifiers.
    let pb = rep["per_batch"].as_array().unwrap();
    assert_eq!(pb.len(), 6);
    assert_eq!(pb[0]["batch"], "kang2018_10x_v2_control");
    assert_eq!(pb[0]["n_cells"].as_u64().unwrap(), 1200);
    assert!(dir.path().join("kang/evaluation_per_batch.csv").exists());
}

#[test]
fn training_killed_mid_run_resumes_to_the_uninterrupted_model() {
    // kill -9 once at least two epochs are checkpointed (wherever the process then is: training,
    // or replacing the checkpoint), then --resume: the uninterrupted run's model, byte for byte, and
    // no temporary checkpoint folder left.
    // the small model, 8 epochs
    let mut args = small_model_args();
    let e = args.iter().position(|a| *a == "--epochs").unwrap();
    args[e + 1] = "8";
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full");
    immune_train("NK", &full).args(&args).assert().success();
    let killed = dir.path().join("killed");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_spikgpt"))
        .args(immune_train_args("NK"))
        .args(&args)
        .arg("--out")
        .arg(&killed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let state = killed.join("checkpoint/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while std::time::Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        let done = std::fs::read(&state)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v["epochs_done"].as_u64());
        if done.is_some_and(|e| e >= 2) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _ = child.kill();
    child.wait().unwrap();
    immune_train("NK", &killed)
        .args(args)
        .arg("--resume")
        .assert()
        .success();
    let model = |d: &Path| std::fs::read(d.join("model.safetensors")).unwrap();
    assert!(
        model(&killed) == model(&full),
        "resumed model differs from the uninterrupted run"
    );
    // the training curve too, epoch times aside: the epochs before the kill come back from the
    // checkpoint's JSON, which must round-trip every f64 exactly
    let curve = |d: &Path| -> Vec<String> {
        std::fs::read_to_string(d.join("training_curve.csv"))
            .unwrap()
            .lines()
            .map(|l| {
                l.rsplit_once(',')
                    .map_or(l, |(head, _seconds)| head)
                    .to_string()
            })
            .collect()
    };
    assert!(std::fs::read_to_string(full.join("training_curve.csv"))
        .unwrap()
        .starts_with("epoch,lr,train_loss,train_accuracy,val_loss,val_accuracy,seconds"));
    assert_eq!(curve(&killed), curve(&full));
    let stale: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("checkpoint."))
        .collect();
    assert!(stale.is_empty(), "{stale:?}");
}
