//! Running deployments: the plan as waves, one assignment per device and wave, the device locks
//! that keep deployments from overlapping, the health policy's decisions with their inputs, and
//! the events an operator reads.
//!
//! Every function here runs in one transaction: a state change is on disk, whole, before anyone
//! hears of it.

use std::collections::BTreeMap;
use std::io::Read;

use hotswap_plan::health::{HealthSample, Verdict, WaveStats};
use hotswap_plan::{Gate, Mode};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, now_ms};

/// Where a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeploymentState {
    Running,
    Paused,
    Completed,
    RollingBack,
    RolledBack,
    Cancelled,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Running => "running",
            DeploymentState::Paused => "paused",
            DeploymentState::Completed => "completed",
            DeploymentState::RollingBack => "rolling-back",
            DeploymentState::RolledBack => "rolled-back",
            DeploymentState::Cancelled => "cancelled",
        }
    }

    fn parse(s: &str) -> DeploymentState {
        match s {
            "running" => DeploymentState::Running,
            "paused" => DeploymentState::Paused,
            "completed" => DeploymentState::Completed,
            "rolling-back" => DeploymentState::RollingBack,
            "rolled-back" => DeploymentState::RolledBack,
            _ => DeploymentState::Cancelled,
        }
    }

    /// Still holding its devices.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            DeploymentState::Running | DeploymentState::Paused | DeploymentState::RollingBack
        )
    }
}

impl std::fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one device is in one assignment. Devices report the states from `downloading` on; the
/// order of the first eight is the order an update goes through, and a report never moves an
/// assignment backwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceState {
    /// Planned; its wave has not reached it.
    Pending,
    /// Handed out at the device's next check-in.
    Assigned,
    Downloading,
    Downloaded,
    Verifying,
    /// Written and verified in the inactive slot (the end of a `stage`).
    Installed,
    Trial,
    Confirmed,
    /// The device went back to its previous agent: after a failed trial (a failure of the
    /// rollout), or as asked (the success of a rollback).
    RolledBack,
    Failed,
    Cancelled,
}

pub const DEVICE_STATES: [DeviceState; 11] = [
    DeviceState::Pending,
    DeviceState::Assigned,
    DeviceState::Downloading,
    DeviceState::Downloaded,
    DeviceState::Verifying,
    DeviceState::Installed,
    DeviceState::Trial,
    DeviceState::Confirmed,
    DeviceState::RolledBack,
    DeviceState::Failed,
    DeviceState::Cancelled,
];

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Assigned => "assigned",
            DeviceState::Downloading => "downloading",
            DeviceState::Downloaded => "downloaded",
            DeviceState::Verifying => "verifying",
            DeviceState::Installed => "installed",
            DeviceState::Trial => "trial",
            DeviceState::Confirmed => "confirmed",
            DeviceState::RolledBack => "rolled-back",
            DeviceState::Failed => "failed",
            DeviceState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceState> {
        DEVICE_STATES.into_iter().find(|d| d.as_str() == s)
    }

    /// What a device may report.
    pub fn reportable(self) -> bool {
        !matches!(
            self,
            DeviceState::Pending | DeviceState::Assigned | DeviceState::Cancelled
        )
    }
}

/// What an assignment asks of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssignmentMode {
    Install,
    Stage,
    Activate,
    /// Go back to `version`: switch to the other slot when it holds it, install it otherwise.
    Rollback,
}

impl AssignmentMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AssignmentMode::Install => "install",
            AssignmentMode::Stage => "stage",
            AssignmentMode::Activate => "activate",
            AssignmentMode::Rollback => "rollback",
        }
    }

    fn parse(s: &str) -> AssignmentMode {
        match s {
            "stage" => AssignmentMode::Stage,
            "activate" => AssignmentMode::Activate,
            "rollback" => AssignmentMode::Rollback,
            _ => AssignmentMode::Install,
        }
    }

    /// The outcome a report of `state` gives an assignment in this mode, if it ends it.
    fn outcome(self, state: DeviceState) -> Option<Outcome> {
        match (self, state) {
            (_, DeviceState::Failed) => Some(Outcome::Failed),
            (AssignmentMode::Rollback, DeviceState::RolledBack) => Some(Outcome::Succeeded),
            (_, DeviceState::RolledBack) => Some(Outcome::Failed),
            (_, DeviceState::Confirmed) => Some(Outcome::Succeeded),
            (AssignmentMode::Stage, DeviceState::Installed) => Some(Outcome::Succeeded),
            _ => None,
        }
    }
}

impl From<Mode> for AssignmentMode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Install => AssignmentMode::Install,
            Mode::Stage => AssignmentMode::Stage,
            Mode::Activate => AssignmentMode::Activate,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeeded,
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
        }
    }
}

/// How long a device may go without a report, how often it is retried, how long between tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    pub device_timeout_seconds: u32,
    pub max_attempts: u32,
    pub retry_backoff_seconds: u32,
}

/// A deployment to start: the plan resolved to device ids.
pub struct NewDeployment {
    pub firmware_id: i64,
    pub device_model: String,
    pub strategy: String,
    pub strategy_config: String,
    pub health_policy: String,
    /// The uploaded policy's component; `None` for a built-in.
    pub health_sha256: Option<String>,
    pub health_config: String,
    pub retry: RetryPolicy,
    pub waves: Vec<NewWave>,
}

pub struct NewWave {
    pub name: String,
    pub mode: Mode,
    pub gate: Gate,
    pub max_in_flight: Option<u32>,
    /// Device ids with the version each runs now (where a rollback returns it to).
    pub devices: Vec<(String, String)>,
}

/// A deployment as stored.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: i64,
    pub firmware_id: i64,
    pub firmware_version: String,
    pub device_model: String,
    pub strategy: String,
    pub strategy_config: String,
    pub health_policy: String,
    #[serde(skip)]
    pub health_sha256: Option<String>,
    pub health_config: String,
    pub retry: RetryPolicy,
    pub state: DeploymentState,
    pub current_wave: u32,
    pub waves: u32,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const DEPLOYMENT_COLUMNS: &str = "d.id, d.firmware_id, f.version, d.device_model, d.strategy, d.strategy_config, d.health_policy, d.health_sha256, d.health_config, d.device_timeout, d.max_attempts, d.retry_backoff, d.state, d.current_wave, d.waves, d.reason, d.created_at, d.updated_at";

fn deployment_from_row(r: &Row<'_>) -> rusqlite::Result<Deployment> {
    Ok(Deployment {
        id: r.get(0)?,
        firmware_id: r.get(1)?,
        firmware_version: r.get(2)?,
        device_model: r.get(3)?,
        strategy: r.get(4)?,
        strategy_config: r.get(5)?,
        health_policy: r.get(6)?,
        health_sha256: r.get(7)?,
        health_config: r.get(8)?,
        retry: RetryPolicy {
            device_timeout_seconds: r.get(9)?,
            max_attempts: r.get(10)?,
            retry_backoff_seconds: r.get(11)?,
        },
        state: DeploymentState::parse(&r.get::<_, String>(12)?),
        current_wave: r.get(13)?,
        waves: r.get(14)?,
        reason: r.get(15)?,
        created_at: r.get(16)?,
        updated_at: r.get(17)?,
    })
}

