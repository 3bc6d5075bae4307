//! `hotswap device --server URL`: the device also checks in with a HotSwap server, as a fleet
//! device does, and carries out what it is assigned through the SMP handlers the line and gRPC
//! use ([`Link`]): the artifact is downloaded (resumed with HTTP Range after a dropped
//! connection), wrapped as the MCUboot image file an upload takes, uploaded (every check runs
//! before the device answers the last chunk), tested at a reset, and confirmed once its
//! self-test passes; each step is reported.

use std::time::Duration;

use hotswap_client::Device as Credential;
use hotswap_device_vm::mcuboot::{self, SignedManifest};
use hotswap_protocol::{Assignment, AssignmentMode, CheckIn, DeviceState, SlotInfo};
use hotswap_sim::{Answer, HttpTransport, Transport, TransportError};
use sha2::{Digest, Sha256};

use hotswap_device_vm::smp::codec::SlotImage;

use super::link::{Link, LinkError};

/// Tries of one download before the job is reported failed.
pub const DOWNLOAD_ATTEMPTS: u32 = 5;

/// Who the device is to the server, and how often it asks.
pub struct CheckIns {
    pub transport: HttpTransport,
    pub id: String,
    /// The device's credential.
    pub token: String,
    /// A check-in waits this long for an assignment (a long poll); after a failed one, the
    /// device waits this long before the next.
    pub poll: Duration,
}

impl CheckIns {
    fn credential(&self) -> Credential<'_> {
        Credential {
            id: &self.id,
            token: &self.token,
        }
    }

    /// State changes that happened together, in order; `health` goes with the last. What the
    /// answer to the last says (no answer: carry on, as a device that cannot reach the server
    /// keeps the job it has).
    async fn report(
        &self,
        a: &Assignment,
        states: &[(DeviceState, &str)],
        link: Option<&Link>,
    ) -> Answer {
        let health = match link {
            Some(link) => link.health().await.ok(),
            None => None,
        };
        let reports = hotswap_sim::reports(a, states, health);
        match self.transport.report(self.credential(), reports).await {
            Ok(answers) => Answer::of(answers.last()),
            Err(e) => {
                eprintln!("hotswap device: a report to the server failed: {e}");
                Answer::CarryOn
            }
        }
    }
}

/// Checks in until the device stops.
pub async fn run(c: CheckIns, link: Link) {
    let wait = (c.poll.as_secs() as u32).min(hotswap_protocol::device_protocol::MAX_WAIT_SECONDS);
    let mut last_error = None;
    loop {
        let body = match check_in_body(&link).await {
            Ok(body) => body,
            Err(LinkError::Stopping) => return,
            Err(e) => {
                eprintln!("hotswap device: reading its own state for a check-in: {e}");
                tokio::time::sleep(c.poll).await;
                continue;
            }
        };
        match c.transport.check_in(c.credential(), &body, wait).await {
            Ok(answer) => {
                if last_error.take().is_some() {
                    eprintln!("hotswap device: the server answers again");
                }
                if let Some(a) = answer.assignment {
                    let outcome = work(&c, &link, &a).await;
                    eprintln!(
                        "hotswap device: assignment {} ({:?} {}): {outcome}",
                        a.assignment_id, a.mode, a.version
                    );
                }
                // A long poll that ran out, or a job done: ask again straight away.
                if wait > 0 {
                    continue;
                }
            }
            Err(e) => {
                let e = e.to_string();
                if last_error.as_ref() != Some(&e) {
                    eprintln!("hotswap device: a check-in with {} failed: {e}", c.id);
                }
                last_error = Some(e);
            }
        }
        tokio::time::sleep(c.poll).await;
    }
}

async fn check_in_body(link: &Link) -> Result<CheckIn, LinkError> {
    let images = link.images().await?;
    let health = link.health().await?;
    Ok(CheckIn {
        firmware_version: images
            .iter()
            .find(|i| i.slot == 0)
            .map(|i| i.version.clone()),
        slots: Some(
            images
                .iter()
                .map(|i| SlotInfo {
                    slot: if i.slot == 0 { "a" } else { "b" }.into(),
                    version: Some(i.version.clone()),
                    checksum: None,
                    state: if i.active { "active" } else { "inactive" }.into(),
                })
                .collect(),
        ),
        health: Some(health),
    })
}

/// Carries out one assignment; how it ended, for the device's log.
async fn work(c: &CheckIns, link: &Link, a: &Assignment) -> String {
    match job(c, link, a).await {
        Ok(done) => done,
        Err(reason) => {
            c.report(a, &[(DeviceState::Failed, &reason)], Some(link))
                .await;
            format!("failed: {reason}")
        }
    }
}

/// The other slot, when it holds `version`.
async fn other_slot(link: &Link, version: &str) -> Result<Option<SlotImage>, String> {
    let images = link.images().await.map_err(|e| e.to_string())?;
    Ok(images
        .into_iter()
        .find(|i| i.slot == 1 && i.version == version))
}

