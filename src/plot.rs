//! Figures as PNG and SVG with a bundled font (no system fontconfig/freetype needed).
//!
//! Implement [`Figure`] once, generically over the plotters backend, and [`save_figure`] writes
//! `<stem>.png` and `<stem>.svg`, each atomically.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, IoContext, Result};
use crate::io::atomic::write_bytes_atomic;

/// Font family name to use in text styles (`("sans-serif", 16)`).
pub const FONT: &str = "sans-serif";

static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

/// Register the bundled DejaVu Sans font under [`FONT`] (idempotent).
pub fn ensure_font() {
    REGISTER.call_once(|| {
        // The font is compiled in and known-good; a failure here would be a build defect.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES);
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, FONT_BYTES);
    });
}

/// A figure that can draw itself on any plotters backend.
pub trait Figure {
    /// Draw onto `root` (already filled white).
    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> std::result::Result<(), String>;
}

/// Render `fig` to `<stem>.png` and `<stem>.svg` at `size` pixels.
pub fn save_figure(stem: &Path, size: (u32, u32), fig: &impl Figure) -> Result<()> {
    ensure_font();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    let dir = match png.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).at(&dir)?;
    // PNG: render into a temporary .png beside the target, then rename.
    let tmp = tempfile::Builder::new()
        .prefix(".scsae-tmp-")
        .suffix(".png")
        .tempfile_in(&dir)
        .at(&dir)?;
    {
        let root = BitMapBackend::new(tmp.path(), size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| Error::input(&png, format!("cannot draw: {e}")))?;
        fig.draw(&root)
            .map_err(|e| Error::input(&png, format!("cannot draw: {e}")))?;
        root.present()
            .map_err(|e| Error::input(&png, format!("cannot encode PNG: {e}")))?;
    }
    tmp.persist(&png).map_err(|e| Error::io(&png, e.error))?;
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| Error::input(&svg, format!("cannot draw: {e}")))?;
        fig.draw(&root)
            .map_err(|e| Error::input(&svg, format!("cannot draw: {e}")))?;
        root.present()
            .map_err(|e| Error::input(&svg, format!("cannot render SVG: {e}")))?;
    }
    write_bytes_atomic(&svg, text.as_bytes())
}

/// Result of drawing: plotters errors as text.
pub type DrawResult = std::result::Result<(), String>;

/// Draw `s` at `at` with the bundled font, anchored by `h` / `v`.
pub fn text<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &str,
    at: (i32, i32),
    size: u32,
    h: HPos,
    v: VPos,
) -> DrawResult {
    let style = TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, v));
    root.draw(&Text::new(s.to_string(), at, style))
        .map_err(|e| e.to_string())
}

/// Width and height in pixels of `s` drawn with the bundled font at `size` (used to lay out figures
/// so that no label is clipped).
pub fn text_size(s: &str, size: u32) -> (u32, u32) {
    ensure_font();
    (FONT, size as f64)
        .into_font()
        .box_size(s)
        .unwrap_or((s.chars().count() as u32 * size, size))
}

/// The widest of `names` at `size`, in pixels (0 for none).
pub fn max_text_width<'a>(names: impl IntoIterator<Item = &'a str>, size: u32) -> u32 {
    names
        .into_iter()
        .map(|s| text_size(s, size).0)
        .max()
        .unwrap_or(0)
}

/// The largest font size from `size` down to 8 at which `s` fits in `width` pixels (8 when none).
pub fn fitted_size(s: &str, width: u32, size: u32) -> u32 {
    (8..=size.max(8))
        .rev()
        .find(|&z| text_size(s, z).0 <= width)
        .unwrap_or(8)
}

