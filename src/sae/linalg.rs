//! Dense matrix products on row-major `f32` buffers: on the CPU straight through the `gemm` crate
//! (the kernel candle's CPU matmul calls, here without copying the operands into tensors and back),
//! on other devices through candle.
//!
//! `gemm` splits work over output blocks only, so every output element is accumulated in the same
//! order whatever the thread count: results do not depend on `--threads`, and equal candle's CPU
//! matmul bit for bit (same call, same parallelism).

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

/// `a @ b` on the CPU through `gemm`, row-major `[m, n]`.
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
        // NaN; shapes for gemm's main kernel, its matrix-vector paths and its small-product path.
        for (m, k, n) in [
            (64, 96, 80),
            (1, 300, 129),
            (129, 300, 1),
            (7, 5, 9),
            (512, 40, 2048),
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
    fn direct_products_equal_candle_bit_for_bit() {
        // realistic sizes (the gemm kernels with blocking and threads), every transpose combination
        let (m, k, n) = (37, 300, 129);
        let gen = |len: usize, s: u32| -> Vec<f32> {
            (0..len)
                .map(|i| {
                    ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(s) % 1000) as f32 / 500.0
                        - 1.0
                })
                .collect()
        };
        let (a, b) = (gen(m * k, 1), gen(k * n, 2));
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
            let ours = matmul(&Device::Cpu, oa, ob).unwrap();
            let candle = oa
                .tensor(&Device::Cpu)
                .unwrap()
                .matmul(&ob.tensor(&Device::Cpu).unwrap())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(ours, candle, "transposes {ta} {tb}");
            // and against plain f64 loops
            for i in [0, m / 2, m - 1] {
                for j in [0, n / 3, n - 1] {
                    let at =
                        |r: usize, c: usize| if ta { a[c * m + r] } else { a[r * k + c] } as f64;
                    let bt =
                        |r: usize, c: usize| if tb { b[c * k + r] } else { b[r * n + c] } as f64;
                    let want: f64 = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
                    assert!((ours[i * n + j] as f64 - want).abs() < 1e-4, "{i} {j}");
                }
            }
        }
    }
}
