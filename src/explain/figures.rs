//! The per-class feature heatmap: mean attribution of each class's driving features (columns) over
//! the cells called each class (rows), on a diverging scale.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::attribution::CellAttribution;
use super::drivers::{CellCalls, Driver};
use super::interpret::Interpretations;
use crate::plot::{colour_bar, max_text_width, text, DrawResult, Figure, Grid};
use crate::spikgpt::metrics::UNKNOWN;

/// Classes x features mean attribution.
#[derive(Debug, Clone)]
pub struct ClassHeatmap {
    /// Row names (classes, then Unknown when present).
    pub classes: Vec<String>,
    /// Column labels (`f12 B cell` when the feature has an interpretation).
    pub features: Vec<String>,
    /// Row-major `classes x features`.
    pub values: Vec<f64>,
    /// The run named under the title (SAE and annotator); empty = none.
    pub run: String,
}

impl ClassHeatmap {
    /// The first `per_class` drivers of every class (deduplicated, at most `max_features`), with the
    /// mean attribution over every label's cells.
    pub fn of(
        cells: &CellCalls<'_>,
        attrs: &[CellAttribution],
        drivers: &[Driver],
        meaning: &Interpretations,
        per_class: usize,
        max_features: usize,
    ) -> ClassHeatmap {
        let mut cols: Vec<usize> = Vec::new();
        for d in drivers.iter().filter(|d| d.rank <= per_class) {
            if !cols.contains(&d.feature) && cols.len() < max_features {
                cols.push(d.feature);
            }
        }
        let mut rows: Vec<String> = cells
            .classes
            .iter()
            .filter(|c| cells.labels.iter().any(|l| l == *c))
            .cloned()
            .collect();
        if cells.labels.iter().any(|l| l == UNKNOWN) {
            rows.push(UNKNOWN.to_string());
        }
        let mut values = vec![0f64; rows.len() * cols.len()];
        for (r, row) in rows.iter().enumerate() {
            let members: Vec<usize> = (0..attrs.len())
                .filter(|&i| &cells.labels[i] == row)
                .collect();
            for &i in &members {
                for s in &attrs[i].shares {
                    if let Some(c) = cols.iter().position(|&f| f == s.feature) {
                        values[r * cols.len() + c] += s.attribution / members.len() as f64;
                    }
                }
            }
        }
        let features = cols
            .iter()
            .map(|&f| match meaning.get(f).best_type {
                Some(t) => format!("{f} {t}"),
                None => format!("{f}"),
            })
            .collect();
        ClassHeatmap {
            classes: rows,
            features,
            values,
            run: String::new(),
        }
    }

    /// Pixel size that fits the grid.
    pub fn size(&self) -> (u32, u32) {
        let x0 = self.left() as u32;
        let w = x0 + 30 * self.features.len().max(4) as u32 + 140;
        let labels = max_text_width(self.features.iter().map(|s| s.as_str()), 11);
        let h = 60 + 26 * self.classes.len().max(2) as u32 + labels + 60;
        (w.max(640), h)
    }

    /// Left edge of the grid: room for the class names (measured) and the axis title.
    fn left(&self) -> i32 {
        (max_text_width(self.classes.iter().map(|s| s.as_str()), 13) as i32 + 50).max(120)
    }
}

/// Blue (negative) - white - red (positive).
fn diverging(v: f64, scale: f64) -> RGBColor {
    let t = if scale > 0.0 {
        (v / scale).clamp(-1.0, 1.0)
    } else {
        0.0
    };
    let fade = |c: u8, t: f64| (255.0 + (c as f64 - 255.0) * t).round() as u8;
    if t >= 0.0 {
        RGBColor(fade(178, t), fade(24, t), fade(43, t))
    } else {
        RGBColor(fade(33, -t), fade(102, -t), fade(172, -t))
    }
}

impl Figure for ClassHeatmap {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (cw, ch) = (30i32, 26i32);
        let (x0, y0) = (self.left(), 60i32);
        text(
            root,
            "Mean attribution to the called class's logit, per class",
            (10, 20),
            17,
            HPos::Left,
            VPos::Center,
        )?;
        if !self.run.is_empty() {
            text(root, &self.run, (10, 42), 13, HPos::Left, VPos::Center)?;
        }
        let nf = self.features.len();
        let scale = self.values.iter().fold(0f64, |m, v| m.max(v.abs()));
        let grid = Grid {
            origin: (x0, y0),
            cell: (cw, ch),
        };
        grid.draw(root, &self.classes, nf, |r, c| {
            diverging(self.values[r * nf + c], scale)
        })?;
        let yb = y0 + self.classes.len() as i32 * ch;
        for (c, name) in self.features.iter().enumerate() {
            let x = x0 + c as i32 * cw + cw / 2;
            let style = TextStyle::from((crate::plot::FONT, 11).into_font())
                .transform(FontTransform::Rotate90)
                .pos(plotters::style::text_anchor::Pos::new(
                    HPos::Left,
                    VPos::Center,
                ));
            root.draw(&Text::new(name.clone(), (x, yb + 6), style))
                .map_err(|e| e.to_string())?;
        }
        let xb = x0 + nf.max(4) as i32 * cw + 30;
        let hbar = self.classes.len().max(2) as i32 * ch;
        let (top, bottom) = (format!("{scale:+.3}"), format!("{:+.3}", -scale));
        colour_bar(
            root,
            (xb, y0),
            hbar,
            |t| diverging(scale * (2.0 * t - 1.0), scale),
            [&top, "0", &bottom],
            "attribution",
        )?;
        let axis_x = x0 + nf.max(4) as i32 * cw / 2;
        let label_h = max_text_width(self.features.iter().map(|s| s.as_str()), 11);
        text(
            root,
            "SAE feature (index, and the cell type it marks best)",
            (axis_x, yb + 12 + label_h as i32),
            13,
            HPos::Center,
            VPos::Top,
        )?;
        crate::plot::vtext(root, "cells called", (14, y0 + hbar / 2), 13, true)
    }
}
