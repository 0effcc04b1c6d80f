//! The tabular plugin: TableLoader (feature and target columns from a CSV or Parquet file), MLPRegressor
//! (libtorch, from `torch-models`) and RegressionReport (one self-contained HTML page).
//! Nothing here is known to the host: it learns the task from the loader's dataset.

pub mod loader;
pub mod report;

pub use loader::TableLoader;
pub use report::RegressionReport;
pub use torch_models::MlpRegressor;

plugin_sdk::export_plugin! {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    loaders: [TableLoader],
    models: [MlpRegressor],
    report_generators: [RegressionReport],
}
