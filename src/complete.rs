//! kubectl's plugin completion protocol (Cobra's `__complete` line format).
//!
//! kubectl runs an executable named `kubectl_complete-realip` with the words typed after
//! `kubectl realip`, the last being the word under the cursor (possibly empty). The answer is one
//! candidate a line (`value<TAB>description`), then `:<directive>`: 4 (no file completion) or
//! 0 (let the shell complete file names, for `-f` and `analyze FILE`).

use clap::{Arg, Command};

/// The name kubectl looks for on PATH.
pub const COMPLETE_EXE: &str = "kubectl_complete-realip";

const NO_FILE_COMP: u8 = 4;
const DEFAULT_COMP: u8 = 0;

/// Completes `words` (the last is the partial word) against the command tree.
pub fn complete(root: &Command, words: &[String]) -> String {
    let (partial, done) = match words.split_last() {
        Some((last, rest)) => (last.as_str(), rest),
        None => ("", &[][..]),
    };
    let mut cmd = root;
    let mut pending: Option<&Arg> = None;
    for word in done {
        if pending.take().is_some() {
            continue;
        }
        if let Some(arg) = flag(cmd, word) {
            let inline = word.contains('=');
            if arg.get_action().takes_values() && !inline {
                pending = Some(arg);
            }
        } else if let Some(sub) = cmd.find_subcommand(word) {
            cmd = sub;
        }
    }

    let mut lines = Vec::new();
    let mut directive = NO_FILE_COMP;
    if let Some(arg) = pending {
        // The word under the cursor is this flag's value.
        let values = arg.get_possible_values();
        if values.is_empty() {
            directive = if takes_path(arg) {
                DEFAULT_COMP
            } else {
                NO_FILE_COMP
            };
        }
        for value in values.iter().filter(|v| !v.is_hide_set()) {
            if value.get_name().starts_with(partial) {
                lines.push(candidate(value.get_name(), value.get_help()));
            }
        }
    } else if partial.starts_with('-') {
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if let Some(long) = arg.get_long() {
                let word = format!("--{long}");
                if word.starts_with(partial) {
                    lines.push(candidate(&word, arg.get_help()));
                }
            }
        }
    } else {
        let subs: Vec<&Command> = cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .collect();
        for sub in &subs {
            if sub.get_name().starts_with(partial) {
                lines.push(candidate(sub.get_name(), sub.get_about()));
            }
        }
        if subs.is_empty() && cmd.get_positionals().any(takes_path) {
            directive = DEFAULT_COMP;
        }
    }
    lines.push(format!(":{directive}"));
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

fn flag<'a>(cmd: &'a Command, word: &str) -> Option<&'a Arg> {
    let name = word.split('=').next().unwrap_or(word);
    if let Some(long) = name.strip_prefix("--") {
        cmd.get_arguments().find(|a| a.get_long() == Some(long))
    } else if let Some(short) = name.strip_prefix('-') {
        let mut chars = short.chars();
        let first = chars.next()?;
        cmd.get_arguments().find(|a| a.get_short() == Some(first))
    } else {
        None
    }
}

fn takes_path(arg: &Arg) -> bool {
    matches!(
        arg.get_value_hint(),
        clap::ValueHint::FilePath | clap::ValueHint::AnyPath | clap::ValueHint::DirPath
    ) || arg.get_value_names().is_some_and(|names| {
        names
            .iter()
            .any(|n| n.as_str() == "FILE" || n.as_str() == "PATH")
    })
}

fn candidate(value: &str, help: Option<&clap::builder::StyledStr>) -> String {
    match help {
        Some(help) => {
            let help = help.to_string();
            let first = help
                .lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches('.');
            format!("{value}\t{first}")
        }
        None => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::CommandFactory;

    fn run(words: &[&str]) -> String {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        complete(&Cli::command(), &words)
    }

    #[test]
    fn subcommands_complete_with_descriptions() {
        let out = run(&["tr"]);
        assert!(out.starts_with("trace\tRun the probe"), "{out}");
        assert!(out.ends_with(":4\n"), "{out}");
        let all = run(&[""]);
        for name in ["trace", "explain", "analyze", "lab", "cleanup"] {
            assert!(
                all.lines().any(|l| l.starts_with(name)),
                "{name} missing: {all}"
            );
        }
    }

    #[test]
    fn flags_and_their_values_complete() {
        let out = run(&["trace", "svc/web", "--dur"]);
        assert!(out.starts_with("--duration\t"), "{out}");
        let out = run(&["analyze", "-o", ""]);
        assert_eq!(
            out.lines()
                .map(|l| l.split('\t').next().unwrap())
                .collect::<Vec<_>>(),
            ["text", "json", "mermaid", ":4"]
        );
        let out = run(&["trace", "svc/web", "--output=json", "--dry"]);
        assert!(out.starts_with("--dry-run\t"), "{out}");
    }

    #[test]
    fn files_are_left_to_the_shell() {
        assert!(run(&["explain", "-f", ""]).ends_with(":0\n"));
        assert!(run(&["analyze", "capt"]).ends_with(":0\n"));
        assert!(run(&["trace", "--context", ""]).ends_with(":4\n"));
    }
}
