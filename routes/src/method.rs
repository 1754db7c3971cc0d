//! The set of HTTP methods a route accepts.

use std::fmt;

use crate::RouteError;

#[cfg(test)]
mod tests;

/// The methods a route accepts; others get `405 Method Not Allowed`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MethodSet {
    /// Every method.
    Any,
    /// Only these methods, uppercase, without duplicates, in the order first written.
    Only(Vec<String>),
}

// === impl MethodSet ===

impl MethodSet {
    /// Parses a list of methods from config. An empty list is [`MethodSet::Any`].
    ///
    /// Methods are uppercased (config may say `get`) and must be RFC 9110 tokens, so custom
    /// methods such as `PURGE` are accepted.
    pub fn parse<S: AsRef<str>>(methods: &[S]) -> Result<Self, RouteError> {
        if methods.is_empty() {
            return Ok(Self::Any);
        }
        let mut only: Vec<String> = Vec::with_capacity(methods.len());
        for method in methods {
            let method = method.as_ref();
            check_token(method).map_err(|reason| RouteError::Method {
                input: method.to_owned(),
                reason,
            })?;
            let method = method.to_ascii_uppercase();
            if !only.contains(&method) {
                only.push(method);
            }
        }
        Ok(Self::Only(only))
    }

    /// Whether a request method is accepted.
    ///
    /// Exact comparison: RFC 9110 §9.1 makes methods case-sensitive, so `get` is not `GET`.
    pub fn allows(&self, method: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(methods) => methods.iter().any(|m| m == method),
        }
    }

    /// The methods both sets accept, described for an error message, or `None` when they
    /// share none.
    pub(crate) fn overlap(&self, other: &Self) -> Option<String> {
        match (self, other) {
            (Self::Any, Self::Any) => Some("any method".to_owned()),
            // An `Only` route is preferred over an `Any` route at the same host and prefix, so
            // the pair is unambiguous: the `Any` route takes every other method.
            (Self::Any, Self::Only(_)) | (Self::Only(_), Self::Any) => None,
            (Self::Only(a), Self::Only(b)) => {
                let shared: Vec<&str> = a
                    .iter()
                    .filter(|m| b.contains(m))
                    .map(String::as_str)
                    .collect();
                (!shared.is_empty()).then(|| format!("method {}", shared.join(", ")))
            }
        }
    }

    /// Checks a value built without [`MethodSet::parse`].
    pub(crate) fn check(&self) -> Result<(), RouteError> {
        let Self::Only(methods) = self else {
            return Ok(());
        };
        if methods.is_empty() {
            return Err(RouteError::Method {
                input: String::new(),
                reason: "an empty `Only` list allows nothing; use `MethodSet::Any`",
            });
        }
        for method in methods {
            let reason = match check_token(method) {
                Err(reason) => reason,
                Ok(()) if method.bytes().any(|b| b.is_ascii_lowercase()) => "must be uppercase",
                Ok(()) => continue,
            };
            return Err(RouteError::Method {
                input: method.clone(),
                reason,
            });
        }
        Ok(())
    }
}

impl fmt::Display for MethodSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Only(methods) => f.write_str(&methods.join(", ")),
        }
    }
}

/// RFC 9110 §5.6.2: `token = 1*tchar`.
fn check_token(method: &str) -> Result<(), &'static str> {
    if method.is_empty() {
        return Err("empty method");
    }
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if method.bytes().all(is_tchar) {
        Ok(())
    } else {
        Err("not an HTTP method token (RFC 9110 section 5.6.2)")
    }
}
