//! The `routes` target: [`RouteTable::build`] and [`RouteTable::lookup`].
//!
//! Lookups are compared with [`reference_lookup`], a direct transcription of the matching
//! order documented on [`RouteTable`] that scans every spec with the per-spec matchers
//! ([`HostMatch::matches`], [`PathPrefix::matches`], [`MethodSet::allows`]). The table's
//! indexes (hash maps, segment tries, suffix walk) must give the same answer for any request.

use arbitrary::{Result, Unstructured};
use portcullis_routes::{
    HostMatch, Lookup, MethodSet, PathPrefix, Rewrite, RouteError, RouteId, RouteSpec, RouteTable,
};

use crate::input::{joined, word, words};

/// Host names: few, so that routes share them, with case, port and dot variants.
const HOSTS: &[&str] = &[
    "example.com",
    "api.example.com",
    "a.api.example.com",
    "eu.example.com",
    "x.eu.example.com",
    "EXAMPLE.com",
    "com",
    "a..b",
    "-",
    "xn--bcher-kva.example",
    "127.0.0.1",
    "[::1]",
];

const SEGMENTS: &[&str] = &[
    "a", "b", "c", "v1", "x.y", "", ".", "..", "%41", "a b", "?", "é",
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "get", "PURGE", "", "G T", "*"];

/// Requests use a few methods beyond those routes name.
const REQUEST_METHODS: &[&str] = &["GET", "POST", "PUT", "get", "PURGE", "DELETE", ""];

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let _ = run_structured(&mut Unstructured::new(data));
}

fn run_structured(u: &mut Unstructured<'_>) -> Result<()> {
    let n = u.int_in_range(0..=12)?;
    let specs: Vec<RouteSpec> = (0..n).map(|_| spec(u)).collect::<Result<_>>()?;
    let table = match RouteTable::build(&specs) {
        Ok(table) => table,
        Err(errors) => {
            check_build_errors(&specs, &errors);
            return Ok(());
        }
    };
    assert_eq!(table.len(), specs.len());
    assert_eq!(table.specs(), specs.as_slice());
    assert!(
        specs.iter().all(is_valid),
        "build accepted an invalid spec: {specs:?}"
    );
    // Conversely, a table that built has no invalid spec and no conflicting pair.
    for (i, a) in specs.iter().enumerate() {
        for b in &specs[i + 1..] {
            assert!(
                !conflict(a, b),
                "build accepted two routes that cannot be told apart: {a:?} and {b:?}"
            );
        }
    }
    check_probes(&table);
    for _ in 0..u.int_in_range(0..=8)? {
        let host = request_host(u)?;
        let path = request_path(u)?;
        let method = word(u, REQUEST_METHODS)?;
        check_lookup(&table, &host, &path, &method);
    }
    Ok(())
}

/// A spec, usually built through the `parse` functions, sometimes raw (which `build` must
/// then refuse if `parse` would have).
fn spec(u: &mut Unstructured<'_>) -> Result<RouteSpec> {
    let raw = u.ratio(1u8, 8u8)?;
    let host = match u.int_in_range(0..=3)? {
        0 => HostMatch::Any,
        1 if raw => HostMatch::Exact(word(u, HOSTS)?),
        2 if raw => HostMatch::Suffix(word(u, HOSTS)?),
        1 => parse_or_any(HostMatch::parse(&word(u, HOSTS)?)),
        _ => parse_or_any(HostMatch::parse(&format!("*.{}", word(u, HOSTS)?))),
    };
    let prefix = joined(u, SEGMENTS, "/", 3)?;
    let path_prefix = PathPrefix::parse(&prefix).unwrap_or_else(|_| PathPrefix::root());
    let methods = if u.arbitrary()? {
        MethodSet::Any
    } else if raw {
        MethodSet::Only(words(u, METHODS, 3)?)
    } else {
        MethodSet::parse(&words(u, METHODS, 3)?).unwrap_or(MethodSet::Any)
    };
    let rewrite = match u.int_in_range(0..=2)? {
        0 => Rewrite::Keep,
        1 => Rewrite::StripPrefix,
        _ if raw => Rewrite::ReplacePrefix(joined(u, SEGMENTS, "/", 2)?),
        _ => {
            Rewrite::replace_prefix(&(joined(u, SEGMENTS, "/", 2)? + "/")).unwrap_or(Rewrite::Keep)
        }
    };
    Ok(RouteSpec {
        host,
        path_prefix,
        methods,
        rewrite,
    })
}

fn parse_or_any(parsed: std::result::Result<HostMatch, RouteError>) -> HostMatch {
    parsed.unwrap_or(HostMatch::Any)
}

