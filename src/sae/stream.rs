//! Activations of an extraction folder as a stream, for training on stores larger than memory:
//! [`StoreRows`] reads the rows of one or more layers part by part, a bounded block of rows at a
//! time; [`fit_zscores`] computes each layer's z-score in one pass; [`ShuffleBuffer`] turns the
//! stream into random batches with a fixed number of rows held.
//!
//! Every row is emitted exactly once per pass, so an epoch of streaming training sees each input
//! once, as in memory. Which rows share a batch depends on the seed, the buffer size and the part
//! layout (fixed by the extraction's `--part-cells`; merged shards have the unsharded layout), never
//! on thread count.

use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::activations::part_reader::PartReader;
use crate::activations::ActivationStore;
use crate::error::{Error, Result};
use crate::sae::config::InputLevel;
use crate::sae::zscore::std_from_m2;

/// Rows read from a part file at a time.
pub const READ_BLOCK: usize = 4096;

/// The rows of some layers of a store, read part by part.
pub struct StoreRows {
    parts: Vec<(PathBuf, usize)>,
    tensors: Vec<String>,
    d: usize,
    n: usize,
}

impl StoreRows {
    /// The `level` rows of `layers` (`"cls"` allowed for cells) of `store`.
    pub fn new(store: &ActivationStore, level: InputLevel, layers: &[String]) -> Result<StoreRows> {
        let tokens = level == InputLevel::Tokens;
        let m = &store.manifest;
        if tokens && !m.tokens {
            return Err(Error::input(
                store.dir(),
                "no per-token activations in this extraction (re-run `scsae extract` with --tokens)",
            ));
        }
        let tensors = layers
            .iter()
            .map(|l| store.layer_tensor(l, tokens))
            .collect::<Result<Vec<_>>>()?;
        let list = if tokens {
            &m.token_parts
        } else {
            &m.cell_parts
        };
        let parts: Vec<(PathBuf, usize)> = list
            .iter()
            .map(|p| (store.dir().join(&p.file), p.rows))
            .collect();
        let n = parts.iter().map(|p| p.1).sum();
        if n == 0 {
            return Err(Error::input(
                store.dir(),
                format!("no {level} activations to train on"),
            ));
        }
        Ok(StoreRows {
            parts,
            tensors,
            d: m.d_model,
            n,
        })
    }

    /// Rows in the store (per layer).
    pub fn n_rows(&self) -> usize {
        self.n
    }

    /// Width of every row.
    pub fn d(&self) -> usize {
        self.d
    }

    /// Number of part files.
    pub fn n_parts(&self) -> usize {
        self.parts.len()
    }

    /// Read the parts in `order`, at most `block` rows at a time, calling `f(rows, blocks)` with one
    /// `[rows, d]` block per layer. A part whose row count disagrees with the manifest is an error
    /// naming it.
    pub fn visit(
        &self,
        order: &[usize],
        block: usize,
        mut f: impl FnMut(usize, &[Vec<f32>]) -> Result<()>,
    ) -> Result<()> {
        let block = block.max(1);
        for &pi in order {
            let (path, rows) = &self.parts[pi];
            let mut r = PartReader::open(path)?;
            for t in &self.tensors {
                let have = r.rows(t, self.d)?;
                if have != *rows {
                    return Err(Error::input(
                        path,
                        format!("'{t}' has {have} rows; the manifest says {rows}"),
                    ));
                }
            }
            let mut start = 0;
            while start < *rows {
                let k = block.min(rows - start);
                let blocks = self
                    .tensors
                    .iter()
                    .map(|t| r.read_rows(t, self.d, start, k))
                    .collect::<Result<Vec<_>>>()?;
                f(k, &blocks)?;
                start += k;
            }
        }
        Ok(())
    }

    /// The parts in store order.
    pub fn in_order(&self) -> Vec<usize> {
        (0..self.parts.len()).collect()
    }
}

/// Running mean and sum of squared deviations of one layer (f64), merged block by block
/// (Chan, Golub & LeVeque 1979), so one pass gives `numpy.std(ddof=0)` to rounding.
#[derive(Debug, Clone)]
struct Moments {
    n: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    fn new(d: usize) -> Moments {
        Moments {
            n: 0.0,
            mean: vec![0.0; d],
            m2: vec![0.0; d],
        }
    }

