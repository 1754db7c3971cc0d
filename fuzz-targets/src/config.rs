//! The `config` and `config_structured` targets: [`portcullis_config::compile`].
//!
//! `config` compiles arbitrary text, which mostly exercises the TOML parser and the error
//! reporting (every diagnostic must point inside the file). `config_structured` starts from a
//! valid configuration (the fixtures and shipped examples) and applies a few schema-aware
//! edits chosen by the fuzzer, so validation and compilation are reached with near-valid
//! input. Every snapshot that compiles must hold the invariants the gateway relies on without
//! re-checking: indexes in range, the route table built over exactly the routes, names unique.

use std::collections::HashSet;
use std::path::Path;

use arbitrary::{Result, Unstructured};
use portcullis_config::{compile, config_hash, parse_target, ConfigErrors, Snapshot};
use portcullis_routes::{HostMatch, Lookup, MethodSet};
use toml::{Table, Value};

use crate::input::word;
use crate::routes::check_lookup;

/// The name the fuzzed text is compiled under; relative paths in it resolve against the
/// current directory.
const FILE: &str = "fuzz.toml";

/// Valid configurations the structured target starts from.
const SEEDS: &[&str] = &[
    "",
    include_str!("../../tests/fixtures/valid/minimal.toml"),
    include_str!("../../tests/fixtures/valid/everything.toml"),
    include_str!("../../config/examples/minimal.toml"),
    include_str!("../../config/examples/saas.toml"),
];

/// Runs the `config` target: compiles the input as text (invalid UTF-8 replaced), and parses
/// it as an upstream URL.
pub fn text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    check_compile(&text);
    check_target_url(&text);
}

/// An upstream URL that parses keeps the port it names: the digits written, never 0, and
/// the scheme's default only when none is written.
pub fn check_target_url(url: &str) {
    let Ok(target) = parse_target(url) else {
        return;
    };
    assert!(!target.host.is_empty(), "{url:?} parsed without a host");
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let after_host = match authority.rfind(']') {
        Some(end) => &authority[end + 1..],
        None => authority.find(':').map_or("", |colon| &authority[colon..]),
    };
    match after_host.strip_prefix(':') {
        None => assert_eq!(
            target.port,
            if target.tls { 443 } else { 80 },
            "{url:?} has no port but got {}",
            target.port
        ),
        Some(port) => {
            assert!(
                !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
                "{url:?}: port {port:?} accepted as {}",
                target.port
            );
            assert_eq!(
                port.parse::<u32>().ok(),
                Some(u32::from(target.port)),
                "{url:?}: port {port:?} became {}",
                target.port
            );
            assert_ne!(target.port, 0, "{url:?}: port 0 accepted");
        }
    }
}

/// Runs the `config_structured` target: edits a valid seed configuration, then compiles it.
pub fn structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(mut doc) = seed(&mut u) else {
        return;
    };
    // Stop editing when the bytes run out; compile what there is.
    let edits = u.int_in_range(0..=12u8).unwrap_or(0);
    for _ in 0..edits {
        if edit(&mut u, &mut doc, "", 0).is_err() {
            break;
        }
    }
    if let Ok(text) = toml::to_string(&doc) {
        check_compile(&text);
    }
}

/// Compiles `text` and checks whichever result it gives.
pub fn check_compile(text: &str) {
    match compile(Path::new(FILE), text) {
        Ok(snapshot) => check_snapshot(&snapshot, text),
        Err(errors) => check_errors(&errors, text),
    }
}

/// Every diagnostic names the file and a position inside it, and they come in file order.
fn check_errors(errors: &ConfigErrors, text: &str) {
    assert!(!errors.0.is_empty(), "compile failed without a diagnostic");
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &errors.0 {
        assert_eq!(d.file, Path::new(FILE), "{d}");
        assert!(
            !d.message.is_empty(),
            "empty message at {}:{}",
            d.line,
            d.column
        );
        assert!(
            d.line >= 1 && d.line <= lines.len(),
            "line out of the file: {d}"
        );
        let width = lines[d.line - 1].chars().count();
        assert!(
            d.column >= 1 && d.column <= width + 1,
            "column out of the line ({width} characters): {d}"
        );
    }
    assert!(
        errors
            .0
            .windows(2)
            .all(|w| (w[0].line, w[0].column) <= (w[1].line, w[1].column)),
        "diagnostics out of order: {errors}"
    );
}

