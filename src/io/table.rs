//! Tables in and out through polars: CSV/TSV/Parquet readers, and writers that put every result table
//! side by side as `.csv` and `.parquet`, atomically.

use std::path::Path;

use polars::prelude::*;

use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::io::atomic::write_atomic;

/// Separator of list-valued cells in CSV: `GENE1;GENE2;GENE3` (no spaces); an empty cell is an
/// empty list. In Parquet the same columns are lists (`list<string>` / `list<double>`). Items never
/// contain it: writing one that does is an error.
pub const LIST_SEP: char = ';';

/// Every list-of-text column the crate writes (Parquet `list<string>`, CSV joined with [`LIST_SEP`]).
/// Writing a list column not named here is an error, so that readers (CSV included) know them all.
pub const STR_LIST_COLUMNS: [&str; 6] = [
    "top_positive_genes",
    "top_negative_genes",
    "enriched_sets",
    "enriched_sets_sign",
    "overlap_genes",
    "top_features",
];

/// Every list-of-numbers column the crate writes (Parquet `list<double>`, CSV joined with
/// [`LIST_SEP`], each number in Rust's shortest round-trip form: `0.912`, `1.5e-12`).
pub const F64_LIST_COLUMNS: [&str; 4] = [
    "top_positive_r",
    "top_negative_r",
    "enriched_sets_q",
    "top_features_auroc",
];

/// Columns a CSV reader always takes as text: ids (`007` and `1e5` are barcodes, not numbers) and
/// list columns (`7` is a one-item list, not an integer).
fn csv_text_columns() -> impl Iterator<Item = &'static str> {
    ["cell_id", "row_id"]
        .into_iter()
        .chain(STR_LIST_COLUMNS)
        .chain(F64_LIST_COLUMNS)
}

/// Read a CSV (`,`), TSV (`\t`) or Parquet file into a data frame, by extension. In CSV, id columns
/// (`cell_id`, `row_id`) and the list columns ([`STR_LIST_COLUMNS`], [`F64_LIST_COLUMNS`]) are read
/// as text whatever they look like.
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
            let text = Schema::from_iter(
                csv_text_columns().map(|c| Field::new(c.into(), DataType::String)),
            );
            CsvReadOptions::default()
                .with_has_header(true)
                .with_schema_overwrite(Some(Arc::new(text)))
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

/// The values of a column as strings (numbers are formatted), `None` where missing; a list column
/// gives its CSV form (items joined with [`LIST_SEP`], `None` for an empty list), so that a reader
/// sees the same text from the Parquet and the CSV file.
pub fn nullable_string_column(c: &Column) -> std::result::Result<Vec<Option<String>>, String> {
    if let DataType::List(inner) = c.dtype() {
        let sep = LIST_SEP.to_string();
        let rows: Vec<Vec<String>> = if inner.is_primitive_numeric() {
            f64_list_column(c)?
                .into_iter()
                .map(|v| v.iter().map(|x| format!("{x:?}")).collect())
                .collect()
        } else {
            str_list_column(c)?
        };
        return Ok(rows
            .into_iter()
            .map(|v| (!v.is_empty()).then(|| v.join(&sep)))
            .collect());
    }
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

/// The rows of a Parquet list column, each cast to `to` and read by `items` (a missing row: an
/// empty list); `None` when `c` is not a list column.
fn list_rows<T>(
    c: &Column,
    to: &DataType,
    items: impl Fn(&Series) -> PolarsResult<Vec<T>>,
) -> Option<std::result::Result<Vec<Vec<T>>, String>> {
    let DataType::List(_) = c.dtype() else {
        return None;
    };
    let err = |e: PolarsError| format!("column '{}': {e}", c.name());
    let rows = c.list().map_err(err).and_then(|ca| {
        ca.series_iter()
            .map(|row| match row {
                None => Ok(Vec::new()),
                Some(s) => s.cast(to).and_then(|s| items(&s)).map_err(err),
            })
            .collect()
    });
    Some(rows)
}

/// The items of a list column, one list per row: a Parquet list column, or its CSV form (text joined
/// with [`LIST_SEP`]); a missing value or an empty cell is an empty list.
pub fn str_list_column(c: &Column) -> std::result::Result<Vec<Vec<String>>, String> {
    let parquet = list_rows(c, &DataType::String, |s| {
        Ok(s.str()?
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect())
    });
    if let Some(rows) = parquet {
        return rows;
    }
    Ok(nullable_string_column(c)?
        .into_iter()
        .map(|v| match v.as_deref() {
            None | Some("") => Vec::new(),
            Some(s) => s.split(LIST_SEP).map(str::to_string).collect(),
        })
        .collect())
}

/// The numbers of a list column, one list per row: a Parquet list column, or its CSV form (numbers
/// joined with [`LIST_SEP`]); a missing value or an empty cell is an empty list.
pub fn f64_list_column(c: &Column) -> std::result::Result<Vec<Vec<f64>>, String> {
    let parquet = list_rows(c, &DataType::Float64, |s| {
        Ok(s.f64()?.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
    });
    if let Some(rows) = parquet {
        return rows;
    }
    str_list_column(c)?
        .into_iter()
        .enumerate()
        .map(|(i, items)| {
            items
                .iter()
                .map(|t| {
                    t.trim().parse::<f64>().map_err(|_| {
                        format!("column '{}', row {i}: '{t}' is not a number", c.name())
                    })
                })
                .collect()
        })
        .collect()
}

/// A count column with missing values (Parquet int64; CSV integers, empty where missing; a float
/// such as `12.0` from older tables is read as 12).
pub fn opt_count_column(c: &Column) -> std::result::Result<Vec<Option<u64>>, String> {
    nullable_string_column(c)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v.as_deref() {
            None | Some("") => Ok(None),
            Some(s) => s
                .parse::<u64>()
                .ok()
                .or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|x| x.fract() == 0.0 && *x >= 0.0 && *x < 2f64.powi(63))
                        .map(|x| x as u64)
                })
                .map(Some)
                .ok_or_else(|| format!("column '{}', row {i}: '{s}' is not a count", c.name())),
        })
        .collect()
}

