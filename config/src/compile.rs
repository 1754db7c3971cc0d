//! Validation and compilation: raw TOML in, one [`Snapshot`] or every error out.
//!
//! Validation does not stop at the first problem: each section is checked independently and
//! every error is reported with its file, line and column. Only a configuration with no error
//! at all becomes a snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use portcullis_allowlist::{AcceptRule, AcceptRules, CidrSet, DestinationGuard};
use portcullis_routes::{HostMatch, MethodSet, PathPrefix, Rewrite, RouteSpec, RouteTable};
use sha2::{Digest, Sha256};
use toml::Spanned;

use crate::error::{ConfigErrors, Diagnostic, LoadError, Reporter};
use crate::raw::{RawConfig, RawRoute, RawTenant};
use crate::snapshot::*;
use crate::Template;

/// Hop-by-hop and framing headers a route may not inject: Pingora owns them.
const NOT_INJECTABLE: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
];

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
            report_toml_error(&mut reporter, source, 0, &e);
            // serde stops at the first schema error; look at each section on its own to find
            // the others too.
            for (offset, error) in schema_errors_by_section(source) {
                report_toml_error(&mut reporter, source, offset, &error);
            }
            return Err(reporter.into_errors());
        }
    };
    let base_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut cx = Compiler {
        r: Reporter::new(file, source),
        base_dir,
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

/// Records a toml/serde error found in `source[offset..]`, naming the key for type errors.
fn report_toml_error(
    reporter: &mut Reporter<'_>,
    source: &str,
    offset: usize,
    e: &toml::de::Error,
) {
    let span = e
        .span()
        .map_or(offset..offset, |s| s.start + offset..s.end + offset);
    let message = clean_toml_message(e.message());
    let message = match key_before(source, span.start) {
        Some(key) if !message.contains('`') => format!("{key}: {message}"),
        _ => message,
    };
    reporter.error(span, message);
}

/// Re-checks each top-level section (`[server]`, every `[[routes]]` element with its
/// sub-tables, …) on its own, so that one bad section does not hide the errors of the others.
/// Returns each error with the byte offset of the section it was found in. Only used after the
/// whole-file parse failed; sections written inline (`routes = [{…}]`) are not split.
fn schema_errors_by_section(source: &str) -> Vec<(usize, toml::de::Error)> {
    use std::collections::BTreeMap as Map;
    fn check<T: serde::de::DeserializeOwned>(text: &str) -> Option<toml::de::Error> {
        toml::from_str::<Map<String, T>>(text).err()
    }
    // A syntax error makes any split meaningless: the first error is all there is.
    if toml::from_str::<toml::Table>(source).is_err() {
        return Vec::new();
    }
    let headers: Vec<(usize, String)> = header_lines(source);
    let mut out = Vec::new();
    for (i, (start, name)) in headers.iter().enumerate() {
        let top = name.split('.').next().unwrap_or("");
        if name.contains('.') {
            continue; // a sub-table: checked with its parent
        }
        let end = headers[i + 1..]
            .iter()
            .find(|(_, n)| !n.starts_with(&format!("{top}.")))
            .map_or(source.len(), |(s, _)| *s);
        let text = &source[*start..end];
        let error = match top {
            "server" => check::<crate::raw::RawServer>(text),
            "secrets" => check::<crate::raw::RawSecrets>(text),
            "admin" => check::<crate::raw::RawAdmin>(text),
            "audit" => check::<crate::raw::RawAudit>(text),
            "metrics" => check::<crate::raw::RawMetrics>(text),
            "allowlists" => check::<Map<String, Vec<String>>>(text),
            "egress_pools" => check::<Vec<crate::raw::RawEgressPool>>(text),
            "tenants" => check::<Vec<RawTenant>>(text),
            "routes" => check::<Vec<RawRoute>>(text),
            // Unknown sections are reported by the whole-file parse.
            _ => None,
        };
        if let Some(e) = error {
            out.push((*start, e));
        }
    }
    out
}

/// `(byte offset, name)` of every `[table]` / `[[array]]` header line, in order.
fn header_lines(source: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut offset = 0;
    for line in source.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let name = trimmed
                .split('#')
                .next()
                .unwrap_or("")
                .trim()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .trim()
                .replace([' ', '"'], "");
            out.push((offset + (line.len() - line.trim_start().len()), name));
        }
        offset += line.len();
    }
    out
}

