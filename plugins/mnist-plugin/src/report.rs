//! MNISTReportGenerator: self-contained HTML pages (inline CSS, charts as inline SVG, nothing
//! fetched at view time) rendered with tera from templates that `reporting.templates_dir` can
//! replace. Every string from config, data or plugins is escaped: tera escapes template
//! variables, and the SVG built here escapes its own text.

use std::fmt::Write;
use std::path::PathBuf;

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

const COLORS: [&str; 6] = ["#2563eb", "#f97316", "#16a34a", "#9333ea", "#dc2626", "#0891b2"];

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

/// Escapes text for HTML and SVG.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
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
            ConfigKey::new("reporting", "sample_images", ConfigType::Integer)
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
            for (name, text) in &mut templates {
                let path = PathBuf::from(dir).join(&*name);
                if path.is_file() {
                    *text = std::fs::read_to_string(&path).with_context(|| path.display())?;
                }
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

/// A line chart of named series of (x, y) points, with an optional marked x.
fn line_chart(series: &[(String, Vec<(f64, f64)>)], x_label: &str, y_label: &str, marker: Option<f64>) -> String {
    let (width, height, left, bottom, top, right) = (640.0, 260.0, 56.0, 36.0, 14.0, 130.0);
    let points: Vec<(f64, f64)> =
        series.iter().flat_map(|(_, p)| p.iter().copied()).filter(|(_, y)| y.is_finite()).collect();
    if points.is_empty() {
        return "<p class=\"muted\">no data</p>".into();
    }
    let (x_min, x_max) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
    let (y_min, y_max) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
    // A flat series (a constant learning rate) gets a band around its value, at its scale.
    let pad = if y_min.abs() > 0.0 { y_min.abs() * 0.5 } else { 0.5 };
    let (y_min, y_max) = if y_max > y_min { (y_min, y_max) } else { (y_min - pad, y_max + pad) };
    let x_span = if x_max > x_min { x_max - x_min } else { 1.0 };
    let plot_w = width - left - right;
    let plot_h = height - top - bottom;
    let sx = |x: f64| left + (x - x_min) / x_span * plot_w;
    let sy = |y: f64| top + (1.0 - (y - y_min) / (y_max - y_min)) * plot_h;
    let mut svg = format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(y_label)
    );
    for i in 0..=4 {
        let y = y_min + (y_max - y_min) * i as f64 / 4.0;
        let (x_end, y_line, x_text, y_text) = (left + plot_w, sy(y), left - 6.0, sy(y) + 4.0);
        let label = if y.abs() >= 0.01 || y == 0.0 { format!("{y:.3}") } else { format!("{y:.1e}") };
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{x_end}" y1="{y_line:.1}" y2="{y_line:.1}" stroke="#e5e7eb"/><text x="{x_text}" y="{y_text:.1}" text-anchor="end">{label}</text>"##
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 4.0,
        escape(x_label)
    );
    // Whole-number ticks for epochs; quarters for fractions (rates).
    let whole = x_span > 2.0;
    let ticks = if whole { ((x_max - x_min).round() as usize).clamp(1, 20) } else { 4 };
    for step in 0..=ticks {
        let x = x_min + (step as f64) * x_span / ticks as f64;
        let label = if whole { format!("{}", x.round()) } else { format!("{x:.2}") };
        let _ =
            write!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#, sx(x), top + plot_h + 16.0);
    }
    if let Some(marker) = marker {
        let (x, y_end, y_text) = (sx(marker), top + plot_h, top + 10.0);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{y_end}" stroke="#9ca3af" stroke-dasharray="4 3"/><text x="{x:.1}" y="{y_text}" text-anchor="middle">best</text>"##
        );
    }
    for (index, (name, points)) in series.iter().enumerate() {
        let color = COLORS[index % COLORS.len()];
        let path: Vec<String> =
            points.iter().filter(|(_, y)| y.is_finite()).map(|(x, y)| format!("{:.1},{:.1}", sx(*x), sy(*y))).collect();
        let _ = write!(svg, r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#, path.join(" "));
        // Dots mark epochs; dense curves (ROC) are clearer without them.
        for point in path.iter().filter(|_| path.len() <= 30) {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
        }
        let legend_y = top + 14.0 + index as f64 * 18.0;
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{}" width="12" height="3" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            width - right + 12.0,
            legend_y - 4.0,
            width - right + 30.0,
            legend_y,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A histogram over `edges` (one more than each series' counts), the series side by side in
/// each bin.
fn histogram(edges: &[f64], series: &[(String, Vec<f64>)], x_label: &str) -> String {
    let bins = edges.len().saturating_sub(1);
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max);
    if bins == 0 || max <= 0.0 {
        return "<p class=\"muted\">no data</p>".into();
    }
    let (width, height, left, bottom, top, right) = (640.0, 240.0, 56.0, 36.0, 14.0, 110.0);
    let (plot_w, plot_h) = (width - left - right, height - top - bottom);
    let bin_w = plot_w / bins as f64;
    let bar_w = (bin_w - 2.0) / series.len().max(1) as f64;
    let mut svg = format!(
        r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{}">"#,
        escape(x_label)
    );
    for i in 0..=4 {
        let value = max * i as f64 / 4.0;
        let y = top + plot_h * (1.0 - i as f64 / 4.0);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{value:.0}</text>"##,
            left + plot_w,
            left - 6.0,
            y + 4.0
        );
    }
    for (s, (name, counts)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        for (bin, &count) in counts.iter().enumerate().take(bins) {
            let bar_h = count.max(0.0) / max * plot_h;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{bar_h:.1}" fill="{color}"><title>{}: {count} in [{:.2}, {:.2})</title></rect>"#,
                left + bin as f64 * bin_w + 1.0 + s as f64 * bar_w,
                top + plot_h - bar_h,
                bar_w,
                escape(name),
                edges[bin],
                edges[bin + 1]
            );
        }
        let y = top + 12.0 + s as f64 * 18.0;
        let x = width - right + 14.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            x + 18.0,
            escape(name)
        );
    }
    for i in 0..=4 {
        let position = i as f64 / 4.0;
        let value = edges[0] + (edges[bins] - edges[0]) * position;
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{value:.2}</text>"#,
            left + plot_w * position,
            top + plot_h + 16.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text></svg>"#,
        left + plot_w / 2.0,
        height - 4.0,
        escape(x_label)
    );
    svg
}

