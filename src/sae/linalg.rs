//! Dense matrix products on row-major `f32` buffers: on the CPU straight through a matrix kernel
//! (no copies of the operands into tensors and back), on other devices through candle.
//!
//! On the CPU, products whose left operand is used as stored (the SAE's encoder, decoder and
//! decoder-transposed products) go to faer's kernel, 5-20 % faster than `gemm` on those shapes on
//! an AVX2 machine; products with a transposed left operand (the weight gradients, contracting over
//! the batch) go to the `gemm` crate, which candle's CPU matmul also calls and which is faster there.
//! Both split work over output blocks only and accumulate every output element over `k` in a fixed
//! order (faer: blocks of 512 of `k`), so results do not depend on `--threads`; products with a
//! side of 16 or less stay with `gemm` (faer splits `k` over threads for a single row or column, and
//! takes another kernel for tiny products).

use candle_core::{Device, Tensor};

use crate::error::Result;

/// A row-major matrix operand, optionally used transposed.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    /// Row-major values of the stored (untransposed) matrix.
    pub data: &'a [f32],
    /// Stored rows.
    pub rows: usize,
    /// Stored columns.
    pub cols: usize,
    /// Use the transpose.
    pub t: bool,
}

impl<'a> Operand<'a> {
    /// The stored matrix as is.
    pub fn n(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Operand {
            data,
            rows,
            cols,
            t: false,
        }
    }
    /// The transpose of the stored matrix.
    pub fn t(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Operand {
            data,
            rows,
            cols,
            t: true,
        }
    }
    fn tensor(&self, dev: &Device) -> Result<Tensor> {
        let t = Tensor::from_slice(self.data, (self.rows, self.cols), dev)?;
        Ok(if self.t { t.t()? } else { t })
    }
}

impl Operand<'_> {
    /// Rows and columns of the operand as used (after the optional transpose).
    fn shape(&self) -> (usize, usize) {
        if self.t {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    /// (column stride, row stride) of the operand as used.
    fn strides(&self) -> (isize, isize) {
        let c = self.cols as isize;
        if self.t {
            (c, 1)
        } else {
            (1, c)
        }
    }
}

/// `a @ b` as a row-major buffer.
pub fn matmul(dev: &Device, a: Operand<'_>, b: Operand<'_>) -> Result<Vec<f32>> {
    if dev.is_cpu() {
        return Ok(cpu_matmul(a, b));
    }
    let c = a.tensor(dev)?.matmul(&b.tensor(dev)?)?;
    Ok(c.flatten_all()?.to_vec1::<f32>()?)
}

/// `a @ b` on the CPU through faer or `gemm` (see the module notes), row-major `[m, n]`.
///
/// Panics when the shapes disagree (a programming error, not bad input).
fn cpu_matmul(a: Operand<'_>, b: Operand<'_>) -> Vec<f32> {
    let (m, k) = a.shape();
    let (kb, n) = b.shape();
    assert!(
        k == kb && a.data.len() == a.rows * a.cols && b.data.len() == b.rows * b.cols,
        "matmul shapes {m}x{k} @ {kb}x{n}"
    );
    if m == 0 || n == 0 || k == 0 {
        return vec![0f32; m * n];
    }
    let threads = rayon::current_num_threads();
    if !a.t && m > FAER_MIN_SIDE && n > FAER_MIN_SIDE && k > FAER_MIN_SIDE {
        return faer_matmul(a, b, threads);
    }
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    let ((a_cs, a_rs), (b_cs, b_rs)) = (a.strides(), b.strides());
    // The output is not zero-filled first: with `read_dst` false, gemm writes every one of its
    // `m x n` elements without reading them (a zero-fill would be one more serial pass over a
    // buffer of the product's size, a few percent of an SAE step).
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: the pointers cover `m x k`, `k x n` and `m x n` elements with the given strides
    // (asserted above); `out` has capacity for `m x n` elements and does not alias the operands.
    // gemm writes all `m x n` output elements (read_dst false, m, n, k > 0), after which the
    // length is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
        out.set_len(m * n);
    }
    out
}

/// Products with every side longer than this go to faer when their left operand is not transposed:
/// faer multiplies matrix-vector products (one row or column) by splitting `k` over threads, and
/// products of at most 16 x 16 x 16 with a different kernel; neither is reached above this size.
const FAER_MIN_SIDE: usize = 16;

