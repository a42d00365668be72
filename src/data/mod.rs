//! Single-cell data in: a sparse cells x genes matrix with gene symbols, cell ids and `obs` columns.
//!
//! [`load`] reads `.h5ad` files (AnnData >= 0.8 and the old < 0.7 layout) and 10x Matrix Market folders
//! (labels joined from a CSV on cell id).

pub mod h5ad;
pub mod obs;
pub mod sparse;
pub mod summary;
pub mod tenx;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use obs::{Obs, ObsColumn, ObsValues};
pub use sparse::CsrMatrix;
pub use summary::Summary;

/// Which matrix of an AnnData file to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MatrixLayer {
    /// The main matrix `X`.
    #[default]
    X,
    /// The raw matrix (`raw/X`, or `raw.X` in old files), with its own gene list.
    Raw,
}

impl std::str::FromStr for MatrixLayer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "X" | "x" => Ok(MatrixLayer::X),
            "raw" | "raw/X" | "raw.X" => Ok(MatrixLayer::Raw),
            other => Err(Error::invalid(format!(
                "--layer {other}: expected X or raw"
            ))),
        }
    }
}

/// How to read a data file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadOptions {
    /// Matrix to read (`X` or `raw`).
    pub layer: MatrixLayer,
    /// `var` column holding gene symbols; `None` = the var index.
    pub gene_key: Option<String>,
    /// CSV/TSV with cell labels, joined on cell id (needed for 10x folders; optional for h5ad).
    pub labels: Option<PathBuf>,
}

/// A loaded single-cell data set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Cells x genes values as stored in the file.
    pub matrix: CsrMatrix,
    /// One id per cell (obs index or barcode).
    pub cell_ids: Vec<String>,
    /// One symbol per gene (var index or the `gene_key` column).
    pub gene_symbols: Vec<String>,
    /// Per-cell annotation columns.
    pub obs: Obs,
    /// The file or folder it came from.
    pub source: PathBuf,
}

impl Dataset {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.matrix.n_rows
    }

    /// Number of genes.
    pub fn n_genes(&self) -> usize {
        self.matrix.n_cols
    }

    /// The labels of every cell from obs column `key`, as strings.
    ///
    /// Errors name the file and list the available columns when `key` is missing, and name the first
    /// cell without a label when some are missing.
    pub fn labels(&self, key: &str) -> Result<Vec<String>> {
        let col = self.obs.get(key).ok_or_else(|| {
            Error::input(
                &self.source,
                format!(
                    "no obs column '{key}' (available: {})",
                    self.obs.names().join(", ")
                ),
            )
        })?;
        let vals = col.values.as_strings();
        if let Some(i) = vals.iter().position(|v| v.is_none()) {
            return Err(Error::input(
                &self.source,
                format!(
                    "cell '{}' has no value in obs column '{key}'",
                    self.cell_ids[i]
                ),
            ));
        }
        Ok(vals.into_iter().map(|v| v.unwrap_or_default()).collect())
    }

    /// Keep the cells at `rows`, in that order (matrix, ids and obs).
    pub fn select_cells(&self, rows: &[usize]) -> Dataset {
        Dataset {
            matrix: self.matrix.select_rows(rows),
            cell_ids: rows.iter().map(|&r| self.cell_ids[r].clone()).collect(),
            gene_symbols: self.gene_symbols.clone(),
            obs: self.obs.select_rows(rows),
            source: self.source.clone(),
        }
    }

    /// Row index of each cell id (first occurrence).
    pub fn cell_index(&self) -> std::collections::HashMap<&str, usize> {
        let mut m = std::collections::HashMap::with_capacity(self.cell_ids.len());
        for (i, id) in self.cell_ids.iter().enumerate() {
            m.entry(id.as_str()).or_insert(i);
        }
        m
    }
}

/// Load a data set: an `.h5ad` file, or a 10x Matrix Market folder (or its `matrix.mtx[.gz]`).
///
/// With `opts.labels`, the CSV's columns are joined onto `obs` by cell id (first column, or a column
/// named `cell_id`/`barcode`/`obs_names`).
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    if !path.exists() {
        return Err(Error::input(path, "no such file or folder"));
    }
    let mut ds = if path.is_dir() || tenx::is_mtx_file(path) {
        tenx::read_10x(path, opts)?
    } else {
        h5ad::read_h5ad(path, opts)?
    };
    if ds.matrix.n_rows == 0 {
        return Err(Error::input(path, "the data set has no cells"));
    }
    if ds.matrix.n_cols == 0 {
        return Err(Error::input(path, "the data set has no genes"));
    }
    ds.matrix
        .check_finite()
        .map_err(|e| Error::input(path, e.to_string()))?;
    if let Some(labels) = &opts.labels {
        obs::join_labels(&mut ds, labels)?;
    }
    Ok(ds)
}
