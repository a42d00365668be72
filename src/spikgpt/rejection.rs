//! Unknown-cell rejection: a cell whose highest class probability is below a threshold (paper: 0.95)
//! is labelled `Unknown`. The report gives, per true class, the fraction rejected; for cell types held
//! out of training the rejection rate, for known types the false-rejection rate; a threshold sweep;
//! and the AUROC of `1 - max prob` for telling held-out cells from known ones.

use serde::Serialize;

use super::metrics::auroc;

/// One row of the threshold sweep.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SweepRow {
    /// Threshold.
    pub threshold: f64,
    /// Fraction of held-out cells rejected.
    pub held_out_rejected: f64,
    /// Fraction of known cells rejected (false rejection).
    pub known_rejected: f64,
    /// Accuracy among the known cells that were not rejected.
    pub known_accuracy_accepted: f64,
}

/// Rejection statistics of one classifier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectionReport {
    /// Classifier name (`spikgpt`, `logistic_regression`).
    pub model: String,
    /// The threshold used for the headline numbers.
    pub threshold: f64,
    /// Held-out cells.
    pub n_held_out: usize,
    /// Known cells.
    pub n_known: usize,
    /// Fraction of held-out cells rejected at `threshold`.
    pub held_out_rejected: f64,
    /// Fraction of known cells rejected at `threshold`.
    pub known_rejected: f64,
    /// Per true class: (class, held out?, cells, fraction rejected).
    pub per_class: Vec<(String, bool, usize, f64)>,
    /// AUROC of `1 - max prob` for held-out vs known (None when either group is empty).
    pub auroc: Option<f64>,
    /// The sweep over thresholds 0.00, 0.01, ..., 1.00.
    pub sweep: Vec<SweepRow>,
}

/// Build the report. `truth[i]` is the cell's true type, `best[i]` its most probable class,
/// `max_prob[i]` that probability; `held_out` lists the types absent from training.
pub fn rejection_report(
    model: &str,
    truth: &[String],
    best: &[String],
    max_prob: &[f64],
    held_out: &[String],
    threshold: f64,
) -> RejectionReport {
    let is_ho: Vec<bool> = truth.iter().map(|t| held_out.contains(t)).collect();
    let n_ho = is_ho.iter().filter(|&&h| h).count();
    let n_known = truth.len() - n_ho;
    let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let at = |th: f64| -> SweepRow {
        let (mut rh, mut rk, mut acc_ok, mut acc_n) = (0, 0, 0, 0);
        for i in 0..truth.len() {
            let rejected = max_prob[i] < th;
            if is_ho[i] {
                rh += rejected as usize;
            } else if rejected {
                rk += 1;
            } else {
                acc_n += 1;
                acc_ok += (best[i] == truth[i]) as usize;
            }
        }
        SweepRow {
            threshold: th,
            held_out_rejected: frac(rh, n_ho),
            known_rejected: frac(rk, n_known),
            known_accuracy_accepted: frac(acc_ok, acc_n),
        }
    };
    let head = at(threshold);
    let mut classes: Vec<String> = truth.to_vec();
    classes.sort();
    classes.dedup();
    let per_class = classes
        .into_iter()
        .map(|c| {
            let idx: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == c).collect();
            let rej = idx.iter().filter(|&&i| max_prob[i] < threshold).count();
            let ho = held_out.contains(&c);
            (c, ho, idx.len(), frac(rej, idx.len()))
        })
        .collect();
    let scores: Vec<f64> = max_prob.iter().map(|p| 1.0 - p).collect();
    RejectionReport {
        model: model.to_string(),
        threshold,
        n_held_out: n_ho,
        n_known,
        held_out_rejected: head.held_out_rejected,
        known_rejected: head.known_rejected,
        per_class,
        auroc: auroc(&scores, &is_ho),
        sweep: (0..=100).map(|i| at(i as f64 / 100.0)).collect(),
    }
}

impl RejectionReport {
    /// Text summary.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}: threshold {:.2}: held-out rejected {:.3} ({} cells), known falsely rejected {:.3} ({} cells), AUROC(1 - max prob) {}\n",
            self.model,
            self.threshold,
            self.held_out_rejected,
            self.n_held_out,
            self.known_rejected,
            self.n_known,
            self.auroc.map(|a| format!("{a:.4}")).unwrap_or_else(|| "n/a".into())
        );
        for (c, ho, n, r) in &self.per_class {
            s.push_str(&format!(
                "  {:<16} {:<9} {:>6} cells  rejected {:.3}\n",
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

    #[test]
    fn hand_computed_rejection() {
        let t: Vec<String> = ["x", "x", "a", "a", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let best: Vec<String> = ["a", "b", "a", "b", "b"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = [0.5, 0.97, 0.99, 0.6, 0.96];
        let r = rejection_report("m", &t, &best, &p, &["x".to_string()], 0.95);
        assert_eq!(r.held_out_rejected, 0.5);
        assert!((r.known_rejected - 1.0 / 3.0).abs() < 1e-12);
        // known accepted: (a, a) correct, (b, b) correct -> 1.0
        let row = r
            .sweep
            .iter()
            .find(|s| (s.threshold - 0.95).abs() < 1e-9)
            .unwrap();
        assert_eq!(row.known_accuracy_accepted, 1.0);
        // scores 1-p: ho {0.5, 0.03}, known {0.01, 0.4, 0.04}: pairs won 3 + 0 + ... = 0.5 > all (3),
        // 0.03 > 0.01 (1) -> 4/6
        assert!((r.auroc.unwrap() - 4.0 / 6.0).abs() < 1e-12);
    }
}
