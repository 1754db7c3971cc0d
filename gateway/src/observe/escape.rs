//! Caller-derived text made safe for the places an operator reads it: log lines on a terminal
//! or in a log pipeline, and audit lines.
//!
//! A request path, a query parameter name or a header value is chosen by whoever sends the
//! request. Written raw, a CR or LF forges a log line, an ESC sequence repaints or reprograms
//! the operator's terminal, U+2028/U+2029 (and NEL, U+0085) end a line for JavaScript-based
//! parsers, and the bidi controls (U+202A–U+202E, U+2066–U+2069) reorder what the operator
//! sees. So:
//!
//! - [`SafeLines`] wraps the log writer: each event arrives as one write of one line, and
//!   everything in it that is not printable — except the line's own final newline, and the
//!   colour codes of a terminal log — is written as a `\uXXXX` escape (`\n` and `\r` for LF
//!   and CR). It catches Pingora's own log lines too, whose text we do not control.
//! - [`SafeJson`] is a `serde_json` formatter for audit lines: `serde_json` already escapes
//!   the C0 controls; this also escapes DEL, the C1 controls, the line separators and the
//!   bidi controls, so an audit line is one line of printable text for any reader. A JSON
//!   parser reads the escapes back as the same characters.

use std::borrow::Cow;
use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;

/// A log writer whose lines are escaped with [`escape_line`].
#[derive(Clone)]
pub(crate) struct SafeLines<W> {
    inner: W,
    /// Whether the lines carry colour codes (a terminal): then ESC is the formatter's own
    /// (`tracing-subscriber` escapes ESC in field values itself) and is kept.
    ansi: bool,
}

/// The escaping `serde_json` formatter of audit lines.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SafeJson;

// === impl SafeLines ===

impl<W> SafeLines<W> {
    /// Wraps `inner`; `ansi` when the formatter writes colour codes.
    pub(crate) fn new(inner: W, ansi: bool) -> Self {
        Self { inner, ansi }
    }
}

impl<'a, W: MakeWriter<'a>> MakeWriter<'a> for SafeLines<W> {
    type Writer = SafeLines<W::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        SafeLines {
            inner: self.inner.make_writer(),
            ansi: self.ansi,
        }
    }
}

impl<W: Write> Write for SafeLines<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write_all(&escape_line(buf, self.ansi))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `line` with everything unprintable escaped, keeping a final `\n` (and ESC when `keep_esc`).
pub(crate) fn escape_line(line: &[u8], keep_esc: bool) -> Cow<'_, [u8]> {
    let (body, newline) = match line.split_last() {
        Some((b'\n', body)) => (body, true),
        _ => (line, false),
    };
    let Some(first) = first_byte(body, |b| may_need_escape(b, keep_esc)) else {
        return Cow::Borrowed(line);
    };
    let mut out = Vec::with_capacity(line.len() + 16);
    out.extend_from_slice(&body[..first]);
    let mut rest = &body[first..];
    while let Some((&b, tail)) = rest.split_first() {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.push(b),
            0x1b if keep_esc => out.push(b),
            0..=0x1f | 0x7f => push_escape(&mut out, u32::from(b)),
            0xc2 | 0xe2 => {
                // A two- or three-byte UTF-8 sequence that may be one of ours.
                let len = if b == 0xc2 { 2 } else { 3 };
                match rest.get(..len).and_then(|s| std::str::from_utf8(s).ok()) {
                    Some(s) => {
                        let c = s.chars().next().map_or(0, u32::from);
                        if is_unsafe_char(c) {
                            push_escape(&mut out, c);
                        } else {
                            out.extend_from_slice(s.as_bytes());
                        }
                        rest = &rest[len..];
                        continue;
                    }
                    None => out.push(b),
                }
            }
            _ => out.push(b),
        }
        rest = tail;
    }
    if newline {
        out.push(b'\n');
    }
    Cow::Owned(out)
}

/// Bytes that start something [`escape_line`] may rewrite (the fast path skips the rest).
/// Written without branches, so [`first_byte`] can test many bytes at once.
fn may_need_escape(b: u8, keep_esc: bool) -> bool {
    let control = (b < 0x20) & (b != b'\t') & !(keep_esc & (b == 0x1b));
    control | (b == 0x7f) | (b == 0xc2) | (b == 0xe2)
}

/// The index of the first byte of `bytes` for which `wanted` holds.
///
/// Log and audit lines are scanned whole on every request, and almost never hold such a
/// byte. `position` stops at each byte to test; this tests 32 bytes at a time with no early
/// exit inside a block (the compiler makes SIMD compares of that), then finds the byte
/// within the block.
#[inline]
pub(crate) fn first_byte(bytes: &[u8], wanted: impl Fn(u8) -> bool) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut start = 0;
    for block in bytes.chunks_exact(BLOCK) {
        if block.iter().fold(false, |any, &b| any | wanted(b)) {
            break;
        }
        start += BLOCK;
    }
    bytes[start..]
        .iter()
        .position(|&b| wanted(b))
        .map(|i| start + i)
}

