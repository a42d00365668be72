//! `scsae extract` end to end on the bundled data with the committed tiny official-format checkpoint:
//! store layout, consistency of per-cell, per-token and CLS outputs, independence from batch size
//! and cell order, resume, and token subsampling.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use scsae::activations::{ActivationStore, Manifest};
use scsae::data::{load, Dataset, LoadOptions, MatrixLayer};
use scsae::scgpt::{extract, ExtractOptions, Scgpt};
use scsae::Runtime;

use crate::common::root as repo;

fn tiny() -> PathBuf {
    repo().join("tests/fixtures/scgpt/tiny")
}

fn immune_subset(n: usize) -> Dataset {
    let ds = load(
        &repo().join("data/immune1000.h5ad"),
        &LoadOptions::default(),
    )
    .unwrap();
    // every 7th cell: a mix of lengths, includes cells with ties
    let rows: Vec<usize> = (0..ds.n_cells()).step_by(7).take(n).collect();
    ds.select_cells(&rows)
}

fn run(ds: &Dataset, out: &Path, opts: &ExtractOptions) -> ActivationStore {
    let rt = Runtime::cpu_with_seed(11).unwrap();
    let model = Scgpt::load(&tiny(), &rt).unwrap();
    extract(
        &model,
        ds,
        serde_json::json!({"file": "immune"}),
        out,
        opts,
        &rt,
    )
    .unwrap();
    ActivationStore::open(out).unwrap()
}

fn rows_by_id(s: &ActivationStore, layer: &str) -> std::collections::HashMap<String, Vec<f32>> {
    let m = s.cell_matrix(layer).unwrap();
    let ids = m.row_ids.clone().unwrap();
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| (id, m.row(i).to_vec()))
        .collect()
}

#[test]
fn cli_extracts_immune_cells_with_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("acts");
    let assert = Command::cargo_bin("scsae")
        .unwrap()
        .args(["extract", "--model"])
        .arg(tiny())
        .arg("--data")
        .arg(repo().join("data/immune1000.h5ad"))
        .arg("--out")
        .arg(&out)
        .args(["--tokens", "--layers", "all,embeddings", "--seed", "3"])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(stdout.contains("extracted 1000 cells"), "{stdout}");
    let s = ActivationStore::open(&out).unwrap();
    assert_eq!(s.manifest.layers, vec!["embeddings", "0", "1"]);
    assert_eq!(
        (s.manifest.n_cells, s.manifest.d_model, s.manifest.seed),
        (1000, 64, 3)
    );
    assert!(s.manifest.tokens && s.manifest.complete);
    assert_eq!(s.manifest.options["mean_includes_cls"], true);
    assert_eq!(s.manifest.model["key_naming"], "flash-attn (Wqkv)");
    let ds = load(
        &repo().join("data/immune1000.h5ad"),
        &LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(s.cell_ids, ds.cell_ids);
    let cls = s.cell_matrix("cls").unwrap();
    for i in 0..cls.n_rows {
        let n: f32 = cls.row(i).iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5);
    }
    // per-cell mean == mean of the cell's token rows; cls == normalised token 0 of the last layer
    let vocab = scsae::scgpt::Vocab::read(&tiny().join("vocab.json")).unwrap();
    for layer in ["embeddings", "1"] {
        let cells = s.cell_matrix(layer).unwrap();
        let t = s.token_matrix(layer, None, 0).unwrap();
        let d = 64;
        let mut sums = vec![0f64; 1000 * d];
        let mut counts = vec![0usize; 1000];
        for r in 0..t.matrix.n_rows {
            let c = t.index.cell_index[r] as usize;
            counts[c] += 1;
            for k in 0..d {
                sums[c * d + k] += t.matrix.row(r)[k] as f64;
            }
            if t.index.position[r] == 0 {
                assert_eq!(t.index.gene_id[r], vocab.cls_id() as i64);
                if layer == "1" {
                    let row = t.matrix.row(r);
                    let n = row.iter().map(|v| v * v).sum::<f32>().sqrt();
                    for (x, y) in row.iter().zip(cls.row(c)) {
                        assert!((x / n - y).abs() < 1e-5);
                    }
                }
            }
        }
        for c in (0..1000).step_by(37) {
            assert!(counts[c] >= 1);
            for k in 0..d {
                let mean = (sums[c * d + k] / counts[c] as f64) as f32;
                assert!(
                    (mean - cells.row(c)[k]).abs() < 1e-4,
                    "{layer} cell {c} dim {k}"
                );
            }
        }
    }
}

