//! `hotswap push-bench`: the original's stress and chaos suites through the push tool, against
//! a real `hotswap device` process over a pseudo-terminal.
//!
//! - Swaps: `--swaps` agents pushed one after the other, each tried and confirmed; how many
//!   succeeded, the time of each, and the device's resident memory after the tenth and the last
//!   (heap growth).
//! - Line faults: with `--corrupt-ppm N`, a relay between the tool and the device flips N bytes
//!   in a million on the line, both ways; each push must end with the device on the new agent or
//!   on the old one, never on anything else, and every damaged packet must be caught.
//! - Timing: a 14 KiB agent pushed and rolled back, and what the same bytes cost on a
//!   115,200-baud line.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hotswap_device_vm::Version;
use hotswap_device_vm::mcuboot::{self, SignedManifest};
use hotswap_device_vm::release::ReleaseKey;

use super::{Pushed, Smp, confirm, push_agent};

#[derive(clap::Args)]
pub struct PushBenchArgs {
    /// Agents to push one after the other.
    #[arg(long, default_value_t = 1000)]
    pub swaps: u32,
    /// Bytes in a million flipped on the line, both ways (0: a clean line).
    #[arg(long, default_value_t = 0)]
    pub corrupt_ppm: u32,
    /// Timed pushes and rollbacks of the 14 KiB agent (at most 127).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=127))]
    pub timed: u32,
    /// Milliseconds the tool waits for an answer before sending again (default: the push
    /// tool's own on a clean line, [`FAULTY_LINE_TIMEOUT`] on a faulty one).
    #[arg(long)]
    pub answer_timeout_ms: Option<u64>,
}

/// The wait for an answer on a faulty line: a pty answers in about a millisecond, and a short
/// wait before asking again keeps a run of lost packets short.
pub const FAULTY_LINE_TIMEOUT: Duration = Duration::from_millis(40);
/// Sends of one request on a faulty line before a push gives up: at 1% of bytes flipped, the
/// image state's answer (about 300 bytes on the line) arrives whole one time in twenty.
pub const FAULTY_LINE_ATTEMPTS: u32 = 400;

/// The size of the timed agent, a little under a slot's room.
pub const TIMED_AGENT_BYTES: usize = 14_000;
/// The line a serial port sets the bound for: bits per second, 10 bits a byte (8N1).
pub const BAUD: u64 = 115_200;

/// `image` with a custom section added to make it `size` bytes (wasm engines ignore it).
fn padded(image: &[u8], size: usize) -> Vec<u8> {
    let mut out = image.to_vec();
    let room = size.saturating_sub(out.len() + 8);
    // A custom section: id 0, its size (LEB128, fixed at 4 bytes), name "pad", the filler.
    let body = 1 + 3 + room;
    out.push(0);
    out.extend_from_slice(&[
        (body as u8 & 0x7f) | 0x80,
        ((body >> 7) as u8 & 0x7f) | 0x80,
        ((body >> 14) as u8 & 0x7f) | 0x80,
        (body >> 21) as u8 & 0x7f,
    ]);
    out.push(3);
    out.extend_from_slice(b"pad");
    out.extend(std::iter::repeat_n(0x5a, room));
    out
}

fn image_file(key: &ReleaseKey, version: Version, agent: &[u8]) -> Result<(Vec<u8>, [u8; 32])> {
    let r = key.release(version, agent, 0);
    let file = mcuboot::write(
        &SignedManifest {
            manifest: r.manifest,
            key_id: r.key_id,
            signature: r.signature,
        },
        &r.image,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (_, _, hash) = mcuboot::parse(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((file, hash))
}

struct DeviceProcess(std::process::Child);

impl Drop for DeviceProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// What a relay does to the bytes it carries.
#[derive(Debug, Clone, Copy)]
pub enum LineFault {
    /// One bit of a byte flipped this many times in a million, both ways.
    PerMillion(u32),
    /// One bit of the byte at this index flipped, from the tool to the device only.
    ByteToDevice(u64),
}

/// Copies bytes between the tool's pty and the device's, damaging them as `fault` says; the
/// flips so far.
pub fn relay(tool_side: std::fs::File, device: &Path, fault: LineFault) -> Result<Arc<AtomicU64>> {
    let flips = Arc::new(AtomicU64::new(0));
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)?;
    let pairs = [
        (tool_side.try_clone()?, device.try_clone()?),
        (device, tool_side),
    ];
    for (i, (mut from, mut to)) in pairs.into_iter().enumerate() {
        let flips = flips.clone();
        std::thread::spawn(move || {
            // A fixed seed per direction: the same faults on every run.
            let mut state: u64 = 0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1);
            let mut index = 0u64;
            let mut buf = [0u8; 4096];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                for b in &mut buf[..n] {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let flip = match fault {
                        LineFault::PerMillion(ppm) => (state % 1_000_000) < u64::from(ppm),
                        LineFault::ByteToDevice(at) => i == 0 && index == at,
                    };
                    if flip {
                        *b ^= 1 << (state >> 32 & 7);
                        flips.fetch_add(1, Relaxed);
                    }
                    index += 1;
                }
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        });
    }
    Ok(flips)
}

