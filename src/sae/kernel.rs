//! The SAE's arithmetic on row-major buffers: encoder, sparsifying activation, decoder, and the
//! hand-derived backward pass of the training loss.
//!
//! Shapes (SAELens layout): `W_enc` `[d_in, d_sae]`, `W_dec` `[d_sae, d_in]`, `b_enc` `[d_sae]`,
//! `b_dec` `[d_in]`; a batch `x` is `[n, d_in]` (already z-scored).
//!
//! Forward: `pre = (x - b_dec) W_enc + b_enc`, `z = act(pre)`, `x_hat = z W_dec + b_dec`.
//! Loss: `c_r * sum (x_hat - x)^2 + lambda * c_s * sum |z|` with `(c_r, c_s) = (1/(n d_in), 1/(n d_sae))`
//! for the mean convention and `(1/n, 1/n)` for the sum convention.
//! Backward: `g_out = 2 c_r (x_hat - x)`; `dW_dec = z^T g_out`; `g_pre = (g_out W_dec^T + lambda c_s)`
//! masked to active latents; `dW_enc = (x - b_dec)^T g_pre`; `db_enc = colsum g_pre`;
//! `db_dec = colsum g_out - W_enc colsum g_pre`.
//!
//! TopK auxiliary loss ([`AuxK`], SAELens `calculate_topk_aux_loss`): with `D` dead latents,
//! `k_aux = min(d_in / 2, D)` and `s = min(D / (d_in / 2), 1)`; per row, `a` keeps the `k_aux` largest
//! pre-activations among dead latents (not ReLU'd), `e = a W_dec` (no bias) and `r = x - x_hat`
//! (constant); the loss adds `coef * s * c_r * sum (e - r)^2`; its gradient `g_e = 2 coef s c_r (e - r)`
//! adds `a^T g_e` to `dW_dec` and `(g_e W_dec^T)` at the selected entries to `g_pre`.

use candle_core::Device;

use crate::error::Result;
use crate::sae::config::LossConvention;
use crate::sae::linalg::{matmul, Operand};
use crate::sae::sparse_kernel::{self, SparseRows, SPARSE_MAX_DENSITY};
use crate::sae::vector_ops;
use rayon::prelude::*;

/// Borrowed SAE parameters.
#[derive(Debug, Clone, Copy)]
pub struct ParamsView<'a> {
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// `[d_in, d_sae]`.
    pub w_enc: &'a [f32],
    /// `[d_sae, d_in]`.
    pub w_dec: &'a [f32],
    /// `[d_sae]`.
    pub b_enc: &'a [f32],
    /// `[d_in]`.
    pub b_dec: &'a [f32],
}

/// The encoder's sparsifying non-linearity.
#[derive(Debug, Clone, Copy)]
pub enum Sparsifier<'a> {
    /// `ReLU(pre)`.
    Relu,
    /// Per row, the `k` largest pre-activations, ReLU'd; others 0.
    TopK(usize),
    /// Over the whole batch, the `n * k` largest ReLU'd pre-activations (training-time BatchTopK).
    BatchTopK(usize),
    /// JumpReLU: `pre` where `pre > threshold[j]` (and `pre > 0`), else 0 (BatchTopK at inference).
    Threshold(&'a [f32]),
}

/// `(x - b_dec, (x - b_dec) W_enc + b_enc)` for `n` rows.
pub fn pre_activations(
    dev: &Device,
    p: &ParamsView<'_>,
    x: &[f32],
    n: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let d = p.d_in;
    let mut xc = x.to_vec();
    xc.par_chunks_mut((STAT_ROWS * d).max(1)).for_each(|block| {
        for row in block.chunks_exact_mut(d) {
            for (v, b) in row.iter_mut().zip(p.b_dec) {
                *v -= b;
            }
        }
    });
    let mut pre = matmul(dev, Operand::n(&xc, n, d), Operand::n(p.w_enc, d, p.d_sae))?;
    add_to_rows(&mut pre, p.b_enc);
    Ok((xc, pre))
}

/// Index of the `k`-th largest value (ties broken by lower index first) among `vals`, as a
/// "keep" predicate threshold: returns `(value, count_of_equal_values_to_keep)`.
fn kth_largest(vals: &[f32], k: usize) -> (f32, usize) {
    let mut buf: Vec<f32> = vals.to_vec();
    let idx = k - 1;
    let (_, kth, _) = buf.select_nth_unstable_by(idx, |a, b| b.total_cmp(a));
    let kth = *kth;
    let greater = vals.iter().filter(|v| v.total_cmp(&kth).is_gt()).count();
    (kth, k - greater)
}

/// Keep the `k` largest entries of `vals` (ties: lowest index first), zeroing the rest; then ReLU.
fn keep_top_k(vals: &mut [f32], k: usize) {
    if k <= SMALL_K {
        keep_top_small_k(vals, k)
    } else {
        keep_top_k_by_selection(vals, k)
    }
}

/// Largest `k` taken by [`keep_top_small_k`]; larger `k` (BatchTopK's `n x k` over a batch) select.
const SMALL_K: usize = 64;

/// [`keep_top_k`] through a selection of the `k`-th largest value.
fn keep_top_k_by_selection(vals: &mut [f32], k: usize) {
    if k >= vals.len() {
        for v in vals.iter_mut() {
            *v = v.max(0.0);
        }
        return;
    }
    let (kth, mut equal_left) = kth_largest(vals, k);
    for v in vals.iter_mut() {
        let keep = match v.total_cmp(&kth) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Equal if equal_left > 0 => {
                equal_left -= 1;
                true
            }
            _ => false,
        };
        *v = if keep && *v > 0.0 { *v } else { 0.0 };
    }
}

/// [`keep_top_k`] for small `k`: one pass with a candidate buffer. An entry becomes a candidate
/// only when it beats the `k`-th best of the last compaction (strictly larger value: an equal value
/// comes later, so it ranks lower); a full buffer (`4k`) is cut back to its best `k` by selection.
/// After the first few hundred entries almost nothing qualifies, so a row of `m` costs about `m`
/// comparisons.
fn keep_top_small_k(vals: &mut [f32], k: usize) {
    if k >= vals.len() {
        for v in vals.iter_mut() {
            *v = v.max(0.0);
        }
        return;
    }
    let mut buf = Vec::with_capacity(4 * k);
    top_small_k(vals, k, &mut buf);
    vals.fill(0.0);
    for (v, j) in buf {
        if v > 0.0 {
            vals[j] = v;
        }
    }
}

