//! The on-disk activation store written by `scsae extract` and read by the SAE trainer, the analysis
//! layer and SpikGPT.
//!
//! Layout of an extraction folder:
//! ```text
//! OUT/manifest.json                 what was extracted, from which model and data, with which options
//! OUT/cell_ids.json                 cell ids in input order (row i of every cell matrix)
//! OUT/cells/part-00000.safetensors  per-cell tensors for a chunk of cells:
//!     cell_index  I64 [n]           input row of each cell
//!     layer_<L>   F32 [n, d]        mean over the cell's non-pad tokens of block L's output
//!     embeddings  F32 [n, d]        (optional) the same for the input embeddings before block 0
//!     cls         F32 [n, d]        L2-normalised CLS output of the last block (scGPT's cell embedding)
//! OUT/tokens/part-00000.safetensors per-token tensors (with --tokens):
//!     cell_index  I64 [t]           input row of the cell the token belongs to
//!     gene_id     I64 [t]           vocabulary id of the token's gene (<cls> included)
//!     position    I64 [t]           position in the cell's token sequence (0 = <cls>)
//!     layer_<L>   F32 [t, d]        block L's output at that token
//! ```
//! Parts are written atomically and the manifest is rewritten after each one, so an interrupted run
//! can resume; `complete` turns true only when every cell has been written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::activations::part_reader::PartReader;
use crate::data::DenseMatrix;
use crate::error::{Error, IoContext, Result};
use crate::io::atomic::{write_bytes_atomic, write_json_atomic};
use crate::io::json::read_json;
use crate::io::lock::{remove_stale_temporaries, OutputLock};
use crate::io::matrix::{f32_bytes, tensor_to_f32};

pub mod cell_blocks;
pub mod h5ad_export;
pub mod merge;
pub mod part_reader;
mod provenance;
mod source;

pub use provenance::{Provenance, SourceKind};
pub use source::{check_unique_ids, read_cells, require_layer, CellMatrix};

/// Version tag written into every manifest.
pub const FORMAT: &str = "scsae-activations/1";

/// One written part file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartInfo {
    /// File name relative to the store folder (e.g. `cells/part-00000.safetensors`).
    pub file: String,
    /// Number of rows (cells or tokens) in the part.
    pub rows: usize,
}

/// Contents of `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format tag, [`FORMAT`].
    pub format: String,
    /// Version of scsae that wrote the store.
    pub software_version: String,
    /// Free-form description of the model (checkpoint folder, sizes, args).
    pub model: serde_json::Value,
    /// Free-form description of the input data (file, layer, gene key, matched genes).
    pub data: serde_json::Value,
    /// Free-form tokenisation and pooling options.
    pub options: serde_json::Value,
    /// Layer names extracted, e.g. `["0", "6", "11"]`; `"embeddings"` for the input embeddings.
    pub layers: Vec<String>,
    /// Width of every activation vector.
    pub d_model: usize,
    /// Number of input cells.
    pub n_cells: usize,
    /// Global seed used for tokenisation and token subsampling.
    pub seed: u64,
    /// Whether per-token activations were written.
    pub tokens: bool,
    /// Per-cell part files in write order.
    pub cell_parts: Vec<PartInfo>,
    /// Per-token part files in write order.
    pub token_parts: Vec<PartInfo>,
    /// True once every cell (of the shard, for a shard) has been written.
    pub complete: bool,
    /// For a store written with `--shard I/N`: which shard; merged stores and unsharded runs have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardInfo>,
}

/// What a shard store records about its place in the whole extraction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardInfo {
    /// 0-based shard index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
    /// First input row of the shard.
    pub start: usize,
    /// One past its last input row.
    pub end: usize,
    /// SHA-256 of the input data file (hex), so shards of different data never merge.
    pub data_sha256: String,
}

