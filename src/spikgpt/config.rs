//! Model and training configuration with the SpikGPT paper's defaults.
//!
//! Every number of the paper (m = 300 tokens, T = 4 steps, tau = 2, SGD lr 0.01, momentum 0.9, weight
//! decay 1e-4, cosine decay, 10 epochs, batch 128, dropout 0.1, a 70/30 split) is a field here; serde
//! fills missing fields with these defaults so old `config.json` files keep loading.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Surrogate gradient used in place of the Heaviside step's derivative.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Surrogate {
    /// SpikingJelly `surrogate.Sigmoid(alpha)`: derivative `alpha * s * (1 - s)`, `s = sigmoid(alpha x)`.
    Sigmoid {
        /// Steepness (SpikingJelly default 4).
        alpha: f64,
    },
    /// SpikingJelly `surrogate.ATan(alpha)`: derivative `alpha / (2 (1 + (pi/2 alpha x)^2))`.
    Atan {
        /// Steepness (SpikingJelly default 2).
        alpha: f64,
    },
}

impl Default for Surrogate {
    fn default() -> Self {
        Surrogate::Sigmoid { alpha: 4.0 }
    }
}

impl Surrogate {
    /// The smooth primitive `sg(x)` whose derivative the surrogate uses.
    pub fn primitive(&self, x: f64) -> f64 {
        match *self {
            Surrogate::Sigmoid { alpha } => 1.0 / (1.0 + (-alpha * x).exp()),
            Surrogate::Atan { alpha } => {
                (std::f64::consts::FRAC_PI_2 * alpha * x).atan() / std::f64::consts::PI + 0.5
            }
        }
    }

    /// The surrogate derivative `sg'(x)`.
    pub fn derivative(&self, x: f64) -> f64 {
        match *self {
            Surrogate::Sigmoid { alpha } => {
                let s = 1.0 / (1.0 + (-alpha * x).exp());
                alpha * s * (1.0 - s)
            }
            Surrogate::Atan { alpha } => {
                let u = std::f64::consts::FRAC_PI_2 * alpha * x;
                alpha / (2.0 * (1.0 + u * u))
            }
        }
    }

    /// Parse `sigmoid`, `sigmoid:4`, `atan`, `atan:2`.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, alpha) = match s.split_once(':') {
            Some((n, a)) => (
                n,
                Some(a.parse::<f64>().map_err(|_| {
                    Error::invalid(format!("--surrogate {s}: alpha '{a}' is not a number"))
                })?),
            ),
            None => (s, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(Surrogate::Sigmoid {
                alpha: alpha.unwrap_or(4.0),
            }),
            "atan" => Ok(Surrogate::Atan {
                alpha: alpha.unwrap_or(2.0),
            }),
            _ => Err(Error::invalid(format!(
                "--surrogate {s}: expected sigmoid[:alpha] or atan[:alpha]"
            ))),
        }
    }
}

/// Leaky integrate-and-fire neuron parameters (SpikingJelly `LIFNode` semantics).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LifConfig {
    /// Membrane time constant (paper: 2.0).
    pub tau: f64,
    /// Firing threshold (1.0; 0.5 for the attention neuron).
    pub v_threshold: f64,
    /// Reset potential for a hard reset; `None` = soft reset (subtract the threshold).
    pub v_reset: Option<f64>,
    /// `H = V + (X - (V - V_reset)) / tau` when true, else `H = V - (V - V_reset) / tau + X`.
    pub decay_input: bool,
    /// Spikes carry no gradient through the reset (Spikformer uses true).
    pub detach_reset: bool,
    /// Surrogate gradient of the firing function.
    pub surrogate: Surrogate,
}

impl Default for LifConfig {
    fn default() -> Self {
        LifConfig {
            tau: 2.0,
            v_threshold: 1.0,
            v_reset: Some(0.0),
            decay_input: true,
            detach_reset: true,
            surrogate: Surrogate::default(),
        }
    }
}

/// SpikGPT architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelConfig {
    /// Input embedding dimension k (512 for scGPT); set from the data at training time.
    pub input_dim: usize,
    /// Model width d (the first Linear maps k to d).
    pub width: usize,
    /// Number of spiking transformer blocks (SSA + MLP).
    pub blocks: usize,
    /// Attention heads H (width must be divisible by it).
    pub heads: usize,
    /// MLP hidden width as a multiple of `width` (4).
    pub mlp_ratio: usize,
    /// Token copies m of each cell embedding (paper: 300).
    pub tokens: usize,
    /// Time steps T (paper: 4).
    pub time_steps: usize,
    /// Dropout on the MLP spikes during training (paper: 0.1).
    pub dropout: f64,
    /// Attention scale applied to `q k^T v` (Spikformer: 0.125).
    pub attn_scale: f64,
    /// Threshold of the neuron after `q k^T v` (Spikformer: 0.5).
    pub attn_threshold: f64,
    /// Neuron parameters of every other spiking layer.
    pub lif: LifConfig,
    /// BatchNorm epsilon.
    pub bn_eps: f64,
    /// BatchNorm running-statistics momentum.
    pub bn_momentum: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            input_dim: 512,
            width: 512,
            blocks: 1,
            heads: 8,
            mlp_ratio: 4,
            tokens: 300,
            time_steps: 4,
            dropout: 0.1,
            attn_scale: 0.125,
            attn_threshold: 0.5,
            lif: LifConfig::default(),
            bn_eps: 1e-5,
            bn_momentum: 0.1,
        }
    }
}

