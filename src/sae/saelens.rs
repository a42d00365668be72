//! The saved-SAE folder in the SAELens layout: `sae_weights.safetensors` + `cfg.json`.
//!
//! Tensors: `W_enc` F32 `[d_in, d_sae]`, `W_dec` F32 `[d_sae, d_in]`, `b_enc` `[d_sae]`, `b_dec`
//! `[d_in]`, the z-score statistics `input_mean` / `input_std` `[d_in]`, and for BatchTopK (or an
//! imported JumpReLU SAE) `threshold` `[d_sae]`. `cfg.json` holds SAELens's keys plus an `scsae`
//! object with the training options, input level, activation source and final metrics.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::activations::Provenance;
use crate::error::{Error, IoContext, Result};
use crate::io::atomic::{write_bytes_atomic, write_json_atomic};
use crate::io::matrix::{f32_bytes, tensor_to_f32};
use crate::sae::config::{InputLevel, TrainConfig};
use crate::sae::metrics::Metrics;

/// File name of the weights.
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";
/// File name of the configuration.
pub const CFG_FILE: &str = "cfg.json";
/// Format tag in `cfg.json`'s `scsae.format`.
pub const FORMAT: &str = "scsae-sae/1";

/// The `scsae` object inside `cfg.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ScsaeInfo {
    /// [`FORMAT`].
    pub format: String,
    /// scsae version that trained the SAE.
    pub software_version: String,
    /// Training options.
    pub train: TrainConfig,
    /// Tokens or cells.
    pub level: InputLevel,
    /// Activation source.
    pub source: Provenance,
    /// Number of training inputs after subsampling.
    pub n_train_inputs: usize,
    /// Final metrics on the training inputs.
    pub metrics: Option<Metrics>,
}

/// `cfg.json`: SAELens keys plus [`ScsaeInfo`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaeConfig {
    /// Input width.
    pub d_in: usize,
    /// Dictionary size.
    pub d_sae: usize,
    /// `"standard"`, `"topk"`, `"batchtopk"`, `"matryoshka_batchtopk"`, `"jumprelu"` (trained here or
    /// imported from SAELens).
    pub architecture: String,
    /// `"relu"` or `"topk"`.
    pub activation_fn_str: String,
    /// `{"k": K}` for TopK / BatchTopK, `{}` otherwise.
    pub activation_fn_kwargs: serde_json::Value,
    /// SAELens 6's top-level `k` of a TopK SAE (read from an exported or SAELens folder; scsae
    /// writes `activation_fn_kwargs.k`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<u64>,
    /// Always true: `b_dec` is subtracted from the input before encoding.
    pub apply_b_dec_to_input: bool,
    /// `"none"`: z-scoring is done with `input_mean` / `input_std`, outside SAELens's options.
    pub normalize_activations: String,
    /// `"float32"`.
    pub dtype: String,
    /// `"cpu"`.
    pub device: String,
    /// e.g. `"scgpt.blocks.11.hook_resid_post"`.
    pub hook_name: String,
    /// Layer number (-1 when not a transformer block).
    pub hook_layer: i64,
    /// Always null (residual stream, not a head).
    pub hook_head_index: Option<i64>,
    /// Model name from the extraction manifest (`"scgpt"` by default).
    pub model_name: String,
    /// Training data description.
    pub dataset_path: String,
    /// SAELens key; false.
    pub prepend_bos: bool,
    /// SAELens key; tokens per scGPT context when known.
    pub context_size: Option<usize>,
    /// SAELens key; false.
    pub finetuning_scaling_factor: bool,
    /// scsae-specific training record.
    pub scsae: ScsaeInfo,
}

impl Default for SaeConfig {
    fn default() -> Self {
        SaeConfig {
            d_in: 0,
            d_sae: 0,
            architecture: "standard".into(),
            activation_fn_str: "relu".into(),
            activation_fn_kwargs: serde_json::json!({}),
            k: None,
            apply_b_dec_to_input: true,
            normalize_activations: "none".into(),
            dtype: "float32".into(),
            device: "cpu".into(),
            hook_name: String::new(),
            hook_layer: -1,
            hook_head_index: None,
            model_name: "scgpt".into(),
            dataset_path: String::new(),
            prepend_bos: false,
            context_size: None,
            finetuning_scaling_factor: false,
            scsae: ScsaeInfo::default(),
        }
    }
}

