//! `class_mapping_config.yaml`: which library provides each class, by kind.
//!
//! ```yaml
//! Loader:
//!   MNISTLoader: mnist_plugin            # bare name: plugins/, target/release/, target/debug/
//! Model:
//!   MNISTModel: ../plugins/libmnist_plugin.so   # path: relative to this file
//!   Pinned:
//!     library: mnist_plugin
//!     sha256: 3f0a...                    # refuse any other build
//! ```

use std::path::{Path, PathBuf};

use plugin_sdk::ClassKind;
use serde_json::Value;

use super::schema::{describe, suggest};
use super::{ConfigError, Problem, read_yaml};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingEntry {
    pub kind: ClassKind,
    pub class: String,
    /// As written: a bare library name or a path.
    pub library: String,
    /// When set, the library's SHA-256 must equal it.
    pub sha256: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClassMapping {
    pub file: PathBuf,
    pub entries: Vec<MappingEntry>,
}

impl ClassMapping {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let value = read_yaml(file)?;
        Self::from_value(file, &value)
    }

    pub fn from_value(file: &Path, value: &Value) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let mut entries = Vec::new();
        let kinds = ClassKind::ALL.map(ClassKind::name);
        let root = match value {
            Value::Object(root) => root.clone(),
            Value::Null => Default::default(),
            other => {
                return Err(ConfigError::single(
                    file,
                    "",
                    format!("expected a mapping with sections {}, found {}", kinds.join(", "), describe(other)),
                ));
            }
        };
        for (section, classes) in &root {
            let Some(kind) = ClassKind::ALL.into_iter().find(|k| k.name() == section) else {
                let hint = match suggest(section, kinds) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => format!("sections are {}", kinds.join(", ")),
                };
                problems.push(Problem::new(section, format!("unknown section; {hint}")));
                continue;
            };
            let classes = match classes {
                Value::Object(classes) => classes,
                Value::Null => continue,
                other => {
                    problems.push(Problem::new(
                        section,
                        format!("expected a mapping of class names to libraries, found {}", describe(other)),
                    ));
                    continue;
                }
            };
            for (class, target) in classes {
                let path = format!("{section}.{class}");
                match parse_target(target, &path, &mut problems) {
                    Some((library, sha256)) => {
                        entries.push(MappingEntry { kind, class: class.clone(), library, sha256 })
                    }
                    None => continue,
                }
            }
        }
        if problems.is_empty() {
            Ok(ClassMapping { file: file.to_owned(), entries })
        } else {
            Err(ConfigError { file: file.to_owned(), problems })
        }
    }

    pub fn find(&self, kind: ClassKind, class: &str) -> Option<&MappingEntry> {
        self.entries.iter().find(|e| e.kind == kind && e.class == class)
    }

    /// The directory that relative library paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.file.parent().unwrap_or(Path::new("."))
    }
}

fn parse_target(target: &Value, path: &str, problems: &mut Vec<Problem>) -> Option<(String, Option<String>)> {
    match target {
        Value::String(library) if !library.trim().is_empty() => Some((library.clone(), None)),
        Value::Object(fields) => {
            let mut ok = true;
            for key in fields.keys() {
                if key != "library" && key != "sha256" {
                    problems.push(Problem::new(
                        &format!("{path}.{key}"),
                        "unknown key; an entry takes `library` and `sha256`",
                    ));
                    ok = false;
                }
            }
            let library = match fields.get("library") {
                Some(Value::String(library)) if !library.trim().is_empty() => Some(library.clone()),
                Some(other) => {
                    problems.push(Problem::new(
                        &format!("{path}.library"),
                        format!("expected a library name or path, found {}", describe(other)),
                    ));
                    None
                }
                None => {
                    problems.push(Problem::new(path, "missing `library`: the library name or path"));
                    None
                }
            };
            let sha256 = match fields.get("sha256") {
                None | Some(Value::Null) => None,
                Some(Value::String(hash)) if hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    Some(hash.to_ascii_lowercase())
                }
                Some(other) => {
                    problems.push(Problem::new(
                        &format!("{path}.sha256"),
                        format!("expected 64 hex digits (see `host plugins list`), found {}", describe(other)),
                    ));
                    ok = false;
                    None
                }
            };
            if ok { library.map(|l| (l, sha256)) } else { None }
        }
        other => {
            problems.push(Problem::new(path, format!("expected a library name or path, found {}", describe(other))));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(text: &str) -> Result<ClassMapping, String> {
        let file = Path::new("config/class_mapping_config.yaml");
        let value = parse_yaml(file, text).map_err(|e| e.to_string())?;
        ClassMapping::from_value(file, &value).map_err(|e| e.to_string())
    }

    #[test]
    fn names_paths_and_pins_are_read() {
        let hash = "ab".repeat(32);
        let mapping = parse(&format!(
            "Loader:\n  MNISTLoader: mnist_plugin\nModel:\n  M:\n    library: ../x.so\n    sha256: {}\nReportGenerator:\n",
            hash.to_uppercase()
        ))
        .unwrap();
        assert_eq!(mapping.entries.len(), 2);
        assert_eq!(mapping.find(ClassKind::Model, "M").unwrap().sha256.as_deref(), Some(hash.as_str()));
        assert_eq!(mapping.find(ClassKind::Loader, "MNISTLoader").unwrap().library, "mnist_plugin");
        assert_eq!(mapping.base_dir(), Path::new("config"));
    }

    #[test]
    fn every_malformed_entry_is_reported() {
        let error = parse("Loaders:\n  A: a\nModel:\n  B: 3\n  C:\n    libary: x\n  D:\n    library: d\n    sha256: nope\nReportGenerator: [1]\n").unwrap_err();
        assert_eq!(
            error,
            "config/class_mapping_config.yaml: Loaders: unknown section; did you mean `Loader`?\n\
             config/class_mapping_config.yaml: Model.B: expected a library name or path, found 3\n\
             config/class_mapping_config.yaml: Model.C.libary: unknown key; an entry takes `library` and `sha256`\n\
             config/class_mapping_config.yaml: Model.C: missing `library`: the library name or path\n\
             config/class_mapping_config.yaml: Model.D.sha256: expected 64 hex digits (see `host plugins list`), found \"nope\"\n\
             config/class_mapping_config.yaml: ReportGenerator: expected a mapping of class names to libraries, found a list"
        );
    }

    #[test]
    fn malformed_yaml_names_the_file_and_line() {
        let error = parse("Loader:\n  A: [unclosed\n").unwrap_err();
        assert!(error.starts_with("config/class_mapping_config.yaml: malformed YAML: "), "{error}");
        assert!(error.contains("line"), "{error}");
    }
}
