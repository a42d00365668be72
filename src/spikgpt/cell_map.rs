//! A 2-D map of the annotated cells, coloured by the true type and by SpikGPT's call side by side
//! (as the SpikGPT paper's Fig. 3 A/B, which uses UMAP). The map is the first two principal
//! components (exact, or randomised with the seed, see [`crate::analysis::pca`]) and says so on its
//! axes: a linear projection, which keeps the large-scale structure but separates small types less
//! than UMAP or t-SNE would. It depends only on the input and the seed (which also picks the cells
//! when there are more than [`MAX_MAP_CELLS`]).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::metrics::UNKNOWN;
use crate::analysis::pca::{fit_pca, PcaSolver};
use crate::data::DenseMatrix;
use crate::error::{Error, Result};
use crate::plot::{fitted_size, max_text_width, rect, text, vtext, DrawResult, Figure};

/// Cells drawn at most; more are subsampled with the seed.
pub const MAX_MAP_CELLS: usize = 5000;

/// Fewest cells worth a map.
pub const MIN_MAP_CELLS: usize = 10;

/// 2-D coordinates of (a sample of) the cells.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMap {
    /// Which input rows are drawn (ascending).
    pub rows: Vec<usize>,
    /// `(x, y)` per drawn row.
    pub xy: Vec<(f32, f32)>,
    /// Rows in the input.
    pub n_total: usize,
    /// What the map was computed from (e.g. "the embeddings"), for the caption.
    pub input: String,
    /// Axis titles, e.g. `PC1 (21.4% of variance)`.
    pub axes: [String; 2],
}

/// The rows a map of `n` cells draws: all of them, or `max_cells` chosen with `seed` (ascending).
pub fn map_rows(n: usize, max_cells: usize, seed: u64) -> Vec<usize> {
    if n > max_cells {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut r = rand::seq::index::sample(&mut rng, n, max_cells).into_vec();
        r.sort_unstable();
        r
    } else {
        (0..n).collect()
    }
}

/// The first two principal components of the rows of the row-major `n x d` matrix `x`. With more
/// than `max_cells` rows, `max_cells` of them are drawn, chosen with `seed`.
pub fn pca_map(
    x: &[f32],
    n: usize,
    d: usize,
    seed: u64,
    max_cells: usize,
    input: &str,
) -> Result<CellMap> {
    if x.len() != n * d {
        return Err(Error::invalid(format!(
            "map: {} values for {n} x {d} cells",
            x.len()
        )));
    }
    if n < MIN_MAP_CELLS || d < 2 {
        return Err(Error::invalid(format!(
            "map: {n} cells x {d} dimensions; at least {MIN_MAP_CELLS} cells and 2 dimensions are needed"
        )));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid("map: the values are not all finite"));
    }
    let rows = map_rows(n, max_cells, seed);
    let sub: Vec<f32> = rows
        .iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].iter().copied())
        .collect();
    let pca = fit_pca(
        &DenseMatrix::new(rows.len(), d, sub)?,
        2,
        PcaSolver::Auto,
        seed,
    )?;
    let s = &pca.scores;
    if s.n_cols < 2 {
        return Err(Error::invalid("map: fewer than two principal components"));
    }
    let xy = (0..s.n_rows)
        .map(|i| (s.data[i * s.n_cols], s.data[i * s.n_cols + 1]))
        .collect();
    let axis = |k: usize| {
        let r = pca
            .axes
            .explained_variance_ratio
            .get(k)
            .copied()
            .unwrap_or(f64::NAN);
        format!("PC{} ({:.1}% of variance)", k + 1, 100.0 * r)
    };
    Ok(CellMap {
        rows,
        xy,
        n_total: n,
        input: input.to_string(),
        axes: [axis(0), axis(1)],
    })
}

/// What [`write_cell_map`] draws.
pub struct MapInputs<'a> {
    /// Row-major `n x d` values the map is computed from.
    pub x: &'a [f32],
    /// Columns of `x`.
    pub d: usize,
    /// What `x` is, for the caption (e.g. "the embeddings").
    pub input: &'a str,
    /// True type per row.
    pub truth: &'a [String],
    /// SpikGPT's call per row.
    pub calls: &'a [String],
    /// The model's classes.
    pub classes: &'a [String],
    /// Cells the rows were sampled from, when they are a sample (the caption says so).
    pub n_total: Option<usize>,
}

/// Compute the map and write `dir/<stem>_map.{png,svg}` titled `title`; `Ok(false)` (nothing
/// written) with fewer than [`MIN_MAP_CELLS`] cells.
pub fn write_cell_map(
    dir: &std::path::Path,
    stem: &str,
    title: &str,
    inputs: &MapInputs<'_>,
    seed: u64,
) -> Result<bool> {
    let n = inputs.truth.len();
    if n < MIN_MAP_CELLS {
        return Ok(false);
    }
    let mut map = pca_map(inputs.x, n, inputs.d, seed, MAX_MAP_CELLS, inputs.input)?;
    if let Some(total) = inputs.n_total {
        map.n_total = total.max(n);
    }
    let fig = CellMapFigure {
        title,
        map: &map,
        truth: inputs.truth,
        calls: inputs.calls,
        classes: inputs.classes,
    };
    crate::plot::save_figure(&dir.join(format!("{stem}_map")), fig.size(), &fig)?;
    Ok(true)
}

