//! Leave-one-out k-nearest-neighbour accuracy of cell labels on embeddings (cosine similarity).

use crate::error::{Error, Result};

/// Share of cells whose label equals the majority label of their `k` most cosine-similar other
/// cells (`x` row-major `n x d`). Ties between neighbours at equal similarity go to the lower row
/// index; a tied vote goes to the label whose voters are most similar in sum, then the
/// alphabetically first. A zero row has similarity 0 to everything. Needs `k < n`.
pub fn loo_knn_accuracy(x: &[f32], d: usize, labels: &[String], k: usize) -> Result<f64> {
    let n = labels.len();
    if x.len() != n * d {
        return Err(Error::invalid(format!(
            "kNN: {} values for {n} cells of width {d}",
            x.len()
        )));
    }
    if k == 0 || k >= n {
        return Err(Error::invalid(format!(
            "--knn-k must be between 1 and the number of cells minus one ({})",
            n.saturating_sub(1)
        )));
    }
    let unit: Vec<Vec<f64>> = x
        .chunks_exact(d)
        .map(|r| {
            let norm = r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            r.iter()
                .map(|&v| if norm > 0.0 { v as f64 / norm } else { 0.0 })
                .collect()
        })
        .collect();
    use rayon::prelude::*;
    let correct: usize = (0..n)
        .into_par_iter()
        .map(|i| {
            let mut sims: Vec<(f64, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| (dot(&unit[i], &unit[j]), j))
                .collect();
            sims.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut votes: Vec<(&str, usize, f64)> = Vec::new();
            for &(s, j) in &sims[..k] {
                match votes.iter_mut().find(|v| v.0 == labels[j]) {
                    Some(v) => {
                        v.1 += 1;
                        v.2 += s;
                    }
                    None => votes.push((&labels[j], 1, s)),
                }
            }
            votes.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(b.0)));
            usize::from(votes[0].0 == labels[i])
        })
        .sum();
    Ok(correct as f64 / n as f64)
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn hand_computed_case() {
        // group A near (1, 0), group B near (0, 1), and an A-labelled outlier inside group B
        let x: Vec<f32> = vec![
            1.0, 0.0, 0.99, 0.1, 0.98, -0.12, // A0 A1 A2
            0.0, 1.0, 0.1, 0.99, -0.1, 0.98, // B3 B4 B5
            0.05, 1.0, // A6
        ];
        let labels = s(&["A", "A", "A", "B", "B", "B", "A"]);
        // k = 3 by hand (cosines): A0, A1, A2 see their two mates and B4 -> A (right);
        // B3 sees A6 .9988, B4 .995, B5 .9949 -> B; B4 sees A6 .9988, B3 .995, B5 .980 -> B;
        // B5 sees B3 .9949, A6 .9885, B4 .980 -> B; A6 sees three B's -> B (wrong): 6 of 7.
        assert_eq!(loo_knn_accuracy(&x, 2, &labels, 3).unwrap(), 6.0 / 7.0);
        // k = 1 on perfectly separated groups is 1; labels crossed over the groups give 0
        let x2: Vec<f32> = vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
        assert_eq!(
            loo_knn_accuracy(&x2, 2, &s(&["a", "a", "b", "b"]), 1).unwrap(),
            1.0
        );
        assert_eq!(
            loo_knn_accuracy(&x2, 2, &s(&["a", "b", "a", "b"]), 1).unwrap(),
            0.0
        );
        // a tied 1-1 vote goes to the more similar neighbour: cell 0's neighbours are 1 (b, .994)
        // and 2 (c, 0); with k = 2 the vote is b
        let x3: Vec<f32> = vec![1.0, 0.0, 0.9, 0.1, 0.0, 1.0];
        assert_eq!(
            loo_knn_accuracy(&x3, 2, &s(&["b", "b", "c"]), 2).unwrap(),
            2.0 / 3.0
        );
        assert!(loo_knn_accuracy(&x2, 2, &s(&["a", "b", "a", "b"]), 4).is_err());
    }
}
