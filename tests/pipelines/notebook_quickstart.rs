//! The code of `notebooks/quickstart.ipynb`, run as a test.
//!
//! Each block between cell markers is one code cell of the notebook (after its setup cell, which
//! sets `root`). `notebook_matches_this_file` checks that the notebook's cells are exactly these blocks,
//! so the notebook cannot drift from code that compiles and runs.

use std::path::PathBuf;

use crate::common::notebook;

#[test]
fn notebook_cells_run() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // ----- cell -----
    use scsae::data::{load, LoadOptions, Summary};
    let ds = load(&root.join("data/immune1000.h5ad"), &LoadOptions::default())?;
    println!(
        "{} cells x {} genes, {} stored values",
        ds.n_cells(),
        ds.n_genes(),
        ds.matrix.nnz()
    );
    // ----- cell -----
    let summary = Summary::of(&ds, Some("cell_type_annotations"))?;
    print!("{}", summary.to_text(&ds));
    // ----- cell -----
    let labels = ds.labels("cell_type_annotations")?;
    let b_cells: Vec<usize> = (0..ds.n_cells())
        .filter(|&i| labels[i] == "B_memory")
        .collect();
    let ms4a1 = ds
        .gene_symbols
        .iter()
        .position(|g| g == "MS4A1")
        .ok_or("no MS4A1")?;
    fn mean_expression(ds: &scsae::data::Dataset, rows: &[usize], gene: usize) -> f64 {
        rows.iter()
            .map(|&r| ds.matrix.get(r, gene) as f64)
            .sum::<f64>()
            / rows.len() as f64
    }
    let others: Vec<usize> = (0..ds.n_cells())
        .filter(|&i| labels[i] != "B_memory")
        .collect();
    let (in_b, outside) = (
        mean_expression(&ds, &b_cells, ms4a1),
        mean_expression(&ds, &others, ms4a1),
    );
    println!("MS4A1 mean: B_memory {in_b:.2}, other cells {outside:.2}");
    // ----- end -----
    assert!(in_b > 2.0 * outside);
    Ok(())
}

#[test]
fn notebook_matches_this_file() {
    let nb = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("notebooks/quickstart.ipynb");
    assert_eq!(
        notebook::notebook_cells(&nb),
        notebook::test_cells(include_str!("notebook_quickstart.rs"))
    );
}