impl SaeConfig {
    /// A short name of the SAE for figure titles: layer, sparsity rule and size, e.g.
    /// `SAE layer 11, L1 λ=3, 2048 features` or `SAE layer cls, TopK k=32, 256 features`.
    pub fn run_name(&self) -> String {
        let layer = if self.hook_layer >= 0 {
            self.hook_layer.to_string()
        } else if let Some(l) = &self.scsae.source.layer {
            l.clone()
        } else {
            self.hook_name
                .strip_prefix("scgpt.hook_")
                .unwrap_or(&self.hook_name)
                .to_string()
        };
        let t = &self.scsae.train;
        let k = self
            .k
            .map(|k| k as usize)
            .or_else(|| {
                self.activation_fn_kwargs
                    .get("k")
                    .and_then(|v| v.as_u64())
                    .map(|k| k as usize)
            })
            .unwrap_or(t.k);
        let rule = match self.architecture.as_str() {
            "standard" => format!("L1 λ={}", t.lambda),
            "topk" => format!("TopK k={k}"),
            "batchtopk" => format!("BatchTopK k={k}"),
            "matryoshka_batchtopk" => format!("Matryoshka BatchTopK k={k}"),
            "jumprelu" if self.scsae.train.arch == crate::sae::Arch::Jumprelu => {
                format!("JumpReLU L0 λ={}", t.lambda)
            }
            "jumprelu" => "JumpReLU".to_string(),
            other => other.to_string(),
        };
        format!("SAE layer {layer}, {rule}, {} features", self.d_sae)
    }
}

/// SAELens hook name and layer number for a layer name.
pub fn hook_for_layer(layer: Option<&str>) -> (String, i64) {
    match layer {
        Some(l) => match l.parse::<i64>() {
            Ok(n) => (format!("scgpt.blocks.{n}.hook_resid_post"), n),
            Err(_) if l == "embeddings" => ("scgpt.hook_embed".into(), -1),
            Err(_) => (format!("scgpt.hook_{l}"), -1),
        },
        None => ("input".into(), -1),
    }
}

/// Raw tensors of a saved SAE.
#[derive(Debug, Clone, PartialEq)]
pub struct SaeTensors {
    /// `[d_in, d_sae]`.
    pub w_enc: Vec<f32>,
    /// `[d_sae, d_in]`.
    pub w_dec: Vec<f32>,
    /// `[d_sae]`.
    pub b_enc: Vec<f32>,
    /// `[d_in]`.
    pub b_dec: Vec<f32>,
    /// `[d_in]`.
    pub input_mean: Vec<f32>,
    /// `[d_in]`.
    pub input_std: Vec<f32>,
    /// `[d_sae]` JumpReLU thresholds (BatchTopK), if any.
    pub threshold: Option<Vec<f32>>,
}

/// Write `cfg.json` and `sae_weights.safetensors` into `dir` (each atomically; weights first).
pub fn save(dir: &Path, cfg: &SaeConfig, t: &SaeTensors) -> Result<()> {
    let (d, m) = (cfg.d_in, cfg.d_sae);
    let mut entries: Vec<(&str, Vec<usize>, &Vec<f32>)> = vec![
        ("W_enc", vec![d, m], &t.w_enc),
        ("W_dec", vec![m, d], &t.w_dec),
        ("b_enc", vec![m], &t.b_enc),
        ("b_dec", vec![d], &t.b_dec),
        ("input_mean", vec![d], &t.input_mean),
        ("input_std", vec![d], &t.input_std),
    ];
    if let Some(th) = &t.threshold {
        entries.push(("threshold", vec![m], th));
    }
    let path = dir.join(WEIGHTS_FILE);
    let bytes: Vec<Vec<u8>> = entries.iter().map(|(_, _, v)| f32_bytes(v)).collect();
    let mut views = Vec::new();
    for ((name, shape, _), b) in entries.iter().zip(&bytes) {
        let v = TensorView::new(Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::input(&path, format!("tensor {name}: {e}")))?;
        views.push((name.to_string(), v));
    }
    let meta: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    let out = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::input(&path, format!("cannot serialise: {e}")))?;
    write_bytes_atomic(&path, &out)?;
    write_json_atomic(&dir.join(CFG_FILE), cfg)
}