/// Hosts as requests send them: route hosts with case, port and trailing-dot variants, a
/// label in front, or anything at all.
fn request_host(u: &mut Unstructured<'_>) -> Result<String> {
    let mut host = word(u, HOSTS)?;
    if u.arbitrary()? {
        host = format!("{}.{host}", word(u, &["a", "b", "", "A"])?);
    }
    if u.arbitrary()? {
        host = host.to_ascii_uppercase();
    }
    host.push_str(&word(u, &["", ".", ":8080", ".:443", ":", ".."])?);
    Ok(host)
}

fn request_path(u: &mut Unstructured<'_>) -> Result<String> {
    let path = joined(u, SEGMENTS, "/", 4)?;
    Ok(match u.int_in_range(0..=3)? {
        0 => format!("{path}/"),
        1 if path.is_empty() => "/".to_owned(),
        2 => path.trim_start_matches('/').to_owned(),
        _ => path,
    })
}

/// Whether `build` must refuse the pair: same host match, same prefix, a method in common.
fn conflict(a: &RouteSpec, b: &RouteSpec) -> bool {
    a.host == b.host
        && a.path_prefix == b.path_prefix
        && match (&a.methods, &b.methods) {
            (MethodSet::Any, MethodSet::Any) => true,
            (MethodSet::Only(x), MethodSet::Only(y)) => x.iter().any(|m| y.contains(m)),
            _ => false,
        }
}

/// Every error names a real problem (an invalid spec, or a pair that really conflicts), and
/// every problem is named.
fn check_build_errors(specs: &[RouteSpec], errors: &[RouteError]) {
    assert!(!errors.is_empty(), "build failed without an error");
    let mut expected: Vec<(usize, usize)> = Vec::new();
    for (i, a) in specs.iter().enumerate() {
        if !is_valid(a) {
            expected.push((i, i));
        }
        for (j, b) in specs.iter().enumerate().skip(i + 1) {
            if conflict(a, b) {
                expected.push((i, j));
            }
        }
    }
    let mut reported: Vec<(usize, usize)> = errors
        .iter()
        .filter_map(|e| match e {
            RouteError::InvalidSpec { index, .. } => Some((*index, *index)),
            RouteError::Conflict { first, second, .. } => Some((*first, *second)),
            _ => None,
        })
        .collect();
    expected.sort_unstable();
    reported.sort_unstable();
    assert_eq!(reported, expected, "errors {errors:?} for {specs:?}");
    for error in errors {
        match error {
            RouteError::InvalidSpec { index, .. } => {
                let spec = &specs[*index];
                assert!(
                    !is_valid(spec),
                    "spec #{index} {spec:?} refused as invalid: {error}"
                );
            }
            RouteError::Conflict { first, second, .. } => {
                assert!(first < second, "{error}");
                assert!(
                    conflict(&specs[*first], &specs[*second]),
                    "routes #{first} and #{second} do not conflict: {error}"
                );
            }
            other => panic!("build returned an error it documents no use for: {other}"),
        }
    }
}

/// A spec is valid when every part is what its `parse` function would have produced.
fn is_valid(spec: &RouteSpec) -> bool {
    let host = match &spec.host {
        HostMatch::Any => true,
        h => HostMatch::parse(&h.to_string()).is_ok_and(|p| p == *h),
    };
    let methods = match &spec.methods {
        MethodSet::Any => true,
        MethodSet::Only(list) => {
            !list.is_empty()
                && MethodSet::parse(list).is_ok()
                && !list
                    .iter()
                    .any(|m| m.bytes().any(|b| b.is_ascii_lowercase()))
        }
    };
    let rewrite = match &spec.rewrite {
        Rewrite::ReplacePrefix(r) => PathPrefix::parse(r).is_ok(),
        _ => true,
    };
    host && methods && rewrite
}

