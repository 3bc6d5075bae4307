//! One simulated device: the device VM (`hotswap_device_vm::Device` on simulated NOR flash, the
//! agent in wasmi) speaking the device protocol through a [`Transport`]. It checks in with its slots and health,
//! downloads an assignment with HTTP Range (resuming at the flash's own resume offset after a
//! dropped connection), lets the device VM verify, write, activate and try it, and reports each
//! step. A rollback assignment switches back to the other slot when it holds the version asked
//! for. Faults (a dropped connection, a corrupted byte, a power cut) are injected on request.

use std::time::{Duration, Instant};

use hotswap_device_vm::agent::{self, Agent, AgentError, AgentLimits, RecordingHost};
use hotswap_device_vm::device::{DeviceConfig, TrialOutcome};
use hotswap_device_vm::image::{KeyId, Manifest};
use hotswap_device_vm::layout::{DEFAULT_SLOT_SIZE, Layout, Slot};
use hotswap_device_vm::release::Release;
use hotswap_device_vm::sim::SimFlash;
use hotswap_device_vm::{Device, Version};
use hotswap_protocol::{
    Assignment, AssignmentMode, CheckIn, DeviceState, Health, Report, ReportAnswer, SlotInfo,
};

use hotswap_client::Device as Credential;

use crate::transport::{Transport, TransportError};

/// The simulated flash: 1 KiB sectors, 4-byte words.
pub type Flash = SimFlash<4, 1024>;
const SECTOR: u32 = 1024;
/// Two journal sectors and two slots.
pub const CAPACITY: usize = 2 * SECTOR as usize + 2 * DEFAULT_SLOT_SIZE as usize;
/// Download chunk written to flash at a time.
const CHUNK: usize = 1024;

/// Compiled agents shared by every simulated device: one wasmi `Module` per distinct image (by
/// SHA-256 of the bytes the device VM verified), instantiated per device. A device's own state
/// is then its linear memory, its flash and a few hundred bytes.
#[derive(Clone)]
pub struct Modules {
    engine: agent::Engine,
    limits: AgentLimits,
    compiled: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<[u8; 32], agent::Module>>>,
}

impl Modules {
    pub fn new(limits: AgentLimits) -> Modules {
        Modules {
            engine: agent::engine(&limits),
            limits,
            compiled: Default::default(),
        }
    }

    /// Instantiates `image` (compiled once per distinct image) and runs its `init`.
    pub fn start(&self, image: &[u8]) -> Result<Agent<RecordingHost>, AgentError> {
        use sha2::Digest;
        let hash: [u8; 32] = sha2::Sha256::digest(image).into();
        let module = {
            let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
            match compiled.get(&hash) {
                Some(m) => m.clone(),
                None => {
                    let m = agent::compile(&self.engine, image)?;
                    compiled.insert(hash, m.clone());
                    m
                }
            }
        };
        let mut agent = Agent::instantiate(&module, host(), self.limits)?;
        agent.init("{}")?;
        Ok(agent)
    }

    /// The trial of a new agent: instantiate, `init`, `self-test` under the watchdog budget.
    pub fn trial(&self, image: &[u8]) -> Result<Agent<RecordingHost>, AgentError> {
        let mut agent = self.start(image)?;
        agent.self_test()?;
        Ok(agent)
    }
}

/// Faults this device suffers on its next update.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// The connection drops once, halfway through the download.
    pub drop_connection: bool,
    /// One byte of the download arrives flipped.
    pub corrupt_download: bool,
    /// The power fails while the image is written; the device reboots from flash.
    pub power_cut: bool,
    /// The new agent crashes in its trial (a bad batch of hardware, say); the device goes
    /// back to the agent it ran, on its own.
    pub failing_trial: bool,
}

/// How an update ended, for the simulator's summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Confirmed(String),
    Staged(String),
    /// The new agent failed its trial; the device went back on its own.
    Reverted {
        failed: String,
        reason: String,
    },
    RolledBack(String),
    Failed(UpdateError),
    /// The server called the job off (the answer to a report said `cancelled`) before the new
    /// version was activated: the device stays on what it ran.
    CalledOff,
}

