//! Cell -> tokens, exactly as the official `embed_data` path (`get_batch_cell_embeddings` +
//! `DataCollator` + `preprocess.binning`), except that every random choice is seeded per cell.
//!
//! For one cell:
//! 1. keep the genes whose symbol is in the vocabulary (exact match), in `var` order;
//! 2. keep the nonzero values (explicitly stored zeros are dropped, as `np.nonzero` does);
//! 3. bin them into `n_bins` with per-cell quantile edges ([`bin_row`]);
//! 4. prepend `<cls>` with value `pad_value`;
//! 5. when the sequence is longer than `max_length`, keep `<cls>` and a random subset of
//!    `max_length - 1` genes (kept in `var` order; the model has no positional encoding, so the order
//!    does not change any activation).
//!
//! The random stream of a cell comes from [`cell_rng`] (global seed and cell id), so a cell's tokens
//! do not depend on batch size, processing order, its row in the file, or which other cells are present.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::scgpt::vocab::Vocab;

/// Tokenisation options (defaults = `embed_data`'s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TokenizerOptions {
    /// Longest sequence, `<cls>` included (1200); longer cells are subsampled.
    pub max_length: usize,
    /// Number of bins (51: 0 for zero plus 1..=50 for nonzero values).
    pub n_bins: usize,
    /// Value of `<cls>` and of padding (-2).
    pub pad_value: f32,
    /// Global seed of the per-cell random streams.
    pub seed: u64,
}

impl Default for TokenizerOptions {
    fn default() -> Self {
        TokenizerOptions {
            max_length: 1200,
            n_bins: 51,
            pad_value: -2.0,
            seed: 42,
        }
    }
}

/// How the data set's genes map onto the vocabulary.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneMatch {
    /// Vocabulary id of every data gene (`None` = not in the vocabulary, dropped).
    pub vocab_ids: Vec<Option<u32>>,
    /// Number of data genes found in the vocabulary.
    pub n_matched: usize,
    /// A few symbols that were not found (for messages).
    pub unmatched_examples: Vec<String>,
}

impl GeneMatch {
    /// Match gene symbols to vocabulary ids (exact, case-sensitive, like `vocab[gene] if gene in vocab`).
    /// Special tokens are never matched as genes.
    pub fn new(symbols: &[String], vocab: &Vocab) -> GeneMatch {
        let mut vocab_ids = Vec::with_capacity(symbols.len());
        let mut unmatched_examples = Vec::new();
        for s in symbols {
            let id = if crate::scgpt::vocab::SPECIAL_TOKENS.contains(&s.as_str()) {
                None
            } else {
                vocab.id(s)
            };
            if id.is_none() && unmatched_examples.len() < 5 {
                unmatched_examples.push(s.clone());
            }
            vocab_ids.push(id);
        }
        let n_matched = vocab_ids.iter().filter(|v| v.is_some()).count();
        GeneMatch {
            vocab_ids,
            n_matched,
            unmatched_examples,
        }
    }

    /// Number of data genes.
    pub fn n_genes(&self) -> usize {
        self.vocab_ids.len()
    }

    /// A warning when few genes matched: under half of the data's genes (the symbols are probably
    /// not human gene symbols), or under 500 genes in all (too few for scGPT's context).
    pub fn warning(&self) -> Option<String> {
        let n = self.n_genes();
        if self.n_matched == 0 {
            None
        } else if 2 * self.n_matched < n {
            Some(format!(
                "only {} of {} genes are in the model vocabulary (e.g. not found: {}); \
                 check that the genes are human gene symbols, or pick the symbol column with --gene-key",
                self.n_matched,
                n,
                self.unmatched_examples.join(", ")
            ))
        } else if self.n_matched < 500 {
            Some(format!(
                "only {} genes are in the model vocabulary ({} in the data); scGPT's cell embeddings \
                 are meant for whole transcriptomes (thousands of genes)",
                self.n_matched, n
            ))
        } else {
            None
        }
    }
}