/// The CSV form of a list column: its items joined with [`LIST_SEP`] (numbers in their shortest
/// round-trip form), an empty list as an empty cell; an item containing the separator is an error.
fn joined_list_column(c: &Column) -> std::result::Result<Column, String> {
    let DataType::List(inner) = c.dtype() else {
        return Ok(c.clone());
    };
    let name = c.name().as_str();
    let numeric = inner.is_primitive_numeric();
    if !(numeric && F64_LIST_COLUMNS.contains(&name)
        || inner.is_string() && STR_LIST_COLUMNS.contains(&name))
    {
        return Err(format!(
            "list column '{name}' ({}) is not one of the documented list columns",
            c.dtype()
        ));
    }
    if !numeric {
        for (i, items) in str_list_column(c)?.iter().enumerate() {
            if let Some(bad) = items.iter().find(|t| t.contains(LIST_SEP)) {
                return Err(format!(
                    "column '{name}', row {i}: item '{bad}' contains '{LIST_SEP}', the separator of \
                     list cells in CSV"
                ));
            }
            if items.len() == 1 && items[0].is_empty() {
                return Err(format!(
                    "column '{name}', row {i}: a list of one empty item cannot be told from an \
                     empty list in CSV"
                ));
            }
        }
    }
    Ok(Column::new(c.name().clone(), nullable_string_column(c)?))
}

