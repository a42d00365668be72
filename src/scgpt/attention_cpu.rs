//! scGPT's multi-head self-attention on the CPU in f32, fused per block of query rows.
//!
//! For each cell, head and tile of [`QUERY_TILE`] query positions: the scores `q k^T / sqrt(hd)`
//! against the cell's own real tokens (a `tile x len` product, straight through `gemm`), the
//! softmax of each row with a vectorised `exp`, then the tile's output `p v` written into the
//! head's columns of the result. The `heads x len x len` probabilities are never materialised
//! (at most `tile x len` floats per task, which stay in cache), and the query tiles of all cells
//! run in parallel, each on one thread: every output element is computed by one task in a fixed
//! order, so results do not depend on the thread count. Pad query rows are zero, as in
//! [`crate::scgpt::model`]'s general path, which this equals to float rounding (tested there).

use rayon::prelude::*;

/// Query positions per task.
pub const QUERY_TILE: usize = 192;

/// Attention of the packed projections `qkv` (`[b, l, 3, heads, hd]` row-major, as the in-projection
/// returns them) for cells of real lengths `lengths`; returns `[b * l, heads * hd]`.
pub fn attention(
    qkv: &[f32],
    b: usize,
    l: usize,
    heads: usize,
    hd: usize,
    lengths: &[usize],
) -> Vec<f32> {
    let d = heads * hd;
    assert_eq!(
        qkv.len(),
        b * l * 3 * d,
        "qkv of [{b}, {l}, 3, {heads}, {hd}]"
    );
    assert_eq!(lengths.len(), b, "one length per cell");
    let mut out = vec![0f32; b * l * d];
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (cell, rows) in out.chunks_mut((l * d).max(1)).enumerate() {
        let len = lengths[cell].min(l);
        for (t, tile) in rows[..len * d].chunks_mut(QUERY_TILE * d).enumerate() {
            tasks.push((cell, t * QUERY_TILE, tile));
        }
    }
    let scale = 1.0 / (hd as f32).sqrt();
    tasks.into_par_iter().for_each(|(cell, first, tile)| {
        let len = lengths[cell].min(l);
        let rows = tile.len() / d;
        let mut scores = vec![0f32; rows * len];
        let base = cell * l * 3 * d;
        for h in 0..heads {
            let q = base + first * 3 * d + h * hd;
            let k = base + d + h * hd;
            let v = base + 2 * d + h * hd;
            // SAFETY (both products): every pointer and stride stays inside `qkv`, `scores` or
            // `tile`: rows `first..first + rows` and `0..len` of this cell, columns of head `h`.
            unsafe {
                gemm::gemm(
                    rows,
                    len,
                    hd,
                    scores.as_mut_ptr(),
                    1,
                    len as isize,
                    false,
                    qkv[q..].as_ptr(),
                    1,
                    3 * d as isize,
                    qkv[k..].as_ptr(),
                    3 * d as isize,
                    1,
                    0.0,
                    scale,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            softmax_rows(&mut scores, len);
            unsafe {
                gemm::gemm(
                    rows,
                    hd,
                    len,
                    tile[h * hd..].as_mut_ptr(),
                    1,
                    d as isize,
                    false,
                    scores.as_ptr(),
                    1,
                    len as isize,
                    qkv[v..].as_ptr(),
                    1,
                    3 * d as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    });
    out
}

crate::multiversion!(
    /// `softmax_in_place` of every `len`-long row of `x`.
    pub fn softmax_rows(x: &mut [f32], len: usize) => softmax_rows_body
);

#[inline(always)]
fn softmax_rows_body(x: &mut [f32], len: usize) {
    for row in x.chunks_exact_mut(len.max(1)) {
        softmax_in_place(row);
    }
}

/// `x <- softmax(x)`: `exp(x - max)` (vectorised [`exp`]) divided by its sum (summed in f32 in
/// sixteen partial sums).
#[inline(always)]
pub fn softmax_in_place(x: &mut [f32]) {
    {
        let mut lanes = [f32::NEG_INFINITY; 16];
        for ch in x.chunks(16) {
            for (m, &v) in lanes.iter_mut().zip(ch) {
                *m = m.max(v);
            }
        }
        let max = lanes.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        for v in x.iter_mut() {
            *v = exp(*v - max);
        }
        let mut acc = [0f32; 16];
        let c = x.chunks_exact(16);
        for (l, v) in c.remainder().iter().enumerate() {
            acc[l] += v;
        }
        for ch in c {
            for l in 0..16 {
                acc[l] += ch[l];
            }
        }
        let inv = 1.0 / acc.iter().sum::<f32>();
        for v in x.iter_mut() {
            *v *= inv;
        }
    }
}

/// `e^x` for `x <= 0` (and moderate positive `x`) to about 2 ulp, in plain arithmetic that the
/// compiler vectorises: `x = n ln 2 + r`, `|r| <= ln 2 / 2`, Cephes' degree-6 polynomial for `e^r`,
/// and `2^n` built from the exponent bits. Below `-87.3` the result is 0 (glibc's `expf` gives
/// denormals there, under 1e-38 relative to the row's largest weight, which is 1).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding and subtracting it rounds to an integer
    let under = x < -87.3;
    let x = x.clamp(-87.3, 88.3);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * r2 + r + 1.0;
    let two_n = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if under {
        0.0
    } else {
        y * two_n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_standard_library() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 88.0 * i as f32 / 200_000.0;
            let (got, want) = (exp(x) as f64, (x as f64).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 3.0 * f32::EPSILON as f64, "relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
    }

    #[test]
    fn softmax_sums_to_one_and_matches_f64() {
        let x: Vec<f32> = (0..37)
            .map(|i| ((i * 7919) % 101) as f32 / 9.0 - 5.0)
            .collect();
        let mut s = x.clone();
        softmax_in_place(&mut s);
        let max = x
            .iter()
            .cloned()
            .fold(f64::NEG_INFINITY, |m, v| m.max(v as f64));
        let z: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        for (a, &v) in s.iter().zip(&x) {
            let want = (v as f64 - max).exp() / z;
            assert!(
                (*a as f64 - want).abs() < 1e-7 * want.max(1e-3),
                "{a} vs {want}"
            );
        }
    }

    /// Against a plain f64 loop: two cells (one padded), two heads, lengths across a tile edge.
    #[test]
    fn attention_matches_a_plain_loop() {
        let (b, l, heads, hd) = (2, QUERY_TILE + 9, 2, 5);
        let lengths = [QUERY_TILE + 9, 7];
        let d = heads * hd;
        let qkv: Vec<f32> = (0..b * l * 3 * d)
            .map(|i| (((i as u64 * 2_654_435_761) % 1_000) as f32 / 250.0) - 2.0)
            .collect();
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let got = pool(1).install(|| attention(&qkv, b, l, heads, hd, &lengths));
        assert_eq!(
            got,
            pool(3).install(|| attention(&qkv, b, l, heads, hd, &lengths))
        );
        let at = |c: usize, p: usize, part: usize, h: usize, e: usize| {
            qkv[(((c * l + p) * 3 + part) * heads + h) * hd + e] as f64
        };
        for (c, &len) in lengths.iter().enumerate() {
            for p in 0..l {
                for h in 0..heads {
                    let want: Vec<f64> = if p >= len {
                        vec![0.0; hd]
                    } else {
                        let s: Vec<f64> = (0..len)
                            .map(|j| {
                                (0..hd)
                                    .map(|e| at(c, p, 0, h, e) * at(c, j, 1, h, e))
                                    .sum::<f64>()
                                    / (hd as f64).sqrt()
                            })
                            .collect();
                        let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
                        (0..hd)
                            .map(|e| {
                                (0..len)
                                    .map(|j| (s[j] - m).exp() / z * at(c, j, 2, h, e))
                                    .sum()
                            })
                            .collect()
                    };
                    for e in 0..hd {
                        let g = got[(c * l + p) * d + h * hd + e] as f64;
                        assert!(
                            (g - want[e]).abs() < 1e-5,
                            "cell {c} pos {p} head {h}: {g} vs {}",
                            want[e]
                        );
                    }
                }
            }
        }
    }
}
