//! `[[routes]]`: one path prefix mapped to an upstream, with everything the request path
//! needs compiled once (header names, the `Host` value, accept rules, destination guard).

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use portcullis_allowlist::{AcceptRule, AcceptRules, CidrSet, DestinationGuard};
use portcullis_routes::{HostMatch, MethodSet, PathPrefix, Rewrite, RouteSpec};
use toml::Spanned;

use super::{is_identifier, Compiler};
use crate::raw::RawRoute;
use crate::snapshot::*;
use crate::Template;

/// Hop-by-hop and framing headers a route may not inject: Pingora owns them.
pub(super) const NOT_INJECTABLE: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

// === impl Compiler ===

impl Compiler<'_> {
    #[allow(clippy::too_many_lines)]
    pub(super) fn route(
        &mut self,
        raw: &Spanned<RawRoute>,
        tenants: &[Tenant],
        tenant_index: &HashMap<&str, usize>,
        pools: &HashMap<&str, usize>,
        allowlists: &BTreeMap<String, CidrSet>,
    ) -> Option<(Route, RouteSpec)> {
        let errors_before = self.r.count();
        let r = raw.get_ref();
        let name = r.name.get_ref().clone();
        let at = |key: &str| format!("routes '{name}': {key}");
        if !is_identifier(&name) {
            self.r.error(
                r.name.span(),
                format!("routes.name: '{name}' must be lowercase letters, digits, '-' and '_'"),
            );
        }
        let tenant = tenant_index.get(r.tenant.get_ref().as_str()).copied();
        if tenant.is_none() {
            self.r.error(
                r.tenant.span(),
                format!("{}: unknown tenant '{}'", at("tenant"), r.tenant.get_ref()),
            );
        }
        let host = match &r.host {
            None => Some(HostMatch::Any),
            Some(h) => HostMatch::parse(h.get_ref())
                .map_err(|e| self.r.error(h.span(), format!("{}: {e}", at("host"))))
                .ok(),
        };
        let path_prefix = PathPrefix::parse(r.path.get_ref())
            .map_err(|e| self.r.error(r.path.span(), format!("{}: {e}", at("path"))))
            .ok();
        let methods = match &r.allowed_methods {
            None => Some(MethodSet::Any),
            Some(m) => MethodSet::parse(m.get_ref())
                .map_err(|e| {
                    self.r
                        .error(m.span(), format!("{}: {e}", at("allowed_methods")))
                })
                .ok(),
        };
        let rewrite = match (&r.rewrite_prefix, r.strip_prefix) {
            (Some(p), Some(_)) => {
                self.r.error(
                    p.span(),
                    format!(
                        "{}: set rewrite_prefix or strip_prefix, not both",
                        at("rewrite_prefix")
                    ),
                );
                None
            }
            (Some(p), None) => match PathPrefix::parse(p.get_ref()) {
                Ok(_) => Some(Rewrite::ReplacePrefix(p.get_ref().clone())),
                Err(e) => {
                    self.r
                        .error(p.span(), format!("{}: {e}", at("rewrite_prefix")));
                    None
                }
            },
            (None, Some(false)) => Some(Rewrite::Keep),
            (None, _) => Some(Rewrite::StripPrefix),
        };
        let target_list: Vec<&Spanned<String>> = match (&r.target, &r.targets) {
            (Some(t), None) => vec![t],
            (None, Some(ts)) if !ts.get_ref().is_empty() => ts.get_ref().iter().collect(),
            (None, Some(ts)) => {
                self.r
                    .error(ts.span(), format!("{}: is empty", at("targets")));
                vec![]
            }
            (Some(t), Some(_)) => {
                self.r.error(
                    t.span(),
                    format!("{}: set target or targets, not both", at("target")),
                );
                vec![]
            }
            (None, None) => {
                self.r.error(
                    r.name.span(),
                    format!("{}: missing target (or targets)", at("target")),
                );
                vec![]
            }
        };
        let targets: Vec<Target> = target_list
            .into_iter()
            .filter_map(|t| {
                parse_target(t.get_ref())
                    .map_err(|e| self.r.error(t.span(), format!("{}: {e}", at("target"))))
                    .ok()
            })
            .collect();
        let allowed_headers: Vec<HeaderName> = r
            .allowed_headers
            .iter()
            .filter_map(|h| self.header_name(&at("allowed_headers"), h))
            .collect();
        let mut headers = Vec::new();
        let mut secret_refs: Vec<String> = Vec::new();
        for (header, value) in &r.headers {
            let Ok(name) = HeaderName::from_bytes(header.as_bytes()) else {
                self.r.error(
                    value.span(),
                    format!("{}: '{header}' is not a valid header name", at("headers")),
                );
                continue;
            };
            if NOT_INJECTABLE.contains(&name.as_str()) {
                self.r.error(
                    value.span(),
                    format!(
                        "{}: '{header}' cannot be set here (use change_origin for Host; framing headers belong to the proxy)",
                        at("headers")
                    ),
                );
                continue;
            }
            match Template::parse(value.get_ref()) {
                Ok(t) => {
                    for s in t.secret_names() {
                        if !secret_refs.iter().any(|x| x == s) {
                            secret_refs.push(s.to_owned());
                        }
                    }
                    headers.push(InjectedHeader { name, value: t });
                }
                Err(e) => self.r.error(
                    value.span(),
                    format!("{}: {e}", at(&format!("headers.{header}"))),
                ),
            }
        }
        let mut auth_forward = Vec::new();
        let auth = self.route_auth(&name, r, &mut secret_refs, &mut auth_forward);
        let caller_cidrs = r
            .caller_cidrs
            .as_ref()
            .and_then(|c| self.cidr_set(&at("caller_cidrs"), c.get_ref(), allowlists));
        let destinations = match &r.allow_destinations {
            None => DestinationGuard::default(),
            Some(d) => DestinationGuard::new(
                self.cidr_set(&at("allow_destinations"), d.get_ref(), allowlists)
                    .unwrap_or_default(),
            ),
        };
        let ca_file = r
            .ca_file
            .as_ref()
            .and_then(|c| self.existing_file(&at("ca_file"), c));
        let egress_pool = match &r.egress_pool {
            Some(p) => {
                let found = pools.get(p.get_ref().as_str()).copied();
                if found.is_none() {
                    self.r.error(
                        p.span(),
                        format!(
                            "{}: unknown egress_pool '{}'",
                            at("egress_pool"),
                            p.get_ref()
                        ),
                    );
                }
                found
            }
            None => tenant
                .and_then(|t| tenants.get(t))
                .and_then(|t| t.egress_pool),
        };
        let defaults = Timeouts::default();
        let mut ms = |key: &str, v: &Option<Spanned<u64>>, default: Duration| match v {
            None => default,
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > 24 * 3600 * 1000 => {
                self.r.error(
                    v.span(),
                    format!(
                        "{}: {} is outside 1..=86400000 milliseconds",
                        at(key),
                        v.get_ref()
                    ),
                );
                default
            }
            Some(v) => Duration::from_millis(*v.get_ref()),
        };
        let timeouts = Timeouts {
            connect: ms(
                "connect_timeout_ms",
                &r.connect_timeout_ms,
                defaults.connect,
            ),
            read: ms("read_timeout_ms", &r.read_timeout_ms, defaults.read),
            total: ms("total_timeout_ms", &r.total_timeout_ms, defaults.total),
        };
        let retries = match &r.retries {
            None => 1,
            Some(v) if *v.get_ref() > 5 => {
                self.r.error(
                    v.span(),
                    format!("{}: {} is more than 5", at("retries"), v.get_ref()),
                );
                0
            }
            Some(v) => *v.get_ref(),
        };
        let health_check = match &r.health_check {
            None => HealthCheck {
                path: None,
                interval: Duration::from_secs(5),
            },
            Some(h) => {
                let h = h.get_ref();
                let path = h.path.as_ref().and_then(|p| {
                    if p.get_ref().starts_with('/') {
                        Some(p.get_ref().clone())
                    } else {
                        self.r.error(
                            p.span(),
                            format!(
                                "{}: '{}' must start with '/'",
                                at("health_check.path"),
                                p.get_ref()
                            ),
                        );
                        None
                    }
                });
                let interval = match &h.interval_ms {
                    None => Duration::from_secs(5),
                    Some(v) if *v.get_ref() < 100 => {
                        self.r.error(
                            v.span(),
                            format!(
                                "{}: {} is below 100",
                                at("health_check.interval_ms"),
                                v.get_ref()
                            ),
                        );
                        Duration::from_secs(5)
                    }
                    Some(v) => Duration::from_millis(*v.get_ref()),
                };
                HealthCheck { path, interval }
            }
        };
        let mut rules = Vec::new();
        for a in &r.accept {
            let a_ref = a.get_ref();
            let query: Vec<(&str, &str)> = a_ref
                .query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match AcceptRule::new(&a_ref.methods, a_ref.path.get_ref(), &query) {
                Ok(rule) => rules.push(rule),
                Err(e) => self
                    .r
                    .error(a_ref.path.span(), format!("{}: {e}", at("accept"))),
            }
        }
        if self.r.count() > errors_before {
            return None;
        }
        let (host, path_prefix, methods, rewrite, tenant, auth) =
            (host?, path_prefix?, methods?, rewrite?, tenant?, auth?);
        let spec = RouteSpec {
            host,
            path_prefix: path_prefix.clone(),
            methods: methods.clone(),
            rewrite: rewrite.clone(),
        };
        let forward_headers = DEFAULT_FORWARD_HEADERS
            .iter()
            .map(|h| HeaderName::from_static(h))
            .chain(allowed_headers.iter().cloned())
            .chain(auth_forward)
            .collect();
        let pass_set_cookie = allowed_headers.iter().any(|h| h == "set-cookie");
        let route = Route {
            name,
            tenant,
            path_prefix,
            rewrite,
            methods,
            upstream: RouteUpstream::Saas { targets },
            auth,
            change_origin: r.change_origin.unwrap_or(true),
            allowed_headers,
            forward_headers,
            pass_set_cookie,
            headers,
            public: r.public,
            caller_cidrs,
            destinations,
            accept: AcceptRules::new(rules),
            tls_verify: r.tls_verify.unwrap_or(true),
            ca_file,
            upstream_http2: r.upstream_http2,
            egress_pool,
            timeouts,
            retries,
            max_request_body_bytes: r
                .max_request_body_bytes
                .as_ref()
                .map(|v| *v.get_ref())
                .filter(|v| *v > 0),
            health_check,
            secret_refs,
        };
        Some((route, spec))
    }
}

