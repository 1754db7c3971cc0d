use proptest::prelude::*;
use std::borrow::Cow;

use super::*;

#[track_caller]
fn normal(raw: &str, expected: &str) {
    match normalize_path(raw) {
        Ok(out) => assert_eq!(out, expected, "normalising {raw:?}"),
        Err(e) => panic!("{raw:?} was rejected: {e}"),
    }
}

#[track_caller]
fn borrowed(raw: &str) {
    match normalize_path(raw) {
        Ok(Cow::Borrowed(out)) => assert_eq!(out, raw),
        other => panic!("{raw:?} should come back borrowed, got {other:?}"),
    }
}

#[track_caller]
fn rejected(raw: &str) -> PathError {
    match normalize_path(raw) {
        Ok(out) => panic!("{raw:?} was accepted as {out:?}"),
        Err(e) => e,
    }
}

// --- already normal: no allocation ---

#[test]
fn normal_paths_are_borrowed() {
    for raw in [
        "/",
        "/a",
        "/a/",
        "/repos/acme/widgets/issues",
        "/a/b.c/...",
        "/a/.b/c.",
        "/%20space",
        "/%C3%A9t%C3%A9",
        "/a%25b",
        "/a%25",
        "/a%252",
        "/x;y=1",
        "/caf\u{e9}",
        "/a b",
        "/~user/-_",
        "/a..b",
        "/..a",
    ] {
        borrowed(raw);
    }
}

// --- normalisation ---

#[test]
fn collapses_slashes() {
    normal("//", "/");
    normal("///a", "/a");
    normal("/a//b", "/a/b");
    normal("/a///b//", "/a/b/");
    normal("/a/b//", "/a/b/");
}

#[test]
fn removes_dot_segments() {
    normal("/.", "/");
    normal("/./", "/");
    normal("/./a", "/a");
    normal("/a/./b", "/a/b");
    normal("/a/.", "/a/");
    normal("/a/./", "/a/");
    normal("/a/././b/.//c", "/a/b/c");
}

#[test]
fn removes_encoded_dot_segments() {
    normal("/a/%2e/b", "/a/b");
    normal("/a/%2E/b", "/a/b");
    normal("/a/%2e", "/a/");
}

#[test]
fn decodes_unreserved() {
    normal("/%41%5a%61%7A%30%39", "/AZaz09");
    normal("/%2D%2e%5F%7e", "/-._~");
    normal("/a%2eb", "/a.b");
    normal("/%7Euser", "/~user");
    // Decoding happens per segment, and later segments are copied after the first change.
    normal("/%61/b/c/", "/a/b/c/");
    normal("/a/b/%63", "/a/b/c");
}

#[test]
fn uppercases_hex_of_other_escapes() {
    normal("/%c3%a9", "/%C3%A9");
    normal("/a%3fb", "/a%3Fb");
    normal("/%3b", "/%3B");
    normal("/a%2a", "/a%2A");
}

#[test]
fn keeps_trailing_slash() {
    borrowed("/a/b/");
    normal("/a/%62/", "/a/b/");
}

#[test]
fn combined_changes() {
    normal("//a/./%62//%2e/c%3f/", "/a/b/c%3F/");
}

// --- rejections ---

#[test]
fn rejects_relative_and_empty() {
    for raw in ["", "a/b", "*", "http://example.com/", "%2F"] {
        assert!(
            matches!(rejected(raw), PathError::NotAbsolute { .. }),
            "{raw:?}"
        );
    }
    assert_eq!(
        rejected("a/b").to_string(),
        "path 'a/b' does not start with '/'"
    );
}

#[test]
fn rejects_raw_backslash() {
    for raw in ["/a\\b", "/\\", "/a/..\\b", "/\\\\evil.com"] {
        assert!(
            matches!(rejected(raw), PathError::Backslash { .. }),
            "{raw:?}"
        );
    }
    assert_eq!(
        rejected("/a\\b").to_string(),
        "path '/a\\b' contains a backslash"
    );
}

#[test]
fn rejects_encoded_backslash_lowercase() {
    assert_eq!(
        rejected("/a%5cb"),
        PathError::EncodedBackslash {
            path: "/a%5cb".into()
        }
    );
}

#[test]
fn rejects_encoded_backslash_uppercase() {
    assert_eq!(
        rejected("/a%5Cb").to_string(),
        "path '/a%5Cb' contains an encoded backslash (%5C)"
    );
}

#[test]
fn rejects_encoded_slash_lowercase() {
    assert_eq!(
        rejected("/a%2fb"),
        PathError::EncodedSlash {
            path: "/a%2fb".into()
        }
    );
}

