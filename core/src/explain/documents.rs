//! The YAML documents of one input, each parsed on its own and within bounds.
//!
//! A stream is split at its `---` lines (as kubectl splits it), so every problem names the
//! document and line it is in, and one bad document cannot be blamed on another. Each document
//! goes through a parser that is linear in its input and refuses nesting deeper than
//! [`MAX_DEPTH`]: no input can make explain slow or deep in stack.

use super::ExplainError;
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::budget::BudgetBreach;
use std::cell::Cell;
use std::fmt;

/// Deeper nesting is refused. A Kubernetes object is a dozen levels deep (a Deployment's
/// `spec.template.spec.containers[].env[].valueFrom.secretKeyRef.name` is 10), a CRD's schema a
/// few dozen.
pub const MAX_DEPTH: usize = 100;

/// The most values (scalars, sequences, mappings) one object may hold. The API server stores no
/// object over 1.5 MiB, and a real one holds a few hundred values (a large CRD, tens of
/// thousands); the bound keeps what one object costs in memory small, whatever the input.
pub const MAX_VALUES: usize = 250_000;

/// One document of a stream: its number (1-based, as a person counts them) and first line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Document<'a> {
    pub number: usize,
    pub line: usize,
    pub text: &'a str,
}

/// Whether `line` starts a document: `---` alone or followed by a space or tab.
fn is_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
}

/// Blank, a comment or a directive: nothing that makes a document by itself.
fn is_preamble(line: &str) -> bool {
    let line = line.trim();
    line.is_empty() || line.starts_with('#') || line.starts_with('%')
}

/// The documents of `text`, in order. A leading UTF-8 byte order mark is dropped. What comes
/// before the first `---` is a document only if it holds more than comments and directives
/// (which then belong to the next document), as YAML has it.
pub fn split(text: &str) -> Vec<Document<'_>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Where each chunk starts (byte offset, line): the top, and every marker line.
    let mut chunks: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if index == 0 || is_marker(line) {
            chunks.push((offset, index + 1));
        }
        offset += line.len();
    }
    let mut documents = Vec::new();
    let mut preamble: Option<(usize, usize)> = None;
    for (i, &(start, line)) in chunks.iter().enumerate() {
        let end = chunks.get(i + 1).map_or(text.len(), |next| next.0);
        let chunk = &text[start..end];
        let explicit = chunk.lines().next().is_some_and(is_marker);
        if !explicit && chunk.lines().all(is_preamble) {
            preamble = Some((start, line));
            continue;
        }
        let (from, first_line) = preamble.take().unwrap_or((start, line));
        documents.push(Document {
            number: documents.len() + 1,
            line: first_line,
            text: &text[from..end],
        });
    }
    documents
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            // Flow collections ({a: {a: ...}}) are stopped by the scanner itself.
            flow_nesting_limit: MAX_DEPTH,
            // Linear already: a large List is as many nodes as it has.
            max_events: usize::MAX,
            max_nodes: usize::MAX,
        },
    }
}

/// Reads one object's values into a tree, counting them into `count` and refusing more than
/// [`MAX_VALUES`] (the count then says why the parse stopped).
#[derive(Clone, Copy)]
pub struct Counted<'c> {
    pub count: &'c Cell<usize>,
}

impl Counted<'_> {
    fn tick<E: serde::de::Error>(&self) -> Result<(), E> {
        let count = self.count.get() + 1;
        self.count.set(count);
        if count > MAX_VALUES {
            return Err(E::custom(format!(
                "more than {MAX_VALUES} values in one object"
            )));
        }
        Ok(())
    }

    /// Whether the parse stopped at the bound.
    pub fn exceeded(count: &Cell<usize>) -> bool {
        count.get() > MAX_VALUES
    }
}

impl<'de> DeserializeSeed<'de> for Counted<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::from(v))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.tick()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.tick()?;
        let mut entries = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            entries.insert(key, value);
        }
        Ok(Value::Object(entries))
    }
}

/// `document`, parsed into `T`.
pub fn parse<T: DeserializeOwned>(document: &Document<'_>) -> Result<T, ExplainError> {
    serde_saphyr::from_str_with_options(document.text, options())
        .map_err(|err| yaml_error(document, &err))
}

/// `document`, handed to `seed` as it is parsed (a List's items one by one).
pub fn parse_seed<'de, S: DeserializeSeed<'de>>(
    document: &Document<'de>,
    seed: S,
) -> Result<S::Value, serde_saphyr::Error> {
    serde_saphyr::with_deserializer_from_str_with_options(document.text, options(), |de| {
        seed.deserialize(de)
    })
}

/// A YAML text found inside a manifest (a ConfigMap's embedded configuration), with the same
/// bounds; `None` when it is not YAML.
pub fn parse_embedded<T: DeserializeOwned>(text: &str) -> Option<T> {
    serde_saphyr::from_str_with_options(text, options()).ok()
}

