//! The experiment config (`host run config/X.yaml`): the host's own keys (name, seed, output,
//! data splitting, preprocessing) plus one section per plugin class, each checked against the
//! keys that class declares. Class resolution is a callback, so this module never loads a library.

use std::path::{Path, PathBuf};

use plugin_sdk::{ClassInfo, ClassKind, ConfigKey, ConfigType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::executor::ExecutorConfig;
use super::schema::{check_section, describe};
use super::{ConfigError, Problem, read_yaml};

/// How the host splits the data into train, validation and test sets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSplitting {
    pub train_ratio: f64,
    pub val_ratio: f64,
    pub test_ratio: f64,
    /// Use the data set's own test set when it ships one (MNIST's t10k files).
    pub use_predefined_test: bool,
    /// With a predefined test set: the share of the training pool held out for validation.
    pub validation_fraction: f64,
    pub shuffle: bool,
}

/// How the host transforms features before training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    /// `unit` scales bytes to [0, 1]; `standardize` then centres and scales with statistics
    /// fitted on the training split; `none` only converts to f32.
    pub normalize: String,
    /// Flatten each sample to one row (784) instead of keeping its shape (1x28x28).
    pub flatten: bool,
    /// Regression: centre and scale each target column with the training split's mean and
    /// standard deviation; predictions are mapped back before metrics. No effect on classes.
    pub standardize_targets: bool,
}

/// A validated experiment config.
#[derive(Debug, Clone)]
pub struct ExperimentConfig {
    pub file: PathBuf,
    pub experiment_name: String,
    pub output_dir: PathBuf,
    pub seed: u64,
    /// Compute threads; resolved from 0 (every core) to a count.
    pub threads: usize,
    pub data_splitting: DataSplitting,
    pub preprocessing: Preprocessing,
    pub reporting_enabled: bool,
    /// The whole config with every default filled in: what a run records and hashes.
    pub canonical: Value,
    /// Each class's sections, as it receives them (host-owned keys removed).
    class_sections: Vec<(ClassKind, Value)>,
    /// Where the run runs (`executor:`); not part of `canonical`: where a run ran is not what
    /// it computed.
    pub executor: ExecutorConfig,
}

pub const SECTIONS: [&str; 7] =
    ["plugins", "data_loader", "data_splitting", "preprocessing", "model", "training", "reporting"];

fn host_keys() -> Vec<ConfigKey> {
    use ConfigType::*;
    let mut keys = vec![
        ConfigKey::new("", "experiment_name", String)
            .required()
            .describe("names the experiment; runs are grouped by it"),
        ConfigKey::new("", "description", String).describe("free text recorded with the run"),
        ConfigKey::new("", "output_dir", String)
            .default("runs")
            .describe("each run writes into <output_dir>/<run id>/"),
        ConfigKey::new("", "seed", Integer).default(42).describe("seeds splitting, shuffling and model initialisation"),
        ConfigKey::new("", "threads", Integer)
            .default(0)
            .describe("compute threads of the run (its model's and the host's own), 0 for every core"),
        ConfigKey::new("plugins", "data_loader", String).required().describe("the Loader class"),
        ConfigKey::new("plugins", "model", String).required().describe("the Model class"),
        ConfigKey::new("plugins", "report_generator", String)
            .describe("the ReportGenerator class; omit for no reports"),
        ConfigKey::new("data_splitting", "train_ratio", Number).default(0.8),
        ConfigKey::new("data_splitting", "val_ratio", Number).default(0.1),
        ConfigKey::new("data_splitting", "test_ratio", Number).default(0.1),
        ConfigKey::new("data_splitting", "use_predefined_test", Boolean)
            .default(true)
            .describe("use the data set's own test set when it has one"),
        ConfigKey::new("data_splitting", "validation_fraction", Number)
            .default(0.1)
            .describe("with a predefined test set, the share of training data held out for validation"),
        ConfigKey::new("data_splitting", "shuffle", Boolean).default(true),
        ConfigKey::new("preprocessing", "normalize", Choice(vec!["unit".into(), "standardize".into(), "none".into()]))
            .default("unit"),
        ConfigKey::new("preprocessing", "flatten", Boolean).default(true),
        ConfigKey::new("preprocessing", "standardize_targets", Boolean)
            .default(true)
            .describe("regression: standardise targets with the training split's statistics (undone for metrics)"),
        ConfigKey::new("reporting", "enabled", Boolean).default(true),
    ];
    for section in SECTIONS {
        keys.push(ConfigKey::new("", section, Any));
    }
    keys.push(
        ConfigKey::new("", "executor", Any).describe("where runs run: local (default) or slurm, with its options"),
    );
    keys
}

