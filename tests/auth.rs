//! End-to-end tests of the token modes: passthrough with JWT validation against a loopback JWKS
//! server, and token exchange against a loopback token endpoint that counts its calls. Real
//! `portcullis` processes, real sockets, real RSA, EC and Ed25519 keys generated here.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use base64::Engine;
use support::*;

#[path = "auth/keys.rs"]
mod keys;

use keys::SigningKey;

const KEY: &str = "acme-key";
const ISSUER: &str = "https://idp.test/";
const AUDIENCE: &str = "portal-api";
const ADMIN_TOKEN: &str = "admin-token-for-tests-1b9e";
const CLIENT_ID: &str = "acme-integration-id-5c1d";
const CLIENT_SECRET: &str = "acme-client-secret-\"quoted\"-93af";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Standard claims for the test issuer and audience, valid for an hour.
fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// What the JWKS server answers: status, body, delay.
#[derive(Clone)]
struct JwksReply {
    status: u16,
    body: String,
    delay: Duration,
}

/// A loopback JWKS server whose answer the test changes as it goes.
struct JwksServer {
    upstream: Upstream,
    reply: Arc<ArcSwap<JwksReply>>,
}

impl JwksServer {
    async fn start(keys: &[&SigningKey]) -> Self {
        let reply = Arc::new(ArcSwap::from_pointee(JwksReply {
            status: 200,
            body: keys::jwks(keys),
            delay: Duration::ZERO,
        }));
        let r = Arc::clone(&reply);
        let upstream = UpstreamBuilder::new()
            .reply(move |_| {
                let now = r.load();
                Reply {
                    status: now.status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: ReplyBody::Text(now.body.clone()),
                    delay: now.delay,
                }
            })
            .start()
            .await;
        Self { upstream, reply }
    }

    fn serve(&self, keys: &[&SigningKey], delay: Duration) {
        self.reply.store(Arc::new(JwksReply {
            status: 200,
            body: keys::jwks(keys),
            delay,
        }));
    }

    fn fail(&self, status: u16) {
        self.reply.store(Arc::new(JwksReply {
            status,
            body: "down".into(),
            delay: Duration::ZERO,
        }));
    }

    fn url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.upstream.url())
    }

    async fn fetches(&self) -> usize {
        self.upstream.count().await
    }
}

/// A gateway with tenant `acme` (egress 127.0.0.2), an admin token, a file audit log, and `routes`.
fn gateway(routes: &str, env: &[(&str, &str)]) -> GatewayProcess {
    let config = format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"

[admin]
token_file = "{{DIR}}/admin-token"

[audit]
sink = "file"
path = "{{DIR}}/audit.jsonl"

[[egress_pools]]
name = "eu"
addresses = ["127.0.0.2"]

[[tenants]]
id = "acme"
egress_pool = "eu"
key_sha256 = ["{}"]

{routes}
"#,
        sha256_hex(KEY)
    );
    GatewayProcess::start_with(&config, env, |dir| {
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    })
}

/// A passthrough route `/api` to `upstream`, validating with `jwks`.
fn passthrough_route(upstream: &Upstream, jwks_url: &str, extra: &str) -> String {
    format!(
        r#"
[[routes]]
name = "idp-api"
tenant = "acme"
path = "/api"
target = "{}"
auth = "passthrough"
allow_destinations = ["127.0.0.0/8"]

[routes.jwt]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}", "other-api"]
jwks_url = "{jwks_url}"
algorithms = ["RS256", "ES256", "EdDSA"]
leeway_seconds = 5
jwks_min_refetch_seconds = 1
{extra}
"#,
        upstream.url()
    )
}

async fn wait_for_fetches(jwks: &JwksServer, n: usize) {
    eventually(Duration::from_secs(20), "the JWKS is fetched", || async {
        jwks.fetches().await >= n
    })
    .await;
    assert_eq!(jwks.fetches().await, n);
}

