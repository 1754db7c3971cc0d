//! The process's descriptor limit (`RLIMIT_NOFILE`).
//!
//! Every connection is a descriptor (two while it is proxied: the caller's and the upstream's).
//! Processes usually start with a soft limit of 1,024 however high the hard limit is, and with
//! 1,024 about a thousand silent connections lock every new client out. The gateway raises its
//! soft limit to the hard limit at start, logs both, and warns when even that is too low for
//! `server.max_connections`.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// Descriptors kept for everything that is not a connection: listeners, the audit and log
/// files, the config watch, DNS, the admin API.
const RESERVED: u64 = 256;

/// Descriptors one proxied connection may use: the caller's and the upstream's.
const PER_CONNECTION: u64 = 2;

/// The most the soft limit is raised to when the hard limit is "unlimited" (the kernel's
/// default `fs.nr_open`).
const UNLIMITED_TARGET: u64 = 1 << 20;

/// Raises the soft descriptor limit to the hard limit, logs both, and warns when the result
/// cannot hold `max_connections`. Returns the soft limit in force.
pub(super) fn raise_and_check(max_connections: usize) -> Option<u64> {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit (RLIMIT_NOFILE)");
            return None;
        }
    };
    let target = if hard == RLIM_INFINITY {
        UNLIMITED_TARGET
    } else {
        hard
    };
    let soft_now = if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => target,
            Err(e) => {
                tracing::warn!(error = %e, soft, hard, "cannot raise the soft descriptor limit");
                soft
            }
        }
    } else {
        soft
    };
    tracing::info!(
        soft_at_start = soft,
        soft = soft_now,
        hard,
        "descriptor limit (RLIMIT_NOFILE): soft raised to the hard limit"
    );
    let needed = (max_connections as u64)
        .saturating_mul(PER_CONNECTION)
        .saturating_add(RESERVED);
    if soft_now < needed {
        tracing::warn!(
            limit = soft_now,
            needed,
            max_connections,
            "the descriptor limit is lower than server.max_connections needs; raise the hard limit (systemd: LimitNOFILE=) or lower max_connections"
        );
    }
    Some(soft_now)
}
