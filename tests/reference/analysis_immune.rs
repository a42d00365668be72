//! Biology check on the bundled immune data (data/immune1000.h5ad, 1000 cells, 14 types): PCA of the
//! expression gives a component that separates B_memory cells (AUROC > 0.9), whose genes on that side
//! include canonical B-cell markers, and whose side is enriched for the paper's B_cell set at FDR < 0.05.

use std::path::Path;

use scsae::analysis::expression_rows::ExpressionRows;
use scsae::analysis::gmt::read_gene_sets;
use scsae::analysis::pipeline::{analyze_features, select_columns, AnalysisContext};
use scsae::analysis::{fit_pca, AnalysisConfig, Direction, PcaSolver};
use scsae::data::DenseMatrix;
use scsae::data::{load, LoadOptions};

const B_MARKERS: [&str; 6] = ["CD79A", "CD79B", "MS4A1", "CD19", "BANK1", "PAX5"];

#[test]
fn pca_on_expression_finds_a_b_cell_component_with_markers_and_enrichment() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ds = load(&root.join("data/immune1000.h5ad"), &LoadOptions::default()).unwrap();
    let labels = ds.labels("cell_type_annotations").unwrap();
    let sets = read_gene_sets(&[root.join("genesets/paper_immune.gmt")]).unwrap();
    let cfg = AnalysisConfig::default();
    // the bundled X is log2(1 + scaled counts): used as stored
    let ctx = AnalysisContext::new(
        &labels,
        Some((
            ExpressionRows::from_matrix(ds.matrix.clone()),
            ds.gene_symbols.clone(),
        )),
        Some(&sets),
        &cfg,
    )
    .unwrap();
    // 14 labels, one with fewer than 5 cells is not tested
    assert_eq!(ctx.labels.names.len(), 14);
    assert_eq!(ctx.type_names().len(), 13);
    let mut x = DenseMatrix::new(ds.n_cells(), ds.n_genes(), ds.matrix.to_dense()).unwrap();
    x.row_ids = Some(ds.cell_ids.clone());
    let keep: Vec<usize> = (0..x.n_cols).filter(|&j| ctx.measured[j]).collect();
    let x = select_columns(&x, &keep);
    let pca = fit_pca(&x, 50, PcaSolver::Exact, 0).unwrap();
    let fa = analyze_features(&ctx, "PCA", &pca.scores, Direction::Both, &cfg).unwrap();

    let types = ctx.type_names();
    let b = types.iter().position(|t| t == "B_memory").unwrap();
    let attr = fa.attribution.as_ref().unwrap();
    let enr = fa.enrichment.as_ref().unwrap();
    let b_set = ctx.sets.iter().position(|s| s.name == "B_cell").unwrap();
    let n_rows = fa.auroc.features.len();
    let genes = &ds.gene_symbols;
    let mut found = None;
    for r in 0..n_rows {
        if fa.auroc.get(r, b) <= 0.9 {
            continue;
        }
        let lower = fa.auroc.flipped[r * types.len() + b];
        let side = if lower {
            &attr.top_negative[r]
        } else {
            &attr.top_positive[r]
        };
        let top: Vec<&str> = side.iter().map(|&(g, _)| genes[g].as_str()).collect();
        let markers: Vec<&str> = B_MARKERS
            .iter()
            .copied()
            .filter(|m| top.contains(m))
            .collect();
        let test_row = if lower { n_rows + r } else { r };
        let q = enr
            .tests
            .iter()
            .find(|t| t.feature == test_row && t.set == b_set)
            .map(|t| t.q);
        if markers.len() >= 2 && q.is_some_and(|q| q < 0.05) {
            found = Some((
                fa.feature_names[fa.auroc.features[r]].clone(),
                fa.auroc.get(r, b),
                markers,
                q,
            ));
            break;
        }
    }
    let (pc, auc, markers, q) =
        found.expect("no B_memory component with markers and B_cell enrichment");
    eprintln!("{pc}: AUROC {auc:.3}, markers {markers:?}, B_cell q = {q:?}");
    assert!(auc > 0.9);
}
