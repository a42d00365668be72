//! The code of `notebooks/explain.ipynb`, run as a test: train SpikGPT and an SAE on the bundled
//! immune embeddings, attribute every call to SAE features, and check causally that the top features
//! matter more than random ones.
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
    use scsae::io::matrix::read_matrix;
    let emb = read_matrix(
        &root.join("tests/fixtures/spikgpt/immune1000_pca50.safetensors"),
        None,
    )?;
    let ds = load(&root.join("data/immune1000.h5ad"), &LoadOptions::default())?;
    // owned keys: evcxr keeps variables between cells only when they borrow nothing
    let by_id: std::collections::HashMap<String, String> = ds
        .cell_ids
        .iter()
        .cloned()
        .zip(ds.labels("cell_type_annotations")?)
        .collect();
    let ids = emb.row_ids.clone().unwrap_or_default();
    let labels: Vec<String> = ids.iter().map(|id| by_id[id].clone()).collect();
    println!("{} cells x {} embedding dims", emb.n_rows, emb.n_cols);
    // ----- cell -----
    use scsae::spikgpt::train::{train, TrainData, TrainOptions};
    use scsae::spikgpt::{ModelConfig, TrainConfig};
    let work = tempfile::tempdir()?;
    let rt = scsae::Runtime::cpu()?;
    let data = TrainData {
        x: emb.data.clone(),
        dim: emb.n_cols,
        labels: labels.clone(),
        cell_ids: ids.clone(),
        label_source: root.join("data/immune1000.h5ad"),
        label_key: "cell_type_annotations".into(),
        embedding: Default::default(),
    };
    let opts = TrainOptions {
        model: ModelConfig {
            width: 64,
            heads: 4,
            tokens: 8,
            dropout: 0.0,
            ..ModelConfig::default()
        },
        train: TrainConfig {
            epochs: 30,
            lr: 0.05,
            batch_size: 64,
            seed: 7,
            ..TrainConfig::default()
        },
        hold_out: vec!["NK".into()],
        ..TrainOptions::default()
    };
    let trained = train(&rt, &data, &opts, &work.path().join("spikgpt"))?;
    println!("classes: {:?}", trained.prepared.classes);
    // ----- cell -----
    use scsae::sae::input::{read_inputs, InputSpec};
    use scsae::sae::{InputLevel, Sae};
    let inputs = read_inputs(&InputSpec {
        path: &root.join("tests/fixtures/spikgpt/immune1000_pca50.safetensors"),
        layer: None,
        level: InputLevel::Cells,
        key: None,
        max_rows: 0,
        sample_seed: 42,
    })?;
    let cfg = scsae::sae::TrainConfig {
        d_sae: 200,
        lambda: 3.0,
        epochs: 100,
        batch_size: 128,
        lr: 0.001,
        ..scsae::sae::TrainConfig::default()
    };
    let sae_dir = work.path().join("sae");
    scsae::sae::train(
        &rt,
        &inputs,
        &cfg,
        &sae_dir,
        &scsae::sae::TrainOptions::default(),
    )?;
    let sae = Sae::load(&sae_dir)?;
    // ----- cell -----
    use scsae::explain::attribution::{attribute, AttributionOptions};
    use scsae::explain::decompose::Decomposition;
    let dec = Decomposition::new(&sae, &emb)?;
    let attrs = attribute(&trained.model, &dec, &AttributionOptions::default())?;
    let a = attrs[0].clone();
    println!(
        "cell {}: {} (logit {:.2}, baseline {:.2}, error term {:.2})",
        ids[0], trained.prepared.classes[a.target], a.logit, a.baseline_logit, a.error_term
    );
    for s in a.shares.iter().take(5) {
        println!(
            "  feature {:>3}  z = {:.3}  attribution {:+.3}",
            s.feature, s.activation, s.attribution
        );
    }
    // ----- cell -----
    use scsae::explain::ablation::{top_vs_random, ControlOptions};
    let rows = top_vs_random(
        &trained.model,
        &dec,
        &attrs,
        &ids,
        &ControlOptions::default(),
    )?;
    for r in &rows {
        println!(
            "remove top {}: call changed {:.1}% vs {:.1}% for random size-matched features",
            r.k,
            100.0 * r.top_call_changed,
            100.0 * r.random_call_changed
        );
    }
    // ----- end -----
    let sum: f64 = a.shares.iter().map(|s| s.attribution).sum::<f64>() + a.error_term;
    assert!((sum + a.residual - a.delta()).abs() < 1e-6 * a.delta().abs().max(1.0));
    assert!(rows[1].top_call_changed > rows[1].random_call_changed + 0.1);
    Ok(())
}

#[test]
fn notebook_matches_this_file() {
    let nb = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("notebooks/explain.ipynb");
    assert_eq!(
        notebook::notebook_cells(&nb),
        notebook::test_cells(include_str!("notebook_explain.rs"))
    );
}
