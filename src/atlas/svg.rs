//! The two inline SVG charts of a feature page: the histogram of its non-zero activations and its
//! AUROC per cell type. Plain SVG text (no scripts, no fonts to load), deterministic to the byte.

use std::fmt::Write;

use super::html::escape;
use super::stats::Histogram;

/// A short label for an axis tick: 3 significant digits.
fn tick(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let a = x.abs();
    if !(1e-3..1e4).contains(&a) {
        return format!("{x:.2e}");
    }
    let digits = (2 - a.log10().floor() as i64).clamp(0, 4) as usize;
    format!("{x:.digits$}")
}

/// The histogram as an SVG bar chart, 600 x 220 pixels, with the value range on the x axis and
/// the largest count on the y axis.
pub fn histogram_svg(h: &Histogram) -> String {
    let (w, ht) = (600.0, 220.0);
    let (left, right, top, bottom) = (56.0, 16.0, 12.0, 44.0);
    let (pw, ph) = (w - left - right, ht - top - bottom);
    let max = h.counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = pw / h.counts.len().max(1) as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"hist\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"histogram of non-zero activations\">"
    );
    let _ = write!(
        s,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"#fafafa\" stroke=\"#ccc\"/>"
    );
    for (k, &c) in h.counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let bh = ph * c as f64 / max;
        let _ = write!(
            s,
            "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{:.2}\" fill=\"#3b7dd8\"><title>{} to {}: {c} cells</title></rect>",
            left + k as f64 * bw + 0.5,
            top + ph - bh,
            (bw - 1.0).max(0.5),
            bh,
            tick(h.lo + k as f64 * h.width()),
            tick(h.lo + (k + 1) as f64 * h.width()),
        );
    }
    // y axis: 0, half and the largest count
    for frac in [0.0, 0.5, 1.0] {
        let label = (max * frac).round() as usize;
        let y = top + ph - ph * frac;
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{left}\" y2=\"{y:.1}\" stroke=\"#666\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{label}</text>",
            left - 4.0,
            left - 6.0,
            y + 4.0
        );
    }
    // x axis: both ends and the middle of the range
    for frac in [0.0, 0.5, 1.0] {
        let x = left + pw * frac;
        let v = h.lo + (h.hi - h.lo) * frac;
        let _ = write!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#666\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            top + ph,
            top + ph + 4.0,
            top + ph + 16.0,
            tick(v)
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">activation (cells where non-zero)</text>",
        left + pw / 2.0,
        ht - 8.0
    );
    let _ = write!(
        s,
        "<text x=\"14\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">cells</text>",
        top + ph / 2.0,
        top + ph / 2.0
    );
    s.push_str("</svg>");
    s
}

/// AUROC per cell type as horizontal bars on a 0..1 scale, with guides at 0.5 (chance) and at
/// `threshold`; rows in the given order, 20 pixels each.
pub fn auroc_svg(rows: &[(String, f64)], threshold: f64) -> String {
    let w = 600.0;
    let (left, right, top, bottom) = (150.0, 60.0, 8.0, 30.0);
    let pw = w - left - right;
    let rh = 20.0;
    let ht = top + bottom + rh * rows.len() as f64;
    let x_of = |v: f64| left + pw * v.clamp(0.0, 1.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"auroc\" width=\"{w}\" height=\"{ht}\" viewBox=\"0 0 {w} {ht}\" role=\"img\" aria-label=\"AUROC per cell type\">"
    );
    for (i, (ty, v)) in rows.iter().enumerate() {
        let y = top + rh * i as f64;
        let colour = if *v > threshold { "#d8653b" } else { "#3b7dd8" };
        let label = if ty.chars().count() > 22 {
            format!("{}…", ty.chars().take(21).collect::<String>())
        } else {
            ty.clone()
        };
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"end\">{}<title>{}</title></text>",
            left - 6.0,
            y + 14.0,
            escape(&label),
            escape(ty)
        );
        if v.is_finite() {
            let _ = write!(
                s,
                "<rect x=\"{left}\" y=\"{:.1}\" width=\"{:.2}\" height=\"{:.1}\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\">{v:.3}</text>",
                y + 3.0,
                x_of(*v) - left,
                rh - 6.0,
                x_of(*v) + 4.0,
                y + 14.0
            );
        }
    }
    let base = top + rh * rows.len() as f64;
    for (v, colour) in [(0.5, "#888"), (threshold, "#d8653b")] {
        if (0.0..=1.0).contains(&v) {
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{base:.1}\" stroke=\"{colour}\" stroke-dasharray=\"4 3\"/>",
                x = x_of(v)
            );
        }
    }
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\" stroke=\"#666\"/>",
        left + pw
    );
    for v in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{v}</text>",
            x_of(v),
            base + 14.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\" fill=\"#555\">AUROC (dashed: 0.5 and the threshold {threshold})</text>",
        left + pw / 2.0,
        base + 27.0
    );
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_draws_one_bar_per_non_empty_bin_with_its_count() {
        let h = Histogram {
            lo: 0.0,
            hi: 3.0,
            counts: vec![4, 0, 2],
        };
        let s = histogram_svg(&h);
        assert_eq!(s.matches("fill=\"#3b7dd8\"").count(), 2);
        assert!(s.contains("<title>0 to 1.00: 4 cells</title>"), "{s}");
        assert!(s.contains("<title>2.00 to 3.00: 2 cells</title>"), "{s}");
        // largest count on the y axis
        assert!(s.contains(">4</text>"), "{s}");
    }

    #[test]
    fn auroc_bars_escape_type_names_and_mark_the_threshold() {
        let s = auroc_svg(&[("B<naive>".into(), 0.9), ("T".into(), 0.4)], 0.8);
        assert!(
            s.contains("B&lt;naive&gt;") && !s.contains("B<naive>"),
            "{s}"
        );
        assert_eq!(s.matches("fill=\"#d8653b\"").count(), 1);
        assert!(s.contains(">0.900</text>") && s.contains(">0.400</text>"));
        assert_eq!(tick(0.0123456), "0.0123");
        assert_eq!(tick(12.345), "12.3");
    }
}
