//! A route's `auth`, `token_header`, `opaque`, `[routes.jwt]` and `[routes.exchange]`: which
//! keys each mode takes, asymmetric algorithms only, endpoints parsed, secrets referenced (never
//! inlined), the exchange body valid JSON — every problem reported with its location.

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use toml::Spanned;

use super::routes::NOT_INJECTABLE;
use super::Compiler;
use crate::auth::*;
use crate::raw::{RawExchange, RawJwt, RawRoute};
use crate::{Template, TemplatePart};

/// `[routes.jwt]` defaults and limits, in seconds.
const DEFAULT_LEEWAY: u64 = 30;
const MAX_LEEWAY: u64 = 300;
const DEFAULT_JWKS_REFRESH: u64 = 300;
const DEFAULT_JWKS_GRACE: u64 = 3600;
const DEFAULT_JWKS_MIN_REFETCH: u64 = 10;
/// `[routes.exchange]` default and limit of `refresh_skew_seconds`.
const DEFAULT_REFRESH_SKEW: u64 = 60;
const MAX_REFRESH_SKEW: u64 = 3600;

/// The keys only `kind = "client_credentials"` takes, and those only `kind = "json_post"` takes.
const CLIENT_CREDENTIALS_KEYS: &[&str] = &[
    "token_url",
    "client_id",
    "client_secret",
    "scope",
    "audience",
    "client_auth",
];
const JSON_POST_KEYS: &[&str] = &["url", "body", "token_pointer", "expires_in_pointer"];

// === impl Compiler ===

