//! Predict what the pod sees, from configuration alone.

pub mod model;

use crate::cli::ExplainArgs;
use crate::error::{Failure, Result};

pub async fn run(_args: &ExplainArgs) -> Result<()> {
    Err(Failure::usage("explain is not available in this build yet"))
}
