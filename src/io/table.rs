//! Tables in and out through polars: CSV/TSV/Parquet readers, and writers that put every result table
//! side by side as `.csv` and `.parquet`, atomically.

use std::path::Path;

use polars::prelude::*;

use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::io::atomic::write_atomic;

/// Read a CSV (`,`), TSV (`\t`) or Parquet file into a data frame, by extension.
pub fn read_dataframe(path: &Path) -> Result<DataFrame> {
    if !path.exists() {
        return Err(Error::input(path, "file not found"));
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let df = match ext.as_str() {
        "parquet" | "pq" => {
            return crate::io::guard::catch_panics(path, "Parquet", || read_parquet(path));
        }
        _ => {
            let sep = if ext == "tsv" || ext == "tab" {
                b'\t'
            } else {
                b','
            };
            CsvReadOptions::default()
                .with_has_header(true)
                .with_infer_schema_length(Some(10_000))
                .map_parse_options(|p| p.with_separator(sep))
                .try_into_reader_with_file_path(Some(path.to_path_buf()))
                .and_then(|r| r.finish())
        }
    };
    df.map_err(|e| Error::input(path, format!("cannot read table: {e}")))
}

/// A Parquet file read once into memory, checked, then decoded: its row counts must be plausible for
/// its size (a corrupt footer can claim 2^60 rows, which would make the reader allocate before it
/// fails) and every column chunk's page headers sound ([`crate::io::parquet_check`]).
fn read_parquet(path: &Path) -> Result<DataFrame> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let len = bytes.len() as u64;
    let mut reader = ParquetReader::new(std::io::Cursor::new(bytes.as_slice()));
    let bad = |e: PolarsError| Error::input(path, format!("cannot read table: {e}"));
    let meta = reader.get_metadata().map_err(bad)?.clone();
    // every row of every column takes at least one bit of the file
    let bound = len.saturating_mul(8);
    let rows = u64::try_from(meta.num_rows).unwrap_or(u64::MAX);
    let implausible_chunk = meta.row_groups.iter().any(|g| {
        g.num_rows() as u64 > bound
            || g.parquet_columns().iter().any(|c| {
                u64::try_from(c.num_values()).map_or(true, |v| v > bound)
                    || c.compressed_size() < 0
                    || c.uncompressed_size() < 0
            })
    });
    if rows > bound || implausible_chunk {
        return Err(Error::input(
            path,
            format!("corrupt Parquet file: it claims {rows} rows in {len} bytes"),
        ));
    }
    for g in &meta.row_groups {
        for c in g.parquet_columns() {
            crate::io::parquet_check::check_chunk(&bytes, c.byte_range())
                .map_err(|m| Error::input(path, format!("corrupt Parquet file: {m}")))?;
        }
    }
    reader.finish().map_err(bad)
}

/// First-column names that mark row ids even when the ids are numbers.
pub const ID_COLUMN_NAMES: [&str; 9] = [
    "cell_id",
    "row_id",
    "cell",
    "cell_ids",
    "barcode",
    "barcodes",
    "obs_names",
    "index",
    "",
];

/// Read a numeric table as a matrix: a first column of text, or one named like an id column
/// ([`ID_COLUMN_NAMES`], or pandas' `Unnamed: 0`), becomes row ids; all other columns must be
/// numeric (integers or floats).
pub fn read_table_matrix(path: &Path, _tsv: bool) -> Result<DenseMatrix> {
    let df = read_dataframe(path)?;
    let cols = df.columns();
    if cols.is_empty() {
        return Err(Error::input(path, "table has no columns"));
    }
    if df.height() == 0 {
        return Err(Error::input(path, "table has no rows (only a header)"));
    }
    let first = cols[0].name().to_lowercase();
    let id_named = ID_COLUMN_NAMES.contains(&first.as_str()) || first.starts_with("unnamed");
    let (row_ids, numeric) = if cols[0].dtype().is_string() || id_named {
        let ids = string_column(&cols[0]).map_err(|m| Error::input(path, m))?;
        (Some(ids), &cols[1..])
    } else {
        (None, cols)
    };
    let n_rows = df.height();
    let n_cols = numeric.len();
    let mut data = vec![0f32; n_rows * n_cols];
    for (j, c) in numeric.iter().enumerate() {
        if !c.dtype().is_primitive_numeric() {
            return Err(Error::input(
                path,
                format!("column '{}' is not numeric ({})", c.name(), c.dtype()),
            ));
        }
        let f = c
            .cast(&DataType::Float64)
            .map_err(|e| Error::input(path, format!("column '{}': {e}", c.name())))?;
        let ca = f
            .f64()
            .map_err(|e| Error::input(path, format!("column '{}': {e}", c.name())))?;
        for (i, v) in ca.iter().enumerate() {
            let v = v.ok_or_else(|| {
                Error::input(
                    path,
                    format!("missing value in column '{}', row {i}", c.name()),
                )
            })?;
            data[i * n_cols + j] = v as f32;
        }
    }
    let mut m = DenseMatrix::new(n_rows, n_cols, data)?;
    m.row_ids = row_ids;
    m.col_names = Some(numeric.iter().map(|c| c.name().to_string()).collect());
    Ok(m)
}

