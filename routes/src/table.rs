//! The route table: indexes built once, looked up per request.

use rustc_hash::FxBuildHasher;
use std::collections::HashMap;

use crate::host::{lowercase_host, HOST_BUF_LEN};
use crate::{HostMatch, MethodSet, PathPrefix, Rewrite, RouteError};

#[cfg(test)]
mod tests;

/// A route, as an index into the slice of specs given to [`RouteTable::build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteId(pub usize);

/// One route as the table sees it: what it matches and how it rewrites the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteSpec {
    /// The hosts it answers.
    pub host: HostMatch,
    /// The paths it answers.
    pub path_prefix: PathPrefix,
    /// The methods it accepts.
    pub methods: MethodSet,
    /// How the path is rewritten before it goes upstream.
    pub rewrite: Rewrite,
}

/// The outcome of [`RouteTable::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// This route answers the request.
    Matched(RouteId),
    /// The request's host and path belong to this route (the first, in spec order, of the
    /// routes sharing the winning host match and prefix), but none of them accepts the method.
    MethodNotAllowed(RouteId),
    /// No route's host and path match.
    NotFound,
}

/// The compiled route table.
///
/// # Matching order
///
/// 1. **Host tier.** An `Exact` host beats any `Suffix`; a longer suffix beats a shorter one
///    (`*.eu.example.com` beats `*.example.com`); `Any` comes last. The first tier, in that
///    order, with a route whose prefix matches the path decides; a tier where no prefix
///    matches falls through to the next.
/// 2. **Path.** Within that tier, the longest matching prefix wins. Prefixes match whole
///    segments: `/foo` matches `/foo`, `/foo/` and `/foo/bar`, not `/foobar`.
/// 3. **Method.** Among the routes sharing that host match and that prefix, a method-specific
///    (`Only`) route that allows the method wins, then an `Any` route. If none allows it, the
///    answer is [`Lookup::MethodNotAllowed`] with the first of them in spec order. The method
///    never makes the lookup fall back to a shorter prefix or a less specific host: that
///    would silently send the request to a different upstream.
///
/// Ties cannot happen: [`RouteTable::build`] rejects two routes with the same host match, the
/// same prefix and a method in common (two `Any` routes included).
///
/// # Cost
///
/// A lookup does one hash lookup for the exact host, one per `.` in the host for the suffix
/// tiers, and one per path segment in each tier it tries; it does not grow with the number of
/// routes and does not allocate.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    specs: Box<[RouteSpec]>,
    exact: Map<Node>,
    suffix: Map<Node>,
    any: Node,
}

/// Maps keyed by host names and path segments.
///
/// They hash with rustc's Fx hash (`rustc-hash`) rather than the DoS-resistant default: the
/// keys come from the config, and a request only probes, so a chosen request cannot make a
/// probe sequence longer. A lookup hashes the host, each of its suffixes and each path segment;
/// with SipHash that made `benches/lookup.rs` 15-30% slower.
type Map<V> = HashMap<Box<str>, V, FxBuildHasher>;

/// A segment trie over path prefixes, for the routes of one host match.
#[derive(Debug, Clone, Default)]
struct Node {
    children: Map<Node>,
    /// Routes whose prefix ends here, in spec order.
    routes: Vec<RouteId>,
}

// === impl RouteTable ===

impl RouteTable {
    /// Compiles the specs into indexes. [`RouteId`]`(i)` is `specs[i]`.
    ///
    /// Returns every problem at once: specs holding values their `parse` functions would
    /// have rejected ([`RouteError::InvalidSpec`]), then every pair of routes that could
    /// never be told apart ([`RouteError::Conflict`]).
    pub fn build(specs: &[RouteSpec]) -> Result<Self, Vec<RouteError>> {
        let mut errors: Vec<RouteError> = specs
            .iter()
            .enumerate()
            .filter_map(|(index, spec)| {
                spec.check().err().map(|error| RouteError::InvalidSpec {
                    index,
                    error: Box::new(error),
                })
            })
            .collect();

        let mut table = Self::default();
        for (index, spec) in specs.iter().enumerate() {
            let trie = match &spec.host {
                HostMatch::Any => &mut table.any,
                HostMatch::Exact(name) => table.exact.entry(name.as_str().into()).or_default(),
                HostMatch::Suffix(domain) => {
                    table.suffix.entry(domain.as_str().into()).or_default()
                }
            };
            let routes = trie.insert(&spec.path_prefix);
            for &RouteId(first) in routes.iter() {
                if let Some(methods) = specs[first].methods.overlap(&spec.methods) {
                    errors.push(RouteError::Conflict {
                        first,
                        second: index,
                        host: spec.host.to_string(),
                        prefix: spec.path_prefix.to_string(),
                        methods,
                    });
                }
            }
            routes.push(RouteId(index));
        }
        table.specs = specs.into();

        if errors.is_empty() {
            Ok(table)
        } else {
            Err(errors)
        }
    }

