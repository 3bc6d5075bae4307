//! The update state machine of one device, and its recovery at boot.
//!
//! ```text
//! Idle --begin_update--> Receiving --write_chunk*--> Receiving --finish_download--> Staged
//! Staged --activate--> Trial --confirm--> Idle (new agent confirmed, security counter raised)
//!                      Trial --revert---> Idle (previous agent back)
//! boot: Trial in the journal --> revert; Confirmed slot invalid --> the other slot, if valid
//! ```
//!
//! Only the inactive slot is ever erased or written; activation, confirmation and reverts are
//! single journal records. Whatever operation a power cut interrupts, the next boot finds a
//! valid, verified agent: the one confirmed last, or the one before it if that one was never
//! confirmed.

use alloc::string::String;
use alloc::vec::Vec;

use embedded_storage::nor_flash::NorFlash;

use crate::image::{HEADER_SIZE, KeyId, Manifest, SlotHeader, Version};
use crate::journal::{Cursor, RECORD_SIZE, Record, State};
use crate::layout::{Layout, Slot};
use crate::slots::{SlotError, SlotStore, TrustedKey, verify_signature};

/// What a device trusts and allows.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    pub keys: Vec<TrustedKey>,
    /// Accept an image older than the running one.
    pub allow_downgrade: bool,
}

/// Why an update step was refused or failed. The device's running agent is untouched by all of
/// them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error(transparent)]
    Slot(#[from] SlotError),
    #[error("cannot {action} while {state}")]
    WrongState {
        action: &'static str,
        state: &'static str,
    },
    #[error("image of {size} bytes does not fit a slot of {max} bytes")]
    TooLarge { size: u32, max: u32 },
    #[error("image is empty")]
    Empty,
    #[error(
        "version {offered} is older than the running {running}, and downgrades are not allowed"
    )]
    Downgrade { running: Version, offered: Version },
    #[error("security counter {offered} is below the device's {device}: refused as a rollback")]
    SecurityCounter { offered: u32, device: u32 },
    #[error("chunk at offset {found}, expected offset {expected}")]
    Offset { expected: u32, found: u32 },
    #[error("chunk ends at {end}, past the image size {size}")]
    Overflow { end: u32, size: u32 },
    #[error("image incomplete: {written} of {size} bytes received")]
    Incomplete { written: u32, size: u32 },
    #[error(
        "downloaded image does not match its signed manifest (SHA-256 differs): corrupted in transit"
    )]
    Corrupt,
    #[error("no verified image is staged in the inactive slot")]
    NothingStaged,
    #[error("no valid previous agent to go back to")]
    NoPrevious,
}

/// A boot that failed, with the flash back for the next attempt.
#[derive(Debug)]
pub struct BootFailure<F> {
    pub error: UpdateError,
    pub flash: F,
}

/// What a trial ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialOutcome {
    Confirmed {
        version: Version,
    },
    Reverted {
        failed: Version,
        running: Option<Version>,
        reason: String,
    },
}

/// What boot had to do to reach a valid agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootEvent {
    /// Nothing: the confirmed agent verified.
    Normal,
    /// The device went down during a trial; it went back to the previous agent.
    RevertedTrial { from: Slot, to: Slot },
    /// The confirmed agent failed verification; the other slot's agent runs instead.
    FellBack {
        from: Slot,
        to: Slot,
        reason: SlotError,
    },
    /// The journal was empty; the newest valid slot was adopted.
    Adopted { slot: Slot },
    /// No slot holds a valid agent (a device never provisioned).
    NoAgent,
}

enum Update {
    Idle,
    Receiving {
        slot: Slot,
        manifest: Manifest,
        key_id: KeyId,
        signature: [u8; 64],
        /// Image bytes received.
        written: u32,
        /// Image bytes programmed; the rest wait in `pending` for a whole flash word.
        flushed: u32,
        pending: [u8; RECORD_SIZE as usize],
    },
    Staged {
        slot: Slot,
        header: SlotHeader,
    },
    Trial {
        slot: Slot,
        header: SlotHeader,
        previous: Slot,
    },
}

impl Update {
    fn name(&self) -> &'static str {
        match self {
            Update::Idle => "idle",
            Update::Receiving { .. } => "receiving an image",
            Update::Staged { .. } => "an image is staged",
            Update::Trial { .. } => "a trial is running",
        }
    }
}

