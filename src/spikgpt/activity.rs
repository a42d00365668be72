//! What an inference pass records for the spiking statistics: spikes per neuron layer and the
//! inputs of every Linear and attention product (for operation counts and energy).
//!
//! Counts are for the model as specified (m tokens): when identical token copies are computed once,
//! the records are scaled by the copy count.

use candle_core::{DType, Tensor};

use crate::error::Result;

/// Spike totals of one neuron layer.
#[derive(Debug, Clone, PartialEq)]
pub struct SpikeRecord {
    /// Layer name (`embed`, `blocks.0.attn.q`, `blocks.0.attn.attn_lif`, ...).
    pub name: String,
    /// Spikes emitted (summed over time, tokens, cells, channels).
    pub spikes: f64,
    /// Neuron-steps (elements of the spike tensor).
    pub elements: f64,
}

/// Inputs of one Linear application.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearRecord {
    /// Layer name (`blocks.0.mlp.fc1.linear`).
    pub name: String,
    /// Rows it was applied to (time x cells x tokens), counted with token multiplicity.
    pub rows: f64,
    /// Fan-in.
    pub in_dim: usize,
    /// Fan-out.
    pub out_dim: usize,
    /// Mean absolute input value (the firing rate for binary spikes; spike count for sums of spikes).
    pub mean_abs_input: f64,
    /// True when every input value is a non-negative integer (spikes or sums of spikes), so the layer
    /// runs on accumulates; false for dense real inputs (multiply-accumulates).
    pub spike_input: bool,
}

/// The two spike products of one attention layer, `q k^T` and `(q k^T) v`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionRecord {
    /// Layer name (`blocks.0.attn`).
    pub name: String,
    /// Number of (time step, cell, head) triples.
    pub groups: f64,
    /// Tokens per cell (m).
    pub tokens: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Firing rate of q.
    pub q_rate: f64,
    /// Firing rate of v.
    pub v_rate: f64,
}

/// Everything recorded during inference passes.
#[derive(Debug, Clone, Default)]
pub struct ForwardStats {
    /// Spiking layers in forward order, accumulated over batches.
    pub layers: Vec<SpikeRecord>,
    /// Linear applications (one per layer per batch).
    pub linears: Vec<LinearRecord>,
    /// Attention products (one per layer per batch).
    pub attention: Vec<AttentionRecord>,
    /// Cells seen.
    pub cells: usize,
}

impl ForwardStats {
    /// Add the spikes of layer `name`.
    pub fn record_spikes(&mut self, name: &str, spikes: &Tensor) -> Result<()> {
        let total = spikes
            .detach()
            .to_dtype(DType::F64)?
            .sum_all()?
            .to_scalar::<f64>()?;
        let n = spikes.elem_count() as f64;
        match self.layers.iter_mut().find(|r| r.name == name) {
            Some(r) => {
                r.spikes += total;
                r.elements += n;
            }
            None => self.layers.push(SpikeRecord {
                name: name.to_string(),
                spikes: total,
                elements: n,
            }),
        }
        Ok(())
    }

    /// Firing rate per layer, in forward order.
    pub fn firing_rates(&self) -> Vec<(String, f64)> {
        self.layers
            .iter()
            .map(|r| (r.name.clone(), r.spikes / r.elements.max(1.0)))
            .collect()
    }
}
