//! What people read: text for a terminal, Mermaid for a wiki page; and the JSON contract.
//! Each can be written whole from a report, or streamed one flow at a time by a [`Sink`].

pub mod attribution;
pub mod json;
pub mod mermaid;
pub mod text;

use crate::analyze::model::{Flow, Summary};
use crate::output::{self, OutputFormat};
use anstyle::Style;
use std::io::{self, Write};

/// `text` wrapped in `style`; widths are computed on the plain text before styling.
fn paint(style: Style, text: &str) -> String {
    format!("{style}{text}{style:#}")
}

use crate::analyze::flow::place;

/// A report written to stdout as its flows come: text and JSON leave as they go, a diagram is
/// drawn at the end from the distinct paths.
pub trait Sink {
    fn flow(&mut self, flow: &Flow) -> io::Result<()>;
    fn finish(&mut self, summary: &Summary) -> io::Result<()>;
}

/// The sink of `format` on stdout; text loses its styles unless stdout wants colour.
pub fn sink(format: OutputFormat) -> Box<dyn Sink> {
    match format {
        OutputFormat::Text => Box::new(TextSink {
            out: Chunked::new(output::stdout()),
            written: 0,
        }),
        // JSON and Mermaid carry no styles: no stripping adapter.
        OutputFormat::Json => Box::new(JsonSink {
            out: Chunked::new(io::stdout()),
            written: 0,
        }),
        OutputFormat::Mermaid => Box::new(MermaidSink {
            out: Chunked::new(io::stdout()),
            diagram: mermaid::Diagram::default(),
        }),
    }
}

/// Text gathered into large writes.
struct Chunked<W: Write> {
    buf: String,
    out: W,
}

impl<W: Write> Chunked<W> {
    const CHUNK: usize = 1 << 16;

    fn new(out: W) -> Self {
        Chunked {
            buf: String::with_capacity(Self::CHUNK + 4096),
            out,
        }
    }

    fn write_if_full(&mut self) -> io::Result<()> {
        if self.buf.len() >= Self::CHUNK {
            self.write()?;
        }
        Ok(())
    }

    fn write(&mut self) -> io::Result<()> {
        self.out.write_all(self.buf.as_bytes())?;
        self.buf.clear();
        self.out.flush()
    }
}

struct TextSink<W: Write> {
    out: Chunked<W>,
    written: usize,
}

impl<W: Write> Sink for TextSink<W> {
    fn flow(&mut self, flow: &Flow) -> io::Result<()> {
        self.written += 1;
        text::flow_text(&mut self.out.buf, self.written, flow, output::WIDTH);
        self.out.write_if_full()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        text::summary_text(&mut self.out.buf, summary, output::WIDTH);
        self.out.write()
    }
}

struct JsonSink<W: Write> {
    out: Chunked<W>,
    written: usize,
}

impl<W: Write> Sink for JsonSink<W> {
    fn flow(&mut self, flow: &Flow) -> io::Result<()> {
        json::flow_json(&mut self.out.buf, self.written == 0, flow);
        self.written += 1;
        self.out.write_if_full()
    }

    fn finish(&mut self, summary: &Summary) -> io::Result<()> {
        json::end_json(&mut self.out.buf, self.written > 0, summary);
        self.out.write()
    }
}

struct MermaidSink<W: Write> {
    out: Chunked<W>,
    diagram: mermaid::Diagram,
}

impl<W: Write> Sink for MermaidSink<W> {
    fn flow(&mut self, flow: &Flow) -> io::Result<()> {
        self.diagram.add(flow);
        Ok(())
    }

    fn finish(&mut self, _summary: &Summary) -> io::Result<()> {
        self.out.buf.push_str(&self.diagram.render());
        self.out.write()
    }
}
