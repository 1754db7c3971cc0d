use proptest::prelude::*;

use super::*;
use crate::Lookup::{Matched, MethodNotAllowed, NotFound};

/// `spec("*.example.com", "/pd", &["GET"])`; an empty method list is `Any`.
fn spec(host: &str, prefix: &str, methods: &[&str]) -> RouteSpec {
    RouteSpec {
        host: HostMatch::parse(host).unwrap(),
        path_prefix: PathPrefix::parse(prefix).unwrap(),
        methods: MethodSet::parse(methods).unwrap(),
        rewrite: Rewrite::Keep,
    }
}

fn table(specs: &[RouteSpec]) -> RouteTable {
    RouteTable::build(specs).unwrap()
}

fn build_errors(specs: &[RouteSpec]) -> Vec<String> {
    RouteTable::build(specs)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn empty_table_finds_nothing() {
    let t = table(&[]);
    assert!(t.is_empty());
    assert_eq!(t.len(), 0);
    assert_eq!(t.lookup("example.com", "/", "GET"), NotFound);
}

#[test]
fn ids_index_the_specs() {
    let specs = [spec("a.com", "/a", &[]), spec("*", "/", &[])];
    let t = table(&specs);
    assert_eq!(t.len(), 2);
    assert!(!t.is_empty());
    assert_eq!(t.get(RouteId(1)), Some(&specs[1]));
    assert_eq!(t.get(RouteId(2)), None);
    assert_eq!(t.specs(), &specs);
    assert_eq!(t.lookup("a.com", "/a", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("b.com", "/a", "GET"), Matched(RouteId(1)));
}

#[test]
fn exact_beats_suffix_beats_any() {
    let t = table(&[
        spec("*", "/pd", &[]),
        spec("*.example.com", "/pd", &[]),
        spec("api.example.com", "/pd", &[]),
    ]);
    assert_eq!(
        t.lookup("api.example.com", "/pd", "GET"),
        Matched(RouteId(2))
    );
    assert_eq!(
        t.lookup("web.example.com", "/pd", "GET"),
        Matched(RouteId(1))
    );
    assert_eq!(t.lookup("example.com", "/pd", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("other.org", "/pd/x", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("", "/pd", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("other.org", "/pdx", "GET"), NotFound);
}

#[test]
fn longer_suffix_beats_shorter() {
    let t = table(&[
        spec("*.example.com", "/", &[]),
        spec("*.eu.example.com", "/", &[]),
        spec("*.com", "/", &[]),
    ]);
    assert_eq!(
        t.lookup("a.eu.example.com", "/x", "GET"),
        Matched(RouteId(1))
    );
    assert_eq!(
        t.lookup("a.b.eu.example.com", "/x", "GET"),
        Matched(RouteId(1))
    );
    // `*.eu.example.com` does not match `eu.example.com` itself.
    assert_eq!(t.lookup("eu.example.com", "/x", "GET"), Matched(RouteId(0)));
    assert_eq!(
        t.lookup("a.us.example.com", "/x", "GET"),
        Matched(RouteId(0))
    );
    assert_eq!(t.lookup("example.com", "/x", "GET"), Matched(RouteId(2)));
    assert_eq!(t.lookup("com", "/x", "GET"), NotFound);
}

#[test]
fn a_tier_without_a_matching_prefix_falls_through() {
    let t = table(&[
        spec("api.example.com", "/pd", &[]),
        spec("*.eu.example.com", "/eu", &[]),
        spec("*.example.com", "/status", &[]),
        spec("*", "/health", &[]),
    ]);
    assert_eq!(
        t.lookup("api.example.com", "/pd", "GET"),
        Matched(RouteId(0))
    );
    assert_eq!(
        t.lookup("api.example.com", "/status", "GET"),
        Matched(RouteId(2))
    );
    assert_eq!(
        t.lookup("api.example.com", "/health", "GET"),
        Matched(RouteId(3))
    );
    assert_eq!(
        t.lookup("a.eu.example.com", "/eu/x", "GET"),
        Matched(RouteId(1))
    );
    assert_eq!(
        t.lookup("a.eu.example.com", "/status", "GET"),
        Matched(RouteId(2))
    );
    assert_eq!(
        t.lookup("a.eu.example.com", "/health", "GET"),
        Matched(RouteId(3))
    );
    assert_eq!(t.lookup("api.example.com", "/nope", "GET"), NotFound);
}

#[test]
fn the_host_tier_decides_before_the_prefix_length() {
    let t = table(&[
        spec("*", "/pd/incidents", &[]),
        spec("api.example.com", "/", &[]),
    ]);
    assert_eq!(
        t.lookup("api.example.com", "/pd/incidents", "GET"),
        Matched(RouteId(1))
    );
    assert_eq!(
        t.lookup("other.org", "/pd/incidents", "GET"),
        Matched(RouteId(0))
    );
}

#[test]
fn longest_prefix_wins_within_a_tier() {
    let t = table(&[
        spec("*", "/", &[]),
        spec("*", "/pd", &[]),
        spec("*", "/pd/incidents", &[]),
        spec("*", "/pd/incidents/archive", &[]),
    ]);
    assert_eq!(t.lookup("h", "/", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/other", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/pd", "GET"), Matched(RouteId(1)));
    assert_eq!(t.lookup("h", "/pd/", "GET"), Matched(RouteId(1)));
    assert_eq!(t.lookup("h", "/pd/services", "GET"), Matched(RouteId(1)));
    assert_eq!(t.lookup("h", "/pd/incidents", "GET"), Matched(RouteId(2)));
    assert_eq!(
        t.lookup("h", "/pd/incidents/42", "GET"),
        Matched(RouteId(2))
    );
    // Intermediate trie nodes without routes are skipped over, not stopped at.
    assert_eq!(
        t.lookup("h", "/pd/incidents/archive/1", "GET"),
        Matched(RouteId(3))
    );
}

#[test]
fn trie_nodes_without_routes_do_not_match() {
    let t = table(&[spec("*", "/", &[]), spec("*", "/a/b/c", &[])]);
    assert_eq!(t.lookup("h", "/a", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/a/b", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/a/b/d", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/a/b/c/d", "GET"), Matched(RouteId(1)));
}

#[test]
fn prefixes_respect_segment_boundaries() {
    let t = table(&[spec("*", "/foo", &[]), spec("*", "/foo/bar", &[])]);
    assert_eq!(t.lookup("h", "/foo", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/foo/", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/foo/baz", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/foo/barbaz", "GET"), Matched(RouteId(0)));
    assert_eq!(t.lookup("h", "/foo/bar/", "GET"), Matched(RouteId(1)));
    assert_eq!(t.lookup("h", "/foobar", "GET"), NotFound);
    assert_eq!(t.lookup("h", "foo", "GET"), NotFound);
    assert_eq!(t.lookup("h", "//foo", "GET"), NotFound);
    assert_eq!(t.lookup("h", "", "GET"), NotFound);
}

#[test]
fn root_prefix_matches_any_path() {
    let t = table(&[spec("*", "/", &[])]);
    for path in ["/", "/a/b", "", "*", "//x"] {
        assert_eq!(t.lookup("h", path, "GET"), Matched(RouteId(0)), "{path:?}");
    }
}

#[test]
fn hosts_compare_case_insensitively_without_port_or_trailing_dot() {
    let t = table(&[
        spec("api.example.com", "/", &[]),
        spec("*.example.com", "/", &[]),
    ]);
    for host in [
        "api.example.com",
        "API.EXAMPLE.COM",
        "api.example.com:8443",
        "Api.Example.Com.",
        "api.example.com.:80",
    ] {
        assert_eq!(t.lookup(host, "/", "GET"), Matched(RouteId(0)), "{host}");
    }
    assert_eq!(
        t.lookup("WWW.Example.Com:1", "/", "GET"),
        Matched(RouteId(1))
    );
    assert_eq!(t.lookup("example.com", "/", "GET"), NotFound);
}

#[test]
fn ipv6_literals_and_oversized_hosts_only_reach_any_routes() {
    let t = table(&[spec("*.example.com", "/", &[]), spec("*", "/any", &[])]);
    assert_eq!(t.lookup("[::1]:8080", "/any", "GET"), Matched(RouteId(1)));
    assert_eq!(t.lookup("[::1]", "/", "GET"), NotFound);
    let long = format!("{}.example.com", "a".repeat(300));
    assert_eq!(t.lookup(&long, "/", "GET"), NotFound);
    assert_eq!(t.lookup(&long, "/any", "GET"), Matched(RouteId(1)));
    let fits = format!("{}.example.com", "a".repeat(200));
    assert_eq!(t.lookup(&fits, "/", "GET"), Matched(RouteId(0)));
}

#[test]
fn method_specific_route_is_preferred_over_any() {
    // Spec order must not matter: the `Any` route comes first here.
    let t = table(&[
        spec("*", "/pd", &[]),
        spec("*", "/pd", &["GET", "HEAD"]),
        spec("*", "/pd", &["POST"]),
    ]);
    assert_eq!(t.lookup("h", "/pd", "GET"), Matched(RouteId(1)));
    assert_eq!(t.lookup("h", "/pd/x", "HEAD"), Matched(RouteId(1)));
    assert_eq!(t.lookup("h", "/pd", "POST"), Matched(RouteId(2)));
    assert_eq!(t.lookup("h", "/pd", "DELETE"), Matched(RouteId(0)));
    // Methods are case-sensitive: `get` is some other method, which the `Any` route takes.
    assert_eq!(t.lookup("h", "/pd", "get"), Matched(RouteId(0)));
}

#[test]
fn method_not_allowed_names_the_first_route_by_spec_order() {
    let t = table(&[
        spec("*", "/", &[]),
        spec("*", "/pd", &["POST"]),
        spec("*", "/pd", &["GET"]),
    ]);
    assert_eq!(t.lookup("h", "/pd/x", "GET"), Matched(RouteId(2)));
    assert_eq!(
        t.lookup("h", "/pd/x", "DELETE"),
        MethodNotAllowed(RouteId(1))
    );
    assert_eq!(t.lookup("h", "/pd", "get"), MethodNotAllowed(RouteId(1)));
}

#[test]
fn the_method_never_falls_back_to_a_shorter_prefix_or_another_host() {
    let t = table(&[
        spec("*", "/", &[]),
        spec("*", "/pd", &[]),
        spec("*.example.com", "/pd", &[]),
        spec("api.example.com", "/", &[]),
        spec("api.example.com", "/pd", &["GET"]),
    ]);
    assert_eq!(
        t.lookup("api.example.com", "/pd/x", "GET"),
        Matched(RouteId(4))
    );
    // Routes 3, 2, 1 and 0 all match host and path and accept POST, but 4 wins on host and
    // prefix, so the answer is 405, not a different upstream.
    assert_eq!(
        t.lookup("api.example.com", "/pd/x", "POST"),
        MethodNotAllowed(RouteId(4))
    );
    assert_eq!(
        t.lookup("api.example.com", "/other", "POST"),
        Matched(RouteId(3))
    );
    assert_eq!(
        t.lookup("web.example.com", "/pd", "POST"),
        Matched(RouteId(2))
    );
}

#[test]
fn conflicts_name_both_routes_host_and_prefix() {
    let errors = RouteTable::build(&[
        spec("api.example.com", "/pd", &[]),
        spec("API.example.com.", "/pd/", &[]),
    ])
    .unwrap_err();
    assert_eq!(
        errors,
        [RouteError::Conflict {
            first: 0,
            second: 1,
            host: "api.example.com".to_owned(),
            prefix: "/pd".to_owned(),
            methods: "any method".to_owned(),
        }]
    );
    assert_eq!(
        errors[0].to_string(),
        "routes #0 and #1 can never be told apart: both match host 'api.example.com', \
         path prefix '/pd' and any method"
    );
}

#[test]
fn every_conflicting_pair_is_reported() {
    let errors = build_errors(&[
        spec("*.example.com", "/", &["GET", "POST"]),
        spec("*", "/", &[]),
        spec("*.example.com", "/", &["post", "PUT"]),
        spec("*", "/", &[]),
        spec("*.example.com", "/", &["PUT", "GET"]),
    ]);
    assert_eq!(
        errors,
        [
            "routes #0 and #2 can never be told apart: both match host '*.example.com', \
             path prefix '/' and method POST",
            "routes #1 and #3 can never be told apart: both match host '*', \
             path prefix '/' and any method",
            "routes #0 and #4 can never be told apart: both match host '*.example.com', \
             path prefix '/' and method GET",
            "routes #2 and #4 can never be told apart: both match host '*.example.com', \
             path prefix '/' and method PUT",
        ]
    );
}

#[test]
fn routes_that_can_be_told_apart_do_not_conflict() {
    let t = table(&[
        spec("*", "/pd", &["GET"]),
        spec("*", "/pd", &["POST"]),
        spec("*", "/pd", &[]),
        spec("*", "/pd/x", &[]),
        spec("*.pd.com", "/pd", &[]),
        spec("pd.com", "/pd", &[]),
        spec("*", "/", &[]),
    ]);
    assert_eq!(t.len(), 7);
}

#[test]
fn specs_built_by_hand_are_checked() {
    let mut bad = spec("*", "/", &[]);
    bad.host = HostMatch::Exact("API.example.com".to_owned());
    bad.methods = MethodSet::Only(vec!["get".to_owned()]);
    let mut bad_rewrite = spec("*", "/b", &[]);
    bad_rewrite.rewrite = Rewrite::ReplacePrefix("v2".to_owned());
    let errors = build_errors(&[spec("*", "/a", &[]), bad, bad_rewrite]);
    assert_eq!(
        errors,
        [
            "route #1: invalid host 'API.example.com': must be lowercase",
            "route #2: invalid rewrite prefix 'v2': must start with '/'",
        ]
    );
}

// --- Property: the indexes agree with a linear scan of the documented order. ---

/// The documented order, as directly as it can be written: rank every route whose host and
/// prefix match by (host tier, prefix length), take the best, then apply the method rule.
fn naive_lookup(specs: &[RouteSpec], host: &str, path: &str, method: &str) -> Lookup {
    let host = naive_host(host);
    let host_rank = |m: &HostMatch| match (m, &host) {
        (HostMatch::Any, _) => Some((0, 0)),
        (HostMatch::Exact(name), Some(h)) if h == name => Some((2, 0)),
        (HostMatch::Suffix(d), Some(h)) if h.ends_with(&format!(".{d}")) => Some((1, d.len())),
        _ => None,
    };
    // ((host tier, suffix length), prefix length): bigger is better.
    type Rank = ((u8, usize), usize);
    let ranked: Vec<(usize, Rank)> = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.path_prefix.matches(path))
        .filter_map(|(i, s)| Some((i, (host_rank(&s.host)?, s.path_prefix.as_str().len()))))
        .collect();
    let Some(best) = ranked.iter().map(|(_, rank)| *rank).max() else {
        return NotFound;
    };
    let group: Vec<usize> = ranked
        .iter()
        .filter(|(_, rank)| *rank == best)
        .map(|(i, _)| *i)
        .collect();
    let allows = |i: &&usize| specs[**i].methods.allows(method);
    let is_only = |i: &&usize| matches!(specs[**i].methods, MethodSet::Only(_));
    if let Some(&i) = group.iter().filter(is_only).find(allows) {
        return Matched(RouteId(i));
    }
    if let Some(&i) = group.iter().find(allows) {
        return Matched(RouteId(i));
    }
    MethodNotAllowed(RouteId(group[0]))
}

/// Port, trailing dot and case removed; `None` (only `Any` matches) past 255 bytes.
fn naive_host(host: &str) -> Option<String> {
    let host = match host.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((addr, _)) => format!("[{addr}]"),
            None => host.to_owned(),
        },
        None => host.split(':').next().unwrap().to_owned(),
    };
    let host = host.strip_suffix('.').unwrap_or(&host).to_ascii_lowercase();
    (host.len() <= 255).then_some(host)
}

/// The pairs `build` must reject, by brute force.
fn naive_conflicts(specs: &[RouteSpec]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for second in 0..specs.len() {
        for first in 0..second {
            let (a, b) = (&specs[first], &specs[second]);
            let methods_clash = match (&a.methods, &b.methods) {
                (MethodSet::Any, MethodSet::Any) => true,
                (MethodSet::Only(x), MethodSet::Only(y)) => x.iter().any(|m| y.contains(m)),
                _ => false,
            };
            if a.host == b.host && a.path_prefix == b.path_prefix && methods_clash {
                pairs.push((first, second));
            }
        }
    }
    pairs.sort_by_key(|&(first, second)| (second, first));
    pairs
}

fn arb_spec() -> impl Strategy<Value = RouteSpec> {
    let host = prop::sample::select(vec![
        "*",
        "a.com",
        "b.a.com",
        "x.b.a.com",
        "*.a.com",
        "*.b.a.com",
        "*.com",
    ]);
    let prefix = prop::sample::select(vec!["/", "/a", "/a/b", "/ab", "/a/b/c", "/b", "/b/a"]);
    let methods = prop::sample::select(vec![
        &[][..],
        &["GET"][..],
        &["POST"][..],
        &["GET", "POST"][..],
        &["PUT"][..],
    ]);
    (host, prefix, methods).prop_map(|(h, p, m)| spec(h, p, m))
}

/// Keeps the first of each conflicting group, so the set builds.
fn without_conflicts(specs: Vec<RouteSpec>) -> Vec<RouteSpec> {
    let mut kept: Vec<RouteSpec> = Vec::new();
    for s in specs {
        let mut with = kept.clone();
        with.push(s);
        if naive_conflicts(&with).is_empty() {
            kept = with;
        }
    }
    kept
}

fn arb_host() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a.com",
            "A.COM:8080",
            "b.a.com.",
            "x.B.a.com",
            "y.x.b.a.com:1",
            "z.a.com",
            "com",
            ".a.com",
            "a..a.com",
            "other.org",
            "",
            "[::1]:80",
        ])
        .prop_map(str::to_owned),
        "[abcxyACo.]{0,12}(:[0-9]{1,4})?",
    ]
}

fn arb_path() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "c", ""]), 0..5)
            .prop_map(|segs| format!("/{}", segs.join("/"))),
        "[/abc]{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lookup_agrees_with_a_linear_scan(
        specs in prop::collection::vec(arb_spec(), 0..14).prop_map(without_conflicts),
        requests in prop::collection::vec(
            (arb_host(), arb_path(), prop::sample::select(vec!["GET", "POST", "PUT", "get"])),
            1..16,
        ),
    ) {
        let t = RouteTable::build(&specs).unwrap();
        for (host, path, method) in &requests {
            prop_assert_eq!(
                t.lookup(host, path, method),
                naive_lookup(&specs, host, path, method),
                "{} {} {}", method, host, path
            );
        }
    }

    #[test]
    fn build_reports_exactly_the_conflicting_pairs(
        specs in prop::collection::vec(arb_spec(), 0..14),
    ) {
        let expected = naive_conflicts(&specs);
        let reported: Vec<(usize, usize)> = match RouteTable::build(&specs) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|e| match e {
                    RouteError::Conflict { first, second, .. } => (*first, *second),
                    other => panic!("unexpected {other}"),
                })
                .collect(),
        };
        prop_assert_eq!(reported, expected);
    }
}
