//! The element passes of an SAE training step, vectorised and split over threads without changing
//! results with the thread count.
//!
//! Each loop is compiled for the widest instruction set the CPU has (AVX-512, AVX2 + FMA, or the
//! baseline; [`crate::multiversion`]) and picked at run time. Rust never fuses a
//! multiply and an add, so every element-wise result has the same bits on every instruction set.
//! Sums (dot products, sums of squares) use a fixed number of independent partial sums
//! ([`LANES`]) combined in a fixed order, and long vectors are cut into fixed chunks ([`CHUNK`])
//! summed in order: the rounding depends on the data's length only, never on threads or the CPU.

use rayon::prelude::*;

/// Defines `fn NAME(args) -> R` that runs `BODY(args)` (an `#[inline(always)]` function) compiled
/// for AVX-512 or AVX2 + FMA when the CPU has them (checked at run time, cached by std), and for the
/// baseline otherwise. Rust never contracts `a * b + c` into an FMA, so every version computes the
/// same bits.
#[macro_export]
#[doc(hidden)]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($a:ident : $t:ty),* $(,)?) $(-> $r:ty)? => $body:path) => {
        $(#[$m])*
        $vis fn $name($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                fn v4($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
                fn v3($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                let has_v3 = std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("bmi1")
                    && std::arch::is_x86_feature_detected!("bmi2")
                    && std::arch::is_x86_feature_detected!("lzcnt")
                    && std::arch::is_x86_feature_detected!("popcnt");
                if has_v3
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    // SAFETY: every feature v4 is compiled for was detected on this CPU.
                    return unsafe { v4($($a),*) };
                }
                if has_v3 {
                    // SAFETY: every feature v3 is compiled for was detected on this CPU.
                    return unsafe { v3($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}

/// Independent partial sums of a dot product or a sum of squares (one AVX-512 register of f32).
pub const LANES: usize = 16;
/// Elements per parallel work item of a long vector.
pub const CHUNK: usize = 1 << 14;

/// `sum_i a[i] b[i]` in f32, in [`LANES`] partial sums combined pairwise.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    for (l, (x, y)) in ra.iter().zip(rb).enumerate() {
        acc[l] += x * y;
    }
    combine(acc)
}

/// Pairwise sum of the partial sums (a fixed tree).
#[inline(always)]
pub(crate) fn combine(mut acc: [f32; LANES]) -> f32 {
    let mut w = LANES / 2;
    while w > 0 {
        for l in 0..w {
            acc[l] += acc[l + w];
        }
        w /= 2;
    }
    acc[0]
}

crate::multiversion!(
    /// `sum_i a[i] b[i]`: [`dot`] as a stand-alone call.
    pub fn dot_product(a: &[f32], b: &[f32]) -> f32 => dot
);

crate::multiversion!(fn sum_squares_chunk(v: &[f32]) -> f64 => sum_squares_body);

/// `sum_i v[i]^2` in f64 (eight partial sums), one chunk.
#[inline(always)]
fn sum_squares_body(v: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let c = v.chunks_exact(8);
    let r = c.remainder();
    for x in c {
        for l in 0..8 {
            acc[l] += (x[l] as f64) * (x[l] as f64);
        }
    }
    for (l, x) in r.iter().enumerate() {
        acc[l] += (*x as f64) * (*x as f64);
    }
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

/// `sum_i v[i]^2` in f64: [`CHUNK`]-element chunks summed in parallel, then in order.
pub fn sum_squares(v: &[f32]) -> f64 {
    if v.len() <= CHUNK {
        return sum_squares_chunk(v);
    }
    let parts: Vec<f64> = v.par_chunks(CHUNK).map(sum_squares_chunk).collect();
    parts.iter().sum()
}

/// The Euclidean norm of one short vector (a decoder row): [`sum_squares`] without threads.
pub fn norm(v: &[f32]) -> f64 {
    sum_squares_chunk(v).sqrt()
}

/// Constants of one Adam step (PyTorch's `torch.optim.Adam`, no weight decay, not amsgrad).
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    /// `beta1`.
    pub b1: f32,
    /// `1 - beta1`.
    pub one_b1: f32,
    /// `beta2`.
    pub b2: f32,
    /// `1 - beta2`.
    pub one_b2: f32,
    /// `lr / (1 - beta1^t)`.
    pub step_size: f32,
    /// `1 / sqrt(1 - beta2^t)`.
    pub inv_bc2: f32,
    /// `eps`.
    pub eps: f32,
    /// Factor applied to every gradient first (the clipping coefficient, 1 when not clipped).
    pub grad_scale: f32,
}

/// One Adam update of `p` with gradient `g` and moments `m`, `v` (all the same length), in
/// parallel chunks; element by element the same arithmetic as PyTorch's single-tensor Adam.
pub fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    adam_then(p, g, m, v, s, 1, |_| {});
}

/// [`adam`], then `post` on each `row`-long row of the updated `p` (in order within a chunk of
/// whole rows), right after the chunk's update while it is still in cache: one pass over the
/// parameter instead of two (the decoder's row renormalisation after each step).
pub fn adam_then<F: Fn(&mut [f32]) + Sync>(
    p: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    s: AdamStep,
    row: usize,
    post: F,
) {
    assert!(g.len() == p.len() && m.len() == p.len() && v.len() == p.len());
    let row = row.max(1);
    let chunk = (CHUNK / row).max(1) * row;
    p.par_chunks_mut(chunk)
        .zip(g.par_chunks(chunk))
        .zip(m.par_chunks_mut(chunk))
        .zip(v.par_chunks_mut(chunk))
        .for_each(|(((p, g), m), v)| {
            adam_chunk(p, g, m, v, s);
            for r in p.chunks_mut(row) {
                post(r);
            }
        });
}

crate::multiversion!(
    fn adam_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) => adam_body
);

#[inline(always)]
fn adam_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = g * s.grad_scale; // exact when 1
        *m = s.b1 * *m + s.one_b1 * g;
        *v = s.b2 * *v + s.one_b2 * g * g;
        let denom = v.sqrt() * s.inv_bc2 + s.eps;
        *p -= s.step_size * *m / denom;
    }
}