/// The `k` best `(value, index)` pairs of `vals` (`k < vals.len()`; larger value first, then lower
/// index; unordered in `buf`) by [`keep_top_small_k`]'s candidate buffer.
fn top_small_k(vals: &[f32], k: usize, buf: &mut Vec<(f32, usize)>) {
    buf.clear();
    if k == 0 {
        return;
    }
    // best first: larger value, then lower index
    let order = |a: &(f32, usize), b: &(f32, usize)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    buf.extend(vals[..k].iter().copied().zip(0..k));
    let mut threshold = buf
        .iter()
        .copied()
        .max_by(order)
        .map(|w| w.0)
        .unwrap_or(f32::MIN);
    let mut j = k;
    loop {
        j = first_not_below(vals, j, threshold);
        if j == vals.len() {
            break;
        }
        let v = vals[j];
        if v.total_cmp(&threshold).is_gt() {
            buf.push((v, j));
            if buf.len() == 4 * k {
                buf.select_nth_unstable_by(k - 1, order);
                buf.truncate(k);
                threshold = buf[..k]
                    .iter()
                    .copied()
                    .max_by(order)
                    .map(|w| w.0)
                    .unwrap_or(f32::MIN);
            }
        }
        j += 1;
    }
    if buf.len() > k {
        buf.select_nth_unstable_by(k - 1, order);
        buf.truncate(k);
    }
}

crate::multiversion!(
    /// The first index `j >= from` with `vals[j] >= t` or `vals[j]` NaN, or `vals.len()`.
    fn first_not_below(vals: &[f32], from: usize, t: f32) -> usize => first_not_below_body
);

/// [`first_not_below`]: blocks of 16 tested at once (one vector compare), then the block's first.
#[inline(always)]
fn first_not_below_body(vals: &[f32], from: usize, t: f32) -> usize {
    const B: usize = 16;
    let mut j = from;
    while j + B <= vals.len() {
        let b: &[f32; B] = vals[j..j + B].try_into().expect("block");
        let mut any = false;
        for v in b {
            any |= (*v >= t) | v.is_nan();
        }
        if any {
            break;
        }
        j += B;
    }
    while j < vals.len() && vals[j] < t {
        j += 1;
    }
    j
}

/// Per row of `pre` (`[n, m]`), the codes of `TopK(k)` (`k <=` [`SMALL_K`], `k < m`) straight as
/// sparse rows, with their statistics: [`activate`] then [`SparseRows::from_dense`] and the code
/// statistics, without the dense codes.
fn sparse_top_k(pre: &[f32], m: usize, k: usize) -> (SparseRows, CodeStats) {
    let blocks: Vec<CodeRows> = pre
        .par_chunks((STAT_ROWS * m).max(1))
        .map(|block| {
            let mut out = CodeRows::new(m);
            let mut buf = Vec::with_capacity(4 * k);
            for row in block.chunks_exact(m) {
                top_small_k(row, k, &mut buf);
                buf.sort_unstable_by_key(|w| w.1);
                for &(v, j) in buf.iter().filter(|w| w.0 > 0.0) {
                    out.push(j, v);
                }
                out.end_row();
            }
            out
        })
        .collect();
    CodeRows::join(blocks, m)
}

/// BatchTopK codes (the `total` largest ReLU'd pre-activations of the whole batch, ties: lower
/// flat index first; [`activate`]) straight to sparse rows with their statistics, as
/// [`sparse_top_k`] does for TopK. Positive floats order as their bit patterns: a histogram of the
/// top 11 bits (counted in parallel blocks, without branches) finds the bucket that holds the
/// `total`-th largest value; the values in that bucket are gathered and the ones kept chosen among
/// them exactly (value, then flat index); every value in a higher bucket is kept.
fn sparse_batch_top_k(pre: &[f32], m: usize, total: usize) -> (SparseRows, CodeStats) {
    const SHIFT: u32 = 21;
    const BUCKETS: usize = (1 << (31 - SHIFT)) + 1;
    let block = (STAT_ROWS * m).max(1);
    // a value's bucket: 1 + its top bits when positive, 0 otherwise
    let bucket = |v: f32| {
        if v > 0.0 {
            (v.to_bits() >> SHIFT) + 1
        } else {
            0
        }
    };
    let hist = pre
        .par_chunks(block)
        .map(|b| {
            let mut h = vec![0u32; BUCKETS];
            for &v in b {
                h[bucket(v) as usize] += 1;
            }
            h
        })
        .reduce(
            || vec![0u32; BUCKETS],
            |mut a, b| {
                for (a, b) in a.iter_mut().zip(&b) {
                    *a += b;
                }
                a
            },
        );
    // from the top: the bucket where the count reaches `total` (bucket 0 holds the non-positive
    // values and is never kept), and how many of its values are kept
    let (mut above, mut cut) = (0usize, None);
    for b in (1..BUCKETS).rev() {
        let c = hist[b] as usize;
        if above + c >= total {
            cut = Some((b as u32, total - above));
            break;
        }
        above += c;
    }
    // the kept values of the cut bucket, by flat index
    let chosen: Vec<usize> = match cut {
        None => Vec::new(), // fewer positive values than `total`: every one is kept
        Some((cut_bucket, take)) => {
            let mut cand: Vec<(u32, usize)> = pre
                .par_chunks(block)
                .enumerate()
                .map(|(bi, b)| {
                    let mut c = Vec::new();
                    for (i, &v) in b.iter().enumerate() {
                        if bucket(v) == cut_bucket {
                            c.push((v.to_bits(), bi * block + i));
                        }
                    }
                    c
                })
                .flatten()
                .collect();
            let order = |a: &(u32, usize), b: &(u32, usize)| b.0.cmp(&a.0).then(a.1.cmp(&b.1));
            if take < cand.len() {
                cand.select_nth_unstable_by(take, order);
                cand.truncate(take);
            }
            let mut idx: Vec<usize> = cand.into_iter().map(|c| c.1).collect();
            idx.sort_unstable();
            idx
        }
    };
    // every value in a bucket above the cut is kept (all positive values when there is no cut)
    let keep_from = cut.map_or(1, |(b, _)| b + 1);
    let parts: Vec<CodeRows> = pre
        .par_chunks(block)
        .enumerate()
        .map(|(bi, b)| {
            let mut out = CodeRows::new(m);
            let base = bi * block;
            let mut c = chosen.partition_point(|&i| i < base);
            for (r, row) in b.chunks_exact(m).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    let flat = base + r * m + j;
                    let picked = c < chosen.len() && chosen[c] == flat;
                    if (bucket(v) >= keep_from) | picked {
                        c += picked as usize;
                        out.push(j, v);
                    }
                }
                out.end_row();
            }
            out
        })
        .collect();
    CodeRows::join(parts, m)
}

/// Codes of a block of rows built row by row as sparse rows, with their statistics.
struct CodeRows {
    rows: SparseRows,
    st: CodeStats,
}

impl CodeRows {
    fn new(m: usize) -> CodeRows {
        CodeRows {
            rows: SparseRows {
                indptr: vec![0],
                ..SparseRows::default()
            },
            st: CodeStats::new(m),
        }
    }

    /// Add the active code `v > 0` of latent `j` to the current row (latents in increasing order).
    fn push(&mut self, j: usize, v: f32) {
        self.rows.idx.push(j as u32);
        self.rows.val.push(v);
        self.st.add(j, v);
    }

    /// Close the current row.
    fn end_row(&mut self) {
        self.rows.indptr.push(self.rows.idx.len());
    }

