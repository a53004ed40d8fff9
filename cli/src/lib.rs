//! The `paystream` command line, as a library: one module per command, which the binary
//! (`main.rs`) dispatches to. The traffic `produce` sends, and the outcome `ledger verify
//! --expect` checks, come from `paystream-testkit` (`testkit/`).

pub mod commands;

#[cfg(test)]
mod config_files;
#[cfg(test)]
mod metric_names;
