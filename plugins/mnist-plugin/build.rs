//! Points the plugin's rpath at libtorch so the host can dlopen it without LD_LIBRARY_PATH.
//! The plugin links only what it calls (`libtorch_cpu`, `libc10`): the CUDA backend is loaded
//! at run time when a config asks for a GPU (`torch_models::load_cuda_backend`), so a CPU run
//! never maps the CUDA libraries.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
