//! Route lookup cost for 10 and 10,000 routes, against a linear scan of the same specs.
//!
//! The table's indexes should make a lookup cost the same at both sizes; the linear scan shows
//! what they save.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use portcullis_routes::{
    HostMatch, Lookup, MethodSet, PathPrefix, Rewrite, RouteId, RouteSpec, RouteTable,
};

const SIZES: [usize; 2] = [10, 10_000];

/// A third of the routes per host kind, each with its own prefix; every fourth is GET-only.
fn specs(n: usize) -> Vec<RouteSpec> {
    (0..n)
        .map(|i| {
            let (host, prefix) = match i % 3 {
                0 => (
                    format!("svc{i}.example.com"),
                    format!("/api/v{}/svc{i}", i % 5),
                ),
                1 => (format!("*.t{i}.example.net"), format!("/t{i}")),
                _ => ("*".to_owned(), format!("/any{i}/items")),
            };
            let methods: &[&str] = if i % 4 == 0 { &["GET"] } else { &[] };
            RouteSpec {
                host: HostMatch::parse(&host).expect("valid host"),
                path_prefix: PathPrefix::parse(&prefix).expect("valid prefix"),
                methods: MethodSet::parse(methods).expect("valid methods"),
                rewrite: Rewrite::StripPrefix,
            }
        })
        .collect()
}

/// Requests as (name, host, path): each targets the last route of its kind, so the linear
/// scan cannot get lucky, and a miss must look at every tier.
fn requests(n: usize) -> Vec<(&'static str, String, String)> {
    let last = |kind: usize| (0..n).rev().find(|i| i % 3 == kind).expect("n >= 3");
    let (e, s, a) = (last(0), last(1), last(2));
    let deep_tail: String = (0..30).map(|k| format!("/seg{k}")).collect();
    vec![
        (
            "hit",
            format!("svc{e}.example.com"),
            format!("/api/v{}/svc{e}/items/42", e % 5),
        ),
        (
            "suffix_hit",
            format!("a.b.t{s}.example.net"),
            format!("/t{s}/x"),
        ),
        (
            "any_hit",
            "unknown.example.org".to_owned(),
            format!("/any{a}/items/7"),
        ),
        (
            "miss",
            "nobody.example.org".to_owned(),
            "/nothing/here".to_owned(),
        ),
        (
            "deep",
            format!("svc{e}.example.com"),
            format!("/api/v{}/svc{e}{deep_tail}", e % 5),
        ),
    ]
}

/// The documented order as a scan over every spec (hosts are given lowercase, without port).
fn linear_lookup(specs: &[RouteSpec], host: &str, path: &str, method: &str) -> Lookup {
    let mut best: Option<((u8, usize, usize), usize)> = None;
    for (i, spec) in specs.iter().enumerate() {
        let tier = match &spec.host {
            HostMatch::Any => (0, 0),
            HostMatch::Exact(name) if name == host => (2, 0),
            HostMatch::Suffix(d)
                if host
                    .strip_suffix(d.as_str())
                    .is_some_and(|r| r.ends_with('.')) =>
            {
                (1, d.len())
            }
            _ => continue,
        };
        if !spec.path_prefix.matches(path) {
            continue;
        }
        let rank = (tier.0, tier.1, spec.path_prefix.as_str().len());
        if best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, i));
        }
    }
    let Some((_, first)) = best else {
        return Lookup::NotFound;
    };
    let winner = &specs[first];
    let group = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.host == winner.host && s.path_prefix == winner.path_prefix);
    let mut any = None;
    for (i, s) in group {
        match &s.methods {
            MethodSet::Any => any = any.or(Some(i)),
            only if only.allows(method) => return Lookup::Matched(RouteId(i)),
            _ => {}
        }
    }
    match any {
        Some(i) => Lookup::Matched(RouteId(i)),
        None => Lookup::MethodNotAllowed(RouteId(first)),
    }
}

fn bench_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookup");
    for n in SIZES {
        let specs = specs(n);
        let table = RouteTable::build(&specs).expect("no conflicts");
        for (name, host, path) in requests(n) {
            // Both implementations must agree, or the comparison means nothing.
            let expected = table.lookup(&host, &path, "GET");
            assert_eq!(
                linear_lookup(&specs, &host, &path, "GET"),
                expected,
                "{name}"
            );
            assert_eq!(expected == Lookup::NotFound, name == "miss", "{name}");

            group.bench_with_input(BenchmarkId::new(name, n), &(), |b, ()| {
                b.iter(|| table.lookup(black_box(&host), black_box(&path), black_box("GET")))
            });
            group.bench_with_input(
                BenchmarkId::new(format!("linear_{name}"), n),
                &(),
                |b, ()| {
                    b.iter(|| {
                        linear_lookup(&specs, black_box(&host), black_box(&path), black_box("GET"))
                    })
                },
            );
        }
    }
    group.finish();
}

// Written out rather than with `criterion_group!`, whose generated function has no docs.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench_lookup(&mut c);
    c.final_summary();
}
