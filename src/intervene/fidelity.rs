//! SAE fidelity inside scGPT: splice the SAE's reconstruction into the residual stream at its layer
//! and measure what the rest of the model does with it, against the clean run and zero-ablation
//! (the single-cell analogue of SAELens' "CE loss recovered").
//!
//! Three conditions run from the same activations at the site: `clean` (unchanged), `sae` (every
//! real token replaced by the SAE's reconstruction) and `zero_ablation` (every real token set to 0).
//! For each:
//! - **masked-expression loss**: the cells' values are masked as in pretraining (Bernoulli(ratio)
//!   over the genes, `<cls>` never, masked values -1; one run per ratio) and the model's own
//!   expression head predicts them; the loss is the mean squared error over all masked positions of
//!   all cells. `loss recovered = (L_zero - L_sae) / (L_zero - L_clean)`: 1 means the SAE loses
//!   nothing the model uses, 0 means it is no better than deleting the layer.
//! - **CLS cosine**: cosine of each cell's final `<cls>` output (unmasked input) with the clean one.
//! - **kNN accuracy** (with labels): leave-one-out k-NN cell-type accuracy on those CLS embeddings.

use std::path::Path;

use serde::Serialize;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::intervene::cells::{cls_rows, cosine, CellSource};
use crate::intervene::edit::{Edit, TokenStats};
use crate::intervene::knn::loo_knn_accuracy;
use crate::io::atomic::write_json_atomic;
use crate::io::lock::{check_not_finished, lock_for_writing};
use crate::io::table::Table;
use crate::runtime::Runtime;
use crate::sae::Sae;
use crate::scgpt::expr_head::{check_mask_ratios, mlm_mask, MASK_VALUE};
use crate::scgpt::layers::site_name;
use crate::scgpt::model::{to_f32_vec, Site};
use crate::scgpt::{Scgpt, TokenizedCell};
use crate::stats::median;

/// The file written last: its presence means the folder is complete.
pub const SUMMARY_FILE: &str = "fidelity.json";

/// The conditions, in table order.
pub const CONDITIONS: [&str; 3] = ["clean", "sae", "zero_ablation"];

/// Options of a fidelity run (defaults: the released model's pretraining masking, k = 10).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityOptions {
    /// Mask ratios, one masked run each (default: `mask_ratio` of the checkpoint's `args.json`,
    /// else scGPT_human's 0.25, 0.5, 0.75).
    pub mask_ratios: Vec<f64>,
    /// Neighbours of the kNN accuracy.
    pub knn_k: usize,
    /// Cells per forward batch (results do not depend on it).
    pub batch_size: usize,
    /// Longest token sequence, `<cls>` included (as `scsae extract`).
    pub max_length: usize,
}

impl Default for FidelityOptions {
    fn default() -> Self {
        FidelityOptions {
            mask_ratios: PRETRAINING_MASK_RATIOS.to_vec(),
            knn_k: 10,
            batch_size: 64,
            max_length: 1200,
        }
    }
}

/// `mask_ratio` of scGPT_human's `args.json`.
pub const PRETRAINING_MASK_RATIOS: [f64; 3] = [0.25, 0.5, 0.75];

