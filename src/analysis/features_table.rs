//! Owner of the per-feature table `features.{csv,parquet}` (and `pca_features.*`) that
//! `scsae analyze` writes and `spikgpt annotate --analysis` reads: one [`FeatureRow`] per feature and
//! the column names in [`col`].

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io::table::Table;

/// Column names of the features table, in file order.
pub mod col {
    /// Feature name (`f12`, `PC3`).
    pub const FEATURE: &str = "feature";
    /// Feature index (column of the analysed matrix).
    pub const INDEX: &str = "index";
    /// Non-zero on at least the alive fraction of cells.
    pub const ALIVE: &str = "alive";
    /// Fraction of cells where the feature is non-zero.
    pub const FRAC_ACTIVE: &str = "frac_active";
    /// Mean value over cells.
    pub const MEAN: &str = "mean";
    /// Cell type with the highest AUROC.
    pub const BEST_TYPE: &str = "best_type";
    /// That AUROC.
    pub const BEST_AUROC: &str = "best_auroc";
    /// With `--direction both`: the best AUROC is for lower values in that type.
    pub const BEST_IS_LOWER: &str = "best_is_lower_in_type";
    /// Number of types with AUROC above the threshold.
    pub const N_TYPES_ABOVE: &str = "n_types_above_threshold";
    /// At least one type above the threshold.
    pub const SPECIFIC: &str = "cell_type_specific";
    /// Most positively correlated genes with r.
    pub const TOP_POSITIVE: &str = "top_positive_genes";
    /// Most negatively correlated genes with r.
    pub const TOP_NEGATIVE: &str = "top_negative_genes";
    /// Number of genes past the correlation cutoff.
    pub const N_CORRELATED: &str = "n_correlated_genes";
    /// Some gene set significant.
    pub const ENRICHED: &str = "enriched";
    /// Number of significant gene sets.
    pub const N_SETS: &str = "n_enriched_sets";
    /// Significant sets with q-values.
    pub const SETS: &str = "enriched_sets";
    /// Most significant set.
    pub const BEST_SET: &str = "best_set";
    /// Its Benjamini-Hochberg q-value.
    pub const BEST_SET_Q: &str = "best_set_q";
}

/// One row of the features table (see [`col`] for the meaning of each column).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FeatureRow {
    /// [`col::FEATURE`].
    pub feature: String,
    /// [`col::ALIVE`].
    pub alive: bool,
    /// [`col::FRAC_ACTIVE`].
    pub frac_active: f64,
    /// [`col::MEAN`].
    pub mean: f64,
    /// [`col::BEST_TYPE`].
    pub best_type: Option<String>,
    /// [`col::BEST_AUROC`].
    pub best_auroc: Option<f64>,
    /// [`col::BEST_IS_LOWER`] (written only for signed analyses).
    pub best_is_lower: bool,
    /// [`col::N_TYPES_ABOVE`].
    pub n_types_above: u64,
    /// [`col::SPECIFIC`].
    pub specific: bool,
    /// [`col::TOP_POSITIVE`].
    pub top_positive: Option<String>,
    /// [`col::TOP_NEGATIVE`].
    pub top_negative: Option<String>,
    /// [`col::N_CORRELATED`].
    pub n_correlated: Option<f64>,
    /// [`col::ENRICHED`].
    pub enriched: bool,
    /// [`col::N_SETS`].
    pub n_sets: u64,
    /// [`col::SETS`].
    pub sets: String,
    /// [`col::BEST_SET`].
    pub best_set: Option<String>,
    /// [`col::BEST_SET_Q`].
    pub best_set_q: Option<f64>,
}

/// Write `OUT/<stem>.csv` and `.parquet`, one row per feature in index order; the
/// [`col::BEST_IS_LOWER`] column only when `signed`.
pub fn write(out: &Path, stem: &str, rows: &[FeatureRow], signed: bool) -> Result<()> {
    let get = |f: &dyn Fn(&FeatureRow) -> f64| rows.iter().map(f).collect::<Vec<_>>();
    let mut table = Table::new(rows.len())
        .str(
            col::FEATURE,
            rows.iter().map(|r| r.feature.clone()).collect(),
        )
        .count(col::INDEX, (0..rows.len() as u64).collect())
        .bool(col::ALIVE, rows.iter().map(|r| r.alive).collect())
        .f64(col::FRAC_ACTIVE, get(&|r| r.frac_active))
        .f64(col::MEAN, get(&|r| r.mean))
        .opt_str(
            col::BEST_TYPE,
            rows.iter().map(|r| r.best_type.clone()).collect(),
        )
        .opt_f64(col::BEST_AUROC, rows.iter().map(|r| r.best_auroc).collect());
    if signed {
        table = table.bool(
            col::BEST_IS_LOWER,
            rows.iter().map(|r| r.best_is_lower).collect(),
        );
    }
    table
        .count(
            col::N_TYPES_ABOVE,
            rows.iter().map(|r| r.n_types_above).collect(),
        )
        .bool(col::SPECIFIC, rows.iter().map(|r| r.specific).collect())
        .opt_str(
            col::TOP_POSITIVE,
            rows.iter().map(|r| r.top_positive.clone()).collect(),
        )
        .opt_str(
            col::TOP_NEGATIVE,
            rows.iter().map(|r| r.top_negative.clone()).collect(),
        )
        .opt_f64(
            col::N_CORRELATED,
            rows.iter().map(|r| r.n_correlated).collect(),
        )
        .bool(col::ENRICHED, rows.iter().map(|r| r.enriched).collect())
        .count(col::N_SETS, rows.iter().map(|r| r.n_sets).collect())
        .str(col::SETS, rows.iter().map(|r| r.sets.clone()).collect())
        .opt_str(
            col::BEST_SET,
            rows.iter().map(|r| r.best_set.clone()).collect(),
        )
        .opt_f64(col::BEST_SET_Q, rows.iter().map(|r| r.best_set_q).collect())
        .write(out, stem)
}

/// The features table given as an analysis folder (its `features.parquet`, else `features.csv`)
/// or as the file itself.
pub fn locate(path: &Path) -> PathBuf {
    if path.is_dir() {
        let pq = path.join("features.parquet");
        if pq.exists() {
            pq
        } else {
            path.join("features.csv")
        }
    } else {
        path.to_path_buf()
    }
}
