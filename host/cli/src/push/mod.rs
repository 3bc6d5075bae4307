//! `hotswap push`: one agent to one device, the way a device integrator's tool does it: upload
//! (resumed from the device's offset after a dropped connection), test, reset, and confirm once
//! the trial runs; `--status`, `--info` and `--rollback`. The flow is written once, over a
//! [`Transport`] that each path implements:
//!
//! - [`serial`]: MCUmgr's SMP on a serial line or `hotswap device`'s pty, as `smpmgr` speaks it.
//! - [`grpc`]: the device's `hotswap.device.v1` gRPC service (`--device HOST:PORT`).
//! - [`bench`]: `hotswap push-bench`, the stress and line-fault suites over the serial path.

pub mod bench;
pub mod grpc;
pub mod serial;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Result;
use hotswap_device_vm::mcuboot;
use hotswap_device_vm::smp::codec::SlotImage;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub use serial::{ANSWER_TIMEOUT, ATTEMPTS, Refused, Smp};

use crate::usage::UsageError;

/// The exit code of a push whose agent failed its trial: the device went back on its own.
pub const REVERTED: u8 = 3;

/// A path to a device's image manager. What it does, each path does its own way; what it means
/// (which slot runs, what is pending, when a trial is kept) is the device's, the same on every
/// path.
pub trait Transport {
    /// What the device says of itself (`--info`); `name` is how the user named it.
    fn describe_device(&mut self, name: &str) -> Result<String>;
    /// The device's slots: 0 the running agent, 1 the other.
    fn images(&mut self) -> Result<Vec<SlotImage>>;
    /// The MCUboot image `file`, uploaded into the other slot; `bar` follows the offset.
    fn upload(&mut self, file: &[u8], bar: &ProgressBar) -> Result<Uploaded>;
    /// With a hash, test that agent at the next reset (kept once it passes when `confirm`);
    /// without, confirm the agent on trial.
    fn set_state(&mut self, hash: Option<&[u8]>, confirm: bool) -> Result<()>;
    /// Resets the device; returns once it answers again, its trial's self-test run.
    fn reset(&mut self) -> Result<()>;
    /// Requests sent again so far (a noisy line).
    fn resent(&self) -> u32 {
        0
    }
}

/// How an upload went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    /// The device already held the bytes up to here (an earlier upload of the same file).
    pub resumed_from: Option<usize>,
}

