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

/// Where the scaffolded crate takes the plugin SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// The SDK this host was built from (its folder must still be there).
    Built,
    /// A folder holding the SDK's sources (a copy or a checkout).
    Path(PathBuf),
    /// A version requirement, resolved from the package registry cargo is configured with.
    Version(String),
}

impl SdkSource {
    /// The dependency line's value and a comment saying where it comes from.
    fn dependency(&self) -> anyhow::Result<(String, String)> {
        let path = match self {
            SdkSource::Version(version) => {
                let valid = !version.is_empty()
                    && version.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '=' | '^' | '~'));
                if !valid {
                    bail!("--sdk-version {version:?}: give a version such as 0.1 or =0.1.0");
                }
                let comment = format!("The plugin SDK {version} from the package registry (--sdk-version).");
                return Ok((format!("\"{version}\""), comment));
            }
            SdkSource::Built => built_sdk(),
            SdkSource::Path(path) => path.clone(),
        };
        if !path.join("Cargo.toml").is_file() {
            bail!(
                "{}: no plugin SDK there{}; give its folder with --sdk PATH or a version with --sdk-version {}",
                path.display(),
                if *self == SdkSource::Built { " (this host was built from elsewhere)" } else { "" },
                plugin_sdk::SDK_VERSION,
            );
        }
        let path = path.canonicalize().with_context(|| format!("{}: cannot resolve", path.display()))?;
        let text = path.to_str().context("the SDK's path is not UTF-8; give another with --sdk")?.replace('\\', "/");
        let comment = match self {
            SdkSource::Built => "The SDK this host was built from, at its path (--sdk PATH names another copy).",
            _ => "The SDK at the path given with --sdk.",
        };
        Ok((format!("{{ path = {text:?} }}"), comment.to_owned()))
    }
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

/// A class name is a Rust type name the host shows and configs use: `KnnClassifier`.
fn check_class(class: &str) -> anyhow::Result<()> {
    let valid = class.starts_with(|c: char| c.is_ascii_uppercase())
        && class.chars().all(|c| c.is_ascii_alphanumeric())
        && class.len() <= 64;
    if !valid {
        bail!(
            "--class {class:?}: a class name is letters and digits, starting with a capital letter, at most 64 \
             (KnnClassifier)"
        );
    }
    Ok(())
}

/// The library file a scaffolded crate builds (`my-loader` -> `libmy_loader.so`).
pub fn library_file(name: &str) -> String {
    crate::registry::library_file_name(&name.replace('-', "_"))
}

/// What `host plugins new` is asked for.
pub struct Scaffold<'a> {
    /// The crate's name (`my-loader`).
    pub name: &'a str,
    /// The kind of its one class.
    pub kind: ScaffoldKind,
    /// The class's name; the crate name in CamelCase when not given.
    pub class: Option<&'a str>,
    /// Where the crate's folder is created.
    pub dir: &'a Path,
    /// Where the crate takes the SDK from.
    pub sdk: SdkSource,
}

/// Writes the crate `dir/name` and returns its folder and its class's name.
pub fn new_plugin(request: &Scaffold) -> anyhow::Result<(PathBuf, String)> {
    let Scaffold { name, kind, class, dir, sdk } = request;
    let kind = *kind;
    check_name(name)?;
    let class = match class {
        Some(class) => {
            check_class(class)?;
            class.to_string()
        }
        None => class_name(name),
    };
    let (sdk_dependency, sdk_comment) = sdk.dependency()?;
    let root = dir.join(name);
    if root.exists() {
        bail!("{}: already exists; choose another name or --dir", root.display());
    }
    let library = library_file(name);
    let fill = |template: &str| {
        template
            .replace("__CRATE__", name)
            .replace("__CLASS__", &class)
            .replace("__LIBRARY__", &library)
            .replace("__SDK_DEPENDENCY__", &sdk_dependency)
            .replace("__SDK_COMMENT__", &sdk_comment)
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
    Ok((root, class))
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
        let scaffold = |name: &str, kind, class, sdk| new_plugin(&Scaffold { name, kind, class, dir: dir.path(), sdk });
        for kind in [ScaffoldKind::Loader, ScaffoldKind::Model, ScaffoldKind::Report] {
            let name = format!("demo-{kind:?}").to_lowercase();
            let (root, class) = scaffold(&name, kind, None, SdkSource::Built).unwrap();
            assert_eq!(class, class_name(&name));
            for file in ["Cargo.toml", "README.md", "src/lib.rs"] {
                let text = std::fs::read_to_string(root.join(file)).unwrap();
                assert!(!text.contains("__"), "{file} of {name} keeps a placeholder");
            }
        }
        let again = scaffold("demo-loader", ScaffoldKind::Loader, None, SdkSource::Built).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        let nowhere = scaffold("x", ScaffoldKind::Loader, None, SdkSource::Path("/nonexistent".into())).unwrap_err();
        assert!(nowhere.to_string().contains("--sdk PATH or a version with --sdk-version"), "{nowhere}");
    }

    #[test]
    fn the_class_and_the_sdk_version_are_written_where_they_belong() {
        let dir = tempfile::tempdir().unwrap();
        let request = Scaffold {
            name: "knn",
            kind: ScaffoldKind::Model,
            class: Some("KnnClassifier"),
            dir: dir.path(),
            sdk: SdkSource::Version("0.1".into()),
        };
        let (root, class) = new_plugin(&request).unwrap();
        assert_eq!(class, "KnnClassifier");
        let source = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
        assert!(source.contains("const NAME: &'static str = \"KnnClassifier\";"), "{source}");
        assert!(source.contains("models: [KnnClassifier]") && !source.contains("Knn {"), "{source}");
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("plugin-sdk = \"0.1\"\n"), "{manifest}");
        assert!(manifest.contains("[profile.dev]\nopt-level = 1"), "{manifest}");
        for bad in ["knn", "Knn Classifier", "Knn-1", ""] {
            let request = Scaffold { name: "other", class: Some(bad), sdk: request.sdk.clone(), ..request };
            let error = new_plugin(&request).unwrap_err().to_string();
            assert!(error.contains("a class name is letters and digits"), "{bad:?}: {error}");
        }
        let request = Scaffold { name: "other", class: None, sdk: SdkSource::Version("latest".into()), ..request };
        assert!(new_plugin(&request).unwrap_err().to_string().contains("give a version such as 0.1"));
    }
}
