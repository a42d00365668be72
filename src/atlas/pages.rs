//! The atlas's pages: `index.html` (one sortable, filterable row per feature) and
//! `features/f<i>.html` (one feature). Every string from the inputs is escaped; every link is
//! relative.

use std::fmt::Write;

use super::html::{escape, num, page, pval, INDEX_JS};
use super::inputs::{Concept, Drive, SetTest};
use super::stats::Histogram;
use super::svg::{auroc_svg, histogram_svg};
use crate::analysis::features_table::FeatureRow;

/// What every page of one atlas shares.
#[derive(Debug, Clone)]
pub struct Site {
    /// Name of the SAE run (the page titles).
    pub title: String,
    /// One line on what is shown (SAE, activations, layer, cells).
    pub subtitle: String,
    /// Feature names, in index order.
    pub names: Vec<String>,
    /// Per feature: best cell type and its AUROC.
    pub best: Vec<Option<(String, f64)>>,
    /// Cells encoded.
    pub n_cells: usize,
    /// The analysis's FDR level.
    pub fdr: f64,
    /// The analysis's AUROC threshold.
    pub auroc_threshold: f64,
    /// Concepts were given.
    pub concepts: bool,
    /// A SpikGPT explanation run was given.
    pub explain: bool,
}

/// One compared SAE's nearest features of a feature.
#[derive(Debug, Clone)]
pub struct Neighbours {
    /// The compared SAE (folder and run name).
    pub label: String,
    /// (feature index, cosine), highest first.
    pub features: Vec<(usize, f32)>,
}

/// Everything on one feature's page.
#[derive(Debug, Clone)]
pub struct FeaturePage<'a> {
    /// Feature index.
    pub index: usize,
    /// Its row of the features table.
    pub row: &'a FeatureRow,
    /// Histogram of its non-zero activations.
    pub hist: Histogram,
    /// Cells where it is zero.
    pub n_zero: usize,
    /// Top cells: (cell id, cell type, activation).
    pub top_cells: Vec<(&'a str, &'a str, f32)>,
    /// AUROC per tested cell type.
    pub auroc: &'a [(String, f64)],
    /// Tested gene sets, lowest q first (`None`: no enrichment table).
    pub sets: Option<&'a [SetTest]>,
    /// Nearest features of the same SAE: (index, cosine).
    pub within: Vec<(usize, f32)>,
    /// Nearest features of each compared SAE.
    pub compare: Vec<Neighbours>,
    /// Its held-out concept.
    pub concept: Option<&'a Concept>,
    /// Classes whose calls it drives.
    pub drives: &'a [Drive],
}

/// Sets listed per page at most.
const MAX_SETS: usize = 25;

/// Shown when the analysis found no significant set: the best few tested ones.
const BEST_NON_SIGNIFICANT: usize = 3;

fn feature_file(i: usize) -> String {
    format!("f{i}.html")
}

