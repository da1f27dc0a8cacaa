//! Deploy the probe to a live cluster, measure, report, leave nothing behind.

pub mod manifests;
pub mod topology;

use crate::cli::{CleanupArgs, TraceArgs};
use crate::error::{Failure, Result};

pub async fn run(_args: &TraceArgs) -> Result<()> {
    Err(Failure::usage("trace is not available in this build yet"))
}

pub async fn cleanup(_args: &CleanupArgs) -> Result<()> {
    Err(Failure::usage("cleanup is not available in this build yet"))
}
