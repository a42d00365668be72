//! Figures of an analysis, drawn directly with plotters primitives (PNG + SVG via `crate::plot`):
//! the AUROC heatmap of top features x cell types, the dot plot ([`super::dotplot`]), the enrichment
//! summary, and the per-type best AUROC of the features next to the PCA baseline; [`write_figures`]
//! writes them all. Layouts are measured from the labels, so no name is clipped.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::analysis::dotplot::DotPlot;
use crate::analysis::pipeline::{AnalysisContext, FeatureAnalysis};
use crate::analysis::sparse_codes::SparseCodes;
use crate::analysis::AnalysisConfig;
use crate::error::Result;
use crate::plot::{
    colour_bar, fitted_size, max_text_width, rect, save_figure, text, text_size, vtext, DrawResult,
    Figure, Grid, COLOUR_BAR_WIDTH,
};

/// Heatmap of AUROC for selected features (columns) and every tested type (rows).
pub struct AurocHeatmap {
    /// Title.
    pub title: String,
    /// Type names (rows).
    pub types: Vec<String>,
    /// Feature names (columns).
    pub features: Vec<String>,
    /// `types x features` AUROC values, row-major.
    pub values: Vec<f64>,
}

impl AurocHeatmap {
    /// The `per_type` best features of every type (deduplicated, at most `max_features`); `run`
    /// names the run in the title.
    pub fn top_features(
        fa: &FeatureAnalysis,
        type_names: &[String],
        per_type: usize,
        max_features: usize,
        run: &str,
    ) -> Self {
        let t = &fa.auroc;
        let chosen = top_feature_rows(fa, per_type, max_features);
        let nt = t.types.len();
        let mut values = Vec::with_capacity(nt * chosen.len());
        for ti in 0..nt {
            for &r in &chosen {
                values.push(t.get(r, ti));
            }
        }
        AurocHeatmap {
            title: format!("{run}: AUROC of the top features per cell type"),
            types: type_names.to_vec(),
            features: chosen
                .iter()
                .map(|&r| fa.feature_names[t.features[r]].clone())
                .collect(),
            values,
        }
    }

    fn layout(&self) -> HeatLayout {
        HeatLayout::measure(&self.types, &self.features, &self.title, (30, 26), 140)
    }

    /// Pixel size that fits the grid and every label.
    pub fn size(&self) -> (u32, u32) {
        self.layout().size
    }
}

/// The AUROC-table rows of the `per_type` best features of every tested type (deduplicated, at most
/// `max_features`, in type order).
pub fn top_feature_rows(fa: &FeatureAnalysis, per_type: usize, max_features: usize) -> Vec<usize> {
    let t = &fa.auroc;
    let mut chosen: Vec<usize> = Vec::new();
    for ti in 0..t.types.len() {
        let mut rows: Vec<usize> = (0..t.features.len())
            .filter(|&r| t.get(r, ti).is_finite())
            .collect();
        rows.sort_by(|&a, &b| t.get(b, ti).total_cmp(&t.get(a, ti)).then(a.cmp(&b)));
        for r in rows.into_iter().take(per_type) {
            if !chosen.contains(&r) && chosen.len() < max_features {
                chosen.push(r);
            }
        }
    }
    chosen
}

/// Layout of a cell-type x feature grid: row labels left, column labels turned below, axis titles,
/// colour bar right; measured from the labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeatLayout {
    /// Top-left corner of the grid.
    pub origin: (i32, i32),
    /// Cell width and height.
    pub cell: (i32, i32),
    /// Room below the grid for the column labels.
    pub col_label_room: i32,
    /// Smallest grid height the figure leaves room for (legends beside the grid).
    pub min_height: i32,
    /// Left edge of the colour bar (or legend).
    pub bar_x: i32,
    /// Figure size.
    pub size: (u32, u32),
    /// Title font size (shrunk to fit).
    pub title_size: u32,
}

/// Axis title left of a cell-type grid.
pub const TYPE_AXIS: &str = "cell type";
/// Axis title below a feature grid.
pub const FEATURE_AXIS: &str = "SAE feature";

