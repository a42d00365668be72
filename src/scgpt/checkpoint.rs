//! Checkpoint folders: `args.json`, `vocab.json` and the weights, as the scGPT authors release them.
//!
//! Weights are read from `best_model.pt` (a PyTorch zip state_dict, read directly with candle's pickle
//! reader; nothing is executed) or from a `.safetensors` file. Key names are mapped to one layout:
//!
//! | in the file | used as |
//! |---|---|
//! | `module.` prefix (DDP) | stripped |
//! | `...self_attn.Wqkv.{weight,bias}` (flash-attn, released checkpoints) | `...self_attn.in_proj_{weight,bias}` |
//! | `...self_attn._impl.Wqkv.*`, `..._impl.out_proj.*` (wrapper) | `...self_attn.in_proj_*`, `...self_attn.out_proj.*` |
//! | `...self_attn.in_proj_{weight,bias}` (PyTorch) | unchanged (rows are `[q; k; v]` in every variant) |
//!
//! The masked-expression head (`decoder.fc.*`) is kept when present ([`Scgpt::expr_head`]); the other
//! heads (`mvc_decoder.*`, `cls_decoder.*`, `flag_encoder.*`, ...) are ignored. A missing
//! tensor, a wrong shape, a block beyond `nlayers`, a non-finite value, or an embedding whose row count
//! disagrees with the vocabulary is an error naming the tensor and the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::scgpt::config::ScgptConfig;
use crate::scgpt::expr_head::ExprHead;
use crate::scgpt::model::{Block, Linear, Norm, ScgptModel};
use crate::scgpt::vocab::Vocab;

/// The on-disk format of a weights file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsFormat {
    /// PyTorch zip (`torch.save` of a state_dict).
    Pytorch,
    /// safetensors.
    Safetensors,
}

/// A weights file and its format.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsFile {
    /// Path of the file.
    pub path: PathBuf,
    /// Its format.
    pub format: WeightsFormat,
}

impl WeightsFile {
    /// Classify a file by extension (`.safetensors` vs anything else = PyTorch).
    pub fn from_path(path: &Path) -> WeightsFile {
        let st = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        WeightsFile {
            path: path.to_path_buf(),
            format: if st {
                WeightsFormat::Safetensors
            } else {
                WeightsFormat::Pytorch
            },
        }
    }

    /// The weights of a model folder: `best_model.pt`, else `model.safetensors` or
    /// `best_model.safetensors`.
    pub fn find(dir: &Path) -> Result<WeightsFile> {
        for name in [
            "best_model.pt",
            "model.safetensors",
            "best_model.safetensors",
        ] {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(WeightsFile::from_path(&p));
            }
        }
        Err(Error::input(
            dir,
            "no weights in the model folder (expected best_model.pt, model.safetensors or best_model.safetensors)",
        ))
    }
}

/// Map a state-dict key to the internal (PyTorch `nn.TransformerEncoder`) naming.
pub fn canonical_key(raw: &str) -> String {
    let mut k = raw;
    while let Some(rest) = k.strip_prefix("module.") {
        k = rest;
    }
    k.replace(".self_attn._impl.", ".self_attn.")
        .replace(".self_attn.Wqkv.weight", ".self_attn.in_proj_weight")
        .replace(".self_attn.Wqkv.bias", ".self_attn.in_proj_bias")
}

/// Every floating-point tensor of a weights file, by canonical key, as `f32` on the CPU, with the
/// key names as found in the file.
pub fn read_tensors(file: &WeightsFile) -> Result<(HashMap<String, Tensor>, Vec<String>)> {
    let path = &file.path;
    if !path.is_file() {
        return Err(Error::input(path, "weights file not found"));
    }
    let raw: Vec<(String, Tensor)> = match file.format {
        WeightsFormat::Pytorch => read_pytorch(path)?,
        WeightsFormat::Safetensors => guarded(path, "safetensors", || {
            candle_core::safetensors::load(path, &Device::Cpu).map(|m| m.into_iter().collect())
        })?,
    };
    let mut out: HashMap<String, Tensor> = HashMap::with_capacity(raw.len());
    let mut origin: HashMap<String, String> = HashMap::new();
    for (name, t) in raw {
        let key = canonical_key(&name);
        if let Some(prev) = origin.get(&key) {
            return Err(Error::input(
                path,
                format!("tensors '{prev}' and '{name}' both map to '{key}'"),
            ));
        }
        let t = match t.dtype() {
            DType::F32 => t,
            DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
            _ => continue, // integer buffers (e.g. batch-norm counters) are never weights here
        };
        origin.insert(key.clone(), name);
        out.insert(key, t);
    }
    let mut names: Vec<String> = origin.into_values().collect();
    names.sort();
    Ok((out, names))
}