#[test]
fn rejects_encoded_slash_uppercase() {
    assert_eq!(
        rejected("/a%2F..%2Fb").to_string(),
        "path '/a%2F..%2Fb' contains an encoded slash (%2F)"
    );
}

#[track_caller]
fn dotdot(raw: &str) {
    assert_eq!(
        rejected(raw),
        PathError::DotDotSegment { path: raw.into() },
        "{raw:?}"
    );
}

#[test]
fn rejects_plain_dotdot() {
    dotdot("/..");
    dotdot("/../");
    dotdot("/a/..");
    dotdot("/a/../b");
    dotdot("/a/b/../../etc/passwd");
    assert_eq!(
        rejected("/a/../b").to_string(),
        "path '/a/../b' contains a '..' segment"
    );
}

#[test]
fn rejects_dotdot_after_collapsing() {
    dotdot("//..//a");
}

#[test]
fn rejects_fully_encoded_dotdot_lowercase() {
    dotdot("/a/%2e%2e/b");
}

#[test]
fn rejects_fully_encoded_dotdot_uppercase() {
    dotdot("/a/%2E%2E/b");
}

#[test]
fn rejects_fully_encoded_dotdot_mixed_case() {
    dotdot("/a/%2e%2E");
    dotdot("/a/%2E%2e/");
}

#[test]
fn rejects_dot_then_encoded_dot() {
    dotdot("/a/.%2e/b");
    dotdot("/a/.%2E");
}

#[test]
fn rejects_encoded_dot_then_dot() {
    dotdot("/a/%2e./b");
    dotdot("/%2E.");
}

#[test]
fn rejects_dot_segments_with_parameters() {
    for raw in [
        "/a/..;/b",
        "/a/..;jsessionid=1/b",
        "/a/.;/b",
        "/a/%2e%2e;/b",
        "/a/..%3b/b",
        "/a/..%3B",
    ] {
        assert_eq!(
            rejected(raw),
            PathError::DotSegmentWithParameters { path: raw.into() },
            "{raw:?}"
        );
    }
    assert_eq!(
        rejected("/a/..;/b").to_string(),
        "path '/a/..;/b' contains a dot segment with ';' parameters"
    );
    // Dots after the parameters start, or not alone before them, are fine.
    borrowed("/a;..");
    borrowed("/a/b..;x");
    borrowed("/a/;../b");
}

#[test]
fn rejects_raw_control_characters() {
    for raw in ["/a\0b", "/a\nb", "/a\rb", "/a\tb", "/\u{1f}", "/a\u{7f}"] {
        assert!(
            matches!(rejected(raw), PathError::ControlCharacter { .. }),
            "{raw:?}"
        );
    }
    // The message escapes the character, so it cannot forge log lines.
    assert_eq!(
        rejected("/a\nb").to_string(),
        "path '/a\\nb' contains a control character"
    );
    assert_eq!(
        rejected("/a\0").to_string(),
        "path '/a\\u{0}' contains a control character"
    );
}

#[test]
fn rejects_encoded_control_characters() {
    for raw in [
        "/a%00", "/a%0a", "/a%0D", "/%09", "/%1f", "/%1F", "/%7f", "/%7F",
    ] {
        assert_eq!(
            rejected(raw),
            PathError::ControlCharacter { path: raw.into() },
            "{raw:?}"
        );
    }
    assert_eq!(
        rejected("/a%00.json").to_string(),
        "path '/a%00.json' contains a control character"
    );
    // Just above and below the control ranges.
    normal("/%20", "/%20");
    normal("/%7e", "/~");
}

#[test]
fn rejects_lone_percent() {
    assert_eq!(
        rejected("/a%"),
        PathError::MalformedPercentEncoding {
            path: "/a%".into(),
            offset: 2
        }
    );
}

#[test]
fn rejects_percent_with_one_digit() {
    assert_eq!(
        rejected("/a/%4"),
        PathError::MalformedPercentEncoding {
            path: "/a/%4".into(),
            offset: 3
        }
    );
    assert!(matches!(
        rejected("/%4/b"),
        PathError::MalformedPercentEncoding { offset: 1, .. }
    ));
}

