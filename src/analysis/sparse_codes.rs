//! Column-sparse feature matrices (SAE codes): per feature, the cells where it is non-zero and its
//! values there, in cell order.
//!
//! SAE codes are mostly exact zeros (ReLU, TopK), so at atlas size (10^6 cells x 2048 features) the
//! dense matrix (8 GB in `f32`) is replaced by this one, whose memory is `8 bytes x nnz`. It is filled
//! chunk by chunk of rows ([`SparseCodes::push_rows`]), so the dense codes never exist all at once;
//! the result does not depend on the chunk size. A value is stored when `v != 0.0` (`-0.0` counts as
//! zero, `NaN` is stored).

use rayon::prelude::*;

use crate::data::DenseMatrix;
use crate::error::{Error, Result};

/// Rows filled per chunk by [`SparseCodes::from_dense`].
pub const CHUNK_ROWS: usize = 4096;

/// Adjacent features filled by one task of [`SparseCodes::push_rows`].
const COLUMN_BLOCK: usize = 64;

/// The non-zero entries of one feature, in increasing row order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseColumn {
    /// Row (cell) of each stored value, increasing.
    pub rows: Vec<u32>,
    /// The non-zero values.
    pub values: Vec<f32>,
}

impl SparseColumn {
    /// Number of stored (non-zero) values.
    pub fn nnz(&self) -> usize {
        self.rows.len()
    }
}

/// A cells x features matrix stored column by column, non-zeros only.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseCodes {
    /// Number of rows (cells) pushed so far.
    pub n_rows: usize,
    /// One column per feature.
    pub columns: Vec<SparseColumn>,
    /// Row identifiers (cell ids), when known.
    pub row_ids: Option<Vec<String>>,
    /// Feature names, when known.
    pub col_names: Option<Vec<String>>,
}

impl SparseCodes {
    /// An empty matrix (no rows) with `n_cols` features.
    pub fn new(n_cols: usize) -> SparseCodes {
        SparseCodes {
            n_rows: 0,
            columns: vec![SparseColumn::default(); n_cols],
            row_ids: None,
            col_names: None,
        }
    }

    /// Number of features.
    pub fn n_cols(&self) -> usize {
        self.columns.len()
    }

    /// Total number of stored values.
    pub fn nnz(&self) -> usize {
        self.columns.iter().map(SparseColumn::nnz).sum()
    }

    /// Append `n_rows` rows given row-major in `data` (`n_rows x n_cols` values); parallel over
    /// features.
    pub fn push_rows(&mut self, data: &[f32], n_rows: usize) -> Result<()> {
        let nc = self.n_cols();
        if data.len() != n_rows * nc {
            return Err(Error::invalid(format!(
                "sparse codes: {} values for {n_rows} rows of {nc} features",
                data.len()
            )));
        }
        let base = self.n_rows;
        if base + n_rows > u32::MAX as usize {
            return Err(Error::invalid(format!(
                "sparse codes hold at most {} rows",
                u32::MAX
            )));
        }
        // blocks of adjacent features, each scanning its slice of every row (cache-friendly)
        self.columns
            .par_chunks_mut(COLUMN_BLOCK)
            .enumerate()
            .for_each(|(b, cols)| {
                let j0 = b * COLUMN_BLOCK;
                for i in 0..n_rows {
                    let row = &data[i * nc + j0..i * nc + j0 + cols.len()];
                    for (col, &v) in cols.iter_mut().zip(row) {
                        if v != 0.0 {
                            col.rows.push((base + i) as u32);
                            col.values.push(v);
                        }
                    }
                }
            });
        self.n_rows += n_rows;
        Ok(())
    }

    /// The sparse copy of a dense matrix, filled [`CHUNK_ROWS`] rows at a time; keeps its row ids and
    /// column names.
    pub fn from_dense(x: &DenseMatrix) -> Result<SparseCodes> {
        Self::from_dense_chunked(x, CHUNK_ROWS)
    }

    /// As [`SparseCodes::from_dense`], `chunk` rows at a time (the result does not depend on it).
    pub fn from_dense_chunked(x: &DenseMatrix, chunk: usize) -> Result<SparseCodes> {
        let mut s = SparseCodes::new(x.n_cols);
        let step = chunk.max(1) * x.n_cols.max(1);
        for rows in x.data.chunks(step) {
            s.push_rows(rows, rows.len() / x.n_cols.max(1))?;
        }
        // a matrix without columns still has its rows
        s.n_rows = x.n_rows;
        s.row_ids = x.row_ids.clone();
        s.col_names = x.col_names.clone();
        Ok(s)
    }