/// Run a reader that may fail or (on malformed input) panic inside a dependency; both become an
/// input error naming the file.
fn guarded<T>(path: &Path, what: &str, f: impl FnOnce() -> candle_core::Result<T>) -> Result<T> {
    crate::io::guard::catch_panics(path, &format!("cannot read {what} weights"), || {
        f().map_err(|e| {
            Error::input(
                path,
                format!("cannot read {what} weights (truncated or corrupt file?): {e}"),
            )
        })
    })
}

fn read_pytorch(path: &Path) -> Result<Vec<(String, Tensor)>> {
    // A plain state_dict first; checkpoints saved as {"model_state_dict": ...} etc. next.
    for key in [
        None,
        Some("model_state_dict"),
        Some("state_dict"),
        Some("model"),
    ] {
        let infos = guarded(path, "PyTorch", || {
            candle_core::pickle::read_pth_tensor_info(path, false, key)
        });
        let infos = match (infos, key) {
            (Ok(i), _) => i,
            (Err(e), None) => return Err(e),
            (Err(_), Some(_)) => continue,
        };
        if infos.is_empty() {
            continue;
        }
        // Check every storage exists and is long enough before reading, so a damaged archive
        // names the tensor instead of failing deep inside the reader.
        let pth = guarded(path, "PyTorch", || {
            candle_core::pickle::PthTensors::new(path, key)
        })?;
        let mut names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let t = guarded(path, "PyTorch", || pth.get(&name)).map_err(|e| match e {
                Error::Input { path, msg } => Error::input(path, format!("tensor '{name}': {msg}")),
                other => other,
            })?;
            if let Some(t) = t {
                out.push((name, t));
            }
        }
        return Ok(out);
    }
    Err(Error::input(
        path,
        "no tensors found: not a PyTorch state_dict (expected torch.save(model.state_dict()))",
    ))
}

/// Takes named tensors out of a checkpoint, checking shapes.
struct TensorTaker<'a> {
    tensors: &'a HashMap<String, Tensor>,
    path: &'a Path,
    device: &'a Device,
    dtype: DType,
}

impl TensorTaker<'_> {
    fn get(&self, key: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.tensors.get(key).ok_or_else(|| {
            let hint = if key.contains("in_proj_") {
                format!(
                    " (also looked for '{}')",
                    key.replace("in_proj_weight", "Wqkv.weight")
                        .replace("in_proj_bias", "Wqkv.bias")
                )
            } else {
                String::new()
            };
            Error::input(self.path, format!("missing tensor '{key}'{hint}"))
        })?;
        if t.dims() != shape {
            return Err(Error::input(
                self.path,
                format!(
                    "tensor '{key}' has shape {:?}, expected {shape:?} (sizes from args.json)",
                    t.dims()
                ),
            ));
        }
        let finite = t.abs()?.max_all()?.to_scalar::<f32>()?;
        if !finite.is_finite() {
            return Err(Error::input(
                self.path,
                format!("tensor '{key}' contains non-finite values"),
            ));
        }
        Ok(t.to_device(self.device)?.to_dtype(self.dtype)?)
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{prefix}.weight"), &[out, inp])?,
            bias: self.get(&format!("{prefix}.bias"), &[out])?,
        })
    }

    fn in_proj(&self, prefix: &str, d: usize) -> Result<Linear> {
        Ok(Linear {
            weight: self.get(&format!("{prefix}.in_proj_weight"), &[3 * d, d])?,
            bias: self.get(&format!("{prefix}.in_proj_bias"), &[3 * d])?,
        })
    }

    fn norm(&self, prefix: &str, d: usize) -> Result<Norm> {
        Ok(Norm {
            weight: self.get(&format!("{prefix}.weight"), &[d])?,
            bias: self.get(&format!("{prefix}.bias"), &[d])?,
        })
    }
}

