//! The median stopping rule: a running trial stops when, at its latest epoch (from
//! `after_epochs` on), its metric is worse than the median of the completed trials' values at
//! that epoch (a trial that stopped earlier, early-stopped say, counts with its last value), once
//! at least `min_trials` completed trials are there to compare. A pure function; the driver
//! feeds it curves from the store.

use crate::config::sweep::Prune;

/// Whether `a` is better than `b` in the direction the rule follows.
pub fn better(maximize: bool, a: f64, b: f64) -> bool {
    if maximize { a > b } else { a < b }
}

/// The median of the completed trials at `epoch` when the running trial's `value` there is
/// worse (or not finite): it should stop. `None`: it goes on.
pub fn median_stop(prune: &Prune, epoch: i64, value: f64, completed: &[Vec<(i64, f64)>]) -> Option<f64> {
    if epoch < prune.after_epochs as i64 {
        return None;
    }
    // Each completed trial's value at `epoch`, or its last one before it.
    let mut others: Vec<f64> = completed
        .iter()
        .filter_map(|curve| curve.iter().filter(|(e, _)| *e <= epoch).max_by_key(|(e, _)| *e).map(|(_, v)| *v))
        .collect();
    if others.len() < prune.min_trials.max(1) {
        return None;
    }
    others.sort_by(f64::total_cmp);
    let mid = others.len() / 2;
    let median = if others.len().is_multiple_of(2) { (others[mid - 1] + others[mid]) / 2.0 } else { others[mid] };
    (!value.is_finite() || better(prune.maximize, median, value)).then_some(median)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(maximize: bool) -> Prune {
        Prune { metric: "val_loss".into(), maximize, after_epochs: 2, min_trials: 2 }
    }

    fn curves(values_at_2: &[f64]) -> Vec<Vec<(i64, f64)>> {
        values_at_2.iter().map(|&v| vec![(1, 9.0), (2, v), (3, 0.0)]).collect()
    }

    #[test]
    fn a_trial_worse_than_the_median_stops_and_a_better_one_goes_on() {
        let completed = curves(&[0.2, 0.4, 0.9]);
        assert_eq!(median_stop(&rule(false), 2, 0.5, &completed), Some(0.4), "minimising: 0.5 > median 0.4");
        assert_eq!(median_stop(&rule(false), 2, 0.3, &completed), None);
        assert_eq!(median_stop(&rule(true), 2, 0.3, &completed), Some(0.4), "maximising: 0.3 < median 0.4");
        assert_eq!(median_stop(&rule(true), 2, 0.5, &completed), None);
        // An even count takes the mean of the middle two.
        assert_eq!(median_stop(&rule(false), 2, 0.35, &curves(&[0.2, 0.4])), Some(0.30000000000000004));
    }

    #[test]
    fn nothing_stops_too_early_or_on_too_few_trials() {
        let completed = curves(&[0.2, 0.4, 0.9]);
        assert_eq!(median_stop(&rule(false), 1, 99.0, &completed), None, "before after_epochs");
        assert_eq!(median_stop(&rule(false), 2, 99.0, &curves(&[0.2])), None, "one completed trial is too few");
        // Past the completed trials' last epoch (they stopped early), their last values count.
        assert_eq!(median_stop(&rule(false), 4, 99.0, &completed), Some(0.0), "worse than their last values");
        assert_eq!(median_stop(&rule(false), 9, -1.0, &completed), None, "better than their last values");
        assert_eq!(median_stop(&rule(false), 2, f64::NAN, &completed), Some(0.4), "a diverged trial stops");
    }
}
