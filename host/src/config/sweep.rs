//! The `sweep` section of an experiment config: which keys to vary and how (grid or seeded
//! random search), the metric to optimise and its direction, the trial budget. Trials are the
//! base config (the file without `sweep`) with each varied key set, so every trial is an
//! ordinary experiment config, validated like any other.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Map, Value, json};

use super::schema::describe;
use super::{ConfigError, Problem};

/// How one key varies.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// These values, in order (grid and random search).
    Values(Vec<Value>),
    /// Uniform between `min` and `max`, or log-uniform (random search only).
    Range { min: f64, max: f64, log: bool, integer: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Grid,
    Random,
}

/// A parsed `sweep` section.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub method: Method,
    /// At most this many trials.
    pub trials: usize,
    pub seed: u64,
    /// A final metric as the store names it (`test.accuracy`, `test.log_loss`).
    pub metric: String,
    pub maximize: bool,
    /// Dotted config keys (`training.learning_rate`) and their domains, in file order.
    pub parameters: Vec<(String, Domain)>,
    pub prune: Option<Prune>,
}

/// Median stopping: a running trial whose per-epoch metric is worse than the median of the
/// completed trials at the same epoch is stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct Prune {
    /// A per-epoch metric (`val_loss`, `val_accuracy`).
    pub metric: String,
    pub maximize: bool,
    /// Trials are compared from this epoch on.
    pub after_epochs: u64,
    /// Completed trials needed before any is pruned.
    pub min_trials: usize,
}

/// What a sweep selects on unless told: the trained model's accuracy on the validation split.
pub const DEFAULT_METRIC: &str = "validation.accuracy";

/// The held-out figure of a sweep that selects on a validation metric (`validation.accuracy`):
/// the same metric on the test set (`test.accuracy`), which no trial was chosen by.
pub fn held_out_metric(metric: &str) -> Option<String> {
    metric.strip_prefix("validation.").map(|rest| format!("test.{rest}"))
}

/// A warning for a sweep that selects on the test set: the best trial's score is then chosen on
/// the data it is scored on, and overstates how the model does on new data.
pub fn test_metric_warning(metric: &str) -> Option<String> {
    let rest = metric.strip_prefix("test.")?;
    Some(format!(
        "sweep.metric {metric} selects the best trial on the test set, so its score overstates it; \
         select on validation.{rest} and read {metric} as the held-out figure"
    ))
}

/// One trial: its number (from 1) and the value of each varied key.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub number: usize,
    pub values: Vec<(String, Value)>,
}

impl Trial {
    /// `training.learning_rate=0.01, model.dropout=0.2`.
    pub fn label(&self) -> String {
        self.values.iter().map(|(k, v)| format!("{k}={}", plain(v))).collect::<Vec<_>>().join(", ")
    }
}

/// A value as a person writes it: strings without quotes.
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Splits a config file's value into the base config and its parsed `sweep` section.
pub fn split(file: &Path, value: &Value) -> Result<(Value, Sweep), ConfigError> {
    let mut base = value.clone();
    let section = base.as_object_mut().and_then(|root| root.remove("sweep")).ok_or_else(|| {
        ConfigError::single(
            file,
            "sweep",
            "missing: a sweep config needs a `sweep` section (method, parameters, metric)",
        )
    })?;
    let mut problems = Vec::new();
    let sweep = parse(&section, &mut problems);
    if !problems.is_empty() {
        return Err(ConfigError { file: file.to_owned(), problems });
    }
    Ok((base, sweep))
}