    /// Column `j` with its zeros, as `n_rows` values.
    pub fn dense_column(&self, j: usize) -> Vec<f32> {
        let mut v = vec![0f32; self.n_rows];
        let c = &self.columns[j];
        for (&r, &x) in c.rows.iter().zip(&c.values) {
            v[r as usize] = x;
        }
        v
    }

    /// The dense `n_rows x cols.len()` matrix of the columns `cols` (row ids kept, names selected).
    pub fn select_dense(&self, cols: &[usize]) -> DenseMatrix {
        let k = cols.len();
        let mut data = vec![0f32; self.n_rows * k];
        for (o, &j) in cols.iter().enumerate() {
            let c = &self.columns[j];
            for (&r, &x) in c.rows.iter().zip(&c.values) {
                data[r as usize * k + o] = x;
            }
        }
        DenseMatrix {
            n_rows: self.n_rows,
            n_cols: k,
            data,
            row_ids: self.row_ids.clone(),
            col_names: self
                .col_names
                .as_ref()
                .map(|c| cols.iter().map(|&j| c[j].clone()).collect()),
        }
    }

    /// Per feature: the number of non-zero cells and the sum of the values (in `f64`, added in cell
    /// order, so equal to the dense column sum in cell order).
    pub fn column_sums(&self) -> (Vec<usize>, Vec<f64>) {
        self.columns
            .iter()
            .map(|c| (c.nnz(), c.values.iter().fold(0f64, |s, &v| s + v as f64)))
            .unzip()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> DenseMatrix {
        DenseMatrix::new(
            4,
            3,
            vec![0., 1.5, -0.0, 2., 0., 0., 0., 0., f32::NAN, -1., 3., 0.],
        )
        .unwrap()
    }

    #[test]
    fn stores_non_zeros_in_row_order() {
        let s = SparseCodes::from_dense(&example()).unwrap();
        assert_eq!((s.n_rows, s.n_cols(), s.nnz()), (4, 3, 5));
        assert_eq!(s.columns[0].rows, vec![1, 3]);
        assert_eq!(s.columns[0].values, vec![2., -1.]);
        assert_eq!(s.columns[1].rows, vec![0, 3]);
        // -0.0 is a zero, NaN is stored
        assert_eq!(s.columns[2].rows, vec![2]);
        assert!(s.columns[2].values[0].is_nan());
        assert_eq!(s.dense_column(1), vec![1.5, 0., 0., 3.]);
        let d = s.select_dense(&[1, 0]);
        assert_eq!(d.data, vec![1.5, 0., 0., 2., 0., 0., 3., -1.]);
        let (nnz, sums) = s.column_sums();
        assert_eq!(nnz, vec![2, 2, 1]);
        assert_eq!(&sums[..2], &[1.0, 4.5]);
    }

    #[test]
    fn chunk_size_does_not_matter() {
        let x = example();
        let all = SparseCodes::from_dense_chunked(&x, 4).unwrap();
        for chunk in [1, 3, 7] {
            assert_eq!(
                format!("{:?}", SparseCodes::from_dense_chunked(&x, chunk).unwrap()),
                format!("{all:?}")
            );
        }
        let mut s = SparseCodes::new(3);
        assert!(s.push_rows(&[1.0; 5], 2).is_err());
    }

    #[test]
    fn columns_across_blocks_match_the_dense_matrix() {
        // 150 features: three blocks of adjacent features, the last one partial
        let (n, f) = (23, 150);
        let data: Vec<f32> = (0..n * f)
            .map(|k| {
                if k % 7 == 0 || k % 11 == 0 {
                    (k % 13) as f32 - 4.0
                } else {
                    0.0
                }
            })
            .collect();
        let x = DenseMatrix::new(n, f, data).unwrap();
        for chunk in [1, 7, n] {
            let s = SparseCodes::from_dense_chunked(&x, chunk).unwrap();
            for j in 0..f {
                let col: Vec<f32> = (0..n).map(|i| x.data[i * f + j]).collect();
                assert_eq!(s.dense_column(j), col, "feature {j}, chunk {chunk}");
                assert!(s.columns[j].rows.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }
}