    /// Consecutive blocks of rows joined in order.
    fn join(parts: Vec<CodeRows>, m: usize) -> (SparseRows, CodeStats) {
        let mut out = CodeRows::new(m);
        for part in parts {
            let base = out.rows.idx.len();
            out.rows
                .indptr
                .extend(part.rows.indptr[1..].iter().map(|p| p + base));
            out.rows.idx.extend(part.rows.idx);
            out.rows.val.extend(part.rows.val);
            out.st.merge(part.st);
        }
        (out.rows, out.st)
    }
}

/// Apply the sparsifier to `pre` (`[n, d_sae]`), returning the codes `z`.
pub fn activate(pre: &[f32], d_sae: usize, s: Sparsifier<'_>) -> Vec<f32> {
    let mut z = pre.to_vec();
    activate_in_place(&mut z, d_sae, s);
    z
}

/// [`activate`] on the pre-activations' own buffer: `z` (`[n, d_sae]`) holds `pre` on entry and the
/// codes on return.
pub fn activate_in_place(z: &mut [f32], d_sae: usize, s: Sparsifier<'_>) {
    match s {
        Sparsifier::BatchTopK(k) => {
            let n = z.len() / d_sae.max(1);
            for v in z.iter_mut() {
                *v = v.max(0.0);
            }
            keep_top_k(z, (n * k).max(1));
        }
        _ => z
            .par_chunks_mut((STAT_ROWS * d_sae).max(1))
            .for_each(|block| activate_rows(block, d_sae, s)),
    }
}

/// [`activate_in_place`] and the codes' [`CodeStats`] in one pass over blocks of rows (in
/// parallel, combined in row order: the same numbers on any thread count).
pub(crate) fn activate_with_stats(z: &mut [f32], m: usize, s: Sparsifier<'_>) -> CodeStats {
    let block = (STAT_ROWS * m).max(1);
    let parts: Vec<CodeStats> = match s {
        Sparsifier::BatchTopK(_) => {
            activate_in_place(z, m, s);
            z.par_chunks(block).map(|b| code_stats(b, m)).collect()
        }
        _ => z
            .par_chunks_mut(block)
            .map(|b| {
                activate_rows(b, m, s);
                code_stats(b, m)
            })
            .collect(),
    };
    let mut codes = CodeStats::new(m);
    for part in parts {
        codes.merge(part);
    }
    codes
}

/// A sparsifier that works row by row (every one but BatchTopK) on a block of whole rows.
fn activate_rows(block: &mut [f32], d_sae: usize, s: Sparsifier<'_>) {
    match s {
        Sparsifier::Relu => {
            for v in block.iter_mut() {
                *v = v.max(0.0);
            }
        }
        Sparsifier::TopK(k) => {
            for row in block.chunks_exact_mut(d_sae.max(1)) {
                keep_top_k(row, k);
            }
        }
        Sparsifier::BatchTopK(_) => unreachable!("BatchTopK selects over the whole batch"),
        Sparsifier::Threshold(th) => {
            for row in block.chunks_exact_mut(d_sae.max(1)) {
                for (v, t) in row.iter_mut().zip(th) {
                    if !(*v > *t && *v > 0.0) {
                        *v = 0.0;
                    }
                }
            }
        }
    }
}

/// `z W_dec + b_dec` for `n` rows.
pub fn decode(dev: &Device, p: &ParamsView<'_>, z: &[f32], n: usize) -> Result<Vec<f32>> {
    let mut out = matmul(
        dev,
        Operand::n(z, n, p.d_sae),
        Operand::n(p.w_dec, p.d_sae, p.d_in),
    )?;
    add_to_rows(&mut out, p.b_dec);
    Ok(out)
}

/// Gradients, shaped like the parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct Grads {
    /// d loss / d W_enc.
    pub w_enc: Vec<f32>,
    /// d loss / d W_dec.
    pub w_dec: Vec<f32>,
    /// d loss / d b_enc.
    pub b_enc: Vec<f32>,
    /// d loss / d b_dec.
    pub b_dec: Vec<f32>,
    /// d loss / d threshold (JumpReLU; empty otherwise).
    pub threshold: Vec<f32>,
}

/// What one training batch measured.
#[derive(Debug, Clone, Default)]
pub struct BatchStats {
    /// Rows in the batch.
    pub n: usize,
    /// Total loss.
    pub loss: f64,
    /// Reconstruction part of the loss.
    pub recon_loss: f64,
    /// Sparsity part of the loss.
    pub l1_loss: f64,
    /// TopK auxiliary dead-latent part of the loss (0 when off).
    pub aux_loss: f64,
    /// Matryoshka inner-level reconstruction part of the loss (0 without levels).
    pub inner_loss: f64,
    /// Sum of squared reconstruction errors.
    pub sse: f64,
    /// Sum over dims of squared deviations from the batch's column means.
    pub sst: f64,
    /// Number of active latents summed over rows.
    pub active: u64,
    /// Per-latent count of rows where it fired.
    pub fired: Vec<u32>,
    /// Smallest positive kept activation (BatchTopK threshold estimate), if any.
    pub min_active: Option<f32>,
}

/// The TopK auxiliary dead-latent loss of one step.
#[derive(Debug, Clone, Copy)]
pub struct AuxK<'a> {
    /// Per latent, whether it counts as dead (`[d_sae]`).
    pub dead: &'a [bool],
    /// Coefficient (SAELens `aux_loss_coefficient`).
    pub coef: f64,
}

/// Per row, the `k` largest entries of `pre` among the `dead` latents (ties: lower index first), as
/// `(latent, value)` pairs.
fn top_dead(pre_row: &[f32], dead: &[usize], k: usize) -> Vec<(usize, f32)> {
    let mut c: Vec<(usize, f32)> = dead.iter().map(|&j| (j, pre_row[j])).collect();
    c.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    c.truncate(k);
    c
}

/// Loss-normalisation constants `(c_r, c_s)` for a batch of `n`.
pub fn loss_scales(conv: LossConvention, n: usize, d_in: usize, d_sae: usize) -> (f64, f64) {
    match conv {
        LossConvention::Mean => (1.0 / (n * d_in) as f64, 1.0 / (n * d_sae) as f64),
        LossConvention::Sum => (1.0 / n as f64, 1.0 / n as f64),
    }
}

/// What the training loss is made of besides the reconstruction.
#[derive(Debug, Clone, Copy)]
pub struct LossTerms<'a> {
    /// L1 coefficient (0 for TopK-family SAEs).
    pub lambda: f64,
    /// Loss normalisation.
    pub conv: LossConvention,
    /// The TopK auxiliary dead-latent loss, when on.
    pub aux: Option<AuxK<'a>>,
    /// Matryoshka inner widths (every level but the full dictionary): the reconstruction from the
    /// first `w` latents is added to the loss for each `w`, with the same normalisation.
    pub prefixes: &'a [usize],
    /// JumpReLU training: the sparsity term is `lambda x` the L0 (a step function of `pre -
    /// threshold`) instead of the L1, and the thresholds get straight-through gradients.
    pub jump: Option<JumpTerms<'a>>,
    /// Largest share of non-zero codes for which the products with the codes are sparse products
    /// ([`crate::sae::sparse_kernel`]; CPU only, not with Matryoshka levels or JumpReLU): normally
    /// [`SPARSE_MAX_DENSITY`]; 0 always takes the dense products, 1 always the sparse ones.
    pub max_sparse_density: f64,
}

