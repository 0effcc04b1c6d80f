//! Config files in two phases: YAML text -> JSON value -> validated, typed config. Every
//! problem is collected and reported at once, each naming the file and the key path.

pub mod class_mapping;
pub mod database;
pub mod executor;
pub mod experiment;
pub mod schema;
pub mod sweep;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One problem in a config file, at a key path (`model.learning_rate`, `Loader.MNISTLoader`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file; empty for the whole file.
    pub key_path: String,
    /// What is wrong and, where possible, the fix.
    pub message: String,
}

impl Problem {
    pub fn new(key_path: &str, message: impl Into<String>) -> Self {
        Problem { key_path: key_path.to_owned(), message: message.into() }
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            if problem.key_path.is_empty() {
                write!(f, "{}: {}", self.file.display(), problem.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), problem.key_path, problem.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    pub fn single(file: &Path, key_path: &str, message: impl Into<String>) -> Self {
        ConfigError { file: file.to_owned(), problems: vec![Problem::new(key_path, message)] }
    }
}

/// The largest config file read: far above any real config, far below what exhausts memory.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The deepest nesting of flow collections (`[`, `{`) a config may have.
const MAX_FLOW_DEPTH: usize = 256;

/// Reads a YAML file into a JSON value. YAML aliases are expanded with serde_norway's limits,
/// so a recursive or exponential alias bomb is an error, not a hang; the size and the nesting
/// are bounded before parsing, so a huge or deeply nested file is refused at once.
pub fn read_yaml(path: &Path) -> Result<Value, ConfigError> {
    use std::io::Read;
    let cannot_read = |e: std::io::Error| {
        let fix = if e.kind() == std::io::ErrorKind::NotFound { "; check the path" } else { "" };
        ConfigError::single(path, "", format!("cannot read the file: {e}{fix}"))
    };
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut text))
        .map_err(cannot_read)?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::single(
            path,
            "",
            format!("larger than {} MiB; a config holds settings, not data", MAX_CONFIG_BYTES >> 20),
        ));
    }
    let text = String::from_utf8(text).map_err(|e| {
        ConfigError::single(path, "", format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()))
    })?;
    parse_yaml(path, &text)
}

/// Parses YAML text (named `path` in errors) into a JSON value. A key given twice in one
/// mapping is an error (YAML leaves it undefined; silently taking the last hides typos), and
/// so is a number JSON cannot hold (`.nan`, `.inf`), named by its key path.
pub fn parse_yaml(path: &Path, text: &str) -> Result<Value, ConfigError> {
    if let Some(line) = too_deep(text) {
        return Err(ConfigError::single(
            path,
            "",
            format!("malformed YAML: nested more than {MAX_FLOW_DEPTH} levels deep at line {line}"),
        ));
    }
    let yaml = serde_norway::from_str::<serde_norway::Value>(text)
        .map_err(|e| ConfigError::single(path, "", format!("malformed YAML: {e}")))?;
    to_json(yaml, "").map_err(|problem| ConfigError { file: path.to_owned(), problems: vec![problem] })
}

/// The line where flow collections (`[`, `{`) nest deeper than the limit, skipping quoted
/// text and comments; block nesting needs an indent per level, so the size limit bounds it.
fn too_deep(text: &str) -> Option<usize> {
    let (mut depth, mut line, mut quote, mut comment, mut previous) = (0usize, 1, None, false, ' ');
    for c in text.chars() {
        match (quote, c) {
            (_, '\n') => {
                line += 1;
                comment = false;
            }
            _ if comment => {}
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    None
}

/// Converts parsed YAML to JSON, naming the key path of anything JSON cannot hold.
fn to_json(yaml: serde_norway::Value, at: &str) -> Result<Value, Problem> {
    use serde_norway::Value as Yaml;
    Ok(match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(|| {
                    Problem::new(at, format!("{f} is not a usable number here; write a finite number"))
                })?
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Mapping(mapping) => {
            let mut map = serde_json::Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(s) => s,
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    Yaml::Null => "null".to_owned(),
                    _ => return Err(Problem::new(at, "a key must be a plain scalar, not a list or mapping")),
                };
                let path = if at.is_empty() { key.clone() } else { format!("{at}.{key}") };
                let value = to_json(value, &path)?;
                // `1:` and `'1':` are two YAML keys but one here.
                if map.insert(key, value).is_some() {
                    return Err(Problem::new(&path, "given twice (as a number and as text, say); keep one"));
                }
            }
            Value::Object(map)
        }
        Yaml::Tagged(tagged) => to_json(tagged.value, at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Value, String> {
        parse_yaml(Path::new("c.yaml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_key_given_twice_is_an_error_not_the_last_one_silently() {
        let error = parse("model: {lr: 1}\nseed: 1\nseed: 2\n").unwrap_err();
        assert!(error.starts_with("c.yaml: malformed YAML: duplicate entry with key \"seed\""), "{error}");
        assert!(parse("a: {x: 1, x: 2}\n").unwrap_err().contains("duplicate entry with key \"x\""));
        assert_eq!(
            parse("a: {1: x, '1': y}\n").unwrap_err(),
            "c.yaml: a.1: given twice (as a number and as text, say); keep one"
        );
    }

    #[test]
    fn numbers_json_cannot_hold_are_named_by_key_path() {
        assert_eq!(
            parse("training: {rates: [0.1, .nan]}\n").unwrap_err(),
            "c.yaml: training.rates[1]: NaN is not a usable number here; write a finite number"
        );
        assert_eq!(
            parse("a: -.inf\n").unwrap_err(),
            "c.yaml: a: -inf is not a usable number here; write a finite number"
        );
        assert_eq!(
            parse("a: {1: x, true: y, b: [1, 2.5, \"s\", null]}\n").unwrap(),
            serde_json::json!({"a": {"1": "x", "true": "y", "b": [1, 2.5, "s", null]}})
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        // The message is the pre-scan's: the parser (quadratic in depth) never sees the text.
        let error = parse(&"[".repeat(100_000)).unwrap_err();
        assert_eq!(error, "c.yaml: malformed YAML: nested more than 256 levels deep at line 1");
        // Brackets in quotes and comments do not count; 64 levels are fine.
        let quoted = format!(
            "a: '{}'\nb: \"{}\" # {}\nc: {}{}\n",
            "[".repeat(300),
            "{".repeat(300),
            "[".repeat(300),
            "[".repeat(64),
            "]".repeat(64)
        );
        assert!(parse(&quoted).is_ok());
    }

    #[test]
    fn a_file_larger_than_the_limit_or_endless_is_refused() {
        let dir = std::env::temp_dir().join(format!("config-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.yaml");
        std::fs::write(&big, format!("description: \"{}\"\n", "x".repeat(MAX_CONFIG_BYTES as usize))).unwrap();
        let error = read_yaml(&big).unwrap_err().to_string();
        assert_eq!(error, format!("{}: larger than 1 MiB; a config holds settings, not data", big.display()));
        let error = read_yaml(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(error.contains("larger than 1 MiB"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
