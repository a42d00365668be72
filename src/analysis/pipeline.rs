//! One feature matrix through the whole analysis (alive features, AUROC, gene attribution,
//! enrichment), and the side-by-side comparison of two analyses (the paper's Table 4).

use serde::Serialize;

use crate::analysis::attribution_sums::attribute_genes_auto;
use crate::analysis::auroc::{AurocTable, Direction, LabelCodes};
use crate::analysis::correlation::{AttributionOptions, GeneAttribution};
use crate::analysis::enrichment::{enrich, Enrichment};
use crate::analysis::expression_rows::{ExpressionRows, GeneStats};
use crate::analysis::gmt::{resolve, GeneSetCollection, ResolvedSet};
use crate::analysis::sparse_auroc::auroc_table_sparse;
use crate::analysis::sparse_codes::SparseCodes;
use crate::analysis::AnalysisConfig;
use crate::data::CsrMatrix;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::io::table::LIST_SEP;

/// Everything shared by the analyses of one set of cells: labels, expression, gene sets.
#[derive(Debug)]
pub struct AnalysisContext {
    /// Cell-type codes, one per analysed cell.
    pub labels: LabelCodes,
    /// Codes of the types tested (enough cells).
    pub tested_types: Vec<usize>,
    /// Expression (cells in the same order as the feature matrices), prepared, and gene names.
    pub expression: Option<(ExpressionRows, Vec<String>)>,
    /// Per gene: varies across the analysed cells.
    pub measured: Vec<bool>,
    /// Gene sets mapped onto the measured genes.
    pub sets: Vec<ResolvedSet>,
    /// Warnings raised while preparing (gene sets, labels).
    pub warnings: Vec<String>,
}

/// Per gene: whether its value differs between cells.
pub fn varying_genes(m: &CsrMatrix) -> Vec<bool> {
    GeneStats::of_matrix(m).varies
}

impl AnalysisContext {
    /// Prepare labels, expression and gene sets. `expression` rows must follow `labels`' cell order.
    pub fn new(
        labels: &[String],
        expression: Option<(ExpressionRows, Vec<String>)>,
        sets: Option<&GeneSetCollection>,
        cfg: &AnalysisConfig,
    ) -> Result<AnalysisContext> {
        let labels = LabelCodes::new(labels);
        let tested_types = labels.testable(cfg.min_cells);
        let mut warnings = Vec::new();
        for (t, name) in labels.names.iter().enumerate() {
            if !tested_types.contains(&t) {
                warnings.push(format!(
                    "cell type '{name}' has {} cells (< {}); not tested (its cells stay in the rest)",
                    labels.counts[t], cfg.min_cells
                ));
            }
        }
        if tested_types.is_empty() {
            return Err(Error::invalid(format!(
                "no cell type has at least {} cells (and cells outside it)",
                cfg.min_cells
            )));
        }
        if let Some(g) = expression
            .as_ref()
            .and_then(|(_, genes)| genes.iter().find(|g| g.contains(LIST_SEP)))
        {
            return Err(Error::invalid(format!(
                "gene name '{g}' contains '{LIST_SEP}', the separator of gene lists in the result \
                 tables; rename it in the data set"
            )));
        }
        let measured = match &expression {
            Some((e, _)) => e.stats().varies.clone(),
            None => Vec::new(),
        };
        let mut resolved = Vec::new();
        if let (Some(sets), Some((_, genes))) = (sets, expression.as_ref()) {
            warnings.extend(sets.warnings.iter().cloned());
            let (r, w) = resolve(sets, genes, &measured, cfg.min_set_size)?;
            resolved = r;
            warnings.extend(w);
        }
        Ok(AnalysisContext {
            labels,
            tested_types,
            expression,
            measured,
            sets: resolved,
            warnings,
        })
    }

    /// Names of the tested types.
    pub fn type_names(&self) -> Vec<String> {
        self.tested_types
            .iter()
            .map(|&t| self.labels.names[t].clone())
            .collect()
    }

    /// Gene symbols of the expression matrix (empty without expression).
    pub fn gene_names(&self) -> &[String] {
        self.expression
            .as_ref()
            .map(|e| e.1.as_slice())
            .unwrap_or(&[])
    }
}