/// One wave of a deployment with its devices counted by state.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaveStatus {
    pub index: u32,
    pub name: String,
    pub mode: Mode,
    pub gate: Gate,
    pub max_in_flight: Option<u32>,
    pub started_at: Option<i64>,
    pub settled_at: Option<i64>,
    pub devices: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub states: BTreeMap<DeviceState, u32>,
}

/// A decision a health policy made, with what it was shown.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub id: i64,
    pub wave: u32,
    pub policy: String,
    pub config: String,
    pub stats: WaveStats,
    /// The health samples the policy was shown; left out where asked (a large wave's run to
    /// megabytes per decision).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<Vec<HealthSample>>,
    pub verdict: Verdict,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub message: String,
}

/// What `GET /api/v1/deployments/{id}/status` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    #[serde(flatten)]
    pub deployment: Deployment,
    pub wave_status: Vec<WaveStatus>,
    /// Devices by state over every wave.
    pub states: BTreeMap<DeviceState, u32>,
    /// Rollback assignments by state, once a rollback began.
    pub rollback: BTreeMap<DeviceState, u32>,
    pub recent_events: Vec<Event>,
    pub recent_decisions: Vec<Decision>,
}

/// What a device is asked to do, as its check-in answer carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub assignment_id: i64,
    pub deployment_id: i64,
    pub mode: AssignmentMode,
    pub version: String,
    pub size: u64,
    /// `sha256:<hex>`.
    pub checksum: String,
    pub security_counter: u32,
    pub key_id: String,
    pub signature: String,
    /// Where to download the bytes (HTTP Range supported).
    pub url: String,
    /// The state the server holds for this assignment; a device resuming after a restart starts
    /// from what it knows itself.
    pub state: DeviceState,
    pub attempt: u32,
}

/// What a device says at check-in.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckIn {
    /// The version its active slot runs.
    #[serde(default)]
    pub firmware_version: Option<String>,
    /// Its two slots as the device sees them.
    #[serde(default)]
    pub slots: Option<Vec<SlotInfo>>,
    #[serde(default)]
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotInfo {
    pub slot: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    /// `active`, `inactive`, `trial`, `empty`, `invalid`.
    pub state: String,
}

/// A device's health since its last check-in.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    pub healthy: bool,
    #[serde(default = "yes")]
    pub self_test_passed: bool,
    #[serde(default)]
    pub traps: u32,
    #[serde(default)]
    pub fuel_exhausted: u32,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

fn yes() -> bool {
    true
}

/// A state change a device reports.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    pub assignment_id: i64,
    pub state: DeviceState,
    #[serde(default)]
    pub reason: Option<String>,
    /// How the device is on the version it runs once the assignment ended: carried by a report
    /// that ends it (`confirmed`, `rolled-back`, `failed`), stored as a check-in's health is, so
    /// the device need not check in again just to send it.
    #[serde(default)]
    pub health: Option<Health>,
}

/// What a report did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportAnswer {
    /// False when the report was already known (a retry) or came too late to matter.
    pub applied: bool,
    /// The assignment's state after the report. `cancelled` tells the device its assignment
    /// was called off (the deployment was cancelled or is rolling back): it stops the job and
    /// does not activate what it downloaded.
    pub state: DeviceState,
}

/// What one pass of the orchestrator found for a running deployment's current wave.
pub struct WaveView {
    pub index: u32,
    pub stats: WaveStats,
    /// Empty from [`Store::advance_wave`]; [`Store::wave_samples`] fills it when the wave is
    /// judged.
    pub samples: Vec<HealthSample>,
}