impl HeatLayout {
    /// Measure: `rows` and `cols` labels at 13 / 11 px, cells of `cell` pixels, room for legends of
    /// `min_height` pixels right of the grid.
    pub fn measure(
        rows: &[String],
        cols: &[String],
        title: &str,
        cell: (i32, i32),
        min_height: i32,
    ) -> HeatLayout {
        let row_w = max_text_width(rows.iter().map(|s| s.as_str()), 13) as i32;
        let col_w = max_text_width(cols.iter().map(|s| s.as_str()), 11) as i32;
        let axis_h = text_size(TYPE_AXIS, 14).1 as i32;
        let origin = (10 + axis_h + 8 + row_w + 10, 60);
        let gw = cols.len().max(4) as i32 * cell.0;
        let gh = rows.len().max(2) as i32 * cell.1;
        let col_label_room = col_w + 14;
        let bar_x = origin.0 + gw + 24;
        let width = (bar_x + COLOUR_BAR_WIDTH + 12).max(640);
        let height = origin.1 + gh.max(min_height) + col_label_room + axis_h + 20;
        HeatLayout {
            origin,
            cell,
            col_label_room,
            min_height,
            bar_x,
            size: (width as u32, height as u32),
            title_size: fitted_size(title, width as u32 - 20, 18),
        }
    }

    /// Draw the title, the column labels (turned) below `n_rows` rows and both axis titles.
    pub fn draw_frame<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
        cols: &[String],
        n_rows: usize,
        x_axis: &str,
    ) -> DrawResult {
        let ((x0, y0), (cw, ch)) = (self.origin, self.cell);
        text(
            root,
            title,
            (10, 28),
            self.title_size,
            HPos::Left,
            VPos::Center,
        )?;
        let gh = n_rows as i32 * ch;
        for (c, name) in cols.iter().enumerate() {
            vtext(
                root,
                name,
                (x0 + c as i32 * cw + cw / 2, y0 + gh + 6),
                11,
                false,
            )?;
        }
        let gw = cols.len() as i32 * cw;
        text(
            root,
            x_axis,
            (
                x0 + gw.max(4 * cw) / 2,
                y0 + gh.max(self.min_height) + self.col_label_room,
            ),
            14,
            HPos::Center,
            VPos::Top,
        )?;
        let axis_h = text_size(TYPE_AXIS, 14).1 as i32;
        vtext(root, TYPE_AXIS, (10 + axis_h / 2, y0 + gh / 2), 14, true)
    }
}

impl Figure for AurocHeatmap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let l = self.layout();
        let nf = self.features.len();
        let grid = Grid {
            origin: l.origin,
            cell: l.cell,
        };
        grid.draw(root, &self.types, nf, |ti, fi| {
            let v = self.values[ti * nf + fi];
            if v.is_finite() {
                ViridisRGB::get_color_normalized(v.clamp(0.5, 1.0), 0.5, 1.0)
            } else {
                RGBColor(230, 230, 230)
            }
        })?;
        l.draw_frame(
            root,
            &self.title,
            &self.features,
            self.types.len(),
            FEATURE_AXIS,
        )?;
        let hbar = (self.types.len().max(2) as i32 * l.cell.1).max(140);
        colour_bar(
            root,
            (l.bar_x, l.origin.1),
            hbar,
            |t| ViridisRGB::get_color_normalized(0.5 + 0.5 * t, 0.5, 1.0),
            ["1.0", "0.75", "<=0.5"],
            "AUROC",
        )
    }
}

/// Horizontal bars: number of features enriched for each gene set.
pub struct EnrichmentSummary {
    /// Title.
    pub title: String,
    /// `(set name, features enriched)`, largest first.
    pub bars: Vec<(String, usize)>,
}

impl EnrichmentSummary {
    /// Count, per set, the features with q below `fdr`; keep the `max_sets` largest; `run` names the
    /// run in the title.
    pub fn of(
        fa: &FeatureAnalysis,
        set_names: &[String],
        fdr: f64,
        max_sets: usize,
        run: &str,
    ) -> Self {
        let mut counts = vec![0usize; set_names.len()];
        if let Some(e) = &fa.enrichment {
            // count features, not (feature, sign) pairs
            let n_rows = fa.auroc.features.len();
            let mut seen = std::collections::HashSet::new();
            for t in &e.tests {
                if t.q < fdr && seen.insert((t.feature % n_rows.max(1), t.set)) {
                    counts[t.set] += 1;
                }
            }
        }
        let mut bars: Vec<(String, usize)> = set_names
            .iter()
            .cloned()
            .zip(counts)
            .filter(|b| b.1 > 0)
            .collect();
        bars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        bars.truncate(max_sets);
        EnrichmentSummary {
            title: format!("{run}: features enriched per gene set (FDR < {fdr})"),
            bars,
        }
    }