/// Headline numbers of one analysis (the rows of the paper's Table 4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Headline {
    /// Name of the feature source ("SAE", "PCA", ...).
    pub label: String,
    /// Cells analysed.
    pub n_cells: usize,
    /// Features in the matrix.
    pub n_features: usize,
    /// Alive features (non-zero on at least the alive fraction of cells).
    pub n_alive: usize,
    /// Percentage of alive features.
    pub pct_alive: f64,
    /// Mean number of non-zero features per cell.
    pub mean_l0: f64,
    /// Cell types tested.
    pub n_types_tested: usize,
    /// Mean over tested types of the best AUROC over alive features.
    pub mean_best_auroc: f64,
    /// Types whose best AUROC exceeds the threshold.
    pub n_types_above: usize,
    /// Alive features with AUROC above the threshold for at least one type.
    pub n_specific: usize,
    /// Percentage of alive features that are cell-type-specific.
    pub pct_specific: f64,
    /// Alive features with at least one set at q < FDR (when enrichment ran).
    pub n_enriched: Option<usize>,
    /// Percentage of alive features enriched.
    pub pct_enriched: Option<f64>,
}

/// Full results for one feature matrix.
#[derive(Debug, Clone)]
pub struct FeatureAnalysis {
    /// Name of the feature source.
    pub label: String,
    /// Name of every feature (column names, or `f0, f1, ...`).
    pub feature_names: Vec<String>,
    /// Fraction of cells where each feature is non-zero.
    pub frac_active: Vec<f64>,
    /// Mean value of each feature.
    pub mean_value: Vec<f64>,
    /// Alive flags.
    pub alive: Vec<bool>,
    /// AUROC table over the alive features (rows) and tested types (columns).
    pub auroc: AurocTable,
    /// Gene attribution of the alive features (rows as in `auroc.features`).
    pub attribution: Option<GeneAttribution>,
    /// Enrichment of the alive features (feature index = row in `auroc.features`; with
    /// [`Direction::Both`], indices `n_alive + row` test the row's negatively correlated genes).
    pub enrichment: Option<Enrichment>,
    /// Per alive feature: enriched at the configured FDR.
    pub enriched: Vec<bool>,
    /// Headline numbers.
    pub headline: Headline,
}

/// Run the analysis of `x` (cells x features, rows in the context's cell order): its sparse copy
/// through [`analyze_sparse_features`].
pub fn analyze_features(
    ctx: &AnalysisContext,
    label: &str,
    x: &DenseMatrix,
    direction: Direction,
    cfg: &AnalysisConfig,
) -> Result<FeatureAnalysis> {
    analyze_sparse_features(ctx, label, &SparseCodes::from_dense(x)?, direction, cfg)
}