impl ModelConfig {
    /// Check that the sizes are usable.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("input dimension", self.input_dim),
            ("--width", self.width),
            ("--blocks", self.blocks),
            ("--heads", self.heads),
            ("--mlp-ratio", self.mlp_ratio),
            ("--tokens", self.tokens),
            ("--time-steps", self.time_steps),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::invalid(format!("{name} must be at least 1")));
            }
        }
        if !self.width.is_multiple_of(self.heads) {
            return Err(Error::invalid(format!(
                "--width {} is not divisible by --heads {}",
                self.width, self.heads
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(format!(
                "--dropout {} must be in [0, 1)",
                self.dropout
            )));
        }
        if self.lif.tau <= 1.0 && self.lif.decay_input {
            // tau <= 1 makes the membrane overshoot; SpikingJelly requires tau > 1.
            return Err(Error::invalid(format!(
                "--tau {} must be > 1",
                self.lif.tau
            )));
        }
        if self.lif.v_threshold <= 0.0 || self.attn_threshold <= 0.0 {
            return Err(Error::invalid("thresholds must be positive"));
        }
        Ok(())
    }

    /// The neuron after `q k^T v`: the shared LIF settings with the attention threshold.
    pub fn attn_lif(&self) -> LifConfig {
        LifConfig {
            v_threshold: self.attn_threshold,
            ..self.lif
        }
    }
}

/// Optimisation settings (paper defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Training epochs (10).
    pub epochs: usize,
    /// Mini-batch size (128).
    pub batch_size: usize,
    /// Initial learning rate (0.01).
    pub lr: f64,
    /// SGD momentum (0.9).
    pub momentum: f64,
    /// L2 weight decay added to the gradient, as in `torch.optim.SGD` (1e-4).
    pub weight_decay: f64,
    /// Cosine decay of the learning rate to 0 over all steps (true).
    pub cosine: bool,
    /// Fraction of the reference cells used for training; the rest is the validation split (0.7).
    pub train_fraction: f64,
    /// Seed for the split, initialisation, shuffling and dropout.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            cosine: true,
            train_fraction: 0.7,
            seed: 42,
        }
    }
}

impl TrainConfig {
    /// Check that the values are usable.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::invalid("--epochs must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::invalid("--batch-size must be at least 1"));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(format!("--lr {} must be positive", self.lr)));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::invalid(format!(
                "--momentum {} must be in [0, 1)",
                self.momentum
            )));
        }
        if self.weight_decay < 0.0 {
            return Err(Error::invalid("--weight-decay must be >= 0"));
        }
        if !(self.train_fraction > 0.0 && self.train_fraction < 1.0) {
            return Err(Error::invalid(format!(
                "--train-fraction {} must be in (0, 1)",
                self.train_fraction
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers() {
        let m: ModelConfig = serde_json::from_str("{}").unwrap();
        assert_eq!((m.tokens, m.time_steps), (300, 4));
        assert_eq!(m.lif.tau, 2.0);
        assert_eq!(m.dropout, 0.1);
        assert_eq!(m.attn_lif().v_threshold, 0.5);
        let t: TrainConfig = serde_json::from_str("{}").unwrap();
        assert_eq!((t.epochs, t.batch_size), (10, 128));
        assert_eq!((t.lr, t.momentum, t.weight_decay), (0.01, 0.9, 1e-4));
    }

    #[test]
    fn surrogate_derivatives_match_primitives() {
        for s in [
            Surrogate::Sigmoid { alpha: 4.0 },
            Surrogate::Atan { alpha: 2.0 },
        ] {
            for x in [-1.3, -0.2, 0.0, 0.4, 2.0] {
                let h = 1e-5;
                let fd = (s.primitive(x + h) - s.primitive(x - h)) / (2.0 * h);
                assert!((fd - s.derivative(x)).abs() < 1e-6, "{s:?} at {x}");
            }
        }
        assert!((Surrogate::Sigmoid { alpha: 4.0 }.derivative(0.0) - 1.0).abs() < 1e-12);
        assert_eq!(
            Surrogate::parse("atan:3").unwrap(),
            Surrogate::Atan { alpha: 3.0 }
        );
        assert!(Surrogate::parse("relu").is_err());
    }
}