/// The mask ratios a checkpoint was pretrained with: `mask_ratio` of its `args.json` (a number or a
/// list), else scGPT_human's.
pub fn checkpoint_mask_ratios(scgpt: &Scgpt) -> Result<Vec<f64>> {
    let path = scgpt.dir.join("args.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::input(&path, e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::input(&path, e.to_string()))?;
    let ratios = match v.get("mask_ratio") {
        None | Some(serde_json::Value::Null) => PRETRAINING_MASK_RATIOS.to_vec(),
        Some(serde_json::Value::Number(n)) => vec![n.as_f64().unwrap_or(f64::NAN)],
        Some(serde_json::Value::Array(a)) => {
            a.iter().map(|x| x.as_f64().unwrap_or(f64::NAN)).collect()
        }
        Some(other) => {
            return Err(Error::input(
                &path,
                format!("mask_ratio {other} is neither a number nor a list of numbers"),
            ))
        }
    };
    check_mask_ratios(&ratios, &path)?;
    Ok(ratios)
}

/// One fidelity run's inputs.
pub struct FidelityRequest<'a> {
    /// The model.
    pub scgpt: &'a Scgpt,
    /// The SAE and its folder.
    pub sae: &'a Sae,
    /// Its folder (named in errors and the summary).
    pub sae_dir: &'a Path,
    /// Where it plugs in ([`crate::intervene::site::sae_site`]).
    pub site: Site,
    /// The cells.
    pub data: &'a Dataset,
    /// How the data were read (recorded in the summary).
    pub data_desc: serde_json::Value,
    /// Label column for the kNN accuracy, and the labels.
    pub labels: Option<(String, Vec<String>)>,
    /// Output folder.
    pub out: &'a Path,
    /// Overwrite a finished output folder.
    pub force: bool,
    /// Options.
    pub opts: FidelityOptions,
}

/// One condition's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConditionResult {
    /// `clean`, `sae` or `zero_ablation`.
    pub condition: String,
    /// Masked-expression MSE over all masked positions of all ratios.
    pub mlm_mse: f64,
    /// The same per mask ratio (in [`FidelityOptions::mask_ratios`] order).
    pub mlm_mse_by_ratio: Vec<f64>,
    /// Mean over cells of the cosine of the final `<cls>` output with the clean one.
    pub cls_cosine_mean: f64,
    /// Its median.
    pub cls_cosine_median: f64,
    /// Leave-one-out kNN accuracy of the labels on the `<cls>` embeddings (with labels).
    pub knn_accuracy: Option<f64>,
}

/// What a fidelity run measured (the summary file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FidelityReport {
    /// The SAE folder.
    pub sae: String,
    /// The SAE's run name (layer, sparsity rule, width).
    pub sae_name: String,
    /// The splice site (`embeddings` or a block number).
    pub layer: String,
    /// The model description.
    pub model: serde_json::Value,
    /// The data description.
    pub data: serde_json::Value,
    /// Cells evaluated.
    pub n_cells: usize,
    /// Real tokens at the site (all cells).
    pub n_tokens: usize,
    /// Masked positions per ratio.
    pub n_masked_by_ratio: Vec<usize>,
    /// Label column of the kNN accuracy.
    pub label_key: Option<String>,
    /// `1 - SSE / SST` of the SAE's reconstruction of the site's tokens on these cells.
    pub reconstruction_r2: f64,
    /// Mean L0 of the SAE's codes on those tokens.
    pub mean_l0: f64,
    /// Masked-expression loss recovered, pooled over ratios: `(L_zero - L_sae) / (L_zero - L_clean)`
    /// (null when zero-ablation does not raise the loss).
    pub loss_recovered: Option<f64>,
    /// The same per ratio.
    pub loss_recovered_by_ratio: Vec<Option<f64>>,
    /// `(L_zero - L_clean) / L_clean`: how much deleting the layer costs the model. Loss recovered is a
    /// ratio over this gap; when it is small (a few percent, e.g. random weights) the ratio is unstable.
    pub zero_ablation_relative_gap: f64,
    /// kNN accuracy recovered, `(acc_sae - acc_zero) / (acc_clean - acc_zero)` (with labels, null when
    /// zero-ablation does not lower it).
    pub knn_recovered: Option<f64>,
    /// `clean`, `sae`, `zero_ablation`.
    pub conditions: Vec<ConditionResult>,
    /// Options used.
    pub options: FidelityOptions,
    /// Global seed (tokenisation and masking).
    pub seed: u64,
    /// scsae version.
    pub software_version: String,
}

