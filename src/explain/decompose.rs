//! Cell embeddings written in the SAE's dictionary, in embedding space.
//!
//! The SAE works on z-scored vectors `x' = (e - mean) / std`; with codes `z = encode(e)` its
//! reconstruction mapped back to embedding space is
//!
//! ```text
//! e = e0 + sum_f z_f v_f + error,   e0 = mean + std * b_dec,   v_f = std * W_dec[f]
//! ```
//!
//! so every embedding is exactly the baseline `e0` (all codes zero), one vector per active feature,
//! and the reconstruction error. Attribution and ablation work on this decomposition.

use std::path::Path;

use crate::activations::Provenance;
use crate::data::{CsrMatrix, DenseMatrix};
use crate::error::{Error, Result};
use crate::sae::Sae;
use crate::spikgpt::annotate::LoadedModel;

/// The SAE dictionary expressed in embedding space.
#[derive(Debug, Clone)]
pub struct Dictionary {
    /// Embedding width k.
    pub d_in: usize,
    /// Number of features F.
    pub d_sae: usize,
    /// `e0 = mean + std * b_dec` (`[k]`): the embedding of all-zero codes.
    pub baseline: Vec<f32>,
    /// `v_f = std * W_dec[f]` (`[F, k]` row-major).
    pub directions: Vec<f32>,
    /// Euclidean norm of every `v_f`.
    pub direction_norms: Vec<f32>,
}

impl Dictionary {
    /// Build from a loaded SAE.
    pub fn of(sae: &Sae) -> Dictionary {
        let (k, f) = (sae.d_in(), sae.d_sae());
        let baseline: Vec<f32> = (0..k)
            .map(|j| sae.input_mean[j] + sae.input_std[j] * sae.b_dec[j])
            .collect();
        let mut directions = Vec::with_capacity(f * k);
        for row in sae.w_dec.chunks(k) {
            directions.extend(row.iter().zip(&sae.input_std).map(|(w, s)| w * s));
        }
        let direction_norms = directions
            .chunks(k)
            .map(|v| v.iter().map(|x| x * x).sum::<f32>().sqrt())
            .collect();
        Dictionary {
            d_in: k,
            d_sae: f,
            baseline,
            directions,
            direction_norms,
        }
    }

    /// `v_f`.
    pub fn direction(&self, f: usize) -> &[f32] {
        &self.directions[f * self.d_in..(f + 1) * self.d_in]
    }

    /// `e0 + sum_f z_f v_f` over the nonzero entries of `z` (`[F]`), written into `out` (`[k]`).
    pub fn decode_into(&self, z: &[f32], out: &mut [f32]) {
        out.copy_from_slice(&self.baseline);
        for (f, &zf) in z.iter().enumerate() {
            if zf != 0.0 {
                for (o, v) in out.iter_mut().zip(self.direction(f)) {
                    *o += zf * v;
                }
            }
        }
    }
}

/// Cells decomposed into codes and reconstruction error (computed per cell when asked,
/// [`Decomposition::err`]).
#[derive(Debug, Clone)]
pub struct Decomposition {
    /// The dictionary.
    pub dict: Dictionary,
    /// Codes `[n, F]`, row-sparse: each cell's active features (increasing) and their codes.
    pub codes: CsrMatrix,
    /// The embeddings themselves (`[n, k]` row-major).
    pub embeddings: Vec<f32>,
}