/// Build the encoder from canonical tensors, checking every key, shape and the vocabulary size.
pub fn build_model(
    tensors: &HashMap<String, Tensor>,
    config: &ScgptConfig,
    vocab_len: usize,
    weights_path: &Path,
    device: &Device,
    dtype: DType,
) -> Result<ScgptModel> {
    let d = config.embsize;
    let take = TensorTaker {
        tensors,
        path: weights_path,
        device,
        dtype,
    };
    // Blocks beyond nlayers mean args.json and the weights disagree.
    for key in tensors.keys() {
        if let Some(rest) = key.strip_prefix("transformer_encoder.layers.") {
            let idx: Option<usize> = rest.split('.').next().and_then(|s| s.parse().ok());
            if let Some(i) = idx.filter(|&i| i >= config.nlayers) {
                return Err(Error::input(
                    weights_path,
                    format!(
                        "the weights have transformer block {i} but args.json says nlayers = {}",
                        config.nlayers
                    ),
                ));
            }
        }
    }
    let emb_key = "encoder.embedding.weight";
    let emb = tensors
        .get(emb_key)
        .ok_or_else(|| Error::input(weights_path, format!("missing tensor '{emb_key}'")))?;
    let rows = emb.dims().first().copied().unwrap_or(0);
    if rows != vocab_len {
        return Err(Error::input(
            weights_path,
            format!(
                "vocab.json has {vocab_len} tokens (special tokens included) but '{emb_key}' has {rows} rows: the vocabulary does not belong to these weights"
            ),
        ));
    }
    let gene_embedding = take.get(emb_key, &[vocab_len, d])?;
    // no capacity from args.json: a corrupt nlayers fails at the first missing layer instead
    let mut blocks = Vec::new();
    for i in 0..config.nlayers {
        let p = format!("transformer_encoder.layers.{i}");
        blocks.push(Block {
            qkv: take.in_proj(&format!("{p}.self_attn"), d)?,
            out_proj: take.linear(&format!("{p}.self_attn.out_proj"), d, d)?,
            linear1: take.linear(&format!("{p}.linear1"), config.d_hid, d)?,
            linear2: take.linear(&format!("{p}.linear2"), d, config.d_hid)?,
            norm1: take.norm(&format!("{p}.norm1"), d)?,
            norm2: take.norm(&format!("{p}.norm2"), d)?,
        });
    }
    Ok(ScgptModel {
        config: config.clone(),
        gene_embedding,
        gene_norm: take.norm("encoder.enc_norm", d)?,
        value_linear1: take.linear("value_encoder.linear1", d, 1)?,
        value_linear2: take.linear("value_encoder.linear2", d, d)?,
        value_norm: take.norm("value_encoder.norm", d)?,
        blocks,
        device: device.clone(),
        dtype,
    })
}

/// How the attention projections were named in the file (for the manifest).
pub fn key_naming(raw_keys: &[String]) -> &'static str {
    if raw_keys.iter().any(|k| k.contains("._impl.")) {
        "wrapper (_impl.Wqkv)"
    } else if raw_keys.iter().any(|k| k.contains(".Wqkv.")) {
        "flash-attn (Wqkv)"
    } else {
        "pytorch (in_proj)"
    }
}

/// A loaded checkpoint folder: configuration, vocabulary and encoder.
#[derive(Debug, Clone)]
pub struct Scgpt {
    /// The folder it came from.
    pub dir: PathBuf,
    /// The weights file read.
    pub weights: WeightsFile,
    /// `args.json`.
    pub config: ScgptConfig,
    /// `vocab.json` with specials.
    pub vocab: Vocab,
    /// The encoder.
    pub model: ScgptModel,
    /// Attention key naming found in the file.
    pub key_naming: String,
    /// The masked-expression head (`decoder.fc.*`), or why the checkpoint has none usable.
    pub expr_head: std::result::Result<ExprHead, String>,
}

impl Scgpt {
    /// Load a checkpoint folder (`args.json`, `vocab.json`, weights found by [`WeightsFile::find`])
    /// onto the runtime's device and dtype.
    pub fn load(dir: &Path, rt: &Runtime) -> Result<Scgpt> {
        Self::load_with(dir, None, rt)
    }

