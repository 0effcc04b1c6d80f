//! The MNIST plugin: MNISTLoader (IDX files), MNISTMLP and MNISTCNN (libtorch via tch).
//! Built as a cdylib for the host and as an rlib so its classes are tested in-process.

pub mod idx;
pub mod loader;
pub mod model;

pub use loader::MnistLoader;
pub use model::{MnistCnn, MnistMlp};

plugin_sdk::export_plugin! {
    name: env!("CARGO_PKG_NAME"),
    version: env!("CARGO_PKG_VERSION"),
    loaders: [MnistLoader],
    models: [MnistMlp, MnistCnn],
    report_generators: [],
}
