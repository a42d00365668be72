//! `scsae extract`: tokenise every cell, run scGPT, and stream each layer's activations into an
//! activation store (see [`crate::activations`] for the file layout).
//!
//! - Cells are sorted by token count (longest first) and grouped into batches of at most
//!   `batch_size` cells and `max_batch_tokens` padded tokens; each batch is padded to its longest
//!   cell. Results are written with each cell's input row (`cell_index`), so readers get input order.
//! - Per-cell vectors: the mean of each selected layer over the cell's non-pad tokens (`<cls>`
//!   included unless `mean_includes_cls` is false), and `cls` = the last block's `<cls>` output divided
//!   by its L2 norm (the cell embedding `embed_data` returns).
//! - With `tokens`, every token's activations with its cell index, gene id and position, optionally a
//!   seeded subsample of `max_tokens` tokens chosen over the whole data set.
//! - Parts are flushed once they reach `part_max_cells` cells or `part_max_bytes` bytes, so memory is
//!   bounded whatever the number of cells; `resume` continues an interrupted store.
//!
//! Every random choice depends only on the global seed and the cell id, so results do not depend on
//! batch size, thread count, or cell order.

use std::collections::{BTreeSet, BinaryHeap};
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::activations::{Manifest, ShardInfo, StoreWriter, TokenIndex, FORMAT};
use crate::data::Dataset;
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::scgpt::checkpoint::Scgpt;
use crate::scgpt::layers::{site_name, LayerSelection};
use crate::scgpt::model::{
    first_position, l2_normalise_rows, masked_mean, to_f32_vec, Batch, Site,
};
use crate::scgpt::tokenize::{fnv1a64, splitmix64, TokenizedCell, Tokenizer, TokenizerOptions};

/// Version of the tokenisation and pooling rules, recorded in the manifest.
pub const TOKENIZATION_RULE: &str = "scgpt-embed_data/1: vocab match by symbol, nonzero genes in var order, <cls> first, \
per-cell quantile bins with the official tie rule, seeded per cell by chacha8(seed ^ splitmix64(fnv1a64(cell_id)))";

/// Default padded tokens per batch on the CPU. Small enough that the largest activation of a block
/// (the q/k/v projections, `tokens x 3 d x 4` bytes: 24 MiB at d = 512) stays below the allocator's
/// 32 MiB reuse limit, so buffers are reused rather than faulted in afresh on every block, and the
/// products still fill the cores: at the full scGPT size, 4,096 tokens took 16 s for 64 cells
/// where 32,768 took 23 s (with 40 % less peak memory).
pub const CPU_BATCH_TOKENS: usize = 4_096;
/// Default padded tokens per batch on a GPU (`scsae extract --device cuda`).
pub const GPU_BATCH_TOKENS: usize = 32_768;

/// Extraction options (defaults = the official `embed_data`'s where it has one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtractOptions {
    /// Layers to store (`all` blocks by default; `embeddings` adds the encoder input).
    pub layers: LayerSelection,
    /// Also store per-token activations.
    pub tokens: bool,
    /// Keep a seeded uniform subsample of this many tokens over the whole data set.
    pub max_tokens: Option<usize>,
    /// Longest sequence, `<cls>` included (1200, as `embed_data`).
    pub max_length: usize,
    /// Cells per forward batch (64, as `embed_data`).
    pub batch_size: usize,
    /// Padded tokens per forward batch (bounds activation memory): [`CPU_BATCH_TOKENS`] by default;
    /// on a GPU, where larger batches pay, the CLI uses [`GPU_BATCH_TOKENS`].
    pub max_batch_tokens: usize,
    /// Include `<cls>` in the per-cell means (true).
    pub mean_includes_cls: bool,
    /// Continue an interrupted extraction in the output folder.
    pub resume: bool,
    /// Show a progress bar on stderr (hidden when stderr is not a terminal).
    pub progress: bool,
    /// Flush a part once it holds this many cells.
    pub part_max_cells: usize,
    /// Flush a part once its activations reach this many bytes.
    pub part_max_bytes: usize,
    /// Process only this shard of the cells (contiguous blocks of `part_max_cells` input rows).
    pub shard: Option<Shard>,
}