impl Store {
    /// Stores a deployment and its plan, and locks its devices. Refused, with nothing stored,
    /// when one of the devices belongs to another active deployment.
    pub fn create_deployment(&self, d: &NewDeployment) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO deployments (firmware_id, device_model, strategy, strategy_config, health_policy, health_sha256, health_config, device_timeout, max_attempts, retry_backoff, state, waves, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'running', ?11, ?12, ?12)",
            params![
                d.firmware_id,
                d.device_model,
                d.strategy,
                d.strategy_config,
                d.health_policy,
                d.health_sha256,
                d.health_config,
                d.retry.device_timeout_seconds,
                d.retry.max_attempts,
                d.retry.retry_backoff_seconds,
                d.waves.len() as u32,
                now / 1000
            ],
        )?;
        let id = tx.last_insert_rowid();
        {
            let mut wave = tx.prepare(
                "INSERT INTO waves (deployment_id, idx, name, mode, gate, max_in_flight) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut assignment = tx.prepare(
                "INSERT INTO assignments (deployment_id, kind, wave, device_id, mode, firmware_id, from_version, state, updated_at)
                 VALUES (?1, 'rollout', ?2, ?3, ?4, ?5, ?6, 'pending', ?7)",
            )?;
            let mut lock = tx.prepare(
                "INSERT INTO device_locks (device_id, deployment_id) VALUES (?1, ?2) ON CONFLICT (device_id) DO NOTHING",
            )?;
            let mut holder =
                tx.prepare("SELECT deployment_id FROM device_locks WHERE device_id = ?1")?;
            for (i, w) in d.waves.iter().enumerate() {
                let gate = serde_json::to_string(&w.gate).expect("a gate serializes");
                wave.execute(params![
                    id,
                    i as u32,
                    w.name,
                    w.mode.to_string(),
                    gate,
                    w.max_in_flight
                ])?;
                for (device, from) in &w.devices {
                    assignment.execute(params![
                        id,
                        i as u32,
                        device,
                        AssignmentMode::from(w.mode).as_str(),
                        d.firmware_id,
                        from,
                        now
                    ])?;
                    if lock.execute(params![device, id])? == 0 {
                        let other: i64 = holder.query_row([device], |r| r.get(0))?;
                        if other != id {
                            return Err(StoreError::Conflict(format!(
                                "device `{device}` is in deployment {other}, which is still active: deployments to the same device never overlap"
                            )));
                        }
                    }
                }
            }
        }
        event(
            &tx,
            id,
            None,
            &format!("started: {} waves", d.waves.len()),
            now,
        )?;
        tx.commit()?;
        Ok(id)
    }

    pub fn deployment(&self, id: i64) -> Result<Deployment, StoreError> {
        deployment(&self.conn(), id)
    }

    /// Deployments, newest first.
    pub fn list_deployments(&self, limit: usize) -> Result<Vec<Deployment>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN firmware f ON f.id = d.firmware_id ORDER BY d.id DESC LIMIT ?1"
        ))?;
        let rows = stmt.query_map([limit as i64], deployment_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deployments the orchestrator has work for.
    pub fn active_deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN firmware f ON f.id = d.firmware_id
             WHERE d.state IN ('running', 'paused', 'rolling-back') ORDER BY d.id"
        ))?;
        let rows = stmt.query_map([], deployment_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn deployment_status(&self, id: i64) -> Result<DeploymentStatus, StoreError> {
        let conn = self.conn();
        let deployment = deployment(&conn, id)?;
        let mut waves = Vec::new();
        {
            let mut stmt = conn.prepare(
                "SELECT idx, name, mode, gate, max_in_flight, started_at, settled_at FROM waves WHERE deployment_id = ?1 ORDER BY idx",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok(WaveStatus {
                    index: r.get(0)?,
                    name: r.get(1)?,
                    mode: parse_mode(&r.get::<_, String>(2)?),
                    gate: serde_json::from_str(&r.get::<_, String>(3)?).unwrap_or(Gate {
                        soak_seconds: 0,
                        min_success_percent: 0,
                        failure_budget: 0,
                        min_sample: 1,
                    }),
                    max_in_flight: r.get(4)?,
                    started_at: r.get(5)?,
                    settled_at: r.get(6)?,
                    devices: 0,
                    succeeded: 0,
                    failed: 0,
                    states: BTreeMap::new(),
                })
            })?;
            for w in rows {
                waves.push(w?);
            }
        }
        let mut states = BTreeMap::new();
        let mut rollback = BTreeMap::new();
        {
            let mut stmt = conn.prepare(
                "SELECT kind, wave, state, outcome, COUNT(*) FROM assignments WHERE deployment_id = ?1 GROUP BY kind, wave, state, outcome",
            )?;
            let mut rows = stmt.query([id])?;
            while let Some(r) = rows.next()? {
                let kind: String = r.get(0)?;
                let wave: u32 = r.get(1)?;
                let state =
                    DeviceState::parse(&r.get::<_, String>(2)?).unwrap_or(DeviceState::Pending);
                let outcome: Option<String> = r.get(3)?;
                let n: u32 = r.get(4)?;
                if kind == "rollback" {
                    *rollback.entry(state).or_insert(0) += n;
                    continue;
                }
                *states.entry(state).or_insert(0) += n;
                if let Some(w) = waves.get_mut(wave as usize) {
                    w.devices += n;
                    *w.states.entry(state).or_insert(0) += n;
                    match outcome.as_deref() {
                        Some("succeeded") => w.succeeded += n,
                        Some("failed") => w.failed += n,
                        _ => {}
                    }
                }
            }
        }
        let recent_events = {
            let mut stmt = conn.prepare(
                "SELECT at, device_id, message FROM events WHERE deployment_id = ?1 ORDER BY id DESC LIMIT 20",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok(Event {
                    at: r.get(0)?,
                    device_id: r.get(1)?,
                    message: r.get(2)?,
                })
            })?;
            let mut events: Vec<Event> = rows.collect::<Result<_, _>>()?;
            events.reverse();
            events
        };
        drop(conn);
        // Without their samples: a status is read often, and a large wave's samples are
        // megabytes per decision (`/decisions` has them).
        let recent_decisions = self.decisions(id, 10, false)?;
        Ok(DeploymentStatus {
            deployment,
            wave_status: waves,
            states,
            rollback,
            recent_events,
            recent_decisions,
        })
    }

    /// The newest `limit` decisions of a deployment, oldest first.
    pub fn decisions(
        &self,
        id: i64,
        limit: usize,
        with_samples: bool,
    ) -> Result<Vec<Decision>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT id, wave, policy, config, stats, CASE WHEN ?3 THEN samples END, verdict, at FROM decisions WHERE deployment_id = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![id, limit as i64, with_samples], |r| {
            let json = |i: usize| -> rusqlite::Result<String> { r.get(i) };
            let bad = |i: usize, e: serde_json::Error| {
                rusqlite::Error::FromSqlConversionFailure(
                    i,
                    rusqlite::types::Type::Text,
                    Box::new(e),
                )
            };
            Ok(Decision {
                id: r.get(0)?,
                wave: r.get(1)?,
                policy: r.get(2)?,
                config: r.get(3)?,
                stats: serde_json::from_str(&json(4)?).map_err(|e| bad(4, e))?,
                samples: samples_from(r.get_ref(5)?)?,
                verdict: serde_json::from_str(&json(6)?).map_err(|e| bad(6, e))?,
                at: r.get(7)?,
            })
        })?;
        let mut decisions: Vec<Decision> = rows.collect::<Result<_, _>>()?;
        decisions.reverse();
        Ok(decisions)
    }

    /// Moves a deployment from one of `from` to `to` for an operator, with `reason` recorded.
    /// Refused, naming the state it is in, when it is not in one of `from`.
    pub fn transition(
        &self,
        id: i64,
        from: &[DeploymentState],
        to: DeploymentState,
        reason: &str,
    ) -> Result<Deployment, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let d = deployment(&tx, id)?;
        if !from.contains(&d.state) {
            return Err(StoreError::Conflict(format!(
                "deployment {id} is {}, so it cannot become {to}",
                d.state
            )));
        }
        let now = now_ms();
        // Devices with something new to do once this is committed.
        let mut wake = Vec::new();
        match to {
            DeploymentState::RollingBack => wake = begin_rollback(&tx, &d, reason, now)?,
            DeploymentState::Cancelled => {
                tx.execute(
                    "UPDATE assignments SET state = 'cancelled', outcome = 'cancelled', updated_at = ?2
                     WHERE deployment_id = ?1 AND outcome IS NULL",
                    params![id, now],
                )?;
                finish(&tx, id, DeploymentState::Cancelled, reason, now)?;
            }
            _ => {
                set_state(&tx, id, to, Some(reason), now)?;
                event(&tx, id, None, &format!("{to}: {reason}"), now)?;
                if to == DeploymentState::Running {
                    // Resumed: the devices handed out before the pause may start.
                    let mut stmt = tx.prepare(
                        "SELECT device_id FROM assignments WHERE deployment_id = ?1 AND outcome IS NULL AND state = 'assigned'",
                    )?;
                    let rows = stmt.query_map([id], |r| r.get::<_, String>(0))?;
                    wake = rows.collect::<Result<_, _>>()?;
                }
            }
        }
        tx.commit()?;
        self.doorbell.ring(wake.iter().map(String::as_str));
        deployment(&conn, id)
    }

    /// Gives up on devices past their deadline: another try after a backoff that doubles each
    /// time, or, after the last try, the device fails this deployment and is quarantined.
    /// Returns how many assignments timed out.
    pub fn expire(&self, d: &Deployment, now: i64) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let expired: Vec<(i64, String, u32, String, String)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, device_id, attempts, state, kind FROM assignments
                 WHERE deployment_id = ?1 AND outcome IS NULL AND deadline IS NOT NULL AND deadline < ?2",
            )?;
            let rows = stmt.query_map(params![d.id, now], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let timeout = i64::from(d.retry.device_timeout_seconds) * 1000;
        // Devices tried again after a backoff: rung when it ends, should they wait meanwhile.
        let mut retried = Vec::new();
        for (id, device, attempts, state, kind) in &expired {
            let attempts = attempts + 1;
            // A device still trying the new version when the rollback began is not asked
            // again: what it runs is unknown, so it is quarantined for the operator to look at.
            let abandoned = kind == "rollout" && d.state == DeploymentState::RollingBack;
            if abandoned || attempts >= d.retry.max_attempts {
                let reason = if abandoned {
                    format!(
                        "no report for {} s during the rollback (last state {state}): what it runs is unknown",
                        d.retry.device_timeout_seconds
                    )
                } else {
                    format!(
                        "no report for {} s, {attempts} times (last state {state})",
                        d.retry.device_timeout_seconds
                    )
                };
                tx.execute(
                    "UPDATE assignments SET state = 'failed', outcome = 'failed', attempts = ?2, reason = ?3, deadline = NULL, updated_at = ?4 WHERE id = ?1",
                    params![id, attempts, reason, now],
                )?;
                tx.execute(
                    "UPDATE devices SET status = 'quarantined' WHERE device_id = ?1",
                    [device],
                )?;
                event(
                    &tx,
                    d.id,
                    Some(device),
                    &format!("quarantined: {reason}"),
                    now,
                )?;
            } else {
                let backoff =
                    (i64::from(d.retry.retry_backoff_seconds) * 1000) << (attempts - 1).min(16);
                retried.push((device.as_str(), now + backoff));
                tx.execute(
                    "UPDATE assignments SET state = 'assigned', attempts = ?2, not_before = ?3, deadline = ?4, updated_at = ?5 WHERE id = ?1",
                    params![id, attempts, now + backoff, now + backoff + timeout, now],
                )?;
                event(
                    &tx,
                    d.id,
                    Some(device),
                    &format!(
                        "no report for {} s (state {state}): try {} of {} in {} s",
                        d.retry.device_timeout_seconds,
                        attempts + 1,
                        d.retry.max_attempts,
                        backoff / 1000
                    ),
                    now,
                )?;
            }
        }
        tx.commit()?;
        for (device, at) in retried {
            self.doorbell.ring_at(device, at);
        }
        Ok(expired.len())
    }

    /// Starts the deployment's current wave if it has not started, and hands out as many of its
    /// devices as `maxInFlight` allows; then counts the wave for the health policy (its health
    /// samples are read only when it is judged: [`Store::wave_samples`]).
    pub fn advance_wave(&self, d: &Deployment, now: i64) -> Result<WaveView, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let wave = d.current_wave;
        let (mode, gate, max_in_flight, started_at, settled_at): (
            String,
            String,
            Option<u32>,
            Option<i64>,
            Option<i64>,
        ) = tx.query_row(
            "SELECT mode, gate, max_in_flight, started_at, settled_at FROM waves WHERE deployment_id = ?1 AND idx = ?2",
            params![d.id, wave],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )?;
        let started_at = match started_at {
            Some(t) => t,
            None => {
                tx.execute(
                    "UPDATE waves SET started_at = ?3 WHERE deployment_id = ?1 AND idx = ?2",
                    params![d.id, wave, now / 1000],
                )?;
                event(&tx, d.id, None, &format!("wave {} started", wave + 1), now)?;
                now / 1000
            }
        };
        let timeout = i64::from(d.retry.device_timeout_seconds) * 1000;
        // Devices given their assignment now: rung after the commit.
        let mut handed_out: Vec<String> = Vec::new();
        if d.state == DeploymentState::Running {
            let room = match max_in_flight {
                None => i64::MAX,
                Some(max) => {
                    let in_flight: u32 = tx.prepare_cached(
                        "SELECT COUNT(*) FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout' AND wave = ?2 AND state != 'pending' AND outcome IS NULL",
                    )?
                    .query_row(params![d.id, wave], |r| r.get(0))?;
                    i64::from(max.saturating_sub(in_flight))
                }
            };
            if room > 0 {
                let mut stmt = tx.prepare_cached(
                    "UPDATE assignments SET state = 'assigned', deadline = ?4, updated_at = ?5
                     WHERE id IN (SELECT id FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout' AND wave = ?2 AND state = 'pending' ORDER BY id LIMIT ?3)
                     RETURNING device_id",
                )?;
                let rows = stmt.query_map(params![d.id, wave, room, now + timeout, now], |r| {
                    r.get::<_, String>(0)
                })?;
                handed_out = rows.collect::<Result<_, _>>()?;
            }
        }
        // The wave's counts and the deployment's, in one pass over the index.
        let (targeted, succeeded, failed, all, all_succeeded, all_failed): (
            u32,
            u32,
            u32,
            u32,
            u32,
            u32,
        ) = tx
            .prepare_cached(
                "SELECT COALESCE(SUM(wave = ?2), 0), COALESCE(SUM(wave = ?2 AND outcome = 'succeeded'), 0),
                        COALESCE(SUM(wave = ?2 AND outcome = 'failed'), 0), COUNT(*),
                        COALESCE(SUM(outcome = 'succeeded'), 0), COALESCE(SUM(outcome = 'failed'), 0)
                 FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout'",
            )?
            .query_row(params![d.id, wave], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
            })?;
        let in_progress = targeted - succeeded - failed;
        let settled_at = match (in_progress, settled_at) {
            (0, None) => {
                tx.execute(
                    "UPDATE waves SET settled_at = ?3 WHERE deployment_id = ?1 AND idx = ?2",
                    params![d.id, wave, now / 1000],
                )?;
                Some(now / 1000)
            }
            (0, Some(t)) => Some(t),
            _ => None,
        };
        let mode = parse_mode(&mode);
        let gate: Gate = serde_json::from_str(&gate).map_err(|e| {
            StoreError::Conflict(format!("wave {wave} of deployment {}: gate: {e}", d.id))
        })?;
        tx.commit()?;
        self.doorbell.ring(handed_out.iter().map(String::as_str));
        let seconds = |since: i64| u32::try_from((now / 1000 - since).max(0)).unwrap_or(u32::MAX);
        Ok(WaveView {
            index: wave,
            stats: WaveStats {
                wave,
                waves: d.waves,
                mode,
                gate,
                targeted,
                succeeded,
                failed,
                in_progress,
                elapsed_seconds: seconds(started_at),
                settled_seconds: settled_at.map(seconds),
                deployment_targeted: all,
                deployment_succeeded: all_succeeded,
                deployment_failed: all_failed,
            },
            samples: Vec::new(),
        })
    }

    /// The health samples the wave's devices sent from the deployment's version: only what the
    /// new version reported says anything about it.
    pub fn wave_samples(&self, d: &Deployment, wave: u32) -> Result<Vec<HealthSample>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT dv.device_id, dv.health FROM assignments a JOIN devices dv ON dv.device_id = a.device_id
             WHERE a.deployment_id = ?1 AND a.kind = 'rollout' AND a.wave = ?2 AND dv.health IS NOT NULL",
        )?;
        let rows = stmt.query_map(params![d.id, wave], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut samples = Vec::new();
        for row in rows {
            let (device, health) = row?;
            let Ok(stored) = serde_json::from_str::<StoredHealth>(&health) else {
                continue;
            };
            if stored.version.as_deref() == Some(d.firmware_version.as_str()) {
                samples.push(HealthSample {
                    device,
                    healthy: stored.healthy,
                    self_test_passed: stored.self_test_passed,
                    traps: stored.traps,
                    fuel_exhausted: stored.fuel_exhausted,
                    metrics: stored.metrics.into_iter().collect(),
                });
            }
        }
        Ok(samples)
    }

    /// Stores a health policy's decision with its inputs and acts on it: the next wave, the end,
    /// a pause or a rollback. A deployment no longer running (an operator paused it meanwhile)
    /// keeps the decision on record and is left as it is.
    pub fn decide(
        &self,
        d: &Deployment,
        view: &WaveView,
        verdict: &Verdict,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO decisions (deployment_id, wave, policy, config, stats, samples, verdict, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                d.id,
                view.index,
                d.health_policy,
                d.health_config,
                json(&view.stats),
                deflated_json(&view.samples),
                json(verdict),
                now / 1000
            ],
        )?;
        let current = deployment(&tx, d.id)?;
        let mut sent_back = Vec::new();
        if current.state == DeploymentState::Running && current.current_wave == view.index {
            let wave = view.index + 1;
            match verdict {
                Verdict::Wait { .. } => {}
                Verdict::Proceed if wave >= d.waves => {
                    event(&tx, d.id, None, &format!("wave {wave} passed"), now)?;
                    finish(
                        &tx,
                        d.id,
                        DeploymentState::Completed,
                        "every wave passed",
                        now,
                    )?;
                }
                Verdict::Proceed => {
                    tx.execute(
                        "UPDATE deployments SET current_wave = ?2, updated_at = ?3 WHERE id = ?1",
                        params![d.id, wave, now / 1000],
                    )?;
                    event(&tx, d.id, None, &format!("wave {wave} passed"), now)?;
                }
                Verdict::Pause { reason } => {
                    set_state(&tx, d.id, DeploymentState::Paused, Some(reason), now)?;
                    event(&tx, d.id, None, &format!("paused: {reason}"), now)?;
                }
                Verdict::RollBack { reason } => {
                    sent_back = begin_rollback(&tx, &current, reason, now)?;
                }
            }
        }
        tx.commit()?;
        self.doorbell.ring(sent_back.iter().map(String::as_str));
        Ok(())
    }

    /// Ends a rollback once every device sent back has answered. Returns whether it ended.
    pub fn finish_rollback(&self, d: &Deployment, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        // Open: devices being sent back, and devices still trying the new version.
        let (open, failed): (u32, u32) = tx.query_row(
            "SELECT COALESCE(SUM(outcome IS NULL), 0), COALESCE(SUM(kind = 'rollback' AND outcome = 'failed'), 0)
             FROM assignments WHERE deployment_id = ?1",
            [d.id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        if open > 0 {
            return Ok(false);
        }
        let reason = match (failed, d.reason.as_deref()) {
            (0, Some(r)) => r.to_string(),
            (0, None) => "rolled back".to_string(),
            (n, r) => format!(
                "{}; {n} devices could not be sent back",
                r.unwrap_or("rolled back")
            ),
        };
        finish(&tx, d.id, DeploymentState::RolledBack, &reason, now)?;
        tx.commit()?;
        Ok(true)
    }

    /// A device's check-in: what it runs and how it is, recorded; the work it should do next,
    /// if any. Runs inside the store's batched writer.
    pub(crate) fn check_in_tx(
        tx: &Transaction<'_>,
        device_id: &str,
        c: &CheckIn,
        now: i64,
    ) -> Result<Option<Assignment>, StoreError> {
        let slots = c
            .slots
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("slots serialize"));
        type Row = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
            String,
        );
        let stored: Option<Row> = tx
            .prepare_cached(
                "SELECT version, slots, health, last_seen, status FROM devices WHERE device_id = ?1",
            )?
            .query_row([device_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .optional()?;
        let Some((version, stored_slots, stored_health, last_seen, status)) = stored else {
            return Err(StoreError::NotFound(format!(
                "no device `{device_id}`: register it first (POST /api/v1/devices)"
            )));
        };
        // A check-in that tells nothing new (same version, slots and health, seen recently) is
        // not written: idle polls of a large fleet cost a read, not a write.
        let same_health = match (&c.health, stored_health.as_deref()) {
            (None, _) => true,
            (Some(h), Some(json)) => serde_json::from_str::<StoredHealth>(json)
                .is_ok_and(|s| s.same(&c.firmware_version, h)),
            (Some(_), None) => false,
        };
        let news = c.firmware_version.is_some() && c.firmware_version != version
            || slots.is_some() && slots != stored_slots
            || !same_health
            || !matches!(status.as_str(), "online" | "quarantined")
            || last_seen.is_none_or(|t| now / 1000 - t >= LAST_SEEN_REFRESH_SECONDS);
        if news {
            let health = c
                .health
                .as_ref()
                .map(|h| StoredHealth::json(c.firmware_version.clone(), now, h));
            tx.prepare_cached(
                "UPDATE devices SET last_seen = ?2, version = COALESCE(?3, version), slots = COALESCE(?4, slots), health = COALESCE(?5, health),
                 status = CASE WHEN status = 'quarantined' THEN status ELSE 'online' END
                 WHERE device_id = ?1",
            )?
            .execute(params![
                device_id,
                now / 1000,
                c.firmware_version,
                slots,
                health
            ])?;
        }
        Store::assignment_tx(tx, device_id, now)
    }

    /// The assignment a device is to work on now, if any.
    pub(crate) fn assignment_tx(
        tx: &Transaction<'_>,
        device_id: &str,
        now: i64,
    ) -> Result<Option<Assignment>, StoreError> {
        let found = tx
            .prepare_cached(
                "SELECT a.id, a.deployment_id, a.mode, f.version, f.size, f.sha256, f.security_counter, f.key_id, f.signature, a.state, a.attempts
                 FROM assignments a JOIN deployments d ON d.id = a.deployment_id JOIN firmware f ON f.id = a.firmware_id
                 WHERE a.device_id = ?1 AND a.outcome IS NULL AND a.state != 'pending'
                   AND (a.not_before IS NULL OR a.not_before <= ?2)
                   AND (d.state = 'running' OR (d.state = 'rolling-back' AND a.kind = 'rollback')
                        OR (d.state = 'paused' AND a.state != 'assigned'))
                 ORDER BY a.id LIMIT 1",
            )?
            .query_row(params![device_id, now], |r| {
                let sha: String = r.get(5)?;
                Ok(Assignment {
                    assignment_id: r.get(0)?,
                    deployment_id: r.get(1)?,
                    mode: AssignmentMode::parse(&r.get::<_, String>(2)?),
                    version: r.get(3)?,
                    size: r.get(4)?,
                    url: format!("/api/v1/artifacts/{sha}"),
                    checksum: format!("sha256:{sha}"),
                    security_counter: r.get(6)?,
                    key_id: r.get(7)?,
                    signature: r.get(8)?,
                    state: DeviceState::parse(&r.get::<_, String>(9)?)
                        .unwrap_or(DeviceState::Assigned),
                    attempt: r.get::<_, u32>(10)? + 1,
                })
            })
            .optional()?;
        Ok(found)
    }

    /// A device's reports, applied in order, as [`Store::report_tx`] applies each in turn (the
    /// same answers, the same stored result). A run of reports of one assignment that only move
    /// it along (no outcome, reason or health: downloading, downloaded, verifying, ...) is read
    /// once and written once, in the state it ends on; when the report right after the run ends
    /// that assignment (`trial` then `confirmed`), its write stands for the run's. An error names
    /// the report (`report 2: ...`).
    pub(crate) fn reports_tx(
        tx: &Transaction<'_>,
        device_id: &str,
        reports: &[Report],
        now: i64,
    ) -> Result<Vec<ReportAnswer>, StoreError> {
        let mut answers = Vec::with_capacity(reports.len());
        let mut i = 0;
        while i < reports.len() {
            let id = reports[i].assignment_id;
            let run = reports[i..]
                .iter()
                .take_while(|r| {
                    r.assignment_id == id
                        && r.reason.is_none()
                        && r.health.is_none()
                        && r.state.reportable()
                })
                .count();
            let next = reports.get(i + run).filter(|r| r.assignment_id == id);
            if (run >= 2 || run == 1 && next.is_some())
                && let Some(moved) =
                    Store::move_along_tx(tx, device_id, &reports[i..i + run], next, now)?
            {
                answers.extend(moved);
                i += run;
                continue;
            }
            answers.push(
                Store::report_tx(tx, device_id, &reports[i], now)
                    .map_err(|e| e.prefixed(&format!("report {i}")))?,
            );
            i += 1;
        }
        Ok(answers)
    }

    /// Applies `run`, reports of one assignment, in memory from one read, and writes the state
    /// it ends on, unless `next` ends the assignment (its write sets the state, deadline and
    /// time the run's would). `None` when a report of the run could end the assignment or the
    /// assignment is not open: the caller applies them one by one, which says why.
    fn move_along_tx(
        tx: &Transaction<'_>,
        device_id: &str,
        run: &[Report],
        next: Option<&Report>,
        now: i64,
    ) -> Result<Option<Vec<ReportAnswer>>, StoreError> {
        let row: Option<(String, Option<String>, String, i64)> = tx
            .prepare_cached(
                "SELECT a.state, a.outcome, a.mode, d.device_timeout
                 FROM assignments a JOIN deployments d ON d.id = a.deployment_id
                 WHERE a.id = ?1 AND a.device_id = ?2",
            )?
            .query_row(params![run[0].assignment_id, device_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((state, outcome, mode, timeout)) = row else {
            return Ok(None);
        };
        let mode = AssignmentMode::parse(&mode);
        let start = DeviceState::parse(&state).unwrap_or(DeviceState::Pending);
        if outcome.is_some()
            || start == DeviceState::Pending
            || run.iter().any(|r| mode.outcome(r.state).is_some())
        {
            return Ok(None);
        }
        let mut current = start;
        let answers = run
            .iter()
            .map(|r| {
                if r.state > current {
                    current = r.state;
                    ReportAnswer {
                        applied: true,
                        state: r.state,
                    }
                } else {
                    ReportAnswer {
                        applied: false,
                        state: current,
                    }
                }
            })
            .collect();
        let overwritten = next.is_some_and(|n| mode.outcome(n.state).is_some());
        if current != start && !overwritten {
            tx.prepare_cached(
                "UPDATE assignments SET state = ?2, deadline = ?3, updated_at = ?4 WHERE id = ?1",
            )?
            .execute(params![
                run[0].assignment_id,
                current.as_str(),
                now + timeout * 1000,
                now
            ])?;
        }
        Ok(Some(answers))
    }

    /// Applies a device's report. A report the assignment has already gone past changes nothing,
    /// so a retried report is harmless. Runs inside the store's batched writer.
    pub(crate) fn report_tx(
        tx: &Transaction<'_>,
        device_id: &str,
        r: &Report,
        now: i64,
    ) -> Result<ReportAnswer, StoreError> {
        if !r.state.reportable() {
            return Err(StoreError::Invalid(format!(
                "a device cannot report `{}`; it reports downloading, downloaded, verifying, installed, trial, confirmed, rolled-back or failed",
                r.state.as_str()
            )));
        }
        let row = tx
            .prepare_cached(
                "SELECT a.deployment_id, a.kind, a.mode, a.state, a.outcome, d.state, d.device_timeout, f.version, a.from_version, a.wave
                 FROM assignments a JOIN deployments d ON d.id = a.deployment_id JOIN firmware f ON f.id = a.firmware_id
                 WHERE a.id = ?1 AND a.device_id = ?2",
            )?
            .query_row(params![r.assignment_id, device_id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, String>(7)?,
                    row.get::<_, String>(8)?,
                    row.get::<_, u32>(9)?,
                ))
            })
            .optional()?;
        let Some((
            deployment_id,
            kind,
            mode,
            state,
            outcome,
            d_state,
            timeout,
            version,
            from,
            wave,
        )) = row
        else {
            return Err(StoreError::NotFound(format!(
                "no assignment {} for device `{device_id}`",
                r.assignment_id
            )));
        };
        let current = DeviceState::parse(&state).unwrap_or(DeviceState::Pending);
        let unchanged = Ok(ReportAnswer {
            applied: false,
            state: current,
        });
        let rolling_back = d_state == DeploymentState::RollingBack.as_str();
        if outcome.is_some() {
            // A device that confirmed the new version after its assignment was called off (it
            // did not stop when told) runs it: the inventory says so, and while the deployment
            // is rolling back the device is sent back too.
            if kind == "rollout"
                && r.state == DeviceState::Confirmed
                && AssignmentMode::parse(&mode) != AssignmentMode::Stage
            {
                let changed = tx
                    .prepare_cached(
                        "UPDATE devices SET version = ?2 WHERE device_id = ?1 AND version IS NOT ?2",
                    )?
                    .execute(params![device_id, version])?;
                if rolling_back {
                    send_back(tx, deployment_id, device_id, &from, wave, now)?;
                } else if changed > 0 {
                    event(
                        tx,
                        deployment_id,
                        Some(device_id),
                        &format!(
                            "confirmed {version} after its assignment was called off: it runs {version}"
                        ),
                        now,
                    )?;
                }
            }
            return unchanged;
        }
        if current == DeviceState::Pending {
            return Err(StoreError::Conflict(format!(
                "assignment {} has not been handed out yet",
                r.assignment_id
            )));
        }
        let mode = AssignmentMode::parse(&mode);
        let ends = mode.outcome(r.state);
        if r.health.is_some() && ends.is_none() {
            return Err(StoreError::Invalid(format!(
                "`health` comes with a report that ends the assignment (confirmed, rolled-back or failed) or with a check-in, not with `{}`",
                r.state.as_str()
            )));
        }
        if ends.is_none() && r.state <= current {
            return unchanged;
        }
        let reason = r.reason.as_deref().map(|s| truncate(s, 500));
        tx.prepare_cached(
            "UPDATE assignments SET state = ?2, outcome = ?3, reason = COALESCE(?4, reason), deadline = ?5, updated_at = ?6 WHERE id = ?1",
        )?
        .execute(params![
            r.assignment_id,
            r.state.as_str(),
            ends.map(Outcome::as_str),
            reason,
            ends.is_none().then_some(now + timeout * 1000),
            now
        ])?;
        // The device's row, once: the version it took, and the health it sent with the report.
        let took = ends == Some(Outcome::Succeeded) && mode != AssignmentMode::Stage;
        let health = r.health.as_ref().zip(ends).map(|(h, outcome)| {
            // The version it runs now: the new one when it took it, else the one it kept (not
            // known here when going back failed).
            let runs = match (outcome, mode) {
                (Outcome::Succeeded, AssignmentMode::Stage) => Some(&from),
                (Outcome::Succeeded, _) => Some(&version),
                (_, AssignmentMode::Rollback) => None,
                _ => Some(&from),
            };
            StoredHealth::json(runs.cloned(), now, h)
        });
        if took || health.is_some() {
            tx.prepare_cached(
                "UPDATE devices SET version = COALESCE(?2, version), health = COALESCE(?3, health),
                 last_seen = CASE WHEN ?3 IS NULL THEN last_seen ELSE ?4 END
                 WHERE device_id = ?1",
            )?
            .execute(params![
                device_id,
                took.then_some(&version),
                health,
                now / 1000
            ])?;
        }
        match ends {
            // It had installed the new version before the rollback began, and kept it.
            Some(Outcome::Succeeded) if took && kind == "rollout" && rolling_back => {
                send_back(tx, deployment_id, device_id, &from, wave, now)?;
            }
            Some(Outcome::Failed) => {
                let why = reason.as_deref().unwrap_or("no reason given");
                event(
                    tx,
                    deployment_id,
                    Some(device_id),
                    &format!("{} {version}: {}: {why}", mode.as_str(), r.state.as_str()),
                    now,
                )?;
            }
            _ => {}
        }
        Ok(ReportAnswer {
            applied: true,
            state: r.state,
        })
    }
}

/// A check-in that changes nothing but the time writes `last_seen` at most this often, in
/// seconds: a device's `lastSeen` is accurate to this much.
pub const LAST_SEEN_REFRESH_SECONDS: i64 = 30;

/// What a device's health is stored as: the check-in's numbers and the version that gave them,
/// in one JSON object (`{"version", "at", "healthy", "selfTestPassed", ...}`). Its fields are
/// spelled out rather than `#[serde(flatten)]`ed from [`Health`]: the orchestrator reads a
/// whole wave's of them each time it judges, and flattening buffers every field first.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredHealth {
    version: Option<String>,
    at: i64,
    healthy: bool,
    #[serde(default = "yes")]
    self_test_passed: bool,
    #[serde(default)]
    traps: u32,
    #[serde(default)]
    fuel_exhausted: u32,
    #[serde(default)]
    metrics: BTreeMap<String, f64>,
}

