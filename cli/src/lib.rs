//! The `paystream` command line, as a library so that tests can reuse its parts (the
//! traffic plan in particular).

pub mod commands;
pub mod traffic;
