use std::path::Path;
use std::time::Duration;

use portcullis_routes::{Lookup, RouteId};

use super::*;
use crate::auth::*;

fn ok(text: &str) -> Snapshot {
    compile(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match compile(Path::new("test.toml"), text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const BASE: &str = r#"
[[tenants]]
id = "acme"
key_sha256 = ["2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"]
"#;

#[test]
fn empty_config_gets_the_documented_defaults() {
    let s = ok("");
    assert_eq!(s.server.listen, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(s.server.admin_listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(s.server.gateway_key_header, "x-portcullis-key");
    assert_eq!(s.server.max_request_header_bytes, 64 * 1024);
    assert_eq!(s.secrets.env_prefix.as_deref(), Some("PORTCULLIS_SECRET_"));
    assert!(s.routes.is_empty());
    assert_eq!(s.hash, config_hash(""));
}

#[test]
fn a_route_compiles_with_defaults_and_is_found_by_the_table() {
    let s = ok(&format!(
        "{BASE}
[[routes]]
name = \"pd\"
tenant = \"acme\"
path = \"/pd\"
target = \"https://api.pagerduty.com/v2/\"
headers = {{ Authorization = \"Token token=${{secret:pagerduty}}\" }}
"
    ));
    let r = &s.routes[0];
    assert_eq!(r.name, "pd");
    assert_eq!(s.tenant_of(r).id, "acme");
    let targets = r.upstream.targets();
    assert_eq!(targets.len(), 1);
    assert!(targets[0].tls);
    assert_eq!(targets[0].host, "api.pagerduty.com");
    assert_eq!(targets[0].port, 443);
    assert_eq!(targets[0].base_path, "/v2");
    assert_eq!(targets[0].authority, "api.pagerduty.com");
    assert_eq!(r.auth, RouteAuth::Inject);
    assert!(r.forward_headers.iter().any(|h| h == "content-type"));
    assert!(!r.pass_set_cookie);
    assert!(r.change_origin);
    assert!(!r.public);
    assert!(r.tls_verify);
    assert_eq!(r.retries, 1);
    assert_eq!(r.timeouts, Timeouts::default());
    assert_eq!(r.rewrite, portcullis_routes::Rewrite::StripPrefix);
    assert_eq!(r.secret_refs, vec!["pagerduty".to_string()]);
    assert_eq!(r.headers[0].name, "authorization");
    assert_eq!(
        s.table.lookup("gw.example.com", "/pd/incidents", "GET"),
        Lookup::Matched(RouteId(0))
    );
}

#[test]
fn the_shipped_examples_compile() {
    for name in ["saas.toml", "minimal.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(name);
        load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn errors_carry_file_line_and_column() {
    let errs = errors(&format!(
        "{BASE}
[[routes]]
name = \"pd\"
tenant = \"nobody\"
path = \"/pd\"
target = \"https://api.pagerduty.com\"
"
    ));
    assert_eq!(
        errs,
        vec!["test.toml:8:10: error: routes 'pd': tenant: unknown tenant 'nobody'".to_string()]
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let errs = errors(
        r#"
[server]
listen = ["nope"]
[[tenants]]
id = "Bad Id"
[[egress_pools]]
name = "p"
addresses = []
"#,
    );
    assert_eq!(errs.len(), 3, "{errs:#?}");
    assert!(errs[0].contains("server.listen: 'nope' is not an address:port"));
    assert!(errs[1].contains("tenants.id: 'Bad Id' must be lowercase"));
    assert!(errs[2].contains("addresses is empty"));
}

#[test]
fn timeouts_and_health_checks_are_compiled() {
    let s = ok(&format!(
        "{BASE}
[[routes]]
name = \"pd\"
tenant = \"acme\"
path = \"/pd\"
targets = [\"http://127.0.0.1:1\", \"http://127.0.0.1:2\"]
connect_timeout_ms = 10
read_timeout_ms = 20
total_timeout_ms = 30
health_check = {{ path = \"/h\", interval_ms = 150 }}
"
    ));
    let r = &s.routes[0];
    assert_eq!(r.timeouts.connect, Duration::from_millis(10));
    assert_eq!(r.timeouts.read, Duration::from_millis(20));
    assert_eq!(r.timeouts.total, Duration::from_millis(30));
    assert_eq!(r.health_check.path.as_deref(), Some("/h"));
    assert_eq!(r.health_check.interval, Duration::from_millis(150));
    assert_eq!(r.upstream.targets().len(), 2);
}

#[test]
fn named_allowlists_expand_with_their_exceptions() {
    let s = ok(r#"
[allowlists]
office = ["10.0.0.0/8", "!10.1.0.0/16"]
[[tenants]]
id = "acme"
caller_cidrs = ["@office", "192.0.2.7"]
"#);
    let c = s.tenants[0].caller_cidrs.as_ref().unwrap();
    assert!(c.contains("10.2.3.4".parse().unwrap()));
    assert!(!c.contains("10.1.3.4".parse().unwrap()));
    assert!(c.contains("192.0.2.7".parse().unwrap()));
    assert!(!c.contains("192.0.2.8".parse().unwrap()));
}

#[test]
fn route_egress_pool_defaults_to_the_tenants() {
    let s = ok(r#"
[[egress_pools]]
name = "eu"
addresses = ["127.0.0.2"]
[[egress_pools]]
name = "us"
addresses = ["127.0.0.3"]
[[tenants]]
id = "acme"
egress_pool = "eu"
[[routes]]
name = "a"
tenant = "acme"
path = "/a"
target = "https://a.example.com"
[[routes]]
name = "b"
tenant = "acme"
path = "/b"
target = "https://b.example.com"
egress_pool = "us"
"#);
    assert_eq!(s.routes[0].egress_pool, Some(0));
    assert_eq!(s.routes[1].egress_pool, Some(1));
}

#[test]
fn targets_parse_ports_ipv6_and_reject_credentials() {
    let t = parse_target("http://[::1]:8080/x").unwrap();
    assert_eq!(
        (t.tls, t.host.as_str(), t.port, t.base_path.as_str()),
        (false, "::1", 8080, "/x")
    );
    assert_eq!(t.authority, "[::1]:8080");
    assert_eq!(
        parse_target("http://h.example:80").unwrap().authority,
        "h.example"
    );
    assert!(parse_target("https://u:p@h")
        .unwrap_err()
        .contains("credentials"));
    assert!(parse_target("ftp://h")
        .unwrap_err()
        .contains("scheme 'ftp'"));
    assert!(parse_target("https://h/?q=1")
        .unwrap_err()
        .contains("query"));
    assert!(parse_target("h.example.com").is_err());
}

/// Found while writing the `config` fuzz target's URL check: `http::uri::Authority::port_u16` is `None`
/// for a port that does not fit in 16 bits, so `:99999` used to become the default 443.
#[test]
fn targets_reject_ports_out_of_range_instead_of_defaulting() {
    for (url, port) in [
        ("https://h:99999", "99999"),
        ("http://[::1]:70000/x", "70000"),
        ("https://h:65536", "65536"),
        ("https://h:0", "0"),
        ("https://h:+1", "+1"),
        ("https://h:", ""),
    ] {
        assert_eq!(
            parse_target(url),
            Err(format!(
                "'{url}': port '{port}' is not a number in 1..=65535"
            )),
        );
    }
    assert_eq!(parse_target("https://h:65535").unwrap().port, 65535);
    assert_eq!(parse_target("https://h:00443").unwrap().port, 443);
    assert_eq!(parse_target("http://[::1]").unwrap().port, 80);
    let errors = errors(&format!(
        "{BASE}
[[routes]]
name = \"a\"
tenant = \"acme\"
path = \"/a\"
target = \"https://api.example.com:99999\"
"
    ));
    assert_eq!(
        errors,
        ["test.toml:10:10: error: routes 'a': target: 'https://api.example.com:99999': port '99999' is not a number in 1..=65535"]
    );
}

#[test]
fn the_hash_identifies_the_source() {
    let a = ok("# a");
    let b = ok("# b");
    assert_ne!(a.hash, b.hash);
    assert_eq!(a.hash.len(), 64);
    assert_eq!(a.short_hash().len(), 12);
}

#[test]
fn port_zero_may_repeat_for_tests_and_the_demo() {
    let s = ok(
        "[server]\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\nadmin_listen = \"127.0.0.1:0\"\n",
    );
    assert_eq!(s.server.listen.len(), 2);
    let e = errors("[server]\nlisten = [\"127.0.0.1:80\", \"127.0.0.1:80\"]\n");
    assert!(e[0].contains("127.0.0.1:80 is listed twice"), "{e:?}");
}

#[test]
fn key_digests_match_only_the_keys_they_were_made_from() {
    let s = ok(BASE);
    // BASE's digest is sha256("foo").
    assert!(s.tenants[0].keys.matches(b"foo"));
    assert!(!s.tenants[0].keys.matches(b"fo"));
    assert!(!KeyDigests::default().matches(b""));
    assert!(KeyDigests::of_key(b"k").matches(b"k"));
}

#[test]
fn secret_references_are_listed_once_and_mapped_to_their_routes() {
    let s = ok(&format!(
        "{BASE}
[[routes]]
name = \"a\"
tenant = \"acme\"
path = \"/a\"
target = \"https://a.example\"
headers = {{ Authorization = \"${{secret:tok}}\", X-Other = \"${{secret:tok}}-${{secret:two}}\" }}

[[routes]]
name = \"b\"
tenant = \"acme\"
path = \"/b\"
target = \"https://b.example\"
headers = {{ Authorization = \"${{secret:tok}}\" }}
"
    ));
    assert_eq!(s.secret_refs(), [("acme", "tok"), ("acme", "two")]);
    let users: Vec<&str> = s
        .routes_using_secret("acme", "tok")
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(users, ["a", "b"]);
    assert_eq!(s.routes_using_secret("acme", "two").count(), 1);
    assert_eq!(s.routes_using_secret("other", "tok").count(), 0);
}

#[test]
fn auth_modes_compile_with_their_defaults() {
    let s = ok(&format!(
        "{BASE}
[[routes]]
name = \"gh\"
tenant = \"acme\"
path = \"/gh\"
target = \"https://api.github.com\"
auth = \"passthrough\"
opaque = true

[[routes]]
name = \"idp\"
tenant = \"acme\"
path = \"/idp\"
target = \"https://api.example.com\"
auth = \"passthrough\"
token_header = \"X-User-Token\"
[routes.jwt]
issuer = \"https://idp.example.com/\"
audiences = [\"api\"]
jwks_url = \"https://idp.example.com/jwks\"

[[routes]]
name = \"crm\"
tenant = \"acme\"
path = \"/crm\"
target = \"https://api.crm.example.com\"
auth = \"exchange\"
headers = {{ X-Other = \"${{secret:other}}\" }}
[routes.exchange]
kind = \"client_credentials\"
token_url = \"https://auth.example.com/token\"
client_id = \"${{secret:client-id}}\"
client_secret = \"${{secret:client-secret}}\"
"
    ));
    let RouteAuth::Passthrough(gh) = &s.routes[0].auth else {
        panic!("passthrough expected");
    };
    assert_eq!(gh.token_header, "authorization");
    assert!(gh.jwt.is_none());
    assert!(s.routes[0]
        .forward_headers
        .iter()
        .any(|h| h == "authorization"));
    let RouteAuth::Passthrough(idp) = &s.routes[1].auth else {
        panic!("passthrough expected");
    };
    let jwt = idp.jwt.as_ref().unwrap();
    assert_eq!(jwt.algorithms, vec![JwtAlgorithm::Rs256]);
    assert_eq!(jwt.leeway, Duration::from_secs(30));
    assert_eq!(jwt.jwks_url.host, "idp.example.com");
    assert!(s.routes[1]
        .forward_headers
        .iter()
        .any(|h| h == "x-user-token"));
    assert!(!s.routes[1]
        .forward_headers
        .iter()
        .any(|h| h == "authorization"));
    let RouteAuth::Exchange(crm) = &s.routes[2].auth else {
        panic!("exchange expected");
    };
    assert_eq!(crm.header, "authorization");
    assert_eq!(crm.prefix, "Bearer ");
    assert_eq!(crm.refresh_skew, Duration::from_secs(60));
    assert_eq!(crm.kind.as_str(), "client_credentials");
    assert_eq!(
        s.routes[2].secret_refs,
        ["other", "client-id", "client-secret"]
    );
    assert_eq!(
        s.routes_using_secret("acme", "client-secret")
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["crm"]
    );
    assert_eq!(s.routes[2].auth.as_str(), "exchange");
}