    fn add_block(&mut self, x: &[f32], rows: usize) {
        let d = self.mean.len();
        if rows == 0 {
            return;
        }
        let nb = rows as f64;
        let mut bm = vec![0f64; d];
        for row in x.chunks_exact(d) {
            for (a, v) in bm.iter_mut().zip(row) {
                *a += *v as f64;
            }
        }
        bm.iter_mut().for_each(|a| *a /= nb);
        let mut bm2 = vec![0f64; d];
        for row in x.chunks_exact(d) {
            for ((s, v), mu) in bm2.iter_mut().zip(row).zip(&bm) {
                let e = *v as f64 - mu;
                *s += e * e;
            }
        }
        let n = self.n + nb;
        for j in 0..d {
            let delta = bm[j] - self.mean[j];
            self.mean[j] += delta * nb / n;
            self.m2[j] += bm2[j] + delta * delta * self.n * nb / n;
        }
        self.n = n;
    }

    fn finish(&self) -> (Vec<f32>, Vec<f32>) {
        let std = std_from_m2(&self.m2, self.n.max(1.0));
        (self.mean.iter().map(|v| *v as f32).collect(), std)
    }
}

/// Per-layer mean and population standard deviation over every row of `rows`, in one pass (the
/// same definition as [`crate::sae::zscore::fit`]: ddof 0, std below `MIN_STD` stored as 1).
pub fn fit_zscores(rows: &StoreRows) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
    let mut acc = vec![Moments::new(rows.d); rows.tensors.len()];
    rows.visit(&rows.in_order(), READ_BLOCK, |k, blocks| {
        for (a, b) in acc.iter_mut().zip(blocks) {
            a.add_block(b, k);
        }
        Ok(())
    })?;
    Ok(acc.iter().map(Moments::finish).collect())
}

/// A batch drawn from the buffer: one `[rows, d]` slice per layer, plus the buffer's contents
/// (rows currently held, per layer) as a pool for dead-feature resampling.
pub struct Batch<'b> {
    /// Rows in the batch.
    pub rows: usize,
    /// Per layer, the batch's rows (`rows x d`).
    pub layers: &'b [Vec<f32>],
    /// Per layer, the rows held by the buffer (`pool_rows x d`).
    pub pool: &'b [Vec<f32>],
    /// Rows in `pool`.
    pub pool_rows: usize,
}

/// A bounded shuffle buffer over rows of several layers that move together (row `i` of every layer
/// is the same input). Once full, each incoming row replaces a uniformly drawn held row, which goes
/// to the batch; at the end the held rows leave in random order. Every pushed row leaves exactly
/// once; batches hold `batch_size` rows except the last of a pass.
pub struct ShuffleBuffer {
    cap: usize,
    d: usize,
    bs: usize,
    held: Vec<Vec<f32>>,
    len: usize,
    batch: Vec<Vec<f32>>,
    nb: usize,
    rng: ChaCha8Rng,
}

impl ShuffleBuffer {
    /// A buffer of `cap` rows of `layers` layers `d` wide, emitting batches of `batch_size`.
    pub fn new(
        cap: usize,
        layers: usize,
        d: usize,
        batch_size: usize,
        rng: ChaCha8Rng,
    ) -> ShuffleBuffer {
        let cap = cap.max(1);
        let bs = batch_size.max(1);
        ShuffleBuffer {
            cap,
            d,
            bs,
            held: vec![Vec::with_capacity(cap * d); layers],
            len: 0,
            batch: vec![vec![0f32; bs * d]; layers],
            nb: 0,
            rng,
        }
    }

    fn take_into_batch(&mut self, slot: usize) {
        let d = self.d;
        let r = self.nb;
        for (b, h) in self.batch.iter_mut().zip(&self.held) {
            b[r * d..(r + 1) * d].copy_from_slice(&h[slot * d..(slot + 1) * d]);
        }
        self.nb += 1;
    }