/// Shard `index` of `count` (`--shard I/N`, 0-based): blocks of `part_max_cells` consecutive input
/// rows are dealt out in contiguous runs, block `b` of `nb` going to shard `floor(b * N / nb)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Shard {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("'{s}': expected I/N, e.g. 0/8"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': I is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("'{s}': N is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("'{s}': need 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The input rows `start..end` of this shard among `n` cells in blocks of `block` rows.
    pub fn rows(&self, n: usize, block: usize) -> std::ops::Range<usize> {
        let nb = n.div_ceil(block);
        let first = (self.index * nb).div_ceil(self.count);
        let last = ((self.index + 1) * nb).div_ceil(self.count);
        (first * block).min(n)..(last * block).min(n)
    }
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            layers: LayerSelection::default(),
            tokens: false,
            max_tokens: None,
            max_length: 1200,
            batch_size: 64,
            max_batch_tokens: CPU_BATCH_TOKENS,
            mean_includes_cls: true,
            resume: false,
            progress: false,
            part_max_cells: 4096,
            part_max_bytes: 64 << 20,
            shard: None,
        }
    }
}

impl ExtractOptions {
    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 {
            return Err(Error::invalid("--batch-size must be at least 1"));
        }
        if self.max_length < 2 {
            return Err(Error::invalid(
                "--max-length must be at least 2 (<cls> and one gene)",
            ));
        }
        if self.max_tokens == Some(0) {
            return Err(Error::invalid("--max-tokens must be at least 1"));
        }
        if self.max_tokens.is_some() && !self.tokens {
            return Err(Error::invalid("--max-tokens needs --tokens"));
        }
        if self.part_max_cells == 0 || self.part_max_bytes == 0 || self.max_batch_tokens == 0 {
            return Err(Error::invalid("part and batch limits must be positive"));
        }
        Ok(())
    }
}

/// What an extraction did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtractReport {
    /// Cells in the data set.
    pub n_cells: usize,
    /// Cells processed in this run (the rest were already in a resumed store).
    pub n_processed: usize,
    /// Data genes found in the vocabulary.
    pub genes_matched: usize,
    /// Data genes.
    pub genes_total: usize,
    /// Cells longer than `max_length` that were subsampled.
    pub cells_sampled: usize,
    /// Cells with no expressed in-vocabulary gene (only `<cls>`).
    pub cells_without_genes: usize,
    /// Token rows written in this run.
    pub tokens_written: usize,
    /// Layer names written.
    pub layers: Vec<String>,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Warnings for the user (few genes matched, empty cells, ...).
    pub warnings: Vec<String>,
}

/// Key of a token for the global `--max-tokens` subsample (depends on seed, cell id and position only).
fn token_key(seed: u64, cell_hash: u64, position: usize) -> u64 {
    splitmix64(splitmix64(seed ^ 0x746f_6b65_6e73_0001 ^ cell_hash).wrapping_add(position as u64))
}

/// The largest kept key when `max_tokens` of all tokens are kept (`None` = keep every token).
fn token_threshold(
    seed: u64,
    cell_hashes: &[u64],
    lengths: &[usize],
    max_tokens: Option<usize>,
) -> Option<u64> {
    let k = max_tokens?;
    let total: usize = lengths.iter().sum();
    if k >= total {
        return None;
    }
    let mut heap: BinaryHeap<u64> = BinaryHeap::with_capacity(k + 1);
    for (&h, &len) in cell_hashes.iter().zip(lengths) {
        for p in 0..len {
            let key = token_key(seed, h, p);
            if heap.len() < k {
                heap.push(key);
            } else if heap.peek().is_some_and(|&top| key < top) {
                heap.pop();
                heap.push(key);
            }
        }
    }
    heap.peek().copied()
}

/// Group cells (`order` = input rows sorted longest first) into batches.
fn make_batches(
    order: &[usize],
    lengths: &[usize],
    batch_size: usize,
    max_batch_tokens: usize,
) -> Vec<Vec<usize>> {
    let mut batches = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut cur_max = 0usize;
    for &i in order {
        let m = cur_max.max(lengths[i]);
        if !cur.is_empty() && (cur.len() >= batch_size || m * (cur.len() + 1) > max_batch_tokens) {
            batches.push(std::mem::take(&mut cur));
            cur_max = 0;
        }
        cur_max = cur_max.max(lengths[i]);
        cur.push(i);
    }
    if !cur.is_empty() {
        batches.push(cur);
    }
    batches
}

