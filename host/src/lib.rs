//! The host as a library: the `host` binary's commands, the pipeline and the provenance store.
//! The binary (`main.rs`) only parses arguments; the benchmarks use the store directly.

pub mod cache;
pub mod commands;
pub mod config;
pub mod data;
pub mod failpoint;
pub mod hashing;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod registry;
pub mod store;
pub mod sweep;
