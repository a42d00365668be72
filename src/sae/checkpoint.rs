//! Resumable training state, written atomically as one safetensors file after every epoch.
//!
//! `checkpoint.safetensors` holds the parameters, Adam moments and the dead-feature window counts;
//! its metadata entry `state` (JSON) holds the epoch, step, Adam step, BatchTopK threshold, the
//! training config, an input fingerprint and the per-epoch log. Shuffling draws from a generator
//! seeded by (seed, epoch), so the epoch number is the whole RNG state and `--resume` continues
//! bit-identically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::io::matrix::{f32_le_bytes, tensor_to_f32};
use crate::sae::config::TrainConfig;
use crate::sae::optim::Adam;
use crate::sae::params::Params;

/// File name inside the run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";

/// Running averages over one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct EpochLog {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean total loss over the epoch's batches.
    pub loss: f64,
    /// Mean reconstruction part.
    pub recon_loss: f64,
    /// Mean sparsity part.
    pub l1_loss: f64,
    /// Mean L0 over the epoch's inputs.
    pub l0: f64,
    /// R^2 over the epoch's batches (pooled, against each batch's means).
    pub r2: f64,
    /// Learning rate at the epoch's last step.
    pub lr: f64,
    /// Dead features resampled during the epoch.
    pub resampled: usize,
}

/// Scalar part of the state (the `state` metadata entry).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateMeta {
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps completed.
    pub step: usize,
    /// BatchTopK running threshold (f32 bits, exact through JSON).
    pub threshold_bits: Option<u32>,
    /// Adam hyper-parameters and step count: `[beta1, beta2, eps]`, t.
    pub adam_hyper: [f64; 3],
    /// Adam step count.
    pub adam_t: u64,
    /// The run's config (a resume must use the same).
    pub config: TrainConfig,
    /// Fingerprint of the training inputs (a resume must see the same).
    pub fingerprint: String,
    /// Per-epoch log so far.
    pub history: Vec<EpochLog>,
}

impl StateMeta {
    /// BatchTopK running threshold.
    pub fn threshold(&self) -> Option<f32> {
        self.threshold_bits.map(f32::from_bits)
    }

    /// Set the BatchTopK running threshold.
    pub fn set_threshold(&mut self, t: f32) {
        self.threshold_bits = Some(t.to_bits());
    }
}

impl EpochLog {
    /// Round every value with [`round_sig`](crate::sae::metrics::round_sig).
    pub fn rounded(mut self) -> EpochLog {
        use crate::sae::metrics::round_sig;
        for v in [
            &mut self.loss,
            &mut self.recon_loss,
            &mut self.l1_loss,
            &mut self.l0,
            &mut self.r2,
            &mut self.lr,
        ] {
            *v = round_sig(*v);
        }
        self
    }
}

/// Everything needed to continue training.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Parameters.
    pub params: Params,
    /// Optimiser state.
    pub adam: Adam,
    /// Per-feature firing counts since the last resampling.
    pub window_fired: Vec<u64>,
    /// Inputs seen since the last resampling.
    pub window_inputs: u64,
    /// Per-feature optimiser steps since the feature last fired (SAELens
    /// `n_forward_passes_since_fired`): the dead mask of the TopK auxiliary loss.
    pub since_fired: Vec<u64>,
    /// Scalars.
    pub meta: StateMeta,
}

