//! Edits of the residual stream at one site, applied to every real token of every cell (padding is
//! left alone: no real position attends to it).

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::data::DenseMatrix;
use crate::error::Result;
use crate::sae::{zscore, Sae};
use crate::scgpt::model::to_f32_vec;

/// How a steered feature's code is changed at every token.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerMode {
    /// Multiply the code by this factor (0 removes the feature, 2 doubles it).
    Scale(f64),
    /// Set the code to this value at every token (adds the feature where it is off).
    Clamp(f64),
}

/// Edited rows and, per row, (value summed into [`TokenStats::sum`], count summed into
/// [`TokenStats::active`]).
type EditedRows = (Vec<f32>, Vec<(f64, usize)>);

/// One edit of the activations at the splice site.
#[derive(Debug, Clone, Copy)]
pub enum Edit<'a> {
    /// Leave them as they are (the clean run).
    Keep,
    /// Replace every token by zero (zero-ablation).
    Zero,
    /// Replace every token by the SAE's reconstruction (its error term dropped).
    Reconstruct(&'a Sae),
    /// Change one feature's code and add the change through its decoder row, keeping everything
    /// else (including the SAE's error term): `x + (z_F' - z_F) W_dec[F] * std`.
    Steer {
        /// The SAE.
        sae: &'a Sae,
        /// Feature index.
        feature: usize,
        /// New code.
        mode: SteerMode,
    },
}

/// Per-cell sums over its real tokens, gathered while editing.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TokenStats {
    /// Real tokens.
    pub tokens: usize,
    /// Sum over tokens of `||x - x_hat||^2` (reconstruction) or of the steered code before the
    /// edit (steering).
    pub sum: f64,
    /// Tokens with a non-zero code: the sum of L0 (reconstruction) or the tokens on which the
    /// steered feature fires (steering).
    pub active: usize,
}

impl Edit<'_> {
    /// Apply to `h` (`[b, l, d]`, cell `i` real on its first `lengths[i]` positions); returns the
    /// edited activations and each cell's [`TokenStats`].
    pub fn apply(&self, h: &Tensor, lengths: &[usize]) -> Result<(Tensor, Vec<TokenStats>)> {
        let (b, l, d) = h.dims3()?;
        if let Edit::Keep = self {
            let stats = lengths
                .iter()
                .map(|&n| TokenStats {
                    tokens: n,
                    ..TokenStats::default()
                })
                .collect();
            return Ok((h.clone(), stats));
        }
        let mut hv = to_f32_vec(h)?;
        let n_tok: usize = lengths.iter().sum();
        let mut rows = Vec::with_capacity(n_tok * d);
        for (i, &n) in lengths.iter().enumerate() {
            rows.extend_from_slice(&hv[i * l * d..(i * l + n) * d]);
        }
        let x = DenseMatrix::new(n_tok, d, rows)?;
        let (edited, per_token) = self.edit_rows(&x)?;
        let mut stats = Vec::with_capacity(b);
        let mut r = 0;
        for (i, &n) in lengths.iter().enumerate() {
            hv[i * l * d..(i * l + n) * d].copy_from_slice(&edited[r * d..(r + n) * d]);
            let mut s = TokenStats {
                tokens: n,
                ..TokenStats::default()
            };
            for &(v, a) in &per_token[r..r + n] {
                s.sum += v;
                s.active += a;
            }
            stats.push(s);
            r += n;
        }
        let t = Tensor::from_vec(hv, (b, l, d), h.device())?.to_dtype(h.dtype())?;
        Ok((t, stats))
    }

    /// The edited rows of `x` and, per row, (value summed into [`TokenStats::sum`], count summed
    /// into [`TokenStats::active`]).
    fn edit_rows(&self, x: &DenseMatrix) -> Result<EditedRows> {
        let d = x.n_cols;
        match *self {
            Edit::Keep => Ok((x.data.clone(), vec![(0.0, 0); x.n_rows])),
            Edit::Zero => Ok((vec![0.0; x.data.len()], vec![(0.0, 0); x.n_rows])),
            Edit::Reconstruct(sae) => {
                let m = sae.d_sae();
                let mut out = Vec::with_capacity(x.data.len());
                let mut per = Vec::with_capacity(x.n_rows);
                sae.encode_chunks(x, |codes, n| {
                    let z = DenseMatrix::new(n, m, codes.to_vec())?;
                    let rec = sae.decode(&z)?;
                    let raw = zscore::invert(&rec.data, &sae.input_mean, &sae.input_std);
                    let start = out.len();
                    for (r, row) in raw.chunks_exact(d).enumerate() {
                        let orig = &x.data[start + r * d..start + (r + 1) * d];
                        let err: f64 = row
                            .iter()
                            .zip(orig)
                            .map(|(a, b)| ((a - b) as f64).powi(2))
                            .sum();
                        let l0 = codes[r * m..(r + 1) * m]
                            .iter()
                            .filter(|&&c| c != 0.0)
                            .count();
                        per.push((err, l0));
                    }
                    out.extend_from_slice(&raw);
                    Ok(())
                })?;
                Ok((out, per))
            }
            Edit::Steer { sae, feature, mode } => {
                let m = sae.d_sae();
                sae.check_feature(feature)?;
                // the feature's direction in activation space (the f32 product, rounded once)
                let dir: Vec<f32> = sae
                    .decoder_direction(feature)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect();
                let mut out = x.data.clone();
                let mut per = Vec::with_capacity(x.n_rows);
                let mut r0 = 0;
                sae.encode_chunks(x, |codes, n| {
                    for r in 0..n {
                        let c = codes[r * m + feature] as f64;
                        let delta = match mode {
                            SteerMode::Scale(s) => (s - 1.0) * c,
                            SteerMode::Clamp(v) => v - c,
                        } as f32;
                        let row = &mut out[(r0 + r) * d..(r0 + r + 1) * d];
                        for (v, u) in row.iter_mut().zip(&dir) {
                            *v += delta * u;
                        }
                        per.push((c, usize::from(c != 0.0)));
                    }
                    r0 += n;
                    Ok(())
                })?;
                Ok((out, per))
            }
        }
    }
}
