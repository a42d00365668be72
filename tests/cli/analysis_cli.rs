//! `scsae analyze` end to end on the bundled immune data, and its bad-input errors.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use scsae::analysis::fit_pca;
use scsae::analysis::PcaSolver;
use scsae::data::DenseMatrix;
use scsae::data::{load, LoadOptions};
use scsae::io::table::{f64_list_column, read_dataframe, str_list_column};

use crate::common::root;

/// Non-negative "SAE-like" features from expression PCA: PCk+ = max(score, 0), PCk- = max(-score, 0).
fn split_pca_features(dir: &Path) -> PathBuf {
    let ds = load(
        &root().join("data/immune1000.h5ad"),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut x = DenseMatrix::new(ds.n_cells(), ds.n_genes(), ds.matrix.to_dense()).unwrap();
    x.row_ids = Some(ds.cell_ids.clone());
    let pca = fit_pca(&x, 20, PcaSolver::Randomized, 1).unwrap();
    let k = pca.scores.n_cols;
    let mut data = Vec::with_capacity(ds.n_cells() * 2 * k);
    for i in 0..ds.n_cells() {
        let row = pca.scores.row(i);
        data.extend(row.iter().map(|v| v.max(0.0)));
        data.extend(row.iter().map(|v| (-v).max(0.0)));
    }
    let mut f = DenseMatrix::new(ds.n_cells(), 2 * k, data).unwrap();
    // reverse the cell order: matching must go by id, not position
    let rev: Vec<usize> = (0..ds.n_cells()).rev().collect();
    f.row_ids = Some(ds.cell_ids.clone());
    let f = f.select_rows(&rev);
    let p = dir.join("features.safetensors");
    f.write_safetensors(&p, "codes").unwrap();
    p
}

#[test]
fn analyze_end_to_end_on_immune_data() {
    let tmp = tempfile::tempdir().unwrap();
    let feats = split_pca_features(tmp.path());
    let out = tmp.path().join("out");
    let assert = Command::cargo_bin("scsae")
        .unwrap()
        .current_dir(root())
        .args(["analyze", "--features"])
        .arg(&feats)
        .args([
            "--data",
            "data/immune1000.h5ad",
            "--label-key",
            "cell_type_annotations",
        ])
        .args([
            "--genesets",
            "genesets/paper_immune.gmt,genesets/hallmark_immune.gmt",
        ])
        .args([
            "--pca-source",
            "expression",
            "--pca-components",
            "30",
            "--json",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success()
        .stderr(predicate::str::contains("non-integer values"));
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(json["n_cells"], 1000);
    assert_eq!(json["features"]["n_features"], 40);
    assert!(json["features"]["mean_best_auroc"].as_f64().unwrap() > 0.7);
    assert!(json["pca"]["n_types_above"].as_u64().unwrap() >= 3);
    assert!(json["features"]["n_enriched"].as_u64().unwrap() >= 1);
    for stem in [
        "features",
        "auroc",
        "gene_attribution",
        "enrichment",
        "cell_types",
        "comparison",
        "pca_features",
        "pca_auroc",
        "pca_variance",
    ] {
        assert!(out.join(format!("{stem}.csv")).exists(), "{stem}.csv");
        assert!(
            out.join(format!("{stem}.parquet")).exists(),
            "{stem}.parquet"
        );
    }
    for fig in [
        "auroc_heatmap",
        "dotplot",
        "enrichment_summary",
        "sae_vs_pca",
    ] {
        assert!(out.join(format!("figures/{fig}.png")).exists());
        assert!(out.join(format!("figures/{fig}.svg")).exists());
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("figures/auroc_heatmap.png") && report.contains("comparison.parquet"));
    // the B_memory row of the cell-type table names a feature with AUROC > 0.9
    let types = std::fs::read_to_string(out.join("cell_types.csv")).unwrap();
    let b = types.lines().find(|l| l.starts_with("B_memory,")).unwrap();
    let auc: f64 = b.split(',').nth(3).unwrap().parse().unwrap();
    assert!(auc > 0.9, "{b}");
    // the features table lists B-cell markers for an enriched B feature, the same in CSV (lists
    // joined with ';') and Parquet (lists)
    let rows = scsae::analysis::features_table::read(&out.join("features.parquet")).unwrap();
    assert_eq!(
        scsae::analysis::features_table::read(&out.join("features.csv")).unwrap(),
        rows
    );
    assert!(
        rows.iter().any(|r| {
            r.top_positive
                .iter()
                .chain(&r.top_negative)
                .any(|(g, _)| g == "MS4A1")
                && r.sets.iter().any(|s| s.name == "B_cell" && s.q < 0.05)
        }),
        "no B feature with MS4A1 and B_cell enrichment"
    );
    // cell types: top features with their AUROCs as parallel lists
    let ct = read_dataframe(&out.join("cell_types.parquet")).unwrap();
    let tops = str_list_column(ct.column("top_features").unwrap()).unwrap();
    let aucs = f64_list_column(ct.column("top_features_auroc").unwrap()).unwrap();
    assert!(tops
        .iter()
        .zip(&aucs)
        .all(|(t, a)| !t.is_empty() && t.len() <= 5 && t.len() == a.len()));
    assert!(aucs.iter().all(|a| a.windows(2).all(|w| w[0] >= w[1])));
    // the finished folder is not overwritten without --force
    let report_before = std::fs::read(out.join("report.md")).unwrap();
    let feats_arg = feats.to_string_lossy().to_string();
    let o = analyze(
        &[
            "--features",
            &feats_arg,
            "--data",
            "data/immune1000.h5ad",
            "--label-key",
            "cell_type_annotations",
        ],
        &out,
    )
    .failure();
    let err = String::from_utf8_lossy(&o.get_output().stderr).to_string();
    assert!(
        err.contains("already holds a finished analysis") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("report.md")).unwrap(), report_before);
}

fn analyze(args: &[&str], out: &Path) -> assert_cmd::assert::Assert {
    Command::cargo_bin("scsae")
        .unwrap()
        .current_dir(root())
        .arg("analyze")
        .args(args)
        .arg("--out")
        .arg(out)
        .assert()
}

#[test]
fn bad_inputs_fail_with_one_line_and_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    // features whose ids are not cells of the data
    let mut f = DenseMatrix::new(3, 2, vec![1., 0., 0., 1., 2., 2.]).unwrap();
    f.row_ids = Some(vec!["nope1".into(), "nope2".into(), "nope3".into()]);
    let bad_ids = tmp.path().join("bad_ids.safetensors");
    f.write_safetensors(&bad_ids, "x").unwrap();
    let data = [
        "--data",
        "data/immune1000.h5ad",
        "--label-key",
        "cell_type_annotations",
    ];
    let mut a = vec!["--features", bad_ids.to_str().unwrap()];
    a.extend(data);
    analyze(&a, &out).failure().stderr(
        predicate::str::contains("3 of 3 cell ids are not in")
            .and(predicate::str::contains("bad_ids.safetensors")),
    );
    // features without ids (.npy)
    let npy = tmp.path().join("f.npy");
    let mut bytes = Vec::new();
    scsae::io::npy::write_npy_f32(&mut bytes, 3, 2, &[1., 0., 0., 1., 2., 2.]).unwrap();
    std::fs::write(&npy, bytes).unwrap();
    let mut a = vec!["--features", npy.to_str().unwrap()];
    a.extend(data);
    analyze(&a, &out)
        .failure()
        .stderr(predicate::str::contains("no cell ids"));
    // malformed GMT line: error names file and line
    let gmt = tmp.path().join("bad.gmt");
    std::fs::write(&gmt, "B_cell\tdesc\tCD79A\tMS4A1\nT cell CD3E CD3D\n").unwrap();
    let mut a = vec!["--features", bad_ids.to_str().unwrap()];
    a.extend(data);
    a.extend(["--genesets", gmt.to_str().unwrap()]);
    analyze(&a, &out)
        .failure()
        .stderr(predicate::str::contains("bad.gmt").and(predicate::str::contains("line 2")));
    // duplicate set names with different genes
    let dup = tmp.path().join("dup.gmt");
    std::fs::write(&dup, "S\td\tCD79A\nS\td\tCD3E\n").unwrap();
    let mut a = vec!["--features", bad_ids.to_str().unwrap()];
    a.extend(data);
    a.extend(["--genesets", dup.to_str().unwrap()]);
    analyze(&a, &out).failure().stderr(
        predicate::str::contains("duplicate gene-set name 'S'")
            .and(predicate::str::contains("line 2")),
    );
    // unknown label column
    let mut a = vec!["--features", bad_ids.to_str().unwrap()];
    a.extend(["--data", "data/immune1000.h5ad", "--label-key", "celltype"]);
    analyze(&a, &out)
        .failure()
        .stderr(predicate::str::contains("no obs column 'celltype'"));
    // --sae without activations
    let a = vec![
        "--sae",
        "x",
        "--data",
        "data/immune1000.h5ad",
        "--label-key",
        "cell_type_annotations",
    ];
    analyze(&a, &out)
        .failure()
        .stderr(predicate::str::contains("--sae needs --activations"));
    assert!(!out.exists(), "an error left output behind");
}

#[test]
fn gene_sets_with_unknown_genes_and_empty_sets_warn_naming_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let feats = split_pca_features(tmp.path());
    let gmt = tmp.path().join("mixed.gmt");
    std::fs::write(
        &gmt,
        "B_cell\tB\tCD79A\tMS4A1\tNOT_A_GENE\nEMPTY\tnothing\nGHOSTS\tx\tFAKE1\tFAKE2\n",
    )
    .unwrap();
    let out = tmp.path().join("out");
    Command::cargo_bin("scsae")
        .unwrap()
        .current_dir(root())
        .args(["analyze", "--features"])
        .arg(&feats)
        .args([
            "--data",
            "data/immune1000.h5ad",
            "--label-key",
            "cell_type_annotations",
            "--genesets",
        ])
        .arg(&gmt)
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        // the terminal gets one line: the first warning, how many more, and where they all are
        .stderr(
            predicate::str::contains("more warnings, all listed in")
                .and(predicate::str::contains("report.md")),
        );
    // every warning, naming its line, is in report.md
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    for w in ["mixed.gmt:1", "NOT_A_GENE", "mixed.gmt:2", "mixed.gmt:3"] {
        assert!(report.contains(w), "report.md lacks {w}");
    }
    // only-unknown sets everywhere: an error, not a silent empty analysis
    let none = tmp.path().join("none.gmt");
    std::fs::write(&none, "GHOSTS\tx\tFAKE1\tFAKE2\n").unwrap();
    Command::cargo_bin("scsae")
        .unwrap()
        .current_dir(root())
        .args(["analyze", "--features"])
        .arg(&feats)
        .args([
            "--data",
            "data/immune1000.h5ad",
            "--label-key",
            "cell_type_annotations",
            "--genesets",
        ])
        .arg(&none)
        .arg("--out")
        .arg(tmp.path().join("out2"))
        .assert()
        .failure()
        .stderr(predicate::str::contains("none of the 1 gene sets"));
}