fn parse(section: &Value, problems: &mut Vec<Problem>) -> Sweep {
    let empty = Map::new();
    let map = section.as_object().unwrap_or_else(|| {
        problems.push(Problem::new("sweep", format!("expected a mapping, found {}", describe(section))));
        &empty
    });
    const KEYS: [&str; 7] = ["method", "trials", "seed", "metric", "direction", "parameters", "prune"];
    for key in map.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        problems.push(Problem::new(
            &format!("sweep.{key}"),
            format!("unknown key; the sweep section accepts: {}", KEYS.join(", ")),
        ));
    }
    let method = match map.get("method").and_then(Value::as_str).unwrap_or("grid") {
        "grid" => Method::Grid,
        "random" => Method::Random,
        other => {
            problems.push(Problem::new("sweep.method", format!("expected grid or random, found {other:?}")));
            Method::Grid
        }
    };
    let count = |key: &str, default: u64, problems: &mut Vec<Problem>| match map.get(key) {
        None => default,
        Some(v) => v.as_u64().filter(|&n| n > 0 || key == "seed").unwrap_or_else(|| {
            problems.push(Problem::new(
                &format!("sweep.{key}"),
                format!("expected a positive whole number, found {}", describe(v)),
            ));
            default
        }),
    };
    let mut trials = count("trials", 64, problems);
    if trials > MAX_TRIALS {
        problems.push(Problem::new(
            "sweep.trials",
            format!(
                "at most {MAX_TRIALS} trials (each is a run), found {trials}; split the sweep or narrow its ranges"
            ),
        ));
        trials = MAX_TRIALS;
    }
    let trials = trials as usize;
    let seed = count("seed", 0, problems);
    let metric = map.get("metric").and_then(Value::as_str).unwrap_or(DEFAULT_METRIC).to_owned();
    let maximize = match map.get("direction").and_then(Value::as_str).unwrap_or("maximize") {
        "maximize" => true,
        "minimize" => false,
        other => {
            problems.push(Problem::new("sweep.direction", format!("expected maximize or minimize, found {other:?}")));
            true
        }
    };
    let mut parameters = Vec::new();
    match map.get("parameters").and_then(Value::as_object) {
        Some(entries) if !entries.is_empty() => {
            for (key, spec) in entries {
                let path = format!("sweep.parameters.{key}");
                let (section_name, _) = key.split_once('.').unwrap_or((key.as_str(), ""));
                let known =
                    super::experiment::SECTIONS.contains(&section_name) || matches!(key.as_str(), "seed" | "threads");
                if !known {
                    problems.push(Problem::new(
                        &path,
                        format!(
                            "no config section {section_name}; vary keys of {} (e.g. training.learning_rate) or seed",
                            super::experiment::SECTIONS.join(", ")
                        ),
                    ));
                }
                match spec {
                    Value::Array(values) if !values.is_empty() => {
                        parameters.push((key.clone(), Domain::Values(values.clone())))
                    }
                    Value::Object(range) => {
                        let bound = |name: &str| range.get(name).and_then(Value::as_f64);
                        match (bound("min"), bound("max")) {
                            (Some(min), Some(max)) if min < max => {
                                let log = range.get("log").and_then(Value::as_bool).unwrap_or(false);
                                if log && min <= 0.0 {
                                    problems.push(Problem::new(&path, "a log range needs min above 0"));
                                }
                                if method == Method::Grid {
                                    problems.push(Problem::new(
                                        &path,
                                        "a grid needs a list of values; ranges are for method: random",
                                    ));
                                }
                                let integer = range.get("integer").and_then(Value::as_bool).unwrap_or(false);
                                parameters.push((key.clone(), Domain::Range { min, max, log, integer }));
                            }
                            _ => problems.push(Problem::new(
                                &path,
                                "expected {min: A, max: B} with A below B, or a list of values",
                            )),
                        }
                    }
                    other => problems.push(Problem::new(
                        &path,
                        format!("expected a non-empty list of values or {{min, max}}, found {}", describe(other)),
                    )),
                }
            }
        }
        _ => problems.push(Problem::new(
            "sweep.parameters",
            "expected a mapping of config keys to values or ranges, e.g. training.learning_rate: [0.001, 0.01]",
        )),
    }
    let prune = map.get("prune").map(|section| parse_prune(section, problems));
    Sweep { method, trials, seed, metric, maximize, parameters, prune }
}

