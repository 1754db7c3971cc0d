//! End-to-end tests of the operator console against the real gateway on loopback: the
//! admin-API client decoding every endpoint of a running `portcullis`, and the real
//! `portcullis console` binary driven in tmux — keys in with `send-keys`, screens out with
//! `capture-pane` — through every tab, the traffic filter and pause, a confirmed reload, a
//! refused token and a gateway restart.
//!
//! Waiting is always for a condition on the screen (or the API), with a deadline; there are
//! no fixed sleeps. Set `PORTCULLIS_CONSOLE_CAPTURES=DIR` to keep the captured screens.

// Test helpers outside #[test] functions unwrap too: a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_api::{ReloadResult, ReloadTrigger, SecretState};
use portcullis_console::{AdminClient, ClientError, TokenSource};
use support::*;

const KEY: &str = "acme-key";
const GLOBEX_KEY: &str = "globex-key";
const ADMIN_TOKEN: &str = "admin-token-for-console-tests-7a3f";
const ROTATED_TOKEN: &str = "rotated-admin-token-for-console-tests-19bd";
/// How long a screen condition may take to appear.
const SCREEN_DEADLINE: Duration = Duration::from_secs(20);

/// Three routes: one that works, one whose upstream fails on `/fail`, one whose secret is
/// missing (503 secret_missing). No tunnels: `/api/v1/tunnels` answers an empty list.
fn config(upstream: &Upstream) -> String {
    format!(
        r#"
[server]
listen = ["{{LISTEN}}"]
admin_listen = "{{ADMIN}}"

[admin]
token_file = "{{DIR}}/admin-token"

[secrets]
dir = "{{DIR}}/secrets"

[[tenants]]
id = "acme"
key_sha256 = ["{key}"]

[[tenants]]
id = "globex"
key_sha256 = ["{globex}"]

[[routes]]
name = "acme-echo"
tenant = "acme"
path = "/acme/echo"
target = "{url}"
headers = {{ Authorization = "Bearer ${{secret:echo}}" }}
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "acme-flaky"
tenant = "acme"
path = "/acme/flaky"
target = "{url}"
allow_destinations = ["127.0.0.0/8"]

[[routes]]
name = "globex-ci"
tenant = "globex"
path = "/globex/ci"
target = "{url}"
headers = {{ Authorization = "Bearer ${{secret:ci-token}}" }}
allow_destinations = ["127.0.0.0/8"]
"#,
        key = sha256_hex(KEY),
        globex = sha256_hex(GLOBEX_KEY),
        url = upstream.url(),
    )
}

/// The upstream answers 503 to paths ending in `/fail`, 200 otherwise.
async fn upstream() -> Upstream {
    UpstreamBuilder::new()
        .reply(|r| {
            if r.uri.ends_with("/fail") {
                Reply {
                    status: 503,
                    ..Reply::ok("failing on purpose")
                }
            } else {
                Reply::ok("ok")
            }
        })
        .start()
        .await
}

