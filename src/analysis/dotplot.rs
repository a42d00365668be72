//! The dot plot of an analysis (as scanpy's `sc.pl.dotplot`): for the top features of every cell
//! type (columns) and every tested type (rows), the circle's area is the fraction of the type's cells
//! in which the feature is active (> 0) and its colour the feature's mean activation over the type's
//! cells; with a size legend and a colour bar.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::analysis::auroc::LabelCodes;
use crate::analysis::figures::{top_feature_rows, HeatLayout, FEATURE_AXIS};
use crate::analysis::pipeline::FeatureAnalysis;
use crate::analysis::sparse_codes::SparseCodes;
use crate::plot::{colour_bar, text, DrawResult, Figure};

/// Fraction active and mean activation per (type, feature).
#[derive(Debug, Clone, PartialEq)]
pub struct DotPlot {
    /// Title naming the run.
    pub title: String,
    /// Type names (rows).
    pub types: Vec<String>,
    /// Feature names (columns).
    pub features: Vec<String>,
    /// `types x features` fraction of the type's cells with the feature > 0, row-major.
    pub fraction: Vec<f64>,
    /// `types x features` mean activation over the type's cells (all of them, as scanpy), row-major.
    pub mean: Vec<f64>,
}

/// Cell size of the grid; the largest circle fills it.
const CELL: (i32, i32) = (28, 28);
/// Smallest grid height: room for the colour bar and the size legend beside it.
const MIN_GRID_HEIGHT: i32 = 330;
/// Fractions shown in the size legend.
const LEGEND: [f64; 4] = [0.25, 0.5, 0.75, 1.0];

impl DotPlot {
    /// The statistics of the columns `cols` of `x` (cells in `labels`' order) for the label codes
    /// `types`; `names` are the columns' names. Zeros count as inactive and add nothing to the mean,
    /// so only the stored values are visited.
    pub fn of(
        title: String,
        x: &SparseCodes,
        labels: &LabelCodes,
        types: &[usize],
        cols: &[usize],
        names: Vec<String>,
    ) -> DotPlot {
        let (nt, nf) = (types.len(), cols.len());
        let mut fraction = vec![0f64; nt * nf];
        let mut mean = vec![0f64; nt * nf];
        let mut row_of_code = vec![None; labels.names.len()];
        for (t, &code) in types.iter().enumerate() {
            row_of_code[code] = Some(t);
        }
        for (k, &c) in cols.iter().enumerate() {
            let col = &x.columns[c];
            for (&r, &v) in col.rows.iter().zip(&col.values) {
                let Some(t) = labels
                    .codes
                    .get(r as usize)
                    .and_then(|&code| row_of_code[code])
                else {
                    continue;
                };
                let v = v as f64;
                fraction[t * nf + k] += (v > 0.0) as u8 as f64;
                mean[t * nf + k] += v;
            }
        }
        for (t, &code) in types.iter().enumerate() {
            let n = labels.counts[code].max(1) as f64;
            for k in 0..nf {
                fraction[t * nf + k] /= n;
                mean[t * nf + k] /= n;
            }
        }
        DotPlot {
            title,
            types: types.iter().map(|&t| labels.names[t].clone()).collect(),
            features: names,
            fraction,
            mean,
        }
    }

    /// The `per_type` best features (by AUROC) of every tested type of `fa`, at most `max_features`.
    pub fn top_features(
        run: &str,
        fa: &FeatureAnalysis,
        x: &SparseCodes,
        labels: &LabelCodes,
        per_type: usize,
        max_features: usize,
    ) -> DotPlot {
        let rows = top_feature_rows(fa, per_type, max_features);
        let cols: Vec<usize> = rows.iter().map(|&r| fa.auroc.features[r]).collect();
        let names = cols.iter().map(|&c| fa.feature_names[c].clone()).collect();
        DotPlot::of(
            format!("{run}: top features per cell type (dot plot)"),
            x,
            labels,
            &fa.auroc.types,
            &cols,
            names,
        )
    }

    fn layout(&self) -> HeatLayout {
        HeatLayout::measure(
            &self.types,
            &self.features,
            &self.title,
            CELL,
            MIN_GRID_HEIGHT,
        )
    }

    /// Pixel size that fits the grid, the legends and every label.
    pub fn size(&self) -> (u32, u32) {
        self.layout().size
    }

    /// The largest mean activation shown (the top of the colour scale; 1 when none is positive).
    pub fn max_mean(&self) -> f64 {
        let m = self.mean.iter().cloned().fold(0f64, f64::max);
        if m > 0.0 {
            m
        } else {
            1.0
        }
    }
}

