//! A trained SAE: load, encode activations into codes, decode codes back.

use std::path::{Path, PathBuf};

use candle_core::Device;

use crate::activations::Provenance;
use crate::analysis::RowBlocks;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::sae::config::{Arch, Phase};
use crate::sae::kernel::{activate, decode, pre_activations, ParamsView, Sparsifier};
use crate::sae::saelens::{self, SaeConfig, SaeTensors};
use crate::sae::zscore;

/// Rows encoded per matrix product (bounds memory; results do not depend on it).
const CHUNK: usize = 4096;

/// A trained sparse autoencoder (see [`crate::sae::saelens`] for the on-disk layout).
#[derive(Debug, Clone, PartialEq)]
pub struct Sae {
    /// The `cfg.json` contents.
    pub cfg: SaeConfig,
    /// `[d_in, d_sae]` row-major.
    pub w_enc: Vec<f32>,
    /// `[d_sae, d_in]` row-major.
    pub w_dec: Vec<f32>,
    /// `[d_sae]`.
    pub b_enc: Vec<f32>,
    /// `[d_in]`.
    pub b_dec: Vec<f32>,
    /// `[d_in]` z-score means.
    pub input_mean: Vec<f32>,
    /// `[d_in]` z-score standard deviations (1 where the training std was below 1e-8).
    pub input_std: Vec<f32>,
    /// `[d_sae]` JumpReLU thresholds (BatchTopK SAEs).
    pub threshold: Option<Vec<f32>>,
    /// Folder the SAE was loaded from (named in errors).
    pub dir: Option<PathBuf>,
}

impl Sae {
    /// Load a saved SAE folder.
    pub fn load(dir: &Path) -> Result<Sae> {
        let (cfg, t) = saelens::load(dir)?;
        let sae = Sae::from_parts(cfg, t, Some(dir.to_path_buf()));
        sae.sparsifier()?;
        Ok(sae)
    }

    /// Assemble from a config and tensors.
    pub fn from_parts(cfg: SaeConfig, t: SaeTensors, dir: Option<PathBuf>) -> Sae {
        Sae {
            cfg,
            w_enc: t.w_enc,
            w_dec: t.w_dec,
            b_enc: t.b_enc,
            b_dec: t.b_dec,
            input_mean: t.input_mean,
            input_std: t.input_std,
            threshold: t.threshold,
            dir,
        }
    }

    /// Save into `dir` (`sae_weights.safetensors` + `cfg.json`).
    pub fn save(&self, dir: &Path) -> Result<()> {
        saelens::save(
            dir,
            &self.cfg,
            &SaeTensors {
                w_enc: self.w_enc.clone(),
                w_dec: self.w_dec.clone(),
                b_enc: self.b_enc.clone(),
                b_dec: self.b_dec.clone(),
                input_mean: self.input_mean.clone(),
                input_std: self.input_std.clone(),
                threshold: self.threshold.clone(),
            },
        )
    }

    /// Input width.
    pub fn d_in(&self) -> usize {
        self.cfg.d_in
    }

    /// Dictionary size.
    pub fn d_sae(&self) -> usize {
        self.cfg.d_sae
    }

    /// Error (naming the SAE's folder) unless `feature` is one of its features.
    pub fn check_feature(&self, feature: usize) -> Result<()> {
        let m = self.cfg.d_sae;
        if feature >= m {
            return Err(Error::input(
                self.origin(),
                format!(
                    "feature {feature} is out of range: the SAE has {m} features (0..{})",
                    m.saturating_sub(1)
                ),
            ));
        }
        Ok(())
    }

    /// Feature `j`'s decoder row in activation units, `W_dec[j] * std` (the change a code of 1 makes
    /// to the raw activations, since decoding happens in z-scored space), exact in f64.
    pub fn decoder_direction(&self, j: usize) -> Vec<f64> {
        let d = self.cfg.d_in;
        self.w_dec[j * d..(j + 1) * d]
            .iter()
            .zip(&self.input_std)
            .map(|(&w, &s)| w as f64 * s as f64)
            .collect()
    }

