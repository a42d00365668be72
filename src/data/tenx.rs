//! 10x Genomics Matrix Market folders: `matrix.mtx[.gz]`, `features.tsv[.gz]` (or `genes.tsv[.gz]`),
//! `barcodes.tsv[.gz]`. The matrix is genes x cells on disk and is returned cells x genes.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::data::{CsrMatrix, Dataset, LoadOptions, Obs};
use crate::error::{Error, IoContext, Result};

/// True when `path` is a Matrix Market file (`.mtx` or `.mtx.gz`).
pub fn is_mtx_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    name.ends_with(".mtx") || name.ends_with(".mtx.gz")
}

fn find(dir: &Path, stems: &[&str]) -> Option<PathBuf> {
    for stem in stems {
        for ext in ["", ".gz"] {
            let p = dir.join(format!("{stem}{ext}"));
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn open_text(path: &Path) -> Result<Box<dyn BufRead>> {
    let f = std::fs::File::open(path).at(path)?;
    let gz = path.extension().and_then(|e| e.to_str()) == Some("gz");
    let inner: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(f))
    } else {
        Box::new(f)
    };
    Ok(Box::new(BufReader::new(inner)))
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (i, line) in open_text(path)?.lines().enumerate() {
        let line = line.map_err(|e| Error::input(path, format!("line {}: {e}", i + 1)))?;
        if !line.trim().is_empty() {
            out.push(line);
        }
    }
    Ok(out)
}

/// Read a 10x folder (or the folder of the given `.mtx` file).
///
/// Gene symbols come from the second column of `features.tsv` (`opts.gene_key = "gene_ids"` picks the
/// first column, the Ensembl ids); cell ids are the barcodes.
pub fn read_10x(path: &Path, opts: &LoadOptions) -> Result<Dataset> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    let mtx = if path.is_dir() {
        find(&dir, &["matrix.mtx"])
            .ok_or_else(|| Error::input(&dir, "10x folder has no matrix.mtx or matrix.mtx.gz"))?
    } else {
        path.to_path_buf()
    };
    let features = find(&dir, &["features.tsv", "genes.tsv"]).ok_or_else(|| {
        Error::input(
            &dir,
            "10x folder has no features.tsv[.gz] or genes.tsv[.gz]",
        )
    })?;
    let barcodes = find(&dir, &["barcodes.tsv"])
        .ok_or_else(|| Error::input(&dir, "10x folder has no barcodes.tsv[.gz]"))?;

    let use_ids = matches!(
        opts.gene_key.as_deref(),
        Some("gene_ids") | Some("id") | Some("ids")
    );
    if let Some(k) = opts.gene_key.as_deref() {
        if !matches!(
            k,
            "gene_ids" | "id" | "ids" | "gene_symbols" | "symbol" | "symbols"
        ) {
            return Err(Error::input(
                &features,
                format!("--gene-key {k}: a 10x folder offers gene_ids or gene_symbols"),
            ));
        }
    }
    let genes: Vec<String> = read_lines(&features)?
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let mut f = l.split('\t');
            let id = f.next().unwrap_or("").to_string();
            let sym = f.next().map(str::to_string);
            match (use_ids, sym) {
                (false, Some(s)) if !s.is_empty() => Ok(s),
                (_, _) if !id.is_empty() => Ok(id),
                _ => Err(Error::input(
                    &features,
                    format!("line {} has no gene id", i + 1),
                )),
            }
        })
        .collect::<Result<_>>()?;
    let cells: Vec<String> = read_lines(&barcodes)?
        .into_iter()
        .map(|l| l.split('\t').next().unwrap_or("").to_string())
        .collect();

    let matrix = read_mtx(&mtx, genes.len(), cells.len(), &features, &barcodes)?;
    Ok(Dataset {
        matrix,
        cell_ids: cells,
        gene_symbols: genes,
        obs: Obs::default(),
        source: dir,
        labels_file: None,
    })
}