#[derive(clap::Args)]
pub struct PushArgs {
    /// The device: a serial port or `hotswap device`'s pty link (SMP), or HOST:PORT of
    /// `hotswap device --grpc` (gRPC).
    #[arg(long)]
    pub device: PathBuf,
    /// The agent as an MCUboot image file (`hotswap release ... --image-out`).
    #[arg(long, conflicts_with_all = ["info", "status", "rollback"])]
    pub agent: Option<PathBuf>,
    /// Once the new agent runs on trial, confirm it (without: it stays on trial, and the
    /// device's watchdog reverts it unless something confirms it in time).
    #[arg(long, requires = "agent")]
    pub confirm: bool,
    /// What the device is: its answer to echo, its buffer size, its slots.
    #[arg(long)]
    pub info: bool,
    /// The device's slots.
    #[arg(long)]
    pub status: bool,
    /// Go back to the agent in the other slot (tried, then kept once its self-test passes).
    #[arg(long)]
    pub rollback: bool,
    /// The serial line's speed (a real port; a pty ignores it).
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// Milliseconds to wait for an answer before sending the request again.
    #[arg(long, default_value_t = ANSWER_TIMEOUT.as_millis() as u64)]
    pub answer_timeout_ms: u64,
    /// gRPC: the device's credential in a file (its `hsw_dev_...` token); or set
    /// HOTSWAP_DEVICE_TOKEN.
    #[arg(long)]
    pub device_token_file: Option<PathBuf>,
    /// gRPC over TLS: trust this CA certificate (PEM) for the device's certificate.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// gRPC over TLS: a client certificate (PEM) for a device that asks for one, with
    /// `--client-key`.
    #[arg(long, requires_all = ["ca_cert", "client_key"])]
    pub client_cert: Option<PathBuf>,
    #[arg(long, requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

/// How a push ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The new agent runs on trial.
    OnTrial {
        uploaded: Duration,
        total: Duration,
        resumed_from: Option<usize>,
    },
    /// Its self-test failed: the device went back on its own.
    Reverted,
}
/// Uploads the image `file` (whose MCUboot hash is `hash`), marks it for test and resets the
/// device, which tries it; a progress bar on a terminal when `bar`.
pub fn push_agent(
    device: &mut dyn Transport,
    file: &[u8],
    hash: &[u8; 32],
    version: &str,
    bar: bool,
) -> Result<Pushed> {
    let bar = ProgressBar::with_draw_target(
        Some(file.len() as u64),
        if bar && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template(
            "uploading {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(version.to_string());
    let started = Instant::now();
    let Uploaded { resumed_from } = device.upload(file, &bar)?;
    bar.finish_and_clear();
    let uploaded = started.elapsed();
    if !try_agent(device, hash, false, version)? {
        return Ok(Pushed::Reverted);
    }
    Ok(Pushed::OnTrial {
        uploaded,
        total: started.elapsed(),
        resumed_from,
    })
}

/// Goes back to the agent in the other slot: tried at a reset, kept once its self-test passes.
/// Its version, and whether it runs now.
pub fn rollback(device: &mut dyn Transport) -> Result<(String, bool)> {
    let images = device.images()?;
    let Some(other) = images.iter().find(|i| i.slot == 1) else {
        anyhow::bail!("the device's other slot holds no agent to go back to");
    };
    if other.hash.is_empty() {
        anyhow::bail!("the device did not give the other slot's hash");
    }
    let (hash, version) = (other.hash.clone(), other.version.clone());
    let ok = try_agent(device, &hash, true, &version)?;
    Ok((version, ok))
}

/// Marks the agent of `hash` for test (kept once it passes when `keep`), resets the device,
/// and says whether `version` runs after it.
fn try_agent(device: &mut dyn Transport, hash: &[u8], keep: bool, version: &str) -> Result<bool> {
    device.set_state(Some(hash), keep)?;
    device.reset()?;
    let images = device.images()?;
    let running = images.iter().find(|i| i.slot == 0);
    Ok(running.map(|i| i.version.as_str()) == Some(version))
}

/// Confirms the agent on trial.
pub fn confirm(device: &mut dyn Transport) -> Result<()> {
    device.set_state(None, true)
}

/// The slots, a line each.
fn describe(images: &[SlotImage]) -> String {
    let lines: Vec<String> = images
        .iter()
        .map(|i| {
            let flags: Vec<&str> = [
                (i.active, "active"),
                (i.confirmed, "confirmed"),
                (i.pending, "pending"),
                (i.permanent, "permanent"),
            ]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
            format!(
                "slot {}: {} {} (hash {})",
                i.slot,
                i.version,
                if flags.is_empty() {
                    "-".into()
                } else {
                    flags.join(", ")
                },
                hex::encode(&i.hash)
            )
        })
        .collect();
    if lines.is_empty() {
        "no agent".into()
    } else {
        lines.join("\n")
    }
}

/// The device's credential for gRPC: `--device-token-file`, else HOTSWAP_DEVICE_TOKEN.
fn device_token(a: &PushArgs) -> Result<Option<String>> {
    if let Some(path) = &a.device_token_file {
        return crate::connection::read_token(path).map(Some);
    }
    Ok(std::env::var("HOTSWAP_DEVICE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// The device `--device` names: HOST:PORT is the network path (gRPC), as `edgeplug-push`
/// chose; a path is a serial line.
fn open(a: &PushArgs) -> Result<(Box<dyn Transport>, &'static str)> {
    if !a.device.exists()
        && let Some(addr) = a.device.to_str().filter(|d| d.contains(':'))
    {
        let target = grpc::Target {
            addr: addr.to_string(),
            token: device_token(a)?,
            ca_cert: a.ca_cert.clone(),
            identity: a.client_cert.clone().zip(a.client_key.clone()),
        };
        let device = grpc::GrpcDevice::connect(&target, tokio::runtime::Handle::current())?;
        return Ok((Box::new(device), " over gRPC"));
    }
    let smp = Smp::open(&a.device, a.baud)?
        .with_timeout(Duration::from_millis(a.answer_timeout_ms.max(1)));
    Ok((Box::new(smp), ""))
}

/// `hotswap push`; run it off the async workers (it blocks on the line, or on the runtime for
/// gRPC).
pub fn run(a: PushArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let (mut device, path) = open(&a)?;
    let device = device.as_mut();
    if a.info || a.status {
        if a.info {
            writeln!(
                out,
                "{}",
                device.describe_device(&a.device.display().to_string())?
            )?;
        }
        writeln!(out, "{}", describe(&device.images()?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.rollback {
        let started = Instant::now();
        let (version, ok) = rollback(device)?;
        let images = device.images()?;
        if !ok {
            writeln!(
                out,
                "rollback to {version} failed its self-test; the device stayed on what it ran\n{}",
                describe(&images)
            )?;
            return Ok(ExitCode::from(REVERTED));
        }
        writeln!(
            out,
            "rolled back to {version} in {:.2} s\n{}",
            started.elapsed().as_secs_f64(),
            describe(&images)
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let Some(path_of_agent) = &a.agent else {
        anyhow::bail!(UsageError(
            "say what to do: --agent FILE, --status, --info or --rollback".into()
        ));
    };
    let file = std::fs::read(path_of_agent)
        .map_err(|e| UsageError(format!("reading {}: {e}", path_of_agent.display())))?;
    let (signed, _, hash) = mcuboot::parse(&file)
        .map_err(|e| UsageError(format!("{}: {e}", path_of_agent.display())))?;
    let version = signed.manifest.version.to_string();
    let pushed = push_agent(device, &file, &hash, &version, true)?;
    let Pushed::OnTrial {
        uploaded,
        total,
        resumed_from,
    } = pushed
    else {
        let images = device.images()?;
        writeln!(
            out,
            "{version} failed its trial on the device, which went back on its own\n{}",
            describe(&images)
        )?;
        return Ok(ExitCode::from(REVERTED));
    };
    let started = Instant::now() - total;
    if a.confirm {
        confirm(device)?;
    }
    let resent = device.resent();
    writeln!(
        out,
        "pushed {version} ({} bytes){path} in {:.2} s (upload {:.2} s{}{}); {}\n{}",
        file.len(),
        started.elapsed().as_secs_f64(),
        uploaded.as_secs_f64(),
        resumed_from
            .map(|b| format!(", resumed at byte {b}"))
            .unwrap_or_default(),
        if resent > 0 {
            format!(", {resent} requests sent again")
        } else {
            String::new()
        },
        if a.confirm {
            "confirmed"
        } else {
            "on trial, not confirmed"
        },
        describe(&device.images()?)
    )?;
    Ok(ExitCode::SUCCESS)
}
