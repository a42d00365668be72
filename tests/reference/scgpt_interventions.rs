//! The expression head and the residual-stream interventions against the OFFICIAL scGPT code.
//!
//! Fixture `tests/fixtures/scgpt/interventions.safetensors` (scripts/scgpt/make_intervention_fixture.py):
//! the official `TransformerModel` with the `tiny/` weights on four random cells, masked by the
//! official `DataCollator._mask`; `mlm_output` and the final `<cls>` output of the clean run and of
//! three edits of block 0's output made by a forward hook: zero-ablation, a random SAE's
//! reconstruction, and steering one of its features by a factor.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use scsae::intervene::{Edit, SteerMode};
use scsae::sae::saelens::{SaeConfig, SaeTensors};
use scsae::scgpt::model::{first_position, to_f32_vec, Batch, Site};
use scsae::scgpt::{Scgpt, TokenizedCell};
use scsae::{Runtime, Sae};

use crate::common::root;

const TOL: f32 = 1e-4;

struct Fixture {
    t: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
}

impl Fixture {
    fn read() -> Fixture {
        let path = root().join("tests/fixtures/scgpt/interventions.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = md.metadata().clone().unwrap_or_default();
        let t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        Fixture { t, meta }
    }
    fn f32s(&self, k: &str) -> Vec<f32> {
        self.t[k].flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }
    fn num(&self, k: &str) -> f64 {
        self.meta[k].trim_matches('"').parse().unwrap()
    }
    fn lengths(&self) -> Vec<usize> {
        self.t["lengths"]
            .to_vec1::<i64>()
            .unwrap()
            .iter()
            .map(|&v| v as usize)
            .collect()
    }
    /// The fixture's cells with `values` (or `masked_values`).
    fn cells(&self, key: &str) -> Vec<TokenizedCell> {
        let ids = self.t["gene_ids"].to_vec2::<i64>().unwrap();
        let vals = self.t[key].to_vec2::<f32>().unwrap();
        self.lengths()
            .iter()
            .enumerate()
            .map(|(i, &n)| TokenizedCell {
                gene_ids: ids[i][..n].iter().map(|&v| v as u32).collect(),
                values: vals[i][..n].to_vec(),
                n_expressed: n - 1,
            })
            .collect()
    }
    fn sae(&self, d: usize) -> Sae {
        let w_enc = self.f32s("sae.W_enc");
        let m = w_enc.len() / d;
        let cfg = SaeConfig {
            d_in: d,
            d_sae: m,
            ..SaeConfig::default()
        };
        Sae::from_parts(
            cfg,
            SaeTensors {
                w_enc,
                w_dec: self.f32s("sae.W_dec"),
                b_enc: self.f32s("sae.b_enc"),
                b_dec: self.f32s("sae.b_dec"),
                input_mean: self.f32s("sae.input_mean"),
                input_std: self.f32s("sae.input_std"),
                threshold: None,
            },
            None,
        )
    }
}

/// Max |ours - official| over the real positions of `[b, l]` predictions.
fn max_diff_real(ours: &[f32], theirs: &[f32], lengths: &[usize], l: usize) -> f32 {
    let mut m = 0.0f32;
    for (i, &n) in lengths.iter().enumerate() {
        for p in 0..n {
            m = m.max((ours[i * l + p] - theirs[i * l + p]).abs());
        }
    }
    m
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn interventions_match_the_official_code() {
    let rt = Runtime::cpu().unwrap();
    let dir = root().join("tests/fixtures/scgpt/tiny");
    let scgpt = Scgpt::load_with(&dir, Some(&dir.join("model.safetensors")), &rt).unwrap();
    let head = scgpt.require_expr_head().unwrap();
    let fx = Fixture::read();
    let d = scgpt.config.embsize;
    let sae = fx.sae(d);
    let feature: usize = fx.num("feature") as usize;
    let scale = fx.num("scale");
    let lengths = fx.lengths();
    let l = *lengths.iter().max().unwrap();
    let losses: HashMap<String, f64> = serde_json::from_str(&fx.meta["losses"]).unwrap();
    let targets = fx.cells("values");
    let edits: [(&str, Edit); 4] = [
        ("clean", Edit::Keep),
        ("ablate0", Edit::Zero),
        ("splice0", Edit::Reconstruct(&sae)),
        (
            "steer0",
            Edit::Steer {
                sae: &sae,
                feature,
                mode: SteerMode::Scale(scale),
            },
        ),
    ];
    for (input, prefix) in [("masked_values", "mlm_"), ("values", "mlm_unmasked_")] {
        let cells = fx.cells(input);
        let refs: Vec<&TokenizedCell> = cells.iter().collect();
        let batch = Batch::new(&refs, scgpt.pad_id(), -2.0, &rt.device, rt.dtype).unwrap();
        assert_eq!(batch.max_len, l);
        let h = scgpt.model.forward_to(&batch, Site::Block(0)).unwrap();
        for (name, edit) in &edits {
            let (he, _) = edit.apply(&h, &batch.lengths).unwrap();
            let out = scgpt
                .model
                .forward_from(he, Site::Block(0), &batch.lengths)
                .unwrap();
            let pred = to_f32_vec(&head.forward(&out).unwrap()).unwrap();
            let want = fx.f32s(&format!("{prefix}{name}"));
            let e = max_diff_real(&pred, &want, &lengths, l);
            assert!(e <= TOL, "{prefix}{name}: max |diff| {e}");
            let cls = to_f32_vec(&first_position(&out).unwrap()).unwrap();
            let cls_key = if input == "values" {
                "cls_unmasked_"
            } else {
                "cls_"
            };
            let e = max_diff(&cls, &fx.f32s(&format!("{cls_key}{name}")));
            assert!(e <= TOL, "{cls_key}{name}: max |diff| {e}");
            if input == "masked_values" {
                // the official masked_mse_loss over the masked positions
                let (mut s, mut k) = (0.0f64, 0usize);
                for (i, (c, t)) in cells.iter().zip(&targets).enumerate() {
                    for p in 0..c.len() {
                        if c.values[p] == -1.0 {
                            s += (pred[i * l + p] as f64 - t.values[p] as f64).powi(2);
                            k += 1;
                        }
                    }
                }
                assert_eq!(k, fx.num("n_masked") as usize);
                let ours = s / k as f64;
                let theirs = losses[*name];
                assert!(
                    (ours - theirs).abs() <= 1e-5 * theirs.abs(),
                    "{name}: loss {ours} vs official {theirs}"
                );
            }
        }
    }
}

#[test]
fn identity_edits_change_nothing() {
    // planted truth: steering by a factor of 1 and keeping are the clean run, bit for bit
    let rt = Runtime::cpu().unwrap();
    let dir = root().join("tests/fixtures/scgpt/tiny");
    let scgpt = Scgpt::load_with(&dir, Some(&dir.join("model.safetensors")), &rt).unwrap();
    let fx = Fixture::read();
    let sae = fx.sae(scgpt.config.embsize);
    let cells = fx.cells("values");
    let refs: Vec<&TokenizedCell> = cells.iter().collect();
    let batch = Batch::new(&refs, scgpt.pad_id(), -2.0, &rt.device, rt.dtype).unwrap();
    let h = scgpt.model.forward_to(&batch, Site::Block(0)).unwrap();
    let (s, stats) = Edit::Steer {
        sae: &sae,
        feature: 3,
        mode: SteerMode::Scale(1.0),
    }
    .apply(&h, &batch.lengths)
    .unwrap();
    assert_eq!(to_f32_vec(&s).unwrap(), to_f32_vec(&h).unwrap());
    assert_eq!(
        stats.iter().map(|s| s.tokens).collect::<Vec<_>>(),
        batch.lengths
    );
    // forward_to + forward_from with no edit is the plain forward pass
    let whole = scgpt.model.forward_with(&batch, |_, _| Ok(())).unwrap();
    let split = scgpt
        .model
        .forward_from(h, Site::Block(0), &batch.lengths)
        .unwrap();
    assert_eq!(to_f32_vec(&whole).unwrap(), to_f32_vec(&split).unwrap());
    // out-of-range feature: an error, not a panic
    let e = Edit::Steer {
        sae: &sae,
        feature: sae.d_sae(),
        mode: SteerMode::Scale(2.0),
    }
    .apply(&split, &batch.lengths)
    .unwrap_err()
    .to_string();
    assert!(e.contains("out of range"), "{e}");
}