/// For every route: its own host, prefix and methods find a route with the same host match,
/// prefix and a method the request uses (itself, unless an `Only` route wins over an `Any`
/// one).
fn check_probes(table: &RouteTable) {
    for (i, spec) in table.specs().iter().enumerate() {
        let hosts: Vec<String> = match &spec.host {
            HostMatch::Any => vec!["unknown.invalid".into(), String::new()],
            HostMatch::Exact(h) => vec![h.clone(), h.to_ascii_uppercase(), format!("{h}.:443")],
            HostMatch::Suffix(d) => vec![format!("x.{d}"), format!("X.{d}:1"), d.clone()],
        };
        let prefix = spec.path_prefix.as_str();
        let paths = [
            prefix.to_owned(),
            format!("{}/", prefix.trim_end_matches('/')),
            format!("{}/z", prefix.trim_end_matches('/')),
            format!("{prefix}z"),
        ];
        let methods: Vec<&str> = match &spec.methods {
            MethodSet::Any => vec!["GET", "BREW"],
            MethodSet::Only(m) => m.iter().map(String::as_str).chain(["BREW"]).collect(),
        };
        for host in &hosts {
            for path in &paths {
                for method in &methods {
                    let found = check_lookup(table, host, path, method);
                    let own = spec.host.matches(host)
                        && spec.path_prefix.matches(path)
                        && spec.methods.allows(method);
                    if own && path == prefix && matches!(spec.host, HostMatch::Exact(_)) {
                        // Its own exact host and prefix: nothing is more specific, so the
                        // winner shares both (another route may take the method).
                        let Lookup::Matched(RouteId(j)) = found else {
                            panic!("route #{i} {spec:?} not found for {host:?} {path:?} {method}");
                        };
                        let winner = &table.specs()[j];
                        assert!(
                            winner.host == spec.host && winner.path_prefix == spec.path_prefix,
                            "route #{i} lost its own prefix to #{j}"
                        );
                    }
                }
            }
        }
    }
}

/// Looks up one request and checks the answer against [`reference_lookup`] and the rewrite
/// of the matched route.
pub fn check_lookup(table: &RouteTable, host: &str, path: &str, method: &str) -> Lookup {
    let found = table.lookup(host, path, method);
    let expected = reference_lookup(table.specs(), host, path, method);
    assert_eq!(
        found,
        expected,
        "lookup({host:?}, {path:?}, {method:?}) in {:?}",
        table.specs()
    );
    if let Lookup::Matched(id) = found {
        let Some(spec) = table.get(id) else {
            panic!("{id:?} is out of range");
        };
        check_rewrite(spec, path);
    }
    found
}

/// The documented matching order, by scanning every spec.
pub fn reference_lookup(specs: &[RouteSpec], host: &str, path: &str, method: &str) -> Lookup {
    // Host tiers, most specific first: exact, longer suffix, shorter suffix, any.
    let tier = |h: &HostMatch| match h {
        HostMatch::Exact(_) => (0, 0),
        HostMatch::Suffix(d) => (1, usize::MAX - d.len()),
        HostMatch::Any => (2, 0),
    };
    let candidates = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.host.matches(host) && s.path_prefix.matches(path));
    let Some(best_tier) = candidates.clone().map(|(_, s)| tier(&s.host)).min() else {
        return Lookup::NotFound;
    };
    let in_tier = candidates.filter(|(_, s)| tier(&s.host) == best_tier);
    let Some(longest) = in_tier
        .clone()
        .map(|(_, s)| s.path_prefix.as_str().len())
        .max()
    else {
        return Lookup::NotFound;
    };
    let routes: Vec<(usize, &RouteSpec)> = in_tier
        .filter(|(_, s)| s.path_prefix.as_str().len() == longest)
        .collect();
    let only = routes
        .iter()
        .find(|(_, s)| matches!(s.methods, MethodSet::Only(_)) && s.methods.allows(method));
    let any = routes
        .iter()
        .find(|(_, s)| matches!(s.methods, MethodSet::Any));
    match (only, any, routes.first()) {
        (Some((i, _)), _, _) | (None, Some((i, _)), _) => Lookup::Matched(RouteId(*i)),
        (None, None, Some((i, _))) => Lookup::MethodNotAllowed(RouteId(*i)),
        (None, None, None) => Lookup::NotFound,
    }
}

/// The rewrite replaces exactly the matched prefix and keeps the query.
fn check_rewrite(spec: &RouteSpec, path: &str) {
    if path.contains('?') {
        // Not a path: `apply` reads everything from the first '?' as the query.
        return;
    }
    for query in ["", "?q=/a?b"] {
        let input = format!("{path}{query}");
        let out = spec.rewrite.apply(&spec.path_prefix, &input);
        let rest = &path[spec.path_prefix.as_str().trim_end_matches('/').len()..];
        let replacement = match &spec.rewrite {
            Rewrite::Keep => {
                assert_eq!(out, input, "Keep changed the path");
                continue;
            }
            Rewrite::StripPrefix => "",
            Rewrite::ReplacePrefix(r) => r.strip_suffix('/').unwrap_or(r),
        };
        let expected = if replacement.is_empty() && rest.is_empty() {
            format!("/{query}")
        } else {
            format!("{replacement}{rest}{query}")
        };
        assert_eq!(out, expected, "{:?} of {input:?}", spec.rewrite);
    }
}
