//! The products of an SAE training step that involve the codes, done as sparse products when
//! enough codes are zeros: TopK and BatchTopK (k of `d_sae`), and the paper's L1 SAE once training
//! has brought its L0 below [`SPARSE_MAX_DENSITY`] of `d_sae` (at lambda 3, M = 2048, L0 falls
//! from about 1,000 in the first epoch to about 600).
//!
//! With `nnz` non-zero codes in a batch of `n` rows, the dense step spends `n x d_in x d_sae`
//! multiply-adds on each of the decoder, `dW_dec`, `g_pre` and `dW_enc`; the sparse step spends
//! `nnz x d_in` on each, and only the encoder product stays dense. A sparse multiply-add costs
//! more than a dense one (each loads its operand: no reuse from registers), so the sparse step pays
//! below about 40 % non-zeros. The results are the dense step's to rounding (another summation
//! order), and do not depend on the thread count: every output element is accumulated by one
//! thread, in row (or latent) order.

use rayon::prelude::*;

use crate::sae::kernel::{add_to_rows, ParamsView};
use crate::sae::vector_ops::par_zeroed;

/// Largest share of non-zero codes for which the training step takes the sparse products: about
/// where they cost the same as the dense ones on the paper's L1 SAE (2 threads, AVX2; paired
/// whole runs of 2 epochs, sparse against dense: 0.87x the time at 30 % non-zeros, 1.12x at 47 %).
pub const SPARSE_MAX_DENSITY: f64 = 0.38;

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

/// Rows per parallel part when sparse rows are built or transposed.
const PART_ROWS: usize = 64;

/// A raw pointer that parallel parts write through, each to slots no other part writes.
struct Slots<T>(*mut T);
// SAFETY: the parts that share a `Slots` write disjoint elements (see its uses).
unsafe impl<T: Send> Sync for Slots<T> {}

