//! The one owner of the run folder's file formats that the host writes and reads back:
//! `history.csv` (per-epoch metrics), `predictions.csv` (the test rows' predictions) and JSON
//! files. Reports get predictions from memory; reading the file back is for reused stages and
//! for regenerating a past run's reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;

use crate::metrics;

/// Writes `value` as pretty JSON.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// `epoch,<metric>,...`: one row per epoch, metrics in name order, empty where an epoch lacks one.
pub fn write_history(path: &Path, history: &BTreeMap<u64, BTreeMap<String, f64>>) -> anyhow::Result<()> {
    let mut names: Vec<&String> = history.values().flat_map(|m| m.keys()).collect();
    names.sort();
    names.dedup();
    let mut text = String::from("epoch");
    for name in &names {
        text.push(',');
        text.push_str(name);
    }
    text.push('\n');
    for (epoch, values) in history {
        text.push_str(&epoch.to_string());
        for name in &names {
            text.push(',');
            if let Some(value) = values.get(*name) {
                text.push_str(&value.to_string());
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
}

/// The test split's predictions, as evaluation made them.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Per test row: its source row in the loaded data, its true class, the class
    /// probabilities (`classes` per row), and the predicted class and its confidence as the
    /// file has them (the confidence to 6 decimals), so a report drawn from memory and one
    /// drawn from the file later are the same. Made by [`Predictions::classes`].
    Classes {
        rows: Vec<usize>,
        labels: Vec<i64>,
        probabilities: Vec<f32>,
        classes: usize,
        predicted: Vec<usize>,
        confidence: Vec<f64>,
    },
    /// Per test row: its source row, and actual and predicted values in the targets' own units
    /// (`targets` per row).
    Values { rows: Vec<usize>, actual: Vec<f32>, predicted: Vec<f32>, targets: usize },
}

/// A misclassified or correctly classified test row: (index in the test split, true class,
/// predicted class, confidence).
pub type Classified = (usize, i64, usize, f64);

/// A confidence as `predictions.csv` writes it.
fn written_confidence(value: f32) -> f64 {
    format!("{value:.6}").parse().unwrap_or(f64::NAN)
}

impl Predictions {
    /// Classification predictions from the model's probabilities.
    pub fn classes(rows: Vec<usize>, labels: Vec<i64>, probabilities: Vec<f32>, classes: usize) -> Self {
        let (predicted, confidence) = probabilities
            .chunks_exact(classes.max(1))
            .map(|probs| {
                let predicted = metrics::argmax(probs);
                (predicted, written_confidence(probs[predicted]))
            })
            .unzip();
        Predictions::Classes { rows, labels, probabilities, classes, predicted, confidence }
    }

    /// Each test row's true class, predicted class and confidence (classification only).
    pub fn classified(&self) -> Vec<Classified> {
        match self {
            Predictions::Classes { labels, predicted, confidence, .. } => labels
                .iter()
                .zip(predicted)
                .zip(confidence)
                .enumerate()
                .map(|(index, ((&label, &predicted), &confidence))| (index, label, predicted, confidence))
                .collect(),
            Predictions::Values { .. } => Vec::new(),
        }
    }

    /// Per target, the actual and the predicted values (regression only).
    pub fn by_target(&self) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        match self {
            Predictions::Values { actual, predicted, targets, .. } => {
                let column = |values: &[f32], target: usize| -> Vec<f64> {
                    values.iter().skip(target).step_by((*targets).max(1)).map(|&v| f64::from(v)).collect()
                };
                (
                    (0..*targets).map(|t| column(actual, t)).collect(),
                    (0..*targets).map(|t| column(predicted, t)).collect(),
                )
            }
            Predictions::Classes { .. } => (Vec::new(), Vec::new()),
        }
    }

    /// Writes `predictions.csv`: `row,true,predicted,confidence,p_<class>...` for classes,
    /// `row,actual_<target>,predicted_<target>,...` for values. `names` are the class or target
    /// names.
    pub fn write(&self, path: &Path, names: &[String]) -> anyhow::Result<()> {
        let mut text = String::new();
        match self {
            Predictions::Classes { rows, labels, probabilities, classes, predicted, .. } => {
                text.push_str("row,true,predicted,confidence");
                for name in names {
                    let _ = write!(text, ",p_{}", csv_name(name));
                }
                text.push('\n');
                for (((row, &label), probs), &predicted) in
                    rows.iter().zip(labels).zip(probabilities.chunks_exact(*classes)).zip(predicted)
                {
                    let _ = write!(text, "{row},{label},{predicted},{:.6}", probs[predicted]);
                    for p in probs {
                        let _ = write!(text, ",{p:.6}");
                    }
                    text.push('\n');
                }
            }
            Predictions::Values { rows, actual, predicted, targets } => {
                text.push_str("row");
                for name in names {
                    let _ = write!(text, ",actual_{0},predicted_{0}", csv_name(name));
                }
                text.push('\n');
                for ((row, actual), predicted) in
                    rows.iter().zip(actual.chunks_exact(*targets)).zip(predicted.chunks_exact(*targets))
                {
                    let _ = write!(text, "{row}");
                    for (a, p) in actual.iter().zip(predicted) {
                        let _ = write!(text, ",{a},{p}");
                    }
                    text.push('\n');
                }
            }
        }
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))
    }

    /// Reads a `predictions.csv` written by [`Predictions::write`] (its header says which kind).
    /// Probabilities come back rounded as written (6 decimals).
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
        let bad = |line: usize| anyhow::anyhow!("{}: line {line} is not a prediction row", path.display());
        if header.get(1) == Some(&"true") {
            let classes = header.len().saturating_sub(4);
            let (mut rows, mut labels, mut probabilities) = (Vec::new(), Vec::new(), Vec::new());
            let (mut predicted, mut confidence) = (Vec::new(), Vec::new());
            for (index, line) in lines.enumerate() {
                let fields: Vec<&str> = line.split(',').collect();
                if fields.len() != header.len() {
                    return Err(bad(index + 2));
                }
                rows.push(fields[0].parse().map_err(|_| bad(index + 2))?);
                labels.push(fields[1].parse().map_err(|_| bad(index + 2))?);
                predicted.push(fields[2].parse().map_err(|_| bad(index + 2))?);
                confidence.push(fields[3].parse().map_err(|_| bad(index + 2))?);
                for field in &fields[4..] {
                    probabilities.push(field.parse().map_err(|_| bad(index + 2))?);
                }
            }
            Ok(Predictions::Classes { rows, labels, probabilities, classes, predicted, confidence })
        } else if header.first() == Some(&"row") && header.len() % 2 == 1 {
            let targets = header.len() / 2;
            let (mut rows, mut actual, mut predicted) = (Vec::new(), Vec::new(), Vec::new());
            for (index, line) in lines.enumerate() {
                let fields: Vec<&str> = line.split(',').collect();
                if fields.len() != header.len() {
                    return Err(bad(index + 2));
                }
                rows.push(fields[0].parse().map_err(|_| bad(index + 2))?);
                for pair in fields[1..].chunks_exact(2) {
                    actual.push(pair[0].parse().map_err(|_| bad(index + 2))?);
                    predicted.push(pair[1].parse().map_err(|_| bad(index + 2))?);
                }
            }
            Ok(Predictions::Values { rows, actual, predicted, targets })
        } else {
            bail!("{}: not a predictions file (header {})", path.display(), header.join(","))
        }
    }
}

