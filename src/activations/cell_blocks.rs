//! The cell-level vectors of one layer of an extraction folder, read a block of rows at a time
//! ([`RowBlocks`]): what `scsae analyze` encodes with an SAE and fits the PCA baseline on, so that
//! memory holds one block (at most [`READ_BLOCK`] rows) and never the `cells x d` matrix.
//!
//! Rows come in part order (the input order for any extraction, sharded and merged or not), each
//! part's rows in its own order; [`CellBlocks::row_ids`] names them in that order, from the parts'
//! `cell_index` and the folder's `cell_ids.json`.

use crate::activations::part_reader::PartReader;
use crate::activations::source::check_unique;
use crate::activations::ActivationStore;
use crate::analysis::RowBlocks;
use crate::error::{Error, Result};
use crate::sae::config::InputLevel;
use crate::sae::stream::{StoreRows, READ_BLOCK};

/// One layer's cell vectors of an extraction folder, as row blocks.
pub struct CellBlocks {
    rows: StoreRows,
    ids: Vec<String>,
}

impl CellBlocks {
    /// The cell vectors of `layer` (`cls`, `embeddings` or a layer number) of `store`. Reads only
    /// the parts' headers and `cell_index`; a part whose rows disagree with the manifest, a cell
    /// index out of range or seen twice, a cell missing from every part, or a cell id given twice is
    /// an error naming the file. Non-finite values are found (and named) as the rows are read.
    pub fn open(store: &ActivationStore, layer: &str) -> Result<CellBlocks> {
        let tensor = store.layer_tensor(layer, false)?;
        let m = &store.manifest;
        let (n, d) = (m.n_cells, m.d_model);
        if n == 0 {
            return Err(Error::input(store.dir(), "the extraction holds no cells"));
        }
        let mut ids = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        for p in &m.cell_parts {
            let path = store.dir().join(&p.file);
            let mut r = PartReader::open(&path)?;
            let rows = r.rows(&tensor, d)?;
            let idx = r.read_i64("cell_index")?;
            if rows != p.rows || idx.len() != p.rows {
                return Err(Error::input(
                    &path,
                    format!(
                        "'{tensor}' has {rows} rows and cell_index {}; the manifest says {}",
                        idx.len(),
                        p.rows
                    ),
                ));
            }
            for ci in idx {
                let c = usize::try_from(ci)
                    .ok()
                    .filter(|&c| c < n)
                    .ok_or_else(|| Error::input(&path, format!("cell index {ci} out of range")))?;
                if std::mem::replace(&mut seen[c], true) {
                    return Err(Error::input(
                        &path,
                        format!("cell index {c} appears in two rows"),
                    ));
                }
                ids.push(store.cell_ids[c].clone());
            }
        }
        if let Some(missing) = seen.iter().position(|s| !s) {
            return Err(Error::input(
                store.dir(),
                format!("cell {missing} is missing from the part files"),
            ));
        }
        check_unique(&ids, store.dir())?;
        let rows = StoreRows::new(store, InputLevel::Cells, &[layer.to_string()])?;
        Ok(CellBlocks { rows, ids })
    }

    /// Cell id of each row, in the order the rows are visited.
    pub fn row_ids(&self) -> &[String] {
        &self.ids
    }
}

impl RowBlocks for CellBlocks {
    fn n_rows(&self) -> usize {
        self.ids.len()
    }

    fn n_cols(&self) -> usize {
        self.rows.d()
    }

    fn visit_rows(&self, f: &mut dyn FnMut(&[f32], usize) -> Result<()>) -> Result<()> {
        self.rows
            .visit(&self.rows.in_order(), READ_BLOCK, |k, blocks| {
                f(&blocks[0], k)
            })
    }
}
