//! The SpikGPT network: expansion to m tokens x T steps, spiking transformer blocks, pooling, classifier.
//!
//! ```text
//! E [B, k] -> Linear(k -> d) -> BN -> LIF (constant current over T)   spikes [T, B, m, d]
//! repeat blocks:  x = x + SSA(x);  x = x + MLP(x)                     MLP = LIF(BN(fc2(LIF(BN(fc1 x)))))
//! mean over tokens, then time -> [B, d] -> Linear(d -> C) = logits
//! ```
//!
//! Token copies: all m tokens of a cell start identical and every layer is token-wise except the
//! attention, where each token sums `(q_i . k_j) v_j` over all tokens. While the copies are identical
//! (always at inference, and in training without dropout) each token's attention input is
//! `m (q . k) v`, so the pass computes one token and scales the product by m: the same numbers as
//! m physical tokens (the products are integer spike counts) at 1/m of the cost. Training with
//! dropout draws a separate mask per token, which makes the copies differ from the first dropout on:
//! in a one-block model (the paper's) everything before it still runs on one token and the rest is
//! computed per token with sparse corrections (`super::token_tail`), in bounded memory; deeper
//! models, CUDA and the smooth gradient-check mode run all m tokens.

use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::attention::SpikingSelfAttention;
use super::config::ModelConfig;
use super::layers::{dropout, Linear, LinearBnLif, Pass};
use super::lif::FireMode;
use super::params::ParamStore;
use crate::error::{Error, Result};

/// The spiking MLP: `LIF(BN(fc2(drop(LIF(BN(fc1 x))))))`, dropout after each neuron layer.
#[derive(Debug, Clone)]
pub struct SpikingMlp {
    /// d -> ratio * d.
    pub fc1: LinearBnLif,
    /// ratio * d -> d.
    pub fc2: LinearBnLif,
    /// Dropout probability (training only).
    pub dropout: f64,
}

impl SpikingMlp {
    /// Apply to `[T, B, N, d]`.
    pub fn forward(&self, x: &Tensor, pass: &mut Pass<'_>) -> Result<Tensor> {
        let h = self.fc1.forward(x, pass)?;
        let h = dropout(&h, self.dropout, pass)?;
        let o = self.fc2.forward(&h, pass)?;
        dropout(&o, self.dropout, pass)
    }
}

/// One transformer block.
#[derive(Debug, Clone)]
pub struct Block {
    /// Spiking self-attention.
    pub attn: SpikingSelfAttention,
    /// Spiking MLP.
    pub mlp: SpikingMlp,
}

/// The SpikGPT classifier.
#[derive(Debug, Clone)]
pub struct SpikGpt {
    /// Architecture.
    pub config: ModelConfig,
    /// Number of classes.
    pub n_classes: usize,
    /// Parameters and buffers.
    pub params: ParamStore,
    /// Input layer k -> d.
    pub embed: LinearBnLif,
    /// Transformer blocks.
    pub blocks: Vec<Block>,
    /// Classifier d -> C.
    pub head: Linear,
    /// Compute one token for m identical copies when that is exact (default true; false runs all m
    /// tokens, for checks and benchmarks).
    pub collapse_identical_tokens: bool,
}

