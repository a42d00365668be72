//! Seeded stratified train / validation split.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Split cell indices by class: in each class (classes in sorted order) the indices are shuffled with
/// the seeded generator and `round(fraction * n)` go to training, keeping at least one cell on each
/// side when the class has two or more. Returns sorted `(train, validation)` indices.
pub fn stratified_split(labels: &[String], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut classes: Vec<&String> = labels.iter().collect();
    classes.sort();
    classes.dedup();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for c in classes {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| &labels[i] == c).collect();
        idx.shuffle(&mut rng);
        let n = idx.len();
        let mut n_train = (fraction * n as f64).round() as usize;
        if n >= 2 {
            n_train = n_train.clamp(1, n - 1);
        } else {
            n_train = n;
        }
        train.extend_from_slice(&idx[..n_train]);
        val.extend_from_slice(&idx[n_train..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    (train, val)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_and_seeded() {
        let labels: Vec<String> = (0..100)
            .map(|i| if i % 4 == 0 { "a".into() } else { "b".into() })
            .collect();
        let (tr, va) = stratified_split(&labels, 0.7, 1);
        assert_eq!(tr.len() + va.len(), 100);
        let a_tr = tr.iter().filter(|&&i| labels[i] == "a").count();
        assert_eq!(a_tr, 18); // round(0.7 * 25) = 17.5 -> 18
        assert_eq!(stratified_split(&labels, 0.7, 1), (tr.clone(), va));
        assert_ne!(stratified_split(&labels, 0.7, 2).0, tr);
    }
}
