//! The analysed cells' expression, prepared for the analysis (log1p-normalised or as stored) and
//! visited a block of cells at a time: held in memory, or read from the `.h5ad` file a window at a
//! time ([`ExpressionRows::by_rows`]), so that an atlas's matrix is never held whole.
//!
//! Both forms visit the same blocks ([`BLOCK_ROWS`] analysed cells, the last one shorter) with the
//! same values, so everything computed from the visits (gene statistics, the attribution by sums,
//! the expression PCA) has the same bits whichever form holds the matrix.

use crate::analysis::correlation::{
    is_count, normalize_log1p, normalize_log1p_row, prepare_expression, transform_note,
    ExpressionTransform, NORMALISE_TOTAL,
};
use crate::analysis::pca::BLOCK_ROWS;
use crate::data::{check_non_negative, CsrMatrix, Dataset, H5adRows};
use crate::error::{Error, Result};

/// Rows of the file read at once at most when the analysed cells are a sparse subset of it.
const WINDOW_ROWS: usize = 16_384;

/// Where the analysed cells' expression is.
#[derive(Debug)]
enum Source {
    /// Prepared and held in memory.
    InMemory(CsrMatrix),
    /// Read from the file a window at a time and prepared block by block.
    ByRows {
        /// The file's matrix.
        reader: Box<H5adRows>,
        /// The file row of every analysed cell (increasing).
        rows: Vec<usize>,
        /// Normalise to 1e4 per cell and log1p-transform each block.
        normalise: bool,
    },
}

/// The analysed cells' expression (cells x genes, in the analysed order), prepared, with its
/// [`GeneStats`] (taken when it is made, so that no later use reads the matrix again for them).
#[derive(Debug)]
pub struct ExpressionRows {
    source: Source,
    stats: GeneStats,
}

impl ExpressionRows {
    /// The cells `rows` (increasing file rows) of `reader`, prepared by `how`: one pass over the
    /// whole file checks every value ([`Dataset::check_expression`]'s error, naming the cell and
    /// gene) and, for `auto`, whether the analysed cells hold counts. `ds` is the data set read
    /// without its matrix. Returns the expression and the sentence saying how it was prepared.
    pub fn by_rows(
        reader: H5adRows,
        rows: Vec<usize>,
        ds: &Dataset,
        how: ExpressionTransform,
    ) -> Result<(ExpressionRows, String)> {
        if rows.windows(2).any(|w| w[1] <= w[0]) {
            return Err(Error::invalid(
                "the analysed cells must follow the data file's order to be read by rows",
            ));
        }
        // one pass: check every value, and sum the gene statistics of the analysed cells both as
        // stored and normalised (which of the two is kept depends on all the values)
        let ng = reader.n_cols();
        let (mut stored, mut normalised) = (GeneStatsSums::new(ng), GeneStatsSums::new(ng));
        let mut counts = true;
        let mut next = 0; // first analysed cell of the window
        let mut start = 0;
        let mut row = Vec::new();
        while start < reader.n_rows() {
            let n = WINDOW_ROWS.min(reader.n_rows() - start);
            let w = reader.read(start, n)?;
            check_non_negative(&w, start, ds, reader.path())?;
            while next < rows.len() && rows[next] < start + n {
                let (idx, val) = w.row(rows[next] - start);
                counts = counts && val.iter().all(|&v| is_count(v));
                stored.add_row(idx, val);
                row.clear();
                row.extend_from_slice(val);
                normalize_log1p_row(&mut row, NORMALISE_TOTAL);
                normalised.add_row(idx, &row);
                next += 1;
            }
            start += n;
        }
        let (normalise, note) = transform_note(how, counts);
        let stats = if normalise { normalised } else { stored }.finish(rows.len());
        let source = Source::ByRows {
            reader: Box::new(reader),
            rows,
            normalise,
        };
        Ok((ExpressionRows { source, stats }, note))
    }

    /// `m` (the analysed cells, in order) prepared by `how`, held in memory.
    pub fn in_memory(mut m: CsrMatrix, how: ExpressionTransform) -> (ExpressionRows, String) {
        let note = prepare_expression(&mut m, how);
        (ExpressionRows::from_matrix(m), note)
    }

    /// `m` (the analysed cells, in order) held in memory as it is.
    pub fn from_matrix(m: CsrMatrix) -> ExpressionRows {
        ExpressionRows {
            stats: GeneStats::of_matrix(&m),
            source: Source::InMemory(m),
        }
    }