/// JumpReLU training terms (SAELens `JumpReLUTrainingSAE`, sparsity mode "step", STE to the
/// threshold only): with `r(u) = 1[-1/2 < u < 1/2]` and bandwidth `e`, the threshold gradient is
/// `sum_rows -(t_j / e) r((pre - t_j) / e) dL/dz + -(1 / e) r((pre - t_j) / e) dL/dL0`.
#[derive(Debug, Clone, Copy)]
pub struct JumpTerms<'a> {
    /// `[d_sae]` thresholds (non-negative).
    pub threshold: &'a [f32],
    /// Kernel bandwidth.
    pub bandwidth: f64,
}

impl LossTerms<'_> {
    /// Reconstruction plus `lambda` x L1 (the paper's loss; `lambda` 0 for TopK).
    pub fn plain(lambda: f64, conv: LossConvention) -> LossTerms<'static> {
        LossTerms {
            lambda,
            conv,
            aux: None,
            prefixes: &[],
            jump: None,
            max_sparse_density: SPARSE_MAX_DENSITY,
        }
    }
}

/// Forward and backward pass on one batch `x` (`[n, d_in]`).
pub fn loss_and_grads(
    dev: &Device,
    p: &ParamsView<'_>,
    x: &[f32],
    n: usize,
    s: Sparsifier<'_>,
    terms: &LossTerms<'_>,
) -> Result<(BatchStats, Grads)> {
    let (lambda, conv, aux) = (terms.lambda, terms.conv, terms.aux);
    let (d, m) = (p.d_in, p.d_sae);
    let (xc, pre) = pre_activations(dev, p, x, n)?;
    let sparse_ok = dev.is_cpu()
        && terms.prefixes.is_empty()
        && terms.jump.is_none()
        && terms.max_sparse_density > 0.0;
    // few codes per row (TopK) or per batch (BatchTopK): straight to sparse rows (the codes are
    // never negative, so the active ones counted are the non-zero ones)
    let direct = match s {
        Sparsifier::TopK(k)
            if sparse_ok
                && k <= SMALL_K
                && k < m
                && k as f64 <= terms.max_sparse_density * m as f64 =>
        {
            Some(sparse_top_k(&pre, m, k))
        }
        Sparsifier::BatchTopK(k)
            if sparse_ok && k < m && k as f64 <= terms.max_sparse_density * m as f64 =>
        {
            Some(sparse_batch_top_k(&pre, m, (n * k).max(1)))
        }
        _ => None,
    };
    let aux_sel = aux_selection(&pre, m, d, aux);
    let (z, zs, codes, pre) = match direct {
        Some((zs, codes)) => (Vec::new(), Some(zs), codes, None),
        None => {
            // the codes overwrite the pre-activations, which are kept only where JumpReLU's
            // threshold gradient needs them
            let (mut z, pre) = match terms.jump {
                Some(_) => (pre.clone(), Some(pre)),
                None => (pre, None),
            };
            let codes = activate_with_stats(&mut z, m, s);
            // sparse codes on the CPU: the products with z as sparse products (see sparse_kernel)
            let zs = (sparse_ok
                && codes.active as f64 <= terms.max_sparse_density * z.len() as f64)
                .then(|| SparseRows::from_dense(&z, m));
            (z, zs, codes, pre)
        }
    };
    let l1 = codes.l1;
    let mut stats = BatchStats {
        n,
        active: codes.active,
        fired: codes.fired,
        min_active: codes.min_active,
        ..BatchStats::default()
    };
    let xhat = match &zs {
        Some(zs) => sparse_kernel::decode(p, zs),
        None => decode(dev, p, &z, n)?,
    };
    let (c_r, c_s) = loss_scales(conv, n, d, m);

    // reconstruction error and its gradient
    let mut col_mean = column_sums_f64(x, d);
    for c in col_mean.iter_mut() {
        *c /= n as f64;
    }
    let scale = (2.0 * c_r) as f32;
    let block = (STAT_ROWS * d).max(1);
    let (g_out, sums) = vector_ops::par_zeroed(n * d, block, |b, g| {
        let rows = b * block..b * block + g.len();
        error_block(g, &x[rows.clone()], &xhat[rows], &col_mean, scale)
    });
    for (sse, sst) in sums {
        stats.sse += sse;
        stats.sst += sst;
    }
    let aux_part = aux_sel
        .map(|(sel, scale)| aux_gradient(p, x, &xhat, &sel, scale, c_r))
        .unwrap_or_default();
    drop(xhat);
    stats.recon_loss = c_r * stats.sse;
    // JumpReLU penalises the number of active latents (L0), the others their sum (L1)
    let sparsity = if terms.jump.is_some() {
        stats.active as f64
    } else {
        l1
    };
    stats.l1_loss = lambda * c_s * sparsity;
    stats.aux_loss = aux_part.loss;
    let inner = inner_levels(dev, p, x, &z, n, terms.prefixes, c_r)?;
    stats.inner_loss = inner.loss;
    stats.loss = stats.recon_loss + stats.l1_loss + stats.aux_loss + stats.inner_loss;

    let l1_grad = if terms.jump.is_some() {
        0.0
    } else {
        (lambda * c_s) as f32
    };
    // sparse codes: the whole backward pass at once (it regroups g_out once for two products)
    let mut sparse_grads = zs
        .as_ref()
        .map(|zs| sparse_kernel::backward(p, zs, &g_out, &xc, l1_grad, &aux_part.pre));
    let mut gw_dec = match &mut sparse_grads {
        Some(sg) => std::mem::take(&mut sg.w_dec),
        None => matmul(dev, Operand::t(&z, n, m), Operand::n(&g_out, n, d))?,
    };
    for (g, v) in gw_dec.iter_mut().zip(&inner.w_dec) {
        *g += v;
    }
    for (j, row) in &aux_part.w_dec {
        for (g, v) in gw_dec[j * d..(j + 1) * d].iter_mut().zip(row) {
            *g += v;
        }
    }
    let mut b_dec_grad = column_sums(&g_out, d);
    for (g, v) in b_dec_grad.iter_mut().zip(&inner.b_dec) {
        *g += v;
    }
    let (gw_enc, b_enc_grad, threshold_grad) = match sparse_grads {
        Some(sg) => (sg.w_enc, sg.b_enc, Vec::new()),
        None => dense_pre_gradients(
            dev,
            p,
            DenseBackward {
                xc: &xc,
                z: &z,
                pre: pre.as_deref(),
                g_out,
                inner_z: &inner.z,
                aux_pre: &aux_part.pre,
                l1_grad,
                jump: terms.jump,
                c0: lambda * c_s,
                n,
            },
        )?,
    };
    drop(z);
    b_dec_grad
        .par_iter_mut()
        .zip(p.w_enc.par_chunks(m.max(1)))
        .for_each(|(g, w)| *g -= vector_ops::dot_product(w, &b_enc_grad));
    Ok((
        stats,
        Grads {
            w_enc: gw_enc,
            w_dec: gw_dec,
            b_enc: b_enc_grad,
            b_dec: b_dec_grad,
            threshold: threshold_grad,
        },
    ))
}

