//! The device side of SMP: the OS and image groups over a [`Device`].
//!
//! - OS: echo (0), reset (5, answered, then done by the caller: [`Effect::Reset`] and
//!   [`reset`]), buffer parameters (6).
//! - Image: state read and write (0: `hash` to test, `confirm`), upload (1, resumable: a chunk
//!   at another offset is answered with the expected one), erase (5).
//! - Anything else: `rc` 8 (not supported).
//!
//! Slot 0 is the running agent, slot 1 the other. An upload goes to the other slot: the image
//! file's header is buffered until whole (a client's first chunk may be shorter), its manifest
//! checked as every update is (signature, size, downgrade, security counter) before the body is
//! written, and the trailer's SHA-256 and the body's checked before the upload is answered
//! `match: true`. Testing marks the uploaded agent pending; a reset boots it on trial and runs
//! its self-test; `confirm` confirms it; a reset before that goes back.

use alloc::string::String;
use alloc::vec::Vec;

use embedded_storage::nor_flash::NorFlash;
use minicbor::{Decoder, Encoder};
use sha2::{Digest, Sha256};

use super::header::{Group, Header, Op};
use crate::device::{Device, UpdateError};
use crate::layout::Slot;
use crate::mcuboot::{self, IMAGE_HEADER_SIZE, SignedManifest, TRAILER_SIZE};

/// The largest SMP message (header and body) the device takes, as buffer parameters say.
pub const BUFFER_SIZE: usize = 2048;
/// How many messages it holds at once.
pub const BUFFER_COUNT: u32 = 1;

/// MCUmgr's generic return codes.
pub mod rc {
    pub const UNKNOWN: u32 = 1;
    pub const INVALID: u32 = 3;
    pub const NOT_FOUND: u32 = 5;
    pub const BAD_STATE: u32 = 6;
    pub const TOO_LARGE: u32 = 7;
    pub const NOT_SUPPORTED: u32 = 8;
    pub const CORRUPT: u32 = 9;
    pub const DENIED: u32 = 11;
}

/// What the caller must do once the answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// Reset the device ([`reset`]).
    Reset,
}

/// An upload in progress: the file's bytes so far go to the header buffer, the slot, or the
/// trailer buffer by where they fall.
struct Upload {
    len: u32,
    /// The SHA-256 of the whole file, when the client sent it.
    sha: Option<[u8; 32]>,
    offset: u32,
    head: Vec<u8>,
    signed: Option<SignedManifest>,
    image_hash: Sha256,
    file_hash: Sha256,
    trailer: Vec<u8>,
}

/// The SMP state of one device.
#[derive(Default)]
pub struct Server {
    upload: Option<Upload>,
    /// The length of the last upload that ended, and whether its bytes were the file's: a
    /// chunk of it sent again (its answer lost on the line) is answered as the last one was.
    finished: Option<(u32, bool)>,
    /// Slot 1's agent is to be tried at the next reset.
    pending: bool,
    /// And kept, once its self-test passes (a `confirm` with slot 1's hash).
    permanent: bool,
}

/// Why a request was refused: its return code and a reason for `rsn`.
struct Refusal(u32, String);

impl From<UpdateError> for Refusal {
    fn from(e: UpdateError) -> Refusal {
        let code = match e {
            UpdateError::Slot(_) => rc::UNKNOWN,
            UpdateError::WrongState { .. } => rc::BAD_STATE,
            UpdateError::TooLarge { .. } => rc::TOO_LARGE,
            UpdateError::Downgrade { .. } | UpdateError::SecurityCounter { .. } => rc::DENIED,
            UpdateError::Corrupt => rc::CORRUPT,
            UpdateError::NothingStaged | UpdateError::NoPrevious => rc::NOT_FOUND,
            _ => rc::INVALID,
        };
        Refusal(code, alloc::format!("{e}"))
    }
}

fn invalid(reason: impl Into<String>) -> Refusal {
    Refusal(rc::INVALID, reason.into())
}

type Body = Vec<u8>;

impl Server {
    pub fn new() -> Server {
        Server::default()
    }

    /// The next offset of an upload in progress.
    pub fn upload_offset(&self) -> Option<u32> {
        self.upload.as_ref().map(|u| u.offset)
    }

