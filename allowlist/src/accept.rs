//! Per-route accept rules: which methods, paths, query parameters and (for the broker agent)
//! request headers a route lets through, in the spirit of Snyk Broker's `accept.json`.
//!
//! Rules match the *normalised* path (see [`normalize_path`](crate::path::normalize_path)),
//! so a glob never has to anticipate `//`, `.` segments or escapes of unreserved characters.

use std::borrow::Cow;
use std::fmt;

use globset::{GlobBuilder, GlobMatcher};
use percent_encoding::percent_decode_str;

#[cfg(test)]
mod tests;

/// One accept rule: a request matches when its method, path, query and headers all do.
#[derive(Debug, Clone)]
pub struct AcceptRule {
    /// Uppercase method names; `None` accepts any method.
    methods: Option<Vec<String>>,
    path: GlobMatcher,
    /// `(decoded name, value glob)` pairs that must all be satisfied.
    query: Vec<(String, GlobMatcher)>,
    /// `(lowercase header name, value glob)` pairs that must all be satisfied.
    headers: Vec<(String, GlobMatcher)>,
}

/// An ordered list of accept rules; a request is accepted when any rule matches it.
#[derive(Debug, Clone, Default)]
pub struct AcceptRules {
    rules: Vec<AcceptRule>,
}

/// No accept rule matched the request; the gateway answers 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no accept rule allows {method} {path}")]
pub struct AcceptDenied {
    /// The request method.
    pub method: String,
    /// The normalised request path.
    pub path: String,
}

