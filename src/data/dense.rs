//! The dense `rows x cols` float matrix shared by every layer: activations, embeddings, SAE codes,
//! feature tables. Reading and writing it is `io::matrix`'s job.

use std::path::Path;

use crate::error::{Error, Result};

/// A dense row-major `f32` matrix with optional row ids and column names.
#[derive(Debug, Clone, PartialEq)]
pub struct DenseMatrix {
    /// Number of rows (cells or tokens).
    pub n_rows: usize,
    /// Number of columns (dimensions or features).
    pub n_cols: usize,
    /// Row-major values, `n_rows * n_cols` long.
    pub data: Vec<f32>,
    /// Row identifiers (e.g. cell ids), when the source has them.
    pub row_ids: Option<Vec<String>>,
    /// Column names, when the source has them.
    pub col_names: Option<Vec<String>>,
}

impl DenseMatrix {
    /// Build a matrix from row-major data; errors when the length disagrees with the shape.
    pub fn new(n_rows: usize, n_cols: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != n_rows * n_cols {
            return Err(Error::invalid(format!(
                "matrix data has {} values, expected {n_rows} x {n_cols}",
                data.len()
            )));
        }
        Ok(DenseMatrix {
            n_rows,
            n_cols,
            data,
            row_ids: None,
            col_names: None,
        })
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.n_cols..(i + 1) * self.n_cols]
    }

    /// Column `j` copied out.
    pub fn column(&self, j: usize) -> Vec<f32> {
        (0..self.n_rows)
            .map(|i| self.data[i * self.n_cols + j])
            .collect()
    }

    /// Error naming `path` and the first non-finite value, if any.
    pub fn check_finite(&self, path: &Path) -> Result<()> {
        if let Some(pos) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::input(
                path,
                format!(
                    "non-finite value {} at row {}, column {}",
                    self.data[pos],
                    pos / self.n_cols.max(1),
                    pos % self.n_cols.max(1)
                ),
            ));
        }
        Ok(())
    }

    /// Keep the rows at `indices`, in that order.
    pub fn select_rows(&self, indices: &[usize]) -> DenseMatrix {
        let mut data = Vec::with_capacity(indices.len() * self.n_cols);
        for &i in indices {
            data.extend_from_slice(self.row(i));
        }
        DenseMatrix {
            n_rows: indices.len(),
            n_cols: self.n_cols,
            data,
            row_ids: self
                .row_ids
                .as_ref()
                .map(|ids| indices.iter().map(|&i| ids[i].clone()).collect()),
            col_names: self.col_names.clone(),
        }
    }
}