/// The key whose value starts at `offset` (`retries` in `retries = "three"`), to name it in
/// type errors, which toml reports without the key.
fn key_before(source: &str, offset: usize) -> Option<&str> {
    let line_start = source.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let before = source.get(line_start..offset)?;
    let eq = before.rfind('=')?;
    let key = before[..eq]
        .trim_end()
        .rsplit(|c: char| c.is_whitespace() || c == '{' || c == ',')
        .next()?
        .trim_matches('"');
    (!key.is_empty()).then_some(key)
}

/// toml's messages end with a newline and sometimes repeat the key; keep one line.
fn clean_toml_message(message: &str) -> String {
    message.trim().replace('\n', " ")
}

struct Compiler<'a> {
    r: Reporter<'a>,
    base_dir: PathBuf,
}

// === impl Compiler ===

impl Compiler<'_> {
    fn compile(&mut self, raw: RawConfig, file: &Path, source: &str) -> Option<Snapshot> {
        let server = self.server(&raw);
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

    fn server(&mut self, raw: &RawConfig) -> Option<Server> {
        let s = &raw.server;
        let mut ok = true;
        let mut listen = Vec::new();
        let mut seen = HashSet::new();
        match &s.listen {
            None => listen.push(SocketAddr::from_str(DEFAULT_LISTEN).ok()?),
            Some(list) => {
                for l in list {
                    match self.socket_addr("server.listen", l) {
                        Some(a) if !seen.insert(a) => {
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
                if !seen.insert(a) {
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
            if seen.contains(&admin) {
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
            None => DEFAULT_GATEWAY_KEY_HEADER.to_owned(),
            Some(h) => match self.header_name("server.gateway_key_header", h) {
                Some(h) => h,
                None => {
                    ok = false;
                    String::new()
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
        let admin_listen = admin_listen?;
        ok.then_some(Server {
            listen,
            tls,
            admin_listen,
            gateway_key_header,
            max_request_body_bytes,
            max_request_header_bytes,
            trusted_proxies,
        })
    }

    fn secrets(&mut self, raw: &RawConfig) -> SecretSources {
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
        SecretSources { env_prefix, dir }
    }

    fn admin(&mut self, raw: &RawConfig) -> Admin {
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
        Admin {
            token_file,
            token_env,
            metrics_cidrs,
        }
    }

    fn audit(&mut self, raw: &RawConfig) -> Audit {
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

    fn file_sink(
        &mut self,
        a: &crate::raw::RawAudit,
        max_bytes: u64,
        keep: usize,
    ) -> AuditSinkConfig {
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

    fn allowlists(&mut self, raw: &RawConfig) -> BTreeMap<String, CidrSet> {
        let mut out = BTreeMap::new();
        for (name, entries) in &raw.allowlists {
            if !is_identifier(name) {
                self.r.error(
                    entries.span(),
                    format!(
                        "allowlists: name '{name}' must be lowercase letters, digits, '-' and '_'"
                    ),
                );
                continue;
            }
            let key = format!("allowlists.{name}");
            if let Some(set) = self.cidr_set(&key, entries.get_ref(), &BTreeMap::new()) {
                out.insert(name.clone(), set);
            }
        }
        out
    }

    /// Parses CIDR entries, expanding `@name` references to named allowlists.
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

    fn egress_pools(&mut self, raw: &RawConfig) -> Vec<EgressPool> {
        let mut pools = Vec::new();
        let mut names = HashSet::new();
        for p in &raw.egress_pools {
            let p_ref = p.get_ref();
            let name = p_ref.name.get_ref();
            if !is_identifier(name) {
                self.r.error(
                    p_ref.name.span(),
                    format!("egress_pools.name: '{name}' must be lowercase letters, digits, '-' and '_'"),
                );
            } else if !names.insert(name.clone()) {
                self.r.error(
                    p_ref.name.span(),
                    format!("egress_pools: duplicate pool name '{name}'"),
                );
            }
            if p_ref.addresses.is_empty() {
                self.r.error(
                    p_ref.name.span(),
                    format!("egress_pools '{name}': addresses is empty; a pool needs at least one source address"),
                );
            }
            let list = |key: &str, items: &[Spanned<String>], this: &mut Self| {
                items
                    .iter()
                    .filter_map(|a| this.ip(&format!("egress_pools.{key}"), a))
                    .collect::<Vec<_>>()
            };
            let addresses = list("addresses", &p_ref.addresses, self);
            let upcoming = list("upcoming", &p_ref.upcoming, self);
            let retiring = list("retiring", &p_ref.retiring, self);
            pools.push(EgressPool {
                name: name.clone(),
                addresses,
                upcoming,
                retiring,
            });
        }
        pools
    }

    fn tenants(
        &mut self,
        raw: &[Spanned<RawTenant>],
        pools: &HashMap<&str, usize>,
        allowlists: &BTreeMap<String, CidrSet>,
    ) -> Vec<Tenant> {
        let mut out = Vec::new();
        let mut ids = HashSet::new();
        for t in raw {
            let t = t.get_ref();
            let id = t.id.get_ref();
            if !is_identifier(id) {
                self.r.error(
                    t.id.span(),
                    format!("tenants.id: '{id}' must be lowercase letters, digits, '-' and '_'"),
                );
            } else if !ids.insert(id.clone()) {
                self.r
                    .error(t.id.span(), format!("tenants: duplicate tenant id '{id}'"));
            }
            let egress_pool = t.egress_pool.as_ref().and_then(|p| {
                let found = pools.get(p.get_ref().as_str()).copied();
                if found.is_none() {
                    self.r.error(
                        p.span(),
                        format!("tenants '{id}': unknown egress_pool '{}'", p.get_ref()),
                    );
                }
                found
            });
            let mut key_hashes = Vec::new();
            for k in &t.key_sha256 {
                let mut digest = [0u8; 32];
                match hex::decode_to_slice(k.get_ref(), &mut digest) {
                    Ok(()) => key_hashes.push(digest),
                    Err(_) => self.r.error(
                        k.span(),
                        format!(
                            // Never echo the value: a raw key pasted here by mistake is a secret.
                            "tenants '{id}': key_sha256 must be 64 hex digits, the sha256 of the key (`portcullis hash-key`); this value has {} characters",
                            k.get_ref().chars().count()
                        ),
                    ),
                }
            }
            let caller_cidrs = t.caller_cidrs.as_ref().and_then(|c| {
                self.cidr_set(
                    &format!("tenants '{id}': caller_cidrs"),
                    c.get_ref(),
                    allowlists,
                )
            });
            out.push(Tenant {
                id: id.clone(),
                egress_pool,
                key_hashes,
                caller_cidrs,
            });
        }
        out
    }

    fn header_name(&mut self, key: &str, raw: &Spanned<String>) -> Option<String> {
        let name = raw.get_ref().to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_ok() && !name.is_empty() {
            Some(name)
        } else {
            self.r.error(
                raw.span(),
                format!("{key}: '{}' is not a valid header name", raw.get_ref()),
            );
            None
        }
    }

    #[allow(clippy::too_many_lines)]
    fn route(
        &mut self,
        raw: &Spanned<RawRoute>,
        tenants: &[Tenant],
        tenant_index: &HashMap<&str, usize>,
        pools: &HashMap<&str, usize>,
        allowlists: &BTreeMap<String, CidrSet>,
    ) -> Option<(Route, RouteSpec)> {
        let errors_before = self.r.count();
        let r = raw.get_ref();
        let name = r.name.get_ref().clone();
        let at = |key: &str| format!("routes '{name}': {key}");
        if !is_identifier(&name) {
            self.r.error(
                r.name.span(),
                format!("routes.name: '{name}' must be lowercase letters, digits, '-' and '_'"),
            );
        }
        let tenant = tenant_index.get(r.tenant.get_ref().as_str()).copied();
        if tenant.is_none() {
            self.r.error(
                r.tenant.span(),
                format!("{}: unknown tenant '{}'", at("tenant"), r.tenant.get_ref()),
            );
        }
        let host = match &r.host {
            None => Some(HostMatch::Any),
            Some(h) => HostMatch::parse(h.get_ref())
                .map_err(|e| self.r.error(h.span(), format!("{}: {e}", at("host"))))
                .ok(),
        };
        let path_prefix = PathPrefix::parse(r.path.get_ref())
            .map_err(|e| self.r.error(r.path.span(), format!("{}: {e}", at("path"))))
            .ok();
        let methods = match &r.allowed_methods {
            None => Some(MethodSet::Any),
            Some(m) => MethodSet::parse(m.get_ref())
                .map_err(|e| {
                    self.r
                        .error(m.span(), format!("{}: {e}", at("allowed_methods")))
                })
                .ok(),
        };
        let rewrite = match (&r.rewrite_prefix, r.strip_prefix) {
            (Some(p), Some(_)) => {
                self.r.error(
                    p.span(),
                    format!(
                        "{}: set rewrite_prefix or strip_prefix, not both",
                        at("rewrite_prefix")
                    ),
                );
                None
            }
            (Some(p), None) => match PathPrefix::parse(p.get_ref()) {
                Ok(_) => Some(Rewrite::ReplacePrefix(p.get_ref().clone())),
                Err(e) => {
                    self.r
                        .error(p.span(), format!("{}: {e}", at("rewrite_prefix")));
                    None
                }
            },
            (None, Some(false)) => Some(Rewrite::Keep),
            (None, _) => Some(Rewrite::StripPrefix),
        };
        let target_list: Vec<&Spanned<String>> = match (&r.target, &r.targets) {
            (Some(t), None) => vec![t],
            (None, Some(ts)) if !ts.get_ref().is_empty() => ts.get_ref().iter().collect(),
            (None, Some(ts)) => {
                self.r
                    .error(ts.span(), format!("{}: is empty", at("targets")));
                vec![]
            }
            (Some(t), Some(_)) => {
                self.r.error(
                    t.span(),
                    format!("{}: set target or targets, not both", at("target")),
                );
                vec![]
            }
            (None, None) => {
                self.r.error(
                    r.name.span(),
                    format!("{}: missing target (or targets)", at("target")),
                );
                vec![]
            }
        };
        let targets: Vec<Target> = target_list
            .into_iter()
            .filter_map(|t| {
                parse_target(t.get_ref())
                    .map_err(|e| self.r.error(t.span(), format!("{}: {e}", at("target"))))
                    .ok()
            })
            .collect();
        let allowed_headers: Vec<String> = r
            .allowed_headers
            .iter()
            .filter_map(|h| self.header_name(&at("allowed_headers"), h))
            .collect();
        let mut headers = Vec::new();
        let mut secret_refs: Vec<String> = Vec::new();
        for (header, value) in &r.headers {
            let lower = header.to_ascii_lowercase();
            if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                self.r.error(
                    value.span(),
                    format!("{}: '{header}' is not a valid header name", at("headers")),
                );
                continue;
            }
            if NOT_INJECTABLE.contains(&lower.as_str()) {
                self.r.error(
                    value.span(),
                    format!(
                        "{}: '{header}' cannot be set here (use change_origin for Host; framing headers belong to the proxy)",
                        at("headers")
                    ),
                );
                continue;
            }
            match Template::parse(value.get_ref()) {
                Ok(t) => {
                    for s in t.secret_names() {
                        if !secret_refs.iter().any(|x| x == s) {
                            secret_refs.push(s.to_owned());
                        }
                    }
                    headers.push(InjectedHeader {
                        name: lower,
                        value: t,
                    });
                }
                Err(e) => self.r.error(
                    value.span(),
                    format!("{}: {e}", at(&format!("headers.{header}"))),
                ),
            }
        }
        let caller_cidrs = r
            .caller_cidrs
            .as_ref()
            .and_then(|c| self.cidr_set(&at("caller_cidrs"), c.get_ref(), allowlists));
        let destinations = match &r.allow_destinations {
            None => DestinationGuard::default(),
            Some(d) => DestinationGuard::new(
                self.cidr_set(&at("allow_destinations"), d.get_ref(), allowlists)
                    .unwrap_or_default(),
            ),
        };
        let ca_file = r
            .ca_file
            .as_ref()
            .and_then(|c| self.existing_file(&at("ca_file"), c));
        let egress_pool = match &r.egress_pool {
            Some(p) => {
                let found = pools.get(p.get_ref().as_str()).copied();
                if found.is_none() {
                    self.r.error(
                        p.span(),
                        format!(
                            "{}: unknown egress_pool '{}'",
                            at("egress_pool"),
                            p.get_ref()
                        ),
                    );
                }
                found
            }
            None => tenant
                .and_then(|t| tenants.get(t))
                .and_then(|t| t.egress_pool),
        };
        let defaults = Timeouts::default();
        let mut ms = |key: &str, v: &Option<Spanned<u64>>, default: Duration| match v {
            None => default,
            Some(v) if *v.get_ref() == 0 || *v.get_ref() > 24 * 3600 * 1000 => {
                self.r.error(
                    v.span(),
                    format!(
                        "{}: {} is outside 1..=86400000 milliseconds",
                        at(key),
                        v.get_ref()
                    ),
                );
                default
            }
            Some(v) => Duration::from_millis(*v.get_ref()),
        };
        let timeouts = Timeouts {
            connect: ms(
                "connect_timeout_ms",
                &r.connect_timeout_ms,
                defaults.connect,
            ),
            read: ms("read_timeout_ms", &r.read_timeout_ms, defaults.read),
            total: ms("total_timeout_ms", &r.total_timeout_ms, defaults.total),
        };
        let retries = match &r.retries {
            None => 1,
            Some(v) if *v.get_ref() > 5 => {
                self.r.error(
                    v.span(),
                    format!("{}: {} is more than 5", at("retries"), v.get_ref()),
                );
                0
            }
            Some(v) => *v.get_ref(),
        };
        let health_check = match &r.health_check {
            None => HealthCheck {
                path: None,
                interval: Duration::from_secs(5),
            },
            Some(h) => {
                let h = h.get_ref();
                let path = h.path.as_ref().and_then(|p| {
                    if p.get_ref().starts_with('/') {
                        Some(p.get_ref().clone())
                    } else {
                        self.r.error(
                            p.span(),
                            format!(
                                "{}: '{}' must start with '/'",
                                at("health_check.path"),
                                p.get_ref()
                            ),
                        );
                        None
                    }
                });
                let interval = match &h.interval_ms {
                    None => Duration::from_secs(5),
                    Some(v) if *v.get_ref() < 100 => {
                        self.r.error(
                            v.span(),
                            format!(
                                "{}: {} is below 100",
                                at("health_check.interval_ms"),
                                v.get_ref()
                            ),
                        );
                        Duration::from_secs(5)
                    }
                    Some(v) => Duration::from_millis(*v.get_ref()),
                };
                HealthCheck { path, interval }
            }
        };
        let mut rules = Vec::new();
        for a in &r.accept {
            let a_ref = a.get_ref();
            let query: Vec<(&str, &str)> = a_ref
                .query
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            match AcceptRule::new(&a_ref.methods, a_ref.path.get_ref(), &query) {
                Ok(rule) => rules.push(rule),
                Err(e) => self
                    .r
                    .error(a_ref.path.span(), format!("{}: {e}", at("accept"))),
            }
        }
        if self.r.count() > errors_before {
            return None;
        }
        let (host, path_prefix, methods, rewrite, tenant) =
            (host?, path_prefix?, methods?, rewrite?, tenant?);
        let spec = RouteSpec {
            host,
            path_prefix: path_prefix.clone(),
            methods: methods.clone(),
            rewrite: rewrite.clone(),
        };
        let route = Route {
            name,
            tenant,
            path_prefix,
            rewrite,
            methods,
            targets,
            change_origin: r.change_origin.unwrap_or(true),
            allowed_headers,
            headers,
            public: r.public,
            caller_cidrs,
            destinations,
            accept: AcceptRules::new(rules),
            tls_verify: r.tls_verify.unwrap_or(true),
            ca_file,
            upstream_http2: r.upstream_http2,
            egress_pool,
            timeouts,
            retries,
            max_request_body_bytes: r
                .max_request_body_bytes
                .as_ref()
                .map(|v| *v.get_ref())
                .filter(|v| *v > 0),
            health_check,
            secret_refs,
        };
        Some((route, spec))
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

/// Parses an upstream URL: `http(s)://host[:port][/base/path]`.
pub fn parse_target(url: &str) -> Result<Target, String> {
    let uri = http::Uri::from_str(url).map_err(|e| format!("'{url}' is not a URL: {e}"))?;
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
        return Err(format!(
            "'{url}': credentials in the URL are not allowed; use headers with ${{secret:…}}"
        ));
    }
    if uri.query().is_some() || url.contains('#') {
        return Err(format!(
            "'{url}': a target may not have a query or fragment"
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
    // Not `port_u16()`: it is `None` for a port that does not fit in 16 bits, which would
    // silently become the scheme's default (`:99999` connecting to 443), and it takes `+1`.
    let port = match port_text(authority.as_str()) {
        None => {
            if tls {
                443
            } else {
                80
            }
        }
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port != 0 && text.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => {
                return Err(format!(
                    "'{url}': port '{text}' is not a number in 1..=65535"
                ))
            }
        },
    };
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok(Target {
        tls,
        host,
        port,
        base_path,
    })
}

/// The port written in an authority (`h:8443`, `[::1]:8443`, `h:` gives `""`), if any.
fn port_text(authority: &str) -> Option<&str> {
    let after_host = match authority.rfind(']') {
        // An IPv6 literal: its colons are not a port separator.
        Some(end) => &authority[end + 1..],
        None => authority.rfind(':').map_or("", |colon| &authority[colon..]),
    };
    after_host.strip_prefix(':')
}

#[cfg(test)]
mod tests;
