//! `scsae export-saelens`: write a saved SAE as a folder that `sae_lens.SAE.load_from_disk` loads
//! (SAELens 6 layout) and that computes, on **raw** activations, exactly what scsae computes.
//!
//! scsae z-scores every input before the SAE (`x' = (x - mu) / sigma`, per dimension) and its
//! reconstructions live in z-scored space; SAELens applies the SAE to raw activations. Both maps are
//! affine, so the z-score is folded into the weights (`sigma` = `input_std`, `mu` = `input_mean`):
//!
//! | tensor | exported |
//! |---|---|
//! | `W_enc` `[d_in, d_sae]` | `W_enc'[i, j] = W_enc[i, j] / sigma[i]` (`diag(1/sigma) W_enc`) |
//! | `b_dec` `[d_in]` | `b_dec'[i] = mu[i] + sigma[i] * b_dec[i]` |
//! | `W_dec` `[d_sae, d_in]` | `W_dec'[j, i] = W_dec[j, i] * sigma[i]` (`W_dec diag(sigma)`) |
//! | `b_enc` `[d_sae]` | unchanged |
//! | `threshold` `[d_sae]` | unchanged (JumpReLU / BatchTopK) |
//!
//! Encoder, with `apply_b_dec_to_input = true` (SAELens subtracts `b_dec'` from the input):
//! `(x - b_dec') W_enc' + b_enc = (x - mu - sigma*b_dec) diag(1/sigma) W_enc + b_enc
//! = ((x - mu)/sigma - b_dec) W_enc + b_enc`, scsae's pre-activations of `x'`; the non-linearity
//! (ReLU, TopK, JumpReLU) sees identical pre-activations, so the codes are identical and the
//! threshold needs no change. Decoder: `z W_dec' + b_dec' = (z W_dec + b_dec) * sigma + mu`, scsae's
//! z-scored reconstruction mapped back to activation space. (This is SAELens's own
//! `fold_activation_whitening` with `M = diag(1/sigma)`.)
//!
//! Architectures: `standard` -> `standard`, `topk` -> `topk` with `k`, `batchtopk` -> `jumprelu`
//! (BatchTopK at inference is a JumpReLU with the learned threshold: `z = relu(pre) * (pre >
//! threshold)`, SAELens's `JumpReLUSAE.encode`), an imported `jumprelu` stays `jumprelu`.
//!
//! Output folder: `sae_weights.safetensors` (`W_enc`, `W_dec`, `b_enc`, `b_dec`, `threshold` for
//! JumpReLU; exactly the state dict SAELens's classes load with `strict=True`, so no z-score
//! tensors), `cfg.json` (exactly the keys of SAELens 6's `SAEConfig.to_dict()`: `d_in`, `d_sae`,
//! `dtype`, `device`, `apply_b_dec_to_input`, `normalize_activations`, `reshape_activations`,
//! `metadata`, `architecture`, and `k` / `rescale_acts_by_decoder_norm` for TopK), and
//! `scsae_export.json` (where the SAE came from and what was folded; SAELens ignores it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::io::atomic::{check_new_output, write_bytes_atomic, write_json_atomic};
use crate::io::lock::{remove_stale_temporaries, OutputLock};
use crate::io::matrix::f32_bytes;
use crate::sae::config::Arch;
use crate::sae::kernel::Sparsifier;
use crate::sae::model::Sae;
use crate::sae::saelens::{hook_for_layer, CFG_FILE, WEIGHTS_FILE};

/// The sae-lens release whose loader (`SAE.load_from_disk`, SAELens 6 config layout) the exported
/// folder was verified against; written as `metadata.sae_lens_version` (any value >= 6.0 selects
/// the SAELens 6 layout in `handle_config_defaulting`).
pub const SAELENS_VERSION: &str = "6.54.12";

/// File with the export's provenance (not read by SAELens).
pub const EXPORT_INFO_FILE: &str = "scsae_export.json";

