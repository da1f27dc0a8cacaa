//! What people read: text for a terminal, Mermaid for a wiki page.

pub mod mermaid;
pub mod text;

use anstyle::Style;

/// `text` wrapped in `style`; widths are computed on the plain text before styling.
fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}
