//! Standard classification metrics computed by the host from targets and predicted
//! probabilities, so every model is measured the same way: accuracy, per-class precision,
//! recall and F1, macro and weighted averages, the confusion matrix, log loss, top-k accuracy,
//! one-vs-rest ROC curves with their AUC, and a histogram of the predicted class's confidence.

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
    /// One-vs-rest ROC per class.
    pub roc: Vec<RocCurve>,
    /// The mean AUC over classes that have both positive and negative samples.
    pub macro_auc: Option<f64>,
    pub confidence_histogram: ConfidenceHistogram,
}

/// One class's one-vs-rest ROC curve.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RocCurve {
    pub class: String,
    /// `None` when the test set has no samples of the class, or only samples of it.
    pub auc: Option<f64>,
    /// (false positive rate, true positive rate), from (0, 0) to (1, 1), at most 101 points.
    pub points: Vec<[f64; 2]>,
}

/// How confident the model was in its predicted class, for right and wrong predictions.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfidenceHistogram {
    /// Bin edges from 0 to 1 (one more than the counts).
    pub edges: Vec<f64>,
    pub correct: Vec<usize>,
    pub incorrect: Vec<usize>,
}

const HISTOGRAM_BINS: usize = 20;
const ROC_POINTS: usize = 101;

/// The one-vs-rest ROC curve of one class: thresholds at every distinct score, tied scores
/// taken together; the AUC by the trapezoid rule over every threshold.
fn roc_curve(scores: &[(f32, bool)], class: &str) -> RocCurve {
    let positives = scores.iter().filter(|(_, p)| *p).count();
    let negatives = scores.len() - positives;
    if positives == 0 || negatives == 0 {
        return RocCurve { class: class.into(), auc: None, points: Vec::new() };
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = vec![[0.0, 0.0]];
    let (mut true_positives, mut false_positives) = (0usize, 0usize);
    let mut auc = 0.0;
    let mut index = 0;
    while index < sorted.len() {
        let score = sorted[index].0;
        while index < sorted.len() && sorted[index].0 == score {
            if sorted[index].1 {
                true_positives += 1
            } else {
                false_positives += 1
            }
            index += 1;
        }
        let point = [false_positives as f64 / negatives as f64, true_positives as f64 / positives as f64];
        let last = points[points.len() - 1];
        auc += (point[0] - last[0]) * (point[1] + last[1]) / 2.0;
        points.push(point);
    }
    // Keep the curve's shape with a bounded number of points: the ends and evenly spaced ones.
    if points.len() > ROC_POINTS {
        let step = (points.len() - 1) as f64 / (ROC_POINTS - 1) as f64;
        points = (0..ROC_POINTS).map(|i| points[((i as f64 * step).round() as usize).min(points.len() - 1)]).collect();
    }
    RocCurve { class: class.into(), auc: Some(auc), points }
}

/// The predicted class of one row of probabilities: the first of the highest.
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &p)| if p > row[best] { i } else { best })
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

/// How far a row of probabilities may sum from 1 (float32 softmax rounding is far below it).
const ROW_SUM_TOLERANCE: f64 = 1e-3;

/// Refuses predictions that are not probabilities: a value outside [0, 1] (or not finite) or a
/// row that does not sum to 1, naming the first offending row.
fn check_probabilities(probabilities: &[f32], classes: usize) -> anyhow::Result<()> {
    for (index, row) in probabilities.chunks_exact(classes).enumerate() {
        if let Some(bad) = row.iter().find(|p| !p.is_finite() || !(0.0..=1.0).contains(*p)) {
            anyhow::bail!(
                "the model predicted {bad} in row {index}; predictions must be probabilities in [0, 1] (apply softmax to scores)"
            );
        }
        let sum: f64 = row.iter().map(|&p| f64::from(p)).sum();
        if (sum - 1.0).abs() > ROW_SUM_TOLERANCE {
            anyhow::bail!(
                "the model's probabilities in row {index} sum to {sum:.6}, not 1; each row must be a distribution over the {classes} classes"
            );
        }
    }
    Ok(())
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
    check_probabilities(probabilities, classes)?;
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut correct = 0;
    let mut log_loss = 0.0;
    let ks: Vec<usize> = [2, 3, 5].into_iter().filter(|&k| k < classes).collect();
    let mut top_k_hits = vec![0usize; ks.len()];
    let mut histogram = ConfidenceHistogram {
        edges: (0..=HISTOGRAM_BINS).map(|i| i as f64 / HISTOGRAM_BINS as f64).collect(),
        correct: vec![0; HISTOGRAM_BINS],
        incorrect: vec![0; HISTOGRAM_BINS],
    };
    for (row, &label) in probabilities.chunks_exact(classes).zip(labels) {
        let label = label as usize;
        let predicted = argmax(row);
        confusion[label][predicted] += 1;
        // The small offset keeps f32 values such as 0.9 (0.8999999762) in the bin they name.
        let position = f64::from(row[predicted].clamp(0.0, 1.0)) * HISTOGRAM_BINS as f64 + 1e-6;
        let bin = (position as usize).min(HISTOGRAM_BINS - 1);
        if predicted == label {
            histogram.correct[bin] += 1
        } else {
            histogram.incorrect[bin] += 1
        }
        correct += usize::from(predicted == label);
        log_loss -= (row[label] as f64).clamp(1e-15, 1.0).ln();
        // Rank of the true class: how many classes come before it, by the tie-break argmax uses
        // (higher first, the first of equals first), so a constant model is not a top-k hit.
        let rank = row.iter().enumerate().filter(|&(i, &p)| p > row[label] || (p == row[label] && i < label)).count();
        for (hits, &k) in top_k_hits.iter_mut().zip(&ks) {
            *hits += usize::from(rank < k);
        }
    }
    let n = labels.len();
    let roc: Vec<RocCurve> = (0..classes)
        .map(|c| {
            let scores: Vec<(f32, bool)> =
                probabilities.chunks_exact(classes).zip(labels).map(|(row, &l)| (row[c], l as usize == c)).collect();
            roc_curve(&scores, &class_names[c])
        })
        .collect();
    let aucs: Vec<f64> = roc.iter().filter_map(|r| r.auc).collect();
    let macro_auc = (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64);
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
        roc,
        macro_auc,
        confidence_histogram: histogram,
    })
}

