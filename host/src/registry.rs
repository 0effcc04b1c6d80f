//! The plugin registry: which library provides each class. Class mappings are layered: an
//! entry in the user's mapping (`--class-mapping`, or the one beside the experiment config)
//! wins over one in the project's `config/class_mapping_config.yaml`, which wins over the
//! dynamic libraries discovered in `plugins/`; a class no mapping names is looked up among
//! those. Each library is loaded once per process and its file hashed once (from the digest
//! cache while it is unchanged, afresh when a pin applies). This is the only module that turns
//! SDK load errors into user-facing messages.
//!
//! Loading a library runs its code (its constructors), so nothing is loaded before it is
//! needed or checked: a discovered library is loaded only when a class is looked up among the
//! discovered ones (or listed), a mapped one only when its class is; a `sha256:` pin is
//! compared before the file is loaded; a library or class mapping that another user owns or
//! anyone may write is refused unless allowed (`--allow-untrusted`); and only regular files
//! are opened (a FIFO named `x.so` would block).
//!
//! With a manifest cache (`host sweep` validating its trial configs), a library whose SHA-256
//! has a cached manifest is not loaded until a class of it is created, which validation never
//! does: loading a libtorch plugin costs about half a second, its manifest a file read.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use plugin_sdk::host::{Library, host_sdk_version, load_library};
use plugin_sdk::{ClassInfo, ClassKind, Manifest};
use serde::{Deserialize, Serialize};

use crate::config::class_mapping::{ClassMapping, MappingEntry};
use crate::hashing::{sha256_file, sha256_file_cached};

/// A plugin library, its manifest and the facts the provenance store needs about its file.
#[derive(Debug)]
pub struct PluginLibrary {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    manifest: Manifest,
    /// Loaded already, or on first use when the manifest came from the cache.
    library: OnceCell<Result<Arc<Library>, String>>,
}

impl PluginLibrary {
    pub fn plugin_label(&self) -> String {
        format!("{} {}", self.manifest.plugin_name, self.manifest.plugin_version)
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The loaded library, loading it now if only its cached manifest was read so far.
    pub fn library(&self) -> anyhow::Result<&Arc<Library>> {
        self.library.get_or_init(|| open_library(&self.path)).as_ref().map_err(|error| anyhow::anyhow!("{error}"))
    }
}

/// Where `host sweep` keeps plugin manifests by library SHA-256: `$XDG_CACHE_HOME/host/manifests`
/// or `~/.cache/host/manifests`; `None` when neither is set.
pub fn manifest_cache_dir() -> Option<PathBuf> {
    crate::hashing::user_cache_dir("manifests")
}

/// A cached manifest and the SDK version of the host that read it from the library.
#[derive(Serialize, Deserialize)]
struct CachedManifest {
    sdk_version: String,
    manifest: Manifest,
}

/// How a class was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Mapped,
    Discovered,
    /// The library file an earlier run recorded (`host replay`).
    Recorded,
}

/// A class ready to instantiate.
#[derive(Debug, Clone)]
pub struct ResolvedClass {
    pub info: ClassInfo,
    pub library: Rc<PluginLibrary>,
    pub source: Source,
}

#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// The class mapping files, the first winning where two map the same class; none for
    /// discovery only.
    pub class_mappings: Vec<PathBuf>,
    /// Where plugins are discovered; defaults to `<project root>/plugins`.
    pub plugins_dir: Option<PathBuf>,
    /// The project root (holding `config/`, `plugins/`, `target/`); by default the parent of
    /// the last mapping's folder, or the current folder without one.
    pub project_root: Option<PathBuf>,
    /// Read manifests from (and write them to) this cache instead of loading each library
    /// up front; see the module's documentation.
    pub manifest_cache: Option<PathBuf>,
    /// Use libraries and a class mapping that another user owns or anyone may write.
    pub allow_untrusted: bool,
}

