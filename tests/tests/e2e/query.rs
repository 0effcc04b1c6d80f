//! The run query language from the command line, on both stores: `runs list --filter`,
//! `--order-by`, `--columns`, `--format`; errors pointing at the column; tags and notes kept
//! beside the record (verify unaffected, exported with the run); verifications recorded and
//! queried as `verified`.

use serde_json::Value;

use crate::store::faulty_project;
use crate::support::{Project, on_every_store};

/// Three runs: two of experiment `stored` (seeds 42 and 5), one of `other` (seed 3), oldest
/// first; their ids.
fn three_runs(project: &Project) -> Vec<String> {
    let base = std::fs::read_to_string(project.path().join("config/run.yaml")).unwrap();
    project.write("config/seed5.yaml", &format!("{base}seed: 5\n"));
    project.write("config/other.yaml", &format!("{}seed: 3\n", base.replace("stored", "other")));
    ["config/run.yaml", "config/seed5.yaml", "config/other.yaml"]
        .iter()
        .map(|config| {
            let summary = project.host(&["run", config, "--json"]).success().json();
            // One second apart: newest first is then a fixed order.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            summary["run_id"].as_str().unwrap().to_owned()
        })
        .collect()
}

fn ids(listed: &Value) -> Vec<&str> {
    listed.as_array().unwrap().iter().map(|r| r["run_id"].as_str().unwrap()).collect()
}

on_every_store! {
/// Filters with and, or, not, in, like and numbers; order, columns, paging and CSV.
fn runs_list_filters_orders_and_formats_with_the_query_language() {
    let project = faulty_project();
    let runs = three_runs(&project);
    let list = |args: &[&str]| {
        let mut all = vec!["runs", "list", "--json"];
        all.extend(args);
        project.host(&all).success().json()
    };
    assert_eq!(ids(&list(&["--filter", "seed < 10"])), [&runs[2], &runs[1]]);
    assert_eq!(ids(&list(&["--filter", "seed = 42 or experiment = 'other'"])), [&runs[2], &runs[0]]);
    assert_eq!(ids(&list(&["--filter", "not (seed in (3, 5)) and status = 'completed'"])), [&runs[0]]);
    assert_eq!(ids(&list(&["--filter", "experiment like 'STO%' and params.data_splitting.train_ratio = 0.6"])), [&runs[1], &runs[0]]);
    assert_eq!(ids(&list(&["--filter", "metrics.test.accuracy >= 0 and plugin.model = 'FaultyModel'"])).len(), 3);
    assert_eq!(ids(&list(&["--filter", "plugin.model = 'Other'"])).len(), 0);
    assert_eq!(ids(&list(&["--order-by", "seed asc"])), [&runs[2], &runs[1], &runs[0]]);
    assert_eq!(ids(&list(&["--order-by", "seed desc", "--limit", "1", "--offset", "1"])), [&runs[1]]);
    let columns = list(&["--filter", "seed = 3", "--columns", "seed,experiment,metrics.test.accuracy,params.seed"]);
    assert_eq!(columns[0]["seed"], 3);
    assert_eq!(columns[0]["experiment"], "other");
    assert!(columns[0]["metrics.test.accuracy"].is_number(), "{columns}");
    assert_eq!(columns[0]["params.seed"], 3);

    let csv = project.host(&["runs", "list", "--format", "csv", "--columns", "run_id,seed", "--order-by", "seed"]);
    let lines: Vec<&str> = csv.success().stdout.lines().collect();
    assert_eq!(lines, ["run_id,seed", &format!("{},3", runs[2]), &format!("{},5", runs[1]), &format!("{},42", runs[0])]);
    let table = project.host(&["runs", "list", "--limit", "1"]);
    assert!(table.success().stdout.starts_with("RUN "), "{}", table.stdout);
    assert!(table.stderr.contains("1 of 3 matching runs shown"), "{}", table.stderr);
    let past = project.host(&["runs", "list", "--offset", "10"]).success().stdout.clone();
    assert!(past.starts_with("3 runs match; --offset 10 is past the last of them"), "{past}");
    let none = project.host(&["runs", "list", "--filter", "seed = 7"]).success().stdout.clone();
    assert!(none.starts_with("no runs matching seed = 7 in "), "{none}");

    // A mistake names the flag and points at its column.
    let bad = project.host(&["runs", "list", "--filter", "seed = 3 and metrix.x > 1"]);
    let error = bad.failure();
    assert!(error.contains("--filter") && error.contains("unknown key `metrix.x`") && error.contains("at column 14"), "{error}");
    assert!(error.contains("\n  seed = 3 and metrix.x > 1\n               ^"), "{error}");
    let bad = project.host(&["runs", "list", "--order-by", "seed upward"]);
    assert!(bad.failure().contains("--order-by"), "{}", bad.stderr);
    let bad = project.host(&["runs", "list", "--filter", "status = 'done'"]);
    assert!(bad.failure().contains("'completed'"), "{}", bad.stderr);
    // Text goes in as a value, never as SQL.
    let hostile = list(&["--filter", "experiment = 'x'' or 1=1 --'"]);
    assert_eq!(ids(&hostile).len(), 0);
}
}

