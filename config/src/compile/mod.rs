//! Validation and compilation: raw TOML in, one [`Snapshot`] or every error out.
//!
//! Validation does not stop at the first problem: each section is checked independently and
//! every error is reported with its file, line and column. Only a configuration with no error
//! at all becomes a snapshot.

//!
//! One file per group of sections: [`schema`] (serde's errors), [`server`] (`[server]`,
//! `[secrets]`, `[admin]`, `[audit]`), [`network`] (`[allowlists]`, `[[egress_pools]]`),
//! [`tenants`] and [`routes`]. This file holds the entry points and the helpers they share.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use http::HeaderName;
use portcullis_allowlist::CidrSet;
use portcullis_routes::RouteTable;
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::error::{ConfigErrors, Diagnostic, LoadError, Reporter};
use crate::raw::RawConfig;
use crate::snapshot::*;

mod auth;
mod network;
mod routes;
mod schema;
mod server;
mod tenants;

pub use routes::parse_target;

/// Reads and compiles a configuration file.
pub fn load(path: &Path) -> Result<Snapshot, LoadError> {
    let source = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    compile(path, &source).map_err(LoadError::Invalid)
}

/// Compiles configuration text. `file` names it in errors and anchors relative paths.
pub fn compile(file: &Path, source: &str) -> Result<Snapshot, ConfigErrors> {
    let raw: RawConfig = match toml::from_str(source) {
        Ok(raw) => raw,
        Err(e) => {
            let mut reporter = Reporter::new(file, source);
            schema::report_toml_error(&mut reporter, source, 0, &e);
            // serde stops at the first schema error; look at each section on its own to find
            // the others too.
            for (offset, error) in schema::schema_errors_by_section(source) {
                schema::report_toml_error(&mut reporter, source, offset, &error);
            }
            return Err(reporter.into_errors());
        }
    };
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Compiler {
        r: Reporter::new(file, source),
        base_dir,
        gateway_key_header: HeaderName::from_static(DEFAULT_GATEWAY_KEY_HEADER),
    };
    let snapshot = cx.compile(raw, file, source);
    if cx.r.has_errors() {
        Err(cx.r.into_errors())
    } else {
        // `compile` returns Some whenever no error was reported.
        snapshot.ok_or_else(|| {
            ConfigErrors(vec![Diagnostic {
                file: file.to_path_buf(),
                line: 1,
                column: 1,
                message: "internal error: no snapshot and no error".into(),
            }])
        })
    }
}

/// The hex sha256 of a configuration source: the identity of a snapshot.
pub fn config_hash(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

/// Compiles one source, collecting every error in its reporter.
struct Compiler<'a> {
    r: Reporter<'a>,
    base_dir: PathBuf,
    /// The configured gateway key header (routes may not forward or set it).
    gateway_key_header: HeaderName,
}

// === impl Compiler ===

