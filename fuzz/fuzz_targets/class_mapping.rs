//! The class-mapping parser on arbitrary text. It may refuse the text, never panic or hang.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let file = Path::new("config/class_mapping_config.yaml");
    if let Ok(value) = host::config::parse_yaml(file, text) {
        let _ = host::config::class_mapping::ClassMapping::from_value(file, &value);
    }
});