/// Radius of the circle for a fraction: area proportional to it, the full cell for 1.
pub fn radius(fraction: f64) -> i32 {
    let rmax = (CELL.0.min(CELL.1) / 2 - 1) as f64;
    (rmax * fraction.clamp(0.0, 1.0).sqrt()).round() as i32
}

/// Light grey to dark red (scanpy's default `Reds`).
fn reds(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * t).round() as u8;
    RGBColor(mix(235.0, 103.0), mix(235.0, 0.0), mix(235.0, 13.0))
}

fn dot<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    r: i32,
    colour: RGBColor,
) -> DrawResult {
    root.draw(&Circle::new(at, r, colour.filled()))
        .map_err(|e| e.to_string())?;
    root.draw(&Circle::new(at, r, RGBColor(90, 90, 90).stroke_width(1)))
        .map_err(|e| e.to_string())
}

impl Figure for DotPlot {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let l = self.layout();
        let ((x0, y0), (cw, ch)) = (l.origin, l.cell);
        let nf = self.features.len();
        let top = self.max_mean();
        for (t, name) in self.types.iter().enumerate() {
            let y = y0 + t as i32 * ch + ch / 2;
            text(root, name, (x0 - 8, y), 13, HPos::Right, VPos::Center)?;
            root.draw(&PathElement::new(
                vec![(x0, y), (x0 + nf as i32 * cw, y)],
                RGBColor(230, 230, 230),
            ))
            .map_err(|e| e.to_string())?;
            for k in 0..nf {
                let f = self.fraction[t * nf + k];
                let r = radius(f);
                if f > 0.0 && r > 0 {
                    let c = reds(self.mean[t * nf + k] / top);
                    dot(root, (x0 + k as i32 * cw + cw / 2, y), r, c)?;
                }
            }
        }
        l.draw_frame(
            root,
            &self.title,
            &self.features,
            self.types.len(),
            FEATURE_AXIS,
        )?;
        let (top_s, mid_s) = (format!("{top:.3}"), format!("{:.3}", top / 2.0));
        colour_bar(
            root,
            (l.bar_x, y0),
            120,
            reds,
            [&top_s, &mid_s, "0"],
            "mean activation",
        )?;
        let ly = y0 + 120 + 40;
        text(
            root,
            "fraction of cells",
            (l.bar_x, ly),
            11,
            HPos::Left,
            VPos::Center,
        )?;
        for (i, f) in LEGEND.iter().enumerate() {
            let y = ly + 24 + i as i32 * CELL.1;
            dot(root, (l.bar_x + CELL.0 / 2, y), radius(*f), reds(0.5))?;
            text(
                root,
                &format!("{:.0}%", 100.0 * f),
                (l.bar_x + CELL.0 + 6, y),
                11,
                HPos::Left,
                VPos::Center,
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::DenseMatrix;

    #[test]
    fn fraction_and_mean_by_hand() {
        // cells: a, a, b, b, b; features: 3 columns, we plot columns 2 and 0
        let labels = LabelCodes::new(&["a", "a", "b", "b", "b"].map(String::from));
        let x = DenseMatrix::new(
            5,
            3,
            vec![
                1.0, 9.0, 0.0, //
                0.0, 9.0, 4.0, //
                2.0, 9.0, 0.0, //
                2.0, 9.0, 0.0, //
                2.0, 9.0, 3.0, //
            ],
        )
        .unwrap();
        let x = SparseCodes::from_dense(&x).unwrap();
        let d = DotPlot::of(
            "t".into(),
            &x,
            &labels,
            &[0, 1],
            &[2, 0],
            vec!["f2".into(), "f0".into()],
        );
        assert_eq!(d.types, vec!["a".to_string(), "b".to_string()]);
        // a: f2 active in 1 of 2 cells, mean 2; f0 active 1 of 2, mean 0.5
        assert_eq!(d.fraction, vec![0.5, 0.5, 1.0 / 3.0, 1.0]);
        assert_eq!(d.mean, vec![2.0, 0.5, 1.0, 2.0]);
        assert_eq!(d.max_mean(), 2.0);
        // circle area grows with the fraction; the full fraction fills the cell
        assert!(radius(0.25) < radius(0.5) && radius(0.5) < radius(1.0));
        assert_eq!(radius(1.0), CELL.0 / 2 - 1);
        assert_eq!(radius(0.0), 0);
        let dir = tempfile::tempdir().unwrap();
        crate::plot::save_figure(&dir.path().join("d"), d.size(), &d).unwrap();
        assert!(dir.path().join("d.png").exists());
    }
}