/// The invariants a compiled snapshot promises the gateway.
fn check_snapshot(s: &Snapshot, text: &str) {
    assert_eq!(s.hash, config_hash(text));
    assert_eq!(s.hash.len(), 64);
    assert_eq!(s.source_path, Path::new(FILE));
    assert!(
        !(s.server.listen.is_empty() && s.server.tls.is_empty()),
        "no listener"
    );
    let mut listeners: HashSet<_> = s.server.listen.iter().copied().collect();
    for tls in &s.server.tls {
        assert!(
            listeners.insert(tls.listen),
            "listener {} twice",
            tls.listen
        );
    }
    assert_eq!(
        listeners.len(),
        s.server.listen.len() + s.server.tls.len(),
        "a listener is listed twice"
    );
    assert!(
        !listeners.contains(&s.server.admin_listen),
        "admin shares a listener"
    );
    let header = s.server.gateway_key_header.as_str();
    assert!(
        !header.is_empty() && header == header.to_ascii_lowercase(),
        "gateway key header {header:?}"
    );
    assert!((1024..=1024 * 1024).contains(&s.server.max_request_header_bytes));
    let server = &s.server;
    assert!(server.request_header_timeout.as_millis() >= 100);
    assert!(server.max_connections >= 1);
    assert!(server.max_connections_per_ip.is_none_or(|n| n >= 1));
    assert!(server.h2_max_concurrent_streams >= 1);
    assert!(!server.upgrade_sock.as_os_str().is_empty());
    for host in &s.admin.hosts {
        assert!(
            !host.is_empty() && *host == host.to_ascii_lowercase() && !host.ends_with('.'),
            "admin host {host:?}"
        );
    }
    assert!((1..=16 * 1024 * 1024).contains(&s.audit.queue));

    let mut pools = HashSet::new();
    for pool in &s.egress_pools {
        assert!(pools.insert(&pool.name), "pool {} twice", pool.name);
        assert!(!pool.addresses.is_empty(), "pool {} is empty", pool.name);
    }
    let mut tenants = HashSet::new();
    for tenant in &s.tenants {
        assert!(tenants.insert(&tenant.id), "tenant {} twice", tenant.id);
        if let Some(pool) = tenant.egress_pool {
            assert!(
                pool < s.egress_pools.len(),
                "tenant {} pool index",
                tenant.id
            );
        }
    }

    assert_eq!(
        s.routes.len(),
        s.table.len(),
        "routes and table differ in length"
    );
    let mut names = HashSet::new();
    for (route, spec) in s.routes.iter().zip(s.table.specs()) {
        assert!(names.insert(&route.name), "route {} twice", route.name);
        assert!(
            route.tenant < s.tenants.len(),
            "route {} tenant",
            route.name
        );
        if let Some(pool) = route.egress_pool {
            assert!(
                pool < s.egress_pools.len(),
                "route {} pool index",
                route.name
            );
        }
        assert!(
            !route.upstream.targets().is_empty(),
            "route {} has no target",
            route.name
        );
        for target in route.upstream.targets() {
            assert!(!target.host.is_empty(), "route {} target host", route.name);
            assert!(
                !target.base_path.ends_with('/'),
                "route {} base path",
                route.name
            );
        }
        assert_eq!(route.path_prefix, spec.path_prefix, "route {}", route.name);
        assert_eq!(route.methods, spec.methods, "route {}", route.name);
        assert_eq!(route.rewrite, spec.rewrite, "route {}", route.name);
        for h in &route.headers {
            assert_eq!(
                h.name.as_str(),
                h.name.as_str().to_ascii_lowercase(),
                "route {}",
                route.name
            );
            assert!(
                !["host", "content-length", "transfer-encoding", "connection"]
                    .contains(&h.name.as_str()),
                "route {} injects {}",
                route.name,
                h.name
            );
        }
        for secret in &route.secret_refs {
            assert!(
                route
                    .headers
                    .iter()
                    .any(|h| h.value.secret_names().any(|n| n == secret)),
                "route {} lists secret {secret} that no header uses",
                route.name
            );
        }
        assert!(route.retries <= 5, "route {} retries", route.name);
        let t = &route.timeouts;
        assert!(!t.connect.is_zero() && !t.read.is_zero() && !t.total.is_zero());
    }

    // The table agrees with the documented matching order at each route's own host and
    // prefix, and a route with an exact host is always found there (nothing is more
    // specific); other hosts may lose to a more specific route, which the order allows.
    for spec in s.table.specs() {
        let host = match &spec.host {
            HostMatch::Any => "unknown.invalid".to_owned(),
            HostMatch::Exact(h) => h.clone(),
            HostMatch::Suffix(d) => format!("x.{d}"),
        };
        let method = match &spec.methods {
            MethodSet::Any => "GET",
            MethodSet::Only(m) => m.first().map_or("GET", String::as_str),
        };
        let found = check_lookup(&s.table, &host, spec.path_prefix.as_str(), method);
        if matches!(spec.host, HostMatch::Exact(_)) {
            assert!(
                matches!(found, Lookup::Matched(_)),
                "{spec:?} is not found at its own host and prefix"
            );
        }
    }
}