/// Categorical colours (scanpy's default for up to 20 categories); `Unknown` is grey.
const PALETTE: [(u8, u8, u8); 20] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (188, 189, 34),
    (23, 190, 207),
    (174, 199, 232),
    (255, 187, 120),
    (152, 223, 138),
    (255, 152, 150),
    (197, 176, 213),
    (196, 156, 148),
    (247, 182, 210),
    (219, 219, 141),
    (158, 218, 229),
    (57, 59, 121),
    (99, 121, 57),
];
const UNKNOWN_COLOUR: RGBColor = RGBColor(190, 190, 190);

/// The map twice: coloured by the true type (left) and by SpikGPT's call (right), with one legend.
pub struct CellMapFigure<'a> {
    /// Title naming the run.
    pub title: &'a str,
    /// The map.
    pub map: &'a CellMap,
    /// True type of every input row.
    pub truth: &'a [String],
    /// SpikGPT's call of every input row.
    pub calls: &'a [String],
    /// The model's classes (a true type outside them is marked held out).
    pub classes: &'a [String],
}

const PANEL: i32 = 470;
const TOP: i32 = 76;

impl CellMapFigure<'_> {
    /// Legend entries: the model's classes seen among the drawn cells, then the unseen types, then
    /// `Unknown`; each with its colour.
    pub fn categories(&self) -> Vec<(String, RGBColor)> {
        let drawn = |v: &[String], c: &str| self.map.rows.iter().any(|&r| v[r] == c);
        let mut names: Vec<String> = self
            .classes
            .iter()
            .filter(|c| drawn(self.truth, c) || drawn(self.calls, c))
            .cloned()
            .collect();
        let mut unseen: Vec<String> = self
            .map
            .rows
            .iter()
            .map(|&r| self.truth[r].clone())
            .filter(|t| !self.classes.contains(t) && t != UNKNOWN)
            .collect();
        unseen.sort();
        unseen.dedup();
        names.extend(unseen);
        let mut out: Vec<(String, RGBColor)> = names
            .into_iter()
            .enumerate()
            .map(|(i, n)| {
                let (r, g, b) = PALETTE[i % PALETTE.len()];
                (n, RGBColor(r, g, b))
            })
            .collect();
        out.push((UNKNOWN.to_string(), UNKNOWN_COLOUR));
        out
    }

    fn legend_label(&self, name: &str) -> String {
        if name != UNKNOWN && !self.classes.iter().any(|c| c == name) {
            format!("{name} (held out)")
        } else {
            name.to_string()
        }
    }

    /// Pixel size that fits both panels and the legend.
    pub fn size(&self) -> (u32, u32) {
        let cats = self.categories();
        let labels: Vec<String> = cats.iter().map(|c| self.legend_label(&c.0)).collect();
        let lw = max_text_width(labels.iter().map(|s| s.as_str()), 12) as i32;
        let w = 30 + 2 * (PANEL + 30) + 24 + lw + 20;
        let h = (TOP + PANEL + 50).max(TOP + 20 * cats.len() as i32 + 30);
        (w as u32, h as u32)
    }
}