/// What the server's answer to a report tells the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    CarryOn,
    /// The assignment was called off: stop the job, do not activate.
    CalledOff,
}

impl Answer {
    /// Reads a report's answer; no answer means carry on, as a device that cannot reach the
    /// server keeps the job it has.
    pub fn of(answer: Option<&ReportAnswer>) -> Answer {
        match answer {
            Some(a) if a.state == DeviceState::Cancelled => Answer::CalledOff,
            _ => Answer::CarryOn,
        }
    }
}

/// Why an update failed; its text is the reason the device reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The assignment cannot be what the server meant (a field that does not parse).
    #[error("{0}")]
    BadAssignment(&'static str),
    /// The device VM refused to begin: signature, key, size, downgrade, security counter.
    #[error("refused: {0}")]
    Refused(String),
    /// The bytes could not be fetched.
    #[error("download: {0}")]
    Download(String),
    #[error("write: {0}")]
    Write(String),
    /// What arrived does not match the signed manifest (corrupted on the way).
    #[error("verify: {0}")]
    Verify(String),
    #[error("activate: {0}")]
    Activate(String),
    #[error("staged {staged}, asked to activate {asked}")]
    NotStaged { staged: String, asked: String },
    #[error("trial: {0}")]
    Trial(String),
    /// The device could not start its agent again after a reboot or a rollback.
    #[error("{0}")]
    Restart(String),
}

/// Why a download did not leave a verified image in the inactive slot.
enum Stop {
    Failed(UpdateError),
    CalledOff,
}

impl From<UpdateError> for Stop {
    fn from(e: UpdateError) -> Stop {
        Stop::Failed(e)
    }
}

/// Why a device could not be made at the factory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the factory install failed: {0}")]
pub struct FactoryError(String);

pub struct SimDevice {
    pub id: String,
    /// Its credential, as its registration gave it.
    pub token: String,
    device: Option<Device<Flash>>,
    layout: Layout,
    config: DeviceConfig,
    agent: Option<Agent<RecordingHost>>,
    modules: Modules,
    traps: u32,
    fuel_exhausted: u32,
    self_test_passed: bool,
    pub faults: Faults,
    /// Power cuts survived, and boots that had to recover.
    pub power_cuts: u32,
    /// Downloads resumed where a dropped connection left them.
    pub resumed: u32,
    /// Downloads fetched again after the device VM found the bytes did not match.
    pub refetched: u32,
}

fn host() -> RecordingHost {
    RecordingHost {
        sensors: vec![("temperature".into(), 21.5)],
        ..RecordingHost::default()
    }
}

fn hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    hex::decode(s).ok()?.try_into().ok()
}

/// The signed manifest an assignment hands out: what the device VM checks before it writes a
/// byte.
pub fn signed_manifest(a: &Assignment) -> Result<(Manifest, KeyId, [u8; 64]), UpdateError> {
    use UpdateError::BadAssignment;
    let version =
        Version::parse(&a.version).ok_or(BadAssignment("the version is not major.minor.patch"))?;
    let sha256 = a
        .checksum
        .strip_prefix("sha256:")
        .and_then(hex_array::<32>)
        .ok_or(BadAssignment("the checksum is not sha256:<64 hex digits>"))?;
    let key_id =
        KeyId(hex_array::<8>(&a.key_id).ok_or(BadAssignment("the key id is not 16 hex digits"))?);
    let signature = hex_array::<64>(&a.signature)
        .ok_or(BadAssignment("the signature is not 128 hex digits"))?;
    let size = u32::try_from(a.size).map_err(|_| BadAssignment("the size is over 4 GiB"))?;
    let manifest = Manifest {
        version,
        size,
        sha256,
        security_counter: a.security_counter,
    };
    Ok((manifest, key_id, signature))
}

