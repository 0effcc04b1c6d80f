//! The tabular plugin: CsvLoader (feature and target columns from a CSV file), MLPRegressor
//! (libtorch, from `torch-models`) and RegressionReport (one self-contained HTML page).
//! Nothing here is known to the host: it learns the task from the loader's dataset.

pub mod loader;
pub mod report;

pub use loader::CsvLoader;
pub use report::RegressionReport;
pub use torch_models::MlpRegressor;

plugin_sdk::export_plugin! {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    loaders: [CsvLoader],
    models: [MlpRegressor],
    report_generators: [RegressionReport],
}