impl Figure for CellMapFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> DrawResult {
        let (w, _) = self.size();
        let title_size = fitted_size(self.title, w - 20, 16);
        text(
            root,
            self.title,
            (10, 20),
            title_size,
            HPos::Left,
            VPos::Center,
        )?;
        let m = self.map;
        let caption = format!(
            "principal components of {}: {} cells{}",
            m.input,
            m.rows.len(),
            if m.rows.len() < m.n_total {
                format!(" (sampled of {})", m.n_total)
            } else {
                String::new()
            }
        );
        text(root, &caption, (10, 42), 12, HPos::Left, VPos::Center)?;
        let cats = self.categories();
        let colour = |name: &str| {
            cats.iter()
                .find(|c| c.0 == name)
                .map(|c| c.1)
                .unwrap_or(UNKNOWN_COLOUR)
        };
        let (mut x0, mut x1, mut y0, mut y1) = (f32::MAX, f32::MIN, f32::MAX, f32::MIN);
        for &(x, y) in &m.xy {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        let (sx, sy) = ((x1 - x0).max(1e-6), (y1 - y0).max(1e-6));
        let radius = if m.rows.len() > 2000 { 1 } else { 2 };
        for (p, (labels, name)) in [(self.truth, "true cell type"), (self.calls, "SpikGPT call")]
            .into_iter()
            .enumerate()
        {
            let left = 30 + p as i32 * (PANEL + 30);
            text(
                root,
                name,
                (left + PANEL / 2, TOP - 14),
                14,
                HPos::Center,
                VPos::Center,
            )?;
            rect(
                root,
                (left, TOP),
                (left + PANEL, TOP + PANEL),
                RGBColor(160, 160, 160),
                false,
            )?;
            let inner = (PANEL - 16) as f32;
            let at = |(x, y): (f32, f32)| {
                (
                    left + 8 + ((x - x0) / sx * inner) as i32,
                    TOP + 8 + ((y1 - y) / sy * inner) as i32,
                )
            };
            for (&r, &pt) in m.rows.iter().zip(&m.xy) {
                root.draw(&Circle::new(at(pt), radius, colour(&labels[r]).filled()))
                    .map_err(|e| e.to_string())?;
            }
            text(
                root,
                &m.axes[0],
                (left + PANEL / 2, TOP + PANEL + 14),
                12,
                HPos::Center,
                VPos::Center,
            )?;
            vtext(root, &m.axes[1], (left - 12, TOP + PANEL / 2), 12, true)?;
        }
        let lx = 30 + 2 * (PANEL + 30);
        for (i, (name, c)) in cats.iter().enumerate() {
            let y = TOP + 6 + i as i32 * 20;
            rect(root, (lx, y), (lx + 14, y + 14), *c, true)?;
            text(
                root,
                &self.legend_label(name),
                (lx + 20, y + 7),
                12,
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

    /// Three well separated blobs of 20 points in 5 dimensions (the first three axes).
    fn blobs() -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut x = Vec::new();
        for b in 0..3 {
            for _ in 0..20 {
                for j in 0..5 {
                    let centre = if j == b { 10.0 } else { 0.0 };
                    x.push(centre + rand::Rng::random_range(&mut rng, -1.0f32..1.0));
                }
            }
        }
        x
    }

    #[test]
    fn map_is_deterministic_and_follows_the_spread() {
        let x = blobs();
        let a = pca_map(&x, 60, 5, 1, MAX_MAP_CELLS, "test").unwrap();
        let b = pca_map(&x, 60, 5, 1, MAX_MAP_CELLS, "test").unwrap();
        assert_eq!(a, b, "same input and seed, same map");
        assert_eq!(a.rows, (0..60).collect::<Vec<_>>());
        assert!(a.axes[0].starts_with("PC1 (") && a.axes[1].starts_with("PC2 ("));
        // each point's nearest map neighbour is in its own blob
        let d2 = |p: (f32, f32), q: (f32, f32)| (p.0 - q.0).powi(2) + (p.1 - q.1).powi(2);
        let mut same = 0;
        for i in 0..60 {
            let j = (0..60)
                .filter(|&j| j != i)
                .min_by(|&p, &q| d2(a.xy[i], a.xy[p]).total_cmp(&d2(a.xy[i], a.xy[q])))
                .unwrap();
            same += (i / 20 == j / 20) as usize;
        }
        assert!(
            same >= 57,
            "only {same} of 60 nearest neighbours in the same blob"
        );
        // points on a line: PC1 carries all the variance and orders them
        let line: Vec<f32> = (0..20).flat_map(|i| [i as f32, 2.0 * i as f32]).collect();
        let l = pca_map(&line, 20, 2, 0, 100, "line").unwrap();
        assert!(l.axes[0].contains("100.0%"), "{}", l.axes[0]);
        let first: Vec<f32> = l.xy.iter().map(|p| p.0).collect();
        let up = first.windows(2).all(|w| w[0] < w[1]);
        let down = first.windows(2).all(|w| w[0] > w[1]);
        assert!(up || down);
        // a subsample is chosen by the seed
        let s1 = pca_map(&x, 60, 5, 1, 30, "test").unwrap();
        let s2 = pca_map(&x, 60, 5, 2, 30, "test").unwrap();
        assert_eq!(s1.rows.len(), 30);
        assert_eq!(s1, pca_map(&x, 60, 5, 1, 30, "test").unwrap());
        assert_ne!(s1.rows, s2.rows);
    }

    #[test]
    fn too_few_or_bad_cells_are_refused() {
        assert!(pca_map(&[0.0; 10], 5, 2, 0, 100, "t").is_err());
        let mut x = blobs();
        x[3] = f32::NAN;
        assert!(pca_map(&x, 60, 5, 0, 100, "t").is_err());
    }

    #[test]
    fn legend_lists_held_out_types_and_unknown() {
        let map = CellMap {
            rows: vec![0, 1, 2],
            xy: vec![(0.0, 0.0), (1.0, 1.0), (2.0, 0.0)],
            n_total: 3,
            input: "t".into(),
            axes: ["PC1".into(), "PC2".into()],
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let (truth, calls, classes) = (
            s(&["B", "T", "plasma"]),
            s(&["B", "B", "Unknown"]),
            s(&["B", "T", "NK"]),
        );
        let fig = CellMapFigure {
            title: "t",
            map: &map,
            truth: &truth,
            calls: &calls,
            classes: &classes,
        };
        let names: Vec<String> = fig.categories().into_iter().map(|c| c.0).collect();
        assert_eq!(names, s(&["B", "T", "plasma", "Unknown"]));
        assert_eq!(fig.legend_label("plasma"), "plasma (held out)");
        let dir = tempfile::tempdir().unwrap();
        crate::plot::save_figure(&dir.path().join("m"), fig.size(), &fig).unwrap();
    }
}