/// Why an accept rule could not be built from config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AcceptError {
    /// The path glob does not parse, does not start with '/', or could never match a
    /// normalised path.
    #[error("invalid path glob '{glob}': {reason}")]
    InvalidGlob {
        /// The glob as written.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A method that is not an HTTP token, or `*`.
    #[error(
        "invalid HTTP method '{0}': expected a token like GET or POST \
         (leave the list empty to accept any method)"
    )]
    InvalidMethod(String),
    /// An empty query parameter name.
    #[error("invalid query parameter name '{0}': must not be empty")]
    InvalidQueryName(String),
    /// A query value glob that does not parse.
    #[error("invalid glob '{glob}' for query parameter '{name}': {reason}")]
    InvalidQueryGlob {
        /// The parameter name.
        name: String,
        /// The value glob as written.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name that is not an HTTP token.
    #[error("invalid header name '{0}': expected a token like X-Project")]
    InvalidHeaderName(String),
    /// A header value glob that does not parse.
    #[error("invalid glob '{glob}' for header '{name}': {reason}")]
    InvalidHeaderGlob {
        /// The header name.
        name: String,
        /// The value glob as written.
        glob: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A request's headers as a rule with header conditions sees them: `(name, value)` pairs, names
/// in any case, one pair per field line (a repeated header appears several times).
pub type RequestHeaders<'a> = [(&'a str, &'a [u8])];

// === impl AcceptRule ===

impl AcceptRule {
    /// Builds a rule.
    ///
    /// - `methods`: case-insensitive HTTP methods, stored uppercase; empty accepts any method.
    /// - `path_glob`: must start with '/'. `*` does not cross '/', `**` does: `/repos/*/issues`,
    ///   `/api/**`. Matching is case-sensitive.
    /// - `query`: `(name, value glob)` pairs. Each name must be present in the query, and every
    ///   occurrence of it must have a value matching the glob (so `?state=open&state=x` cannot
    ///   smuggle a second value past the rule). Names and values are matched percent-decoded,
    ///   with `+` as a space; `*` in a value glob does match '/'.
    ///
    /// # Errors
    ///
    /// [`AcceptError`] naming the bad method, glob or parameter.
    pub fn new(
        methods: &[impl AsRef<str>],
        path_glob: &str,
        query: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> Result<AcceptRule, AcceptError> {
        let methods = if methods.is_empty() {
            None
        } else {
            let methods = methods
                .iter()
                .map(|m| parse_method(m.as_ref()))
                .collect::<Result<Vec<_>, _>>()?;
            Some(methods)
        };
        let path = compile_path_glob(path_glob)?;
        let query = query
            .iter()
            .map(|(name, glob)| compile_query(name.as_ref(), glob.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AcceptRule {
            methods,
            path,
            query,
            headers: Vec::new(),
        })
    }

    /// The same rule, also requiring request headers: `(name, value glob)` pairs. Each header
    /// must be present, and every field line of it must have a value matching the glob (so a
    /// second `X-Project` line cannot smuggle another value past the rule). Names are
    /// case-insensitive; values are matched as sent (UTF-8 only), `*` matches any text.
    ///
    /// A rule with header conditions only matches through [`AcceptRule::matches_with_headers`]
    /// / [`AcceptRules::check_with_headers`]; without headers to look at it matches nothing.
    ///
    /// # Errors
    ///
    /// [`AcceptError`] naming the bad header name or glob.
    pub fn with_headers(
        mut self,
        headers: &[(impl AsRef<str>, impl AsRef<str>)],
    ) -> Result<AcceptRule, AcceptError> {
        self.headers = headers
            .iter()
            .map(|(name, glob)| compile_header(name.as_ref(), glob.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self)
    }

    /// A rule for any method and any query: just a path glob.
    ///
    /// # Errors
    ///
    /// As [`AcceptRule::new`].
    pub fn for_path(path_glob: &str) -> Result<AcceptRule, AcceptError> {
        AcceptRule::new(&[] as &[&str], path_glob, &[] as &[(&str, &str)])
    }

    /// The uppercase methods this rule accepts; `None` means any.
    pub fn methods(&self) -> Option<&[String]> {
        self.methods.as_deref()
    }

    /// The path glob as written.
    pub fn path_glob(&self) -> &str {
        self.path.glob().glob()
    }

    /// True when this rule accepts the request. `normalized_path` must come from
    /// [`normalize_path`](crate::path::normalize_path); `query` is the raw query string
    /// without its `?`.
    pub fn matches(&self, method: &str, normalized_path: &str, query: Option<&str>) -> bool {
        self.matches_with_headers(method, normalized_path, query, &[])
    }

    /// [`AcceptRule::matches`], also checking the rule's header conditions against `headers`.
    pub fn matches_with_headers(
        &self,
        method: &str,
        normalized_path: &str,
        query: Option<&str>,
        headers: &RequestHeaders<'_>,
    ) -> bool {
        self.method_matches(method)
            && self.path.is_match(normalized_path)
            && self
                .query
                .iter()
                .all(|(name, glob)| query_matches(query.unwrap_or(""), name, glob))
            && self
                .headers
                .iter()
                .all(|(name, glob)| header_matches(headers, name, glob))
    }

    fn method_matches(&self, method: &str) -> bool {
        // Exact comparison: methods are case-sensitive on the wire, and an upstream that
        // treats "get" as GET should not get it through a rule written for GET only.
        self.methods
            .as_ref()
            .is_none_or(|methods| methods.iter().any(|m| m == method))
    }
}

// === impl AcceptRules ===

impl AcceptRules {
    /// Rules checked in order; the first match wins (they have no other effect, so order only
    /// matters for speed).
    pub fn new(rules: Vec<AcceptRule>) -> Self {
        AcceptRules { rules }
    }

    /// True when there are no rules, which means no restriction: everything is accepted.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[AcceptRule] {
        &self.rules
    }

    /// Accepts the request if there are no rules or any rule matches it.
    ///
    /// # Errors
    ///
    /// [`AcceptDenied`] naming the method and path when rules exist and none matches.
    pub fn check(
        &self,
        method: &str,
        normalized_path: &str,
        query: Option<&str>,
    ) -> Result<(), AcceptDenied> {
        self.check_with_headers(method, normalized_path, query, &[])
    }

    /// [`AcceptRules::check`], also checking header conditions against the request's
    /// `headers`.
    ///
    /// # Errors
    ///
    /// [`AcceptDenied`] naming the method and path when rules exist and none matches.
    pub fn check_with_headers(
        &self,
        method: &str,
        normalized_path: &str,
        query: Option<&str>,
        headers: &RequestHeaders<'_>,
    ) -> Result<(), AcceptDenied> {
        if self.rules.is_empty()
            || self
                .rules
                .iter()
                .any(|rule| rule.matches_with_headers(method, normalized_path, query, headers))
        {
            return Ok(());
        }
        Err(AcceptDenied {
            method: method.to_owned(),
            path: normalized_path.to_owned(),
        })
    }
}

impl FromIterator<AcceptRule> for AcceptRules {
    fn from_iter<T: IntoIterator<Item = AcceptRule>>(iter: T) -> Self {
        AcceptRules::new(iter.into_iter().collect())
    }
}

// === impl AcceptError ===

impl AcceptError {
    fn glob(glob: &str, reason: impl fmt::Display) -> Self {
        AcceptError::InvalidGlob {
            glob: glob.to_owned(),
            reason: reason.to_string(),
        }
    }
}

fn parse_method(method: &str) -> Result<String, AcceptError> {
    let is_token = !method.is_empty() && method.bytes().all(is_tchar);
    // '*' is a legal token but reads as "any method", which is what an empty list means.
    if !is_token || method == "*" {
        return Err(AcceptError::InvalidMethod(method.to_owned()));
    }
    Ok(method.to_ascii_uppercase())
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn compile_path_glob(glob: &str) -> Result<GlobMatcher, AcceptError> {
    if !glob.starts_with('/') {
        return Err(AcceptError::glob(glob, "a path glob must start with '/'"));
    }
    // Normalised paths never contain these, so such a glob would silently never match.
    if glob.contains("//") {
        return Err(AcceptError::glob(
            glob,
            "'//' never matches: request paths are normalised to single slashes",
        ));
    }
    if glob.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(AcceptError::glob(
            glob,
            "'.' and '..' segments never match: request paths are normalised without them",
        ));
    }
    GlobBuilder::new(glob)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| AcceptError::glob(glob, e.kind()))
}

fn compile_query(name: &str, glob: &str) -> Result<(String, GlobMatcher), AcceptError> {
    if name.is_empty() {
        return Err(AcceptError::InvalidQueryName(name.to_owned()));
    }
    // Values are not paths: '*' should match "refs/heads/main".
    let matcher = GlobBuilder::new(glob)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| AcceptError::InvalidQueryGlob {
            name: name.to_owned(),
            glob: glob.to_owned(),
            reason: e.kind().to_string(),
        })?
        .compile_matcher();
    Ok((name.to_owned(), matcher))
}

fn compile_header(name: &str, glob: &str) -> Result<(String, GlobMatcher), AcceptError> {
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(AcceptError::InvalidHeaderName(name.to_owned()));
    }
    let matcher = GlobBuilder::new(glob)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| AcceptError::InvalidHeaderGlob {
            name: name.to_owned(),
            glob: glob.to_owned(),
            reason: e.kind().to_string(),
        })?
        .compile_matcher();
    Ok((name.to_ascii_lowercase(), matcher))
}

