//! What every report's rendering shares: the output formats, styles, the 80-column layout and
//! word wrapping. Writing to the terminal is the plugin's (its `output` module).

use anstyle::{AnsiColor, Style};

/// The formats every report comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Readable report (colour only on a terminal; NO_COLOR honoured).
    #[default]
    Text,
    /// The stable JSON contract.
    Json,
    /// A Mermaid diagram to paste into Markdown.
    Mermaid,
}

impl OutputFormat {
    pub const ALL: [OutputFormat; 3] = [
        OutputFormat::Text,
        OutputFormat::Json,
        OutputFormat::Mermaid,
    ];

    /// Its name on the command line (`-o NAME`).
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Text => "text",
            OutputFormat::Json => "json",
            OutputFormat::Mermaid => "mermaid",
        }
    }

    /// One line on what it is, for help texts.
    pub fn help(self) -> &'static str {
        match self {
            OutputFormat::Text => "Readable report (colour only on a terminal; NO_COLOR honoured)",
            OutputFormat::Json => "The stable JSON contract",
            OutputFormat::Mermaid => "A Mermaid diagram to paste into Markdown",
        }
    }
}

/// Styles shared by every text report.
pub const BAD: Style = AnsiColor::Red.on_default().bold();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const WARN: Style = AnsiColor::Yellow.on_default();
pub const DIM: Style = Style::new().dimmed();
pub const HEAD: Style = Style::new().bold();

/// `text` with its styles removed, for tests and files.
pub fn plain(text: &str) -> String {
    anstream::adapter::strip_str(text).to_string()
}

/// Columns human text is laid out for: the narrowest common terminal.
pub const WIDTH: usize = 80;

/// Columns `text` takes on a terminal: characters, not counting ANSI escape sequences.
pub fn visible_width(text: &str) -> usize {
    let mut width = 0;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            width += 1;
        }
    }
    width
}

/// `text` broken at spaces into lines of at most `width` columns (a word longer than that
/// stands alone): the first line after `first`, the others after `rest`. Styles inside `text`
/// take no width.
pub fn wrap(text: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let room = width.saturating_sub(visible_width(rest)).max(20);
    let words: Vec<&str> = text
        .split(' ')
        .flat_map(|word| split_long(word, room))
        .collect();
    wrap_words(words, width, first, rest)
}

/// A word longer than `room` columns cut after a `/` or `.` (a path, an annotation key) into
/// pieces that each fit, so that no line runs over; a word without such a place stays whole.
fn split_long(word: &str, room: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = word;
    while visible_width(rest) > room {
        // The last cut point within `room` visible columns.
        let (mut seen, mut cut, mut chars) = (0, None, rest.char_indices());
        while let Some((i, c)) = chars.next() {
            if c == '\u{1b}' {
                for (_, c) in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
                continue;
            }
            seen += 1;
            if seen > room {
                break;
            }
            if matches!(c, '/' | '.') {
                cut = Some(i + c.len_utf8());
            }
        }
        match cut {
            Some(at) if at < rest.len() => {
                pieces.push(&rest[..at]);
                rest = &rest[at..];
            }
            _ => break,
        }
    }
    pieces.push(rest);
    pieces
}

/// [`wrap`] over words already split.
fn wrap_words<'a>(
    words: impl IntoIterator<Item = &'a str>,
    width: usize,
    first: &str,
    rest: &str,
) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in words.into_iter().filter(|w| !w.is_empty()) {
        let len = visible_width(&line);
        if !empty && len + 1 + visible_width(word) > width {
            lines.push(std::mem::replace(&mut line, rest.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    if !empty || lines.is_empty() {
        lines.push(line);
    }
    lines
}

/// A shell command broken into lines of at most `width` columns that still paste as one
/// command: breaks only between words outside quotes, each line but the last ending in ` \`.
pub fn wrap_command(command: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let (mut word, mut quote) = (String::new(), None::<char>);
    for c in command.chars() {
        match (c, quote) {
            (' ', None) => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            ('\'' | '"', None) => {
                quote = Some(c);
                word.push(c);
            }
            (c, Some(q)) if c == q => {
                quote = None;
                word.push(c);
            }
            _ => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    // Room for the ` \` that continues a line.
    let mut lines = wrap_words(
        words.iter().map(String::as_str),
        width.saturating_sub(2),
        first,
        rest,
    );
    let last = lines.len().saturating_sub(1);
    for line in &mut lines[..last] {
        line.push_str(" \\");
    }
    lines
}

#[cfg(test)]
mod wrap_tests {
    use super::{wrap, wrap_command};

    #[test]
    fn long_words_break_after_a_slash_or_dot() {
        let text = r#"[metadata.annotations["service.kubernetes.io/local-svc-only-bind-node-with-pod"] not "true"]"#;
        let lines = wrap(text, 40, "    ", "    ");
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        assert_eq!(lines.concat().replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn commands_break_between_words_and_continue() {
        let cmd = r#"kubectl patch svc web -n default --type merge -p '{"spec": {"a": "b c"}}'"#;
        let lines = wrap_command(cmd, 40, "$ ", "    ");
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines[..lines.len() - 1].iter().all(|l| l.ends_with(" \\")));
        assert!(
            lines
                .last()
                .unwrap()
                .ends_with(r#"'{"spec": {"a": "b c"}}'"#),
            "{lines:?}"
        );
    }

    #[test]
    fn wraps_at_spaces_with_a_hanging_indent() {
        let lines = wrap("one two three four five", 12, "  ", "    ");
        assert_eq!(
            lines,
            vec!["  one two", "    three", "    four", "    five"]
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 12));
        assert_eq!(wrap("", 10, "> ", "  "), vec!["> "]);
        assert_eq!(
            wrap("averyveryverylongword x", 8, "", ""),
            vec!["averyveryverylongword", "x"]
        );
    }
}