impl StoredHealth {
    /// The stored form of `health` sent from `version` at `now` (milliseconds).
    fn json(version: Option<String>, now: i64, health: &Health) -> String {
        serde_json::to_string(&StoredHealth {
            version,
            at: now / 1000,
            healthy: health.healthy,
            self_test_passed: health.self_test_passed,
            traps: health.traps,
            fuel_exhausted: health.fuel_exhausted,
            metrics: health.metrics.clone(),
        })
        .expect("health serializes")
    }

    /// Whether it says what `health` from `version` says.
    fn same(&self, version: &Option<String>, health: &Health) -> bool {
        self.version == *version
            && self.healthy == health.healthy
            && self.self_test_passed == health.self_test_passed
            && self.traps == health.traps
            && self.fuel_exhausted == health.fuel_exhausted
            && self.metrics == health.metrics
    }
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn parse_mode(s: &str) -> Mode {
    match s {
        "stage" => Mode::Stage,
        "activate" => Mode::Activate,
        _ => Mode::Install,
    }
}

fn deployment(conn: &Connection, id: i64) -> Result<Deployment, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN firmware f ON f.id = d.firmware_id WHERE d.id = ?1"
        ),
        [id],
        deployment_from_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no deployment {id}")))
}

fn event(
    conn: &Connection,
    deployment_id: i64,
    device_id: Option<&str>,
    message: &str,
    now: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (deployment_id, device_id, message, at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![deployment_id, device_id, message, now / 1000])?;
    Ok(())
}

