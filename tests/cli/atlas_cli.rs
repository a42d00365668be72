//! `scsae atlas` end to end on a tiny extraction of the bundled immune cells: every page exists,
//! every relative link resolves, the numbers on a page agree with `scsae encode`'s codes, inputs
//! are escaped, the same inputs give the same bytes; and bad inputs are one-line errors that write
//! nothing.

use std::path::{Path, PathBuf};

use scsae::activations::StoreWriter;
use scsae::data::DenseMatrix;

use crate::common::{root, scsae, test_manifest, with_options};

const DATA: &str = "data/immune1000.h5ad";
const KEY: &str = "cell_type_annotations";

/// An extraction store of the 1000 bundled cells with layers `0` and `1`, `d` dims each: columns of
/// the committed PCA stand-in embeddings (layer 1 takes the next `d` columns).
fn store(dir: &Path, d: usize) -> PathBuf {
    let pca = scsae::read_cells(
        &root().join("tests/fixtures/spikgpt/immune1000_pca50.safetensors"),
        None,
        None,
    )
    .unwrap()
    .matrix;
    let ids = pca.row_ids.clone().unwrap();
    let n = pca.n_rows;
    let manifest = test_manifest(
        serde_json::json!({"name": "scgpt-test", "checkpoint": "random"}),
        DATA,
        &["0", "1"],
        (n, d),
        false,
    );
    let out = dir.join(format!("acts{d}"));
    let (mut w, _) = StoreWriter::create(&out, manifest, &ids, false).unwrap();
    let layer = |l: usize| {
        let mut v = Vec::with_capacity(n * d);
        for i in 0..n {
            v.extend_from_slice(&pca.row(i)[l * d..(l + 1) * d]);
        }
        DenseMatrix::new(n, d, v).unwrap()
    };
    let (l0, l1) = (layer(0), layer(1));
    let cells: Vec<i64> = (0..n as i64).collect();
    w.write_chunk(
        &cells,
        &[("layer_0".to_string(), &l0), ("layer_1".to_string(), &l1)],
        None,
    )
    .unwrap();
    w.finish().unwrap();
    out
}

fn run_ok(args: &[&str]) {
    scsae().current_dir(root()).args(args).assert().success();
}

fn train(acts: &Path, layer: &str, features: &str, seed: &str, out: &Path) {
    run_ok(&[
        "train",
        "--quiet",
        "--activations",
        acts.to_str().unwrap(),
        "--layer",
        layer,
        "--level",
        "cells",
        "--features",
        features,
        "--epochs",
        "3",
        "--batch-size",
        "128",
        "--lr",
        "0.003",
        "--lambda",
        "0.3",
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ]);
}

/// Everything the atlas reads, made once per test.
struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    acts: PathBuf,
    sae: PathBuf,
    analysis: PathBuf,
    concepts: PathBuf,
    drivers: PathBuf,
    compare: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let acts = store(&dir, 8);
    let sae = dir.join("sae1");
    train(&acts, "1", "16", "1", &sae);
    let compare = dir.join("sae0");
    train(&acts, "0", "8", "2", &compare);
    let analysis = dir.join("analysis");
    let concepts = dir.join("concepts");
    let common = [
        "--sae",
        sae.to_str().unwrap(),
        "--activations",
        acts.to_str().unwrap(),
        "--layer",
        "1",
        "--data",
        DATA,
        "--label-key",
        KEY,
    ];
    let mut a = vec!["analyze"];
    a.extend(common);
    a.extend(["--pca-source", "none", "--out", analysis.to_str().unwrap()]);
    run_ok(&a);
    let mut c = vec!["concepts"];
    c.extend(common);
    c.extend(["--pca", "0", "--out", concepts.to_str().unwrap()]);
    run_ok(&c);
    // a class name that needs escaping; feature 3 drives two classes
    let drivers = dir.join("run_class_drivers.csv");
    std::fs::write(
        &drivers,
        "class,rank,feature,cells_in_top,frac_in_top,mean_attribution,feature_name\n\
         \"B<x>&y\",1,3,40,0.5,0.25,f3\nNK,2,3,7,0.125,0.0625,f3\nNK,1,5,9,0.25,0.5,f5\n",
    )
    .unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        acts,
        sae,
        analysis,
        concepts,
        drivers,
        compare,
    }
}