fn parse_prune(section: &Value, problems: &mut Vec<Problem>) -> Prune {
    let mut prune = Prune { metric: "val_loss".into(), maximize: false, after_epochs: 1, min_trials: 2 };
    let Some(map) = section.as_object() else {
        problems.push(Problem::new(
            "sweep.prune",
            format!("expected a mapping (metric, direction, after_epochs, min_trials), found {}", describe(section)),
        ));
        return prune;
    };
    for (key, value) in map {
        let path = format!("sweep.prune.{key}");
        match (key.as_str(), value) {
            ("metric", Value::String(metric)) => prune.metric = metric.clone(),
            ("direction", Value::String(d)) if d == "maximize" || d == "minimize" => prune.maximize = d == "maximize",
            ("after_epochs", v) if v.as_u64().is_some_and(|n| n >= 1) => prune.after_epochs = v.as_u64().unwrap_or(1),
            ("min_trials", v) if v.as_u64().is_some_and(|n| n >= 1) => {
                prune.min_trials = v.as_u64().unwrap_or(1) as usize
            }
            ("metric" | "direction" | "after_epochs" | "min_trials", other) => {
                problems.push(Problem::new(&path, format!("unexpected value {}", describe(other))))
            }
            _ => problems
                .push(Problem::new(&path, "unknown key; prune accepts metric, direction, after_epochs, min_trials")),
        }
    }
    prune
}

/// The most trials a sweep may ask for: each is a run, and its config is held until it starts.
pub const MAX_TRIALS: u64 = 10_000;

impl Sweep {
    /// The trials, in a fixed order: the grid's cartesian product (last key varying fastest),
    /// or `trials` seeded random draws; at most `trials` either way. Only those trials are
    /// made: a grid of 20^7 combinations with `trials: 4` builds four.
    pub fn trials(&self) -> Vec<Trial> {
        let combinations: Vec<Vec<(String, Value)>> = match self.method {
            Method::Grid => {
                let axes: Vec<(&String, &Vec<Value>)> = self
                    .parameters
                    .iter()
                    .filter_map(|(key, domain)| match domain {
                        Domain::Values(values) => Some((key, values)),
                        Domain::Range { .. } => None,
                    })
                    .collect();
                let size = axes.iter().try_fold(1usize, |size, (_, values)| size.checked_mul(values.len()));
                let count = size.map_or(self.trials, |size| size.min(self.trials));
                (0..count)
                    .map(|index| {
                        // The index in mixed radix, the last key the lowest digit.
                        let mut rest = index;
                        let mut values: Vec<(String, Value)> = axes
                            .iter()
                            .rev()
                            .map(|(key, values)| {
                                let value = values[rest % values.len()].clone();
                                rest /= values.len();
                                ((*key).clone(), value)
                            })
                            .collect();
                        values.reverse();
                        values
                    })
                    .collect()
            }
            Method::Random => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
                (0..self.trials)
                    .map(|_| {
                        self.parameters.iter().map(|(key, domain)| (key.clone(), draw(domain, &mut rng))).collect()
                    })
                    .collect()
            }
        };
        combinations.into_iter().enumerate().map(|(i, values)| Trial { number: i + 1, values }).collect()
    }
}

fn draw(domain: &Domain, rng: &mut ChaCha8Rng) -> Value {
    match domain {
        Domain::Values(values) => values[rng.gen_range(0..values.len())].clone(),
        Domain::Range { min, max, log, integer } => {
            let u: f64 = rng.r#gen();
            let x = if *log { (min.ln() + u * (max.ln() - min.ln())).exp() } else { min + u * (max - min) };
            if *integer {
                json!(x.round() as i64)
            } else {
                // Six significant digits: readable in tables, and the same on every machine.
                json!(format!("{x:.6e}").parse::<f64>().unwrap_or(x))
            }
        }
    }
}

