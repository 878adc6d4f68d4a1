//! Source spans and the one diagnostic type of the front end, rendered with source snippets.

use std::ops::Range;

use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label};
use codespan_reporting::files::SimpleFile;
use codespan_reporting::term::{self, termcolor::Buffer};

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(range: Range<usize>) -> Span {
        Span { start: range.start as u32, end: range.end as u32 }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }

    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// An error in a source file: a message, labelled spans (the first is the primary one),
/// and notes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub labels: Vec<(Span, String)>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic { message: message.into(), labels: Vec::new(), notes: Vec::new() }
    }

    pub fn at(message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic::error(message).with_label(span, label)
    }

    pub fn with_label(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.labels.push((span, label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }
}

/// Renders diagnostics as plain text (no colour) with snippets, line and column.
pub fn render(file_name: &str, source: &str, diags: &[Diagnostic]) -> String {
    render_with(file_name, source, diags, false)
}

/// Renders diagnostics, with ANSI colour when `color` is set (for a terminal).
pub fn render_with(file_name: &str, source: &str, diags: &[Diagnostic], color: bool) -> String {
    let file = SimpleFile::new(file_name, source);
    let mut buffer = if color { Buffer::ansi() } else { Buffer::no_color() };
    let config = term::Config::default();
    for d in diags {
        let labels = d
            .labels
            .iter()
            .enumerate()
            .map(|(i, (span, text))| {
                let range = clamp(span.range(), source.len());
                let label = if i == 0 { Label::primary((), range) } else { Label::secondary((), range) };
                label.with_message(text.clone())
            })
            .collect();
        let cs = CsDiagnostic::error().with_message(&d.message).with_labels(labels).with_notes(d.notes.clone());
        // Writing into an in-memory buffer cannot fail for I/O reasons; a span past the end
        // is clamped above, so an error here would be a codespan bug. Fall back to the message.
        if term::emit(&mut buffer, &config, &file, &cs).is_err() {
            return format!("error: {}\n", d.message);
        }
    }
    String::from_utf8_lossy(buffer.as_slice()).into_owned()
}

fn clamp(range: Range<usize>, len: usize) -> Range<usize> {
    range.start.min(len)..range.end.min(len).max(range.start.min(len))
}