    /// The statistics of every gene over the analysed cells.
    pub fn stats(&self) -> &GeneStats {
        &self.stats
    }

    /// Number of analysed cells.
    pub fn n_rows(&self) -> usize {
        match &self.source {
            Source::InMemory(m) => m.n_rows,
            Source::ByRows { rows, .. } => rows.len(),
        }
    }

    /// Number of genes.
    pub fn n_cols(&self) -> usize {
        match &self.source {
            Source::InMemory(m) => m.n_cols,
            Source::ByRows { reader, .. } => reader.n_cols(),
        }
    }

    /// The matrix when it is held in memory.
    pub fn matrix(&self) -> Option<&CsrMatrix> {
        match &self.source {
            Source::InMemory(m) => Some(m),
            Source::ByRows { .. } => None,
        }
    }

    /// Call `f(first, block)` on consecutive blocks of [`BLOCK_ROWS`] analysed cells (the last one
    /// shorter), `first` being the block's first analysed cell, covering every cell once, in order.
    pub fn visit(&self, f: &mut dyn FnMut(usize, &CsrMatrix) -> Result<()>) -> Result<()> {
        let n = self.n_rows();
        let mut start = 0;
        while start < n {
            let end = (start + BLOCK_ROWS).min(n);
            let block = match &self.source {
                Source::InMemory(m) => m.slice_rows(start, end),
                Source::ByRows {
                    reader,
                    rows,
                    normalise,
                } => {
                    let mut b = read_selected(reader, &rows[start..end])?;
                    if *normalise {
                        normalize_log1p(&mut b, NORMALISE_TOTAL);
                    }
                    b
                }
            };
            f(start, &block)?;
            start = end;
        }
        Ok(())
    }
}

/// The file rows `want` (increasing) of `reader`, read in windows of at most [`WINDOW_ROWS`] rows.
fn read_selected(reader: &H5adRows, want: &[usize]) -> Result<CsrMatrix> {
    let mut out = CsrMatrix::zeros(0, reader.n_cols());
    let mut k = 0;
    while k < want.len() {
        let a = want[k];
        let mut e = k;
        while e < want.len() && want[e] < a + WINDOW_ROWS {
            e += 1;
        }
        let w = reader.read(a, want[e - 1] + 1 - a)?;
        for &r in &want[k..e] {
            let (idx, val) = w.row(r - a);
            out.indices.extend_from_slice(idx);
            out.data.extend_from_slice(val);
            out.indptr.push(out.data.len());
        }
        out.n_rows += e - k;
        k = e;
    }
    Ok(out)
}

/// Per gene, over the analysed cells: sum and count of the stored values, and whether the gene
/// takes two different values (a stored value next to an implicit zero, or two different stored
/// ones); sums run over the cells in order.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneStats {
    /// Sum of the values.
    pub sum: Vec<f64>,
    /// Stored values.
    pub nnz: Vec<usize>,
    /// The gene varies across the cells.
    pub varies: Vec<bool>,
}

impl GeneStats {
    /// The statistics of every gene of `m`.
    pub fn of_matrix(m: &CsrMatrix) -> GeneStats {
        let mut acc = GeneStatsSums::new(m.n_cols);
        for r in 0..m.n_rows {
            let (idx, val) = m.row(r);
            acc.add_row(idx, val);
        }
        acc.finish(m.n_rows)
    }
}

/// [`GeneStats`] being summed, a block of cells at a time.
struct GeneStatsSums {
    stats: GeneStats,
    first: Vec<Option<f32>>,
}

impl GeneStatsSums {
    fn new(ng: usize) -> Self {
        GeneStatsSums {
            stats: GeneStats {
                sum: vec![0.0; ng],
                nnz: vec![0; ng],
                varies: vec![false; ng],
            },
            first: vec![None; ng],
        }
    }

    fn add_row(&mut self, idx: &[u32], val: &[f32]) {
        let s = &mut self.stats;
        for (&g, &v) in idx.iter().zip(val) {
            let g = g as usize;
            s.sum[g] += v as f64;
            s.nnz[g] += 1;
            match self.first[g] {
                None => self.first[g] = Some(v),
                Some(f) if f != v => s.varies[g] = true,
                _ => {}
            }
        }
    }

    fn finish(mut self, n: usize) -> GeneStats {
        let s = &mut self.stats;
        for (g, f) in self.first.iter().enumerate() {
            // stored zeros only, or implicit zeros next to non-zero values
            if s.nnz[g] < n && f.is_some_and(|f| f != 0.0) {
                s.varies[g] = true;
            }
        }
        self.stats
    }
}