impl Decomposition {
    /// Encode `emb` with `sae`. The cells are encoded a chunk at a time ([`Sae::encode_chunks`])
    /// and only their non-zero codes are kept, so the dense `[n, F]` codes never exist.
    pub fn new(sae: &Sae, emb: &DenseMatrix) -> Result<Decomposition> {
        let dict = Dictionary::of(sae);
        let m = dict.d_sae;
        let mut indptr = Vec::with_capacity(emb.n_rows + 1);
        indptr.push(0);
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        sae.encode_chunks(emb, |chunk, rows| {
            for z in chunk.chunks_exact(m).take(rows) {
                for (f, &v) in z.iter().enumerate().filter(|(_, &v)| v != 0.0) {
                    indices.push(f as u32);
                    data.push(v);
                }
                indptr.push(data.len());
            }
            Ok(())
        })?;
        let codes = CsrMatrix {
            n_rows: emb.n_rows,
            n_cols: m,
            indptr,
            indices,
            data,
        };
        Ok(Decomposition {
            dict,
            codes,
            embeddings: emb.data.clone(),
        })
    }

    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.codes.n_rows
    }

    /// Active features of cell `i` (increasing) and their codes.
    pub fn active(&self, i: usize) -> (&[u32], &[f32]) {
        self.codes.row(i)
    }

    /// Code of feature `f` in cell `i` (0 when inactive).
    pub fn code(&self, i: usize, f: usize) -> f32 {
        self.codes.get(i, f)
    }

    /// Codes of cell `i` with its zeros (`[F]`, a copy).
    pub fn z(&self, i: usize) -> Vec<f32> {
        let mut z = vec![0f32; self.dict.d_sae];
        let (idx, val) = self.active(i);
        for (&f, &v) in idx.iter().zip(val) {
            z[f as usize] = v;
        }
        z
    }

    /// Reconstruction error of cell `i`, `e - e0 - z V` (`[k]`): the reconstruction adds the
    /// active features' directions to `e0` in increasing feature order, as
    /// [`Dictionary::decode_into`] does.
    pub fn err(&self, i: usize) -> Vec<f32> {
        let mut rec = self.dict.baseline.clone();
        let (idx, val) = self.active(i);
        for (&f, &zf) in idx.iter().zip(val) {
            for (o, v) in rec.iter_mut().zip(self.dict.direction(f as usize)) {
                *o += zf * v;
            }
        }
        self.embedding(i)
            .iter()
            .zip(&rec)
            .map(|(x, r)| x - r)
            .collect()
    }

    /// Embedding of cell `i`.
    pub fn embedding(&self, i: usize) -> &[f32] {
        let k = self.dict.d_in;
        &self.embeddings[i * k..(i + 1) * k]
    }

    /// Cell `i` with the features in `drop` set to zero (error kept): `e - sum_{f in drop} z_f v_f`.
    pub fn ablated(&self, i: usize, drop: &[usize], out: &mut [f32]) {
        out.copy_from_slice(self.embedding(i));
        for &f in drop {
            let zf = self.code(i, f);
            if zf != 0.0 {
                for (o, v) in out.iter_mut().zip(self.dict.direction(f)) {
                    *o -= zf * v;
                }
            }
        }
    }

    /// Relative reconstruction quality: fraction of the embeddings' variance explained by the SAE.
    pub fn r2(&self) -> f64 {
        let (n, k) = (self.n_cells(), self.dict.d_in);
        if n == 0 {
            return f64::NAN;
        }
        let mut mean = vec![0f64; k];
        for i in 0..n {
            for (m, x) in mean.iter_mut().zip(self.embedding(i)) {
                *m += *x as f64 / n as f64;
            }
        }
        let (mut sse, mut sst) = (0f64, 0f64);
        for i in 0..n {
            for ((x, m), e) in self.embedding(i).iter().zip(&mean).zip(self.err(i)) {
                sst += (*x as f64 - m).powi(2);
                sse += (e as f64).powi(2);
            }
        }
        1.0 - sse / sst
    }
}

/// Refuse an SAE that does not belong to the annotator's embedding space: its width must equal the
/// model's input dimension, and where the provenance is recorded (the SAE's `cfg.json`, the
/// embedding store and the model's `config.json`), the layer and the scGPT model must agree
/// ([`Provenance::check_matches`]).
pub fn check_compatible(
    sae: &Sae,
    sae_dir: &Path,
    model: &LoadedModel,
    embeddings: &Provenance,
) -> Result<()> {
    let k = model.model.config.input_dim;
    if sae.d_in() != k {
        return Err(Error::input(
            sae_dir,
            format!(
                "the SAE takes {}-dimensional inputs but the SpikGPT model in {} takes {k}-dimensional embeddings",
                sae.d_in(),
                model.dir.display()
            ),
        ));
    }
    let training = &model.file.embedding;
    for (what, theirs) in [
        ("the embeddings", embeddings),
        ("the SpikGPT model's training embeddings", training),
    ] {
        let theirs_text = format!("{what} ({})", theirs.path.display());
        sae.provenance()
            .check_matches(theirs, "the SAE", &theirs_text, sae_dir)?;
    }
    Ok(())
}

