//! The encrypted secret store end to end: `portcullis secrets` writing a store, a running
//! gateway injecting its values, rotation without a restart, a tampered store rejected at
//! reload while the old runtime keeps serving, a wrong master key refused at startup, `check`
//! warnings, concurrent writers, and no value or key anywhere an operator can read.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine;
use support::*;

const KEY: &str = "acme-gateway-key";
const ADMIN_TOKEN: &str = "admin-token-store-tests-91ac";
const PD_V1: &str = "store-secret-pd-v1-8c1f";
const PD_V2: &str = "store-secret-pd-v2-e04b";
const PD_V3: &str = "store-secret-pd-v3-5a7d";
const JIRA: &str = "store-secret-jira-2b96";

fn portcullis() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.env_remove("PORTCULLIS_CONFIG")
        .env_remove("PORTCULLIS_MASTER_KEY")
        .env("RUST_LOG", "info");
    cmd
}

/// Runs `portcullis secrets ARGS` with `stdin` piped in.
fn secrets(args: &[&str], stdin: &str) -> Output {
    let mut child = portcullis()
        .arg("secrets")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A store and its master key file in a directory.
struct Store {
    path: PathBuf,
    key_file: PathBuf,
}

impl Store {
    /// Generates a master key with `keygen` and writes it to `dir/master.key`.
    fn new(dir: &Path, store: &str) -> Self {
        let out = secrets(&["keygen"], "");
        assert!(out.status.success(), "{}", text(&out));
        let key_file = dir.join("master.key");
        std::fs::write(&key_file, &out.stdout).unwrap();
        let path = dir.join(store);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        Self { path, key_file }
    }

    fn run(&self, command: &str, extra: &[&str], stdin: &str) -> Output {
        let mut args = vec![
            command,
            "--store",
            self.path.to_str().unwrap(),
            "--master-key-file",
            self.key_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        secrets(&args, stdin)
    }

    /// Runs a command that must succeed; returns its output text.
    fn ok(&self, command: &str, extra: &[&str], stdin: &str) -> String {
        let out = self.run(command, extra, stdin);
        assert!(
            out.status.success(),
            "secrets {command} {extra:?}: {}",
            text(&out)
        );
        text(&out)
    }

    fn set(&self, tenant: &str, name: &str, value: &str) {
        self.ok("set", &["--tenant", tenant, name], &format!("{value}\n"));
    }

    /// `list --json`.
    fn list(&self) -> serde_json::Value {
        let out = self.run("list", &["--json"], "");
        assert!(out.status.success(), "{}", text(&out));
        json(&String::from_utf8(out.stdout).unwrap())
    }

    fn fingerprint(&self, name: &str) -> String {
        let list = self.list();
        let entry = list["secrets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
            .clone();
        entry["fingerprint"].as_str().unwrap().to_owned()
    }

    fn master_key(&self) -> String {
        std::fs::read_to_string(&self.key_file)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Rewrites the store's JSON the way an attacker (or a bad disk) would, and puts it in place
    /// by rename so the gateway's watch sees one change.
    fn tamper(&self, original: &[u8], edit: impl FnOnce(&mut serde_json::Value)) {
        let mut doc: serde_json::Value = serde_json::from_slice(original).unwrap();
        edit(&mut doc);
        let tmp = self.path.with_file_name("tampered.json.part");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

/// Runs `cmd` to completion, killing it after 60 s (a gateway that should have refused to start
/// but did not must fail the test, not hang it).
fn bounded(cmd: &mut Command, dir: &Path) -> Output {
    let out_path = dir.join("bounded.out");
    let err_path = dir.join("bounded.err");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after 60 s: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out_path).unwrap(),
        stderr: std::fs::read(&err_path).unwrap(),
    }
}

fn flip_base64(v: &mut serde_json::Value) {
    let engine = base64::engine::general_purpose::STANDARD;
    let mut bytes = engine.decode(v.as_str().unwrap()).unwrap();
    bytes[0] ^= 1;
    *v = serde_json::Value::String(engine.encode(bytes));
}

fn record<'a>(doc: &'a mut serde_json::Value, name: &str) -> &'a mut serde_json::Value {
    doc["records"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["name"] == name)
        .unwrap()
}

/// Two routes of tenant acme: `/acme/pd` injects `${secret:pd}`, `/acme/jira` `${secret:jira}`.
fn config(upstream: &Upstream, store: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"

[admin]
token_file = "{{DIR}}/admin-token"

[audit]
sink = "file"
path = "{{DIR}}/audit.jsonl"

[secrets]
store = "{{DIR}}/{store}"
master_key_file = "{{DIR}}/master.key"

[[tenants]]
id = "acme"
key_sha256 = ["{key}"]

[[routes]]
name = "acme-pd"
tenant = "acme"
path = "/acme/pd"
target = "{url}"
headers = {{ Authorization = "Bearer ${{secret:pd}}" }}
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "acme-jira"
tenant = "acme"
path = "/acme/jira"
target = "{url}"
headers = {{ X-Jira-Token = "${{secret:jira}}" }}
allow_destinations = ["127.0.0.0/8"]
"#,
        key = sha256_hex(KEY),
        url = upstream.url(),
    )
}

/// Starts a gateway whose store (at `store`, relative to its directory) holds pd = PD_V1 (with
/// `pd_expiry`, if any) and jira = JIRA.
fn start(upstream: &Upstream, store: &str, pd_expiry: Option<&str>) -> (GatewayProcess, Store) {
    let mut handle = None;
    let gw = GatewayProcess::start_with(&config(upstream, store), &[], |dir| {
        std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
        let s = Store::new(dir, store);
        let mut extra = vec!["--tenant", "acme", "--note", "PagerDuty REST key"];
        if let Some(at) = pd_expiry {
            extra.extend_from_slice(&["--expires", at]);
        }
        extra.push("pd");
        s.ok("set", &extra, PD_V1);
        s.set("acme", "jira", JIRA);
        handle = Some(s);
    });
    (gw, handle.unwrap())
}

async fn admin(gw: &GatewayProcess, path: &str) -> serde_json::Value {
    let resp = client()
        .get(gw.admin_url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    json(&resp.text().await.unwrap())
}

async fn secret_status(gw: &GatewayProcess, name: &str) -> serde_json::Value {
    let secrets = admin(gw, "/api/v1/secrets").await;
    secrets["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap()
}

async fn metrics(gw: &GatewayProcess) -> String {
    client()
        .get(gw.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// GETs `path` with the gateway key: (status, body).
async fn get(gw: &GatewayProcess, path: &str) -> (u16, String) {
    let resp = client()
        .get(gw.url(path))
        .header("x-portcullis-key", KEY)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The value the upstream last saw in `header`.
async fn last_seen(upstream: &Upstream, header: &str) -> String {
    header_map(&upstream.last().await)
        .get(header)
        .cloned()
        .unwrap_or_default()
}

fn rfc3339_in(days: i64) -> (String, i64) {
    let at = (time::OffsetDateTime::now_utc() + time::Duration::days(days))
        .replace_nanosecond(0)
        .unwrap();
    (
        at.format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        at.unix_timestamp(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_value_reaches_the_upstream_and_its_status_is_reported() {
    let upstream = UpstreamBuilder::new().start().await;
    let (expires, expires_unix) = rfc3339_in(30);
    let (gw, store) = start(&upstream, "store/secrets.store", Some(&expires));

    assert_eq!(get(&gw, "/acme/pd/incidents").await.0, 200);
    assert_eq!(
        last_seen(&upstream, "authorization").await,
        format!("Bearer {PD_V1}")
    );
    assert_eq!(get(&gw, "/acme/jira/issues").await.0, 200);
    assert_eq!(last_seen(&upstream, "x-jira-token").await, JIRA);

    let pd = secret_status(&gw, "pd").await;
    assert_eq!(pd["status"], "present");
    assert_eq!(pd["source"], "store");
    assert_eq!(pd["location"], format!("{}#acme/pd", store.path.display()));
    // The admin API and `secrets list` show the same fingerprint (both keyed by the master key).
    assert_eq!(pd["fingerprint"], store.fingerprint("pd"));
    assert_eq!(pd["expires_at_ms"], expires_unix * 1000);
    assert_eq!(pd["routes"], serde_json::json!(["acme-pd"]));
    assert_eq!(pd["use_count"], 1);
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"portcullis_secret_present{secret="pd",tenant="acme"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(&format!(
            r#"portcullis_secret_expiry_timestamp_seconds{{secret="pd",tenant="acme"}} {expires_unix}"#
        )),
        "{m}"
    );
    let listed = store.list();
    let pd_listed = &listed["secrets"][1];
    assert_eq!(pd_listed["name"], "pd");
    assert_eq!(pd_listed["expires"], expires);
    assert_eq!(pd_listed["note"], "PagerDuty REST key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rotate_updates_a_running_gateway_without_restart() {
    let upstream = UpstreamBuilder::new().start().await;
    let (gw, store) = start(&upstream, "store/secrets.store", None);
    assert_eq!(get(&gw, "/acme/pd/x").await.0, 200);
    let v1 = store.fingerprint("pd");
    assert_eq!(secret_status(&gw, "pd").await["fingerprint"], v1);

    let out = store.ok("rotate", &["--tenant", "acme", "pd"], PD_V2);
    let v2 = store.fingerprint("pd");
    assert!(
        out.contains(&format!("acme/pd rotated: fingerprint {v1} -> {v2}")),
        "{out}"
    );
    eventually(
        Duration::from_secs(10),
        "the rotated value upstream",
        || async {
            get(&gw, "/acme/pd/x").await;
            last_seen(&upstream, "authorization").await == format!("Bearer {PD_V2}")
        },
    )
    .await;
    let pd = secret_status(&gw, "pd").await;
    assert_eq!(pd["fingerprint"], v2);
    assert!(pd["rotated_at_ms"].as_u64().is_some(), "{pd}");
    let status = admin(&gw, "/api/v1/status").await;
    assert_eq!(status["last_reload"]["result"], "success");
    assert_eq!(status["last_reload"]["trigger"], "file");
    // The history keeps the previous fingerprint; the other secret is untouched.
    let listed = store.list();
    assert_eq!(listed["secrets"][1]["history"][0]["fingerprint"], v1);
    assert_eq!(get(&gw, "/acme/jira/x").await.0, 200);
    assert_eq!(last_seen(&upstream, "x-jira-token").await, JIRA);
    let audit = std::fs::read_to_string(gw.dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains(r#""secret_change""#), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_store_keeps_the_old_runtime_and_a_tampered_record_is_undecryptable() {
    let upstream = UpstreamBuilder::new().start().await;
    let (gw, store) = start(&upstream, "secrets.store", None);
    assert_eq!(get(&gw, "/acme/pd/x").await.0, 200);
    let original = std::fs::read(&store.path).unwrap();

    // A record renamed: the table of contents no longer matches, the whole store is refused,
    // and the running gateway keeps the runtime (and the value) it had.
    store.tamper(&original, |doc| {
        record(doc, "jira")["name"] = "jira2".into()
    });
    eventually(Duration::from_secs(10), "the rejected reload", || async {
        admin(&gw, "/api/v1/status").await["last_reload"]["result"] == "error"
    })
    .await;
    let status = admin(&gw, "/api/v1/status").await;
    let errors = status["last_reload"]["errors"].to_string();
    assert!(
        errors.contains(&format!(
            "secret store '{}': integrity check failed",
            store.path.display()
        )),
        "{errors}"
    );
    assert_eq!(get(&gw, "/acme/pd/x").await.0, 200);
    assert_eq!(
        last_seen(&upstream, "authorization").await,
        format!("Bearer {PD_V1}")
    );
    assert_eq!(secret_status(&gw, "pd").await["status"], "present");
    assert!(metrics(&gw)
        .await
        .contains(r#"portcullis_config_reloads_total{result="error"} 1"#));
    assert!(gw.log().contains("integrity check failed"));

    // One record's value altered: the store opens, that secret is undecryptable, its route
    // answers 503 and the other route keeps working.
    store.tamper(&original, |doc| {
        flip_base64(&mut record(doc, "pd")["sealed"])
    });
    eventually(Duration::from_secs(10), "pd undecryptable", || async {
        secret_status(&gw, "pd").await["status"] == "undecryptable"
    })
    .await;
    let pd = secret_status(&gw, "pd").await;
    assert_eq!(pd["source"], "store");
    assert_eq!(pd["fingerprint"], serde_json::Value::Null);
    let (status, body) = get(&gw, "/acme/pd/x").await;
    assert_eq!(status, 503);
    assert_eq!(json(&body)["error"], "secret_missing");
    assert_eq!(get(&gw, "/acme/jira/x").await.0, 200);
    let m = metrics(&gw).await;
    assert!(
        m.contains(r#"portcullis_secret_present{secret="pd",tenant="acme"} 0"#),
        "{m}"
    );
    assert!(m.contains(r#"portcullis_secret_present{secret="jira",tenant="acme"} 1"#));
    let counts = &admin(&gw, "/api/v1/status").await["counts"];
    assert_eq!(counts["secrets_missing"], 1);

    // The CLI says so too, and recovery is delete + set.
    let out = store.run("list", &[], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("1 record(s) cannot be decrypted"),
        "{}",
        text(&out)
    );
    let out = store.run("rotate", &["--tenant", "acme", "pd"], PD_V3);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("delete"), "{}", text(&out));
    store.ok("delete", &["--tenant", "acme", "pd"], "");
    store.set("acme", "pd", PD_V3);
    eventually(Duration::from_secs(10), "pd present again", || async {
        get(&gw, "/acme/pd/x").await.0 == 200
            && last_seen(&upstream, "authorization").await == format!("Bearer {PD_V3}")
    })
    .await;
}

#[test]
fn a_wrong_or_missing_master_key_stops_run_and_check_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "secrets.store");
    store.set("acme", "pd", PD_V1);
    let right = store.master_key();
    let upstream_url = "http://127.0.0.1:9";
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"

[secrets]
store = "{store}"
master_key_file = "{dir}/wrong.key"

[[tenants]]
id = "acme"
key_sha256 = ["{key}"]

[[routes]]
name = "acme-pd"
tenant = "acme"
path = "/acme/pd"
target = "{upstream_url}"
headers = {{ Authorization = "Bearer ${{secret:pd}}" }}
"#,
        store = store.path.display(),
        dir = dir.path().display(),
        key = sha256_hex(KEY),
    );
    let config_path = dir.path().join("portcullis.toml");
    std::fs::write(&config_path, &config).unwrap();
    let wrong = secrets(&["keygen", "--hex"], "");
    let wrong = String::from_utf8(wrong.stdout).unwrap();
    std::fs::write(dir.path().join("wrong.key"), &wrong).unwrap();
    let expected = format!(
        "secret store '{}': the master key does not open this store",
        store.path.display()
    );
    for command in ["run", "check"] {
        let out = bounded(
            portcullis().args([command, "--config"]).arg(&config_path),
            dir.path(),
        );
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{command}: {all}");
        assert!(all.contains(&expected), "{command}: {all}");
        for key in [right.as_str(), wrong.trim()] {
            assert!(!all.contains(key), "{command} printed a master key");
        }
    }

    // No key file and no variable: named as such.
    std::fs::write(
        &config_path,
        config.replace(
            &format!("master_key_file = \"{}/wrong.key\"\n", dir.path().display()),
            "",
        ),
    )
    .unwrap();
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains(&format!(
            "secret store '{}': no master key: set secrets.master_key_file, --master-key-file or $PORTCULLIS_MASTER_KEY",
            store.path.display()
        )),
        "{}",
        text(&out)
    );
    // The variable works in its place.
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&config_path)
        .env("PORTCULLIS_MASTER_KEY", &right)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn check_warns_about_expiring_undecryptable_and_missing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "secrets.store");
    let (soon, _) = rfc3339_in(2);
    let (later, _) = rfc3339_in(30);
    let (past, _) = rfc3339_in(-1);
    store.ok(
        "set",
        &["--tenant", "acme", "--expires", &soon, "pd"],
        PD_V1,
    );
    store.ok(
        "set",
        &["--tenant", "acme", "--expires", &later, "later"],
        "v",
    );
    store.ok("set", &["--tenant", "acme", "--expires", &past, "old"], "v");
    store.set("acme", "jira", JIRA);
    let original = std::fs::read(&store.path).unwrap();
    store.tamper(&original, |doc| {
        record(doc, "jira")["note"] = "mallory".into()
    });
    let route = |name: &str, header: &str| {
        format!(
            "[[routes]]\nname = \"acme-{name}\"\ntenant = \"acme\"\npath = \"/acme/{name}\"\ntarget = \"http://127.0.0.1:9\"\nheaders = {{ X-T = \"{header}\" }}\n"
        )
    };
    let config = format!(
        "[secrets]\nstore = \"secrets.store\"\nmaster_key_file = \"master.key\"\n\n[[tenants]]\nid = \"acme\"\nkey_sha256 = [\"{}\"]\n\n{}{}{}{}{}",
        sha256_hex(KEY),
        route("pd", "${secret:pd}"),
        route("later", "${secret:later}"),
        route("old", "${secret:old}"),
        route("jira", "${secret:jira}"),
        route("none", "${secret:none}"),
    );
    let path = dir.path().join("portcullis.toml");
    std::fs::write(&path, config).unwrap();
    let out = portcullis()
        .args(["check", "--config"])
        .arg(&path)
        .env_remove("PORTCULLIS_SECRET_ACME_NONE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8(out.stderr).unwrap();
    let store_path = store.path.display();
    let expected = [
        format!("warning: route 'acme-jira': secret 'jira' of tenant 'acme' cannot be decrypted: the record was altered, or sealed for another tenant or name ({store_path}#acme/jira); the route will answer 503 secret_missing"),
        format!("warning: route 'acme-none': secret 'none' of tenant 'acme' is missing (looked in {store_path}#acme/none, $PORTCULLIS_SECRET_ACME_NONE); the route will answer 503 secret_missing"),
        format!("warning: secret 'old' of tenant 'acme' expired at {past} (used by acme-old)"),
        format!("warning: secret 'pd' of tenant 'acme' expires at {soon}, in 1d 23h (used by acme-pd)"),
    ];
    assert_eq!(stderr.lines().collect::<Vec<_>>(), expected, "{stderr}");
}

#[test]
fn concurrent_sets_from_several_processes_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "secrets.store");
    let (processes, each) = (6, 4);
    let children: Vec<_> = (0..processes)
        .map(|p| {
            let path = store.path.clone();
            let key = store.key_file.clone();
            std::thread::spawn(move || {
                for i in 0..each {
                    let name = format!("p{p}-{i}");
                    let out = secrets(
                        &[
                            "set",
                            "--store",
                            path.to_str().unwrap(),
                            "--master-key-file",
                            key.to_str().unwrap(),
                            "--tenant",
                            "acme",
                            &name,
                        ],
                        &format!("value-{name}"),
                    );
                    assert!(out.status.success(), "{}", text(&out));
                }
            })
        })
        .collect();
    for child in children {
        child.join().unwrap();
    }
    let list = store.list();
    let mut names: Vec<String> = list["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (0..processes)
        .flat_map(|p| (0..each).map(move |i| format!("p{p}-{i}")))
        .collect();
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn import_keygen_and_listing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path(), "secrets.store");
    // keygen: 32 bytes as base64, or as hex.
    let b64 = base64::engine::general_purpose::STANDARD
        .decode(store.master_key())
        .unwrap();
    assert_eq!(b64.len(), 32);
    let hex = String::from_utf8(secrets(&["keygen", "--hex"], "").stdout).unwrap();
    assert_eq!(hex.trim().len(), 64);

    let from = dir.path().join("from");
    for (tenant, name, value) in [("acme", "pd", "pd-from-dir\n"), ("globex", "jira", JIRA)] {
        std::fs::create_dir_all(from.join(tenant)).unwrap();
        std::fs::write(from.join(tenant).join(name), value).unwrap();
    }
    std::fs::write(from.join("acme/.pd.swp"), "editor junk").unwrap();
    let from_arg = from.to_str().unwrap();
    let out = store.ok("import", &["--from-dir", from_arg], "");
    assert!(
        out.contains("acme/pd: added") && out.contains("globex/jira: added"),
        "{out}"
    );
    assert!(!out.contains("swp"));
    let out = store.ok("import", &["--from-dir", from_arg], "");
    assert!(out.contains("acme/pd: unchanged"), "{out}");
    std::fs::write(from.join("acme/pd"), "pd-changed").unwrap();
    let out = store.ok("import", &["--from-dir", from_arg], "");
    assert!(
        out.contains("acme/pd: skipped, the store has another value"),
        "{out}"
    );
    let out = store.ok("import", &["--from-dir", from_arg, "--replace"], "");
    assert!(out.contains("acme/pd: rotated"), "{out}");

    let table = store.ok("list", &["--tenant", "acme"], "");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("TENANT  NAME  STATUS  FINGERPRINT"),
        "{table}"
    );
    assert!(lines[1].starts_with("acme    pd    ok      "), "{table}");
    assert_eq!(store.list()["secrets"].as_array().unwrap().len(), 2);

    // A wrong key and a damaged file fail loudly, naming the file.
    std::fs::write(&store.key_file, secrets(&["keygen"], "").stdout).unwrap();
    let out = store.run("list", &[], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains(&format!(
        "error: secret store '{}': the master key does not open this store",
        store.path.display()
    )));
    std::fs::write(&store.path, "{}").unwrap();
    let out = store.run("list", &[], "");
    assert!(
        text(&out).contains("not a valid portcullis secret store"),
        "{}",
        text(&out)
    );
    // An empty value is refused; nothing is taken from arguments.
    let out = store.run("set", &["--tenant", "acme", "x"], "\n");
    assert_eq!(out.status.code(), Some(1));
    let out = store.run("set", &["--tenant", "acme", "x", "the-value"], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "a value argument is a usage error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_or_master_key_reaches_logs_errors_metrics_or_the_admin_api() {
    let upstream = UpstreamBuilder::new().start().await;
    let (gw, store) = start(&upstream, "secrets.store", None);
    let mut seen = Vec::new();
    let c = client();
    // Successes, denials and errors of every kind the routes give.
    for (path, key) in [
        ("/acme/pd/a?token=x", Some(KEY)),
        ("/acme/jira/b", Some(KEY)),
        ("/acme/pd/c", None),
        ("/acme/pd/c", Some("wrong-key")),
        ("/nowhere", Some(KEY)),
    ] {
        let mut req = c.get(gw.url(path));
        if let Some(k) = key {
            req = req.header("x-portcullis-key", k);
        }
        let resp = req.send().await.unwrap();
        seen.push(format!("{:?}", resp.headers()));
        seen.push(resp.text().await.unwrap());
    }
    // A rotation, a rejected reload (header altered) and an undecryptable record.
    seen.push(store.ok("rotate", &["--tenant", "acme", "pd"], PD_V2));
    eventually(Duration::from_secs(10), "rotation", || async {
        get(&gw, "/acme/pd/x").await;
        last_seen(&upstream, "authorization").await == format!("Bearer {PD_V2}")
    })
    .await;
    let pd_fingerprint = store.fingerprint("pd");
    let rotated = std::fs::read(&store.path).unwrap();
    store.tamper(&rotated, |doc| flip_base64(&mut doc["toc_mac"]));
    eventually(Duration::from_secs(10), "rejected reload", || async {
        admin(&gw, "/api/v1/status").await["last_reload"]["result"] == "error"
    })
    .await;
    store.tamper(&rotated, |doc| {
        flip_base64(&mut record(doc, "jira")["sealed"])
    });
    eventually(Duration::from_secs(10), "jira undecryptable", || async {
        secret_status(&gw, "jira").await["status"] == "undecryptable"
    })
    .await;
    let (_, body) = get(&gw, "/acme/jira/x").await;
    seen.push(body);
    seen.push(text(&store.run("list", &[], "")));
    seen.push(text(&store.run("list", &["--json"], "")));
    for path in [
        "/api/v1/status",
        "/api/v1/routes",
        "/api/v1/secrets",
        "/api/v1/traffic?after=0&limit=100",
    ] {
        seen.push(admin(&gw, path).await.to_string());
    }
    seen.push(metrics(&gw).await);
    seen.push(std::fs::read_to_string(gw.dir.path().join("audit.jsonl")).unwrap());
    seen.push(std::fs::read_to_string(&store.path).unwrap());
    seen.push(gw.log());
    let everything = seen.join("\n");

    let key_b64 = store.master_key();
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(&key_b64)
        .unwrap();
    let needles = [
        PD_V1.to_owned(),
        PD_V2.to_owned(),
        JIRA.to_owned(),
        key_b64.clone(),
        key_b64.trim_end_matches('=').to_owned(),
        hex::encode(&key_bytes),
        hex::encode(&key_bytes).to_uppercase(),
    ];
    for needle in &needles {
        assert!(!everything.contains(needle.as_str()), "leaked: {needle}");
    }
    // The search is not vacuous: what was gathered does name the store and its secrets.
    assert!(everything.contains("integrity check failed"));
    assert!(everything.contains("undecryptable"));
    assert!(everything.contains(&pd_fingerprint));
}
