//! The credentials a route sends, with every `${secret:…}` and `${env:…}` resolved once per
//! runtime: injected headers as ready, sensitive header values (so a request copies a value
//! instead of rendering a template, and `Debug`, logs and HPACK tables leave them alone), and
//! the key and secret an exchange route trades for a token.

use http::{HeaderName, HeaderValue};
use portcullis_config::{ExchangeKind, InjectedHeader, Template, TemplatePart};
use zeroize::Zeroizing;

use crate::secrets::{Environment, SecretStore};
use crate::tokens::exchange::ExchangeSecrets;

/// A route's injected headers, or what keeps them from being complete.
#[derive(Default)]
pub(crate) struct InjectedHeaders {
    /// Header values with every reference resolved, marked sensitive.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// References that did not resolve (`secret:NAME`, `env:NAME`, or a value that is not a
    /// valid header value): while any is, the route answers `503 secret_missing`.
    pub(crate) missing: Vec<String>,
}

// === impl InjectedHeaders ===

impl InjectedHeaders {
    /// Resolves a route's headers for `tenant`.
    pub(crate) fn resolve(
        templates: &[InjectedHeader],
        tenant: &str,
        secrets: &SecretStore,
        env: &dyn Environment,
    ) -> Self {
        let mut out = InjectedHeaders::default();
        for injected in templates {
            let source = Source {
                tenant,
                secrets,
                env,
            };
            let Some(value) = render(&injected.value, &source, Escape::None, &mut out.missing)
            else {
                continue;
            };
            match HeaderValue::from_str(&value) {
                Ok(mut v) => {
                    v.set_sensitive(true);
                    out.headers.push((injected.name.clone(), v));
                }
                // Never echo the value: it may hold a secret.
                Err(_) => out.missing.push(format!(
                    "header:{} (value is not a valid header value)",
                    injected.name
                )),
            }
        }
        out
    }
}

/// Resolves an exchange's credentials for `tenant`; unresolved references are added to
/// `missing` (and then there are no credentials: the route answers 503 `secret_missing`).
pub(crate) fn exchange_secrets(
    kind: &ExchangeKind,
    tenant: &str,
    secrets: &SecretStore,
    env: &dyn Environment,
    missing: &mut Vec<String>,
) -> Option<ExchangeSecrets> {
    let source = Source {
        tenant,
        secrets,
        env,
    };
    match kind {
        ExchangeKind::ClientCredentials {
            client_id,
            client_secret,
            ..
        } => {
            let client_id = render(client_id, &source, Escape::None, missing);
            let client_secret = render(client_secret, &source, Escape::None, missing);
            Some(ExchangeSecrets::ClientCredentials {
                client_id: client_id?,
                client_secret: client_secret?,
            })
        }
        ExchangeKind::JsonPost { body, .. } => Some(ExchangeSecrets::JsonPost {
            body: render(body, &source, Escape::Json, missing)?,
        }),
    }
}

/// Where references are looked up.
struct Source<'a> {
    tenant: &'a str,
    secrets: &'a SecretStore,
    env: &'a dyn Environment,
}

/// How a resolved value is inserted.
#[derive(Clone, Copy)]
enum Escape {
    /// As it is.
    None,
    /// Escaped for the inside of a JSON string.
    Json,
}

/// Renders a template; `None` (with the references added to `missing`) when any is unresolved.
/// The result may hold a secret: it is zeroed when dropped.
fn render(
    template: &Template,
    source: &Source<'_>,
    escape: Escape,
    missing: &mut Vec<String>,
) -> Option<Zeroizing<String>> {
    let mut value = Zeroizing::new(String::new());
    let missing_before = missing.len();
    let push = |value: &mut String, text: &str| match escape {
        Escape::None => value.push_str(text),
        Escape::Json => {
            let quoted = Zeroizing::new(serde_json::Value::String(text.to_owned()).to_string());
            value.push_str(&quoted[1..quoted.len() - 1]);
        }
    };
    for part in template.parts() {
        match part {
            TemplatePart::Literal(text) => value.push_str(text),
            TemplatePart::Secret(name) => {
                match source
                    .secrets
                    .get(source.tenant, name)
                    .and_then(|e| e.expose())
                {
                    Some(v) => push(&mut value, v),
                    None => missing.push(format!("secret:{name}")),
                }
            }
            TemplatePart::Env(name) => match source.env.var(name).map(Zeroizing::new) {
                Some(v) => push(&mut value, &v),
                None => missing.push(format!("env:{name}")),
            },
        }
    }
    (missing.len() == missing_before).then_some(value)
}

impl std::fmt::Debug for InjectedHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are sensitive: names only.
        f.debug_struct("InjectedHeaders")
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("missing", &self.missing)
            .finish()
    }
}