/// Grouped vertical bars: one group per category, one bar per series.
fn grouped_bars(categories: &[String], series: &[(String, Vec<f64>)], fraction: bool) -> String {
    let (left, bottom, top, group_w) = (48.0, 70.0, 14.0, 22.0 * series.len().max(1) as f64 + 14.0);
    let width = left + group_w * categories.len() as f64 + 150.0;
    let height = 260.0;
    let plot_h = height - top - bottom;
    let max = series.iter().flat_map(|(_, v)| v.iter().copied()).fold(0.0, f64::max);
    let max = if fraction {
        1.0
    } else if max > 0.0 {
        max
    } else {
        1.0
    };
    let mut svg =
        format!(r#"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">"#);
    for i in 0..=4 {
        let value = max * i as f64 / 4.0;
        let y = top + plot_h * (1.0 - i as f64 / 4.0);
        let label = if fraction { format!("{value:.2}") } else { format!("{value:.0}") };
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" text-anchor="end">{label}</text>"##,
            left + group_w * categories.len() as f64,
            left - 6.0,
            y + 4.0
        );
    }
    for (c, category) in categories.iter().enumerate() {
        let x0 = left + c as f64 * group_w + 7.0;
        for (s, (_, values)) in series.iter().enumerate() {
            let value = values.get(c).copied().unwrap_or(0.0).max(0.0);
            let bar_h = value / max * plot_h;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="20" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                x0 + s as f64 * 22.0,
                top + plot_h - bar_h,
                bar_h,
                COLORS[s % COLORS.len()],
                escape(category),
                value
            );
        }
        let label_x = x0 + series.len() as f64 * 11.0;
        let _ = write!(
            svg,
            r#"<text x="{label_x:.1}" y="{}" text-anchor="end" transform="rotate(-35 {label_x:.1} {})">{}</text>"#,
            top + plot_h + 14.0,
            top + plot_h + 14.0,
            escape(category)
        );
    }
    for (s, (name, _)) in series.iter().enumerate() {
        let x = left + group_w * categories.len() as f64 + 16.0;
        let y = top + 12.0 + s as f64 * 18.0;
        let _ = write!(
            svg,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{y}">{}</text>"#,
            y - 10.0,
            COLORS[s % COLORS.len()],
            x + 18.0,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// The confusion matrix as a heatmap shaded by row-normalised share, labelled with counts or,
/// `normalised`, with each row's percentages.
fn heatmap(matrix: &[Vec<u64>], labels: &[String], normalised: bool) -> String {
    let n = matrix.len();
    let (cell, left, top) = (40.0, 110.0, 100.0);
    let size = left + cell * n as f64 + 10.0;
    let mut svg = format!(
        r#"<svg class="chart" width="{size}" height="{}" viewBox="0 0 {size} {}" role="img">"#,
        top + cell * n as f64 + 10.0,
        top + cell * n as f64 + 10.0
    );
    for (i, label) in labels.iter().enumerate().take(n) {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            top + cell * i as f64 + cell / 2.0 + 4.0,
            escape(label)
        );
        let x = left + cell * i as f64 + cell / 2.0;
        let _ = write!(
            svg,
            r#"<text x="{x:.1}" y="{}" transform="rotate(-45 {x:.1} {})">{}</text>"#,
            top - 8.0,
            top - 8.0,
            escape(label)
        );
    }
    for (i, row) in matrix.iter().enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (j, &count) in row.iter().enumerate() {
            let share = count as f64 / total as f64;
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let fill = format!("rgb({shade},{},{})", (255.0 - share * 120.0) as u8, 255);
            let text = if share > 0.5 { "#fff" } else { "#1d2733" };
            let (x, y) = (left + cell * j as f64, top + cell * i as f64);
            let shown = if normalised { format!("{:.0}", share * 100.0) } else { count.to_string() };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff"><title>true {} predicted {}: {count} ({:.1}%)</title></rect><text x="{:.1}" y="{:.1}" text-anchor="middle" style="fill:{text}">{shown}</text>"##,
                escape(&labels[i.min(labels.len() - 1)]),
                escape(&labels[j.min(labels.len() - 1)]),
                share * 100.0,
                x + cell / 2.0,
                y + cell / 2.0 + 4.0
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The side of square samples (28 for 784 or 1x28x28 features), or 0.
fn image_side(data: &Value) -> usize {
    let size = data["sample_shape"].as_array().map(|s| s.iter().map(number).product::<f64>()).unwrap_or(0.0);
    let side = size.sqrt().round() as usize;
    if side * side == size as usize { side } else { 0 }
}

/// A grayscale image as SVG rectangles (one per non-background pixel), scaled to its range.
fn image_svg(values: &[f64], side: usize) -> String {
    let (min, max) = values.iter().fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let span = if max > min { max - min } else { 1.0 };
    let scale = 2.0;
    let size = side as f64 * scale;
    let mut svg = format!(
        r##"<svg width="{size}" height="{size}" viewBox="0 0 {side} {side}" shape-rendering="crispEdges"><rect width="{side}" height="{side}" fill="#000"/>"##
    );
    for (index, value) in values.iter().enumerate() {
        let level = ((value - min) / span * 255.0).round() as u8;
        if level > 8 {
            let _ = write!(
                svg,
                r#"<rect x="{}" y="{}" width="1" height="1" fill="rgb({level},{level},{level})"/>"#,
                index % side,
                index / side
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The lineage from raw files through each transform to the model, as boxes and arrows.
fn lineage_svg(run: &Value) -> String {
    let mut columns: Vec<Vec<String>> = Vec::new();
    let files: Vec<String> = run["source_files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| format!("{} {}", f["kind"].as_str().unwrap_or(""), short(&f["sha256"])))
        .collect();
    if !files.is_empty() {
        columns.push(files);
    }
    columns.push(vec![format!("dataset {}", short(&run["data"]["dataset_sha256"]))]);
    for transform in run["data"]["transforms"].as_array().into_iter().flatten() {
        let outputs = transform["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| format!("{} {}", o["label"].as_str().unwrap_or(""), short(&o["sha256"])))
            .collect();
        columns.push(outputs);
    }
    let models: Vec<String> = run["artifacts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["kind"] == "model")
        .map(|a| format!("{} {}", file_name(&a["path"]), short(&a["sha256"])))
        .collect();
    if !models.is_empty() {
        columns.push(models);
    }
    columns.push(vec!["metrics, predictions, reports".into()]);
    let (box_w, box_h, gap_x, gap_y) = (190.0, 34.0, 40.0, 10.0);
    let rows = columns.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let width = columns.len() as f64 * (box_w + gap_x);
    let height = rows * (box_h + gap_y) + 10.0;
    let mut svg = format!(
        r##"<svg class="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="lineage"><defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0,0L10,5L0,10z" fill="#94a3b8"/></marker></defs>"##
    );
    let centre = |count: usize, index: usize| {
        let block = count as f64 * (box_h + gap_y);
        (height - block) / 2.0 + index as f64 * (box_h + gap_y) + box_h / 2.0
    };
    for (c, column) in columns.iter().enumerate() {
        let x = c as f64 * (box_w + gap_x);
        for (r, label) in column.iter().enumerate() {
            let y = centre(column.len(), r);
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{:.1}" width="{box_w}" height="{box_h}" rx="6" fill="#eef2ff" stroke="#6366f1"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                y - box_h / 2.0,
                x + 8.0,
                y + 4.0,
                escape(label)
            );
            if let Some(previous) = c.checked_sub(1).map(|p| &columns[p]) {
                let from = if previous.len() == column.len() { r } else { previous.len() / 2 };
                let _ = write!(
                    svg,
                    r##"<line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{y:.1}" stroke="#94a3b8" marker-end="url(#arrow)"/>"##,
                    x - gap_x,
                    centre(previous.len(), from),
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
}