    /// Room left of the bars for the full set names.
    fn label_room(&self) -> i32 {
        max_text_width(self.bars.iter().map(|b| b.0.as_str()), 12) as i32 + 30
    }

    /// Pixel size that fits the bars and the full set names.
    pub fn size(&self) -> (u32, u32) {
        let w = (self.label_room() + ES_BAR_MAX + 60).max(900);
        (w as u32, 100 + 24 * self.bars.len().max(1) as u32 + 50)
    }
}

const ES_BAR_MAX: i32 = 480;

impl Figure for EnrichmentSummary {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (x0, y0, wmax, bh) = (self.label_room(), 70i32, ES_BAR_MAX, 24i32);
        let size = fitted_size(&self.title, self.size().0 - 30, 18);
        text(root, &self.title, (20, 30), size, HPos::Left, VPos::Center)?;
        if self.bars.is_empty() {
            return text(
                root,
                "no gene set enriched",
                (x0, y0 + 10),
                14,
                HPos::Left,
                VPos::Center,
            );
        }
        let max = self.bars.iter().map(|b| b.1).max().unwrap_or(1).max(1);
        for (i, (name, n)) in self.bars.iter().enumerate() {
            let y = y0 + i as i32 * bh;
            text(
                root,
                name,
                (x0 - 8, y + bh / 2),
                12,
                HPos::Right,
                VPos::Center,
            )?;
            let w = (*n as i64 * wmax as i64 / max as i64) as i32;
            rect(
                root,
                (x0, y + 3),
                (x0 + w.max(1), y + bh - 3),
                RGBColor(70, 110, 180),
                true,
            )?;
            text(
                root,
                &n.to_string(),
                (x0 + w + 6, y + bh / 2),
                12,
                HPos::Left,
                VPos::Center,
            )?;
        }
        let yb = y0 + self.bars.len() as i32 * bh + 10;
        text(
            root,
            "features enriched (count)",
            (x0 + wmax / 2, yb),
            13,
            HPos::Center,
            VPos::Top,
        )?;
        vtext(
            root,
            "gene set",
            (12, y0 + self.bars.len() as i32 * bh / 2),
            13,
            true,
        )
    }
}

/// Grouped bars: per cell type, the best AUROC of each analysis (e.g. SAE and PCA).
pub struct BestAurocComparison {
    /// Title.
    pub title: String,
    /// Type names.
    pub types: Vec<String>,
    /// `(label, best AUROC per type)` per analysis.
    pub series: Vec<(String, Vec<f64>)>,
    /// Threshold line.
    pub threshold: f64,
}

impl Figure for BestAurocComparison {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let colors = [
            RGBColor(70, 110, 180),
            RGBColor(230, 140, 40),
            RGBColor(90, 170, 90),
        ];
        let (x0, y0, w, h) = (
            self.label_room(),
            70i32,
            560i32,
            26i32 * self.types.len().max(1) as i32,
        );
        let size = fitted_size(&self.title, self.size().0 - 30, 18);
        text(root, &self.title, (20, 30), size, HPos::Left, VPos::Center)?;
        vtext(root, TYPE_AXIS, (14, y0 + h / 2), 14, true)?;
        let xs = |v: f64| x0 + ((v.clamp(0.5, 1.0) - 0.5) / 0.5 * w as f64) as i32;
        let ns = self.series.len().max(1) as i32;
        let bh = (26 - 6) / ns;
        for (ti, name) in self.types.iter().enumerate() {
            let y = y0 + ti as i32 * 26;
            text(root, name, (x0 - 8, y + 13), 13, HPos::Right, VPos::Center)?;
            for (si, (_, vals)) in self.series.iter().enumerate() {
                let v = vals.get(ti).copied().unwrap_or(f64::NAN);
                if v.is_finite() {
                    let yy = y + 3 + si as i32 * bh;
                    rect(
                        root,
                        (x0, yy),
                        (xs(v).max(x0 + 1), yy + bh - 1),
                        colors[si % 3],
                        true,
                    )?;
                }
            }
        }
        rect(
            root,
            (x0, y0),
            (x0 + w, y0 + h),
            RGBColor(120, 120, 120),
            false,
        )?;
        for t in [0.5, 0.6, 0.7, 0.8, 0.9, 1.0] {
            text(
                root,
                &format!("{t:.1}"),
                (xs(t), y0 + h + 14),
                11,
                HPos::Center,
                VPos::Center,
            )?;
        }
        let xt = xs(self.threshold);
        root.draw(&PathElement::new(
            vec![(xt, y0), (xt, y0 + h)],
            RED.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
        text(
            root,
            &format!(
                "best single-feature AUROC of the cell type (red line: threshold {})",
                self.threshold
            ),
            (x0 + w / 2, y0 + h + 34),
            13,
            HPos::Center,
            VPos::Center,
        )?;
        for (si, (label, _)) in self.series.iter().enumerate() {
            let y = y0 + 10 + si as i32 * 22;
            rect(
                root,
                (x0 + w + 20, y),
                (x0 + w + 36, y + 14),
                colors[si % 3],
                true,
            )?;
            text(
                root,
                label,
                (x0 + w + 42, y + 7),
                13,
                HPos::Left,
                VPos::Center,
            )?;
        }
        Ok(())
    }
}

impl BestAurocComparison {
    /// Room left of the bars for the type names and the axis title.
    fn label_room(&self) -> i32 {
        max_text_width(self.types.iter().map(|s| s.as_str()), 13) as i32 + 40
    }