/// The tensors of the exported SAE, z-score folded in (row-major, SAELens layout).
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedTensors {
    /// `[d_in, d_sae]`: `diag(1/input_std) W_enc`.
    pub w_enc: Vec<f32>,
    /// `[d_sae, d_in]`: `W_dec diag(input_std)`.
    pub w_dec: Vec<f32>,
    /// `[d_sae]`: unchanged.
    pub b_enc: Vec<f32>,
    /// `[d_in]`: `input_mean + input_std * b_dec`.
    pub b_dec: Vec<f32>,
    /// `[d_sae]` JumpReLU threshold (BatchTopK / JumpReLU SAEs), unchanged.
    pub threshold: Option<Vec<f32>>,
}

/// What [`export_saelens`] wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    /// Output folder.
    pub out: PathBuf,
    /// scsae architecture of the source SAE.
    pub source_architecture: String,
    /// SAELens architecture written (`standard`, `topk`, `jumprelu`).
    pub architecture: String,
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// `k` of a TopK export.
    pub k: Option<usize>,
    /// [`SAELENS_VERSION`].
    pub sae_lens_version: String,
}

impl std::fmt::Display for ExportReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: SAELens '{}' SAE ({} -> {}",
            self.out.display(),
            self.architecture,
            self.d_in,
            self.d_sae
        )?;
        if let Some(k) = self.k {
            write!(f, ", k {k}")?;
        }
        write!(
            f,
            ") from a {} SAE, z-score folded into the weights; load with sae_lens.SAE.load_from_disk",
            self.source_architecture
        )
    }
}

/// SAELens architecture name and `k` (TopK) for an scsae architecture.
fn saelens_arch(sae: &Sae) -> Result<(&'static str, Option<usize>)> {
    let arch = sae.arch()?;
    Ok(match (arch, sae.sparsifier()?) {
        (Arch::Standard, _) => ("standard", None),
        (Arch::Topk, Sparsifier::TopK(k)) => ("topk", Some(k)),
        (Arch::Batchtopk | Arch::Matryoshka | Arch::Jumprelu, Sparsifier::Threshold(_)) => {
            ("jumprelu", None)
        }
        (a, _) => {
            return Err(Error::input(
                sae_origin(sae),
                format!("cannot export a {a} SAE to SAELens"),
            ))
        }
    })
}

fn sae_origin(sae: &Sae) -> PathBuf {
    sae.dir.clone().unwrap_or_else(|| PathBuf::from("<sae>"))
}

/// Fold the z-score into the weights (see the module documentation for the algebra); computed in
/// f64 and rounded once to f32.
pub fn fold_zscore(sae: &Sae) -> Result<FoldedTensors> {
    let (d, m) = (sae.d_in(), sae.d_sae());
    let origin = sae_origin(sae);
    let check = |name: &str, len: usize, want: usize| -> Result<()> {
        if len != want {
            return Err(Error::input(
                &origin,
                format!("tensor '{name}' has {len} values, expected {want}"),
            ));
        }
        Ok(())
    };
    check("W_enc", sae.w_enc.len(), d * m)?;
    check("W_dec", sae.w_dec.len(), m * d)?;
    check("b_enc", sae.b_enc.len(), m)?;
    check("b_dec", sae.b_dec.len(), d)?;
    check("input_mean", sae.input_mean.len(), d)?;
    check("input_std", sae.input_std.len(), d)?;
    if let Some(th) = &sae.threshold {
        check("threshold", th.len(), m)?;
    }
    if let Some(i) = sae
        .input_std
        .iter()
        .position(|s| !(s.is_finite() && *s > 0.0))
    {
        return Err(Error::input(
            &origin,
            format!(
                "input_std[{i}] = {} is not a positive number",
                sae.input_std[i]
            ),
        ));
    }
    let sigma: Vec<f64> = sae.input_std.iter().map(|&s| s as f64).collect();
    let mu: Vec<f64> = sae.input_mean.iter().map(|&s| s as f64).collect();
    let mut w_enc = Vec::with_capacity(d * m);
    for (i, row) in sae.w_enc.chunks_exact(m).enumerate() {
        w_enc.extend(row.iter().map(|&w| (w as f64 / sigma[i]) as f32));
    }
    let mut w_dec = Vec::with_capacity(m * d);
    for row in sae.w_dec.chunks_exact(d) {
        w_dec.extend(row.iter().zip(&sigma).map(|(&w, s)| (w as f64 * s) as f32));
    }
    let b_dec = sae
        .b_dec
        .iter()
        .zip(&sigma)
        .zip(&mu)
        .map(|((&b, s), mu)| (mu + s * b as f64) as f32)
        .collect();
    Ok(FoldedTensors {
        w_enc,
        w_dec,
        b_enc: sae.b_enc.clone(),
        b_dec,
        threshold: sae.threshold.clone(),
    })
}

