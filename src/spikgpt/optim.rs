//! SGD with momentum and weight decay (PyTorch `torch.optim.SGD` semantics), fused over the raw
//! parameter buffers, and the cosine learning-rate schedule.
//!
//! Per parameter: `g = grad + wd * p`; `buf = g` on the first step, else `buf = momentum * buf + g`;
//! `p -= lr * buf`.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

use crate::error::Result;

/// Momentum SGD over named variables.
#[derive(Debug, Clone)]
pub struct Sgd {
    /// Momentum factor.
    pub momentum: f64,
    /// L2 weight decay.
    pub weight_decay: f64,
    /// Momentum buffers by parameter name (empty until the first step).
    pub buffers: BTreeMap<String, Vec<f32>>,
}

impl Sgd {
    /// A fresh optimiser.
    pub fn new(momentum: f64, weight_decay: f64) -> Self {
        Sgd {
            momentum,
            weight_decay,
            buffers: BTreeMap::new(),
        }
    }

    /// One update of every variable that has a gradient in `grads`.
    pub fn step(&mut self, vars: &BTreeMap<String, Var>, grads: &GradStore, lr: f64) -> Result<()> {
        let (mom, wd, lr) = (self.momentum as f32, self.weight_decay as f32, lr as f32);
        for (name, var) in vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let g = g.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            let mut p = var
                .as_tensor()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            match self.buffers.get_mut(name) {
                Some(buf) => {
                    for ((pi, bi), gi) in p.iter_mut().zip(buf.iter_mut()).zip(&g) {
                        let d = gi + wd * *pi;
                        *bi = mom * *bi + d;
                        *pi -= lr * *bi;
                    }
                }
                None => {
                    let mut buf = Vec::with_capacity(p.len());
                    for (pi, gi) in p.iter_mut().zip(&g) {
                        let d = gi + wd * *pi;
                        buf.push(d);
                        *pi -= lr * d;
                    }
                    self.buffers.insert(name.clone(), buf);
                }
            }
            let t = Tensor::from_vec(p, var.dims(), var.device())?.to_dtype(var.dtype())?;
            var.set(&t)?;
        }
        Ok(())
    }
}

/// Cosine annealing to 0 over `epochs` (PyTorch `CosineAnnealingLR(T_max=epochs, eta_min=0)` stepped
/// once per epoch): the rate used in `epoch` (0-based).
pub fn cosine_lr(base: f64, epoch: usize, epochs: usize, cosine: bool) -> f64 {
    if !cosine || epochs == 0 {
        return base;
    }
    0.5 * base * (1.0 + (std::f64::consts::PI * epoch as f64 / epochs as f64).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_hand_computed_torch_sgd() {
        // p0 = 1, grads 0.5 then -0.2, lr 0.1, momentum 0.9, wd 0.01 (torch.optim.SGD by hand):
        // d1 = 0.5 + 0.01 = 0.51; buf = 0.51; p1 = 1 - 0.051 = 0.949
        // d2 = -0.2 + 0.00949 = -0.19051; buf = 0.459 - 0.19051 = 0.26849; p2 = 0.949 - 0.026849 = 0.922151
        let v = Var::new(&[1.0f32], &Device::Cpu).unwrap();
        let mut vars = BTreeMap::new();
        vars.insert("p".to_string(), v.clone());
        let mut opt = Sgd::new(0.9, 0.01);
        for g in [0.5f32, -0.2] {
            let loss = (v.as_tensor() * g as f64).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&vars, &grads, 0.1).unwrap();
        }
        let p = v.as_tensor().to_vec1::<f32>().unwrap()[0];
        assert!((p - 0.922151).abs() < 1e-6, "{p}");
    }

    #[test]
    fn cosine_schedule() {
        assert_eq!(cosine_lr(0.01, 0, 10, true), 0.01);
        assert!((cosine_lr(0.01, 5, 10, true) - 0.005).abs() < 1e-12);
        assert_eq!(cosine_lr(0.01, 7, 10, false), 0.01);
    }
}
