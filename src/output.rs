//! Where reports go: stdout only carries the report; colour only on a terminal, NO_COLOR honoured.

use anstyle::{AnsiColor, Style};
use std::io::{self, Write};

pub use crate::cli::OutputFormat;

/// Styles shared by every text report.
pub const BAD: Style = AnsiColor::Red.on_default().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const WARN: Style = AnsiColor::Yellow.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const HEAD: Style = Style::new().bold();

/// Stdout that strips styles unless it is a terminal that wants colour (NO_COLOR, CLICOLOR).
pub fn stdout() -> anstream::AutoStream<io::Stdout> {
    anstream::AutoStream::auto(io::stdout())
}

/// Writes `text`, treating a closed pipe (`| head`) as success.
pub fn emit(text: &str) -> io::Result<()> {
    let mut out = stdout();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// `text` with its styles removed, for tests and files.
pub fn plain(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}
