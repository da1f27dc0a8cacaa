//! The netns lab: a mini cluster dataplane with kube-proxy-shaped rules, measured for real.

use crate::cli::LabArgs;
use crate::error::{Failure, Result};

pub fn run(_args: &LabArgs) -> Result<()> {
    Err(Failure::usage("lab is not available in this build yet"))
}
