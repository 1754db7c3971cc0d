//! `portcullis check`: everything `run` does short of binding and DNS — compile the config and
//! build a runtime from it (secrets, CA files, the admin token, TLS listener files) — reporting
//! every error, and warning about what would make routes fail at run time.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_config::LoadError;

use crate::observe::metrics::Metrics;
use crate::runtime::{BuildContext, Runtime};
use crate::secrets::store::{RecordError, Timestamp};
use crate::secrets::{FingerprintKey, ProcessEnv, SecretSource, SecretUsageRegistry};

/// Secrets expiring sooner than this are warned about.
const EXPIRY_WARNING: Duration = Duration::from_secs(7 * 24 * 3600);

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
    for warning in warnings(&runtime, SystemTime::now()) {
        eprintln!("warning: {warning}");
    }
    println!("OK {hash}");
    ExitCode::SUCCESS
}

/// What would make routes fail at run time, or soon: secrets that are missing or undecryptable
/// (per route, the route answers 503), and secrets that expired or expire within 7 days.
fn warnings(runtime: &Runtime, now: SystemTime) -> Vec<String> {
    let mut out = Vec::new();
    for (route, state) in runtime.config.routes.iter().zip(&runtime.routes) {
        let tenant = &state.tenant;
        for name in &route.secret_refs {
            match runtime.secrets.get(tenant, name).map(|e| &e.source) {
                Some(SecretSource::Missing(looked)) => out.push(format!(
                    "route '{}': secret '{name}' of tenant '{tenant}' is missing (looked in {}); the route will answer 503 secret_missing",
                    route.name,
                    looked.join(", ")
                )),
                Some(SecretSource::Undecryptable(at)) => out.push(format!(
                    "route '{}': secret '{name}' of tenant '{tenant}' {} ({at}); the route will answer 503 secret_missing",
                    route.name,
                    RecordError::Undecryptable
                )),
                _ => {}
            }
        }
    }
    let mut expiring: Vec<_> = runtime
        .secrets
        .iter()
        .filter_map(|((tenant, name), entry)| Some((tenant, name, entry.expires?)))
        .filter(|(_, _, at)| *at <= now + EXPIRY_WARNING)
        .collect();
    expiring.sort();
    for (tenant, name, at) in expiring {
        let when = rfc3339(at);
        let routes = runtime
            .config
            .routes_using_secret(tenant, name)
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        out.push(match at.duration_since(now) {
            Err(_) => {
                format!("secret '{name}' of tenant '{tenant}' expired at {when} (used by {routes})")
            }
            Ok(left) => format!(
                "secret '{name}' of tenant '{tenant}' expires at {when}, in {} (used by {routes})",
                human(left)
            ),
        });
    }
    out
}

fn rfc3339(at: SystemTime) -> String {
    let secs = match at.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    Timestamp(secs).to_rfc3339()
}

/// `3d 4h`, `5h 12m`, `42m`.
fn human(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    let (days, hours, mins) = (mins / 1440, (mins / 60) % 24, mins % 60);
    match (days, hours) {
        (0, 0) => format!("{mins}m"),
        (0, _) => format!("{hours}h {mins}m"),
        _ => format!("{days}d {hours}h"),
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}