/// Per-cell accumulators.
#[derive(Debug, Clone, Default)]
struct CellAcc {
    /// Raw final `<cls>` outputs per condition.
    cls: [Vec<f32>; 3],
    /// Squared error and count of masked positions, per condition and ratio.
    sq: [Vec<f64>; 3],
    masked: Vec<usize>,
    /// The SAE's reconstruction at the site.
    recon: TokenStats,
}

/// Run the three conditions over every cell and write the folder (`cells`, `summary` tables, then
/// [`SUMMARY_FILE`] last). Every input is checked before anything is written.
pub fn fidelity(req: &FidelityRequest<'_>, rt: &Runtime) -> Result<FidelityReport> {
    let head = req.scgpt.require_expr_head()?;
    let opts = &req.opts;
    check_not_finished(req.out, SUMMARY_FILE, "a fidelity run", req.force)?;
    check_mask_ratios(&opts.mask_ratios, req.sae_dir)?;
    let n = req.data.n_cells();
    if let Some((_, labels)) = &req.labels {
        if opts.knn_k == 0 || opts.knn_k >= n {
            return Err(Error::invalid(format!(
                "--knn-k {} needs 1 <= k < the number of cells ({n})",
                opts.knn_k
            )));
        }
        if labels.len() != n {
            return Err(Error::invalid("one label per cell is needed"));
        }
    }
    let source = CellSource::new(req.scgpt, req.data, opts.max_length, rt)?;
    let batches = source.batches(opts.batch_size)?;
    let model = &req.scgpt.model;
    let d = req.scgpt.config.embsize;
    let edits = [Edit::Keep, Edit::Reconstruct(req.sae), Edit::Zero];
    let n_ratios = opts.mask_ratios.len();
    let mut cells: Vec<CellAcc> = Vec::with_capacity(n);
    // per-dimension token sums for the reconstruction's SST
    let (mut sum, mut sumsq) = (vec![0.0f64; d], vec![0.0f64; d]);
    for rows in batches {
        let toks = source.tokenize(rows.clone());
        let mut acc: Vec<CellAcc> = toks
            .iter()
            .map(|_| CellAcc {
                sq: std::array::from_fn(|_| vec![0.0; n_ratios]),
                masked: vec![0; n_ratios],
                ..CellAcc::default()
            })
            .collect();
        // unmasked: CLS embeddings and the reconstruction statistics
        let batch = source.batch(&toks, rt)?;
        let h = model.forward_to(&batch, req.site)?;
        accumulate_moments(
            &to_f32_vec(&h)?,
            &batch.lengths,
            batch.max_len,
            d,
            &mut sum,
            &mut sumsq,
        );
        for (c, edit) in edits.iter().enumerate() {
            let (he, stats) = edit.apply(&h, &batch.lengths)?;
            let out = model.forward_from(he, req.site, &batch.lengths)?;
            let cls = cls_rows(&out)?;
            for (i, a) in acc.iter_mut().enumerate() {
                a.cls[c] = cls[i * d..(i + 1) * d].to_vec();
                if c == 1 {
                    a.recon = stats[i];
                }
            }
        }
        // masked: the expression head's loss, one run per ratio
        for (r, &ratio) in opts.mask_ratios.iter().enumerate() {
            let masks: Vec<Vec<bool>> = rows
                .clone()
                .zip(&toks)
                .map(|(i, t)| mlm_mask(rt.seed, &req.data.cell_ids[i], t.len(), ratio))
                .collect();
            let masked: Vec<TokenizedCell> = toks
                .iter()
                .zip(&masks)
                .map(|(t, m)| mask_cell(t, m))
                .collect();
            let batch = source.batch(&masked, rt)?;
            let h = model.forward_to(&batch, req.site)?;
            for (c, edit) in edits.iter().enumerate() {
                let (he, _) = edit.apply(&h, &batch.lengths)?;
                let out = model.forward_from(he, req.site, &batch.lengths)?;
                let pred = to_f32_vec(&head.forward(&out)?)?;
                for (i, (a, (t, m))) in acc.iter_mut().zip(toks.iter().zip(&masks)).enumerate() {
                    let row = &pred[i * batch.max_len..i * batch.max_len + t.len()];
                    let mut s = 0.0;
                    let mut k = 0;
                    for ((&p, &v), &hit) in row.iter().zip(&t.values).zip(m) {
                        if hit {
                            s += (p as f64 - v as f64).powi(2);
                            k += 1;
                        }
                    }
                    a.sq[c][r] = s;
                    a.masked[r] = k;
                }
            }
        }
        cells.extend(acc);
    }
    let cosines = cls_cosines(&cells);
    let report = summarise(req, rt, &cells, &cosines, &sum, &sumsq)?;
    write_outputs(req, &cells, &cosines, &report)?;
    Ok(report)
}

