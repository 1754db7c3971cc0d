//! Request path normalisation that rejects traversal before any matching happens.
//!
//! The gateway matches routes and accept rules against the output of [`normalize_path`] *and
//! forwards that same output upstream*, so what was checked is what is sent. Anything an
//! upstream might interpret differently from us (encoded slashes, backslashes, `..`, double
//! encoding, Tomcat-style `..;`) is rejected rather than guessed at.

use std::borrow::Cow;
use std::fmt;

#[cfg(test)]
mod tests;

/// Why a request path was rejected. Each message names the path, with control characters
/// escaped so the message is safe to log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path is empty or does not start with `/` (for example an absolute-form URI or `*`).
    #[error("path '{}' does not start with '/'", Printable(.path))]
    NotAbsolute {
        /// The rejected path.
        path: String,
    },
    /// A raw `\`, which some servers treat as a separator.
    #[error("path '{}' contains a backslash", Printable(.path))]
    Backslash {
        /// The rejected path.
        path: String,
    },
    /// `%5C`, an encoded backslash.
    #[error("path '{}' contains an encoded backslash (%5C)", Printable(.path))]
    EncodedBackslash {
        /// The rejected path.
        path: String,
    },
    /// `%2F`, an encoded slash, which servers disagree on splitting at.
    #[error("path '{}' contains an encoded slash (%2F)", Printable(.path))]
    EncodedSlash {
        /// The rejected path.
        path: String,
    },
    /// A `..` segment, written plainly or with `%2E`.
    #[error("path '{}' contains a '..' segment", Printable(.path))]
    DotDotSegment {
        /// The rejected path.
        path: String,
    },
    /// A `.` or `..` segment followed by `;` parameters (`/..;/`), which Tomcat-based upstreams
    /// resolve as traversal after we have matched the path.
    #[error("path '{}' contains a dot segment with ';' parameters", Printable(.path))]
    DotSegmentWithParameters {
        /// The rejected path.
        path: String,
    },
    /// An ASCII control character (including NUL and DEL), raw or percent-encoded.
    #[error("path '{}' contains a control character", Printable(.path))]
    ControlCharacter {
        /// The rejected path.
        path: String,
    },
    /// A `%` not followed by two hex digits.
    #[error("path '{}' has a malformed percent-escape at byte {offset}", Printable(.path))]
    MalformedPercentEncoding {
        /// The rejected path.
        path: String,
        /// Byte offset of the `%` in the path.
        offset: usize,
    },
    /// `%25` followed by two hex digits, i.e. an escape that decodes to another escape.
    #[error("path '{}' is double percent-encoded (%25 followed by hex digits)", Printable(.path))]
    DoubleEncoding {
        /// The rejected path.
        path: String,
    },
}

/// Displays a string with control characters escaped, so error messages can't forge log lines.
struct Printable<'a>(&'a str);

/// What a segment is, once its escapes are understood.
enum Segment {
    /// `.` (or `%2E`): removed.
    Dot,
    /// Kept; `rewrite` when some escape must be decoded or have its hex uppercased.
    Normal { rewrite: bool },
}

/// Normalises a request path (without its query) and rejects anything ambiguous.
///
/// Runs of `/` are collapsed, `.` segments removed, percent-encoded unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`) decoded and the hex of the remaining escapes uppercased (RFC 3986
/// §6.2.2). A trailing `/` is kept. Returns [`Cow::Borrowed`] when the path is already normal,
/// which is the common case.
///
/// # Errors
///
/// A [`PathError`] for a path that does not start with `/`, or contains a backslash, an
/// encoded slash or backslash, a `..` segment (in any encoding), a dot segment with `;`
/// parameters, a control character (raw or encoded), a malformed escape, or double encoding.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') {
        return Err(PathError::NotAbsolute {
            path: raw.to_owned(),
        });
    }
    // `out` stays `None` while the output equals a prefix of `raw`; once something changes it
    // holds the output so far, which ends with '/' whenever a segment starts. Starting it at
    // `raw[..start]` without pushing anything is how a segment gets dropped.
    let mut out: Option<String> = None;
    let mut start = 1;
    loop {
        let end = raw[start..].find('/').map_or(raw.len(), |i| start + i);
        let last = end == raw.len();
        let seg = &raw[start..end];
        if seg.is_empty() {
            if last {
                // A trailing '/' (or the root): the output already ends with one.
                break;
            }
            // An empty segment in the middle: collapse "//" by skipping its '/'.
            out.get_or_insert_with(|| raw[..start].to_owned());
        } else {
            match scan_segment(raw, start, seg)? {
                Segment::Dot => {
                    out.get_or_insert_with(|| raw[..start].to_owned());
                }
                Segment::Normal { rewrite } => {
                    if rewrite && out.is_none() {
                        out = Some(raw[..start].to_owned());
                    }
                    if let Some(out) = out.as_mut() {
                        if rewrite {
                            rewrite_segment(seg, out);
                        } else {
                            out.push_str(seg);
                        }
                        if !last {
                            out.push('/');
                        }
                    }
                }
            }
        }
        if last {
            break;
        }
        start = end + 1;
    }
    let normalized = out.map_or(Cow::Borrowed(raw), Cow::Owned);
    // Checked on the output, not the input: "%25%32%65" has no "%25" followed by hex digits
    // until "%32%65" is decoded to "2e".
    if has_double_encoding(&normalized) {
        return Err(PathError::DoubleEncoding {
            path: raw.to_owned(),
        });
    }
    Ok(normalized)
}

