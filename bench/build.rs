//! The bare program links libtorch directly; point its rpath at the pip-installed libtorch,
//! and tell `bench overhead` where it is (it also runs the bare program with libtorch.so, and so
//! the CUDA libraries, preloaded, as the torch plugin links them).
fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(dir) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
        println!("cargo:rustc-env=BENCH_LIBTORCH_LIB={dir}");
    }
}