impl SparseRows {
    /// The non-zero entries of the row-major `rows x cols` matrix `z` (row blocks in parallel).
    pub fn from_dense(z: &[f32], cols: usize) -> SparseRows {
        let cols = cols.max(1);
        let parts: Vec<(Vec<usize>, Vec<u32>, Vec<f32>)> = z
            .par_chunks(PART_ROWS * cols)
            .map(|block| {
                let mut idx: Vec<u32> = Vec::with_capacity(block.len());
                let mut val: Vec<f32> = Vec::with_capacity(block.len());
                let (slots_i, slots_v) = (idx.spare_capacity_mut(), val.spare_capacity_mut());
                let mut ends = Vec::with_capacity(block.len() / cols);
                // without branches: every entry is written at the next free slot, which only a
                // non-zero one keeps
                let mut k = 0;
                for row in block.chunks_exact(cols) {
                    for (j, &v) in row.iter().enumerate() {
                        slots_i[k].write(j as u32);
                        slots_v[k].write(v);
                        k += (v != 0.0) as usize;
                    }
                    ends.push(k);
                }
                // SAFETY: slots 0..k were written above (k <= block.len(), the capacity).
                unsafe {
                    idx.set_len(k);
                    val.set_len(k);
                }
                (ends, idx, val)
            })
            .collect();
        let mut s = SparseRows {
            indptr: vec![0],
            ..SparseRows::default()
        };
        let mut base = 0;
        for (ends, idx, _) in &parts {
            s.indptr.extend(ends.iter().map(|e| base + e));
            base += idx.len();
        }
        s.idx = vec![0; base];
        s.val = vec![0.0; base];
        let mut rest = (s.idx.as_mut_slice(), s.val.as_mut_slice());
        let mut pieces = Vec::with_capacity(parts.len());
        for (_, idx, val) in &parts {
            let (i, ri) = rest.0.split_at_mut(idx.len());
            let (v, rv) = rest.1.split_at_mut(idx.len());
            pieces.push((i, v, idx, val));
            rest = (ri, rv);
        }
        pieces.into_par_iter().for_each(|(i, v, idx, val)| {
            i.copy_from_slice(idx);
            v.copy_from_slice(val);
        });
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
    ///
    /// Blocks of rows in parallel: each counts its entries per column, and then writes them to the
    /// slots that the counts of the blocks before it leave free in each column.
    pub fn transpose(&self, cols: usize) -> SparseRows {
        let rows = self.rows();
        let parts = rows.div_ceil(PART_ROWS).max(1);
        let span = |p: usize| {
            let (r0, r1) = (p * PART_ROWS, ((p + 1) * PART_ROWS).min(rows));
            (r0..r1, self.indptr[r0.min(rows)]..self.indptr[r1.min(rows)])
        };
        let counts: Vec<Vec<usize>> = (0..parts)
            .into_par_iter()
            .map(|p| {
                let mut c = vec![0usize; cols];
                for &j in &self.idx[span(p).1] {
                    c[j as usize] += 1;
                }
                c
            })
            .collect();
        // slot of each part's first entry in each column
        let mut indptr = Vec::with_capacity(cols + 1);
        let mut starts = vec![0usize; parts * cols];
        let mut at = 0;
        for j in 0..cols {
            indptr.push(at);
            for (p, c) in counts.iter().enumerate() {
                starts[p * cols + j] = at;
                at += c[j];
            }
        }
        indptr.push(at);
        let nnz = self.idx.len();
        let mut idx: Vec<u32> = Vec::with_capacity(nnz);
        let mut val: Vec<f32> = Vec::with_capacity(nnz);
        let (pi, pv) = (Slots(idx.as_mut_ptr()), Slots(val.as_mut_ptr()));
        starts
            .par_chunks_mut(cols.max(1))
            .enumerate()
            .for_each(|(p, next)| {
                let (pi, pv) = (&pi, &pv);
                for r in span(p).0 {
                    let (cs, vs) = self.row(r);
                    for (&j, &v) in cs.iter().zip(vs) {
                        let q = &mut next[j as usize];
                        // SAFETY: slot `q` lies in this part's range of column `j` (its count of
                        // entries from the slot the parts before it end at), below `nnz`; no other
                        // part writes it.
                        unsafe {
                            pi.0.add(*q).write(r as u32);
                            pv.0.add(*q).write(v);
                        }
                        *q += 1;
                    }
                }
            });
        // SAFETY: the parts together wrote every slot 0..nnz (each entry once).
        unsafe {
            idx.set_len(nnz);
            val.set_len(nnz);
        }
        SparseRows { indptr, idx, val }
    }

    /// Row sums (`rows()` long), each added in column order.
    pub fn row_sums(&self) -> Vec<f32> {
        (0..self.rows())
            .into_par_iter()
            .map(|r| self.row(r).1.iter().fold(0.0, |a, v| a + v))
            .collect()
    }
}

/// Columns of a panel: the sparse products read their dense operand one panel at a time, and each
/// output row's panel of sums stays in registers.
const PANEL: usize = 64;
/// Rows of a panel one pass over a task's rows reads (128 x 64 floats: 32 KiB, the L1 data cache).
const BLOCK_ROWS: usize = 128;
/// Output rows per parallel task.
const TASK_ROWS: usize = 128;
/// Latents per parallel task of [`pre_gradient_t`].
const TASK_LATENTS: usize = 64;

/// Smallest share of non-zeros for which the sparse products regroup their dense operand into
/// [`Panels`] copies: below it, few of the operand's rows are read more than once per step, and the
/// copy costs more than the cache conflicts it avoids.
const PACK_MIN_DENSITY: f64 = 0.05;

/// A row-major `rows x cols` matrix read by panels of [`PANEL`] columns: either regrouped, each
/// panel's rows stored one after another (the last panel zero-padded), so that a block of a panel's
/// rows is one run of memory (the same columns of rows at a power-of-two stride would share a few
/// cache sets), or, when that copy does not pay, the matrix itself (`cols` a multiple of
/// [`PANEL`]).
struct Panels<'a> {
    data: std::borrow::Cow<'a, [f32]>,
    rows: usize,
    /// Distance between the starts of two rows of a panel.
    stride: usize,
    /// Distance between the starts of two panels.
    step: usize,
}

