//! RegressionReport: one self-contained HTML page per run (inline CSS and SVG, nothing fetched
//! at view time): test metrics overall and per target, predicted against actual with the
//! y = x line, residuals against predicted, a residual histogram, the loss curves and the data's
//! splits and transforms. Written by the summary call; the data, training and evaluation calls
//! write nothing of their own because everything is on this page. Text is escaped by tera and
//! by the chart functions.

use std::path::PathBuf;

use charts::{histogram, line_chart, parity, scatter};
use plugin_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use tera::{Context, Tera};

const TEMPLATE: &str = include_str!("../templates/regression.html");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportConfig {
    reporting: ReportSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportSection {
    title: Option<String>,
    histogram_bins: usize,
}

/// Writes `regression.html` into the run's reports folder.
pub struct RegressionReport {
    tera: Tera,
    title: Option<String>,
    bins: usize,
}

impl PluginClass for RegressionReport {
    const NAME: &'static str = "RegressionReport";
    const SUMMARY: &'static str =
        "one HTML page: regression metrics, predicted vs actual, residuals, loss curves (tera, inline SVG)";

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("reporting", "title", ConfigType::String)
                .describe("page title (default: the experiment name)"),
            ConfigKey::new("reporting", "histogram_bins", ConfigType::Count)
                .default(20)
                .describe("bins of the residual histogram"),
        ]
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        let section = config.parse::<ReportConfig>()?.reporting;
        if section.histogram_bins == 0 {
            return Err(PluginError::invalid_config("reporting.histogram_bins: must be at least 1"));
        }
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html"]);
        tera.add_raw_template("regression.html", TEMPLATE)
            .map_err(|e| PluginError::new(format!("the built-in template: {e}")))?;
        Ok(RegressionReport { tera, title: section.title, bins: section.histogram_bins })
    }
}

fn format_number(value: &Value) -> String {
    value.as_f64().map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into())
}

/// A metrics row: overall (named "all targets") or one target's.
fn metrics_row(name: &str, metrics: &Value) -> Value {
    json!({
        "name": name,
        "mse": format_number(&metrics["mse"]),
        "rmse": format_number(&metrics["rmse"]),
        "mae": format_number(&metrics["mae"]),
        "r2": format_number(&metrics["r2"]),
        "count": metrics["count"],
    })
}

/// Equal-width bin edges over the values.
fn edges(values: &[f64], bins: usize) -> Vec<f64> {
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, lo + 0.5) };
    (0..=bins).map(|i| lo + (hi - lo) * i as f64 / bins as f64).collect()
}

fn counts(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let bins = edges.len() - 1;
    let (lo, hi) = (edges[0], edges[bins]);
    let mut counts = vec![0.0; bins];
    for value in values {
        let bin = (((value - lo) / (hi - lo)) * bins as f64).floor().clamp(0.0, bins as f64 - 1.0) as usize;
        counts[bin] += 1.0;
    }
    counts
}

fn floats(value: &Value) -> Vec<f64> {
    value.as_array().into_iter().flatten().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect()
}

impl RegressionReport {
    fn page(&self, input: &Value) -> Result<String, PluginError> {
        let run = &input["run"];
        let test = &run["metrics"]["test"];
        if test["kind"] != "regression" {
            return Err(PluginError::new(
                "RegressionReport draws regression runs; this run has no regression metrics (use a classification report)",
            ));
        }
        let predictions = &input["evaluation"]["regression"];
        let mut metrics = vec![metrics_row("all targets", test)];
        let mut targets = Vec::new();
        for (index, target) in test["per_target"].as_array().into_iter().flatten().enumerate() {
            let name = target["name"].as_str().unwrap_or("target");
            metrics.push(metrics_row(name, target));
            let actual = floats(&predictions["actual"][index]);
            let predicted = floats(&predictions["predicted"][index]);
            let pairs: Vec<(f64, f64)> = actual.iter().copied().zip(predicted.iter().copied()).collect();
            let residuals: Vec<f64> = pairs.iter().map(|(a, p)| a - p).collect();
            let residual_points: Vec<(f64, f64)> = predicted.iter().copied().zip(residuals.iter().copied()).collect();
            let bin_edges = edges(&residuals, self.bins);
            targets.push(json!({
                "name": name,
                "parity": parity(&pairs, &format!("actual {name}"), &format!("predicted {name}")),
                "residuals": scatter(&residual_points, None, false, &format!("predicted {name}"), "residual"),
                "histogram": histogram(&bin_edges, &[("test rows".into(), counts(&residuals, &bin_edges))], "residual"),
            }));
        }
        let history = run["history"].as_object().cloned().unwrap_or_default();
        let mut epochs: Vec<(f64, Value)> =
            history.iter().filter_map(|(e, v)| Some((e.parse::<f64>().ok()?, v.clone()))).collect();
        epochs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let curve = |name: &str| -> Vec<(f64, f64)> {
            epochs.iter().filter_map(|(e, v)| Some((*e, v[name].as_f64()?))).collect()
        };
        let loss_chart = line_chart(
            &[("train loss".into(), curve("loss")), ("validation loss".into(), curve("val_loss"))],
            "epoch",
            "loss",
            run["fit"]["best_epoch"].as_f64(),
        );
        let splits: Vec<Value> = ["train", "validation", "test"]
            .iter()
            .map(|name| json!({"name": name, "rows": run["data"]["splits"][name]["rows"]}))
            .collect();
        let transforms: Vec<Value> = run["data"]["transforms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| json!({"name": t["name"], "parameters": t["parameters"].to_string()}))
            .collect();
        let features = run["data"]["metadata"]["feature_names"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        let model = run["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["kind"] == "Model")
            .and_then(|p| p["class"].as_str())
            .unwrap_or("?");
        let mut context = Context::new();
        let experiment = run["experiment_name"].as_str().unwrap_or("run");
        context.insert("title", self.title.as_deref().unwrap_or(experiment));
        context.insert("run_id", &run["run_id"]);
        context.insert("model", model);
        context.insert("data_description", &run["data"]["description"]);
        context.insert("metrics", &metrics);
        context.insert("targets", &targets);
        context.insert("loss_chart", &loss_chart);
        context.insert("splits", &splits);
        context.insert("features", &features);
        context.insert("transforms", &transforms);
        self.tera
            .render("regression.html", &context)
            .map_err(|e| PluginError::new(format!("rendering the report: {e}")))
    }
}

impl ReportGenerator for RegressionReport {
    fn generate_data_report(&mut self, _: &Value, _: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        Ok(Vec::new())
    }

    fn generate_training_report(&mut self, _: &Value, _: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        Ok(Vec::new())
    }

    fn generate_evaluation_report(&mut self, _: &Value, _: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        Ok(Vec::new())
    }

    fn generate_summary_report(&mut self, input: &Value, services: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        let page = self.page(input)?;
        let path = services.artifact_dir().join("regression.html");
        std::fs::write(&path, page).with_context(|| path.display())?;
        Ok(vec![path])
    }
}