    /// Pixel size that fits the bars, the legend and every label.
    pub fn size(&self) -> (u32, u32) {
        let legend = max_text_width(self.series.iter().map(|s| s.0.as_str()), 13) as i32;
        let w = (self.label_room() + 560 + 50 + legend + 20).max(900);
        (w as u32, 70 + 26 * self.types.len().max(1) as u32 + 70)
    }
}

/// Write every figure of an analysis under `out/figures/` and return their stems: the AUROC heatmap,
/// the dot plot of the top features (`features`: the analysed cells x features matrix, in the
/// context's cell order), the enrichment summary and the best AUROC per type (with the baseline
/// beside it). `run` names the run in every title (e.g. "SAE layer 11, λ=3, standard, 2048
/// features").
pub fn write_figures(
    out: &Path,
    run: &str,
    main: &FeatureAnalysis,
    features: &SparseCodes,
    baseline: Option<&FeatureAnalysis>,
    ctx: &AnalysisContext,
    cfg: &AnalysisConfig,
) -> Result<Vec<String>> {
    let dir = out.join("figures");
    let types = ctx.type_names();
    let mut stems = Vec::new();
    let hm = AurocHeatmap::top_features(main, &types, 3, 40, run);
    save(&dir, "auroc_heatmap", hm.size(), &hm)?;
    stems.push("auroc_heatmap".to_string());
    let dp = DotPlot::top_features(run, main, features, &ctx.labels, 2, 30);
    save(&dir, "dotplot", dp.size(), &dp)?;
    stems.push("dotplot".to_string());
    if main.enrichment.is_some() {
        let names: Vec<String> = ctx.sets.iter().map(|s| s.name.clone()).collect();
        let es = EnrichmentSummary::of(main, &names, cfg.fdr, 25, run);
        save(&dir, "enrichment_summary", es.size(), &es)?;
        stems.push("enrichment_summary".to_string());
    }
    let best = |fa: &FeatureAnalysis| -> Vec<f64> {
        fa.auroc
            .best_per_type()
            .iter()
            .map(|b| b.map(|(_, v)| v).unwrap_or(f64::NAN))
            .collect()
    };
    let mut series = vec![(main.label.clone(), best(main))];
    if let Some(b) = baseline {
        series.push((b.label.clone(), best(b)));
    }
    let title = match baseline {
        Some(b) => format!(
            "{run}: best single-feature AUROC per cell type, {} vs {}",
            main.label, b.label
        ),
        None => format!("{run}: best single-feature AUROC per cell type"),
    };
    let cmp = BestAurocComparison {
        title,
        types,
        series,
        threshold: cfg.auroc_threshold,
    };
    let stem = match baseline {
        Some(_) => "sae_vs_pca",
        None => "best_auroc",
    };
    save(&dir, stem, cmp.size(), &cmp)?;
    stems.push(stem.to_string());
    Ok(stems)
}

/// Save `fig` under `dir/stem.{png,svg}`.
pub fn save(dir: &Path, stem: &str, size: (u32, u32), fig: &impl Figure) -> Result<()> {
    save_figure(&dir.join(stem), size, fig)
}
