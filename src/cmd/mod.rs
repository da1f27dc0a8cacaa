//! The command layer: each command's `run`, from parsed flags to the work of the layers below
//! and an exit code. The layers below know no flags.

pub mod analyze;
pub mod explain;
pub mod lab;
pub mod trace;