pub struct Registry {
    /// First wins.
    mappings: Vec<ClassMapping>,
    project_root: PathBuf,
    plugins_dir: PathBuf,
    /// The library files in `plugins_dir`, loaded when first needed.
    discovered: Vec<PathBuf>,
    loaded: RefCell<HashMap<PathBuf, Result<Rc<PluginLibrary>, String>>>,
    manifest_cache: Option<PathBuf>,
    allow_untrusted: bool,
}

/// The platform's file name for a library: `mnist_plugin` -> `libmnist_plugin.so`.
pub fn library_file_name(name: &str) -> String {
    format!("{}{name}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

fn is_dynamic_library(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some(std::env::consts::DLL_EXTENSION)
}

impl Registry {
    /// Reads the class mapping and lists the libraries in the plugins directory (loading none).
    /// A library that fails to load is remembered with its error, not fatal: only its classes
    /// are unavailable.
    pub fn open(options: RegistryOptions) -> anyhow::Result<Self> {
        let mut mappings = Vec::new();
        let mut seen = Vec::new();
        for file in &options.class_mappings {
            // The same file named twice (beside the config and the project's) counts once.
            let canonical = file.canonicalize().unwrap_or_else(|_| file.clone());
            if seen.contains(&canonical) {
                continue;
            }
            seen.push(canonical);
            if !options.allow_untrusted {
                refuse_untrusted(file, "the class mapping").map_err(anyhow::Error::msg)?;
            }
            mappings.push(ClassMapping::load(file)?);
        }
        // The project root holds config/, plugins/ and target/; the project's mapping (the last,
        // the base the others add to) lives in config/.
        let project_root = match (options.project_root, mappings.last()) {
            (Some(root), _) => root,
            (None, Some(mapping)) => mapping.base_dir().parent().map(Path::to_owned).unwrap_or_default(),
            (None, None) => PathBuf::new(),
        };
        let project_root = if project_root.as_os_str().is_empty() { PathBuf::from(".") } else { project_root };
        let plugins_dir = options.plugins_dir.unwrap_or_else(|| project_root.join("plugins"));
        let registry = Registry {
            mappings,
            project_root,
            plugins_dir,
            discovered: Vec::new(),
            loaded: RefCell::new(HashMap::new()),
            manifest_cache: options.manifest_cache,
            allow_untrusted: options.allow_untrusted,
        };
        Ok(registry.discover())
    }

    fn discover(mut self) -> Self {
        let mut paths: Vec<PathBuf> = match std::fs::read_dir(&self.plugins_dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_dynamic_library(p)).collect(),
            Err(_) => Vec::new(),
        };
        paths.sort();
        self.discovered = paths;
        self
    }

    /// The discovered libraries, each loaded now if it was not yet (or its manifest read from
    /// the cache).
    fn discovered(&self) -> Vec<(&Path, Result<Rc<PluginLibrary>, String>)> {
        self.discovered.iter().map(|path| (path.as_path(), self.load(path))).collect()
    }

    pub fn plugins_dir(&self) -> &Path {
        &self.plugins_dir
    }

    /// The class mapping files in use, the first winning.
    pub fn mapping_files(&self) -> impl Iterator<Item = &Path> {
        self.mappings.iter().map(|m| m.file.as_path())
    }

    /// The mapping files for a message: "a.yaml and b.yaml", or `None` without any.
    pub fn mapping_names(&self) -> Option<String> {
        let names: Vec<String> = self.mapping_files().map(|f| f.display().to_string()).collect();
        (!names.is_empty()).then(|| names.join(" and "))
    }

    /// Loads (once) and hashes (once) the library at `path`, after checking who may change it.
    pub fn load(&self, path: &Path) -> Result<Rc<PluginLibrary>, String> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        if let Some(result) = self.loaded.borrow().get(&key) {
            return result.clone();
        }
        let checked = if self.allow_untrusted { Ok(()) } else { refuse_untrusted(path, "the library") };
        // A pinned library is hashed afresh, and that digest is the one recorded.
        let result = checked.and_then(|()| self.check_pins(path, &key)).and_then(|pinned| {
            let digest = if pinned { hash } else { hash_cached };
            match &self.manifest_cache {
                Some(cache) => load_with_cache(path, cache, digest),
                None => load_hashed(path, digest),
            }
        });
        self.loaded.borrow_mut().insert(key, result.clone());
        result
    }

    /// Hashes a library that a mapping entry pins (however it is reached: mapped, or found
    /// again in plugins/) before it is loaded: a mismatch never runs its code.
    fn check_pins(&self, path: &Path, canonical: &Path) -> Result<bool, String> {
        let mut digest = None;
        let pinned_entries = self.mappings.iter().flat_map(|m| m.entries.iter().map(move |e| (m, e)));
        for (mapping, entry) in pinned_entries.filter(|(_, e)| e.sha256.is_some()) {
            let pinned = self.locate(mapping, entry).ok().and_then(|p| p.canonicalize().ok());
            if pinned.as_deref() != Some(canonical) {
                continue;
            }
            let sha256 = match &digest {
                Some(sha256) => sha256,
                None => digest.insert(hash(path)?.0),
            };
            if let Some(error) = pin_error(path, sha256, mapping, entry) {
                return Err(error);
            }
        }
        Ok(digest.is_some())
    }

    /// Where a mapping entry's library is: absolute, relative to the mapping file, or a bare
    /// name looked up in plugins/, target/release/, target/debug/.
    fn locate(&self, mapping: &ClassMapping, entry: &MappingEntry) -> Result<PathBuf, String> {
        let written = Path::new(&entry.library);
        let is_path = written.is_absolute() || written.components().count() > 1 || is_dynamic_library(written);
        if is_path {
            return Ok(if written.is_absolute() { written.to_owned() } else { mapping.base_dir().join(written) });
        }
        let file_name = library_file_name(&entry.library);
        let candidates = [
            self.plugins_dir.join(&file_name),
            self.project_root.join("target/release").join(&file_name),
            self.project_root.join("target/debug").join(&file_name),
        ];
        if let Some(found) = candidates.iter().find(|p| p.is_file()) {
            return Ok(found.clone());
        }
        let searched: Vec<String> = candidates.iter().map(|p| p.parent().unwrap_or(p).display().to_string()).collect();
        Err(format!(
            "library `{}` ({file_name}) is not in {}; build it with `cargo build -p {}` or fix {}",
            entry.library,
            searched.join(", "),
            entry.library.replace('_', "-"),
            mapping.file.display()
        ))
    }

    fn resolve_mapped(
        &self,
        mapping: &ClassMapping,
        entry: &MappingEntry,
        wanted: ClassKind,
    ) -> Result<ResolvedClass, String> {
        let path = self.locate(mapping, entry)?;
        // `load` compares the pin before loading; this, after: the file may have been replaced.
        let library = self.load(&path)?;
        if let Some(error) = pin_error(&path, &library.sha256, mapping, entry) {
            return Err(error);
        }
        let info = find_class(&library, &entry.class, wanted)?;
        Ok(ResolvedClass { info, library, source: Source::Mapped })
    }

    /// Finds the library providing `class` of kind `kind`.
    pub fn resolve(&self, kind: ClassKind, class: &str) -> Result<ResolvedClass, String> {
        for mapping in &self.mappings {
            if let Some(entry) = mapping.find(kind, class) {
                return self.resolve_mapped(mapping, entry, kind);
            }
        }
        for mapping in &self.mappings {
            if let Some(entry) = mapping.entries.iter().find(|e| e.class == class) {
                return Err(format!(
                    "class {class} is mapped as a {} in {}, not a {kind}; choose a {kind} class{}",
                    entry.kind,
                    mapping.file.display(),
                    self.known_classes_hint(kind)
                ));
            }
        }
        let (loaded, failed): (Vec<_>, Vec<_>) = self.discovered().into_iter().partition(|(_, result)| result.is_ok());
        let offering: Vec<Rc<PluginLibrary>> = loaded
            .into_iter()
            .filter_map(|(_, result)| result.ok())
            .filter(|lib| lib.manifest().classes.iter().any(|c| c.name == class))
            .collect();
        match offering.as_slice() {
            [] => {
                let mapping = self.mapping_names().map(|f| format!("not in {f} and ")).unwrap_or_default();
                // A library that could not be loaded may be the one meant: say why.
                let unloaded: String =
                    failed.into_iter().filter_map(|(_, result)| result.err()).map(|e| format!("; {e}")).collect();
                Err(format!(
                    "no {kind} class {class}: {mapping}no library in {} provides it{}{unloaded}",
                    self.plugins_dir.display(),
                    self.known_classes_hint(kind)
                ))
            }
            [library] => Ok(ResolvedClass {
                info: find_class(library, class, kind)?,
                library: Rc::clone(library),
                source: Source::Discovered,
            }),
            [first, second, ..] => Err(format!(
                "class {class} is provided by both {} and {}; map it in the class mapping to choose one",
                first.path.display(),
                second.path.display()
            )),
        }
    }

    fn known_classes_hint(&self, kind: ClassKind) -> String {
        let mut names: Vec<String> =
            self.listing().entries.into_iter().filter(|e| e.kind == kind).map(|e| e.class).collect();
        names.sort();
        names.dedup();
        if names.is_empty() { String::new() } else { format!("; known {kind} classes: {}", names.join(", ")) }
    }

    /// Every class the registry can offer, and every library or mapping entry that failed.
    pub fn listing(&self) -> Listing {
        let mut listing = Listing::default();
        let mut named = std::collections::HashSet::new();
        for mapping in &self.mappings {
            for entry in &mapping.entries {
                // A class an earlier mapping names is that mapping's, resolved or not (as a run
                // finds it).
                if !named.insert((entry.kind, entry.class.clone())) {
                    continue;
                }
                match self.resolve_mapped(mapping, entry, entry.kind) {
                    Ok(resolved) => listing.entries.push(ListedClass::new(&resolved, entry.kind)),
                    Err(error) => listing.problems.push(ListingProblem {
                        subject: format!("{}.{}", entry.kind, entry.class),
                        error: format!("{} {}.{}: {error}", mapping.file.display(), entry.kind, entry.class),
                    }),
                }
            }
        }
        for (path, result) in self.discovered() {
            match result {
                Ok(library) => {
                    for info in &library.manifest().classes {
                        if listing.entries.iter().any(|e| e.class == info.name && e.source == Source::Mapped) {
                            continue;
                        }
                        let resolved = ResolvedClass {
                            info: info.clone(),
                            library: Rc::clone(&library),
                            source: Source::Discovered,
                        };
                        listing.entries.push(ListedClass::new(&resolved, info.kind));
                    }
                }
                Err(error) => listing.problems.push(ListingProblem { subject: path.display().to_string(), error }),
            }
        }
        listing
    }
}