    fn emit_if_full(
        &mut self,
        emit: &mut impl FnMut(&Batch<'_>) -> Result<()>,
        force: bool,
    ) -> Result<()> {
        if self.nb == self.bs || (force && self.nb > 0) {
            let d = self.d;
            let trimmed: Vec<Vec<f32>>;
            let layers: &[Vec<f32>] = if self.nb == self.bs {
                &self.batch
            } else {
                trimmed = self
                    .batch
                    .iter()
                    .map(|b| b[..self.nb * d].to_vec())
                    .collect();
                &trimmed
            };
            emit(&Batch {
                rows: self.nb,
                layers,
                pool: &self.held,
                pool_rows: self.len,
            })?;
            self.nb = 0;
        }
        Ok(())
    }

    /// Push `rows` rows (one `[rows, d]` block per layer), emitting every batch that fills.
    pub fn push(
        &mut self,
        blocks: &[Vec<f32>],
        rows: usize,
        emit: &mut impl FnMut(&Batch<'_>) -> Result<()>,
    ) -> Result<()> {
        let d = self.d;
        for r in 0..rows {
            if self.len < self.cap {
                for (h, b) in self.held.iter_mut().zip(blocks) {
                    h.extend_from_slice(&b[r * d..(r + 1) * d]);
                }
                self.len += 1;
                continue;
            }
            let slot = self.rng.random_range(0..self.cap);
            self.take_into_batch(slot);
            for (h, b) in self.held.iter_mut().zip(blocks) {
                h[slot * d..(slot + 1) * d].copy_from_slice(&b[r * d..(r + 1) * d]);
            }
            self.emit_if_full(emit, false)?;
        }
        Ok(())
    }

    /// Emit the held rows in random order (and the last, possibly short, batch); the buffer is
    /// empty afterwards.
    pub fn drain(&mut self, emit: &mut impl FnMut(&Batch<'_>) -> Result<()>) -> Result<()> {
        let mut order: Vec<usize> = (0..self.len).collect();
        order.shuffle(&mut self.rng);
        for slot in order {
            self.take_into_batch(slot);
            self.emit_if_full(emit, false)?;
        }
        self.emit_if_full(emit, true)?;
        for h in self.held.iter_mut() {
            h.clear();
        }
        self.len = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Push rows 0..n (value = row id, two layers: id and -id) through a buffer; collect batches.
    fn run(n: usize, cap: usize, bs: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut buf = ShuffleBuffer::new(cap, 2, 1, bs, ChaCha8Rng::seed_from_u64(seed));
        let mut out = Vec::new();
        let mut emit = |b: &Batch<'_>| {
            assert_eq!(b.layers[0].len(), b.rows);
            for (a, c) in b.layers[0].iter().zip(&b.layers[1]) {
                assert_eq!(*a, -*c, "layers move together");
            }
            assert!(b.pool_rows <= cap);
            out.push(b.layers[0].clone());
            Ok(())
        };
        let ids: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let neg: Vec<f32> = ids.iter().map(|v| -v).collect();
        // pushed in blocks of 7 rows
        for s in (0..n).step_by(7) {
            let e = (s + 7).min(n);
            buf.push(&[ids[s..e].to_vec(), neg[s..e].to_vec()], e - s, &mut emit)
                .unwrap();
        }
        buf.drain(&mut emit).unwrap();
        out
    }

    #[test]
    fn every_row_leaves_once_in_full_batches_and_the_seed_fixes_the_order() {
        for &(n, cap, bs) in &[(100, 16, 10), (100, 1000, 32), (37, 1, 5), (5, 3, 8)] {
            let batches = run(n, cap, bs, 7);
            assert_eq!(batches.len(), n.div_ceil(bs), "n {n} cap {cap} bs {bs}");
            assert!(batches[..batches.len() - 1].iter().all(|b| b.len() == bs));
            let mut all: Vec<f32> = batches.concat();
            if cap > 1 && n > 20 {
                assert_ne!(all, (0..n).map(|i| i as f32).collect::<Vec<_>>());
            }
            all.sort_by(f32::total_cmp);
            assert_eq!(all, (0..n).map(|i| i as f32).collect::<Vec<_>>());
            assert_eq!(run(n, cap, bs, 7), batches);
            if cap > 1 {
                assert_ne!(run(n, cap, bs, 8), batches);
            }
        }
    }

    #[test]
    fn a_large_buffer_mixes_rows_from_the_whole_stream() {
        // with the buffer holding the whole stream, the first batch draws from all of it: its mean
        // row id is near the middle (planted: ids 0..1000, a batch of 100)
        let b = run(1000, 1000, 100, 3);
        let mean = b[0].iter().sum::<f32>() / 100.0;
        assert!((mean - 499.5).abs() < 100.0, "{mean}");
        // a buffer of 1 keeps the stream order
        let b = run(20, 1, 4, 3);
        assert_eq!(b.concat(), (0..20).map(|i| i as f32).collect::<Vec<_>>());
    }

    #[test]
    fn one_pass_moments_match_numpy() {
        // numpy: x = [[1, 5], [3, 5], [8, 5], [2, 5]]; x.mean(0) = [3.5, 5]; x.std(0) = [2.6925824, 0]
        let mut m = Moments::new(2);
        m.add_block(&[1.0, 5.0, 3.0, 5.0, 8.0, 5.0], 3);
        m.add_block(&[2.0, 5.0], 1);
        let (mean, std) = m.finish();
        assert_eq!(mean, vec![3.5, 5.0]);
        assert!((std[0] - 2.692_582_4).abs() < 1e-6, "{}", std[0]);
        assert_eq!(std[1], 1.0);
    }
}
