//! Parity of the candle port with the official scGPT 0.2.4 code.
//!
//! Fixtures (tests/fixtures/scgpt/, made by scripts/scgpt/make_fixtures.py with the official code):
//! a 2-layer d=64 random checkpoint in the released format (`tiny/`), official binning cases
//! (`binning.json`) and official activations of 10 real cells (`reference.safetensors`).
//! Set `SCSAE_SCGPT_FULL=DIR` (the script's `--full DIR` output) to run the same checks on the
//! 12-layer d=512 architecture with the real 60,697-token vocabulary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use scsae::data::{load, LoadOptions, MatrixLayer};
use scsae::scgpt::model::Batch;
use scsae::scgpt::tokenize::{bin_ranges, bin_row};
use scsae::scgpt::{Scgpt, TokenizedCell, Tokenizer, TokenizerOptions};
use scsae::Runtime;

use crate::common::root as repo;

const TOL: f32 = 1e-4;

fn fixture_root() -> PathBuf {
    repo().join("tests/fixtures/scgpt")
}

struct Reference {
    t: HashMap<String, Tensor>,
    meta: HashMap<String, String>,
}

impl Reference {
    fn read(root: &Path) -> Reference {
        let path = root.join("reference.safetensors");
        let bytes = std::fs::read(&path).unwrap();
        let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = md.metadata().clone().unwrap_or_default();
        let t = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        Reference { t, meta }
    }
    fn i64_2(&self, k: &str) -> Vec<Vec<i64>> {
        self.t[k].to_vec2::<i64>().unwrap()
    }
    fn i64_1(&self, k: &str) -> Vec<i64> {
        self.t[k].to_vec1::<i64>().unwrap()
    }
    fn lengths(&self) -> Vec<usize> {
        self.t["padding_mask"]
            .to_vec2::<u8>()
            .unwrap()
            .iter()
            .map(|r| r.iter().filter(|&&m| m == 0).count())
            .collect()
    }
    fn list(&self, k: &str) -> Vec<String> {
        serde_json::from_str(&self.meta[k]).unwrap()
    }
    fn nlayers(&self) -> usize {
        self.meta["nlayers"].trim_matches('"').parse().unwrap()
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Feed the official tokens through our model and compare every layer and the CLS embedding.
fn check_forward(root: &Path, weights: &str, per_cell_batches: bool) {
    let rt = Runtime::cpu().unwrap();
    let dir = root.join("tiny");
    let model = Scgpt::load_with(&dir, Some(&dir.join(weights)), &rt).unwrap();
    let r = Reference::read(root);
    let ids = r.i64_2("gene_ids");
    let vals = r.t["values"].to_vec2::<f32>().unwrap();
    let lens = r.lengths();
    let cells: Vec<TokenizedCell> = (0..ids.len())
        .map(|i| TokenizedCell {
            gene_ids: ids[i][..lens[i]].iter().map(|&g| g as u32).collect(),
            values: vals[i][..lens[i]].to_vec(),
            n_expressed: lens[i] - 1,
        })
        .collect();
    let groups: Vec<Vec<usize>> = if per_cell_batches {
        (0..cells.len()).map(|i| vec![i]).collect()
    } else {
        vec![(0..cells.len()).collect()]
    };
    let nl = r.nlayers();
    let d = model.config.embsize;
    let mut worst = 0f32;
    for g in groups {
        let refs: Vec<&TokenizedCell> = g.iter().map(|&i| &cells[i]).collect();
        let batch = Batch::new(
            &refs,
            model.pad_id(),
            model.config.pad_value,
            &Device::Cpu,
            DType::F32,
        )
        .unwrap();
        let outs = model.model.forward_all(&batch).unwrap();
        assert_eq!(outs.len(), nl + 1);
        for (bi, &ci) in g.iter().enumerate() {
            let len = lens[ci];
            for (si, out) in outs.iter().enumerate() {
                let name = if si == 0 {
                    "embeddings".to_string()
                } else {
                    format!("hidden_{}", si - 1)
                };
                let want = r.t[&name].get(ci).unwrap().narrow(0, 0, len).unwrap();
                let got = out.get(bi).unwrap().narrow(0, 0, len).unwrap();
                let diff = max_abs_diff(
                    &got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    &want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert!(
                    diff < TOL,
                    "{weights}: cell {ci} {name}: max abs diff {diff}"
                );
                worst = worst.max(diff);
            }
            let last = outs[nl]
                .get(bi)
                .unwrap()
                .get(0)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let norm = last.iter().map(|v| v * v).sum::<f32>().sqrt();
            let cls: Vec<f32> = last.iter().map(|v| v / norm).collect();
            let want = r.t["cls"].get(ci).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(want.len(), d);
            let diff = max_abs_diff(&cls, &want);
            assert!(diff < TOL, "{weights}: cell {ci} cls: max abs diff {diff}");
        }
    }
    eprintln!("{weights}: worst max abs diff over all layers {worst:e}");
}

#[test]
fn forward_matches_official_from_pytorch_checkpoint() {
    check_forward(&fixture_root(), "best_model.pt", false);
}

#[test]
fn forward_matches_official_from_safetensors_one_cell_per_batch() {
    check_forward(&fixture_root(), "model.safetensors", true);
}

#[derive(serde::Deserialize)]
struct BinCase {
    name: String,
    input: Vec<f32>,
    n_bins: usize,
    output: Vec<i64>,
    ties: bool,
    allowed: Vec<[usize; 2]>,
}

fn bin_cases(root: &Path) -> Vec<BinCase> {
    serde_json::from_str(&std::fs::read_to_string(root.join("binning.json")).unwrap()).unwrap()
}

#[test]
fn binning_matches_official_cases() {
    let cases = bin_cases(&fixture_root());
    assert!(cases.len() >= 3);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for c in &cases {
        let ranges = bin_ranges(&c.input, c.n_bins);
        let want: Vec<(usize, usize)> = c.allowed.iter().map(|a| (a[0], a[1])).collect();
        assert_eq!(ranges, want, "{}: tie ranges", c.name);
        let got = bin_row(&c.input, c.n_bins, &mut rng);
        for (k, ((g, o), (lo, hi))) in got.iter().zip(&c.output).zip(&want).enumerate() {
            if c.ties {
                assert!(
                    (*lo as f32..=*hi as f32).contains(g),
                    "{}[{k}]: {g} not in {lo}..={hi}",
                    c.name
                );
                assert!(
                    (*lo as i64..=*hi as i64).contains(o),
                    "{}: official draw outside range",
                    c.name
                );
            } else {
                assert_eq!(*g, *o as f32, "{}[{k}]", c.name);
            }
        }
    }
    // the three vectors of reference/scgpt.md are among them
    assert!(
        cases
            .iter()
            .filter(|c| c.name.starts_with("scgpt.md vector"))
            .count()
            == 3
    );
}

#[test]
fn tokenization_matches_official_cells() {
    check_tokenization(&fixture_root());
}

fn check_tokenization(root: &Path) {
    let rt = Runtime::cpu().unwrap();
    let model = Scgpt::load(&root.join("tiny"), &rt).unwrap();
    let r = Reference::read(root);
    let files = r.list("files");
    let layers = r.list("layers");
    let sources = r.i64_1("cell_source");
    let rows = r.i64_1("cell_row");
    let ids = r.i64_2("gene_ids");
    let vals = r.t["values"].to_vec2::<f32>().unwrap();
    let lens = r.lengths();
    let mut cache = HashMap::new();
    for (ci, (&src, &row)) in sources.iter().zip(&rows).enumerate() {
        let ds = cache.entry(src).or_insert_with(|| {
            let layer = if layers[src as usize] == "raw" {
                MatrixLayer::Raw
            } else {
                MatrixLayer::X
            };
            load(
                &repo().join(&files[src as usize]),
                &LoadOptions {
                    layer,
                    ..Default::default()
                },
            )
            .unwrap()
        });
        let tok = Tokenizer::new(&ds.gene_symbols, &model.vocab, TokenizerOptions::default());
        let m = &ds.matrix;
        let (a, b) = (m.indptr[row as usize], m.indptr[row as usize + 1]);
        let cell = tok.tokenize(&ds.cell_ids[row as usize], &m.indices[a..b], &m.data[a..b]);
        let len = lens[ci];
        assert_eq!(cell.len(), len, "cell {ci}: sequence length");
        let want_ids: Vec<u32> = ids[ci][..len].iter().map(|&g| g as u32).collect();
        assert_eq!(cell.gene_ids, want_ids, "cell {ci}: gene ids");
        assert_eq!(cell.values[0], -2.0);
        assert_eq!(vals[ci][0], -2.0);
        // official values were drawn at ties: both ours and theirs must lie in the allowed ranges,
        // and equal them where there is no tie
        let ranges = bin_ranges(&cell_raw_values(&tok, m, row as usize), 51);
        for k in 1..len {
            let (lo, hi) = ranges[k - 1];
            let (o, g) = (vals[ci][k], cell.values[k]);
            assert!(
                (lo as f32..=hi as f32).contains(&o),
                "cell {ci} pos {k}: official {o} outside {lo}..={hi}"
            );
            assert!(
                (lo as f32..=hi as f32).contains(&g),
                "cell {ci} pos {k}: ours {g} outside {lo}..={hi}"
            );
            if lo == hi {
                assert_eq!(o, g, "cell {ci} pos {k}");
            }
        }
    }
}

/// The nonzero in-vocabulary values of a row, in var order.
fn cell_raw_values(tok: &Tokenizer, m: &scsae::data::CsrMatrix, row: usize) -> Vec<f32> {
    let (a, b) = (m.indptr[row], m.indptr[row + 1]);
    m.indices[a..b]
        .iter()
        .zip(&m.data[a..b])
        .filter(|(&g, &v)| v != 0.0 && tok.genes.vocab_ids[g as usize].is_some())
        .map(|(_, &v)| v)
        .collect()
}

/// The same checks on the full-size architecture, when its fixtures are available locally.
#[test]
fn full_size_parity_when_available() {
    let Ok(dir) = std::env::var("SCSAE_SCGPT_FULL") else {
        eprintln!("skipped: set SCSAE_SCGPT_FULL=DIR (scripts/scgpt/make_fixtures.py --full DIR) to run the full-size parity check");
        return;
    };
    let root = PathBuf::from(dir);
    check_tokenization(&root);
    check_forward(&root, "best_model.pt", false);
    check_forward(&root, "model.safetensors", true);
}
