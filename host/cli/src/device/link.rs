//! The device's loop as async code reaches it: the gRPC service (`--grpc`) and the server
//! check-ins (`--server`) hand it SMP requests, as the serial line does, so every path obeys
//! the same rules (upload checks, test, reset, confirm, the watchdog), kept in one place.

use hotswap_device_vm::smp::codec::{self, Refusal, SlotImage, UploadAnswer, Value};

use super::emulated::Event;

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
        let value = codec::decode(body).map_err(|e| LinkError::Answer(e.to_string()))?;
        if let Some(Refusal { rc, reason }) = Refusal::of(&value) {
            return Err(LinkError::Refused { rc, reason });
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
        let answer = self.smp(1, 0, false, codec::empty()).await?;
        codec::images(&answer)
            .ok_or_else(|| LinkError::Answer("its image state has no images".into()))
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
        let body = codec::upload(offset, data, length, sha256);
        let answer = self.smp(1, 1, true, body).await?;
        UploadAnswer::of(&answer)
            .ok_or_else(|| LinkError::Answer("an upload answer with no offset".into()))
    }

    /// An image state write: with a hash, test that agent at the next reset (kept once it
    /// passes when `confirm`); without, confirm the agent on trial.
    pub async fn set_state(&self, hash: Option<&[u8]>, confirm: bool) -> Result<(), LinkError> {
        self.smp(1, 0, true, codec::image_state(hash, confirm))
            .await
            .map(drop)
    }

    /// Resets the device; the loop boots (a pending agent on trial, its self-test run) before
    /// it takes the next request.
    pub async fn reset(&self) -> Result<ResetReport, LinkError> {
        let before = self.images().await?;
        let tried = before.iter().find(|i| i.pending).map(|i| i.version.clone());
        self.smp(0, 5, true, codec::empty()).await?;
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