impl Manifest {
    /// Read and validate `DIR/manifest.json`.
    pub fn read(dir: &Path) -> Result<Manifest> {
        let path = dir.join("manifest.json");
        if !path.exists() {
            return Err(Error::input(
                dir,
                "not an activation folder (no manifest.json; run `scsae extract` first)",
            ));
        }
        let m: Manifest = read_json(&path, "manifest")?;
        if m.format != FORMAT {
            return Err(Error::input(
                &path,
                format!("unsupported format '{}' (expected {FORMAT})", m.format),
            ));
        }
        Ok(m)
    }

    /// Tensor name of a layer in the part files.
    pub fn tensor_name(layer: &str) -> String {
        if layer == "embeddings" {
            "embeddings".to_string()
        } else {
            format!("layer_{layer}")
        }
    }

    fn check_layer(&self, dir: &Path, layer: &str) -> Result<()> {
        if self.layers.iter().any(|l| l == layer) {
            Ok(())
        } else {
            Err(Error::input(
                dir,
                format!(
                    "layer {layer} was not extracted (available: {})",
                    self.layers.join(", ")
                ),
            ))
        }
    }
}

/// Error unless every part file named by the manifest exists and is large enough for the rows and
/// width the manifest claims (one `d_model`-wide f32 vector per row at least): sizes read from the
/// manifest are checked against the disk before anything of that size is allocated.
fn check_part_sizes(dir: &Path, m: &Manifest) -> Result<()> {
    let path = dir.join("manifest.json");
    let mut cells = 0usize;
    for p in m.cell_parts.iter().chain(&m.token_parts) {
        let file = dir.join(&p.file);
        let len = std::fs::metadata(&file).at(&file)?.len();
        let need = (p.rows as u64)
            .checked_mul(m.d_model as u64)
            .and_then(|v| v.checked_mul(4));
        if need.is_none_or(|need| need > len) {
            return Err(Error::input(
                &path,
                format!(
                    "{} holds {len} bytes, too few for the {} rows x {} dims the manifest claims",
                    p.file, p.rows, m.d_model
                ),
            ));
        }
    }
    for p in &m.cell_parts {
        cells = cells.saturating_add(p.rows);
    }
    if cells != m.n_cells {
        return Err(Error::input(
            &path,
            format!("the cell parts hold {cells} rows for {} cells", m.n_cells),
        ));
    }
    Ok(())
}

/// Writes an activation store part by part.
pub struct StoreWriter {
    dir: PathBuf,
    manifest: Manifest,
    _lock: OutputLock,
}

impl StoreWriter {
    /// Start a new store in `dir`, or resume one whose manifest matches `manifest` in model, data,
    /// options, layers and seed. Returns the writer and the set of cell indices already written.
    ///
    /// Without `resume`, an existing complete or partial store in `dir` is an error (never
    /// overwrite a user's results silently).
    pub fn create(
        dir: &Path,
        manifest: Manifest,
        cell_ids: &[String],
        resume: bool,
    ) -> Result<(StoreWriter, BTreeSet<usize>)> {
        let mpath = dir.join("manifest.json");
        let refuse = || {
            Err(Error::input(
                dir,
                "output folder already holds an extraction; pass --resume to continue it or choose another --out",
            ))
        };
        if mpath.exists() && !resume {
            return refuse();
        }
        // one writer per folder; checked again under the lock (another run may have started)
        let lock = OutputLock::acquire(dir)?;
        if mpath.exists() {
            if !resume {
                return refuse();
            }
            let old = Manifest::read(dir)?;
            let same = old.model == manifest.model
                && old.shard == manifest.shard
                && old.data == manifest.data
                && old.options == manifest.options
                && old.layers == manifest.layers
                && old.seed == manifest.seed
                && old.tokens == manifest.tokens
                && old.n_cells == manifest.n_cells;
            if !same {
                return Err(Error::input(
                    &mpath,
                    "cannot resume: the existing extraction used another model, data, layers or options",
                ));
            }
            let mut done = BTreeSet::new();
            for p in &old.cell_parts {
                let idx = read_i64(&dir.join(&p.file), "cell_index")?;
                done.extend(idx.into_iter().map(|i| i as usize));
            }
            // parts of a killed run were written as temporaries: remove them
            for sub in ["", "cells", "tokens"] {
                remove_stale_temporaries(&dir.join(sub))?;
            }
            return Ok((
                StoreWriter {
                    dir: dir.to_path_buf(),
                    manifest: old,
                    _lock: lock,
                },
                done,
            ));
        }
        std::fs::create_dir_all(dir.join("cells")).at(dir)?;
        if manifest.tokens {
            std::fs::create_dir_all(dir.join("tokens")).at(dir)?;
        }
        write_json_atomic(&dir.join("cell_ids.json"), cell_ids)?;
        let w = StoreWriter {
            dir: dir.to_path_buf(),
            manifest,
            _lock: lock,
        };
        write_json_atomic(&mpath, &w.manifest)?;
        Ok((w, BTreeSet::new()))
    }