/// FNV-1a fingerprint of the inputs' shape and z-score statistics.
pub fn fingerprint(n: usize, mean: &[f32], std: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for x in b {
            h ^= *x as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(&(n as u64).to_le_bytes());
    for v in mean.iter().chain(std) {
        eat(&v.to_le_bytes());
    }
    format!("{h:016x}")
}

/// The checkpoint's path in `dir` and its bytes (written atomically, on a background thread, by
/// the training run).
pub fn serialize(dir: &Path, s: &TrainState) -> Result<(PathBuf, Vec<u8>)> {
    let path = dir.join(CHECKPOINT_FILE);
    let p = &s.params;
    let (d, m) = (p.d_in, p.d_sae);
    let counts: Vec<u8> = s
        .window_fired
        .iter()
        .chain(std::iter::once(&s.window_inputs))
        .flat_map(|c| (*c as i64).to_le_bytes())
        .collect();
    let since: Vec<u8> = s
        .since_fired
        .iter()
        .flat_map(|c| (*c as i64).to_le_bytes())
        .collect();
    let mut named: Vec<(String, Vec<usize>, std::borrow::Cow<'_, [u8]>)> = vec![
        ("W_enc".into(), vec![d, m], f32_le_bytes(&p.w_enc)),
        ("W_dec".into(), vec![m, d], f32_le_bytes(&p.w_dec)),
        ("b_enc".into(), vec![m], f32_le_bytes(&p.b_enc)),
        ("b_dec".into(), vec![d], f32_le_bytes(&p.b_dec)),
    ];
    if !p.threshold.is_empty() {
        named.push((
            "threshold".into(),
            vec![p.threshold.len()],
            f32_le_bytes(&p.threshold),
        ));
    }
    for k in 0..s.adam.m.len() {
        if s.adam.m[k].is_empty() {
            continue;
        }
        named.push((
            format!("adam_m_{k}"),
            vec![s.adam.m[k].len()],
            f32_le_bytes(&s.adam.m[k]),
        ));
        named.push((
            format!("adam_v_{k}"),
            vec![s.adam.v[k].len()],
            f32_le_bytes(&s.adam.v[k]),
        ));
    }
    let mut views = Vec::new();
    for (name, shape, bytes) in &named {
        let v = TensorView::new(Dtype::F32, shape.clone(), bytes)
            .map_err(|e| Error::input(&path, format!("tensor {name}: {e}")))?;
        views.push((name.clone(), v));
    }
    views.push((
        "window_fired".into(),
        TensorView::new(Dtype::I64, vec![m + 1], &counts)
            .map_err(|e| Error::input(&path, format!("tensor window_fired: {e}")))?,
    ));
    views.push((
        "since_fired".into(),
        TensorView::new(Dtype::I64, vec![m], &since)
            .map_err(|e| Error::input(&path, format!("tensor since_fired: {e}")))?,
    ));
    let meta_json = serde_json::to_string(&s.meta)
        .map_err(|e| Error::input(&path, format!("cannot serialise state: {e}")))?;
    let meta: HashMap<String, String> = [("state".to_string(), meta_json)].into();
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::input(&path, format!("cannot serialise: {e}")))?;
    Ok((path, bytes))
}

/// Read `dir/checkpoint.safetensors`, if present.
pub fn load(dir: &Path, d_in: usize, d_sae: usize) -> Result<Option<TrainState>> {
    let path = dir.join(CHECKPOINT_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path).at(&path)?;
    let bad = |msg: String| Error::input(&path, msg);
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("corrupt checkpoint: {e}")))?;
    let meta: StateMeta = header
        .metadata()
        .as_ref()
        .and_then(|m| m.get("state"))
        .ok_or_else(|| bad("checkpoint has no state".into()))
        .and_then(|s| {
            serde_json::from_str(s).map_err(|e| bad(format!("corrupt checkpoint state: {e}")))
        })?;
    let st =
        SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("corrupt checkpoint: {e}")))?;
    let f32s = |name: &str, len: usize| -> Result<Vec<f32>> {
        let v = st
            .tensor(name)
            .map_err(|_| bad(format!("checkpoint lacks '{name}'")))?;
        let data = tensor_to_f32(v.dtype(), v.data()).unwrap_or_default();
        if data.len() != len {
            return Err(bad(format!(
                "checkpoint tensor '{name}' has {} values, expected {len} (another --features or input width?)",
                data.len()
            )));
        }
        Ok(data)
    };
    let (d, m) = (d_in, d_sae);
    let params = Params {
        d_in: d,
        d_sae: m,
        w_enc: f32s("W_enc", d * m)?,
        w_dec: f32s("W_dec", m * d)?,
        b_enc: f32s("b_enc", m)?,
        b_dec: f32s("b_dec", d)?,
        threshold: if st.tensor("threshold").is_ok() {
            f32s("threshold", m)?
        } else {
            Vec::new()
        },
    };
    let sizes = [d * m, m * d, m, d, params.threshold.len()];
    let mut adam = Adam::new(
        &sizes,
        meta.adam_hyper[0],
        meta.adam_hyper[1],
        meta.adam_hyper[2],
    );
    for (k, &len) in sizes.iter().enumerate() {
        if len == 0 {
            continue;
        }
        adam.m[k] = f32s(&format!("adam_m_{k}"), len)?;
        adam.v[k] = f32s(&format!("adam_v_{k}"), len)?;
    }
    adam.t = meta.adam_t;
    let w = st
        .tensor("window_fired")
        .map_err(|_| bad("checkpoint lacks 'window_fired'".into()))?;
    let u64s = |data: &[u8]| -> Vec<u64> {
        data.chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as u64)
            .collect()
    };
    let counts = u64s(w.data());
    if counts.len() != m + 1 {
        return Err(bad("checkpoint 'window_fired' has the wrong length".into()));
    }
    // checkpoints written before the auxiliary loss existed have no counts: nothing is dead yet
    let since_fired = match st.tensor("since_fired") {
        Ok(t) => u64s(t.data()),
        Err(_) => vec![0; m],
    };
    if since_fired.len() != m {
        return Err(bad("checkpoint 'since_fired' has the wrong length".into()));
    }
    Ok(Some(TrainState {
        params,
        adam,
        window_fired: counts[..m].to_vec(),
        window_inputs: counts[m],
        since_fired,
        meta,
    }))
}
