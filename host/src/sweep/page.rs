//! The sweep report: a self-contained page with a sortable table of trials, the best trial
//! with a link to its run's report, and the metric plotted against each varied key. Every text
//! is escaped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use record::TrialStatus;
use serde_json::Value;
use store::{Store, SweepRow, TrialRow};

use super::{best_trial, varied_keys};
use crate::config::sweep::plain;

const SORT_SCRIPT: &str = r#"<script>
// Click a column's heading to sort by it (again to reverse); #sort=N sorts by column N on load.
document.querySelectorAll("th[data-sort]").forEach(function (th, column) {
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0];
    var ascending = th.dataset.order !== "asc";
    th.dataset.order = ascending ? "asc" : "desc";
    Array.from(body.rows).sort(function (a, b) {
      var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
      return ascending ? order : -order;
    }).forEach(function (row) { body.appendChild(row); });
  });
});
var wanted = /^#sort=(\d+)$/.exec(location.hash);
if (wanted) { var th = document.querySelectorAll("th[data-sort]")[Number(wanted[1])]; if (th) { th.click(); } }
</script>"#;

/// The sweep report: a sortable table of trials, the best trial with a link to its run's
/// report, and the metric plotted against each varied key. Self-contained; every text escaped.
fn sweep_page(row: &SweepRow, run_dirs: &BTreeMap<String, PathBuf>, held_out: Option<&super::HeldOut>) -> String {
    use charts::escape;
    use std::fmt::Write;
    let keys = varied_keys(row);
    let completed: Vec<&TrialRow> =
        row.trials.iter().filter(|t| t.status == TrialStatus::Completed && t.metric.is_some()).collect();
    let best = best_trial(row);
    let mut page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sweep {}</title><style>\n\
         body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1d2733; background: #f6f7f9; }}\n\
         section {{ background: #fff; border: 1px solid #e2e5ea; border-radius: 8px; padding: 16px 20px; margin-bottom: 18px; }}\n\
         table {{ border-collapse: collapse; font-size: 14px; }} td, th {{ padding: 4px 10px; border-bottom: 1px solid #e2e5ea; text-align: left; overflow-wrap: anywhere; }}\n\
         th[data-sort] {{ cursor: pointer; color: #2563eb; }} tr.best td {{ background: #ecfdf5; font-weight: 600; }}\n\
         .plots {{ display: flex; flex-wrap: wrap; gap: 18px; }} .chart text {{ font-size: 11px; fill: #475569; }}\n\
         </style></head><body>\n<h1>Sweep {}</h1>\n<p>{} &middot; {} {} &middot; {} of {} trials completed</p>\n",
        escape(&row.sweep_id),
        escape(&row.sweep_id),
        escape(&row.name),
        if row.maximize { "maximize" } else { "minimize" },
        escape(&row.metric),
        completed.len(),
        row.trials.len()
    );
    page.push_str("<section><h2>Best trial</h2>");
    match best {
        Some(best) => {
            let run = best.run_id.clone().unwrap_or_default();
            let _ = write!(
                page,
                "<p>Trial {}: {} {:.4} &middot; {}</p><p>run <code>{}</code>",
                best.trial,
                escape(&row.metric),
                best.metric.unwrap_or(f64::NAN),
                escape(
                    &keys.iter().map(|k| format!("{k}={}", plain(&best.parameters[k]))).collect::<Vec<_>>().join(", ")
                ),
                escape(&run)
            );
            if let Some(report) = run_dirs.get(&run).map(|d| d.join("reports/index.html")).filter(|p| p.is_file()) {
                let _ = write!(page, " &middot; <a href=\"{}\">its report</a>", escape(&report.display().to_string()));
            }
            page.push_str("</p>");
            if let Some(held_out) = held_out {
                let _ = write!(
                    page,
                    "<p>Held out: {} {:.4} (the best trial on the test set, which chose nothing: the figure to report)</p>",
                    escape(&held_out.metric),
                    held_out.value
                );
            }
        }
        None => page.push_str("<p>No trial has completed yet.</p>"),
    }
    page.push_str("</section>\n<section><h2>Metric against each varied key</h2><div class=\"plots\">");
    for key in &keys {
        let values: Vec<&Value> = completed.iter().map(|t| &t.parameters[key]).collect();
        let numeric = values.iter().all(|v| v.is_number());
        let (points, categories): (Vec<(f64, f64)>, Option<Vec<String>>) = if numeric {
            (
                completed
                    .iter()
                    .map(|t| (t.parameters[key].as_f64().unwrap_or(f64::NAN), t.metric.unwrap_or(f64::NAN)))
                    .collect(),
                None,
            )
        } else {
            let mut names: Vec<String> = Vec::new();
            for value in &values {
                if !names.contains(&plain(value)) {
                    names.push(plain(value));
                }
            }
            let points = completed
                .iter()
                .map(|t| {
                    let index = names.iter().position(|n| *n == plain(&t.parameters[key])).unwrap_or(0);
                    (index as f64, t.metric.unwrap_or(f64::NAN))
                })
                .collect();
            (points, Some(names))
        };
        let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
        let log_x = numeric && xs.iter().all(|&x| x > 0.0) && {
            let (lo, hi) = xs.iter().fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
            hi / lo >= 10.0
        };
        let _ = write!(
            page,
            "<div><h3>{}</h3>{}</div>",
            escape(key),
            charts::scatter(&points, categories.as_deref(), log_x, key, &row.metric)
        );
    }
    page.push_str("</div></section>\n<section><h2>Trials</h2><table><thead><tr>");
    let mut headers = vec!["trial".to_owned(), "status".to_owned(), "run".to_owned()];
    headers.extend(keys.iter().cloned());
    headers.push(row.metric.clone());
    for header in &headers {
        let _ = write!(page, "<th data-sort>{}</th>", escape(header));
    }
    page.push_str("</tr></thead><tbody>");
    for trial in &row.trials {
        let is_best = best.is_some_and(|b| b.trial == trial.trial);
        let mut cells =
            vec![trial.trial.to_string(), trial.status.to_string(), trial.run_id.clone().unwrap_or_default()];
        cells.extend(keys.iter().map(|k| plain(&trial.parameters[k])));
        cells.push(trial.metric.map(|m| format!("{m:.6}")).unwrap_or_default());
        let _ = write!(page, "<tr{}>", if is_best { " class=\"best\"" } else { "" });
        for cell in cells {
            let _ = write!(page, "<td data-value=\"{0}\">{0}</td>", escape(&cell));
        }
        page.push_str("</tr>");
    }
    page.push_str("</tbody></table></section>\n");
    page.push_str(SORT_SCRIPT);
    page.push_str("\n</body></html>\n");
    page
}

/// Writes the sweep report to `path`.
pub fn write_sweep_page(
    store: &dyn Store,
    row: &SweepRow,
    held_out: Option<&super::HeldOut>,
    path: &Path,
) -> anyhow::Result<()> {
    let mut run_dirs = BTreeMap::new();
    for run_id in row.trials.iter().filter_map(|t| t.run_id.as_ref()) {
        if let Ok(record) = store.run_record(run_id) {
            run_dirs.insert(run_id.clone(), record.output_dir);
        }
    }
    std::fs::write(path, sweep_page(row, &run_dirs, held_out))
        .with_context(|| format!("{}: cannot write", path.display()))
}