/// Regression errors of one target column, or averaged over every column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionErrors {
    pub mse: f64,
    pub rmse: f64,
    pub mae: f64,
    /// Coefficient of determination: 1 - SSE / SST; `None` when the actual values are constant.
    pub r2: Option<f64>,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetErrors {
    pub name: String,
    #[serde(flatten)]
    pub errors: RegressionErrors,
}

/// The host's regression metrics: averaged over targets (uniformly, in each target's own
/// units) and per target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegressionMetrics {
    /// Always `regression`: tells reports and tools which metrics these are.
    pub kind: &'static str,
    pub samples: usize,
    #[serde(flatten)]
    pub average: RegressionErrors,
    pub per_target: Vec<TargetErrors>,
}

fn errors(pairs: impl Iterator<Item = (f64, f64)> + Clone) -> RegressionErrors {
    let count = pairs.clone().count();
    let n = count.max(1) as f64;
    let mean = pairs.clone().map(|(actual, _)| actual).sum::<f64>() / n;
    let (mut sse, mut sae, mut sst) = (0.0, 0.0, 0.0);
    for (actual, predicted) in pairs {
        sse += (actual - predicted).powi(2);
        sae += (actual - predicted).abs();
        sst += (actual - mean).powi(2);
    }
    let mse = sse / n;
    RegressionErrors { mse, rmse: mse.sqrt(), mae: sae / n, r2: (sst > 0.0).then(|| 1.0 - sse / sst), count }
}