/// Token values with `MASK_VALUE` where `mask` is set.
fn mask_cell(t: &TokenizedCell, mask: &[bool]) -> TokenizedCell {
    let mut m = t.clone();
    for (v, &hit) in m.values.iter_mut().zip(mask) {
        if hit {
            *v = MASK_VALUE;
        }
    }
    m
}

fn accumulate_moments(
    h: &[f32],
    lengths: &[usize],
    l: usize,
    d: usize,
    sum: &mut [f64],
    sumsq: &mut [f64],
) {
    for (i, &len) in lengths.iter().enumerate() {
        for row in h[i * l * d..(i * l + len) * d].chunks_exact(d) {
            for ((s, q), &v) in sum.iter_mut().zip(sumsq.iter_mut()).zip(row) {
                *s += v as f64;
                *q += (v as f64) * (v as f64);
            }
        }
    }
}

/// `(worst - mine) / (worst - best)`, or `None` when `worst` is no worse than `best`.
pub fn recovered(best: f64, mine: f64, worst: f64, higher_is_better: bool) -> Option<f64> {
    let gap = if higher_is_better {
        best - worst
    } else {
        worst - best
    };
    if gap.is_nan() || gap <= 1e-12 * best.abs().max(worst.abs()).max(1e-300) {
        return None;
    }
    let gain = if higher_is_better {
        mine - worst
    } else {
        worst - mine
    };
    Some(gain / gap)
}

/// Per condition, each cell's cosine of its final `<cls>` output with the clean one.
fn cls_cosines(cells: &[CellAcc]) -> [Vec<f64>; 3] {
    std::array::from_fn(|c| cells.iter().map(|a| cosine(&a.cls[c], &a.cls[0])).collect())
}