/// Parses an upstream URL: `http(s)://host[:port][/base/path]`.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let uri = http::Uri::from_str(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        Some(other) => return Err(format!("'{url}': scheme '{other}' is not http or https")),
        None => return Err(format!("'{url}' has no scheme (write https://…)")),
    };
    let authority = uri
        .authority()
        .ok_or_else(|| format!("'{url}' has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "'{url}': credentials in the URL are not allowed; use headers with ${{secret:…}}"
        ));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(format!(
            "'{url}': a target may not have a query or fragment"
        ));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    if host.is_empty() {
        return Err(format!("'{url}' has no host"));
    }
    // Not `port_u16()`: it is `None` for a port that does not fit in 16 bits, which would
    // silently become the scheme's default (`:99999` connecting to 443), and it takes `+1`.
    let port = match port_text(authority.as_str()) {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => {
                return Err(format!(
                    "'{url}': port '{text}' is not a number in 1..=65535"
                ))
            }
        },
    };
    let base_path = uri.path().trim_end_matches('/').to_owned();
    let authority = HeaderValue::from_str(&Target::authority_text(&host, port, tls))
        .map_err(|_| format!("'{url}': the host is not a valid Host header value"))?;
    Ok(Target {
        tls,
        host,
        port,
        base_path,
        authority,
    })
}

/// The port written in an authority (`h:8443`, `[::1]:8443`, `h:` gives `""`), if any.
fn port_text(authority: &str) -> Option<&str> {
    let after_host = match authority.rfind(']') {
        // An IPv6 literal: its colons are not a port separator.
        Some(end) => &authority[end + 1..],
        None => authority.rfind(':').map_or("", |colon| &authority[colon..]),
    };
    after_host.strip_prefix(':')
}