/// The `cfg.json` of the exported SAE: exactly the keys SAELens 6's `SAEConfig.to_dict()` writes
/// for the architecture, with the model, hook and data set in `metadata`.
pub fn saelens_cfg(sae: &Sae) -> Result<Value> {
    let (arch, k) = saelens_arch(sae)?;
    let hook_name = if sae.cfg.hook_name.is_empty() {
        hook_for_layer(sae.source_layer().as_deref()).0
    } else {
        sae.cfg.hook_name.clone()
    };
    let mut cfg = json!({
        "d_in": sae.d_in(),
        "d_sae": sae.d_sae(),
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": true,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": Value::Null,
            "model_name": sae.cfg.model_name,
            "hook_name": hook_name,
            "hook_head_index": sae.cfg.hook_head_index,
            "prepend_bos": sae.cfg.prepend_bos,
            "context_size": sae.cfg.context_size,
            "dataset_path": sae.cfg.dataset_path,
        },
        "architecture": arch,
    });
    if let Some(k) = k {
        cfg["k"] = json!(k);
        cfg["rescale_acts_by_decoder_norm"] = json!(false);
    }
    Ok(cfg)
}

/// `sae_weights.safetensors` bytes of the folded tensors (F32, `{"format": "pt"}` metadata).
fn weights_bytes(path: &Path, d: usize, m: usize, t: &FoldedTensors) -> Result<Vec<u8>> {
    let mut entries: Vec<(&str, Vec<usize>, &Vec<f32>)> = vec![
        ("W_enc", vec![d, m], &t.w_enc),
        ("W_dec", vec![m, d], &t.w_dec),
        ("b_enc", vec![m], &t.b_enc),
        ("b_dec", vec![d], &t.b_dec),
    ];
    if let Some(th) = &t.threshold {
        entries.push(("threshold", vec![m], th));
    }
    let bytes: Vec<Vec<u8>> = entries.iter().map(|(_, _, v)| f32_bytes(v)).collect();
    let mut views = Vec::new();
    for ((name, shape, _), b) in entries.iter().zip(&bytes) {
        let v = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::input(path, format!("tensor {name}: {e}")))?;
        views.push((name.to_string(), v));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::input(path, format!("cannot serialise: {e}")))
}

