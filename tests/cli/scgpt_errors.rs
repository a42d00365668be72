//! Bad checkpoints and data fail with one clear line naming the file and the problem, exit 1,
//! and leave no output behind.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

use crate::common::root as repo;

fn copy_tiny(dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for f in [
        "args.json",
        "vocab.json",
        "best_model.pt",
        "model.safetensors",
    ] {
        std::fs::copy(
            repo().join("tests/fixtures/scgpt/tiny").join(f),
            dst.join(f),
        )
        .unwrap();
    }
}

/// Run `scsae extract` and check it fails with a one-line error containing every `needles`,
/// writing nothing to `out`.
fn fails(model: &Path, data: &Path, extra: &[&str], needles: &[&str]) {
    let out = model.parent().unwrap().join("out");
    let a = Command::cargo_bin("scsae")
        .unwrap()
        .arg("extract")
        .arg("--model")
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .assert()
        .failure()
        .code(1)
        .stderr(predicate::str::starts_with("error: "));
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for n in needles {
        assert!(err.contains(n), "expected '{n}' in: {err}");
    }
    assert!(!out.exists(), "no partial output for: {err}");
}

fn immune() -> PathBuf {
    repo().join("data/immune1000.h5ad")
}

#[test]
fn missing_tensor_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    copy_tiny(&m);
    std::fs::remove_file(m.join("best_model.pt")).unwrap();
    let st = candle_core::safetensors::load(m.join("model.safetensors"), &candle_core::Device::Cpu)
        .unwrap();
    let kept: Vec<(String, candle_core::Tensor)> = st
        .into_iter()
        .filter(|(k, _)| k != "transformer_encoder.layers.1.norm2.bias")
        .collect();
    candle_core::safetensors::save(&kept.into_iter().collect(), m.join("model.safetensors"))
        .unwrap();
    fails(
        &m,
        &immune(),
        &[],
        &[
            "model.safetensors",
            "missing tensor 'transformer_encoder.layers.1.norm2.bias'",
        ],
    );
}

#[test]
fn vocab_size_disagreeing_with_the_embedding_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    copy_tiny(&m);
    let text = std::fs::read_to_string(m.join("vocab.json")).unwrap();
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let n = v.len();
    v.insert("NEWGENE1".into(), n.into());
    std::fs::write(m.join("vocab.json"), serde_json::to_string(&v).unwrap()).unwrap();
    fails(&m, &immune(), &[], &["vocab.json", "rows"]);
}

#[test]
fn truncated_pytorch_checkpoint_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    copy_tiny(&m);
    let bytes = std::fs::read(m.join("best_model.pt")).unwrap();
    std::fs::write(m.join("best_model.pt"), &bytes[..bytes.len() / 2]).unwrap();
    fails(
        &m,
        &immune(),
        &[],
        &["best_model.pt", "truncated or corrupt"],
    );
}

#[test]
fn wrong_shape_names_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    copy_tiny(&m);
    let text = std::fs::read_to_string(m.join("args.json")).unwrap();
    std::fs::write(
        m.join("args.json"),
        text.replace("\"d_hid\": 64", "\"d_hid\": 128"),
    )
    .unwrap();
    fails(
        &m,
        &immune(),
        &[],
        &["best_model.pt", "linear1.weight", "shape"],
    );
}

#[test]
fn data_without_vocabulary_genes_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    copy_tiny(&m);
    // a 10x folder whose features are Ensembl ids only
    let d = tmp.path().join("tenx");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("matrix.mtx"),
        "%%MatrixMarket matrix coordinate integer general\n2 2 3\n1 1 5\n2 1 1\n2 2 7\n",
    )
    .unwrap();
    std::fs::write(d.join("features.tsv"), "ENSG00000167286\tENSG00000167286\tGene Expression\nENSG00000156738\tENSG00000156738\tGene Expression\n").unwrap();
    std::fs::write(d.join("barcodes.tsv"), "AAA-1\nCCC-1\n").unwrap();
    fails(
        &m,
        &d,
        &[],
        &[
            "tenx",
            "none of the 2 genes is in the model vocabulary",
            "--gene-key",
        ],
    );
}

#[test]
fn bad_options_and_existing_output_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("model");
    copy_tiny(&m);
    fails(
        &m,
        &immune(),
        &["--layers", "2"],
        &["block 2 does not exist"],
    );
    fails(
        &m,
        &immune(),
        &["--max-tokens", "10"],
        &["--max-tokens needs --tokens"],
    );
    fails(&m, &immune(), &["--batch-size", "0"], &["--batch-size"]);
    // an existing store is never overwritten without --resume
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("manifest.json"), "{}").unwrap();
    Command::cargo_bin("scsae")
        .unwrap()
        .arg("extract")
        .arg("--model")
        .arg(&m)
        .arg("--data")
        .arg(immune())
        .arg("--out")
        .arg(&out)
        .assert()
        .failure()
        .stderr(predicate::str::contains("--resume"));
    assert_eq!(
        std::fs::read_to_string(out.join("manifest.json")).unwrap(),
        "{}"
    );
}