/// The index page.
pub fn index_page(
    site: &Site,
    rows: &[FeatureRow],
    concepts: Option<&[Option<Concept>]>,
    drives: Option<&[Vec<Drive>]>,
) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{}</h1>\n<p class=\"meta\">{}</p>\n",
        escape(&site.title),
        escape(&site.subtitle)
    );
    let alive = rows.iter().filter(|r| r.alive).count();
    let specific = rows.iter().filter(|r| r.specific).count();
    let enriched = rows.iter().filter(|r| r.enriched).count();
    let _ = writeln!(
        b,
        "<p class=\"meta\">{} features, {alive} alive; {specific} with AUROC &gt; {} for a cell type; {enriched} enriched for a gene set at q &lt; {}. Click a column header to sort, type to filter.</p>",
        rows.len(),
        site.auroc_threshold,
        site.fdr
    );
    b.push_str("<p><input id=\"filter\" type=\"search\" placeholder=\"filter: gene, cell type, set, feature…\" aria-label=\"filter\"><span id=\"count\"></span></p>\n");
    let mut heads: Vec<(&str, &str, &str, bool)> = vec![
        ("index", "feature", "num", false),
        ("alive", "alive", "text", false),
        ("frac_active", "frac active", "num", true),
        ("best_type", "best type", "text", false),
        ("best_auroc", "AUROC", "num", true),
        ("top_genes", "top correlated genes", "text", false),
        ("n_sets", "sets", "num", true),
        ("best_set", "best set", "text", false),
        ("best_set_q", "q", "num", true),
    ];
    if concepts.is_some() {
        heads.push(("concept", "concept", "text", false));
        heads.push(("concept_auroc", "test AUROC", "num", true));
    }
    if drives.is_some() {
        heads.push(("drives", "drives calls of", "text", false));
    }
    b.push_str("<table id=\"features\" data-sorted=\"\">\n<thead><tr>");
    for (key, label, ty, n) in &heads {
        let _ = write!(
            b,
            "<th data-key=\"{key}\" data-type=\"{ty}\"{}>{label}</th>",
            if *n { " class=\"n\"" } else { "" }
        );
    }
    b.push_str("</tr></thead>\n<tbody>\n");
    for (i, r) in rows.iter().enumerate() {
        let cls = if r.alive { "" } else { " class=\"dead\"" };
        let _ = write!(
            b,
            "<tr data-i=\"{i}\"{cls}><td data-v=\"{i}\"><a href=\"features/{}\">{}</a></td><td>{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td>",
            feature_file(i),
            escape(&r.feature),
            if r.alive { "yes" } else { "no" },
            num(r.frac_active, 3),
            escape(r.best_type.as_deref().unwrap_or("")),
            r.best_auroc.map(|v| num(v, 3)).unwrap_or_default(),
        );
        let genes: Vec<&str> = r
            .top_positive
            .iter()
            .take(4)
            .map(|g| g.0.as_str())
            .collect();
        let _ = write!(
            b,
            "<td class=\"genes\">{}</td><td class=\"n\">{}</td><td class=\"set\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>",
            escape(&genes.join(", ")),
            r.n_sets,
            escape(r.best_set.as_deref().unwrap_or("")),
            r.best_set_q.map(|q| format!("{q:e}")).unwrap_or_default(),
            r.best_set_q.map(pval).unwrap_or_default(),
        );
        if let Some(c) = concepts {
            match &c[i] {
                Some(c) => {
                    let _ = write!(
                        b,
                        "<td>{}{}</td><td class=\"n\">{}</td>",
                        escape(&c.cell_type),
                        if c.annotated { " ✓" } else { "" },
                        num(c.test_auroc, 3)
                    );
                }
                None => b.push_str("<td></td><td class=\"n\"></td>"),
            }
        }
        if let Some(d) = drives {
            let classes: Vec<String> = d[i]
                .iter()
                .map(|x| format!("{} (#{})", x.class, x.rank))
                .collect();
            let _ = write!(b, "<td>{}</td>", escape(&classes.join(", ")));
        }
        b.push_str("</tr>\n");
    }
    b.push_str("</tbody>\n</table>\n");
    let _ = write!(b, "<script>\n{INDEX_JS}</script>\n");
    page(
        &format!("Feature atlas: {}", site.title),
        "style.css",
        "index",
        &b,
    )
}

fn link_to(site: &Site, j: usize) -> String {
    format!(
        "<a href=\"{}\">{}</a>",
        feature_file(j),
        escape(&site.names[j])
    )
}