    /// The manifest as written so far.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Write one chunk: per-cell tensors (`cell_index` plus named `[n, d]` matrices) and, when the
    /// store holds tokens, the chunk's per-token tensors. The token part is written first and the
    /// manifest last, so a crash never records cells whose tokens are missing.
    pub fn write_chunk(
        &mut self,
        cell_index: &[i64],
        cell_tensors: &[(String, &DenseMatrix)],
        tokens: Option<(&TokenIndex, &[(String, &DenseMatrix)])>,
    ) -> Result<()> {
        let k = self.manifest.cell_parts.len();
        if let Some((idx, mats)) = tokens {
            let file = format!("tokens/part-{k:05}.safetensors");
            let ints = [
                ("cell_index", idx.cell_index.as_slice()),
                ("gene_id", idx.gene_id.as_slice()),
                ("position", idx.position.as_slice()),
            ];
            write_part(&self.dir.join(&file), &ints, mats)?;
            self.manifest.token_parts.push(PartInfo {
                file,
                rows: idx.cell_index.len(),
            });
        }
        let file = format!("cells/part-{k:05}.safetensors");
        write_part(
            &self.dir.join(&file),
            &[("cell_index", cell_index)],
            cell_tensors,
        )?;
        self.manifest.cell_parts.push(PartInfo {
            file,
            rows: cell_index.len(),
        });
        write_json_atomic(&self.dir.join("manifest.json"), &self.manifest)
    }

    /// Mark the store complete.
    pub fn finish(mut self) -> Result<Manifest> {
        let written: usize = self.manifest.cell_parts.iter().map(|p| p.rows).sum();
        let expected = match &self.manifest.shard {
            Some(sh) => sh.end - sh.start,
            None => self.manifest.n_cells,
        };
        if written != expected {
            return Err(Error::input(
                &self.dir,
                format!("extraction incomplete: {written} of {expected} cells written"),
            ));
        }
        self.manifest.complete = true;
        write_json_atomic(&self.dir.join("manifest.json"), &self.manifest)?;
        Ok(self.manifest)
    }
}

/// Which cell, gene and position each token row belongs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenIndex {
    /// Input row of the token's cell.
    pub cell_index: Vec<i64>,
    /// Vocabulary id of the token's gene.
    pub gene_id: Vec<i64>,
    /// Position within the cell's sequence (0 = `<cls>`).
    pub position: Vec<i64>,
}

