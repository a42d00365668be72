//! Helpers shared by the SAE integration tests: planted-dictionary data, small activation stores,
//! and a brute-force re-implementation of the SAE forward pass from the saved files.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::activations::{StoreWriter, TokenIndex};
use scsae::data::DenseMatrix;

/// Standard normal by Box-Muller.
pub fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random_range(1e-12..1.0);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// `n_atoms` random unit atoms in `d` dims, and `n` samples that are each a sum of `per_sample`
/// distinct atoms with coefficients in [1, 2), plus Gaussian noise of sd `noise` and an offset.
pub fn planted(
    d: usize,
    n_atoms: usize,
    n: usize,
    per_sample: usize,
    noise: f64,
    seed: u64,
) -> (Vec<Vec<f64>>, DenseMatrix) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let atoms: Vec<Vec<f64>> = (0..n_atoms)
        .map(|_| {
            let v: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter().map(|a| a / norm).collect()
        })
        .collect();
    let offset: Vec<f64> = (0..d).map(|i| 0.5 + 0.1 * i as f64).collect();
    let mut data = Vec::with_capacity(n * d);
    for _ in 0..n {
        let mut x = offset.clone();
        let mut chosen: Vec<usize> = Vec::new();
        while chosen.len() < per_sample {
            let a = rng.random_range(0..n_atoms);
            if !chosen.contains(&a) {
                chosen.push(a);
            }
        }
        for &a in &chosen {
            let c: f64 = rng.random_range(1.0..2.0);
            for i in 0..d {
                x[i] += c * atoms[a][i];
            }
        }
        for v in x.iter_mut() {
            *v += noise * normal(&mut rng);
        }
        data.extend(x.iter().map(|v| *v as f32));
    }
    (atoms, DenseMatrix::new(n, d, data).unwrap())
}

/// Fraction of atoms whose best-matching decoder direction (mapped back to activation space,
/// `W_dec row * input_std`) has cosine above `thr`.
pub fn fraction_recovered(atoms: &[Vec<f64>], w_dec: &[f32], std: &[f32], thr: f64) -> f64 {
    let d = std.len();
    let dirs: Vec<Vec<f64>> = w_dec
        .chunks(d)
        .map(|r| {
            let v: Vec<f64> = r.iter().zip(std).map(|(a, s)| (*a * *s) as f64).collect();
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            v.iter().map(|a| a / norm).collect()
        })
        .collect();
    let hit = atoms
        .iter()
        .filter(|a| {
            dirs.iter()
                .map(|r| r.iter().zip(a.iter()).map(|(x, y)| x * y).sum::<f64>())
                .fold(f64::MIN, f64::max)
                > thr
        })
        .count();
    hit as f64 / atoms.len() as f64
}

/// Write an extraction store with layers `layers`, `n_cells` cells, `tok_per_cell` tokens per cell,
/// drawing activations from `values(layer_index, row)` (a `d`-vector).
pub fn write_store(
    dir: &Path,
    layers: &[&str],
    d: usize,
    n_cells: usize,
    tok_per_cell: usize,
    mut values: impl FnMut(usize, usize) -> Vec<f32>,
) {
    let manifest = super::test_manifest(
        serde_json::json!({"name": "scgpt-test", "checkpoint": "random"}),
        "synthetic",
        layers,
        (n_cells, d),
        true,
    );
    let ids: Vec<String> = (0..n_cells).map(|i| format!("cell{i}")).collect();
    let (mut w, _) = StoreWriter::create(dir, manifest, &ids, false).unwrap();
    let half = n_cells / 2;
    for (lo, hi) in [(0, half), (half, n_cells)] {
        let cells: Vec<i64> = (lo as i64..hi as i64).collect();
        let mut index = TokenIndex::default();
        for c in lo..hi {
            for p in 0..tok_per_cell {
                index.cell_index.push(c as i64);
                index.gene_id.push(100 + p as i64);
                index.position.push(p as i64);
            }
        }
        let mut cell_mats = Vec::new();
        let mut tok_mats = Vec::new();
        for (li, l) in layers.iter().enumerate() {
            let mut tok = Vec::new();
            let mut cell = Vec::new();
            for c in lo..hi {
                let mut mean = vec![0f32; d];
                for p in 0..tok_per_cell {
                    let v = values(li, c * tok_per_cell + p);
                    for (m, x) in mean.iter_mut().zip(&v) {
                        *m += x / tok_per_cell as f32;
                    }
                    tok.extend(v);
                }
                cell.extend(mean);
            }
            cell_mats.push((
                format!("layer_{l}"),
                DenseMatrix::new(hi - lo, d, cell).unwrap(),
            ));
            tok_mats.push((
                format!("layer_{l}"),
                DenseMatrix::new((hi - lo) * tok_per_cell, d, tok).unwrap(),
            ));
        }
        let cref: Vec<(String, &DenseMatrix)> =
            cell_mats.iter().map(|(n, m)| (n.clone(), m)).collect();
        let tref: Vec<(String, &DenseMatrix)> =
            tok_mats.iter().map(|(n, m)| (n.clone(), m)).collect();
        w.write_chunk(&cells, &cref, Some((&index, &tref))).unwrap();
    }
    w.finish().unwrap();
}

