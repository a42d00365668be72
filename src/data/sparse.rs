//! Compressed sparse row matrix of `f32` values: cells x genes.

use crate::error::{Error, Result};

/// A CSR matrix: row `i` holds `indices[indptr[i]..indptr[i+1]]` (column ids, ascending) with the
/// matching `data`. Explicitly stored zeros are kept (they count as stored non-zeros, as in scipy).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsrMatrix {
    /// Number of rows (cells).
    pub n_rows: usize,
    /// Number of columns (genes).
    pub n_cols: usize,
    /// Row pointers, `n_rows + 1` long.
    pub indptr: Vec<usize>,
    /// Column index of each stored value.
    pub indices: Vec<u32>,
    /// Stored values.
    pub data: Vec<f32>,
}

impl CsrMatrix {
    /// Build from CSR parts, validating every invariant (pointer monotonicity, bounds, lengths).
    /// Column indices within a row are sorted if needed.
    pub fn from_parts(
        n_rows: usize,
        n_cols: usize,
        indptr: Vec<usize>,
        mut indices: Vec<u32>,
        mut data: Vec<f32>,
    ) -> std::result::Result<Self, String> {
        if indptr.len() != n_rows + 1 {
            return Err(format!(
                "indptr has {} entries, expected {} (rows + 1)",
                indptr.len(),
                n_rows + 1
            ));
        }
        if indices.len() != data.len() {
            return Err(format!(
                "{} indices but {} values",
                indices.len(),
                data.len()
            ));
        }
        if indptr[0] != 0 || *indptr.last().unwrap_or(&0) != data.len() {
            return Err(format!(
                "indptr must run from 0 to {} (found {} .. {})",
                data.len(),
                indptr[0],
                indptr.last().unwrap_or(&0)
            ));
        }
        for r in 0..n_rows {
            let (a, b) = (indptr[r], indptr[r + 1]);
            if b < a {
                return Err(format!("indptr decreases at row {r}"));
            }
            if b > data.len() {
                return Err(format!(
                    "indptr points past the stored values at row {r} ({b} > {})",
                    data.len()
                ));
            }
            let row = &indices[a..b];
            if let Some(&bad) = row.iter().find(|&&c| c as usize >= n_cols) {
                return Err(format!(
                    "column index {bad} out of range at row {r} ({n_cols} columns)"
                ));
            }
            if row.windows(2).any(|w| w[0] >= w[1]) {
                let mut pairs: Vec<(u32, f32)> = indices[a..b]
                    .iter()
                    .copied()
                    .zip(data[a..b].iter().copied())
                    .collect();
                pairs.sort_by_key(|p| p.0);
                if pairs.windows(2).any(|w| w[0].0 == w[1].0) {
                    return Err(format!("duplicate column index at row {r}"));
                }
                for (k, (c, v)) in pairs.into_iter().enumerate() {
                    indices[a + k] = c;
                    data[a + k] = v;
                }
            }
        }
        Ok(CsrMatrix {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    /// An `n_rows x n_cols` matrix with no stored values.
    pub fn zeros(n_rows: usize, n_cols: usize) -> Self {
        CsrMatrix {
            n_rows,
            n_cols,
            indptr: vec![0; n_rows + 1],
            indices: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Rows `start .. end` as a matrix of their own.
    pub fn slice_rows(&self, start: usize, end: usize) -> CsrMatrix {
        let (a, b) = (self.indptr[start], self.indptr[end]);
        CsrMatrix {
            n_rows: end - start,
            n_cols: self.n_cols,
            indptr: self.indptr[start..=end].iter().map(|&p| p - a).collect(),
            indices: self.indices[a..b].to_vec(),
            data: self.data[a..b].to_vec(),
        }
    }

    /// Build from a dense row-major array, storing only non-zero values.
    pub fn from_dense(n_rows: usize, n_cols: usize, dense: &[f32]) -> Self {
        let mut indptr = Vec::with_capacity(n_rows + 1);
        let mut indices = Vec::new();
        let mut data = Vec::new();
        indptr.push(0);
        for r in 0..n_rows {
            for (c, &v) in dense[r * n_cols..(r + 1) * n_cols].iter().enumerate() {
                if v != 0.0 {
                    indices.push(c as u32);
                    data.push(v);
                }
            }
            indptr.push(data.len());
        }
        CsrMatrix {
            n_rows,
            n_cols,
            indptr,
            indices,
            data,
        }
    }

    /// Convert CSC parts (a `n_rows x n_cols` matrix stored by column) to CSR.
    pub fn from_csc(
        n_rows: usize,
        n_cols: usize,
        colptr: &[usize],
        row_indices: &[u32],
        values: &[f32],
    ) -> std::result::Result<Self, String> {
        if colptr.len() != n_cols + 1 {
            return Err(format!(
                "indptr has {} entries, expected {} (columns + 1) for CSC",
                colptr.len(),
                n_cols + 1
            ));
        }
        if row_indices.len() != values.len() || *colptr.last().unwrap_or(&0) != values.len() {
            return Err("CSC indices, values and indptr disagree in length".into());
        }
        let mut counts = vec![0usize; n_rows + 1];
        for &r in row_indices {
            if r as usize >= n_rows {
                return Err(format!("row index {r} out of range ({n_rows} rows)"));
            }
            counts[r as usize + 1] += 1;
        }
        for i in 0..n_rows {
            counts[i + 1] += counts[i];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; values.len()];
        let mut data = vec![0f32; values.len()];
        for c in 0..n_cols {
            let (a, b) = (colptr[c], colptr[c + 1]);
            if b < a || b > values.len() {
                return Err(format!("indptr decreases or overruns at column {c}"));
            }
            for k in a..b {
                let r = row_indices[k] as usize;
                indices[next[r]] = c as u32;
                data[next[r]] = values[k];
                next[r] += 1;
            }
        }
        CsrMatrix::from_parts(n_rows, n_cols, indptr, indices, data)
    }

    /// Number of stored values.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// Column indices and values of row `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[i], self.indptr[i + 1]);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Value at `(r, c)` (0 when not stored).
    pub fn get(&self, r: usize, c: usize) -> f32 {
        let (idx, val) = self.row(r);
        match idx.binary_search(&(c as u32)) {
            Ok(k) => val[k],
            Err(_) => 0.0,
        }
    }

    /// Dense row-major copy (for small matrices and tests).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n_rows * self.n_cols];
        for r in 0..self.n_rows {
            let (idx, val) = self.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                out[r * self.n_cols + c as usize] = v;
            }
        }
        out
    }

    /// Keep the rows at `rows`, in that order.
    pub fn select_rows(&self, rows: &[usize]) -> CsrMatrix {
        let mut indptr = Vec::with_capacity(rows.len() + 1);
        let mut indices = Vec::new();
        let mut data = Vec::new();
        indptr.push(0);
        for &r in rows {
            let (idx, val) = self.row(r);
            indices.extend_from_slice(idx);
            data.extend_from_slice(val);
            indptr.push(data.len());
        }
        CsrMatrix {
            n_rows: rows.len(),
            n_cols: self.n_cols,
            indptr,
            indices,
            data,
        }
    }

    /// Keep the columns at `cols` (in that order, renumbered 0..).
    pub fn select_cols(&self, cols: &[usize]) -> CsrMatrix {
        let mut map = vec![u32::MAX; self.n_cols];
        for (new, &old) in cols.iter().enumerate() {
            map[old] = new as u32;
        }
        let mut indptr = Vec::with_capacity(self.n_rows + 1);
        let mut pairs: Vec<(u32, f32)> = Vec::new();
        let mut indices = Vec::new();
        let mut data = Vec::new();
        indptr.push(0);
        for r in 0..self.n_rows {
            pairs.clear();
            let (idx, val) = self.row(r);
            for (&c, &v) in idx.iter().zip(val) {
                let m = map[c as usize];
                if m != u32::MAX {
                    pairs.push((m, v));
                }
            }
            pairs.sort_by_key(|p| p.0);
            for &(c, v) in &pairs {
                indices.push(c);
                data.push(v);
            }
            indptr.push(data.len());
        }
        CsrMatrix {
            n_rows: self.n_rows,
            n_cols: cols.len(),
            indptr,
            indices,
            data,
        }
    }

    /// Error if any stored value is NaN or infinite.
    pub fn check_finite(&self) -> Result<(), Error> {
        if let Some(k) = self.data.iter().position(|v| !v.is_finite()) {
            let row = self.indptr.partition_point(|&p| p <= k) - 1;
            return Err(Error::invalid(format!(
                "non-finite value {} in cell {row}, gene {}",
                self.data[k], self.indices[k]
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csc_to_csr_matches_dense() {
        // [[1,0,2],[0,3,0]] stored by column
        let m = CsrMatrix::from_csc(2, 3, &[0, 1, 2, 3], &[0, 1, 0], &[1., 3., 2.]).unwrap();
        assert_eq!(m.to_dense(), vec![1., 0., 2., 0., 3., 0.]);
        assert_eq!(m, CsrMatrix::from_dense(2, 3, &[1., 0., 2., 0., 3., 0.]));
        assert_eq!(m.select_cols(&[2, 0]).to_dense(), vec![2., 1., 0., 0.]);
        assert_eq!(m.select_rows(&[1]).to_dense(), vec![0., 3., 0.]);
    }

    #[test]
    fn invalid_parts_are_rejected() {
        assert!(CsrMatrix::from_parts(1, 2, vec![0, 1], vec![5], vec![1.]).is_err());
        assert!(CsrMatrix::from_parts(2, 2, vec![0, 1], vec![0], vec![1.]).is_err());
        assert!(CsrMatrix::from_parts(1, 2, vec![0, 2], vec![1, 1], vec![1., 2.]).is_err());
        let m = CsrMatrix::from_parts(1, 3, vec![0, 2], vec![2, 0], vec![1., 2.]).unwrap();
        assert_eq!(m.to_dense(), vec![2., 0., 1.]);
        // indptr pointing past the values in a middle row (it used to panic when slicing)
        let e = CsrMatrix::from_parts(2, 2, vec![0, 5, 1], vec![0], vec![1.]).unwrap_err();
        assert!(e.contains("past the stored values at row 0"), "{e}");
    }
}