impl ExperimentConfig {
    /// Reads and validates `file`. `resolve` finds a class of a kind, or says why it cannot.
    pub fn load(
        file: &Path,
        resolve: impl FnMut(ClassKind, &str) -> Result<ClassInfo, String>,
    ) -> Result<Self, ConfigError> {
        let value = read_yaml(file)?;
        Self::from_value(file, &value, resolve)
    }

    pub fn from_value(
        file: &Path,
        value: &Value,
        mut resolve: impl FnMut(ClassKind, &str) -> Result<ClassInfo, String>,
    ) -> Result<Self, ConfigError> {
        let root = match value {
            Value::Object(root) => root,
            other => {
                return Err(ConfigError::single(
                    file,
                    "",
                    format!(
                        "expected a mapping with experiment_name, plugins, ... at the top, found {}",
                        describe(other)
                    ),
                ));
            }
        };
        let mut problems = Vec::new();
        let host = host_keys();
        let keys_of = |section: &str| host.iter().filter(|k| k.section == section).collect::<Vec<_>>();

        let mut canonical = check_section(Some(value), "", &keys_of(""), "the experiment config", &mut problems);
        canonical.remove("executor");
        let executor = ExecutorConfig::from_section(root.get("executor"), &mut problems);
        let plugins = check_section(root.get("plugins"), "plugins", &keys_of("plugins"), "plugins", &mut problems);
        canonical.insert("plugins".into(), Value::Object(plugins.clone()));

        // Resolve each chosen class, so its section can be checked against its declared keys.
        let mut classes: Vec<(ClassKind, ClassInfo)> = Vec::new();
        for kind in ClassKind::ALL {
            let role = match kind {
                ClassKind::Loader => "data_loader",
                ClassKind::Model => "model",
                ClassKind::ReportGenerator => "report_generator",
            };
            let Some(Value::String(class)) = plugins.get(role) else { continue };
            match resolve(kind, class) {
                Ok(info) => classes.push((kind, info)),
                Err(message) => problems.push(Problem::new(&format!("plugins.{role}"), message)),
            }
        }

        let mut class_sections = Vec::new();
        for section in SECTIONS.into_iter().filter(|s| *s != "plugins") {
            let owner = classes.iter().find(|(kind, _)| kind.sections().contains(&section));
            let role = section_role(section);
            if owner.is_none() && role.is_some_and(|role| plugins.get(role).is_some_and(Value::is_string)) {
                // Its class could not be resolved (already reported): its keys are unknowable.
                canonical.insert(section.into(), root.get(section).cloned().unwrap_or(Value::Null));
                continue;
            }
            let mut keys = keys_of(section);
            let host_key_count = keys.len();
            if let Some((_, info)) = owner {
                keys.extend(info.config_keys.iter().filter(|k| k.section == section));
            }
            // A section written for another class (a torch model's `training:` under a model
            // that trains otherwise) is one problem, not one per key.
            if let Some((kind, info)) = owner
                && keys.len() == host_key_count
                && host_key_count == 0
                && root.get(section).and_then(Value::as_object).is_some_and(|given| !given.is_empty())
            {
                let role = role.unwrap_or(section);
                problems.push(Problem::new(
                    section,
                    format!(
                        "class {} reads no `{section}` keys: the {} owns `{}` (plugins.{role} chose {}); \
                         remove this section, or choose a {} class that reads it",
                        info.name,
                        kind_name(*kind),
                        kind.sections().join("` and `"),
                        info.name,
                        kind_name(*kind),
                    ),
                ));
                canonical.insert(section.into(), Value::Object(Map::new()));
                continue;
            }
            let owner_name = match owner {
                Some((kind, info)) => format!("the {} class {}, which owns `{section}`,", kind_name(*kind), info.name),
                None if host_key_count > 0 => "the host".to_owned(),
                None => format!("no selected class (set plugins.{})", role.unwrap_or("?")),
            };
            let filled = check_section(root.get(section), section, &keys, &owner_name, &mut problems);
            canonical.insert(section.into(), Value::Object(filled));
        }
        for (kind, info) in &classes {
            let mut sections = Map::new();
            // Only the sections it declares keys in: a model without `training` keys gets no
            // `training`, so its config struct need not name one.
            let declared = kind.sections().iter().filter(|s| info.config_keys.iter().any(|k| k.section == **s));
            for section in declared {
                let mut values = canonical[*section].as_object().cloned().unwrap_or_default();
                values.retain(|key, _| info.config_keys.iter().any(|k| k.section == *section && &k.name == key));
                sections.insert((*section).into(), Value::Object(values));
            }
            class_sections.push((*kind, Value::Object(sections)));
        }

        // Seeds are stored as signed 64-bit integers; more threads than this is a typo.
        let seed = non_negative(&canonical, "seed", i64::MAX as u64, &mut problems);
        let threads = non_negative(&canonical, "threads", MAX_THREADS, &mut problems);
        check_splitting(&canonical["data_splitting"], &mut problems);
        if let Some(name) = canonical["experiment_name"].as_str()
            && let Err(why) = check_name(name)
        {
            problems.push(Problem::new("experiment_name", why));
        }

        if !problems.is_empty() {
            return Err(ConfigError { file: file.to_owned(), problems });
        }
        let typed = |section: &str| canonical[section].clone();
        let parse_error = |e: serde_json::Error| ConfigError::single(file, "", format!("internal: {e}"));
        let threads = match threads as usize {
            0 => crate::environment::available_threads(),
            n => n,
        };
        Ok(ExperimentConfig {
            file: file.to_owned(),
            experiment_name: canonical["experiment_name"].as_str().unwrap_or_default().to_owned(),
            output_dir: PathBuf::from(canonical["output_dir"].as_str().unwrap_or("runs")),
            seed,
            threads,
            data_splitting: serde_json::from_value(typed("data_splitting")).map_err(parse_error)?,
            preprocessing: serde_json::from_value(typed("preprocessing")).map_err(parse_error)?,
            reporting_enabled: canonical["reporting"]["enabled"].as_bool().unwrap_or(true),
            canonical: Value::Object(canonical),
            class_sections,
            executor,
        })
    }