/// The values of a column as strings (numbers are formatted), `None` where missing.
pub fn nullable_string_column(c: &Column) -> std::result::Result<Vec<Option<String>>, String> {
    let s = c
        .cast(&DataType::String)
        .map_err(|e| format!("column '{}': {e}", c.name()))?;
    let ca = s.str().map_err(|e| format!("column '{}': {e}", c.name()))?;
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}

/// The values of a column as strings (numbers are formatted); missing values are an error.
pub fn string_column(c: &Column) -> std::result::Result<Vec<String>, String> {
    nullable_string_column(c)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("missing value in column '{}', row {i}", c.name())))
        .collect()
}

/// Write `df` as `<dir>/<stem>.csv` and `<dir>/<stem>.parquet`, each atomically.
pub fn write_table(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<()> {
    let csv = dir.join(format!("{stem}.csv"));
    write_atomic(&csv, |w| {
        CsvWriter::new(w)
            .include_header(true)
            .finish(df)
            .map_err(|e| Error::input(&csv, format!("cannot write CSV: {e}")))
    })?;
    let pq = dir.join(format!("{stem}.parquet"));
    write_atomic(&pq, |w| {
        ParquetWriter::new(w)
            .finish(df)
            .map(|_| ())
            .map_err(|e| Error::input(&pq, format!("cannot write Parquet: {e}")))
    })
}

/// Column-by-column builder of a data frame.
#[derive(Default)]
pub struct Table {
    height: usize,
    cols: Vec<Column>,
}

impl Table {
    /// An empty table of `height` rows.
    pub fn new(height: usize) -> Self {
        Table {
            height,
            cols: Vec::new(),
        }
    }
    /// Add a text column.
    pub fn str(mut self, name: &str, v: Vec<String>) -> Self {
        self.cols.push(Column::new(name.into(), v));
        self
    }
    /// Add a text column with missing values.
    pub fn opt_str(mut self, name: &str, v: Vec<Option<String>>) -> Self {
        self.cols.push(Column::new(name.into(), v));
        self
    }
    /// Add a float column.
    pub fn f64(mut self, name: &str, v: Vec<f64>) -> Self {
        self.cols.push(Column::new(name.into(), v));
        self
    }
    /// Add a float column with missing values.
    pub fn opt_f64(mut self, name: &str, v: Vec<Option<f64>>) -> Self {
        self.cols.push(Column::new(name.into(), v));
        self
    }
    /// Add a count column, stored as signed 64-bit integers (pandas' default integer type, so that
    /// differences of counts never wrap around as unsigned values would).
    pub fn count(mut self, name: &str, v: Vec<u64>) -> Self {
        let v: Vec<i64> = v
            .into_iter()
            .map(|x| i64::try_from(x).unwrap_or(i64::MAX))
            .collect();
        self.cols.push(Column::new(name.into(), v));
        self
    }
    /// Add a boolean column.
    pub fn bool(mut self, name: &str, v: Vec<bool>) -> Self {
        self.cols.push(Column::new(name.into(), v));
        self
    }
    /// Write as `<dir>/<stem>.csv` and `.parquet` (atomically); columns must all have `height` rows.
    pub fn write(self, dir: &Path, stem: &str) -> Result<()> {
        let mut df = DataFrame::new(self.height, self.cols)
            .map_err(|e| Error::invalid(format!("building table {stem}: {e}")))?;
        write_table(&mut df, dir, stem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_ids_reads_as_matrix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        std::fs::write(&p, "cell,a,b\nc1,1,2.5\nc2,3,4\n").unwrap();
        let m = read_table_matrix(&p, false).unwrap();
        assert_eq!((m.n_rows, m.n_cols), (2, 2));
        assert_eq!(m.data, vec![1.0, 2.5, 3.0, 4.0]);
        assert_eq!(m.row_ids.unwrap(), vec!["c1", "c2"]);
        // numeric ids in an id-named column are ids, not data
        std::fs::write(&p, "cell_id,a\n101,1.5\n102,2.5\n").unwrap();
        let m = read_table_matrix(&p, false).unwrap();
        assert_eq!((m.n_rows, m.n_cols), (2, 1));
        assert_eq!(m.row_ids.unwrap(), vec!["101", "102"]);
        // the table `scsae encode` writes (`row_id`, then f0..) reads back with its ids, numeric too
        std::fs::write(&p, "row_id,f0,f1\n7,0.5,0\n9,0,2\n").unwrap();
        let m = read_table_matrix(&p, false).unwrap();
        assert_eq!((m.n_rows, m.n_cols), (2, 2));
        assert_eq!(m.row_ids.unwrap(), vec!["7", "9"]);
    }

    #[test]
    fn table_round_trip_csv_and_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let mut df = df!("x" => &[1.0f64, 2.0], "name" => &["a", "b"]).unwrap();
        write_table(&mut df, dir.path(), "t").unwrap();
        let a = read_dataframe(&dir.path().join("t.csv")).unwrap();
        let b = read_dataframe(&dir.path().join("t.parquet")).unwrap();
        assert_eq!(a.height(), 2);
        assert!(a.equals(&b));
    }
}
