//! End-to-end tests: the built `host` binary against real plugin libraries, in temporary
//! projects. Needs `cargo build --workspace` first (the README's test command does it).

mod architecture;
mod browser;
mod cdp;
mod config;
mod faults;
mod guide;
mod liveness;
mod pipeline;
mod plugins;
mod query;
mod reproduce;
mod slurm;
mod store;
mod support;
mod sweep;
mod tabular;
mod team_store;
mod ui;
