//! `hotswap device`: one device you can run. The device VM on NOR flash kept in a file (its
//! state survives a restart, and killing the process is a power cut), the factory agent written
//! on first start, the running agent's `step` on simulated sensors, and MCUmgr's SMP on a
//! pseudo-terminal or a real serial port, so `smpmgr`, `mcumgr` and `hotswap push` manage it as
//! they manage any MCUboot device.
//!
//! A watchdog ([`DeviceConfig::watchdog`]) gives up an upload that makes no progress for that
//! long (the other slot is erased, the running agent untouched) and reverts a trial not
//! confirmed in time.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hotswap_device_vm::agent::{self, Agent, AgentLimits, RecordingHost};
use hotswap_device_vm::layout::DEFAULT_SLOT_SIZE;
use hotswap_device_vm::release::Release;
use hotswap_device_vm::sim::FileFlash;
use hotswap_device_vm::slots::TrustedKey;
use hotswap_device_vm::smp::serial::{Decoder, MAX_LINE, encode};
use hotswap_device_vm::smp::server::BUFFER_SIZE;
use hotswap_device_vm::smp::{Effect, ResetOutcome, Server, reset};
use hotswap_device_vm::{Device, Layout, TrialOutcome};

/// 1 KiB sectors: two for the journal, then the two slots.
const SECTOR: u32 = 1024;
/// The flash file's size.
pub const FLASH_BYTES: usize = 2 * SECTOR as usize + 2 * DEFAULT_SLOT_SIZE as usize;

/// How one device runs.
pub struct DeviceConfig {
    pub flash: PathBuf,
    /// The line SMP is served on; none when only the network path (`--grpc`) is.
    pub line: Option<LineConfig>,
    pub keys: Vec<TrustedKey>,
    /// What the device runs from the factory, written on first start.
    pub factory: Release,
    /// An update with no progress for this long is given up; a trial not confirmed within it
    /// reverts.
    pub watchdog: Duration,
    /// Between two `step`s of the running agent.
    pub step: Duration,
}

fn layout() -> Result<Layout> {
    Layout::new(SECTOR, DEFAULT_SLOT_SIZE, 4, FLASH_BYTES as u32)
        .map_err(|e| anyhow::anyhow!("the device's flash layout: {e}"))
}

fn host() -> RecordingHost {
    RecordingHost {
        sensors: vec![("temperature".into(), 21.5)],
        ..RecordingHost::default()
    }
}