/// Tensors of a saved SAE read straight from `sae_weights.safetensors` (no scsae code involved).
pub struct RawSae {
    pub d: usize,
    pub m: usize,
    pub tensors: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    pub cfg: serde_json::Value,
}

pub fn read_raw(dir: &Path) -> RawSae {
    let bytes = std::fs::read(dir.join("sae_weights.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors = std::collections::HashMap::new();
    for (name, v) in st.tensors() {
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
        let data: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        tensors.insert(name, (v.shape().to_vec(), data));
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cfg.json")).unwrap()).unwrap();
    let d = cfg["d_in"].as_u64().unwrap() as usize;
    let m = cfg["d_sae"].as_u64().unwrap() as usize;
    RawSae { d, m, tensors, cfg }
}

impl RawSae {
    pub fn t(&self, name: &str) -> &[f32] {
        &self.tensors[name].1
    }

    /// Brute-force codes (f64) of raw inputs `x` (`[n, d]`) for a standard (ReLU) SAE, or TopK when
    /// `topk` is set: z-score, subtract b_dec, encode.
    pub fn codes(&self, x: &[f32], topk: Option<usize>) -> Vec<Vec<f64>> {
        let (d, m) = (self.d, self.m);
        let (mean, std) = (self.t("input_mean"), self.t("input_std"));
        let (w_enc, b_enc, b_dec) = (self.t("W_enc"), self.t("b_enc"), self.t("b_dec"));
        x.chunks(d)
            .map(|row| {
                let xc: Vec<f64> = (0..d)
                    .map(|i| ((row[i] - mean[i]) / std[i]) as f64 - b_dec[i] as f64)
                    .collect();
                let mut pre: Vec<f64> = (0..m)
                    .map(|j| {
                        b_enc[j] as f64
                            + (0..d).map(|i| xc[i] * w_enc[i * m + j] as f64).sum::<f64>()
                    })
                    .collect();
                if let Some(k) = topk {
                    let mut s = pre.clone();
                    s.sort_by(|a, b| b.total_cmp(a));
                    let kth = s[k - 1];
                    for v in pre.iter_mut() {
                        if *v < kth {
                            *v = 0.0;
                        }
                    }
                }
                pre.iter().map(|v| v.max(0.0)).collect()
            })
            .collect()
    }

    /// Brute-force reconstruction (z-scored space) of codes.
    pub fn decode(&self, z: &[f64]) -> Vec<f64> {
        let (d, m) = (self.d, self.m);
        let (w_dec, b_dec) = (self.t("W_dec"), self.t("b_dec"));
        (0..d)
            .map(|i| b_dec[i] as f64 + (0..m).map(|j| z[j] * w_dec[j * d + i] as f64).sum::<f64>())
            .collect()
    }
}
