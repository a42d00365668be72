//! Spikformer-style multi-head spiking self-attention (SSA).
//!
//! `q, k, v = LIF(BN(Linear(x)))`; per head `y = (q k^T) v * scale` with no softmax (q, k, v are
//! binary, so the products are integer counts); `y = LIF_attn(y)` (threshold 0.5);
//! `out = LIF(BN(Linear_proj(y)))`. The product is evaluated as `q (k^T v)` when the token count exceeds
//! the head dimension: the same integers, `O(N d^2)` instead of `O(N^2 d)`.

use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

use super::activity::AttentionRecord;
use super::config::ModelConfig;
use super::layers::{LinearBnLif, Pass};
use super::lif::lif_multistep;
use super::params::ParamStore;
use crate::error::Result;

/// One SSA layer.
#[derive(Debug, Clone)]
pub struct SpikingSelfAttention {
    /// Name prefix (`blocks.0.attn`).
    pub name: String,
    /// Query unit.
    pub q: LinearBnLif,
    /// Key unit.
    pub k: LinearBnLif,
    /// Value unit.
    pub v: LinearBnLif,
    /// Output projection unit.
    pub proj: LinearBnLif,
    /// Number of heads.
    pub heads: usize,
    /// Scale of `q k^T v`.
    pub scale: f64,
    /// Neuron after the product.
    pub attn_lif: super::config::LifConfig,
}

impl SpikingSelfAttention {
    /// Create the layer's parameters under `name`.
    pub fn new(
        store: &mut ParamStore,
        name: &str,
        cfg: &ModelConfig,
        rng: &mut ChaCha8Rng,
    ) -> Result<Self> {
        let d = cfg.width;
        let unit = |store: &mut ParamStore, part: &str, rng: &mut ChaCha8Rng| {
            LinearBnLif::new(
                store,
                &format!("{name}.{part}"),
                d,
                d,
                cfg.lif,
                cfg.bn_eps,
                cfg.bn_momentum,
                rng,
            )
        };
        Ok(SpikingSelfAttention {
            name: name.to_string(),
            q: unit(store, "q", rng)?,
            k: unit(store, "k", rng)?,
            v: unit(store, "v", rng)?,
            proj: unit(store, "proj", rng)?,
            heads: cfg.heads,
            scale: cfg.attn_scale,
            attn_lif: cfg.attn_lif(),
        })
    }

    /// Apply to the residual stream `[T, B, N, d]`, returning `[T, B, N, d]` spikes.
    pub fn forward(&self, x: &Tensor, pass: &mut Pass<'_>) -> Result<Tensor> {
        let (t, b, n, d) = x.dims4()?;
        let h = self.heads;
        let dh = d / h;
        let split = |s: Tensor| -> Result<Tensor> {
            // [T*B*H, N, dh]: candle's CPU matmul takes at most two batch axes.
            Ok(s.reshape((t, b, n, h, dh))?
                .permute((0, 1, 3, 2, 4))?
                .contiguous()?
                .reshape((t * b * h, n, dh))?)
        };
        let q = self.q.forward(x, pass)?;
        let k = self.k.forward(x, pass)?;
        let v = self.v.forward(x, pass)?;
        if let Some(stats) = pass.stats.as_deref_mut() {
            stats.attention.push(AttentionRecord {
                name: self.name.clone(),
                groups: (t * b * h) as f64,
                tokens: n * pass.multiplicity,
                head_dim: dh,
                q_rate: super::lif::firing_rate(&q)?,
                v_rate: super::lif::firing_rate(&v)?,
            });
        }
        let (q, k, v) = (split(q)?, split(k)?, split(v)?);
        // Each of the N computed tokens stands for `multiplicity` identical ones.
        let kt = k.transpose(1, 2)?.contiguous()?;
        let y = if n <= dh {
            q.matmul(&kt)?.matmul(&v)?
        } else {
            q.matmul(&kt.matmul(&v)?)?
        };
        let y = y.affine(self.scale * pass.multiplicity as f64, 0.0)?;
        let y = y
            .reshape((t, b, h, n, dh))?
            .permute((0, 1, 3, 2, 4))?
            .contiguous()?
            .reshape((t, b, n, d))?;
        let s = lif_multistep(&y, &self.attn_lif, pass.fire)?;
        if let Some(stats) = pass.stats.as_deref_mut() {
            stats.record_spikes(&format!("{}.attn_lif", self.name), &s)?;
        }
        self.proj.forward(&s, pass)
    }
}
