//! `portcullis check`: everything `run` does short of binding and DNS — compile the config and
//! build a runtime from it (secrets, CA files, the admin token, TLS listener files) — reporting
//! every error, and warning about what would make routes fail at run time.

use std::path::Path;
use std::process::ExitCode;

use portcullis_config::LoadError;

use crate::observe::metrics::Metrics;
use crate::runtime::{BuildContext, Runtime};
use crate::secrets::{FingerprintKey, ProcessEnv, SecretSource, SecretUsageRegistry};

/// Checks `path`; prints `OK <hash>` (plus warnings) or every error.
pub(super) fn check(path: &Path) -> ExitCode {
    let snapshot = match portcullis_config::load(path) {
        Ok(snapshot) => snapshot,
        Err(LoadError::Invalid(errors)) => {
            eprintln!("{errors}");
            eprintln!("{} in {}", count(errors.0.len(), "error"), path.display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let hash = snapshot.hash.clone();
    let metrics = Metrics::new(env!("CARGO_PKG_VERSION"));
    let cx = BuildContext {
        env: &ProcessEnv,
        fingerprint_key: &FingerprintKey::fixed(0),
        metrics: &metrics,
        usage: &SecretUsageRegistry::default(),
        previous: None,
    };
    let runtime = match Runtime::build(snapshot, &cx) {
        Ok(built) => built.runtime,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}: error: {e}", path.display());
            }
            eprintln!("{} in {}", count(errors.len(), "error"), path.display());
            return ExitCode::FAILURE;
        }
    };
    for (route, state) in runtime.config.routes.iter().zip(&runtime.routes) {
        let tenant = &state.tenant;
        for name in &route.secret_refs {
            if let Some(SecretSource::Missing(looked)) =
                runtime.secrets.get(tenant, name).map(|e| &e.source)
            {
                eprintln!(
                    "warning: route '{}': secret '{name}' of tenant '{tenant}' is missing (looked in {}); the route will answer 503 secret_missing",
                    route.name,
                    looked.join(", ")
                );
            }
        }
    }
    if let Some(tunnel) = runtime.config.tunnel.as_ref().filter(|t| t.tls.is_none()) {
        eprintln!(
            "warning: tunnel: insecure_plaintext = true: agents on {} connect without TLS, so \
             their broker tokens and all tunnel traffic cross the network in the clear; use it \
             for tests only",
            tunnel.listen
        );
    }
    for tunnel in runtime
        .config
        .tunnels
        .iter()
        .filter(|t| t.tokens.is_empty())
    {
        eprintln!(
            "warning: tunnels '{}': no token_sha256, so no agent can connect to it",
            tunnel.name
        );
    }
    println!("OK {hash}");
    ExitCode::SUCCESS
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
