//! Output of `scsae analyze`: result tables (CSV + Parquet), figures, `report.md` linking them, and
//! `summary.json` with the headline numbers.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::analysis::features_table::{self, EnrichedSet, FeatureRow};
use crate::analysis::pca::PcaAxes;
use crate::analysis::pipeline::{AnalysisContext, Comparison, FeatureAnalysis, Headline};
use crate::analysis::AnalysisConfig;
use crate::error::Result;
use crate::io::atomic::{write_bytes_atomic, write_json_atomic};
use crate::io::table::Table;

fn genes_with_r(list: &[(usize, f64)], genes: &[String]) -> Vec<(String, f64)> {
    list.iter().map(|&(g, r)| (genes[g].clone(), r)).collect()
}

/// The significant gene sets of each AUROC row `(set, q, negative side)`, most significant first.
fn significant_sets(fa: &FeatureAnalysis, cfg: &AnalysisConfig) -> Vec<Vec<(usize, f64, bool)>> {
    let n_rows = fa.auroc.features.len();
    let mut sig: Vec<Vec<(usize, f64, bool)>> = vec![Vec::new(); n_rows];
    if let Some(e) = &fa.enrichment {
        for test in &e.tests {
            if test.q < cfg.fdr {
                sig[test.feature % n_rows].push((test.set, test.q, test.feature >= n_rows));
            }
        }
    }
    for s in sig.iter_mut() {
        s.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    }
    sig
}

/// One [`FeatureRow`] per feature of `fa`, in index order (dead features have only their activity).
fn feature_rows(
    fa: &FeatureAnalysis,
    ctx: &AnalysisContext,
    cfg: &AnalysisConfig,
) -> Vec<FeatureRow> {
    let types = ctx.type_names();
    let genes = ctx.gene_names();
    let t = &fa.auroc;
    let nf = fa.feature_names.len();
    let mut row_of = vec![None; nf];
    for (r, &j) in t.features.iter().enumerate() {
        row_of[j] = Some(r);
    }
    let best = t.best_per_feature();
    let sig = significant_sets(fa, cfg);
    let set_list = |r: usize| {
        sig[r]
            .iter()
            .map(|&(s, q, negative)| EnrichedSet {
                name: ctx.sets[s].name.clone(),
                q,
                negative,
            })
            .collect::<Vec<_>>()
    };
    (0..nf)
        .map(|j| {
            let mut row = FeatureRow {
                feature: fa.feature_names[j].clone(),
                alive: fa.alive[j],
                frac_active: fa.frac_active[j],
                mean: fa.mean_value[j],
                ..FeatureRow::default()
            };
            let Some(r) = row_of[j] else {
                return row;
            };
            let b = best[r];
            row.best_type = b.map(|(ti, _)| types[ti].clone());
            row.best_auroc = b.map(|(_, v)| v);
            row.best_is_lower = b
                .map(|(ti, _)| t.flipped[r * t.types.len() + ti])
                .unwrap_or(false);
            let k = (0..t.types.len())
                .filter(|&ti| t.get(r, ti) > cfg.auroc_threshold)
                .count();
            row.n_types_above = k as u64;
            row.specific = k > 0;
            if let Some(a) = &fa.attribution {
                row.top_positive = genes_with_r(&a.top_positive[r], genes);
                row.top_negative = genes_with_r(&a.top_negative[r], genes);
                row.n_correlated = Some(a.hits[r].len() as u64);
            }
            row.n_sets = sig[r].len() as u64;
            row.sets = set_list(r);
            row.best_set = sig[r].first().map(|&(s, _, _)| ctx.sets[s].name.clone());
            row.best_set_q = sig[r].first().map(|&(_, q, _)| q);
            row.enriched = fa.enriched[r];
            row
        })
        .collect()
}

/// Tables of one analysis, file stems prefixed with `prefix` (`""` or `"pca_"`); returns the stems
/// written.
pub fn write_analysis_tables(
    out: &Path,
    prefix: &str,
    fa: &FeatureAnalysis,
    ctx: &AnalysisContext,
    cfg: &AnalysisConfig,
) -> Result<Vec<String>> {
    let types = ctx.type_names();
    let genes = ctx.gene_names();
    features_table::write(
        out,
        &format!("{prefix}features"),
        &feature_rows(fa, ctx, cfg),
        fa.auroc.direction == crate::analysis::Direction::Both,
    )?;
    let mut written = vec![format!("{prefix}features")];
    for (stem, done) in [
        ("auroc", write_auroc_table(out, prefix, fa, &types)?),
        (
            "gene_attribution",
            write_attribution_table(out, prefix, fa, genes)?,
        ),
        (
            "enrichment",
            write_enrichment_table(out, prefix, fa, ctx, cfg, genes)?,
        ),
    ] {
        if done {
            written.push(format!("{prefix}{stem}"));
        }
    }
    Ok(written)
}