    /// The sections a class of `kind` receives: `{"model": {..}, "training": {..}}`.
    pub fn class_sections(&self, kind: ClassKind) -> Value {
        self.class_sections.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.clone()).unwrap_or_else(|| json!({}))
    }
}

/// A kind of class in words: "data loader".
fn kind_name(kind: ClassKind) -> &'static str {
    match kind {
        ClassKind::Loader => "data loader",
        ClassKind::Model => "model",
        ClassKind::ReportGenerator => "report generator",
    }
}

/// The `plugins` role whose class owns `section`, if a class owns it.
fn section_role(section: &str) -> Option<&'static str> {
    match section {
        "data_loader" => Some("data_loader"),
        "model" | "training" => Some("model"),
        "reporting" => Some("report_generator"),
        _ => None,
    }
}

/// The longest experiment name.
const MAX_NAME_CHARS: usize = 200;

/// An experiment name is shown in tables, terminals and pages: printable text of a sensible
/// length (control characters could drive the terminal). Where it names a folder or a job it
/// is made a safe file name (`storage::safe_file_name`).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be 1 to {MAX_NAME_CHARS} characters, found {}", name.chars().count()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!("must not hold the control character {c:?} (it could drive the terminal)"));
    }
    Ok(())
}

/// The most compute threads a config may ask for.
const MAX_THREADS: u64 = 4096;

/// An integer key's value in `0..=max`; anything else is a problem (and 0).
fn non_negative(canonical: &Map<String, Value>, key: &str, max: u64, problems: &mut Vec<Problem>) -> u64 {
    match canonical.get(key) {
        Some(Value::Number(n)) if n.as_u64().is_some_and(|v| v <= max) => n.as_u64().unwrap_or(0),
        Some(Value::Number(n)) if n.is_u64() => {
            problems.push(Problem::new(key, format!("must be at most {max}, found {n}")));
            0
        }
        Some(Value::Number(n)) if n.is_i64() => {
            problems.push(Problem::new(key, format!("must be 0 or more, found {n}")));
            0
        }
        _ => 0,
    }
}