    /// Gives up an upload that stopped (the watchdog's call): the other slot is erased, so
    /// nothing half-written can ever boot; the running agent is untouched.
    pub fn abandon_upload<F: NorFlash>(
        &mut self,
        device: &mut Device<F>,
    ) -> Result<(), UpdateError> {
        self.upload = None;
        self.finished = None;
        self.pending = false;
        self.permanent = false;
        device.erase_inactive()
    }

    /// Whether slot 1's agent is to be tried at the next reset, and kept if it passes.
    pub fn pending(&self) -> (bool, bool) {
        (self.pending, self.permanent)
    }

    /// The answer to one SMP message, and what to do once it is sent; `None` for bytes that
    /// are not a request (an answer, a malformed header), which get none.
    pub fn handle<F: NorFlash>(
        &mut self,
        device: &mut Device<F>,
        message: &[u8],
        now_ms: u64,
    ) -> Option<(Vec<u8>, Effect)> {
        let (header, body) = Header::decode(message).ok()?;
        if !matches!(header.op, Op::Read | Op::Write) {
            return None;
        }
        let mut effect = Effect::None;
        let read = header.op == Op::Read;
        let answer = match (header.group, header.command, read) {
            (Group::Os, 0, false) => echo(body),
            (Group::Os, 5, false) => {
                effect = Effect::Reset;
                Ok(empty())
            }
            (Group::Os, 6, true) => Ok(parameters()),
            (Group::Image, 0, true) => Ok(self.state(device)),
            (Group::Image, 0, false) => self.set_state(device, body),
            (Group::Image, 1, false) => self.upload(device, body, now_ms),
            (Group::Image, 5, false) => self.erase(device),
            _ => Err(Refusal(rc::NOT_SUPPORTED, String::new())),
        };
        let body = answer.unwrap_or_else(|Refusal(code, reason)| {
            effect = Effect::None;
            refusal(code, &reason)
        });
        let mut out = Vec::with_capacity(super::header::HEADER_SIZE + body.len());
        // A body is far below 64 KiB: BUFFER_SIZE bounds what comes, and answers are smaller.
        out.extend_from_slice(&header.answer(body.len() as u16).encode());
        out.extend_from_slice(&body);
        Some((out, effect))
    }

    /// `images`: slot 0 the running agent, slot 1 the other's, each with its MCUboot hash.
    fn state<F: NorFlash>(&self, device: &mut Device<F>) -> Body {
        let images = agents(device);
        let mut e = Encoder::new(Vec::new());
        // Writing to a Vec cannot fail.
        let _ = (|| -> Result<(), minicbor::encode::Error<core::convert::Infallible>> {
            e.map(2)?.str("images")?.array(images.len() as u64)?;
            for a in &images {
                let pending = a.slot == 1 && self.pending;
                let version = alloc::format!("{}", a.version);
                e.map(8)?;
                e.str("slot")?.u8(a.slot)?;
                e.str("version")?.str(&version)?;
                e.str("hash")?.bytes(&a.hash)?;
                e.str("bootable")?.bool(true)?;
                e.str("pending")?.bool(pending)?;
                e.str("confirmed")?.bool(a.confirmed)?;
                e.str("active")?.bool(a.active)?;
                e.str("permanent")?.bool(pending && self.permanent)?;
            }
            e.str("splitStatus")?.u8(0)?;
            Ok(())
        })();
        e.into_writer()
    }

    /// `hash` and `confirm`: test slot 1's agent at the next reset, confirm the agent on
    /// trial, or (with slot 1's hash and `confirm`) test it and keep it once it passes.
    fn set_state<F: NorFlash>(
        &mut self,
        device: &mut Device<F>,
        body: &[u8],
    ) -> Result<Body, Refusal> {
        let mut hash: Option<Vec<u8>> = None;
        let mut confirm = false;
        fields(body, |key, d| {
            match key {
                "hash" => hash = Some(d.bytes()?.to_vec()),
                "confirm" => confirm = d.bool()?,
                _ => d.skip()?,
            }
            Ok(())
        })?;
        let target = match &hash {
            None => 0,
            // Only a device that runs an agent has slots to name.
            Some(h) if device.active().is_some() => agents(device)
                .iter()
                .find(|a| a.hash[..] == h[..])
                .map(|a| a.slot)
                .ok_or_else(|| {
                    Refusal(
                        rc::NOT_FOUND,
                        "no slot holds an agent with that hash".into(),
                    )
                })?,
            Some(_) => {
                return Err(Refusal(
                    rc::NOT_FOUND,
                    "no slot holds an agent with that hash".into(),
                ));
            }
        };
        match (target, confirm) {
            (0, true) => {
                if device.status().trial {
                    device.confirm()?;
                }
            }
            (0, false) => {}
            (_, permanent) => {
                if device.status().trial {
                    return Err(Refusal(
                        rc::BAD_STATE,
                        "a trial is running: confirm it, or reset to go back, first".into(),
                    ));
                }
                self.pending = true;
                self.permanent = permanent;
            }
        }
        Ok(self.state(device))
    }