/// Activations gathered for one part file.
struct PartBuffer {
    sites: Vec<Site>,
    d: usize,
    cell_index: Vec<i64>,
    pooled: Vec<Vec<f32>>,
    cls: Vec<f32>,
    tokens: Option<(TokenIndex, Vec<Vec<f32>>)>,
}

impl PartBuffer {
    fn new(sites: &[Site], d: usize, tokens: bool) -> PartBuffer {
        PartBuffer {
            sites: sites.to_vec(),
            d,
            cell_index: Vec::new(),
            pooled: vec![Vec::new(); sites.len()],
            cls: Vec::new(),
            tokens: tokens.then(|| (TokenIndex::default(), vec![Vec::new(); sites.len()])),
        }
    }

    fn bytes(&self) -> usize {
        let tok: usize = self
            .tokens
            .as_ref()
            .map(|(_, v)| v.iter().map(Vec::len).sum())
            .unwrap_or(0);
        4 * (tok + self.cls.len() + self.pooled.iter().map(Vec::len).sum::<usize>())
    }

    fn flush(&mut self, writer: &mut StoreWriter) -> Result<()> {
        if self.cell_index.is_empty() {
            return Ok(());
        }
        let n = self.cell_index.len();
        let d = self.d;
        let names: Vec<String> = self
            .sites
            .iter()
            .map(|&s| Manifest::tensor_name(&site_name(s)))
            .collect();
        let mut cell_mats = Vec::with_capacity(self.sites.len() + 1);
        for v in self.pooled.iter_mut() {
            cell_mats.push(DenseMatrix::new(n, d, std::mem::take(v))?);
        }
        cell_mats.push(DenseMatrix::new(n, d, std::mem::take(&mut self.cls))?);
        let mut cell_named: Vec<(String, &DenseMatrix)> =
            names.iter().cloned().zip(cell_mats.iter()).collect();
        cell_named.push(("cls".to_string(), &cell_mats[self.sites.len()]));
        let token_mats: Option<(TokenIndex, Vec<DenseMatrix>)> = match self.tokens.as_mut() {
            Some((idx, vals)) => {
                let t = idx.cell_index.len();
                let mats = vals
                    .iter_mut()
                    .map(|v| DenseMatrix::new(t, d, std::mem::take(v)))
                    .collect::<Result<Vec<_>>>()?;
                Some((std::mem::take(idx), mats))
            }
            None => None,
        };
        let token_named: Option<Vec<(String, &DenseMatrix)>> = token_mats
            .as_ref()
            .map(|(_, mats)| names.iter().cloned().zip(mats.iter()).collect());
        let tokens_arg = match (&token_mats, &token_named) {
            (Some((idx, _)), Some(named)) => Some((idx, named.as_slice())),
            _ => None,
        };
        writer.write_chunk(&self.cell_index, &cell_named, tokens_arg)?;
        self.cell_index.clear();
        Ok(())
    }
}