impl SpikGpt {
    /// Build a model with seeded initialisation (same seed, same weights).
    pub fn new(config: &ModelConfig, n_classes: usize, device: &Device, seed: u64) -> Result<Self> {
        config.validate()?;
        if n_classes < 2 {
            return Err(Error::invalid(format!(
                "a classifier needs at least 2 classes, got {n_classes}"
            )));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut store = ParamStore::new(device);
        let c = config;
        let embed = LinearBnLif::new(
            &mut store,
            "embed",
            c.input_dim,
            c.width,
            c.lif,
            c.bn_eps,
            c.bn_momentum,
            &mut rng,
        )?;
        let mut blocks = Vec::with_capacity(c.blocks);
        for i in 0..c.blocks {
            let p = format!("blocks.{i}");
            let attn = SpikingSelfAttention::new(&mut store, &format!("{p}.attn"), c, &mut rng)?;
            let hidden = c.width * c.mlp_ratio;
            let fc1 = LinearBnLif::new(
                &mut store,
                &format!("{p}.mlp.fc1"),
                c.width,
                hidden,
                c.lif,
                c.bn_eps,
                c.bn_momentum,
                &mut rng,
            )?;
            let fc2 = LinearBnLif::new(
                &mut store,
                &format!("{p}.mlp.fc2"),
                hidden,
                c.width,
                c.lif,
                c.bn_eps,
                c.bn_momentum,
                &mut rng,
            )?;
            blocks.push(Block {
                attn,
                mlp: SpikingMlp {
                    fc1,
                    fc2,
                    dropout: c.dropout,
                },
            });
        }
        let head = Linear::new(&mut store, "head", c.width, n_classes, &mut rng)?;
        Ok(SpikGpt {
            config: config.clone(),
            n_classes,
            params: store,
            embed,
            blocks,
            head,
            collapse_identical_tokens: true,
        })
    }

    /// Whether this pass may compute one token per cell in place of m identical copies.
    pub fn collapses_tokens(&self, train: bool) -> bool {
        self.collapse_identical_tokens && (!train || self.config.dropout == 0.0)
    }

    /// Whether this training pass computes the last MLP's per-token dropout with the bounded-memory
    /// `token_tail` (one token per cell before it; CPU, binary spikes, one block).
    pub fn uses_token_tail(&self, pass: &Pass<'_>) -> bool {
        self.collapse_identical_tokens
            && pass.train
            && self.config.dropout > 0.0
            && pass.rng.is_some()
            && pass.fire == FireMode::Spike
            && self.blocks.len() == 1
            && self.params.device.is_cpu()
    }

    /// Logits `[B, C]` for embeddings `[B, k]`.
    pub fn forward(&self, x: &Tensor, pass: &mut Pass<'_>) -> Result<Tensor> {
        let (b, k) = x.dims2()?;
        if k != self.config.input_dim {
            return Err(Error::invalid(format!(
                "embeddings have {k} dimensions, the model expects {}",
                self.config.input_dim
            )));
        }
        let cfg = &self.config;
        let t = cfg.time_steps;
        let tail = self.uses_token_tail(pass);
        let (n, mult) = if tail || self.collapses_tokens(pass.train) {
            (1, cfg.tokens)
        } else {
            (cfg.tokens, 1)
        };
        pass.multiplicity = mult;
        // The input current is the same at every step and token: Linear + BN once per cell
        // (BatchNorm statistics over T*B*m identical rows equal those over B rows).
        let cur = self.embed.linear.forward(x, pass)?;
        if let Some(stats) = pass.stats.as_deref_mut() {
            // The Linear runs on every token at every step in the model as specified.
            if let Some(last) = stats.linears.last_mut() {
                last.rows *= t as f64;
            }
        }
        let cur = self
            .embed
            .bn
            .forward(&cur, pass.train, t * b * cfg.tokens)?;
        let d = cur.dim(1)?;
        let cur = cur
            .reshape((1, b, 1, d))?
            .broadcast_as((t, b, n, d))?
            .contiguous()?;
        let mut s = super::lif::lif_multistep(&cur, &self.embed.lif, pass.fire)?;
        if let Some(stats) = pass.stats.as_deref_mut() {
            stats.record_spikes("embed", &s)?;
        }
        let mut tail_pooled = None;
        for block in &self.blocks {
            s = (&s + block.attn.forward(&s, pass)?)?;
            if tail {
                // The tokens differ from here on: pooled dropout tail over the m copies.
                let h = block.mlp.fc1.forward(&s, pass)?;
                tail_pooled = Some(super::token_tail::mlp_tail(
                    &h,
                    &block.mlp.fc2,
                    block.mlp.dropout,
                    cfg.tokens,
                    pass,
                )?);
            } else {
                s = (&s + block.mlp.forward(&s, pass)?)?;
            }
        }
        // Mean over tokens, then time.
        let mut pooled = s.mean(2)?.mean(0)?;
        if let Some(q) = tail_pooled {
            pooled = (pooled + q)?;
        }
        pass.multiplicity = 1;
        let logits = self.head.forward(&pooled, pass)?;
        if let Some(stats) = pass.stats.as_deref_mut() {
            stats.cells += b;
        }
        Ok(logits)
    }
}