async fn job(c: &CheckIns, link: &Link, a: &Assignment) -> Result<String, String> {
    match a.mode {
        AssignmentMode::Rollback => {
            if let Some(other) = other_slot(link, &a.version).await? {
                return trial(c, link, a, &other.hash).await;
            }
            // The other slot does not hold it: install it like any version.
            install(c, link, a).await
        }
        AssignmentMode::Activate => match other_slot(link, &a.version).await? {
            Some(other) => trial(c, link, a, &other.hash).await,
            None => Err(format!(
                "asked to activate {}, which the other slot does not hold",
                a.version
            )),
        },
        AssignmentMode::Install | AssignmentMode::Stage => install(c, link, a).await,
    }
}

async fn install(c: &CheckIns, link: &Link, a: &Assignment) -> Result<String, String> {
    let (manifest, key_id, signature) =
        hotswap_sim::signed_manifest(a).map_err(|e| e.to_string())?;
    let limit = hotswap_device_vm::layout::DEFAULT_SLOT_SIZE as usize;
    if manifest.size as usize > limit {
        return Err(format!(
            "the artifact is {} bytes; the device's slot holds {limit}",
            manifest.size
        ));
    }
    if c.report(a, &[(DeviceState::Downloading, "")], None).await == Answer::CalledOff {
        return Ok("called off before the download".into());
    }
    let body = download(c, a, manifest.size as usize).await?;
    let file = mcuboot::write(
        &SignedManifest {
            manifest,
            key_id,
            signature,
        },
        &body,
    )
    .map_err(|e| format!("making the image file: {e:?}"))?;
    if c.report(
        a,
        &[(DeviceState::Downloaded, ""), (DeviceState::Verifying, "")],
        None,
    )
    .await
        == Answer::CalledOff
    {
        return Ok("called off after the download".into());
    }
    upload(link, &file).await?;
    if c.report(a, &[(DeviceState::Installed, "")], None).await == Answer::CalledOff {
        // The checked image stays in the other slot, never tried.
        return Ok("called off: installed, not activated".into());
    }
    if a.mode == AssignmentMode::Stage {
        return Ok(format!("{} staged in the other slot", a.version));
    }
    let other = other_slot(link, &a.version)
        .await?
        .ok_or("the upload was checked, yet the other slot does not hold it")?;
    trial(c, link, a, &other.hash).await
}

/// The artifact's bytes, resumed with HTTP Range from what arrived after a cut connection.
async fn download(c: &CheckIns, a: &Assignment, size: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::with_capacity(size);
    let mut failures = 0;
    while body.len() < size {
        match c
            .transport
            .download(c.credential(), &a.url, body.len() as u64)
            .await
        {
            Ok(bytes) if !bytes.is_empty() => {
                let room = size - body.len();
                body.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            Ok(_) => {
                return Err(format!(
                    "the download ended at byte {} of {size}",
                    body.len()
                ));
            }
            Err(e @ TransportError::Refused { .. }) => return Err(format!("download: {e}")),
            Err(e) => {
                failures += 1;
                if failures >= DOWNLOAD_ATTEMPTS {
                    return Err(format!(
                        "download: gave up at byte {} after {failures} tries: {e}",
                        body.len()
                    ));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    Ok(body)
}

/// The image file to the device, in chunks its buffer takes.
async fn upload(link: &Link, file: &[u8]) -> Result<(), String> {
    let sha: [u8; 32] = Sha256::digest(file).into();
    let mut off = 0u64;
    loop {
        let end = (off as usize + super::grpc::MAX_CHUNK as usize).min(file.len());
        let answer = link
            .upload(off, &file[off as usize..end], file.len() as u64, &sha)
            .await
            .map_err(|e| format!("refused: {e}"))?;
        match answer.matched {
            Some(true) => return Ok(()),
            Some(false) => return Err("verify: the bytes the device got are not the file's".into()),
            None if answer.next_offset <= off && end < file.len() => {
                return Err(format!("the device's upload stalled at byte {off}"));
            }
            None => off = answer.next_offset,
        }
    }
}

/// Tests the agent of `hash` at a reset, and confirms it once its self-test passed.
async fn trial(c: &CheckIns, link: &Link, a: &Assignment, hash: &[u8]) -> Result<String, String> {
    let e = |e: LinkError| e.to_string();
    link.set_state(Some(hash), false).await.map_err(e)?;
    c.report(a, &[(DeviceState::Trial, "")], None).await;
    let reset = link.reset().await.map_err(e)?;
    let success = if a.mode == AssignmentMode::Rollback {
        DeviceState::RolledBack
    } else {
        DeviceState::Confirmed
    };
    if reset.took {
        link.set_state(None, true).await.map_err(e)?;
        c.report(a, &[(success, "")], Some(link)).await;
        Ok(format!("{} tried and confirmed", a.version))
    } else {
        let reason = format!(
            "trial failed, reverted to {}: {} failed its self-test on the device",
            reset.version, a.version
        );
        c.report(a, &[(DeviceState::RolledBack, &reason)], Some(link))
            .await;
        Ok(reason)
    }
}
