//! The analysis layer: turn a cells x features matrix (SAE codes, PCA scores, raw activations) into
//! biology.
//!
//! - [`auroc`]: per (feature, cell type) AUROC, Mann-Whitney with midranks, parallel.
//! - [`sparse_codes`], [`sparse_auroc`]: column-sparse codes filled chunk by chunk, and the exact
//!   AUROC from them in memory `O(nnz)` (atlas size).
//! - [`correlation`]: gene attribution by Pearson correlation with expression; [`attribution_sums`]:
//!   the same from sums over sparse codes, for atlas-size data.
//! - [`gmt`]: gene sets from GMT files, with warnings naming lines.
//! - [`enrichment`]: Fisher/BH enrichment of each feature's correlated genes.
//! - [`concepts`]: `scsae concepts` (held-out scoring of features and the PCA baseline) as one call.
//! - [`heldout`]: concepts chosen on a validation split of cells and scored on a test split.
//! - [`pca`]: the PCA baseline (exact or randomised SVD with faer).
//! - [`pipeline`]: everything for one feature matrix, and the SAE-vs-PCA comparison.
//! - [`report`], [`figures`]: tables, `report.md`, headline JSON and plots.

pub mod attribution_sums;
pub mod auroc;
pub mod concepts;
pub mod correlation;
pub mod dotplot;
pub mod enrichment;
pub mod expression_rows;
pub mod features_table;
pub mod figures;
pub mod gmt;
pub mod heldout;
pub mod pca;
pub mod pipeline;
pub mod report;
pub mod sparse_auroc;
pub mod sparse_codes;
pub mod workflow;

use serde::{Deserialize, Serialize};

pub use crate::stats::{benjamini_hochberg, fisher_greater, FisherResult};
pub use auroc::{auroc_table, AurocTable, Direction, LabelCodes};
pub use correlation::{attribute_genes, AttributionOptions, ExpressionTransform, GeneAttribution};
pub use enrichment::{enrich, Background, Enrichment, EnrichmentTest};
pub use gmt::{read_gene_sets, GeneSet, GeneSetCollection, ResolvedSet};
pub use pca::{fit_pca, fit_pca_axes, CsrColumnBlocks, Pca, PcaAxes, PcaSolver, RowBlocks};
pub use pipeline::{
    analyze_features, analyze_sparse_features, Comparison, FeatureAnalysis, Headline,
};

/// Analysis settings; defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AnalysisConfig {
    /// Cell types need at least this many cells to be tested (paper: 5).
    pub min_cells: usize,
    /// A feature is cell-type-specific when its AUROC exceeds this for some type (paper: 0.8).
    pub auroc_threshold: f64,
    /// A feature is alive when it is non-zero on at least this fraction of the cells (paper: 1%).
    pub alive_fraction: f64,
    /// AUROC direction for the features under study (paper: one-sided, feature higher in the type).
    pub direction: Direction,
    /// Top positive / negative genes reported per feature.
    pub top_genes: usize,
    /// Correlation cut-off for a gene to count as a feature's hit (paper code: r > 0.1).
    pub corr_cutoff: f64,
    /// Features need at least this many hits to be tested for enrichment (paper code: 2).
    pub min_hits: usize,
    /// Gene sets need at least this many measured genes.
    pub min_set_size: usize,
    /// Significance level on BH q-values (paper: 0.05).
    pub fdr: f64,
    /// Fisher-test background.
    pub background: Background,
    /// Principal components of the baseline (paper: 50).
    pub pca_components: usize,
    /// SVD solver of the baseline.
    pub pca_solver: PcaSolver,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            min_cells: 5,
            auroc_threshold: 0.8,
            alive_fraction: 0.01,
            direction: Direction::Greater,
            top_genes: 10,
            corr_cutoff: 0.1,
            min_hits: 2,
            min_set_size: 1,
            fdr: 0.05,
            background: Background::SetGenes,
            pca_components: 50,
            pca_solver: PcaSolver::Auto,
        }
    }
}
