//! MarkdownReport: one compact page, `report.md`, per run: results, per-class metrics, the
//! epochs, the data splits and the provenance (run id, config, seed, plugins and data with
//! their SHA-256). For pasting into a pull request or a lab notebook. It swaps in for
//! MNISTReportGenerator by config alone (`plugins.report_generator: MarkdownReport`).

use std::fmt::Write;
use std::path::PathBuf;

use plugin_sdk::{ClassConfig, ConfigKey, ConfigType, PluginClass, PluginError, ReportGenerator, ResultExt, Services};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    reporting: Section,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Section {
    title: Option<String>,
}

/// Collects one section per report kind and writes the page with the summary, which the host
/// asks for last.
pub struct MarkdownReport {
    title: Option<String>,
    sections: Vec<String>,
}

/// Text safe inside Markdown (and the HTML some renderers allow in it): markup characters are
/// backslash-escaped, angle brackets become entities, newlines become spaces.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn number(value: &Value) -> String {
    value.as_f64().map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n|{}\n", header.join(" | "), " --- |".repeat(header.len()));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

impl PluginClass for MarkdownReport {
    const NAME: &'static str = "MarkdownReport";
    const SUMMARY: &'static str = "one compact Markdown page per run (report.md)";

    fn config_keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("reporting", "title", ConfigType::String)
                .describe("the page's heading (default: the experiment name)"),
        ]
    }

    fn new(config: ClassConfig) -> Result<Self, PluginError> {
        let config: Config = config.parse()?;
        Ok(MarkdownReport { title: config.reporting.title, sections: Vec::new() })
    }
}

impl ReportGenerator for MarkdownReport {
    fn generate_data_report(&mut self, input: &Value, _services: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        let run = &input["run"];
        let names: Vec<String> = input["data"]["label_names"].as_array().into_iter().flatten().map(text).collect();
        let rows: Vec<Vec<String>> = ["train", "validation", "test"]
            .iter()
            .map(|split| {
                let counts: Vec<String> = input["data"]["class_counts"][split]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .zip(&names)
                    .map(|(count, name)| format!("{name}: {count}"))
                    .collect();
                vec![
                    split.to_string(),
                    run["data"]["splits"][split]["rows"].to_string(),
                    format!("`{}`", text(&run["data"]["splits"][split]["sha256"])),
                    counts.join(", "),
                ]
            })
            .collect();
        self.sections.push(format!(
            "## Data\n\n{}\n\n{}",
            text(&run["data"]["description"]),
            table(&["split", "samples", "SHA-256", "per class"], &rows)
        ));
        Ok(Vec::new())
    }