/// Validates one non-empty segment starting at byte `start` of `raw` and says what it is.
fn scan_segment(raw: &str, start: usize, seg: &str) -> Result<Segment, PathError> {
    let bytes = seg.as_bytes();
    let mut rewrite = false;
    let mut dots = 0usize;
    let mut only_dots = true;
    // Once past a ';' the rest is parameters, which do not make a dot segment.
    let mut in_params = false;
    let mut i = 0;
    while i < bytes.len() {
        let (unit, len) = match bytes[i] {
            b'\\' => return Err(PathError::Backslash { path: raw.into() }),
            b if is_control(b) => return Err(PathError::ControlCharacter { path: raw.into() }),
            b'%' => {
                let (Some(&hi), Some(&lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
                    return Err(malformed(raw, start + i));
                };
                let (Some(h), Some(l)) = (hex_value(hi), hex_value(lo)) else {
                    return Err(malformed(raw, start + i));
                };
                let decoded = h << 4 | l;
                match decoded {
                    b'/' => return Err(PathError::EncodedSlash { path: raw.into() }),
                    b'\\' => return Err(PathError::EncodedBackslash { path: raw.into() }),
                    b if is_control(b) => {
                        return Err(PathError::ControlCharacter { path: raw.into() })
                    }
                    b if is_unreserved(b) => rewrite = true,
                    _ => rewrite |= hi.is_ascii_lowercase() || lo.is_ascii_lowercase(),
                }
                (decoded, 3)
            }
            b => (b, 1),
        };
        if !in_params {
            match unit {
                b'.' => dots += 1,
                // Tomcat strips ";params" from each segment before resolving dot segments.
                b';' if only_dots && dots > 0 => {
                    return Err(PathError::DotSegmentWithParameters { path: raw.into() })
                }
                b';' => in_params = true,
                _ => only_dots = false,
            }
        }
        i += len;
    }
    match (in_params, only_dots, dots) {
        (false, true, 1) => Ok(Segment::Dot),
        (false, true, 2) => Err(PathError::DotDotSegment { path: raw.into() }),
        _ => Ok(Segment::Normal { rewrite }),
    }
}

/// Appends a segment that [`scan_segment`] accepted, decoding unreserved escapes and
/// uppercasing the hex of the others.
fn rewrite_segment(seg: &str, out: &mut String) {
    let bytes = seg.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        // Slicing at '%' is on a char boundary: it is ASCII.
        out.push_str(&seg[copied..i]);
        let escape = bytes
            .get(i + 1..i + 3)
            .and_then(|hex| Some((hex_value(hex[0])?, hex_value(hex[1])?)));
        let Some((h, l)) = escape else {
            // Unreachable after `scan_segment`; copy the rest verbatim rather than panic.
            out.push_str(&seg[i..]);
            return;
        };
        if is_unreserved(h << 4 | l) {
            out.push(char::from(h << 4 | l));
        } else {
            out.push('%');
            out.push(hex_digit(h));
            out.push(hex_digit(l));
        }
        i += 3;
        copied = i;
    }
    out.push_str(&seg[copied..]);
}

fn has_double_encoding(path: &str) -> bool {
    path.as_bytes().windows(5).any(|w| {
        w[0] == b'%'
            && w[1] == b'2'
            && w[2] == b'5'
            && w[3].is_ascii_hexdigit()
            && w[4].is_ascii_hexdigit()
    })
}

fn malformed(raw: &str, offset: usize) -> PathError {
    PathError::MalformedPercentEncoding {
        path: raw.to_owned(),
        offset,
    }
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// RFC 3986 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn hex_digit(v: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(v & 0xf)])
}

// === impl Printable ===

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}