/// A zero-initialised `len`-element buffer made and filled in parallel: each block of `block`
/// elements is zeroed by the thread that then passes it to `fill(block_index, block)`, so the
/// zero-fill is split over the threads and done where the block is about to be written (a plain
/// `vec![0.0; len]` zeroes it all on the calling thread first). Returns the buffer and each
/// block's result, in block order.
pub fn par_zeroed<T: Send>(
    len: usize,
    block: usize,
    fill: impl Fn(usize, &mut [f32]) -> T + Sync,
) -> (Vec<f32>, Vec<T>) {
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let results = out.spare_capacity_mut()[..len]
        .par_chunks_mut(block.max(1))
        .enumerate()
        .map(|(i, b)| {
            for v in b.iter_mut() {
                v.write(0.0);
            }
            // SAFETY: every element of `b` was initialised just above, and `MaybeUninit<f32>` has
            // the layout of `f32`.
            let b = unsafe { &mut *(b as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) };
            fill(i, b)
        })
        .collect();
    // SAFETY: the blocks cover `0..len`, and each was initialised above.
    unsafe { out.set_len(len) };
    (out, results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let h = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
                (h % 20_001) as f32 / 10_000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn sums_match_f64_loops() {
        for len in [0, 1, 15, 16, 17, 513, CHUNK + 5, 3 * CHUNK + 1] {
            let (a, b) = (data(len, 1), data(len, 2));
            let want: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            // f32 partial sums of len / 16 terms each: rounding grows with their length
            let scale: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as f64 * *y as f64).abs())
                .sum();
            let tol = 1e-6 * scale * (1.0 + (len / LANES) as f64).sqrt() + 1e-12;
            assert!((dot(&a, &b) as f64 - want).abs() < tol, "{len}");
            assert_eq!(dot(&a, &b), dot_product(&a, &b));
            let want: f64 = a.iter().map(|x| (*x as f64) * (*x as f64)).sum();
            assert!(
                (sum_squares(&a) - want).abs() < 1e-9 * want.max(1.0),
                "{len}"
            );
            if len <= CHUNK {
                assert_eq!(norm(&a), sum_squares(&a).sqrt());
            }
        }
    }

    #[test]
    fn adam_then_a_row_pass_equals_adam_and_the_pass_after_it() {
        // rows of 300 (CHUNK is not a multiple of it) over more than one chunk, a partial last row
        let (row, len) = (300, 3 * CHUNK + 123);
        let wave = |s: f32| -> Vec<f32> { (0..len).map(|i| (i as f32 * s).sin()).collect() };
        let (p0, g, m0, v0) = (wave(0.37), wave(1.3), wave(0.11), wave(0.7));
        let v0: Vec<f32> = v0.iter().map(|x| x * x).collect();
        let s = AdamStep {
            b1: 0.9,
            one_b1: 0.1,
            b2: 0.999,
            one_b2: 0.001,
            step_size: 3e-4,
            inv_bc2: 1.2,
            eps: 1e-8,
            grad_scale: 0.8,
        };
        let unit = |r: &mut [f32]| {
            let n = r.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt() as f32;
            r.iter_mut().for_each(|x| *x /= n);
        };
        let (mut p1, mut m1, mut v1) = (p0.clone(), m0.clone(), v0.clone());
        adam(&mut p1, &g, &mut m1, &mut v1, s);
        p1.chunks_mut(row).for_each(unit);
        let (mut p2, mut m2, mut v2) = (p0, m0, v0);
        adam_then(&mut p2, &g, &mut m2, &mut v2, s, row, unit);
        assert!(p1 == p2 && m1 == m2 && v1 == v2);
    }

    #[test]
    fn sums_do_not_depend_on_the_thread_count() {
        let a = data(5 * CHUNK + 77, 3);
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let one = pool(1).install(|| sum_squares(&a));
        let three = pool(3).install(|| sum_squares(&a));
        assert_eq!(one.to_bits(), three.to_bits());
    }

    #[test]
    fn par_zeroed_zeroes_every_block_before_filling_it() {
        // a freed buffer of NaNs first, so that reused memory that was not zeroed shows
        drop(vec![f32::NAN; 10_007]);
        let (v, firsts) = par_zeroed(10_007, 1000, |i, b| {
            assert!(b.iter().all(|&x| x == 0.0), "block {i} not zeroed");
            b[0] = i as f32;
            b.len()
        });
        assert_eq!(v.len(), 10_007);
        assert_eq!(firsts, [vec![1000; 10], vec![7]].concat());
        for (k, x) in v.iter().enumerate() {
            let want = if k % 1000 == 0 {
                (k / 1000) as f32
            } else {
                0.0
            };
            assert_eq!(*x, want, "{k}");
        }
    }

    #[test]
    fn adam_equals_the_scalar_update() {
        let n = 2 * CHUNK + 9;
        let (g, p0) = (data(n, 4), data(n, 5));
        let s = AdamStep {
            b1: 0.9,
            one_b1: 0.1,
            b2: 0.999,
            one_b2: 1.0 - 0.999,
            step_size: 0.01,
            inv_bc2: 1.0 / (1.0f64 - 0.999).sqrt() as f32,
            eps: 1e-8,
            grad_scale: 0.5,
        };
        let (mut p, mut m, mut v) = (p0.clone(), data(n, 6), vec![0.01f32; n]);
        let (m0, v0) = (m.clone(), v.clone());
        adam(&mut p, &g, &mut m, &mut v, s);
        for i in [0, 1, CHUNK, n - 1] {
            let gi = g[i] * 0.5;
            let mi = 0.9 * m0[i] + 0.1 * gi;
            let vi = 0.999 * v0[i] + (1.0 - 0.999) * gi * gi;
            let pi = p0[i] - 0.01 * mi / (vi.sqrt() * s.inv_bc2 + 1e-8);
            assert_eq!((p[i], m[i], v[i]), (pi, mi, vi), "{i}");
        }
    }
}