/// Write `sae` into the folder `out` in SAELens's layout with the z-score folded into the weights
/// (see the module documentation). An existing export in `out` is refused unless `force`; `out`
/// must not be the SAE's own folder. Files are written atomically, weights first.
pub fn export_saelens(sae: &Sae, out: &Path, force: bool) -> Result<ExportReport> {
    let (arch, k) = saelens_arch(sae)?;
    if let Some(src) = &sae.dir {
        if let (Ok(a), Ok(b)) = (src.canonicalize(), out.canonicalize()) {
            if a == b {
                return Err(Error::input(
                    out,
                    "is the SAE's own folder; choose another --out for the SAELens export",
                ));
            }
        }
    }
    let weights_path = out.join(WEIGHTS_FILE);
    let cfg_path = out.join(CFG_FILE);
    let info_path = out.join(EXPORT_INFO_FILE);
    check_new_output(&[&cfg_path, &weights_path], force)?;
    let folded = fold_zscore(sae)?;
    let cfg = saelens_cfg(sae)?;
    let bytes = weights_bytes(&weights_path, sae.d_in(), sae.d_sae(), &folded)?;
    let report = ExportReport {
        out: out.to_path_buf(),
        source_architecture: sae.arch()?.to_string(),
        architecture: arch.to_string(),
        d_in: sae.d_in(),
        d_sae: sae.d_sae(),
        k,
        sae_lens_version: SAELENS_VERSION.to_string(),
    };
    let scsae_info = serde_json::to_value(&sae.cfg.scsae)
        .map_err(|e| Error::input(&info_path, format!("cannot serialise JSON: {e}")))?;
    let info = json!({
        "format": "scsae-saelens-export/1",
        "software_version": env!("CARGO_PKG_VERSION"),
        "source_sae": sae.dir.as_ref().map(|p| p.display().to_string()),
        "source_architecture": report.source_architecture,
        "architecture": arch,
        "zscore_folded": "W_enc' = diag(1/input_std) W_enc; b_enc' = b_enc; W_dec' = W_dec diag(input_std); b_dec' = input_mean + input_std * b_dec; threshold unchanged",
        "inputs": "raw activations (no z-score): codes equal scsae encode; sae.decode gives reconstructions in activation space",
        "sae_lens_version": SAELENS_VERSION,
        "scsae": scsae_info,
    });
    let _lock = OutputLock::acquire(out)?;
    remove_stale_temporaries(out)?;
    write_bytes_atomic(&weights_path, &bytes)?;
    write_json_atomic(&cfg_path, &cfg)?;
    write_json_atomic(&info_path, &info)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::saelens::{SaeConfig, SaeTensors};

    fn tiny(arch: &str) -> Sae {
        let cfg = SaeConfig {
            d_in: 2,
            d_sae: 3,
            architecture: arch.into(),
            activation_fn_kwargs: json!({"k": 2}),
            ..SaeConfig::default()
        };
        let t = SaeTensors {
            w_enc: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            w_dec: vec![1.0, 0.0, 0.0, 1.0, 0.5, 0.5],
            b_enc: vec![0.1, 0.2, 0.3],
            b_dec: vec![1.0, -1.0],
            input_mean: vec![10.0, 20.0],
            input_std: vec![2.0, 4.0],
            threshold: (arch == "batchtopk").then(|| vec![0.0, 0.5, 1.0]),
        };
        Sae::from_parts(cfg, t, None)
    }

    #[test]
    fn folding_by_hand() {
        let f = fold_zscore(&tiny("standard")).unwrap();
        assert_eq!(f.w_enc, vec![0.5, 1.0, 1.5, 1.0, 1.25, 1.5]);
        assert_eq!(f.w_dec, vec![2.0, 0.0, 0.0, 4.0, 1.0, 2.0]);
        assert_eq!(f.b_dec, vec![12.0, 16.0]);
        assert_eq!(f.b_enc, vec![0.1, 0.2, 0.3]);
    }

    #[test]
    fn cfg_keys_per_architecture() {
        let keys = |c: &Value| {
            let mut k: Vec<String> = c.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let std_cfg = saelens_cfg(&tiny("standard")).unwrap();
        assert_eq!(std_cfg["architecture"], "standard");
        assert_eq!(keys(&std_cfg).len(), 9);
        let topk = saelens_cfg(&tiny("topk")).unwrap();
        assert_eq!(topk["architecture"], "topk");
        assert_eq!(topk["k"], 2);
        assert_eq!(keys(&topk).len(), 11);
        let btk = saelens_cfg(&tiny("batchtopk")).unwrap();
        assert_eq!(btk["architecture"], "jumprelu");
        assert!(btk.get("k").is_none());
    }
}