impl SimDevice {
    /// A device whose flash holds `release`, installed and confirmed as at the factory.
    pub fn factory(
        id: String,
        config: DeviceConfig,
        release: &Release,
        modules: Modules,
    ) -> Result<SimDevice, FactoryError> {
        let fail = |e: &dyn std::fmt::Display| FactoryError(e.to_string());
        let layout =
            Layout::new(SECTOR, DEFAULT_SLOT_SIZE, 4, CAPACITY as u32).map_err(|e| fail(&e))?;
        let mut device = Device::boot(Flash::new(CAPACITY), layout, config.clone())
            .map_err(|f| fail(&f.error))?;
        device
            .begin_update(release.manifest, release.key_id, release.signature)
            .map_err(|e| fail(&e))?;
        device
            .write_chunk(0, &release.image)
            .map_err(|e| fail(&e))?;
        device.finish_download(0).map_err(|e| fail(&e))?;
        device.activate().map_err(|e| fail(&e))?;
        let mut running = None;
        let outcome = device
            .run_trial(|image| {
                modules
                    .trial(image)
                    .map(|a| running = Some(a))
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| fail(&e))?;
        if !matches!(outcome, TrialOutcome::Confirmed { .. }) {
            return Err(FactoryError(format!(
                "the factory agent failed its trial: {outcome:?}"
            )));
        }
        Ok(SimDevice {
            id,
            token: String::new(),
            device: Some(device),
            layout,
            config,
            agent: running,
            modules,
            traps: 0,
            fuel_exhausted: 0,
            self_test_passed: true,
            faults: Faults::default(),
            power_cuts: 0,
            resumed: 0,
            refetched: 0,
        })
    }

    fn device(&mut self) -> &mut Device<Flash> {
        self.device.as_mut().expect("a device is always booted")
    }

    /// The version the active slot runs.
    pub fn version(&self) -> String {
        self.device
            .as_ref()
            .and_then(|d| d.active())
            .map_or_else(String::new, |(_, h)| h.manifest.version.to_string())
    }

    /// Runs the agent `steps` times on the simulated sensor; traps and fuel exhaustion count
    /// against its health.
    pub fn run_agent(&mut self, steps: u32) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        for _ in 0..steps {
            match agent.step() {
                Ok(()) => {}
                Err(AgentError::OutOfFuel { .. }) => self.fuel_exhausted += 1,
                Err(_) => self.traps += 1,
            }
        }
    }

    /// What the device says at check-in.
    pub fn check_in(&self) -> CheckIn {
        let slots = match &self.device {
            None => vec![],
            Some(d) => {
                let active = d.active().map(|(s, _)| s);
                [Slot::A, Slot::B]
                    .into_iter()
                    .map(|slot| SlotInfo {
                        slot: if slot == Slot::A { "a" } else { "b" }.into(),
                        version: None,
                        checksum: None,
                        state: if Some(slot) == active {
                            "active"
                        } else {
                            "inactive"
                        }
                        .into(),
                    })
                    .collect()
            }
        };
        CheckIn {
            firmware_version: Some(self.version()),
            slots: Some(slots),
            health: Some(self.health()),
        }
    }

    /// How the device and its agent are: sent at check-in and with the report that ends an
    /// assignment.
    pub fn health(&self) -> Health {
        Health {
            healthy: self.traps == 0 && self.fuel_exhausted == 0 && self.agent.is_some(),
            self_test_passed: self.self_test_passed,
            traps: self.traps,
            fuel_exhausted: self.fuel_exhausted,
            metrics: Default::default(),
        }
    }

    /// Reboots from flash, as after a power cut: the device VM recovers to a valid agent.
    fn power_cycle(&mut self) -> Result<(), UpdateError> {
        let mut flash = self.device.take().expect("booted").into_flash();
        self.power_cuts += 1;
        loop {
            flash.power_cycle();
            match Device::boot(flash, self.layout, self.config.clone()) {
                Ok(device) => {
                    self.device = Some(device);
                    break;
                }
                Err(failure) => flash = failure.flash,
            }
        }
        self.restart_agent()
    }