/// Regression metrics of `predicted` against `actual`, both `target_names.len()` values per
/// row, in the targets' own units.
pub fn regression(actual: &[f32], predicted: &[f32], target_names: &[String]) -> anyhow::Result<RegressionMetrics> {
    let columns = target_names.len();
    if columns == 0 || !actual.len().is_multiple_of(columns) || predicted.len() != actual.len() {
        anyhow::bail!(
            "the model predicted {} values for {} rows of {columns} targets; expected one value per target per row",
            predicted.len(),
            actual.len() / columns.max(1)
        );
    }
    if let Some(bad) = predicted.iter().find(|p| !p.is_finite()) {
        anyhow::bail!("the model predicted a non-finite value ({bad})");
    }
    let per_target: Vec<TargetErrors> = target_names
        .iter()
        .enumerate()
        .map(|(column, name)| {
            let pairs = actual
                .iter()
                .skip(column)
                .step_by(columns)
                .zip(predicted.iter().skip(column).step_by(columns))
                .map(|(&a, &p)| (f64::from(a), f64::from(p)));
            TargetErrors { name: name.clone(), errors: errors(pairs) }
        })
        .collect();
    let mean = |value: &dyn Fn(&RegressionErrors) -> f64| {
        per_target.iter().map(|t| value(&t.errors)).sum::<f64>() / per_target.len() as f64
    };
    let r2: Option<Vec<f64>> = per_target.iter().map(|t| t.errors.r2).collect();
    let average = RegressionErrors {
        mse: mean(&|e| e.mse),
        rmse: mean(&|e| e.rmse),
        mae: mean(&|e| e.mae),
        r2: r2.map(|values| values.iter().sum::<f64>() / values.len() as f64),
        count: actual.len() / columns,
    };
    Ok(RegressionMetrics { kind: "regression", samples: actual.len() / columns, average, per_target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_metrics_match_a_hand_computed_example() {
        // Target a: actual 1, 2, 3, 4; predicted 1, 2, 3, 6 -> SSE 4, SST 5, SAE 2.
        // Target b: actual 5, 5, 5, 5 (constant: no R²); predicted 4, 6, 5, 5 -> SSE 2, SAE 2.
        let actual = [1.0, 5.0, 2.0, 5.0, 3.0, 5.0, 4.0, 5.0];
        let predicted = [1.0, 4.0, 2.0, 6.0, 3.0, 5.0, 6.0, 5.0];
        let names = vec!["a".to_string(), "b".to_string()];
        let metrics = regression(&actual, &predicted, &names).unwrap();
        let a = &metrics.per_target[0].errors;
        assert_eq!((a.mse, a.mae, a.count), (1.0, 0.5, 4));
        assert!((a.r2.unwrap() - 0.2).abs() < 1e-12);
        let b = &metrics.per_target[1].errors;
        assert_eq!((b.mse, b.mae, b.r2), (0.5, 0.5, None));
        assert_eq!(metrics.average.mse, 0.75);
        assert!((metrics.average.rmse - (1.0 + 0.5f64.sqrt()) / 2.0).abs() < 1e-12);
        assert_eq!(metrics.average.r2, None, "no average R² when a target has none");
        let json = serde_json::to_value(&metrics).unwrap();
        assert_eq!(json["kind"], "regression");
        assert_eq!(json["mse"], 0.75);
        assert_eq!(json["per_target"][1]["name"], "b");
        let one = regression(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0], &names[..1]).unwrap();
        assert!((one.average.r2.unwrap() - 0.5).abs() < 1e-12);
        assert!(regression(&actual, &predicted[..6], &names).is_err());
        assert!(regression(&[1.0], &[f32::NAN], &names[..1]).unwrap_err().to_string().contains("non-finite"));
    }

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
    fn roc_curves_and_auc_match_hand_computed_values() {
        // Class 0 scores: positives 0.9, 0.4; negatives 0.6, 0.1. Pairs ranked right: 3 of 4.
        let labels = [0, 1, 0, 1];
        let probabilities = [0.9, 0.1, 0.6, 0.4, 0.4, 0.6, 0.1, 0.9];
        let m = classification(&labels, &probabilities, &names(2)).unwrap();
        assert_eq!(m.roc[0].auc, Some(0.75));
        assert_eq!(m.roc[0].points, vec![[0.0, 0.0], [0.0, 0.5], [0.5, 0.5], [0.5, 1.0], [1.0, 1.0]]);
        assert_eq!(m.roc[1].auc, Some(0.75));
        assert_eq!(m.macro_auc, Some(0.75));
        // Ties count half: every score equal gives the diagonal.
        let tied = classification(&[0, 1], &[0.5, 0.5, 0.5, 0.5], &names(2)).unwrap();
        assert_eq!(tied.roc[0].auc, Some(0.5));
        // A class absent from the test set has no curve.
        let absent = classification(&[0, 0], &[0.9, 0.1, 0.8, 0.2], &names(2)).unwrap();
        assert_eq!((absent.roc[1].auc, absent.macro_auc), (None, None));
        // The predicted class's confidence: samples 0 and 3 right at 0.9, samples 1 and 2 wrong at 0.6.
        assert_eq!(m.confidence_histogram.correct.iter().sum::<usize>(), 2);
        assert_eq!(m.confidence_histogram.correct[18], 2, "0.9 falls in the bin [0.90, 0.95)");
        assert_eq!(m.confidence_histogram.incorrect[12], 2, "0.6 falls in the bin [0.60, 0.65)");
        assert_eq!(m.confidence_histogram.edges.len(), 21);
    }

    #[test]
    fn malformed_predictions_are_refused() {
        assert!(
            classification(&[0, 1], &[0.5; 3], &names(2))
                .unwrap_err()
                .to_string()
                .contains("predicted 3 values for 2 samples")
        );
        let refused = |p: &[f32]| classification(&[0], p, &names(2)).unwrap_err().to_string();
        assert!(
            refused(&[f32::NAN, 0.5])
                .starts_with("the model predicted NaN in row 0; predictions must be probabilities")
        );
        assert!(
            refused(&[1.5, -0.5]).starts_with("the model predicted 1.5 in row 0; predictions must be probabilities")
        );
        assert_eq!(
            refused(&[0.4, 0.4]),
            "the model's probabilities in row 0 sum to 0.800000, not 1; each row must be a distribution over the 2 classes"
        );
    }

    #[test]
    fn ties_are_not_top_k_hits() {
        // A constant model: every class scores 0.1 on every sample, so it knows nothing.
        let labels: Vec<i64> = (0..10).collect();
        let probabilities = vec![0.1f32; 100];
        let m = classification(&labels, &probabilities, &names(10)).unwrap();
        assert_eq!(m.accuracy, 0.1, "argmax takes the first of equals: only class 0 is right");
        // Ties rank by the same rule: class c is preceded by the c classes before it.
        assert_eq!(m.top_k_accuracy["top_2"], 0.2);
        assert_eq!(m.top_k_accuracy["top_3"], 0.3);
        assert_eq!(m.top_k_accuracy["top_5"], 0.5);
    }
}