fn write_part(path: &Path, ints: &[(&str, &[i64])], mats: &[(String, &DenseMatrix)]) -> Result<()> {
    let int_bytes: Vec<Vec<u8>> = ints
        .iter()
        .map(|(_, v)| v.iter().flat_map(|x| x.to_le_bytes()).collect())
        .collect();
    let mat_bytes: Vec<Vec<u8>> = mats.iter().map(|(_, m)| f32_bytes(&m.data)).collect();
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for ((name, v), b) in ints.iter().zip(&int_bytes) {
        let t = TensorView::new(Dtype::I64, vec![v.len()], b)
            .map_err(|e| Error::input(path, format!("tensor {name}: {e}")))?;
        views.push((name.to_string(), t));
    }
    for ((name, m), b) in mats.iter().zip(&mat_bytes) {
        let t = TensorView::new(Dtype::F32, vec![m.n_rows, m.n_cols], b)
            .map_err(|e| Error::input(path, format!("tensor {name}: {e}")))?;
        views.push((name.clone(), t));
    }
    let bytes = safetensors::serialize(views, None)
        .map_err(|e| Error::input(path, format!("cannot serialise: {e}")))?;
    write_bytes_atomic(path, &bytes)
}

fn load_part(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).at(path)
}

fn parse_part<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    SafeTensors::deserialize(bytes)
        .map_err(|e| Error::input(path, format!("corrupt activation part: {e}")))
}

fn read_i64(path: &Path, name: &str) -> Result<Vec<i64>> {
    let bytes = load_part(path)?;
    let st = parse_part(path, &bytes)?;
    tensor_i64(path, &st, name)
}

fn tensor_i64(path: &Path, st: &SafeTensors<'_>, name: &str) -> Result<Vec<i64>> {
    let t = st
        .tensor(name)
        .map_err(|_| Error::input(path, format!("missing tensor '{name}'")))?;
    if t.dtype() != Dtype::I64 {
        return Err(Error::input(path, format!("tensor '{name}' is not I64")));
    }
    Ok(t.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect())
}

fn tensor_f32(path: &Path, st: &SafeTensors<'_>, name: &str, d: usize) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .map_err(|_| Error::input(path, format!("missing tensor '{name}'")))?;
    if t.shape().len() != 2 || t.shape()[1] != d {
        return Err(Error::input(
            path,
            format!(
                "tensor '{name}' has shape {:?}, expected [_, {d}]",
                t.shape()
            ),
        ));
    }
    tensor_to_f32(t.dtype(), t.data())
        .ok_or_else(|| Error::input(path, format!("tensor '{name}' has unsupported dtype")))
}

/// Per-token activations of one layer with their index columns.
#[derive(Debug, Clone)]
pub struct TokenActivations {
    /// `[t, d]` activations.
    pub matrix: DenseMatrix,
    /// Which cell/gene/position each row is.
    pub index: TokenIndex,
}

/// Read access to an extraction folder.
#[derive(Debug, Clone)]
pub struct ActivationStore {
    dir: PathBuf,
    /// The store's manifest.
    pub manifest: Manifest,
    /// Cell ids in input order.
    pub cell_ids: Vec<String>,
}

impl ActivationStore {
    /// Open a complete store. An interrupted extraction is an error that says to resume it.
    pub fn open(dir: &Path) -> Result<ActivationStore> {
        let manifest = Manifest::read(dir)?;
        if let Some(sh) = &manifest.shard {
            return Err(Error::input(
                dir,
                format!(
                    "is shard {} of {} of an extraction; merge the shards first with `scsae merge`",
                    sh.index, sh.count
                ),
            ));
        }
        if !manifest.complete {
            return Err(Error::input(
                dir,
                "extraction is incomplete; finish it with `scsae extract ... --resume`",
            ));
        }
        let ids_path = dir.join("cell_ids.json");
        let cell_ids: Vec<String> = read_json(&ids_path, "cell id list")?;
        if cell_ids.len() != manifest.n_cells {
            return Err(Error::input(
                &ids_path,
                format!("{} ids for {} cells", cell_ids.len(), manifest.n_cells),
            ));
        }
        check_part_sizes(dir, &manifest)?;
        Ok(ActivationStore {
            dir: dir.to_path_buf(),
            manifest,
            cell_ids,
        })
    }