/// The base config with a trial's keys set (`training.learning_rate` -> base["training"]["learning_rate"]).
pub fn apply(base: &Value, trial: &Trial) -> Value {
    let mut config = base.clone();
    for (key, value) in &trial.values {
        let mut target = &mut config;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            if !target.get(*part).is_some_and(Value::is_object) {
                target[*part] = json!({});
            }
            target = &mut target[*part];
        }
        target[parts[parts.len() - 1]] = value.clone();
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(text: &str) -> Result<(Value, Sweep), ConfigError> {
        let value = crate::config::parse_yaml(Path::new("s.yaml"), text).unwrap();
        split(Path::new("s.yaml"), &value)
    }

    #[test]
    fn a_grid_is_the_cartesian_product_capped_by_the_budget() {
        let (base, s) = sweep(
            "experiment_name: x\ntraining: {epochs: 1}\nmodel: {}\nsweep:\n  trials: 3\n  parameters:\n    training.learning_rate: [0.1, 0.01]\n    model.hidden_layers: [[64], [128, 64]]\n",
        )
        .unwrap();
        assert!(base.get("sweep").is_none());
        let trials = s.trials();
        assert_eq!(trials.len(), 3);
        assert_eq!(trials[1].label(), "training.learning_rate=0.1, model.hidden_layers=[128,64]");
        let config = apply(&base, &trials[2]);
        assert_eq!(config["training"], json!({"epochs": 1, "learning_rate": 0.01}));
        assert_eq!(config["model"]["hidden_layers"], json!([64]));
    }

    #[test]
    fn only_the_trials_asked_for_are_made_however_large_the_grid() {
        // 20^7 = 1.28e9 combinations (about 3 GB built whole); four asked for.
        let values: Vec<String> = (0..20).map(|v| v.to_string()).collect();
        let keys: String =
            (0..7).map(|k| format!("    training.k{k}: [{}]\n", values.join(", "))).collect::<Vec<_>>().concat();
        let (_, s) =
            sweep(&format!("experiment_name: x\ntraining: {{}}\nsweep:\n  trials: 4\n  parameters:\n{keys}")).unwrap();
        let trials = s.trials();
        assert_eq!(trials.len(), 4);
        // The last key varies fastest.
        assert_eq!(trials[3].values[6], ("training.k6".to_owned(), json!(3)));
        assert_eq!(trials[3].values[0], ("training.k0".to_owned(), json!(0)));
        let error = sweep(&format!(
            "experiment_name: x\ntraining: {{}}\nsweep:\n  trials: 1000000000000\n  parameters:\n{keys}"
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("sweep.trials: at most 10000 trials (each is a run), found 1000000000000"), "{error}");
    }

    #[test]
    fn random_search_is_seeded_and_stays_in_its_ranges() {
        let text = "experiment_name: x\ntraining: {}\nmodel: {}\nsweep:\n  method: random\n  trials: 20\n  seed: 5\n  parameters:\n    training.learning_rate: {min: 0.0001, max: 0.1, log: true}\n    training.batch_size: [32, 64]\n    model.dropout: {min: 0.0, max: 0.5}\n";
        let (_, s) = sweep(text).unwrap();
        let (a, b) = (s.trials(), sweep(text).unwrap().1.trials());
        assert_eq!(a, b);
        assert_eq!(a.len(), 20);
        for trial in &a {
            let lr = trial.values[0].1.as_f64().unwrap();
            assert!((0.0001..=0.1).contains(&lr), "{lr}");
            assert!([json!(32), json!(64)].contains(&trial.values[1].1));
            assert!((0.0..=0.5).contains(&trial.values[2].1.as_f64().unwrap()));
        }
        let (_, other) = sweep(&text.replace("seed: 5", "seed: 6")).unwrap();
        assert_ne!(other.trials(), a);
    }

    #[test]
    fn every_problem_in_the_section_is_named() {
        let error = sweep(
            "experiment_name: x\ntraining: {}\nsweep:\n  method: bayes\n  direction: up\n  colour: red\n  parameters:\n    training.learning_rate: {min: 1, max: 0}\n    optimiser.beta: [1]\n",
        )
        .unwrap_err()
        .to_string();
        for part in [
            "sweep.method: expected grid or random, found \"bayes\"",
            "sweep.direction: expected maximize or minimize",
            "sweep.colour: unknown key",
            "sweep.parameters.training.learning_rate: expected {min: A, max: B} with A below B",
            "sweep.parameters.optimiser.beta: no config section optimiser",
        ] {
            assert!(error.contains(part), "{part} missing from:\n{error}");
        }
        let error = sweep(
            "experiment_name: x\ntraining: {}\nsweep:\n  parameters:\n    training.learning_rate: {min: 0.1, max: 1}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("a grid needs a list of values"), "{error}");
        assert!(sweep("experiment_name: x\n").unwrap_err().to_string().contains("sweep: missing"));
    }
}