/// One feature's page.
pub fn feature_page(site: &Site, f: &FeaturePage<'_>) -> String {
    let (i, r) = (f.index, f.row);
    let n = site.names.len();
    let mut b = String::new();
    b.push_str("<nav><a href=\"../index.html\">index</a>");
    if i > 0 {
        let _ = write!(
            b,
            "<a href=\"{}\" rel=\"prev\">← {}</a>",
            feature_file(i - 1),
            escape(&site.names[i - 1])
        );
    }
    if i + 1 < n {
        let _ = write!(
            b,
            "<a href=\"{}\" rel=\"next\">{} →</a>",
            feature_file(i + 1),
            escape(&site.names[i + 1])
        );
    }
    b.push_str("</nav>\n");
    let _ = write!(
        b,
        "<h1>Feature {} <span class=\"muted\">(index {} of 0–{})</span></h1>\n<p class=\"meta\">{}</p>\n",
        escape(&r.feature),
        i,
        n - 1,
        escape(&site.title)
    );
    let best = match (&r.best_type, r.best_auroc) {
        (Some(t), Some(a)) => format!("best cell type <b>{}</b> (AUROC {})", escape(t), num(a, 3)),
        _ => "no cell type tested".into(),
    };
    let _ = writeln!(
        b,
        "<p class=\"meta\">{}; active on {} of {} cells ({}%); mean {}; {best}.</p>",
        if r.alive {
            "alive"
        } else {
            "<b>dead</b> (below the analysis's alive fraction)"
        },
        site.n_cells - f.n_zero,
        site.n_cells,
        num(
            100.0 * (site.n_cells - f.n_zero) as f64 / site.n_cells.max(1) as f64,
            1
        ),
        num(r.mean, 4),
    );

    // activations
    b.push_str("<h2>Activations</h2>\n");
    let _ = writeln!(
        b,
        "<p class=\"meta\">{} of {} cells ({}%) are zero and not drawn; the bars count the {} non-zero cells.</p>",
        f.n_zero,
        site.n_cells,
        num(100.0 * f.n_zero as f64 / site.n_cells.max(1) as f64, 1),
        site.n_cells - f.n_zero
    );
    if f.n_zero < site.n_cells {
        b.push_str(&histogram_svg(&f.hist));
        b.push('\n');
    }
    b.push_str("<div class=\"cols\"><div>\n<h2>Top cells</h2>\n");
    if f.top_cells.is_empty() {
        b.push_str("<p class=\"muted\">No cell activates this feature.</p>\n");
    } else {
        b.push_str("<table class=\"cells\"><thead><tr><th class=\"n\">#</th><th>cell</th><th>cell type</th><th class=\"n\">activation</th></tr></thead><tbody>\n");
        for (k, (id, ty, v)) in f.top_cells.iter().enumerate() {
            let _ = writeln!(
                b,
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                k + 1,
                escape(id),
                escape(ty),
                num(*v as f64, 4)
            );
        }
        b.push_str("</tbody></table>\n");
    }
    b.push_str("</div><div>\n<h2>AUROC per cell type</h2>\n");
    if f.auroc.is_empty() {
        b.push_str("<p class=\"muted\">Not tested (dead feature).</p>\n");
    } else {
        b.push_str(&auroc_svg(f.auroc, site.auroc_threshold));
        b.push_str("\n<table class=\"auroc\"><thead><tr><th>cell type</th><th class=\"n\">AUROC</th></tr></thead><tbody>\n");
        for (t, v) in f.auroc {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                escape(t),
                num(*v, 3)
            );
        }
        b.push_str("</tbody></table>\n");
    }
    b.push_str("</div></div>\n");

    // genes
    b.push_str("<h2>Top correlated genes</h2>\n<div class=\"cols\">");
    for (title, genes) in [("positive", &r.top_positive), ("negative", &r.top_negative)] {
        let _ = writeln!(b, "<div><table class=\"genes\"><thead><tr><th>{title}</th><th class=\"n\">Pearson r</th></tr></thead><tbody>");
        if genes.is_empty() {
            b.push_str("<tr><td class=\"muted\" colspan=\"2\">none</td></tr>\n");
        }
        for (g, v) in genes.iter() {
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                escape(g),
                num(*v, 3)
            );
        }
        b.push_str("</tbody></table></div>");
    }
    b.push_str("</div>\n");

    // gene sets
    b.push_str("<h2>Enriched gene sets</h2>\n");
    match f.sets {
        None => b.push_str("<p class=\"muted\">The analysis has no enrichment table.</p>\n"),
        Some(sets) => {
            let sig: Vec<&SetTest> = sets.iter().filter(|s| s.significant).collect();
            let shown: Vec<&SetTest> = if sig.is_empty() {
                let _ = writeln!(
                    b,
                    "<p class=\"meta\">No set reaches q &lt; {} ({} tested){}</p>",
                    site.fdr,
                    sets.len(),
                    if sets.is_empty() {
                        "."
                    } else {
                        "; the lowest q:"
                    }
                );
                sets.iter().take(BEST_NON_SIGNIFICANT).collect()
            } else {
                let _ = writeln!(
                    b,
                    "<p class=\"meta\">{} of {} tested sets at q &lt; {}{}.</p>",
                    sig.len(),
                    sets.len(),
                    site.fdr,
                    if sig.len() > MAX_SETS {
                        format!("; the first {MAX_SETS}")
                    } else {
                        String::new()
                    }
                );
                sig.into_iter().take(MAX_SETS).collect()
            };
            if !shown.is_empty() {
                b.push_str("<table class=\"sets\"><thead><tr><th>gene set</th><th>file</th><th>genes</th><th class=\"n\">overlap</th><th class=\"n\">set size</th><th class=\"n\">odds ratio</th><th class=\"n\">p</th><th class=\"n\">q</th><th>overlapping genes</th></tr></thead><tbody>\n");
                for s in shown {
                    let _ = writeln!(
                        b,
                        "<tr{}><td class=\"set\">{}</td><td>{}</td><td>{}</td><td class=\"n\">{} / {}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"overlap\">{}</td></tr>",
                        if s.significant { "" } else { " class=\"muted\"" },
                        escape(&s.name),
                        escape(&s.gmt),
                        escape(&s.sign),
                        num(s.overlap, 0),
                        num(s.n_genes, 0),
                        num(s.set_size, 0),
                        num(s.odds_ratio, 2),
                        pval(s.p),
                        pval(s.q),
                        escape(&s.genes.replace(';', ", "))
                    );
                }
                b.push_str("</tbody></table>\n");
            }
        }
    }

    // concept
    if site.concepts {
        b.push_str("<h2>Held-out concept</h2>\n");
        match f.concept {
            None => b.push_str("<p class=\"muted\">Not scored.</p>\n"),
            Some(c) => {
                let _ = writeln!(
                    b,
                    "<p class=\"meta\">{}: cell type <b>{}</b> chosen on validation cells (AUROC {}), test AUROC {}, test F1 {}, q {}.</p>",
                    if c.annotated { "Annotated" } else { "Not annotated" },
                    escape(&c.cell_type),
                    num(c.val_auroc, 3),
                    num(c.test_auroc, 3),
                    num(c.test_f1, 3),
                    pval(c.q)
                );
            }
        }
    }

    // SpikGPT
    if site.explain {
        b.push_str("<h2>SpikGPT calls it drives</h2>\n");
        if f.drives.is_empty() {
            b.push_str("<p class=\"muted\">Not among the drivers of any class.</p>\n");
        } else {
            b.push_str("<table class=\"drives\"><thead><tr><th>class</th><th class=\"n\">rank</th><th class=\"n\">cells with it in their top features</th><th class=\"n\">fraction of the class</th><th class=\"n\">mean attribution</th></tr></thead><tbody>\n");
            for d in f.drives {
                let _ = writeln!(
                    b,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    escape(&d.class),
                    d.rank,
                    d.cells_in_top,
                    num(d.frac_in_top, 3),
                    num(d.mean_attribution, 4)
                );
            }
            b.push_str("</tbody></table>\n");
        }
    }

    // neighbours
    b.push_str("<h2>Nearest features (decoder cosine)</h2>\n<div class=\"cols\"><div>\n<table class=\"near\"><thead><tr><th>this SAE</th><th>best type</th><th class=\"n\">cosine</th></tr></thead><tbody>\n");
    for &(j, c) in &f.within {
        let ty = site.best[j]
            .as_ref()
            .map(|(t, a)| format!("{} ({})", escape(t), num(*a, 2)))
            .unwrap_or_default();
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{ty}</td><td class=\"n\">{}</td></tr>",
            link_to(site, j),
            num(c as f64, 3)
        );
    }
    b.push_str("</tbody></table></div>\n");
    for nb in &f.compare {
        let _ = writeln!(
            b,
            "<div><table class=\"near\"><thead><tr><th>{}</th><th class=\"n\">cosine</th></tr></thead><tbody>",
            escape(&nb.label)
        );
        for &(j, c) in &nb.features {
            let _ = writeln!(
                b,
                "<tr><td>f{j}</td><td class=\"n\">{}</td></tr>",
                num(c as f64, 3)
            );
        }
        b.push_str("</tbody></table></div>\n");
    }
    b.push_str("</div>\n<p class=\"muted\">Cosine of the decoder directions in activation space (decoder rows times the SAE's input standard deviations).</p>\n");
    page(
        &format!("{} – {}", r.feature, site.title),
        "../style.css",
        "feature",
        &b,
    )
}