fn check_splitting(splitting: &Value, problems: &mut Vec<Problem>) {
    let ratio = |key: &str| splitting.get(key).and_then(Value::as_f64);
    for key in ["train_ratio", "val_ratio", "test_ratio", "validation_fraction"] {
        if let Some(value) = ratio(key)
            && !(0.0..1.0).contains(&value)
            && !(key == "train_ratio" && value == 1.0)
        {
            problems.push(Problem::new(&format!("data_splitting.{key}"), format!("must be in [0, 1), found {value}")));
        }
    }
    if let (Some(train), Some(val), Some(test)) = (ratio("train_ratio"), ratio("val_ratio"), ratio("test_ratio")) {
        if (train + val + test - 1.0).abs() > 1e-6 {
            problems.push(Problem::new(
                "data_splitting",
                format!(
                    "train_ratio + val_ratio + test_ratio must be 1, found {train} + {val} + {test} = {}",
                    train + val + test
                ),
            ));
        }
        if train <= 0.0 {
            problems.push(Problem::new("data_splitting.train_ratio", "must be more than 0"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn model_class() -> ClassInfo {
        ClassInfo {
            kind: ClassKind::Model,
            name: "MLP".into(),
            summary: String::new(),
            config_keys: vec![
                ConfigKey::new("model", "hidden_layers", ConfigType::List(Box::new(ConfigType::Integer)))
                    .default(json!([128])),
                ConfigKey::new("training", "learning_rate", ConfigType::Number).default(0.001),
                ConfigKey::new("training", "epochs", ConfigType::Integer).required(),
            ],
        }
    }

    fn loader_class() -> ClassInfo {
        ClassInfo {
            kind: ClassKind::Loader,
            name: "Loader".into(),
            summary: String::new(),
            config_keys: vec![ConfigKey::new("data_loader", "data_dir", ConfigType::String).required()],
        }
    }

    fn load(text: &str) -> Result<ExperimentConfig, String> {
        let file = Path::new("config/x.yaml");
        let value = parse_yaml(file, text).map_err(|e| e.to_string())?;
        ExperimentConfig::from_value(file, &value, |kind, name| match (kind, name) {
            (ClassKind::Model, "MLP") => Ok(model_class()),
            (ClassKind::Loader, "Loader") => Ok(loader_class()),
            _ => Err(format!("no {kind} class {name}")),
        })
        .map_err(|e| e.to_string())
    }

    const GOOD: &str = "experiment_name: e\nplugins: {data_loader: Loader, model: MLP}\ndata_loader: {data_dir: d}\ntraining: {epochs: 2}\n";

    #[test]
    fn a_good_config_gets_defaults_and_class_sections() {
        let config = load(GOOD).unwrap();
        assert_eq!(config.seed, 42);
        assert!(config.threads >= 1);
        assert_eq!(config.output_dir, Path::new("runs"));
        assert_eq!(
            config.class_sections(ClassKind::Model),
            json!({"model": {"hidden_layers": [128]}, "training": {"epochs": 2, "learning_rate": 0.001}})
        );
        assert_eq!(config.class_sections(ClassKind::Loader), json!({"data_loader": {"data_dir": "d"}}));
        assert_eq!(config.canonical["data_splitting"]["validation_fraction"], json!(0.1));
        assert!(config.reporting_enabled);
    }

    #[test]
    fn every_problem_is_reported_with_file_and_key_path() {
        let error = load(
            "experiment_name: 5\nseed: -1\nplugins: {data_loader: Loader, model: MLP, report_generator: Nope}\n\
             data_loader: {data_dir: d, colour: red}\nmodel: {hidden_layers: [a]}\ntraining: {learning_rate: fast}\n\
             data_splitting: {train_ratio: 0.5, val_ratio: 0.1, test_ratio: 0.1}\nextra: 1\n",
        )
        .unwrap_err();
        assert_eq!(
            error,
            "config/x.yaml: experiment_name: expected a string, found 5\n\
             config/x.yaml: extra: unknown key; the experiment config accepts: experiment_name, description, output_dir, seed, threads, plugins, data_loader, data_splitting, preprocessing, model, training, reporting, executor\n\
             config/x.yaml: plugins.report_generator: no ReportGenerator class Nope\n\
             config/x.yaml: data_loader.colour: unknown key; the data loader class Loader, which owns `data_loader`, accepts: data_dir\n\
             config/x.yaml: model.hidden_layers[0]: expected an integer, found \"a\"\n\
             config/x.yaml: training.learning_rate: expected a number, found \"fast\"\n\
             config/x.yaml: training.epochs: missing required key: add epochs of type integer\n\
             config/x.yaml: seed: must be 0 or more, found -1\n\
             config/x.yaml: data_splitting: train_ratio + val_ratio + test_ratio must be 1, found 0.5 + 0.1 + 0.1 = 0.7"
        );
    }

    fn knn() -> ClassInfo {
        ClassInfo {
            kind: ClassKind::Model,
            name: "Knn".into(),
            summary: String::new(),
            config_keys: vec![ConfigKey::new("model", "k", ConfigType::Count).default(5)],
        }
    }

    #[test]
    fn a_section_the_chosen_class_does_not_read_is_one_problem_naming_its_owner() {
        // A model that trains without a `training` section, under a config written for one that has it.
        let error = ExperimentConfig::from_value(
            Path::new("config/x.yaml"),
            &parse_yaml(
                Path::new("config/x.yaml"),
                "experiment_name: e\nplugins: {data_loader: Loader, model: Knn}\ndata_loader: {data_dir: d}\n\
                 training: {epochs: 3, learning_rate: 0.1, batch_size: 8}\n",
            )
            .unwrap(),
            |kind, name| match (kind, name) {
                (ClassKind::Loader, "Loader") => Ok(loader_class()),
                (ClassKind::Model, "Knn") => Ok(knn()),
                _ => Err(format!("no {kind} class {name}")),
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            error,
            "config/x.yaml: training: class Knn reads no `training` keys: the model owns `model` and `training` \
             (plugins.model chose Knn); remove this section, or choose a model class that reads it"
        );
        // Without the section, the class gets only the sections it declares keys in.
        let config = ExperimentConfig::from_value(
            Path::new("config/x.yaml"),
            &parse_yaml(
                Path::new("config/x.yaml"),
                "experiment_name: e\nplugins: {data_loader: Loader, model: Knn}\ndata_loader: {data_dir: d}\n",
            )
            .unwrap(),
            |kind, name| match (kind, name) {
                (ClassKind::Loader, "Loader") => Ok(loader_class()),
                _ => Ok(knn()),
            },
        )
        .unwrap();
        assert_eq!(config.class_sections(ClassKind::Model), json!({"model": {"k": 5}}));
        // A class that reads some of a section still gets one message per unknown key.
        let error = load(&GOOD.replace("training: {epochs: 2}", "training: {epochs: 2, momentum: 0.9}")).unwrap_err();
        assert_eq!(
            error,
            "config/x.yaml: training.momentum: unknown key; the model class MLP, which owns `training`, accepts: learning_rate, epochs"
        );
    }

    #[test]
    fn names_that_would_drive_the_terminal_are_refused() {
        for (name, expected) in [
            ("red\u{1b}[31m", "must not hold the control character '\\u{1b}' (it could drive the terminal)"),
            ("two\nlines", "must not hold the control character '\\n'"),
            ("", "must be 1 to 200 characters, found 0"),
        ] {
            let error =
                load(&GOOD.replace(
                    "experiment_name: e",
                    &format!("experiment_name: {}", serde_json::to_string(name).unwrap()),
                ))
                .unwrap_err();
            assert!(
                error.starts_with("config/x.yaml: experiment_name: ") && error.contains(expected),
                "{name:?}: {error}"
            );
        }
        for fine in ["mnist-cnn_v2 (lr 0.1)", "../../x", "<script>x</script>"] {
            assert!(load(&GOOD.replace("experiment_name: e", &format!("experiment_name: {fine:?}"))).is_ok(), "{fine}");
        }
    }

    #[test]
    fn seeds_and_threads_are_bounded() {
        let error = load(&format!("{GOOD}threads: 2147483648\nseed: 9223372036854775808\n")).unwrap_err();
        assert_eq!(
            error,
            "config/x.yaml: seed: must be at most 9223372036854775807, found 9223372036854775808\n\
             config/x.yaml: threads: must be at most 4096, found 2147483648"
        );
    }

    #[test]
    fn a_section_with_no_class_accepts_no_keys() {
        let error = load(&format!("{GOOD}reporting: {{theme: dark}}\n")).unwrap_err();
        assert_eq!(error, "config/x.yaml: reporting.theme: unknown key; the host accepts: enabled");
    }

    #[test]
    fn a_non_mapping_document_is_refused() {
        assert_eq!(
            load("- a\n- b\n").unwrap_err(),
            "config/x.yaml: expected a mapping with experiment_name, plugins, ... at the top, found a list"
        );
    }
}
