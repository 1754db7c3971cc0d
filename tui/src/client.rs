//! A blocking client of the admin API: one method per endpoint, every answer decoded into the
//! `portcullis-api` types (so a field the gateway renames breaks the build, not the screen).
//!
//! Plain HTTP with a bearer token. The token is held in a `SecretString`; it goes into the
//! `Authorization` header and nowhere else — no error message, no Debug output carries it.

use std::path::PathBuf;
use std::time::Duration;

use portcullis_api::{
    paths, ApiError, ReloadStatus, Routes, Secrets, Status, TrafficPage, Tunnels,
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

/// Largest response body read (10,000 routes with stats are a few MiB).
const BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// Time limit of one request, connect to last byte.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the admin token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// A file holding the token (surrounding whitespace ignored); re-read after a 401, so
    /// fixing the file fixes a running console.
    File(PathBuf),
    /// The token itself (e.g. from `PORTCULLIS_ADMIN_TOKEN`).
    Value(SecretString),
}

/// Why a request to the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The admin URL is not usable.
    #[error("admin URL '{url}': {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The token file cannot be read.
    #[error("reading the admin token from {path}: {error}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The error (in the message, so not also a `source`).
        error: std::io::Error,
    },
    /// The token file is empty.
    #[error("the admin token file {path} is empty")]
    EmptyToken {
        /// The file.
        path: PathBuf,
    },
    /// No connection, or the connection broke.
    #[error("{reason}")]
    Unreachable {
        /// What the transport said.
        reason: String,
    },
    /// 401: the token is wrong, or the gateway has none configured.
    #[error("401 {code}")]
    Unauthorized {
        /// `unauthorized` or `admin_token_not_configured`.
        code: String,
    },
    /// Any other unexpected status.
    #[error("{path}: HTTP {status} {code}")]
    Status {
        /// The endpoint.
        path: &'static str,
        /// The HTTP status.
        status: u16,
        /// The API's error code, when the body had one.
        code: String,
    },
    /// The body is not what the API promises (a different gateway version?).
    #[error("{path}: unexpected response ({error})")]
    Decode {
        /// The endpoint.
        path: &'static str,
        /// The decoder's complaint.
        error: String,
    },
}

/// The admin API client.
pub struct AdminClient {
    base: String,
    token_source: TokenSource,
    token: SecretString,
    agent: ureq::Agent,
}

// === impl AdminClient ===

