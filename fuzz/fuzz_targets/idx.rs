//! The IDX reader on arbitrary bytes, raw or gzipped: it may refuse them, never panic or
//! allocate what the file cannot hold.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../plugins/mnist-plugin/src/idx.rs"]
#[allow(dead_code)]
mod idx;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static FILE: std::path::PathBuf = std::env::temp_dir().join(format!("fuzz-idx-{}", std::process::id()));
    }
    FILE.with(|path| {
        std::fs::write(path, data).expect("write the input");
        for rank in [1, 3] {
            if let Ok(array) = idx::read_idx(path, rank) {
                assert_eq!(array.dims.len(), rank);
                assert_eq!(array.data.len(), array.dims.iter().product::<usize>());
                assert!(array.data.len() <= data.len() * 1032 + 64, "more bytes than the input could hold");
            }
        }
    });
});