/// Rows per work item of the step's statistics passes.
const STAT_ROWS: usize = 32;

/// Statistics of a block of codes: sum, active count, per-latent fired counts, smallest active.
pub(crate) struct CodeStats {
    /// Sum of the codes.
    pub(crate) l1: f64,
    /// Number of active (positive) codes.
    pub(crate) active: u64,
    /// Per latent, the number of rows where it is active.
    pub(crate) fired: Vec<u32>,
    /// Smallest active code.
    pub(crate) min_active: Option<f32>,
}

impl CodeStats {
    fn new(m: usize) -> CodeStats {
        CodeStats {
            l1: 0.0,
            active: 0,
            fired: vec![0; m],
            min_active: None,
        }
    }

    /// Count the active code `v > 0` of latent `j`.
    fn add(&mut self, j: usize, v: f32) {
        self.l1 += v as f64;
        self.active += 1;
        self.fired[j] += 1;
        self.min_active = Some(self.min_active.map_or(v, |a| a.min(v)));
    }

    /// Add the statistics of the rows after these.
    fn merge(&mut self, o: CodeStats) {
        self.l1 += o.l1;
        self.active += o.active;
        for (f, c) in self.fired.iter_mut().zip(&o.fired) {
            *f += c;
        }
        if let Some(v) = o.min_active {
            self.min_active = Some(self.min_active.map_or(v, |a| a.min(v)));
        }
    }
}

crate::multiversion!(
    /// [`CodeStats`] of a block of rows of codes (never negative).
    fn code_stats(block: &[f32], m: usize) -> CodeStats => code_stats_body
);

/// [`code_stats`] without branches: the codes are never negative, so zeros add nothing to the sums
/// and counts; the sums run in eight partial sums (element `j` of a row into sum `j % 8`) added
/// pairwise at the end.
#[inline(always)]
fn code_stats_body(block: &[f32], m: usize) -> CodeStats {
    const L: usize = 8;
    let mut st = CodeStats::new(m);
    let (mut l1, mut active, mut min) = ([0f64; L], [0u32; L], [f32::INFINITY; L]);
    for row in block.chunks_exact(m) {
        for (zs, fs) in row.chunks_exact(L).zip(st.fired.chunks_exact_mut(L)) {
            let zs: &[f32; L] = zs.try_into().expect("lanes");
            let fs: &mut [u32; L] = fs.try_into().expect("lanes");
            for l in 0..L {
                l1[l] += zs[l] as f64;
            }
            for l in 0..L {
                let on = (zs[l] > 0.0) as u32;
                fs[l] += on;
                active[l] += on;
            }
            for l in 0..L {
                let c = if zs[l] > 0.0 { zs[l] } else { f32::INFINITY };
                min[l] = if c < min[l] { c } else { min[l] };
            }
        }
        let start = m - m % L;
        for (l, &v) in row[start..].iter().enumerate() {
            let on = (v > 0.0) as u32;
            l1[l] += v as f64;
            st.fired[start + l] += on;
            active[l] += on;
            let c = if v > 0.0 { v } else { f32::INFINITY };
            min[l] = if c < min[l] { c } else { min[l] };
        }
    }
    st.l1 = ((l1[0] + l1[4]) + (l1[2] + l1[6])) + ((l1[1] + l1[5]) + (l1[3] + l1[7]));
    st.active = active.iter().map(|&a| a as u64).sum();
    let min = min
        .iter()
        .fold(f32::INFINITY, |a, &b| if b < a { b } else { a });
    st.min_active = (st.active > 0).then_some(min);
    st
}

crate::multiversion!(
    /// `g = if z > 0 { g + add } else { 0 }`, element by element.
    fn mask_to_active(g: &mut [f32], z: &[f32], add: f32) => mask_to_active_body
);

#[inline(always)]
fn mask_to_active_body(g: &mut [f32], z: &[f32], add: f32) {
    for (g, &zv) in g.iter_mut().zip(z) {
        *g = if zv > 0.0 { *g + add } else { 0.0 };
    }
}

crate::multiversion!(
    /// `out += v`, element by element.
    fn add_to(out: &mut [f32], v: &[f32]) => add_to_body
);

#[inline(always)]
fn add_to_body(out: &mut [f32], v: &[f32]) {
    for (o, v) in out.iter_mut().zip(v) {
        *o += v;
    }
}

/// `row += b` for each row of `a` (rows of `b.len()`; blocks of rows in parallel).
pub(crate) fn add_to_rows(a: &mut [f32], b: &[f32]) {
    a.par_chunks_mut((STAT_ROWS * b.len()).max(1))
        .for_each(|block| {
            for row in block.chunks_exact_mut(b.len().max(1)) {
                add_to(row, b);
            }
        });
}

/// Columns per work item of [`column_sums`] and [`column_sums_f64`].
const SUM_COLS: usize = 256;

/// Column sums of the row-major matrix `a` (`cols` wide), each added in row order (blocks of
/// columns in parallel: the same numbers on any thread count).
pub(crate) fn column_sums(a: &[f32], cols: usize) -> Vec<f32> {
    column_blocks(a, cols, add_to)
}

/// [`column_sums`] accumulated in `f64`.
pub(crate) fn column_sums_f64(a: &[f32], cols: usize) -> Vec<f64> {
    column_blocks(a, cols, |out: &mut [f64], row: &[f32]| {
        for (o, v) in out.iter_mut().zip(row) {
            *o += *v as f64;
        }
    })
}

/// Per block of [`SUM_COLS`] columns (in parallel), `add(out, row_part)` for each row in order.
fn column_blocks<T: Default + Clone + Send>(
    a: &[f32],
    cols: usize,
    add: impl Fn(&mut [T], &[f32]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::default(); cols];
    out.par_chunks_mut(SUM_COLS)
        .enumerate()
        .for_each(|(c, out)| {
            for row in a.chunks_exact(cols) {
                add(out, &row[c * SUM_COLS..c * SUM_COLS + out.len()]);
            }
        });
    out
}

crate::multiversion!(
    /// Reconstruction error of a block of rows: writes `g = scale (xhat - x)` and returns the sums
    /// of squared errors and of squared deviations from `col_mean`.
    fn error_block(g: &mut [f32], x: &[f32], xhat: &[f32], col_mean: &[f64], scale: f32) -> (f64, f64)
        => error_block_body
);

