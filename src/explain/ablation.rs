//! Causal check: zero features in the SAE code (keeping the reconstruction error), decode, re-run the
//! annotator and compare its call.
//!
//! - [`ablate_features`]: the same feature set removed from every cell (`spikgpt ablate`).
//! - [`top_vs_random`]: per cell, its `k` most-attributed features against `k` random active
//!   features of matched size (the norm `|z_f| * |v_f|` of the vector each removes from the embedding),
//!   over several seeded draws.

use rand::Rng;
use serde::Serialize;

use super::attribution::CellAttribution;
use super::decompose::Decomposition;
use crate::error::{Error, Result};
use crate::scgpt::tokenize::cell_rng;
use crate::spikgpt::annotate::predict_proba;
use crate::spikgpt::metrics::argmax_rows;
use crate::spikgpt::SpikGpt;

/// The call of one cell: most probable class, its probability and whether it clears the threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Call {
    /// Most probable class.
    pub best: usize,
    /// Its probability.
    pub prob: f64,
    /// `prob >= threshold` (otherwise the cell is Unknown).
    pub confident: bool,
}

impl Call {
    /// The label, with `None` for Unknown.
    pub fn label(&self) -> Option<usize> {
        self.confident.then_some(self.best)
    }
}

/// Calls of `[n, c]` probabilities.
pub fn calls_of(probs: &[f32], c: usize, threshold: f64) -> Vec<Call> {
    argmax_rows(probs, c)
        .into_iter()
        .enumerate()
        .map(|(i, best)| {
            let prob = probs[i * c + best] as f64;
            Call {
                best,
                prob,
                confident: prob >= threshold,
            }
        })
        .collect()
}

/// Probabilities `[n, c]` of the cells with the given features removed (`drop[i]` for cell `i`).
pub fn probs_without(
    model: &SpikGpt,
    dec: &Decomposition,
    drop: &[Vec<usize>],
    batch_size: usize,
) -> Result<Vec<f32>> {
    let k = dec.dict.d_in;
    let mut x = vec![0f32; drop.len() * k];
    for (i, d) in drop.iter().enumerate() {
        dec.ablated(i, d, &mut x[i * k..(i + 1) * k]);
    }
    predict_proba(model, &x, batch_size, None)
}

/// One cell's result of removing a fixed feature set.
#[derive(Debug, Clone, PartialEq)]
pub struct CellAblation {
    /// Call before.
    pub before: Call,
    /// Call after.
    pub after: Call,
    /// Probability of the original most probable class after removal.
    pub prob_after: f64,
    /// Summed activation of the removed features in this cell.
    pub removed_activation: f64,
}

impl CellAblation {
    /// Whether the final call (a class or Unknown) changed.
    pub fn call_changed(&self) -> bool {
        self.before.label() != self.after.label()
    }
}

/// Remove `features` from every cell and re-run the annotator.
pub fn ablate_features(
    model: &SpikGpt,
    dec: &Decomposition,
    features: &[usize],
    threshold: f64,
    batch_size: usize,
) -> Result<Vec<CellAblation>> {
    if let Some(&f) = features.iter().find(|&&f| f >= dec.dict.d_sae) {
        return Err(Error::invalid(format!(
            "--feature {f}: the SAE has {} features (0..{})",
            dec.dict.d_sae,
            dec.dict.d_sae.saturating_sub(1)
        )));
    }
    let n = dec.n_cells();
    let c = model.n_classes;
    let before = predict_proba(model, &dec.embeddings, batch_size, None)?;
    let drop = vec![features.to_vec(); n];
    let after = probs_without(model, dec, &drop, batch_size)?;
    let cb = calls_of(&before, c, threshold);
    let ca = calls_of(&after, c, threshold);
    Ok((0..n)
        .map(|i| CellAblation {
            before: cb[i],
            after: ca[i],
            prob_after: after[i * c + cb[i].best] as f64,
            removed_activation: features.iter().map(|&f| dec.code(i, f) as f64).sum(),
        })
        .collect())
}