/// A snapshot of the device's slots and update, for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub active: Option<(Slot, Version)>,
    /// The active agent is on trial (not yet confirmed).
    pub trial: bool,
    /// A verified image waiting in the inactive slot.
    pub staged: Option<Version>,
    /// `(received, size)` of a download in progress.
    pub receiving: Option<(u32, u32)>,
    pub security_counter: u32,
}

/// One device: its flash, its trusted keys and its update state.
pub struct Device<F> {
    store: SlotStore<F>,
    config: DeviceConfig,
    cursor: Cursor,
    active: Option<(Slot, SlotHeader)>,
    update: Update,
    next_sequence: u32,
    boot_event: BootEvent,
}

impl<F: NorFlash> Device<F> {
    /// Boots from flash: reads the journal, verifies the slots, and recovers (reverting an
    /// unconfirmed trial, falling back from a damaged slot). A flash error, such as a power cut
    /// during recovery, is returned; booting again finishes the recovery.
    pub fn boot(
        flash: F,
        layout: Layout,
        config: DeviceConfig,
    ) -> Result<Device<F>, BootFailure<F>> {
        let mut store = SlotStore::new(flash, layout);
        match Self::recover(&mut store, &config) {
            Ok((cursor, active, next_sequence, boot_event)) => Ok(Device {
                store,
                config,
                cursor,
                active,
                update: Update::Idle,
                next_sequence,
                boot_event,
            }),
            Err(error) => Err(BootFailure {
                error,
                flash: store.into_flash(),
            }),
        }
    }

    #[allow(clippy::type_complexity)]
    fn recover(
        store: &mut SlotStore<F>,
        config: &DeviceConfig,
    ) -> Result<(Cursor, Option<(Slot, SlotHeader)>, u32, BootEvent), UpdateError> {
        let mut cursor = store.scan_journal()?;
        let a = store.verify(Slot::A, &config.keys);
        let b = store.verify(Slot::B, &config.keys);
        let valid = |slot: Slot| match slot {
            Slot::A => a.ok(),
            Slot::B => b.ok(),
        };
        let next_sequence = [&a, &b]
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|h| h.sequence + 1)
            .max()
            .unwrap_or(1);
        let counter = cursor.newest.map_or(0, |r| r.security_counter);
        let sequence = cursor.newest.map_or(0, |r| r.sequence);