/// Run the analysis of the column-sparse `x` (cells x features, rows in the context's cell order)
/// without densifying it: the activity statistics and the AUROC come from the stored values, and
/// the gene attribution is [`attribute_genes_auto`] (dense product on small data, sums at atlas
/// size).
pub fn analyze_sparse_features(
    ctx: &AnalysisContext,
    label: &str,
    x: &SparseCodes,
    direction: Direction,
    cfg: &AnalysisConfig,
) -> Result<FeatureAnalysis> {
    let n = x.n_rows;
    if ctx.labels.codes.len() != n {
        return Err(Error::invalid(format!(
            "{label}: {n} cells but {} labels",
            ctx.labels.codes.len()
        )));
    }
    let nf = x.n_cols();
    let (nnz, sums) = x.column_sums();
    let frac_active: Vec<f64> = nnz.iter().map(|&c| c as f64 / n as f64).collect();
    let mean_value: Vec<f64> = sums.iter().map(|s| s / n as f64).collect();
    let alive: Vec<bool> = frac_active
        .iter()
        .map(|&f| f > 0.0 && f >= cfg.alive_fraction)
        .collect();
    let alive_idx: Vec<usize> = (0..nf).filter(|&j| alive[j]).collect();
    let mean_l0 = nnz.iter().sum::<usize>() as f64 / n as f64;
    let auroc = auroc_table_sparse(x, &ctx.labels, &alive_idx, &ctx.tested_types, direction)?;

    let (attribution, enrichment) = match &ctx.expression {
        Some((expr, _)) => {
            let attr = attribute_genes_auto(
                x,
                &alive_idx,
                expr,
                &AttributionOptions {
                    top_k: cfg.top_genes,
                    cutoff: cfg.corr_cutoff,
                    block: 512,
                },
            )?;
            let enr = if ctx.sets.is_empty() {
                None
            } else {
                // features of either sign (PCs) are tested at both ends: rows F.. are the
                // negatively correlated genes of feature row - F
                let mut hits: Vec<Vec<usize>> = attr
                    .hits
                    .iter()
                    .map(|h| h.iter().map(|&(g, _)| g).collect())
                    .collect();
                if direction == Direction::Both {
                    hits.extend(
                        attr.negative_hits
                            .iter()
                            .map(|h| h.iter().map(|&(g, _)| g).collect::<Vec<usize>>()),
                    );
                }
                Some(enrich(
                    &hits,
                    &ctx.sets,
                    &ctx.measured,
                    cfg.background,
                    cfg.min_hits,
                ))
            };
            (Some(attr), enr)
        }
        None => (None, None),
    };
    let n_alive = alive_idx.len();
    let enriched: Vec<bool> = match &enrichment {
        Some(e) if direction == Direction::Both => {
            let both = e.enriched(2 * n_alive, cfg.fdr);
            (0..n_alive).map(|r| both[r] || both[n_alive + r]).collect()
        }
        Some(e) => e.enriched(n_alive, cfg.fdr),
        None => vec![false; n_alive],
    };

    let best = auroc.best_per_type();
    let best_vals: Vec<f64> = best.iter().filter_map(|b| b.map(|(_, v)| v)).collect();
    let mean_best_auroc = if best_vals.is_empty() {
        f64::NAN
    } else {
        best_vals.iter().sum::<f64>() / best_vals.len() as f64
    };
    let n_types_above = best_vals
        .iter()
        .filter(|&&v| v > cfg.auroc_threshold)
        .count();
    let n_specific = auroc
        .best_per_feature()
        .iter()
        .filter(|b| b.is_some_and(|(_, v)| v > cfg.auroc_threshold))
        .count();
    let pct = |k: usize| {
        if n_alive == 0 {
            0.0
        } else {
            100.0 * k as f64 / n_alive as f64
        }
    };
    let n_enriched = enrichment
        .as_ref()
        .map(|_| enriched.iter().filter(|&&e| e).count());
    let headline = Headline {
        label: label.to_string(),
        n_cells: n,
        n_features: nf,
        n_alive,
        pct_alive: if nf == 0 {
            0.0
        } else {
            100.0 * n_alive as f64 / nf as f64
        },
        mean_l0,
        n_types_tested: ctx.tested_types.len(),
        mean_best_auroc,
        n_types_above,
        n_specific,
        pct_specific: pct(n_specific),
        n_enriched,
        pct_enriched: n_enriched.map(pct),
    };
    let feature_names = x
        .col_names
        .clone()
        .filter(|c| c.len() == nf)
        .unwrap_or_else(|| (0..nf).map(|j| format!("f{j}")).collect());
    Ok(FeatureAnalysis {
        label: label.to_string(),
        feature_names,
        frac_active,
        mean_value,
        alive,
        auroc,
        attribution,
        enrichment,
        enriched,
        headline,
    })
}

/// Copy the columns `cols` of `x`.
pub fn select_columns(x: &DenseMatrix, cols: &[usize]) -> DenseMatrix {
    let mut data = Vec::with_capacity(x.n_rows * cols.len());
    for i in 0..x.n_rows {
        let row = x.row(i);
        data.extend(cols.iter().map(|&j| row[j]));
    }
    DenseMatrix {
        n_rows: x.n_rows,
        n_cols: cols.len(),
        data,
        row_ids: x.row_ids.clone(),
        col_names: x
            .col_names
            .as_ref()
            .map(|c| cols.iter().map(|&j| c[j].clone()).collect()),
    }
}

/// The side-by-side comparison of two analyses (paper Table 4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Row names.
    pub metrics: Vec<String>,
    /// Label of each column.
    pub labels: Vec<String>,
    /// `values[c][r]`: column `c`, metric `r` (NaN when not available).
    pub values: Vec<Vec<f64>>,
}

impl Comparison {
    /// Build from headlines, one column each.
    pub fn of(headlines: &[&Headline], threshold: f64, fdr: f64) -> Comparison {
        let metrics = vec![
            "Mean best AUROC across types".to_string(),
            format!("Types with best AUROC > {threshold}"),
            format!("% alive features with enrichment (FDR < {fdr})"),
            "Mean L0 per cell".to_string(),
            "% alive features".to_string(),
            "Features".to_string(),
            format!("% alive features with AUROC > {threshold}"),
        ];
        let values = headlines
            .iter()
            .map(|h| {
                vec![
                    h.mean_best_auroc,
                    h.n_types_above as f64,
                    h.pct_enriched.unwrap_or(f64::NAN),
                    h.mean_l0,
                    h.pct_alive,
                    h.n_features as f64,
                    h.pct_specific,
                ]
            })
            .collect();
        Comparison {
            metrics,
            labels: headlines.iter().map(|h| h.label.clone()).collect(),
            values,
        }
    }
}