fn set_state(
    conn: &Connection,
    id: i64,
    state: DeploymentState,
    reason: Option<&str>,
    now: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET state = ?2, reason = COALESCE(?3, reason), updated_at = ?4 WHERE id = ?1",
        params![id, state.as_str(), reason, now / 1000],
    )?;
    Ok(())
}

/// Ends a deployment and frees its devices for the next one.
fn finish(
    conn: &Connection,
    id: i64,
    state: DeploymentState,
    reason: &str,
    now: i64,
) -> Result<(), StoreError> {
    set_state(conn, id, state, Some(reason), now)?;
    conn.execute("DELETE FROM device_locks WHERE deployment_id = ?1", [id])?;
    event(conn, id, None, &format!("{state}: {reason}"), now)
}

/// Calls the rollout off: devices that have not installed the new version yet are cancelled
/// (a device learns it from the answer to its next report and stops), and every device that
/// took the new version is given its previous version back. Devices that already installed it
/// (`installed`, about to try it, or in `trial`) cannot be stopped: they stay open, and each is
/// sent back when it confirms ([`Store::report_tx`]); the rollback ends only once they are done.
/// Returns the devices sent back, to ring once this is committed.
fn begin_rollback(
    tx: &Transaction<'_>,
    d: &Deployment,
    reason: &str,
    now: i64,
) -> Result<Vec<String>, StoreError> {
    tx.execute(
        "UPDATE assignments SET state = 'cancelled', outcome = 'cancelled', deadline = NULL, updated_at = ?2
         WHERE deployment_id = ?1 AND kind = 'rollout' AND outcome IS NULL AND state NOT IN ('installed', 'trial')",
        params![d.id, now],
    )?;
    let trying: u32 = tx.query_row(
        "SELECT COUNT(*) FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout' AND outcome IS NULL",
        [d.id],
        |r| r.get(0),
    )?;
    let took: Vec<(String, String, u32)> = {
        let mut stmt = tx.prepare(
            "SELECT device_id, from_version, wave FROM assignments
             WHERE deployment_id = ?1 AND kind = 'rollout' AND mode != 'stage'
               AND outcome = 'succeeded'",
        )?;
        let rows = stmt.query_map([d.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<Result<_, _>>()?
    };
    for (device, from, wave) in &took {
        send_back(tx, d.id, device, from, *wave, now)?;
    }
    set_state(tx, d.id, DeploymentState::RollingBack, Some(reason), now)?;
    event(
        tx,
        d.id,
        None,
        &format!(
            "rolling back: {reason}; {}{}",
            match took.len() {
                0 => "no device kept the new version, so none is sent back".to_string(),
                n => format!(
                    "{n} devices kept the new version and are sent back to their previous one"
                ),
            },
            match trying {
                0 => String::new(),
                n =>
                    format!("; {n} devices already installed it and are sent back if they keep it"),
            }
        ),
        now,
    )?;
    Ok(took.into_iter().map(|(device, _, _)| device).collect())
}

/// Assigns a device its previous version back (once per device and wave).
fn send_back(
    tx: &Transaction<'_>,
    deployment_id: i64,
    device_id: &str,
    from_version: &str,
    wave: u32,
    now: i64,
) -> Result<(), StoreError> {
    // Called once per device of a rollback: the statements are prepared once.
    let (model, timeout): (String, i64) = tx
        .prepare_cached("SELECT device_model, device_timeout FROM deployments WHERE id = ?1")?
        .query_row([deployment_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let previous: Option<i64> = tx
        .prepare_cached("SELECT id FROM firmware WHERE device_model = ?1 AND version = ?2")?
        .query_row(params![model, from_version], |r| r.get(0))
        .optional()?;
    match previous {
        Some(firmware) => {
            tx.prepare_cached(
                "INSERT INTO assignments (deployment_id, kind, wave, device_id, mode, firmware_id, from_version, state, deadline, updated_at)
                 VALUES (?1, 'rollback', ?2, ?3, 'rollback', ?4, ?5, 'assigned', ?6, ?7) ON CONFLICT DO NOTHING",
            )?
            .execute(params![deployment_id, wave, device_id, firmware, from_version, now + timeout * 1000, now])?;
        }
        None => {
            let current: i64 = tx.query_row(
                "SELECT firmware_id FROM deployments WHERE id = ?1",
                [deployment_id],
                |r| r.get(0),
            )?;
            let reason = format!(
                "its previous version `{from_version}` is not registered for `{model}`, so it cannot be sent back"
            );
            let n = tx.execute(
                "INSERT INTO assignments (deployment_id, kind, wave, device_id, mode, firmware_id, from_version, state, outcome, reason, updated_at)
                 VALUES (?1, 'rollback', ?2, ?3, 'rollback', ?4, ?5, 'failed', 'failed', ?6, ?7) ON CONFLICT DO NOTHING",
                params![deployment_id, wave, device_id, current, from_version, reason, now],
            )?;
            if n > 0 {
                event(tx, deployment_id, Some(device_id), &reason, now)?;
            }
        }
    }
    Ok(())
}

/// A decision's health samples as stored: their JSON, deflated (a wave of 100,000 devices has
/// ~11 MB of it per decision, ~40 times less deflated, as the samples differ in little but the
/// device). Rows stored before hold the JSON text itself; [`Store::decisions`] reads both.
fn deflated_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
    serde_json::to_writer(&mut encoder, value).expect("decision samples serialize");
    encoder.finish().expect("deflating into memory cannot fail")
}

/// A decision's samples as [`deflated_json`] stored them, or as JSON text (rows stored before
/// samples were deflated); `None` when they were not asked for.
fn samples_from(stored: ValueRef<'_>) -> rusqlite::Result<Option<Vec<HealthSample>>> {
    let unreadable = |kind, e: Box<dyn std::error::Error + Send + Sync>| {
        rusqlite::Error::FromSqlConversionFailure(5, kind, e)
    };
    let text = match stored {
        ValueRef::Null => return Ok(None),
        ValueRef::Blob(deflated) => {
            let mut text = Vec::new();
            flate2::read::DeflateDecoder::new(deflated)
                .read_to_end(&mut text)
                .map_err(|e| unreadable(rusqlite::types::Type::Blob, Box::new(e)))?;
            text
        }
        text => text.as_bytes()?.to_vec(),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| unreadable(rusqlite::types::Type::Text, Box::new(e)))
}

/// JSON text for the decision log.
fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("decision inputs serialize")
}

/// One line of a device's history: what a deployment asked of it and how it went.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub deployment_id: i64,
    /// `rollout`, or `rollback` when it was sent back.
    pub kind: String,
    pub mode: AssignmentMode,
    pub version: String,
    pub from_version: String,
    pub state: DeviceState,
    pub attempts: u32,
    pub reason: Option<String>,
    pub updated_at: i64,
}

/// What `GET /api/v1/devices/{id}` shows beyond the registry row.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// The slots as the device last described them.
    pub slots: Option<Vec<SlotInfo>>,
    /// Its last health report, with the version that sent it.
    pub health: Option<serde_json::Value>,
    /// Newest first, at most 50.
    pub history: Vec<HistoryEntry>,
}