    fn upload<F: NorFlash>(
        &mut self,
        device: &mut Device<F>,
        body: &[u8],
        now_ms: u64,
    ) -> Result<Body, Refusal> {
        let mut off = None;
        let mut data: &[u8] = &[];
        let mut len = None;
        let mut sha = None;
        let mut image = 0u32;
        fields(body, |key, d| {
            match key {
                "off" => off = Some(d.u32()?),
                "data" => data = d.bytes()?,
                "len" => len = Some(d.u32()?),
                "sha" => sha = Some(d.bytes()?),
                "image" => image = d.u32()?,
                _ => d.skip()?,
            }
            Ok(())
        })?;
        let off = off.ok_or_else(|| invalid("an upload chunk needs `off`"))?;
        // Image 0 is the agent; clients that name the slot to upload to say 1 (`smpmgr
        // upgrade --slot 1`): both mean the other slot, the only one an upload may go to.
        if image > 1 {
            return Err(Refusal(
                rc::NOT_FOUND,
                alloc::format!("no image {image}: the device has image 0 (slots 0 and 1)"),
            ));
        }
        if off == 0 {
            let len = len.ok_or_else(|| invalid("the first chunk needs `len`"))?;
            let sha: Option<[u8; 32]> = match sha {
                Some(s) => Some(s.try_into().map_err(|_| invalid("`sha` is 32 bytes"))?),
                None => None,
            };
            // The same image again, its upload under way: carry on where it stopped.
            if let Some(u) = &self.upload
                && u.sha.is_some()
                && u.sha == sha
                && u.len == len
                && u.offset > 0
            {
                return Ok(offset_answer(u.offset, None));
            }
            let min = (IMAGE_HEADER_SIZE + 1 + TRAILER_SIZE) as u32;
            if len < min {
                return Err(invalid(alloc::format!(
                    "an image file of {len} bytes; a HotSwap agent's is at least {min}"
                )));
            }
            self.pending = false;
            self.permanent = false;
            self.finished = None;
            self.upload = Some(Upload {
                len,
                sha,
                offset: 0,
                head: Vec::with_capacity(IMAGE_HEADER_SIZE),
                signed: None,
                image_hash: Sha256::new(),
                file_hash: Sha256::new(),
                trailer: Vec::with_capacity(TRAILER_SIZE),
            });
        }
        if self.upload.is_none()
            && let Some((len, matched)) = self.finished
            && u64::from(off) + data.len() as u64 <= u64::from(len)
        {
            return Ok(offset_answer(len, Some(matched)));
        }
        let Some(u) = self.upload.as_mut() else {
            return Err(Refusal(
                rc::BAD_STATE,
                "no upload started: send `off` 0 first".into(),
            ));
        };
        if off != u.offset {
            return Ok(offset_answer(u.offset, None));
        }
        if u64::from(off) + data.len() as u64 > u64::from(u.len) {
            return Err(invalid(alloc::format!(
                "a chunk of {} bytes at {off} goes past the image's {} bytes",
                data.len(),
                u.len
            )));
        }
        let result = feed(u, device, data);
        if let Err(e) = result {
            self.upload = None;
            return Err(e);
        }
        let u = self.upload.as_mut().expect("still uploading");
        if u.offset < u.len {
            return Ok(offset_answer(u.offset, None));
        }
        let done = self.upload.take().expect("still uploading");
        let image_hash: [u8; 32] = done.image_hash.finalize().into();
        mcuboot::check_trailer(&done.trailer, &image_hash)
            .map_err(|e| Refusal(rc::CORRUPT, alloc::format!("{e}")))?;
        let file_hash: [u8; 32] = done.file_hash.finalize().into();
        let matches = done.sha.is_none_or(|s| s == file_hash);
        if !matches {
            self.finished = Some((done.len, false));
            // The bytes are not the ones the client meant: never keep them.
            let _ = device.erase_inactive();
            return Ok(offset_answer(done.len, Some(false)));
        }
        device.finish_download(now_ms)?;
        self.finished = Some((done.len, true));
        Ok(offset_answer(done.len, Some(true)))
    }

