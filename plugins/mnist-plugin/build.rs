//! Points the plugin's rpath at libtorch so the host can dlopen it without LD_LIBRARY_PATH,
//! and keeps libtorch (and with it libtorch_cuda) linked even though no symbol of it is used
//! directly, which CUDA needs (tch issues 980, 177).

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg=-ltorch");
        }
    }
}