    fn restart_agent(&mut self) -> Result<(), UpdateError> {
        let image = self
            .device()
            .active_image()
            .map_err(|e| UpdateError::Restart(e.to_string()))?;
        self.agent = Some(
            self.modules
                .start(&image)
                .map_err(|e| UpdateError::Restart(e.to_string()))?,
        );
        self.traps = 0;
        self.fuel_exhausted = 0;
        Ok(())
    }

    /// Carries out an assignment, reporting each step through `transport`.
    pub async fn work(&mut self, transport: &impl Transport, a: &Assignment) -> Outcome {
        let failing = std::mem::take(&mut self.faults.failing_trial);
        let report = &mut Reporter {
            transport,
            device_id: self.id.clone(),
            token: self.token.clone(),
        };
        match a.mode {
            AssignmentMode::Rollback => self.roll_back(transport, a, report).await,
            // The version was staged by an earlier wave; switch to it and try it.
            AssignmentMode::Activate => match self.device().activate() {
                Ok(v) if v.to_string() == a.version => self.trial(a, report, failing).await,
                Ok(v) => {
                    let _ = self.device().revert();
                    let e = UpdateError::NotStaged {
                        staged: v.to_string(),
                        asked: a.version.clone(),
                    };
                    failed(report, a, e).await
                }
                Err(e) => failed(report, a, UpdateError::Activate(e.to_string())).await,
            },
            AssignmentMode::Install | AssignmentMode::Stage => {
                self.install(transport, a, report, failing).await
            }
        }
    }

    /// Download and verify; then, unless only staging, activate and try.
    async fn install(
        &mut self,
        transport: &impl Transport,
        a: &Assignment,
        report: &mut Reporter<'_, impl Transport>,
        failing: bool,
    ) -> Outcome {
        match self.download(transport, a, report).await {
            Ok(()) => {}
            Err(Stop::Failed(reason)) => return failed(report, a, reason).await,
            Err(Stop::CalledOff) => return Outcome::CalledOff,
        }
        if a.mode == AssignmentMode::Stage {
            return Outcome::Staged(a.version.clone());
        }
        match self.device().activate() {
            Ok(_) => self.trial(a, report, failing).await,
            Err(e) => failed(report, a, UpdateError::Activate(e.to_string())).await,
        }
    }

    async fn roll_back(
        &mut self,
        transport: &impl Transport,
        a: &Assignment,
        report: &mut Reporter<'_, impl Transport>,
    ) -> Outcome {
        if self.version() != a.version {
            match self.device().rollback() {
                Ok(v) if v.to_string() == a.version => {
                    if let Err(reason) = self.restart_agent() {
                        return failed(report, a, reason).await;
                    }
                }
                // The other slot does not hold it: install it like any version.
                _ => return self.install(transport, a, report, false).await,
            }
        }
        let health = self.health();
        report
            .send_many(a, &[(DeviceState::RolledBack, "")], Some(health))
            .await;
        Outcome::RolledBack(a.version.clone())
    }

    /// Tries the activated agent. A simulated trial takes microseconds, so `trial` is reported
    /// together with how it ended, in one request (a real device reports `trial` first: its
    /// trial lasts a watchdog period).
    async fn trial(
        &mut self,
        a: &Assignment,
        report: &mut Reporter<'_, impl Transport>,
        failing: bool,
    ) -> Outcome {
        let modules = self.modules.clone();
        let mut running = None;
        let trial_started = Instant::now();
        let outcome = self.device().run_trial(|image| {
            if failing {
                return Err("injected fault: the agent crashed in its trial".to_string());
            }
            modules
                .trial(image)
                .map(|agent| running = Some(agent))
                .map_err(|e| e.to_string())
        });
        let (state, reason, outcome) = match outcome {
            Ok(TrialOutcome::Confirmed { version }) => {
                self.agent = running;
                self.traps = 0;
                self.fuel_exhausted = 0;
                self.self_test_passed = true;
                let state = if a.mode == AssignmentMode::Rollback {
                    DeviceState::RolledBack
                } else {
                    DeviceState::Confirmed
                };
                (
                    state,
                    String::new(),
                    Outcome::Confirmed(version.to_string()),
                )
            }
            Ok(TrialOutcome::Reverted { reason, .. }) => {
                let _ = self.restart_agent();
                self.self_test_passed = false;
                let reason = format!("trial failed, reverted to {}: {reason}", self.version());
                let outcome = Outcome::Reverted {
                    failed: a.version.clone(),
                    reason: reason.clone(),
                };
                (DeviceState::RolledBack, reason, outcome)
            }
            Err(e) => {
                let e = UpdateError::Trial(e.to_string());
                (DeviceState::Failed, e.to_string(), Outcome::Failed(e))
            }
        };
        // The last report carries the device's health on what it now runs: no check-in needed
        // just to send it.
        let took = trial_started.elapsed();
        let health = self.health();
        report
            .send_timed(
                a,
                &[(DeviceState::Trial, ""), (state, &reason)],
                &[(state, took)],
                Some(health),
            )
            .await;
        outcome
    }