// --- structured edits ---

/// A seed configuration, parsed.
fn seed(u: &mut Unstructured<'_>) -> Result<Table> {
    let text = u.choose(SEEDS)?;
    Ok(text.parse::<Table>().unwrap_or_default())
}

/// Keys the schema knows, by the key of the table they are in (`""` for the top level).
fn keys_of(parent: &str) -> &'static [&'static str] {
    match parent {
        "" => &[
            "server",
            "secrets",
            "admin",
            "audit",
            "metrics",
            "allowlists",
            "egress_pools",
            "tenants",
            "routes",
        ],
        "server" => &[
            "listen",
            "tls",
            "admin_listen",
            "gateway_key_header",
            "max_request_body_bytes",
            "max_request_header_bytes",
            "trusted_proxies",
            "request_header_timeout_ms",
            "keepalive_timeout_ms",
            "max_connections",
            "max_connections_per_ip",
            "h2_max_concurrent_streams",
            "shutdown_grace_seconds",
            "upgrade_sock",
        ],
        "tls" => &["listen", "cert", "key"],
        "secrets" => &["env_prefix", "dir"],
        "admin" => &[
            "token_file",
            "token_env",
            "metrics_cidrs",
            "hosts",
            "max_connections",
        ],
        "audit" => &["sink", "path", "max_bytes", "keep", "queue", "overflow"],
        "metrics" => &["enabled"],
        "allowlists" => &["office", "portal-backends", "ops", "Bad Name"],
        "egress_pools" => &["name", "addresses", "upcoming", "retiring"],
        "tenants" => &["id", "egress_pool", "key_sha256", "caller_cidrs"],
        "routes" => &[
            "name",
            "tenant",
            "host",
            "path",
            "target",
            "targets",
            "change_origin",
            "allowed_methods",
            "allowed_headers",
            "headers",
            "strip_prefix",
            "rewrite_prefix",
            "public",
            "caller_cidrs",
            "allow_destinations",
            "ca_file",
            "tls_verify",
            "upstream_http2",
            "egress_pool",
            "connect_timeout_ms",
            "read_timeout_ms",
            "total_timeout_ms",
            "retries",
            "max_request_body_bytes",
            "health_check",
            "accept",
        ],
        "health_check" => &["path", "interval_ms"],
        "accept" => &["methods", "path", "query"],
        "headers" => &[
            "Authorization",
            "X-Api-Key",
            "host",
            "TE",
            "Bad Header",
            "x-a",
        ],
        "query" => &["state", "", "a b", "expand"],
        _ => &["x"],
    }
}