/// True when header `name` (lowercase) occurs in `headers` and every field line's value
/// matches `glob`. A value that is not UTF-8 fails the rule.
fn header_matches(headers: &RequestHeaders<'_>, name: &str, glob: &GlobMatcher) -> bool {
    let mut seen = false;
    for (key, value) in headers {
        if !key.eq_ignore_ascii_case(name) {
            continue;
        }
        match std::str::from_utf8(value) {
            Ok(value) if glob.is_match(value) => seen = true,
            _ => return false,
        }
    }
    seen
}

/// True when `name` occurs in `query` and every occurrence's value matches `glob`.
fn query_matches(query: &str, name: &str, glob: &GlobMatcher) -> bool {
    let mut seen = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Undecodable names cannot be the (valid UTF-8) name we look for; skip them.
        if form_decode(key).is_none_or(|key| key != name) {
            continue;
        }
        // Fail closed: a value we cannot decode is a value we cannot vouch for.
        match form_decode(value) {
            Some(value) if glob.is_match(&*value) => seen = true,
            _ => return false,
        }
    }
    seen
}

/// Decodes a query component as `application/x-www-form-urlencoded`: `+` is a space, then
/// percent-decoding. `None` if the result is not UTF-8.
fn form_decode(s: &str) -> Option<Cow<'_, str>> {
    if s.contains('+') {
        let spaced = s.replace('+', " ");
        let decoded = percent_decode_str(&spaced).decode_utf8().ok()?;
        Some(Cow::Owned(decoded.into_owned()))
    } else {
        percent_decode_str(s).decode_utf8().ok()
    }
}