/// `<prefix>auroc.*`: one row per (alive feature, cell type).
fn write_auroc_table(
    out: &Path,
    prefix: &str,
    fa: &FeatureAnalysis,
    types: &[String],
) -> Result<bool> {
    let t = &fa.auroc;
    let n = t.features.len() * t.types.len();
    let mut f_col = Vec::with_capacity(n);
    let mut ty_col = Vec::with_capacity(n);
    let mut v_col = Vec::with_capacity(n);
    let mut lower_col = Vec::with_capacity(n);
    for (r, &j) in t.features.iter().enumerate() {
        for (ti, ty) in types.iter().enumerate() {
            f_col.push(fa.feature_names[j].clone());
            ty_col.push(ty.clone());
            v_col.push(t.get(r, ti));
            lower_col.push(t.flipped[r * t.types.len() + ti]);
        }
    }
    let mut at = Table::new(n)
        .str("feature", f_col)
        .str("cell_type", ty_col)
        .f64("auroc", v_col);
    if t.direction == crate::analysis::Direction::Both {
        at = at.bool("lower_in_type", lower_col);
    }
    at.write(out, &format!("{prefix}auroc"))?;
    Ok(true)
}

/// `<prefix>gene_attribution.*`: each alive feature's top correlated genes (with expression).
fn write_attribution_table(
    out: &Path,
    prefix: &str,
    fa: &FeatureAnalysis,
    genes: &[String],
) -> Result<bool> {
    let t = &fa.auroc;
    let Some(a) = &fa.attribution else {
        return Ok(false);
    };
    let (mut f, mut dir, mut rank, mut gene, mut r_col) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (r, &j) in t.features.iter().enumerate() {
        for (d, list) in [
            ("positive", &a.top_positive[r]),
            ("negative", &a.top_negative[r]),
        ] {
            for (k, &(g, rv)) in list.iter().enumerate() {
                f.push(fa.feature_names[j].clone());
                dir.push(d.to_string());
                rank.push(k as u64 + 1);
                gene.push(genes[g].clone());
                r_col.push(rv);
            }
        }
    }
    Table::new(f.len())
        .str("feature", f)
        .str("direction", dir)
        .count("rank", rank)
        .str("gene", gene)
        .f64("pearson_r", r_col)
        .write(out, &format!("{prefix}gene_attribution"))?;
    Ok(true)
}

/// `<prefix>enrichment.*`: every (feature, gene set) Fisher test with its overlap.
fn write_enrichment_table(
    out: &Path,
    prefix: &str,
    fa: &FeatureAnalysis,
    ctx: &AnalysisContext,
    cfg: &AnalysisConfig,
    genes: &[String],
) -> Result<bool> {
    let t = &fa.auroc;
    let n_rows = t.features.len();
    let Some(e) = &fa.enrichment else {
        return Ok(false);
    };
    let m = e.tests.len();
    let mut cols: (Vec<String>, Vec<String>, Vec<String>) = (
        Vec::with_capacity(m),
        Vec::with_capacity(m),
        Vec::with_capacity(m),
    );
    let (mut ov, mut nh, mut ss, mut bg) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut or, mut p, mut lp, mut q, mut sig, mut g) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut side = Vec::with_capacity(m);
    for test in &e.tests {
        cols.0
            .push(fa.feature_names[t.features[test.feature % n_rows]].clone());
        side.push(
            if test.feature >= n_rows {
                "negative"
            } else {
                "positive"
            }
            .to_string(),
        );
        cols.1.push(ctx.sets[test.set].name.clone());
        cols.2.push(ctx.sets[test.set].source.clone());
        ov.push(test.overlap as u64);
        nh.push(test.n_hits as u64);
        ss.push(test.set_size as u64);
        bg.push(test.background as u64);
        or.push(test.odds_ratio);
        p.push(test.p);
        lp.push(test.log10_p);
        q.push(test.q);
        sig.push(test.q < cfg.fdr);
        g.push(test.genes.iter().map(|&k| genes[k].clone()).collect());
    }
    Table::new(m)
        .str("feature", cols.0)
        .str("correlation_sign", side)
        .str("gene_set", cols.1)
        .str("gmt_file", cols.2)
        .count("overlap", ov)
        .count("n_correlated_genes", nh)
        .count("set_size", ss)
        .count("background", bg)
        .f64("odds_ratio", or)
        .f64("p_value", p)
        .f64("log10_p", lp)
        .f64("q_value", q)
        .bool("significant", sig)
        .str_list("overlap_genes", g)
        .write(out, &format!("{prefix}enrichment"))?;
    Ok(true)
}