    fn generate_training_report(
        &mut self,
        input: &Value,
        _services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError> {
        let run = &input["run"];
        let history = run["history"].as_object().cloned().unwrap_or_default();
        let mut epochs: Vec<(u64, &Value)> = history.iter().filter_map(|(e, v)| Some((e.parse().ok()?, v))).collect();
        epochs.sort_by_key(|(e, _)| *e);
        let columns = ["loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_seconds"];
        let present: Vec<&str> =
            columns.iter().copied().filter(|c| epochs.iter().any(|(_, v)| v.get(c).is_some())).collect();
        let rows: Vec<Vec<String>> = epochs
            .iter()
            .map(|(epoch, values)| {
                std::iter::once(epoch.to_string()).chain(present.iter().map(|c| number(&values[*c]))).collect()
            })
            .collect();
        let mut header = vec!["epoch"];
        header.extend(&present);
        let mut section = String::from("## Training\n\n");
        if let Some(best) = run["fit"]["best_epoch"].as_u64() {
            let stopped = if run["fit"]["stopped_early"] == true { "; early stopping ended training" } else { "" };
            let _ = writeln!(section, "Best epoch: **{best}**{stopped}.\n");
        }
        section.push_str(&table(&header, &rows));
        self.sections.push(section);
        Ok(Vec::new())
    }

    fn generate_evaluation_report(
        &mut self,
        input: &Value,
        _services: &Services<'_>,
    ) -> Result<Vec<PathBuf>, PluginError> {
        let test = &input["run"]["metrics"]["test"];
        let mut section = String::from("## Evaluation\n\n");
        let headline = [
            ("test accuracy", &test["accuracy"]),
            ("macro F1", &test["macro_average"]["f1"]),
            ("macro AUC", &test["macro_auc"]),
            ("log loss", &test["log_loss"]),
        ];
        let rows: Vec<Vec<String>> =
            headline.iter().filter(|(_, v)| v.is_number()).map(|(name, v)| vec![name.to_string(), number(v)]).collect();
        section.push_str(&table(&["metric", "value"], &rows));
        let per_class: Vec<Vec<String>> = test["per_class"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(test["roc"].as_array().into_iter().flatten().chain(std::iter::repeat(&Value::Null)))
            .map(|(c, roc)| {
                vec![
                    text(&c["class"]),
                    number(&c["precision"]),
                    number(&c["recall"]),
                    number(&c["f1"]),
                    number(&roc["auc"]),
                    c["support"].to_string(),
                ]
            })
            .collect();
        if !per_class.is_empty() {
            section.push('\n');
            section.push_str(&table(&["class", "precision", "recall", "F1", "AUC", "support"], &per_class));
        }
        let _ = writeln!(
            section,
            "\n{} of the test samples were misclassified.",
            input["evaluation"]["misclassified_total"].as_u64().unwrap_or(0)
        );
        self.sections.push(section);
        Ok(Vec::new())
    }

    fn generate_summary_report(&mut self, input: &Value, services: &Services<'_>) -> Result<Vec<PathBuf>, PluginError> {
        let run = &input["run"];
        let title = self.title.as_deref().map(escape).unwrap_or_else(|| text(&run["experiment_name"]));
        let mut page = format!("# {title}\n\n");
        let mut rows = vec![
            vec!["run".to_owned(), format!("`{}`", text(&run["run_id"]))],
            vec!["status".to_owned(), text(&run["status"])],
            vec![
                "config".to_owned(),
                format!("{} (SHA-256 `{}`)", text(&run["config_file"]), text(&run["config_sha256"])),
            ],
            vec!["seed, threads".to_owned(), format!("{}, {}", run["seed"], run["threads"])],
            vec!["dataset".to_owned(), format!("SHA-256 `{}`", text(&run["data"]["dataset_sha256"]))],
        ];
        let scheduler = &run["scheduler"];
        if scheduler.is_object() {
            let mut line = format!("{} job `{}`", text(&scheduler["scheduler"]), text(&scheduler["job_id"]));
            if scheduler["restart_count"].as_u64().unwrap_or(0) > 0 {
                line.push_str(&format!(" (restart {})", scheduler["restart_count"]));
            }
            line.push_str(&format!(" on {}", text(&scheduler["node"])));
            for (key, label) in
                [("partition", "partition"), ("cpus", "CPUs"), ("gpus", "GPUs"), ("time_limit", "time limit")]
            {
                match &scheduler[key] {
                    Value::Null => {}
                    Value::String(value) if value.is_empty() => {}
                    value => line.push_str(&format!(", {label} {}", text(value))),
                }
            }
            rows.push(vec!["scheduler".to_owned(), line]);
        }
        for plugin in run["plugins"].as_array().into_iter().flatten() {
            rows.push(vec![
                format!("{} plugin", text(&plugin["kind"])),
                format!(
                    "{} from {} {} (SHA-256 `{}`)",
                    text(&plugin["class"]),
                    text(&plugin["plugin_name"]),
                    text(&plugin["plugin_version"]),
                    text(&plugin["sha256"])
                ),
            ]);
        }
        for file in run["artifacts"].as_array().into_iter().flatten().filter(|a| a["kind"] == "model") {
            rows.push(vec![
                "model".to_owned(),
                format!("{} (SHA-256 `{}`)", text(&file["path"]), text(&file["sha256"])),
            ]);
        }
        page.push_str("## Provenance\n\n");
        page.push_str(&table(&["", ""], &rows));
        for section in self.sections.drain(..) {
            page.push('\n');
            page.push_str(&section);
        }
        let path = services.artifact_dir().join("report.md");
        std::fs::write(&path, page).with_context(|| path.display())?;
        Ok(vec![path])
    }
}

plugin_sdk::export_plugin! {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    loaders: [],
    models: [],
    report_generators: [MarkdownReport],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_is_escaped() {
        assert_eq!(escape("<script>x</script>"), "&lt;script&gt;x&lt;/script&gt;");
        assert_eq!(escape("a|b\n# c [d](e)"), "a\\|b \\# c \\[d\\](e)");
    }
}
