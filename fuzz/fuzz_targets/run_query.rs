//! The run query language on arbitrary text: a filter, `--order-by` and `--columns` parse or
//! are refused (an error whose column is inside the text or just past it), never a panic or a
//! hang; a parsed filter compiles for both backends with one bound value per placeholder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use store::query::{RunQuery, compiled_sql, parse_columns, parse_filter, parse_order};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let within = |column: usize| column >= 1 && column <= text.chars().count() + 1;
    match parse_filter(text) {
        Ok(filter) => {
            let query = RunQuery { filter: Some(filter), ..Default::default() };
            for postgres in [false, true] {
                compiled_sql(&query, postgres).expect("a parsed filter compiles");
            }
        }
        Err(error) => assert!(within(error.column) || error.message.contains("longer than"), "{error:?}"),
    }
    if let Err(error) = parse_order(text) {
        assert!(within(error.column) || error.message.contains("longer than"), "{error:?}");
    }
    if let Err(error) = parse_columns(text) {
        assert!(within(error.column) || error.message.contains("longer than"), "{error:?}");
    }
});