impl Compiler<'_> {
    fn compile(&mut self, raw: RawConfig, file: &Path, source: &str) -> Option<Snapshot> {
        let server = self.server(&raw);
        if let Some(server) = &server {
            self.gateway_key_header = server.gateway_key_header.clone();
        }
        let secrets = self.secrets(&raw);
        let admin = self.admin(&raw);
        let audit = self.audit(&raw);
        let allowlists = self.allowlists(&raw);
        let egress_pools = self.egress_pools(&raw);
        let pool_index: HashMap<&str, usize> = egress_pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let tenants: Vec<Tenant> = self.tenants(&raw.tenants, &pool_index, &allowlists);
        let tenant_index: HashMap<&str, usize> = tenants
            .iter()
            .enumerate()
            .map(|(i, t)| (t.id.as_str(), i))
            .collect();
        let mut routes = Vec::new();
        let mut route_spans = Vec::new();
        let mut specs = Vec::new();
        let mut names: HashMap<String, Range<usize>> = HashMap::new();
        for raw_route in &raw.routes {
            let name = raw_route.get_ref().name.get_ref();
            if let Some(first) = names.get(name) {
                let (line, _) = self.line_of(first.start);
                self.r.error(
                    raw_route.get_ref().name.span(),
                    format!("duplicate route name '{name}' (first defined on line {line})"),
                );
            } else {
                names.insert(name.clone(), raw_route.get_ref().name.span());
            }
            if let Some((route, spec)) =
                self.route(raw_route, &tenants, &tenant_index, &pool_index, &allowlists)
            {
                routes.push(route);
                specs.push(spec);
                route_spans.push(raw_route.get_ref().name.span());
            }
        }
        let table = match RouteTable::build(&specs) {
            Ok(table) => Some(table),
            Err(errors) => {
                for e in errors {
                    let portcullis_routes::RouteError::Conflict { first, second, .. } = &e else {
                        self.r.error(0..0, e.to_string());
                        continue;
                    };
                    let (line, _) = self.line_of(route_spans[*first].start);
                    self.r.error(
                        route_spans[*second].clone(),
                        format!(
                            "route '{}' can never be matched: route '{}' (line {line}) has the same host, path and methods",
                            routes[*second].name, routes[*first].name
                        ),
                    );
                }
                None
            }
        };
        let server = server?;
        let table = table?;
        Some(Snapshot {
            hash: config_hash(source),
            source_path: file.to_path_buf(),
            server,
            secrets,
            admin,
            audit,
            metrics_enabled: raw.metrics.enabled.unwrap_or(true),
            egress_pools,
            tenants,
            routes,
            table,
        })
    }

    fn line_of(&self, offset: usize) -> (usize, usize) {
        self.r.line_col(offset)
    }

    fn path(&self, raw: &Spanned<String>) -> PathBuf {
        let p = Path::new(raw.get_ref());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn existing_file(&mut self, key: &str, raw: &Spanned<String>) -> Option<PathBuf> {
        let path = self.path(raw);
        if path.is_file() {
            Some(path)
        } else {
            self.r.error(
                raw.span(),
                format!("{key}: file '{}' does not exist", path.display()),
            );
            None
        }
    }

    fn socket_addr(&mut self, key: &str, raw: &Spanned<String>) -> Option<SocketAddr> {
        match SocketAddr::from_str(raw.get_ref()) {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.r.error(
                    raw.span(),
                    format!(
                        "{key}: '{}' is not an address:port (e.g. 127.0.0.1:8080 or [::1]:8080)",
                        raw.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn ip(&mut self, key: &str, raw: &Spanned<String>) -> Option<IpAddr> {
        match IpAddr::from_str(raw.get_ref()) {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.r.error(
                    raw.span(),
                    format!("{key}: '{}' is not an IP address", raw.get_ref()),
                );
                None
            }
        }
    }

    fn cidr_set(
        &mut self,
        key: &str,
        entries: &[Spanned<String>],
        named: &BTreeMap<String, CidrSet>,
    ) -> Option<CidrSet> {
        let mut texts: Vec<String> = Vec::new();
        let mut ok = true;
        for e in entries {
            let text = e.get_ref();
            if let Some(name) = text.strip_prefix('@') {
                match named.get(name) {
                    Some(set) => {
                        texts.extend(set.allow().iter().map(|n| n.to_string()));
                        texts.extend(set.except().iter().map(|n| format!("!{n}")));
                    }
                    None => {
                        self.r
                            .error(e.span(), format!("{key}: unknown allowlist '@{name}'"));
                        ok = false;
                    }
                }
                continue;
            }
            // Check each entry alone so the error points at it.
            if let Err(err) = CidrSet::parse([text.trim_start_matches('!')]) {
                self.r.error(e.span(), format!("{key}: {err}"));
                ok = false;
                continue;
            }
            texts.push(text.clone());
        }
        if !ok {
            return None;
        }
        match CidrSet::parse(&texts) {
            Ok(set) => Some(set),
            Err(err) => {
                let span = entries.first().map_or(0..0, |e| e.span());
                self.r.error(span, format!("{key}: {err}"));
                None
            }
        }
    }

    fn header_name(&mut self, key: &str, raw: &Spanned<String>) -> Option<HeaderName> {
        match HeaderName::from_bytes(raw.get_ref().as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.r.error(
                    raw.span(),
                    format!("{key}: '{}' is not a valid header name", raw.get_ref()),
                );
                None
            }
        }
    }
}

/// Lowercase letters, digits, `-` and `_`, starting with a letter or digit.
fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