#[inline(always)]
fn error_block_body(
    g: &mut [f32],
    x: &[f32],
    xhat: &[f32],
    col_mean: &[f64],
    scale: f32,
) -> (f64, f64) {
    let d = col_mean.len();
    let (mut sse, mut sst) = ([0f64; 8], [0f64; 8]);
    for ((xr, hr), gr) in x
        .chunks_exact(d)
        .zip(xhat.chunks_exact(d))
        .zip(g.chunks_exact_mut(d))
    {
        for i in 0..d {
            let e = hr[i] - xr[i];
            sse[i % 8] += (e as f64) * (e as f64);
            let dev = xr[i] as f64 - col_mean[i];
            sst[i % 8] += dev * dev;
            gr[i] = scale * e;
        }
    }
    (sse.iter().sum(), sst.iter().sum())
}

/// What the dense backward from `g_out` to the encoder needs.
struct DenseBackward<'a> {
    xc: &'a [f32],
    z: &'a [f32],
    pre: Option<&'a [f32]>,
    g_out: Vec<f32>,
    inner_z: &'a [f32],
    aux_pre: &'a [(usize, usize, f32)],
    l1_grad: f32,
    jump: Option<JumpTerms<'a>>,
    c0: f64,
    n: usize,
}

/// The dense backward to the encoder: `(dW_enc, db_enc, d threshold)`.
fn dense_pre_gradients(
    dev: &Device,
    p: &ParamsView<'_>,
    b: DenseBackward<'_>,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let (d, m, n) = (p.d_in, p.d_sae, b.n);
    let mut g_pre = matmul(dev, Operand::n(&b.g_out, n, d), Operand::t(p.w_dec, m, d))?;
    drop(b.g_out);
    let (z, inner_z) = (b.z, b.inner_z);
    for (g, v) in g_pre.iter_mut().zip(inner_z) {
        *g += v;
    }
    let threshold_grad = match (b.jump, b.pre) {
        (Some(j), Some(pre)) => jump_threshold_grad(&j, pre, &g_pre, m, b.c0),
        _ => Vec::new(),
    };
    let b_enc_grad = mask_with_column_sums(&mut g_pre, z, m, b.l1_grad, b.aux_pre);
    let gw_enc = matmul(dev, Operand::t(b.xc, n, d), Operand::n(&g_pre, n, m))?;
    Ok((gw_enc, b_enc_grad, threshold_grad))
}

/// The gradient with respect to the pre-activations from the one with respect to the codes, in
/// place: `g + l1_grad` where the code `z` is active, 0 elsewhere, plus the auxiliary loss's
/// entries `aux_pre` (`(row, latent, value)` in row order). Returns its column sums (`b_enc`'s
/// gradient), counted in the same pass: each block of [`STAT_ROWS`] rows sums its rows in order,
/// and the blocks' sums are added in block order (the same bits on any thread count).
fn mask_with_column_sums(
    g_pre: &mut [f32],
    z: &[f32],
    m: usize,
    l1_grad: f32,
    aux_pre: &[(usize, usize, f32)],
) -> Vec<f32> {
    debug_assert!(aux_pre.windows(2).all(|w| w[0].0 <= w[1].0));
    let block = (STAT_ROWS * m).max(1);
    let parts: Vec<Vec<f32>> = g_pre
        .par_chunks_mut(block)
        .zip(z.par_chunks(block))
        .enumerate()
        .map(|(b, (g, z))| {
            mask_to_active(g, z, l1_grad);
            let rows = b * STAT_ROWS..b * STAT_ROWS + g.len() / m.max(1);
            let from = aux_pre.partition_point(|e| e.0 < rows.start);
            let to = aux_pre.partition_point(|e| e.0 < rows.end);
            for &(r, j, v) in &aux_pre[from..to] {
                g[(r - rows.start) * m + j] += v;
            }
            let mut sums = vec![0f32; m];
            for row in g.chunks_exact(m.max(1)) {
                add_to(&mut sums, row);
            }
            sums
        })
        .collect();
    let mut sums = vec![0f32; m];
    for part in &parts {
        add_to(&mut sums, part);
    }
    sums
}

/// The JumpReLU thresholds' straight-through gradient ([`JumpTerms`]) from `g_z` (the loss gradient
/// with respect to the codes, before the active mask) and the L0 term's coefficient `c0`
/// (`lambda x c_s`).
fn jump_threshold_grad(j: &JumpTerms<'_>, pre: &[f32], g_z: &[f32], m: usize, c0: f64) -> Vec<f32> {
    let e = j.bandwidth;
    let mut g = vec![0f64; m];
    for (prow, grow) in pre.chunks_exact(m).zip(g_z.chunks_exact(m)) {
        for (k, ((p, gz), t)) in prow.iter().zip(grow).zip(j.threshold).enumerate() {
            let u = (*p as f64 - *t as f64) / e;
            if u > -0.5 && u < 0.5 {
                g[k] -= (*t as f64 / e) * *gz as f64 + c0 / e;
            }
        }
    }
    g.into_iter().map(|v| v as f32).collect()
}

/// The Matryoshka inner levels' loss and gradients (dense; zero-sized when there are no levels).
#[derive(Debug, Default)]
struct InnerLevels {
    loss: f64,
    /// Added to `dW_dec` (`[d_sae, d_in]`).
    w_dec: Vec<f32>,
    /// Added to `db_dec`.
    b_dec: Vec<f32>,
    /// Added to `dz` (`[n, d_sae]`) before the active-latent mask.
    z: Vec<f32>,
}

/// For each inner width `w`: `x_hat_w = z[:, :w] W_dec[:w] + b_dec`, loss `c_r sum (x_hat_w - x)^2`,
/// `g = 2 c_r (x_hat_w - x)`: `dW_dec[:w] += z[:, :w]^T g`, `db_dec += colsum g`,
/// `dz[:, :w] += g W_dec[:w]^T`.
fn inner_levels(
    dev: &Device,
    p: &ParamsView<'_>,
    x: &[f32],
    z: &[f32],
    n: usize,
    widths: &[usize],
    c_r: f64,
) -> Result<InnerLevels> {
    let (d, m) = (p.d_in, p.d_sae);
    if widths.is_empty() {
        return Ok(InnerLevels::default());
    }
    let mut out = InnerLevels {
        loss: 0.0,
        w_dec: vec![0f32; m * d],
        b_dec: vec![0f32; d],
        z: vec![0f32; n * m],
    };
    for &w in widths {
        let zw: Vec<f32> = z
            .chunks_exact(m)
            .flat_map(|r| r[..w].iter().copied())
            .collect();
        let wd = &p.w_dec[..w * d];
        let mut g = matmul(dev, Operand::n(&zw, n, w), Operand::n(wd, w, d))?;
        let scale = (2.0 * c_r) as f32;
        let mut sq = 0f64;
        for (row, xr) in g.chunks_exact_mut(d).zip(x.chunks_exact(d)) {
            for ((v, b), xv) in row.iter_mut().zip(p.b_dec).zip(xr) {
                let e = *v + b - xv;
                sq += (e as f64) * (e as f64);
                *v = scale * e;
            }
        }
        out.loss += c_r * sq;
        let gw = matmul(dev, Operand::t(&zw, n, w), Operand::n(&g, n, d))?;
        for (a, v) in out.w_dec[..w * d].iter_mut().zip(&gw) {
            *a += v;
        }
        for row in g.chunks_exact(d) {
            for (a, v) in out.b_dec.iter_mut().zip(row) {
                *a += v;
            }
        }
        let gz = matmul(dev, Operand::n(&g, n, d), Operand::t(wd, w, d))?;
        for (orow, grow) in out.z.chunks_exact_mut(m).zip(gz.chunks_exact(w)) {
            for (a, v) in orow[..w].iter_mut().zip(grow) {
                *a += v;
            }
        }
    }
    Ok(out)
}

