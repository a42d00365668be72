//! The expression matrix of an `.h5ad` file read a window of cells at a time, for the analyses of
//! atlases whose matrix does not fit in memory.
//!
//! A CSR matrix keeps its `indptr` (8 bytes per cell) in memory and reads `data` and `indices`
//! for the window's stored values only; a dense matrix reads the window's rows. A CSC matrix cannot
//! be read by rows ([`H5adRows::open`] returns `None`; the caller reads it whole). The file is
//! opened for streaming reads, so neither the file nor the matrix is ever held whole.

use std::path::{Path, PathBuf};

use hdf5_pure::{Dataset as H5Dataset, File};

use crate::data::CsrMatrix;
use crate::error::{Error, Result};

/// How the matrix is stored.
enum Layout {
    /// `data`, `indices` and the whole `indptr`.
    Csr {
        data: H5Dataset,
        indices: H5Dataset,
        indptr: Vec<u64>,
    },
    /// A 2-D dataset.
    Dense(H5Dataset),
}

/// A cells x genes matrix of an `.h5ad` file, read by windows of rows ([`H5adRows::read`]).
pub struct H5adRows {
    path: PathBuf,
    matrix: String,
    n_rows: usize,
    n_cols: usize,
    layout: Layout,
}

impl std::fmt::Debug for H5adRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "H5adRows({} {}, {} x {})",
            self.path.display(),
            self.matrix,
            self.n_rows,
            self.n_cols
        )
    }
}

impl H5adRows {
    /// The matrix at `matrix` (`X`, `raw/X`, ...) of `file` (opened from `path`), whose shape the
    /// caller has checked against obs and var: `Ok(None)` for a CSC matrix.
    pub(crate) fn open(
        file: &File,
        path: &Path,
        matrix: &str,
        format: Option<&str>,
        (n_rows, n_cols): (usize, usize),
    ) -> std::result::Result<Option<H5adRows>, String> {
        let layout = match format {
            Some("csr") => {
                let g = file
                    .group(matrix)
                    .map_err(|e| format!("cannot read {matrix}: {e}"))?;
                let get = |name: &str| {
                    g.dataset(name)
                        .map_err(|e| format!("cannot read {matrix}/{name}: {e}"))
                };
                let (data, indices) = (get("data")?, get("indices")?);
                let len = |d: &H5Dataset, name: &str| -> std::result::Result<u64, String> {
                    d.shape()
                        .map_err(|e| format!("cannot read {matrix}/{name}: {e}"))
                        .map(|s| s.first().copied().unwrap_or(0))
                };
                let (nnz, n_indices) = (len(&data, "data")?, len(&indices, "indices")?);
                if n_indices != nnz {
                    return Err(format!("{matrix}: {n_indices} indices but {nnz} values"));
                }
                let indptr = get("indptr")?
                    .read_i64()
                    .map_err(|e| format!("cannot read {matrix}/indptr: {e}"))?;
                if indptr.len() != n_rows + 1 {
                    return Err(format!(
                        "{matrix}/indptr has {} entries, expected {} (rows + 1)",
                        indptr.len(),
                        n_rows + 1
                    ));
                }
                if indptr[0] != 0
                    || indptr.windows(2).any(|w| w[1] < w[0])
                    || indptr[n_rows] as u64 != nnz
                {
                    return Err(format!(
                        "{matrix}/indptr must rise from 0 to {nnz} (the stored values)"
                    ));
                }
                Layout::Csr {
                    data,
                    indices,
                    indptr: indptr.into_iter().map(|p| p as u64).collect(),
                }
            }
            Some(_) => return Ok(None),
            None => Layout::Dense(
                file.dataset(matrix)
                    .map_err(|e| format!("cannot read {matrix}: {e}"))?,
            ),
        };
        Ok(Some(H5adRows {
            path: path.to_path_buf(),
            matrix: matrix.to_string(),
            n_rows,
            n_cols,
            layout,
        }))
    }

    /// Number of cells.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Number of genes.
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stored values of the matrix (for a dense matrix: every entry), an upper bound of what a
    /// whole read keeps.
    pub fn stored_values(&self) -> u64 {
        match &self.layout {
            Layout::Csr { indptr, .. } => indptr[self.n_rows],
            Layout::Dense(_) => self.n_rows as u64 * self.n_cols as u64,
        }
    }

    /// Rows `start .. start + n` as CSR (dense rows keep their non-zero values); errors name the
    /// file and the rows.
    pub fn read(&self, start: usize, n: usize) -> Result<CsrMatrix> {
        let end = (start + n).min(self.n_rows);
        let n = end.saturating_sub(start);
        let fail = |e: String| {
            Error::input(
                &self.path,
                format!("{} rows {start}..{end}: {e}", self.matrix),
            )
        };
        let m = match &self.layout {
            Layout::Csr {
                data,
                indices,
                indptr,
            } => {
                let (a, b) = (indptr[start], indptr[end]);
                let values = data
                    .read_f32_rows(a, b - a)
                    .map_err(|e| fail(e.to_string()))?;
                let idx = indices
                    .read_i64_rows(a, b - a)
                    .map_err(|e| fail(e.to_string()))?;
                if idx.iter().any(|&i| i < 0 || i >= self.n_cols as i64) {
                    return Err(fail(format!(
                        "a gene index outside 0..{} (corrupt indices)",
                        self.n_cols
                    )));
                }
                let ptr = indptr[start..=end].iter().map(|&p| (p - a) as usize);
                CsrMatrix::from_parts(
                    n,
                    self.n_cols,
                    ptr.collect(),
                    idx.into_iter().map(|i| i as u32).collect(),
                    values,
                )
                .map_err(fail)?
            }
            Layout::Dense(ds) => {
                let values = ds
                    .read_f32_rows(start as u64, n as u64)
                    .map_err(|e| fail(e.to_string()))?;
                if values.len() != n * self.n_cols {
                    return Err(fail(format!(
                        "{} values for {n} rows of {} columns",
                        values.len(),
                        self.n_cols
                    )));
                }
                CsrMatrix::from_dense(n, self.n_cols, &values)
            }
        };
        m.check_finite().map_err(|e| {
            Error::input(
                &self.path,
                format!("{} (rows from {start}): {e}", self.matrix),
            )
        })?;
        Ok(m)
    }
}