/// Why `path` (whose SHA-256 is `sha256`) is not the build `entry` pins, if it is not.
fn pin_error(path: &Path, sha256: &str, mapping: &ClassMapping, entry: &MappingEntry) -> Option<String> {
    let pin = entry.sha256.as_deref().filter(|pin| *pin != sha256)?;
    Some(format!(
        "{}: SHA-256 is {sha256}, but {} pins {}.{} to {pin}; restore the pinned build or update the pin",
        path.display(),
        mapping.file.display(),
        entry.kind,
        entry.class
    ))
}

/// The class a run recorded, from the library file it recorded: no mapping, no discovery.
pub fn resolve_recorded(
    path: &Path,
    kind: ClassKind,
    class: &str,
    allow_untrusted: bool,
) -> Result<ResolvedClass, String> {
    if !allow_untrusted {
        refuse_untrusted(path, "the library")?;
    }
    let library = load_and_hash(path)?;
    let info = find_class(&library, class, kind)?;
    Ok(ResolvedClass { info, library, source: Source::Recorded })
}

/// Loads a library, its loader's full report logged at info level for `-v`.
fn open_library(path: &Path) -> Result<Arc<Library>, String> {
    if path.to_str().is_none() {
        return Err(format!(
            "{}: the library's path is not valid UTF-8; runs record it as text, so rename it",
            path.display()
        ));
    }
    load_library(path).map_err(|error| {
        if let Some(detail) = error.detail() {
            tracing::info!("{}: full loader report:\n{detail}", error.path().display());
        }
        error.to_string()
    })
}