fn summarise(
    req: &FidelityRequest<'_>,
    rt: &Runtime,
    cells: &[CellAcc],
    cosines: &[Vec<f64>; 3],
    sum: &[f64],
    sumsq: &[f64],
) -> Result<FidelityReport> {
    let opts = &req.opts;
    let d = req.scgpt.config.embsize;
    let n_ratios = opts.mask_ratios.len();
    let n_tokens: usize = cells.iter().map(|c| c.recon.tokens).sum();
    let n_masked_by_ratio: Vec<usize> = (0..n_ratios)
        .map(|r| cells.iter().map(|c| c.masked[r]).sum())
        .collect();
    let total_masked: usize = n_masked_by_ratio.iter().sum();
    if total_masked == 0 {
        return Err(Error::input(
            &req.data.source,
            "no gene position was masked (the cells express too few vocabulary genes)",
        ));
    }
    let mut conditions = Vec::new();
    for (c, name) in CONDITIONS.iter().enumerate() {
        let by_ratio: Vec<f64> = (0..n_ratios)
            .map(|r| {
                let s: f64 = cells.iter().map(|a| a.sq[c][r]).sum();
                s / n_masked_by_ratio[r].max(1) as f64
            })
            .collect();
        let pooled: f64 = cells
            .iter()
            .map(|a| a.sq[c].iter().sum::<f64>())
            .sum::<f64>()
            / total_masked as f64;
        let cos = &cosines[c];
        let knn = match &req.labels {
            Some((_, labels)) => {
                let x: Vec<f32> = cells
                    .iter()
                    .flat_map(|a| a.cls[c].iter().copied())
                    .collect();
                Some(loo_knn_accuracy(&x, d, labels, opts.knn_k)?)
            }
            None => None,
        };
        conditions.push(ConditionResult {
            condition: name.to_string(),
            mlm_mse: pooled,
            mlm_mse_by_ratio: by_ratio,
            cls_cosine_mean: cos.iter().sum::<f64>() / cos.len().max(1) as f64,
            cls_cosine_median: median(cos.clone()),
            knn_accuracy: knn,
        });
    }
    let (clean, sae, zero) = (&conditions[0], &conditions[1], &conditions[2]);
    let sse: f64 = cells.iter().map(|c| c.recon.sum).sum();
    let nt = n_tokens.max(1) as f64;
    let sst: f64 = sum
        .iter()
        .zip(sumsq)
        .map(|(&s, &q)| (q - s * s / nt).max(0.0))
        .sum();
    let l0: usize = cells.iter().map(|c| c.recon.active).sum();
    let knn_recovered = match (clean.knn_accuracy, sae.knn_accuracy, zero.knn_accuracy) {
        (Some(a), Some(b), Some(z)) => recovered(a, b, z, true),
        _ => None,
    };
    Ok(FidelityReport {
        sae: req.sae_dir.display().to_string(),
        sae_name: req.sae.cfg.run_name(),
        layer: site_name(req.site),
        model: req.scgpt.describe(),
        data: req.data_desc.clone(),
        n_cells: cells.len(),
        n_tokens,
        n_masked_by_ratio,
        label_key: req.labels.as_ref().map(|(k, _)| k.clone()),
        reconstruction_r2: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
        mean_l0: l0 as f64 / nt,
        loss_recovered: recovered(clean.mlm_mse, sae.mlm_mse, zero.mlm_mse, false),
        loss_recovered_by_ratio: (0..n_ratios)
            .map(|r| {
                recovered(
                    clean.mlm_mse_by_ratio[r],
                    sae.mlm_mse_by_ratio[r],
                    zero.mlm_mse_by_ratio[r],
                    false,
                )
            })
            .collect(),
        knn_recovered,
        zero_ablation_relative_gap: (zero.mlm_mse - clean.mlm_mse) / clean.mlm_mse,
        conditions,
        options: opts.clone(),
        seed: rt.seed,
        software_version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// One paragraph for the terminal.
pub fn headline(r: &FidelityReport, out: &Path) -> String {
    let opt = |v: Option<f64>| v.map_or("n/a".to_string(), |x| format!("{x:.3}"));
    let gap = r.zero_ablation_relative_gap;
    let caveat = if gap.abs() < 0.05 {
        format!(
            " (zero-ablation changes the loss by only {:+.2} %: the ratio is unstable)",
            100.0 * gap
        )
    } else {
        String::new()
    };
    let c = &r.conditions;
    let knn = match (c[0].knn_accuracy, c[1].knn_accuracy, c[2].knn_accuracy) {
        (Some(a), Some(b), Some(z)) => format!(
            "; kNN accuracy clean {a:.3}, SAE {b:.3}, zero {z:.3} (recovered {})",
            opt(r.knn_recovered)
        ),
        _ => String::new(),
    };
    format!(
        "{} spliced at layer {} on {} cells ({} tokens; R2 {:.3}, L0 {:.1}): masked-expression loss clean {:.4}, SAE {:.4}, zero-ablation {:.4} -> loss recovered {}{caveat}; CLS cosine with clean: SAE {:.4}, zero {:.4}{knn}\nwrote {}",
        r.sae_name,
        r.layer,
        r.n_cells,
        r.n_tokens,
        r.reconstruction_r2,
        r.mean_l0,
        c[0].mlm_mse,
        c[1].mlm_mse,
        c[2].mlm_mse,
        opt(r.loss_recovered),
        c[1].cls_cosine_mean,
        c[2].cls_cosine_mean,
        out.display()
    )
}

fn ratio_name(r: f64) -> String {
    format!("{r}")
}

fn write_outputs(
    req: &FidelityRequest<'_>,
    cells: &[CellAcc],
    cosines: &[Vec<f64>; 3],
    report: &FidelityReport,
) -> Result<()> {
    let opts = &req.opts;
    let n = cells.len();
    let mut t = Table::new(n).str("cell_id", req.data.cell_ids.clone());
    if let Some((key, labels)) = &req.labels {
        t = t.str(key, labels.clone());
    }
    t = t.count(
        "n_tokens",
        cells.iter().map(|c| c.recon.tokens as u64).collect(),
    );
    t = t.f64(
        "recon_mse",
        cells
            .iter()
            .map(|c| c.recon.sum / c.recon.tokens.max(1) as f64)
            .collect(),
    );
    t = t.f64(
        "l0",
        cells
            .iter()
            .map(|c| c.recon.active as f64 / c.recon.tokens.max(1) as f64)
            .collect(),
    );
    for (c, name) in CONDITIONS.iter().enumerate().skip(1) {
        t = t.f64(&format!("cls_cosine_{name}"), cosines[c].clone());
    }
    t = t.count(
        "n_masked",
        cells
            .iter()
            .map(|c| c.masked.iter().sum::<usize>() as u64)
            .collect(),
    );
    for (c, name) in CONDITIONS.iter().enumerate() {
        t = t.opt_f64(
            &format!("mlm_mse_{name}"),
            cells
                .iter()
                .map(|a| {
                    let k: usize = a.masked.iter().sum();
                    (k > 0).then(|| a.sq[c].iter().sum::<f64>() / k as f64)
                })
                .collect(),
        );
    }
    let conds = &report.conditions;
    let mut s = Table::new(conds.len())
        .str(
            "condition",
            conds.iter().map(|c| c.condition.clone()).collect(),
        )
        .f64("mlm_mse", conds.iter().map(|c| c.mlm_mse).collect());
    for (r, &ratio) in opts.mask_ratios.iter().enumerate() {
        s = s.f64(
            &format!("mlm_mse_ratio_{}", ratio_name(ratio)),
            conds.iter().map(|c| c.mlm_mse_by_ratio[r]).collect(),
        );
    }
    s = s
        .f64(
            "cls_cosine_mean",
            conds.iter().map(|c| c.cls_cosine_mean).collect(),
        )
        .f64(
            "cls_cosine_median",
            conds.iter().map(|c| c.cls_cosine_median).collect(),
        )
        .opt_f64(
            "knn_accuracy",
            conds.iter().map(|c| c.knn_accuracy).collect(),
        )
        .opt_f64(
            "loss_recovered",
            vec![Some(1.0), report.loss_recovered, Some(0.0)],
        );
    std::fs::create_dir_all(req.out).map_err(|e| Error::input(req.out, e.to_string()))?;
    let _lock = lock_for_writing(req.out, SUMMARY_FILE, "a fidelity run", req.force, false)?;
    t.write(req.out, "cells")?;
    s.write(req.out, "summary")?;
    write_json_atomic(&req.out.join(SUMMARY_FILE), report)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovered_by_hand() {
        // losses: clean 1, sae 1.5, zero 3 -> (3 - 1.5) / (3 - 1) = 0.75
        assert_eq!(recovered(1.0, 1.5, 3.0, false), Some(0.75));
        // accuracies: clean 0.9, sae 0.8, zero 0.5 -> 0.3 / 0.4
        assert!((recovered(0.9, 0.8, 0.5, true).unwrap() - 0.75).abs() < 1e-12);
        // zero-ablation no worse than clean: undefined
        assert_eq!(recovered(1.0, 1.0, 1.0, false), None);
        assert_eq!(recovered(2.0, 1.0, 1.0, false), None);
    }
}
