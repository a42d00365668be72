//! Firing rates and an energy estimate (Spikformer convention, 45 nm CMOS).
//!
//! What is counted, per cell, for the model as specified (m tokens x T steps):
//! - a Linear whose inputs are spikes or sums of spikes (non-negative integers: every layer inside the
//!   blocks, whose inputs are the spike residual stream or spike outputs) performs
//!   `rows x in x mean(input) x out` accumulates (each spike, counted with multiplicity, adds one
//!   weight column): **synaptic operations (SOPs) at 0.9 pJ**;
//! - a Linear with dense real inputs (the first layer on the embedding, the classifier on the pooled
//!   rates) performs `rows x in x out` **multiply-accumulates (MACs) at 4.6 pJ**;
//! - each attention product counts accumulates over spikes: `q k^T` costs `N^2 dh x rate(q)` and
//!   `(q k^T) v` costs `N^2 dh x rate(v)` per (step, cell, head), at 0.9 pJ.
//!
//! BatchNorm (foldable into the Linear at inference), neuron updates and pooling are not counted.
//! `dense_equivalent_pj` prices the same Linears and products as an ANN would (all MACs at 4.6 pJ).

use serde::{Deserialize, Serialize};

use super::activity::ForwardStats;

/// Energy per accumulate (pJ).
pub const E_AC_PJ: f64 = 0.9;
/// Energy per multiply-accumulate (pJ).
pub const E_MAC_PJ: f64 = 4.6;

/// Operation counts of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerEnergy {
    /// Layer name.
    pub name: String,
    /// `SOP` (accumulates on spikes) or `MAC` (dense).
    pub kind: String,
    /// Operations per cell.
    pub ops_per_cell: f64,
    /// Energy per cell (pJ).
    pub energy_pj_per_cell: f64,
}

/// The spiking statistics of an inference run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnergyReport {
    /// Cells the statistics were gathered on.
    pub cells: usize,
    /// Firing rate of every spiking layer, forward order.
    pub firing_rates: Vec<(String, f64)>,
    /// Mean firing rate over all neuron-steps.
    pub mean_firing_rate: f64,
    /// Per-layer operation counts.
    pub layers: Vec<LayerEnergy>,
    /// Total SOPs per cell.
    pub sops_per_cell: f64,
    /// Total MACs per cell.
    pub macs_per_cell: f64,
    /// Estimated energy per cell (pJ).
    pub energy_pj_per_cell: f64,
    /// The same network evaluated densely (all MACs), pJ per cell.
    pub dense_equivalent_pj_per_cell: f64,
}

/// Aggregate the records of one or more inference passes.
pub fn energy_report(stats: &ForwardStats) -> EnergyReport {
    let cells = stats.cells.max(1) as f64;
    let mut layers: Vec<LayerEnergy> = Vec::new();
    let mut dense = 0.0;
    let add = |layers: &mut Vec<LayerEnergy>, name: &str, kind: &str, ops: f64| {
        let e = if kind == "SOP" { E_AC_PJ } else { E_MAC_PJ };
        match layers.iter_mut().find(|l| l.name == name) {
            Some(l) => {
                l.ops_per_cell += ops / cells;
                l.energy_pj_per_cell += ops * e / cells;
            }
            None => layers.push(LayerEnergy {
                name: name.to_string(),
                kind: kind.to_string(),
                ops_per_cell: ops / cells,
                energy_pj_per_cell: ops * e / cells,
            }),
        }
    };
    for l in &stats.linears {
        let full = l.rows * l.in_dim as f64 * l.out_dim as f64;
        dense += full * E_MAC_PJ;
        if l.spike_input {
            add(&mut layers, &l.name, "SOP", full * l.mean_abs_input);
        } else {
            add(&mut layers, &l.name, "MAC", full);
        }
    }
    for a in &stats.attention {
        let full = a.groups * (a.tokens * a.tokens * a.head_dim) as f64;
        dense += 2.0 * full * E_MAC_PJ;
        add(
            &mut layers,
            &format!("{}.qk", a.name),
            "SOP",
            full * a.q_rate,
        );
        add(
            &mut layers,
            &format!("{}.qkv", a.name),
            "SOP",
            full * a.v_rate,
        );
    }
    let sops: f64 = layers
        .iter()
        .filter(|l| l.kind == "SOP")
        .map(|l| l.ops_per_cell)
        .sum();
    let macs: f64 = layers
        .iter()
        .filter(|l| l.kind == "MAC")
        .map(|l| l.ops_per_cell)
        .sum();
    let spikes: f64 = stats.layers.iter().map(|r| r.spikes).sum();
    let elements: f64 = stats.layers.iter().map(|r| r.elements).sum();
    EnergyReport {
        cells: stats.cells,
        firing_rates: stats.firing_rates(),
        mean_firing_rate: if elements > 0.0 {
            spikes / elements
        } else {
            0.0
        },
        energy_pj_per_cell: sops * E_AC_PJ + macs * E_MAC_PJ,
        layers,
        sops_per_cell: sops,
        macs_per_cell: macs,
        dense_equivalent_pj_per_cell: dense / cells,
    }
}

impl EnergyReport {
    /// Text summary.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "spiking statistics over {} cells: mean firing rate {:.4}; per cell {:.3e} SOPs + {:.3e} MACs = {:.3} nJ (dense ANN equivalent {:.3} nJ)\n",
            self.cells,
            self.mean_firing_rate,
            self.sops_per_cell,
            self.macs_per_cell,
            self.energy_pj_per_cell / 1e3,
            self.dense_equivalent_pj_per_cell / 1e3
        );
        for (n, r) in &self.firing_rates {
            s.push_str(&format!("  firing rate {n:<28} {r:.4}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spikgpt::activity::{AttentionRecord, LinearRecord, SpikeRecord};

    #[test]
    fn hand_counted_operations() {
        // 2 cells. Dense layer: 8 rows x 3 in x 4 out = 96 MACs. Spike layer: 8 rows x 4 in x 2 out
        // x mean input 0.25 = 16 SOPs. Attention: 2 groups x (5 tokens)^2 x 2 dh = 100 per product,
        // x rate 0.5 (q) and 0.2 (v) = 50 + 20 SOPs.
        let stats = ForwardStats {
            layers: vec![SpikeRecord {
                name: "embed".into(),
                spikes: 3.0,
                elements: 12.0,
            }],
            linears: vec![
                LinearRecord {
                    name: "embed.linear".into(),
                    rows: 8.0,
                    in_dim: 3,
                    out_dim: 4,
                    mean_abs_input: 0.7,
                    spike_input: false,
                },
                LinearRecord {
                    name: "fc".into(),
                    rows: 8.0,
                    in_dim: 4,
                    out_dim: 2,
                    mean_abs_input: 0.25,
                    spike_input: true,
                },
            ],
            attention: vec![AttentionRecord {
                name: "attn".into(),
                groups: 2.0,
                tokens: 5,
                head_dim: 2,
                q_rate: 0.5,
                v_rate: 0.2,
            }],
            cells: 2,
        };
        let r = energy_report(&stats);
        assert_eq!(r.macs_per_cell, 48.0);
        assert!((r.sops_per_cell - (16.0 + 50.0 + 20.0) / 2.0).abs() < 1e-12);
        assert!((r.energy_pj_per_cell - (48.0 * 4.6 + 43.0 * 0.9)).abs() < 1e-9);
        assert!((r.dense_equivalent_pj_per_cell - (96.0 + 64.0 + 200.0) * 4.6 / 2.0).abs() < 1e-9);
        assert_eq!(r.mean_firing_rate, 0.25);
    }
}