/// The self-test a new agent runs on trial: the real agent in the real VM, under its fuel
/// budget.
fn self_test(image: &[u8]) -> Result<(), String> {
    agent::trial(image, host(), AgentLimits::default(), "{}")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn device_config(keys: &[TrustedKey]) -> hotswap_device_vm::DeviceConfig {
    hotswap_device_vm::DeviceConfig {
        keys: keys.to_vec(),
        allow_downgrade: false,
    }
}

/// Boots from the flash file, writing the factory agent on a new one.
fn boot(config: &DeviceConfig) -> Result<Device<FileFlash>> {
    let (flash, created) = FileFlash::open(&config.flash, FLASH_BYTES)
        .with_context(|| format!("opening the flash file {}", config.flash.display()))?;
    let mut device = Device::boot(flash, layout()?, device_config(&config.keys))
        .map_err(|f| anyhow::anyhow!("booting from {}: {}", config.flash.display(), f.error))?;
    if created || device.active().is_none() {
        let r = &config.factory;
        device.begin_update(r.manifest, r.key_id, r.signature)?;
        device.write_chunk(0, &r.image)?;
        device.finish_download(0)?;
        device.activate()?;
        match device.run_trial(self_test)? {
            TrialOutcome::Confirmed { version } => {
                eprintln!("hotswap device: new flash, the factory agent {version} written");
            }
            other => anyhow::bail!("the factory agent failed its trial: {other:?}"),
        }
    }
    Ok(device)
}

/// Where the device listens.
#[derive(Debug, Clone)]
pub enum LineConfig {
    /// A pseudo-terminal, with a symlink at this path to its other end.
    Pty(PathBuf),
    /// A real serial port at this speed.
    Serial { path: PathBuf, baud: u32 },
}

/// An open line: a reader, a writer, and what must live as long as they do.
struct OpenLine {
    reader: Box<dyn Read + Send>,
    writer: Box<dyn Write + Send>,
    _keep: Box<dyn std::any::Any>,
}

fn open_line(line: &LineConfig) -> Result<OpenLine> {
    match line {
        LineConfig::Pty(link) => {
            let pty = Pty::open(link.clone())?;
            Ok(OpenLine {
                reader: Box::new(pty.master.try_clone().context("the pseudo-terminal")?),
                writer: Box::new(pty.master.try_clone().context("the pseudo-terminal")?),
                _keep: Box::new(pty),
            })
        }
        LineConfig::Serial { path, baud } => {
            // A read that times out is no data yet, not an error: the loop comes back.
            let port = serialport::new(path.to_string_lossy(), *baud)
                .timeout(Duration::from_millis(100))
                .open_native()
                .with_context(|| format!("opening the serial port {}", path.display()))?;
            eprintln!("hotswap device: SMP on {} at {baud} baud", path.display());
            let reader = port.try_clone_native().context("the serial port")?;
            Ok(OpenLine {
                reader: Box::new(reader),
                writer: Box::new(port),
                _keep: Box::new(()),
            })
        }
    }
}

/// A pseudo-terminal in raw mode, bytes in and out unchanged; `link` is made a symlink to its
/// other end, which clients open as a serial port.
struct Pty {
    master: std::fs::File,
    /// Held open so the master reads nothing, rather than an error, while no client is there.
    _slave: std::os::fd::OwnedFd,
    link: PathBuf,
}

impl Pty {
    fn open(link: PathBuf) -> Result<Pty> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let pty = nix::pty::openpty(None, None).context("opening a pseudo-terminal")?;
        let mut termios = tcgetattr(&pty.slave).context("reading the terminal's settings")?;
        cfmakeraw(&mut termios);
        tcsetattr(&pty.slave, SetArg::TCSANOW, &termios).context("setting the terminal to raw")?;
        let name = nix::unistd::ttyname(&pty.slave).context("naming the pseudo-terminal")?;
        match std::fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => std::fs::remove_file(&link)
                .with_context(|| format!("replacing the old link {}", link.display()))?,
            Ok(_) => anyhow::bail!(
                "{} exists and is not a symlink: not replaced",
                link.display()
            ),
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&name, &link)
            .with_context(|| format!("linking {} to {}", link.display(), name.display()))?;
        eprintln!(
            "hotswap device: SMP on {} (-> {})",
            link.display(),
            name.display()
        );
        Ok(Pty {
            master: std::fs::File::from(pty.master),
            _slave: pty.slave,
            link,
        })
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.link);
    }
}

/// What the device's loop is handed: bytes from its serial line, or an SMP message from its
/// network path (`hotswap device --grpc`, `--server`) with where to send the answer.
pub enum Event {
    Line(Vec<u8>),
    Smp(Vec<u8>, Reply),
    /// How the running agent is, for a check-in.
    Health(tokio::sync::oneshot::Sender<hotswap_protocol::Health>),
}

/// Where the answer to an SMP message from the network path goes.
pub type Reply = tokio::sync::oneshot::Sender<Vec<u8>>;

