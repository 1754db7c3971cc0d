//! Small helpers to turn fuzzer bytes into strings that are *likely to matter*.
//!
//! Purely random strings rarely hit `%2e`, `*.example.com` or a prefix that another route
//! shares, so the generators mix values from a vocabulary of interesting pieces with
//! arbitrary ones. libFuzzer's mutations still reach everything else.

use arbitrary::{Result, Unstructured};

/// One of `vocab` most of the time, otherwise an arbitrary string.
pub(crate) fn word(u: &mut Unstructured<'_>, vocab: &[&str]) -> Result<String> {
    if u.ratio(7u8, 8u8)? {
        Ok((*u.choose(vocab)?).to_owned())
    } else {
        u.arbitrary()
    }
}

/// Up to `max` pieces from `vocab` (or arbitrary strings), each preceded by `sep`.
pub(crate) fn joined(
    u: &mut Unstructured<'_>,
    vocab: &[&str],
    sep: &str,
    max: usize,
) -> Result<String> {
    let n = u.int_in_range(0..=max)?;
    let mut out = String::new();
    for _ in 0..n {
        out.push_str(sep);
        out.push_str(&word(u, vocab)?);
    }
    Ok(out)
}

/// Up to `max` words.
pub(crate) fn words(u: &mut Unstructured<'_>, vocab: &[&str], max: usize) -> Result<Vec<String>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| word(u, vocab)).collect()
}

/// Escapes a literal for globset with `backslash_escape(true)`, so the glob matches exactly
/// that text.
pub(crate) fn glob_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
