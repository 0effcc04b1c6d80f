//! The experiment config parser on arbitrary text: YAML, then validation against classes that
//! declare keys of every type. It may refuse the text, never panic or hang.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use plugin_sdk::{ClassInfo, ClassKind, ConfigKey, ConfigType};

fn class(kind: ClassKind, name: &str) -> ClassInfo {
    let section = kind.sections()[0];
    ClassInfo {
        kind,
        name: name.to_owned(),
        summary: String::new(),
        config_keys: vec![
            ConfigKey::new(section, "count", ConfigType::Integer).default(3),
            ConfigKey::new(section, "rate", ConfigType::Number).default(0.5),
            ConfigKey::new(section, "flag", ConfigType::Boolean).default(false),
            ConfigKey::new(section, "name", ConfigType::String).required(),
            ConfigKey::new(section, "layers", ConfigType::List(Box::new(ConfigType::Integer))).default(vec![1, 2]),
            ConfigKey::new(section, "mode", ConfigType::Choice(vec!["a".into(), "b".into()])).default("a"),
        ],
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("fuzz.yaml");
    let Ok(value) = host::config::parse_yaml(file, text) else { return };
    let _ = host::config::experiment::ExperimentConfig::from_value(file, &value, |kind, name| {
        if name.starts_with('X') { Err(format!("no {kind} class {name}")) } else { Ok(class(kind, name)) }
    });
    let _ = host::config::sweep::split(file, &value);
});
