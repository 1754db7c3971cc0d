use proptest::prelude::*;

use super::*;

const NO_QUERY: &[(&str, &str)] = &[];
const ANY: &[&str] = &[];

fn rule(methods: &[&str], glob: &str) -> AcceptRule {
    AcceptRule::new(methods, glob, NO_QUERY).unwrap()
}

fn rule_q(methods: &[&str], glob: &str, query: &[(&str, &str)]) -> AcceptRule {
    AcceptRule::new(methods, glob, query).unwrap()
}

// --- methods ---

#[test]
fn methods_are_uppercased_and_matched_exactly() {
    let r = rule(&["get", "Post"], "/x");
    assert_eq!(
        r.methods(),
        Some(&["GET".to_owned(), "POST".to_owned()][..])
    );
    assert!(r.matches("GET", "/x", None));
    assert!(r.matches("POST", "/x", None));
    assert!(!r.matches("PUT", "/x", None));
    assert!(!r.matches("HEAD", "/x", None));
    // Wire methods are case-sensitive; a lowercase request method is a different method.
    assert!(!r.matches("get", "/x", None));
}

#[test]
fn empty_methods_accept_any_method() {
    let r = rule(ANY, "/x");
    assert_eq!(r.methods(), None);
    for m in ["GET", "DELETE", "PATCH", "PROPFIND", "get"] {
        assert!(r.matches(m, "/x", None), "{m}");
    }
}

#[test]
fn invalid_methods_are_rejected() {
    for m in ["", "GET POST", "G\u{e9}T", "GET/1", "*", "(GET)"] {
        assert_eq!(
            AcceptRule::new(&[m], "/x", NO_QUERY).unwrap_err(),
            AcceptError::InvalidMethod(m.to_owned()),
            "{m:?}"
        );
    }
    assert_eq!(
        AcceptRule::new(&["GET POST"], "/x", NO_QUERY)
            .unwrap_err()
            .to_string(),
        "invalid HTTP method 'GET POST': expected a token like GET or POST \
         (leave the list empty to accept any method)"
    );
    // Extension methods are tokens too.
    assert!(AcceptRule::new(&["PROPFIND", "M-SEARCH"], "/x", NO_QUERY).is_ok());
}

// --- path globs ---

#[test]
fn single_star_stays_within_a_segment() {
    let r = rule(ANY, "/repos/*/issues");
    assert!(r.matches("GET", "/repos/acme/issues", None));
    assert!(!r.matches("GET", "/repos/acme/widgets/issues", None));
    assert!(!r.matches("GET", "/repos/issues", None));
    assert!(!r.matches("GET", "/repos/acme/issues/1", None));
    let r = rule(ANY, "/files/*.json");
    assert!(r.matches("GET", "/files/a.json", None));
    assert!(!r.matches("GET", "/files/a/b.json", None));
}

#[test]
fn double_star_crosses_segments() {
    let r = rule(ANY, "/api/**");
    assert!(r.matches("GET", "/api/x", None));
    assert!(r.matches("GET", "/api/x/y/z", None));
    assert!(r.matches("GET", "/api/x/", None));
    assert!(!r.matches("GET", "/apix", None));
    assert!(!r.matches("GET", "/other/api/x", None));
    let r = rule(ANY, "/repos/**/pulls");
    assert!(r.matches("GET", "/repos/a/b/pulls", None));
    assert!(!r.matches("GET", "/repos/a/b/pulls/1", None));
}

#[test]
fn api_double_star_does_not_match_the_bare_prefix() {
    // globset's "/api/**" needs something after "/api/"; list "/api" separately if wanted.
    let r = rule(ANY, "/api/**");
    assert!(!r.matches("GET", "/api", None));
}

#[test]
fn globs_are_case_sensitive_and_anchored() {
    let r = rule(ANY, "/Repos/*");
    assert!(r.matches("GET", "/Repos/a", None));
    assert!(!r.matches("GET", "/repos/a", None));
    let r = rule(ANY, "/exact");
    assert!(r.matches("GET", "/exact", None));
    assert!(!r.matches("GET", "/exact/", None));
    assert!(!r.matches("GET", "/exactly", None));
}