/// Match feature rows to data cells by id: returns, for each feature row, the data row.
///
/// Errors (naming `features_path`) when the features carry no ids, repeat an id, or hold ids the data
/// lacks (with the count and the first few).
pub fn match_cells(
    feature_ids: Option<&[String]>,
    features_path: &std::path::Path,
    data_ids: &[String],
    data_path: &std::path::Path,
) -> Result<Vec<usize>> {
    let ids = feature_ids.ok_or_else(|| {
        Error::input(
            features_path,
            "the feature matrix has no cell ids, so its rows cannot be matched to the data's cells; \
             use a .safetensors with row_ids metadata or a CSV/Parquet whose first column holds the cell ids",
        )
    })?;
    let mut index = std::collections::HashMap::with_capacity(data_ids.len());
    for (i, id) in data_ids.iter().enumerate() {
        index.entry(id.as_str()).or_insert(i);
    }
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    let mut rows = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            return Err(Error::input(
                features_path,
                format!("cell id '{id}' appears more than once"),
            ));
        }
        match index.get(id.as_str()) {
            Some(&r) => rows.push(r),
            None => missing.push(id.as_str()),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(3).copied().collect();
        return Err(Error::input(
            features_path,
            format!(
                "{} of {} cell ids are not in {} (first: {}); features and data must describe the same cells",
                missing.len(),
                ids.len(),
                data_path.display(),
                shown.join(", ")
            ),
        ));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varying_genes_handles_implicit_zeros() {
        // gene 0: 1,1,1 (constant); gene 1: 0,2,0 (varies); gene 2: all zero; gene 3: 5,5,0
        let m = CsrMatrix::from_dense(3, 4, &[1., 0., 0., 5., 1., 2., 0., 5., 1., 0., 0., 0.]);
        assert_eq!(varying_genes(&m), vec![false, true, false, true]);
    }

    #[test]
    fn cells_are_matched_by_id() {
        let data: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let f: Vec<String> = ["c", "a"].map(String::from).to_vec();
        let p = std::path::Path::new("f.safetensors");
        let d = std::path::Path::new("d.h5ad");
        assert_eq!(match_cells(Some(&f), p, &data, d).unwrap(), vec![2, 0]);
        let bad: Vec<String> = ["c", "zz"].map(String::from).to_vec();
        let e = match_cells(Some(&bad), p, &data, d)
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 of 2") && e.contains("zz"), "{e}");
        assert!(match_cells(None, p, &data, d)
            .unwrap_err()
            .to_string()
            .contains("no cell ids"));
    }

    #[test]
    fn planted_feature_analysis() {
        // 10 cells, types A (5) and B (5); f0 high in A, f1 dead, f2 high in B
        let mut data = Vec::new();
        let labels: Vec<String> = (0..10)
            .map(|i| if i < 5 { "A" } else { "B" }.to_string())
            .collect();
        for i in 0..10 {
            let a = if i < 5 { 1.0 + i as f32 } else { 0.0 };
            let b = if i >= 5 { 1.0 } else { 0.0 };
            data.extend([a, 0.0, b]);
        }
        let x = DenseMatrix::new(10, 3, data).unwrap();
        let cfg = AnalysisConfig::default();
        let ctx = AnalysisContext::new(&labels, None, None, &cfg).unwrap();
        let fa = analyze_features(&ctx, "SAE", &x, Direction::Greater, &cfg).unwrap();
        assert_eq!(fa.alive, vec![true, false, true]);
        assert_eq!(fa.headline.n_alive, 2);
        assert_eq!(fa.headline.mean_best_auroc, 1.0);
        assert_eq!(fa.headline.n_types_above, 2);
        assert!((fa.headline.mean_l0 - 1.0).abs() < 1e-12);
        // a gene name with the list separator of the result tables is refused before any output
        let expr = CsrMatrix::from_dense(10, 2, &[1.0; 20]);
        let genes = vec!["CD79A".to_string(), "HLA;DR".to_string()];
        let e = AnalysisContext::new(
            &labels,
            Some((ExpressionRows::from_matrix(expr), genes)),
            None,
            &cfg,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("'HLA;DR'") && e.contains("separator"), "{e}");
    }
}