/// Selected `(row, latent, pre-activation)` entries, in row order.
type AuxEntries = Vec<(usize, usize, f32)>;

/// The auxiliary loss's selected entries and its scale (`coef x min(D / (d_in / 2), 1)`), or `None`
/// when it is off or no latent is dead.
fn aux_selection(
    pre: &[f32],
    m: usize,
    d: usize,
    aux: Option<AuxK<'_>>,
) -> Option<(AuxEntries, f64)> {
    let aux = aux.filter(|a| a.coef > 0.0)?;
    let dead: Vec<usize> = (0..m).filter(|&j| aux.dead[j]).collect();
    if dead.is_empty() {
        return None;
    }
    let half = (d / 2).max(1);
    let scale = (dead.len() as f64 / half as f64).min(1.0);
    let k_aux = half.min(dead.len());
    let mut sel = Vec::new();
    for (r, row) in pre.chunks_exact(m).enumerate() {
        for (j, v) in top_dead(row, &dead, k_aux) {
            sel.push((r, j, v));
        }
    }
    Some((sel, aux.coef * scale))
}

/// The auxiliary loss and its gradient contributions.
#[derive(Debug, Default)]
struct AuxPart {
    loss: f64,
    /// `(latent, d_in-vector)` to add to `dW_dec` rows.
    w_dec: Vec<(usize, Vec<f32>)>,
    /// `(row, latent, value)` to add to `g_pre`.
    pre: Vec<(usize, usize, f32)>,
}