/// Extract activations of `data` with `scgpt` into the store folder `out`.
///
/// `data_info` describes how the data was read (file, layer, gene key); it goes into the manifest
/// together with the gene-matching counts. Everything is validated before anything is written.
pub fn extract(
    scgpt: &Scgpt,
    data: &Dataset,
    data_info: serde_json::Value,
    out: &Path,
    opts: &ExtractOptions,
    rt: &Runtime,
) -> Result<ExtractReport> {
    let started = Instant::now();
    opts.validate()?;
    if let Some(sh) = opts.shard {
        if sh.index >= sh.count {
            return Err(Error::invalid("--shard I/N needs I < N"));
        }
    }
    let (job, warnings) = Extraction::new(scgpt, data, opts, rt)?;
    let mut manifest = job.manifest(data_info);
    let rows = job.rows();
    if let Some(sh) = opts.shard {
        manifest.shard = Some(ShardInfo {
            index: sh.index,
            count: sh.count,
            start: rows.start,
            end: rows.end,
            data_sha256: crate::io::checksum::sha256_path(&data.source)?,
        });
    }
    let (mut writer, done) = StoreWriter::create(out, manifest, &data.cell_ids, opts.resume)?;
    let batches = job.batches(&done);
    let n = data.n_cells();
    let bar = crate::progress::bar(opts.progress, rows.len() as u64, "cells");
    bar.set_prefix("extract");
    bar.set_position(done.iter().filter(|i| rows.contains(i)).count() as u64);
    let mut report = ExtractReport {
        n_cells: n,
        n_processed: 0,
        genes_matched: job.tokenizer.genes.n_matched,
        genes_total: data.n_genes(),
        cells_sampled: 0,
        cells_without_genes: 0,
        tokens_written: 0,
        layers: job.sites.iter().map(|&s| site_name(s)).collect(),
        seconds: 0.0,
        warnings,
    };
    let mut buf = PartBuffer::new(&job.sites, scgpt.config.embsize, opts.tokens);
    for block in &batches {
        for batch_rows in block {
            let cells = job.tokenize(batch_rows);
            report.cells_sampled += cells.iter().filter(|c| c.was_sampled()).count();
            report.cells_without_genes += cells.iter().filter(|c| c.n_expressed == 0).count();
            report.tokens_written += job.run_batch(batch_rows, &cells, &mut buf)?;
            report.n_processed += batch_rows.len();
            bar.inc(batch_rows.len() as u64);
            if buf.bytes() >= opts.part_max_bytes {
                buf.flush(&mut writer)?;
            }
        }
        buf.flush(&mut writer)?;
    }
    writer.finish()?;
    bar.finish_and_clear();
    if report.cells_without_genes > 0 {
        report.warnings.push(format!(
            "{} cells express no gene of the vocabulary: their vectors come from <cls> alone",
            report.cells_without_genes
        ));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// One extraction's fixed inputs: the layers, the tokeniser, every cell's sequence length and id
/// hash, and the token-subsample threshold.
struct Extraction<'a> {
    scgpt: &'a Scgpt,
    data: &'a Dataset,
    opts: &'a ExtractOptions,
    rt: &'a Runtime,
    sites: Vec<Site>,
    tokenizer: Tokenizer,
    /// Token count of every cell (`<cls>` included).
    lengths: Vec<usize>,
    /// `fnv1a64` of every cell id.
    cell_hashes: Vec<u64>,
    /// Largest kept token key under `max_tokens` (`None`: keep every token).
    threshold: Option<u64>,
}

impl<'a> Extraction<'a> {
    /// Resolve the layers, match the genes (an error when none matches) and measure the cells;
    /// returns the gene-matching warning, if any, with it.
    fn new(
        scgpt: &'a Scgpt,
        data: &'a Dataset,
        opts: &'a ExtractOptions,
        rt: &'a Runtime,
    ) -> Result<(Self, Vec<String>)> {
        let sites = opts.layers.resolve(scgpt.config.nlayers)?;
        let tokenizer = data_tokenizer(scgpt, data, opts.max_length, rt.seed)?;
        let warnings: Vec<String> = tokenizer.genes.warning().into_iter().collect();
        let lengths: Vec<usize> = (0..data.n_cells())
            .map(|i| {
                let (idx, val) = cell_row(data, i);
                tokenizer.seq_len(idx, val)
            })
            .collect();
        let cell_hashes: Vec<u64> = data.cell_ids.iter().map(|c| fnv1a64(c)).collect();
        let threshold = if opts.tokens {
            token_threshold(rt.seed, &cell_hashes, &lengths, opts.max_tokens)
        } else {
            None
        };
        let job = Extraction {
            scgpt,
            data,
            opts,
            rt,
            sites,
            tokenizer,
            lengths,
            cell_hashes,
            threshold,
        };
        Ok((job, warnings))
    }

    /// The store's manifest (not yet complete, no parts).
    fn manifest(&self, data_info: serde_json::Value) -> Manifest {
        let (cfg, opts, data) = (&self.scgpt.config, self.opts, self.data);
        let mut data_desc = match data_info {
            serde_json::Value::Object(o) => o,
            _ => serde_json::Map::new(),
        };
        data_desc.insert("n_cells".into(), data.n_cells().into());
        data_desc.insert("n_genes".into(), data.n_genes().into());
        data_desc.insert(
            "genes_in_vocab".into(),
            self.tokenizer.genes.n_matched.into(),
        );
        let options = serde_json::json!({
            "tokenization": TOKENIZATION_RULE,
            "max_length": opts.max_length,
            "n_bins": cfg.n_bins,
            "pad_value": cfg.pad_value,
            "mean_pooling": "mean over non-pad tokens",
            "mean_includes_cls": opts.mean_includes_cls,
            "cls": "last block output at <cls> / its L2 norm",
            "max_tokens": opts.max_tokens,
            "part_cells": opts.part_max_cells,
        });
        Manifest {
            format: FORMAT.to_string(),
            software_version: env!("CARGO_PKG_VERSION").to_string(),
            model: self.scgpt.describe(),
            data: serde_json::Value::Object(data_desc),
            options,
            layers: self.sites.iter().map(|&s| site_name(s)).collect(),
            d_model: cfg.embsize,
            n_cells: data.n_cells(),
            seed: self.rt.seed,
            tokens: opts.tokens,
            cell_parts: vec![],
            token_parts: vec![],
            complete: false,
            shard: None,
        }
    }

    /// The input rows this run covers (all, or the shard's).
    fn rows(&self) -> std::ops::Range<usize> {
        let n = self.data.n_cells();
        match self.opts.shard {
            Some(sh) => sh.rows(n, self.opts.part_max_cells),
            None => 0..n,
        }
    }

    /// The cells of this run not yet `done`, block by block (`part_max_cells` consecutive input
    /// rows, each block one part unless `part_max_bytes` splits it), longest first within a block and
    /// grouped into batches (with `tokens`, one batch's token activations must fit in a part). Every
    /// block is processed the same way whether the run is whole, sharded or resumed, so the parts are
    /// the same files.
    fn batches(&self, done: &BTreeSet<usize>) -> Vec<Vec<Vec<usize>>> {
        let (opts, lengths) = (self.opts, &self.lengths);
        let mut max_batch_tokens = opts.max_batch_tokens;
        if opts.tokens {
            let per_token = 4 * self.scgpt.config.embsize * self.sites.len();
            max_batch_tokens =
                max_batch_tokens.min((opts.part_max_bytes / per_token).max(opts.max_length));
        }
        let rows = self.rows();
        let mut blocks = Vec::new();
        let mut start = rows.start;
        while start < rows.end {
            let end = (start + opts.part_max_cells).min(rows.end);
            let mut order: Vec<usize> = (start..end).filter(|i| !done.contains(i)).collect();
            order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
            if !order.is_empty() {
                blocks.push(make_batches(
                    &order,
                    lengths,
                    opts.batch_size,
                    max_batch_tokens,
                ));
            }
            start = end;
        }
        blocks
    }

    /// Tokenise the cells of one batch.
    fn tokenize(&self, rows: &[usize]) -> Vec<TokenizedCell> {
        rows.iter()
            .map(|&i| {
                let (idx, val) = cell_row(self.data, i);
                self.tokenizer.tokenize(&self.data.cell_ids[i], idx, val)
            })
            .collect()
    }

    /// Tokens of one batch kept in the store, as (cell in batch, position); none without `tokens`.
    fn kept_tokens(&self, rows: &[usize], cells: &[TokenizedCell]) -> Vec<(usize, usize)> {
        if !self.opts.tokens {
            return Vec::new();
        }
        let mut kept = Vec::new();
        for (b, (&i, c)) in rows.iter().zip(cells).enumerate() {
            for p in 0..c.len() {
                if self
                    .threshold
                    .is_none_or(|t| token_key(self.rt.seed, self.cell_hashes[i], p) <= t)
                {
                    kept.push((b, p));
                }
            }
        }
        kept
    }

    /// Run one batch through scGPT and append its pooled vectors, normalised `<cls>` outputs and
    /// kept tokens to `buf`; returns the number of token rows added.
    fn run_batch(
        &self,
        rows: &[usize],
        cells: &[TokenizedCell],
        buf: &mut PartBuffer,
    ) -> Result<usize> {
        let (cfg, rt, d) = (&self.scgpt.config, self.rt, self.scgpt.config.embsize);
        let refs: Vec<&TokenizedCell> = cells.iter().collect();
        let batch = Batch::new(
            &refs,
            self.scgpt.pad_id(),
            cfg.pad_value,
            &rt.device,
            rt.dtype,
        )?;
        let first = if self.opts.mean_includes_cls { 0 } else { 1 };
        let start: Vec<usize> = vec![first; cells.len()];
        let count: Vec<usize> = cells.iter().zip(&start).map(|(c, s)| c.len() - s).collect();
        let kept = self.kept_tokens(rows, cells);
        let l = batch.max_len;
        let last_out = self.scgpt.model.forward_with(&batch, |site, h| {
            let Some(s) = self.sites.iter().position(|&x| x == site) else {
                return Ok(());
            };
            let pooled = to_f32_vec(&masked_mean(h, &start, &count)?)?;
            buf.pooled[s].extend_from_slice(&pooled);
            if let Some((_, vals)) = buf.tokens.as_mut() {
                let hv = to_f32_vec(h)?;
                let dst = &mut vals[s];
                dst.reserve(kept.len() * d);
                for &(b, p) in &kept {
                    let o = (b * l + p) * d;
                    dst.extend_from_slice(&hv[o..o + d]);
                }
            }
            Ok(())
        })?;
        let mut cls = to_f32_vec(&first_position(&last_out)?)?;
        l2_normalise_rows(&mut cls, d);
        buf.cls.extend_from_slice(&cls);
        buf.cell_index.extend(rows.iter().map(|&i| i as i64));
        if let Some((idx, _)) = buf.tokens.as_mut() {
            for &(b, p) in &kept {
                idx.cell_index.push(rows[b] as i64);
                idx.gene_id.push(cells[b].gene_ids[p] as i64);
                idx.position.push(p as i64);
            }
        }
        Ok(kept.len())
    }
}

/// The tokenizer of `data`'s cells for `scgpt` (the checkpoint's bins and pad value, `max_length`,
/// seeded by `seed`); an error naming the data file when none of its genes is in the vocabulary.
pub fn data_tokenizer(
    scgpt: &Scgpt,
    data: &Dataset,
    max_length: usize,
    seed: u64,
) -> Result<Tokenizer> {
    let cfg = &scgpt.config;
    let tok_opts = TokenizerOptions {
        max_length,
        n_bins: cfg.n_bins,
        pad_value: cfg.pad_value,
        seed,
    };
    let tokenizer = Tokenizer::new(&data.gene_symbols, &scgpt.vocab, tok_opts);
    if tokenizer.genes.n_matched == 0 {
        return Err(Error::input(
            &data.source,
            format!(
                "none of the {} genes is in the model vocabulary (first genes: {}); scGPT expects human gene symbols: pick the var column with --gene-key",
                data.n_genes(),
                data.gene_symbols.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(tokenizer)
}

/// Gene indices and values of cell `i` (a CSR row).
pub(crate) fn cell_row(data: &Dataset, i: usize) -> (&[u32], &[f32]) {
    let m = &data.matrix;
    (
        &m.indices[m.indptr[i]..m.indptr[i + 1]],
        &m.data[m.indptr[i]..m.indptr[i + 1]],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_size_and_token_budget() {
        let lengths = vec![10, 8, 8, 3, 2, 2, 2];
        let order: Vec<usize> = (0..7).collect();
        assert_eq!(
            make_batches(&order, &lengths, 3, 1000),
            vec![vec![0, 1, 2], vec![3, 4, 5], vec![6]]
        );
        // 10 * 2 > 16: the longest cell goes alone
        assert_eq!(
            make_batches(&order, &lengths, 64, 16),
            vec![vec![0], vec![1, 2], vec![3, 4, 5, 6]]
        );
    }

    #[test]
    fn token_subsample_is_exact_and_order_free() {
        let hashes: Vec<u64> = ["a", "b", "c"].iter().map(|s| fnv1a64(s)).collect();
        let lengths = vec![5, 7, 4];
        let t = token_threshold(1, &hashes, &lengths, Some(6)).unwrap();
        let kept: usize = hashes
            .iter()
            .zip(&lengths)
            .map(|(&h, &l)| (0..l).filter(|&p| token_key(1, h, p) <= t).count())
            .sum();
        assert_eq!(kept, 6);
        // reversed cell order: same threshold
        let rh: Vec<u64> = hashes.iter().rev().copied().collect();
        let rl: Vec<usize> = lengths.iter().rev().copied().collect();
        assert_eq!(token_threshold(1, &rh, &rl, Some(6)), Some(t));
        assert_eq!(token_threshold(1, &hashes, &lengths, Some(16)), None);
        assert_eq!(token_threshold(1, &hashes, &lengths, None), None);
    }
}