/// Read a saved SAE folder; every shape is checked against `cfg.json`.
pub fn load(dir: &Path) -> Result<(SaeConfig, SaeTensors)> {
    let cfg_path = dir.join(CFG_FILE);
    let w_path = dir.join(WEIGHTS_FILE);
    if !cfg_path.exists() || !w_path.exists() {
        return Err(Error::input(
            dir,
            format!("not a saved SAE (expected {CFG_FILE} and {WEIGHTS_FILE})"),
        ));
    }
    let cfg: SaeConfig = crate::io::json::read_json(&cfg_path, "SAE config")?;
    let bytes = std::fs::read(&w_path).at(&w_path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::input(&w_path, format!("not a valid safetensors file: {e}")))?;
    let (d, m) = (cfg.d_in, cfg.d_sae);
    if d == 0 || m == 0 {
        return Err(Error::input(&cfg_path, "d_in and d_sae must be positive"));
    }
    let get = |name: &str, shape: &[usize], required: bool| -> Result<Option<Vec<f32>>> {
        let v = match st.tensor(name) {
            Ok(v) => v,
            Err(_) if !required => return Ok(None),
            Err(_) => return Err(Error::input(&w_path, format!("missing tensor '{name}'"))),
        };
        if v.shape() != shape {
            return Err(Error::input(
                &w_path,
                format!(
                    "tensor '{name}' has shape {:?}, expected {shape:?} (d_in {d}, d_sae {m} in {CFG_FILE})",
                    v.shape()
                ),
            ));
        }
        let data = tensor_to_f32(v.dtype(), v.data()).ok_or_else(|| {
            Error::input(
                &w_path,
                format!("tensor '{name}' has unsupported dtype {:?}", v.dtype()),
            )
        })?;
        if let Some(pos) = data.iter().position(|x| !x.is_finite()) {
            return Err(Error::input(
                &w_path,
                format!("tensor '{name}' has a non-finite value at {pos}"),
            ));
        }
        Ok(Some(data))
    };
    let req = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        get(name, shape, true).map(|v| v.unwrap_or_default())
    };
    let t = SaeTensors {
        w_enc: req("W_enc", &[d, m])?,
        w_dec: req("W_dec", &[m, d])?,
        b_enc: req("b_enc", &[m])?,
        b_dec: req("b_dec", &[d])?,
        input_mean: get("input_mean", &[d], false)?.unwrap_or_else(|| vec![0.0; d]),
        input_std: get("input_std", &[d], false)?.unwrap_or_else(|| vec![1.0; d]),
        threshold: get("threshold", &[m], false)?,
    };
    // the z-score is two tensors or none (a SAELens folder): one alone would silently change it
    let has = |name: &str| st.tensor(name).is_ok();
    if has("input_mean") != has("input_std") {
        return Err(Error::input(
            &w_path,
            "input_mean and input_std come together (the z-score of the inputs); one of them is missing",
        ));
    }
    if t.input_std.iter().any(|s| *s <= 0.0) {
        return Err(Error::input(&w_path, "input_std must be positive"));
    }
    Ok((cfg, t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_names_say_layer_rule_and_size() {
        let mut cfg = SaeConfig {
            d_sae: 2048,
            architecture: "standard".into(),
            hook_layer: 11,
            ..SaeConfig::default()
        };
        cfg.scsae.train.lambda = 3.0;
        assert_eq!(cfg.run_name(), "SAE layer 11, L1 λ=3, 2048 features");
        cfg.architecture = "topk".into();
        cfg.activation_fn_kwargs = serde_json::json!({"k": 32});
        cfg.hook_layer = -1;
        cfg.scsae.source.layer = Some("cls".into());
        cfg.d_sae = 256;
        assert_eq!(cfg.run_name(), "SAE layer cls, TopK k=32, 256 features");
    }

    #[test]
    fn a_z_score_with_one_of_its_two_tensors_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (d, m) = (3, 2);
        let cfg = SaeConfig {
            d_in: d,
            d_sae: m,
            ..SaeConfig::default()
        };
        let t = SaeTensors {
            w_enc: vec![0.1; d * m],
            w_dec: vec![0.2; m * d],
            b_enc: vec![0.0; m],
            b_dec: vec![0.0; d],
            input_mean: vec![1.0; d],
            input_std: vec![2.0; d],
            threshold: None,
        };
        save(dir.path(), &cfg, &t).unwrap();
        assert!(load(dir.path()).is_ok());
        // rewrite the weights without input_std
        let w = dir.path().join(WEIGHTS_FILE);
        let bytes = std::fs::read(&w).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let kept: Vec<(String, TensorView<'_>)> = st
            .tensors()
            .into_iter()
            .filter(|(n, _)| n != "input_std")
            .collect();
        std::fs::write(&w, safetensors::serialize(kept, None).unwrap()).unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("input_mean and input_std"), "{e}");
    }
}