/// The gateway with its admin token, the console's own copy of it, and the `echo` secret.
/// (The one place that starts the gateway: swap the start helper here.)
fn start_gateway(upstream: &Upstream) -> GatewayProcess {
    GatewayProcess::start_with(&config(upstream), &[], |dir| {
        std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        std::fs::write(dir.join("console-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        std::fs::create_dir_all(dir.join("secrets/acme")).unwrap();
        std::fs::write(dir.join("secrets/acme/echo"), "echo-secret-value").unwrap();
    })
}

fn admin_base(gw: &GatewayProcess) -> String {
    format!("http://{}", gw.admin_addr)
}

fn console_token(gw: &GatewayProcess) -> PathBuf {
    gw.dir.path().join("console-token")
}

/// One request through the gateway (blocking, `Connection: close`); returns the status.
fn request(gw: &GatewayProcess, path: &str, key: &str) -> u16 {
    let (status, _) = raw_request(
        gw.addr,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nx-portcullis-key: {key}\r\nConnection: close\r\n\r\n"
        ),
    );
    status
}

/// Polls `check` every 25 ms until it holds or `deadline` passes.
fn wait_until(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !check() {
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

// --- the admin-API client against a real gateway ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_decodes_every_endpoint_of_a_real_gateway() {
    let upstream = upstream().await;
    let gw = start_gateway(&upstream);
    let token = TokenSource::File(console_token(&gw));
    let base = admin_base(&gw);

    tokio::task::spawn_blocking(move || {
        let client = AdminClient::new(&base, token).unwrap();
        assert_eq!(request(&gw, "/acme/echo/one", KEY), 200);
        assert_eq!(request(&gw, "/acme/flaky/fail", KEY), 503);
        assert_eq!(request(&gw, "/globex/ci/build", GLOBEX_KEY), 503);
        assert_eq!(request(&gw, "/acme/echo/two", "wrong-key"), 401);

        let status = client.status().unwrap();
        assert_eq!(status.counts.routes, 3);
        assert_eq!(status.counts.tenants, 2);
        assert_eq!(status.listeners.admin, gw.admin_addr);
        assert_eq!(status.last_reload.result, ReloadResult::Success);
        assert_eq!(status.last_reload.trigger, ReloadTrigger::Startup);
        assert_eq!(status.config.hash.len(), 64);

        let routes = client.routes().unwrap();
        let names: Vec<&str> = routes.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["acme-echo", "acme-flaky", "globex-ci"]);
        assert_eq!(routes.routes[2].secrets_missing, ["secret:ci-token"]);

        let secrets = client.secrets().unwrap();
        let states: Vec<(&str, SecretState)> = secrets
            .secrets
            .iter()
            .map(|s| (s.name.as_str(), s.status))
            .collect();
        assert_eq!(
            states,
            [
                ("echo", SecretState::Present),
                ("ci-token", SecretState::Missing)
            ]
        );
        assert!(secrets.secrets[0].fingerprint.is_some());

        // No tunnel configured: the endpoint answers an empty list.
        let tunnels = client
            .tunnels()
            .unwrap()
            .expect("the gateway serves /api/v1/tunnels");
        assert!(tunnels.tunnels.is_empty(), "{tunnels:?}");

        // The traffic tail, and the cursor.
        let mut entries = Vec::new();
        wait_until(
            "four requests in the traffic ring",
            Duration::from_secs(10),
            || {
                entries = client.traffic(0, 1000).unwrap().entries;
                entries.len() >= 4
            },
        );
        let statuses: Vec<u16> = entries.iter().map(|e| e.status).collect();
        assert_eq!(statuses, [200, 503, 503, 401]);
        assert_eq!(entries[2].denial.as_deref(), Some("secret_missing"));
        assert_eq!(entries[3].denial.as_deref(), Some("unauthenticated"));
        let page = client.traffic(entries[1].seq, 1).unwrap();
        assert_eq!(page.entries.len(), 1);
        assert_eq!(page.entries[0].seq, entries[2].seq);
        assert_eq!(page.next, entries[2].seq);

        // A good reload, then a rejected one: both decode, the second with its errors.
        let reload = client.reload().unwrap();
        assert_eq!(reload.result, ReloadResult::Success);
        assert_eq!(reload.trigger, ReloadTrigger::Api);
        let good = gw.config_text();
        gw.write_config("[[routes]]\nname = 'broken'\n");
        let reload = client.reload().unwrap();
        assert_eq!(reload.result, ReloadResult::Error);
        assert!(
            reload.errors.iter().any(|e| e.contains("portcullis.toml:")),
            "{:?}",
            reload.errors
        );
        gw.write_config(&good);

        // A wrong token is a 401 with the API's code, and never echoed back.
        let wrong = AdminClient::new(
            &admin_base(&gw),
            TokenSource::Value("not-the-token".to_owned().into()),
        )
        .unwrap();
        match wrong.status() {
            Err(ClientError::Unauthorized { code }) => assert_eq!(code, "unauthorized"),
            other => panic!("expected a 401, got {other:?}"),
        }

        // Fixing the token file fixes the client.
        let mut client = client;
        std::fs::write(gw.dir.path().join("admin-token"), ROTATED_TOKEN).unwrap();
        gw.signal("HUP");
        wait_until(
            "the gateway to take the new token",
            Duration::from_secs(10),
            || matches!(client.status(), Err(ClientError::Unauthorized { .. })),
        );
        std::fs::write(console_token(&gw), ROTATED_TOKEN).unwrap();
        client.reload_token().unwrap();
        assert_eq!(client.status().unwrap().pid, gw.pid());

        // Nobody listening: unreachable, with the transport's reason.
        let addr = gw.admin_addr;
        drop(gw);
        let gone = AdminClient::new(
            &format!("http://{addr}"),
            TokenSource::Value(ROTATED_TOKEN.to_owned().into()),
        )
        .unwrap();
        match gone.status() {
            Err(ClientError::Unreachable { reason }) => assert!(!reason.is_empty()),
            other => panic!("expected unreachable, got {other:?}"),
        }
    })
    .await
    .unwrap();
}

// --- the real console in tmux ---

/// A private tmux server (its own socket) running one command in a 160×45 pane that stays
/// after the command exits, so the restored screen can be read; the command's exit status
/// goes to a file. Killed when dropped.
struct Tmux {
    socket: String,
    dir: tempfile::TempDir,
    captures: Option<PathBuf>,
}

impl Tmux {
    fn start(command: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("tmux.conf");
        // Options from the config file are in force before the command starts.
        std::fs::write(
            &conf,
            "set -g remain-on-exit on\nset -sg escape-time 0\nset -g history-limit 100\n",
        )
        .unwrap();
        let socket = format!(
            "portcullis-console-test-{}-{}",
            std::process::id(),
            dir.path().file_name().unwrap().to_string_lossy()
        );
        let command = format!(
            "{command}; echo $? > '{}'",
            dir.path().join("exit-status").display()
        );
        let tmux = Self {
            socket,
            dir,
            captures: std::env::var_os("PORTCULLIS_CONSOLE_CAPTURES").map(PathBuf::from),
        };
        tmux.run(&[
            "-f",
            conf.to_str().unwrap(),
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            "160",
            "-y",
            "45",
            &command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "console"])
    }

    /// Named keys (`Enter`, `Escape`, `BTab`, `j`, …).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "console"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Text typed as is.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "console", "-l", text]);
    }

    fn format(&self, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", "console", format])
            .trim()
            .to_owned()
    }

    /// Waits for the command to end and returns its exit status, as the shell that ran it
    /// wrote it (tmux itself may be slow to reap a pane's process on a loaded machine).
    fn exit_status(&self) -> String {
        let file = self.dir.path().join("exit-status");
        let mut status = String::new();
        wait_until("the console to exit", SCREEN_DEADLINE, || {
            status = std::fs::read_to_string(&file).unwrap_or_default();
            status.ends_with('\n')
        });
        status.trim().to_owned()
    }

    /// Waits until the screen satisfies `check`; returns that screen.
    fn wait(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + SCREEN_DEADLINE;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            if Instant::now() >= end {
                panic!("timed out waiting for {what}; the screen is:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every one of `needles` is on screen.
    fn wait_for(&self, needles: &[&str]) -> String {
        self.wait(&format!("{needles:?}"), |s| {
            needles.iter().all(|n| s.contains(n))
        })
    }

    /// Keeps `screen` under `name` when captures were asked for.
    fn keep(&self, name: &str, screen: &str) {
        if let Some(dir) = &self.captures {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{name}.txt")), screen).unwrap();
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

fn console_command(gw: &GatewayProcess) -> String {
    format!(
        "'{}' console --admin {} --token-file '{}' --refresh-ms 500",
        env!("CARGO_BIN_EXE_portcullis"),
        admin_base(gw),
        console_token(gw).display()
    )
}

/// The rows of `screen` that contain `needle`.
fn rows_with<'a>(screen: &'a str, needle: &str) -> Vec<&'a str> {
    screen.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_tmux_shows_every_view_and_answers_its_keys() {
    let upstream = upstream().await;
    let gw = start_gateway(&upstream);
    tokio::task::spawn_blocking(move || drive_every_view(&gw))
        .await
        .unwrap();
}

fn drive_every_view(gw: &GatewayProcess) {
    for i in 0..3 {
        assert_eq!(request(gw, &format!("/acme/echo/item/{i}"), KEY), 200);
    }
    assert_eq!(request(gw, "/acme/flaky/fail", KEY), 503);
    assert_eq!(request(gw, "/globex/ci/build", GLOBEX_KEY), 503);
    assert_eq!(request(gw, "/acme/echo/denied", "wrong-key"), 401);

    let tmux = Tmux::start(&console_command(gw));

    // 1 Overview: live, with the gateway's facts, and latency from the traffic tail once the
    // tail has caught up (the next poll after it).
    let screen = tmux.wait("the overview with latency", |s| {
        s.contains("● live")
            && s.contains("3 routes, 2 tenants")
            && s.contains("latency (1m)  p50 ")
            && !s.contains("no requests in the last minute")
            && !s.contains("requests/s  now —")
    });
    assert!(screen.contains("1 Overview"), "{screen}");
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "1",
        "the console draws on the alternate screen"
    );
    assert!(screen.contains("2: 1 unusable"), "{screen}");
    assert!(screen.contains("tunnels       none configured"), "{screen}");
    tmux.keep("1-overview", &screen);

    // 2 Routes, sorted by name; s s s sorts by requests/s, I inverts; Enter opens the detail.
    tmux.keys(&["2"]);
    let screen = tmux.wait_for(&["Routes (3) — sorted by name ▲", "acme-echo", "globex-ci"]);
    assert!(
        rows_with(&screen, "globex-ci")[0].contains("secret missing"),
        "{screen}"
    );
    tmux.keep("2-routes", &screen);
    tmux.keys(&["s", "s", "s"]);
    tmux.wait_for(&["sorted by rps ▼", "RPS▼"]);
    tmux.keys(&["I"]);
    tmux.wait_for(&["sorted by rps ▲"]);
    tmux.keys(&["g", "Enter"]);
    let screen = tmux.wait_for(&["— Esc closes", "last minute"]);
    tmux.keep("2-routes-detail", &screen);
    tmux.keys(&["Escape"]);
    tmux.wait("the route detail to close", |s| !s.contains("— Esc closes"));

    // 3 Traffic: the tail follows new requests.
    tmux.keys(&["3"]);
    let screen = tmux.wait_for(&[
        "● following",
        "/acme/echo/item/2",
        "secret_missing",
        "unauthenticated",
    ]);
    tmux.keep("3-traffic", &screen);
    assert_eq!(request(gw, "/acme/echo/live-1", KEY), 200);
    tmux.wait_for(&["/acme/echo/live-1"]);

    // p pauses: a new request waits, counted; p again shows it.
    tmux.keys(&["p"]);
    tmux.wait_for(&["PAUSED (+0 new)"]);
    assert_eq!(request(gw, "/acme/echo/while-paused", KEY), 200);
    let screen = tmux.wait_for(&["PAUSED (+1 new)"]);
    assert!(!screen.contains("/acme/echo/while-paused"), "{screen}");
    tmux.keep("3-traffic-paused", &screen);
    tmux.keys(&["p"]);
    tmux.wait_for(&["● following", "/acme/echo/while-paused"]);

    // / filters as it is typed; Enter keeps the filter, Esc clears it.
    tmux.keys(&["/"]);
    tmux.wait_for(&["Enter apply  Esc cancel"]);
    tmux.type_text("5xx");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait("only 5xx rows", |s| {
        s.contains("filter: 5xx") && !s.contains("/acme/echo/") && s.contains("/acme/flaky/fail")
    });
    assert!(screen.contains("2 shown of"), "{screen}");
    tmux.keep("3-traffic-filtered", &screen);
    tmux.keys(&["/"]);
    tmux.wait_for(&["Enter apply  Esc cancel"]);
    tmux.type_text(" route:globex");
    tmux.keys(&["Enter"]);
    tmux.wait("only globex 5xx", |s| {
        s.contains("1 shown of")
            && !s.contains("/acme/flaky/fail")
            && s.contains("/globex/ci/build")
    });
    tmux.keys(&["Escape"]);
    tmux.wait("the filter to clear", |s| {
        !s.contains("filter:") && s.contains("/acme/echo/item/0")
    });

    // Enter shows one request in full.
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(&["request #", "request id", "egress"]);
    tmux.keep("3-traffic-detail", &screen);
    tmux.keys(&["Escape"]);
    tmux.wait("the request detail to close", |s| {
        !s.contains("— Esc closes")
    });

    // 4 Secrets: the missing one stands out, no value anywhere.
    tmux.keys(&["4"]);
    let screen = tmux.wait_for(&[
        "Secrets (2) — 1 need attention",
        "MISSING",
        "ci-token",
        "present",
    ]);
    assert!(!screen.contains("echo-secret-value"), "{screen}");
    tmux.keep("4-secrets", &screen);

    // 5 Tunnels: none configured (an empty list), and no error.
    tmux.keys(&["5"]);
    let screen = tmux.wait_for(&["no tunnels configured"]);
    assert!(
        !screen.contains("disconnected") && !screen.contains("not_found"),
        "{screen}"
    );
    tmux.keep("5-tunnels", &screen);

    // 6 Config: r asks, n cancels, r y reloads and shows the outcome.
    tmux.keys(&["6"]);
    let screen = tmux.wait_for(&[
        "active hash",
        "result        success",
        "trigger       startup",
    ]);
    tmux.keep("6-config", &screen);
    tmux.keys(&["r"]);
    let screen = tmux.wait_for(&["Reload the configuration now?"]);
    tmux.keep("6-config-confirm", &screen);
    tmux.keys(&["n"]);
    tmux.wait("the question to close", |s| {
        !s.contains("Reload the configuration now?")
    });
    assert!(tmux.screen().contains("none yet — press r to reload"));
    tmux.keys(&["r"]);
    tmux.wait_for(&["Reload the configuration now?"]);
    tmux.keys(&["y"]);
    let screen = tmux.wait("the reload outcome", |s| {
        s.contains("trigger       api") && !s.contains("none yet")
    });
    tmux.keep("6-config-reloaded", &screen);

    // A rejected configuration: the outcome says so, with every error in full.
    let good = gw.config_text();
    gw.write_config("[[routes]]\nname = 'broken'\ntenant = 'nobody'\n");
    tmux.keys(&["r"]);
    tmux.wait_for(&["Reload the configuration now?"]);
    tmux.keys(&["y"]);
    let screen = tmux.wait_for(&[
        "FAILED — the previous configuration stays in force",
        "portcullis.toml:",
    ]);
    tmux.keep("6-config-rejected", &screen);
    gw.write_config(&good);

    // Tab and Shift-Tab walk the tabs, wrapping.
    tmux.keys(&["Tab"]);
    tmux.wait_for(&["latency (1m)"]);
    tmux.keys(&["BTab"]);
    tmux.wait_for(&["active hash"]);

    // ? shows the key table.
    tmux.keys(&["?"]);
    let screen = tmux.wait_for(&["keys — ? or Esc closes", "pause / follow the live tail"]);
    tmux.keep("help", &screen);
    tmux.keys(&["Escape"]);
    tmux.wait("the help to close", |s| {
        !s.contains("keys — ? or Esc closes")
    });

    // q quits cleanly and leaves the alternate screen.
    tmux.keys(&["q"]);
    assert_eq!(
        tmux.exit_status(),
        "0",
        "the console failed:\n{}",
        tmux.screen()
    );
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "the terminal was restored"
    );
}

/// `portcullis run` on an existing config file (the gateway after a restart); killed when
/// dropped.
struct Restarted(Child);

impl Restarted {
    fn start(config: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "--threads", "1", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .env_remove("PORTCULLIS_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for Restarted {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_tmux_survives_a_refused_token_and_a_gateway_restart() {
    let upstream = upstream().await;
    let gw = start_gateway(&upstream);
    tokio::task::spawn_blocking(move || drive_resilience(&gw))
        .await
        .unwrap();
}

fn drive_resilience(gw: &GatewayProcess) {
    let tmux = Tmux::start(&console_command(gw));
    tmux.wait_for(&["● live", "3 routes, 2 tenants"]);
    tmux.keys(&["3"]);
    assert_eq!(request(gw, "/acme/echo/before-restart", KEY), 200);
    tmux.wait_for(&["/acme/echo/before-restart"]);

    // The gateway's token changes: 401 banner; the console's token file is fixed: live again.
    std::fs::write(gw.dir.path().join("admin-token"), ROTATED_TOKEN).unwrap();
    gw.signal("HUP");
    let screen = tmux.wait_for(&[
        "401: check the admin token (unauthorized) — retrying in",
        "✖ offline",
    ]);
    assert!(!screen.contains(ROTATED_TOKEN) && !screen.contains(ADMIN_TOKEN));
    tmux.keep("banner-401", &screen);
    std::fs::write(console_token(gw), ROTATED_TOKEN).unwrap();
    tmux.wait("recovery from the 401", |s| {
        s.contains("● live") && !s.contains("401:")
    });

    // The gateway dies: the banner counts down to the next try.
    gw.signal("KILL");
    let screen = tmux.wait_for(&["disconnected — retrying in", "✖ offline"]);
    tmux.keep("banner-disconnected", &screen);
    // The last data stays on screen while disconnected.
    assert!(screen.contains("/acme/echo/before-restart"), "{screen}");

    // It comes back on the same addresses: live again, with the new process's traffic only.
    let same_addresses = gw.dir.path().join("restart.toml");
    std::fs::write(
        &same_addresses,
        gw.config_text()
            .replace(
                "listen = [\"127.0.0.1:0\"]",
                &format!("listen = [\"{}\"]", gw.addr),
            )
            .replace(
                "admin_listen = \"127.0.0.1:0\"",
                &format!("admin_listen = \"{}\"", gw.admin_addr),
            ),
    )
    .unwrap();
    let _restarted = Restarted::start(&same_addresses);
    tmux.wait("recovery after the restart", |s| {
        s.contains("● live")
            && !s.contains("disconnected")
            && !s.contains("/acme/echo/before-restart")
    });
    wait_until("the restarted gateway to serve", SCREEN_DEADLINE, || {
        std::net::TcpStream::connect(gw.addr).is_ok()
    });
    assert_eq!(request(gw, "/acme/echo/after-restart", KEY), 200);
    tmux.wait_for(&["/acme/echo/after-restart"]);

    // Ctrl-C quits cleanly too.
    tmux.keys(&["C-c"]);
    assert_eq!(
        tmux.exit_status(),
        "0",
        "the console failed:\n{}",
        tmux.screen()
    );
    assert_eq!(
        tmux.format("#{alternate_on}"),
        "0",
        "the terminal was restored"
    );
}

/// The demo's in-process agent shows on the Tunnels tab, live: the console reads the
/// gateway's `/api/v1/tunnels` through the api crate's types, so both must agree on them.
#[test]
fn the_tunnels_tab_shows_the_demo_agent_live() {
    let dir = tempfile::tempdir().unwrap();
    let ready_path = dir.path().join("ready.json");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_portcullis"))
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
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = wait_ready(&mut demo, &ready_path, String::new);
    // The demo keeps its admin token in its own directory, named after its pid.
    let token_file = std::env::temp_dir()
        .join(format!("portcullis-demo-{}", demo.id()))
        .join("admin-token");
    let tmux = Tmux::start(&format!(
        "'{}' console --admin http://{} --token-file '{}' --refresh-ms 500",
        env!("CARGO_BIN_EXE_portcullis"),
        ready.admin,
        token_file.display()
    ));
    tmux.wait_for(&["● live"]);
    tmux.keys(&["5"]);
    // The agent connects on its own once the demo is up.
    let screen = tmux.wait("the demo tunnel online with its agent", |s| {
        s.contains("Tunnels (1) — 1 online, 0 not")
            && s.contains("demo-dc")
            && s.contains("online, 1 agent")
            && s.contains("demo-agent")
    });
    assert!(!screen.contains("OFFLINE"), "{screen}");
    tmux.keep("5-tunnels-demo", &screen);
    drop(tmux);
    let _ = demo.kill();
    let _ = demo.wait();
    let _ = std::fs::remove_dir_all(token_file.parent().unwrap());
}
