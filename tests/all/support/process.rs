//! The real `hotswap` command, built as this package's `hotswap-under-test` binary: as a server
//! process to kill, and as a command to run.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hotswap_client::Client;

use super::{hex, release_key};

/// A `hotswap serve` process; killed (SIGKILL) when dropped.
pub struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Stops it as an operator would (SIGTERM) and waits for it to exit.
    pub fn terminate(mut self) {
        let pid = self.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `hotswap serve` on `port` with its data in `dir/data`, its configuration and log beside
/// it; returns once it answers `/healthz` (at most 30 s).
pub async fn serve(dir: &Path, port: u16) -> Process {
    serve_with(dir, port, "").await
}

/// [`serve`] with `more` added to its configuration file (tables such as `[plugin-limits]`).
pub async fn serve_with(dir: &Path, port: u16, more: &str) -> Process {
    serve_with_env(dir, port, more, &[]).await
}

/// [`serve_with`], the process given the variables `env` as well.
pub async fn serve_with_env(dir: &Path, port: u16, more: &str, env: &[(&str, &str)]) -> Process {
    let config = dir.join("hotswap.toml");
    // Scripted devices check in every 20 ms, far above what a device may: as for the servers in
    // the test process, the device rate limit is lifted (tests of it use those).
    std::fs::write(
        &config,
        format!(
            "orchestrator-tick-ms = 50\ndevice-requests-per-second = 1000000\ndevice-burst = 1000000\n{more}"
        ),
    )
    .unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_hotswap-under-test"))
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        // A database named in `env` is the test's own (replicas share one).
        .args(if env.iter().any(|(k, _)| *k == "HOTSWAP_DATABASE_URL") {
            Vec::new()
        } else {
            super::database::flags(&dir.join("data"))
        })
        .arg("--config")
        .arg(&config)
        .arg("--trusted-key")
        .arg(hex(release_key().trusted().key.as_bytes()))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the server starts");
    let process = Process(child);
    Client::new(&format!("http://127.0.0.1:{port}"))
        .unwrap()
        .wait_until_up(Duration::from_millis(50), Duration::from_secs(30))
        .await
        .expect("the server answers /healthz within 30 s");
    process
}

/// Runs the real `hotswap` command; its exit status, standard output and standard error.
pub async fn hotswap(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_hotswap-under-test"))
            .args(&args)
            .output()
            .expect("the command runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// What a run of the command did.
#[derive(Debug)]
pub struct Ran {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub out: String,
    pub err: String,
}

/// Runs the real `hotswap` command with only `env` of the variables it reads (none of the
/// caller's `HOTSWAP_*`), so a test's contexts and credentials are its own.
/// It runs in `dir`, so no `./hotswap-data` of the caller's is found.
pub async fn hotswap_with(dir: &Path, env: Vec<(String, String)>, args: Vec<String>) -> Ran {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hotswap-under-test"));
        command.current_dir(dir);
        for (key, _) in std::env::vars() {
            if key.starts_with("HOTSWAP_") {
                command.env_remove(key);
            }
        }
        let out = command
            .envs(env)
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .expect("the command runs");
        Ran {
            code: out.status.code(),
            out: String::from_utf8_lossy(&out.stdout).into_owned(),
            err: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}