impl<'a> Panels<'a> {
    /// `a` by panels, regrouped when `pack` or when `cols` is not a multiple of [`PANEL`].
    fn new(a: &'a [f32], rows: usize, cols: usize, pack: bool) -> Panels<'a> {
        if !pack && cols.is_multiple_of(PANEL) {
            return Panels {
                data: std::borrow::Cow::Borrowed(a),
                rows,
                stride: cols,
                step: PANEL,
            };
        }
        let size = rows * PANEL;
        let data = par_zeroed(cols.div_ceil(PANEL) * size, size.max(1), |p, panel| {
            let c0 = p * PANEL;
            let w = PANEL.min(cols - c0);
            for (dst, src) in panel.chunks_exact_mut(PANEL).zip(a.chunks_exact(cols)) {
                dst[..w].copy_from_slice(&src[c0..c0 + w]);
            }
        })
        .0;
        Panels {
            data: std::borrow::Cow::Owned(data),
            rows,
            stride: PANEL,
            step: size,
        }
    }

    /// Row `j` of panel `p`.
    #[inline(always)]
    fn row(&self, p: usize, j: usize) -> &[f32; PANEL] {
        let at = p * self.step + j * self.stride;
        self.data[at..at + PANEL].try_into().expect("panel row")
    }
}

/// Whether sparse rows with `nnz` non-zeros out of `len` entries read their operand as regrouped
/// [`Panels`].
fn pack_for(nnz: usize, len: usize) -> bool {
    nnz as f64 > PACK_MIN_DENSITY * len as f64
}

/// `s a` for sparse `s` (`[s.rows(), a_rows]`) and dense `a` given as panels (`[a_rows, cols]`),
/// or its transpose when `transposed`: each output row is the sum of the rows of `a` that its
/// non-zeros pick, in increasing column order of `s` (whatever the thread count), with fused
/// multiply-adds.
///
/// Blocked for the cache: tasks of [`TASK_ROWS`] output rows; within a task, one panel of
/// [`PANEL`] columns at a time, and within a panel, [`BLOCK_ROWS`] rows of `a` at a time for every
/// row of the task, the partial sums in a tile of the task's own; each finished tile goes to the
/// output as rows, or transposed.
fn sparse_times(s: &SparseRows, a: &Panels, cols: usize, transposed: bool) -> Vec<f32> {
    let rows = s.rows();
    let len = rows * cols;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let job = TimesJob {
        out: Slots(out.as_mut_ptr()),
        s,
        a,
        cols,
        transposed,
    };
    (0..rows.div_ceil(TASK_ROWS))
        .into_par_iter()
        .for_each(|t| panel_task(t * TASK_ROWS, &job));
    // SAFETY: the tasks together wrote every element of the `rows x cols` output once (each its
    // rows, every column).
    unsafe { out.set_len(len) };
    out
}

/// Where the non-zeros of rows `rows` of `s` in each block of [`BLOCK_ROWS`] columns start: for
/// each row, `blocks + 1` positions in `s.idx` (the last one the row's end).
fn block_starts(s: &SparseRows, rows: std::ops::Range<usize>, blocks: usize) -> Vec<usize> {
    let mut starts = Vec::with_capacity(rows.len() * (blocks + 1));
    for r in rows {
        let (mut t, end) = (s.indptr[r], s.indptr[r + 1]);
        starts.push(t);
        for b in 1..blocks {
            let limit = (b * BLOCK_ROWS) as u32;
            while t < end && s.idx[t] < limit {
                t += 1;
            }
            starts.push(t);
        }
        starts.push(end);
    }
    starts
}

/// What every task of [`sparse_times`] reads and where it writes.
struct TimesJob<'a> {
    /// The output, `s.rows() x cols` (or its transpose).
    out: Slots<f32>,
    /// The sparse left operand.
    s: &'a SparseRows,
    /// The dense right operand by panels.
    a: &'a Panels<'a>,
    /// Columns of `a`.
    cols: usize,
    /// Whether the output is written transposed.
    transposed: bool,
}

