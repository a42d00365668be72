//! End to end on bundled data: an SAE on the PBMC 68k reduced log1p matrix (700 cells x 765 genes,
//! `raw.X`) trains, beats the trivial mean reconstruction, and encodes cells with their ids.

use assert_cmd::Command;
use scsae::data::DenseMatrix;
use scsae::data::{load, LoadOptions, MatrixLayer};
use scsae::io::matrix::read_matrix;

#[test]
fn sae_on_pbmc_cells_end_to_end() {
    let ds = load(
        std::path::Path::new("data/pbmc68k_reduced.h5ad"),
        &LoadOptions {
            layer: MatrixLayer::Raw,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    let (n, g) = (ds.cell_ids.len(), ds.gene_symbols.len());
    assert_eq!((n, g), (700, 765));
    let mut m = DenseMatrix::new(n, g, ds.matrix.to_dense()).unwrap();
    m.row_ids = Some(ds.cell_ids.clone());
    let tmp = tempfile::tempdir().unwrap();
    let acts = tmp.path().join("pbmc.safetensors");
    m.write_safetensors(&acts, "X").unwrap();
    let out = tmp.path().join("sae");
    Command::cargo_bin("scsae")
        .unwrap()
        .arg("train")
        .arg("--activations")
        .arg(&acts)
        .args([
            "--features",
            "128",
            "--epochs",
            "8",
            "--batch-size",
            "64",
            "--lr",
            "0.003",
        ])
        .args(["--lambda", "1", "--quiet", "--out"])
        .arg(&out)
        .assert()
        .success();
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let r2 = metrics["r2"].as_f64().unwrap();
    let l0 = metrics["l0"].as_f64().unwrap();
    // the per-gene mean reconstruction has R2 = 0
    assert!(r2 > 0.1, "R2 {r2}: hardly better than the per-gene mean");
    let hist = metrics["history"].as_array().unwrap();
    let first = hist[0]["loss"].as_f64().unwrap();
    let last = hist[hist.len() - 1]["loss"].as_f64().unwrap();
    assert!(last < first, "loss did not fall: {first} -> {last}");
    assert!(l0 > 0.0 && l0 < 128.0, "L0 {l0}");
    let codes = tmp.path().join("codes.parquet");
    Command::cargo_bin("scsae")
        .unwrap()
        .args(["encode", "--sae"])
        .arg(&out)
        .arg("--activations")
        .arg(&acts)
        .arg("--out")
        .arg(&codes)
        .assert()
        .success();
    let back = read_matrix(&codes, None).unwrap();
    assert_eq!((back.n_rows, back.n_cols), (700, 128));
    assert_eq!(back.row_ids.as_deref(), Some(ds.cell_ids.as_slice()));
}
