//! Checks a config section against declared keys: unknown keys, wrong types and missing
//! required keys are all collected (never the first only), and defaults are filled in.
//! Knows nothing about which section belongs to whom; `experiment` decides that.

use plugin_sdk::{ConfigKey, ConfigType};
use serde_json::{Map, Value};

use super::Problem;

/// How a value looks in a message: strings quoted, containers named.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn type_phrase(ty: &ConfigType) -> String {
    match ty {
        ConfigType::Integer => "an integer".into(),
        ConfigType::Count => "a whole number, 0 or more".into(),
        ConfigType::Number => "a number".into(),
        ConfigType::String => "a string".into(),
        ConfigType::Boolean => "true or false".into(),
        ConfigType::Any => "a value".into(),
        ConfigType::List(inner) => {
            format!("a list of {}", type_phrase(inner).trim_start_matches("an ").trim_start_matches("a "))
        }
        ConfigType::Choice(choices) => format!("one of {}", choices.join(", ")),
    }
}

/// Checks `value` against `ty`, pushing a problem for each mismatch (list items individually).
pub fn check_type(value: &Value, ty: &ConfigType, path: &str, problems: &mut Vec<Problem>) {
    let ok = match (ty, value) {
        (ConfigType::Any, _) => true,
        (ConfigType::Integer, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (ConfigType::Count, Value::Number(n)) => n.is_u64(),
        (ConfigType::Number, Value::Number(_)) => true,
        (ConfigType::String, Value::String(_)) => true,
        (ConfigType::Boolean, Value::Bool(_)) => true,
        (ConfigType::Choice(choices), Value::String(s)) => choices.iter().any(|c| c == s),
        (ConfigType::List(inner), Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                check_type(item, inner, &format!("{path}[{index}]"), problems);
            }
            true
        }
        _ => false,
    };
    if !ok {
        problems.push(Problem::new(path, format!("expected {}, found {}", type_phrase(ty), describe(value))));
    }
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == cb { previous } else { 1 + previous.min(row[j]).min(row[j + 1]) };
            previous = current;
        }
    }
    row[b.len()]
}

/// Names the key path of `key` inside `section` (`model.learning_rate`, or `seed` at the root).
pub fn key_path(section: &str, key: &str) -> String {
    if section.is_empty() { key.to_owned() } else { format!("{section}.{key}") }
}

/// Checks a section (absent means empty) against `keys`, reporting every problem, and returns
/// the section with defaults filled in. `owner` names who declared the keys, for messages.
pub fn check_section(
    value: Option<&Value>,
    section: &str,
    keys: &[&ConfigKey],
    owner: &str,
    problems: &mut Vec<Problem>,
) -> Map<String, Value> {
    let empty = Map::new();
    let given = match value {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(map)) => map,
        Some(other) => {
            problems.push(Problem::new(section, format!("expected a mapping of keys, found {}", describe(other))));
            &empty
        }
    };
    let mut filled = Map::new();
    for (name, value) in given {
        let path = key_path(section, name);
        match keys.iter().find(|k| &k.name == name) {
            Some(key) => {
                if !(value.is_null() && !key.required && key.default.is_none()) {
                    check_type(value, &key.ty, &path, problems);
                }
                filled.insert(name.clone(), value.clone());
            }
            None => {
                let names = keys.iter().map(|k| k.name.as_str());
                let hint = match suggest(name, names.clone()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None if keys.is_empty() => format!("{owner} takes no keys here"),
                    None => format!("{owner} accepts: {}", names.collect::<Vec<_>>().join(", ")),
                };
                problems.push(Problem::new(&path, format!("unknown key; {hint}")));
            }
        }
    }
    for key in keys {
        if given.contains_key(&key.name) {
            continue;
        }
        match &key.default {
            Some(default) => {
                filled.insert(key.name.clone(), default.clone());
            }
            None if key.required => {
                let about = if key.description.is_empty() { String::new() } else { format!(" ({})", key.description) };
                problems.push(Problem::new(
                    &key_path(section, &key.name),
                    format!("missing required key: add {} of type {}{about}", key.name, key.ty),
                ));
            }
            None => {}
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys() -> Vec<ConfigKey> {
        vec![
            ConfigKey::new("model", "learning_rate", ConfigType::Number).default(0.001),
            ConfigKey::new("model", "hidden_layers", ConfigType::List(Box::new(ConfigType::Integer)))
                .default(json!([128])),
            ConfigKey::new("model", "optimizer", ConfigType::Choice(vec!["adam".into(), "sgd".into()])).default("adam"),
            ConfigKey::new("model", "data_dir", ConfigType::String).required().describe("where the IDX files are"),
            ConfigKey::new("model", "patience", ConfigType::Integer),
        ]
    }

    fn check(value: Value) -> (Map<String, Value>, Vec<String>) {
        let keys = keys();
        let refs: Vec<&ConfigKey> = keys.iter().collect();
        let mut problems = Vec::new();
        let filled = check_section(Some(&value), "model", &refs, "class MLP", &mut problems);
        (filled, problems.iter().map(|p| format!("{}: {}", p.key_path, p.message)).collect())
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let (_, problems) = check(json!({
            "learning_rate": "fast",
            "hidden_layers": [128, "wide"],
            "optimizer": "adm",
            "learnig_rate": 1,
            "colour": "red",
        }));
        assert_eq!(
            problems,
            [
                "model.learning_rate: expected a number, found \"fast\"",
                "model.hidden_layers[1]: expected an integer, found \"wide\"",
                "model.optimizer: expected one of adam, sgd, found \"adm\"",
                "model.learnig_rate: unknown key; did you mean `learning_rate`?",
                "model.colour: unknown key; class MLP accepts: learning_rate, hidden_layers, optimizer, data_dir, patience",
                "model.data_dir: missing required key: add data_dir of type string (where the IDX files are)",
            ]
        );
    }

    #[test]
    fn defaults_are_filled_and_optional_keys_may_be_null() {
        let (filled, problems) = check(json!({"data_dir": "data", "patience": null}));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            Value::Object(filled),
            json!({"data_dir": "data", "patience": null, "learning_rate": 0.001, "hidden_layers": [128], "optimizer": "adam"})
        );
    }

    #[test]
    fn integers_are_not_fractions() {
        let (_, problems) = check(json!({"data_dir": "d", "patience": 2.5}));
        assert_eq!(problems, ["model.patience: expected an integer, found 2.5"]);
    }
}