/// One tokenised cell: `<cls>` first, then the kept genes.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedCell {
    /// Vocabulary ids, `<cls>` first.
    pub gene_ids: Vec<u32>,
    /// Binned values, `pad_value` at `<cls>`.
    pub values: Vec<f32>,
    /// Number of expressed in-vocabulary genes before subsampling.
    pub n_expressed: usize,
}

impl TokenizedCell {
    /// Sequence length (`<cls>` included).
    pub fn len(&self) -> usize {
        self.gene_ids.len()
    }

    /// Never true: `<cls>` is always present.
    pub fn is_empty(&self) -> bool {
        self.gene_ids.is_empty()
    }

    /// True when the cell had more genes than `max_length - 1` and was subsampled.
    pub fn was_sampled(&self) -> bool {
        self.n_expressed + 1 > self.gene_ids.len()
    }
}

/// Turns rows of a cells x genes matrix into token sequences.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    /// The gene matching in use.
    pub genes: GeneMatch,
    /// Id of `<cls>`.
    pub cls_id: u32,
    /// Options in use.
    pub options: TokenizerOptions,
}

impl Tokenizer {
    /// A tokenizer for data whose genes are `symbols`.
    pub fn new(symbols: &[String], vocab: &Vocab, options: TokenizerOptions) -> Tokenizer {
        Tokenizer {
            genes: GeneMatch::new(symbols, vocab),
            cls_id: vocab.cls_id(),
            options,
        }
    }

    /// Number of expressed in-vocabulary genes of a sparse row (`indices`, `values`).
    pub fn n_expressed(&self, indices: &[u32], values: &[f32]) -> usize {
        indices
            .iter()
            .zip(values)
            .filter(|(&g, &v)| v != 0.0 && self.genes.vocab_ids[g as usize].is_some())
            .count()
    }

    /// Sequence length of a row after truncation (`<cls>` included).
    pub fn seq_len(&self, indices: &[u32], values: &[f32]) -> usize {
        (1 + self.n_expressed(indices, values)).min(self.options.max_length.max(1))
    }

    /// Tokenise one sparse row (column ids ascending) of the cell with id `cell_id`.
    pub fn tokenize(&self, cell_id: &str, indices: &[u32], values: &[f32]) -> TokenizedCell {
        let mut rng = cell_rng(self.options.seed, cell_id);
        let mut ids = Vec::new();
        let mut vals = Vec::new();
        for (&g, &v) in indices.iter().zip(values) {
            if v == 0.0 {
                continue;
            }
            if let Some(id) = self.genes.vocab_ids[g as usize] {
                ids.push(id);
                vals.push(v);
            }
        }
        let n_expressed = ids.len();
        let binned = bin_row(&vals, self.options.n_bins, &mut rng);
        let keep = self.options.max_length.max(1) - 1;
        let mut gene_ids = Vec::with_capacity(n_expressed.min(keep) + 1);
        let mut out_vals = Vec::with_capacity(n_expressed.min(keep) + 1);
        gene_ids.push(self.cls_id);
        out_vals.push(self.options.pad_value);
        if n_expressed > keep {
            let mut chosen = rand::seq::index::sample(&mut rng, n_expressed, keep).into_vec();
            chosen.sort_unstable();
            for i in chosen {
                gene_ids.push(ids[i]);
                out_vals.push(binned[i]);
            }
        } else {
            gene_ids.extend_from_slice(&ids);
            out_vals.extend_from_slice(&binned);
        }
        TokenizedCell {
            gene_ids,
            values: out_vals,
            n_expressed,
        }
    }
}

/// SplitMix64 finaliser: a bijective 64-bit mixer.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// FNV-1a 64-bit hash of a cell id.
pub fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// The random stream of one cell: `ChaCha8Rng::seed_from_u64(seed ^ splitmix64(fnv1a64(cell_id)))`.
/// Tie-breaking in [`bin_row`] draws first, subsampling second.
pub fn cell_rng(seed: u64, cell_id: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ splitmix64(fnv1a64(cell_id)))
}