on_every_store! {
/// Tags and notes are appended beside the record: shown, queried, exported; the record and
/// `verify` are unaffected, and verify's outcome is recorded and queried as `verified`.
fn tags_notes_and_verifications_are_kept_beside_the_record() {
    let project = faulty_project();
    let runs = three_runs(&project);
    let before = project.host(&["runs", "show", &runs[1], "--json"]).success().json();
    let tagged = project.host(&["runs", "tag", &runs[1], "owner=ana", "stage=draft"]);
    assert!(tagged.success().stdout.contains("owner=ana, stage=draft"), "{}", tagged.stdout);
    project.host(&["runs", "tag", &runs[1], "stage="]).success();
    project.host(&["runs", "tag", &runs[0], "owner=ben", "formula==1+1"]).success();
    let csv = project.host(&["runs", "list", "--format", "csv", "--columns", "tags.formula", "--filter", "tags.formula is not null"]);
    assert_eq!(csv.success().stdout, "tags.formula\n'=1+1\n", "a spreadsheet would run it as a formula");
    project.host(&["runs", "note", &runs[1], "learning rate too high; see <b>run 1</b>"]).success();
    let after = project.host(&["runs", "show", &runs[1], "--json"]).success().json();
    assert_eq!(after["tags"], serde_json::json!({"owner": "ana"}));
    assert_eq!(after["annotations"].as_array().unwrap().len(), 4);
    assert_eq!(after["annotations"][3]["kind"], "note");
    let record = |shown: &Value| {
        let mut shown = shown.clone();
        for key in ["tags", "annotations", "verifications"] {
            shown.as_object_mut().unwrap().remove(key);
        }
        shown
    };
    assert_eq!(record(&after), record(&before), "the record is untouched");
    let text = project.host(&["runs", "show", &runs[1]]).success().stdout.clone();
    assert!(text.contains("tags        owner=ana") && text.contains("note        learning rate too high"), "{text}");

    let list = |filter: &str| project.host(&["runs", "list", "--json", "--filter", filter]).success().json();
    assert_eq!(ids(&list("tags.owner = 'ana'")), [&runs[1]]);
    assert_eq!(ids(&list("tags.owner in ('ana', 'ben')")), [&runs[1], &runs[0]]);
    assert_eq!(ids(&list("tags.stage is null")).len(), 3, "a removed tag is no tag");
    assert_eq!(ids(&list("verified")).len(), 0);

    project.host(&["verify", &runs[1]]).success();
    assert_eq!(ids(&list("verified")), [&runs[1]]);
    let shown = project.host(&["runs", "show", &runs[1], "--json"]).success().json();
    assert_eq!(shown["verifications"][0]["ok"], true);
    // A changed output: verify fails, and the run is no longer `verified`.
    let metrics = std::path::Path::new(shown["output_dir"].as_str().unwrap()).join("metrics.json");
    std::fs::write(&metrics, "{}").unwrap();
    assert_eq!(project.host(&["verify", &runs[1]]).code, Some(1));
    assert_eq!(ids(&list("verified")).len(), 0);
    assert_eq!(ids(&list("verified = false")).len(), 3);

    let exported = project.host(&["export", &runs[1], "--format", "json"]).success().json();
    assert_eq!(exported["tags"]["owner"], "ana");
    assert_eq!(exported["annotations"].as_array().unwrap().len(), 4);
    assert_eq!(exported["verifications"].as_array().unwrap().len(), 2);

    let bad = project.host(&["runs", "tag", &runs[1], "two words=x"]);
    assert!(bad.failure().contains("letters, digits"), "{}", bad.stderr);
    let missing = project.host(&["runs", "note", "nope", "text"]);
    assert!(missing.failure().contains("no run nope"), "{}", missing.stderr);
}
}
