//! `[server]`, `[secrets]`, `[admin]` and `[audit]`: the process-level sections.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use http::HeaderName;
use portcullis_allowlist::CidrSet;

use toml::Spanned;

use super::Compiler;
use crate::raw::{RawAudit, RawConfig};
use crate::snapshot::*;

// === impl Compiler ===

impl Compiler<'_> {
    pub(super) fn server(&mut self, raw: &RawConfig) -> Option<Server> {
        let s = &raw.server;
        let mut ok = true;
        let mut listen = Vec::new();
        let mut seen = HashSet::new();
        match &s.listen {
            None => listen.push(SocketAddr::from_str(DEFAULT_LISTEN).ok()?),
            Some(list) => {
                for l in list {
                    match self.socket_addr("server.listen", l) {
                        Some(a) if !distinct(&mut seen, a) => {
                            self.r
                                .error(l.span(), format!("server.listen: {a} is listed twice"));
                            ok = false;
                        }
                        Some(a) => listen.push(a),
                        None => ok = false,
                    }
                }
            }
        }
        let mut tls = Vec::new();
        for t in &s.tls {
            let t_ref = t.get_ref();
            let addr = self.socket_addr("server.tls.listen", &t_ref.listen);
            if let Some(a) = addr {
                if !distinct(&mut seen, a) {
                    self.r.error(
                        t_ref.listen.span(),
                        format!("server.tls.listen: {a} is listed twice"),
                    );
                    ok = false;
                }
            }
            let cert = self.existing_file("server.tls.cert", &t_ref.cert);
            let key = self.existing_file("server.tls.key", &t_ref.key);
            match (addr, cert, key) {
                (Some(listen), Some(cert), Some(key)) => {
                    tls.push(TlsListener { listen, cert, key })
                }
                _ => ok = false,
            }
        }
        if listen.is_empty() && tls.is_empty() && s.listen.is_some() && ok {
            self.r.error(
                0..0,
                "server: no listener (server.listen and server.tls are both empty)",
            );
            ok = false;
        }
        let admin_listen = match &s.admin_listen {
            None => SocketAddr::from_str(DEFAULT_ADMIN_LISTEN).ok(),
            Some(a) => self.socket_addr("server.admin_listen", a),
        };
        if let Some(admin) = admin_listen {
            if admin.port() != 0 && seen.contains(&admin) {
                if let Some(a) = &s.admin_listen {
                    self.r.error(
                        a.span(),
                        format!("server.admin_listen: {admin} is also a public listener"),
                    );
                }
                ok = false;
            }
        }
        let gateway_key_header = match &s.gateway_key_header {
            None => HeaderName::from_static(DEFAULT_GATEWAY_KEY_HEADER),
            Some(h) => match self.header_name("server.gateway_key_header", h) {
                Some(h) => h,
                None => {
                    ok = false;
                    HeaderName::from_static(DEFAULT_GATEWAY_KEY_HEADER)
                }
            },
        };
        let max_request_header_bytes = match &s.max_request_header_bytes {
            None => DEFAULT_MAX_REQUEST_HEADER_BYTES,
            Some(v) if *v.get_ref() < 1024 || *v.get_ref() > 1024 * 1024 => {
                self.r.error(
                    v.span(),
                    format!(
                        "server.max_request_header_bytes: {} is outside 1024..=1048576",
                        v.get_ref()
                    ),
                );
                ok = false;
                0
            }
            Some(v) => *v.get_ref() as usize,
        };
        let max_request_body_bytes = s
            .max_request_body_bytes
            .as_ref()
            .map(|v| *v.get_ref())
            .filter(|v| *v > 0);
        let trusted_proxies = match &s.trusted_proxies {
            None => CidrSet::default(),
            Some(entries) => self
                .cidr_set("server.trusted_proxies", entries, &BTreeMap::new())
                .unwrap_or_else(|| {
                    ok = false;
                    CidrSet::default()
                }),
        };
        let mut bounded = |key: &str, value: &Option<Spanned<u64>>, range, default| {
            self.bounded(&format!("server.{key}"), value, range, default)
                .unwrap_or_else(|| {
                    ok = false;
                    default
                })
        };
        let request_header_timeout = Duration::from_millis(bounded(
            "request_header_timeout_ms",
            &s.request_header_timeout_ms,
            100..=600_000,
            DEFAULT_REQUEST_HEADER_TIMEOUT_MS,
        ));
        let keepalive_timeout = Duration::from_millis(bounded(
            "keepalive_timeout_ms",
            &s.keepalive_timeout_ms,
            0..=3_600_000,
            DEFAULT_KEEPALIVE_TIMEOUT_MS,
        ));
        let max_connections = bounded(
            "max_connections",
            &s.max_connections,
            1..=1_000_000,
            DEFAULT_MAX_CONNECTIONS as u64,
        ) as usize;
        let max_connections_per_ip = bounded(
            "max_connections_per_ip",
            &s.max_connections_per_ip,
            0..=1_000_000,
            DEFAULT_MAX_CONNECTIONS_PER_IP as u64,
        ) as usize;
        let h2_max_concurrent_streams = bounded(
            "h2_max_concurrent_streams",
            &s.h2_max_concurrent_streams,
            1..=10_000,
            u64::from(DEFAULT_H2_MAX_CONCURRENT_STREAMS),
        ) as u32;
        let shutdown_grace = Duration::from_secs(bounded(
            "shutdown_grace_seconds",
            &s.shutdown_grace_seconds,
            0..=86_400,
            DEFAULT_SHUTDOWN_GRACE_SECONDS,
        ));
        let upgrade_sock = match &s.upgrade_sock {
            None => PathBuf::from(DEFAULT_UPGRADE_SOCK),
            Some(p) => {
                let path = self.path(p);
                // sun_path holds 108 bytes, the last one a NUL.
                if p.get_ref().is_empty() || path.as_os_str().len() > 107 {
                    self.r.error(
                        p.span(),
                        format!(
                            "server.upgrade_sock: '{}' is not a usable Unix socket path (1 to 107 bytes)",
                            path.display()
                        ),
                    );
                    ok = false;
                }
                path
            }
        };
        let admin_listen = admin_listen?;
        ok.then_some(Server {
            listen,
            tls,
            admin_listen,
            gateway_key_header,
            max_request_body_bytes,
            max_request_header_bytes,
            trusted_proxies,
            request_header_timeout,
            keepalive_timeout,
            max_connections,
            max_connections_per_ip: (max_connections_per_ip > 0).then_some(max_connections_per_ip),
            h2_max_concurrent_streams,
            shutdown_grace,
            upgrade_sock,
        })
    }

    /// An integer setting within `range`, or `default` when absent; `None` (reported) when
    /// out of range.
    fn bounded(
        &mut self,
        key: &str,
        value: &Option<Spanned<u64>>,
        range: RangeInclusive<u64>,
        default: u64,
    ) -> Option<u64> {
        let Some(v) = value else {
            return Some(default);
        };
        let n = *v.get_ref();
        if range.contains(&n) {
            Some(n)
        } else {
            self.r.error(
                v.span(),
                format!("{key}: {n} is outside {}..={}", range.start(), range.end()),
            );
            None
        }
    }

    pub(super) fn secrets(&mut self, raw: &RawConfig) -> SecretSources {
        let env_prefix = match &raw.secrets.env_prefix {
            None => Some("PORTCULLIS_SECRET_".to_owned()),
            Some(p) if p.get_ref().is_empty() => None,
            Some(p) => {
                if !p
                    .get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                {
                    self.r.error(
                        p.span(),
                        format!(
                            "secrets.env_prefix: '{}' must be uppercase letters, digits and '_'",
                            p.get_ref()
                        ),
                    );
                }
                Some(p.get_ref().clone())
            }
        };
        let dir = raw.secrets.dir.as_ref().map(|d| {
            let path = self.path(d);
            if !path.is_dir() {
                self.r.error(
                    d.span(),
                    format!("secrets.dir: '{}' is not a directory", path.display()),
                );
            }
            path
        });
        // The store and its key are read when the gateway builds a runtime (every reload), so
        // only their shape is checked here; a store that is missing or does not open is a
        // runtime build error naming the file.
        let store = raw.secrets.store.as_ref().map(|s| {
            let path = self.path(s);
            if path.is_dir() {
                self.r.error(
                    s.span(),
                    format!(
                        "secrets.store: '{}' is a directory, not a store file",
                        path.display()
                    ),
                );
            }
            path
        });
        let master_key_file = raw.secrets.master_key_file.as_ref().map(|k| {
            if store.is_none() {
                self.r.error(
                    k.span(),
                    "secrets.master_key_file: set without secrets.store (the key opens the store)",
                );
            }
            self.path(k)
        });
        SecretSources {
            env_prefix,
            dir,
            store,
            master_key_file,
        }
    }

    pub(super) fn admin(&mut self, raw: &RawConfig) -> Admin {
        let a = &raw.admin;
        let token_file = a.token_file.as_ref().map(|p| self.path(p));
        let token_env = a.token_env.as_ref().map(|v| {
            if v.get_ref().is_empty() {
                self.r
                    .error(v.span(), "admin.token_env: empty variable name");
            }
            v.get_ref().clone()
        });
        if let (Some(_), Some(env)) = (&a.token_file, &a.token_env) {
            self.r
                .error(env.span(), "admin: set token_file or token_env, not both");
        }
        let metrics_cidrs = match &a.metrics_cidrs {
            None => CidrSet::default(),
            Some(entries) => self
                .cidr_set("admin.metrics_cidrs", entries, &BTreeMap::new())
                .unwrap_or_default(),
        };
        let mut hosts = Vec::new();
        for h in a.hosts.iter().flatten() {
            let name = h.get_ref().trim_end_matches('.').to_ascii_lowercase();
            if is_host_name(&name) || name.parse::<IpAddr>().is_ok() {
                hosts.push(name);
            } else {
                self.r.error(
                    h.span(),
                    format!(
                        "admin.hosts: '{}' is not a host name (letters, digits, '-' and '.', no port)",
                        h.get_ref()
                    ),
                );
            }
        }
        let max_connections = self
            .bounded(
                "admin.max_connections",
                &a.max_connections,
                1..=100_000,
                DEFAULT_ADMIN_MAX_CONNECTIONS as u64,
            )
            .unwrap_or(DEFAULT_ADMIN_MAX_CONNECTIONS as u64) as usize;
        Admin {
            token_file,
            token_env,
            metrics_cidrs,
            hosts,
            max_connections,
        }
    }

    pub(super) fn audit(&mut self, raw: &RawConfig) -> Audit {
        let a = &raw.audit;
        let defaults = Audit::default();
        let max_bytes = match &a.max_bytes {
            None => 100 * 1024 * 1024,
            Some(v) if *v.get_ref() < 4096 => {
                self.r.error(
                    v.span(),
                    format!("audit.max_bytes: {} is below 4096", v.get_ref()),
                );
                4096
            }
            Some(v) => *v.get_ref(),
        };
        let keep = match &a.keep {
            None => 10,
            Some(v) if *v.get_ref() > 1000 => {
                self.r.error(
                    v.span(),
                    format!("audit.keep: {} is above 1000", v.get_ref()),
                );
                10
            }
            Some(v) => *v.get_ref() as usize,
        };
        let queue = match &a.queue {
            None => defaults.queue,
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > 16 * 1024 * 1024 => {
                self.r.error(
                    v.span(),
                    format!("audit.queue: {} is outside 1..=16777216", v.get_ref()),
                );
                defaults.queue
            }
            Some(v) => *v.get_ref() as usize,
        };
        let fail_closed = match &a.overflow {
            None => false,
            Some(v) => match v.get_ref().as_str() {
                "drop" => false,
                "fail_closed" => true,
                other => {
                    self.r.error(
                        v.span(),
                        format!("audit.overflow: '{other}' is not \"drop\" or \"fail_closed\""),
                    );
                    false
                }
            },
        };
        let sink = match a.sink.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "off")) => {
                if a.sink.is_none() && a.path.is_some() {
                    // A path alone means a file sink.
                    self.file_sink(a, max_bytes, keep)
                } else {
                    AuditSinkConfig::Off
                }
            }
            Some((_, "stdout")) => AuditSinkConfig::Stdout,
            Some((_, "file")) => self.file_sink(a, max_bytes, keep),
            Some((s, other)) => {
                self.r.error(
                    s.span(),
                    format!("audit.sink: '{other}' is not \"off\", \"stdout\" or \"file\""),
                );
                AuditSinkConfig::Off
            }
        };
        Audit {
            sink,
            queue,
            fail_closed,
        }
    }

    fn file_sink(&mut self, a: &RawAudit, max_bytes: u64, keep: usize) -> AuditSinkConfig {
        match &a.path {
            Some(p) => AuditSinkConfig::File {
                path: self.path(p),
                max_bytes,
                keep,
            },
            None => {
                let span = a.sink.as_ref().map_or(0..0, |s| s.span());
                self.r.error(span, "audit: sink = \"file\" needs a path");
                AuditSinkConfig::Off
            }
        }
    }
}

/// A DNS host name: dot-separated labels of ASCII letters, digits and inner hyphens.
fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Records a listener address; false when it was already listed. Port 0 ("any free port",
/// for tests and the demo) may appear more than once: each listener gets its own port.
fn distinct(seen: &mut HashSet<SocketAddr>, addr: SocketAddr) -> bool {
    addr.port() == 0 || seen.insert(addr)
}