impl Compiler<'_> {
    /// Compiles a route's auth mode. Secret names the exchange references are added to
    /// `secret_refs`; a passthrough token header is returned in `forward` (it always goes
    /// upstream, whatever `allowed_headers` says).
    pub(super) fn route_auth(
        &mut self,
        name: &str,
        r: &RawRoute,
        secret_refs: &mut Vec<String>,
        forward: &mut Vec<HeaderName>,
    ) -> Option<RouteAuth> {
        let at = |key: &str| format!("routes '{name}': {key}");
        let errors_before = self.r.count();
        let mode = r.auth.as_ref().map_or("inject", |m| m.get_ref().as_str());
        let mode_span = r.auth.as_ref().map_or(r.name.span(), |m| m.span());
        if !matches!(mode, "inject" | "passthrough" | "exchange") {
            self.r.error(
                mode_span.clone(),
                format!(
                    "{}: '{mode}' is not \"inject\", \"passthrough\" or \"exchange\"",
                    at("auth")
                ),
            );
            return None;
        }
        if mode != "passthrough" {
            let only = |key: &str| {
                format!(
                    "{}: only routes with auth = \"passthrough\" take it",
                    at(key)
                )
            };
            if let Some(h) = &r.token_header {
                self.r.error(h.span(), only("token_header"));
            }
            if let Some(o) = &r.opaque {
                self.r.error(o.span(), only("opaque"));
            }
            if let Some(j) = &r.jwt {
                self.r.error(j.span(), only("jwt"));
            }
        }
        if mode != "exchange" {
            if let Some(e) = &r.exchange {
                self.r.error(
                    e.span(),
                    format!(
                        "{}: only routes with auth = \"exchange\" take it",
                        at("exchange")
                    ),
                );
            }
        }
        let auth = match mode {
            "passthrough" => self
                .passthrough(name, r, mode_span)
                .map(RouteAuth::Passthrough),
            "exchange" => match &r.exchange {
                Some(raw) => self
                    .exchange(name, raw, secret_refs)
                    .map(RouteAuth::Exchange),
                None => {
                    self.r.error(
                        mode_span,
                        format!(
                            "{}: auth = \"exchange\" needs a [routes.exchange] table",
                            at("auth")
                        ),
                    );
                    None
                }
            },
            _ => Some(RouteAuth::Inject),
        };
        // The header the gateway owns (the caller's token, the exchanged token) cannot also be
        // one the route injects.
        let owned = match &auth {
            Some(RouteAuth::Passthrough(p)) => Some((&p.token_header, "the caller's token")),
            Some(RouteAuth::Exchange(e)) => Some((&e.header, "the exchanged token")),
            _ => None,
        };
        if let Some((owned, what)) = owned {
            for (header, value) in &r.headers {
                if header.eq_ignore_ascii_case(owned.as_str()) {
                    self.r.error(
                        value.span(),
                        format!(
                            "{}: '{header}' carries {what}; it cannot also be injected",
                            at("headers")
                        ),
                    );
                }
            }
        }
        if let Some(RouteAuth::Passthrough(p)) = &auth {
            forward.push(p.token_header.clone());
        }
        if self.r.count() > errors_before {
            return None;
        }
        auth
    }

    fn passthrough(
        &mut self,
        name: &str,
        r: &RawRoute,
        mode_span: std::ops::Range<usize>,
    ) -> Option<Passthrough> {
        let at = |key: &str| format!("routes '{name}': {key}");
        let token_header = match &r.token_header {
            None => Some(HeaderName::from_static("authorization")),
            Some(h) => self.owned_header(&at("token_header"), h),
        };
        let opaque = r.opaque.as_ref().is_some_and(|o| *o.get_ref());
        let jwt = match (&r.jwt, opaque) {
            (Some(_), true) => {
                if let Some(o) = &r.opaque {
                    self.r.error(
                        o.span(),
                        format!(
                            "{}: set [routes.jwt] to validate the token or opaque = true to forward it unvalidated, not both",
                            at("opaque")
                        ),
                    );
                }
                None
            }
            (Some(jwt), false) => Some(self.jwt(name, jwt)?),
            (None, true) => None,
            (None, false) => {
                self.r.error(
                    mode_span,
                    format!(
                        "{}: auth = \"passthrough\" needs [routes.jwt] to validate the token, or opaque = true to forward it unvalidated",
                        at("auth")
                    ),
                );
                None
            }
        };
        Some(Passthrough {
            token_header: token_header?,
            jwt,
        })
    }

    fn jwt(&mut self, name: &str, raw: &Spanned<RawJwt>) -> Option<JwtValidation> {
        let at = |key: &str| format!("routes '{name}': jwt.{key}");
        let errors_before = self.r.count();
        let j = raw.get_ref();
        let missing = |key: &str| format!("{}: is required", at(key));
        let issuer = match &j.issuer {
            Some(i) if !i.get_ref().is_empty() => Some(i.get_ref().clone()),
            Some(i) => {
                self.r
                    .error(i.span(), format!("{}: is empty", at("issuer")));
                None
            }
            None => {
                self.r.error(raw.span(), missing("issuer"));
                None
            }
        };
        let audiences = match &j.audiences {
            Some(list) if list.get_ref().is_empty() => {
                self.r.error(
                    list.span(),
                    format!(
                        "{}: is empty (a token must be meant for this API)",
                        at("audiences")
                    ),
                );
                None
            }
            Some(list) => {
                for a in list.get_ref().iter().filter(|a| a.get_ref().is_empty()) {
                    self.r.error(
                        a.span(),
                        format!("{}: an audience is empty", at("audiences")),
                    );
                }
                Some(list.get_ref().iter().map(|a| a.get_ref().clone()).collect())
            }
            None => {
                self.r.error(raw.span(), missing("audiences"));
                None
            }
        };
        let jwks_url = match &j.jwks_url {
            Some(u) => Endpoint::parse(u.get_ref())
                .map_err(|e| self.r.error(u.span(), format!("{}: {e}", at("jwks_url"))))
                .ok(),
            None => {
                self.r.error(raw.span(), missing("jwks_url"));
                None
            }
        };
        let algorithms = match &j.algorithms {
            None => vec![JwtAlgorithm::Rs256],
            Some(list) if list.get_ref().is_empty() => {
                self.r
                    .error(list.span(), format!("{}: is empty", at("algorithms")));
                vec![]
            }
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|a| {
                    let text = a.get_ref();
                    let found = JwtAlgorithm::from_name(text);
                    if found.is_none() {
                        let why = if text.eq_ignore_ascii_case("none")
                            || text.to_ascii_uppercase().starts_with("HS")
                        {
                            "is not allowed: only asymmetric algorithms are (with `none` or HMAC, anyone holding the published key could sign tokens)"
                        } else {
                            "is not a supported algorithm (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA)"
                        };
                        self.r
                            .error(a.span(), format!("{}: '{text}' {why}", at("algorithms")));
                    }
                    found
                })
                .collect(),
        };
        let leeway = self.seconds(
            &at("leeway_seconds"),
            &j.leeway_seconds,
            DEFAULT_LEEWAY,
            0,
            MAX_LEEWAY,
        );
        let jwks_refresh = self.seconds(
            &at("jwks_refresh_seconds"),
            &j.jwks_refresh_seconds,
            DEFAULT_JWKS_REFRESH,
            1,
            86_400,
        );
        let jwks_grace = self.seconds(
            &at("jwks_grace_seconds"),
            &j.jwks_grace_seconds,
            DEFAULT_JWKS_GRACE,
            0,
            7 * 86_400,
        );
        let jwks_min_refetch = self.seconds(
            &at("jwks_min_refetch_seconds"),
            &j.jwks_min_refetch_seconds,
            DEFAULT_JWKS_MIN_REFETCH,
            1,
            3600,
        );
        if self.r.count() > errors_before {
            return None;
        }
        Some(JwtValidation {
            issuer: issuer?,
            audiences: audiences?,
            jwks_url: jwks_url?,
            algorithms,
            leeway,
            jwks_refresh,
            jwks_grace,
            jwks_min_refetch,
        })
    }

    #[allow(clippy::too_many_lines)]
    fn exchange(
        &mut self,
        name: &str,
        raw: &Spanned<RawExchange>,
        secret_refs: &mut Vec<String>,
    ) -> Option<Exchange> {
        let at = |key: &str| format!("routes '{name}': exchange.{key}");
        let errors_before = self.r.count();
        let x = raw.get_ref();
        let kind = match &x.kind {
            Some(k) if matches!(k.get_ref().as_str(), "client_credentials" | "json_post") => {
                k.get_ref().as_str()
            }
            Some(k) => {
                self.r.error(
                    k.span(),
                    format!(
                        "{}: '{}' is not \"client_credentials\" or \"json_post\"",
                        at("kind"),
                        k.get_ref()
                    ),
                );
                return None;
            }
            None => {
                self.r.error(
                    raw.span(),
                    format!(
                        "{}: is required (\"client_credentials\" or \"json_post\")",
                        at("kind")
                    ),
                );
                return None;
            }
        };
        // Keys of the other kind are mistakes, not silently ignored settings.
        let present: [(&str, Option<std::ops::Range<usize>>); 10] = [
            ("token_url", x.token_url.as_ref().map(Spanned::span)),
            ("client_id", x.client_id.as_ref().map(Spanned::span)),
            ("client_secret", x.client_secret.as_ref().map(Spanned::span)),
            ("scope", x.scope.as_ref().map(Spanned::span)),
            ("audience", x.audience.as_ref().map(Spanned::span)),
            ("client_auth", x.client_auth.as_ref().map(Spanned::span)),
            ("url", x.url.as_ref().map(Spanned::span)),
            ("body", x.body.as_ref().map(Spanned::span)),
            ("token_pointer", x.token_pointer.as_ref().map(Spanned::span)),
            (
                "expires_in_pointer",
                x.expires_in_pointer.as_ref().map(Spanned::span),
            ),
        ];
        let foreign = if kind == "client_credentials" {
            JSON_POST_KEYS
        } else {
            CLIENT_CREDENTIALS_KEYS
        };
        let other = if kind == "client_credentials" {
            "json_post"
        } else {
            "client_credentials"
        };
        for (key, span) in present {
            if let Some(span) = span.filter(|_| foreign.contains(&key)) {
                self.r
                    .error(span, format!("{}: is a key of kind = \"{other}\"", at(key)));
            }
        }
        let required = |this: &mut Self, key: &str, v: &Option<Spanned<String>>| {
            if v.is_none() {
                this.r
                    .error(raw.span(), format!("{}: is required", at(key)));
            }
        };
        let kind = if kind == "client_credentials" {
            required(self, "token_url", &x.token_url);
            required(self, "client_id", &x.client_id);
            required(self, "client_secret", &x.client_secret);
            let token_url = x
                .token_url
                .as_ref()
                .and_then(|u| self.endpoint(&at("token_url"), u));
            let client_id = x
                .client_id
                .as_ref()
                .and_then(|t| self.template(&at("client_id"), t, secret_refs));
            let client_secret = x
                .client_secret
                .as_ref()
                .and_then(|t| self.template(&at("client_secret"), t, secret_refs));
            if let (Some(t), Some(raw_secret)) = (&client_secret, &x.client_secret) {
                if t.is_literal() {
                    self.r.error(
                        raw_secret.span(),
                        format!(
                            "{}: write ${{secret:NAME}}: secrets are referenced, never written into the config",
                            at("client_secret")
                        ),
                    );
                }
            }
            let client_auth = match &x.client_auth {
                None => Some(ClientAuth::Basic),
                Some(a) => match a.get_ref().as_str() {
                    "basic" => Some(ClientAuth::Basic),
                    "post" => Some(ClientAuth::Post),
                    other => {
                        self.r.error(
                            a.span(),
                            format!(
                                "{}: '{other}' is not \"basic\" or \"post\"",
                                at("client_auth")
                            ),
                        );
                        None
                    }
                },
            };
            let plain = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
            match (token_url, client_id, client_secret, client_auth) {
                (Some(token_url), Some(client_id), Some(client_secret), Some(client_auth)) => {
                    Some(ExchangeKind::ClientCredentials {
                        token_url,
                        client_id,
                        client_secret,
                        scope: plain(&x.scope),
                        audience: plain(&x.audience),
                        client_auth,
                    })
                }
                _ => None,
            }
        } else {
            required(self, "url", &x.url);
            required(self, "body", &x.body);
            required(self, "token_pointer", &x.token_pointer);
            let url = x.url.as_ref().and_then(|u| self.endpoint(&at("url"), u));
            let body = x.body.as_ref().and_then(|b| {
                let template = self.template(&at("body"), b, secret_refs)?;
                // References become JSON-escaped strings; the body must be JSON around them.
                let sample: String = template
                    .parts()
                    .iter()
                    .map(|p| match p {
                        TemplatePart::Literal(text) => text.as_str(),
                        TemplatePart::Secret(_) | TemplatePart::Env(_) => "x",
                    })
                    .collect();
                match serde_json::from_str::<serde_json::Value>(&sample) {
                    Ok(_) => Some(template),
                    Err(e) => {
                        self.r.error(
                            b.span(),
                            format!(
                                "{}: is not JSON once its references are filled in ({e}); put references inside quotes",
                                at("body")
                            ),
                        );
                        None
                    }
                }
            });
            let token_pointer = x
                .token_pointer
                .as_ref()
                .and_then(|p| self.pointer(&at("token_pointer"), p));
            let expires_in_pointer = match &x.expires_in_pointer {
                None => Some(None),
                Some(p) => self.pointer(&at("expires_in_pointer"), p).map(Some),
            };
            match (url, body, token_pointer, expires_in_pointer) {
                (Some(url), Some(body), Some(token_pointer), Some(expires_in_pointer)) => {
                    Some(ExchangeKind::JsonPost {
                        url,
                        body,
                        token_pointer,
                        expires_in_pointer,
                    })
                }
                _ => None,
            }
        };
        let header = match &x.header {
            None => Some(HeaderName::from_static("authorization")),
            Some(h) => self.owned_header(&at("header"), h),
        };
        let prefix = match &x.prefix {
            None => Some("Bearer ".to_owned()),
            Some(p) if HeaderValue::from_str(p.get_ref()).is_ok() || p.get_ref().is_empty() => {
                Some(p.get_ref().clone())
            }
            Some(p) => {
                self.r.error(
                    p.span(),
                    format!("{}: is not valid in a header value", at("prefix")),
                );
                None
            }
        };
        let refresh_skew = self.seconds(
            &at("refresh_skew_seconds"),
            &x.refresh_skew_seconds,
            DEFAULT_REFRESH_SKEW,
            0,
            MAX_REFRESH_SKEW,
        );
        if self.r.count() > errors_before {
            return None;
        }
        Some(Exchange {
            kind: kind?,
            header: header?,
            prefix: prefix?,
            refresh_skew,
        })
    }

    /// A header the gateway sets or forwards itself: a valid name, not a framing header, not
    /// the gateway key header.
    fn owned_header(&mut self, key: &str, raw: &Spanned<String>) -> Option<HeaderName> {
        let name = self.header_name(key, raw)?;
        if NOT_INJECTABLE.contains(&name.as_str()) {
            self.r.error(
                raw.span(),
                format!("{key}: '{}' belongs to the proxy", raw.get_ref()),
            );
            return None;
        }
        if name == self.gateway_key_header {
            self.r.error(
                raw.span(),
                format!(
                    "{key}: '{}' is the gateway key header, which never goes upstream",
                    raw.get_ref()
                ),
            );
            return None;
        }
        Some(name)
    }

    fn endpoint(&mut self, key: &str, raw: &Spanned<String>) -> Option<Endpoint> {
        Endpoint::parse(raw.get_ref())
            .map_err(|e| self.r.error(raw.span(), format!("{key}: {e}")))
            .ok()
    }

    fn template(
        &mut self,
        key: &str,
        raw: &Spanned<String>,
        secret_refs: &mut Vec<String>,
    ) -> Option<Template> {
        match Template::parse(raw.get_ref()) {
            Ok(t) => {
                for s in t.secret_names() {
                    if !secret_refs.iter().any(|x| x == s) {
                        secret_refs.push(s.to_owned());
                    }
                }
                Some(t)
            }
            Err(e) => {
                self.r.error(raw.span(), format!("{key}: {e}"));
                None
            }
        }
    }

    fn pointer(&mut self, key: &str, raw: &Spanned<String>) -> Option<String> {
        let p = raw.get_ref();
        if p.is_empty() || p.starts_with('/') {
            Some(p.clone())
        } else {
            self.r.error(
                raw.span(),
                format!("{key}: '{p}' is not a JSON pointer (write /data/token)"),
            );
            None
        }
    }

    fn seconds(
        &mut self,
        key: &str,
        raw: &Option<Spanned<u64>>,
        default: u64,
        min: u64,
        max: u64,
    ) -> Duration {
        match raw {
            None => Duration::from_secs(default),
            Some(v) if (min..=max).contains(v.get_ref()) => Duration::from_secs(*v.get_ref()),
            Some(v) => {
                self.r.error(
                    v.span(),
                    format!("{key}: {} is outside {min}..={max}", v.get_ref()),
                );
                Duration::from_secs(default)
            }
        }
    }
}