    fn erase<F: NorFlash>(&mut self, device: &mut Device<F>) -> Result<Body, Refusal> {
        device.erase_inactive()?;
        self.upload = None;
        self.finished = None;
        self.pending = false;
        self.permanent = false;
        Ok(empty())
    }
}

/// A valid agent in a slot, as SMP shows it.
struct SlotView {
    /// 0: the running agent; 1: the other.
    slot: u8,
    version: crate::Version,
    /// The MCUboot hash its image file has.
    hash: [u8; 32],
    active: bool,
    confirmed: bool,
}

/// The device's valid agents, slot 0 first, each read and hashed once. A device that runs
/// none shows the agent it holds as slot 1.
fn agents<F: NorFlash>(device: &mut Device<F>) -> Vec<SlotView> {
    let trial = device.status().trial;
    let slots = match device.active().map(|(s, _)| s) {
        Some(active) => [(0, active), (1, active.other())],
        None => [(1, Slot::A), (1, Slot::B)],
    };
    let mut out = Vec::new();
    for (n, slot) in slots {
        let Some((header, body)) = device.slot_agent(slot) else {
            continue;
        };
        // A device without a running agent shows only the first it holds.
        if n == 1 && out.iter().any(|a: &SlotView| a.slot == 1) {
            continue;
        }
        let signed = SignedManifest {
            manifest: header.manifest,
            key_id: header.key_id,
            signature: header.signature,
        };
        let hash = mcuboot::header(&signed)
            .map(|h| mcuboot::image_hash(&h, &body))
            .unwrap_or_default();
        out.push(SlotView {
            slot: n,
            version: header.manifest.version,
            hash,
            active: n == 0,
            confirmed: n == 0 && !trial,
        });
    }
    out
}

/// Feeds a chunk of the image file to where its bytes go.
fn feed<F: NorFlash>(
    u: &mut Upload,
    device: &mut Device<F>,
    mut data: &[u8],
) -> Result<(), Refusal> {
    u.file_hash.update(data);
    if u.head.len() < IMAGE_HEADER_SIZE {
        let take = (IMAGE_HEADER_SIZE - u.head.len()).min(data.len());
        u.head.extend_from_slice(&data[..take]);
        u.image_hash.update(&data[..take]);
        u.offset += take as u32;
        data = &data[take..];
        if u.head.len() == IMAGE_HEADER_SIZE {
            let signed =
                mcuboot::parse_header(&u.head).map_err(|e| invalid(alloc::format!("{e}")))?;
            // The header is not yet checked against its signature: any size may be in it.
            let expected = ((IMAGE_HEADER_SIZE + TRAILER_SIZE) as u32)
                .checked_add(signed.manifest.size)
                .ok_or_else(|| {
                    invalid(alloc::format!(
                        "the image header says its body is {} bytes: no image file that large fits",
                        signed.manifest.size
                    ))
                })?;
            if u.len != expected {
                return Err(invalid(alloc::format!(
                    "the image file is {} bytes; its header says {expected}",
                    u.len
                )));
            }
            device.begin_update(signed.manifest, signed.key_id, signed.signature)?;
            u.signed = Some(signed);
        }
    }
    if data.is_empty() {
        return Ok(());
    }
    let body_end = u.len - TRAILER_SIZE as u32;
    if u.offset < body_end {
        let take = ((body_end - u.offset) as usize).min(data.len());
        let body_offset = u.offset - IMAGE_HEADER_SIZE as u32;
        device.write_chunk(body_offset, &data[..take])?;
        u.image_hash.update(&data[..take]);
        u.offset += take as u32;
        data = &data[take..];
    }
    u.trailer.extend_from_slice(data);
    u.offset += data.len() as u32;
    Ok(())
}

/// Reads the body's map, handing each key to `field`.
fn fields<'b>(
    body: &'b [u8],
    mut field: impl FnMut(&str, &mut Decoder<'b>) -> Result<(), minicbor::decode::Error>,
) -> Result<(), Refusal> {
    let mut d = Decoder::new(body);
    let bad = |e: minicbor::decode::Error| invalid(alloc::format!("the request's CBOR: {e}"));
    let count = d.map().map_err(bad)?;
    let mut seen = 0u64;
    loop {
        match count {
            Some(n) if seen == n => break,
            None if d.datatype().map_err(bad)? == minicbor::data::Type::Break => break,
            _ => {}
        }
        let key = d.str().map_err(bad)?;
        field(key, &mut d).map_err(bad)?;
        seen += 1;
    }
    Ok(())
}

