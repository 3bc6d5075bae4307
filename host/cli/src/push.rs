//! `hotswap push`: one agent to one device over a serial line (a real port or `hotswap device`'s
//! pseudo-terminal), speaking MCUmgr's SMP as `smpmgr` does: upload (resumed from the device's
//! offset after a dropped line), test, reset, and confirm once the trial runs; `--status`,
//! `--info` and `--rollback`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hotswap_device_vm::mcuboot;
use hotswap_device_vm::smp::Header;
use hotswap_device_vm::smp::serial::{Decoder, MAX_LINE, encode};
use hotswap_device_vm::smp::server::BUFFER_SIZE;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use minicbor::data::Type;
use minicbor::{Decoder as Cbor, Encoder};
use sha2::{Digest, Sha256};

/// The exit code of a push whose agent failed its trial: the device went back on its own.
pub const REVERTED: u8 = 3;

/// How long to wait for an answer before sending the request again.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);
/// Sends of one request before giving up.
pub const ATTEMPTS: u32 = 5;
/// The smallest chunk an upload shrinks to on a noisy line.
pub const MIN_CHUNK: usize = 32;
/// How long a reset may take before the device answers again.
const RESET_WAIT: Duration = Duration::from_secs(10);

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

/// The device's credential for gRPC: `--device-token-file`, else HOTSWAP_DEVICE_TOKEN.
fn device_token(a: &PushArgs) -> Result<Option<String>> {
    if let Some(path) = &a.device_token_file {
        return crate::args::read_token(path).map(Some);
    }
    Ok(std::env::var("HOTSWAP_DEVICE_TOKEN")
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// Where `push` reaches a device over gRPC, and with what.
fn grpc_target(a: &PushArgs, addr: &str) -> Result<crate::grpc::Target> {
    Ok(crate::grpc::Target {
        addr: addr.to_string(),
        token: device_token(a)?,
        ca_cert: a.ca_cert.clone(),
        identity: a.client_cert.clone().zip(a.client_key.clone()),
    })
}

/// A CBOR value, as answers are read.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
    Other,
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn int(&self, key: &str) -> Option<i64> {
        match self.get(key) {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        }
    }

    fn flag(&self, key: &str) -> bool {
        self.get(key) == Some(&Value::Bool(true))
    }

    fn text(&self, key: &str) -> String {
        match self.get(key) {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        }
    }
}

/// An SMP answer's CBOR body, read.
pub fn decode_answer(body: &[u8]) -> Result<Value, minicbor::decode::Error> {
    read_value(&mut Cbor::new(body))
}

fn read_value(d: &mut Cbor<'_>) -> Result<Value, minicbor::decode::Error> {
    Ok(match d.datatype()? {
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => Value::Int(d.i64()?),
        Type::String => Value::Text(d.str()?.to_string()),
        Type::Bytes => Value::Bytes(d.bytes()?.to_vec()),
        Type::Bool => Value::Bool(d.bool()?),
        Type::Array => {
            let n = d.array()?.unwrap_or(0);
            Value::Array((0..n).map(|_| read_value(d)).collect::<Result<_, _>>()?)
        }
        Type::Map => {
            let n = d.map()?.unwrap_or(0);
            let mut fields = Vec::new();
            for _ in 0..n {
                let k = d.str()?.to_string();
                fields.push((k, read_value(d)?));
            }
            Value::Map(fields)
        }
        _ => {
            d.skip()?;
            Value::Other
        }
    })
}

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
                let value = read_value(&mut Cbor::new(&answer))
                    .map_err(|e| anyhow::anyhow!("the device's answer is not CBOR: {e}"))?;
                if let Some(rc) = value.int("rc")
                    && rc != 0
                {
                    return Err(Refused {
                        rc,
                        reason: value.text("rsn"),
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

    pub fn images(&mut self) -> Result<Vec<Value>> {
        let answer = self.call(1, 0, false, &cbor(|_| Ok(()), 0))?;
        match answer.get("images") {
            Some(Value::Array(images)) => Ok(images.clone()),
            _ => anyhow::bail!("the device's answer to an image state read has no images"),
        }
    }

    /// Resets the device and waits until it answers again. A reset is not sent twice on a
    /// missing answer (the second would end the trial the first began): whether it happened is
    /// read from the slots, and only a reset that did not happen is sent again.
    fn reset(&mut self) -> Result<()> {
        for _ in 0..ATTEMPTS {
            let pending_before = self.images()?.iter().any(|i| i.flag("pending"));
            let _ = self.call_tries(0, 5, true, &cbor(|_| Ok(()), 0), 1)?;
            // The device boots and runs the trial's self-test before it answers again.
            let deadline = Instant::now() + RESET_WAIT;
            let mut up = false;
            while Instant::now() < deadline {
                let echo = cbor(|e| e.str("d")?.str("up?").map(drop), 1);
                if self.call_tries(0, 0, true, &echo, 1)?.is_some() {
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
            let pending_after = self.images()?.iter().any(|i| i.flag("pending"));
            // A reset that happened took the pending agent (or there was none to take).
            if !(pending_before && pending_after) {
                return Ok(());
            }
            self.resent += 1;
        }
        anyhow::bail!("the device did not reset after {ATTEMPTS} tries")
    }
}

/// An upload request: `len` bytes of the image `file` at `off`; the first names the image, its
/// length and its SHA-256 (`sha`), so the device can start or resume it.
fn chunk_body(file: &[u8], sha: &[u8; 32], off: usize, len: usize) -> Vec<u8> {
    let data = &file[off..(off + len).min(file.len())];
    if off == 0 {
        cbor(
            |e| {
                e.str("image")?.u8(0)?;
                e.str("len")?.u64(file.len() as u64)?;
                e.str("off")?.u64(0)?;
                e.str("sha")?.bytes(sha)?;
                e.str("data")?.bytes(data).map(drop)
            },
            5,
        )
    } else {
        cbor(
            |e| {
                e.str("off")?
                    .u64(off as u64)?
                    .str("data")?
                    .bytes(data)
                    .map(drop)
            },
            2,
        )
    }
}

pub(crate) type EncodeResult = Result<(), minicbor::encode::Error<std::convert::Infallible>>;

/// A CBOR map of `n` entries that `fields` writes: an SMP request's body.
pub(crate) fn cbor(
    fields: impl FnOnce(&mut Encoder<&mut Vec<u8>>) -> EncodeResult,
    n: u64,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    let _ = e.map(n).map(drop);
    let _ = fields(&mut e);
    out
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
        other => anyhow::bail!(crate::ops::UsageError(format!(
            "--baud {other}: 9600, 19200, 38400, 57600, 115200, 230400, 460800 or 921600"
        ))),
    };
    cfsetspeed(&mut t, speed)?;
    tcsetattr(port, SetArg::TCSANOW, &t)?;
    Ok(())
}

fn describe(images: &[Value]) -> String {
    let mut lines = Vec::new();
    for i in images {
        let mut flags = Vec::new();
        for f in ["active", "confirmed", "pending", "permanent"] {
            if i.flag(f) {
                flags.push(f);
            }
        }
        let hash = match i.get("hash") {
            Some(Value::Bytes(h)) => hex::encode(h),
            _ => String::new(),
        };
        lines.push(format!(
            "slot {}: {} {} (hash {hash})",
            i.int("slot").unwrap_or(-1),
            i.text("version"),
            if flags.is_empty() {
                "-".into()
            } else {
                flags.join(", ")
            }
        ));
    }
    if lines.is_empty() {
        "no agent".into()
    } else {
        lines.join("\n")
    }
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
    smp: &mut Smp,
    file: &[u8],
    hash: &[u8; 32],
    version: &str,
    bar: bool,
) -> Result<Pushed> {
    let sha: [u8; 32] = Sha256::digest(file).into();
    let params = smp.call(0, 6, false, &cbor(|_| Ok(()), 0))?;
    let buffer = params
        .int("buf_size")
        .unwrap_or(512)
        .clamp(256, BUFFER_SIZE as i64) as usize;
    // What a chunk may carry once the header, the CBOR keys and the offset take their share.
    let largest = buffer - 128;
    let mut chunk = largest;
    let (mut clean, mut misses) = (0u32, 0u32);
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
    let mut off = 0usize;
    let mut resumed_from = None;
    loop {
        let data_len = chunk.min(file.len() - off);
        let body = chunk_body(file, &sha, off, chunk);
        // A chunk with no answer is sent again at once, half as long: on a noisy line a long
        // packet rarely arrives whole. It grows back after a run of answers. The push gives up
        // after `attempts` sends in a row with no answer, the last at the smallest chunk.
        let Some(answer) = smp.call_tries(1, 1, true, &body, 1)? else {
            misses += 1;
            smp.resent += 1;
            if chunk == MIN_CHUNK && misses >= smp.attempts {
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
            break;
        }
    }
    bar.finish_and_clear();
    let uploaded = started.elapsed();
    if !try_agent(smp, hash, false, version)? {
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
pub fn rollback(smp: &mut Smp) -> Result<(String, bool)> {
    let images = smp.images()?;
    let Some(other) = images.iter().find(|i| i.int("slot") == Some(1)) else {
        anyhow::bail!("the device's other slot holds no agent to go back to");
    };
    let Some(Value::Bytes(hash)) = other.get("hash").cloned() else {
        anyhow::bail!("the device did not give the other slot's hash");
    };
    let version = other.text("version");
    let ok = try_agent(smp, &hash, true, &version)?;
    Ok((version, ok))
}

/// An image state write: test the agent of `hash` at the next reset, kept once it passes when
/// `confirm`.
pub(crate) fn state_body(hash: &[u8], confirm: bool) -> Vec<u8> {
    cbor(
        |e| {
            e.str("hash")?
                .bytes(hash)?
                .str("confirm")?
                .bool(confirm)
                .map(drop)
        },
        2,
    )
}

/// Marks the agent of `hash` for test (kept once it passes when `keep`), resets the device,
/// and says whether `version` runs after it.
fn try_agent(smp: &mut Smp, hash: &[u8], keep: bool, version: &str) -> Result<bool> {
    smp.call(1, 0, true, &state_body(hash, keep))?;
    smp.reset()?;
    let images = smp.images()?;
    let running = images.iter().find(|i| i.int("slot") == Some(0));
    Ok(running.map(|i| i.text("version")).as_deref() == Some(version))
}

/// Confirms the agent on trial.
pub fn confirm(smp: &mut Smp) -> Result<()> {
    smp.call(
        1,
        0,
        true,
        &cbor(|e| e.str("confirm")?.bool(true).map(drop), 1),
    )
    .map(drop)
}

pub fn run(a: PushArgs, out: &mut dyn Write) -> Result<ExitCode> {
    // HOST:PORT is the network path (gRPC), as `edgeplug-push` chose; a path is a serial line.
    if !a.device.exists()
        && let Some(addr) = a.device.to_str().filter(|d| d.contains(':'))
    {
        let addr = addr.to_string();
        return tokio::runtime::Handle::current().block_on(grpc_push(a, addr, out));
    }
    let mut smp = Smp::open(&a.device, a.baud)?
        .with_timeout(Duration::from_millis(a.answer_timeout_ms.max(1)));
    if a.info {
        let echo = smp.call(
            0,
            0,
            true,
            &cbor(|e| e.str("d")?.str("hotswap push").map(drop), 1),
        )?;
        let params = smp.call(0, 6, false, &cbor(|_| Ok(()), 0))?;
        writeln!(
            out,
            "device {}: answers SMP (echo {:?}), buffers {} x {} bytes",
            a.device.display(),
            echo.text("r"),
            params.int("buf_count").unwrap_or(0),
            params.int("buf_size").unwrap_or(0)
        )?;
        writeln!(out, "{}", describe(&smp.images()?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.status {
        writeln!(out, "{}", describe(&smp.images()?))?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.rollback {
        let started = Instant::now();
        let (version, ok) = rollback(&mut smp)?;
        let images = smp.images()?;
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
    let Some(path) = &a.agent else {
        anyhow::bail!(crate::ops::UsageError(
            "say what to do: --agent FILE, --status, --info or --rollback".into()
        ));
    };
    let file = std::fs::read(path)
        .map_err(|e| crate::ops::UsageError(format!("reading {}: {e}", path.display())))?;
    let (signed, _, hash) = mcuboot::parse(&file)
        .map_err(|e| crate::ops::UsageError(format!("{}: {e}", path.display())))?;
    let version = signed.manifest.version.to_string();
    let pushed = push_agent(&mut smp, &file, &hash, &version, true)?;
    let Pushed::OnTrial {
        uploaded,
        total,
        resumed_from,
    } = pushed
    else {
        let images = smp.images()?;
        writeln!(
            out,
            "{version} failed its trial on the device, which went back on its own\n{}",
            describe(&images)
        )?;
        return Ok(ExitCode::from(REVERTED));
    };
    let started = Instant::now() - total;
    if a.confirm {
        confirm(&mut smp)?;
    }
    writeln!(
        out,
        "pushed {version} ({} bytes) in {:.2} s (upload {:.2} s{}{}); {}\n{}",
        file.len(),
        started.elapsed().as_secs_f64(),
        uploaded.as_secs_f64(),
        resumed_from
            .map(|b| format!(", resumed at byte {b}"))
            .unwrap_or_default(),
        if smp.resent > 0 {
            format!(", {} requests sent again", smp.resent)
        } else {
            String::new()
        },
        if a.confirm {
            "confirmed"
        } else {
            "on trial, not confirmed"
        },
        describe(&smp.images()?)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `push` over gRPC to `hotswap device --grpc`: the same steps, on the `hotswap.device.v1`
/// service.
async fn grpc_push(a: PushArgs, addr: String, out: &mut dyn Write) -> Result<ExitCode> {
    use crate::grpc::proto::{
        ImageStateRequest, InfoRequest, ResetRequest, RollbackRequest, SetStateRequest, UploadChunk,
    };
    let mut client = crate::grpc::connect(&grpc_target(&a, &addr)?).await?;
    let show = |images: &[crate::grpc::proto::Image]| {
        images
            .iter()
            .map(|i| {
                let mut flags = Vec::new();
                for (on, name) in [
                    (i.active, "active"),
                    (i.confirmed, "confirmed"),
                    (i.pending, "pending"),
                    (i.permanent, "permanent"),
                ] {
                    if on {
                        flags.push(name);
                    }
                }
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
            .collect::<Vec<_>>()
            .join("\n")
    };
    let refused = |e: tonic::Status| anyhow::anyhow!("the device refused: {}", e.message());
    if a.info || a.status {
        if a.info {
            let info = client
                .info(InfoRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            writeln!(
                out,
                "device {addr}: answers gRPC, runs {}, takes chunks of {} bytes",
                info.version, info.max_chunk
            )?;
        }
        let state = client
            .image_state(ImageStateRequest {})
            .await
            .map_err(refused)?
            .into_inner();
        writeln!(out, "{}", show(&state.images))?;
        return Ok(ExitCode::SUCCESS);
    }
    if a.rollback {
        let started = Instant::now();
        let reply = client
            .rollback(RollbackRequest {})
            .await
            .map_err(refused)?
            .into_inner();
        writeln!(
            out,
            "{} in {:.2} s",
            reply.outcome,
            started.elapsed().as_secs_f64()
        )?;
        return Ok(if reply.outcome.contains("failed") {
            ExitCode::from(REVERTED)
        } else {
            ExitCode::SUCCESS
        });
    }
    let Some(path) = &a.agent else {
        anyhow::bail!(crate::ops::UsageError(
            "say what to do: --agent FILE, --status, --info or --rollback".into()
        ));
    };
    let file = std::fs::read(path)
        .map_err(|e| crate::ops::UsageError(format!("reading {}: {e}", path.display())))?;
    let (signed, _, hash) = mcuboot::parse(&file)
        .map_err(|e| crate::ops::UsageError(format!("{}: {e}", path.display())))?;
    let version = signed.manifest.version.to_string();
    let sha: [u8; 32] = Sha256::digest(&file).into();
    let started = Instant::now();
    let max = client
        .info(InfoRequest {})
        .await
        .map_err(refused)?
        .into_inner()
        .max_chunk as usize;
    let chunk = max.max(64);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let first = UploadChunk {
        offset: 0,
        data: file[..chunk.min(file.len())].to_vec(),
        length: file.len() as u64,
        sha256: sha.to_vec(),
    };
    tx.send(first)
        .await
        .map_err(|_| anyhow::anyhow!("the upload stream closed"))?;
    let mut progress = client
        .upload(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(refused)?
        .into_inner();
    let mut resumed_from = None;
    let mut first_answer = true;
    loop {
        let Some(p) = progress.message().await.map_err(refused)? else {
            anyhow::bail!("the device ended the upload before it was whole");
        };
        let next = p.next_offset as usize;
        if first_answer && next > chunk.min(file.len()) {
            resumed_from = Some(next);
        }
        first_answer = false;
        if p.done || next >= file.len() {
            break;
        }
        let data = file[next..(next + chunk).min(file.len())].to_vec();
        tx.send(UploadChunk {
            offset: next as u64,
            data,
            length: 0,
            sha256: Vec::new(),
        })
        .await
        .map_err(|_| anyhow::anyhow!("the upload stream closed"))?;
    }
    drop(tx);
    let uploaded = started.elapsed();
    client
        .set_state(SetStateRequest {
            hash: hash.to_vec(),
            confirm: false,
        })
        .await
        .map_err(refused)?;
    let reset = client
        .reset(ResetRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    if reset.version != version {
        writeln!(
            out,
            "{version} failed its trial on the device, which went back on its own ({})",
            reset.outcome
        )?;
        return Ok(ExitCode::from(REVERTED));
    }
    if a.confirm {
        client
            .set_state(SetStateRequest {
                hash: Vec::new(),
                confirm: true,
            })
            .await
            .map_err(refused)?;
    }
    let state = client
        .image_state(ImageStateRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    writeln!(
        out,
        "pushed {version} ({} bytes) over gRPC in {:.2} s (upload {:.2} s{}); {}\n{}",
        file.len(),
        started.elapsed().as_secs_f64(),
        uploaded.as_secs_f64(),
        resumed_from
            .map(|b| format!(", resumed at byte {b}"))
            .unwrap_or_default(),
        if a.confirm {
            "confirmed"
        } else {
            "on trial, not confirmed"
        },
        show(&state.images)
    )?;
    Ok(ExitCode::SUCCESS)
}
