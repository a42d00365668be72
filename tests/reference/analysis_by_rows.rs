//! The expression read by rows from an `.h5ad` file (`scsae analyze --read-expression by-rows`)
//! against the same cells held in memory: the same blocks, gene statistics, gene attribution by
//! sums (bit for bit) and expression PCA, on a planted file of 40,000 cells whose analysed subset
//! leaves a gap wider than one read window; the attribution by sums also against the dense
//! correlation product (the reference numbers) to 1e-12; bad values anywhere in the file are
//! refused naming the cell and gene.

use std::path::Path;

use hdf5_pure::{AttrValue, FileBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use scsae::analysis::attribution_sums::attribute_genes_by_sums;
use scsae::analysis::correlation::attribute_genes_sparse;
use scsae::analysis::expression_rows::{ExpressionRows, GeneStats};
use scsae::analysis::sparse_codes::SparseCodes;
use scsae::analysis::{
    fit_pca_axes, AttributionOptions, CsrColumnBlocks, ExpressionTransform, PcaSolver,
};
use scsae::data::{load, load_by_rows, CsrMatrix, DenseMatrix, LoadOptions};

const CELLS: usize = 40_000;
const GENES: usize = 24;

/// An AnnData file with `counts` (cells x genes) as X, CSR (chunked, deflated) or dense.
fn write_h5ad(path: &Path, counts: &CsrMatrix, csr: bool) {
    let frame = |g: &mut hdf5_pure::GroupBuilder| {
        g.set_attr("encoding-type", AttrValue::VarLenString("dataframe".into()));
        g.set_attr("encoding-version", AttrValue::VarLenString("0.2.0".into()));
        g.set_attr("_index", AttrValue::VarLenString("_index".into()));
        g.set_attr("column-order", AttrValue::VarLenStringArray(vec![]));
    };
    let mut b = FileBuilder::new();
    let mut obs = b.create_group("obs");
    frame(&mut obs);
    let cells: Vec<String> = (0..counts.n_rows).map(|i| format!("cell{i}")).collect();
    let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
    obs.create_dataset("_index").with_vlen_strings(&cells);
    b.add_group(obs.finish());
    let mut var = b.create_group("var");
    frame(&mut var);
    let genes: Vec<String> = (0..counts.n_cols).map(|j| format!("G{j}")).collect();
    let genes: Vec<&str> = genes.iter().map(String::as_str).collect();
    var.create_dataset("_index").with_vlen_strings(&genes);
    b.add_group(var.finish());
    if csr {
        let mut x = b.create_group("X");
        x.set_attr(
            "encoding-type",
            AttrValue::VarLenString("csr_matrix".into()),
        );
        x.set_attr("encoding-version", AttrValue::VarLenString("0.1.0".into()));
        x.set_attr(
            "shape",
            AttrValue::I64Array(vec![counts.n_rows as i64, counts.n_cols as i64]),
        );
        x.create_dataset("data")
            .with_f32_data(&counts.data)
            .with_chunks(&[1000])
            .with_deflate(4);
        let idx: Vec<i32> = counts.indices.iter().map(|&i| i as i32).collect();
        x.create_dataset("indices")
            .with_i32_data(&idx)
            .with_chunks(&[777])
            .with_deflate(4);
        let ptr: Vec<i64> = counts.indptr.iter().map(|&p| p as i64).collect();
        x.create_dataset("indptr").with_i64_data(&ptr);
        b.add_group(x.finish());
    } else {
        b.create_dataset("X")
            .with_f32_data(&counts.to_dense())
            .with_shape(&[counts.n_rows as u64, counts.n_cols as u64])
            .with_chunks(&[1500, 8])
            .with_deflate(4);
    }
    b.write(path).unwrap();
}

/// Planted counts: gene `g` is expressed more where feature `g % 8` is active.
fn planted(rng: &mut ChaCha8Rng) -> CsrMatrix {
    let dense: Vec<f32> = (0..CELLS * GENES)
        .map(|k| {
            let (i, g) = (k / GENES, k % GENES);
            let boost = if (i / 7) % 8 == g % 8 { 0.4 } else { 0.0 };
            if rng.random::<f64>() < 0.15 + boost {
                rng.random_range(1..9) as f32
            } else {
                0.0
            }
        })
        .collect();
    CsrMatrix::from_dense(CELLS, GENES, &dense)
}

/// The analysed cells: the first 5,000, then every other cell from 30,000 (a gap wider than one
/// 16,384-row read window, and blocks that straddle it).
fn analysed_rows() -> Vec<usize> {
    (0..5_000).chain((30_000..CELLS).step_by(2)).collect()
}

/// Sparse features of the analysed cells: feature `f < 8` active on the cells of group `f`.
fn features(rows: &[usize], rng: &mut ChaCha8Rng) -> SparseCodes {
    let nf = 12;
    let mut x = vec![0f32; rows.len() * nf];
    for (k, &i) in rows.iter().enumerate() {
        for f in 0..nf {
            if (f < 8 && (i / 7) % 8 == f) || rng.random::<f64>() < 0.05 {
                x[k * nf + f] = rng.random_range(1..20) as f32 * 0.25;
            }
        }
    }
    SparseCodes::from_dense(&DenseMatrix::new(rows.len(), nf, x).unwrap()).unwrap()
}

#[test]
fn expression_read_by_rows_equals_the_matrix_in_memory() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let counts = planted(&mut rng);
    let rows = analysed_rows();
    let codes = features(&rows, &mut rng);
    let cols: Vec<usize> = (0..codes.n_cols()).collect();
    let opts = AttributionOptions {
        top_k: 5,
        cutoff: 0.05,
        block: 8,
    };
    let dir = tempfile::tempdir().unwrap();
    for csr in [true, false] {
        let path = dir.path().join(format!("planted_{csr}.h5ad"));
        write_h5ad(&path, &counts, csr);
        let whole = load(&path, &LoadOptions::default()).unwrap();
        assert_eq!(whole.matrix, counts);
        let (header, reader) = load_by_rows(&path, &LoadOptions::default()).unwrap();
        let reader = reader.expect("a CSR or dense X is read by rows");
        assert_eq!(header.matrix.nnz(), 0, "the header holds no values");
        assert_eq!(header.cell_ids, whole.cell_ids);
        // windows that start and end inside storage chunks
        for (a, n) in [(0, 1), (999, 1003), (12_345, 7), (CELLS - 5, 5)] {
            assert_eq!(reader.read(a, n).unwrap(), counts.slice_rows(a, a + n));
        }

        let (by_rows, note_rows) =
            ExpressionRows::by_rows(reader, rows.clone(), &header, ExpressionTransform::Auto)
                .unwrap();
        let (in_memory, note_mem) =
            ExpressionRows::in_memory(counts.select_rows(&rows), ExpressionTransform::Auto);
        assert_eq!(note_rows, note_mem);
        assert!(note_rows.contains("integer counts"), "{note_rows}");
        let mut blocks = Vec::new();
        by_rows
            .visit(&mut |first, b| {
                blocks.push((first, b.clone()));
                Ok(())
            })
            .unwrap();
        let mut k = 0;
        in_memory
            .visit(&mut |first, b| {
                assert_eq!((first, b), (blocks[k].0, &blocks[k].1), "block {k}");
                k += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(k, blocks.len());
        assert!(k >= 3);
        // taken while the file was checked, equal to those of the prepared matrix
        assert_eq!(by_rows.stats(), in_memory.stats());
        assert_eq!(
            in_memory.stats(),
            &GeneStats::of_matrix(in_memory.matrix().unwrap())
        );

        let a = attribute_genes_by_sums(&codes, &cols, &by_rows, &opts).unwrap();
        let b = attribute_genes_by_sums(&codes, &cols, &in_memory, &opts).unwrap();
        assert_eq!(a, b, "by rows and in memory give the same bits");
        // against the dense product of the standardised matrices
        let reference =
            attribute_genes_sparse(&codes, &cols, in_memory.matrix().unwrap(), &opts).unwrap();
        assert_eq!(a.feature_varies, reference.feature_varies);
        assert_eq!(a.gene_varies, reference.gene_varies);
        for (p, q) in [
            (&a.top_positive, &reference.top_positive),
            (&a.top_negative, &reference.top_negative),
            (&a.hits, &reference.hits),
        ] {
            for (u, v) in p.iter().zip(q) {
                assert_eq!(u.len(), v.len());
                for (s, t) in u.iter().zip(v) {
                    assert!((s.1 - t.1).abs() < 1e-12, "{s:?} vs {t:?}");
                }
            }
        }
        // the planted genes are found: feature f's hits include gene f
        for f in 0..8 {
            assert!(a.hits[f].iter().any(|&(g, _)| g % 8 == f), "feature {f}");
        }

        let keep: Vec<usize> = (0..GENES).collect();
        let pa = fit_pca_axes(
            &CsrColumnBlocks::new(&by_rows, keep.clone()),
            5,
            PcaSolver::CovarianceEigh,
            0,
        )
        .unwrap();
        let pb = fit_pca_axes(
            &CsrColumnBlocks::new(&in_memory, keep),
            5,
            PcaSolver::CovarianceEigh,
            0,
        )
        .unwrap();
        assert_eq!(pa, pb);
    }
}

#[test]
fn a_negative_value_anywhere_in_the_file_is_refused_naming_cell_and_gene() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut counts = planted(&mut rng);
    // in a cell that is not analysed
    let (a, _) = (counts.indptr[20_000], counts.indptr[20_001]);
    counts.data[a] = -2.0;
    let gene = counts.indices[a];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("negative.h5ad");
    write_h5ad(&path, &counts, true);
    let (header, reader) = load_by_rows(&path, &LoadOptions::default()).unwrap();
    let e = ExpressionRows::by_rows(
        reader.unwrap(),
        analysed_rows(),
        &header,
        ExpressionTransform::Auto,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("negative.h5ad"), "{e}");
    assert!(
        e.contains("negative expression value -2 (cell 'cell20000', gene 'G"),
        "{e}"
    );
    assert!(e.contains(&format!("'G{gene}'")), "{e}");
    // the whole read says the same
    let whole = load(&path, &LoadOptions::default()).unwrap();
    let w = whole.check_expression().unwrap_err().to_string();
    assert_eq!(w, e);
}