#[test]
fn batch_size_and_cell_order_do_not_change_results() {
    let ds = immune_subset(60);
    let tmp = tempfile::tempdir().unwrap();
    let base = ExtractOptions::default();
    let a = run(&ds, &tmp.path().join("b64"), &base);
    let b = run(
        &ds,
        &tmp.path().join("b1"),
        &ExtractOptions {
            batch_size: 1,
            ..base.clone()
        },
    );
    let mut perm: Vec<usize> = (0..ds.n_cells()).rev().collect();
    perm.rotate_left(17);
    let c = run(
        &ds.select_cells(&perm),
        &tmp.path().join("shuffled"),
        &ExtractOptions {
            batch_size: 7,
            max_batch_tokens: 300,
            ..base.clone()
        },
    );
    for layer in ["0", "1", "cls"] {
        let ra = rows_by_id(&a, layer);
        for other in [&b, &c] {
            let ro = rows_by_id(other, layer);
            for (id, v) in &ra {
                let w = &ro[id];
                let diff = v
                    .iter()
                    .zip(w)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0f32, f32::max);
                assert!(diff == 0.0, "layer {layer} cell {id}: {diff}");
            }
        }
    }
}

#[test]
fn resume_completes_an_interrupted_store_identically() {
    let ds = immune_subset(40);
    let tmp = tempfile::tempdir().unwrap();
    let full = run(
        &ds,
        &tmp.path().join("full"),
        &ExtractOptions {
            tokens: true,
            ..Default::default()
        },
    );
    // an interrupted run: 2 of its parts written, manifest not complete
    let part = tmp.path().join("part");
    let small = ExtractOptions {
        tokens: true,
        batch_size: 5,
        part_max_cells: 5,
        ..Default::default()
    };
    run(&ds, &part, &small);
    let mut m = Manifest::read(&part).unwrap();
    for p in m.cell_parts.drain(2..).chain(m.token_parts.drain(2..)) {
        std::fs::remove_file(part.join(p.file)).unwrap();
    }
    m.complete = false;
    std::fs::write(
        part.join("manifest.json"),
        serde_json::to_string(&m).unwrap(),
    )
    .unwrap();
    assert!(ActivationStore::open(&part).is_err());
    // without --resume the folder is refused; with it, the rest is filled in
    let rt = Runtime::cpu_with_seed(11).unwrap();
    let model = Scgpt::load(&tiny(), &rt).unwrap();
    let info = serde_json::json!({"file": "immune"});
    assert!(extract(&model, &ds, info.clone(), &part, &small, &rt).is_err());
    let rep = extract(
        &model,
        &ds,
        info,
        &part,
        &ExtractOptions {
            resume: true,
            ..small
        },
        &rt,
    )
    .unwrap();
    assert_eq!(rep.n_processed, 30);
    let resumed = ActivationStore::open(&part).unwrap();
    for layer in ["0", "1", "cls"] {
        let (x, y) = (
            full.cell_matrix(layer).unwrap(),
            resumed.cell_matrix(layer).unwrap(),
        );
        let diff = x
            .data
            .iter()
            .zip(&y.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff == 0.0, "{layer}: {diff}");
    }
    assert_eq!(full.n_tokens(), resumed.n_tokens());
}

#[test]
fn token_subsample_has_exactly_n_rows_whatever_the_batching() {
    let ds = immune_subset(30);
    let tmp = tempfile::tempdir().unwrap();
    let o = ExtractOptions {
        tokens: true,
        max_tokens: Some(500),
        ..Default::default()
    };
    let a = run(&ds, &tmp.path().join("a"), &o);
    let b = run(
        &ds,
        &tmp.path().join("b"),
        &ExtractOptions { batch_size: 4, ..o },
    );
    assert_eq!(a.n_tokens(), 500);
    let key = |s: &ActivationStore| {
        let t = s.token_matrix("1", None, 0).unwrap();
        let mut k: Vec<(i64, i64, i64)> = (0..t.matrix.n_rows)
            .map(|r| {
                (
                    t.index.cell_index[r],
                    t.index.position[r],
                    t.index.gene_id[r],
                )
            })
            .collect();
        k.sort();
        k
    };
    assert_eq!(key(&a), key(&b));
}

#[test]
fn cli_pbmc_raw_layer_selection_and_mean_without_cls() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("pbmc");
    Command::cargo_bin("scsae")
        .unwrap()
        .args([
            "extract",
            "--layer",
            "raw",
            "--layers",
            "embeddings,-1",
            "--mean-without-cls",
            "--tokens",
        ])
        .arg("--model")
        .arg(tiny())
        .arg("--data")
        .arg(repo().join("data/pbmc68k_reduced.h5ad"))
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let s = ActivationStore::open(&out).unwrap();
    assert_eq!(s.manifest.layers, vec!["embeddings", "1"]);
    assert_eq!(s.manifest.n_cells, 700);
    assert_eq!(s.manifest.options["mean_includes_cls"], false);
    assert_eq!(s.manifest.data["layer"], "raw");
    let cells = s.cell_matrix("1").unwrap();
    let t = s.token_matrix("1", None, 0).unwrap();
    let c = 5i64;
    let rows: Vec<usize> = (0..t.matrix.n_rows)
        .filter(|&r| t.index.cell_index[r] == c && t.index.position[r] > 0)
        .collect();
    for k in 0..64 {
        let mean = rows.iter().map(|&r| t.matrix.row(r)[k]).sum::<f32>() / rows.len() as f32;
        assert!((mean - cells.row(c as usize)[k]).abs() < 1e-4);
    }
    let _ = MatrixLayer::Raw;
}
