//! Host matches and the allocation-free normalisation of request hosts.

use std::fmt;

use crate::RouteError;

#[cfg(test)]
mod tests;

/// The longest host name a route may name (RFC 1035, without the trailing dot).
const MAX_HOST_LEN: usize = 253;

/// The longest DNS label.
const MAX_LABEL_LEN: usize = 63;

/// Size of the stack buffer a request host is lowercased into. Anything longer than a valid
/// host name (plus slack for a trailing dot) cannot equal a route's host, so such requests
/// only reach `Any` routes.
pub(crate) const HOST_BUF_LEN: usize = 255;

/// Which request hosts a route answers.
///
/// Host names are stored lowercase and without a trailing dot; requests are compared
/// case-insensitively (see [`HostMatch::matches`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostMatch {
    /// Every host, including a missing one. Written `*` (or left empty).
    Any,
    /// Exactly this host name, e.g. `api.example.com`.
    Exact(String),
    /// Any host strictly below this domain: `Suffix("example.com")`, written `*.example.com`,
    /// matches `a.example.com` and `a.b.example.com` but not `example.com` itself.
    Suffix(String),
}

// === impl HostMatch ===

impl HostMatch {
    /// Parses the config form: `*` or `""` is [`HostMatch::Any`], `*.example.com` is
    /// [`HostMatch::Suffix`], anything else must be a host name and is [`HostMatch::Exact`].
    ///
    /// Names are lowercased and one trailing `.` is dropped. Ports, empty labels, characters
    /// outside `[a-z0-9-.]` and a `*` anywhere but a leading `*.` label are rejected.
    pub fn parse(s: &str) -> Result<Self, RouteError> {
        if s.is_empty() || s == "*" {
            return Ok(Self::Any);
        }
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        check_host_name(name).map_err(|reason| RouteError::Host {
            input: s.to_owned(),
            reason,
        })?;
        let name = name.to_ascii_lowercase();
        Ok(if wildcard {
            Self::Suffix(name)
        } else {
            Self::Exact(name)
        })
    }

    /// Whether a request's `Host` (or `:authority`) is answered by this match.
    ///
    /// The request host may carry a port (`example.com:8080`, `[::1]:8080`) and a trailing
    /// dot; both are ignored, and the comparison is ASCII case-insensitive. Does not allocate.
    pub fn matches(&self, request_host: &str) -> bool {
        let mut buf = [0; HOST_BUF_LEN];
        match (self, lowercase_host(request_host, &mut buf)) {
            (Self::Any, _) => true,
            (_, None) => false,
            (Self::Exact(name), Some(host)) => host == name,
            (Self::Suffix(domain), Some(host)) => is_below(host, domain),
        }
    }

    /// Checks a value built without [`HostMatch::parse`]: the name must be one `parse` could
    /// have produced.
    pub(crate) fn check(&self) -> Result<(), RouteError> {
        let name = match self {
            Self::Any => return Ok(()),
            Self::Exact(name) | Self::Suffix(name) => name,
        };
        let reason = match check_host_name(name) {
            Err(reason) => reason,
            Ok(()) if name.bytes().any(|b| b.is_ascii_uppercase()) => "must be lowercase",
            Ok(()) => return Ok(()),
        };
        Err(RouteError::Host {
            input: self.to_string(),
            reason,
        })
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(name) => f.write_str(name),
            Self::Suffix(domain) => write!(f, "*.{domain}"),
        }
    }
}

/// Whether `host` is strictly below `domain` (`a.example.com` is below `example.com`).
pub(crate) fn is_below(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .is_some_and(|rest| rest.ends_with('.'))
}

/// Strips the port (handling `[v6]:port` literals) and one trailing dot from a request host.
pub(crate) fn strip_port_and_dot(host: &str) -> &str {
    let host = if host.starts_with('[') {
        // An IPv6 literal: its colons are not a port separator.
        match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        }
    } else {
        match host.find(':') {
            Some(colon) => &host[..colon],
            None => host,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

/// Normalises a request host into `buf`: port and trailing dot stripped, ASCII lowercased.
///
/// `None` when it does not fit, which only happens for hosts no `Exact` or `Suffix` route can
/// match anyway. Lowercasing only ASCII bytes keeps the UTF-8 valid.
pub(crate) fn lowercase_host<'b>(host: &str, buf: &'b mut [u8; HOST_BUF_LEN]) -> Option<&'b str> {
    let host = strip_port_and_dot(host);
    let out = buf.get_mut(..host.len())?;
    out.copy_from_slice(host.as_bytes());
    out.make_ascii_lowercase();
    std::str::from_utf8(out).ok()
}

/// Validates a host name (no wildcard, no trailing dot), any case.
fn check_host_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty host name");
    }
    if name.contains('*') {
        return Err("'*' is only allowed as a leading '*.' label");
    }
    if name.contains(':') {
        return Err("ports are not allowed; a route matches every port");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err("only letters, digits, '-' and '.' are allowed");
    }
    if name.len() > MAX_HOST_LEN {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("empty label");
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("label longer than 63 characters");
        }
    }
    Ok(())
}
