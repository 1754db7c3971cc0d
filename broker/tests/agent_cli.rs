//! The `portcullis-agent` binary's config handling: the shipped example loads, and an invalid
//! file is rejected with every error's file:line:column and exit code 2.

use std::path::Path;
use std::process::Command;

fn agent() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis-agent"));
    cmd.env_remove("HTTPS_PROXY").env_remove("https_proxy");
    cmd
}

#[test]
fn the_shipped_example_config_loads() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent.toml");
    let out = agent()
        .arg("--check")
        .arg("--config")
        .arg(&example)
        .env("SONAR_TOKEN", "example-value")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("ok (3 origins, 2 gateways)"), "{stdout}");
}

#[test]
fn an_invalid_config_exits_2_with_every_error_located_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "tok\n").unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "gateways = [\"gw\"]\ntoken_file = \"token\"\ninsecure_plaintext = true\n\
         [[origins]]\nname = \"a\"\nurl = \"http://h\"\nheaders = { X = \"${env:PORTCULLIS_TEST_SECRET}\\u0001\" }\n\
         [[origins]]\nname = \"a\"\nurl = \"tcp://h\"\n",
    )
    .unwrap();
    let out = agent()
        .arg("--config")
        .arg(&config)
        .env("PORTCULLIS_TEST_SECRET", "very-secret-value")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("agent.toml:1:13: error: gateways: 'gw' is not \"host:port\""),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "agent.toml:7:17: error: headers.X: the resolved value is not a valid header value"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("agent.toml:9:8: error: origin 'a' is defined twice"),
        "{stderr}"
    );
    assert!(!stderr.contains("very-secret-value"), "{stderr}");
}