/// What a key holds, which decides the values an edit writes.
#[derive(Clone, Copy)]
enum Kind {
    Table,
    TableArray,
    Bool,
    Int,
    Str(&'static [&'static str]),
    StrArray(&'static [&'static str]),
}

const ADDRS: &[&str] = &[
    "127.0.0.1:18080",
    "127.0.0.1:19901",
    "[::1]:18080",
    "0.0.0.0:80",
    "127.0.0.1:0",
    "localhost:80",
    "1.2.3.4",
    "",
];
const CIDRS: &[&str] = &[
    "10.0.0.0/8",
    "!10.1.0.0/16",
    "127.0.0.1",
    "::1",
    "0.0.0.0/0",
    "::/0",
    "@office",
    "@portal-backends",
    "@nope",
    "10.0.0.1/8",
    "1.2.3.4/33",
    "!",
    "",
];
const IPS: &[&str] = &["127.0.0.2", "::1", "10.0.0.1", "1.2.3", "fe80::1%eth0", ""];
const NAMES: &[&str] = &[
    "acme", "globex", "eu", "us", "pd", "Acme", "a b", "", "a-b_c",
];
const HOSTS: &[&str] = &[
    "*",
    "",
    "api.example.com",
    "API.Example.com.",
    "*.example.com",
    "*.eu.example.com",
    "*.*.x",
    "a..b",
    "h:80",
];
const PATHS: &[&str] = &[
    "/",
    "/a",
    "/a/",
    "/v1/things",
    "/v1/things/*",
    "/incidents/**",
    "//",
    "/./a",
    "/../a",
    "/%2e",
    "a",
    "/a?b",
    "/{a,b}",
    "/[",
    "/a b",
];
const URLS: &[&str] = &[
    "https://api.example.com",
    "http://127.0.0.1:9/base/",
    "https://[2001:db8::1]",
    "https://u:p@h",
    "ftp://h",
    "https://h/?q",
    "https://h#f",
    "//h",
    "http://:80",
    "https://h:99999",
];
const METHODS: &[&str] = &["GET", "get", "POST", "PURGE", "*", "", "G T", "TRACE"];
const HEADER_NAMES: &[&str] = &["Authorization", "x-a", "set-cookie", "Bad Header", ""];
const TEMPLATES: &[&str] = &[
    "${secret:api-key}",
    "Token ${secret:pd} v=${env:V}",
    "static",
    "${secret:}",
    "${vault:x}",
    "${secret:a",
    "${secret:a b}",
];
const KEYS: &[&str] = &[
    "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7a",
    "zz26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
    "",
];
const FILES: &[&str] = &["/dev/null", "/nonexistent", ".", "/tmp", ""];
const WORDS: &[&str] = &[
    "off",
    "stdout",
    "file",
    "drop",
    "fail_closed",
    "PORTCULLIS_",
    "lower",
    "",
];

fn kind_of(key: &str) -> Kind {
    match key {
        "server" | "secrets" | "admin" | "audit" | "metrics" | "allowlists" | "headers"
        | "query" | "health_check" => Kind::Table,
        "tls" | "egress_pools" | "tenants" | "routes" | "accept" => Kind::TableArray,
        "enabled" | "change_origin" | "strip_prefix" | "public" | "tls_verify"
        | "upstream_http2" => Kind::Bool,
        "max_request_body_bytes"
        | "max_request_header_bytes"
        | "max_bytes"
        | "keep"
        | "queue"
        | "connect_timeout_ms"
        | "read_timeout_ms"
        | "total_timeout_ms"
        | "retries"
        | "interval_ms"
        | "request_header_timeout_ms"
        | "keepalive_timeout_ms"
        | "max_connections"
        | "max_connections_per_ip"
        | "h2_max_concurrent_streams"
        | "shutdown_grace_seconds" => Kind::Int,
        "listen" | "admin_listen" => Kind::Str(ADDRS),
        "trusted_proxies" | "metrics_cidrs" | "caller_cidrs" | "allow_destinations" | "office"
        | "portal-backends" | "ops" => Kind::StrArray(CIDRS),
        "addresses" | "upcoming" | "retiring" => Kind::StrArray(IPS),
        "name" | "id" | "tenant" | "egress_pool" | "token_env" => Kind::Str(NAMES),
        "host" => Kind::Str(HOSTS),
        "hosts" => Kind::StrArray(HOSTS),
        "path" | "rewrite_prefix" => Kind::Str(PATHS),
        "target" => Kind::Str(URLS),
        "targets" => Kind::StrArray(URLS),
        "allowed_methods" | "methods" => Kind::StrArray(METHODS),
        "allowed_headers" => Kind::StrArray(HEADER_NAMES),
        "gateway_key_header" => Kind::Str(HEADER_NAMES),
        "key_sha256" => Kind::StrArray(KEYS),
        "cert" | "key" | "dir" | "token_file" | "ca_file" | "upgrade_sock" => Kind::Str(FILES),
        "Authorization" | "X-Api-Key" | "TE" | "Bad Header" | "x-a" => Kind::Str(TEMPLATES),
        _ => Kind::Str(WORDS),
    }
}

