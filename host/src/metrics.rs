//! Standard classification metrics computed by the host from targets and predicted
//! probabilities, so every model is measured the same way: accuracy, per-class precision,
//! recall and F1, macro and weighted averages, the confusion matrix, log loss, top-k accuracy.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Averages {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassificationMetrics {
    pub samples: usize,
    pub accuracy: f64,
    pub log_loss: f64,
    /// `top_k_accuracy[k]` for k = 2, 3, 5 where there are more than k classes.
    pub top_k_accuracy: std::collections::BTreeMap<String, f64>,
    pub per_class: Vec<ClassMetrics>,
    pub macro_average: Averages,
    pub weighted_average: Averages,
    /// Rows are true classes, columns predicted classes.
    pub confusion_matrix: Vec<Vec<usize>>,
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

/// Computes the metrics; `probabilities` holds one row of `class_names.len()` values per sample.
pub fn classification(
    labels: &[i64],
    probabilities: &[f32],
    class_names: &[String],
) -> anyhow::Result<ClassificationMetrics> {
    let classes = class_names.len();
    if classes == 0 || probabilities.len() != labels.len() * classes {
        anyhow::bail!(
            "the model predicted {} values for {} samples of {classes} classes; expected one probability per class per sample",
            probabilities.len(),
            labels.len()
        );
    }
    if let Some(bad) = probabilities.iter().find(|p| !p.is_finite()) {
        anyhow::bail!("the model predicted a non-finite probability ({bad})");
    }
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut correct = 0;
    let mut log_loss = 0.0;
    let ks: Vec<usize> = [2, 3, 5].into_iter().filter(|&k| k < classes).collect();
    let mut top_k_hits = vec![0usize; ks.len()];
    for (row, &label) in probabilities.chunks_exact(classes).zip(labels) {
        let label = label as usize;
        let predicted = row.iter().enumerate().fold(0, |best, (i, &p)| if p > row[best] { i } else { best });
        confusion[label][predicted] += 1;
        correct += usize::from(predicted == label);
        log_loss -= (row[label] as f64).clamp(1e-15, 1.0).ln();
        // Rank of the true class: how many classes scored strictly higher.
        let rank = row.iter().filter(|&&p| p > row[label]).count();
        for (hits, &k) in top_k_hits.iter_mut().zip(&ks) {
            *hits += usize::from(rank < k);
        }
    }
    let n = labels.len();
    let per_class: Vec<ClassMetrics> = (0..classes)
        .map(|c| {
            let true_positive = confusion[c][c];
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let support: usize = confusion[c].iter().sum();
            let precision = ratio(true_positive, predicted);
            let recall = ratio(true_positive, support);
            let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
            ClassMetrics { class: class_names[c].clone(), precision, recall, f1, support }
        })
        .collect();
    let average = |weight: &dyn Fn(&ClassMetrics) -> f64| {
        let total: f64 = per_class.iter().map(weight).sum();
        let mean = |value: &dyn Fn(&ClassMetrics) -> f64| {
            if total == 0.0 { 0.0 } else { per_class.iter().map(|m| weight(m) * value(m)).sum::<f64>() / total }
        };
        Averages { precision: mean(&|m| m.precision), recall: mean(&|m| m.recall), f1: mean(&|m| m.f1) }
    };
    Ok(ClassificationMetrics {
        samples: n,
        accuracy: ratio(correct, n),
        log_loss: if n == 0 { 0.0 } else { log_loss / n as f64 },
        top_k_accuracy: ks.iter().zip(&top_k_hits).map(|(k, &hits)| (format!("top_{k}"), ratio(hits, n))).collect(),
        macro_average: average(&|_| 1.0),
        weighted_average: average(&|m| m.support as f64),
        per_class,
        confusion_matrix: confusion,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn metrics_match_a_hand_computed_example() {
        // Three samples of class 0, one of class 1, none of class 2.
        let labels = [0, 0, 0, 1];
        let probabilities = [
            0.7, 0.2, 0.1, // right
            0.6, 0.3, 0.1, // right
            0.2, 0.5, 0.3, // wrong: predicts 1, true class ranked third
            0.1, 0.8, 0.1, // right
        ];
        let m = classification(&labels, &probabilities, &names(3)).unwrap();
        assert_eq!(m.accuracy, 0.75);
        assert_eq!(m.confusion_matrix, vec![vec![2, 1, 0], vec![0, 1, 0], vec![0, 0, 0]]);
        assert_eq!(m.per_class[0].precision, 1.0);
        assert!((m.per_class[0].recall - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.per_class[1].precision, 0.5);
        assert_eq!(m.per_class[1].recall, 1.0);
        assert_eq!(m.per_class[2].support, 0);
        assert_eq!(m.top_k_accuracy["top_2"], 0.75);
        assert!(!m.top_k_accuracy.contains_key("top_3"), "only k below the class count");
        let expected_loss = -(0.7f64.ln() + 0.6f64.ln() + 0.2f64.ln() + 0.8f64.ln()) / 4.0;
        assert!((m.log_loss - expected_loss).abs() < 1e-6, "{}", m.log_loss);
        let f1_0 = 2.0 * (2.0 / 3.0) / (1.0 + 2.0 / 3.0);
        let f1_1 = 2.0 * 0.5 / 1.5;
        assert!((m.macro_average.f1 - (f1_0 + f1_1) / 3.0).abs() < 1e-12);
        assert!((m.weighted_average.f1 - (3.0 * f1_0 + f1_1) / 4.0).abs() < 1e-12);
    }

    #[test]
    fn malformed_predictions_are_refused() {
        assert!(
            classification(&[0, 1], &[0.5; 3], &names(2))
                .unwrap_err()
                .to_string()
                .contains("predicted 3 values for 2 samples")
        );
        assert!(classification(&[0], &[f32::NAN, 0.5], &names(2)).unwrap_err().to_string().contains("non-finite"));
    }
}
