//! The products of an SAE training step that involve the codes, done as sparse products when the
//! codes are mostly zeros (TopK, BatchTopK, and a trained L1 SAE: L0 of a few percent of `d_sae`).
//!
//! With `nnz` non-zero codes in a batch of `n` rows, the dense step spends `n x d_in x d_sae`
//! multiply-adds on each of the decoder, `dW_dec`, `g_pre` and `dW_enc`; the sparse step spends
//! `nnz x d_in` on each, and only the encoder product stays dense. The results are the dense step's
//! to rounding (another summation order), and do not depend on the thread count: every output element
//! is accumulated by one thread, in row (or latent) order.

use rayon::prelude::*;

use crate::sae::kernel::ParamsView;

/// Largest share of non-zero codes for which the training step takes the sparse products.
pub const SPARSE_MAX_DENSITY: f64 = 0.05;

/// A `rows x cols` matrix stored row by row, non-zeros only, column indices increasing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SparseRows {
    /// Row pointers, `rows + 1` long.
    pub indptr: Vec<usize>,
    /// Column of each stored value.
    pub idx: Vec<u32>,
    /// The stored values.
    pub val: Vec<f32>,
}

impl SparseRows {
    /// The non-zero entries of the row-major `rows x cols` matrix `z`.
    pub fn from_dense(z: &[f32], cols: usize) -> SparseRows {
        let mut s = SparseRows {
            indptr: vec![0],
            ..SparseRows::default()
        };
        for row in z.chunks_exact(cols.max(1)) {
            for (j, &v) in row.iter().enumerate() {
                if v != 0.0 {
                    s.idx.push(j as u32);
                    s.val.push(v);
                }
            }
            s.indptr.push(s.idx.len());
        }
        s
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Row `r` as `(columns, values)`.
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.idx[a..b], &self.val[a..b])
    }

    /// The transpose (`cols x rows`), rows of the result in increasing order of this one's rows.
    pub fn transpose(&self, cols: usize) -> SparseRows {
        let mut count = vec![0usize; cols + 1];
        for &j in &self.idx {
            count[j as usize + 1] += 1;
        }
        for j in 0..cols {
            count[j + 1] += count[j];
        }
        let mut next = count.clone();
        let mut idx = vec![0u32; self.idx.len()];
        let mut val = vec![0f32; self.val.len()];
        for r in 0..self.rows() {
            let (cs, vs) = self.row(r);
            for (&j, &v) in cs.iter().zip(vs) {
                let p = &mut next[j as usize];
                idx[*p] = r as u32;
                val[*p] = v;
                *p += 1;
            }
        }
        SparseRows {
            indptr: count,
            idx,
            val,
        }
    }

    /// Column sums (`cols` long), each added in row order.
    pub fn column_sums(&self, cols: usize) -> Vec<f32> {
        let mut s = vec![0f32; cols];
        for (&j, &v) in self.idx.iter().zip(&self.val) {
            s[j as usize] += v;
        }
        s
    }
}

use crate::sae::vector_ops::{dot, par_zeroed, LANES};

crate::multiversion!(
    /// `out += sum_t vals[t] * mat[idx[t]]` (rows of the row-major `mat`, `out.len()` columns).
    fn axpy_rows(out: &mut [f32], idx: &[u32], vals: &[f32], mat: &[f32]) => axpy_rows_body
);

#[inline(always)]
fn axpy_rows_body(out: &mut [f32], idx: &[u32], vals: &[f32], mat: &[f32]) {
    let d = out.len();
    for (&j, &v) in idx.iter().zip(vals) {
        let j = j as usize;
        for (o, w) in out.iter_mut().zip(&mat[j * d..(j + 1) * d]) {
            *o += v * w;
        }
    }
}

crate::multiversion!(
    /// `out[t] = x . mat[idx[t]] + add` (rows of the row-major `mat`, `x.len()` columns).
    fn dots_at(out: &mut [f32], x: &[f32], idx: &[u32], mat: &[f32], add: f32) => dots_at_body
);