/// `np.quantile(x, np.linspace(0, 1, n_edges))` with numpy's default 'linear' method, bit for bit:
/// the sorted `f32` values are interpolated in `f64` with numpy's `_lerp` (difference taken in `f32`).
pub fn quantile_edges(x: &[f32], n_edges: usize) -> Vec<f64> {
    let mut sorted = x.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n == 0 {
        return Vec::new();
    }
    let div = n_edges.saturating_sub(1).max(1) as f64;
    let step = 1.0 / div;
    (0..n_edges)
        .map(|i| {
            // np.linspace: i * step, the last point set to stop exactly
            let q = if i + 1 == n_edges && n_edges > 1 {
                1.0
            } else {
                i as f64 * step
            };
            let vi = (n - 1) as f64 * q;
            if vi >= (n - 1) as f64 {
                return sorted[n - 1] as f64;
            }
            let prev = vi.floor();
            let gamma = vi - prev;
            let a = sorted[prev as usize];
            let b = sorted[prev as usize + 1];
            let diff = (b - a) as f64; // numpy subtracts the f32 neighbours in f32
            if gamma >= 0.5 {
                b as f64 - diff * (1.0 - gamma)
            } else {
                a as f64 + diff * gamma
            }
        })
        .collect()
}

/// The bins `preprocess.binning(row, n_bins)` can give each element, as inclusive ranges `(lo, hi)`:
/// `(0, 0)` for zeros; for a nonzero value with `left = np.digitize(x, edges)` and
/// `right = np.digitize(x, edges, right=True)`, `(left, left)` when they agree and
/// `(right + 1, left)` when the value ties with edges. An all-zero row is all `(0, 0)`.
pub fn bin_ranges(row: &[f32], n_bins: usize) -> Vec<(usize, usize)> {
    let mut out = vec![(0usize, 0usize); row.len()];
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if row.is_empty() || max == 0.0 {
        return out;
    }
    let nonzero: Vec<f32> = row.iter().copied().filter(|&v| v != 0.0).collect();
    let edges = quantile_edges(&nonzero, n_bins - 1);
    for (o, &v) in out.iter_mut().zip(row) {
        if v == 0.0 {
            continue;
        }
        let x = v as f64;
        let left = edges.partition_point(|&e| e <= x); // np.digitize(x, edges)
        let right = edges.partition_point(|&e| e < x); // np.digitize(x, edges, right=True)
        *o = if left == right {
            (left, left)
        } else {
            (right + 1, left)
        };
    }
    out
}

