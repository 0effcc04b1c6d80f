//! The plugin SDK: the one crate that knows the stable ABI (abi_stable) between the `host` and
//! its plugins. Plugin authors implement plain Rust traits and call [`export_plugin!`]; the host
//! loads libraries and calls classes through [`host`]. Neither side names an abi_stable type.
//!
//! # Writing a plugin
//!
//! ```ignore
//! use plugin_sdk::prelude::*;
//!
//! struct MyLoader { /* config */ }
//!
//! impl PluginClass for MyLoader {
//!     const NAME: &'static str = "MyLoader";
//!     const SUMMARY: &'static str = "reads my data";
//!     fn config_keys() -> Vec<ConfigKey> {
//!         vec![ConfigKey::new("data_loader", "data_dir", ConfigType::String).required()]
//!     }
//!     fn new(config: ClassConfig) -> Result<Self, PluginError> { /* config.parse()? */ }
//! }
//! impl DataLoader for MyLoader { /* load_data, extract_features_and_targets */ }
//!
//! plugin_sdk::export_plugin! {
//!     name: env!("CARGO_PKG_NAME"),
//!     version: env!("CARGO_PKG_VERSION"),
//!     loaders: [MyLoader],
//!     models: [],
//!     report_generators: [],
//! }
//! ```
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

/// The SDK (and so ABI) version plugins are built against.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything a plugin author needs, in one `use`.
pub mod prelude {
    pub use crate::{
        ClassConfig, ConfigKey, ConfigType, DataLoader, DataView, Dataset, FitSummary, LoadSummary, Model, PluginClass,
        PluginError, ReportGenerator, ResultExt, Services, SourceFile, TaskKind, Tensor, TensorView,
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

/// Exports a plugin library's classes. Call it once, at the crate root of a `cdylib`.
///
/// ```ignore
/// plugin_sdk::export_plugin! {
///     name: env!("CARGO_PKG_NAME"),
///     version: env!("CARGO_PKG_VERSION"),
///     loaders: [MyLoader],
///     models: [MyModel],
///     report_generators: [],
/// }
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
        #[doc(hidden)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
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
            // SAFETY: `load_root_module` returns the root module of type `PluginModule_Ref`,
            // the type this header declares.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginModule_Ref>(
                    root_module,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
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
