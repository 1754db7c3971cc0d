//! The `allowlist` target: [`normalize_path`] and [`AcceptRule`] / [`AcceptRules`].
//!
//! The normaliser decides what the gateway both matches and forwards, so beyond "never
//! panics" it is held to its meaning: the output is a fixed point, has none of the forms it
//! promises to remove (`..`, `//`, `%2F`, backslashes, control characters, lowercase or
//! needless escapes, double encoding), and names the same segments as the input once `.` and
//! empty segments are dropped and escapes decoded. Accept rules are checked against rules
//! whose answer is known: a literal glob matches exactly its path, a method list matches
//! exactly its uppercased methods, a query rule matches only when every occurrence of its
//! parameter carries the value.

use std::borrow::Cow;

use arbitrary::{Result, Unstructured};
use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use portcullis_allowlist::{normalize_path, AcceptRule, AcceptRules};

use crate::input::{glob_literal, joined, word, words};

/// Path segments and escapes that exercise every branch of the normaliser.
const SEGMENTS: &[&str] = &[
    "",
    "a",
    "b",
    ".",
    "..",
    "...",
    "%2e",
    "%2E",
    "%2e%2E",
    ".%2e",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%25",
    "%252e",
    "%25%32%65",
    "%41",
    "%7e",
    "%7E",
    "%c3%a9",
    "%C3%A9",
    "é",
    "%00",
    "%1f",
    "%7F",
    "%7f",
    "%",
    "%g1",
    "%4",
    ";",
    ";x",
    "..;",
    ".;x",
    "a;..",
    "x.",
    "\u{85}",
    "?",
    "#",
    "*",
    " ",
    "+",
    "%20",
    "\t",
    "\u{7f}",
];

const METHODS: &[&str] = &[
    "GET", "get", "POST", "Put", "PURGE", "*", "", "G T", "TRACE", "M-SEARCH", "é",
];

const GLOBS: &[&str] = &[
    "/", "/**", "/*", "/a/*", "/a/**", "/a/*/b", "/{a,b}", "/[ab]", "/a?", "//", "/./a", "/../a",
    "/a/..", "a", "", "/[", "/{", "/a}", "/\\*", "/**/b", "/a**",
];

const QUERY_WORDS: &[&str] = &[
    "state",
    "open",
    "closed",
    "",
    "a b",
    "a+b",
    "é",
    "=",
    "&",
    "%",
    "%zz",
    "%ff",
    "*",
    "?",
    "refs/heads/main",
    "x",
];

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let _ = run_structured(&mut Unstructured::new(data));
}

fn run_structured(u: &mut Unstructured<'_>) -> Result<()> {
    let raw = if u.arbitrary()? {
        joined(u, SEGMENTS, "/", 6)? + if u.arbitrary()? { "/" } else { "" }
    } else {
        u.arbitrary()?
    };
    let normalized = check_normalize(&raw);
    let path = normalized.as_deref().unwrap_or(&raw);

    check_literal_glob(path);
    check_methods(u, normalized.as_deref())?;
    check_query(u)?;
    check_arbitrary_rules(u, path)?;
    Ok(())
}

/// Checks [`normalize_path`] on one path and returns its output, if any.
pub fn check_normalize(raw: &str) -> Option<String> {
    let out = match normalize_path(raw) {
        Ok(out) => out,
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.chars().any(char::is_control),
                "error message for {raw:?} carries a control character: {message:?}"
            );
            return None;
        }
    };
    check_normal_form(raw, &out);
    match normalize_path(&out) {
        Ok(Cow::Borrowed(again)) => assert_eq!(again, out, "not idempotent on {raw:?}"),
        Ok(Cow::Owned(again)) => {
            panic!("{raw:?} -> {out:?} normalised again to {again:?} (or was reallocated)")
        }
        Err(e) => panic!("{raw:?} -> {out:?}, which is then rejected: {e}"),
    }
    if out == raw {
        assert!(
            matches!(out, Cow::Borrowed(_)),
            "{raw:?} is already normal but was copied"
        );
    }
    check_same_segments(raw, &out);
    Some(out.into_owned())
}

