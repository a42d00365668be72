//! `scsae inspect` end to end, including every bad-input case of the foundation issue.

use crate::common::{root, scsae};

#[test]
fn inspect_json_reports_the_immune_numbers() {
    let out = scsae()
        .args([
            "inspect",
            "data/immune1000.h5ad",
            "--label-key",
            "cell_type_annotations",
            "--json",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n_cells"], 1000);
    assert_eq!(v["n_genes"], 6397);
    assert_eq!(v["nnz"], 666173);
    assert_eq!(
        v["obs_columns"],
        serde_json::json!(["cell_type_annotations"])
    );
    assert_eq!(v["labels"].as_object().unwrap().len(), 14);
    assert_eq!(v["labels"]["CD8_T"], 324);
    assert_eq!(v["labels"]["CD4_T"], 264);
    assert_eq!(v["labels"]["MDC"], 143);
    assert_eq!(v["labels"]["Treg"], 70);
}

#[test]
fn inspect_pbmc_raw() {
    let out = scsae()
        .args([
            "inspect",
            "data/pbmc68k_reduced.h5ad",
            "--layer",
            "raw",
            "--label-key",
            "bulk_labels",
            "--json",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n_cells"], 700);
    assert_eq!(v["n_genes"], 765);
    assert_eq!(v["nnz"], 174400);
    assert_eq!(v["labels"].as_object().unwrap().len(), 10);
}

#[test]
fn inspect_text_lists_labels_by_count() {
    let out = scsae()
        .args([
            "inspect",
            "data/immune1000.h5ad",
            "--label-key",
            "cell_type_annotations",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("cells: 1000") && text.contains("genes: 6397"),
        "{text}"
    );
    let cd8 = text.find("CD8_T: 324").unwrap();
    let treg = text.find("Treg: 70").unwrap();
    assert!(cd8 < treg);
}

/// Runs `scsae inspect` on a bad input; asserts a one-line error naming `needle`s, non-zero exit,
/// no panic and no backtrace.
fn assert_clean_failure(args: &[&str], needles: &[&str]) {
    let out = scsae()
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    assert!(lines[0].starts_with("error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    for n in needles {
        assert!(err.contains(n), "missing '{n}' in: {err}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn truncated_h5ad_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(root().join("data/immune1000.h5ad")).unwrap();
    let p = dir.path().join("truncated.h5ad");
    std::fs::write(&p, &bytes[..bytes.len() / 3]).unwrap();
    assert_clean_failure(&["inspect", p.to_str().unwrap()], &["truncated.h5ad"]);
}

#[test]
fn not_hdf5_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("notes.h5ad");
    std::fs::write(&p, "cell,label\nA,B\n").unwrap();
    assert_clean_failure(
        &["inspect", p.to_str().unwrap()],
        &["notes.h5ad", "not an HDF5 file"],
    );
}

#[test]
fn empty_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("empty.h5ad");
    std::fs::write(&p, "").unwrap();
    assert_clean_failure(&["inspect", p.to_str().unwrap()], &["empty.h5ad", "empty"]);
}

#[test]
fn missing_file_is_a_clear_error() {
    assert_clean_failure(
        &["inspect", "/nonexistent/x.h5ad"],
        &["/nonexistent/x.h5ad"],
    );
}

#[test]
fn missing_label_column_is_a_clear_error() {
    let f = root().join("data/immune1000.h5ad");
    assert_clean_failure(
        &["inspect", f.to_str().unwrap(), "--label-key", "celltype"],
        &["immune1000.h5ad", "celltype", "cell_type_annotations"],
    );
}

#[test]
fn tenx_folder_with_mismatched_dimensions_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("matrix.mtx"),
        "%%MatrixMarket matrix coordinate integer general\n3 4 1\n1 1 5\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("features.tsv"), "E1\tA\nE2\tB\nE3\tC\n").unwrap();
    std::fs::write(dir.path().join("barcodes.tsv"), "AAA-1\nCCC-1\n").unwrap();
    assert_clean_failure(
        &["inspect", dir.path().to_str().unwrap()],
        &["matrix.mtx", "4 columns", "2 barcodes"],
    );
}

#[test]
fn tenx_folder_gz_with_labels_reads() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let gz = |name: &str, text: &str| {
        let f = std::fs::File::create(dir.path().join(name)).unwrap();
        let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap();
    };
    gz(
        "matrix.mtx.gz",
        "%%MatrixMarket matrix coordinate integer general\n%\n3 2 3\n1 1 5\n3 1 1\n2 2 7\n",
    );
    gz(
        "features.tsv.gz",
        "E1\tCD3E\tGene Expression\nE2\tMS4A1\tGene Expression\nE3\tLYZ\tGene Expression\n",
    );
    gz("barcodes.tsv.gz", "AAA-1\nCCC-1\n");
    let labels = dir.path().join("labels.csv");
    std::fs::write(&labels, "barcode,cell_type\nCCC-1,B\nAAA-1,T\n").unwrap();
    let out = scsae()
        .args([
            "inspect",
            dir.path().to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--label-key",
            "cell_type",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["n_cells"], 2);
    assert_eq!(v["n_genes"], 3);
    assert_eq!(v["nnz"], 3);
    assert_eq!(v["labels"], serde_json::json!({"B": 1, "T": 1}));
}