    /// The folder this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Cell-level matrix `[n_cells, d]` in input order with cell ids as row ids: the mean-pooled
    /// vectors of `layer`, or the CLS cell embeddings when `layer == "cls"`.
    pub fn cell_matrix(&self, layer: &str) -> Result<DenseMatrix> {
        let name = if layer == "cls" {
            "cls".to_string()
        } else {
            self.manifest.check_layer(&self.dir, layer)?;
            Manifest::tensor_name(layer)
        };
        let d = self.manifest.d_model;
        let n = self.manifest.n_cells;
        let mut data = vec![0f32; n * d];
        let mut seen = vec![false; n];
        for p in &self.manifest.cell_parts {
            let path = self.dir.join(&p.file);
            let bytes = load_part(&path)?;
            let st = parse_part(&path, &bytes)?;
            let idx = tensor_i64(&path, &st, "cell_index")?;
            let vals = tensor_f32(&path, &st, &name, d)?;
            if vals.len() != idx.len() * d {
                return Err(Error::input(
                    &path,
                    "cell_index and activations disagree in length",
                ));
            }
            for (r, &ci) in idx.iter().enumerate() {
                let ci = usize::try_from(ci)
                    .ok()
                    .filter(|&c| c < n)
                    .ok_or_else(|| Error::input(&path, format!("cell index {ci} out of range")))?;
                data[ci * d..(ci + 1) * d].copy_from_slice(&vals[r * d..(r + 1) * d]);
                seen[ci] = true;
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(Error::input(
                &self.dir,
                format!("cell {missing} is missing from the part files"),
            ));
        }
        let mut m = DenseMatrix::new(n, d, data)?;
        m.row_ids = Some(self.cell_ids.clone());
        Ok(m)
    }

    /// Name of the part-file tensor holding `layer`: per token (`tokens`) or per cell, where `"cls"`
    /// names the CLS cell embeddings. Error when the layer was not extracted.
    pub fn layer_tensor(&self, layer: &str, tokens: bool) -> Result<String> {
        if layer == "cls" && !tokens {
            return Ok("cls".to_string());
        }
        self.manifest.check_layer(&self.dir, layer)?;
        Ok(Manifest::tensor_name(layer))
    }

    /// Number of token rows stored.
    pub fn n_tokens(&self) -> usize {
        self.manifest.token_parts.iter().map(|p| p.rows).sum()
    }

    /// Per-token activations of `layer`; with `max_tokens`, a seeded uniform subsample of that many
    /// rows (in store order), read part by part (only that layer's rows of each part) so that
    /// memory holds the kept rows and one part's layer, whatever the number of tokens.
    pub fn token_matrix(
        &self,
        layer: &str,
        max_tokens: Option<usize>,
        seed: u64,
    ) -> Result<TokenActivations> {
        if !self.manifest.tokens {
            return Err(Error::input(
                &self.dir,
                "no per-token activations in this extraction (re-run `scsae extract` with --tokens)",
            ));
        }
        self.manifest.check_layer(&self.dir, layer)?;
        let name = Manifest::tensor_name(layer);
        let total = self.n_tokens();
        // the kept rows, increasing: a seeded sample of `k` indices (Floyd's algorithm when k is
        // small next to the total), so memory grows with the rows kept, not with the store
        let keep: Option<Vec<usize>> = match max_tokens {
            Some(k) if k < total => {
                let mut rows =
                    rand::seq::index::sample(&mut ChaCha8Rng::seed_from_u64(seed), total, k)
                        .into_vec();
                rows.sort_unstable();
                Some(rows)
            }
            _ => None,
        };
        let d = self.manifest.d_model;
        let mut data = Vec::new();
        let mut index = TokenIndex::default();
        let mut offset = 0usize;
        let mut next = 0usize; // position in `keep`
        for p in &self.manifest.token_parts {
            let path = self.dir.join(&p.file);
            let mut r = PartReader::open(&path)?;
            let ci = r.read_i64("cell_index")?;
            let gi = r.read_i64("gene_id")?;
            let pos = r.read_i64("position")?;
            let rows = ci.len();
            let layer_rows = r.rows(&name, d)?;
            if gi.len() != rows || pos.len() != rows || layer_rows != rows {
                return Err(Error::input(
                    &path,
                    format!(
                        "token part disagrees with itself: {rows} cell indices, {} gene ids, {} positions, {layer_rows} rows of '{name}'",
                        gi.len(),
                        pos.len(),
                    ),
                ));
            }
            if offset + rows > total {
                return Err(Error::input(
                    &path,
                    format!(
                        "the parts hold more token rows than the manifest's {total} (this part ends at row {})",
                        offset + rows
                    ),
                ));
            }
            // the kept rows of this part (all of them without a sample)
            let local: Vec<usize> = match &keep {
                None => (0..rows).collect(),
                Some(k) => {
                    let start = next;
                    while next < k.len() && k[next] < offset + rows {
                        next += 1;
                    }
                    k[start..next].iter().map(|&g| g - offset).collect()
                }
            };
            if !local.is_empty() {
                let vals = r.read_rows(&name, d, 0, rows)?;
                for &i in &local {
                    data.extend_from_slice(&vals[i * d..(i + 1) * d]);
                    index.cell_index.push(ci[i]);
                    index.gene_id.push(gi[i]);
                    index.position.push(pos[i]);
                }
            }
            offset += rows;
        }
        let n = index.cell_index.len();
        Ok(TokenActivations {
            matrix: DenseMatrix::new(n, d, data)?,
            index,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(n: usize, tokens: bool) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            model: serde_json::json!({"name": "test"}),
            data: serde_json::json!({"file": "x"}),
            options: serde_json::json!({}),
            layers: vec!["0".into(), "1".into()],
            d_model: 2,
            n_cells: n,
            seed: 1,
            tokens,
            cell_parts: vec![],
            token_parts: vec![],
            complete: false,
            shard: None,
        }
    }

    #[test]
    fn chunks_out_of_order_read_back_in_input_order_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
        let (mut w, done) =
            StoreWriter::create(dir.path(), manifest(3, true), &ids, false).unwrap();
        assert!(done.is_empty());
        let a = DenseMatrix::new(2, 2, vec![2., 2., 0., 0.]).unwrap();
        let tok = DenseMatrix::new(1, 2, vec![9., 9.]).unwrap();
        let ti = TokenIndex {
            cell_index: vec![2],
            gene_id: vec![7],
            position: vec![0],
        };
        w.write_chunk(
            &[2, 0],
            &[("layer_0".into(), &a), ("layer_1".into(), &a)],
            Some((&ti, &[("layer_0".into(), &tok), ("layer_1".into(), &tok)])),
        )
        .unwrap();
        drop(w);
        // an interrupted store cannot be opened, and cannot be overwritten without --resume
        assert!(ActivationStore::open(dir.path()).is_err());
        assert!(StoreWriter::create(dir.path(), manifest(3, true), &ids, false).is_err());
        let (mut w, done) = StoreWriter::create(dir.path(), manifest(3, true), &ids, true).unwrap();
        assert_eq!(done.into_iter().collect::<Vec<_>>(), vec![0, 2]);
        let b = DenseMatrix::new(1, 2, vec![1., 1.]).unwrap();
        let empty = DenseMatrix::new(0, 2, vec![]).unwrap();
        w.write_chunk(
            &[1],
            &[("layer_0".into(), &b), ("layer_1".into(), &b)],
            Some((
                &TokenIndex::default(),
                &[("layer_0".into(), &empty), ("layer_1".into(), &empty)],
            )),
        )
        .unwrap();
        w.finish().unwrap();
        let s = ActivationStore::open(dir.path()).unwrap();
        let m = s.cell_matrix("0").unwrap();
        assert_eq!(m.data, vec![0., 0., 1., 1., 2., 2.]);
        assert_eq!(m.row_ids.unwrap(), ids);
        assert!(s
            .cell_matrix("5")
            .unwrap_err()
            .to_string()
            .contains("available: 0, 1"));
        // the same cells a block at a time, in part order, named by their ids
        let blocks = cell_blocks::CellBlocks::open(&s, "0").unwrap();
        assert_eq!(blocks.row_ids(), ["c2", "c0", "c1"]);
        let mut seen = Vec::new();
        crate::analysis::RowBlocks::visit_rows(&blocks, &mut |b, _| {
            seen.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![2., 2., 0., 0., 1., 1.]);
        assert!(cell_blocks::CellBlocks::open(&s, "5").is_err());
        let t = s.token_matrix("1", None, 0).unwrap();
        assert_eq!(t.index.gene_id, vec![7]);
        assert_eq!(t.matrix.data, vec![9., 9.]);

        // A manifest whose token row count disagrees with its parts (it used to panic on the
        // subsampling mask): a one-line error naming the part.
        let mpath = dir.path().join("manifest.json");
        let mut man: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&mpath).unwrap()).unwrap();
        for p in man["token_parts"].as_array_mut().unwrap() {
            p["rows"] = serde_json::json!(0);
        }
        std::fs::write(&mpath, serde_json::to_string(&man).unwrap()).unwrap();
        let s = ActivationStore::open(dir.path()).unwrap();
        let e = s.token_matrix("1", Some(0), 0).unwrap_err().to_string();
        assert!(e.contains("more token rows than the manifest"), "{e}");
    }