/// `a @ b` through faer's matrix kernel, row-major `[m, n]` (`a` not transposed).
fn faer_matmul(a: Operand<'_>, b: Operand<'_>, threads: usize) -> Vec<f32> {
    let (m, n) = (a.rows, b.shape().1);
    let lhs = faer::MatRef::from_row_major_slice(a.data, a.rows, a.cols);
    let rhs = faer::MatRef::from_row_major_slice(b.data, b.rows, b.cols);
    let rhs = if b.t { rhs.transpose() } else { rhs };
    let par = if threads > 1 {
        faer::Par::rayon(threads)
    } else {
        faer::Par::Seq
    };
    // Not zero-filled first, as for gemm: with `Accum::Replace` faer writes every output element
    // before it reads any (the test `products_write_every_output_element` checks it).
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: `out` has capacity for `m x n` elements laid out row-major (row stride `n`, column
    // stride 1) and does not alias the operands; faer writes all of them (Accum::Replace), after
    // which the length is set.
    unsafe {
        let dst = faer::MatMut::from_raw_parts_mut(out.as_mut_ptr(), m, n, n as isize, 1);
        faer::linalg::matmul::matmul(dst, faer::Accum::Replace, lhs, rhs, 1.0f32, par);
        out.set_len(m * n);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_with_transposes_match_loops() {
        // a: 2x3, b: 3x2
        let a = [1., 2., 3., 4., 5., 6.];
        let b = [7., 8., 9., 10., 11., 12.];
        let c = matmul(&Device::Cpu, Operand::n(&a, 2, 3), Operand::n(&b, 3, 2)).unwrap();
        assert_eq!(c, vec![58., 64., 139., 154.]);
        // a^T (3x2) @ a (2x3)
        let c = matmul(&Device::Cpu, Operand::t(&a, 2, 3), Operand::n(&a, 2, 3)).unwrap();
        assert_eq!(c, vec![17., 22., 27., 22., 29., 36., 27., 36., 45.]);
        // a @ a^T
        let c = matmul(&Device::Cpu, Operand::n(&a, 2, 3), Operand::t(&a, 2, 3)).unwrap();
        assert_eq!(c, vec![14., 32., 32., 77.]);
    }

    #[test]
    fn products_write_every_output_element() {
        // The output buffer is not zero-filled before gemm writes it. Freed buffers of NaN just
        // before each product make reused memory that gemm read (rather than overwrote) show as
        // NaN; shapes for faer's kernel (edge tiles, more than one block of 512 of k), gemm's
        // matrix-vector paths and its small-product path.
        for (m, k, n) in [
            (64, 96, 80),
            (1, 300, 129),
            (129, 300, 1),
            (7, 5, 9),
            (512, 40, 2048),
            (37, 1100, 45),
        ] {
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
            for _ in 0..4 {
                drop(vec![f32::NAN; m * n]);
            }
            let c = matmul(&Device::Cpu, Operand::n(&a, m, k), Operand::n(&b, k, n)).unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f32 = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
                    assert_eq!(c[i * n + j], want, "{m}x{k}x{n} at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn products_match_f64_loops_on_any_thread_count_and_batch() {
        // both kernels (faer: left operand as stored; gemm: transposed), with blocking (k above
        // one block of 512) and threads; every transpose combination
        let (m, k, n) = (300, 700, 257);
        let gen = |len: usize, s: u32| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(s) % 1000) as f32 / 500.0
                        - 1.0
                })
                .collect()
        };
        let (a, b) = (gen(m * k, 1), gen(k * n, 2));
        let pool = |t: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap()
        };
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let oa = if ta {
                Operand::t(&a, k, m)
            } else {
                Operand::n(&a, m, k)
            };
            let ob = if tb {
                Operand::t(&b, n, k)
            } else {
                Operand::n(&b, k, n)
            };
            let ours = pool(1).install(|| matmul(&Device::Cpu, oa, ob).unwrap());
            for t in [2, 3] {
                let other = pool(t).install(|| matmul(&Device::Cpu, oa, ob).unwrap());
                assert!(
                    ours == other,
                    "transposes {ta} {tb}: 1 and {t} threads differ"
                );
            }
            let at = |r: usize, c: usize| if ta { a[c * m + r] } else { a[r * k + c] } as f64;
            let bt = |r: usize, c: usize| if tb { b[c * k + r] } else { b[r * n + c] } as f64;
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
                    let got = ours[i * n + j] as f64;
                    assert!(
                        (got - want).abs() < 1e-3,
                        "{ta} {tb} at {i},{j}: {got} vs {want}"
                    );
                }
            }
            // the first rows of a stored left operand, multiplied on their own, give the same
            // bits (a batch's rows do not depend on the batch they are in)
            if !ta {
                let rows = 40;
                let part = pool(2).install(|| {
                    matmul(&Device::Cpu, Operand::n(&a[..rows * k], rows, k), ob).unwrap()
                });
                assert!(
                    part[..] == ours[..rows * n],
                    "transposes {ta} {tb}: rows differ"
                );
            }
        }
    }
}