/// [`dots_at`]: four dot products at a time sharing the loads of `x`, each [`dot`]'s bit for bit.
#[inline(always)]
fn dots_at_body(out: &mut [f32], x: &[f32], idx: &[u32], mat: &[f32], add: f32) {
    let d = x.len();
    let row = |j: u32| &mat[j as usize * d..(j as usize + 1) * d];
    let mut q = 0;
    while q + 4 <= idx.len() {
        let v = dot4(
            x,
            [
                row(idx[q]),
                row(idx[q + 1]),
                row(idx[q + 2]),
                row(idx[q + 3]),
            ],
        );
        for (o, v) in out[q..q + 4].iter_mut().zip(v) {
            *o = v + add;
        }
        q += 4;
    }
    for (o, &j) in out[q..].iter_mut().zip(&idx[q..]) {
        *o = dot(x, row(j)) + add;
    }
}

/// `[x . w[0], .., x . w[3]]`, each exactly as [`dot`] computes it.
#[inline(always)]
fn dot4(x: &[f32], w: [&[f32]; 4]) -> [f32; 4] {
    let d = x.len();
    let [w0, w1, w2, w3] = w;
    let (w0, w1, w2, w3) = (&w0[..d], &w1[..d], &w2[..d], &w3[..d]);
    let (mut a0, mut a1, mut a2, mut a3) =
        ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let full = d - d % LANES;
    let mut o = 0;
    while o < full {
        let xs: &[f32; LANES] = x[o..o + LANES].try_into().expect("lanes");
        let v0: &[f32; LANES] = w0[o..o + LANES].try_into().expect("lanes");
        let v1: &[f32; LANES] = w1[o..o + LANES].try_into().expect("lanes");
        let v2: &[f32; LANES] = w2[o..o + LANES].try_into().expect("lanes");
        let v3: &[f32; LANES] = w3[o..o + LANES].try_into().expect("lanes");
        for l in 0..LANES {
            a0[l] += xs[l] * v0[l];
            a1[l] += xs[l] * v1[l];
            a2[l] += xs[l] * v2[l];
            a3[l] += xs[l] * v3[l];
        }
        o += LANES;
    }
    for l in 0..d - full {
        let xv = x[full + l];
        a0[l] += xv * w0[full + l];
        a1[l] += xv * w1[full + l];
        a2[l] += xv * w2[full + l];
        a3[l] += xv * w3[full + l];
    }
    [a0, a1, a2, a3].map(crate::sae::vector_ops::combine)
}

/// `z W_dec + b_dec` for sparse codes `z`.
pub fn decode(p: &ParamsView<'_>, z: &SparseRows) -> Vec<f32> {
    let d = p.d_in;
    par_zeroed(z.rows() * d, d, |r, o| {
        let (cs, vs) = z.row(r);
        axpy_rows(o, cs, vs, p.w_dec);
        for (o, b) in o.iter_mut().zip(p.b_dec) {
            *o += b;
        }
    })
    .0
}

/// `z^T g` (`[d_sae, d]`) for sparse codes `z` (`[n, d_sae]`) and dense `g` (`[n, d]`).
pub fn codes_t_times(z: &SparseRows, g: &[f32], d: usize, d_sae: usize) -> Vec<f32> {
    let zt = z.transpose(d_sae);
    par_zeroed(d_sae * d, d, |j, o| {
        let (rs, vs) = zt.row(j);
        axpy_rows(o, rs, vs, g);
    })
    .0
}

