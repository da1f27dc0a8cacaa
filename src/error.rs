//! The one error a user sees: what went wrong, what to do about it, and the exit code.
//!
//! Modules keep their own typed errors (thiserror) and convert into [`Failure`] at the edge,
//! choosing the [`Kind`] that decides the exit code and adding a hint that says what to do.

use std::fmt;

/// Exit codes, documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 1: the command ran but the answer is missing or partial (e.g. a lab scenario disagreed).
    NoAnswer,
    /// 2: bad flags or unreadable input files.
    Usage,
    /// 3: the cluster refused or failed (RBAC, Pod Security, missing objects, unreachable API).
    Cluster,
    /// 4: the probe or the local dataplane failed (capabilities, missing tools, capture errors).
    Probe,
    /// 130: interrupted by Ctrl-C or SIGTERM after cleaning up.
    Interrupted,
}

impl Kind {
    pub fn exit_code(self) -> u8 {
        match self {
            Kind::NoAnswer => 1,
            Kind::Usage => 2,
            Kind::Cluster => 3,
            Kind::Probe => 4,
            Kind::Interrupted => 130,
        }
    }
}

#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    /// What the user can do about it.
    pub hint: Option<String>,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(Kind::Usage, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

pub type Result<T, E = Failure> = std::result::Result<T, E>;
