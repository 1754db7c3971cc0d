//! Rewriting the request path for the upstream.

use std::borrow::Cow;

use crate::path::{check_path, trim_trailing_slash};
use crate::{PathPrefix, RouteError};

#[cfg(test)]
mod tests;

/// How a route rewrites the matched path prefix before the request goes upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rewrite {
    /// Forward the path unchanged.
    Keep,
    /// Remove the route's prefix: with prefix `/pd`, `/pd/incidents` goes up as `/incidents`
    /// and `/pd` as `/`.
    StripPrefix,
    /// Replace the route's prefix with this absolute path: with prefix `/pd` and `/v2`,
    /// `/pd/incidents` goes up as `/v2/incidents`. A trailing `/` is ignored, so `/` behaves
    /// like [`Rewrite::StripPrefix`].
    ReplacePrefix(String),
}

// === impl Rewrite ===

impl Rewrite {
    /// Builds a [`Rewrite::ReplacePrefix`], checking the replacement with the same rules as
    /// [`PathPrefix::parse`] and dropping a trailing `/`.
    pub fn replace_prefix(replacement: &str) -> Result<Self, RouteError> {
        check_replacement(replacement)?;
        Ok(Self::ReplacePrefix(
            trim_trailing_slash(replacement).to_owned(),
        ))
    }

    /// Computes the upstream path and query.
    ///
    /// `path_and_query` is the request path, possibly followed by `?query`, which is kept as
    /// is. `prefix` must be the route's prefix, which matches the path; if it does not, the
    /// input is returned unchanged rather than mangled. Borrows whenever the result is a
    /// slice of the input.
    pub fn apply<'a>(&self, prefix: &PathPrefix, path_and_query: &'a str) -> Cow<'a, str> {
        let replacement = match self {
            Self::Keep => return Cow::Borrowed(path_and_query),
            Self::StripPrefix => "",
            Self::ReplacePrefix(r) => r.strip_suffix('/').unwrap_or(r),
        };
        let path_end = path_and_query.find('?').unwrap_or(path_and_query.len());
        let (path, query) = path_and_query.split_at(path_end);
        if !prefix.matches(path) {
            return Cow::Borrowed(path_and_query);
        }
        // Empty or starting with '/', since the match is on a segment boundary.
        let rest = &path[prefix.trimmed().len()..];
        match (replacement.is_empty(), rest.is_empty()) {
            // "/pd/x?q" -> "/x?q": a tail of the input.
            (true, false) => Cow::Borrowed(&path_and_query[prefix.trimmed().len()..]),
            (true, true) if query.is_empty() => Cow::Borrowed("/"),
            (true, true) => Cow::Owned(format!("/{query}")),
            (false, _) => Cow::Owned(format!("{replacement}{rest}{query}")),
        }
    }

    /// Checks a value built without [`Rewrite::replace_prefix`].
    pub(crate) fn check(&self) -> Result<(), RouteError> {
        match self {
            Self::Keep | Self::StripPrefix => Ok(()),
            Self::ReplacePrefix(r) => check_replacement(r),
        }
    }
}

fn check_replacement(replacement: &str) -> Result<(), RouteError> {
    check_path(replacement).map_err(|reason| RouteError::Rewrite {
        input: replacement.to_owned(),
        reason,
    })
}

/// Prepends an upstream target's base path (`/api/v2` of `https://x/api/v2`) to the rewritten
/// path: `/incidents` becomes `/api/v2/incidents`. A trailing `/` on the base is dropped so the
/// slash is not doubled; an empty or `/` base returns the input borrowed.
pub fn join_base_path<'a>(base: &str, path_and_query: &'a str) -> Cow<'a, str> {
    let base = base.trim_end_matches('/');
    if base.is_empty() {
        return Cow::Borrowed(path_and_query);
    }
    if path_and_query.is_empty() || path_and_query.starts_with(['/', '?']) {
        Cow::Owned(format!("{base}{path_and_query}"))
    } else {
        Cow::Owned(format!("{base}/{path_and_query}"))
    }
}