/// Loss `coef * scale * c_r * sum (a W_dec - (x - x_hat))^2` over the selected entries `sel`
/// (`coef * scale` given as `cs`), and its gradients (sparse: only selected latents).
fn aux_gradient(
    p: &ParamsView<'_>,
    x: &[f32],
    xhat: &[f32],
    sel: &[(usize, usize, f32)],
    cs: f64,
    c_r: f64,
) -> AuxPart {
    let d = p.d_in;
    let n = x.len() / d.max(1);
    let mut out = AuxPart::default();
    let mut by_latent: std::collections::BTreeMap<usize, Vec<f32>> = Default::default();
    let mut start = 0;
    for r in 0..n {
        let end = start + sel[start..].iter().take_while(|s| s.0 == r).count();
        let row_sel = &sel[start..end];
        start = end;
        // e - r for this row
        let mut diff: Vec<f32> = (0..d).map(|i| xhat[r * d + i] - x[r * d + i]).collect();
        for &(_, j, a) in row_sel {
            for (v, w) in diff.iter_mut().zip(&p.w_dec[j * d..(j + 1) * d]) {
                *v += a * w;
            }
        }
        out.loss += diff.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        let ge: Vec<f32> = diff.iter().map(|v| (2.0 * cs * c_r) as f32 * v).collect();
        for &(_, j, a) in row_sel {
            let w = &p.w_dec[j * d..(j + 1) * d];
            out.pre
                .push((r, j, ge.iter().zip(w).map(|(g, w)| g * w).sum::<f32>()));
            let acc = by_latent.entry(j).or_insert_with(|| vec![0f32; d]);
            for (g, e) in acc.iter_mut().zip(&ge) {
                *g += a * e;
            }
        }
    }
    out.loss *= cs * c_r;
    out.w_dec = by_latent.into_iter().collect();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_k_pass_equals_the_selection() {
        let mut rng = 0x9e37_79b9_u64;
        for case in 0..300usize {
            let len = 1 + case % 97;
            let row: Vec<f32> = (0..len)
                .map(|_| {
                    rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // few distinct values: many ties, negatives and zeros
                    ((rng >> 33) % 9) as f32 - 3.0
                })
                .collect();
            for k in [0, 1, 2, 5, 31, len.saturating_sub(1), len, len + 3] {
                let (mut a, mut b) = (row.clone(), row.clone());
                keep_top_small_k(&mut a, k);
                if k == 0 {
                    assert!(a.iter().all(|v| *v == 0.0));
                    continue;
                }
                keep_top_k_by_selection(&mut b, k);
                assert_eq!(a, b, "row {row:?} k {k}");
            }
        }
    }

    #[test]
    fn top_k_keeps_the_largest_and_breaks_ties_by_index() {
        let z = activate(&[0.5, 3.0, -1.0, 2.0, 2.0, 1.0], 6, Sparsifier::TopK(3));
        assert_eq!(z, vec![0.0, 3.0, 0.0, 2.0, 2.0, 0.0]);
        let z = activate(&[1.0, 1.0, 1.0, -2.0], 4, Sparsifier::TopK(2));
        assert_eq!(z, vec![1.0, 1.0, 0.0, 0.0]);
        // negative pre-activations never fire even when among the top k
        let z = activate(&[-1.0, -2.0, 0.5], 3, Sparsifier::TopK(2));
        assert_eq!(z, vec![0.0, 0.0, 0.5]);
    }

    #[test]
    fn batch_top_k_keeps_n_times_k_over_the_batch() {
        // two rows of 3, k = 1: the 2 largest of the whole batch survive, both may sit in one row
        let z = activate(&[5.0, 4.0, 0.0, 1.0, 0.5, 0.2], 3, Sparsifier::BatchTopK(1));
        assert_eq!(z, vec![5.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
        let th = [1.0, 0.0, 0.3];
        let z = activate(
            &[1.0, 0.1, 0.4, 2.0, -0.1, 0.2],
            3,
            Sparsifier::Threshold(&th),
        );
        assert_eq!(z, vec![0.0, 0.1, 0.4, 2.0, 0.0, 0.0]);
    }

    /// Planted rows: few distinct values (ties), negatives, zeros; `m` not a multiple of 8 or 16.
    fn planted(n: usize, m: usize, seed: u64) -> Vec<f32> {
        let mut rng = seed;
        (0..n * m)
            .map(|_| {
                rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                ((rng >> 33) % 23) as f32 * 0.25 - 3.0
            })
            .collect()
    }

    /// Assert that `st` holds the statistics of the codes `z` (`m` wide), counted by hand from
    /// every positive code.
    fn assert_stats_by_hand(st: &CodeStats, z: &[f32], m: usize, what: &str) {
        let pos: Vec<(usize, f32)> = z
            .iter()
            .enumerate()
            .filter(|(_, v)| **v > 0.0)
            .map(|(i, v)| (i % m, *v))
            .collect();
        let mut fired = vec![0u32; m];
        for &(j, _) in &pos {
            fired[j] += 1;
        }
        assert_eq!((st.active, &st.fired), (pos.len() as u64, &fired), "{what}");
        let l1: f64 = pos.iter().map(|p| p.1 as f64).sum();
        assert!((st.l1 - l1).abs() <= 1e-12 * l1.max(1.0), "{what}");
        let min = pos.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
        assert_eq!(st.min_active, (!pos.is_empty()).then_some(min), "{what}");
    }

    #[test]
    fn codes_in_place_with_statistics_equal_the_definitions() {
        // more rows than one statistics block (STAT_ROWS), so blocks are merged
        let (n, m) = (70, 45);
        let pre = planted(n, m, 7);
        let th: Vec<f32> = (0..m).map(|j| (j % 5) as f32 * 0.3).collect();
        for s in [
            Sparsifier::Relu,
            Sparsifier::TopK(4),
            Sparsifier::BatchTopK(3),
            Sparsifier::Threshold(&th),
        ] {
            // the definitions, element by element
            let want: Vec<f32> = match s {
                Sparsifier::Relu => pre.iter().map(|v| v.max(0.0)).collect(),
                Sparsifier::Threshold(th) => pre
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| if v > th[i % m] && v > 0.0 { v } else { 0.0 })
                    .collect(),
                _ => activate(&pre, m, s),
            };
            let mut z = pre.clone();
            let st = activate_with_stats(&mut z, m, s);
            assert_eq!(z, want, "{s:?}");
            assert_stats_by_hand(&st, &want, m, &format!("{s:?}"));
        }
    }

    #[test]
    fn column_sums_add_each_column_in_row_order() {
        let (rows, cols) = (37, 600); // more than one block of columns, a partial last block
        let a = planted(rows, cols, 11);
        let (s32, s64) = (column_sums(&a, cols), column_sums_f64(&a, cols));
        for c in 0..cols {
            let mut want32 = 0f32;
            let mut want64 = 0f64;
            for r in 0..rows {
                want32 += a[r * cols + c];
                want64 += a[r * cols + c] as f64;
            }
            assert_eq!((s32[c], s64[c]), (want32, want64), "column {c}");
        }
    }

    #[test]
    fn masked_gradient_and_its_column_sums_equal_the_definitions() {
        // 75 rows: two whole blocks of STAT_ROWS rows and a partial one; aux entries in three blocks
        let (n, m, l1) = (75, 40, 0.25f32);
        let g0 = planted(n, m, 5);
        let z: Vec<f32> = planted(n, m, 6).iter().map(|v| v.max(0.0)).collect();
        let aux = [
            (0, 3, 1.5f32),
            (31, 0, -2.0),
            (32, 7, 0.5),
            (74, 39, 3.0),
            (74, 1, 1.0),
        ];
        let mut g = g0.clone();
        let sums = mask_with_column_sums(&mut g, &z, m, l1, &aux);
        let mut want = vec![0f32; n * m];
        for i in 0..n * m {
            want[i] = if z[i] > 0.0 { g0[i] + l1 } else { 0.0 };
        }
        for &(r, j, v) in &aux {
            want[r * m + j] += v;
        }
        assert_eq!(g, want);
        for c in 0..m {
            // blocks of STAT_ROWS rows in row order, then the blocks in order
            let mut total = 0f32;
            for b in (0..n).step_by(STAT_ROWS) {
                let mut part = 0f32;
                for r in b..(b + STAT_ROWS).min(n) {
                    part += want[r * m + c];
                }
                total += part;
            }
            assert_eq!(sums[c], total, "column {c}");
        }
    }

    #[test]
    fn sparse_batch_top_k_equals_the_dense_codes_and_their_statistics() {
        // tie-heavy planted values (steps of 0.25: the threshold value is shared by many entries),
        // several blocks of rows, and a batch with fewer positive values than n x k
        for (n, m, k) in [(70, 45, 3), (33, 200, 2), (40, 64, 1), (5, 9, 8), (3, 4, 4)] {
            let pre = planted(n, m, (n * m * 3 + k) as u64);
            let z = activate(&pre, m, Sparsifier::BatchTopK(k));
            let (zs, st) = sparse_batch_top_k(&pre, m, n * k);
            assert_eq!(zs, SparseRows::from_dense(&z, m), "n {n} m {m} k {k}");
            assert_stats_by_hand(&st, &z, m, &format!("n {n} m {m} k {k}"));
            let dense = code_stats(&z, m);
            assert_eq!(
                (dense.active, &dense.fired, dense.min_active),
                (st.active, &st.fired, st.min_active),
                "n {n} m {m} k {k}"
            );
            assert!((dense.l1 - st.l1).abs() <= 1e-12 * dense.l1.max(1.0));
        }
        // values that differ in their lowest bits only, the largest and the smallest values
        let mut pre: Vec<f32> = (0..64u32)
            .map(|i| f32::from_bits(0x3f80_0000 + i % 5))
            .collect();
        pre[7] = f32::MAX;
        pre[9] = -f32::MAX;
        pre[11] = f32::from_bits(1); // the smallest positive (denormal) value
        pre[12] = 0.0;
        for total in [1, 2, 6, 13, 40, 64] {
            let z = activate(&pre, 16, Sparsifier::BatchTopK(total / 4 + 1));
            let (zs, _) = sparse_batch_top_k(&pre, 16, 4 * (total / 4 + 1));
            assert_eq!(zs, SparseRows::from_dense(&z, 16), "total {total}");
        }
    }

    #[test]
    fn sparse_top_k_equals_the_dense_codes_and_their_statistics() {
        for (n, m, k) in [(70, 45, 3), (33, 200, 32), (5, 9, 8), (40, 64, 1)] {
            let pre = planted(n, m, (n * m + k) as u64);
            let z = activate(&pre, m, Sparsifier::TopK(k));
            let (zs, st) = sparse_top_k(&pre, m, k);
            assert_eq!(zs, SparseRows::from_dense(&z, m), "n {n} m {m} k {k}");
            assert_stats_by_hand(&st, &z, m, &format!("n {n} m {m} k {k}"));
            // and the branch-free statistics of the dense codes agree
            let dense = code_stats(&z, m);
            assert_stats_by_hand(&dense, &z, m, &format!("dense, n {n} m {m} k {k}"));
        }
        let none = code_stats(&[0.0; 12], 4);
        assert_eq!((none.active, none.min_active, none.l1), (0, None, 0.0));
    }

    #[test]
    fn first_not_below_finds_the_first_candidate() {
        let vals = planted(1, 100, 7);
        for t in [-4.0f32, -1.0, 0.0, 1.5, 2.5, 10.0] {
            for from in [0, 1, 15, 16, 17, 63, 99, 100] {
                let want = (from..vals.len())
                    .find(|&j| vals[j] >= t || vals[j].is_nan())
                    .unwrap_or(vals.len());
                assert_eq!(first_not_below(&vals, from, t), want, "t {t} from {from}");
            }
        }
        let mut v = vec![-1.0f32; 40];
        v[33] = f32::NAN;
        assert_eq!(first_not_below(&v, 0, 0.0), 33);
    }
}
