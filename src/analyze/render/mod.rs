//! What people read: text for a terminal, Mermaid for a wiki page.

pub mod mermaid;
pub mod text;

use anstyle::Style;

/// `text` wrapped in `style`; widths are computed on the plain text before styling.
fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

/// Where a rewrite happened, as a phrase: "on node-a", or "between client and node-a" for a
/// rewrite made by something not captured.
fn place(node: &str) -> String {
    if node.starts_with("between ") {
        node.to_string()
    } else {
        format!("on {node}")
    }
}
