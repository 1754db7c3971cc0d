//! The command line as a user runs it: `check` on good and bad files, `hash-key`, and the
//! one-command demo answering real requests.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

fn portcullis() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_SECRET_ACME_PAGERDUTY");
    cmd
}

fn repo_file(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

#[test]
fn check_accepts_a_valid_file_and_prints_its_hash() {
    let path = repo_file("config/examples/minimal.toml");
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&path)
        .env("PORTCULLIS_SECRET_ACME_PAGERDUTY", "set")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = portcullis_config::config_hash(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(stdout, format!("OK {expected}\n"));
    assert!(
        out.stderr.is_empty(),
        "no warning when the secret is present"
    );
}

#[test]
fn check_warns_about_a_missing_secret_without_failing() {
    let out = portcullis()
        .args(["check", "--config"])
        .arg(repo_file("config/examples/minimal.toml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning: route 'acme-pagerduty': secret 'pagerduty' of tenant 'acme' is missing (looked in $PORTCULLIS_SECRET_ACME_PAGERDUTY)"),
        "{stderr}"
    );
}

#[test]
fn check_reports_every_error_with_its_location_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[tenants]]\nid = \"acme\"\n\n[[routes]]\nname = \"r\"\ntenant = \"nope\"\npath = \"x\"\ntarget = \"https://a.example.com\"\n",
    )
    .unwrap();
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let p = path.display();
    assert_eq!(
        stderr,
        format!(
            "{p}:6:10: error: routes 'r': tenant: unknown tenant 'nope'\n\
             {p}:7:8: error: routes 'r': path: {}\n\
             2 errors in {p}\n",
            portcullis_routes::PathPrefix::parse("x").unwrap_err()
        )
    );
}

#[test]
fn check_warns_about_a_plaintext_tunnel_listener_and_a_tunnel_without_tokens() {
    let out = portcullis()
        .args(["check", "--config"])
        .arg(repo_file("tests/fixtures/valid/tunnels.toml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("warning: tunnel: insecure_plaintext = true: agents on 0.0.0.0:7443 connect without TLS"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "warning: tunnels 'globex-hq': no token_sha256, so no agent can connect to it"
        ),
        "{stderr}"
    );
}

#[test]
fn check_reads_the_tunnel_certificate_like_run_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tunnel.pem"), "not a certificate").unwrap();
    std::fs::write(dir.path().join("tunnel.key"), "not a key").unwrap();
    let path = dir.path().join("portcullis.toml");
    std::fs::write(
        &path,
        "[tunnel]\nlisten = \"127.0.0.1:7443\"\ncert = \"tunnel.pem\"\nkey = \"tunnel.key\"\n",
    )
    .unwrap();
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("error: TLS listener tunnel.listen 127.0.0.1:7443: cert"),
        "{stderr}"
    );
}

#[test]
fn check_names_a_missing_file() {
    let out = portcullis()
        .args(["check", "--config", "/nonexistent/portcullis.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("/nonexistent/portcullis.toml: cannot read config"),
        "{stderr}"
    );
}

#[test]
fn check_builds_the_runtime_and_reports_every_error_run_would_stop_at() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("not-a-ca.pem"), "this is not PEM\n").unwrap();
    std::fs::write(dir.path().join("cert.pem"), TestCert::generate().cert_pem).unwrap();
    std::fs::write(dir.path().join("garbage.key"), "-----BEGIN NOTHING-----\n").unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        r#"
[server]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"

[[server.tls]]
listen = "127.0.0.1:0"
cert = "cert.pem"
key = "garbage.key"

[admin]
token_file = "no-such-token-file"

[[tenants]]
id = "acme"

[[routes]]
name = "pd"
tenant = "acme"
path = "/pd"
target = "https://api.pagerduty.com"
ca_file = "not-a-ca.pem"
"#,
    )
    .unwrap();
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("admin token: "), "{stderr}");
    assert!(stderr.contains("no-such-token-file"), "{stderr}");
    assert!(
        stderr.contains("TLS listener 127.0.0.1:0: key '"),
        "{stderr}"
    );
    assert!(stderr.contains("route 'pd': ca_file '"), "{stderr}");
    // Each problem once: the CA error used to be printed twice in one line.
    assert_eq!(
        stderr.matches("no certificate found").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("3 errors in "), "{stderr}");

    // `run` stops at the same errors, all of them, before binding anything.
    let out = portcullis()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let run_stderr = String::from_utf8(out.stderr).unwrap();
    for needle in ["admin token: ", "TLS listener", "route 'pd': ca_file"] {
        assert!(run_stderr.contains(needle), "{run_stderr}");
    }
}

#[test]
fn hash_key_reads_stdin() {
    let mut child = portcullis()
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"foo\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_proxies_with_an_injected_secret_from_its_egress_ip() {
    let dir = tempfile::tempdir().unwrap();
    let ready_path = dir.path().join("ready.json");
    let mut child = portcullis()
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
    let ready = wait_ready(&mut child, &ready_path, String::new);
    let port = ready.http[0].port();
    let c = client();
    let resp = c
        .get(format!("http://127.0.0.1:{port}/demo/echo/hello?x=1"))
        .header("x-portcullis-key", "demo-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let echo = json(&resp.text().await.unwrap());
    assert_eq!(echo["path"], "/api/hello?x=1");
    assert_eq!(
        echo["headers"]["authorization"],
        "Bearer demo-token-not-a-real-secret"
    );
    assert!(
        echo["source_address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.2:"),
        "{echo}"
    );

    let resp = c
        .get(format!("http://127.0.0.1:{port}/demo/echo/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = c
        .get(format!("http://127.0.0.1:{port}/demo/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Through the demo's broker tunnel: the in-process agent connects on its own, then serves
    // the internal service with a credential only it holds.
    let internal = format!("http://127.0.0.1:{port}/demo/internal/hello");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let echo = loop {
        let resp = c
            .get(&internal)
            .header("x-portcullis-key", "demo-key")
            .send()
            .await
            .unwrap();
        if resp.status() == 200 {
            break json(&resp.text().await.unwrap());
        }
        // 502 tunnel_offline until the agent has connected.
        assert_eq!(resp.status(), 502);
        assert!(
            std::time::Instant::now() < deadline,
            "the demo agent never connected"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(echo["path"], "/internal-api/hello");
    assert_eq!(
        echo["headers"]["authorization"],
        "Bearer demo-internal-credential-held-by-the-agent"
    );
    assert!(echo["headers"].get("x-portcullis-key").is_none(), "{echo}");

    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let banner = String::from_utf8(out.stdout).unwrap();
    assert!(
        banner.contains(&format!("curl -s http://127.0.0.1:{port}/demo/echo/hello")),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "curl -s http://127.0.0.1:{port}/demo/internal/hello"
        )),
        "{banner}"
    );
}