impl AdminClient {
    /// A client of the admin API at `base` (`http://host:port`), reading the token now.
    pub fn new(base: &str, token_source: TokenSource) -> Result<Self, ClientError> {
        let base = validate_base(base)?;
        let token = read_token(&token_source)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            // Never through a proxy from the environment: the admin API is local.
            .proxy(None)
            .user_agent(concat!("portcullis-console/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Self {
            base,
            token_source,
            token,
            agent,
        })
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Reads the token file again (after a 401); a fixed value stays as it is.
    pub fn reload_token(&mut self) -> Result<(), ClientError> {
        self.token = read_token(&self.token_source)?;
        Ok(())
    }

    /// `GET /api/v1/status`.
    pub fn status(&self) -> Result<Status, ClientError> {
        self.get(paths::STATUS, paths::STATUS)
    }

    /// `GET /api/v1/routes`.
    pub fn routes(&self) -> Result<Routes, ClientError> {
        self.get(paths::ROUTES, paths::ROUTES)
    }

    /// `GET /api/v1/secrets`.
    pub fn secrets(&self) -> Result<Secrets, ClientError> {
        self.get(paths::SECRETS, paths::SECRETS)
    }

    /// `GET /api/v1/tunnels`; `Ok(None)` when the gateway does not serve it (404).
    pub fn tunnels(&self) -> Result<Option<Tunnels>, ClientError> {
        match self.get(paths::TUNNELS, paths::TUNNELS) {
            Ok(t) => Ok(Some(t)),
            Err(ClientError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/traffic?after=…&limit=…`.
    pub fn traffic(&self, after: u64, limit: usize) -> Result<TrafficPage, ClientError> {
        let limit = limit.clamp(1, portcullis_api::MAX_TRAFFIC_LIMIT);
        let path = format!("{}?after={after}&limit={limit}", paths::TRAFFIC);
        self.get(paths::TRAFFIC, &path)
    }

    /// `POST /api/v1/reload`: the outcome, whether the new configuration was taken (200) or
    /// rejected (422, with its errors).
    pub fn reload(&self) -> Result<ReloadStatus, ClientError> {
        let response = self
            .agent
            .post(format!("{}{}", self.base, paths::RELOAD))
            .header("authorization", self.bearer())
            .send_empty();
        let (status, body) = read(response)?;
        match status {
            200 | 422 => decode(paths::RELOAD, &body),
            _ => Err(status_error(paths::RELOAD, status, &body)),
        }
    }

    fn get<T: DeserializeOwned>(
        &self,
        path: &'static str,
        path_and_query: &str,
    ) -> Result<T, ClientError> {
        let response = self
            .agent
            .get(format!("{}{path_and_query}", self.base))
            .header("authorization", self.bearer())
            .call();
        let (status, body) = read(response)?;
        if status == 200 {
            decode(path, &body)
        } else {
            Err(status_error(path, status, &body))
        }
    }

    fn bearer(&self) -> String {
        format!("Bearer {}", self.token.expose_secret())
    }
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

// === impl TokenSource ===

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
            TokenSource::Value(_) => f.write_str("Value(<redacted>)"),
        }
    }
}

fn validate_base(base: &str) -> Result<String, ClientError> {
    let bad = |reason| ClientError::BadUrl {
        url: base.to_owned(),
        reason,
    };
    if base.starts_with("https://") {
        return Err(bad(
            "https is not supported: the admin API is plain HTTP on loopback (use an SSH tunnel)",
        ));
    }
    let rest = base
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('@') {
        return Err(bad("must be http://HOST:PORT, without a path"));
    }
    Ok(format!("http://{rest}"))
}

fn read_token(source: &TokenSource) -> Result<SecretString, ClientError> {
    match source {
        TokenSource::Value(v) => Ok(v.clone()),
        TokenSource::File(path) => {
            let text = std::fs::read_to_string(path).map_err(|error| ClientError::TokenFile {
                path: path.clone(),
                error,
            })?;
            let token = text.trim();
            if token.is_empty() {
                return Err(ClientError::EmptyToken { path: path.clone() });
            }
            Ok(SecretString::from(token.to_owned()))
        }
    }
}

fn read(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, Vec<u8>), ClientError> {
    let unreachable = |e: ureq::Error| ClientError::Unreachable {
        reason: e.to_string(),
    };
    let mut response = response.map_err(unreachable)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(BODY_LIMIT)
        .read_to_vec()
        .map_err(unreachable)?;
    Ok((status, body))
}

fn decode<T: DeserializeOwned>(path: &'static str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        path,
        error: e.to_string(),
    })
}

fn status_error(path: &'static str, status: u16, body: &[u8]) -> ClientError {
    let code = serde_json::from_slice::<ApiError>(body)
        .map(|e| e.error)
        .unwrap_or_default();
    if status == 401 {
        ClientError::Unauthorized {
            code: if code.is_empty() {
                "unauthorized".to_owned()
            } else {
                code
            },
        }
    } else {
        ClientError::Status { path, status, code }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        assert_eq!(
            validate_base("http://127.0.0.1:9901/").unwrap(),
            "http://127.0.0.1:9901"
        );
        assert!(validate_base("https://127.0.0.1:9901")
            .unwrap_err()
            .to_string()
            .contains("https is not supported"));
        assert!(validate_base("127.0.0.1:9901").is_err());
        assert!(validate_base("http://127.0.0.1:9901/api").is_err());
        assert!(validate_base("http://").is_err());
    }

    #[test]
    fn token_files_are_trimmed_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("portcullis-console-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  s3cret-token\n").unwrap();
        let client =
            AdminClient::new("http://127.0.0.1:1", TokenSource::File(file.clone())).unwrap();
        assert_eq!(client.bearer(), "Bearer s3cret-token");
        assert!(!format!("{client:?}").contains("s3cret"));
        let value = TokenSource::Value(SecretString::from("s3cret".to_owned()));
        assert!(!format!("{value:?}").contains("s3cret"));
        std::fs::write(&file, "\n").unwrap();
        let err = AdminClient::new("http://127.0.0.1:1", TokenSource::File(file)).unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
        let err = AdminClient::new("http://127.0.0.1:1", TokenSource::File(dir.join("absent")))
            .unwrap_err();
        assert!(err.to_string().contains("reading the admin token"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_401_carries_the_api_code() {
        let err = status_error(
            paths::STATUS,
            401,
            br#"{"error":"admin_token_not_configured"}"#,
        );
        assert!(
            matches!(err, ClientError::Unauthorized { ref code } if code == "admin_token_not_configured")
        );
        let err = status_error(paths::STATUS, 401, b"");
        assert!(matches!(err, ClientError::Unauthorized { ref code } if code == "unauthorized"));
        let err = status_error(paths::TUNNELS, 404, br#"{"error":"not_found"}"#);
        assert_eq!(err.to_string(), "/api/v1/tunnels: HTTP 404 not_found");
    }
}
