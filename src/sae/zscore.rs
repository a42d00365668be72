//! Per-dimension z-scoring with statistics saved beside the SAE.

/// Columns with a standard deviation below this are left unscaled (std stored as 1).
pub const MIN_STD: f64 = 1e-8;

/// Per-dimension mean and population standard deviation (ddof = 0, as `numpy.std`) of `x`
/// (`[n, d]`), accumulated in f64; std below [`MIN_STD`] becomes 1.
pub fn fit(x: &[f32], d: usize) -> (Vec<f32>, Vec<f32>) {
    let n = (x.len() / d.max(1)).max(1) as f64;
    let mut mean = vec![0f64; d];
    for row in x.chunks_exact(d) {
        for (a, v) in mean.iter_mut().zip(row) {
            *a += *v as f64;
        }
    }
    for a in mean.iter_mut() {
        *a /= n;
    }
    let mut var = vec![0f64; d];
    for row in x.chunks_exact(d) {
        for ((s, v), mu) in var.iter_mut().zip(row).zip(&mean) {
            let e = *v as f64 - mu;
            *s += e * e;
        }
    }
    (
        mean.iter().map(|v| *v as f32).collect(),
        std_from_m2(&var, n),
    )
}

/// Population standard deviations from sums of squared deviations `m2` over `n` rows; below
/// [`MIN_STD`] stored as 1.
pub(crate) fn std_from_m2(m2: &[f64], n: f64) -> Vec<f32> {
    m2.iter()
        .map(|s| {
            let sd = (s / n).sqrt();
            if sd < MIN_STD {
                1.0
            } else {
                sd as f32
            }
        })
        .collect()
}

/// `(x - mean) / std`, row by row.
pub fn apply(x: &[f32], mean: &[f32], std: &[f32]) -> Vec<f32> {
    let d = mean.len();
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(d) {
        for ((v, mu), sd) in row.iter_mut().zip(mean).zip(std) {
            *v = (*v - mu) / sd;
        }
    }
    out
}

/// `x * std + mean`, row by row.
pub fn invert(x: &[f32], mean: &[f32], std: &[f32]) -> Vec<f32> {
    let d = mean.len();
    let mut out = x.to_vec();
    for row in out.chunks_exact_mut(d) {
        for ((v, mu), sd) in row.iter_mut().zip(mean).zip(std) {
            *v = *v * sd + mu;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_numpy_population_std_and_guards_constant_columns() {
        // numpy: x = [[1, 5], [3, 5], [8, 5]]; x.mean(0) = [4, 5]; x.std(0) = [2.9439203, 0]
        let x = [1.0, 5.0, 3.0, 5.0, 8.0, 5.0];
        let (m, s) = fit(&x, 2);
        assert_eq!(m, vec![4.0, 5.0]);
        assert!((s[0] - 2.943_920_3).abs() < 1e-6);
        assert_eq!(s[1], 1.0);
        let z = apply(&x, &m, &s);
        assert_eq!(z[1], 0.0);
        let back = invert(&z, &m, &s);
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).abs() < 1e-5);
        }
    }
}