/// A CSV header field from a name.
fn csv_name(name: &str) -> String {
    name.replace([',', '"', '\n'], "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_round_trip_through_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictions.csv");
        let classes = Predictions::classes(vec![7, 3], vec![1, 0], vec![0.25, 0.75, 0.5, 0.5], 2);
        classes.write(&path, &["a,b".into(), "c".into()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "row,true,predicted,confidence,p_a_b,p_c\n7,1,1,0.750000,0.250000,0.750000\n3,0,0,0.500000,0.500000,0.500000\n"
        );
        assert_eq!(Predictions::read(&path).unwrap(), classes);
        assert_eq!(classes.classified(), vec![(0, 1, 1, 0.75), (1, 0, 0, 0.5)]);
        // Probabilities that 6 decimals cannot hold: what a report is drawn from is the same
        // from memory and from the file (regression: reports regenerated later differed).
        let close =
            Predictions::classes(vec![0, 1], vec![0, 1], vec![0.999_999_6, 0.000_000_4, 0.999_999_8, 0.000_000_2], 2);
        close.write(&path, &["x".into(), "y".into()]).unwrap();
        assert_eq!(Predictions::read(&path).unwrap().classified(), close.classified());

        let values = Predictions::Values {
            rows: vec![0, 2],
            actual: vec![1.5, -2.0, 3.25, 4.0],
            predicted: vec![1.0, -1.0, 3.0, 0.1],
            targets: 2,
        };
        values.write(&path, &["x".into(), "y".into()]).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "row,actual_x,predicted_x,actual_y,predicted_y\n0,1.5,1,-2,-1\n2,3.25,3,4,0.1\n"
        );
        assert_eq!(Predictions::read(&path).unwrap(), values);
        assert_eq!(
            values.by_target(),
            (vec![vec![1.5, 3.25], vec![-2.0, 4.0]], vec![vec![1.0, 3.0], vec![-1.0, f64::from(0.1f32)]])
        );
        std::fs::write(&path, "something,else\n").unwrap();
        assert!(Predictions::read(&path).unwrap_err().to_string().contains("not a predictions file"));
    }

    #[test]
    fn history_has_one_row_per_epoch_and_a_column_per_metric() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.csv");
        let history = [
            (1, [("loss".to_owned(), 0.5)].into()),
            (2, [("loss".to_owned(), 0.25), ("val_loss".to_owned(), 0.3)].into()),
        ]
        .into();
        write_history(&path, &history).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "epoch,loss,val_loss\n1,0.5,\n2,0.25,0.3\n");
    }
}
