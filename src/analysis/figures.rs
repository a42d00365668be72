//! Figures of an analysis, drawn directly with plotters primitives (PNG + SVG via `crate::plot`):
//! the AUROC heatmap of top features x cell types, the enrichment summary, and the per-type best
//! AUROC of the features next to the PCA baseline.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::analysis::pipeline::FeatureAnalysis;
use crate::error::Result;
use crate::plot::{colour_bar, rect, save_figure, text, DrawResult, Figure, Grid};

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
    /// The `per_type` best features of every type (deduplicated, at most `max_features`).
    pub fn top_features(
        fa: &FeatureAnalysis,
        type_names: &[String],
        per_type: usize,
        max_features: usize,
    ) -> Self {
        let t = &fa.auroc;
        let nt = t.types.len();
        let mut chosen: Vec<usize> = Vec::new();
        for ti in 0..nt {
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
        let mut values = Vec::with_capacity(nt * chosen.len());
        for ti in 0..nt {
            for &r in &chosen {
                values.push(t.get(r, ti));
            }
        }
        AurocHeatmap {
            title: format!("{}: AUROC of the top features per cell type", fa.label),
            types: type_names.to_vec(),
            features: chosen
                .iter()
                .map(|&r| fa.feature_names[t.features[r]].clone())
                .collect(),
            values,
        }
    }

    /// Pixel size that fits the grid.
    pub fn size(&self) -> (u32, u32) {
        let w = 200 + 34 * self.features.len().max(4) as u32 + 120;
        let h = 110 + 26 * self.types.len().max(2) as u32 + 60;
        (w.max(640), h)
    }
}

impl Figure for AurocHeatmap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (cw, ch) = (34i32, 26i32);
        let (x0, y0) = (200i32, 70i32);
        text(root, &self.title, (x0, 30), 18, HPos::Left, VPos::Center)?;
        let nf = self.features.len();
        let grid = Grid {
            origin: (x0, y0),
            cell: (cw, ch),
        };
        grid.draw(root, &self.types, nf, |ti, fi| {
            let v = self.values[ti * nf + fi];
            if v.is_finite() {
                ViridisRGB::get_color_normalized(v.clamp(0.5, 1.0), 0.5, 1.0)
            } else {
                RGBColor(230, 230, 230)
            }
        })?;
        let yb = y0 + self.types.len() as i32 * ch;
        for (fi, name) in self.features.iter().enumerate() {
            let x = x0 + fi as i32 * cw + cw / 2;
            // stagger labels on two lines so long names do not collide
            let dy = if fi % 2 == 0 { 12 } else { 28 };
            text(root, name, (x, yb + dy), 10, HPos::Center, VPos::Center)?;
        }
        let xb = x0 + nf.max(4) as i32 * cw + 30;
        let hbar = self.types.len().max(2) as i32 * ch;
        colour_bar(
            root,
            (xb, y0),
            hbar,
            |t| ViridisRGB::get_color_normalized(0.5 + 0.5 * t, 0.5, 1.0),
            ["1.0", "0.75", "<=0.5"],
        )?;
        text(root, "AUROC", (xb, y0 - 14), 11, HPos::Left, VPos::Center)?;
        Ok(())
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
    /// Count, per set, the features with q below `fdr`; keep the `max_sets` largest.
    pub fn of(fa: &FeatureAnalysis, set_names: &[String], fdr: f64, max_sets: usize) -> Self {
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
            title: format!("{}: features enriched per gene set (FDR < {fdr})", fa.label),
            bars,
        }
    }

    /// Pixel size that fits the bars.
    pub fn size(&self) -> (u32, u32) {
        (900, 100 + 24 * self.bars.len().max(1) as u32 + 40)
    }
}

impl Figure for EnrichmentSummary {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (x0, y0, wmax, bh) = (330i32, 70i32, 480i32, 24i32);
        text(root, &self.title, (20, 30), 18, HPos::Left, VPos::Center)?;
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
            let label: String = if name.chars().count() > 44 {
                name.chars().take(42).chain("..".chars()).collect()
            } else {
                name.clone()
            };
            text(
                root,
                &label,
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
        Ok(())
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
            200i32,
            70i32,
            560i32,
            26i32 * self.types.len().max(1) as i32,
        );
        text(root, &self.title, (20, 30), 18, HPos::Left, VPos::Center)?;
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
            "best AUROC per cell type",
            (x0 + w / 2, y0 + h + 34),
            12,
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
    /// Pixel size that fits the bars.
    pub fn size(&self) -> (u32, u32) {
        (900, 70 + 26 * self.types.len().max(1) as u32 + 70)
    }
}

/// Save `fig` under `dir/stem.{png,svg}`.
pub fn save(dir: &Path, stem: &str, size: (u32, u32), fig: &impl Figure) -> Result<()> {
    save_figure(&dir.join(stem), size, fig)
}