/// Load the SAE in `sae_dir`, check it against the annotator and the embeddings
/// ([`check_compatible`]) and decompose the embeddings.
pub fn load_for_model(
    sae_dir: &Path,
    model: &LoadedModel,
    embeddings: &crate::spikgpt::inputs::Embeddings,
) -> Result<Decomposition> {
    let sae = Sae::load(sae_dir)?;
    check_compatible(&sae, sae_dir, model, &embeddings.source)?;
    Decomposition::new(&sae, &embeddings.matrix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sae::saelens::{SaeConfig, SaeTensors};

    fn tiny_sae() -> Sae {
        // d_in 2, d_sae 3, standard ReLU
        let cfg = SaeConfig {
            d_in: 2,
            d_sae: 3,
            architecture: "standard".into(),
            ..SaeConfig::default()
        };
        let t = SaeTensors {
            w_enc: vec![1.0, 0.0, 1.0, 0.0, 1.0, -1.0],
            w_dec: vec![1.0, 0.0, 0.0, 1.0, 0.5, -0.5],
            b_enc: vec![0.0, 0.0, -0.1],
            b_dec: vec![0.1, -0.2],
            input_mean: vec![1.0, 2.0],
            input_std: vec![2.0, 0.5],
            threshold: None,
        };
        Sae::from_parts(cfg, t, None)
    }

    #[test]
    fn decomposition_is_exact_and_matches_hand_computation() {
        let sae = tiny_sae();
        let d = Dictionary::of(&sae);
        // e0 = mean + std * b_dec = (1 + 0.2, 2 - 0.1)
        assert!((d.baseline[0] - 1.2).abs() < 1e-6 && (d.baseline[1] - 1.9).abs() < 1e-6);
        // v_2 = std * (0.5, -0.5) = (1.0, -0.25)
        assert_eq!(d.direction(2), &[1.0, -0.25]);
        let emb = DenseMatrix::new(2, 2, vec![3.0, 2.5, -1.0, 2.0]).unwrap();
        let dec = Decomposition::new(&sae, &emb).unwrap();
        for i in 0..2 {
            let mut r = vec![0f32; 2];
            d.decode_into(&dec.z(i), &mut r);
            for ((r, e), x) in r.iter().zip(dec.err(i)).zip(emb.row(i)) {
                assert!((r + e - x).abs() < 1e-6);
            }
        }
        // cell 0: x' = ((3-1)/2, (2.5-2)/0.5) = (1, 1); x' - b_dec = (0.9, 1.2)
        // pre = (0.9, 1.2, 0.9 - 1.2 - 0.1) -> z = (0.9, 1.2, 0)
        let z = dec.z(0);
        assert!((z[0] - 0.9).abs() < 1e-6 && (z[1] - 1.2).abs() < 1e-6 && z[2] == 0.0);
        // ablating feature 0 removes 0.9 * v_0 = 0.9 * (2, 0)
        let mut a = vec![0f32; 2];
        dec.ablated(0, &[0], &mut a);
        assert!((a[0] - (3.0 - 1.8)).abs() < 1e-6 && (a[1] - 2.5).abs() < 1e-6);
    }

    #[test]
    fn sparse_codes_equal_the_dense_encoding_across_chunks() {
        // more cells than one encoding chunk (4096), codes with zeros
        let sae = tiny_sae();
        let n = 5000;
        let data: Vec<f32> = (0..n * 2)
            .map(|k| ((k * 37 % 101) as f32 - 50.0) / 10.0)
            .collect();
        let emb = DenseMatrix::new(n, 2, data).unwrap();
        let dense = sae.encode(&emb).unwrap();
        let dec = Decomposition::new(&sae, &emb).unwrap();
        let dict = Dictionary::of(&sae);
        assert_eq!(dec.n_cells(), n);
        let mut zeros = 0;
        let mut rec = vec![0f32; 2];
        for i in 0..n {
            assert_eq!(dec.z(i), dense.row(i), "cell {i}");
            // the error computed on demand is bit for bit e - decode(z)
            dict.decode_into(dense.row(i), &mut rec);
            let e: Vec<f32> = emb.row(i).iter().zip(&rec).map(|(x, r)| x - r).collect();
            assert_eq!(dec.err(i), e, "cell {i}");
            zeros += dense.row(i).iter().filter(|&&z| z == 0.0).count();
            let (idx, _) = dec.active(i);
            assert!(idx.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(dec.code(i, 2), dense.row(i)[2]);
        }
        assert!(zeros > 0 && zeros < n * 3);
    }
}