/// Options of [`top_vs_random`].
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// Numbers of features removed together (`1, 3, 5`).
    pub ks: Vec<usize>,
    /// Random draws per cell and k.
    pub draws: usize,
    /// A random control is drawn uniformly among the `pool` active non-top features whose size is
    /// closest to each top feature's.
    pub pool: usize,
    /// Seed (each cell's draws come from its own stream: `seed` and the cell id).
    pub seed: u64,
    /// Rejection threshold of the calls.
    pub threshold: f64,
    /// Inference batch size.
    pub batch_size: usize,
}

impl ControlOptions {
    /// Check the feature counts against the dictionary size `d_sae` (`--ablation-k`).
    pub fn validate(&self, d_sae: usize) -> crate::error::Result<()> {
        if let Some(&k) = self.ks.iter().find(|&&k| k == 0 || k > d_sae) {
            return Err(crate::error::Error::invalid(format!(
                "--ablation-k {k}: must be between 1 and the SAE's {d_sae} features"
            )));
        }
        Ok(())
    }
}

impl Default for ControlOptions {
    fn default() -> Self {
        ControlOptions {
            ks: vec![1, 3, 5],
            draws: 10,
            pool: 5,
            seed: 0,
            threshold: crate::spikgpt::annotate::DEFAULT_THRESHOLD,
            batch_size: 256,
        }
    }
}

/// Top-attributed against random features for one k.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlRow {
    /// Features removed per cell.
    pub k: usize,
    /// Cells compared (those with k positively attributed features and k matched controls).
    pub cells: usize,
    /// Fraction of compared cells whose call (class or Unknown) changes without the top features.
    pub top_call_changed: f64,
    /// The same, averaged over the random draws.
    pub random_call_changed: f64,
    /// Fraction whose most probable class changes without the top features.
    pub top_class_changed: f64,
    /// The same for random features.
    pub random_class_changed: f64,
    /// Mean drop of the original class's probability without the top features.
    pub top_prob_drop: f64,
    /// The same for random features.
    pub random_prob_drop: f64,
    /// Mean size `sum |z_f| |v_f|` of what the top features remove.
    pub top_removed_norm: f64,
    /// The same for the random controls.
    pub random_removed_norm: f64,
}

fn size_of(dec: &Decomposition, i: usize, f: usize) -> f64 {
    (dec.code(i, f).abs() * dec.dict.direction_norms[f]) as f64
}

/// Random features for cell `i` matched in size to `top`, or `None` when there are too few.
fn matched_controls(
    dec: &Decomposition,
    i: usize,
    top: &[usize],
    pool: usize,
    rng: &mut impl Rng,
) -> Option<Vec<usize>> {
    let mut candidates: Vec<usize> = dec
        .active(i)
        .0
        .iter()
        .map(|&f| f as usize)
        .filter(|f| !top.contains(f))
        .collect();
    if candidates.len() < top.len() {
        return None;
    }
    let mut chosen = Vec::with_capacity(top.len());
    for &t in top {
        let target = size_of(dec, i, t).max(1e-30).ln();
        candidates.sort_by(|&a, &b| {
            let da = (size_of(dec, i, a).max(1e-30).ln() - target).abs();
            let db = (size_of(dec, i, b).max(1e-30).ln() - target).abs();
            da.total_cmp(&db).then(a.cmp(&b))
        });
        let m = pool.max(1).min(candidates.len());
        let pick = candidates.remove(rng.random_range(0..m));
        chosen.push(pick);
    }
    Some(chosen)
}

