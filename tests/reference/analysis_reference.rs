//! The analysis layer against independent references: sklearn `roc_auc_score`, scipy
//! `fisher_exact(alternative='greater')` (and exact rational tails), statsmodels
//! `multipletests(method='fdr_bh')`, numpy `corrcoef`, sklearn `PCA`. Fixtures come from
//! `scripts/analysis/make_fixtures.py`.

use scsae::analysis::auroc::{auroc_table, Direction, LabelCodes};
use scsae::analysis::correlation::pearson_matrix;
use scsae::analysis::enrichment::{enrich, Background};
use scsae::analysis::gmt::ResolvedSet;
use scsae::analysis::pca::{fit_pca, PcaSolver};
use scsae::data::CsrMatrix;
use scsae::data::DenseMatrix;
use scsae::stats::{benjamini_hochberg, fisher_greater};
use serde_json::Value;

use crate::common::{f32s, f64s};

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/analysis/reference.json"
    ))
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

fn usize_of(v: &Value) -> usize {
    v.as_u64().unwrap() as usize
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    if a == b {
        return true;
    }
    (a - b).abs() <= rel * b.abs().max(a.abs())
}

#[test]
fn auroc_equals_sklearn_roc_auc_score() {
    let fx = fixture();
    let a = &fx["auroc"];
    let (n, f) = (usize_of(&a["n"]), usize_of(&a["f"]));
    let x = DenseMatrix::new(n, f, f32s(&a["x"])).unwrap();
    let labels: Vec<String> = a["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let codes = LabelCodes::new(&labels);
    let types: Vec<String> = a["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    assert_eq!(codes.names, types);
    let all: Vec<usize> = (0..types.len()).collect();
    let feats: Vec<usize> = (0..f).collect();
    let t = auroc_table(&x, &codes, &feats, &all, Direction::Greater).unwrap();
    let both = auroc_table(&x, &codes, &feats, &all, Direction::Both).unwrap();
    for j in 0..f {
        let want = f64s(&a["auroc"][j]);
        for (ti, &w) in want.iter().enumerate() {
            let got = t.get(j, ti);
            assert!(
                close(got, w, 1e-9),
                "feature {j} type {}: {got} vs sklearn {w}",
                types[ti]
            );
            assert!(close(both.get(j, ti), w.max(1.0 - w), 1e-9));
        }
    }
    // the type with 3 cells is not testable at the paper's minimum of 5
    let rare = types.iter().position(|t| t == "rare").unwrap();
    assert!(!codes.testable(5).contains(&rare));
}

#[test]
fn fisher_equals_scipy_and_exact_tail_below_1e_300() {
    let fx = fixture();
    let mut below_300 = 0;
    for case in fx["fisher"].as_array().unwrap() {
        let t: Vec<u64> = case["table"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let r = fisher_greater(t[0], t[1], t[2], t[3]);
        let p = case["p"].as_f64().unwrap();
        let exact = case["log10_p_exact"].as_f64().unwrap();
        if p >= f64::MIN_POSITIVE {
            assert!(close(r.p, p, 1e-9), "{t:?}: {} vs scipy {p}", r.p);
        }
        if p < 1e-300 {
            below_300 += 1;
            // subnormal or underflowed in scipy: compare the log with the exact rational tail
            let got = r.ln_p / std::f64::consts::LN_10;
            assert!(
                close(got, exact, 1e-11),
                "{t:?}: log10 p {got} vs exact {exact}"
            );
        }
        match case["odds_ratio"].as_f64() {
            Some(o) => assert!(close(r.odds_ratio, o, 1e-12), "{t:?}: OR {}", r.odds_ratio),
            None if case["odds_ratio"].is_null() => {
                assert!(r.odds_ratio.is_nan() || r.odds_ratio.is_infinite())
            }
            None => {}
        }
    }
    assert!(below_300 >= 3);
}

#[test]
fn bh_equals_statsmodels() {
    let fx = fixture();
    let p = f64s(&fx["bh"]["p"]);
    let want = f64s(&fx["bh"]["q"]);
    let q = benjamini_hochberg(&p);
    for (i, (a, b)) in q.iter().zip(&want).enumerate() {
        assert!(close(*a, *b, 1e-12), "q[{i}] = {a} vs statsmodels {b}");
    }
}

#[test]
fn pearson_equals_numpy_corrcoef() {
    let fx = fixture();
    let pe = &fx["pearson"];
    let (n, nf, ng) = (usize_of(&pe["n"]), usize_of(&pe["nf"]), usize_of(&pe["ng"]));
    let feats = DenseMatrix::new(n, nf, f32s(&pe["features"])).unwrap();
    let expr = CsrMatrix::from_dense(n, ng, &f32s(&pe["expression"]));
    let r = pearson_matrix(&feats, &expr).unwrap();
    for (k, w) in pe["r"].as_array().unwrap().iter().enumerate() {
        match w.as_f64() {
            Some(w) => assert!(
                close(r[k], w, 1e-9) || (r[k] - w).abs() < 1e-14,
                "r[{}, {}] = {} vs numpy {w}",
                k / ng,
                k % ng,
                r[k]
            ),
            None => assert!(r[k].is_nan(), "r[{k}] should be NaN"),
        }
    }
}

#[test]
fn pca_equals_sklearn() {
    let fx = fixture();
    let pc = &fx["pca"];
    let (n, d, k) = (usize_of(&pc["n"]), usize_of(&pc["d"]), usize_of(&pc["k"]));
    let x = DenseMatrix::new(n, d, f32s(&pc["x"])).unwrap();
    let ev = f64s(&pc["explained_variance"]);
    let evr = f64s(&pc["explained_variance_ratio"]);
    let comp = f64s(&pc["components"]);
    let scores = f64s(&pc["scores"]);
    // exact SVD and the covariance eigendecomposition: every component to 1e-9; randomised SVD:
    // the 4 planted (well-separated) components
    for (solver, tol, kk) in [
        (PcaSolver::Exact, 1e-9, k),
        (PcaSolver::CovarianceEigh, 1e-9, k),
        (PcaSolver::Randomized, 1e-7, 4),
    ] {
        let fit = fit_pca(&x, k, solver, 7).unwrap();
        let p = &fit.axes;
        assert_eq!(p.solver, solver);
        for c in 0..kk {
            assert!(
                close(p.explained_variance[c], ev[c], tol),
                "{solver:?} ev[{c}] {} vs {}",
                p.explained_variance[c],
                ev[c]
            );
            assert!(close(p.explained_variance_ratio[c], evr[c], tol));
            // components up to sign
            let dot: f64 = (0..d)
                .map(|j| p.components[c * d + j] * comp[c * d + j])
                .sum();
            let s = dot.signum();
            for j in 0..d {
                let diff = (p.components[c * d + j] - s * comp[c * d + j]).abs();
                assert!(diff < 1e-6, "{solver:?} component {c}: {diff}");
            }
            for i in 0..n {
                let got = fit.scores.data[i * k + c] as f64;
                assert!(
                    (got - s * scores[i * k + c]).abs() < 1e-4 * (1.0 + scores[i * k + c].abs())
                );
            }
        }
    }
}

#[test]
fn enrichment_equals_scipy_and_statsmodels_end_to_end() {
    let fx = fixture();
    let e = &fx["enrichment"];
    let measured: Vec<bool> = e["measured"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_bool().unwrap())
        .collect();
    let sets: Vec<ResolvedSet> = e["sets"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let genes: Vec<usize> = s.as_array().unwrap().iter().map(usize_of).collect();
            ResolvedSet {
                name: format!("S{i}"),
                source: "fixture".into(),
                n_listed: genes.len(),
                genes,
            }
        })
        .collect();
    let hits: Vec<Vec<usize>> = e["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_array().unwrap().iter().map(usize_of).collect())
        .collect();
    let got = enrich(&hits, &sets, &measured, Background::SetGenes, 2);
    assert_eq!(got.background_size, usize_of(&e["background"]));
    let want = e["tests"].as_array().unwrap();
    assert_eq!(got.n_tests, want.len());
    let mut n_checked = 0;
    for w in want {
        let (f, s) = (usize_of(&w["feature"]), usize_of(&w["set"]));
        let (p, q) = (w["p"].as_f64().unwrap(), w["q"].as_f64().unwrap());
        match got.tests.iter().find(|t| t.feature == f && t.set == s) {
            Some(t) => {
                assert_eq!(t.overlap, usize_of(&w["overlap"]));
                assert!(close(t.p, p, 1e-9), "feature {f} set {s}: p {} vs {p}", t.p);
                assert!(close(t.q, q, 1e-9), "feature {f} set {s}: q {} vs {q}", t.q);
                n_checked += 1;
            }
            None => assert_eq!(usize_of(&w["overlap"]), 0, "feature {f} set {s} missing"),
        }
    }
    assert!(n_checked > 5);
    // the planted feature 2 / set 1 enrichment is significant
    assert!(got
        .tests
        .iter()
        .any(|t| t.feature == 2 && t.set == 1 && t.q < 0.05));
}

/// Held-out concept scoring against scikit-learn, scipy and statsmodels
/// (scripts/analysis/heldout_reference.py): concept, orientation and threshold chosen on
/// validation, test AUROC / precision / recall / F1, Mann-Whitney p and BH q, one-sided and
/// two-sided.
#[test]
fn heldout_concepts_match_sklearn_scipy_statsmodels() {
    use scsae::analysis::heldout::{score_concepts, HeldOutOptions};
    let text = std::fs::read_to_string("tests/fixtures/analysis/heldout_reference.json").unwrap();
    let fx: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (n, d) = (
        fx["n"].as_u64().unwrap() as usize,
        fx["d"].as_u64().unwrap() as usize,
    );
    let x: Vec<f32> = crate::common::f32s(&fx["x"]);
    let x = scsae::data::DenseMatrix::new(n, d, x).unwrap();
    let labels = crate::common::strings(&fx["labels"]);
    let is_test: Vec<bool> = fx["is_test"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_bool().unwrap())
        .collect();
    for (key, two_sided) in [("greater", false), ("two_sided", true)] {
        let opts = HeldOutOptions {
            two_sided,
            ..HeldOutOptions::default()
        };
        let (got, summary) = score_concepts(&x, &labels, &is_test, &opts).unwrap();
        let want = fx[key].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{key}: scored features");
        assert_eq!(summary.n_scored, want.len());
        for (g, w) in got.iter().zip(want) {
            let f = g.feature;
            assert_eq!(f as u64, w["feature"].as_u64().unwrap());
            assert_eq!(g.cell_type, w["cell_type"].as_str().unwrap(), "{key} f{f}");
            assert_eq!(g.flipped, w["flipped"].as_bool().unwrap(), "{key} f{f}");
            for (name, v) in [
                ("val_auroc", g.val_auroc),
                ("threshold", g.threshold),
                ("val_f1", g.val_f1),
                ("test_auroc", g.test_auroc),
                ("test_precision", g.test_precision),
                ("test_recall", g.test_recall),
                ("test_f1", g.test_f1),
                ("p_value", g.p_value),
                ("q_value", g.q_value),
            ] {
                let r = w[name].as_f64().unwrap();
                // thresholds are f32 feature values widened to f64
                let tol = if name == "threshold" { 1e-6 } else { 1e-9 };
                assert!(
                    (v - r).abs() <= tol * r.abs().max(1e-300) || (v - r).abs() < 1e-15,
                    "{key} f{f} {name}: {v} vs {r}"
                );
            }
        }
    }
}