    #[test]
    fn token_subsample_is_seeded_in_store_order_and_reads_the_right_rows() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
        let (mut w, _) = StoreWriter::create(dir.path(), manifest(3, true), &ids, false).unwrap();
        // token t of the store holds (t, -t) in both layers; parts of 10, 0 and 15 tokens
        let mut t0 = 0usize;
        for (cell, n) in [(0i64, 10usize), (1, 0), (2, 15)] {
            let tok = DenseMatrix::new(
                n,
                2,
                (t0..t0 + n).flat_map(|t| [t as f32, -(t as f32)]).collect(),
            )
            .unwrap();
            let ti = TokenIndex {
                cell_index: vec![cell; n],
                gene_id: (0..n as i64).collect(),
                position: (0..n as i64).collect(),
            };
            let c = DenseMatrix::new(1, 2, vec![0.0, 0.0]).unwrap();
            w.write_chunk(
                &[cell],
                &[("layer_0".into(), &c), ("layer_1".into(), &c)],
                Some((&ti, &[("layer_0".into(), &tok), ("layer_1".into(), &tok)])),
            )
            .unwrap();
            t0 += n;
        }
        w.finish().unwrap();
        let s = ActivationStore::open(dir.path()).unwrap();
        let all = s.token_matrix("1", None, 0).unwrap();
        assert_eq!(all.matrix.n_rows, 25);
        let rows = |seed| {
            let t = s.token_matrix("1", Some(7), seed).unwrap();
            let r: Vec<f32> = t.matrix.data.chunks(2).map(|v| v[0]).collect();
            for (k, v) in t.matrix.data.chunks(2).enumerate() {
                assert_eq!(v[1], -v[0]);
                // the index columns travel with the row
                let tok = v[0] as i64;
                assert_eq!(t.index.cell_index[k], if tok < 10 { 0 } else { 2 });
                assert_eq!(t.index.gene_id[k], if tok < 10 { tok } else { tok - 10 });
            }
            r
        };
        let a = rows(5);
        assert_eq!(a.len(), 7);
        assert!(
            a.windows(2).all(|w| w[0] < w[1]),
            "store order, no repeats: {a:?}"
        );
        assert_eq!(a, rows(5));
        assert_ne!(a, rows(6));
        assert_eq!(s.token_matrix("1", Some(25), 1).unwrap().matrix, all.matrix);
    }
}