/// A pty for the tool: its path and the other end for the relay.
pub fn tool_pty() -> Result<(PathBuf, std::fs::File, std::os::fd::OwnedFd)> {
    use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
    let pty = nix::pty::openpty(None, None)?;
    let mut t = tcgetattr(&pty.slave)?;
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t)?;
    let name = nix::unistd::ttyname(&pty.slave)?;
    Ok((name, std::fs::File::from(pty.master), pty.slave))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

pub fn run(a: PushBenchArgs, out: &mut dyn Write) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = dir.path();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    std::fs::write(d.join("release.key"), hex::encode(seed))?;
    let key = ReleaseKey::from_seed(seed);
    let me = std::env::current_exe().context("finding the hotswap binary")?;
    let device = DeviceProcess(
        std::process::Command::new(me)
            .args([
                "device",
                "--flash",
                "flash.bin",
                "--pty",
                "tty",
                "--release-key-file",
                "release.key",
            ])
            .current_dir(d)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(d.join("device.log"))?)
            .spawn()
            .context("starting hotswap device")?,
    );
    let pid = device.0.id();
    for _ in 0..400 {
        if d.join("tty").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let device_tty = std::fs::canonicalize(d.join("tty")).context("the device made no pty")?;
    let (port, flips, _tool_end) = if a.corrupt_ppm > 0 {
        let (name, master, slave) = tool_pty()?;
        let flips = relay(master, &device_tty, LineFault::PerMillion(a.corrupt_ppm))?;
        (name, Some(flips), Some(slave))
    } else {
        (device_tty.clone(), None, None)
    };
    let timeout = match a.answer_timeout_ms {
        Some(ms) => Duration::from_millis(ms.max(1)),
        None if a.corrupt_ppm > 0 => FAULTY_LINE_TIMEOUT,
        None => crate::push::ANSWER_TIMEOUT,
    };
    let mut smp = Smp::open(&port, 115_200)?
        .with_timeout(timeout)
        .with_attempts(if a.corrupt_ppm > 0 {
            FAULTY_LINE_ATTEMPTS
        } else {
            crate::push::ATTEMPTS
        });
    let base = hotswap_agents::THRESHOLD_ALARM;
    let mut times = Vec::new();
    let (mut ok, mut failed, mut wrong, mut unread) = (0u32, 0u32, 0u32, 0u32);
    // Damage that got past a packet's CRC-16 and met the image's own checks instead: an
    // upload refused (its header's signature, say) or whose bytes did not match the SHA-256.
    let mut caught_by_image_checks = 0u32;
    let mut rss_at_10 = 0;
    // Every genuine agent the device may run: the factory's and each one pushed, by hash. A
    // device whose running agent is not among them activated damaged bytes.
    let factory = Version::new(1, 0, 0);
    let mut genuine = std::collections::BTreeSet::new();
    genuine.insert(
        image_file(&key, factory, &hotswap_sim::tagged(base, "1.0.0"))?
            .1
            .to_vec(),
    );
    let started = Instant::now();
    for i in 1..=a.swaps {
        let version = Version::new(2, (i / 60_000) as u16, (i % 60_000) as u16);
        let agent = hotswap_sim::tagged(base, &version.to_string());
        let (file, hash) = image_file(&key, version, &agent)?;
        genuine.insert(hash.to_vec());
        let t = Instant::now();
        let result =
            push_agent(&mut smp, &file, &hash, &version.to_string(), false).and_then(|p| match p {
                Pushed::OnTrial { .. } => confirm(&mut smp).map(|()| true),
                Pushed::Reverted => Ok(false),
            });
        match result {
            Ok(true) => {
                ok += 1;
                times.push(t.elapsed().as_secs_f64());
            }
            Err(e) => {
                failed += 1;
                let text = e.to_string();
                // What only damaged image bytes cause: the image's own checks (its SHA-256,
                // its signature, its header) refusing what got past the CRC.
                use hotswap_device_vm::smp::server::rc;
                let refused_image = e.downcast_ref::<crate::push::Refused>().is_some_and(|r| {
                    [rc::CORRUPT, rc::DENIED, rc::INVALID].contains(&(r.rc as u32))
                });
                if refused_image || text.contains("not the file's") {
                    caught_by_image_checks += 1;
                    eprintln!("swap {i}: damage past the CRC, caught by the image checks: {text}");
                } else {
                    eprintln!("swap {i}: not confirmed: {text}");
                }
            }
            Ok(false) => failed += 1,
        }
        // Whatever happened, the device runs the new agent or the old one, and nothing else.
        // On a noisy line the look itself may need several tries; one that never gets through
        // is counted as unread, not as wrong.
        let mut images = None;
        for _ in 0..20 {
            if let Ok(i) = smp.images() {
                images = Some(i);
                break;
            }
        }
        let Some(images) = images else {
            unread += 1;
            continue;
        };
        let now = images
            .iter()
            .find(|i| i.slot == 0 && !i.hash.is_empty())
            .map(|i| i.hash.clone());
        if !now.as_ref().is_some_and(|h| genuine.contains(h)) {
            wrong += 1;
            eprintln!(
                "swap {i}: the device runs an agent of hash {} that is not genuine: {images:?}",
                now.map(hex::encode).unwrap_or_else(|| "(none)".into())
            );
        }
        if i == 10 {
            rss_at_10 = rss_kib(pid);
        }
        if i % 100 == 0 {
            eprintln!("{i}/{} swaps, {ok} confirmed, {failed} not", a.swaps);
        }
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib(pid);
    writeln!(
        out,
        "swaps: {ok}/{} confirmed ({:.1}%), {failed} not, {wrong} ending on anything but a genuine agent, {unread} whose end could not be read; {:.1} s in all, median {:.0} ms a swap",
        a.swaps,
        f64::from(ok) * 100.0 / f64::from(a.swaps.max(1)),
        elapsed.as_secs_f64(),
        median(&mut times) * 1e3
    )?;
    writeln!(
        out,
        "device resident memory: {rss_at_10} KiB after swap 10, {rss_end} KiB after swap {}",
        a.swaps
    )?;
    if let Some(flips) = &flips {
        let dropped = std::fs::read_to_string(d.join("device.log"))
            .map(|l| l.matches("dropped a packet").count())
            .unwrap_or(0);
        writeln!(
            out,
            "line faults: {} ppm, {} bytes flipped; the device dropped {dropped} damaged packets and the tool {} damaged answers (CRC-16 or framing); {caught_by_image_checks} pushes met damage past the CRC that the image's checks refused; the tool sent {} requests again; {wrong} activations of anything but a genuine agent",
            a.corrupt_ppm,
            flips.load(Relaxed),
            smp.damaged_answers,
            smp.resent
        )?;
    }
    if a.timed > 0 && flips.is_none() {
        let (mut push_times, mut back_times) = (Vec::new(), Vec::new());
        let mut line_bytes = 0;
        for n in 0..a.timed {
            // Each round two versions up: the push, then the one that goes forward again after
            // the rollback.
            let version = Version::new(3, (2 * n) as u16, 0);
            let agent = padded(
                &hotswap_sim::tagged(base, &version.to_string()),
                TIMED_AGENT_BYTES,
            );
            let (file, hash) = image_file(&key, version, &agent)?;
            let before = smp.line_bytes();
            let t = Instant::now();
            if let Pushed::OnTrial { .. } =
                push_agent(&mut smp, &file, &hash, &version.to_string(), false)?
            {
                confirm(&mut smp)?;
                push_times.push(t.elapsed().as_secs_f64());
            }
            line_bytes = smp.line_bytes() - before;
            let t = Instant::now();
            crate::push::rollback(&mut smp)?;
            back_times.push(t.elapsed().as_secs_f64());
            // Forward again, so the next version is above the running one.
            let forward = Version::new(3, (2 * n + 1) as u16, 0);
            let (file, hash) = image_file(&key, forward, &agent)?;
            if let Pushed::OnTrial { .. } =
                push_agent(&mut smp, &file, &hash, &forward.to_string(), false)?
            {
                confirm(&mut smp)?;
            }
        }
        writeln!(
            out,
            "a {TIMED_AGENT_BYTES}-byte agent over the pty: push, trial and confirm median {:.0} ms, rollback median {:.0} ms ({} runs); {line_bytes} bytes on the line, {:.2} s at {BAUD} baud",
            median(&mut push_times) * 1e3,
            median(&mut back_times) * 1e3,
            a.timed,
            line_bytes as f64 * 10.0 / BAUD as f64
        )?;
    }
    // The update engine's own memory on the device, beside the agent VM: the device state
    // machine without its flash, the SMP server with an upload in progress (its two SHA-256
    // states inline), the upload's header and trailer buffers, and the serial decoder's line
    // and packet buffers at their limits.
    let decoder = hotswap_device_vm::smp::serial::Decoder::new(
        hotswap_device_vm::smp::server::BUFFER_SIZE + 2,
    );
    let state = size_of::<hotswap_device_vm::Device<hotswap_device_vm::sim::FileFlash>>()
        - size_of::<hotswap_device_vm::sim::FileFlash>()
        + size_of::<hotswap_device_vm::smp::Server>()
        + size_of::<hotswap_device_vm::smp::serial::Decoder>();
    let buffers = mcuboot::IMAGE_HEADER_SIZE + mcuboot::TRAILER_SIZE + decoder.buffer_bytes();
    writeln!(
        out,
        "update engine RAM beside the agent VM: {state} bytes of state and {buffers} bytes of buffers ({} in all; SMP's buffers are BUFFER_SIZE)",
        state + buffers
    )?;
    drop(device);
    Ok(())
}