/// The output has none of the forms normalisation removes or rejects.
fn check_normal_form(raw: &str, out: &str) {
    assert!(out.starts_with('/'), "{raw:?} -> {out:?}: not absolute");
    assert!(!out.contains("//"), "{raw:?} -> {out:?}: empty segment");
    assert!(!out.contains('\\'), "{raw:?} -> {out:?}: backslash");
    assert!(
        !out.bytes().any(|b| b < 0x20 || b == 0x7f),
        "{raw:?} -> {out:?}: control character"
    );
    for seg in out.split('/').skip(1) {
        assert!(
            seg != "." && seg != "..",
            "{raw:?} -> {out:?}: dot segment {seg:?}"
        );
    }
    let bytes = out.as_bytes();
    for (i, _) in out.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3);
        let Some(&[hi, lo]) = hex else {
            panic!("{raw:?} -> {out:?}: truncated escape at {i}");
        };
        let upper = |b: u8| b.is_ascii_digit() || (b'A'..=b'F').contains(&b);
        assert!(
            upper(hi) && upper(lo),
            "{raw:?} -> {out:?}: escape at {i} is not two uppercase hex digits"
        );
        let value = hex_value(hi) << 4 | hex_value(lo);
        assert!(
            !(value.is_ascii_alphanumeric() || b"-._~".contains(&value)),
            "{raw:?} -> {out:?}: escape of an unreserved character at {i}"
        );
        assert!(
            !matches!(value, b'/' | b'\\') && value >= 0x20 && value != 0x7f,
            "{raw:?} -> {out:?}: escape of '/', '\\\\' or a control character at {i}"
        );
        assert!(
            !(value == b'%'
                && bytes.get(i + 3).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 4).is_some_and(u8::is_ascii_hexdigit)),
            "{raw:?} -> {out:?}: double encoding at {i}"
        );
    }
}