/// The loss gradient with respect to the pre-activations, at the active codes of `z` only:
/// `g_out[r] . W_dec[j] + l1` at each active `(r, j)`, then each `(r, j, v)` of `extra` (the TopK
/// auxiliary loss, row order) added, as a new entry where `(r, j)` is not active.
pub fn pre_gradient(
    p: &ParamsView<'_>,
    z: &SparseRows,
    g_out: &[f32],
    l1: f32,
    extra: &[(usize, usize, f32)],
) -> SparseRows {
    let d = p.d_in;
    let mut val = vec![0f32; z.val.len()];
    // rows in parallel: split `val` at the row pointers
    let mut parts: Vec<(usize, &mut [f32])> = Vec::with_capacity(z.rows());
    let mut rest = val.as_mut_slice();
    for r in 0..z.rows() {
        let (a, b) = rest.split_at_mut(z.indptr[r + 1] - z.indptr[r]);
        parts.push((r, a));
        rest = b;
    }
    parts.into_par_iter().for_each(|(r, out)| {
        dots_at(out, &g_out[r * d..(r + 1) * d], z.row(r).0, p.w_dec, l1);
    });
    let g = SparseRows {
        indptr: z.indptr.clone(),
        idx: z.idx.clone(),
        val,
    };
    if extra.is_empty() {
        return g;
    }
    let mut out = SparseRows {
        indptr: vec![0],
        ..SparseRows::default()
    };
    let mut e = 0;
    for r in 0..g.rows() {
        let (cs, vs) = g.row(r);
        let mut row: Vec<(u32, f32)> = cs.iter().copied().zip(vs.iter().copied()).collect();
        while e < extra.len() && extra[e].0 == r {
            let (_, j, v) = extra[e];
            match row.binary_search_by_key(&(j as u32), |x| x.0) {
                Ok(k) => row[k].1 += v,
                Err(k) => row.insert(k, (j as u32, v)),
            }
            e += 1;
        }
        for (j, v) in row {
            out.idx.push(j);
            out.val.push(v);
        }
        out.indptr.push(out.idx.len());
    }
    out
}

/// `x^T g` (`[d, d_sae]`) for dense `x` (`[n, d]`) and sparse `g` (`[n, d_sae]`).
///
/// Computed as `(g^T x)^T`: each latent's row of `g^T x` is a sum of rows of `x` (vectorised, in row
/// order, the same products and order as the element-by-element definition), then transposed.
pub fn dense_t_times(x: &[f32], g: &SparseRows, d: usize, d_sae: usize) -> Vec<f32> {
    let gtx = codes_t_times(g, x, d, d_sae); // [d_sae, d]
    transpose_dense(&gtx, d_sae, d)
}

