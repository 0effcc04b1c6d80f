//! One module per subcommand. Each takes an options struct filled by the CLI and does the work,
//! so tests can call it without parsing arguments.

pub mod export;
pub mod lineage;
pub mod plugins;
pub mod replay;
pub mod report;
pub mod run;
pub mod runs;
pub mod scaffold;
pub mod store;
pub mod sweep;
pub mod ui;
pub mod verify;
