//! Where analyze's inputs come from. The core reads bytes it is given; the command opens the
//! files (and stdin), tests can hand it bytes of their own.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// The file system as analyze's input reading needs it.
pub trait Files {
    /// The input at `path`; `-` is stdin.
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read>>;
    /// Its size in bytes, when it is a regular file (for progress).
    fn size(&self, path: &Path) -> Option<u64>;
    /// Its absolute path with links resolved, when it exists: two names of one file are one
    /// input, and a bare file name has a folder.
    fn canonical(&self, path: &Path) -> Option<PathBuf>;
}
