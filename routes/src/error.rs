//! The one error type of the crate.

/// Why a host, path prefix, method list, rewrite or whole route table was rejected.
///
/// Every message names the offending input, so the config crate can show it next to the
/// file position it maps the error to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// A host match is not `*`, a host name, or `*.` followed by a host name.
    #[error("invalid host '{input}': {reason}")]
    Host {
        /// The host as written.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A path prefix is not a clean absolute path.
    #[error("invalid path prefix '{input}': {reason}")]
    PathPrefix {
        /// The prefix as written.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A method is not an HTTP method token.
    #[error("invalid HTTP method '{input}': {reason}")]
    Method {
        /// The method as written.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A replacement prefix is not a clean absolute path.
    #[error("invalid rewrite prefix '{input}': {reason}")]
    Rewrite {
        /// The replacement prefix as written.
        input: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A spec given to [`RouteTable::build`](crate::RouteTable::build) holds a value that its
    /// `parse` function would not have produced (the enums have public fields).
    #[error("route #{index}: {error}")]
    InvalidSpec {
        /// Index of the spec in the slice given to `build`.
        index: usize,
        /// What is wrong with it.
        error: Box<RouteError>,
    },

    /// Two routes have the same host match, the same path prefix and overlapping methods, so
    /// the second could never be chosen for the methods they share.
    #[error(
        "routes #{first} and #{second} can never be told apart: both match host '{host}', \
         path prefix '{prefix}' and {methods}"
    )]
    Conflict {
        /// Index of the earlier spec.
        first: usize,
        /// Index of the later spec, which is the one that could never match.
        second: usize,
        /// The shared host match, in config form.
        host: String,
        /// The shared path prefix.
        prefix: String,
        /// The shared methods, e.g. `any method` or `method GET, POST`.
        methods: String,
    },
}