fn echo(body: &[u8]) -> Result<Body, Refusal> {
    let mut text = None;
    fields(body, |key, d| {
        match key {
            "d" => text = Some(d.str()?),
            _ => d.skip()?,
        }
        Ok(())
    })?;
    let text = text.ok_or_else(|| invalid("echo needs `d`"))?;
    let mut e = Encoder::new(Vec::new());
    let _ = e.map(1).and_then(|e| e.str("r")).and_then(|e| e.str(text));
    Ok(e.into_writer())
}

fn parameters() -> Body {
    let mut e = Encoder::new(Vec::new());
    let _ = e
        .map(2)
        .and_then(|e| e.str("buf_size"))
        .and_then(|e| e.u32(BUFFER_SIZE as u32))
        .and_then(|e| e.str("buf_count"))
        .and_then(|e| e.u32(BUFFER_COUNT));
    e.into_writer()
}

fn empty() -> Body {
    let mut e = Encoder::new(Vec::new());
    let _ = e.map(0);
    e.into_writer()
}

fn offset_answer(off: u32, matched: Option<bool>) -> Body {
    let mut e = Encoder::new(Vec::new());
    let _ = match matched {
        None => e.map(1).and_then(|e| e.str("off")).and_then(|e| e.u32(off)),
        Some(m) => e
            .map(2)
            .and_then(|e| e.str("off"))
            .and_then(|e| e.u32(off))
            .and_then(|e| e.str("match"))
            .and_then(|e| e.bool(m)),
    };
    e.into_writer()
}

/// `{"rc": code, "rsn": reason}`: the SMP v1 error every client reads, v2 ones included.
fn refusal(code: u32, reason: &str) -> Body {
    let mut e = Encoder::new(Vec::new());
    let _ = if reason.is_empty() {
        e.map(1).and_then(|e| e.str("rc")).and_then(|e| e.u32(code))
    } else {
        e.map(2)
            .and_then(|e| e.str("rc"))
            .and_then(|e| e.u32(code))
            .and_then(|e| e.str("rsn"))
            .and_then(|e| e.str(reason))
    };
    e.into_writer()
}

/// A reset, as the device does it on `os reset`: the device boots again from its flash, so
/// whatever was on trial and not confirmed is left for the confirmed agent; then a pending
/// agent is activated and its self-test run. It stays on trial until confirmed, unless it was
/// made permanent, or its self-test fails and it reverts on its own.
pub fn reset<F: NorFlash>(
    server: &mut Server,
    device: Device<F>,
    layout: crate::Layout,
    config: crate::DeviceConfig,
    self_test: impl FnOnce(&[u8]) -> Result<(), String>,
) -> Result<(Device<F>, ResetOutcome), crate::BootFailure<F>> {
    server.upload = None;
    server.finished = None;
    let mut device = Device::boot(device.into_flash(), layout, config)?;
    let (pending, permanent) = (server.pending, server.permanent);
    server.pending = false;
    server.permanent = false;
    if !pending {
        return Ok((device, ResetOutcome::Booted));
    }
    let outcome = (|| {
        let version = device.activate()?;
        let image = device.trial_image()?.unwrap_or_default();
        Ok(match self_test(&image) {
            Ok(()) if permanent => {
                device.confirm()?;
                ResetOutcome::Confirmed(version)
            }
            Ok(()) => ResetOutcome::OnTrial(version),
            Err(reason) => {
                device.revert()?;
                ResetOutcome::Reverted { version, reason }
            }
        })
    })()
    .unwrap_or_else(|e: UpdateError| ResetOutcome::NotTried(alloc::format!("{e}")));
    Ok((device, outcome))
}

/// What a reset did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutcome {
    /// Booted the confirmed agent (going back from an unconfirmed trial, if one ran).
    Booted,
    /// The pending agent runs on trial, waiting for `confirm`.
    OnTrial(crate::Version),
    /// The pending agent passed its self-test and was kept (a permanent upgrade).
    Confirmed(crate::Version),
    /// The pending agent failed its self-test; the previous one runs.
    Reverted {
        version: crate::Version,
        reason: String,
    },
    /// The pending agent could not be activated (the flash said no); the previous one runs.
    NotTried(String),
}