impl Fixture {
    /// The atlas arguments, with `set` replacing (or adding) options.
    fn args(&self, out: &Path, set: &[(&str, &str)]) -> Vec<String> {
        let mut a = vec!["atlas".to_string()];
        a.extend(with_options(
            &[
                ("--sae", self.sae.to_str().unwrap()),
                ("--activations", self.acts.to_str().unwrap()),
                ("--layer", "1"),
                ("--data", DATA),
                ("--label-key", KEY),
                ("--analysis", self.analysis.to_str().unwrap()),
                ("--concepts", self.concepts.to_str().unwrap()),
                ("--explain", self.drivers.to_str().unwrap()),
                ("--compare-sae", self.compare.to_str().unwrap()),
                ("--top-cells", "5"),
                ("--out", out.to_str().unwrap()),
            ],
            set,
        ));
        a
    }
}

/// The values of every `href="..."` and `src="..."` in `html`.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(k) = rest.find(attr) {
            rest = &rest[k + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn atlas_pages_exist_links_resolve_and_numbers_match_the_codes() {
    let fx = fixture();
    let out = fx.dir.join("site");
    let assert = scsae()
        .current_dir(root())
        .args(fx.args(&out, &[]))
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(
        stdout.contains("atlas of 16 features over 1000 cells"),
        "{stdout}"
    );
    let site = crate::common::tree_bytes(&out);
    // the manifest lists every other file, and there is one page per feature
    let manifest: serde_json::Value = serde_json::from_slice(&site["atlas.json"]).unwrap();
    let listed: Vec<String> = crate::common::strings(&manifest["files"]);
    let mut expected: Vec<String> = (0..16).map(|j| format!("features/f{j}.html")).collect();
    expected.extend(["index.html".to_string(), "style.css".to_string()]);
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(site.len(), listed.len() + 1);
    assert_eq!(manifest["n_features"], 16);
    // every relative link of every page resolves to a file of the site; nothing external
    let mut n_links = 0;
    for (rel, bytes) in &site {
        if !rel.ends_with(".html") {
            continue;
        }
        let html = std::str::from_utf8(bytes).unwrap();
        let base = Path::new(rel).parent().unwrap();
        for l in links(html) {
            assert!(
                !l.contains("://") && !l.starts_with("//"),
                "{rel}: external link {l}"
            );
            let path = l.split('#').next().unwrap();
            if path.is_empty() {
                continue;
            }
            let target = normalise(&base.join(path));
            assert!(
                site.contains_key(&target),
                "{rel}: link {l} -> {target} is missing"
            );
            n_links += 1;
        }
    }
    // index: 16 feature links + css; pages: index, css, prev/next, 5 neighbours each
    assert!(n_links > 16 * 8, "{n_links}");

    // the numbers of one page against `scsae encode`'s dense codes
    let codes_file = fx.dir.join("codes.safetensors");
    run_ok(&[
        "encode",
        "--sae",
        fx.sae.to_str().unwrap(),
        "--activations",
        fx.acts.to_str().unwrap(),
        "--layer",
        "1",
        "--out",
        codes_file.to_str().unwrap(),
    ]);
    let codes = scsae::read_cells(&codes_file, None, None).unwrap().matrix;
    let ids = codes.row_ids.clone().unwrap();
    let data = scsae::load(&root().join(DATA), &Default::default()).unwrap();
    let labels = data.labels(KEY).unwrap();
    let label_of: std::collections::HashMap<&str, &str> = data
        .cell_ids
        .iter()
        .map(String::as_str)
        .zip(labels.iter().map(String::as_str))
        .collect();
    for j in 0..16 {
        let col = codes.column(j);
        let zeros = col.iter().filter(|&&v| v == 0.0).count();
        let page = String::from_utf8(site[&format!("features/f{j}.html")].clone()).unwrap();
        assert!(
            page.contains(&format!("{zeros} of 1000 cells (")),
            "f{j}: {zeros} zeros expected\n{page}"
        );
        if zeros == 1000 {
            continue;
        }
        let mut order: Vec<usize> = (0..col.len()).collect();
        order.sort_by(|&a, &b| col[b].total_cmp(&col[a]).then(a.cmp(&b)));
        let top = order[0];
        let row = format!(
            "<tr><td class=\"n\">1</td><td>{}</td><td>{}</td><td class=\"n\">{:.4}</td></tr>",
            ids[top],
            label_of[ids[top].as_str()],
            col[top]
        );
        assert!(page.contains(&row), "f{j}: expected top cell row {row}");
        // the histogram's bars hold every non-zero cell
        let bars: usize = page
            .match_indices(" cells</title></rect>")
            .map(|(k, _)| {
                let head = &page[..k];
                head[head.rfind(": ").unwrap() + 2..]
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        assert_eq!(bars, 1000 - zeros, "f{j}");
    }
    // inputs are escaped; the drivers, the concepts and the compared SAE are shown
    let f3 = String::from_utf8(site["features/f3.html"].clone()).unwrap();
    assert!(
        f3.contains("<td>B&lt;x&gt;&amp;y</td>") && !f3.contains("B<x>"),
        "{f3}"
    );
    assert!(f3.contains("SpikGPT calls it drives") && f3.contains("<td>NK</td>"));
    assert!(f3.contains("Held-out concept"));
    assert!(f3.contains("sae0 ("), "{f3}");
    let index = String::from_utf8(site["index.html"].clone()).unwrap();
    assert!(index.contains("B&lt;x&gt;&amp;y (#1), NK (#2)"), "{index}");
    assert_eq!(index.matches("<tr data-i=").count(), 16);

    // the same inputs give the same bytes
    let again = fx.dir.join("site2");
    scsae()
        .current_dir(root())
        .args(fx.args(&again, &[]))
        .assert()
        .success();
    assert!(
        crate::common::tree_bytes(&again) == site,
        "a second run wrote other bytes"
    );

    // bad inputs: one line naming the problem, exit 1, nothing written
    let other_seed = fx.dir.join("sae1b");
    train(&fx.acts, "1", "16", "7", &other_seed);
    let narrow = store(&fx.dir, 6);
    let narrow_sae = fx.dir.join("sae_narrow");
    train(&narrow, "1", "8", "1", &narrow_sae);
    let bad_drivers = fx.dir.join("bad_class_drivers.csv");
    std::fs::write(
        &bad_drivers,
        "class,rank,feature,cells_in_top,frac_in_top,mean_attribution\nNK,1,16,9,0.25,0.5\n",
    )
    .unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        // an SAE of another layer than --layer
        (vec![("--sae", s(&fx.compare))], "trained on layer 0"),
        // an analysis of another SAE (another width)
        (
            vec![("--sae", s(&fx.compare)), ("--layer", "0".into())],
            "describes 16 features but the SAE",
        ),
        // an analysis of another SAE of the same width
        (
            vec![("--sae", s(&other_seed))],
            "analysis was made with another SAE",
        ),
        // activations of another width
        (
            vec![("--activations", s(&narrow))],
            "8-dimensional activations but layer 1",
        ),
        // a compared SAE of another width
        (
            vec![("--compare-sae", s(&narrow_sae))],
            "--compare-sae reads 6-dimensional activations",
        ),
        // a driver's feature index out of range
        (
            vec![("--explain", s(&bad_drivers))],
            "feature index 16 is out of range",
        ),
        // a missing label key
        (
            vec![("--label-key", "celltype".into())],
            "no obs column 'celltype'",
        ),
        (
            vec![("--top-cells", "0".into())],
            "--top-cells must be at least 1",
        ),
    ];
    for (set, msg) in cases {
        let target = fx.dir.join("bad");
        let set: Vec<(&str, &str)> = set.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let before: Vec<_> = std::fs::read_dir(&fx.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let out = scsae()
            .current_dir(root())
            .args(fx.args(&target, &set))
            .assert()
            .failure()
            .code(1)
            .get_output()
            .clone();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(err.contains(msg), "{set:?}: expected '{msg}' in {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{set:?}: {err}");
        assert!(!target.exists(), "{set:?}: wrote {}", target.display());
        let after: Vec<_> = std::fs::read_dir(&fx.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            before.len(),
            after.len(),
            "{set:?}: left files beside --out"
        );
    }
    // an existing --out is refused and left as it was
    let err = scsae()
        .current_dir(root())
        .args(fx.args(&out, &[]))
        .assert()
        .failure()
        .get_output()
        .stderr
        .clone();
    assert!(String::from_utf8_lossy(&err).contains("already exists"));
    assert!(crate::common::tree_bytes(&out) == site);
}

/// `a/../b` -> `b` for the site's relative paths.
fn normalise(p: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                parts.pop();
            }
            std::path::Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    parts.join("/")
}
