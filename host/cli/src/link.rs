//! The device's loop as async code reaches it: the gRPC service (`--grpc`) and the server
//! check-ins (`--server`) hand it SMP requests, as the serial line does, so every path obeys
//! the same rules (upload checks, test, reset, confirm, the watchdog), kept in one place.

use crate::device::Event;
use crate::push::{Value, cbor, decode_answer, state_body};

/// Why a request to the device's loop did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the device is stopping")]
    Stopping,
    /// The device refused: its SMP return code and reason.
    #[error("the device refused: {reason} (rc {rc})")]
    Refused { rc: i64, reason: String },
    #[error("the device's answer: {0}")]
    Answer(String),
}

/// One slot, as the device's image state gives it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotImage {
    pub slot: u32,
    pub version: String,
    /// The SHA-256 of the image file the slot holds.
    pub hash: Vec<u8>,
    pub pending: bool,
    pub confirmed: bool,
    pub active: bool,
    pub permanent: bool,
}

/// What an upload request's answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadAnswer {
    /// Where the next chunk goes (the device's own offset after a resumed or repeated chunk).
    pub next_offset: u64,
    /// Set on the last chunk: whether the image is the one announced and passed every check.
    pub matched: Option<bool>,
}

/// How a reset went, read from the slots before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetReport {
    /// What the device runs now.
    pub version: String,
    /// The version that was pending, if one was.
    pub tried: Option<String>,
    /// Whether the device runs what was pending, and whether that is kept for good.
    pub took: bool,
    pub kept: bool,
}

impl ResetReport {
    pub fn describe(&self) -> String {
        match &self.tried {
            Some(p) if self.took && self.kept => format!("{p} tried and kept"),
            Some(p) if self.took => format!("{p} on trial, not confirmed"),
            Some(p) => format!("{p} failed its self-test; went back to {}", self.version),
            None => format!("booted {}", self.version),
        }
    }
}

/// A handle on the device's loop.
#[derive(Clone)]
pub struct Link {
    events: std::sync::mpsc::Sender<Event>,
}

impl Link {
    pub fn new(events: std::sync::mpsc::Sender<Event>) -> Link {
        Link { events }
    }

    /// One SMP request to the device and its answer, read; a refusal is [`LinkError::Refused`]
    /// with the device's reason.
    pub async fn smp(
        &self,
        group: u16,
        command: u8,
        write: bool,
        body: Vec<u8>,
    ) -> Result<Value, LinkError> {
        // The device's loop answers it directly: no sequence to match.
        let message = hotswap_device_vm::smp::Header::request(write, group, 0, command, &body);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Smp(message, tx))
            .map_err(|_| LinkError::Stopping)?;
        let answer = rx.await.map_err(|_| LinkError::Stopping)?;
        // The answer is a whole SMP message: its body follows the 8-byte header.
        let body = answer.get(8..).unwrap_or_default();
        let value = decode_answer(body).map_err(|e| LinkError::Answer(e.to_string()))?;
        if let Some(Value::Int(rc)) = value.get("rc")
            && *rc != 0
        {
            let reason = match value.get("rsn") {
                Some(Value::Text(t)) => t.clone(),
                _ => format!("rc {rc}"),
            };
            return Err(LinkError::Refused { rc: *rc, reason });
        }
        Ok(value)
    }

    /// How the running agent is: what a check-in tells the server.
    pub async fn health(&self) -> Result<hotswap_protocol::Health, LinkError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.events
            .send(Event::Health(tx))
            .map_err(|_| LinkError::Stopping)?;
        rx.await.map_err(|_| LinkError::Stopping)
    }

    /// The device's slots: 0 the running agent, 1 the other.
    pub async fn images(&self) -> Result<Vec<SlotImage>, LinkError> {
        let answer = self.smp(1, 0, false, cbor(|_| Ok(()), 0)).await?;
        let Some(Value::Array(images)) = answer.get("images") else {
            return Err(LinkError::Answer("its image state has no images".into()));
        };
        Ok(images
            .iter()
            .map(|i| {
                let flag = |k: &str| i.get(k) == Some(&Value::Bool(true));
                SlotImage {
                    slot: match i.get("slot") {
                        Some(Value::Int(n)) => *n as u32,
                        _ => 0,
                    },
                    version: match i.get("version") {
                        Some(Value::Text(v)) => v.clone(),
                        _ => String::new(),
                    },
                    hash: match i.get("hash") {
                        Some(Value::Bytes(h)) => h.clone(),
                        _ => Vec::new(),
                    },
                    pending: flag("pending"),
                    confirmed: flag("confirmed"),
                    active: flag("active"),
                    permanent: flag("permanent"),
                }
            })
            .collect())
    }

    /// One chunk of an image file at `offset`; the first (`offset` 0) also names the file's
    /// length and SHA-256, so the device can start or resume it.
    pub async fn upload(
        &self,
        offset: u64,
        data: &[u8],
        length: u64,
        sha256: &[u8],
    ) -> Result<UploadAnswer, LinkError> {
        let body = if offset == 0 {
            cbor(
                |e| {
                    e.str("len")?.u64(length)?;
                    e.str("off")?.u64(0)?;
                    e.str("sha")?.bytes(sha256)?;
                    e.str("data")?.bytes(data).map(drop)
                },
                4,
            )
        } else {
            cbor(
                |e| {
                    e.str("off")?
                        .u64(offset)?
                        .str("data")?
                        .bytes(data)
                        .map(drop)
                },
                2,
            )
        };
        let answer = self.smp(1, 1, true, body).await?;
        let Some(Value::Int(next)) = answer.get("off") else {
            return Err(LinkError::Answer("an upload answer with no offset".into()));
        };
        Ok(UploadAnswer {
            next_offset: *next as u64,
            matched: match answer.get("match") {
                Some(Value::Bool(m)) => Some(*m),
                _ => None,
            },
        })
    }

    /// An image state write: with a hash, test that agent at the next reset (kept once it
    /// passes when `confirm`); without, confirm the agent on trial.
    pub async fn set_state(&self, hash: Option<&[u8]>, confirm: bool) -> Result<(), LinkError> {
        let body = match hash {
            Some(hash) => state_body(hash, confirm),
            None => cbor(|e| e.str("confirm")?.bool(confirm).map(drop), 1),
        };
        self.smp(1, 0, true, body).await.map(drop)
    }

    /// Resets the device; the loop boots (a pending agent on trial, its self-test run) before
    /// it takes the next request.
    pub async fn reset(&self) -> Result<ResetReport, LinkError> {
        let before = self.images().await?;
        let tried = before.iter().find(|i| i.pending).map(|i| i.version.clone());
        self.smp(0, 5, true, cbor(|_| Ok(()), 0)).await?;
        let after = self.images().await?;
        let running = after.iter().find(|i| i.slot == 0);
        let version = running.map(|i| i.version.clone()).unwrap_or_default();
        let took = tried.is_some() && tried.as_deref() == running.map(|r| r.version.as_str());
        Ok(ResetReport {
            kept: took && running.is_some_and(|r| r.confirmed),
            took,
            tried,
            version,
        })
    }
}
