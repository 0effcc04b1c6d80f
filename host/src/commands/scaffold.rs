//! `host plugins new NAME --kind loader|model|report`: a plugin crate that builds and loads as
//! it is, against this host's SDK, with one class of the kind asked for and its tests. The
//! templates (`host/templates/scaffold/`) follow docs/writing-a-plugin.md.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::ValueEnum;

/// The kind of class a scaffolded plugin provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScaffoldKind {
    Loader,
    Model,
    Report,
}

impl ScaffoldKind {
    fn template(self) -> &'static str {
        match self {
            ScaffoldKind::Loader => include_str!("../../templates/scaffold/loader.rs.txt"),
            ScaffoldKind::Model => include_str!("../../templates/scaffold/model.rs.txt"),
            ScaffoldKind::Report => include_str!("../../templates/scaffold/report.rs.txt"),
        }
    }

    /// The experiment config's `plugins:` key that selects a class of this kind.
    fn config_key(self) -> &'static str {
        match self {
            ScaffoldKind::Loader => "data_loader",
            ScaffoldKind::Model => "model",
            ScaffoldKind::Report => "report_generator",
        }
    }
}

/// Where this host's SDK sources were when it was built.
fn built_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk")
}

/// `my-loader` -> `MyLoader`.
fn class_name(crate_name: &str) -> String {
    crate_name
        .split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect()
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        bail!("{name:?}: a plugin name is lower case letters, digits, - and _, starting with a letter (my-loader)");
    }
    Ok(())
}

/// The library file a scaffolded crate builds (`my-loader` -> `libmy_loader.so`).
pub fn library_file(name: &str) -> String {
    crate::registry::library_file_name(&name.replace('-', "_"))
}

/// Writes the crate `dir/name` and returns its folder.
pub fn new_plugin(name: &str, kind: ScaffoldKind, dir: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let sdk = sdk.map(Path::to_owned).unwrap_or_else(built_sdk);
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "{}: no plugin SDK there (this host was built from elsewhere); give its folder with --sdk PATH",
            sdk.display()
        );
    }
    let sdk = sdk.canonicalize().with_context(|| format!("{}: cannot resolve", sdk.display()))?;
    let sdk_text = sdk.to_str().context("the SDK's path is not UTF-8; give another with --sdk")?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{}: already exists; choose another name or --dir", root.display());
    }
    let class = class_name(name);
    let library = library_file(name);
    let fill = |template: &str| {
        template
            .replace("__CRATE__", name)
            .replace("__CLASS__", &class)
            .replace("__LIBRARY__", &library)
            .replace("__SDK__", &sdk_text.replace('\\', "/"))
            .replace("__KIND__", &format!("{kind:?}").to_lowercase())
            .replace("__CONFIG_KEY__", kind.config_key())
    };
    std::fs::create_dir_all(root.join("src")).with_context(|| format!("{}: cannot create", root.display()))?;
    for (file, text) in [
        ("Cargo.toml", fill(include_str!("../../templates/scaffold/Cargo.toml.txt"))),
        ("README.md", fill(include_str!("../../templates/scaffold/README.md.txt"))),
        ("src/lib.rs", fill(kind.template())),
        (".gitignore", "/target\n".to_owned()),
    ] {
        let path = root.join(file);
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_class_names_and_bad_names_are_refused() {
        assert_eq!(class_name("my-loader"), "MyLoader");
        assert_eq!(class_name("tof_surrogate-model2"), "TofSurrogateModel2");
        for bad in ["", "My", "1x", "a b", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        for kind in [ScaffoldKind::Loader, ScaffoldKind::Model, ScaffoldKind::Report] {
            let name = format!("demo-{kind:?}").to_lowercase();
            let root = new_plugin(&name, kind, dir.path(), None).unwrap();
            for file in ["Cargo.toml", "README.md", "src/lib.rs"] {
                let text = std::fs::read_to_string(root.join(file)).unwrap();
                assert!(!text.contains("__"), "{file} of {name} keeps a placeholder");
            }
        }
        let again = new_plugin("demo-loader", ScaffoldKind::Loader, dir.path(), None).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        let nowhere = new_plugin("x", ScaffoldKind::Loader, dir.path(), Some(Path::new("/nonexistent"))).unwrap_err();
        assert!(nowhere.to_string().contains("--sdk"), "{nowhere}");
    }
}
