//! The host as a library: the `host` binary's commands, the pipeline, sweeps, and what they
//! share. The binary (`main.rs`) only parses arguments; the benchmarks use the library too.
//! The run record is the `record` crate; the provenance store is the `store` crate.

pub mod annotations;
pub mod cache;
pub mod commands;
pub mod config;
pub mod data;
pub mod environment;
pub mod hashing;
pub mod interrupt;
pub mod liveness;
pub mod metrics;
pub mod mlflow;
pub mod output;
pub mod pipeline;
pub mod recorded;
pub mod registry;
pub mod slurm;
pub mod storage;
pub mod sweep;
pub mod ui;
pub mod verification;
