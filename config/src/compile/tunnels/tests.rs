use std::path::Path;
use std::time::Duration;

use super::super::compile;
use crate::snapshot::*;

const TOKEN_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const TOKEN_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn ok(text: &str) -> Snapshot {
    compile(Path::new("test.toml"), text).unwrap_or_else(|e| panic!("{e}"))
}

fn errors(text: &str) -> Vec<String> {
    match compile(Path::new("test.toml"), text) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn base(extra: &str) -> String {
    format!(
        r#"
[tunnel]
listen = "127.0.0.1:0"
insecure_plaintext = true

[[egress_pools]]
name = "eu"
addresses = ["127.0.0.2"]

[[tenants]]
id = "acme"
egress_pool = "eu"

[[tenants]]
id = "globex"

[[tunnels]]
name = "acme-dc1"
tenant = "acme"
token_sha256 = ["{TOKEN_A}"]
{extra}"#
    )
}

#[test]
fn a_tunnel_route_reaches_an_agent_origin_and_has_no_egress() {
    let s = ok(&base(
        r#"
[[routes]]
name = "sonar"
tenant = "acme"
path = "/acme/sonar"
tunnel = "acme-dc1"
target = "http://sonar/api/"
"#,
    ));
    let r = &s.routes[0];
    let RouteUpstream::Tunnel {
        tunnel,
        origin,
        target,
    } = &r.upstream
    else {
        panic!("not a tunnel route: {:?}", r.upstream);
    };
    assert_eq!((*tunnel, origin.as_str()), (0, "sonar"));
    assert_eq!(target.base_path, "/api");
    assert_eq!(target.authority, "sonar");
    assert_eq!(r.upstream.tunnel(), Some(0));
    assert_eq!(r.upstream.targets().len(), 1);
    assert_eq!(
        r.egress_pool, None,
        "the tenant's egress pool does not apply"
    );
    assert!(r.change_origin);
    assert_eq!(s.routes_using_tunnel(0).count(), 1);
    assert_eq!(s.tunnels[0].tenant, 0);
    assert!(s.tunnels[0].tokens.contains_digest(&hex_digest(TOKEN_A)));
    assert!(!s.tunnels[0].tokens.contains_digest(&hex_digest(TOKEN_B)));
}

fn hex_digest(hex_text: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut out).unwrap();
    out
}

#[test]
fn the_listener_has_documented_defaults_and_reads_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.pem"), "x").unwrap();
    std::fs::write(dir.path().join("t.key"), "x").unwrap();
    let file = dir.path().join("portcullis.toml");
    let s = compile(
        &file,
        "[tunnel]\nlisten = \"0.0.0.0:7443\"\ncert = \"t.pem\"\nkey = \"t.key\"\n",
    )
    .unwrap();
    let t = s.tunnel.unwrap();
    assert_eq!(t.listen, "0.0.0.0:7443".parse().unwrap());
    let tls = t.tls.unwrap();
    assert_eq!(tls.cert, dir.path().join("t.pem"));
    assert_eq!(tls.key, dir.path().join("t.key"));
    assert_eq!(t.handshake_timeout, DEFAULT_TUNNEL_HANDSHAKE_TIMEOUT);
    assert_eq!(t.heartbeat_interval, Duration::from_secs(3));
    assert_eq!(t.heartbeat_timeout, Duration::from_secs(9));
    assert_eq!(t.reconnect_grace, Duration::from_secs(30));
    assert!(s.tunnels.is_empty() && s.tcp_routes.is_empty());
}

#[test]
fn a_route_may_not_use_another_tenants_tunnel() {
    let e = errors(&base(
        r#"
[[routes]]
name = "steal"
tenant = "globex"
path = "/globex/sonar"
tunnel = "acme-dc1"
target = "http://sonar"
"#,
    ));
    assert_eq!(
        e,
        [
            "test.toml:26:10: error: routes 'steal': tunnel: tunnel 'acme-dc1' belongs to tenant \
          'acme', not 'globex'; a route may only use its own tenant's tunnels"
        ]
    );
}

#[test]
fn a_tcp_route_needs_caller_cidrs_and_gets_a_default_name() {
    let s = ok(&base(
        r#"
[[tcp_routes]]
listen = "127.0.0.1:0"
tunnel = "acme-dc1"
origin = "db"
caller_cidrs = ["127.0.0.0/8"]
"#,
    ));
    let t = &s.tcp_routes[0];
    assert_eq!(t.name, "acme-dc1/db");
    assert_eq!((t.tunnel, t.origin.as_str()), (0, "db"));
    assert!(t.caller_cidrs.contains("127.0.0.9".parse().unwrap()));
    assert!(!t.caller_cidrs.contains("10.0.0.1".parse().unwrap()));

    let e = errors(&base(
        r#"
[[tcp_routes]]
listen = "127.0.0.1:0"
tunnel = "acme-dc1"
origin = "db"
"#,
    ));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("tcp_routes '127.0.0.1:0': caller_cidrs: missing"),
        "{e:?}"
    );
}

#[test]
fn a_token_opens_one_tunnel_only() {
    let e = errors(&base(&format!(
        r#"
[[tunnels]]
name = "acme-dc2"
tenant = "acme"
token_sha256 = ["{TOKEN_B}", "{TOKEN_A}"]
"#
    )));
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("the same token already opens tunnel 'acme-dc1'"),
        "{e:?}"
    );
}

#[test]
fn a_raw_token_in_token_sha256_is_never_echoed() {
    let e = errors(
        "[tunnel]\nlisten = \"127.0.0.1:0\"\ninsecure_plaintext = true\n[[tenants]]\nid = \"a\"\n\
         [[tunnels]]\nname = \"t\"\ntenant = \"a\"\ntoken_sha256 = [\"s3cr3t-broker-token\"]\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(!e[0].contains("s3cr3t"), "{e:?}");
    assert!(e[0].contains("this value has 19 characters"), "{e:?}");
}
