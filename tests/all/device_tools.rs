//! `hotswap device` and `hotswap push` as processes: an agent pushed over the device's pty,
//! tried and confirmed; a rollback to the other slot; an agent whose self-test fails reverting
//! on its own (exit 3); and the device killed (SIGKILL) while an agent is on trial, which on
//! restart runs the agent it ran before.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::hex;

pub(crate) struct DeviceProcess {
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
pub(crate) fn start(dir: &Path) -> DeviceProcess {
    start_with(dir, &[])
}

/// `hotswap device` on `dir/flash.bin` trusting `dir/release.key`, with `extra` (where it
/// listens); its log appended to `dir/device.log`. Killed and waited for when dropped.
fn spawn_device(dir: &Path, extra: &[&str]) -> DeviceProcess {
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
            "--release-key-file",
            "release.key",
        ])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    DeviceProcess { child }
}

fn start_with(dir: &Path, extra: &[&str]) -> DeviceProcess {
    let _ = std::fs::remove_file(dir.join("tty"));
    let mut args = vec!["--pty", "tty"];
    args.extend(extra);
    let process = spawn_device(dir, &args);
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
pub(crate) fn hotswap(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), format!("{text}{err}"))
}

pub(crate) fn image(dir: &Path, agent: &str, version: &str) -> PathBuf {
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

pub(crate) fn status(dir: &Path) -> String {
    let (code, out) = hotswap(dir, &["push", "--device", "tty", "--status"]);
    assert_eq!(code, Some(0), "{out}");
    out
}

pub(crate) fn setup() -> tempfile::TempDir {
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
fn a_damaged_packet_is_dropped_by_the_device_and_sent_again_by_push() {
    use hotswap::push::bench::{LineFault, relay, tool_pty};
    let dir = setup();
    let d = dir.path();
    let _device = start(d);
    let device_tty = std::fs::canonicalize(d.join("tty")).unwrap();
    // The tool on a pty of its own, a relay between it and the device that flips one bit of
    // the 600th byte the tool sends: inside the upload's first chunk.
    let (tool, master, _slave) = tool_pty().unwrap();
    let flips = relay(master, &device_tty, LineFault::ByteToDevice(600)).unwrap();
    image(d, "example:threshold-alarm", "2.0.0");
    let tool = tool.to_str().unwrap();
    let (code, out) = hotswap(
        d,
        &[
            "push",
            "--device",
            tool,
            "--agent",
            "2.0.0.img",
            "--confirm",
            "--answer-timeout-ms",
            "500",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(flips.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert!(out.contains("1 requests sent again"), "{out}");
    let log = std::fs::read_to_string(d.join("device.log")).unwrap();
    assert_eq!(log.matches("dropped a packet").count(), 1, "{log}");
    assert!(status(d).contains("slot 0: 2.0.0 active, confirmed"));
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

fn session(dir: &Path) -> hotswap::push::Smp {
    hotswap::push::Smp::open(&dir.join("tty"), 115_200).unwrap()
}

/// Uploads the first half of `file` in 512-byte chunks; the device's next offset.
fn upload_half(smp: &mut hotswap::push::Smp, file: &[u8]) -> usize {
    let mut off = 0;
    while off < file.len() / 2 {
        off = smp.upload_chunk(file, off, 512).unwrap();
    }
    off
}

#[test]
fn an_upload_cut_halfway_resumes_and_a_device_killed_during_one_keeps_its_agent() {
    let dir = setup();
    let d = dir.path();
    let mut device = start(d);
    let file = std::fs::read(image(d, "example:threshold-alarm", "2.0.0")).unwrap();
    // Half the image, then the line goes: the tool's session ends.
    {
        let mut smp = session(d);
        upload_half(&mut smp, &file);
    }
    // A new push carries on from the device's offset.
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
    assert!(out.contains("resumed at byte"), "{out}");
    assert!(status(d).contains("slot 0: 2.0.0 active, confirmed"));

    // 3.0.0 half uploaded, then SIGKILL: after the restart 2.0.0 runs, and nothing of 3.0.0
    // is bootable.
    let file = std::fs::read(image(d, "example:threshold-alarm", "3.0.0")).unwrap();
    let mut smp = session(d);
    upload_half(&mut smp, &file);
    drop(smp);
    device.child.kill().unwrap();
    device.child.wait().unwrap();
    drop(device);
    let _device = start(d);
    let after = status(d);
    assert!(after.contains("slot 0: 2.0.0 active, confirmed"), "{after}");
    assert!(!after.contains("3.0.0"), "{after}");
}

#[test]
fn the_watchdog_gives_up_a_stalled_upload_and_reverts_an_unconfirmed_trial() {
    let dir = setup();
    let d = dir.path();
    let _device = start_with(d, &["--watchdog-seconds", "1"]);
    let file = std::fs::read(image(d, "example:threshold-alarm", "2.0.0")).unwrap();
    let mut smp = session(d);
    let off = upload_half(&mut smp, &file);
    std::thread::sleep(Duration::from_millis(2500));
    let log = std::fs::read_to_string(d.join("device.log")).unwrap();
    assert!(log.contains("watchdog: the upload stopped"), "{log}");
    // The upload was given up: its next chunk is not taken where it stopped.
    let next = smp.upload_chunk(&file, off, 512);
    assert!(
        next.is_err() || next.as_ref().is_ok_and(|n| *n != off + 512),
        "{next:?}"
    );
    drop(smp);

    // Pushed without --confirm and left: the trial reverts once the watchdog runs out.
    let (code, out) = hotswap(d, &["push", "--device", "tty", "--agent", "2.0.0.img"]);
    assert_eq!(code, Some(0), "{out}");
    std::thread::sleep(Duration::from_millis(2500));
    let after = status(d);
    assert!(after.contains("slot 0: 1.0.0 active, confirmed"), "{after}");
    let log = std::fs::read_to_string(d.join("device.log")).unwrap();
    assert!(
        log.contains("watchdog: the trial was not confirmed"),
        "{log}"
    );
}

#[test]
fn push_bench_swaps_cleanly_and_no_damaged_packet_activates_anything() {
    let (code, out) = hotswap(
        std::env::temp_dir().as_path(),
        &["push-bench", "--swaps", "30", "--timed", "2"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("swaps: 30/30 confirmed (100.0%)"), "{out}");
    let (code, out) = hotswap(
        std::env::temp_dir().as_path(),
        &[
            "push-bench",
            "--swaps",
            "10",
            "--corrupt-ppm",
            "2000",
            "--timed",
            "0",
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("again; 0 activations of anything but a genuine agent"),
        "{out}"
    );
    assert!(
        out.contains("not, 0 ending on anything but a genuine agent"),
        "{out}"
    );
    let dropped: u64 = out
        .split("the device dropped ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped > 0,
        "the faults reached the device and were caught: {out}"
    );
}

#[test]
fn a_device_on_a_serial_port_answers_smp() {
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    let dir = setup();
    let d = dir.path();
    // A pty pair stands in for the cable: the device opens the port end as a serial port
    // (`serialport`), the test speaks SMP on the other.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut t = tcgetattr(&pty.slave).unwrap();
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t).unwrap();
    let port = nix::unistd::ttyname(&pty.slave).unwrap();
    let port = port.to_str().unwrap();
    let _device = spawn_device(d, &["--baud", "115200", "--serial", port]);
    let mut smp = hotswap::push::Smp::on(std::fs::File::from(pty.master)).unwrap();
    let mut images = Vec::new();
    for _ in 0..50 {
        match smp.images() {
            Ok(i) => {
                images = i;
                break;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let log = std::fs::read_to_string(d.join("device.log")).unwrap();
    assert_eq!(images.len(), 1, "{log}");
    assert_eq!(images[0].version, "1.0.0", "{log}");
    assert!(log.contains("at 115200 baud"), "{log}");
}

/// What a device in the field serves gRPC with, written into `d`: a certificate for
/// 127.0.0.1 from the fleet's CA (`ca.pem`), a client certificate from the same CA for the
/// integrator, and the device's credential.
fn grpc_credentials(d: &Path) {
    let ca = crate::support::Ca::new("HotSwap test fleet CA");
    std::fs::write(d.join("ca.pem"), ca.cert.pem()).unwrap();
    let (cert, key) = ca.sign("device-1", &["127.0.0.1"]);
    std::fs::write(d.join("device.pem"), cert).unwrap();
    std::fs::write(d.join("device.key"), key).unwrap();
    let (cert, key) = ca.sign("integrator", &[]);
    std::fs::write(d.join("client.pem"), cert).unwrap();
    std::fs::write(d.join("client.key"), key).unwrap();
    std::fs::write(d.join("credential"), "hsw_dev_0123456789abcdef\n").unwrap();
    std::fs::write(d.join("wrong"), "hsw_dev_fedcba9876543210\n").unwrap();
}

/// `push`'s TLS and credential flags for [`grpc_credentials`]'s files.
const GRPC_AUTH: [&str; 8] = [
    "--ca-cert",
    "ca.pem",
    "--client-cert",
    "client.pem",
    "--client-key",
    "client.key",
    "--device-token-file",
    "credential",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_over_grpc_with_tls_and_the_device_credential_deploys_resumes_and_rolls_back() {
    use hotswap::proto::UploadChunk;
    let dir = setup();
    let d = dir.path().to_path_buf();
    grpc_credentials(&d);
    let port = crate::support::process::free_port();
    let addr = format!("127.0.0.1:{port}");
    let _device = spawn_device(
        &d,
        &[
            "--grpc-token-file",
            "credential",
            "--grpc-tls-cert",
            "device.pem",
            "--grpc-tls-key",
            "device.key",
            "--grpc-client-ca",
            "ca.pem",
            "--grpc",
            &addr,
        ],
    );
    let target = hotswap::push::grpc::Target {
        addr: addr.clone(),
        token: Some("hsw_dev_0123456789abcdef".into()),
        ca_cert: Some(d.join("ca.pem")),
        identity: Some((d.join("client.pem"), d.join("client.key"))),
    };
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = hotswap::push::grpc::connect(&target).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut client = client.expect("the device serves gRPC over TLS");
    let run = |args: Vec<&str>, auth: &[&str]| {
        let d = d.clone();
        let args: Vec<String> = args.iter().chain(auth).map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            hotswap(&d, &refs)
        })
    };
    let file = std::fs::read(image(&d, "example:threshold-alarm", "2.0.0")).unwrap();
    // Two chunks, then the connection goes.
    {
        let sha: [u8; 32] =
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&file)).into();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(UploadChunk {
            offset: 0,
            data: file[..1000].to_vec(),
            length: file.len() as u64,
            sha256: sha.to_vec(),
        })
        .await
        .unwrap();
        let mut progress = client
            .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(progress.message().await.unwrap().unwrap().next_offset, 1000);
        tx.send(UploadChunk {
            offset: 1000,
            data: file[1000..2000].to_vec(),
            length: 0,
            sha256: vec![],
        })
        .await
        .unwrap();
        assert_eq!(progress.message().await.unwrap().unwrap().next_offset, 2000);
    }
    let push = vec![
        "push",
        "--device",
        &addr,
        "--agent",
        "2.0.0.img",
        "--confirm",
    ];
    // Refused: no credential, another device's, no client certificate, no TLS at all.
    let (code, out) = run(push.clone(), &GRPC_AUTH[..6]).await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("this device needs its credential"), "{out}");
    let mut wrong = GRPC_AUTH;
    wrong[7] = "wrong";
    let (code, out) = run(push.clone(), &wrong).await.unwrap();
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("not this device's"), "{out}");
    let (code, out) = run(push.clone(), &GRPC_AUTH[..2]).await.unwrap();
    assert_ne!(code, Some(0), "no client certificate: {out}");
    let (code, out) = run(push.clone(), &GRPC_AUTH[6..]).await.unwrap();
    assert_ne!(code, Some(0), "plain text to a TLS port: {out}");

    let (code, out) = run(push.clone(), &GRPC_AUTH).await.unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("resumed at byte 2000"), "{out}");
    assert!(out.contains("slot 0: 2.0.0 active, confirmed"), "{out}");

    let (code, out) = run(vec!["push", "--device", &addr, "--rollback"], &GRPC_AUTH)
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("rolled back to 1.0.0"), "{out}");
    assert!(out.contains("slot 0: 1.0.0 active, confirmed"), "{out}");

    image(&d, "example:failing-self-test", "3.0.0");
    let (code, out) = run(
        vec!["push", "--device", &addr, "--agent", "3.0.0.img"],
        &GRPC_AUTH,
    )
    .await
    .unwrap();
    assert_eq!(code, Some(3), "reverted: {out}");
    let (code, out) = run(vec!["push", "--device", &addr, "--status"], &GRPC_AUTH)
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("slot 0: 1.0.0 active, confirmed"), "{out}");
    // The service's own rollback says what happened as an enum: the failing 3.0.0 in the other
    // slot is tried and reverts.
    let reply = client
        .rollback(hotswap::proto::RollbackRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        reply.outcome(),
        hotswap::proto::Outcome::Reverted,
        "{reply:?}"
    );
    assert_eq!(
        (reply.tried.as_str(), reply.version.as_str()),
        ("3.0.0", "1.0.0")
    );
}

#[test]
fn grpc_needs_the_device_credential_and_tls_beyond_loopback() {
    let dir = setup();
    let d = dir.path();
    grpc_credentials(d);
    let device = [
        "device",
        "--flash",
        "flash.bin",
        "--release-key-file",
        "release.key",
    ];
    let cases: [(&[&str], &str); 4] = [
        (&["--grpc", "127.0.0.1:0"], "--grpc needs --grpc-token-file"),
        (
            &["--grpc", "0.0.0.0:0", "--grpc-token-file", "credential"],
            "needs --grpc-tls-cert and --grpc-tls-key",
        ),
        // The gRPC token is the device's own: never its credential with the server.
        (
            &[
                "--grpc",
                "127.0.0.1:0",
                "--grpc-token-file",
                "credential",
                "--credential-file",
                "credential",
            ],
            "holds the device's server credential",
        ),
        (
            &["--grpc", "0.0.0.0:0", "--grpc-unauthenticated"],
            "--grpc-unauthenticated serves loopback only",
        ),
    ];
    for (extra, expected) in cases {
        let args: Vec<&str> = device.iter().chain(extra).copied().collect();
        let (code, out) = hotswap(d, &args);
        assert_eq!(code, Some(2), "{extra:?}: {out}");
        assert!(out.contains(expected), "{extra:?}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_killed_during_a_grpc_upload_keeps_its_agent() {
    use hotswap::proto::UploadChunk;
    use hotswap::proto::device_client::DeviceClient;
    let dir = setup();
    let d = dir.path().to_path_buf();
    let port = crate::support::process::free_port();
    let addr = format!("127.0.0.1:{port}");
    let spawn = || spawn_device(&d, &["--grpc-unauthenticated", "--grpc", &addr]);
    let connect = || async {
        for _ in 0..100 {
            if let Ok(c) = DeviceClient::connect(format!("http://{addr}")).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the device serves no gRPC");
    };
    let mut device = spawn();
    let mut client = connect().await;
    let file = std::fs::read(image(&d, "example:threshold-alarm", "2.0.0")).unwrap();
    let sha: [u8; 32] =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&file)).into();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(UploadChunk {
        offset: 0,
        data: file[..1500].to_vec(),
        length: file.len() as u64,
        sha256: sha.to_vec(),
    })
    .await
    .unwrap();
    let mut progress = client
        .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(progress.message().await.unwrap().unwrap().next_offset, 1500);
    // SIGKILL halfway through the upload: a power cut.
    device.child.kill().unwrap();
    device.child.wait().unwrap();
    drop(device);
    let _device = spawn();
    let mut client = connect().await;
    let state = client
        .image_state(hotswap::proto::ImageStateRequest {})
        .await
        .unwrap()
        .into_inner();
    let running = state.images.iter().find(|i| i.slot == 0).unwrap();
    assert_eq!(
        (running.version.as_str(), running.confirmed),
        ("1.0.0", true)
    );
    assert!(
        state.images.iter().all(|i| i.version != "2.0.0"),
        "nothing of the cut upload is bootable: {state:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_checking_in_with_a_server_takes_a_rollout_and_reverts_a_failing_agent() {
    use crate::support::scripted::wait_for;
    use crate::support::server::{Server, data_dir};
    use crate::support::{registration, release_key};
    use hotswap_protocol::{DeploymentRequest, DeviceRegistration};
    let dir = setup();
    let d = dir.path().to_path_buf();
    let data = data_dir();
    let server = Server::start(&data).await;
    let api = server.client();
    let registered = api
        .register_device(&DeviceRegistration {
            device_id: "bench-1".into(),
            device_model: "sensor-v1".into(),
            region: "eu-west".into(),
            firmware_version: "1.0.0".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    std::fs::write(d.join("credential"), &registered.token).unwrap();
    for (version, agent) in [
        ("2.0.0", hotswap_agents::THRESHOLD_ALARM),
        ("3.0.0", hotswap_agents::FAILING_SELF_TEST),
    ] {
        let image = hotswap_sim::tagged(agent, version);
        api.register_firmware(&registration(&release_key(), version, &image))
            .await
            .unwrap();
    }
    let _device = start_with(
        &d,
        &[
            "--server",
            &server.url,
            "--id",
            "bench-1",
            "--credential-file",
            "credential",
            "--poll-seconds",
            "1",
        ],
    );
    let deploy = |version: &str| DeploymentRequest {
        firmware_version: version.into(),
        device_model: "sensor-v1".into(),
        target_devices: Some(vec!["bench-1".into()]),
        strategy: "direct".into(),
        ..Default::default()
    };
    let log = || std::fs::read_to_string(d.join("device.log")).unwrap_or_default();

    let id = api
        .create_deployment(&deploy("2.0.0"))
        .await
        .unwrap()
        .deployment
        .id;
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused", "failed"]).await;
    assert_eq!(done["state"], "completed", "{done:#}\n{}", log());
    let d2 = d.clone();
    let out = tokio::task::spawn_blocking(move || status(&d2))
        .await
        .unwrap();
    assert!(out.contains("slot 0: 2.0.0 active, confirmed"), "{out}");
    let device = api.device("bench-1").await.unwrap();
    assert_eq!(device.device.firmware_version, "2.0.0", "{device:#?}");

    // The failing agent is uploaded, tried at a reset, fails its self-test on the device, and
    // the device goes back on its own and says so.
    let id = api
        .create_deployment(&deploy("3.0.0"))
        .await
        .unwrap()
        .deployment
        .id;
    let done = wait_for(&api, id, &["completed", "rolled-back", "paused", "failed"]).await;
    assert_eq!(done["states"]["rolled-back"], 1, "{done:#}\n{}", log());
    assert!(log().contains("failed its self-test"), "{}", log());
    let d2 = d.clone();
    let out = tokio::task::spawn_blocking(move || status(&d2))
        .await
        .unwrap();
    assert!(out.contains("slot 0: 2.0.0 active, confirmed"), "{out}");
}