/// Per cell type: its best features in `main` and the best component of `baseline`.
pub fn write_cell_type_table(
    out: &Path,
    main: &FeatureAnalysis,
    baseline: Option<&FeatureAnalysis>,
    ctx: &AnalysisContext,
    cfg: &AnalysisConfig,
    top: usize,
) -> Result<()> {
    let types = ctx.type_names();
    let nt = types.len();
    let t = &main.auroc;
    let best = t.best_per_type();
    let mut bf = Vec::new();
    let mut ba = Vec::new();
    let mut tops = Vec::new();
    let mut tops_auroc = Vec::new();
    let mut n_above = Vec::new();
    for (ti, b) in best.iter().enumerate() {
        bf.push(b.map(|(r, _)| main.feature_names[t.features[r]].clone()));
        ba.push(b.map(|(_, v)| v));
        let mut rows: Vec<usize> = (0..t.features.len())
            .filter(|&r| t.get(r, ti).is_finite())
            .collect();
        rows.sort_by(|&a, &b| t.get(b, ti).total_cmp(&t.get(a, ti)).then(a.cmp(&b)));
        n_above.push(
            rows.iter()
                .filter(|&&r| t.get(r, ti) > cfg.auroc_threshold)
                .count() as u64,
        );
        let shown = &rows[..top.min(rows.len())];
        tops.push(
            shown
                .iter()
                .map(|&r| main.feature_names[t.features[r]].clone())
                .collect(),
        );
        tops_auroc.push(shown.iter().map(|&r| t.get(r, ti)).collect());
    }
    let sizes: Vec<u64> = ctx
        .tested_types
        .iter()
        .map(|&c| ctx.labels.counts[c] as u64)
        .collect();
    let mut table = Table::new(nt)
        .str("cell_type", types)
        .count("n_cells", sizes)
        .opt_str(&format!("best_{}_feature", main.label.to_lowercase()), bf)
        .opt_f64(&format!("best_{}_auroc", main.label.to_lowercase()), ba)
        .count("n_features_above_threshold", n_above)
        .str_list("top_features", tops)
        .f64_list("top_features_auroc", tops_auroc);
    if let Some(b) = baseline {
        let bb = b.auroc.best_per_type();
        table = table
            .opt_str(
                &format!("best_{}_component", b.label.to_lowercase()),
                bb.iter()
                    .map(|x| x.map(|(r, _)| b.feature_names[b.auroc.features[r]].clone()))
                    .collect(),
            )
            .opt_f64(
                &format!("best_{}_auroc", b.label.to_lowercase()),
                bb.iter().map(|x| x.map(|(_, v)| v)).collect(),
            );
    }
    table.write(out, "cell_types")
}

/// The SAE-vs-PCA comparison table.
pub fn write_comparison(out: &Path, c: &Comparison) -> Result<()> {
    let mut table = Table::new(c.metrics.len()).str("metric", c.metrics.clone());
    for (label, vals) in c.labels.iter().zip(&c.values) {
        table = table.opt_f64(
            label,
            vals.iter().map(|v| v.is_finite().then_some(*v)).collect(),
        );
    }
    table.write(out, "comparison")
}

/// Explained variance of the PCA baseline.
pub fn write_pca_variance(out: &Path, pca: &PcaAxes) -> Result<()> {
    Table::new(pca.k())
        .str("component", pca.score_names())
        .f64("singular_value", pca.singular_values.clone())
        .f64("explained_variance", pca.explained_variance.clone())
        .f64(
            "explained_variance_ratio",
            pca.explained_variance_ratio.clone(),
        )
        .write(out, "pca_variance")
}

/// Headline numbers printed by `--json` and written to `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Output folder.
    pub out: String,
    /// Where the features came from.
    pub feature_source: String,
    /// Cells analysed.
    pub n_cells: usize,
    /// Tested cell types.
    pub cell_types: Vec<String>,
    /// Gene sets tested.
    pub n_gene_sets: usize,
    /// What was done to the expression matrix.
    pub expression: Option<String>,
    /// Headline of the features.
    pub features: Headline,
    /// Headline of the PCA baseline.
    pub pca: Option<Headline>,
    /// Number of warnings (listed in report.md).
    pub n_warnings: usize,
    /// The configuration used.
    pub config: AnalysisConfig,
}

fn fmt_opt(v: f64, digits: usize) -> String {
    if v.is_finite() {
        format!("{v:.digits$}")
    } else {
        "—".to_string()
    }
}

