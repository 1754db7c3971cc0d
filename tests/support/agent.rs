//! The real `portcullis-agent` binary for the tunnel tests, and the TCP echo server a TCP
//! route is tested against.
//!
//! The agent is the broker package's binary, which Cargo does not build for the gateway's
//! tests (`CARGO_BIN_EXE_*` only names binaries of the package under test). [`agent_binary`]
//! builds it once per test process with the same Cargo, profile and target directory, so it
//! is the current source, and a second run finds it up to date in a fraction of a second.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The path of a freshly built `portcullis-agent`.
pub fn agent_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // target/<profile>/deps/<test binary> → target/<profile>
        let exe = std::env::current_exe().unwrap();
        let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
        let target_dir = profile_dir.parent().unwrap().to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "-p",
                "portcullis-broker",
                "--bin",
                "portcullis-agent",
            ])
            .arg("--target-dir")
            .arg(&target_dir);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .status()
            .expect("running cargo to build portcullis-agent");
        assert!(status.success(), "building portcullis-agent failed");
        let binary = profile_dir.join("portcullis-agent");
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

/// A running `portcullis-agent`; killed when dropped.
pub struct AgentProcess {
    pub dir: PathBuf,
    child: Option<Child>,
    log_path: PathBuf,
}

/// What an agent needs to know besides its origins.
pub struct AgentSetup<'a> {
    pub gateways: &'a [SocketAddr],
    pub token: &'a str,
    pub ca_file: &'a Path,
    pub agent_id: &'a str,
    /// Extra top-level keys (e.g. `transport = "websocket"`).
    pub top: &'a str,
}

impl AgentProcess {
    /// Writes `agent.toml` (with fast heartbeats and backoff, then `origins`) and the token file
    /// into a fresh directory and starts the agent on it.
    pub fn start(setup: &AgentSetup<'_>, origins: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap().keep();
        std::fs::write(dir.join("token"), format!("{}\n", setup.token)).unwrap();
        let gateways: Vec<String> = setup.gateways.iter().map(|g| format!("\"{g}\"")).collect();
        let config = format!(
            "gateways = [{}]\ntoken_file = \"token\"\nca_file = \"{}\"\naudit = \"audit.jsonl\"\n\
             agent_id = \"{}\"\n{}\n\n[heartbeat]\ninterval_ms = 500\ntimeout_ms = 3000\n\n\
             [backoff]\ninitial_ms = 100\nmax_ms = 1000\n\n{origins}",
            gateways.join(", "),
            setup.ca_file.display(),
            setup.agent_id,
            setup.top,
        );
        let config_path = dir.join("agent.toml");
        std::fs::write(&config_path, config).unwrap();
        let log_path = dir.join("agent.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(agent_binary());
        cmd.arg("--config")
            .arg(&config_path)
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env("PORTCULLIS_AGENT_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawning portcullis-agent");
        Self {
            dir,
            child: Some(child),
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL: the agent dies without a word, as in a crash or a pulled cable's end.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Peak resident memory, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        peak_rss_kib(self.pid())
    }

    /// The agent's audit lines.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits (bounded) for the agent's log to contain `needle`.
    pub fn wait_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "agent log never said {needle:?}:\n{}",
                self.log()
            );
            // Another process writes the log; there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A TCP echo server on loopback: every connection gets back what it sends.
pub async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}
