//! The confusion matrix figure of a run: every true type with cells as a row (the known types, then
//! the held-out ones), the types called or present as columns with `Unknown` last; colour is the
//! share of the row (row-normalised), each cell prints that share and its count, a colour bar gives
//! the scale, and the layout is measured from the labels so that none is clipped.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::metrics::UNKNOWN;
use crate::plot::{
    colour_bar, fitted_size, max_text_width, rect, text, text_size, vtext, DrawResult, Figure,
    COLOUR_BAR_WIDTH,
};

/// Counts of true type (rows) x call (columns).
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionTable {
    /// Row labels: the model's classes that have cells, then the unseen (held-out) types.
    pub rows: Vec<String>,
    /// How many of the last rows are unseen types.
    pub n_unseen_rows: usize,
    /// Column labels: the model's classes that are a row or were called, then `Unknown`.
    pub cols: Vec<String>,
    /// `rows x cols` counts.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionTable {
    /// Count `calls` against `truth`. `classes`: the model's classes; a true type outside them (the
    /// `held_out` ones and any other) is an unseen row. A class with no cells and no call gets
    /// neither a row nor a column; `Unknown` is always a column.
    pub fn of(truth: &[String], calls: &[String], classes: &[String]) -> ConfusionTable {
        let has = |v: &[String], c: &String| v.iter().any(|x| x == c);
        let mut rows: Vec<String> = classes.iter().filter(|c| has(truth, c)).cloned().collect();
        let mut unseen: Vec<String> = truth
            .iter()
            .filter(|t| !classes.contains(t))
            .cloned()
            .collect();
        unseen.sort();
        unseen.dedup();
        let n_unseen_rows = unseen.len();
        rows.extend(unseen);
        let mut cols: Vec<String> = classes
            .iter()
            .filter(|c| has(&rows, c) || has(calls, c))
            .cloned()
            .collect();
        let mut other: Vec<String> = calls
            .iter()
            .filter(|c| !classes.contains(c) && c.as_str() != UNKNOWN)
            .cloned()
            .collect();
        other.sort();
        other.dedup();
        cols.extend(other);
        cols.push(UNKNOWN.to_string());
        let mut counts = vec![vec![0usize; cols.len()]; rows.len()];
        for (t, c) in truth.iter().zip(calls) {
            let r = rows.iter().position(|x| x == t);
            let k = cols.iter().position(|x| x == c);
            if let (Some(r), Some(k)) = (r, k) {
                counts[r][k] += 1;
            }
        }
        ConfusionTable {
            rows,
            n_unseen_rows,
            cols,
            counts,
        }
    }

    /// Each count divided by its row's total (rows without cells stay 0).
    pub fn row_fractions(&self) -> Vec<Vec<f64>> {
        self.counts
            .iter()
            .map(|row| {
                let total: usize = row.iter().sum();
                row.iter()
                    .map(|&c| {
                        if total == 0 {
                            0.0
                        } else {
                            c as f64 / total as f64
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The row labels as drawn: unseen types are marked `(held out)`.
    pub fn row_labels(&self) -> Vec<String> {
        let first_unseen = self.rows.len() - self.n_unseen_rows;
        self.rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                if i >= first_unseen {
                    format!("{r} (held out)")
                } else {
                    r.clone()
                }
            })
            .collect()
    }
}

/// The confusion matrix with a title naming the run.
pub struct ConfusionFigure<'a> {
    /// Title naming the run.
    pub title: &'a str,
    /// The counts.
    pub table: &'a ConfusionTable,
}

const LABEL_SIZE: u32 = 13;
const AXIS_SIZE: u32 = 14;
const PAD: i32 = 8;
const Y_AXIS_TITLE: &str = "true cell type";
const X_AXIS_TITLE: &str = "SpikGPT call";
const BAR_TITLE: &str = "share of row";

/// Where the parts of a [`ConfusionFigure`] go, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfusionLayout {
    /// Top-left corner of the grid.
    pub origin: (i32, i32),
    /// Cell width and height.
    pub cell: (i32, i32),
    /// Room left of the grid for the row labels (measured).
    pub row_label_room: i32,
    /// Room below the grid for the column labels (measured).
    pub col_label_room: i32,
    /// Left edge of the colour bar.
    pub bar_x: i32,
    /// Height of the colour bar.
    pub bar_height: i32,
    /// Figure size.
    pub size: (u32, u32),
    /// Font size of the title (shrunk to fit the width).
    pub title_size: u32,
}

impl ConfusionFigure<'_> {
    /// The layout, measured from the labels.
    pub fn layout(&self) -> ConfusionLayout {
        let t = self.table;
        let labels = t.row_labels();
        let row_w = max_text_width(labels.iter().map(|s| s.as_str()), LABEL_SIZE) as i32;
        let col_w = max_text_width(t.cols.iter().map(|s| s.as_str()), LABEL_SIZE) as i32;
        let axis_h = text_size(Y_AXIS_TITLE, AXIS_SIZE).1 as i32;
        let cell = (50, 36);
        let row_label_room = row_w + 2 * PAD;
        let col_label_room = col_w + 2 * PAD;
        let origin = (10 + axis_h + PAD + row_label_room, 64);
        let (gw, gh) = (
            t.cols.len() as i32 * cell.0,
            t.rows.len().max(1) as i32 * cell.1,
        );
        let bar_x = origin.0 + gw + 24;
        let bar_title_w = text_size(BAR_TITLE, 11).0 as i32;
        let width = bar_x + COLOUR_BAR_WIDTH.max(bar_title_w) + 12;
        let bar_height = gh.max(120);
        let x_title_h = text_size(X_AXIS_TITLE, AXIS_SIZE).1 as i32;
        let height = origin.1 + gh.max(bar_height) + col_label_room + x_title_h + 2 * PAD;
        let width = width.max(420);
        ConfusionLayout {
            origin,
            cell,
            row_label_room,
            col_label_room,
            bar_x,
            bar_height,
            size: (width as u32, height as u32),
            title_size: fitted_size(self.title, width as u32 - 20, 16),
        }
    }
}

/// White to dark blue.
fn blues(f: f64) -> RGBColor {
    let f = f.clamp(0.0, 1.0);
    let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
    RGBColor(mix(247.0, 8.0), mix(251.0, 48.0), mix(255.0, 107.0))
}

fn percent(f: f64) -> String {
    let p = 100.0 * f;
    if p > 0.0 && p < 0.5 {
        "<1%".to_string()
    } else {
        format!("{p:.0}%")
    }
}

impl Figure for ConfusionFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let l = self.layout();
        let t = self.table;
        let ((x0, y0), (cw, ch)) = (l.origin, l.cell);
        text(
            root,
            self.title,
            (10, 22),
            l.title_size,
            HPos::Left,
            VPos::Center,
        )?;
        text(
            root,
            "rows: true type (known, then held out); colour and %: share of the row; below: cells",
            (10, 44),
            11,
            HPos::Left,
            VPos::Center,
        )?;
        let fr = t.row_fractions();
        for (r, label) in t.row_labels().iter().enumerate() {
            let y = y0 + r as i32 * ch;
            text(
                root,
                label,
                (x0 - PAD, y + ch / 2),
                LABEL_SIZE,
                HPos::Right,
                VPos::Center,
            )?;
            for (k, &n) in t.counts[r].iter().enumerate() {
                let x = x0 + k as i32 * cw;
                let f = fr[r][k];
                rect(root, (x, y), (x + cw, y + ch), blues(f), true)?;
                rect(
                    root,
                    (x, y),
                    (x + cw, y + ch),
                    RGBColor(220, 220, 220),
                    false,
                )?;
                if n > 0 {
                    let ink = if f > 0.55 { WHITE } else { BLACK };
                    let style = |size: u32| {
                        TextStyle::from((crate::plot::FONT, size).into_font())
                            .color(&ink)
                            .pos(plotters::style::text_anchor::Pos::new(
                                HPos::Center,
                                VPos::Center,
                            ))
                    };
                    root.draw(&Text::new(
                        percent(f),
                        (x + cw / 2, y + ch / 2 - 7),
                        style(12),
                    ))
                    .map_err(|e| e.to_string())?;
                    root.draw(&Text::new(
                        n.to_string(),
                        (x + cw / 2, y + ch / 2 + 9),
                        style(10),
                    ))
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        let (gw, gh) = (t.cols.len() as i32 * cw, t.rows.len() as i32 * ch);
        if t.n_unseen_rows > 0 && t.n_unseen_rows < t.rows.len() {
            let y = y0 + (t.rows.len() - t.n_unseen_rows) as i32 * ch;
            root.draw(&PathElement::new(
                vec![(x0 - l.row_label_room, y), (x0 + gw, y)],
                BLACK.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
        }
        // Unknown column set apart
        let xu = x0 + (t.cols.len() as i32 - 1) * cw;
        root.draw(&PathElement::new(
            vec![(xu, y0), (xu, y0 + gh)],
            BLACK.stroke_width(2),
        ))
        .map_err(|e| e.to_string())?;
        for (k, name) in t.cols.iter().enumerate() {
            let x = x0 + k as i32 * cw + cw / 2;
            vtext(root, name, (x, y0 + gh + PAD), LABEL_SIZE, false)?;
        }
        vtext(
            root,
            Y_AXIS_TITLE,
            (
                10 + text_size(Y_AXIS_TITLE, AXIS_SIZE).1 as i32 / 2,
                y0 + gh / 2,
            ),
            AXIS_SIZE,
            true,
        )?;
        text(
            root,
            X_AXIS_TITLE,
            (
                x0 + gw / 2,
                y0 + gh.max(l.bar_height) + l.col_label_room + PAD,
            ),
            AXIS_SIZE,
            HPos::Center,
            VPos::Top,
        )?;
        colour_bar(
            root,
            (l.bar_x, y0),
            l.bar_height,
            blues,
            ["100%", "50%", "0%"],
            BAR_TITLE,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn example() -> ConfusionTable {
        // classes: B, T, NK (no NK cell and no NK call); plasma held out
        let truth = s(&["B", "B", "B", "T", "T", "plasma", "plasma"]);
        let calls = s(&["B", "T", "Unknown", "T", "T", "Unknown", "B"]);
        ConfusionTable::of(&truth, &calls, &s(&["B", "T", "NK"]))
    }

    #[test]
    fn held_out_rows_unknown_column_no_empty_class() {
        let t = example();
        assert_eq!(t.rows, s(&["B", "T", "plasma"]));
        assert_eq!(t.n_unseen_rows, 1);
        assert_eq!(t.cols, s(&["B", "T", "Unknown"]));
        assert_eq!(t.counts, vec![vec![1, 1, 1], vec![0, 2, 0], vec![1, 0, 1]]);
        assert_eq!(t.row_labels()[2], "plasma (held out)");
    }

    #[test]
    fn rows_are_normalised_to_one() {
        let t = example();
        let fr = t.row_fractions();
        for (r, row) in fr.iter().enumerate() {
            let total: f64 = row.iter().sum();
            assert!((total - 1.0).abs() < 1e-12, "row {r} sums to {total}");
        }
        // by hand: B's three cells went one to each column
        assert!((fr[0][0] - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(fr[1], vec![0.0, 1.0, 0.0]);
        assert_eq!(percent(1.0 / 3.0), "33%");
        assert_eq!(percent(0.001), "<1%");
    }

    #[test]
    fn long_labels_fit_in_the_measured_margins() {
        let long = "CD14-positive, CD16-negative classical monocyte".to_string();
        let truth = vec![long.clone(), "Unknown type from another study".into()];
        let calls = vec![long.clone(), UNKNOWN.to_string()];
        let table = ConfusionTable::of(&truth, &calls, std::slice::from_ref(&long));
        let title = "SpikGPT spikgpt_nk (held out: NK): validation and held-out cells";
        let fig = ConfusionFigure {
            title,
            table: &table,
        };
        let l = fig.layout();
        for label in table.row_labels() {
            let w = text_size(&label, LABEL_SIZE).0 as i32;
            assert!(
                w + PAD <= l.row_label_room,
                "row label {label} ({w} px) clipped"
            );
            // and the room fits left of the grid, right of the axis title
            assert!(l.origin.0 - l.row_label_room > 10);
        }
        for c in &table.cols {
            let w = text_size(c, LABEL_SIZE).0 as i32;
            assert!(w + PAD <= l.col_label_room, "column label {c} clipped");
        }
        let below = l.origin.1 + table.rows.len() as i32 * l.cell.1 + l.col_label_room;
        assert!(below < l.size.1 as i32);
        assert!(l.bar_x + COLOUR_BAR_WIDTH <= l.size.0 as i32);
        assert!(text_size(title, l.title_size).0 + 10 <= l.size.0);
        // a 3-digit count and "100%" fit in a cell
        assert!((text_size("100%", 12).0 as i32) < l.cell.0 - 4);
        let dir = tempfile::tempdir().unwrap();
        crate::plot::save_figure(&dir.path().join("c"), l.size, &fig).unwrap();
        assert!(dir.path().join("c.png").exists());
    }
}
