//! How a route authenticates to its upstream, compiled: inject the tenant's secret, pass the
//! caller's own token through (validated as a JWT, or explicitly opaque), or exchange the
//! tenant's key and secret for a short-lived token.
//!
//! Everything here is checked once at load: algorithms are asymmetric, endpoints are URLs the
//! gateway can reach, the exchange body is JSON, secrets are referenced and never inlined. The
//! gateway then acts on these types without re-validating them.

use std::fmt;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

use crate::Template;

/// How a route authenticates to its upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RouteAuth {
    /// The gateway injects the route's `headers`, whose `${secret:…}` references are the
    /// tenant's credentials.
    #[default]
    Inject,
    /// The caller's own token (a user's OAuth token) is forwarded unchanged.
    Passthrough(Passthrough),
    /// The gateway exchanges the tenant's key and secret for a short-lived token and sends it.
    Exchange(Exchange),
}

/// `auth = "passthrough"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    /// The request header that carries the token (default `authorization`); it is forwarded
    /// as it came, whatever `allowed_headers` says.
    pub token_header: HeaderName,
    /// How the token is validated; `None` when the route says `opaque = true` (forwarded
    /// unvalidated, but never forwarded when absent).
    pub jwt: Option<JwtValidation>,
}

/// `[routes.jwt]`: the checks a passed-through token must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtValidation {
    /// The one accepted `iss`.
    pub issuer: String,
    /// Accepted `aud` values (a token must name at least one).
    pub audiences: Vec<String>,
    /// Where the issuer's public keys are published.
    pub jwks_url: Endpoint,
    /// Accepted signature algorithms: asymmetric only.
    pub algorithms: Vec<JwtAlgorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// How long a fetched key set is used before it is refreshed (in the background).
    pub jwks_refresh: Duration,
    /// How long past `jwks_refresh` a key set is still used while the endpoint cannot be
    /// reached.
    pub jwks_grace: Duration,
    /// The shortest time between two fetches caused by tokens naming an unknown key.
    pub jwks_min_refetch: Duration,
}

/// A JWT signature algorithm the gateway accepts: public-key algorithms only. `none` and the
/// HMAC family are not representable, so a JWKS key can never be used as an HMAC secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519.
    EdDsa,
}

/// `auth = "exchange"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    /// How the token is obtained.
    pub kind: ExchangeKind,
    /// The upstream request header the token is sent in (default `authorization`).
    pub header: HeaderName,
    /// Text before the token in that header (default `Bearer `).
    pub prefix: String,
    /// How long before its expiry a cached token is replaced.
    pub refresh_skew: Duration,
}

/// Where an exchanged token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeKind {
    /// OAuth 2.0 client credentials grant (RFC 6749 §4.4).
    ClientCredentials {
        /// The token endpoint.
        token_url: Endpoint,
        /// The client id (usually `${secret:…}`).
        client_id: Template,
        /// The client secret (always a reference).
        client_secret: Template,
        /// `scope`, when the route asks for one.
        scope: Option<String>,
        /// `audience` (Auth0 and others), when the route asks for one.
        audience: Option<String>,
        /// How the client authenticates to the token endpoint.
        client_auth: ClientAuth,
    },
    /// A JSON POST whose answer holds the token (e.g. a GraphQL `apiKeyUser` mutation).
    JsonPost {
        /// Where to post.
        url: Endpoint,
        /// The JSON body; references are inserted JSON-escaped.
        body: Template,
        /// JSON pointer (RFC 6901) to the token in the answer.
        token_pointer: String,
        /// JSON pointer to the token's lifetime in seconds, when the answer has one.
        expires_in_pointer: Option<String>,
    },
}

/// How a client authenticates to an OAuth token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded id and secret (`client_secret_basic`).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (`client_secret_post`).
    Post,
}

/// An HTTP(S) endpoint the gateway itself calls (JWKS, token endpoints), parsed once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https`.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (scheme default if absent).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path_and_query: String,
    /// The `Host` header value.
    pub authority: HeaderValue,
}

// === impl RouteAuth ===

impl RouteAuth {
    /// The mode as written in the config and shown by the admin API.
    pub fn as_str(&self) -> &'static str {
        match self {
            RouteAuth::Inject => "inject",
            RouteAuth::Passthrough(_) => "passthrough",
            RouteAuth::Exchange(_) => "exchange",
        }
    }

    /// The endpoints the gateway itself calls for this route (checked against the route's
    /// destination guard like its targets).
    pub fn endpoints(&self) -> Vec<&Endpoint> {
        match self {
            RouteAuth::Inject => Vec::new(),
            RouteAuth::Passthrough(p) => p.jwt.iter().map(|j| &j.jwks_url).collect(),
            RouteAuth::Exchange(e) => vec![e.kind.endpoint()],
        }
    }
}

