//! Figures: training curve and the accuracy–rejection curves (the confusion matrix is
//! [`super::confusion`]). Each is written as PNG and SVG by [`crate::plot::save_figure`].

use plotters::coord::Shift;
use plotters::prelude::*;

use super::rejection::RejectionReport;
use super::train::EpochRecord;
use crate::plot::{Figure, FONT};

fn e<T: std::fmt::Display>(x: T) -> String {
    x.to_string()
}

/// Loss and accuracy per epoch, under a title naming the run.
pub struct CurvePlot<'a> {
    /// The epochs.
    pub curve: &'a [EpochRecord],
    /// Title naming the run.
    pub title: &'a str,
}

impl Figure for CurvePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let curve = self.curve;
        let size = crate::plot::fitted_size(self.title, root.dim_in_pixel().0 - 20, 17);
        let root = root.titled(self.title, (FONT, size)).map_err(e)?;
        let n = curve.len().max(1) as f64;
        let (left, right) = root.split_horizontally(root.dim_in_pixel().0 / 2);
        let max_loss = curve
            .iter()
            .flat_map(|r| [r.train_loss, r.val_loss])
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.05;
        let mut ch = ChartBuilder::on(&left)
            .caption("cross-entropy", (FONT, 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..n + 0.5, 0f64..max_loss)
            .map_err(e)?;
        ch.configure_mesh()
            .x_desc("epoch")
            .y_desc("cross-entropy")
            .draw()
            .map_err(e)?;
        let series = |f: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
            curve
                .iter()
                .filter(|r| f(r).is_finite())
                .map(|r| (r.epoch as f64, f(r)))
                .collect()
        };
        ch.draw_series(LineSeries::new(
            series(|r| r.train_loss),
            BLUE.stroke_width(2),
        ))
        .map_err(e)?
        .label("train")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        ch.draw_series(LineSeries::new(series(|r| r.val_loss), RED.stroke_width(2)))
            .map_err(e)?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        ch.configure_series_labels()
            .label_font((FONT, 13))
            .border_style(BLACK)
            .background_style(WHITE)
            .draw()
            .map_err(e)?;
        let mut ch = ChartBuilder::on(&right)
            .caption("accuracy", (FONT, 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..n + 0.5, 0f64..1.0)
            .map_err(e)?;
        ch.configure_mesh()
            .x_desc("epoch")
            .y_desc("accuracy")
            .draw()
            .map_err(e)?;
        ch.draw_series(LineSeries::new(
            series(|r| r.train_accuracy),
            BLUE.stroke_width(2),
        ))
        .map_err(e)?;
        ch.draw_series(LineSeries::new(
            series(|r| r.val_accuracy),
            RED.stroke_width(2),
        ))
        .map_err(e)?;
        Ok(())
    }
}

/// The series legend in the lower right corner.
fn lower_right_legend<'a, DB: DrawingBackend + 'a>(
    ch: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> Result<(), String> {
    ch.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, 12))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(e)
}

/// One classifier's curve (labelled for the legend) and its rule's operating point as a dot.
fn curve_with_point<'a, DB: DrawingBackend + 'a>(
    ch: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    pts: Vec<(f64, f64)>,
    point: (f64, f64),
    label: String,
    col: RGBColor,
) -> Result<(), String> {
    ch.draw_series(LineSeries::new(pts, col.stroke_width(2)))
        .map_err(e)?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col.stroke_width(2)));
    ch.draw_series(std::iter::once(Circle::new(point, 5, col.filled())))
        .map_err(e)?;
    Ok(())
}

/// Accuracy on the accepted known cells against the share left unclassified, one line per
/// classifier with its rule's operating point (left); with held-out cells, the share of held-out
/// cells rejected against the share of known cells rejected (right).
pub struct RejectionCurvePlot<'a> {
    /// One report per classifier.
    pub reports: &'a [RejectionReport],
    /// Title naming the run.
    pub title: &'a str,
}

impl Figure for RejectionCurvePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let with_ho = self.reports.iter().any(|r| r.n_held_out > 0);
        let size = crate::plot::fitted_size(self.title, root.dim_in_pixel().0 - 20, 18);
        let root = root.titled(self.title, (FONT, size)).map_err(e)?;
        let (left, right) = if with_ho {
            let (l, r) = root.split_horizontally(root.dim_in_pixel().0 / 2);
            (l, Some(r))
        } else {
            (root.clone(), None)
        };
        let palette = [RED, BLUE, GREEN, MAGENTA];
        let ymin = self
            .reports
            .iter()
            .flat_map(|r| r.curve.iter().filter(|p| p.known_accepted > 0))
            .map(|p| p.known_accuracy)
            .fold(1.0f64, f64::min)
            .clamp(0.0, 0.95);
        let mut ch = ChartBuilder::on(&left)
            .caption("accuracy vs unclassified", (FONT, 15))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0f64..100f64, (ymin - 0.02).max(0.0)..1.005f64)
            .map_err(e)?;
        ch.configure_mesh()
            .x_desc("cells left unclassified (%)")
            .y_desc("accuracy on accepted known cells")
            .draw()
            .map_err(e)?;
        for (k, r) in self.reports.iter().enumerate() {
            let col = palette[k % palette.len()];
            let pts: Vec<(f64, f64)> = r
                .curve
                .iter()
                .filter(|p| p.known_accepted > 0)
                .map(|p| (100.0 * p.rejected, p.known_accuracy))
                .collect();
            let op = &r.operating_point;
            curve_with_point(
                &mut ch,
                pts,
                (100.0 * op.rejected, op.known_accuracy),
                r.model.clone(),
                col,
            )?;
        }
        lower_right_legend(&mut ch)?;
        if let Some(right) = right {
            let mut ch = ChartBuilder::on(&right)
                .caption("Unknown detection (dot: default rule)", (FONT, 15))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(0f64..100f64, 0f64..100f64)
                .map_err(e)?;
            ch.configure_mesh()
                .x_desc("known cells rejected (%)")
                .y_desc("held-out cells rejected (%)")
                .draw()
                .map_err(e)?;
            for (k, r) in self.reports.iter().enumerate() {
                let col = palette[k % palette.len()];
                let pts: Vec<(f64, f64)> = r
                    .curve
                    .iter()
                    .map(|p| (100.0 * p.known_rejected, 100.0 * p.held_out_rejected))
                    .collect();
                let op = &r.operating_point;
                curve_with_point(
                    &mut ch,
                    pts,
                    (100.0 * op.known_rejected, 100.0 * op.held_out_rejected),
                    format!(
                        "{} (AUROC {})",
                        r.model,
                        r.auroc
                            .map(|a| format!("{a:.3}"))
                            .unwrap_or_else(|| "n/a".into())
                    ),
                    col,
                )?;
            }
            lower_right_legend(&mut ch)?;
        }
        Ok(())
    }
}
