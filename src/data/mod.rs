//! Single-cell data in: a sparse cells x genes matrix with gene symbols, cell ids and `obs` columns.
//!
//! [`load`] reads `.h5ad` files (AnnData >= 0.8 and the old < 0.7 layout) and 10x Matrix Market folders
//! (labels joined from a CSV on cell id).

pub(crate) mod dense;
pub mod h5ad;
pub mod h5ad_rows;
pub mod h5ad_write;
pub mod obs;
pub(crate) mod sparse;
pub(crate) mod summary;
pub mod tenx;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
pub use dense::DenseMatrix;
pub use h5ad_rows::H5adRows;
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
    /// Make duplicate gene symbols and cell ids unique the way AnnData's `var_names_make_unique`
    /// does (`X`, `X-1`, `X-2`, ...) instead of refusing the file.
    #[serde(default)]
    pub make_unique: bool,
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
    /// The label table joined onto `obs` (`--labels`), named in errors about label columns.
    pub labels_file: Option<PathBuf>,
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
        let col = self.obs.get(key).ok_or_else(|| match &self.labels_file {
            Some(table) => Error::input(
                table,
                format!(
                    "no column '{key}' in the label table or in the obs of {} (available: {})",
                    self.source.display(),
                    self.obs.names().join(", ")
                ),
            ),
            None => Error::input(
                &self.source,
                format!(
                    "no obs column '{key}' (available: {})",
                    self.obs.names().join(", ")
                ),
            ),
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
            labels_file: self.labels_file.clone(),
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

impl Dataset {
    /// Error naming the file at the first negative value, for the consumers that need counts or
    /// log-normalised expression (scGPT's tokeniser, the analysis's gene attribution). A scaled
    /// matrix (e.g. scanpy's `pbmc68k_reduced` X) is still readable for its labels and metadata;
    /// `--layer raw` reads the counts of a processed file.
    pub fn check_expression(&self) -> Result<()> {
        check_non_negative(&self.matrix, 0, self, &self.source)
    }
}

/// [`Dataset::check_expression`] of the rows `first ..` of `ds`'s matrix held in `m` (a window read
/// by [`H5adRows`]).
pub fn check_non_negative(m: &CsrMatrix, first: usize, ds: &Dataset, path: &Path) -> Result<()> {
    if let Some(k) = m.data.iter().position(|&v| v < 0.0) {
        let row = first + m.indptr.partition_point(|&p| p <= k) - 1;
        let gene = m.indices[k] as usize;
        return Err(Error::input(
            path,
            format!(
                "negative expression value {} (cell '{}', gene '{}'): expected counts or log-normalised values (for a scaled .h5ad, read the counts with --layer raw)",
                m.data[k],
                ds.cell_ids.get(row).map(String::as_str).unwrap_or("?"),
                ds.gene_symbols.get(gene).map(String::as_str).unwrap_or("?"),
            ),
        ));
    }
    Ok(())
}

/// The first name that appears twice, with both positions.
pub(crate) fn first_duplicate(names: &[String]) -> Option<(&str, usize, usize)> {
    let mut seen = std::collections::HashMap::with_capacity(names.len());
    for (j, n) in names.iter().enumerate() {
        if let Some(i) = seen.insert(n.as_str(), j) {
            return Some((n.as_str(), i, j));
        }
    }
    None
}

/// AnnData's `make_index_unique(join="-")`: the first occurrence keeps its name, later ones get
/// `-1`, `-2`, ... (skipping suffixes that are already names).
pub fn make_unique(names: &mut [String]) {
    use std::collections::{HashMap, HashSet};
    let mut taken: HashSet<String> = names.iter().cloned().collect();
    let mut count: HashMap<String, usize> = HashMap::new();
    let mut first: HashSet<String> = HashSet::with_capacity(names.len());
    for n in names.iter_mut() {
        if first.insert(n.clone()) {
            continue;
        }
        let c = count.entry(n.clone()).or_insert(0);
        let new = loop {
            *c += 1;
            let cand = format!("{n}-{c}");
            if !taken.contains(&cand) {
                break cand;
            }
        };
        taken.insert(new.clone());
        *n = new;
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
    let ds = if path.is_dir() || tenx::is_mtx_file(path) {
        tenx::read_10x(path, opts)?
    } else {
        h5ad::read_h5ad(path, opts)?
    };
    ds.matrix
        .check_finite()
        .map_err(|e| Error::input(path, e.to_string()))?;
    finish_load(ds, path, opts)
}

/// [`load`] without the matrix when it can be read a window of cells at a time (an `.h5ad` file
/// with a CSR or dense matrix): the data set's matrix then has the shape but no stored values, and
/// the reader returned beside it reads the values (checked there: finite). Other inputs are read
/// whole, as by [`load`], with no reader.
pub fn load_by_rows(path: &Path, opts: &LoadOptions) -> Result<(Dataset, Option<H5adRows>)> {
    if !path.exists() {
        return Err(Error::input(path, "no such file or folder"));
    }
    if path.is_dir() || tenx::is_mtx_file(path) {
        return Ok((load(path, opts)?, None));
    }
    let (ds, rows) = h5ad::read_h5ad_by_rows(path, opts)?;
    if rows.is_none() {
        ds.matrix
            .check_finite()
            .map_err(|e| Error::input(path, e.to_string()))?;
    }
    Ok((finish_load(ds, path, opts)?, rows))
}

/// [`load`] for the cells' ids and annotations only: the matrix's values are not read when the file
/// allows it ([`load_by_rows`]; the matrix then has its shape and no stored values).
pub fn load_obs(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    load_by_rows(path, opts).map(|(ds, _)| ds)
}

/// The checks and renaming shared by [`load`] and [`load_by_rows`] (shape, unique names, labels).
fn finish_load(mut ds: Dataset, path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    if ds.matrix.n_rows == 0 {
        return Err(Error::input(path, "the data set has no cells"));
    }
    if ds.matrix.n_cols == 0 {
        return Err(Error::input(path, "the data set has no genes"));
    }
    for (names, what) in [
        (&mut ds.gene_symbols, "gene symbol"),
        (&mut ds.cell_ids, "cell id"),
    ] {
        if opts.make_unique {
            make_unique(names);
        } else if let Some((name, i, j)) = first_duplicate(names) {
            return Err(Error::input(
                path,
                format!(
                    "{what} '{name}' appears twice (positions {i} and {j}); pass --make-unique to rename duplicates as AnnData's var_names_make_unique does"
                ),
            ));
        }
    }
    if let Some(labels) = &opts.labels {
        obs::join_labels(&mut ds, labels)?;
        ds.labels_file = Some(labels.clone());
    }
    Ok(ds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_unique_matches_anndata() {
        // anndata.utils.make_index_unique(pd.Index(["a", "a", "b", "a", "a-1"]))
        // -> ["a", "a-2", "b", "a-3", "a-1"] (existing "a-1" is skipped)
        let mut v: Vec<String> = ["a", "a", "b", "a", "a-1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        make_unique(&mut v);
        assert_eq!(v, ["a", "a-2", "b", "a-3", "a-1"]);
        assert_eq!(first_duplicate(&v), None);
        let w: Vec<String> = ["x", "y", "x"].iter().map(|s| s.to_string()).collect();
        assert_eq!(first_duplicate(&w), Some(("x", 0, 2)));
    }
}
