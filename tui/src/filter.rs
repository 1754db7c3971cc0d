//! The Traffic view's filter: a line of terms, all of which an entry must match.
//!
//! `route:NAME` and `tenant:NAME` (substring, any case), `5xx` (a status class), `status:503`,
//! `method:POST`, and any other word as free text over route, tenant, method, path, status,
//! denial code, upstream and request id. `!term` negates a term. Pure: no IO, no clock.

use portcullis_api::TrafficEntry;

/// A parsed filter; the empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    text: String,
    terms: Vec<(bool, Term)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Route(String),
    Tenant(String),
    Method(String),
    Status(u16),
    Class(u16),
    Text(String),
}

// === impl Filter ===

impl Filter {
    /// Parses a filter line. Never fails: what is not a known form is free text.
    pub fn parse(text: &str) -> Self {
        let terms = text
            .split_whitespace()
            .filter_map(|word| {
                let (negated, word) = match word.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, word),
                };
                (!word.is_empty()).then(|| (negated, Term::parse(word)))
            })
            .collect();
        Self {
            text: text.to_owned(),
            terms,
        }
    }

    /// The line as typed.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether the filter has no terms.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether `entry` matches every term.
    pub fn matches(&self, entry: &TrafficEntry) -> bool {
        self.terms
            .iter()
            .all(|(negated, term)| term.matches(entry) != *negated)
    }
}

// === impl Term ===

impl Term {
    fn parse(word: &str) -> Self {
        let lower = word.to_lowercase();
        if let Some(v) = lower.strip_prefix("route:") {
            return Term::Route(v.to_owned());
        }
        if let Some(v) = lower.strip_prefix("tenant:") {
            return Term::Tenant(v.to_owned());
        }
        if let Some(v) = lower.strip_prefix("method:") {
            return Term::Method(v.to_owned());
        }
        if let Some(code) = lower
            .strip_prefix("status:")
            .and_then(|v| v.parse::<u16>().ok())
        {
            return Term::Status(code);
        }
        let bytes = lower.as_bytes();
        if bytes.len() == 3 && (b'1'..=b'5').contains(&bytes[0]) && &bytes[1..] == b"xx" {
            return Term::Class(u16::from(bytes[0] - b'0'));
        }
        Term::Text(lower)
    }

    fn matches(&self, e: &TrafficEntry) -> bool {
        let has = |field: Option<&str>, needle: &str| {
            field.is_some_and(|f| f.to_lowercase().contains(needle))
        };
        match self {
            Term::Route(v) => has(e.route.as_deref(), v),
            Term::Tenant(v) => has(e.tenant.as_deref(), v),
            Term::Method(v) => e.method.eq_ignore_ascii_case(v),
            Term::Status(code) => e.status == *code,
            Term::Class(class) => e.status / 100 == *class,
            Term::Text(v) => {
                has(e.route.as_deref(), v)
                    || has(e.tenant.as_deref(), v)
                    || has(Some(&e.method), v)
                    || has(Some(&e.path), v)
                    || has(e.denial.as_deref(), v)
                    || has(e.upstream.as_deref(), v)
                    || has(Some(&e.request_id), v)
                    || e.status.to_string() == *v
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(route: &str, tenant: &str, status: u16, path: &str) -> TrafficEntry {
        TrafficEntry {
            seq: 1,
            time_ms: 0,
            tenant: Some(tenant.to_owned()),
            route: Some(route.to_owned()),
            method: "GET".to_owned(),
            path: path.to_owned(),
            status,
            denial: (status >= 400).then(|| "path_denied".to_owned()),
            duration_ms: 1.0,
            bytes_in: 0,
            bytes_out: 0,
            egress: None,
            upstream: None,
            request_id: "req-abc".to_owned(),
        }
    }

    #[test]
    fn empty_matches_everything() {
        let f = Filter::parse("   ");
        assert!(f.is_empty());
        assert!(f.matches(&entry("a", "b", 200, "/")));
    }

    #[test]
    fn fields_classes_and_text() {
        let ok = entry("acme-jira", "acme", 200, "/issues");
        let bad = entry("globex-pd", "globex", 503, "/incidents");
        let f = Filter::parse("route:JIRA");
        assert!(f.matches(&ok) && !f.matches(&bad));
        let f = Filter::parse("tenant:globex 5xx");
        assert!(!f.matches(&ok) && f.matches(&bad));
        let f = Filter::parse("status:200");
        assert!(f.matches(&ok) && !f.matches(&bad));
        let f = Filter::parse("incidents");
        assert!(!f.matches(&ok) && f.matches(&bad));
        let f = Filter::parse("path_denied");
        assert!(!f.matches(&ok) && f.matches(&bad));
        let f = Filter::parse("method:get req-abc");
        assert!(f.matches(&ok) && f.matches(&bad));
        let f = Filter::parse("503");
        assert!(!f.matches(&ok) && f.matches(&bad));
    }

    #[test]
    fn negation() {
        let ok = entry("acme-jira", "acme", 200, "/issues");
        let bad = entry("globex-pd", "globex", 503, "/incidents");
        let f = Filter::parse("!2xx");
        assert!(!f.matches(&ok) && f.matches(&bad));
        assert_eq!(f.text(), "!2xx");
    }

    #[test]
    fn a_route_less_entry_matches_no_route_term() {
        let mut e = entry("x", "y", 404, "/nowhere");
        e.route = None;
        e.tenant = None;
        assert!(!Filter::parse("route:x").matches(&e));
        assert!(Filter::parse("4xx nowhere").matches(&e));
    }
}