/// Runs the device until `stop` is set, taking what comes on `events` (its line's reader sends
/// there too); a summary line at the end.
pub fn run(
    config: DeviceConfig,
    stop: Arc<AtomicBool>,
    events: (
        std::sync::mpsc::Sender<Event>,
        std::sync::mpsc::Receiver<Event>,
    ),
) -> Result<String> {
    let mut device = boot(&config)?;
    let running = |d: &Device<FileFlash>| {
        d.active()
            .map(|(slot, h)| format!("{} from slot {slot:?}", h.manifest.version))
            .unwrap_or_else(|| "nothing".into())
    };
    eprintln!("hotswap device: running {}", running(&device));
    let (tx, rx) = events;
    let (mut writer, reader, _keep): (Box<dyn Write + Send>, _, _) = match &config.line {
        Some(line) => {
            let line = open_line(line)?;
            (line.writer, Some(line.reader), Some(line._keep))
        }
        None => (Box::new(std::io::sink()), None, None),
    };
    if let Some(mut reader) = reader {
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => std::thread::sleep(Duration::from_millis(20)),
                    Ok(n) => {
                        if tx.send(Event::Line(buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                    // A serial port's read timeout, or EIO while no client holds a pty's other end
                    // open on some systems: wait and read again.
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
    }
    let started = Instant::now();
    let mut server = Server::new();
    // A packet is a message of at most BUFFER_SIZE bytes and its CRC.
    let mut decoder = Decoder::new(BUFFER_SIZE + 2);
    let mut agent = start_agent(&mut device);
    let mut last_step = Instant::now();
    let mut upload_seen: Option<(u32, Instant)> = None;
    let mut trial_since: Option<Instant> = None;
    let (mut messages, mut dropped, mut updates) = (0u64, 0u64, 0u64);
    // The running agent's health since it started, as a check-in tells the server.
    let (mut traps, mut fuel_exhausted, mut self_test_passed) = (0u32, 0u32, true);
    while !stop.load(Ordering::Relaxed) {
        // Messages whole, with where their answers go: back on the line, or to the caller.
        let mut whole: Vec<(Vec<u8>, Option<Reply>)> = Vec::new();
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Line(bytes)) => {
                for b in bytes {
                    match decoder.push(b) {
                        None => {}
                        Some(Err(e)) => {
                            dropped += 1;
                            eprintln!("hotswap device: dropped a packet: {e}");
                        }
                        Some(Ok(message)) => whole.push((message, None)),
                    }
                }
            }
            Ok(Event::Smp(message, reply)) => whole.push((message, Some(reply))),
            Ok(Event::Health(reply)) => drop(reply.send(hotswap_protocol::Health {
                healthy: agent.is_some() && traps == 0 && fuel_exhausted == 0,
                self_test_passed,
                traps,
                fuel_exhausted,
                metrics: Default::default(),
            })),
            Err(_) => {}
        }
        for (message, reply) in whole {
            messages += 1;
            let now = started.elapsed().as_millis() as u64;
            let Some((answer, effect)) = server.handle(&mut device, &message, now) else {
                continue;
            };
            match reply {
                None => writer
                    .write_all(&encode(&answer, MAX_LINE))
                    .context("answering on the line")?,
                // A caller that went away needs no answer.
                Some(reply) => drop(reply.send(answer)),
            }
            if effect == Effect::Reset {
                let (booted, outcome) = reset(
                    &mut server,
                    device,
                    layout()?,
                    device_config(&config.keys),
                    self_test,
                )
                .map_err(|f| anyhow::anyhow!("rebooting: {}", f.error))?;
                device = booted;
                trial_since = matches!(outcome, ResetOutcome::OnTrial(_)).then(Instant::now);
                if !matches!(outcome, ResetOutcome::Booted) {
                    updates += 1;
                    self_test_passed = !matches!(outcome, ResetOutcome::Reverted { .. });
                }
                (traps, fuel_exhausted) = (0, 0);
                eprintln!(
                    "hotswap device: reset: {outcome:?}; running {}",
                    running(&device)
                );
                agent = start_agent(&mut device);
            }
        }
        // The watchdog: an upload that stopped moving is given up, a trial not confirmed in
        // time reverts.
        match (server.upload_offset(), upload_seen) {
            (None, _) => upload_seen = None,
            (Some(off), Some((seen, _))) if off != seen => {
                upload_seen = Some((off, Instant::now()))
            }
            (Some(off), None) => upload_seen = Some((off, Instant::now())),
            (Some(off), Some((_, since))) if since.elapsed() >= config.watchdog => {
                server.abandon_upload(&mut device)?;
                upload_seen = None;
                eprintln!(
                    "hotswap device: watchdog: the upload stopped at byte {off} for {} s; given up, the other slot erased",
                    config.watchdog.as_secs()
                );
            }
            _ => {}
        }
        if device.status().trial {
            let since = *trial_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= config.watchdog {
                device.revert()?;
                trial_since = None;
                eprintln!(
                    "hotswap device: watchdog: the trial was not confirmed within {} s; reverted, running {}",
                    config.watchdog.as_secs(),
                    running(&device)
                );
                agent = start_agent(&mut device);
                (traps, fuel_exhausted) = (0, 0);
            }
        } else {
            trial_since = None;
        }
        if last_step.elapsed() >= config.step {
            last_step = Instant::now();
            if let Some(a) = agent.as_mut()
                && let Err(e) = a.step()
            {
                eprintln!("hotswap device: the agent's step failed: {e}");
                match e {
                    agent::AgentError::OutOfFuel(_) => fuel_exhausted += 1,
                    _ => traps += 1,
                }
                agent = None;
            }
        }
    }
    Ok(format!(
        "hotswap device: stopped after {:.0} s running {}; {messages} SMP requests, {dropped} packets dropped, {updates} updates tried",
        started.elapsed().as_secs_f64(),
        running(&device)
    ))
}

fn start_agent(device: &mut Device<FileFlash>) -> Option<Agent<RecordingHost>> {
    let image = device.active_image().ok()?;
    let mut agent = Agent::load(&image, host(), AgentLimits::default()).ok()?;
    agent.init("{}").ok()?;
    Some(agent)
}