/// The parser's complaint about `document`, with the line in the whole input.
pub fn yaml_error(document: &Document<'_>, err: &serde_saphyr::Error) -> ExplainError {
    ExplainError::Yaml {
        document: document.number,
        line: document.line,
        message: describe(document, err),
    }
}

/// Whether `err` is the depth bound: the budget's (any nesting) or the scanner's (flow
/// collections, which it stops before the budget sees their events).
fn too_deep(err: &serde_saphyr::Error) -> bool {
    match err.without_snippet() {
        serde_saphyr::Error::Budget {
            breach: BudgetBreach::Depth { .. },
            ..
        } => true,
        serde_saphyr::Error::ExternalMessage { msg, .. } => msg == "recursion limit exceeded",
        _ => false,
    }
}

/// What stopping at [`MAX_VALUES`] is reported as.
pub fn too_large(document: &Document<'_>) -> ExplainError {
    ExplainError::Yaml {
        document: document.number,
        line: document.line,
        message: format!(
            "an object of more than {MAX_VALUES} values: the API server stores none that large \
             (1.5 MiB at most); is this a manifest?"
        ),
    }
}

/// One line: what is wrong and where, in the input's own line numbers.
pub fn describe(document: &Document<'_>, err: &serde_saphyr::Error) -> String {
    let at = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| {
            format!(
                " (line {}, column {})",
                document.line as u64 + l.line() - 1,
                l.column()
            )
        })
        .unwrap_or_default();
    if too_deep(err) {
        return format!(
            "nested more than {MAX_DEPTH} levels deep{at}: no Kubernetes object is; \
             is this a manifest?"
        );
    }
    let options = serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    };
    let text = err.without_snippet().render_with_options(options);
    let text = text.trim();
    // The parser's own "at line L, column C" counts from the document; ours from the input.
    let message = match text.rfind(" at line ") {
        Some(cut) if text[cut..].contains(", column ") => &text[..cut],
        _ => text,
    };
    let message = message.strip_prefix("error: ").unwrap_or(message);
    format!("{message}{at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(text: &str) -> Vec<(usize, usize, &str)> {
        split(text)
            .into_iter()
            .map(|d| (d.number, d.line, d.text))
            .collect()
    }

    #[test]
    fn documents_are_split_at_their_markers() {
        assert_eq!(
            numbered("a: 1\n---\nb: 2\n--- \nc: 3\n"),
            [
                (1, 1, "a: 1\n"),
                (2, 2, "---\nb: 2\n"),
                (3, 4, "--- \nc: 3\n")
            ]
        );
        // A marker on the first line, comments before the first marker, empty documents.
        assert_eq!(numbered("---\na: 1\n"), [(1, 1, "---\na: 1\n")]);
        assert_eq!(
            numbered("# head\n%YAML 1.2\n---\na: 1\n---\n---\nb: 1"),
            [
                (1, 1, "# head\n%YAML 1.2\n---\na: 1\n"),
                (2, 5, "---\n"),
                (3, 6, "---\nb: 1")
            ]
        );
        // Not markers: indented, or glued to more dashes or text.
        assert_eq!(numbered("a: |\n  ---\n----\n---x\n").len(), 1);
        assert!(split("").is_empty());
        assert!(split("# only a comment\n").is_empty());
    }

    #[test]
    fn a_byte_order_mark_is_dropped() {
        assert_eq!(numbered("\u{feff}a: 1\n"), [(1, 1, "a: 1\n")]);
    }

    #[test]
    fn windows_line_ends_split_too() {
        assert_eq!(numbered("a: 1\r\n---\r\nb: 2\r\n").len(), 2);
    }

    #[test]
    fn errors_name_the_line_of_the_input() {
        let text = "a: 1\n---\nb: [unclosed\n";
        let document = split(text)[1];
        let err = parse::<serde_json::Value>(&document).unwrap_err();
        let ExplainError::Yaml {
            document: 2,
            line: 2,
            message,
        } = &err
        else {
            panic!("{err}");
        };
        assert!(message.contains("(line 3, column"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn deep_nesting_is_refused_quickly_with_a_clear_message() {
        let depth = 100_000;
        let text = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
        let started = std::time::Instant::now();
        let err = parse::<serde_json::Value>(&split(&text)[0]).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(
            err.to_string().contains("nested more than 100 levels deep"),
            "{err}"
        );
        let block = (0..150).fold(String::from("x: 1\n"), |inner, i| {
            let pad = "  ".repeat(150 - i - 1);
            format!("{pad}k{i}:\n{inner}")
        });
        let err = parse::<serde_json::Value>(&split(&block)[0]).unwrap_err();
        assert!(err.to_string().contains("levels deep"), "{err}");
        // As deep as a real object is fine.
        let fine = format!("{}1{}", "{a: ".repeat(40), "}".repeat(40));
        assert!(parse::<serde_json::Value>(&split(&fine)[0]).is_ok());
    }
}
