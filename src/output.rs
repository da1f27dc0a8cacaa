//! Where reports go: stdout only carries the report; colour only on a terminal, NO_COLOR honoured.

use std::io::{self, Write};

pub use realip_core::output::*;

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

/// Columns a table may take: the terminal's when stdout is one (or `COLUMNS`), [`WIDTH`] in a
/// pipe or a file.
pub fn table_width() -> usize {
    use std::io::IsTerminal;
    let stdout = io::stdout();
    if !stdout.is_terminal() {
        return WIDTH;
    }
    let from_env = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok());
    let from_tty = rustix::termios::tcgetwinsize(&stdout)
        .ok()
        .map(|size| usize::from(size.ws_col));
    from_env.or(from_tty).filter(|&w| w >= 40).unwrap_or(WIDTH)
}
