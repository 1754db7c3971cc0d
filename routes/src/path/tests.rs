use super::*;

fn prefix(s: &str) -> PathPrefix {
    PathPrefix::parse(s).unwrap()
}

fn parse_err(s: &str) -> String {
    PathPrefix::parse(s).unwrap_err().to_string()
}

#[test]
fn parses_and_trims_the_trailing_slash() {
    assert_eq!(prefix("/").as_str(), "/");
    assert_eq!(prefix("/foo").as_str(), "/foo");
    assert_eq!(prefix("/foo/").as_str(), "/foo");
    assert_eq!(prefix("/foo/bar/").as_str(), "/foo/bar");
    assert_eq!(prefix("/a.b/..c/.d").as_str(), "/a.b/..c/.d");
    assert_eq!(PathPrefix::root(), prefix("/"));
    assert_eq!(prefix("/foo/").to_string(), "/foo");
}

#[test]
fn rejects_bad_prefixes_naming_them() {
    assert_eq!(parse_err(""), "invalid path prefix '': must start with '/'");
    assert_eq!(
        parse_err("foo"),
        "invalid path prefix 'foo': must start with '/'"
    );
    assert_eq!(
        parse_err("/foo?x=1"),
        "invalid path prefix '/foo?x=1': must not contain a query ('?') or fragment ('#')"
    );
    assert_eq!(
        parse_err("/foo#x"),
        "invalid path prefix '/foo#x': must not contain a query ('?') or fragment ('#')"
    );
    assert_eq!(
        parse_err("/foo%2Fbar"),
        "invalid path prefix '/foo%2Fbar': must not contain '%'; write the decoded path"
    );
    assert_eq!(
        parse_err("/foo//bar"),
        "invalid path prefix '/foo//bar': must not contain an empty segment ('//')"
    );
    assert_eq!(
        parse_err("//"),
        "invalid path prefix '//': must not contain an empty segment ('//')"
    );
    for dots in ["/.", "/..", "/foo/./bar", "/foo/../bar", "/foo/.."] {
        assert_eq!(
            parse_err(dots),
            format!("invalid path prefix '{dots}': must not contain '.' or '..' segments")
        );
    }
    assert_eq!(
        parse_err("/foo bar"),
        "invalid path prefix '/foo bar': only printable ASCII without spaces is allowed"
    );
    assert!(PathPrefix::parse("/café").is_err());
}

#[test]
fn matches_on_segment_boundaries() {
    let foo = prefix("/foo");
    assert!(foo.matches("/foo"));
    assert!(foo.matches("/foo/"));
    assert!(foo.matches("/foo/bar"));
    assert!(!foo.matches("/foobar"));
    assert!(!foo.matches("/fo"));
    assert!(!foo.matches("/"));
    assert!(!foo.matches("foo"));
    let deep = prefix("/foo/bar");
    assert!(deep.matches("/foo/bar/baz"));
    assert!(!deep.matches("/foo/barbaz"));
    assert!(!deep.matches("/foo"));
}

#[test]
fn root_matches_everything() {
    let root = prefix("/");
    for path in ["/", "/foo", "/foo/bar/", "", "*"] {
        assert!(root.matches(path), "{path:?}");
    }
}

#[test]
fn segments_of_a_prefix() {
    assert_eq!(prefix("/").segments().count(), 0);
    assert_eq!(prefix("/a/b/").segments().collect::<Vec<_>>(), ["a", "b"]);
}
