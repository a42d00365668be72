//! Gene-set enrichment of each feature's correlated genes: one-sided Fisher exact tests against every
//! set over a stated background, then Benjamini-Hochberg over all (feature, set) tests.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::analysis::gmt::ResolvedSet;
use crate::error::{Error, Result};
use crate::stats::{benjamini_hochberg, fisher_greater};

/// Gene universe of the Fisher tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Background {
    /// Genes measured in the data (varying across the analysed cells) that belong to at least one
    /// tested set (the paper's code).
    #[default]
    SetGenes,
    /// Every measured gene.
    Measured,
}

impl std::str::FromStr for Background {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "set-genes" | "in-sets" => Ok(Self::SetGenes),
            "measured" | "all" => Ok(Self::Measured),
            o => Err(Error::invalid(format!(
                "--background {o}: expected set-genes or measured"
            ))),
        }
    }
}

/// One (feature, set) test with at least one overlapping gene (tests without overlap have p = 1 and
/// count towards the correction but are not listed).
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichmentTest {
    /// Index of the feature in the hit lists given to [`enrich`].
    pub feature: usize,
    /// Index of the set in the resolved sets.
    pub set: usize,
    /// Hits inside the set (`a`).
    pub overlap: usize,
    /// Hits in the background (`a + b`).
    pub n_hits: usize,
    /// Set genes in the background (`a + c`).
    pub set_size: usize,
    /// Background size (`a + b + c + d`).
    pub background: usize,
    /// Sample odds ratio.
    pub odds_ratio: f64,
    /// One-sided Fisher p-value.
    pub p: f64,
    /// log10 of the p-value (finite even when `p` underflows).
    pub log10_p: f64,
    /// Benjamini-Hochberg q-value over all tests.
    pub q: f64,
    /// The overlapping genes (column indices), by decreasing correlation.
    pub genes: Vec<usize>,
}

/// All enrichment results.
#[derive(Debug, Clone, PartialEq)]
pub struct Enrichment {
    /// Tests with overlap > 0, by feature then set.
    pub tests: Vec<EnrichmentTest>,
    /// Number of tests performed (features tested x sets), the BH denominator.
    pub n_tests: usize,
    /// Features with enough hits to be tested.
    pub tested_features: Vec<bool>,
    /// Background size.
    pub background_size: usize,
}

impl Enrichment {
    /// Per feature: whether any set is enriched at `q < fdr`.
    pub fn enriched(&self, n_features: usize, fdr: f64) -> Vec<bool> {
        let mut out = vec![false; n_features];
        for t in &self.tests {
            if t.q < fdr {
                out[t.feature] = true;
            }
        }
        out
    }
}

/// Test each feature's hits (gene indices by decreasing r) against every set.
///
/// `measured[g]` marks genes that can be hits or set members; a feature is tested when at least
/// `min_hits` of its hits are in the background.
pub fn enrich(
    hits: &[Vec<usize>],
    sets: &[ResolvedSet],
    measured: &[bool],
    background: Background,
    min_hits: usize,
) -> Enrichment {
    let n_genes = measured.len();
    let mut in_bg: Vec<bool> = match background {
        Background::Measured => measured.to_vec(),
        Background::SetGenes => vec![false; n_genes],
    };
    // gene -> sets containing it
    let mut sets_of: Vec<Vec<u32>> = vec![Vec::new(); n_genes];
    for (s, set) in sets.iter().enumerate() {
        for &g in &set.genes {
            if g < n_genes && measured[g] {
                sets_of[g].push(s as u32);
                if background == Background::SetGenes {
                    in_bg[g] = true;
                }
            }
        }
    }
    let bg_size = in_bg.iter().filter(|&&b| b).count();
    let set_sizes: Vec<usize> = sets
        .iter()
        .map(|s| s.genes.iter().filter(|&&g| g < n_genes && in_bg[g]).count())
        .collect();
    let per_feature: Vec<(bool, Vec<EnrichmentTest>)> = hits
        .par_iter()
        .enumerate()
        .map(|(f, h)| {
            let h: Vec<usize> = h
                .iter()
                .copied()
                .filter(|&g| g < n_genes && in_bg[g])
                .collect();
            if h.len() < min_hits.max(1) {
                return (false, Vec::new());
            }
            let mut overlap: Vec<Vec<usize>> = vec![Vec::new(); sets.len()];
            for &g in &h {
                for &s in &sets_of[g] {
                    overlap[s as usize].push(g);
                }
            }
            let n = h.len() as u64;
            let tests = overlap
                .into_iter()
                .enumerate()
                .filter(|(_, o)| !o.is_empty())
                .map(|(s, genes)| {
                    let a = genes.len() as u64;
                    let k = set_sizes[s] as u64;
                    let nn = bg_size as u64;
                    let r = fisher_greater(a, n - a, k - a, nn + a - n - k);
                    EnrichmentTest {
                        feature: f,
                        set: s,
                        overlap: genes.len(),
                        n_hits: h.len(),
                        set_size: set_sizes[s],
                        background: bg_size,
                        odds_ratio: r.odds_ratio,
                        p: r.p,
                        log10_p: r.ln_p / std::f64::consts::LN_10,
                        q: 1.0,
                        genes,
                    }
                })
                .collect();
            (true, tests)
        })
        .collect();
    let tested_features: Vec<bool> = per_feature.iter().map(|p| p.0).collect();
    let n_tests = tested_features.iter().filter(|&&t| t).count() * sets.len();
    let mut tests: Vec<EnrichmentTest> = per_feature.into_iter().flat_map(|p| p.1).collect();
    // BH over all n_tests p-values: the untested-overlap ones are exactly 1
    let mut p: Vec<f64> = tests.iter().map(|t| t.p).collect();
    let listed = p.len();
    p.resize(n_tests.max(listed), 1.0);
    let q = benjamini_hochberg(&p);
    for (t, q) in tests.iter_mut().zip(q) {
        t.q = q;
    }
    Enrichment {
        tests,
        n_tests,
        tested_features,
        background_size: bg_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_overlap_is_significant_and_bh_counts_every_test() {
        // 40 genes; set A = 0..5, set B = 20..30; feature 0 hits 0..5 (all of A), feature 1 hits 1 gene
        let measured = vec![true; 40];
        let sets = vec![
            ResolvedSet {
                name: "A".into(),
                source: "s.gmt".into(),
                genes: (0..5).collect(),
                n_listed: 5,
            },
            ResolvedSet {
                name: "B".into(),
                source: "s.gmt".into(),
                genes: (20..30).collect(),
                n_listed: 10,
            },
        ];
        let hits = vec![(0..5).collect::<Vec<_>>(), vec![21]];
        let e = enrich(&hits, &sets, &measured, Background::SetGenes, 2);
        assert_eq!(e.background_size, 15);
        assert_eq!(e.tested_features, vec![true, false]);
        assert_eq!(e.n_tests, 2);
        assert_eq!(e.tests.len(), 1);
        let t = &e.tests[0];
        // p = 1 / C(15, 5) = 1 / 3003; q = p * 2 / 1
        assert!((t.p - 1.0 / 3003.0).abs() < 1e-15);
        assert!((t.q - 2.0 / 3003.0).abs() < 1e-15);
        let e = enrich(&hits, &sets, &measured, Background::Measured, 2);
        assert_eq!(e.background_size, 40);
        assert!((e.tests[0].p - 1.0 / 658_008.0).abs() < 1e-17);
    }
}