/// Write `df` as `<dir>/<stem>.csv` and `<dir>/<stem>.parquet`, each atomically. List columns (only
/// those of [`STR_LIST_COLUMNS`] and [`F64_LIST_COLUMNS`]) are lists in Parquet and joined with
/// [`LIST_SEP`] in CSV; nothing is written when an item contains the separator.
pub fn write_table(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<()> {
    let csv = dir.join(format!("{stem}.csv"));
    let mut csv_df = if df
        .columns()
        .iter()
        .any(|c| matches!(c.dtype(), DataType::List(_)))
    {
        let cols = df
            .columns()
            .iter()
            .map(joined_list_column)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|m| Error::invalid(format!("table {stem}: {m}")))?;
        Some(
            DataFrame::new(df.height(), cols)
                .map_err(|e| Error::invalid(format!("table {stem}: {e}")))?,
        )
    } else {
        None
    };
    write_atomic(&csv, |w| {
        CsvWriter::new(w)
            .include_header(true)
            .finish(csv_df.as_mut().unwrap_or(df))
            .map_err(|e| Error::input(&csv, format!("cannot write CSV: {e}")))
    })?;
    let pq = dir.join(format!("{stem}.parquet"));
    // The Arrow schema stored in the file (what pyarrow and pandas go by) with plain large strings
    // rather than polars' default string views: pandas cannot convert a list of string views, and
    // readers older than pyarrow 16 know no string views at all. The data pages are the same.
    let arrow_schema = polars_parquet::arrow::write::schema_to_metadata_key(
        &df.schema().to_arrow(CompatLevel::oldest()),
    );
    write_atomic(&pq, |w| {
        ParquetWriter::new(w)
            .with_key_value_metadata(Some(KeyValueMetadata::Static(vec![arrow_schema])))
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
    /// Add a count column with missing values (nullable int64: pandas reads it as `Int64`).
    pub fn opt_count(mut self, name: &str, v: Vec<Option<u64>>) -> Self {
        let v: Vec<Option<i64>> = v
            .into_iter()
            .map(|x| x.map(|x| i64::try_from(x).unwrap_or(i64::MAX)))
            .collect();
        self.cols.push(Column::new(name.into(), v));
        self
    }
    /// Add a list-of-text column (Parquet `list<string>`, CSV items joined with [`LIST_SEP`]); its
    /// name must be one of [`STR_LIST_COLUMNS`] and no item may contain the separator (checked when
    /// writing).
    pub fn str_list(mut self, name: &str, v: Vec<Vec<String>>) -> Self {
        let n: usize = v.iter().map(Vec::len).sum();
        let mut b = ListStringChunkedBuilder::new(name.into(), v.len(), n);
        for items in &v {
            b.append_values_iter(items.iter().map(String::as_str));
        }
        self.cols.push(b.finish().into_column());
        self
    }
    /// Add a list-of-numbers column (Parquet `list<double>`, CSV items joined with [`LIST_SEP`]); its
    /// name must be one of [`F64_LIST_COLUMNS`].
    pub fn f64_list(mut self, name: &str, v: Vec<Vec<f64>>) -> Self {
        let n: usize = v.iter().map(Vec::len).sum();
        let mut b = ListPrimitiveChunkedBuilder::<Float64Type>::new(
            name.into(),
            v.len(),
            n,
            DataType::Float64,
        );
        for items in &v {
            b.append_slice(items);
        }
        self.cols.push(b.finish().into_column());
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

    #[test]
    fn list_and_nullable_count_columns_in_parquet_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let genes = vec![
            vec!["CD79A".to_string(), "MS4A1".to_string()],
            vec![],
            vec!["007".to_string()],
        ];
        let r = vec![vec![0.912, -1.5e-12], vec![], vec![1.0]];
        Table::new(3)
            .str("cell_id", vec!["1".into(), "2".into(), "3".into()])
            .str_list("top_positive_genes", genes.clone())
            .f64_list("top_positive_r", r.clone())
            .opt_count("n_correlated_genes", vec![Some(12), None, Some(0)])
            .write(dir.path(), "t")
            .unwrap();
        let pq = read_dataframe(&dir.path().join("t.parquet")).unwrap();
        let col = |df: &DataFrame, n: &str| df.column(n).unwrap().clone();
        assert_eq!(
            col(&pq, "top_positive_genes").dtype(),
            &DataType::List(Box::new(DataType::String))
        );
        assert_eq!(
            col(&pq, "top_positive_r").dtype(),
            &DataType::List(Box::new(DataType::Float64))
        );
        assert_eq!(col(&pq, "n_correlated_genes").dtype(), &DataType::Int64);
        let counts: Vec<Option<i64>> = col(&pq, "n_correlated_genes")
            .i64()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(counts, vec![Some(12), None, Some(0)]);
        // the CSV form: one separator, no spaces, empty cell = empty list / missing count
        let text = std::fs::read_to_string(dir.path().join("t.csv")).unwrap();
        assert_eq!(
            text,
            "cell_id,top_positive_genes,top_positive_r,n_correlated_genes\n\
             1,CD79A;MS4A1,0.912;-1.5e-12,12\n2,,,\n3,007,1.0,0\n"
        );
        let csv = read_dataframe(&dir.path().join("t.csv")).unwrap();
        // ids and one-item lists stay text in CSV ("007" is a gene, not 7)
        assert!(col(&csv, "cell_id").dtype().is_string());
        for df in [&pq, &csv] {
            assert_eq!(
                str_list_column(&col(df, "top_positive_genes")).unwrap(),
                genes
            );
            assert_eq!(f64_list_column(&col(df, "top_positive_r")).unwrap(), r);
            assert_eq!(
                opt_count_column(&col(df, "n_correlated_genes")).unwrap(),
                vec![Some(12), None, Some(0)]
            );
            // a reader taking the column as text sees the CSV form from either file
            assert_eq!(
                nullable_string_column(&col(df, "top_positive_r")).unwrap(),
                vec![Some("0.912;-1.5e-12".into()), None, Some("1.0".into())]
            );
            assert_eq!(
                nullable_string_column(&col(df, "top_positive_genes")).unwrap(),
                vec![Some("CD79A;MS4A1".into()), None, Some("007".into())]
            );
        }
        // an empty table keeps its list type
        Table::new(0)
            .str_list("overlap_genes", vec![])
            .write(dir.path(), "e")
            .unwrap();
        let e = read_dataframe(&dir.path().join("e.parquet")).unwrap();
        assert_eq!(
            col(&e, "overlap_genes").dtype(),
            &DataType::List(Box::new(DataType::String))
        );
    }

    #[test]
    fn list_item_with_the_separator_is_refused_and_nothing_written() {
        let dir = tempfile::tempdir().unwrap();
        let err = Table::new(1)
            .str_list("overlap_genes", vec![vec!["A".into(), "B;C".into()]])
            .write(dir.path(), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'B;C'") && err.contains("separator"), "{err}");
        assert!(!dir.path().join("t.csv").exists() && !dir.path().join("t.parquet").exists());
        // a list column the readers do not know is refused too
        let err = Table::new(1)
            .str_list("genes", vec![vec!["A".into()]])
            .write(dir.path(), "u")
            .unwrap_err()
            .to_string();
        assert!(err.contains("'genes'"), "{err}");
        // and so is a list of one empty item (it would read back as an empty list)
        assert!(Table::new(1)
            .str_list("overlap_genes", vec![vec![String::new()]])
            .write(dir.path(), "v")
            .is_err());
    }
}
