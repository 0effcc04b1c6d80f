//! MNISTReportGenerator: self-contained HTML pages (inline CSS, charts as inline SVG, nothing
//! fetched at view time) rendered with tera from templates that `reporting.templates_dir` can
//! replace. Every string from config, data or plugins is escaped: tera escapes template
//! variables, and the SVG built here escapes its own text.

use std::fmt::Write;
use std::path::PathBuf;

use charts::{CHAR_WIDTH, escape, grouped_bars, heatmap, histogram, image_svg, line_chart, text_width};
use plugin_sdk::prelude::*;
use serde::Deserialize;
use serde_json::{Value, json};
use tera::{Context, Tera};

const TEMPLATES: [(&str, &str); 5] = [
    ("base.html", include_str!("../templates/base.html")),
    ("index.html", include_str!("../templates/index.html")),
    ("data.html", include_str!("../templates/data.html")),
    ("training.html", include_str!("../templates/training.html")),
    ("evaluation.html", include_str!("../templates/evaluation.html")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportConfig {
    reporting: ReportSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportSection {
    templates_dir: Option<String>,
    title: Option<String>,
    sample_images: usize,
}

/// Writes index, data, training and evaluation pages.
pub struct MnistReportGenerator {
    tera: Tera,
    title: Option<String>,
    sample_images: usize,
}

impl PluginClass for MnistReportGenerator {
    const NAME: &'static str = "MNISTReportGenerator";
    const SUMMARY: &'static str = "self-contained HTML reports (tera templates, inline SVG charts)";

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("reporting", "templates_dir", ConfigType::String)
                .describe("a folder whose base/index/data/training/evaluation.html replace the built-in templates"),
            ConfigKey::new("reporting", "title", ConfigType::String)
                .describe("page title (default: the experiment name)"),
            ConfigKey::new("reporting", "sample_images", ConfigType::Count)
                .default(24)
                .describe("sample images in the data report"),
        ]
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        let config: ReportConfig = config.parse()?;
        let section = config.reporting;
        let mut tera = Tera::default();
        tera.autoescape_on(vec![".html"]);
        let mut templates: Vec<(String, String)> =
            TEMPLATES.iter().map(|(n, t)| (n.to_string(), t.to_string())).collect();
        if let Some(dir) = &section.templates_dir {
            if !std::path::Path::new(dir).is_dir() {
                return Err(PluginError::invalid_config(format!("reporting.templates_dir: {dir} is not a folder")));
            }
            let mut replaced = 0;
            for (name, text) in &mut templates {
                let path = PathBuf::from(dir).join(&*name);
                if path.is_file() {
                    *text = std::fs::read_to_string(&path).with_context(|| path.display())?;
                    replaced += 1;
                }
            }
            if replaced == 0 {
                let names: Vec<&str> = TEMPLATES.iter().map(|(n, _)| *n).collect();
                return Err(PluginError::invalid_config(format!(
                    "reporting.templates_dir: {dir} holds none of {}; copy them from plugins/mnist-plugin/templates",
                    names.join(", ")
                )));
            }
        }
        tera.add_raw_templates(templates)
            .map_err(|e| PluginError::invalid_config(format!("reporting.templates_dir: {}", tera_error(&e))))?;
        Ok(MnistReportGenerator { tera, title: section.title, sample_images: section.sample_images })
    }
}

fn tera_error(error: &tera::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

/// The side of square samples (28 for 784 or 1x28x28 features), or 0.
fn image_side(data: &Value) -> usize {
    let size = data["sample_shape"].as_array().map(|s| s.iter().map(number).product::<f64>()).unwrap_or(0.0);
    let side = size.sqrt().round() as usize;
    if side * side == size as usize { side } else { 0 }
}

/// One box of the lineage picture: what it is and, for a file or data, its digest's start.
struct Entity {
    title: String,
    sha: String,
}

/// The width the lineage picture is laid out to: inside a report card at the pages' widest
/// (1200px main, less its and the card's padding, is 1090px).
const LINEAGE_WIDTH: f64 = 1040.0;

/// `text` in lines of at most `max` characters, broken at spaces (and inside words longer than
/// a line); at most three lines, the last marked with "…" when text was left out.
fn wrap(text: &str, max: usize) -> Vec<String> {
    let max = max.max(4);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        if !line.is_empty() && line.chars().count() + 1 + word.len() <= max {
            line.push(' ');
            line.extend(word);
            continue;
        }
        if !line.is_empty() {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > max {
            lines.push(word.drain(..max).collect());
        }
        line = word.into_iter().collect();
    }
    if !line.is_empty() {
        lines.push(line);
    }
    if lines.len() > 3 {
        lines.truncate(3);
        let last: String = lines[2].chars().take(max - 1).collect();
        lines[2] = format!("{last}…");
    }
    lines
}

/// The lineage from raw files through each transform to the model, as boxes and arrows, laid
/// out to fit a report card: boxes only as wide as their labels need and the card allows,
/// labels wrapped inside them; the picture shrinks only in a narrower window.
fn lineage_svg(run: &Value) -> String {
    let entity = |title: String, sha: &Value| Entity { title, sha: short(sha) };
    let mut columns: Vec<Vec<Entity>> = Vec::new();
    let files: Vec<Entity> = run["source_files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| entity(f["kind"].as_str().unwrap_or("").to_owned(), &f["sha256"]))
        .collect();
    if !files.is_empty() {
        columns.push(files);
    }
    columns.push(vec![entity("dataset".into(), &run["data"]["dataset_sha256"])]);
    for transform in run["data"]["transforms"].as_array().into_iter().flatten() {
        let outputs: Vec<Entity> = transform["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| entity(o["label"].as_str().unwrap_or("").to_owned(), &o["sha256"]))
            .collect();
        if !outputs.is_empty() {
            columns.push(outputs);
        }
    }
    let models: Vec<Entity> = run["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["kind"] == "model")
        .map(|a| entity(file_name(&a["path"]), &a["sha256"]))
        .collect();
    if !models.is_empty() {
        columns.push(models);
    }
    columns.push(vec![Entity { title: "metrics, predictions, reports".into(), sha: String::new() }]);

    let (gap_x, gap_y, pad, line_h) = (28.0, 10.0, 8.0, 14.0);
    let count = columns.len() as f64;
    let widest = columns.iter().flatten().map(|e| text_width(&e.title).max(text_width(&e.sha))).fold(0.0, f64::max);
    let box_w = (widest + 2.0 * pad).min((LINEAGE_WIDTH - (count - 1.0) * gap_x) / count).max(96.0).floor();
    let chars = ((box_w - 2.0 * pad) / CHAR_WIDTH).floor() as usize;
    let labels: Vec<Vec<(Vec<String>, &str)>> =
        columns.iter().map(|column| column.iter().map(|e| (wrap(&e.title, chars), e.sha.as_str())).collect()).collect();
    let lines = labels.iter().flatten().map(|(title, sha)| title.len() + usize::from(!sha.is_empty())).max();
    let box_h = lines.unwrap_or(1) as f64 * line_h + 12.0;
    let rows = columns.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let width = count * box_w + (count - 1.0) * gap_x + 2.0;
    let height = rows * (box_h + gap_y) + 10.0;
    let mut svg = format!(
        r##"<svg class="chart lineage" width="{width}" height="{height}" viewBox="0 0 {width} {height}" style="max-width:100%;height:auto" font-family="system-ui, sans-serif" font-size="11" role="img" aria-label="lineage"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#94a3b8"/></marker></defs>"##
    );
    let centre = |count: usize, index: usize| {
        let block = count as f64 * (box_h + gap_y);
        (height - block) / 2.0 + index as f64 * (box_h + gap_y) + box_h / 2.0
    };
    for (c, column) in labels.iter().enumerate() {
        let x = 1.0 + c as f64 * (box_w + gap_x);
        for (r, (title, sha)) in column.iter().enumerate() {
            let y = centre(column.len(), r);
            let top = y - box_h / 2.0;
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{top:.1}" width="{box_w}" height="{box_h}" rx="6" fill="#eef2ff" stroke="#6366f1"/>"##
            );
            for (l, line) in title.iter().chain((!sha.is_empty()).then_some(&sha.to_string())).enumerate() {
                let class = if l == title.len() { r#" class="sha""# } else { "" };
                let _ = write!(
                    svg,
                    r#"<text{class} x="{:.1}" y="{:.1}">{}</text>"#,
                    x + pad,
                    top + 6.0 + line_h * (l as f64 + 1.0) - 3.0,
                    escape(line)
                );
            }
            // Arrows in: from each box of the column before when this box is all its column
            // (the files into the dataset), else from the box in line with it or the middle one.
            let from: Vec<usize> = match c.checked_sub(1).map(|p| columns[p].len()) {
                None => Vec::new(),
                Some(before) if column.len() == 1 => (0..before).collect(),
                Some(before) if before == column.len() => vec![r],
                Some(before) => vec![before / 2],
            };
            for index in from {
                let _ = write!(
                    svg,
                    r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{y:.1}" stroke="#94a3b8" marker-end="url(#arrow)"/>"##,
                    x - gap_x,
                    centre(columns[c - 1].len(), index),
                    x - 2.0
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn short(value: &Value) -> String {
    value.as_str().map(|s| s.chars().take(10).collect()).unwrap_or_default()
}

fn file_name(value: &Value) -> String {
    value
        .as_str()
        .and_then(|p| std::path::Path::new(p).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn cards(run: &Value) -> Value {
    let test = &run["metrics"]["test"];
    let mut cards = Vec::new();
    for (label, value) in [
        ("test accuracy", &test["accuracy"]),
        ("macro F1", &test["macro_average"]["f1"]),
        ("log loss", &test["log_loss"]),
        ("top-3 accuracy", &test["top_k_accuracy"]["top_3"]),
    ] {
        if let Some(v) = value.as_f64() {
            cards.push(json!({"label": label, "value": format!("{v:.4}")}));
        }
    }
    Value::Array(cards)
}

impl MnistReportGenerator {
    fn render(
        &self,
        page: &str,
        input: &Value,
        extra: Context,
        services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError> {
        let run = &input["run"];
        let mut context = Context::new();
        let title =
            self.title.clone().unwrap_or_else(|| run["experiment_name"].as_str().unwrap_or("experiment").to_owned());
        context.insert("title", &title);
        context.insert("run", run);
        context.insert("environment", &input["environment"]);
        context.extend(extra);
        let html = self
            .tera
            .render(page, &context)
            .map_err(|e| PluginError::new(format!("rendering {page}: {}", tera_error(&e))))?;
        let path = services.artifact_dir().join(page);
        std::fs::write(&path, html).with_context(|| path.display())?;
        Ok(vec![path])
    }
}

impl ReportGenerator for MnistReportGenerator {
    fn generate_data_report(&mut self, input: &Value, services: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        let data = &input["data"];
        let labels: Vec<String> =
            data["label_names"].as_array().into_iter().flatten().map(|l| l.as_str().unwrap_or("").to_owned()).collect();
        let series: Vec<(String, Vec<f64>)> = ["train", "validation", "test"]
            .iter()
            .map(|split| {
                (split.to_string(), data["class_counts"][split].as_array().into_iter().flatten().map(number).collect())
            })
            .collect();
        let side = image_side(data);
        let mut samples = Vec::new();
        for sample in data["test_samples"].as_array().into_iter().flatten().take(self.sample_images) {
            let values: Vec<f64> = sample["values"].as_array().into_iter().flatten().map(number).collect();
            let label = sample["label"].as_u64().and_then(|l| labels.get(l as usize)).cloned().unwrap_or_default();
            if side * side == values.len() && side > 0 {
                samples.push(json!({"label": label, "svg": image_svg(&values, side)}));
            }
        }
        let statistics = &data["train_statistics"];
        let mean_sample: Vec<f64> = statistics["mean_sample"].as_array().into_iter().flatten().map(number).collect();
        let mean_image = (side > 0 && side * side == mean_sample.len()).then(|| image_svg(&mean_sample, side));
        let splits: Vec<Value> = ["train", "validation", "test"]
            .iter()
            .map(|name| json!({"name": name, "rows": input["run"]["data"]["splits"][name]["rows"], "sha256": input["run"]["data"]["splits"][name]["sha256"]}))
            .collect();
        let mut context = Context::new();
        context.insert("class_chart", &grouped_bars(&labels, &series, false));
        context.insert("samples", &samples);
        context.insert("splits", &splits);
        context.insert(
            "pixel",
            &json!({"mean": statistics["mean"], "std": statistics["std"], "min": statistics["min"], "max": statistics["max"]}),
        );
        context.insert("mean_image", &mean_image);
        self.render("data.html", input, context, services)
    }

    fn generate_training_report(
        &mut self,
        input: &Value,
        services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError> {
        let history = input["run"]["history"].as_object().cloned().unwrap_or_default();
        let mut epochs: Vec<(f64, &serde_json::Map<String, Value>)> = history
            .iter()
            .filter_map(|(epoch, values)| Some((epoch.parse::<f64>().ok()?, values.as_object()?)))
            .collect();
        epochs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let curve = |name: &str| -> Vec<(f64, f64)> {
            epochs.iter().filter_map(|(e, v)| Some((*e, v.get(name)?.as_f64()?))).collect()
        };
        let best = input["run"]["fit"]["best_epoch"].as_f64();
        let mut names: Vec<String> = epochs.iter().flat_map(|(_, v)| v.keys().cloned()).collect();
        names.sort();
        names.dedup();
        let rows: Vec<Value> = epochs
            .iter()
            .map(|(e, v)| json!({"epoch": e, "values": names.iter().map(|n| v.get(n).and_then(Value::as_f64).map(|x| format!("{x:.4}")).unwrap_or_default()).collect::<Vec<_>>()}))
            .collect();
        let mut context = Context::new();
        context.insert(
            "loss_chart",
            &line_chart(
                &[("train loss".into(), curve("loss")), ("validation loss".into(), curve("val_loss"))],
                "epoch",
                "loss",
                best,
            ),
        );
        context.insert(
            "accuracy_chart",
            &line_chart(
                &[("train accuracy".into(), curve("accuracy")), ("validation accuracy".into(), curve("val_accuracy"))],
                "epoch",
                "accuracy",
                best,
            ),
        );
        context.insert(
            "learning_rate_chart",
            &line_chart(&[("learning rate".into(), curve("learning_rate"))], "epoch", "learning rate", best),
        );
        context.insert(
            "epoch_time_chart",
            &line_chart(&[("seconds per epoch".into(), curve("epoch_seconds"))], "epoch", "seconds", best),
        );
        context.insert("metric_names", &names);
        context.insert("epochs", &rows);
        context.insert("best_epoch", &best);
        context.insert("stopped_early", &input["run"]["fit"]["stopped_early"].as_bool().unwrap_or(false));
        self.render("training.html", input, context, services)
    }

    fn generate_evaluation_report(
        &mut self,
        input: &Value,
        services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError> {
        let test = &input["run"]["metrics"]["test"];
        let labels: Vec<String> = input["data"]["label_names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| l.as_str().unwrap_or("").to_owned())
            .collect();
        let matrix: Vec<Vec<u64>> = test["confusion_matrix"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| row.as_array().into_iter().flatten().map(|v| v.as_u64().unwrap_or(0)).collect())
            .collect();
        let per_class = test["per_class"].as_array().cloned().unwrap_or_default();
        let series: Vec<(String, Vec<f64>)> = ["precision", "recall", "f1"]
            .iter()
            .map(|m| (m.to_string(), per_class.iter().map(|c| number(&c[m])).collect()))
            .collect();
        let mut context = Context::new();
        context.insert("cards", &cards(&input["run"]));
        let drawable = !matrix.is_empty() && !labels.is_empty();
        context.insert("confusion_chart", &if drawable { heatmap(&matrix, &labels, false) } else { String::new() });
        context
            .insert("confusion_share_chart", &if drawable { heatmap(&matrix, &labels, true) } else { String::new() });
        context.insert("per_class_chart", &grouped_bars(&labels, &series, true));
        let curves: Vec<(String, Vec<(f64, f64)>)> = test["roc"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|curve| curve["auc"].is_number())
            .map(|curve| {
                let points = curve["points"].as_array().into_iter().flatten();
                let points = points.map(|p| (number(&p[0]), number(&p[1]))).collect();
                (format!("{} (AUC {:.3})", curve["class"].as_str().unwrap_or(""), number(&curve["auc"])), points)
            })
            .collect();
        context.insert("roc_chart", &line_chart(&curves, "false positive rate", "true positive rate", None));
        context.insert("macro_auc", &test["macro_auc"].as_f64());
        let histogram = &test["confidence_histogram"];
        let edges: Vec<f64> = histogram["edges"].as_array().into_iter().flatten().map(number).collect();
        let counts = |key: &str| histogram[key].as_array().into_iter().flatten().map(number).collect();
        context.insert(
            "confidence_chart",
            &self::histogram(
                &edges,
                &[("right".into(), counts("correct")), ("wrong".into(), counts("incorrect"))],
                "confidence in the predicted class",
            ),
        );
        let side = image_side(&input["data"]);
        let mistakes: Vec<Value> = input["evaluation"]["misclassified"]
            .as_array()
            .into_iter()
            .flatten()
            .take(self.sample_images)
            .filter_map(|m| {
                let values: Vec<f64> = m["values"].as_array()?.iter().map(number).collect();
                let name = |key: &str| m[key].as_u64().and_then(|l| labels.get(l as usize)).cloned().unwrap_or_default();
                (side > 0 && side * side == values.len()).then(|| {
                    json!({"label": name("label"), "predicted": name("predicted"), "confidence": format!("{:.2}", number(&m["confidence"])), "svg": image_svg(&values, side)})
                })
            })
            .collect();
        context.insert("misclassified", &mistakes);
        context.insert("misclassified_total", &input["evaluation"]["misclassified_total"]);
        context.insert("per_class", &per_class);
        self.render("evaluation.html", input, context, services)
    }

    fn generate_summary_report(&mut self, input: &Value, services: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        let run = &input["run"];
        let models: Vec<Value> =
            run["artifacts"].as_array().into_iter().flatten().filter(|a| a["kind"] == "model").cloned().collect();
        let mut context = Context::new();
        context.insert("cards", &cards(run));
        context.insert("models", &models);
        context.insert("lineage_chart", &lineage_svg(run));
        self.render("index.html", input, context, services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_charts_is_escaped() {
        let chart = grouped_bars(&["<script>alert(1)</script>".into()], &[("a&b".into(), vec![1.0])], false);
        assert!(!chart.contains("<script>"), "{chart}");
        assert!(chart.contains("&lt;script&gt;") && chart.contains("a&amp;b"));
    }

    #[test]
    fn the_lineage_fits_a_report_card_with_every_label_inside_its_box() {
        let sha = json!("0123456789abcdef");
        let output = |label: &str| json!({"label": label, "sha256": sha});
        let files: Vec<Value> = ["train-images-idx3-ubyte", "train-labels", "t10k-images", "t10k-labels"]
            .map(|kind| json!({"kind": kind, "sha256": sha}))
            .into();
        let run = json!({
            "source_files": files,
            "data": {"dataset_sha256": sha, "transforms": [
                {"outputs": [output("train (raw)"), output("validation (raw)"), output("test (raw)")]},
                {"outputs": [output("train (scaled and standardised)"), output("validation (scaled)"), output("test (scaled)")]},
            ]},
            "artifacts": [{"kind": "model", "path": "runs/x/model/a-very-long-model-file-name.safetensors", "sha256": sha}],
        });
        let svg = lineage_svg(&run);
        let number = |attributes: &str, name: &str| -> f64 {
            attributes.split(&format!(" {name}=\"")).nth(1).unwrap().split('"').next().unwrap().parse().unwrap()
        };
        let width = number(&svg, "width");
        assert!(width <= LINEAGE_WIDTH + 2.0, "{width}: {svg}");
        let boxes: Vec<(f64, f64)> =
            svg.split("<rect").skip(1).map(|r| (number(r, "x"), number(r, "x") + number(r, "width"))).collect();
        for text in svg.split("<text").skip(1) {
            let (attributes, rest) = text.split_once('>').unwrap();
            let content = rest.split("</text>").next().unwrap();
            let x = number(attributes, "x");
            let (_, right) = boxes.iter().rev().find(|(left, _)| *left <= x).unwrap();
            assert!(x + text_width(content) <= right - 4.0, "{content:?} leaves its box: {svg}");
        }
    }
}