fn hash(path: &Path) -> Result<(String, u64), String> {
    sha256_file(path).map_err(|e| format!("{}: cannot read for hashing: {e}", path.display()))
}

/// [`hash`] from the digest cache while the file is unchanged: for libraries a run looks up
/// (a pin, a recorded build and `plugins inspect` are always hashed).
fn hash_cached(path: &Path) -> Result<(String, u64), String> {
    sha256_file_cached(path).map_err(|e| format!("{}: cannot read for hashing: {e}", path.display()))
}

/// Loads a library and hashes its file.
pub fn load_and_hash(path: &Path) -> Result<Rc<PluginLibrary>, String> {
    load_hashed(path, hash)
}

/// How a library's file is hashed: afresh ([`hash`]) or from the digest cache ([`hash_cached`]).
type Digest = fn(&Path) -> Result<(String, u64), String>;

fn load_hashed(path: &Path, hash: Digest) -> Result<Rc<PluginLibrary>, String> {
    let library = open_library(path)?;
    let (sha256, size) = hash(path)?;
    let manifest = library.manifest().clone();
    Ok(Rc::new(PluginLibrary { path: path.to_owned(), sha256, size, manifest, library: OnceCell::from(Ok(library)) }))
}

/// Hashes a library's file and takes its manifest from `cache` when a host of this SDK version
/// cached one for that SHA-256; otherwise loads it and caches its manifest (best effort: a
/// cache that cannot be written only costs the next process a load).
fn load_with_cache(path: &Path, cache: &Path, hash: Digest) -> Result<Rc<PluginLibrary>, String> {
    if path.to_str().is_none() {
        return load_and_hash(path);
    }
    let (sha256, size) = hash(path)?;
    let file = cache.join(format!("{sha256}.json"));
    let cached = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<CachedManifest>(&bytes).ok())
        .filter(|cached| cached.sdk_version == host_sdk_version());
    if let Some(cached) = cached {
        tracing::debug!("{}: manifest from {}", path.display(), file.display());
        let library = OnceCell::new();
        return Ok(Rc::new(PluginLibrary { path: path.to_owned(), sha256, size, manifest: cached.manifest, library }));
    }
    // Loading hashes the file again: a file replaced since the first hash is not cached under
    // a digest it no longer has.
    let loaded = load_and_hash(path)?;
    if loaded.sha256 == sha256 {
        let entry = CachedManifest { sdk_version: host_sdk_version().to_owned(), manifest: loaded.manifest.clone() };
        let staging = cache.join(format!(".{sha256}.{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(cache)
            .and_then(|()| std::fs::write(&staging, serde_json::to_vec(&entry).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&staging, &file));
        if let Err(error) = written {
            tracing::debug!("{}: manifest not cached: {error}", file.display());
        }
    }
    Ok(loaded)
}

fn find_class(library: &PluginLibrary, class: &str, wanted: ClassKind) -> Result<ClassInfo, String> {
    let classes = &library.manifest().classes;
    match classes.iter().find(|c| c.name == class) {
        Some(info) if info.kind == wanted => Ok(info.clone()),
        Some(info) => Err(format!(
            "class {class} in {} is a {}, not a {wanted}; choose a {wanted} class{}",
            library.path.display(),
            info.kind,
            of_kind(classes, wanted)
        )),
        None => {
            let provided: Vec<String> = classes.iter().map(|c| format!("{} ({})", c.name, c.kind)).collect();
            Err(format!(
                "{} (plugin {}) has no class {class}; it provides {}",
                library.path.display(),
                library.plugin_label(),
                if provided.is_empty() { "no classes".to_owned() } else { provided.join(", ") }
            ))
        }
    }
}

fn of_kind(classes: &[ClassInfo], kind: ClassKind) -> String {
    let names: Vec<&str> = classes.iter().filter(|c| c.kind == kind).map(|c| c.name.as_str()).collect();
    if names.is_empty() { String::new() } else { format!(" such as {}", names.join(", ")) }
}

#[derive(Debug, Default, Serialize)]
pub struct Listing {
    pub entries: Vec<ListedClass>,
    pub problems: Vec<ListingProblem>,
}

#[derive(Debug, Serialize)]
pub struct ListedClass {
    pub class: String,
    pub kind: ClassKind,
    pub summary: String,
    pub source: Source,
    pub library: PathBuf,
    pub plugin_name: String,
    pub plugin_version: String,
    pub sdk_version: String,
    pub sha256: String,
    pub size: u64,
    /// Why the library might not be the build you think: writable by anyone, or owned by
    /// another user.
    pub trust_warnings: Vec<String>,
}

/// Refuses `file` (`what`: "the library", "the class mapping") when [`trust_warnings`] has any.
fn refuse_untrusted(file: &Path, what: &str) -> Result<(), String> {
    let warnings = trust_warnings(file, what);
    if warnings.is_empty() {
        return Ok(());
    }
    Err(format!(
        "{}; refused, as loading a library runs its code: fix the owner or permissions, or pass --allow-untrusted (HOST_ALLOW_UNTRUSTED=1) if you trust them",
        warnings.join("; ")
    ))
}

/// Trust problems of a file the host would act on (`what`: "the library", "the class
/// mapping"): it, or its folder, is writable by every user (anyone could swap it), or another
/// user (not root) owns it.
pub fn trust_warnings(file: &Path, what: &str) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut warnings = Vec::new();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_owned());
    let folder = file.parent().unwrap_or(Path::new("/"));
    let folder_label = format!("{what}'s folder");
    for (what, path) in [(what, file.as_path()), (folder_label.as_str(), folder)] {
        let Ok(metadata) = std::fs::metadata(path) else { continue };
        let sticky = metadata.is_dir() && metadata.mode() & 0o1000 != 0;
        if metadata.mode() & 0o002 != 0 && !sticky {
            warnings.push(format!("{what} {} is writable by every user: anyone could change it", path.display()));
        }
        if metadata.uid() != me && metadata.uid() != 0 {
            warnings.push(format!("{what} {} is owned by another user (uid {})", path.display(), metadata.uid()));
        }
    }
    warnings
}

impl ListedClass {
    fn new(resolved: &ResolvedClass, kind: ClassKind) -> Self {
        let manifest = resolved.library.manifest();
        ListedClass {
            class: resolved.info.name.clone(),
            kind,
            summary: resolved.info.summary.clone(),
            source: resolved.source,
            library: resolved.library.path.clone(),
            plugin_name: manifest.plugin_name.clone(),
            plugin_version: manifest.plugin_version.clone(),
            sdk_version: manifest.sdk_version.clone(),
            sha256: resolved.library.sha256.clone(),
            size: resolved.library.size,
            trust_warnings: trust_warnings(&resolved.library.path, "the library"),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct ListingProblem {
    /// The mapping entry (`Model.MNISTModel`) or library path at fault.
    pub subject: String,
    pub error: String,
}
