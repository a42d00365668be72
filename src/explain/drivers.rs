//! What the explained calls say per class: the features that drive each class, and the features of
//! Unknown cells that the known classes rarely use. Tables and figures of these are in
//! [`super::report`] and `super::figures`.

use serde::Serialize;

use super::attribution::CellAttribution;
use super::decompose::Decomposition;
use crate::spikgpt::metrics::UNKNOWN;

/// What the tables need to know about the cells.
pub struct CellCalls<'a> {
    /// Cell ids.
    pub ids: &'a [String],
    /// Final label per cell (a class or `Unknown`).
    pub labels: &'a [String],
    /// Class names in logit order.
    pub classes: &'a [String],
}

/// One class's driving feature.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Driver {
    /// Class.
    pub class: String,
    /// Rank within the class (1 = strongest).
    pub rank: usize,
    /// Feature.
    pub feature: usize,
    /// Cells of the class with the feature among their `top` attributed features.
    pub cells_in_top: usize,
    /// That count over the cells called the class.
    pub frac_in_top: f64,
    /// Mean attribution over all cells called the class (0 where inactive).
    pub mean_attribution: f64,
}

/// Per class (cells with that final label): the features most often among the cells' `top`
/// positively attributed features, ranked by that count, then by mean attribution.
pub fn class_drivers(
    cells: &CellCalls<'_>,
    attrs: &[CellAttribution],
    top: usize,
    per_class: usize,
) -> Vec<Driver> {
    let mut out = Vec::new();
    for class in cells.classes {
        let members: Vec<usize> = (0..attrs.len())
            .filter(|&i| &cells.labels[i] == class)
            .collect();
        if members.is_empty() {
            continue;
        }
        let mut count: std::collections::BTreeMap<usize, (usize, f64)> = Default::default();
        for &i in &members {
            for (r, s) in attrs[i].shares.iter().enumerate() {
                let e = count.entry(s.feature).or_insert((0, 0.0));
                if r < top && s.attribution > 0.0 {
                    e.0 += 1;
                }
                e.1 += s.attribution;
            }
        }
        let mut v: Vec<(usize, usize, f64)> = count
            .into_iter()
            .filter(|(_, (c, _))| *c > 0)
            .map(|(f, (c, s))| (f, c, s / members.len() as f64))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
        for (r, (f, c, m)) in v.into_iter().take(per_class).enumerate() {
            out.push(Driver {
                class: class.clone(),
                rank: r + 1,
                feature: f,
                cells_in_top: c,
                frac_in_top: c as f64 / members.len() as f64,
                mean_attribution: m,
            });
        }
    }
    out
}

/// A feature active in Unknown cells but rare in the confidently called classes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NovelFeature {
    /// Feature.
    pub feature: usize,
    /// Fraction of Unknown cells where it is active.
    pub frac_active_unknown: f64,
    /// Fraction of the confidently called cells (all classes together) where it is active.
    pub frac_active_known: f64,
    /// Highest fraction of active cells in one class (classes with at least 10 called cells).
    pub max_frac_active_class: f64,
    /// The class with that fraction.
    pub most_active_class: Option<String>,
    /// Mean code among Unknown cells where active.
    pub mean_activation_unknown: f64,
}

/// Fraction of `cells` where each feature is active, and its mean code where active.
fn activity(dec: &Decomposition, cells: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let f = dec.dict.d_sae;
    let mut active = vec![0f64; f];
    let mut sum = vec![0f64; f];
    for &i in cells {
        let (idx, val) = dec.active(i);
        for (&j, &z) in idx.iter().zip(val) {
            active[j as usize] += 1.0;
            sum[j as usize] += z as f64;
        }
    }
    let mean = sum
        .iter()
        .zip(&active)
        .map(|(s, a)| if *a > 0.0 { s / a } else { 0.0 })
        .collect();
    let n = cells.len().max(1) as f64;
    (active.iter().map(|a| a / n).collect(), mean)
}

/// Features more often active in Unknown cells than in the confidently called cells, by the gap
/// between the two fractions (at most `limit`). The known classes are represented by the cells the
/// annotator calls with confidence; the busiest class (of those with at least 10 cells) is reported
/// beside the pooled fraction.
pub fn novel_features(dec: &Decomposition, labels: &[String], limit: usize) -> Vec<NovelFeature> {
    let cells_of = |pred: &dyn Fn(&str) -> bool| -> Vec<usize> {
        (0..labels.len()).filter(|&i| pred(&labels[i])).collect()
    };
    let unknown = cells_of(&|l| l == UNKNOWN);
    let known = cells_of(&|l| l != UNKNOWN);
    if unknown.is_empty() || known.is_empty() {
        return Vec::new();
    }
    let mut classes: Vec<&String> = labels.iter().filter(|l| *l != UNKNOWN).collect();
    classes.sort();
    classes.dedup();
    let per_class: Vec<(&String, Vec<f64>)> = classes
        .into_iter()
        .map(|c| (c, cells_of(&|l| l == c.as_str())))
        .filter(|(_, cells)| cells.len() >= 10)
        .map(|(c, cells)| (c, activity(dec, &cells).0))
        .collect();
    let (fu, mu) = activity(dec, &unknown);
    let (fk, _) = activity(dec, &known);
    let mut v: Vec<NovelFeature> = (0..dec.dict.d_sae)
        .filter(|&j| fu[j] > fk[j])
        .map(|j| {
            let best = per_class
                .iter()
                .max_by(|a, b| a.1[j].total_cmp(&b.1[j]).then(b.0.cmp(a.0)));
            NovelFeature {
                feature: j,
                frac_active_unknown: fu[j],
                frac_active_known: fk[j],
                max_frac_active_class: best.map_or(f64::NAN, |b| b.1[j]),
                most_active_class: best.map(|b| b.0.clone()),
                mean_activation_unknown: mu[j],
            }
        })
        .collect();
    v.sort_by(|a, b| {
        (b.frac_active_unknown - b.frac_active_known)
            .total_cmp(&(a.frac_active_unknown - a.frac_active_known))
            .then(a.feature.cmp(&b.feature))
    });
    v.truncate(limit);
    v
}
