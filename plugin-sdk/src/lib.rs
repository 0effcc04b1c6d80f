//! The plugin SDK: the one crate that knows the stable ABI (abi_stable) between the `host` and
//! its plugins. Plugin authors implement plain Rust traits and call [`export_plugin!`]; the host
//! loads libraries and calls classes through [`host`]. Neither side names an abi_stable type.
//!
//! # What to read
//!
//! - **Every class** implements [`PluginClass`]: a name, a summary, the [`ConfigKey`]s it accepts
//!   (typed by [`ConfigType`]) and a constructor from its [`ClassConfig`]. A call that fails
//!   returns a [`PluginError`]; [`ResultExt`] turns other errors into one, with context.
//! - **A data loader** implements [`DataLoader`]: it reports a [`LoadSummary`] (every
//!   [`SourceFile`] read) and returns a [`Dataset`] of [`Tensor`]s for a [`TaskKind`].
//! - **A model** implements [`Model`]: it receives [`DataView`]s and [`TensorView`]s, and returns
//!   a [`FitSummary`] and predictions as a [`Tensor`].
//! - **A report generator** implements [`ReportGenerator`]: the run's facts as JSON in, files
//!   out.
//! - **During every call**, [`Services`] logs, reports progress and metrics, says whether to stop
//!   and names the folder to write into.
//! - **The library** exports its classes with [`export_plugin!`], once, at its crate root.
//! - **Tests** call classes in-process with [`host::with_services`] and
//!   [`testing::RecordingServices`].
//!
//! [`prelude`] imports what a plugin names. The guide `docs/writing-a-plugin.md` has the rules
//! (determinism, files, cancellation) in full.
//!
//! # A complete plugin
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib", "rlib"]   # cdylib for the host, rlib for in-process tests
//!
//! [dependencies]
//! plugin-sdk = { path = "../plugin-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! serde_json = "1"
//! ```
//!
//! `src/lib.rs`, a loader of a made-up data set:
//!
//! ```rust,standalone_crate
//! use plugin_sdk::prelude::*;
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Config {
//!     data_loader: Section,
//! }
//!
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Section {
//!     rows: usize,
//! }
//!
//! /// The numbers `0..rows`, each labelled even or odd.
//! pub struct Parity {
//!     rows: usize,
//! }
//!
//! impl PluginClass for Parity {
//!     const NAME: &'static str = "Parity";
//!     const SUMMARY: &'static str = "even and odd numbers, made up";
//!
//!     fn config_keys() -> Vec<ConfigKey> {
//!         vec![ConfigKey::new("data_loader", "rows", ConfigType::Count).default(100).describe("how many numbers")]
//!     }
//!
//!     fn new(config: ClassConfig) -> Result<Self, PluginError> {
//!         let rows = config.parse::<Config>()?.data_loader.rows;
//!         if rows == 0 {
//!             return Err(PluginError::invalid_config("data_loader.rows: must be 1 or more, found 0"));
//!         }
//!         Ok(Parity { rows })
//!     }
//! }
//!
//! impl DataLoader for Parity {
//!     fn load_data(&mut self, services: &Services<'_>) -> Result<LoadSummary, PluginError> {
//!         services.info(&format!("making {} numbers", self.rows));
//!         // A loader that reads files lists every one in `source_files`.
//!         Ok(LoadSummary { source_files: vec![], samples: self.rows, description: format!("0..{}", self.rows) })
//!     }
//!
//!     fn extract_features_and_targets(&mut self, _: &Services<'_>) -> Result<Dataset, PluginError> {
//!         let numbers: Vec<f32> = (0..self.rows).map(|i| i as f32).collect();
//!         let labels: Vec<i64> = (0..self.rows as i64).map(|i| i % 2).collect();
//!         Ok(Dataset {
//!             features: Tensor::from_f32(vec![self.rows, 1], numbers)?,
//!             targets: Tensor::from_i64(vec![self.rows], labels)?,
//!             task: TaskKind::Classification,
//!             label_names: vec!["even".into(), "odd".into()],
//!             test_start: None,
//!             metadata: serde_json::json!({"made_up": true}),
//!         })
//!     }
//! }
//!
//! plugin_sdk::export_plugin! {
//!     name: env!("CARGO_PKG_NAME"),
//!     version: env!("CARGO_PKG_VERSION"),
//!     loaders: [Parity],
//!     models: [],
//!     report_generators: [],
//! }
//! # // What the host does with the class, in-process (as the crate's own tests would).
//! # fn main() -> Result<(), PluginError> {
//! #     use plugin_sdk::{host::with_services, testing::RecordingServices};
//! #     let sections = serde_json::json!({"data_loader": {"rows": 4}});
//! #     let config = ClassConfig { sections, declared: Parity::config_keys(), ..ClassConfig::default() };
//! #     let mut loader = Parity::new(config)?;
//! #     let host = RecordingServices::new(std::env::temp_dir());
//! #     let dataset = with_services(&host, |services| {
//! #         loader.load_data(services)?;
//! #         loader.extract_features_and_targets(services)
//! #     })?;
//! #     assert_eq!(dataset.targets.view().as_i64(), Some(&[0, 1, 0, 1][..]));
//! #     assert_eq!(host.logs.lock().unwrap()[0].1, "making 4 numbers");
//! #     let zero = ClassConfig { sections: serde_json::json!({"data_loader": {"rows": 0}}), ..ClassConfig::default() };
//! #     assert_eq!(Parity::new(zero).err().unwrap().kind, plugin_sdk::ErrorKind::InvalidConfig);
//! #     Ok(())
//! # }
//! ```
//!
//! Build it with `cargo build --release`, copy `target/release/lib<crate_name>.so` (`-` spelled
//! `_`) into a project's `plugins/`, and `host plugins list` shows `Parity`.
//!
//! # Rules the SDK enforces
//! - Every call is guarded: a panic becomes an error naming the plugin, class and call.
//! - A class's config arrives validated against its declared [`ConfigKey`]s, defaults filled.
//! - Bulk data ([`Tensor`]) moves across the boundary without copying.
//! - The SDK version is the ABI version: a plugin built against another 0.x minor is refused.
#![deny(missing_docs)]

mod convert;
mod ffi;
pub mod host;
mod plugin;
mod shape;
pub mod testing;
mod types;

pub use plugin::{ClassConfig, DataLoader, Model, PluginClass, ReportGenerator, Services};
pub use types::{
    ClassInfo, ClassKind, ConfigKey, ConfigType, DType, DataView, Dataset, Elements, ErrorKind, FitSummary,
    LoadSummary, LogLevel, Manifest, PluginError, ResultExt, RunContext, ShapeError, SourceFile, TaskKind, Tensor,
    TensorView,
};

/// The SDK (and so ABI) version plugins are built against; [`export_plugin!`] writes it into
/// the manifest. The host refuses a library built against another major version, or another
/// minor while the SDK is 0.x.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a plugin author needs, in one `use plugin_sdk::prelude::*;`: the class traits,
/// their inputs and outputs, config keys, errors and services.
pub mod prelude {
    pub use crate::{
        ClassConfig, ConfigKey, ConfigType, DataLoader, DataView, Dataset, Elements, FitSummary, LoadSummary, Model,
        PluginClass, PluginError, ReportGenerator, ResultExt, Services, SourceFile, TaskKind, Tensor, TensorView,
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::ffi::PluginModule_Ref;
    pub use crate::plugin::{Registry, load_root_module};
    pub use abi_stable::library::{CheckTypeLayout, LibHeader, RootModuleResult};

    /// The symbol abi_stable looks up in a plugin library; `export_plugin!` spells it literally
    /// because a macro cannot build an identifier from a constant.
    pub const ROOT_MODULE_SYMBOL: &str = "_1as_0lib_1header_0root_bmodule_bloader";
}

/// Exports a plugin library's classes: writes the library's one root module, the symbol the host
/// looks up, which holds the manifest (plugin name and version, [`SDK_VERSION`], every class
/// with its kind, summary and config keys) and a constructor for each class.
///
/// Call it exactly once, at the crate root (`src/lib.rs`) of a crate built with
/// `crate-type = ["cdylib", "rlib"]`: the `cdylib` is the library the host loads, the `rlib`
/// lets the crate's own tests (and other crates) use the classes in-process. A second call in
/// the same crate does not compile: rustc says "the name
/// `export_plugin_may_be_called_only_once_per_crate` is defined multiple times". List every
/// class in one call instead.
///
/// The fields, every one required, in this order:
///
/// - `name:` the plugin's name, one word, usually `env!("CARGO_PKG_NAME")`. Runs record it.
/// - `version:` the plugin's own version, `MAJOR.MINOR.PATCH` (a `-pre` or `+build` after it is
///   allowed), usually `env!("CARGO_PKG_VERSION")`. Runs record it.
/// - `loaders: [..]`: the types implementing [`DataLoader`], comma-separated, or `[]`.
/// - `models: [..]`: the types implementing [`Model`], or `[]`.
/// - `report_generators: [..]`: the types implementing [`ReportGenerator`], or `[]`.
///
/// Types are named as at the call site (`csv::CsvLoader` for one in a module). Each class
/// [`NAME`](PluginClass::NAME) may appear once in the library. The host refuses a library
/// whose name, version or class names break these rules when it loads it, in one line naming
/// the field.
///
/// ```rust,standalone_crate
/// # use plugin_sdk::prelude::*;
/// # pub struct CsvLoader;
/// # impl PluginClass for CsvLoader {
/// #     const NAME: &'static str = "CsvLoader";
/// #     const SUMMARY: &'static str = "reads a CSV table";
/// #     fn new(_: ClassConfig) -> Result<Self, PluginError> { Ok(CsvLoader) }
/// # }
/// # impl DataLoader for CsvLoader {
/// #     fn load_data(&mut self, _: &Services<'_>) -> Result<LoadSummary, PluginError> { todo!() }
/// #     fn extract_features_and_targets(&mut self, _: &Services<'_>) -> Result<Dataset, PluginError> { todo!() }
/// # }
/// # mod linear {
/// #     use std::path::{Path, PathBuf};
/// #     use plugin_sdk::prelude::*;
/// #     pub struct Ridge;
/// #     impl PluginClass for Ridge {
/// #         const NAME: &'static str = "Ridge";
/// #         const SUMMARY: &'static str = "ridge regression";
/// #         fn new(_: ClassConfig) -> Result<Self, PluginError> { Ok(Ridge) }
/// #     }
/// #     impl Model for Ridge {
/// #         fn fit(&mut self, _: &DataView<'_>, _: Option<&DataView<'_>>, _: &Services<'_>) -> Result<FitSummary, PluginError> { todo!() }
/// #         fn predict(&mut self, _: &TensorView<'_>, _: &Services<'_>) -> Result<Tensor, PluginError> { todo!() }
/// #         fn evaluate(&mut self, _: &DataView<'_>, _: &Services<'_>) -> Result<serde_json::Map<String, serde_json::Value>, PluginError> { todo!() }
/// #         fn save(&mut self, _: &Path) -> Result<Vec<PathBuf>, PluginError> { todo!() }
/// #         fn load(&mut self, _: &Path) -> Result<(), PluginError> { todo!() }
/// #     }
/// # }
/// // src/lib.rs, at the top level, after the classes:
/// plugin_sdk::export_plugin! {
///     name: env!("CARGO_PKG_NAME"),
///     version: env!("CARGO_PKG_VERSION"),
///     loaders: [CsvLoader],
///     models: [linear::Ridge],
///     report_generators: [],
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugin {
    (
        name: $name:expr,
        version: $version:expr,
        loaders: [$($loader:ty),* $(,)?],
        models: [$($model:ty),* $(,)?],
        report_generators: [$($report:ty),* $(,)?] $(,)?
    ) => {
        // Called twice, rustc reports this name as "defined multiple times" (E0428) and stops
        // there, before the duplicate symbol below (whose name says nothing) is ever reported.
        #[doc(hidden)]
        mod export_plugin_may_be_called_only_once_per_crate {}

        // In an unnamed block, so the name above is the only one a second call repeats; the
        // class types resolve where the macro is called, as the block's items see that module.
        const _: () = {
            fn registry() -> $crate::__private::Registry {
                #[allow(unused_mut)]
                let mut registry = $crate::__private::Registry::new($name, $version);
                $(registry.add_loader::<$loader>();)*
                $(registry.add_model::<$model>();)*
                $(registry.add_report_generator::<$report>();)*
                registry
            }
            extern "C" fn root_module() -> $crate::__private::RootModuleResult {
                $crate::__private::load_root_module(registry)
            }
            #[unsafe(no_mangle)]
            static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader =
                // SAFETY: `load_root_module` returns the root module of type `PluginModule_Ref`,
                // the type this header declares.
                unsafe {
                    $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginModule_Ref>(
                        root_module,
                        $crate::__private::CheckTypeLayout::Yes,
                    )
                };
        };
    };
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_exported_symbol_is_the_one_abi_stable_looks_up() {
        assert_eq!(super::__private::ROOT_MODULE_SYMBOL, abi_stable::library::ROOT_MODULE_LOADER_NAME);
    }
}
