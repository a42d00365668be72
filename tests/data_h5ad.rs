//! The h5ad reader against values read by Python anndata (tests/fixtures/data, made by
//! scripts/data/make_fixtures.py), for both on-disk layouts.

use std::path::{Path, PathBuf};

use scsae::data::{load, LoadOptions, MatrixLayer, Summary};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> serde_json::Value {
    let p = root()
        .join("tests/fixtures/data")
        .join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn check_against_anndata(file: &Path, layer: MatrixLayer, name: &str) {
    let fx = fixture(name);
    let opts = LoadOptions {
        layer,
        ..Default::default()
    };
    let ds = load(file, &opts).unwrap();
    let key = fx["label_key"].as_str().unwrap();
    let s = Summary::of(&ds, Some(key)).unwrap();
    assert_eq!(s.n_cells as u64, fx["n_cells"].as_u64().unwrap());
    assert_eq!(s.n_genes as u64, fx["n_genes"].as_u64().unwrap());
    assert_eq!(s.nnz as u64, fx["nnz"].as_u64().unwrap());
    assert_eq!(ds.cell_ids, strings(&fx["cell_ids"]));
    assert_eq!(ds.gene_symbols, strings(&fx["gene_symbols"]));
    assert_eq!(s.obs_columns, strings(&fx["obs_columns"]));
    let labels: std::collections::BTreeMap<String, usize> = fx["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as usize))
        .collect();
    assert_eq!(s.labels, labels);
    let first10 = strings(&fx["label_values_first10"]);
    assert_eq!(&ds.labels(key).unwrap()[..10], first10.as_slice());

    // per-cell stored counts and sums, per-gene sums
    let nnz_per_cell: Vec<u64> = fx["nnz_per_cell"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    let mut cell_sums = vec![0f64; ds.n_cells()];
    let mut gene_sums = vec![0f64; ds.n_genes()];
    for r in 0..ds.n_cells() {
        let (idx, val) = ds.matrix.row(r);
        let stored_nonzero = val.iter().filter(|v| **v != 0.0).count() as u64;
        assert_eq!(stored_nonzero, nnz_per_cell[r], "cell {r}");
        for (&c, &v) in idx.iter().zip(val) {
            cell_sums[r] += v as f64;
            gene_sums[c as usize] += v as f64;
        }
    }
    for (a, b) in cell_sums.iter().zip(f64s(&fx["cell_sums"])) {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
    }
    for (a, b) in gene_sums.iter().zip(f64s(&fx["gene_sums"])) {
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
    }
    // full rows, value by value (exact: both sides read the same f32)
    let rows: Vec<usize> = fx["sample_rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect();
    for (k, &r) in rows.iter().enumerate() {
        let expect = f64s(&fx["sample_values"][k]);
        for (c, e) in expect.iter().enumerate() {
            // exact: the fixture holds the f32 value printed as f64
            assert_eq!(ds.matrix.get(r, c), *e as f32, "cell {r} gene {c}");
        }
    }
}

#[test]
fn immune_new_layout_matches_anndata() {
    check_against_anndata(
        &root().join("data/immune1000.h5ad"),
        MatrixLayer::X,
        "immune1000_X",
    );
}

#[test]
fn pbmc_legacy_raw_matches_anndata() {
    check_against_anndata(
        &root().join("data/pbmc68k_reduced.h5ad"),
        MatrixLayer::Raw,
        "pbmc68k_raw",
    );
}

#[test]
fn pbmc_legacy_dense_x_matches_anndata() {
    check_against_anndata(
        &root().join("data/pbmc68k_reduced.h5ad"),
        MatrixLayer::X,
        "pbmc68k_X",
    );
}

#[test]
fn issue_numbers_hold() {
    let ds = load(
        &root().join("data/immune1000.h5ad"),
        &LoadOptions::default(),
    )
    .unwrap();
    let s = Summary::of(&ds, Some("cell_type_annotations")).unwrap();
    assert_eq!((s.n_cells, s.n_genes, s.nnz), (1000, 6397, 666173));
    assert_eq!(s.labels.len(), 14);
    assert_eq!(s.labels["CD8_T"], 324);
    assert_eq!(s.labels["CD4_T"], 264);
    assert_eq!(s.labels["MDC"], 143);
    assert_eq!(s.labels["Treg"], 70);
    let raw = LoadOptions {
        layer: MatrixLayer::Raw,
        ..Default::default()
    };
    let p = load(&root().join("data/pbmc68k_reduced.h5ad"), &raw).unwrap();
    let s = Summary::of(&p, Some("bulk_labels")).unwrap();
    assert_eq!((s.n_cells, s.n_genes, s.nnz), (700, 765, 174400));
    assert_eq!(s.labels.len(), 10);
}

#[test]
fn gene_key_picks_a_var_column_and_unknown_key_is_an_error() {
    let opts = LoadOptions {
        gene_key: Some("n_cells_by_counts".into()),
        ..Default::default()
    };
    let ds = load(&root().join("data/immune1000.h5ad"), &opts).unwrap();
    assert!(ds.gene_symbols[0].parse::<f64>().is_ok());
    let opts = LoadOptions {
        gene_key: Some("nope".into()),
        ..Default::default()
    };
    let e = load(&root().join("data/immune1000.h5ad"), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("immune1000.h5ad") && e.contains("nope"), "{e}");
}

#[test]
fn labels_join_from_csv() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("labels.csv");
    let ds = load(
        &root().join("data/pbmc68k_reduced.h5ad"),
        &LoadOptions::default(),
    )
    .unwrap();
    let mut text = String::from("barcode,my_label\n");
    for (i, id) in ds.cell_ids.iter().enumerate().take(5) {
        text.push_str(&format!("{id},L{i}\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let opts = LoadOptions {
        labels: Some(csv),
        ..Default::default()
    };
    let ds = load(&root().join("data/pbmc68k_reduced.h5ad"), &opts).unwrap();
    let col = ds.obs.get("my_label").unwrap().values.as_strings();
    assert_eq!(col[0].as_deref(), Some("L0"));
    assert_eq!(col[4].as_deref(), Some("L4"));
    assert_eq!(col[5], None);
    // a label column with gaps is reported, naming the first unlabelled cell
    let e = ds.labels("my_label").unwrap_err().to_string();
    assert!(e.contains(&ds.cell_ids[5]), "{e}");
}