/// `scsae concepts` end to end on the bundled PCA-50 embeddings: the tables and `concepts.json`
/// agree with each other, the PCA baseline is scored two-sided, the same seed gives the same bytes
/// and another seed another split, a finished folder is refused without --force, and a missing label
/// column writes nothing.
#[test]
fn concepts_scores_held_out_cells_and_refuses_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |out: &std::path::Path, seed: &str| -> Vec<String> {
        [
            "concepts",
            "--features",
            "tests/fixtures/spikgpt/immune1000_pca50.safetensors",
            "--two-sided",
            "--pca",
            "10",
            "--data",
            "data/immune1000.h5ad",
            "--label-key",
            "cell_type_annotations",
            "--split-seed",
            seed,
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let a = tmp.path().join("a");
    crate::common::scsae()
        .args(args(&a, "42"))
        .assert()
        .success()
        .stdout(predicates::str::contains("scored features annotated"));
    let summary = crate::common::json(&a.join("concepts.json"));
    let table = std::fs::read_to_string(a.join("concepts.csv")).unwrap();
    let rows: Vec<&str> = table.lines().skip(1).collect();
    assert_eq!(
        rows.len() as u64,
        summary["summary"]["n_scored"].as_u64().unwrap()
    );
    let annotated = rows.iter().filter(|r| r.ends_with(",true")).count();
    assert_eq!(
        annotated as u64,
        summary["summary"]["n_annotated"].as_u64().unwrap()
    );
    assert!(
        annotated > 5,
        "the PCA-50 embeddings carry cell types: {annotated}"
    );
    assert_eq!(summary["pca"]["n_features"], 10);
    assert_eq!(
        summary["summary"]["n_validation"].as_u64().unwrap()
            + summary["summary"]["n_test"].as_u64().unwrap(),
        1000
    );
    // same seed, same bytes; another seed, another split
    let b = tmp.path().join("b");
    crate::common::scsae()
        .args(args(&b, "42"))
        .assert()
        .success();
    assert_eq!(
        std::fs::read(a.join("concepts.csv")).unwrap(),
        std::fs::read(b.join("concepts.csv")).unwrap()
    );
    let c = tmp.path().join("c");
    crate::common::scsae()
        .args(args(&c, "7"))
        .assert()
        .success();
    assert_ne!(
        std::fs::read(a.join("concepts.csv")).unwrap(),
        std::fs::read(c.join("concepts.csv")).unwrap()
    );
    // finished: refused without --force
    crate::common::scsae()
        .args(args(&a, "42"))
        .assert()
        .failure()
        .stderr(predicates::str::contains("--force"));
    // a missing label column: one line, nothing written
    let d = tmp.path().join("d");
    let mut bad = args(&d, "42");
    let k = bad
        .iter()
        .position(|s| s == "cell_type_annotations")
        .unwrap();
    bad[k] = "nope".into();
    crate::common::scsae()
        .args(bad)
        .assert()
        .failure()
        .stderr(predicates::str::contains("no obs column 'nope'"));
    assert!(!d.exists());
}
