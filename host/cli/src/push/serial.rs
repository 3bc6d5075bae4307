//! The serial path: MCUmgr's SMP over a line (a real port or `hotswap device`'s pty), as
//! `smpmgr` speaks it. Requests are sent again when no answer comes, an upload's chunk shrinks on
//! a noisy line and grows back after a run of answers, and a reset is sent again only when it
//! did not happen.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hotswap_device_vm::smp::Header;
use hotswap_device_vm::smp::codec::{self, SlotImage, Value};
use hotswap_device_vm::smp::serial::{Decoder, MAX_LINE, encode};
use hotswap_device_vm::smp::server::BUFFER_SIZE;
use indicatif::ProgressBar;
use sha2::{Digest, Sha256};

use super::{Transport, Uploaded};

/// How long to wait for an answer before sending the request again.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Sends of one request before giving up.
pub const ATTEMPTS: u32 = 5;
/// The smallest chunk an upload shrinks to on a noisy line.
pub const MIN_CHUNK: usize = 32;
/// How long a reset may take before the device answers again.
const RESET_WAIT: Duration = Duration::from_secs(10);

/// A device refused a request: its return code and reason.
#[derive(Debug, thiserror::Error)]
#[error("the device refused: {reason} (rc {rc})")]
pub struct Refused {
    pub rc: i64,
    pub reason: String,
}
/// An SMP client on a serial line.
pub struct Smp {
    port: std::fs::File,
    bytes: Receiver<Vec<u8>>,
    decoder: Decoder,
    sequence: u8,
    /// Requests sent again after no answer came.
    pub resent: u32,
    /// Packets from the device that arrived damaged (their CRC or framing wrong), dropped.
    pub damaged_answers: u32,
    /// Sends of one request before giving up ([`ATTEMPTS`] unless set).
    pub attempts: u32,
    timeout: Duration,
    /// Bytes written to the line and read from it.
    sent: u64,
    received: u64,
    /// The answering op, group and command the last request expects.
    expected: (u8, u16, u8),
    /// Bytes read after the last answer, for the next.
    leftover: Vec<u8>,
}

