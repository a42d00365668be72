//! Named parameters and buffers of a SpikGPT model: seeded initialisation, byte-stable safetensors
//! save and shape-checked load.
//!
//! Trainable tensors are candle [`Var`]s (updated in place by the optimiser); BatchNorm running
//! statistics are buffers (also `Var`s, updated by training forward passes, never by the optimiser).
//! Names follow PyTorch's `state_dict` keys (`blocks.0.attn.q.linear.weight`, `head.bias`, ...).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, IoContext, Result};
use crate::io::atomic::write_bytes_atomic;
use crate::io::matrix::f32_bytes;

/// All tensors of a model, by name.
#[derive(Debug, Clone)]
pub struct ParamStore {
    /// Device the tensors live on.
    pub device: Device,
    /// Trainable parameters.
    pub trainable: BTreeMap<String, Var>,
    /// Non-trainable buffers (BatchNorm running statistics).
    pub buffers: BTreeMap<String, Var>,
}

impl ParamStore {
    /// An empty store on `device`.
    pub fn new(device: &Device) -> Self {
        ParamStore {
            device: device.clone(),
            trainable: BTreeMap::new(),
            buffers: BTreeMap::new(),
        }
    }

    fn var(&self, shape: &[usize], data: Vec<f32>) -> Result<Var> {
        Ok(Var::from_tensor(&Tensor::from_vec(
            data,
            shape,
            &self.device,
        )?)?)
    }

    /// A trainable tensor drawn from `U(-bound, bound)` with the store's seeded generator.
    pub fn uniform(
        &mut self,
        name: &str,
        shape: &[usize],
        bound: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Var> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * bound) as f32)
            .collect();
        let v = self.var(shape, data)?;
        self.trainable.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// A trainable tensor filled with `value`.
    pub fn constant(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Var> {
        let n: usize = shape.iter().product();
        let v = self.var(shape, vec![value; n])?;
        self.trainable.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// A buffer filled with `value`.
    pub fn buffer(&mut self, name: &str, shape: &[usize], value: f32) -> Result<Var> {
        let n: usize = shape.iter().product();
        let v = self.var(shape, vec![value; n])?;
        self.buffers.insert(name.to_string(), v.clone());
        Ok(v)
    }

    /// Number of trainable scalars.
    pub fn n_trainable(&self) -> usize {
        self.trainable.values().map(|v| v.elem_count()).sum()
    }

    fn all(&self) -> impl Iterator<Item = (&String, &Var)> {
        self.trainable.iter().chain(self.buffers.iter())
    }

    /// Serialise every tensor (sorted by name, f32) to safetensors bytes; same values, same bytes.
    pub fn to_safetensors_bytes(&self, metadata: HashMap<String, String>) -> Result<Vec<u8>> {
        let mut raw: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, v) in self.all() {
            let data = v
                .as_tensor()
                .to_dtype(DType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            raw.push((name.clone(), v.dims().to_vec(), f32_bytes(&data)));
        }
        let mut views = Vec::with_capacity(raw.len());
        for (name, shape, bytes) in &raw {
            let view = TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map_err(|e| Error::invalid(format!("cannot build tensor {name}: {e}")))?;
            views.push((name.as_str(), view));
        }
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| Error::invalid(format!("cannot serialise model: {e}")))
    }

    /// Save to `path` atomically.
    pub fn save(&self, path: &Path, metadata: HashMap<String, String>) -> Result<()> {
        let bytes = self.to_safetensors_bytes(metadata)?;
        write_bytes_atomic(path, &bytes)
    }

    /// Load values from a safetensors file; every tensor of the store must be present with the same
    /// shape (the error names the file and the first mismatch).
    pub fn load(&self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).at(path)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::input(path, format!("not a valid safetensors file: {e}")))?;
        for (name, var) in self.all() {
            let view = st.tensor(name).map_err(|_| {
                Error::input(
                    path,
                    format!("missing tensor '{name}' (model config mismatch?)"),
                )
            })?;
            if view.shape() != var.dims() {
                return Err(Error::input(
                    path,
                    format!(
                        "tensor '{name}' has shape {:?}, the model config expects {:?}",
                        view.shape(),
                        var.dims()
                    ),
                ));
            }
            let data =
                crate::io::matrix::tensor_to_f32(view.dtype(), view.data()).ok_or_else(|| {
                    Error::input(path, format!("tensor '{name}' has unsupported dtype"))
                })?;
            if let Some(i) = data.iter().position(|x| !x.is_finite()) {
                return Err(Error::input(
                    path,
                    format!("tensor '{name}' has a non-finite value at index {i}"),
                ));
            }
            let t = Tensor::from_vec(data, var.dims(), &self.device)?.to_dtype(var.dtype())?;
            var.set(&t)?;
        }
        Ok(())
    }
}
