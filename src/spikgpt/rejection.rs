//! Unknown-cell rejection of one classifier: what its rule rejected (per true class; held-out types'
//! rejection rate, known types' false-rejection rate), the AUROC of its confidence and of every
//! other novelty score for telling held-out cells from known ones, and the accuracy–rejection curve
//! (accuracy on the accepted known cells against the share left unclassified) with the rule's
//! operating point on it.

use serde::Serialize;

use super::metrics::auroc;
use super::novelty::{accuracy_rejection_curve, operating_point, CurvePoint};

/// Per-cell outputs of one classifier, as the rejection report reads them.
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    /// Classifier name (`spikgpt`, `logistic_regression`, `knn`).
    pub model: &'a str,
    /// One-line description of the rule that made the calls.
    pub rule: &'a str,
    /// Most probable class.
    pub best: &'a [String],
    /// Rejected by the rule.
    pub unknown: &'a [bool],
    /// The rule's confidence (higher = known).
    pub confidence: &'a [f64],
    /// Other scores' confidences, by name.
    pub scores: &'a [(String, Vec<f64>)],
}

/// Rejection statistics of one classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectionReport {
    /// Classifier name.
    pub model: String,
    /// The rule.
    pub rule: String,
    /// Held-out cells.
    pub n_held_out: usize,
    /// Known cells.
    pub n_known: usize,
    /// Fraction of held-out cells rejected by the rule.
    pub held_out_rejected: f64,
    /// Fraction of known cells rejected by the rule.
    pub known_rejected: f64,
    /// Per true class: (class, held out?, cells, fraction rejected).
    pub per_class: Vec<(String, bool, usize, f64)>,
    /// AUROC of the rule's confidence (low = novel) for held-out vs known (None when either group is
    /// empty).
    pub auroc: Option<f64>,
    /// The same for every score, by name.
    pub score_auroc: Vec<(String, Option<f64>)>,
    /// Accuracy against the share unclassified, 101 points.
    pub curve: Vec<CurvePoint>,
    /// Where the rule sits on it.
    pub operating_point: CurvePoint,
}

/// Build the report. `truth[i]` is the cell's true type (mapped to the model's names); `held_out`
/// lists the types absent from training.
pub fn rejection_report(truth: &[String], s: &Scored<'_>, held_out: &[String]) -> RejectionReport {
    let is_ho: Vec<bool> = truth.iter().map(|t| held_out.contains(t)).collect();
    let n_ho = is_ho.iter().filter(|&&h| h).count();
    let n_known = truth.len() - n_ho;
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let rh = (0..truth.len())
        .filter(|&i| is_ho[i] && s.unknown[i])
        .count();
    let rk = (0..truth.len())
        .filter(|&i| !is_ho[i] && s.unknown[i])
        .count();
    let mut classes: Vec<String> = truth.to_vec();
    classes.sort();
    classes.dedup();
    let per_class = classes
        .into_iter()
        .map(|c| {
            let idx: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == c).collect();
            let rej = idx.iter().filter(|&&i| s.unknown[i]).count();
            let ho = held_out.contains(&c);
            (c, ho, idx.len(), frac(rej, idx.len()))
        })
        .collect();
    let novelty = |v: &[f64]| -> Option<f64> {
        let neg: Vec<f64> = v.iter().map(|x| -x).collect();
        auroc(&neg, &is_ho)
    };
    let correct: Vec<bool> = (0..truth.len()).map(|i| s.best[i] == truth[i]).collect();
    // The rule's own decisions as per-cell thresholds: rejected cells sit above their confidence.
    let th: Vec<f64> = s
        .unknown
        .iter()
        .map(|&u| if u { f64::INFINITY } else { f64::NEG_INFINITY })
        .collect();
    RejectionReport {
        model: s.model.to_string(),
        rule: s.rule.to_string(),
        n_held_out: n_ho,
        n_known,
        held_out_rejected: frac(rh, n_ho),
        known_rejected: frac(rk, n_known),
        per_class,
        auroc: novelty(s.confidence),
        score_auroc: s
            .scores
            .iter()
            .map(|(n, v)| (n.clone(), novelty(v)))
            .collect(),
        curve: accuracy_rejection_curve(s.confidence, &correct, &is_ho),
        operating_point: operating_point(s.confidence, &th, &correct, &is_ho),
    }
}

impl RejectionReport {
    /// Text summary.
    pub fn to_text(&self) -> String {
        let op = &self.operating_point;
        let mut s = format!(
            "{}: {}\n  known accuracy (accepted cells) {:.3}, unclassified {:.3}; held-out rejected {:.3} ({} cells), known rejected {:.3} ({} cells), AUROC {}\n",
            self.model,
            self.rule,
            op.known_accuracy,
            op.rejected,
            self.held_out_rejected,
            self.n_held_out,
            self.known_rejected,
            self.n_known,
            self.auroc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "n/a".into())
        );
        if !self.score_auroc.is_empty() && self.n_held_out > 0 {
            s.push_str("  AUROC held-out vs known by score:");
            for (n, a) in &self.score_auroc {
                s.push_str(&format!(
                    " {n} {}",
                    a.map(|a| format!("{a:.4}")).unwrap_or_else(|| "n/a".into())
                ));
            }
            s.push('\n');
        }
        for (c, ho, n, r) in &self.per_class {
            s.push_str(&format!(
                "  {:<24} {:<9} {:>6} cells  rejected {:.3}\n",
                c,
                if *ho { "held-out" } else { "known" },
                n,
                r
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn hand_computed_rejection() {
        let t = strings(&["x", "x", "a", "a", "b"]);
        let best = strings(&["a", "b", "a", "b", "b"]);
        let conf = [0.5, 0.97, 0.99, 0.6, 0.96];
        let unknown: Vec<bool> = conf.iter().map(|&p| p < 0.95).collect();
        let scores = vec![("other".to_string(), vec![0.1, 0.2, 0.3, 0.4, 0.5])];
        let r = rejection_report(
            &t,
            &Scored {
                model: "m",
                rule: "max prob < 0.95",
                best: &best,
                unknown: &unknown,
                confidence: &conf,
                scores: &scores,
            },
            &["x".to_string()],
        );
        assert_eq!(r.held_out_rejected, 0.5);
        assert!((r.known_rejected - 1.0 / 3.0).abs() < 1e-12);
        // novelty 1 - p: ho {0.5, 0.03}, known {0.01, 0.4, 0.04}: 0.5 beats all three, 0.03 beats
        // 0.01 only -> 4/6
        assert!((r.auroc.unwrap() - 4.0 / 6.0).abs() < 1e-12);
        // "other": ho {0.1, 0.2} are the two lowest confidences -> AUROC 1
        assert_eq!(r.score_auroc[0].1, Some(1.0));
        // operating point: 2 of 5 rejected; accepted known cells (a,a) and (b,b) are right
        let op = &r.operating_point;
        assert!((op.rejected - 0.4).abs() < 1e-12);
        assert_eq!(op.known_accepted, 2);
        assert_eq!(op.known_accuracy, 1.0);
        assert_eq!(r.curve.len(), 101);
        assert_eq!(r.per_class[2], ("x".to_string(), true, 2, 0.5));
    }
}