    /// Finds the route for a request, in the order documented on [`RouteTable`].
    ///
    /// `host` is the request's `Host` or `:authority`; a port (also after an `[IPv6]`
    /// literal) and a trailing `.` are ignored and case does not matter. A host longer than
    /// 255 bytes only matches `Any` routes. `path` is the path without the query. The method
    /// is compared case-sensitively. Does not allocate.
    pub fn lookup(&self, host: &str, path: &str, method: &str) -> Lookup {
        match self.longest_match(host, path) {
            Some(routes) => self.choose_method(routes, method),
            None => Lookup::NotFound,
        }
    }

    /// The spec a [`RouteId`] refers to.
    pub fn get(&self, id: RouteId) -> Option<&RouteSpec> {
        self.specs.get(id.0)
    }

    /// All specs, in the order given to [`RouteTable::build`].
    pub fn specs(&self) -> &[RouteSpec] {
        &self.specs
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether the table has no routes (every lookup is [`Lookup::NotFound`]).
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    /// Steps 1 and 2: the routes of the winning host tier and longest prefix.
    fn longest_match(&self, host: &str, path: &str) -> Option<&[RouteId]> {
        let mut buf = [0; HOST_BUF_LEN];
        if let Some(host) = lowercase_host(host, &mut buf) {
            if let Some(routes) = self.exact.get(host).and_then(|t| t.longest_match(path)) {
                return Some(routes);
            }
            if !self.suffix.is_empty() {
                // Left to right over the dots is longest suffix first.
                let dots = host.bytes().enumerate().filter(|&(_, b)| b == b'.');
                for (dot, _) in dots {
                    let domain = &host[dot + 1..];
                    if let Some(routes) =
                        self.suffix.get(domain).and_then(|t| t.longest_match(path))
                    {
                        return Some(routes);
                    }
                }
            }
        }
        self.any.longest_match(path)
    }

    /// Step 3: the method, among routes sharing a host match and prefix.
    fn choose_method(&self, routes: &[RouteId], method: &str) -> Lookup {
        let mut any = None;
        for &id in routes {
            match self.specs.get(id.0).map(|spec| &spec.methods) {
                Some(MethodSet::Any) => any = any.or(Some(id)),
                Some(only) if only.allows(method) => return Lookup::Matched(id),
                _ => {}
            }
        }
        match (any, routes.first()) {
            (Some(id), _) => Lookup::Matched(id),
            (None, Some(&first)) => Lookup::MethodNotAllowed(first),
            (None, None) => Lookup::NotFound,
        }
    }
}

// === impl RouteSpec ===

impl RouteSpec {
    /// Checks the parts whose enums let a caller bypass `parse`.
    fn check(&self) -> Result<(), RouteError> {
        self.host.check()?;
        self.methods.check()?;
        self.rewrite.check()
    }
}

// === impl Node ===

impl Node {
    /// The list of routes whose prefix is exactly `prefix`, created if needed.
    fn insert(&mut self, prefix: &PathPrefix) -> &mut Vec<RouteId> {
        let mut node = self;
        for segment in prefix.segments() {
            node = node.children.entry(segment.into()).or_default();
        }
        &mut node.routes
    }

    /// The routes of the longest prefix in this trie that matches `path`.
    fn longest_match(&self, path: &str) -> Option<&[RouteId]> {
        // The root prefix `/` matches every path, even one not starting with '/'.
        let mut best = (!self.routes.is_empty()).then_some(self.routes.as_slice());
        let Some(rest) = path.strip_prefix('/') else {
            return best;
        };
        let mut node = self;
        for segment in rest.split('/') {
            let Some(child) = node.children.get(segment) else {
                break;
            };
            if !child.routes.is_empty() {
                best = Some(child.routes.as_slice());
            }
            node = child;
        }
        best
    }
}
