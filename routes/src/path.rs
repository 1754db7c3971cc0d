//! Path prefixes that respect segment boundaries.

use std::fmt;

use crate::RouteError;

#[cfg(test)]
mod tests;

/// An absolute path prefix that matches whole segments: `/foo` matches `/foo`, `/foo/` and
/// `/foo/bar`, never `/foobar`; `/` matches every path.
///
/// Always starts with `/`, has no trailing `/` (except the root itself), no empty, `.` or `..`
/// segments, and no `?`, `#` or `%`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathPrefix(String);

// === impl PathPrefix ===

impl PathPrefix {
    /// Parses a prefix from config, dropping a trailing `/` (`/foo/` is `/foo`).
    ///
    /// `%` is rejected rather than decoded: the caller matches against a normalised path, and
    /// an encoded prefix would silently never match.
    pub fn parse(s: &str) -> Result<Self, RouteError> {
        check_path(s).map_err(|reason| RouteError::PathPrefix {
            input: s.to_owned(),
            reason,
        })?;
        Ok(Self(trim_trailing_slash(s).to_owned()))
    }

    /// The root prefix `/`, which matches every path.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// The prefix as a string, e.g. `/foo` or `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` (without query) falls under this prefix, on a segment boundary.
    pub fn matches(&self, path: &str) -> bool {
        let prefix = self.trimmed();
        path.strip_prefix(prefix)
            .is_some_and(|rest| prefix.is_empty() || rest.is_empty() || rest.starts_with('/'))
    }

    /// The prefix without its trailing slash: `""` for the root, so that the rest of a
    /// matching path always is empty or starts with `/`.
    pub(crate) fn trimmed(&self) -> &str {
        if self.0 == "/" {
            ""
        } else {
            &self.0
        }
    }

    /// The prefix's segments: none for the root, `["a", "b"]` for `/a/b`.
    pub(crate) fn segments(&self) -> impl Iterator<Item = &str> {
        self.trimmed().split('/').skip(1)
    }
}

impl fmt::Display for PathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Drops one trailing `/`, keeping the root `/` (paths have no `//`, so one is all there is).
pub(crate) fn trim_trailing_slash(s: &str) -> &str {
    match s.strip_suffix('/') {
        Some(rest) if !rest.is_empty() => rest,
        _ => s,
    }
}

/// The rules shared by path prefixes and replacement prefixes.
pub(crate) fn check_path(s: &str) -> Result<(), &'static str> {
    let Some(rest) = s.strip_prefix('/') else {
        return Err("must start with '/'");
    };
    if s.contains('?') || s.contains('#') {
        return Err("must not contain a query ('?') or fragment ('#')");
    }
    if s.contains('%') {
        return Err("must not contain '%'; write the decoded path");
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("only printable ASCII without spaces is allowed");
    }
    if s.contains("//") {
        return Err("must not contain an empty segment ('//')");
    }
    if rest.split('/').any(|seg| seg == "." || seg == "..") {
        return Err("must not contain '.' or '..' segments");
    }
    Ok(())
}
