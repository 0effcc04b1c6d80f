//! Points the crate's test binaries at libtorch (rpath), as the plugin crates do for their
//! libraries: the tests call libtorch in-process, and the pip-installed libtorch is in no
//! default library path. Also tells the crate where libtorch is, so it can load the CUDA
//! backend only when a config asks for a GPU (`load_cuda_backend`).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=TORCH_MODELS_LIBTORCH_LIB={dir}");
    }
}