/// For each k: remove every cell's k most-attributed features (those with positive attribution) and,
/// as the control, k size-matched random active features; compare how often the call changes.
pub fn top_vs_random(
    model: &SpikGpt,
    dec: &Decomposition,
    attributions: &[CellAttribution],
    cell_ids: &[String],
    opts: &ControlOptions,
) -> Result<Vec<ControlRow>> {
    let n = dec.n_cells();
    if attributions.len() != n || cell_ids.len() != n {
        return Err(Error::invalid(
            "ablation: attributions, cell ids and cells differ in number",
        ));
    }
    let c = model.n_classes;
    let before = predict_proba(model, &dec.embeddings, opts.batch_size, None)?;
    let cb = calls_of(&before, c, opts.threshold);
    let mut rows = Vec::with_capacity(opts.ks.len());
    for &k in &opts.ks {
        // cells with k positively attributed features and enough controls for every draw
        let mut cells = Vec::new();
        let mut tops = Vec::new();
        let mut controls: Vec<Vec<Vec<usize>>> = Vec::new();
        for (i, a) in attributions.iter().enumerate() {
            let top: Vec<usize> = a
                .shares
                .iter()
                .filter(|s| s.attribution > 0.0)
                .take(k)
                .map(|s| s.feature)
                .collect();
            if top.len() < k || k == 0 {
                continue;
            }
            let mut rng = cell_rng(opts.seed ^ (k as u64).wrapping_mul(0x9E37), &cell_ids[i]);
            let draws: Option<Vec<Vec<usize>>> = (0..opts.draws.max(1))
                .map(|_| matched_controls(dec, i, &top, opts.pool, &mut rng))
                .collect();
            if let Some(d) = draws {
                cells.push(i);
                tops.push(top);
                controls.push(d);
            }
        }
        let m = cells.len();
        let mut row = ControlRow {
            k,
            cells: m,
            top_call_changed: f64::NAN,
            random_call_changed: f64::NAN,
            top_class_changed: f64::NAN,
            random_class_changed: f64::NAN,
            top_prob_drop: f64::NAN,
            random_prob_drop: f64::NAN,
            top_removed_norm: f64::NAN,
            random_removed_norm: f64::NAN,
        };
        if m == 0 {
            rows.push(row);
            continue;
        }
        let sub = subset(dec, &cells);
        let tally = |drops: &[Vec<usize>]| -> Result<(f64, f64, f64, f64)> {
            let p = probs_without(model, &sub, drops, opts.batch_size)?;
            let ca = calls_of(&p, c, opts.threshold);
            let (mut call, mut class, mut drop, mut norm) = (0.0, 0.0, 0.0, 0.0);
            for (r, &i) in cells.iter().enumerate() {
                let b = cb[i];
                call += (b.label() != ca[r].label()) as u8 as f64;
                class += (b.best != ca[r].best) as u8 as f64;
                drop += b.prob - p[r * c + b.best] as f64;
                norm += drops[r].iter().map(|&f| size_of(dec, i, f)).sum::<f64>();
            }
            let m = cells.len() as f64;
            Ok((call / m, class / m, drop / m, norm / m))
        };
        let t = tally(&tops)?;
        let mut r = (0.0, 0.0, 0.0, 0.0);
        let draws = opts.draws.max(1);
        for d in 0..draws {
            let drops: Vec<Vec<usize>> = controls.iter().map(|c| c[d].clone()).collect();
            let x = tally(&drops)?;
            r = (r.0 + x.0, r.1 + x.1, r.2 + x.2, r.3 + x.3);
        }
        let nd = draws as f64;
        row.top_call_changed = t.0;
        row.top_class_changed = t.1;
        row.top_prob_drop = t.2;
        row.top_removed_norm = t.3;
        row.random_call_changed = r.0 / nd;
        row.random_class_changed = r.1 / nd;
        row.random_prob_drop = r.2 / nd;
        row.random_removed_norm = r.3 / nd;
        rows.push(row);
    }
    Ok(rows)
}

/// The decomposition restricted to some cells.
fn subset(dec: &Decomposition, cells: &[usize]) -> Decomposition {
    let k = dec.dict.d_in;
    let mut embeddings = Vec::with_capacity(cells.len() * k);
    for &i in cells {
        embeddings.extend_from_slice(dec.embedding(i));
    }
    Decomposition {
        dict: dec.dict.clone(),
        codes: dec.codes.select_rows(cells),
        embeddings,
    }
}
