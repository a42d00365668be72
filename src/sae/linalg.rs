//! Dense matrix products on row-major `f32` buffers, run by candle on the runtime's device.
//!
//! candle's CPU matmul (the `gemm` crate) splits work over output blocks only, so every output element
//! is accumulated in the same order whatever the thread count: results do not depend on `--threads`.

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

/// `a @ b` as a row-major buffer.
pub fn matmul(dev: &Device, a: Operand<'_>, b: Operand<'_>) -> Result<Vec<f32>> {
    let c = a.tensor(dev)?.matmul(&b.tensor(dev)?)?;
    Ok(c.flatten_all()?.to_vec1::<f32>()?)
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
}