impl Smp {
    /// Opens the line raw, at `baud` (a pty keeps the device's settings).
    pub fn open(path: &Path, baud: u32) -> Result<Smp> {
        let port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("opening the device {}", path.display()))?;
        raw(&port, baud).with_context(|| format!("setting up {}", path.display()))?;
        Smp::on(port)
    }

    /// An SMP client on a line already open and set up (the master of a pty pair, say).
    pub fn on(port: std::fs::File) -> Result<Smp> {
        let mut reader = port.try_clone()?;
        let (tx, bytes) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                if tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Ok(Smp {
            port,
            bytes,
            decoder: Decoder::new(BUFFER_SIZE + 64),
            sequence: 0,
            resent: 0,
            damaged_answers: 0,
            attempts: ATTEMPTS,
            timeout: ANSWER_TIMEOUT,
            sent: 0,
            received: 0,
            expected: (0, 0, 0),
            leftover: Vec::new(),
        })
    }

    /// Sends the `len` bytes of the image `file` at `off` (the first chunk with the file's
    /// length and SHA-256), as an upload does; the offset the device expects next.
    pub fn upload_chunk(&mut self, file: &[u8], off: usize, len: usize) -> Result<usize> {
        let sha: [u8; 32] = Sha256::digest(file).into();
        let body = chunk_body(file, &sha, off, len);
        let answer = self.call(1, 1, true, &body)?;
        answer
            .int("off")
            .map(|o| o as usize)
            .ok_or_else(|| anyhow::anyhow!("the device's answer has no offset"))
    }

    /// Bytes that crossed the line so far, both ways.
    pub fn line_bytes(&self) -> u64 {
        self.sent + self.received
    }

    /// Sends each request up to `attempts` times.
    pub fn with_attempts(mut self, attempts: u32) -> Smp {
        self.attempts = attempts.max(1);
        self
    }

    /// Waits `timeout` for each answer before sending again.
    pub fn with_timeout(mut self, timeout: Duration) -> Smp {
        self.timeout = timeout;
        self
    }

    /// Sends a request and reads its answer's body, sending again after [`ANSWER_TIMEOUT`]
    /// without one, [`ATTEMPTS`] times in all.
    pub fn call(&mut self, group: u16, command: u8, write: bool, body: &[u8]) -> Result<Value> {
        let tries = self.attempts;
        self.call_tries(group, command, write, body, tries)?
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no answer from the device after {tries} tries of {} ms each",
                    self.timeout.as_millis()
                )
            })
    }

    /// [`Smp::call`] with `tries` sends; `None` when no answer came.
    pub fn call_tries(
        &mut self,
        group: u16,
        command: u8,
        write: bool,
        body: &[u8],
        tries: u32,
    ) -> Result<Option<Value>> {
        self.sequence = self.sequence.wrapping_add(1);
        self.expected = (if write { 3 } else { 1 }, group, command);
        let message = Header::request(write, group, self.sequence, command, body);
        let lines = encode(&message, MAX_LINE);
        for attempt in 1..=tries {
            if attempt > 1 {
                self.resent += 1;
            }
            self.port
                .write_all(&lines)
                .context("writing to the device")?;
            self.sent += lines.len() as u64;
            if let Some(answer) = self.answer(self.timeout)? {
                let value = codec::decode(&answer)
                    .map_err(|e| anyhow::anyhow!("the device's answer is not CBOR: {e}"))?;
                if let Some(r) = codec::Refusal::of(&value) {
                    return Err(Refused {
                        rc: r.rc,
                        reason: r.reason,
                    }
                    .into());
                }
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    /// The body of the answer to the last request, or `None` after `wait`. An answer must
    /// carry the request's sequence, group and command and the answering op: an answer to an
    /// earlier request (the sequence wraps at 256) and damaged packets are passed over. Bytes
    /// after an answer are kept for the next one.
    fn answer(&mut self, wait: Duration) -> Result<Option<Vec<u8>>> {
        let deadline = Instant::now() + wait;
        let (op, group, command) = self.expected;
        let mut bytes = std::mem::take(&mut self.leftover);
        loop {
            for (i, &b) in bytes.iter().enumerate() {
                let packet = match self.decoder.push(b) {
                    Some(Ok(packet)) => packet,
                    Some(Err(_)) => {
                        self.damaged_answers += 1;
                        continue;
                    }
                    None => continue,
                };
                if packet.len() >= 8
                    && packet[0] & 0b111 == op
                    && u16::from_be_bytes([packet[4], packet[5]]) == group
                    && packet[6] == self.sequence
                    && packet[7] == command
                {
                    self.leftover = bytes[i + 1..].to_vec();
                    return Ok(Some(packet[8..].to_vec()));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            bytes = match self.bytes.recv_timeout(left) {
                Ok(b) => b,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => {
                    anyhow::bail!("the line to the device closed")
                }
            };
            self.received += bytes.len() as u64;
        }
    }

    /// The device's slots: 0 the running agent, 1 the other.
    pub fn images(&mut self) -> Result<Vec<SlotImage>> {
        let answer = self.call(1, 0, false, &codec::empty())?;
        codec::images(&answer).ok_or_else(|| {
            anyhow::anyhow!("the device's answer to an image state read has no images")
        })
    }

    /// Resets the device and waits until it answers again. A reset is not sent twice on a
    /// missing answer (the second would end the trial the first began): whether it happened is
    /// read from the slots, and only a reset that did not happen is sent again.
    pub fn reset(&mut self) -> Result<()> {
        for _ in 0..ATTEMPTS {
            let pending_before = self.images()?.iter().any(|i| i.pending);
            let _ = self.call_tries(0, 5, true, &codec::empty(), 1)?;
            // The device boots and runs the trial's self-test before it answers again.
            let deadline = Instant::now() + RESET_WAIT;
            let mut up = false;
            while Instant::now() < deadline {
                if self
                    .call_tries(0, 0, true, &codec::echo("up?"), 1)?
                    .is_some()
                {
                    up = true;
                    break;
                }
            }
            if !up {
                anyhow::bail!(
                    "the device did not answer within {} s of its reset",
                    RESET_WAIT.as_secs()
                );
            }
            let pending_after = self.images()?.iter().any(|i| i.pending);
            // A reset that happened took the pending agent (or there was none to take).
            if !(pending_before && pending_after) {
                return Ok(());
            }
            self.resent += 1;
        }
        anyhow::bail!("the device did not reset after {ATTEMPTS} tries")
    }
}
/// An upload request: `len` bytes of the image `file` at `off`; the first names the image's
/// length and its SHA-256 (`sha`), so the device can start or resume it.
fn chunk_body(file: &[u8], sha: &[u8; 32], off: usize, len: usize) -> Vec<u8> {
    let data = &file[off..(off + len).min(file.len())];
    codec::upload(off as u64, data, file.len() as u64, sha)
}

impl Transport for Smp {
    fn describe_device(&mut self, name: &str) -> Result<String> {
        let echo = self.call(0, 0, true, &codec::echo("hotswap push"))?;
        let params = self.call(0, 6, false, &codec::empty())?;
        Ok(format!(
            "device {name}: answers SMP (echo {:?}), buffers {} x {} bytes",
            echo.text("r"),
            params.int("buf_count").unwrap_or(0),
            params.int("buf_size").unwrap_or(0)
        ))
    }

    fn images(&mut self) -> Result<Vec<SlotImage>> {
        Smp::images(self)
    }

    fn upload(&mut self, file: &[u8], bar: &ProgressBar) -> Result<Uploaded> {
        let sha: [u8; 32] = Sha256::digest(file).into();
        let params = self.call(0, 6, false, &codec::empty())?;
        let buffer = params
            .int("buf_size")
            .unwrap_or(512)
            .clamp(256, BUFFER_SIZE as i64) as usize;
        // What a chunk may carry once the header, the CBOR keys and the offset take their share.
        let largest = buffer - 128;
        let mut chunk = largest;
        let (mut clean, mut misses) = (0u32, 0u32);
        let mut off = 0usize;
        let mut resumed_from = None;
        loop {
            let data_len = chunk.min(file.len() - off);
            let body = chunk_body(file, &sha, off, chunk);
            // A chunk with no answer is sent again at once, half as long: on a noisy line a long
            // packet rarely arrives whole. It grows back after a run of answers. The push gives
            // up after `attempts` sends in a row with no answer, the last at the smallest chunk.
            let Some(answer) = self.call_tries(1, 1, true, &body, 1)? else {
                misses += 1;
                self.resent += 1;
                if chunk == MIN_CHUNK && misses >= self.attempts {
                    anyhow::bail!(
                        "no answer from the device at byte {off} after {misses} sends in a row, down to chunks of {MIN_CHUNK} bytes"
                    );
                }
                chunk = (chunk / 2).max(MIN_CHUNK);
                clean = 0;
                continue;
            };
            misses = 0;
            clean += 1;
            if clean >= 16 && chunk < largest {
                chunk = (chunk * 2).min(largest);
                clean = 0;
            }
            let next = answer
                .int("off")
                .ok_or_else(|| anyhow::anyhow!("the device's answer has no offset"))?
                as usize;
            if off == 0 && next > data_len {
                resumed_from = Some(next);
            }
            off = next;
            bar.set_position(off as u64);
            if off >= file.len() {
                if answer.get("match") == Some(&Value::Bool(false)) {
                    anyhow::bail!("the device says the bytes it got are not the file's");
                }
                return Ok(Uploaded { resumed_from });
            }
        }
    }

    fn set_state(&mut self, hash: Option<&[u8]>, confirm: bool) -> Result<()> {
        self.call(1, 0, true, &codec::image_state(hash, confirm))
            .map(drop)
    }

    fn reset(&mut self) -> Result<()> {
        Smp::reset(self)
    }

    fn resent(&self) -> u32 {
        self.resent
    }
}

/// Raw mode at `baud`: no echo, no line editing, no newline translation.
fn raw(port: &std::fs::File, baud: u32) -> Result<()> {
    use nix::sys::termios::{BaudRate, SetArg, cfmakeraw, cfsetspeed, tcgetattr, tcsetattr};
    let mut t = tcgetattr(port)?;
    cfmakeraw(&mut t);
    let speed = match baud {
        9600 => BaudRate::B9600,
        19_200 => BaudRate::B19200,
        38_400 => BaudRate::B38400,
        57_600 => BaudRate::B57600,
        115_200 => BaudRate::B115200,
        230_400 => BaudRate::B230400,
        460_800 => BaudRate::B460800,
        921_600 => BaudRate::B921600,
        other => anyhow::bail!(crate::usage::UsageError(format!(
            "--baud {other}: 9600, 19200, 38400, 57600, 115200, 230400, 460800 or 921600"
        ))),
    };
    cfsetspeed(&mut t, speed)?;
    tcsetattr(port, SetArg::TCSANOW, &t)?;
    Ok(())
}
