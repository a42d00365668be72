//! The code of `notebooks/paper_analysis.ipynb`, run as a test: the paper's analysis in miniature on
//! bundled data: scGPT activations of every layer (the committed tiny random-weight checkpoint), a
//! layer x lambda SAE sweep, AUROC per feature and cell type, the PCA baseline and gene-set enrichment.
//!
//! Each block between cell markers is one code cell of the notebook (after its setup cell, which
//! sets `root`); `notebook_matches_this_file` keeps the notebook identical to this code.

use std::path::PathBuf;

use crate::common::notebook;

#[test]
fn notebook_cells_run() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // ----- cell -----
    use scsae::data::{load, LoadOptions};
    use scsae::scgpt::{extract, ExtractOptions, Scgpt};
    let out = root.join("target/notebooks/paper");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    let rt = scsae::Runtime::cpu()?;
    let scgpt = Scgpt::load(&root.join("tests/fixtures/scgpt/tiny"), &rt)?;
    let data = root.join("data/immune1000.h5ad");
    let ds = load(&data, &LoadOptions::default())?;
    let acts = out.join("activations");
    let ex = extract(
        &scgpt,
        &ds,
        Default::default(),
        &acts,
        &ExtractOptions::default(),
        &rt,
    )?;
    println!(
        "{} cells, {} of {} genes in the vocabulary; layers {}; {:.1} s",
        ex.n_cells,
        ex.genes_matched,
        ex.genes_total,
        ex.layers.join(", "),
        ex.seconds
    );
    // ----- cell -----
    use scsae::sae::sweep::{run_sweep, SweepSpec};
    use scsae::sae::{InputLevel, TrainOptions};
    let spec = SweepSpec {
        layers: vec!["0".into(), "1".into()],
        lambdas: vec![1.0, 3.0],
        ks: vec![],
        base: scsae::SaeTrainConfig {
            d_sae: 256,
            epochs: 40,
            batch_size: 64,
            lr: 0.003,
            ..Default::default()
        },
        level: InputLevel::Cells,
    };
    let sweep_dir = out.join("sweep");
    let runs = run_sweep(&rt, &acts, &spec, &sweep_dir, &TrainOptions::default())?;
    println!("layer  lambda     L0     R2  alive");
    for r in &runs {
        let m = &r.metrics.metrics;
        println!(
            "{:>5}  {:>6}  {:>5.1}  {:.3}  {:>5}",
            r.layer, r.metrics.lambda, m.l0, m.r2, m.alive
        );
    }
    scsae::notebook::show_png(&sweep_dir.join("l0_vs_r2.png"))?;
    // ----- cell -----
    use scsae::analysis::workflow::{FeatureSource, PcaSource};
    use scsae::analysis::AnalysisConfig;
    use scsae::{analyze, AnalyzeInputs};
    let mut reports = Vec::new();
    for r in &runs {
        let name = r.dir.file_name().unwrap().to_string_lossy().to_string();
        let inputs = AnalyzeInputs {
            source: FeatureSource::Activations {
                dir: acts.clone(),
                layer: r.layer.clone(),
                sae: Some(r.dir.clone()),
            },
            data: data.clone(),
            load: LoadOptions::default(),
            label_key: "cell_type_annotations".into(),
            genesets: vec![],
            expression: Default::default(),
            read_expression: Default::default(),
            pca_source: PcaSource::Activations,
            name: Some("SAE".into()),
            out: out.join("analysis").join(&name),
            force: true,
        };
        reports.push((name, analyze(&inputs, &AnalysisConfig::default(), &rt)?));
    }
    println!("run                 SAE: mean best AUROC  types > 0.8  enriched %   PCA: mean best AUROC  types > 0.8");
    for (name, rep) in &reports {
        let (s, p) = (
            &rep.summary.features,
            rep.summary.pca.as_ref().ok_or("no PCA")?,
        );
        println!(
            "{name:<18}  {:>20.3}  {:>11}  {:>10.1}   {:>20.3}  {:>11}",
            s.mean_best_auroc,
            s.n_types_above,
            s.pct_enriched.unwrap_or(0.0),
            p.mean_best_auroc,
            p.n_types_above
        );
    }
    // ----- cell -----
    let best = reports
        .iter()
        .max_by(|a, b| {
            let m = |r: &scsae::AnalyzeReport| r.summary.features.mean_best_auroc;
            m(&a.1).total_cmp(&m(&b.1))
        })
        .map(|(name, _)| name.clone())
        .ok_or("no runs")?;
    let analysis = out.join("analysis").join(&best);
    println!("highest mean best AUROC: {best}");
    scsae::notebook::show_png(&analysis.join("figures/auroc_heatmap.png"))?;
    // ----- cell -----
    use scsae::io::table::read_dataframe;
    println!("{}", read_dataframe(&analysis.join("comparison.csv"))?);
    // per cell type: the best SAE feature and the best principal component (a block: evcxr cannot
    // keep a polars DataFrame from one cell to the next)
    {
        let per_type = read_dataframe(&analysis.join("cell_types.csv"))?.select([
            "cell_type",
            "n_cells",
            "best_sae_feature",
            "best_sae_auroc",
            "best_pca_component",
            "best_pca_auroc",
        ])?;
        // polars prints at most 10 rows: the 13 types in two parts
        println!("{}\n{}", per_type.slice(0, 7), per_type.slice(7, 7));
    }
    scsae::notebook::show_png(&analysis.join("figures/sae_vs_pca.png"))?;
    // ----- cell -----
    {
        let enrichment = read_dataframe(&analysis.join("enrichment.csv"))?
            .sort(["q_value"], Default::default())?
            .select([
                "feature",
                "gene_set",
                "overlap",
                "set_size",
                "q_value",
                "overlap_genes",
            ])?;
        println!("{}", enrichment.head(Some(10)));
    }
    scsae::notebook::show_png(&analysis.join("figures/enrichment_summary.png"))?;
    // ----- end -----
    assert_eq!(runs.len(), 4);
    assert!(runs.iter().all(|r| r.metrics.metrics.r2 > 0.0));
    assert!(reports
        .iter()
        .all(|(_, r)| r.summary.features.mean_best_auroc > 0.5));
    Ok(())
}

#[test]
fn notebook_matches_this_file() {
    let nb = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("notebooks/paper_analysis.ipynb");
    assert_eq!(
        notebook::notebook_cells(&nb),
        notebook::test_cells(include_str!("notebook_paper.rs"))
    );
}