/// The transpose of the row-major `rows x cols` matrix `a`, in parallel blocks of output rows,
/// tile by tile (8 x 8: reads and writes of a tile stay within a few cache lines per set, where
/// long power-of-two strides would thrash one cache set).
pub fn transpose_dense(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 8;
    const BLOCK: usize = 64;
    if rows == 0 || cols == 0 {
        return vec![0f32; rows * cols];
    }
    par_zeroed(rows * cols, BLOCK * rows, |bi, block| {
        let c_base = bi * BLOCK;
        let nc = block.len() / rows;
        for c0 in (0..nc).step_by(T) {
            let tc = T.min(nc - c0);
            for r0 in (0..rows).step_by(T) {
                let tr = T.min(rows - r0);
                for c in c0..c0 + tc {
                    let dst = &mut block[c * rows + r0..c * rows + r0 + tr];
                    for (r, o) in dst.iter_mut().enumerate() {
                        *o = a[(r0 + r) * cols + c_base + c];
                    }
                }
            }
        }
    })
    .0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense_mm(a: &[f32], b: &[f32], n: usize, k: usize, m: usize) -> Vec<f32> {
        let mut c = vec![0f32; n * m];
        for i in 0..n {
            for t in 0..k {
                for j in 0..m {
                    c[i * m + j] += a[i * k + t] * b[t * m + j];
                }
            }
        }
        c
    }

    fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
        let mut t = vec![0f32; a.len()];
        for i in 0..rows {
            for j in 0..cols {
                t[j * rows + i] = a[i * cols + j];
            }
        }
        t
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }

    #[test]
    fn sparse_products_equal_dense_loops() {
        let (n, d, m) = (5, 4, 7);
        let f = |k: usize, s: f32| ((k as f32 * 0.37 + s).sin() * 2.0).round() / 2.0;
        let z: Vec<f32> = (0..n * m)
            .map(|k| if k % 3 == 0 { f(k, 0.1).abs() } else { 0.0 })
            .collect();
        let w_dec: Vec<f32> = (0..m * d).map(|k| f(k, 1.0)).collect();
        let w_enc: Vec<f32> = (0..d * m).map(|k| f(k, 2.0)).collect();
        let b_dec: Vec<f32> = (0..d).map(|k| f(k, 3.0)).collect();
        let b_enc = vec![0f32; m];
        let g: Vec<f32> = (0..n * d).map(|k| f(k, 4.0)).collect();
        let p = ParamsView {
            d_in: d,
            d_sae: m,
            w_enc: &w_enc,
            w_dec: &w_dec,
            b_enc: &b_enc,
            b_dec: &b_dec,
        };
        let zs = SparseRows::from_dense(&z, m);
        assert_eq!(zs.rows(), n);
        assert_eq!(zs.transpose(m).transpose(n), zs);
        // decoder
        let mut want = dense_mm(&z, &w_dec, n, m, d);
        for row in want.chunks_exact_mut(d) {
            for (v, b) in row.iter_mut().zip(&b_dec) {
                *v += b;
            }
        }
        close(&decode(&p, &zs), &want);
        // z^T g
        close(
            &codes_t_times(&zs, &g, d, m),
            &dense_mm(&transpose(&z, n, m), &g, m, n, d),
        );
        // g W_dec^T at the active entries, plus l1, plus an extra entry at an inactive (row 1, 1)
        // and one at an active (row 0, 0) entry
        let full = dense_mm(&g, &transpose(&w_dec, m, d), n, d, m);
        let extra = [(0usize, 0usize, 0.5f32), (1, 1, -2.0)];
        let gp = pre_gradient(&p, &zs, &g, 0.25, &extra);
        let mut want = vec![0f32; n * m];
        for k in 0..n * m {
            if z[k] != 0.0 {
                want[k] = full[k] + 0.25;
            }
        }
        want[0] += 0.5;
        want[m + 1] += -2.0;
        let mut got = vec![0f32; n * m];
        for r in 0..n {
            let (cs, vs) = gp.row(r);
            assert!(cs.windows(2).all(|w| w[0] < w[1]));
            for (&j, &v) in cs.iter().zip(vs) {
                got[r * m + j as usize] = v;
            }
        }
        close(&got, &want);
        // x^T g_pre and the column sums
        let x: Vec<f32> = (0..n * d).map(|k| f(k, 5.0)).collect();
        close(
            &dense_t_times(&x, &gp, d, m),
            &dense_mm(&transpose(&x, n, d), &want, d, n, m),
        );
        let mut sums = vec![0f32; m];
        for r in 0..n {
            for j in 0..m {
                sums[j] += want[r * m + j];
            }
        }
        close(&gp.column_sums(m), &sums);
    }

    #[test]
    fn four_dot_products_at_once_equal_dot_bit_for_bit() {
        for d in [1usize, 15, 16, 17, 64, 100, 512] {
            let v = |s: f32| {
                (0..d)
                    .map(|k| (k as f32 * 0.731 + s).sin() * 3.0)
                    .collect::<Vec<f32>>()
            };
            let (x, w) = (v(0.3), [v(1.0), v(2.0), v(3.0), v(4.0)]);
            let got = dot4(&x, [&w[0], &w[1], &w[2], &w[3]]);
            for q in 0..4 {
                assert_eq!(got[q].to_bits(), dot(&x, &w[q]).to_bits(), "d {d}");
            }
            // and through dots_at, with 6 entries (a group of four and two single ones)
            let mat: Vec<f32> = w.iter().flatten().copied().collect();
            let idx = [3u32, 0, 2, 1, 1, 3];
            let mut out = [0f32; 6];
            dots_at(&mut out, &x, &idx, &mat, 0.5);
            for (o, &j) in out.iter().zip(&idx) {
                assert_eq!(o.to_bits(), (dot(&x, &w[j as usize]) + 0.5).to_bits());
            }
        }
    }

    #[test]
    fn transpose_dense_equals_the_definition() {
        for (rows, cols) in [(1, 1), (13, 70), (64, 8), (9, 130), (0, 5)] {
            let a: Vec<f32> = (0..rows * cols).map(|k| k as f32).collect();
            assert_eq!(transpose_dense(&a, rows, cols), transpose(&a, rows, cols));
        }
    }
}