crate::multiversion!(
    /// One task of [`sparse_times`]: output rows `r0..r0 + TASK_ROWS` (or fewer at the end).
    fn panel_task(r0: usize, job: &TimesJob<'_>) => panel_task_body
);

#[inline(always)]
fn panel_task_body(r0: usize, job: &TimesJob<'_>) {
    let TimesJob {
        ref out,
        s,
        a,
        cols,
        transposed,
    } = *job;
    let blocks = a.rows.div_ceil(BLOCK_ROWS).max(1);
    let all = s.rows();
    let rows = TASK_ROWS.min(all - r0);
    let starts = block_starts(s, r0..r0 + rows, blocks);
    let mut tile = vec![[0f32; PANEL]; rows];
    for p in 0..cols.div_ceil(PANEL) {
        for b in 0..blocks {
            for (acc, at) in tile.iter_mut().zip(starts.chunks_exact(blocks + 1)) {
                let (first, last) = (at[b], at[b + 1]);
                let mut sum = if b == 0 { [0f32; PANEL] } else { *acc };
                for (&j, &v) in s.idx[first..last].iter().zip(&s.val[first..last]) {
                    let j = j as usize;
                    let row = a.row(p, j);
                    for l in 0..PANEL {
                        sum[l] = v.mul_add(row[l], sum[l]);
                    }
                }
                *acc = sum;
            }
        }
        let c0 = p * PANEL;
        let w = PANEL.min(cols - c0);
        // SAFETY: this task alone writes rows r0..r0 + rows of the output (columns r0.. of each
        // row of the transposed output), and these lie within its `all x cols` elements.
        unsafe {
            if transposed {
                for l in 0..w {
                    let dst = out.0.add((c0 + l) * all + r0);
                    for (i, acc) in tile.iter().enumerate() {
                        dst.add(i).write(acc[l]);
                    }
                }
            } else {
                for (i, acc) in tile.iter().enumerate() {
                    std::ptr::copy_nonoverlapping(acc.as_ptr(), out.0.add((r0 + i) * cols + c0), w);
                }
            }
        }
    }
}

/// Lanes of the partial sums of one dot product in [`pre_gradient_t`] (one AVX2 register).
const DOT_LANES: usize = 8;

/// What every task of [`pre_gradient_t`] reads.
struct DotsJob<'a> {
    /// The transposed codes (`[d_sae, n]`).
    zt: &'a SparseRows,
    /// The decoder weights (`[d_sae, cols]`).
    w_dec: &'a [f32],
    /// `g_out` by panels (`[n, cols]`).
    panels: &'a Panels<'a>,
    /// `d_in`.
    cols: usize,
    /// Added to every value (the L1 term's gradient).
    add: f32,
}

