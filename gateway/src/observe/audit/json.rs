//! A direct writer for the audit's per-request lines (`request`, `forward`): the bytes
//! `serde_json` with [`SafeJson`](crate::observe::escape::SafeJson) would write, without the
//! per-field serializer calls. The audit writer encodes one line per request, and the derived
//! `Serialize` with its per-key escaping was most of that cost. `admin` lines are rare and keep
//! `serde_json` (their `detail` is free-form JSON).
//!
//! Keys are `'static` and plain, so they are copied as they are; string values go through
//! [`push_str`], which escapes exactly what `serde_json` escapes plus what `SafeJson` adds.

use std::fmt::{Display, Write as _};
use std::io;
use std::net::IpAddr;

use serde::Serialize;

use crate::observe::escape::{first_byte, is_unsafe_char};

/// One JSON object being appended to a line buffer.
pub(super) struct JsonObject<'a> {
    out: &'a mut Vec<u8>,
    empty: bool,
}

impl<'a> JsonObject<'a> {
    /// Opens an object at the end of `out`.
    pub(super) fn open(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        JsonObject { out, empty: true }
    }

    fn key(&mut self, key: &'static str) {
        if !self.empty {
            self.out.push(b',');
        }
        self.empty = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// `"key":"value"`, escaped.
    pub(super) fn str(&mut self, key: &'static str, value: &str) {
        self.key(key);
        push_str(self.out, value);
    }

    /// `"key":"value"`, or `null`.
    pub(super) fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        match value {
            Some(value) => self.str(key, value),
            None => self.null(key),
        }
    }

    /// `"key":` and the value's `Display` text as an escaped string, or `null`.
    pub(super) fn opt_display(&mut self, key: &'static str, value: Option<&impl Display>) {
        let Some(value) = value else {
            return self.null(key);
        };
        let mut text = String::with_capacity(48);
        // Writing to a String cannot fail.
        let _ = write!(text, "{value}");
        self.str(key, &text);
    }

    /// `"key":"address"`, or `null`; IPv4 without the formatter.
    pub(super) fn opt_ip(&mut self, key: &'static str, value: Option<IpAddr>) {
        match value {
            Some(IpAddr::V4(v4)) => self.ascii(key, crate::text::ipv4(v4).as_bytes()),
            other => self.opt_display(key, other.as_ref()),
        }
    }

    /// `"key":"text"` for text that needs no escaping (digits, dots, colons).
    pub(super) fn ascii(&mut self, key: &'static str, text: &[u8]) {
        debug_assert!(text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".:".contains(b)));
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(text);
        self.out.push(b'"');
    }

    /// `"key":` and a number as `serde_json` writes it.
    pub(super) fn number(&mut self, key: &'static str, value: impl Serialize) -> io::Result<()> {
        self.key(key);
        serde_json::to_writer(&mut *self.out, &value).map_err(io::Error::other)
    }

    fn null(&mut self, key: &'static str) {
        self.key(key);
        self.out.extend_from_slice(b"null");
    }

    /// Closes the object.
    pub(super) fn close(self) {
        self.out.push(b'}');
    }
}

/// `value` as a JSON string: `serde_json`'s escapes (`\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
/// `\u00XX` for the other C0 controls) and `SafeJson`'s (`\uXXXX` for DEL, the C1 controls, the
/// line separators and the bidi controls).
pub(super) fn push_str(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    // DEL and every code point SafeJson escapes start with 0x7f, 0xc2 or 0xe2.
    let plain = first_byte(value.as_bytes(), |b| {
        (b < 0x20) | (b == b'"') | (b == b'\\') | (b == 0x7f) | (b == 0xc2) | (b == 0xe2)
    })
    .is_none();
    if plain {
        out.extend_from_slice(value.as_bytes());
    } else {
        let mut utf8 = [0u8; 4];
        for c in value.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 || c == '\u{7f}' || is_unsafe_char(c as u32) => {
                    push_unicode_escape(out, c as u32)
                }
                c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
            }
        }
    }
    out.push(b'"');
}

fn push_unicode_escape(out: &mut Vec<u8>, code: u32) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u");
    for shift in [12, 8, 4, 0] {
        out.push(HEX[((code >> shift) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::escape::to_safe_json;

    fn via_serde(value: &str) -> Vec<u8> {
        let mut out = Vec::new();
        to_safe_json(&mut out, value).unwrap();
        out
    }

    #[test]
    fn strings_are_escaped_byte_for_byte_as_serde_json_with_safe_json() {
        let mut samples: Vec<String> = [
            "",
            "/acme/pd/incidents?limit&cursor",
            "a\"b\\c/d",
            "é € – \u{a0} 😀 \u{10ffff}",
            "line\r\nforged\u{2028}x\u{2029}\u{85}\u{202e}evil\u{2066}\u{2069}",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every code point up to U+2100 on its own, and between plain text.
        for code in (0..0x2100u32).chain(0xfff0..0x10010) {
            if let Some(c) = char::from_u32(code) {
                samples.push(c.to_string());
                samples.push(format!("x{c}y"));
            }
        }
        for sample in &samples {
            let mut direct = Vec::new();
            push_str(&mut direct, sample);
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&via_serde(sample)),
                "{sample:?}"
            );
        }
    }

    #[test]
    fn an_object_is_written_as_serde_json_writes_a_struct() {
        #[derive(Serialize)]
        struct Line<'a> {
            seq: u64,
            name: Option<&'a str>,
            none: Option<&'a str>,
            ms: f64,
            ip: Option<std::net::IpAddr>,
        }
        let ip = std::net::IpAddr::from([10, 0, 0, 1]);
        for ms in [0.0, 0.001, 3.2, 1.0, 12345.678, 1e21] {
            let mut direct = Vec::new();
            let mut object = JsonObject::open(&mut direct);
            object.number("seq", 7u64).unwrap();
            object.opt_str("name", Some("a\u{7f}b"));
            object.opt_str("none", None);
            object.number("ms", ms).unwrap();
            object.opt_ip("ip", Some(ip));
            object.close();
            let mut serde = Vec::new();
            let line = Line {
                seq: 7,
                name: Some("a\u{7f}b"),
                none: None,
                ms,
                ip: Some(ip),
            };
            to_safe_json(&mut serde, &line).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&direct),
                String::from_utf8_lossy(&serde)
            );
        }
    }
}