fn read_mtx(
    path: &Path,
    n_genes: usize,
    n_cells: usize,
    features: &Path,
    barcodes: &Path,
) -> Result<CsrMatrix> {
    let mut lines = open_text(path)?.lines();
    let header = lines
        .next()
        .ok_or_else(|| Error::input(path, "empty file"))?
        .map_err(|e| Error::input(path, format!("cannot read: {e}")))?;
    let h = header.to_ascii_lowercase();
    if !h.starts_with("%%matrixmarket matrix coordinate") {
        return Err(Error::input(
            path,
            "not a Matrix Market coordinate file (expected '%%MatrixMarket matrix coordinate ...')",
        ));
    }
    if h.contains("complex") || h.contains("symmetric") || h.contains("hermitian") {
        return Err(Error::input(
            path,
            "only real/integer general matrices are supported",
        ));
    }
    let pattern = h.contains("pattern");
    let mut size: Option<(usize, usize, usize)> = None;
    let mut triplets: Vec<(u32, u32, f32)> = Vec::new();
    for (lineno, line) in lines.enumerate() {
        let lineno = lineno + 2;
        let line = line.map_err(|e| Error::input(path, format!("line {lineno}: {e}")))?;
        let t = line.trim();
        if t.is_empty() || t.starts_with('%') {
            continue;
        }
        let mut f = t.split_whitespace();
        let mut next_num = |what: &str| -> Result<usize> {
            f.next()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| Error::input(path, format!("line {lineno}: bad {what}")))
        };
        match size {
            None => {
                let (r, c, n) = (
                    next_num("row count")?,
                    next_num("column count")?,
                    next_num("entry count")?,
                );
                if r != n_genes {
                    return Err(Error::input(
                        path,
                        format!(
                            "matrix has {r} rows but {} lists {n_genes} genes",
                            features.display()
                        ),
                    ));
                }
                if c != n_cells {
                    return Err(Error::input(
                        path,
                        format!(
                            "matrix has {c} columns but {} lists {n_cells} barcodes",
                            barcodes.display()
                        ),
                    ));
                }
                if n as u128 > r as u128 * c as u128 {
                    return Err(Error::input(
                        path,
                        format!(
                            "header announces {n} entries, more than the {r} x {c} matrix holds"
                        ),
                    ));
                }
                // The header is not trusted for memory: reserve at most 2^24 entries up front.
                triplets.reserve(n.min(1 << 24));
                size = Some((r, c, n));
            }
            Some((r, c, _)) => {
                let gi = next_num("row index")?;
                let ci = next_num("column index")?;
                if gi == 0 || gi > r || ci == 0 || ci > c {
                    return Err(Error::input(
                        path,
                        format!("line {lineno}: entry ({gi}, {ci}) outside the {r} x {c} matrix"),
                    ));
                }
                let v = if pattern {
                    1.0
                } else {
                    let s = t.split_whitespace().nth(2).unwrap_or("");
                    s.parse::<f64>().map_err(|_| {
                        Error::input(path, format!("line {lineno}: bad value '{s}'"))
                    })? as f32
                };
                triplets.push(((ci - 1) as u32, (gi - 1) as u32, v));
            }
        }
    }
    let (_, _, n) = size.ok_or_else(|| Error::input(path, "no size line"))?;
    if triplets.len() != n {
        return Err(Error::input(
            path,
            format!(
                "header announces {n} entries, found {} (truncated file?)",
                triplets.len()
            ),
        ));
    }
    triplets.sort_unstable_by_key(|t| (t.0, t.1));
    let mut indptr = vec![0usize; n_cells + 1];
    for t in &triplets {
        indptr[t.0 as usize + 1] += 1;
    }
    for i in 0..n_cells {
        indptr[i + 1] += indptr[i];
    }
    let indices = triplets.iter().map(|t| t.1).collect();
    let data = triplets.iter().map(|t| t.2).collect();
    CsrMatrix::from_parts(n_cells, n_genes, indptr, indices, data)
        .map_err(|m| Error::input(path, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_folder(dir: &Path, mtx: &str, genes: &str, cells: &str) {
        std::fs::write(dir.join("matrix.mtx"), mtx).unwrap();
        std::fs::write(dir.join("features.tsv"), genes).unwrap();
        std::fs::write(dir.join("barcodes.tsv"), cells).unwrap();
    }

    #[test]
    fn reads_and_transposes() {
        let d = tempfile::tempdir().unwrap();
        write_folder(
            d.path(),
            "%%MatrixMarket matrix coordinate integer general\n%c\n3 2 3\n1 1 5\n3 1 1\n2 2 7\n",
            "E1\tCD3E\tGene Expression\nE2\tMS4A1\tGene Expression\nE3\tLYZ\tGene Expression\n",
            "AAA-1\nCCC-1\n",
        );
        let ds = read_10x(d.path(), &LoadOptions::default()).unwrap();
        assert_eq!(ds.gene_symbols, vec!["CD3E", "MS4A1", "LYZ"]);
        assert_eq!(ds.cell_ids, vec!["AAA-1", "CCC-1"]);
        assert_eq!(ds.matrix.to_dense(), vec![5., 0., 1., 0., 7., 0.]);
        let opts = LoadOptions {
            gene_key: Some("gene_ids".into()),
            ..Default::default()
        };
        assert_eq!(read_10x(d.path(), &opts).unwrap().gene_symbols[0], "E1");
    }

    #[test]
    fn mismatched_dimensions_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        write_folder(
            d.path(),
            "%%MatrixMarket matrix coordinate integer general\n3 3 1\n1 1 5\n",
            "E1\tA\nE2\tB\nE3\tC\n",
            "AAA-1\nCCC-1\n",
        );
        let e = read_10x(d.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("matrix.mtx") && e.contains("barcodes"), "{e}");
    }

    #[test]
    fn a_header_claiming_huge_counts_is_refused_without_allocating() {
        // 9e12 entries used to abort on the allocation; more entries than cells is an error, and a
        // plausible but wrong count is caught as a truncated file.
        let d = tempfile::tempdir().unwrap();
        let genes = "E1\tA\nE2\tB\n";
        write_folder(
            d.path(),
            "%%MatrixMarket matrix coordinate integer general\n2 2 9000000000000\n1 1 5\n",
            genes,
            "AAA-1\nCCC-1\n",
        );
        let e = read_10x(d.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("matrix.mtx") && e.contains("more than the 2 x 2"),
            "{e}"
        );
        write_folder(
            d.path(),
            "%%MatrixMarket matrix coordinate integer general\n2 2 4\n1 1 5\n",
            genes,
            "AAA-1\nCCC-1\n",
        );
        let e = read_10x(d.path(), &LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("announces 4 entries, found 1"), "{e}");
    }
}