crate::multiversion!(
    /// One task of [`pre_gradient_t`]: the values of latents `j0..` (as many as `out` holds
    /// values of), `W_dec[j] . g[r]` for each entry `(j, r)` of `zt`, plus `add`.
    fn dots_task(out: &mut [f32], j0: usize, job: &DotsJob<'_>) => dots_task_body
);

/// [`dots_task`]: panel by panel of `g` (as [`sparse_times`] reads its operand), a latent's slice
/// of `W_dec` in registers against the panel rows its entries pick; each entry keeps
/// [`DOT_LANES`] partial sums across panels, added pairwise at the end.
#[inline(always)]
fn dots_task_body(out: &mut [f32], j0: usize, job: &DotsJob<'_>) {
    let DotsJob {
        zt,
        w_dec,
        panels,
        cols,
        add,
    } = *job;
    let blocks = panels.rows.div_ceil(BLOCK_ROWS).max(1);
    let base = zt.indptr[j0];
    let j1 = (j0 + TASK_LATENTS).min(zt.rows());
    let starts = block_starts(zt, j0..j1, blocks);
    let mut part = vec![[0f32; DOT_LANES]; out.len()];
    for p in 0..cols.div_ceil(PANEL) {
        let c0 = p * PANEL;
        let w = PANEL.min(cols - c0);
        for b in 0..blocks {
            for (j, at) in (j0..j1).zip(starts.chunks_exact(blocks + 1)) {
                let mut x = [0f32; PANEL];
                x[..w].copy_from_slice(&w_dec[j * cols + c0..j * cols + c0 + w]);
                let (first, last) = (at[b], at[b + 1]);
                for (&r, acc) in zt.idx[first..last]
                    .iter()
                    .zip(&mut part[first - base..last - base])
                {
                    let r = r as usize;
                    let row = panels.row(p, r);
                    // two chains of partial sums, for the latency of the multiply-adds
                    let (mut s0, mut s1) = ([0f32; DOT_LANES], [0f32; DOT_LANES]);
                    for q in (0..PANEL).step_by(2 * DOT_LANES) {
                        for l in 0..DOT_LANES {
                            s0[l] = x[q + l].mul_add(row[q + l], s0[l]);
                            s1[l] = x[q + DOT_LANES + l].mul_add(row[q + DOT_LANES + l], s1[l]);
                        }
                    }
                    for l in 0..DOT_LANES {
                        acc[l] += s0[l] + s1[l];
                    }
                }
            }
        }
    }
    for (o, acc) in out.iter_mut().zip(&part) {
        let [a, b, c, d, e, f, g, h] = *acc;
        *o = (((a + e) + (c + g)) + ((b + f) + (d + h))) + add;
    }
}

/// `z W_dec + b_dec` for sparse codes `z`.
pub fn decode(p: &ParamsView<'_>, z: &SparseRows) -> Vec<f32> {
    let d = p.d_in;
    let pack = pack_for(z.idx.len(), z.rows() * p.d_sae);
    let mut out = sparse_times(z, &Panels::new(p.w_dec, p.d_sae, d, pack), d, false);
    add_to_rows(&mut out, p.b_dec);
    out
}

/// The gradients of a step with sparse codes that involve the codes (see [`backward`]).
pub struct SparseGrads {
    /// `z^T g_out` (`[d_sae, d_in]`).
    pub w_dec: Vec<f32>,
    /// `xc^T g_pre` (`[d_in, d_sae]`).
    pub w_enc: Vec<f32>,
    /// Column sums of `g_pre` (`d_sae`).
    pub b_enc: Vec<f32>,
}

/// The backward pass of a step with sparse codes `z` (`[n, d_sae]`): from the gradient `g_out` of
/// the loss with respect to the reconstruction (`[n, d_in]`) and the centred inputs `xc`, the
/// decoder weight gradient `z^T g_out`, the pre-activation gradient `g_pre` at the active codes
/// ([`pre_gradient_t`], with `l1` and the `extra` entries), and from it the encoder weight and
/// bias gradients. `g_out` is regrouped into panels once, for the first two.
pub fn backward(
    p: &ParamsView<'_>,
    z: &SparseRows,
    g_out: &[f32],
    xc: &[f32],
    l1: f32,
    extra: &[(usize, usize, f32)],
) -> SparseGrads {
    let (d, n) = (p.d_in, z.rows());
    let zt = z.transpose(p.d_sae);
    let pack = pack_for(z.idx.len(), n * p.d_sae);
    let g_panels = Panels::new(g_out, n, d, pack);
    let w_dec = sparse_times(&zt, &g_panels, d, false);
    let gpt = pre_gradient_t(p, zt, &g_panels, l1, extra);
    drop(g_panels);
    let w_enc = sparse_times(&gpt, &Panels::new(xc, n, d, pack), d, true);
    SparseGrads {
        w_dec,
        w_enc,
        b_enc: gpt.row_sums(),
    }
}

/// The loss gradient with respect to the pre-activations at the active codes, transposed: for the
/// transposed codes `zt` (`[d_sae, n]`, whose positions the result takes over), `W_dec[j] . g_out[r] + l1` at each active `(j, r)`, then
/// each `(r, j, v)` of `extra` (the TopK auxiliary loss) added, as a new entry where `(j, r)` is not
/// active.
///
/// `g_out` comes as panels; tasks of [`TASK_LATENTS`] latents run in parallel ([`dots_task`]).
fn pre_gradient_t(
    p: &ParamsView<'_>,
    zt: SparseRows,
    g_out: &Panels,
    l1: f32,
    extra: &[(usize, usize, f32)],
) -> SparseRows {
    let d = p.d_in;
    let mut val = vec![0f32; zt.val.len()];
    // tasks of latents: split `val` at their row pointers
    let mut parts: Vec<(usize, &mut [f32])> = Vec::new();
    let mut rest = val.as_mut_slice();
    for j0 in (0..zt.rows()).step_by(TASK_LATENTS) {
        let j1 = (j0 + TASK_LATENTS).min(zt.rows());
        let (a, b) = rest.split_at_mut(zt.indptr[j1] - zt.indptr[j0]);
        parts.push((j0, a));
        rest = b;
    }
    let job = DotsJob {
        zt: &zt,
        w_dec: p.w_dec,
        panels: g_out,
        cols: d,
        add: l1,
    };
    parts
        .into_par_iter()
        .for_each(|(j0, out)| dots_task(out, j0, &job));
    // the same entries as the codes: their positions are reused as they are
    let g = SparseRows { val, ..zt };
    if extra.is_empty() {
        return g;
    }
    let mut extra_t: Vec<(usize, usize, f32)> = extra.iter().map(|&(r, j, v)| (j, r, v)).collect();
    extra_t.sort_by_key(|e| (e.0, e.1));
    let mut out = SparseRows {
        indptr: vec![0],
        ..SparseRows::default()
    };
    let mut e = 0;
    for j in 0..g.rows() {
        let (rs, vs) = g.row(j);
        let mut row: Vec<(u32, f32)> = rs.iter().copied().zip(vs.iter().copied()).collect();
        while e < extra_t.len() && extra_t[e].0 == j {
            let (_, r, v) = extra_t[e];
            match row.binary_search_by_key(&(r as u32), |x| x.0) {
                Ok(k) => row[k].1 += v,
                Err(k) => row.insert(k, (r as u32, v)),
            }
            e += 1;
        }
        for (r, v) in row {
            out.idx.push(r);
            out.val.push(v);
        }
        out.indptr.push(out.idx.len());
    }
    out
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

    /// The parameters the sparse products read (the decoder; the encoder, unused, as given).
    fn decoder_view<'a>(
        w_dec: &'a [f32],
        b_dec: &'a [f32],
        enc: &'a (Vec<f32>, Vec<f32>),
    ) -> ParamsView<'a> {
        ParamsView {
            d_in: b_dec.len(),
            d_sae: enc.1.len(),
            w_enc: &enc.0,
            w_dec,
            b_enc: &enc.1,
            b_dec,
        }
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
        let b_dec: Vec<f32> = (0..d).map(|k| f(k, 3.0)).collect();
        let g: Vec<f32> = (0..n * d).map(|k| f(k, 4.0)).collect();
        let enc = (vec![0f32; d * m], vec![0f32; m]);
        let p = decoder_view(&w_dec, &b_dec, &enc);
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
        // the backward pass: z^T g, then the pre-gradient (below) and from it x^T g_pre and its sums
        let zt = zs.transpose(m);
        let x: Vec<f32> = (0..n * d).map(|k| f(k, 5.0)).collect();
        let extra = [(0usize, 0usize, 0.5f32), (1, 1, -2.0)];
        let sg = backward(&p, &zs, &g, &x, 0.25, &extra);
        close(&sg.w_dec, &dense_mm(&transpose(&z, n, m), &g, m, n, d));
        // g W_dec^T at the active entries, plus l1, plus an extra entry at an inactive (row 1, 1)
        // and one at an active (row 0, 0) entry; transposed
        let full = dense_mm(&g, &transpose(&w_dec, m, d), n, d, m);
        let gpt = pre_gradient_t(&p, zt.clone(), &Panels::new(&g, n, d, true), 0.25, &extra);
        let mut want = vec![0f32; n * m];
        for k in 0..n * m {
            if z[k] != 0.0 {
                want[k] = full[k] + 0.25;
            }
        }
        want[0] += 0.5;
        want[m + 1] += -2.0;
        let mut got = vec![0f32; n * m];
        for j in 0..m {
            let (rs, vs) = gpt.row(j);
            assert!(rs.windows(2).all(|w| w[0] < w[1]));
            for (&r, &v) in rs.iter().zip(vs) {
                got[r as usize * m + j] = v;
            }
        }
        close(&got, &want);
        // x^T g_pre and the column sums
        close(&sg.w_enc, &dense_mm(&transpose(&x, n, d), &want, d, n, m));
        let mut sums = vec![0f32; m];
        for r in 0..n {
            for j in 0..m {
                sums[j] += want[r * m + j];
            }
        }
        close(&gpt.row_sums(), &sums);
        close(&sg.b_enc, &sums);
    }

    /// Sizes that cross every block of the sparse products: several tasks of rows, panels (the last
    /// one partial), blocks of panel rows and blocks of `g_out` rows in the pre-gradient.
    #[test]
    fn blocked_sparse_products_equal_f64_loops() {
        let (n, d, m) = (260, 300, 300);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let z: Vec<f32> = (0..n * m)
            .map(|_| if rnd() < 0.3 { rnd() } else { 0.0 })
            .collect();
        let w_dec: Vec<f32> = (0..m * d).map(|_| rnd() - 0.5).collect();
        let g: Vec<f32> = (0..n * d).map(|_| rnd() - 0.5).collect();
        let b_dec: Vec<f32> = (0..d).map(|_| rnd()).collect();
        let enc = (vec![0f32; d * m], vec![0f32; m]);
        let p = decoder_view(&w_dec, &b_dec, &enc);
        let near = |got: &[f32], want: &[f64]| {
            assert_eq!(got.len(), want.len());
            for (k, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "{k}: {a} vs {b}"
                );
            }
        };
        let zs = SparseRows::from_dense(&z, m);
        assert_eq!(zs.idx.len(), z.iter().filter(|v| **v != 0.0).count());
        let zt = zs.transpose(m);
        // decoder: z W_dec + b_dec
        let mut want = vec![0f64; n * d];
        for r in 0..n {
            for j in 0..m {
                for c in 0..d {
                    want[r * d + c] += z[r * m + j] as f64 * w_dec[j * d + c] as f64;
                }
            }
            for c in 0..d {
                want[r * d + c] += b_dec[c] as f64;
            }
        }
        near(&decode(&p, &zs), &want);
        // z^T g
        let mut want = vec![0f64; m * d];
        for r in 0..n {
            for j in 0..m {
                for c in 0..d {
                    want[j * d + c] += z[r * m + j] as f64 * g[r * d + c] as f64;
                }
            }
        }
        let sg = backward(&p, &zs, &g, &g, 0.5, &[]);
        near(&sg.w_dec, &want);
        // pre-gradient at the active entries
        let gpt = pre_gradient_t(&p, zt.clone(), &Panels::new(&g, n, d, true), 0.5, &[]);
        assert_eq!((&gpt.indptr, &gpt.idx), (&zt.indptr, &zt.idx));
        let mut want = Vec::with_capacity(gpt.val.len());
        for j in 0..m {
            for &r in gpt.row(j).0 {
                let r = r as usize;
                let dot: f64 = (0..d)
                    .map(|c| g[r * d + c] as f64 * w_dec[j * d + c] as f64)
                    .sum();
                want.push(dot + 0.5);
            }
        }
        near(&gpt.val, &want);
        // x^T g_pre, with x = g
        let mut want = vec![0f64; d * m];
        for j in 0..m {
            for (&r, &v) in gpt.row(j).0.iter().zip(gpt.row(j).1) {
                for c in 0..d {
                    want[c * m + j] += g[r as usize * d + c] as f64 * v as f64;
                }
            }
        }
        near(&sg.w_enc, &want);
        // the operand read in place (columns a multiple of the panel width) or regrouped: the
        // same sums bit for bit, as rows or transposed
        let g128: Vec<f32> = g[..n * 128].to_vec();
        let zt_n = SparseRows::from_dense(&z[..m * n], n);
        for transposed in [false, true] {
            let packed = sparse_times(&zt_n, &Panels::new(&g128, n, 128, true), 128, transposed);
            let direct = sparse_times(&zt_n, &Panels::new(&g128, n, 128, false), 128, transposed);
            assert_eq!(packed, direct);
        }
    }
}