    /// Downloads into the inactive slot and has the device VM verify it; a download that fails
    /// verification (corrupted on the way) is fetched again, up to three times.
    async fn download(
        &mut self,
        transport: &impl Transport,
        a: &Assignment,
        report: &mut Reporter<'_, impl Transport>,
    ) -> Result<(), Stop> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.download_once(transport, a, report).await {
                Err(Stop::Failed(e @ UpdateError::Verify(_))) if tries < 3 => {
                    self.refetched += 1;
                    tracing::debug!(device = %self.id, error = %e, "downloading again");
                }
                other => return other,
            }
        }
    }

    async fn download_once(
        &mut self,
        transport: &impl Transport,
        a: &Assignment,
        report: &mut Reporter<'_, impl Transport>,
    ) -> Result<(), Stop> {
        let (manifest, key_id, signature) = signed_manifest(a)?;
        let size = manifest.size;
        let download_started = Instant::now();
        // The check-in that handed the assignment out is the go-ahead: the download starts at
        // once, and `downloading` is reported with how it ended (a simulated download takes
        // milliseconds), one request instead of two.
        self.device()
            .begin_update(manifest, key_id, signature)
            .map_err(|e| UpdateError::Refused(e.to_string()))?;
        let faults = std::mem::take(&mut self.faults);
        let mut dropped = !faults.drop_connection;
        let mut corrupted = !faults.corrupt_download;
        let mut cut = !faults.power_cut;
        let mut attempts = 0;
        while let Some(offset) = self.device().resume_offset() {
            if offset >= size {
                break;
            }
            attempts += 1;
            if attempts > 20 {
                return Err(UpdateError::Download(format!(
                    "gave up after {attempts} tries at byte {offset}"
                ))
                .into());
            }
            if offset > 0 {
                self.resumed += 1;
            }
            let credential = Credential {
                id: &self.id,
                token: &self.token,
            };
            let bytes = match transport
                .download(credential, &a.url, u64::from(offset))
                .await
            {
                Ok(bytes) => bytes,
                Err(TransportError::Refused { status, message }) => {
                    return Err(UpdateError::Download(format!(
                        "the server answered {status}: {message}"
                    ))
                    .into());
                }
                Err(TransportError::Unreachable(_)) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let mut bytes = bytes;
            if !dropped {
                // The connection drops halfway: only what arrived is written; resume from there.
                bytes.truncate(bytes.len() / 2);
                dropped = true;
            }
            if !corrupted && !bytes.is_empty() {
                let i = bytes.len() / 3;
                bytes[i] ^= 0x40;
                corrupted = true;
            }
            let mut at = offset;
            for chunk in bytes.chunks(CHUNK) {
                if !cut && at > size / 2 {
                    cut = true;
                    self.power_cycle()?;
                    // The download starts over after a reboot.
                    self.device()
                        .begin_update(manifest, key_id, signature)
                        .map_err(|e| UpdateError::Refused(format!("after a power cut: {e}")))?;
                    break;
                }
                self.device()
                    .write_chunk(at, chunk)
                    .map_err(|e| UpdateError::Write(e.to_string()))?;
                at += chunk.len() as u32;
            }
        }
        // Downloading and verification take milliseconds here: their four state changes go in
        // one request, whose answer says whether to go on.
        let started = Instant::now();
        let downloaded = started - download_started;
        match self.device().finish_download(0) {
            Ok(_) => {
                let verified = started.elapsed();
                tracing::trace!(device = %self.id, took = ?verified, "verified");
                let answer = report
                    .send_timed(
                        a,
                        &[
                            (DeviceState::Downloading, ""),
                            (DeviceState::Downloaded, ""),
                            (DeviceState::Verifying, ""),
                            (DeviceState::Installed, ""),
                        ],
                        &[
                            (DeviceState::Downloaded, downloaded),
                            (DeviceState::Installed, verified),
                        ],
                        None,
                    )
                    .await;
                // Called off: the verified image stays in the inactive slot, never activated.
                match answer {
                    Answer::CarryOn => Ok(()),
                    Answer::CalledOff => Err(Stop::CalledOff),
                }
            }
            Err(e) => {
                report
                    .send_many(
                        a,
                        &[
                            (DeviceState::Downloading, ""),
                            (DeviceState::Downloaded, ""),
                            (DeviceState::Verifying, ""),
                        ],
                        None,
                    )
                    .await;
                Err(UpdateError::Verify(e.to_string()).into())
            }
        }
    }
}

