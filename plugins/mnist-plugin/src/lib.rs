//! The MNIST plugin: MNISTLoader (IDX files), MNISTMLP and MNISTCNN (libtorch via tch),
//! MNISTReportGenerator (HTML with tera).
//! Built as a cdylib for the host and as an rlib so its classes are tested in-process.

pub mod idx;
pub mod loader;
pub mod report;

pub use loader::MnistLoader;
pub use report::MnistReportGenerator;
pub use torch_models::{MnistCnn, MnistMlp};

plugin_sdk::export_plugin! {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    loaders: [MnistLoader],
    models: [MnistMlp, MnistCnn],
    report_generators: [MnistReportGenerator],
}