#[test]
fn rejects_non_hex_escape() {
    assert_eq!(
        rejected("/%g1").to_string(),
        "path '/%g1' has a malformed percent-escape at byte 1"
    );
    assert!(matches!(
        rejected("/%1g"),
        PathError::MalformedPercentEncoding { .. }
    ));
    assert!(matches!(
        rejected("/%%41"),
        PathError::MalformedPercentEncoding { .. }
    ));
    assert!(matches!(
        rejected("/%2%65"),
        PathError::MalformedPercentEncoding { .. }
    ));
    assert!(matches!(
        rejected("/%\u{e9}"),
        PathError::MalformedPercentEncoding { .. }
    ));
}

#[test]
fn rejects_double_encoding() {
    for raw in [
        "/%252e%252e/",
        "/%252f",
        "/%255c",
        "/a%2541",
        "/a%25ff",
        "/%25%32%65",
        "/%25%32e",
        "/%2525",
    ] {
        assert_eq!(
            rejected(raw),
            PathError::DoubleEncoding { path: raw.into() },
            "{raw:?}"
        );
    }
    assert_eq!(
        rejected("/%252e%252e/").to_string(),
        "path '/%252e%252e/' is double percent-encoded (%25 followed by hex digits)"
    );
    // A literal percent followed by non-hex (or by less than two characters) is fine.
    borrowed("/100%25");
    borrowed("/100%25/x");
    borrowed("/a%25zz");
    normal("/a%25%3f", "/a%25%3F");
}

#[test]
fn double_encoding_across_segments_is_not_an_escape() {
    // "%25" ends one segment and "41" starts the next: "%25/41" decodes to "%/41".
    borrowed("/a%25/41");
}

// --- properties ---

/// Decodes until nothing changes (bounded: every pass that changes something shortens the
/// string). Invalid UTF-8 becomes U+FFFD, which cannot form a dot segment.
fn decode_fully(s: &str) -> String {
    let mut current = s.to_owned();
    loop {
        let next = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            return current;
        }
        current = next;
    }
}

fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|seg| seg == "." || seg == "..")
}

/// Paths built from short segments over an alphabet rich in the characters traversal tricks
/// are made of, so dot-like segments come up often.
fn tricky() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        ".", ".", "%", "2", "e", "E", "f", "F", "c", "C", "5", "\\", "a", "b", "%2e", "%2E", "%2f",
        "%25", "%5c", ";", "%3b", "..", "%41", "0", "1", "~", "%7e", "%252e", "%32", "%65", "2e",
        "%00",
    ]);
    let segment = prop::collection::vec(atoms, 0..4).prop_map(|atoms| atoms.concat());
    let separator = prop::sample::select(vec!["/", "/", "/", "//"]);
    prop::collection::vec((separator, segment), 1..8).prop_map(|parts| {
        parts
            .into_iter()
            .map(|(sep, seg)| format!("{sep}{seg}"))
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn idempotent(raw in tricky()) {
        if let Ok(out) = normalize_path(&raw) {
            let again = normalize_path(&out);
            prop_assert!(matches!(again, Ok(Cow::Borrowed(_))), "{:?} -> {:?} -> {:?}", raw, out, again);
        }
    }

    #[test]
    fn output_is_clean(raw in tricky()) {
        if let Ok(out) = normalize_path(&raw) {
            prop_assert!(out.starts_with('/'));
            prop_assert!(!out.contains("//"), "{:?} -> {:?}", raw, out);
            prop_assert!(!has_dot_segment(&out), "{:?} -> {:?}", raw, out);
            prop_assert!(!out.contains('\\'), "{:?} -> {:?}", raw, out);
            let upper = out.to_ascii_uppercase();
            for encoded in ["%2F", "%5C", "%2E"] {
                prop_assert!(!upper.contains(encoded), "{:?} -> {:?}", raw, out);
            }
            prop_assert_eq!(out.ends_with('/'), raw.ends_with('/') || raw.ends_with("/.") || raw.ends_with("/%2e") || raw.ends_with("/%2E"));
        }
    }

    #[test]
    fn no_traversal_after_full_decoding(raw in tricky()) {
        if let Ok(out) = normalize_path(&raw) {
            let decoded = decode_fully(&out);
            prop_assert!(!has_dot_segment(&decoded), "{:?} -> {:?} -> {:?}", raw, out, decoded);
            // Nor a segment that Tomcat would resolve as one.
            let tomcat = decoded.split('/').any(|seg| {
                let before = seg.split(';').next().unwrap_or(seg);
                seg.contains(';') && (before == "." || before == "..")
            });
            prop_assert!(!tomcat, "{:?} -> {:?}", raw, out);
        }
    }

    #[test]
    fn never_panics_on_arbitrary_input(raw in any::<String>()) {
        let _ = normalize_path(&raw);
        let _ = normalize_path(&format!("/{raw}"));
    }
}