/// Reports the assignment failed, for `e`.
async fn failed(
    report: &mut Reporter<'_, impl Transport>,
    a: &Assignment,
    e: UpdateError,
) -> Outcome {
    report.send(a, DeviceState::Failed, &e.to_string()).await;
    Outcome::Failed(e)
}

/// Sends one device's reports through its transport.
/// State changes of assignment `a` that happened together, in order, each with its reason
/// (empty: none); `health` goes with the last.
pub fn reports(
    a: &Assignment,
    states: &[(DeviceState, &str)],
    health: Option<Health>,
) -> Vec<Report> {
    let mut reports: Vec<Report> = states
        .iter()
        .map(|&(state, reason)| Report {
            assignment_id: a.assignment_id,
            state,
            reason: (!reason.is_empty()).then(|| reason.to_string()),
            health: None,
            // Sent back, so that what the device did joins the deployment's trace.
            traceparent: a.traceparent.clone(),
            took_ms: None,
        })
        .collect();
    if let Some(last) = reports.last_mut() {
        last.health = health;
    }
    reports
}

pub(crate) struct Reporter<'t, T> {
    transport: &'t T,
    device_id: String,
    token: String,
}

impl<T: Transport> Reporter<'_, T> {
    /// State changes that happened together, in order, in one request, each with its reason
    /// (empty: none); `health` goes with the last. What the answer to the last says; no answer
    /// (the server could not be reached) means carry on, as a device that cannot reach the
    /// server keeps the job it has.
    async fn send_many(
        &mut self,
        a: &Assignment,
        states: &[(DeviceState, &str)],
        health: Option<Health>,
    ) -> Answer {
        self.send_timed(a, states, &[], health).await
    }

    /// [`send_many`](Self::send_many), each state of `took` with how long the step it ends
    /// took (the download, the verification, the trial).
    async fn send_timed(
        &mut self,
        a: &Assignment,
        states: &[(DeviceState, &str)],
        took: &[(DeviceState, Duration)],
        health: Option<Health>,
    ) -> Answer {
        let mut reports = reports(a, states, health);
        for r in &mut reports {
            r.took_ms = took
                .iter()
                .find(|(state, _)| *state == r.state)
                .map(|(_, d)| d.as_millis() as u64);
        }
        let device = Credential {
            id: &self.device_id,
            token: &self.token,
        };
        let answers = self.transport.report(device, reports).await;
        Answer::of(answers.ok().as_ref().and_then(|a| a.last()))
    }

    /// One state change.
    async fn send(&mut self, a: &Assignment, state: DeviceState, reason: &str) -> Answer {
        self.send_many(a, &[(state, reason)], None).await
    }
}