/// Draw `s` turned a quarter: `up` reads bottom to top (an axis title left of a grid), otherwise top
/// to bottom starting at `at` (column labels below a grid).
pub fn vtext<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &str,
    at: (i32, i32),
    size: u32,
    up: bool,
) -> DrawResult {
    let (turn, pos) = if up {
        (
            FontTransform::Rotate270,
            Pos::new(HPos::Center, VPos::Center),
        )
    } else {
        (FontTransform::Rotate90, Pos::new(HPos::Left, VPos::Center))
    };
    let style = TextStyle::from((FONT, size).into_font())
        .transform(turn)
        .pos(pos);
    root.draw(&Text::new(s.to_string(), at, style))
        .map_err(|e| e.to_string())
}

/// Draw a rectangle from `a` to `b`, filled or outlined.
pub fn rect<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    a: (i32, i32),
    b: (i32, i32),
    color: RGBColor,
    filled: bool,
) -> DrawResult {
    let style = if filled {
        color.filled()
    } else {
        color.stroke_width(1)
    };
    root.draw(&Rectangle::new([a, b], style))
        .map_err(|e| e.to_string())
}

/// Where and how large the cells of a heatmap grid are.
#[derive(Debug, Clone, Copy)]
pub struct Grid {
    /// Top-left corner of the first cell.
    pub origin: (i32, i32),
    /// Cell width and height.
    pub cell: (i32, i32),
}

impl Grid {
    /// Draw the row names (right-aligned left of the grid) and `n_cols` cells per row, coloured by
    /// `colour(row, col)`.
    pub fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        rows: &[String],
        n_cols: usize,
        colour: impl Fn(usize, usize) -> RGBColor,
    ) -> DrawResult {
        let ((x0, y0), (cw, ch)) = (self.origin, self.cell);
        for (r, name) in rows.iter().enumerate() {
            let y = y0 + r as i32 * ch;
            text(
                root,
                name,
                (x0 - 8, y + ch / 2),
                13,
                HPos::Right,
                VPos::Center,
            )?;
            for c in 0..n_cols {
                let x = x0 + c as i32 * cw;
                rect(root, (x, y), (x + cw, y + ch), colour(r, c), true)?;
            }
        }
        Ok(())
    }
}

/// Pixels a [`colour_bar`] takes right of its `x`, labels included.
pub const COLOUR_BAR_WIDTH: i32 = 70;

/// A vertical colour bar at `x` from `y0` to `y0 + height` with `colour(t)` for `t` from 1 (top) to 0
/// (bottom), `labels` at the top, middle and bottom, and `title` above it.
pub fn colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    (x, y0): (i32, i32),
    height: i32,
    colour: impl Fn(f64) -> RGBColor,
    labels: [&str; 3],
    title: &str,
) -> DrawResult {
    text(root, title, (x, y0 - 12), 11, HPos::Left, VPos::Center)?;
    let steps = 50;
    for s in 0..steps {
        let t = 1.0 - s as f64 / steps as f64;
        let (ya, yb) = (y0 + s * height / steps, y0 + (s + 1) * height / steps);
        rect(root, (x, ya), (x + 16, yb), colour(t), true)?;
    }
    for (label, y) in labels.iter().zip([y0, y0 + height / 2, y0 + height]) {
        text(root, label, (x + 20, y), 11, HPos::Left, VPos::Center)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Line;
    impl Figure for Line {
        fn draw<DB: DrawingBackend>(
            &self,
            root: &DrawingArea<DB, Shift>,
        ) -> std::result::Result<(), String> {
            let mut chart = ChartBuilder::on(root)
                .caption("test", (FONT, 20))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(30)
                .build_cartesian_2d(0f64..1f64, 0f64..1f64)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().draw().map_err(|e| e.to_string())?;
            chart
                .draw_series(LineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], &RED))
                .map_err(|e| e.to_string())?;
            Ok(())
        }
    }

    #[test]
    fn writes_png_and_svg() {
        let dir = tempfile::tempdir().unwrap();
        save_figure(&dir.path().join("fig"), (200, 150), &Line).unwrap();
        let png = std::fs::read(dir.path().join("fig.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let svg = std::fs::read_to_string(dir.path().join("fig.svg")).unwrap();
        assert!(svg.contains("<svg") && svg.contains("test"));
    }
}