    /// Borrow the parameters.
    pub fn params(&self) -> ParamsView<'_> {
        ParamsView {
            d_in: self.cfg.d_in,
            d_sae: self.cfg.d_sae,
            w_enc: &self.w_enc,
            w_dec: &self.w_dec,
            b_enc: &self.b_enc,
            b_dec: &self.b_dec,
        }
    }

    fn origin(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| PathBuf::from("<sae>"))
    }

    /// The architecture named in `cfg.json` (parsed by [`Arch::from_saved`]).
    pub fn arch(&self) -> Result<Arch> {
        Arch::from_saved(&self.cfg.architecture).ok_or_else(|| {
            Error::input(
                self.origin(),
                format!(
                    "cfg.json: unsupported architecture '{}' (expected standard, topk, batchtopk, matryoshka_batchtopk or jumprelu)",
                    self.cfg.architecture
                ),
            )
        })
    }

    /// The inference-time sparsifier for this architecture ([`Arch::sparsifier`]).
    pub fn sparsifier(&self) -> Result<Sparsifier<'_>> {
        let arch = self.arch()?;
        let k = if arch.uses_k() {
            self.cfg
                .activation_fn_kwargs
                .get("k")
                .and_then(|v| v.as_u64())
                .or(self.cfg.k)
                .map(|k| k as usize)
                .filter(|&k| k >= 1)
                .ok_or_else(|| {
                    Error::input(
                        self.origin(),
                        "cfg.json: activation_fn_kwargs.k must be a whole number of at least 1",
                    )
                })?
        } else {
            0
        };
        arch.sparsifier(k, self.threshold.as_deref(), Phase::Inference)
            .ok_or_else(|| {
                Error::input(
                    self.origin(),
                    format!("{arch} SAE without a 'threshold' tensor"),
                )
            })
    }

    fn check_width(&self, n_cols: usize, what: &str) -> Result<()> {
        if n_cols != self.cfg.d_in {
            return Err(Error::input(
                self.origin(),
                format!(
                    "SAE expects {} input dims but the {what} have {n_cols}",
                    self.cfg.d_in
                ),
            ));
        }
        Ok(())
    }

    /// z-score `x` with the saved statistics.
    pub fn zscore(&self, x: &DenseMatrix) -> Result<DenseMatrix> {
        self.check_width(x.n_cols, "activations")?;
        let mut out = DenseMatrix::new(
            x.n_rows,
            x.n_cols,
            zscore::apply(&x.data, &self.input_mean, &self.input_std),
        )?;
        out.row_ids = x.row_ids.clone();
        out.col_names = x.col_names.clone();
        Ok(out)
    }

    /// Map z-scored vectors back to activation space: `x = x' * std + mean`.
    pub fn unzscore(&self, x: &DenseMatrix) -> Result<DenseMatrix> {
        self.check_width(x.n_cols, "vectors")?;
        let mut out = DenseMatrix::new(
            x.n_rows,
            x.n_cols,
            zscore::invert(&x.data, &self.input_mean, &self.input_std),
        )?;
        out.row_ids = x.row_ids.clone();
        Ok(out)
    }

    /// Codes `[n, d_sae]` of raw activations `x` (`[n, d_in]`): z-score with the saved statistics,
    /// then `z = act((x' - b_dec) W_enc + b_enc)`. Row ids are carried over.
    pub fn encode(&self, x: &DenseMatrix) -> Result<DenseMatrix> {
        let mut data = Vec::with_capacity(x.n_rows * self.cfg.d_sae);
        self.encode_chunks(x, |codes, _| {
            data.extend_from_slice(codes);
            Ok(())
        })?;
        let mut out = DenseMatrix::new(x.n_rows, self.cfg.d_sae, data)?;
        out.row_ids = x.row_ids.clone();
        Ok(out)
    }

    /// The codes of `x` as [`Sae::encode`] computes them, handed to `sink` a chunk of rows at a
    /// time (row-major `rows x d_sae` values and `rows`, chunks in row order), so that at most one
    /// chunk of codes (and of z-scored inputs) is in memory.
    pub fn encode_chunks(
        &self,
        x: &DenseMatrix,
        sink: impl FnMut(&[f32], usize) -> Result<()>,
    ) -> Result<()> {
        debug_assert_eq!(CHUNK, crate::analysis::pca::BLOCK_ROWS);
        self.encode_blocks(x, sink)
    }

    /// [`Sae::encode_chunks`] of rows read a block at a time (an extraction folder's layer through
    /// [`crate::activations::cell_blocks::CellBlocks`]): the codes of each block go to `sink`.
    pub fn encode_blocks(
        &self,
        x: &dyn RowBlocks,
        mut sink: impl FnMut(&[f32], usize) -> Result<()>,
    ) -> Result<()> {
        self.check_width(x.n_cols(), "activations")?;
        let s = self.sparsifier()?;
        let m = self.cfg.d_sae;
        let p = self.params();
        x.visit_rows(&mut |rows, n| {
            let xz = zscore::apply(rows, &self.input_mean, &self.input_std);
            let (_, pre) = pre_activations(&Device::Cpu, &p, &xz, n)?;
            sink(&activate(&pre, m, s), n)
        })
    }

    /// Reconstructions in z-scored space, `x' = z W_dec + b_dec`, of codes `z` (`[n, d_sae]`).
    pub fn decode(&self, z: &DenseMatrix) -> Result<DenseMatrix> {
        if z.n_cols != self.cfg.d_sae {
            return Err(Error::input(
                self.origin(),
                format!(
                    "SAE has {} features but the codes have {} columns",
                    self.cfg.d_sae, z.n_cols
                ),
            ));
        }
        let (d, m) = (self.cfg.d_in, self.cfg.d_sae);
        let p = self.params();
        let mut data = Vec::with_capacity(z.n_rows * d);
        for rows in z.data.chunks(CHUNK * m) {
            data.extend(decode(&Device::Cpu, &p, rows, rows.len() / m)?);
        }
        let mut out = DenseMatrix::new(z.n_rows, d, data)?;
        out.row_ids = z.row_ids.clone();
        Ok(out)
    }

    /// Where the SAE's training activations came from (`cfg.json`'s `scsae.source`).
    pub fn provenance(&self) -> &Provenance {
        &self.cfg.scsae.source
    }

    /// The layer the SAE was trained on (`"11"`, `"cls"`, ...), when known.
    pub fn source_layer(&self) -> Option<String> {
        self.provenance().layer.clone()
    }

    /// Error (naming `what`, the other side's file) unless activations from `other` can be encoded
    /// by this SAE ([`Provenance::check_matches`]: same layer and scGPT model where both are known).
    pub fn check_source(&self, other: &Provenance, what: &Path) -> Result<()> {
        let mine = format!("the SAE in {}", self.origin().display());
        let theirs = format!("the activations ({})", other.path.display());
        self.provenance().check_matches(other, &mine, &theirs, what)
    }
}
