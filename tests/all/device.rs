//! `hotswap device` and `hotswap push` as processes: an agent pushed over the device's pty,
//! tried and confirmed; a rollback to the other slot; an agent whose self-test fails reverting
//! on its own (exit 3); and the device killed (SIGKILL) while an agent is on trial, which on
//! restart runs the agent it ran before.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::hex;

struct DeviceProcess {
    child: Child,
}

impl Drop for DeviceProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_hotswap-under-test")
}

/// Starts `hotswap device` on `dir/flash.bin`, SMP on `dir/tty`; returns once the link exists.
fn start(dir: &Path) -> DeviceProcess {
    let _ = std::fs::remove_file(dir.join("tty"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("device.log"))
        .unwrap();
    let child = Command::new(bin())
        .args([
            "device",
            "--flash",
            "flash.bin",
            "--pty",
            "tty",
            "--release-key-file",
            "release.key",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    // Waited for when dropped, on every path.
    let process = DeviceProcess { child };
    for _ in 0..200 {
        if dir.join("tty").exists() {
            return process;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "no pty: {}",
        std::fs::read_to_string(dir.join("device.log")).unwrap_or_default()
    );
}

/// `hotswap args...` in `dir`: exit code and standard output.
fn hotswap(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), format!("{text}{err}"))
}

fn image(dir: &Path, agent: &str, version: &str) -> PathBuf {
    let file = format!("{version}.img");
    let (code, out) = hotswap(
        dir,
        &[
            "release",
            agent,
            "--version",
            version,
            "--release-key-file",
            "release.key",
            "--image-out",
            &file,
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    dir.join(file)
}

fn status(dir: &Path) -> String {
    let (code, out) = hotswap(dir, &["push", "--device", "tty", "--status"]);
    assert_eq!(code, Some(0), "{out}");
    out
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("release.key"), hex(&[7; 32])).unwrap();
    dir
}

#[test]
fn push_deploys_tries_confirms_and_rolls_back_over_the_devices_pty() {
    let dir = setup();
    let d = dir.path();
    let _device = start(d);
    let (code, out) = hotswap(d, &["push", "--device", "tty", "--info"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("slot 0: 1.0.0 active, confirmed"),
        "the factory agent: {out}"
    );

    image(d, "example:threshold-alarm", "2.0.0");
    let (code, out) = hotswap(
        d,
        &[
            "push",
            "--device",
            "tty",
            "--agent",
            "2.0.0.img",
            "--confirm",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("pushed 2.0.0") && out.contains("confirmed"),
        "{out}"
    );
    assert!(status(d).contains("slot 0: 2.0.0 active, confirmed"));

    let (code, out) = hotswap(d, &["push", "--device", "tty", "--rollback"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        status(d).contains("slot 0: 1.0.0 active, confirmed"),
        "{out}"
    );

    image(d, "example:failing-self-test", "3.0.0");
    let (code, out) = hotswap(
        d,
        &[
            "push",
            "--device",
            "tty",
            "--agent",
            "3.0.0.img",
            "--confirm",
        ],
    );
    assert_eq!(code, Some(3), "reverted: {out}");
    assert!(out.contains("failed its trial"), "{out}");
    assert!(status(d).contains("slot 0: 1.0.0 active, confirmed"));

    // A file that is not an image is the caller's mistake: exit 2, nothing sent.
    std::fs::write(d.join("junk.img"), b"not an image").unwrap();
    let (code, out) = hotswap(d, &["push", "--device", "tty", "--agent", "junk.img"]);
    assert_eq!(code, Some(2), "{out}");
}

#[test]
fn a_device_killed_during_a_trial_runs_its_previous_agent_after_restart() {
    let dir = setup();
    let d = dir.path();
    let mut device = start(d);
    image(d, "example:threshold-alarm", "2.0.0");
    // Pushed without --confirm: it runs on trial.
    let (code, out) = hotswap(d, &["push", "--device", "tty", "--agent", "2.0.0.img"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        status(d).contains("slot 0: 2.0.0 active (hash"),
        "on trial, not confirmed"
    );
    // SIGKILL: the power goes while the trial runs.
    device.child.kill().unwrap();
    device.child.wait().unwrap();
    drop(device);
    let _device = start(d);
    let after = status(d);
    assert!(after.contains("slot 0: 1.0.0 active, confirmed"), "{after}");
    assert!(after.contains("slot 1: 2.0.0"), "{after}");
}
