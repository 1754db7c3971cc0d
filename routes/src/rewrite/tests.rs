use proptest::prelude::*;

use super::*;

fn prefix(s: &str) -> PathPrefix {
    PathPrefix::parse(s).unwrap()
}

fn replace(r: &str) -> Rewrite {
    Rewrite::ReplacePrefix(r.to_owned())
}

/// Applies a rewrite and says whether the result borrowed from the input.
fn apply(rewrite: &Rewrite, p: &str, path: &str) -> (String, bool) {
    let out = rewrite.apply(&prefix(p), path);
    let borrowed = matches!(out, Cow::Borrowed(_));
    (out.into_owned(), borrowed)
}

#[test]
fn keep_borrows_unchanged() {
    assert_eq!(
        apply(&Rewrite::Keep, "/pd", "/pd/incidents?x=1"),
        ("/pd/incidents?x=1".to_owned(), true)
    );
}

#[test]
fn strip_prefix() {
    let strip = Rewrite::StripPrefix;
    assert_eq!(
        apply(&strip, "/pd", "/pd/incidents?x=1"),
        ("/incidents?x=1".to_owned(), true)
    );
    assert_eq!(apply(&strip, "/pd", "/pd"), ("/".to_owned(), true));
    assert_eq!(apply(&strip, "/pd", "/pd?x"), ("/?x".to_owned(), false));
    assert_eq!(apply(&strip, "/pd", "/pd/"), ("/".to_owned(), true));
    assert_eq!(
        apply(&strip, "/pd/v1", "/pd/v1/a/b"),
        ("/a/b".to_owned(), true)
    );
    // The query is not part of the path, even when it looks like one.
    assert_eq!(
        apply(&strip, "/pd", "/pd?next=/pd/x"),
        ("/?next=/pd/x".to_owned(), false)
    );
    for path in ["/", "/incidents", "/pd/x?y"] {
        assert_eq!(apply(&strip, "/", path), (path.to_owned(), true));
    }
}

#[test]
fn replace_prefix() {
    let v2 = replace("/v2");
    assert_eq!(
        apply(&v2, "/pd", "/pd/incidents"),
        ("/v2/incidents".to_owned(), false)
    );
    assert_eq!(apply(&v2, "/pd", "/pd"), ("/v2".to_owned(), false));
    assert_eq!(apply(&v2, "/pd", "/pd?x"), ("/v2?x".to_owned(), false));
    assert_eq!(apply(&v2, "/pd", "/pd/"), ("/v2/".to_owned(), false));
    assert_eq!(apply(&v2, "/pd", "/pd/a?b=/c").0, "/v2/a?b=/c");
    // A trailing slash on the replacement does not double.
    assert_eq!(
        apply(&replace("/v2/"), "/pd", "/pd/incidents").0,
        "/v2/incidents"
    );
    assert_eq!(apply(&replace("/v2/"), "/pd", "/pd").0, "/v2");
    // Replacing the root prefix prepends.
    assert_eq!(apply(&v2, "/", "/incidents?x").0, "/v2/incidents?x");
    assert_eq!(apply(&v2, "/", "/").0, "/v2/");
}

#[test]
fn replace_with_root_behaves_like_strip() {
    for (p, path) in [
        ("/pd", "/pd/incidents?x=1"),
        ("/pd", "/pd"),
        ("/pd", "/pd?x"),
        ("/pd", "/pd/"),
        ("/", "/a/b"),
    ] {
        assert_eq!(
            apply(&replace("/"), p, path),
            apply(&Rewrite::StripPrefix, p, path),
            "{p} {path}"
        );
    }
}

#[test]
fn a_prefix_that_does_not_match_leaves_the_path_alone() {
    for rewrite in [Rewrite::StripPrefix, replace("/v2")] {
        assert_eq!(
            apply(&rewrite, "/pd", "/pdx/a"),
            ("/pdx/a".to_owned(), true)
        );
        assert_eq!(
            apply(&rewrite, "/pd", "/other"),
            ("/other".to_owned(), true)
        );
    }
}

#[test]
fn replace_prefix_constructor_checks_and_trims() {
    assert_eq!(Rewrite::replace_prefix("/v2/").unwrap(), replace("/v2"));
    assert_eq!(Rewrite::replace_prefix("/").unwrap(), replace("/"));
    assert_eq!(
        Rewrite::replace_prefix("v2").unwrap_err().to_string(),
        "invalid rewrite prefix 'v2': must start with '/'"
    );
    assert_eq!(
        Rewrite::replace_prefix("/v2?x").unwrap_err().to_string(),
        "invalid rewrite prefix '/v2?x': must not contain a query ('?') or fragment ('#')"
    );
    assert!(replace("/a/../b").check().is_err());
    assert!(Rewrite::StripPrefix.check().is_ok());
}

#[test]
fn join_base_path_examples() {
    let join = |base, path| {
        let out = join_base_path(base, path);
        (out.to_string(), matches!(out, Cow::Borrowed(_)))
    };
    assert_eq!(
        join("/api/v2", "/incidents"),
        ("/api/v2/incidents".to_owned(), false)
    );
    assert_eq!(
        join("/api/v2/", "/incidents?x=1"),
        ("/api/v2/incidents?x=1".to_owned(), false)
    );
    assert_eq!(join("/api/v2", "/"), ("/api/v2/".to_owned(), false));
    assert_eq!(join("/api/v2", "?x"), ("/api/v2?x".to_owned(), false));
    assert_eq!(join("", "/incidents"), ("/incidents".to_owned(), true));
    assert_eq!(join("/", "/incidents?x"), ("/incidents?x".to_owned(), true));
}

/// A segment that a prefix may contain.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof!["[a-z]{1,3}", Just("pd".to_owned()), Just("..a".to_owned())]
}

fn segments(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(segment(), 0..=max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn strip_prefix_starts_with_slash_and_can_be_undone(
        prefix_segs in segments(3),
        tail in prop_oneof![
            Just(String::new()),
            Just("/".to_owned()),
            segments(3).prop_map(|s| s.iter().map(|s| format!("/{s}")).collect()),
            "(/[a-z.]{0,3}){1,4}",
        ],
        query in prop::option::of("[a-z=/&?]{0,6}"),
    ) {
        let prefix_str = format!("/{}", prefix_segs.join("/"));
        let prefix = PathPrefix::parse(&prefix_str).unwrap();
        let path = if prefix.as_str() == "/" && tail.is_empty() {
            "/".to_owned()
        } else {
            format!("{}{tail}", prefix.trimmed())
        };
        prop_assume!(prefix.matches(&path));
        let input = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };

        let out = Rewrite::StripPrefix.apply(&prefix, &input);
        prop_assert!(out.starts_with('/'), "{input} -> {out}");
        let (out_path, out_query) = out.split_at(out.find('?').unwrap_or(out.len()));
        prop_assert_eq!(out_query, &input[path.len()..]);
        if prefix.as_str() != "/" {
            let reprefixed = format!("{prefix}{out_path}");
            // "/pd" goes up as "/", and "/pd" + "/" is "/pd/": the only lossy case.
            prop_assert!(
                reprefixed == path || (path == prefix.as_str() && out_path == "/"),
                "{path} -> {out_path}"
            );
        } else {
            prop_assert_eq!(&*out, input.as_str());
        }
        // Replacing with "/" is the same operation.
        prop_assert_eq!(Rewrite::ReplacePrefix("/".to_owned()).apply(&prefix, &input), out);
    }
}