impl Store {
    pub fn inventory(&self, device_id: &str) -> Result<Inventory, StoreError> {
        let conn = self.conn();
        let (slots, health): (Option<String>, Option<String>) = conn
            .query_row(
                "SELECT slots, health FROM devices WHERE device_id = ?1",
                [device_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no device `{device_id}`")))?;
        let mut stmt = conn.prepare(
            "SELECT a.deployment_id, a.kind, a.mode, f.version, a.from_version, a.state, a.attempts, a.reason, a.updated_at
             FROM assignments a JOIN firmware f ON f.id = a.firmware_id
             WHERE a.device_id = ?1 AND a.state != 'pending' ORDER BY a.id DESC LIMIT 50",
        )?;
        let rows = stmt.query_map([device_id], |r| {
            Ok(HistoryEntry {
                deployment_id: r.get(0)?,
                kind: r.get(1)?,
                mode: AssignmentMode::parse(&r.get::<_, String>(2)?),
                version: r.get(3)?,
                from_version: r.get(4)?,
                state: DeviceState::parse(&r.get::<_, String>(5)?).unwrap_or(DeviceState::Pending),
                attempts: r.get(6)?,
                reason: r.get(7)?,
                updated_at: r.get::<_, i64>(8)? / 1000,
            })
        })?;
        Ok(Inventory {
            slots: slots.and_then(|s| serde_json::from_str(&s).ok()),
            health: health.and_then(|h| serde_json::from_str(&h).ok()),
            history: rows.collect::<Result<_, _>>()?,
        })
    }
}