#[test]
fn glob_alternatives_and_classes() {
    let r = rule(ANY, "/{issues,pulls}/[0-9]*");
    assert!(r.matches("GET", "/issues/12", None));
    assert!(r.matches("GET", "/pulls/3", None));
    assert!(!r.matches("GET", "/commits/3", None));
    assert!(!r.matches("GET", "/issues/x", None));
}

#[test]
fn path_glob_must_start_with_slash() {
    assert_eq!(
        AcceptRule::for_path("api/**").unwrap_err(),
        AcceptError::InvalidGlob {
            glob: "api/**".into(),
            reason: "a path glob must start with '/'".into()
        }
    );
    assert_eq!(
        AcceptRule::for_path("**").unwrap_err().to_string(),
        "invalid path glob '**': a path glob must start with '/'"
    );
}

#[test]
fn unparsable_glob_is_an_error_naming_it() {
    let err = AcceptRule::for_path("/a/[b").unwrap_err();
    assert!(
        matches!(&err, AcceptError::InvalidGlob { glob, .. } if glob == "/a/[b"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("invalid path glob '/a/[b': unclosed character class"),
        "{err}"
    );
    assert!(AcceptRule::for_path("/{a,b").is_err());
}

#[test]
fn globs_that_can_never_match_are_errors() {
    for glob in ["/a//b", "/a/../b", "/./a", "/a/.."] {
        assert!(
            matches!(
                AcceptRule::for_path(glob).unwrap_err(),
                AcceptError::InvalidGlob { .. }
            ),
            "{glob}"
        );
    }
    assert_eq!(
        AcceptRule::for_path("/a/../b").unwrap_err().to_string(),
        "invalid path glob '/a/../b': '.' and '..' segments never match: \
         request paths are normalised without them"
    );
    assert!(AcceptRule::for_path("/a/.well-known/*").is_ok());
}

#[test]
fn path_glob_is_kept_for_display() {
    assert_eq!(
        AcceptRule::for_path("/api/**").unwrap().path_glob(),
        "/api/**"
    );
}

// --- query ---

#[test]
fn required_query_parameter() {
    let r = rule_q(ANY, "/search", &[("state", "open")]);
    assert!(r.matches("GET", "/search", Some("state=open")));
    assert!(r.matches("GET", "/search", Some("q=x&state=open&page=2")));
    assert!(!r.matches("GET", "/search", Some("state=closed")));
    assert!(!r.matches("GET", "/search", Some("q=x")));
    assert!(!r.matches("GET", "/search", Some("")));
    assert!(!r.matches("GET", "/search", None));
    // Name match is exact.
    assert!(!r.matches("GET", "/search", Some("states=open")));
    assert!(!r.matches("GET", "/search", Some("State=open")));
}

#[test]
fn all_query_pairs_are_required() {
    let r = rule_q(ANY, "/s", &[("a", "1"), ("b", "*")]);
    assert!(r.matches("GET", "/s", Some("a=1&b=anything")));
    assert!(r.matches("GET", "/s", Some("b=&a=1")));
    assert!(!r.matches("GET", "/s", Some("a=1")));
    assert!(!r.matches("GET", "/s", Some("b=2")));
}

#[test]
fn query_value_globs() {
    let r = rule_q(ANY, "/git", &[("ref", "refs/heads/*")]);
    assert!(r.matches("GET", "/git", Some("ref=refs/heads/main")));
    // Value globs are not paths: '*' crosses '/'.
    assert!(r.matches("GET", "/git", Some("ref=refs/heads/feature/x")));
    assert!(!r.matches("GET", "/git", Some("ref=refs/tags/v1")));
    let r = rule_q(ANY, "/p", &[("page", "[0-9]*")]);
    assert!(r.matches("GET", "/p", Some("page=12")));
    assert!(!r.matches("GET", "/p", Some("page=x")));
}

#[test]
fn query_is_percent_and_plus_decoded() {
    let r = rule_q(ANY, "/s", &[("q", "hello world")]);
    assert!(r.matches("GET", "/s", Some("q=hello%20world")));
    assert!(r.matches("GET", "/s", Some("q=hello+world")));
    assert!(r.matches("GET", "/s", Some("%71=hello+world")));
    assert!(!r.matches("GET", "/s", Some("q=hello%2520world")));
    let r = rule_q(ANY, "/s", &[("ref", "refs/heads/*")]);
    assert!(r.matches("GET", "/s", Some("ref=refs%2Fheads%2Fmain")));
    let r = rule_q(ANY, "/s", &[("name", "caf\u{e9}")]);
    assert!(r.matches("GET", "/s", Some("name=caf%C3%A9")));
}

#[test]
fn undecodable_value_fails_closed() {
    let r = rule_q(ANY, "/s", &[("q", "*")]);
    assert!(r.matches("GET", "/s", Some("q=ok")));
    assert!(!r.matches("GET", "/s", Some("q=%ff")));
}

#[test]
fn repeated_parameter_must_match_every_time() {
    let r = rule_q(ANY, "/s", &[("state", "open")]);
    assert!(r.matches("GET", "/s", Some("state=open&state=open")));
    assert!(!r.matches("GET", "/s", Some("state=open&state=closed")));
    assert!(!r.matches("GET", "/s", Some("state=closed&state=open")));
}

#[test]
fn parameter_without_value_has_empty_value() {
    let r = rule_q(ANY, "/s", &[("flag", "")]);
    assert!(r.matches("GET", "/s", Some("flag")));
    assert!(r.matches("GET", "/s", Some("flag=")));
    assert!(!r.matches("GET", "/s", Some("flag=1")));
    let r = rule_q(ANY, "/s", &[("flag", "*")]);
    assert!(r.matches("GET", "/s", Some("a=1&&flag")));
}

#[test]
fn extra_parameters_are_allowed() {
    let r = rule(ANY, "/s");
    assert!(r.matches("GET", "/s", Some("anything=goes")));
}

#[test]
fn bad_query_config_is_an_error() {
    assert_eq!(
        AcceptRule::new(ANY, "/s", &[("", "x")]).unwrap_err(),
        AcceptError::InvalidQueryName(String::new())
    );
    let err = AcceptRule::new(ANY, "/s", &[("q", "[x")]).unwrap_err();
    assert!(
        matches!(&err, AcceptError::InvalidQueryGlob { name, glob, .. } if name == "q" && glob == "[x"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("invalid glob '[x' for query parameter 'q': "),
        "{err}"
    );
}

// --- rule sets ---

#[test]
fn empty_rules_accept_everything() {
    let rules = AcceptRules::default();
    assert!(rules.is_empty());
    assert_eq!(rules.check("DELETE", "/anything", Some("x=1")), Ok(()));
    assert!(AcceptRules::new(Vec::new()).is_empty());
}

#[test]
fn any_matching_rule_accepts() {
    let rules = AcceptRules::new(vec![
        rule(&["GET"], "/repos/*/issues"),
        rule(&["POST"], "/repos/*/issues/*/comments"),
        rule_q(&["GET"], "/search", &[("type", "code")]),
    ]);
    assert!(!rules.is_empty());
    assert_eq!(rules.rules().len(), 3);
    assert_eq!(rules.check("GET", "/repos/a/issues", None), Ok(()));
    assert_eq!(
        rules.check("POST", "/repos/a/issues/1/comments", None),
        Ok(())
    );
    assert_eq!(rules.check("GET", "/search", Some("type=code&q=x")), Ok(()));
    assert!(rules.check("POST", "/repos/a/issues", None).is_err());
    assert!(rules.check("GET", "/search", Some("type=users")).is_err());
    assert!(rules.check("GET", "/admin", None).is_err());
}

#[test]
fn denial_names_method_and_path() {
    let rules: AcceptRules = [rule(&["GET"], "/ok")].into_iter().collect();
    let denied = rules.check("GET", "/x", None).unwrap_err();
    assert_eq!(
        denied,
        AcceptDenied {
            method: "GET".into(),
            path: "/x".into()
        }
    );
    assert_eq!(denied.to_string(), "no accept rule allows GET /x");
}

#[test]
fn normalised_traversal_cannot_escape_a_glob() {
    // The gateway normalises first; a traversal attempt never reaches the matcher.
    let rules = AcceptRules::new(vec![rule(&["GET"], "/public/**")]);
    for raw in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..;/admin",
    ] {
        assert!(crate::path::normalize_path(raw).is_err(), "{raw}");
    }
    let path = crate::path::normalize_path("/public//./docs").unwrap();
    assert_eq!(rules.check("GET", &path, None), Ok(()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn single_star_never_matches_across_slash(seg in "[a-z]{1,5}(/[a-z]{1,5}){1,3}") {
        let r = rule(ANY, "/a/*/b");
        let path = format!("/a/{seg}/b");
        prop_assert!(!r.matches("GET", &path, None));
    }

    #[test]
    fn query_check_never_panics(query in "[a-z=&%+0-9]{0,30}") {
        let r = rule_q(ANY, "/s", &[("a", "*")]);
        let _ = r.matches("GET", "/s", Some(&query));
    }
}

fn with_headers(headers: &[(&str, &str)]) -> AcceptRule {
    rule(&["GET"], "/api/**").with_headers(headers).unwrap()
}

#[test]
fn header_conditions_need_every_named_header_with_a_matching_value() {
    let rules = AcceptRules::new(vec![with_headers(&[
        ("X-Project", "acme-*"),
        ("accept", "application/json"),
    ])]);
    let ok: &[(&str, &[u8])] = &[("x-project", b"acme-web"), ("Accept", b"application/json")];
    assert!(rules.check_with_headers("GET", "/api/x", None, ok).is_ok());
    // One header missing.
    let missing: &[(&str, &[u8])] = &[("X-PROJECT", b"acme-web")];
    assert!(rules
        .check_with_headers("GET", "/api/x", None, missing)
        .is_err());
    // A value outside the glob.
    let wrong: &[(&str, &[u8])] = &[("x-project", b"globex"), ("accept", b"application/json")];
    assert!(rules
        .check_with_headers("GET", "/api/x", None, wrong)
        .is_err());
}

#[test]
fn a_repeated_header_cannot_smuggle_a_second_value_past_the_glob() {
    let rules = AcceptRules::new(vec![with_headers(&[("x-project", "acme-*")])]);
    let twice: &[(&str, &[u8])] = &[("x-project", b"acme-web"), ("x-project", b"globex")];
    assert!(rules
        .check_with_headers("GET", "/api/x", None, twice)
        .is_err());
    let not_utf8: &[(&str, &[u8])] = &[("x-project", b"acme-\xff")];
    assert!(rules
        .check_with_headers("GET", "/api/x", None, not_utf8)
        .is_err());
}

#[test]
fn a_rule_with_header_conditions_matches_nothing_when_no_headers_are_given() {
    let rules = AcceptRules::new(vec![with_headers(&[("x-project", "*")])]);
    assert!(rules.check("GET", "/api/x", None).is_err());
    // Rules without header conditions are unaffected.
    let plain = AcceptRules::new(vec![rule(&["GET"], "/api/**")]);
    assert!(plain.check_with_headers("GET", "/api/x", None, &[]).is_ok());
}

#[test]
fn bad_header_names_and_globs_are_refused_by_name() {
    let err = rule(&[], "/x")
        .with_headers(&[("bad name", "*")])
        .unwrap_err();
    assert_eq!(err, AcceptError::InvalidHeaderName("bad name".into()));
    let err = rule(&[], "/x").with_headers(&[("x-a", "[")]).unwrap_err();
    assert!(
        matches!(err, AcceptError::InvalidHeaderGlob { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("header 'x-a'"), "{err}");
}