/// Normalisation keeps the meaning: the same decoded segments, minus empty and `.` ones, and
/// a trailing slash exactly when the input ended in a directory (`/`, or a `.` segment).
fn check_same_segments(raw: &str, out: &str) {
    let decode = |seg: &str| percent_decode_str(seg).collect::<Vec<u8>>();
    let meaningful = |path: &str| -> Vec<Vec<u8>> {
        path.split('/')
            .skip(1)
            .map(decode)
            .filter(|seg| !seg.is_empty() && seg != b".")
            .collect()
    };
    assert_eq!(
        meaningful(raw),
        meaningful(out),
        "{raw:?} -> {out:?}: segments changed"
    );
    let last = raw.rsplit('/').next().map(decode).unwrap_or_default();
    let directory = last.is_empty() || last == b".";
    assert_eq!(
        out.ends_with('/'),
        directory,
        "{raw:?} -> {out:?}: trailing slash not kept as written"
    );
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// A glob that is the path, escaped, matches that path and nothing longer; `/**` matches
/// every normalised path.
fn check_literal_glob(path: &str) {
    if normalize_path(path).is_err() {
        return;
    }
    let rule = match AcceptRule::for_path(&glob_literal(path)) {
        Ok(rule) => rule,
        Err(e) => panic!("the literal glob of normal path {path:?} is refused: {e}"),
    };
    assert!(
        rule.matches("GET", path, None),
        "literal glob does not match {path:?}"
    );
    let longer = format!("{path}x");
    assert!(
        !rule.matches("GET", &longer, None),
        "literal glob of {path:?} matches {longer:?}"
    );
    let any = AcceptRule::for_path("/**").map(|r| AcceptRules::new(vec![r]));
    let Ok(any) = any else {
        panic!("'/**' is refused");
    };
    assert!(
        any.check("PATCH", path, Some("a=b")).is_ok(),
        "'/**' does not match {path:?}"
    );
}

/// A rule's methods are valid when each is a token other than `*`, and then it accepts
/// exactly their uppercase forms (checked on a normalised path, which `/**` matches).
fn check_methods(u: &mut Unstructured<'_>, normalized: Option<&str>) -> Result<()> {
    let methods = words(u, METHODS, 4)?;
    let request = word(u, METHODS)?;
    let tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let valid = methods
        .iter()
        .all(|m| !m.is_empty() && m != "*" && m.bytes().all(tchar));
    let rule = AcceptRule::new(&methods, "/**", &[] as &[(&str, &str)]);
    match rule {
        Ok(rule) => {
            assert!(valid, "methods {methods:?} accepted");
            let expected =
                methods.is_empty() || methods.iter().any(|m| m.to_ascii_uppercase() == request);
            if let Some(path) = normalized {
                assert_eq!(
                    rule.matches(&request, path, None),
                    expected,
                    "methods {methods:?}, request {request:?}"
                );
            }
        }
        Err(e) => assert!(!valid, "methods {methods:?} refused: {e}"),
    }
    Ok(())
}

/// A query rule `name = <literal value>` matches exactly when the parameter occurs and every
/// occurrence has that value (names and values compared form-decoded).
fn check_query(u: &mut Unstructured<'_>) -> Result<()> {
    let n = u.int_in_range(0..=4)?;
    let mut pairs = Vec::with_capacity(n);
    let mut query = String::new();
    for i in 0..n {
        let name = word(u, QUERY_WORDS)?;
        let value = word(u, QUERY_WORDS)?;
        if i > 0 {
            query.push('&');
        }
        query.push_str(&form_encode(u, &name)?);
        // A missing '=' means an empty value.
        if !value.is_empty() || u.arbitrary()? {
            query.push('=');
            query.push_str(&form_encode(u, &value)?);
        }
        pairs.push((name, value));
    }
    let name = word(u, QUERY_WORDS)?;
    let value = word(u, QUERY_WORDS)?;
    let rule = AcceptRule::new(
        &[] as &[&str],
        "/",
        &[(name.as_str(), glob_literal(&value).as_str())],
    );
    let rule = match rule {
        Ok(rule) => rule,
        Err(e) => {
            assert!(
                name.is_empty(),
                "query rule {name:?}={value:?} refused: {e}"
            );
            return Ok(());
        }
    };
    assert!(!name.is_empty(), "query rule with an empty name accepted");
    let mut occurrences = pairs.iter().filter(|(n, _)| *n == name).peekable();
    let expected = occurrences.peek().is_some() && occurrences.all(|(_, v)| *v == value);
    assert_eq!(
        rule.matches("GET", "/", Some(&query)),
        expected,
        "rule {name:?}={value:?} on query {query:?}"
    );
    Ok(())
}

/// Percent-encodes everything but letters and digits; sometimes writes a space as `+`.
fn form_encode(u: &mut Unstructured<'_>, text: &str) -> Result<String> {
    if u.arbitrary()? {
        Ok(text
            .split(' ')
            .map(|part| utf8_percent_encode(part, NON_ALPHANUMERIC).to_string())
            .collect::<Vec<_>>()
            .join("+"))
    } else {
        Ok(utf8_percent_encode(text, NON_ALPHANUMERIC).to_string())
    }
}

/// Arbitrary rules and requests: building and checking never panics, and `check` agrees
/// with the rules one by one.
fn check_arbitrary_rules(u: &mut Unstructured<'_>, path: &str) -> Result<()> {
    let mut rules = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let methods = words(u, METHODS, 3)?;
        let glob = word(u, GLOBS)?;
        let query: Vec<(String, String)> = (0..u.int_in_range(0..=2)?)
            .map(|_| Ok((word(u, QUERY_WORDS)?, word(u, GLOBS)?)))
            .collect::<Result<_>>()?;
        match AcceptRule::new(&methods, &glob, &query) {
            Ok(rule) => rules.push(rule),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    let method = word(u, METHODS)?;
    let query: Option<String> = u.arbitrary()?;
    let rules = AcceptRules::new(rules);
    let any = rules
        .rules()
        .iter()
        .any(|r| r.matches(&method, path, query.as_deref()));
    let checked = rules.check(&method, path, query.as_deref());
    assert_eq!(
        checked.is_ok(),
        rules.is_empty() || any,
        "check disagrees with the rules for {method} {path:?} ?{query:?}"
    );
    if let Err(denied) = checked {
        assert_eq!(
            (denied.method.as_str(), denied.path.as_str()),
            (&*method, path)
        );
    }
    Ok(())
}
