//! The cells of an intervention run: tokenised as `scsae extract` tokenises them (same seed, same
//! bins, same subsampling), in fixed batches of consecutive cells.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::runtime::Runtime;
use crate::scgpt::extract::{cell_row, data_tokenizer};
use crate::scgpt::model::{first_position, to_f32_vec, Batch};
use crate::scgpt::{Scgpt, TokenizedCell, Tokenizer};

/// Tokenises a data set's cells for one model.
pub struct CellSource<'a> {
    /// The model.
    pub scgpt: &'a Scgpt,
    /// The cells.
    pub data: &'a Dataset,
    /// Its tokenizer (the extraction's rules and seed).
    pub tokenizer: Tokenizer,
}

impl<'a> CellSource<'a> {
    /// Match the data's genes to the model's vocabulary (an error naming the data file when none
    /// matches); `max_length` as `scsae extract --max-length`.
    pub fn new(
        scgpt: &'a Scgpt,
        data: &'a Dataset,
        max_length: usize,
        rt: &Runtime,
    ) -> Result<Self> {
        if max_length < 2 {
            return Err(Error::invalid(
                "--max-length must be at least 2 (<cls> and one gene)",
            ));
        }
        Ok(CellSource {
            scgpt,
            data,
            tokenizer: data_tokenizer(scgpt, data, max_length, rt.seed)?,
        })
    }

    /// Consecutive row ranges of at most `batch_size` cells.
    pub fn batches(&self, batch_size: usize) -> Result<Vec<std::ops::Range<usize>>> {
        if batch_size == 0 {
            return Err(Error::invalid("--batch-size must be at least 1"));
        }
        let n = self.data.n_cells();
        Ok((0..n.div_ceil(batch_size))
            .map(|b| b * batch_size..((b + 1) * batch_size).min(n))
            .collect())
    }

    /// The tokenised cells of `rows`.
    pub fn tokenize(&self, rows: std::ops::Range<usize>) -> Vec<TokenizedCell> {
        rows.map(|i| {
            let (idx, val) = cell_row(self.data, i);
            self.tokenizer.tokenize(&self.data.cell_ids[i], idx, val)
        })
        .collect()
    }

    /// A padded batch of `cells` on the runtime's device.
    pub fn batch(&self, cells: &[TokenizedCell], rt: &Runtime) -> Result<Batch> {
        let refs: Vec<&TokenizedCell> = cells.iter().collect();
        Batch::new(
            &refs,
            self.scgpt.pad_id(),
            self.scgpt.config.pad_value,
            &rt.device,
            rt.dtype,
        )
    }
}

/// The raw (not normalised) `<cls>` outputs `[b, d]` of a last-block output, row-major `f32`.
pub fn cls_rows(last: &candle_core::Tensor) -> Result<Vec<f32>> {
    to_f32_vec(&first_position(last)?)
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}
