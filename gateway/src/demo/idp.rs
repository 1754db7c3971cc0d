//! The demo identity provider: a JWKS, a page that hands out a demo user's token, and an OAuth
//! token endpoint (client credentials), on loopback, so `portcullis demo` can show both token
//! modes with nothing else installed.
//!
//! Its Ed25519 key is generated at start and never leaves the process; its tokens are only good
//! for the demo routes.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine;
use http::{Method, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use ring::signature::{Ed25519KeyPair, KeyPair};
use zeroize::Zeroizing;

/// The `kid` of the demo key.
const KEY_ID: &str = "demo-ed25519-1";
/// The audience of demo user tokens (the passthrough route's `audiences`).
pub(crate) const USER_AUDIENCE: &str = "demo-api";
/// How long demo tokens live.
const LIFETIME_SECONDS: u64 = 600;
/// The largest request body read.
const MAX_BODY: usize = 16 * 1024;

/// The demo identity provider.
pub(crate) struct DemoIdp {
    issuer: String,
    key: EncodingKey,
    jwks: Vec<u8>,
    client_id: String,
    client_secret: Zeroizing<String>,
}

/// Why the demo identity provider could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("generating the demo identity provider's key failed")]
pub(crate) struct IdpKeyError;

// === impl DemoIdp ===

impl DemoIdp {
    /// An identity provider whose issuer is `issuer` (`http://addr/`), accepting the given
    /// client at its token endpoint.
    pub(crate) fn new(
        issuer: String,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Self, IdpKeyError> {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| IdpKeyError)?;
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| IdpKeyError)?;
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = serde_json::to_vec_pretty(&serde_json::json!({
            "keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": KEY_ID, "alg": "EdDSA", "use": "sig"}]
        }))
        .unwrap_or_default();
        Ok(Self {
            issuer,
            key: EncodingKey::from_ed_der(pkcs8.as_ref()),
            jwks,
            client_id: client_id.to_owned(),
            client_secret: Zeroizing::new(client_secret.to_owned()),
        })
    }

    /// A signed token for `sub`, meant for `aud`.
    fn token(&self, sub: &str, aud: &str) -> Option<String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KEY_ID.to_owned());
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": aud,
            "iat": now,
            "nbf": now,
            "exp": now + LIFETIME_SECONDS,
        });
        jsonwebtoken::encode(&header, &claims, &self.key).ok()
    }

    /// Whether the token request authenticates the demo client (HTTP Basic or form fields).
    fn client_ok(&self, authorization: Option<&str>, form: &[(String, String)]) -> bool {
        let field = |name: &str| {
            form.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let (id, secret) = match authorization.and_then(|a| a.strip_prefix("Basic ")) {
            Some(encoded) => {
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
                    return false;
                };
                let decoded = Zeroizing::new(String::from_utf8_lossy(&decoded).into_owned());
                match decoded.split_once(':') {
                    Some((id, secret)) => (id.to_owned(), Zeroizing::new(secret.to_owned())),
                    None => return false,
                }
            }
            None => match (field("client_id"), field("client_secret")) {
                (Some(id), Some(secret)) => (id.to_owned(), Zeroizing::new(secret.to_owned())),
                _ => return false,
            },
        };
        let same = |a: &[u8], b: &[u8]| subtle::ConstantTimeEq::ct_eq(a, b).into();
        same(id.as_bytes(), self.client_id.as_bytes())
            && same(secret.as_bytes(), self.client_secret.as_bytes())
    }
}

#[async_trait]
impl ServeHttp for DemoIdp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body = Zeroizing::new(Vec::new());
        while let Ok(Some(chunk)) = session.read_request_body().await {
            if body.len() + chunk.len() > MAX_BODY {
                return reply(
                    413,
                    "application/json",
                    br#"{"error":"too_large"}"#.to_vec(),
                );
            }
            body.extend_from_slice(&chunk);
        }
        let req = session.req_header();
        let path = req.uri.path();
        match (&req.method, path) {
            (&Method::GET, "/.well-known/jwks.json") => {
                reply(200, "application/json", self.jwks.clone())
            }
            (&Method::GET, "/user-token") => {
                let sub = req
                    .uri
                    .query()
                    .and_then(|q| form(q.as_bytes()).into_iter().find(|(k, _)| k == "sub"))
                    .map_or_else(|| "demo-user".to_owned(), |(_, v)| v);
                match self.token(&sub, USER_AUDIENCE) {
                    Some(token) => reply(200, "text/plain", format!("{token}\n").into_bytes()),
                    None => reply(500, "application/json", br#"{"error":"signing"}"#.to_vec()),
                }
            }
            (&Method::POST, "/oauth/token") => {
                let fields = form(&body);
                let authorization = req
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok());
                let grant = fields
                    .iter()
                    .find(|(k, _)| k == "grant_type")
                    .map(|(_, v)| v.as_str());
                if grant != Some("client_credentials") {
                    return reply(
                        400,
                        "application/json",
                        br#"{"error":"unsupported_grant_type"}"#.to_vec(),
                    );
                }
                if !self.client_ok(authorization, &fields) {
                    return reply(
                        401,
                        "application/json",
                        br#"{"error":"invalid_client"}"#.to_vec(),
                    );
                }
                let Some(token) = self.token("demo-integration", "demo-exchange") else {
                    return reply(500, "application/json", br#"{"error":"signing"}"#.to_vec());
                };
                let answer = serde_json::json!({
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": LIFETIME_SECONDS,
                });
                reply(200, "application/json", answer.to_string().into_bytes())
            }
            _ => reply(
                404,
                "application/json",
                br#"{"error":"not_found"}"#.to_vec(),
            ),
        }
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("content-length", body.len())
        .header("cache-control", "no-store")
        .body(body)
        .unwrap_or_default()
}

/// Decodes `application/x-www-form-urlencoded` pairs.
fn form(bytes: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        percent_decode(&s)
    };
    String::from_utf8_lossy(bytes)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