    /// As [`Scgpt::load`], with an explicit weights file (`.pt` or `.safetensors`).
    pub fn load_with(dir: &Path, weights: Option<&Path>, rt: &Runtime) -> Result<Scgpt> {
        if !dir.is_dir() {
            return Err(Error::input(dir, "model folder not found"));
        }
        let config = ScgptConfig::read(&dir.join("args.json"))?;
        let vocab = Vocab::read(&dir.join("vocab.json"))?;
        vocab
            .require(&config.pad_token)
            .map_err(|m| Error::input(dir.join("vocab.json"), m))?;
        let weights = match weights {
            Some(p) => WeightsFile::from_path(p),
            None => WeightsFile::find(dir)?,
        };
        let (tensors, raw_names) = read_tensors(&weights)?;
        let model = build_model(
            &tensors,
            &config,
            vocab.len(),
            &weights.path,
            &rt.device,
            rt.dtype,
        )
        .map_err(|e| match e {
            Error::Input { path, msg } if msg.contains("vocab.json has") => Error::input(
                dir.join("vocab.json"),
                format!("{msg} ({})", path.display()),
            ),
            other => other,
        })?;
        let key_naming = key_naming(&raw_names).to_string();
        let expr_head = ExprHead::take(&tensors, config.embsize, &rt.device, rt.dtype);
        Ok(Scgpt {
            dir: dir.to_path_buf(),
            weights,
            config,
            vocab,
            model,
            key_naming,
            expr_head,
        })
    }

    /// The masked-expression head, or an error naming the weights file when it has none.
    pub fn require_expr_head(&self) -> Result<&ExprHead> {
        self.expr_head
            .as_ref()
            .map_err(|why| Error::input(&self.weights.path, why.clone()))
    }

    /// Id of the padding token.
    pub fn pad_id(&self) -> u32 {
        self.vocab.id(&self.config.pad_token).unwrap_or(0)
    }

    /// A JSON description for manifests: folder, weights, sizes and `args.json` values.
    pub fn describe(&self) -> serde_json::Value {
        let abs = |p: &Path| {
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.to_path_buf())
                .display()
                .to_string()
        };
        let mut sizes = BTreeMap::new();
        sizes.insert("vocab_size", self.vocab.len());
        sizes.insert("d_model", self.config.embsize);
        sizes.insert("nlayers", self.config.nlayers);
        sizes.insert("nheads", self.config.nheads);
        sizes.insert("d_hid", self.config.d_hid);
        serde_json::json!({
            "kind": "scGPT",
            "dir": abs(&self.dir),
            "weights": abs(&self.weights.path),
            "format": self.weights.format,
            "key_naming": self.key_naming,
            "sizes": sizes,
            "args": self.config,
        })
    }
}