/// Non-ASCII code points written escaped: the C1 controls (NEL among them), the line and
/// paragraph separators, and the bidi embedding, override and isolate controls.
pub(crate) fn is_unsafe_char(c: u32) -> bool {
    matches!(c, 0x80..=0x9f | 0x2028 | 0x2029 | 0x202a..=0x202e | 0x2066..=0x2069)
}

fn push_escape(out: &mut Vec<u8>, c: u32) {
    // Writing to a Vec cannot fail.
    let _ = write!(out, "\\u{c:04x}");
}

// === impl SafeJson ===

impl serde_json::ser::Formatter for SafeJson {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Fast path: DEL and every code point this escapes start with one of these three bytes
        // (C1 controls: 0xc2; U+2028…U+2069: 0xe2), so most fragments are written whole.
        if first_byte(fragment.as_bytes(), |b| {
            (b == 0x7f) | (b == 0xc2) | (b == 0xe2)
        })
        .is_none()
        {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let code = u32::from(c);
            if code == 0x7f || is_unsafe_char(code) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{code:04x}")?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// `value` as one line of JSON written with [`SafeJson`].
pub(crate) fn to_safe_json<W: Write, T: serde::Serialize + ?Sized>(
    writer: W,
    value: &T,
) -> serde_json::Result<()> {
    let mut serializer = serde_json::Serializer::with_formatter(writer, SafeJson);
    value.serialize(&mut serializer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(line: &str, keep_esc: bool) -> String {
        String::from_utf8(escape_line(line.as_bytes(), keep_esc).into_owned()).unwrap()
    }

    #[test]
    fn first_byte_finds_the_first_match_in_and_across_blocks() {
        for len in 0..100 {
            let plain = vec![b'a'; len];
            assert_eq!(first_byte(&plain, |b| b == b'x'), None);
            for at in 0..len {
                let mut bytes = plain.clone();
                bytes[at] = b'x';
                if at + 1 < len {
                    // A later match must not hide the first one.
                    bytes[len - 1] = b'x';
                }
                assert_eq!(
                    first_byte(&bytes, |b| b == b'x'),
                    Some(at),
                    "len {len}, at {at}"
                );
            }
        }
        for (b, expected) in [
            (b'\t', false),
            (b'\n', true),
            (0x1b, true),
            (0x7f, true),
            (0xc2, true),
            (0xe2, true),
            (b' ', false),
            (0xc3, false),
        ] {
            assert_eq!(may_need_escape(b, false), expected, "{b:#x}");
        }
        assert!(!may_need_escape(0x1b, true));
    }

    #[test]
    fn plain_lines_are_borrowed_untouched() {
        let line = b"2026-01-01 INFO request path=/a/b status=200 \xc3\xa9\t\n";
        assert!(matches!(escape_line(line, false), Cow::Borrowed(_)));
    }

    #[test]
    fn line_breaks_controls_and_separators_are_escaped_but_the_final_newline_stays() {
        assert_eq!(
            escaped("path=/a\r\nINFO forged\u{2028}x\u{2029}\u{85}\n", false),
            "path=/a\\r\\nINFO forged\\u2028x\\u2029\\u0085\n"
        );
        assert_eq!(
            escaped("\u{1b}[31mred\u{7}\u{7f}\u{0}\u{202e}evil\u{2066}", false),
            "\\u001b[31mred\\u0007\\u007f\\u0000\\u202eevil\\u2066"
        );
        // Other characters starting with the same bytes pass (é, €, –).
        assert_eq!(escaped("é € – \u{a0}\n", false), "é € – \u{a0}\n");
    }

    #[test]
    fn a_terminal_log_keeps_its_colour_codes() {
        assert_eq!(
            escaped("\u{1b}[32mINFO\u{1b}[0m a\nb\n", true),
            "\u{1b}[32mINFO\u{1b}[0m a\\nb\n"
        );
    }

    #[test]
    fn audit_json_escapes_what_serde_json_leaves_and_reads_back_the_same() {
        let value = "a\u{2028}b\u{1b}c\u{7f}d\u{85}e\u{202e}f\"g\\h\né";
        let mut out = Vec::new();
        to_safe_json(&mut out, &serde_json::json!({ "path": value })).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            r#"{"path":"a\u2028b\u001bc\u007fd\u0085e\u202ef\"g\\h\né"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["path"], value);
    }
}