async fn get_with_token(gw: &GatewayProcess, token: Option<&str>) -> (u16, String) {
    let mut req = client()
        .get(gw.url("/api/things"))
        .header("x-portcullis-key", KEY);
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn admin_get(gw: &GatewayProcess, path: &str) -> String {
    client()
        .get(gw.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// === passthrough ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_ec_and_ed25519_tokens_pass_and_go_upstream_untouched_from_the_egress_ip() {
    let (rsa, ec, ed) = (
        SigningKey::rsa("rsa-1"),
        SigningKey::ec("ec-1"),
        SigningKey::ed("ed-1"),
    );
    let jwks = JwksServer::start(&[&rsa, &ec, &ed]).await;
    let upstream = UpstreamBuilder::new().start().await;
    let gw = gateway(&passthrough_route(&upstream, &jwks.url(), ""), &[]);
    // The key set is fetched as soon as the gateway runs, from the tenant's egress address.
    wait_for_fetches(&jwks, 1).await;
    assert_eq!(
        jwks.upstream.last().await.peer.ip().to_string(),
        "127.0.0.2"
    );

    for key in [&rsa, &ec, &ed] {
        let token = key.sign(&claims());
        let resp = client()
            .get(gw.url("/api/things"))
            .header("x-portcullis-key", KEY)
            .header("authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{:?}: {}", key.alg, gw.log());
        let seen = upstream.last().await;
        let h = header_map(&seen);
        assert_eq!(
            h["authorization"],
            format!("Bearer {token}"),
            "forwarded as it came"
        );
        assert!(
            !h.contains_key("x-portcullis-key"),
            "the gateway key never goes upstream"
        );
        assert_eq!(seen.peer.ip().to_string(), "127.0.0.2");
    }
    assert_eq!(jwks.fetches().await, 1, "valid keys need no refetch");

    let routes = json(&admin_get(&gw, "/api/v1/routes").await);
    assert_eq!(routes["routes"][0]["auth"], "passthrough");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_is_refused_with_its_reason_and_never_reaches_the_upstream() {
    let rsa = SigningKey::rsa("rsa-1");
    let ec = SigningKey::ec("ec-1");
    let impostor = SigningKey::ec("ec-1");
    let stranger = SigningKey::ed("not-published");
    let jwks = JwksServer::start(&[&rsa, &ec]).await;
    let upstream = UpstreamBuilder::new().start().await;
    let gw = gateway(&passthrough_route(&upstream, &jwks.url(), ""), &[]);

    let with = |changes: serde_json::Value| {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "expired",
            rsa.sign(&with(serde_json::json!({"exp": now() - 3600}))),
        ),
        (
            "not_yet_valid",
            ec.sign(&with(serde_json::json!({"nbf": now() + 3600}))),
        ),
        (
            "wrong_audience",
            rsa.sign(&with(serde_json::json!({"aud": "someone-else"}))),
        ),
        (
            "wrong_issuer",
            rsa.sign(&with(serde_json::json!({"iss": "https://evil.test/"}))),
        ),
        ("bad_signature", impostor.sign(&claims())),
        ("bad_signature", keys::unsigned(&claims(), "rsa-1")),
        ("bad_signature", rsa.hs256_with_public_key(&claims())),
        ("unknown_key", stranger.sign(&claims())),
        ("malformed", "not-a-jwt".to_owned()),
        ("malformed", "a.b.c".to_owned()),
    ];
    for (reason, token) in &cases {
        let (status, body) = get_with_token(&gw, Some(token)).await;
        assert_eq!(status, 401, "{reason}: {body}");
        let body_json = json(&body);
        assert_eq!(body_json["error"], "token_invalid", "{body}");
        assert_eq!(body_json["reason"], *reason, "{body}");
        assert_eq!(body_json["route"], "idp-api");
        assert!(!body.contains(token.as_str()), "the token is never echoed");
    }
    let (status, body) = get_with_token(&gw, None).await;
    assert_eq!(status, 401);
    assert_eq!(json(&body)["reason"], "missing");
    assert_eq!(
        upstream.count().await,
        0,
        "no refused token reached the upstream"
    );

    let metrics = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (reason, count) in [
        ("expired", 1),
        ("bad_signature", 3),
        ("malformed", 2),
        ("missing", 1),
        ("unknown_key", 1),
    ] {
        let line = format!(
            "portcullis_jwt_validation_failures_total{{tenant=\"acme\",route=\"idp-api\",reason=\"{reason}\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    let log = gw.log();
    for (_, token) in &cases {
        assert!(!log.contains(token.as_str()), "a token leaked into the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_found_by_a_throttled_refetch() {
    let old = SigningKey::ec("old");
    let new = SigningKey::ed("new");
    let jwks = JwksServer::start(&[&old]).await;
    let upstream = UpstreamBuilder::new().start().await;
    let gw = gateway(&passthrough_route(&upstream, &jwks.url(), ""), &[]);
    wait_for_fetches(&jwks, 1).await;

    // A burst of tokens naming a key nobody published: refetches are throttled to one per
    // `jwks_min_refetch_seconds` (1 s here), however many requests ask.
    let started = Instant::now();
    let unknown = new.sign(&claims());
    for _ in 0..20 {
        let (status, body) = get_with_token(&gw, Some(&unknown)).await;
        assert_eq!(status, 401);
        assert_eq!(json(&body)["reason"], "unknown_key");
    }
    let allowed = 1 + 1 + started.elapsed().as_secs() as usize;
    let fetches = jwks.fetches().await;
    assert!(
        (1..=allowed).contains(&fetches),
        "{fetches} fetches for 20 unknown-kid requests in {:?}",
        started.elapsed()
    );

    // The issuer rotates: the new key is published. A token signed with it is accepted as soon
    // as the throttle lets a refetch happen; tokens of the old key keep working meanwhile.
    jwks.serve(&[&old, &new], Duration::ZERO);
    eventually(
        Duration::from_secs(20),
        "the new key is fetched",
        || async { get_with_token(&gw, Some(&unknown)).await.0 == 200 },
    )
    .await;
    assert_eq!(get_with_token(&gw, Some(&old.sign(&claims()))).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_keys_outlive_a_jwks_outage_for_the_grace_window_then_the_route_answers_503() {
    let key = SigningKey::ed("ed-1");
    let jwks = JwksServer::start(&[&key]).await;
    let upstream = UpstreamBuilder::new().start().await;
    let extra = "jwks_refresh_seconds = 1\njwks_grace_seconds = 2";
    let gw = gateway(&passthrough_route(&upstream, &jwks.url(), extra), &[]);
    let token = key.sign(&claims());

    // Wait for a background refresh (requests go on meanwhile), so the set is fresh.
    let before = jwks.fetches().await;
    eventually(Duration::from_secs(20), "a background refresh", || async {
        assert_eq!(get_with_token(&gw, Some(&token)).await.0, 200);
        jwks.fetches().await > before
    })
    .await;
    // The endpoint goes down: the cached set keeps serving, refreshes fail in the background…
    jwks.fail(503);
    let down = jwks.fetches().await;
    assert_eq!(get_with_token(&gw, Some(&token)).await.0, 200);
    eventually(Duration::from_secs(20), "a failed refresh", || async {
        let (status, body) = get_with_token(&gw, Some(&token)).await;
        assert!(status == 200 || status == 503, "{status} {body}");
        jwks.fetches().await > down
    })
    .await;
    // …until the grace window is over: then the gateway cannot verify and says so.
    eventually(Duration::from_secs(30), "503 jwks_unavailable", || async {
        let (status, body) = get_with_token(&gw, Some(&token)).await;
        assert!(status == 200 || status == 503, "{status} {body}");
        status == 503 && json(&body)["error"] == "jwks_unavailable"
    })
    .await;
    let metrics = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "portcullis_jwks_fetches_total{tenant=\"acme\",route=\"idp-api\",result=\"error\"}"
        ),
        "{metrics}"
    );
    // Back up: the next fetch the throttle allows restores the route.
    jwks.serve(&[&key], Duration::ZERO);
    eventually(Duration::from_secs(20), "recovery", || async {
        get_with_token(&gw, Some(&token)).await.0 == 200
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_forbidden_jwks_endpoint_fails_closed() {
    let key = SigningKey::ed("ed-1");
    let token = key.sign(&claims());
    let upstream = UpstreamBuilder::new().start().await;
    let (_closed, port) = closed_port();
    // Down from the start.
    let down = passthrough_route(
        &upstream,
        &format!("http://127.0.0.1:{port}/.well-known/jwks.json"),
        "",
    );
    // Reachable, but loopback is not in this route's allow_destinations: the destination
    // guard covers the JWKS URL as it covers the target.
    let jwks = JwksServer::start(&[&key]).await;
    let forbidden = format!(
        r#"
[[routes]]
name = "no-loopback"
tenant = "acme"
path = "/guarded"
target = "https://api.example.com"
auth = "passthrough"

[routes.jwt]
issuer = "{ISSUER}"
audiences = ["{AUDIENCE}"]
jwks_url = "{}"
algorithms = ["EdDSA"]
"#,
        jwks.url()
    );
    let gw = gateway(&format!("{down}\n{forbidden}"), &[]);
    let (status, body) = get_with_token(&gw, Some(&token)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(json(&body)["error"], "jwks_unavailable");
    let resp = client()
        .get(gw.url("/guarded/x"))
        .header("x-portcullis-key", KEY)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(
        jwks.fetches().await,
        0,
        "the guard stopped the fetch before it connected"
    );
    // The log says why (written by a background writer: wait for the line).
    eventually(
        Duration::from_secs(20),
        "the refusal in the log",
        || async { gw.log().contains("allow_destinations") },
    )
    .await;
    assert_eq!(upstream.count().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jwks_refresh_delays_no_request_and_serves_every_request_waiting_for_a_new_key() {
    let old = SigningKey::ec("old");
    let new = SigningKey::rsa("new");
    let jwks = JwksServer::start(&[&old]).await;
    let upstream = UpstreamBuilder::new().start().await;
    let extra = "jwks_refresh_seconds = 2";
    let gw = gateway(&passthrough_route(&upstream, &jwks.url(), extra), &[]);
    wait_for_fetches(&jwks, 1).await;
    let old_token = old.sign(&claims());
    let new_token = new.sign(&claims());

    // The endpoint becomes slow (3 s) and publishes a new key. Once the cached set is due for
    // a refresh (2 s), a request starts one in the background; the JWKS server records it as it
    // arrives, then takes its time.
    jwks.serve(&[&old, &new], Duration::from_secs(3));
    eventually(
        Duration::from_secs(20),
        "a background refresh starts",
        || async {
            assert_eq!(get_with_token(&gw, Some(&old_token)).await.0, 200);
            jwks.fetches().await > 1
        },
    )
    .await;
    // While it runs, requests with known keys are answered from the cached set…
    let started = Instant::now();
    assert_eq!(get_with_token(&gw, Some(&old_token)).await.0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a request waited for the refresh ({:?})",
        started.elapsed()
    );
    // …and requests with the new key wait for that same fetch: one fetch serves them all.
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let url = gw.url("/api/things");
        let token = new_token.clone();
        tasks.push(tokio::spawn(async move {
            client()
                .get(url)
                .header("x-portcullis-key", KEY)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(jwks.fetches().await, 2, "one fetch served every request");
}

// === exchange ===

/// A loopback token endpoint: counts calls, hands out `tok-N`, answers as configured.
struct TokenEndpoint {
    upstream: Upstream,
    calls: Arc<AtomicUsize>,
    status: Arc<std::sync::atomic::AtomicU16>,
}

impl TokenEndpoint {
    async fn start(expires_in: u64, delay: Duration) -> Self {
        let calls = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(std::sync::atomic::AtomicU16::new(200));
        let (c, s) = (Arc::clone(&calls), Arc::clone(&status));
        let upstream = UpstreamBuilder::new()
            .reply(move |_| {
                let n = c.fetch_add(1, Ordering::SeqCst) + 1;
                let status = s.load(Ordering::SeqCst);
                let body = if status == 200 {
                    serde_json::json!({
                        "access_token": exchanged_token(n),
                        "token_type": "Bearer",
                        "expires_in": expires_in,
                    })
                    .to_string()
                } else {
                    // An error body that echoes a secret-looking value: it must not be repeated.
                    serde_json::json!({"error": "server_error", "error_description": CLIENT_SECRET})
                        .to_string()
                };
                Reply {
                    status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: ReplyBody::Text(body),
                    delay,
                }
            })
            .start()
            .await;
        Self {
            upstream,
            calls,
            status,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// The `n`th token the endpoint hands out: long and unique, to be searched for in outputs.
fn exchanged_token(n: usize) -> String {
    format!("tok-{n}-7d1f0c9e4b2a8d6f")
}

fn exchange_route(upstream: &Upstream, token_url: &str, skew: u64) -> String {
    format!(
        r#"
[[routes]]
name = "crm"
tenant = "acme"
path = "/crm"
target = "{}"
auth = "exchange"
allow_destinations = ["127.0.0.0/8"]

[routes.exchange]
kind = "client_credentials"
token_url = "{token_url}/oauth/token"
client_id = "${{secret:client-id}}"
client_secret = "${{secret:client-secret}}"
scope = "read write"
refresh_skew_seconds = {skew}
"#,
        upstream.url()
    )
}

fn exchange_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("PORTCULLIS_SECRET_ACME_CLIENT_ID", CLIENT_ID),
        ("PORTCULLIS_SECRET_ACME_CLIENT_SECRET", CLIENT_SECRET),
    ]
}

async fn crm(gw: &GatewayProcess, method: reqwest::Method) -> (u16, String) {
    let resp = client()
        .request(method, gw.url("/crm/items"))
        .header("x-portcullis-key", KEY)
        .header("authorization", "Bearer caller-must-not-pass")
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_exchange_serves_a_hundred_concurrent_requests() {
    let endpoint = TokenEndpoint::start(3600, Duration::from_millis(300)).await;
    let upstream = UpstreamBuilder::new().start().await;
    let gw = gateway(
        &exchange_route(&upstream, &endpoint.upstream.url(), 60),
        &exchange_env(),
    );
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let url = gw.url("/crm/items");
        tasks.push(tokio::spawn(async move {
            client()
                .get(url)
                .header("x-portcullis-key", KEY)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(endpoint.calls(), 1, "one exchange for all requests");
    let seen = upstream.requests().await;
    assert_eq!(seen.len(), 100);
    for r in &seen {
        assert_eq!(
            header_map(r)["authorization"],
            format!("Bearer {}", exchanged_token(1))
        );
    }
    // RFC 6749 §4.4: form body with the grant type and scope, client authenticated with
    // HTTP Basic over the form-encoded id and secret; from the tenant's egress address.
    let call = endpoint.upstream.last().await;
    assert_eq!(call.method, "POST");
    assert_eq!(call.uri, "/oauth/token");
    assert_eq!(call.peer.ip().to_string(), "127.0.0.2");
    let h = header_map(&call);
    assert_eq!(h["content-type"], "application/x-www-form-urlencoded");
    let basic = h["authorization"].strip_prefix("Basic ").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("{CLIENT_ID}:{}", CLIENT_SECRET.replace('"', "%22"))
    );
    assert_eq!(
        String::from_utf8(call.body.clone()).unwrap(),
        "grant_type=client_credentials&scope=read+write"
    );

    let secrets = json(&admin_get(&gw, "/api/v1/secrets").await);
    let exchange = &secrets["exchanges"][0];
    assert_eq!(exchange["route"], "crm");
    assert_eq!(exchange["tenant"], "acme");
    assert_eq!(exchange["exchanges"], 1);
    assert!(exchange["token_cached_until_ms"].as_u64().unwrap() > 0);
    assert!(exchange["last_error"].is_null());
    let routes = json(&admin_get(&gw, "/api/v1/routes").await);
    assert_eq!(routes["routes"][0]["auth"], "exchange");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_refreshed_before_it_expires_without_failing_a_request() {
    // Lives 3 s, refreshed 2 s early: from 1 s on, a request starts a background refresh.
    let endpoint = TokenEndpoint::start(3, Duration::ZERO).await;
    let upstream = UpstreamBuilder::new().start().await;
    let gw = gateway(
        &exchange_route(&upstream, &endpoint.upstream.url(), 2),
        &exchange_env(),
    );
    assert_eq!(crm(&gw, reqwest::Method::GET).await.0, 200);
    assert_eq!(endpoint.calls(), 1);
    eventually(
        Duration::from_secs(20),
        "a refreshed token upstream",
        || async {
            assert_eq!(crm(&gw, reqwest::Method::GET).await.0, 200);
            let last = upstream.last().await;
            header_map(&last)["authorization"] == format!("Bearer {}", exchanged_token(2))
        },
    )
    .await;
    // Every request carried a token that had not expired: the first, then the second.
    let seen: Vec<String> = upstream
        .requests()
        .await
        .iter()
        .map(|r| header_map(r)["authorization"].clone())
        .collect();
    assert!(seen
        .iter()
        .all(|a| *a == format!("Bearer {}", exchanged_token(1))
            || *a == format!("Bearer {}", exchanged_token(2))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_401_invalidates_the_token_once_and_retries_idempotent_requests() {
    let endpoint = TokenEndpoint::start(3600, Duration::ZERO).await;
    let rejected: Arc<ArcSwap<HashSet<String>>> = Arc::new(ArcSwap::from_pointee(
        [format!("Bearer {}", exchanged_token(1))].into(),
    ));
    let r = Arc::clone(&rejected);
    let upstream = UpstreamBuilder::new()
        .reply(move |req| {
            let auth = header_map(req)
                .get("authorization")
                .cloned()
                .unwrap_or_default();
            if r.load().contains(&auth) || r.load().contains("*") {
                Reply {
                    status: 401,
                    ..Reply::ok("{\"message\":\"Bad credentials\"}")
                }
            } else {
                Reply::ok("ok")
            }
        })
        .start()
        .await;
    let gw = gateway(
        &exchange_route(&upstream, &endpoint.upstream.url(), 60),
        &exchange_env(),
    );

    // GET: refused token 1, invalidated, exchanged again, retried with token 2.
    assert_eq!(crm(&gw, reqwest::Method::GET).await.0, 200);
    assert_eq!(endpoint.calls(), 2);
    let seen: Vec<String> = upstream
        .requests()
        .await
        .iter()
        .map(|r| header_map(r)["authorization"].clone())
        .collect();
    assert_eq!(
        seen,
        [
            format!("Bearer {}", exchanged_token(1)),
            format!("Bearer {}", exchanged_token(2))
        ]
    );

    // POST is not replayed: the caller gets the 401; the token is invalidated all the same,
    // so the next request exchanges again.
    rejected.store(Arc::new([format!("Bearer {}", exchanged_token(2))].into()));
    let (status, _) = crm(&gw, reqwest::Method::POST).await;
    assert_eq!(status, 401);
    assert_eq!(upstream.count().await, 3);
    assert_eq!(crm(&gw, reqwest::Method::GET).await.0, 200);
    assert_eq!(endpoint.calls(), 3);

    // An upstream that refuses every token: one retry, not a loop.
    rejected.store(Arc::new(["*".to_owned()].into()));
    let before = upstream.count().await;
    let (status, _) = crm(&gw, reqwest::Method::GET).await;
    assert_eq!(status, 401);
    assert_eq!(upstream.count().await, before + 2);
    assert_eq!(endpoint.calls(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_token_endpoint_answers_502_and_the_status_says_why() {
    let endpoint = TokenEndpoint::start(3600, Duration::ZERO).await;
    endpoint.status.store(500, Ordering::SeqCst);
    let upstream = UpstreamBuilder::new().start().await;
    let gw = gateway(
        &exchange_route(&upstream, &endpoint.upstream.url(), 60),
        &exchange_env(),
    );
    let (status, body) = crm(&gw, reqwest::Method::GET).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(json(&body)["error"], "token_exchange_failed");
    assert!(!body.contains(CLIENT_SECRET));
    assert_eq!(upstream.count().await, 0);
    let secrets = json(&admin_get(&gw, "/api/v1/secrets").await);
    assert_eq!(
        secrets["exchanges"][0]["last_error"],
        "the token endpoint answered 500 (server_error)"
    );
    assert!(secrets["exchanges"][0]["token_cached_until_ms"].is_null());

    endpoint.status.store(200, Ordering::SeqCst);
    eventually(Duration::from_secs(20), "recovery", || async {
        crm(&gw, reqwest::Method::GET).await.0 == 200
    })
    .await;
    let metrics = client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(
        "portcullis_token_exchanges_total{tenant=\"acme\",route=\"crm\",result=\"error\"}"
    ));
    assert!(metrics.contains(
        "portcullis_token_exchanges_total{tenant=\"acme\",route=\"crm\",result=\"success\"} 1"
    ));
    assert!(!gw.log().contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_post_exchange_fills_the_body_template_and_reads_the_token_by_pointer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let endpoint = UpstreamBuilder::new()
        .reply(move |_| {
            let n = c.fetch_add(1, Ordering::SeqCst) + 1;
            Reply::ok(
                &serde_json::json!({"data": {"apiKeyUser": {"jwt": exchanged_token(n), "expiresIn": "900"}}})
                    .to_string(),
            )
        })
        .start()
        .await;
    let upstream = UpstreamBuilder::new().start().await;
    let route = format!(
        r#"
[[routes]]
name = "graph"
tenant = "acme"
path = "/graph"
target = "{}"
auth = "exchange"
allow_destinations = ["127.0.0.0/8"]

[routes.exchange]
kind = "json_post"
url = "{}/graphql"
body = '{{"query": "mutation($id: String!, $secret: String!) {{ apiKeyUser(id: $id, secret: $secret) {{ jwt expiresIn }} }}", "variables": {{"id": "${{secret:client-id}}", "secret": "${{secret:client-secret}}"}}}}'
token_pointer = "/data/apiKeyUser/jwt"
expires_in_pointer = "/data/apiKeyUser/expiresIn"
header = "X-Api-Token"
prefix = ""
"#,
        upstream.url(),
        endpoint.url()
    );
    let gw = gateway(&route, &exchange_env());
    let resp = client()
        .get(gw.url("/graph/q"))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header_map(&upstream.last().await)["x-api-token"],
        exchanged_token(1)
    );
    let call = endpoint.last().await;
    assert_eq!(header_map(&call)["content-type"], "application/json");
    // The secret's quotes were escaped: the body is JSON and carries the exact values.
    let body: serde_json::Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["variables"]["id"], CLIENT_ID);
    assert_eq!(body["variables"]["secret"], CLIENT_SECRET);
    let secrets = json(&admin_get(&gw, "/api/v1/secrets").await);
    let until = secrets["exchanges"][0]["token_cached_until_ms"]
        .as_u64()
        .unwrap();
    let in_15_min = (now() + 900) * 1000;
    assert!(
        until <= in_15_min + 5000 && until + 60_000 > in_15_min,
        "{until}"
    );
}

// === nothing leaks ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_appears_in_logs_bodies_metrics_or_the_admin_api() {
    let key = SigningKey::rsa("rsa-1");
    let jwks = JwksServer::start(&[&key]).await;
    let endpoint = TokenEndpoint::start(3600, Duration::ZERO).await;
    let upstream = UpstreamBuilder::new()
        .reply(|req| {
            // The upstream refuses the first exchanged token, to go through invalidation too.
            let auth = header_map(req)
                .get("authorization")
                .cloned()
                .unwrap_or_default();
            if auth == format!("Bearer {}", exchanged_token(1)) {
                Reply {
                    status: 401,
                    ..Reply::ok("no")
                }
            } else {
                Reply::ok("ok")
            }
        })
        .start()
        .await;
    let routes = format!(
        "{}\n{}",
        passthrough_route(&upstream, &jwks.url(), ""),
        exchange_route(&upstream, &endpoint.upstream.url(), 60)
    );
    let mut env = exchange_env();
    env.push(("RUST_LOG", "info,portcullis_gateway=debug"));
    let gw = gateway(&routes, &env);

    let good = key.sign(&claims());
    let expired = key.sign(&{
        let mut c = claims();
        c["exp"] = (now() - 3600).into();
        c
    });
    let forged = SigningKey::rsa("rsa-1").sign(&claims());
    let mut bodies = Vec::new();
    for token in [&good, &expired, &forged] {
        bodies.push(get_with_token(&gw, Some(token)).await.1);
    }
    bodies.push(crm(&gw, reqwest::Method::GET).await.1);
    bodies.push(crm(&gw, reqwest::Method::POST).await.1);
    // A reload carries the token state over and logs what it did.
    let resp = client()
        .post(gw.admin_url("/api/v1/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    bodies.push(resp.text().await.unwrap());

    let mut outputs = bodies;
    for path in [
        "/api/v1/status",
        "/api/v1/routes",
        "/api/v1/secrets",
        "/api/v1/traffic",
        "/metrics",
    ] {
        outputs.push(admin_get(&gw, path).await);
    }
    // Every line of the access log and the audit trail has been written by now.
    eventually(
        Duration::from_secs(20),
        "the audit log has every request",
        || async {
            std::fs::read_to_string(gw.dir.path().join("audit.jsonl"))
                .map(|a| a.lines().count() >= 6)
                .unwrap_or(false)
        },
    )
    .await;
    outputs.push(std::fs::read_to_string(gw.dir.path().join("audit.jsonl")).unwrap());
    // The log is written in order by a background writer: once the reload's line is there,
    // every request's lines are too.
    eventually(Duration::from_secs(20), "the reload in the log", || async {
        gw.log().contains("config reloaded")
    })
    .await;
    outputs.push(gw.log());

    let signature = |t: &str| t.rsplit('.').next().unwrap().to_owned();
    let mut needles = vec![
        CLIENT_SECRET.to_owned(),
        CLIENT_SECRET.replace('"', "%22"),
        base64::engine::general_purpose::STANDARD
            .encode(format!("{CLIENT_ID}:{}", CLIENT_SECRET.replace('"', "%22"))),
        good.clone(),
        expired.clone(),
        forged.clone(),
        signature(&good),
        signature(&forged),
        ADMIN_TOKEN.to_owned(),
        KEY.to_owned(),
    ];
    for n in 1..=endpoint.calls().max(2) {
        needles.push(exchanged_token(n));
    }
    for output in &outputs {
        for needle in &needles {
            assert!(
                !output.contains(needle.as_str()),
                "found {needle:?} in:\n{output}"
            );
        }
    }
    // The upstream did get them: the search above would have found them had they leaked.
    let seen: Vec<String> = upstream
        .requests()
        .await
        .iter()
        .filter_map(|r| header_map(r).get("authorization").cloned())
        .collect();
    assert!(seen.contains(&format!("Bearer {good}")));
    assert!(seen.contains(&format!("Bearer {}", exchanged_token(2))));
}

// === the demo ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_validates_a_user_token_and_exchanges_its_client_secret() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let ready_path = dir.path().join("ready.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "demo",
            "--threads",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ready-file",
        ])
        .arg(&ready_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = wait_ready(&mut child, &ready_path, String::new);
    // The banner names the identity provider.
    let banner: Vec<String> = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.contains("audit verify"))
        .collect();
    let idp = banner
        .iter()
        .find_map(|l| l.trim().strip_prefix("idp"))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no idp line in {banner:?}"))
        .to_owned();
    assert!(
        banner.iter().any(|l| l.contains("/demo/user/me")),
        "{banner:?}"
    );
    assert!(
        banner.iter().any(|l| l.contains("/demo/exchange/items")),
        "{banner:?}"
    );
    let port = ready.http[0].port();
    let c = client();
    let token = c
        .get(format!("{idp}/user-token?sub=alice"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .trim()
        .to_owned();
    let resp = c
        .get(format!("http://127.0.0.1:{port}/demo/user/me"))
        .header("x-portcullis-key", "demo-key")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(&resp.text().await.unwrap());
    assert_eq!(echo["headers"]["authorization"], format!("Bearer {token}"));

    let resp = c
        .get(format!("http://127.0.0.1:{port}/demo/user/me"))
        .header("x-portcullis-key", "demo-key")
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(&resp.text().await.unwrap())["reason"], "malformed");

    let resp = c
        .get(format!("http://127.0.0.1:{port}/demo/exchange/items"))
        .header("x-portcullis-key", "demo-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(&resp.text().await.unwrap());
    let sent = echo["headers"]["authorization"].as_str().unwrap();
    let exchanged = sent.strip_prefix("Bearer ").unwrap();
    assert_eq!(
        exchanged.split('.').count(),
        3,
        "a JWT from the demo IdP: {sent}"
    );
    assert_ne!(exchanged, token);
    child.kill().unwrap();
    let _ = child.wait();
}