// === impl ExchangeKind ===

impl ExchangeKind {
    /// The endpoint that issues the token.
    pub fn endpoint(&self) -> &Endpoint {
        match self {
            ExchangeKind::ClientCredentials { token_url, .. } => token_url,
            ExchangeKind::JsonPost { url, .. } => url,
        }
    }

    /// The templates whose references hold credentials.
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            ExchangeKind::ClientCredentials {
                client_id,
                client_secret,
                ..
            } => vec![client_id, client_secret],
            ExchangeKind::JsonPost { body, .. } => vec![body],
        }
    }

    /// The kind as written in the config.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExchangeKind::ClientCredentials { .. } => "client_credentials",
            ExchangeKind::JsonPost { .. } => "json_post",
        }
    }
}

// === impl JwtAlgorithm ===

impl JwtAlgorithm {
    /// Every accepted algorithm, in the order of the JOSE registry.
    pub const ALL: [JwtAlgorithm; 9] = [
        JwtAlgorithm::Rs256,
        JwtAlgorithm::Rs384,
        JwtAlgorithm::Rs512,
        JwtAlgorithm::Ps256,
        JwtAlgorithm::Ps384,
        JwtAlgorithm::Ps512,
        JwtAlgorithm::Es256,
        JwtAlgorithm::Es384,
        JwtAlgorithm::EdDsa,
    ];

    /// The JOSE name (`alg` header value).
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::Rs256 => "RS256",
            JwtAlgorithm::Rs384 => "RS384",
            JwtAlgorithm::Rs512 => "RS512",
            JwtAlgorithm::Ps256 => "PS256",
            JwtAlgorithm::Ps384 => "PS384",
            JwtAlgorithm::Ps512 => "PS512",
            JwtAlgorithm::Es256 => "ES256",
            JwtAlgorithm::Es384 => "ES384",
            JwtAlgorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm of a JOSE name, if it is an accepted one (exact spelling).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Endpoint ===

impl Endpoint {
    /// Parses `http(s)://host[:port][/path][?query]`. Plain `http` is accepted for loopback
    /// hosts only: keys and tokens fetched in clear text could be replaced on the way.
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri = url
            .parse::<http::Uri>()
            .map_err(|e| format!("'{url}' is not a URL: {e}"))?;
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
            return Err(format!("'{url}': credentials in the URL are not allowed"));
        }
        if url.contains('#') {
            return Err(format!("'{url}': a fragment is not allowed"));
        }
        if url.contains("${") {
            return Err(format!(
                "'{url}': references are not allowed in URLs (they would be logged)"
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
        if !tls && !is_loopback_host(&host) {
            return Err(format!(
                "'{url}': use https (plain http is allowed for loopback hosts only)"
            ));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        let path_and_query = if path_and_query.is_empty() {
            "/".to_owned()
        } else {
            path_and_query
        };
        let authority = HeaderValue::from_str(&crate::Target::authority_text(&host, port, tls))
            .map_err(|_| format!("'{url}': the host is not a valid Host header value"))?;
        Ok(Self {
            tls,
            host,
            port,
            path_and_query,
            authority,
        })
    }

    /// The URL without its query (which logs and status may show).
    pub fn without_query(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let path = self
            .path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(p, _)| p);
        format!("{scheme}://{host}:{}{path}", self.port)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.without_query())
    }
}

/// `localhost` or a loopback IP literal.
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_refuse_what_they_must() {
        let e = Endpoint::parse("https://idp.example.com/.well-known/jwks.json?x=1").unwrap();
        assert!(e.tls);
        assert_eq!(e.port, 443);
        assert_eq!(e.path_and_query, "/.well-known/jwks.json?x=1");
        assert_eq!(
            e.to_string(),
            "https://idp.example.com:443/.well-known/jwks.json"
        );
        let e = Endpoint::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!(e.path_and_query, "/");
        assert!(Endpoint::parse("http://idp.example.com/jwks")
            .unwrap_err()
            .contains("use https"));
        assert!(Endpoint::parse("https://u:p@idp.example.com/")
            .unwrap_err()
            .contains("credentials"));
        assert!(Endpoint::parse("https://idp.example.com/${secret:x}").is_err());
        assert!(Endpoint::parse("ftp://idp.example.com/").is_err());
    }

    #[test]
    fn algorithms_have_their_jose_names() {
        for alg in JwtAlgorithm::ALL {
            assert_eq!(JwtAlgorithm::from_name(alg.as_str()), Some(alg));
        }
        assert_eq!(JwtAlgorithm::from_name("HS256"), None);
        assert_eq!(JwtAlgorithm::from_name("none"), None);
    }
}