        let (target, event) = match cursor.newest.map(|r| r.state) {
            Some(State::Trial { active, previous }) => {
                let to = if valid(previous).is_some() {
                    previous
                } else {
                    active
                };
                (
                    valid(to).map(|h| (to, h)),
                    BootEvent::RevertedTrial { from: active, to },
                )
            }
            Some(State::Confirmed { active }) => match (valid(active), valid(active.other())) {
                (Some(h), _) => (Some((active, h)), BootEvent::Normal),
                (None, Some(h)) => {
                    let reason = match active {
                        Slot::A => a.err(),
                        Slot::B => b.err(),
                    }
                    .unwrap_or(SlotError::Hash);
                    (
                        Some((active.other(), h)),
                        BootEvent::FellBack {
                            from: active,
                            to: active.other(),
                            reason,
                        },
                    )
                }
                (None, None) => (None, BootEvent::NoAgent),
            },
            None => {
                let newest = [Slot::A, Slot::B]
                    .into_iter()
                    .filter_map(|s| valid(s).map(|h| (s, h)))
                    .max_by_key(|(_, h)| h.sequence);
                match newest {
                    Some((slot, h)) => (Some((slot, h)), BootEvent::Adopted { slot }),
                    None => (None, BootEvent::NoAgent),
                }
            }
        };
        let event = if target.is_none() {
            BootEvent::NoAgent
        } else {
            event
        };
        if let Some((slot, _)) = target
            && event != BootEvent::Normal
        {
            let record = Record {
                sequence: sequence + 1,
                state: State::Confirmed { active: slot },
                security_counter: counter,
            };
            cursor = store.append(cursor, record)?;
        }
        Ok((cursor, target, next_sequence, event))
    }

    /// What the last boot did to reach a valid agent.
    pub fn boot_event(&self) -> BootEvent {
        self.boot_event
    }

    /// The running agent's slot and header.
    pub fn active(&self) -> Option<(Slot, &SlotHeader)> {
        self.active.as_ref().map(|(s, h)| (*s, h))
    }

    pub fn security_counter(&self) -> u32 {
        self.cursor.newest.map_or(0, |r| r.security_counter)
    }

    pub fn status(&self) -> DeviceStatus {
        DeviceStatus {
            active: self.active.as_ref().map(|(s, h)| (*s, h.manifest.version)),
            trial: matches!(self.update, Update::Trial { .. }),
            staged: match &self.update {
                Update::Staged { header, .. } => Some(header.manifest.version),
                _ => None,
            },
            receiving: match &self.update {
                Update::Receiving {
                    written, manifest, ..
                } => Some((*written, manifest.size)),
                _ => None,
            },
            security_counter: self.security_counter(),
        }
    }

    /// The image of the running agent, read from flash.
    pub fn active_image(&mut self) -> Result<Vec<u8>, UpdateError> {
        let (slot, header) = self.active.ok_or(UpdateError::NoPrevious)?;
        Ok(self.store.read_image(slot, &header)?)
    }

    pub fn layout(&self) -> &Layout {
        &self.store.layout
    }

    pub fn store(&mut self) -> &mut SlotStore<F> {
        &mut self.store
    }

    /// Gives the flash back: to power-cycle a simulated device, say.
    pub fn into_flash(self) -> F {
        self.store.into_flash()
    }

    fn inactive(&self) -> Slot {
        self.active.map_or(Slot::A, |(s, _)| s.other())
    }

    /// Starts receiving an image into the inactive slot, after checking its signed manifest:
    /// trusted key and signature, size, downgrade, security counter. Erases the inactive slot.
    /// Starting again abandons a download or staged image.
    pub fn begin_update(
        &mut self,
        manifest: Manifest,
        key_id: KeyId,
        signature: [u8; 64],
    ) -> Result<(), UpdateError> {
        if let Update::Trial { .. } = self.update {
            return Err(UpdateError::WrongState {
                action: "start an update",
                state: self.update.name(),
            });
        }
        verify_signature(&self.config.keys, &manifest, key_id, &signature)?;
        let max = self.store.layout.max_image();
        if manifest.size > max {
            return Err(UpdateError::TooLarge {
                size: manifest.size,
                max,
            });
        }
        if manifest.size == 0 {
            return Err(UpdateError::Empty);
        }
        if let Some((_, running)) = &self.active
            && manifest.version < running.manifest.version
            && !self.config.allow_downgrade
        {
            return Err(UpdateError::Downgrade {
                running: running.manifest.version,
                offered: manifest.version,
            });
        }
        let device = self.security_counter();
        if manifest.security_counter < device {
            return Err(UpdateError::SecurityCounter {
                offered: manifest.security_counter,
                device,
            });
        }
        let slot = self.inactive();
        self.update = Update::Idle;
        self.store.erase_slot(slot)?;
        self.update = Update::Receiving {
            slot,
            manifest,
            key_id,
            signature,
            written: 0,
            flushed: 0,
            pending: [0xff; RECORD_SIZE as usize],
        };
        Ok(())
    }

    /// Where the download stands: the offset the next chunk must start at.
    pub fn resume_offset(&self) -> Option<u32> {
        match self.update {
            Update::Receiving { written, .. } => Some(written),
            _ => None,
        }
    }

    /// Writes the next chunk of the image. Chunks come in order; after a dropped connection the
    /// download resumes at [`Device::resume_offset`].
    pub fn write_chunk(&mut self, offset: u32, mut data: &[u8]) -> Result<(), UpdateError> {
        let state = self.update.name();
        let Update::Receiving {
            slot,
            manifest,
            written,
            flushed,
            pending,
            ..
        } = &mut self.update
        else {
            return Err(UpdateError::WrongState {
                action: "write a chunk",
                state,
            });
        };
        if offset != *written {
            return Err(UpdateError::Offset {
                expected: *written,
                found: offset,
            });
        }
        let end = u32::try_from(data.len())
            .ok()
            .and_then(|n| offset.checked_add(n))
            .unwrap_or(u32::MAX);
        if end > manifest.size {
            return Err(UpdateError::Overflow {
                end,
                size: manifest.size,
            });
        }
        let word = F::WRITE_SIZE;
        let base = self.store.layout.slot_start(*slot) + HEADER_SIZE as u32;
        let mut held = (*written - *flushed) as usize;
        if held > 0 {
            let take = (word - held).min(data.len());
            pending[held..held + take].copy_from_slice(&data[..take]);
            held += take;
            data = &data[take..];
            if held == word {
                self.store.write(base + *flushed, &pending[..word])?;
                *flushed += word as u32;
                held = 0;
            }
        }
        let whole = data.len() / word * word;
        if whole > 0 {
            self.store.write(base + *flushed, &data[..whole])?;
            *flushed += whole as u32;
        }
        let rest = &data[whole..];
        pending[held..held + rest.len()].copy_from_slice(rest);
        *written = end;
        Ok(())
    }

    /// Ends the download: reads the image back from flash, checks its SHA-256 against the signed
    /// manifest, and writes the slot header last. The image is then staged.
    pub fn finish_download(&mut self, timestamp: u64) -> Result<Version, UpdateError> {
        let state = self.update.name();
        let Update::Receiving {
            slot,
            manifest,
            key_id,
            signature,
            written,
            flushed,
            mut pending,
        } = self.update
        else {
            return Err(UpdateError::WrongState {
                action: "finish a download",
                state,
            });
        };
        if written != manifest.size {
            return Err(UpdateError::Incomplete {
                written,
                size: manifest.size,
            });
        }
        let base = self.store.layout.slot_start(slot);
        let held = (written - flushed) as usize;
        if held > 0 {
            pending[held..].fill(0xff);
            self.store.write(
                base + HEADER_SIZE as u32 + flushed,
                &pending[..F::WRITE_SIZE],
            )?;
        }
        let (crc32, sha256) = self.store.digest(slot, manifest.size)?;
        if sha256 != manifest.sha256 {
            self.update = Update::Idle;
            return Err(UpdateError::Corrupt);
        }
        let header = SlotHeader {
            manifest,
            crc32,
            key_id,
            signature,
            sequence: self.next_sequence,
            timestamp,
        };
        self.store.write(base, &header.encode())?;
        self.next_sequence += 1;
        self.update = Update::Staged { slot, header };
        Ok(manifest.version)
    }

    /// Switches to the staged image: one journal record makes it the active agent, on trial.
    /// A staged image survives a reboot: after one, the inactive slot is verified again here.
    pub fn activate(&mut self) -> Result<Version, UpdateError> {
        let (slot, header) = match self.update {
            Update::Staged { slot, header } => (slot, header),
            Update::Idle => {
                let slot = self.inactive();
                let header = self
                    .store
                    .verify(slot, &self.config.keys)
                    .map_err(|_| UpdateError::NothingStaged)?;
                if header.manifest.security_counter < self.security_counter() {
                    return Err(UpdateError::SecurityCounter {
                        offered: header.manifest.security_counter,
                        device: self.security_counter(),
                    });
                }
                (slot, header)
            }
            _ => {
                return Err(UpdateError::WrongState {
                    action: "activate",
                    state: self.update.name(),
                });
            }
        };
        let previous = slot.other();
        let record = self.record(
            State::Trial {
                active: slot,
                previous,
            },
            self.security_counter(),
        );
        self.cursor = self.store.append(self.cursor, record)?;
        self.active = Some((slot, header));
        self.update = Update::Trial {
            slot,
            header,
            previous,
        };
        Ok(header.manifest.version)
    }

    /// Confirms the agent on trial and raises the security counter to its manifest's.
    pub fn confirm(&mut self) -> Result<Version, UpdateError> {
        let Update::Trial { slot, header, .. } = self.update else {
            return Err(UpdateError::WrongState {
                action: "confirm",
                state: self.update.name(),
            });
        };
        let counter = self
            .security_counter()
            .max(header.manifest.security_counter);
        let record = self.record(State::Confirmed { active: slot }, counter);
        self.cursor = self.store.append(self.cursor, record)?;
        self.update = Update::Idle;
        Ok(header.manifest.version)
    }

    /// Ends a trial by going back to the previous agent.
    pub fn revert(&mut self) -> Result<Option<Version>, UpdateError> {
        let Update::Trial { slot, previous, .. } = self.update else {
            return Err(UpdateError::WrongState {
                action: "revert",
                state: self.update.name(),
            });
        };
        let back = match self.store.verify(previous, &self.config.keys) {
            Ok(header) => Some((previous, header)),
            // Nothing valid to go back to (a first install): stay on the new agent, unconfirmed
            // agents being better than none; the failure is still reported.
            Err(_) => None,
        };
        let (target, header) = back.unwrap_or((
            slot,
            self.active.map(|a| a.1).ok_or(UpdateError::NoPrevious)?,
        ));
        let record = self.record(State::Confirmed { active: target }, self.security_counter());
        self.cursor = self.store.append(self.cursor, record)?;
        self.active = Some((target, header));
        self.update = Update::Idle;
        Ok(back.map(|(_, h)| h.manifest.version))
    }

    /// Runs the trial of the activated agent: `self_test` gets its image and says whether it
    /// works; the device then confirms it or reverts on its own.
    pub fn run_trial(
        &mut self,
        self_test: impl FnOnce(&[u8]) -> Result<(), String>,
    ) -> Result<TrialOutcome, UpdateError> {
        let Update::Trial { slot, header, .. } = self.update else {
            return Err(UpdateError::WrongState {
                action: "run a trial",
                state: self.update.name(),
            });
        };
        let image = self.store.read_image(slot, &header)?;
        match self_test(&image) {
            Ok(()) => Ok(TrialOutcome::Confirmed {
                version: self.confirm()?,
            }),
            Err(reason) => {
                let running = self.revert()?;
                Ok(TrialOutcome::Reverted {
                    failed: header.manifest.version,
                    running,
                    reason,
                })
            }
        }
    }

    /// The agent on trial, for a self-test run by the caller, who then confirms or reverts
    /// (SMP's test-then-confirm); `None` when no trial is running.
    pub fn trial_image(&mut self) -> Result<Option<Vec<u8>>, UpdateError> {
        let Update::Trial { slot, header, .. } = self.update else {
            return Ok(None);
        };
        Ok(Some(self.store.read_image(slot, &header)?))
    }

    /// The valid agent in `slot`, with its header, checked against the trusted keys; `None`
    /// when the slot holds none (empty, being written, damaged).
    pub fn slot_agent(&mut self, slot: Slot) -> Option<(SlotHeader, Vec<u8>)> {
        if matches!(self.update, Update::Receiving { slot: s, .. } if s == slot) {
            return None;
        }
        let header = self.store.verify(slot, &self.config.keys).ok()?;
        let image = self.store.read_image(slot, &header).ok()?;
        Some((header, image))
    }

    /// Erases the inactive slot: refused during a trial, when it holds the agent to go back to.
    pub fn erase_inactive(&mut self) -> Result<(), UpdateError> {
        if let Update::Trial { .. } = self.update {
            return Err(UpdateError::WrongState {
                action: "erase the other slot",
                state: self.update.name(),
            });
        }
        let slot = self.inactive();
        self.update = Update::Idle;
        self.store.erase_slot(slot)?;
        Ok(())
    }

    /// Goes back to the agent in the other slot by hand. Refused during an update, when the
    /// other slot holds no valid agent, or when its security counter is below the device's.
    pub fn rollback(&mut self) -> Result<Version, UpdateError> {
        if !matches!(self.update, Update::Idle | Update::Staged { .. }) {
            return Err(UpdateError::WrongState {
                action: "roll back",
                state: self.update.name(),
            });
        }
        let other = self.inactive();
        let header = self
            .store
            .verify(other, &self.config.keys)
            .map_err(|_| UpdateError::NoPrevious)?;
        let device = self.security_counter();
        if header.manifest.security_counter < device {
            return Err(UpdateError::SecurityCounter {
                offered: header.manifest.security_counter,
                device,
            });
        }
        let record = self.record(State::Confirmed { active: other }, device);
        self.cursor = self.store.append(self.cursor, record)?;
        self.active = Some((other, header));
        self.update = Update::Idle;
        Ok(header.manifest.version)
    }

    fn record(&self, state: State, security_counter: u32) -> Record {
        Record {
            sequence: self.cursor.newest.map_or(1, |r| r.sequence + 1),
            state,
            security_counter,
        }
    }
}
