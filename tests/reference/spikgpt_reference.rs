//! The logistic-regression baseline, the classification metrics and the AUROC against scikit-learn
//! (values in tests/fixtures/spikgpt/sklearn_reference.json, from scripts/spikgpt/make_reference.py).

use scsae::spikgpt::baseline::{LogReg, LogRegConfig};
use scsae::spikgpt::metrics::{auroc, classification_metrics};
use serde_json::Value;

use crate::common::{f64s, strings};

fn fixture() -> Value {
    let text = std::fs::read_to_string("tests/fixtures/spikgpt/sklearn_reference.json").unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn logistic_regression_matches_sklearn_probabilities() {
    let f = fixture();
    let lr = &f["logreg"];
    let k = lr["k"].as_u64().unwrap() as usize;
    let x: Vec<f32> = f64s(&lr["x"]).into_iter().map(|v| v as f32).collect();
    let y: Vec<usize> = f64s(&lr["y"]).into_iter().map(|v| v as usize).collect();
    let cfg = LogRegConfig {
        tol: 1e-9,
        ..LogRegConfig::default()
    };
    let m = LogReg::fit(&x, &y, k, 3, &cfg).unwrap();
    let p = m.predict_proba(&x).unwrap();
    let want = f64s(&lr["proba"]);
    let worst = p
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4,
        "training probabilities differ from sklearn by {worst}"
    );
    let xq: Vec<f32> = f64s(&lr["query_x"]).into_iter().map(|v| v as f32).collect();
    let pq = m.predict_proba(&xq).unwrap();
    let want = f64s(&lr["query_proba"]);
    let worst = pq
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4,
        "query probabilities differ from sklearn by {worst}"
    );
    let coef = f64s(&lr["coef"]);
    let worst = m
        .weight
        .iter()
        .zip(&coef)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-3, "coefficients differ from sklearn by {worst}");
    // save / load round trip keeps the probabilities (to f32 precision)
    let dir = tempfile::tempdir().unwrap();
    m.save(&dir.path().join("b.safetensors")).unwrap();
    let back = LogReg::load(&dir.path().join("b.safetensors")).unwrap();
    let pb = back.predict_proba(&xq).unwrap();
    assert!(pb.iter().zip(&pq).all(|(a, b)| (a - b).abs() < 1e-5));
}

#[test]
fn metrics_match_sklearn() {
    let f = fixture();
    let m = &f["metrics"];
    let got = classification_metrics(
        &strings(&m["truth"]),
        &strings(&m["pred"]),
        &strings(&m["classes"]),
    );
    let close = |a: f64, b: &Value| (a - b.as_f64().unwrap()).abs() < 1e-12;
    assert!(close(got.accuracy, &m["accuracy"]));
    assert!(close(got.macro_precision, &m["macro_precision"]));
    assert!(close(got.macro_recall, &m["macro_recall"]));
    assert!(close(got.macro_f1, &m["macro_f1"]));
    for (i, c) in got.per_class.iter().enumerate() {
        assert!(close(c.precision, &m["precision"][i]));
        assert!(close(c.recall, &m["recall"][i]));
        assert!(close(c.f1, &m["f1"][i]));
        assert_eq!(c.support as u64, m["support"][i].as_u64().unwrap());
    }
}

#[test]
fn auroc_matches_sklearn_with_ties() {
    let f = fixture();
    let a = &f["auroc"];
    let scores = f64s(&a["scores"]);
    let pos: Vec<bool> = f64s(&a["positive"]).into_iter().map(|v| v > 0.5).collect();
    let got = auroc(&scores, &pos).unwrap();
    assert!((got - a["auc"].as_f64().unwrap()).abs() < 1e-12, "{got}");
}