/// Write `report.md` (linking every table and figure) and `summary.json`.
#[allow(clippy::too_many_arguments)]
pub fn write_report(
    out: &Path,
    summary: &Summary,
    main: &FeatureAnalysis,
    baseline: Option<&FeatureAnalysis>,
    comparison: Option<&Comparison>,
    tables: &[String],
    figures: &[String],
    warnings: &[String],
    ctx: &AnalysisContext,
) -> Result<()> {
    let mut md = String::new();
    let h = &main.headline;
    let _ = writeln!(md, "# scsae analyze report\n");
    let _ = writeln!(
        md,
        "- Features: {} ({} features, {} cells)",
        summary.feature_source, h.n_features, h.n_cells
    );
    let _ = writeln!(
        md,
        "- Cell types tested (>= {} cells): {}",
        summary.config.min_cells,
        summary.cell_types.join(", ")
    );
    if let Some(e) = &summary.expression {
        let _ = writeln!(md, "- Expression: {e}");
    }
    let background = match summary.config.background {
        crate::analysis::Background::SetGenes => "genes of the tested sets measured in the data",
        crate::analysis::Background::Measured => "all measured genes",
    };
    let direction = match main.auroc.direction {
        crate::analysis::Direction::Greater => "higher in the type (one-sided)",
        crate::analysis::Direction::Both => "either direction, max(a, 1 - a)",
    };
    let _ = writeln!(md, "- Gene sets tested: {}; background: {background}; hits: r > {} (features with >= {} hits); BH over all (feature, set) tests, FDR < {}",
        summary.n_gene_sets, summary.config.corr_cutoff, summary.config.min_hits, summary.config.fdr);
    let _ = writeln!(md, "- AUROC: one-vs-rest Mann-Whitney, ties 0.5; features {direction}; alive = non-zero on >= {}% of cells\n",
        summary.config.alive_fraction * 100.0);
    let _ = writeln!(md, "## Headline\n");
    let _ = writeln!(
        md,
        "| metric | {} |{}",
        main.label,
        baseline
            .map(|b| format!(" {} |", b.label))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "|---|---|{}",
        if baseline.is_some() { "---|" } else { "" }
    );
    if let Some(c) = comparison {
        for (r, m) in c.metrics.iter().enumerate() {
            let mut row = format!("| {m} |");
            for col in &c.values {
                let digits = if r == 0 {
                    3
                } else if r == 1 || r == 5 {
                    0
                } else {
                    1
                };
                let _ = write!(row, " {} |", fmt_opt(col[r], digits));
            }
            let _ = writeln!(md, "{row}");
        }
    }
    let _ = writeln!(md, "\nPaper (Table 4, layer 11, lambda 3): SAE mean best AUROC 0.772 vs PCA 0.819; SAE 5 types > 0.8; 64% of alive features enriched; L0 219; 99% alive.\n");
    let _ = writeln!(md, "## Best feature per cell type\n");
    let _ = writeln!(
        md,
        "| cell type | cells | best {} | AUROC |{}",
        main.label,
        baseline
            .map(|b| format!(" best {} | AUROC |", b.label))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|{}",
        if baseline.is_some() { "---|---|" } else { "" }
    );
    let bm = main.auroc.best_per_type();
    let bb = baseline.map(|b| b.auroc.best_per_type());
    for (ti, ty) in summary.cell_types.iter().enumerate() {
        let cells = ctx.labels.counts[ctx.tested_types[ti]];
        let (f, v) = bm[ti]
            .map(|(r, v)| {
                (
                    main.feature_names[main.auroc.features[r]].clone(),
                    fmt_opt(v, 3),
                )
            })
            .unwrap_or(("—".into(), "—".into()));
        let mut row = format!("| {ty} | {cells} | {f} | {v} |");
        if let (Some(b), Some(bb)) = (baseline, &bb) {
            let (f, v) = bb[ti]
                .map(|(r, v)| (b.feature_names[b.auroc.features[r]].clone(), fmt_opt(v, 3)))
                .unwrap_or(("—".into(), "—".into()));
            let _ = write!(row, " {f} | {v} |");
        }
        let _ = writeln!(md, "{row}");
    }
    let _ = writeln!(md, "\n## Figures\n");
    for f in figures {
        let _ = writeln!(md, "![{f}](figures/{f}.png) ([SVG](figures/{f}.svg))\n");
    }
    let _ = writeln!(md, "## Tables (CSV and Parquet)\n");
    for t in tables {
        let _ = writeln!(md, "- [{t}.csv]({t}.csv), [{t}.parquet]({t}.parquet)");
    }
    let _ = writeln!(md, "- [summary.json](summary.json)\n");
    let _ = writeln!(md, "## Warnings ({})\n", warnings.len());
    if warnings.is_empty() {
        let _ = writeln!(md, "None.");
    }
    for w in warnings {
        let _ = writeln!(md, "- {w}");
    }
    write_json_atomic(&out.join("summary.json"), summary)?;
    write_bytes_atomic(&out.join("report.md"), md.as_bytes())
}
