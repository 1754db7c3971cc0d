//! The headers a route injects, with every `${secret:…}` and `${env:…}` resolved once per
//! runtime into ready, sensitive header values (so a request copies a value instead of
//! rendering a template, and `Debug`, logs and HPACK tables leave them alone).

use http::{HeaderName, HeaderValue};
use portcullis_config::{InjectedHeader, TemplatePart};
use zeroize::Zeroizing;

use crate::secrets::{Environment, SecretStore};

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
            // The rendered value may hold a secret: zeroed when dropped.
            let mut value = Zeroizing::new(String::new());
            let missing_before = out.missing.len();
            for part in injected.value.parts() {
                match part {
                    TemplatePart::Literal(text) => value.push_str(text),
                    TemplatePart::Secret(name) => {
                        match secrets.get(tenant, name).and_then(|e| e.expose()) {
                            Some(v) => value.push_str(v),
                            None => out.missing.push(format!("secret:{name}")),
                        }
                    }
                    TemplatePart::Env(name) => match env.var(name).map(Zeroizing::new) {
                        Some(v) => value.push_str(&v),
                        None => out.missing.push(format!("env:{name}")),
                    },
                }
            }
            if out.missing.len() > missing_before {
                continue;
            }
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
