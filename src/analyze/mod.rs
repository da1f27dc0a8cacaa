//! From SYN sightings to the hop-by-hop story of each connection.

pub mod model;

use crate::cli::AnalyzeArgs;
use crate::error::{Failure, Result};

pub fn run(_args: &AnalyzeArgs) -> Result<()> {
    Err(Failure::usage("analyze is not available in this build yet"))
}