/// `preprocess.binning(row, n_bins)`: zeros stay 0; nonzero values get 1..=n_bins-1 from per-row
/// quantile edges; a value tied with edges gets a uniform random bin in its [`bin_ranges`] range,
/// drawn from `rng` in element order (the official code uses unseeded `np.random.rand`).
pub fn bin_row<R: Rng + ?Sized>(row: &[f32], n_bins: usize, rng: &mut R) -> Vec<f32> {
    bin_ranges(row, n_bins)
        .into_iter()
        .map(|(lo, hi)| {
            if lo == hi {
                lo as f32
            } else {
                rng.random_range(lo..=hi) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins(row: &[f32], n_bins: usize) -> Vec<f32> {
        bin_row(row, n_bins, &mut ChaCha8Rng::seed_from_u64(0))
    }

    // Test vectors of the official code, from reference/scgpt.md.
    #[test]
    fn official_binning_test_vectors() {
        let fib = [1., 2., 3., 5., 8., 13., 21., 34., 55., 89.];
        assert_eq!(
            bins(&fib, 51),
            vec![1., 6., 11., 17., 22., 28., 33., 39., 44., 50.]
        );
        assert_eq!(
            bins(&[0., 1., 0., 4., 2., 0., 9.], 51),
            vec![0., 1., 0., 33., 17., 0., 50.]
        );
        let r: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        assert_eq!(bins(&r, 5), vec![1., 1., 1., 2., 2., 3., 3., 4.]);
    }

    #[test]
    fn numpy_quantile_values_by_hand() {
        // np.quantile([1, 2, 3, 4], np.linspace(0, 1, 5)) = [1, 1.75, 2.5, 3.25, 4]
        assert_eq!(
            quantile_edges(&[4., 1., 3., 2.], 5),
            vec![1.0, 1.75, 2.5, 3.25, 4.0]
        );
        // a single value: every edge equals it
        assert_eq!(quantile_edges(&[7.], 3), vec![7.0, 7.0, 7.0]);
    }

    #[test]
    fn ties_fall_in_the_official_range_and_are_seeded() {
        // all equal: left = 50 edges <= x, right = 0 edges < x -> uniform in 1..=50
        let row = vec![3.0f32; 200];
        let a = bins(&row, 51);
        assert!(a.iter().all(|&b| (1.0..=50.0).contains(&b)));
        assert!(
            a.iter().any(|&b| b != a[0]),
            "ties are spread, not constant"
        );
        assert_eq!(a, bins(&row, 51), "same seed, same bins");
        let b = bin_row(&row, 51, &mut ChaCha8Rng::seed_from_u64(1));
        assert_ne!(a, b);
        // all-zero row stays zero; empty row is empty
        assert_eq!(bins(&[0., 0.], 51), vec![0., 0.]);
        assert!(bins(&[], 51).is_empty());
    }

    #[test]
    fn cell_tokens_follow_embed_data() {
        let vocab = Vocab::parse(r#"{"A": 0, "B": 1, "C": 2, "D": 3}"#).unwrap();
        let symbols: Vec<String> = ["C", "X", "A", "D", "B"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let opts = TokenizerOptions {
            max_length: 1200,
            ..TokenizerOptions::default()
        };
        let t = Tokenizer::new(&symbols, &vocab, opts.clone());
        assert_eq!(t.genes.n_matched, 4);
        assert_eq!(t.genes.unmatched_examples, vec!["X"]);
        // genes C, X (not in vocab), A (explicit zero), D, B; values 1, 5, 0, 4, 2 (cols 0..5)
        let idx = [0u32, 1, 2, 3, 4];
        let val = [1.0f32, 5.0, 0.0, 4.0, 2.0];
        let cell = t.tokenize("c1", &idx, &val);
        // <cls>=5 (pad=4 appended first), then C, D, B in var order; bins of [1, 4, 2] with 50 edges
        assert_eq!(cell.gene_ids, vec![5, 2, 3, 1]);
        assert_eq!(cell.values[0], -2.0);
        assert_eq!(&cell.values[1..], &bins(&[1., 4., 2.], 51)[..]);
        assert_eq!(cell.values[1..], [1.0, 50.0, 25.0]);
        assert_eq!(t.seq_len(&idx, &val), 4);
        // sampling keeps <cls> and max_length - 1 genes in var order, seeded by cell id
        let t2 = Tokenizer::new(
            &symbols,
            &vocab,
            TokenizerOptions {
                max_length: 3,
                ..opts
            },
        );
        let s = t2.tokenize("c1", &idx, &val);
        assert_eq!(s.len(), 3);
        assert_eq!(s.gene_ids[0], 5);
        assert!(s.was_sampled() && s.n_expressed == 3);
        let pos: Vec<usize> = s.gene_ids[1..]
            .iter()
            .map(|g| cell.gene_ids.iter().position(|x| x == g).unwrap())
            .collect();
        assert!(pos[0] < pos[1], "kept genes stay in var order");
        for (g, v) in s.gene_ids.iter().zip(&s.values).skip(1) {
            let k = cell.gene_ids.iter().position(|x| x == g).unwrap();
            assert_eq!(*v, cell.values[k], "bins are computed before sampling");
        }
        assert_eq!(s, t2.tokenize("c1", &idx, &val));
    }
}