/// One edit somewhere under `table` (whose key is `parent`): set, remove or rename a key,
/// or descend into a table or one element of an array of tables.
fn edit(u: &mut Unstructured<'_>, table: &mut Table, parent: &str, depth: u8) -> Result<()> {
    let key = word(u, keys_of(parent))?;
    let kind = kind_of(&key);
    match (table.get_mut(&key), kind, u.int_in_range(0..=9u8)?) {
        (Some(Value::Table(inner)), _, 0..=6) if depth < 4 => {
            return edit(u, inner, &key, depth + 1);
        }
        (Some(Value::Array(items)), Kind::TableArray, n) if depth < 4 => {
            if n == 0 && !items.is_empty() {
                // Duplicate an element: same names, same prefixes, conflicts.
                let i = u.choose_index(items.len())?;
                let copy = items[i].clone();
                items.push(copy);
            } else if n == 1 {
                items.push(Value::Table(Table::new()));
            }
            if !items.is_empty() {
                let i = u.choose_index(items.len())?;
                if let Value::Table(inner) = &mut items[i] {
                    return edit(u, inner, &key, depth + 1);
                }
            }
            return Ok(());
        }
        (Some(_), _, 0) => {
            table.remove(&key);
            return Ok(());
        }
        (Some(_), _, 1) => {
            // A key the schema does not know, or one from another table.
            if let Some(v) = table.remove(&key) {
                table.insert(word(u, keys_of("routes"))?, v);
            }
            return Ok(());
        }
        _ => {}
    }
    let value = if u.ratio(1u8, 10u8)? {
        // The wrong type now and then.
        let kinds = [
            Kind::Bool,
            Kind::Int,
            Kind::Str(WORDS),
            Kind::StrArray(WORDS),
        ];
        let wrong = *u.choose(&kinds)?;
        value(u, wrong)?
    } else {
        value(u, kind)?
    };
    table.insert(key, value);
    Ok(())
}

fn value(u: &mut Unstructured<'_>, kind: Kind) -> Result<Value> {
    Ok(match kind {
        Kind::Table => Value::Table(Table::new()),
        Kind::TableArray => Value::Array(vec![Value::Table(Table::new())]),
        Kind::Bool => Value::Boolean(u.arbitrary()?),
        Kind::Int => Value::Integer(*u.choose(&[
            0,
            1,
            5,
            6,
            99,
            100,
            1023,
            1024,
            4096,
            86_400_000,
            86_400_001,
            1 << 20,
            (1 << 20) + 1,
            16 * 1024 * 1024 + 1,
            i64::from(u32::MAX) + 1,
            i64::MAX,
            -1,
        ])?),
        Kind::Str(vocab) => Value::String(word(u, vocab)?),
        Kind::StrArray(vocab) => {
            let n = u.int_in_range(0..=3)?;
            Value::Array(
                (0..n)
                    .map(|_| word(u, vocab).map(Value::String))
                    .collect::<Result<_>>()?,
            )
        }
    })
}