/// Write a checkpoint folder in the released layout (`args.json`, `vocab.json`,
/// `model.safetensors` with flash-attn `Wqkv` naming) with seeded random weights: for benchmarks
/// and pipeline tests without downloading a released model. `genes` become vocabulary ids
/// `0..genes.len()`, followed by `<pad>`, `<cls>`, `<eoc>`.
pub fn write_random_checkpoint(
    dir: &Path,
    config: &ScgptConfig,
    genes: &[String],
    seed: u64,
) -> Result<()> {
    use crate::io::atomic::{write_bytes_atomic, write_json_atomic};
    use rand::{Rng, SeedableRng};
    config.validate().map_err(Error::invalid)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut vocab = serde_json::Map::new();
    for (i, g) in genes.iter().enumerate() {
        vocab.insert(g.clone(), i.into());
    }
    for (k, s) in crate::scgpt::vocab::SPECIAL_TOKENS.iter().enumerate() {
        vocab.insert(s.to_string(), (genes.len() + k).into());
    }
    let v = vocab.len();
    let d = config.embsize;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut uniform = |name: String, shape: Vec<usize>, scale: f32, base: f32| {
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|_| base + rng.random_range(-scale..scale))
            .collect();
        tensors.push((name, shape, data));
    };
    let lin = |fan_in: usize| (1.0 / fan_in as f32).sqrt();
    uniform("encoder.embedding.weight".into(), vec![v, d], 0.1, 0.0);
    for p in ["encoder.enc_norm", "value_encoder.norm"] {
        uniform(format!("{p}.weight"), vec![d], 0.1, 1.0);
        uniform(format!("{p}.bias"), vec![d], 0.1, 0.0);
    }
    uniform("value_encoder.linear1.weight".into(), vec![d, 1], 1.0, 0.0);
    uniform("value_encoder.linear1.bias".into(), vec![d], 1.0, 0.0);
    uniform(
        "value_encoder.linear2.weight".into(),
        vec![d, d],
        lin(d),
        0.0,
    );
    uniform("value_encoder.linear2.bias".into(), vec![d], lin(d), 0.0);
    for l in 0..config.nlayers {
        let p = format!("transformer_encoder.layers.{l}");
        uniform(
            format!("{p}.self_attn.Wqkv.weight"),
            vec![3 * d, d],
            lin(d),
            0.0,
        );
        uniform(format!("{p}.self_attn.Wqkv.bias"), vec![3 * d], 0.02, 0.0);
        uniform(
            format!("{p}.self_attn.out_proj.weight"),
            vec![d, d],
            lin(d),
            0.0,
        );
        uniform(format!("{p}.self_attn.out_proj.bias"), vec![d], 0.02, 0.0);
        uniform(
            format!("{p}.linear1.weight"),
            vec![config.d_hid, d],
            lin(d),
            0.0,
        );
        uniform(format!("{p}.linear1.bias"), vec![config.d_hid], lin(d), 0.0);
        uniform(
            format!("{p}.linear2.weight"),
            vec![d, config.d_hid],
            lin(config.d_hid),
            0.0,
        );
        uniform(format!("{p}.linear2.bias"), vec![d], lin(config.d_hid), 0.0);
        for n in ["norm1", "norm2"] {
            uniform(format!("{p}.{n}.weight"), vec![d], 0.1, 1.0);
            uniform(format!("{p}.{n}.bias"), vec![d], 0.1, 0.0);
        }
    }
    // the masked-expression head (`decoder.fc`), as in released checkpoints
    for (i, out) in [(0, d), (2, d), (4, 1)] {
        uniform(format!("decoder.fc.{i}.weight"), vec![out, d], lin(d), 0.0);
        uniform(format!("decoder.fc.{i}.bias"), vec![out], lin(d), 0.0);
    }
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, data)| crate::io::matrix::f32_bytes(data))
        .collect();
    let path = dir.join("model.safetensors");
    let mut views = Vec::with_capacity(tensors.len());
    for ((name, shape, _), b) in tensors.iter().zip(&bytes) {
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
            .map_err(|e| Error::input(&path, format!("tensor {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let out = safetensors::serialize(views, None)
        .map_err(|e| Error::input(&path, format!("cannot serialise: {e}")))?;
    write_bytes_atomic(&path, &out)?;
    write_json_atomic(&dir.join("vocab.json"), &vocab)?;
    write_json_atomic(&dir.join("args.json"), config)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_naming_variant_maps_to_one_layout() {
        let want = "transformer_encoder.layers.3.self_attn.in_proj_weight";
        for raw in [
            "transformer_encoder.layers.3.self_attn.Wqkv.weight",
            "module.transformer_encoder.layers.3.self_attn.Wqkv.weight",
            "transformer_encoder.layers.3.self_attn._impl.Wqkv.weight",
            "transformer_encoder.layers.3.self_attn.in_proj_weight",
        ] {
            assert_eq!(canonical_key(raw), want, "{raw}");
        }
        assert_eq!(
            canonical_key("transformer_encoder.layers.0.self_attn._impl.out_proj.bias"),
            "transformer_encoder.layers.0.self_attn.out_proj.bias"
        );
        assert_eq!(
            canonical_key("module.encoder.embedding.weight"),
            "encoder.embedding.weight"
        );
        assert_eq!(
            canonical_key("mvc_decoder.gene2query.weight"),
            "mvc_decoder.gene2query.weight"
        );
    }

    #[test]
    fn key_naming_is_reported() {
        let k = |v: &[&str]| key_naming(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(k(&["a.self_attn.Wqkv.weight"]), "flash-attn (Wqkv)");
        assert_eq!(
            k(&["a.self_attn._impl.Wqkv.weight"]),
            "wrapper (_impl.Wqkv)"
        );
        assert_eq!(k(&["a.self_attn.in_proj_weight"]), "pytorch (in_proj)");
    }
}
