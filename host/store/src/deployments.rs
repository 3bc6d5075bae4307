//! Deployments as operators see them: starting one with its plan (waves, one assignment per
//! device and wave, the device locks that keep deployments from overlapping), reading them and
//! their status, and the operator's transitions (pause, resume, cancel, roll back).
//!
//! Every function here runs in one transaction: a state change is on disk, whole, before anyone
//! hears of it.

use std::collections::BTreeMap;

use crate::db::{Row, ToSql, Tx, params};
use hotswap_protocol::deployments::MAX_EXCLUDED_SHOWN;
use hotswap_protocol::{
    AssignmentKind, AssignmentMode, Deployment, DeploymentState, DeploymentStatus, DeviceState,
    Event, Excluded, Gate, Mode, Outcome, RetryPolicy, Spelling, UnixMillis, UnixSeconds,
    WaveStatus,
};

use crate::rollout::begin_rollback;
use crate::{Store, StoreError, decode, decode_json, decode_str};

/// What an operator's transition did: the deployment as it is now, and the devices it handed
/// something to (a resume lets the devices handed out before the pause start), to wake.
#[derive(Debug, Clone)]
pub struct Transitioned {
    pub deployment: Deployment,
    pub handed_out: Vec<String>,
}

/// How far an active deployment is, for the metrics: its wave and its devices by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub id: i64,
    /// 0-based.
    pub current_wave: u32,
    pub waves: u32,
    /// Rollout assignments by state, every wave begun so far.
    pub states: BTreeMap<DeviceState, u32>,
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
    /// Who starts it.
    pub created_by: String,
    /// It waits for an approval before any device is handed anything.
    pub needs_approval: bool,
    /// Targets left out (device, why): outside the version's compatibility.
    pub excluded: Vec<(String, String)>,
    /// The W3C trace context of the request that starts it, when traces are recorded.
    pub traceparent: Option<String>,
}

pub struct NewWave {
    pub name: String,
    pub mode: Mode,
    pub gate: Gate,
    pub max_in_flight: Option<u32>,
    /// Device ids with the version each runs now (where a rollback returns it to).
    pub devices: Vec<(String, String)>,
}

const DEPLOYMENT_COLUMNS: &str = "d.id, d.firmware_id, f.version, d.device_model, d.strategy, d.strategy_config, d.health_policy, d.health_sha256, d.health_config, d.device_timeout, d.max_attempts, d.retry_backoff, d.state, d.current_wave, d.waves, d.reason, d.created_at, d.updated_at, d.created_by, d.trace_parent";

fn deployment_from_row(r: &Row<'_>) -> Result<Deployment, StoreError> {
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
        state: decode(12, &r.get::<String>(12)?)?,
        current_wave: r.get(13)?,
        waves: r.get(14)?,
        reason: r.get(15)?,
        created_at: UnixSeconds(r.get(16)?),
        updated_at: UnixSeconds(r.get(17)?),
        created_by: r.get(18)?,
        traceparent: r.get(19)?,
    })
}

impl Store {
    /// Stores a deployment and its plan, and locks its devices. Refused, with nothing stored,
    /// when one of the devices belongs to another active deployment.
    pub fn create_deployment(&self, d: &NewDeployment) -> Result<i64, StoreError> {
        let tx = self.begin()?;
        let now = self.clock.now();
        let id: i64 = tx.query_row(
            "INSERT INTO deployments (firmware_id, device_model, strategy, strategy_config, health_policy, health_sha256, health_config, device_timeout, max_attempts, retry_backoff, state, waves, created_at, updated_at, created_by, trace_parent)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?13, ?11, ?12, ?12, ?14, ?15) RETURNING id",
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
                now.seconds().0,
                if d.needs_approval {
                    DeploymentState::WaitingForApproval
                } else {
                    DeploymentState::Running
                }
                .as_str(),
                d.created_by,
                d.traceparent
            ],
            |r| r.get(0),
        )?;
        for (i, w) in d.waves.iter().enumerate() {
            let gate = serde_json::to_string(&w.gate).expect("a gate serializes");
            tx.execute(
                "INSERT INTO waves (deployment_id, idx, name, mode, gate, max_in_flight) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, i as u32, w.name, w.mode.to_string(), gate, w.max_in_flight],
            )?;
            let mode = AssignmentMode::from(w.mode).as_str();
            for chunk in w.devices.chunks(ROWS_PER_INSERT) {
                insert_assignments(&tx, id, i as u32, mode, d.firmware_id, now, chunk)?;
                lock_devices(&tx, id, chunk)?;
            }
        }
        for (device, reason) in &d.excluded {
            tx.execute(
                "INSERT INTO deployment_exclusions (deployment_id, device_id, reason) VALUES (?1, ?2, ?3)",
                params![id, device, reason],
            )?;
        }
        let left_out = match d.excluded.len() {
            0 => String::new(),
            n => format!(", {n} targets left out as incompatible"),
        };
        let started = if d.needs_approval {
            format!(
                "started: {} waves{left_out}, waiting for an approval by someone other than {}",
                d.waves.len(),
                d.created_by
            )
        } else {
            format!("started: {} waves{left_out}", d.waves.len())
        };
        event(&tx, id, None, &started, now)?;
        tx.commit()?;
        Ok(id)
    }

    pub fn deployment(&self, id: i64) -> Result<Deployment, StoreError> {
        deployment(&self.reader()?, id)
    }

    /// Whether deployment `id` completed at some point: a rollback asked for afterwards does
    /// not end it a second time. Read from the event [`finish`] writes.
    pub fn completed_once(&self, id: i64) -> Result<bool, StoreError> {
        let completed = format!("{}: %", DeploymentState::Completed);
        Ok(self
            .reader()?
            .query_opt(
                "SELECT 1 FROM events WHERE deployment_id = ?1 AND device_id IS NULL AND message LIKE ?2 LIMIT 1",
                params![id, completed],
                |_| Ok(()),
            )?
            .is_some())
    }

    /// Deployments, newest first.
    pub fn list_deployments(&self, limit: usize) -> Result<Vec<Deployment>, StoreError> {
        self.reader()?.query_map(
            &format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN firmware f ON f.id = d.firmware_id ORDER BY d.id DESC LIMIT ?1"
            ),
            params![limit as i64],
            deployment_from_row,
        )
    }

    /// Deployments the orchestrator has work for.
    pub fn active_deployments(&self) -> Result<Vec<Deployment>, StoreError> {
        self.reader()?.query_map(
            &format!(
                "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN firmware f ON f.id = d.firmware_id
                 WHERE d.state IN ('waiting-for-approval', 'running', 'paused', 'rolling-back') ORDER BY d.id"
            ),
            params![],
            deployment_from_row,
        )
    }

    /// Every active deployment's progress, in two statements whatever the fleet's size.
    pub fn active_progress(&self) -> Result<Vec<Progress>, StoreError> {
        let mut out: Vec<Progress> = self
            .active_deployments()?
            .into_iter()
            .map(|d| Progress {
                id: d.id,
                current_wave: d.current_wave,
                waves: d.waves,
                states: BTreeMap::new(),
            })
            .collect();
        if out.is_empty() {
            return Ok(out);
        }
        let counts = self.reader()?.query_map(
            &format!(
                "SELECT a.deployment_id, a.state, COUNT(*) FROM assignments a JOIN deployments d ON d.id = a.deployment_id
                 WHERE d.state IN {} AND a.kind = 'rollout'
                 GROUP BY a.deployment_id, a.state",
                crate::firmware::IN_USE
            ),
            params![],
            |r| {
                Ok((
                    r.get::<i64>(0)?,
                    decode::<DeviceState>(1, &r.get::<String>(1)?)?,
                    r.get::<u32>(2)?,
                ))
            },
        )?;
        for (id, state, n) in counts {
            if let Some(p) = out.iter_mut().find(|p| p.id == id) {
                p.states.insert(state, n);
            }
        }
        Ok(out)
    }

    /// Seconds from a wave's start to each of its devices' confirmation of the new version, in
    /// one statement: what the orchestrator times once the wave passed.
    pub fn update_durations(&self, deployment_id: i64, wave: u32) -> Result<Vec<f64>, StoreError> {
        self.reader()?.query_map(
            "SELECT a.updated_at, w.started_at FROM assignments a
             JOIN waves w ON w.deployment_id = a.deployment_id AND w.idx = a.wave
             WHERE a.deployment_id = ?1 AND a.wave = ?2 AND a.kind = 'rollout' AND a.state = 'confirmed'
             AND w.started_at IS NOT NULL",
            params![deployment_id, wave],
            |r| {
                let (confirmed_ms, started_s): (i64, i64) = (r.get(0)?, r.get(1)?);
                Ok((confirmed_ms - started_s * 1000).max(0) as f64 / 1000.0)
            },
        )
    }

    pub fn deployment_status(&self, id: i64) -> Result<DeploymentStatus, StoreError> {
        let conn = self.reader()?;
        let deployment = deployment(&conn, id)?;
        let mut waves = conn.query_map(
            "SELECT idx, name, mode, gate, max_in_flight, started_at, settled_at FROM waves WHERE deployment_id = ?1 ORDER BY idx",
            params![id],
            |r| {
                Ok(WaveStatus {
                    index: r.get(0)?,
                    name: r.get(1)?,
                    mode: decode_str(2, &r.get::<String>(2)?)?,
                    gate: decode_json(3, &r.get::<String>(3)?)?,
                    max_in_flight: r.get(4)?,
                    started_at: r.get::<Option<i64>>(5)?.map(UnixSeconds),
                    settled_at: r.get::<Option<i64>>(6)?.map(UnixSeconds),
                    devices: 0,
                    succeeded: 0,
                    failed: 0,
                    states: BTreeMap::new(),
                })
            },
        )?;
        let mut states = BTreeMap::new();
        let mut rollback = BTreeMap::new();
        {
            let rows = conn.query_map(
                "SELECT kind, wave, state, outcome, COUNT(*) FROM assignments WHERE deployment_id = ?1 GROUP BY kind, wave, state, outcome",
                params![id],
                |r| {
                    let outcome = match r.get::<Option<String>>(3)? {
                        Some(o) => Some(decode::<Outcome>(3, &o)?),
                        None => None,
                    };
                    Ok((
                        decode::<AssignmentKind>(0, &r.get::<String>(0)?)?,
                        r.get::<u32>(1)?,
                        decode::<DeviceState>(2, &r.get::<String>(2)?)?,
                        outcome,
                        r.get::<u32>(4)?,
                    ))
                },
            )?;
            for (kind, wave, state, outcome, n) in rows {
                if kind == AssignmentKind::Rollback {
                    *rollback.entry(state).or_insert(0) += n;
                    continue;
                }
                *states.entry(state).or_insert(0) += n;
                if let Some(w) = waves.get_mut(wave as usize) {
                    w.devices += n;
                    *w.states.entry(state).or_insert(0) += n;
                    match outcome {
                        Some(Outcome::Succeeded) => w.succeeded += n,
                        Some(Outcome::Failed) => w.failed += n,
                        _ => {}
                    }
                }
            }
        }
        let mut recent_events = conn.query_map(
            "SELECT at, device_id, message FROM events WHERE deployment_id = ?1 ORDER BY id DESC LIMIT 20",
            params![id],
            |r| {
                Ok(Event {
                    at: UnixSeconds(r.get(0)?),
                    device_id: r.get(1)?,
                    message: r.get(2)?,
                })
            },
        )?;
        recent_events.reverse();
        let excluded_count: u64 = conn.query_row(
            "SELECT COUNT(*) FROM deployment_exclusions WHERE deployment_id = ?1",
            params![id],
            |r| r.get(0),
        )?;
        let excluded = conn.query_map(
            "SELECT device_id, reason FROM deployment_exclusions WHERE deployment_id = ?1 ORDER BY device_id LIMIT ?2",
            params![id, MAX_EXCLUDED_SHOWN as i64],
            |r| {
                Ok(Excluded {
                    device_id: r.get(0)?,
                    reason: r.get(1)?,
                })
            },
        )?;
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
            excluded_count,
            excluded,
        })
    }

    /// The newest `limit` decisions of a deployment, oldest first.
    /// Moves a deployment from one of `from` to `to` for an operator, with `reason` recorded.
    /// Refused, naming the state it is in, when it is not in one of `from`.
    pub fn transition(
        &self,
        id: i64,
        from: &[DeploymentState],
        to: DeploymentState,
        reason: &str,
    ) -> Result<Transitioned, StoreError> {
        let tx = self.begin()?;
        let d = deployment(&tx, id)?;
        if !from.contains(&d.state) {
            return Err(StoreError::Conflict(format!(
                "deployment {id} is {}, so it cannot become {to}",
                d.state
            )));
        }
        let now = self.clock.now();
        // Devices with something new to do once this is committed.
        let mut wake = Vec::new();
        match to {
            DeploymentState::RollingBack => wake = begin_rollback(&tx, &d, reason, now)?,
            DeploymentState::Cancelled => {
                tx.execute(
                    "UPDATE assignments SET state = 'cancelled', outcome = 'cancelled', updated_at = ?2
                     WHERE deployment_id = ?1 AND outcome IS NULL",
                    params![id, now.0],
                )?;
                finish(&tx, id, DeploymentState::Cancelled, reason, now)?;
            }
            _ => {
                set_state(&tx, id, to, Some(reason), now)?;
                event(&tx, id, None, &format!("{to}: {reason}"), now)?;
                if to == DeploymentState::Running {
                    // Resumed: the devices handed out before the pause may start.
                    wake = tx.query_map(
                        "SELECT device_id FROM assignments WHERE deployment_id = ?1 AND outcome IS NULL AND state = 'assigned'",
                        params![id],
                        |r| r.get::<String>(0),
                    )?;
                }
            }
        }
        let deployment = deployment(&tx, id)?;
        tx.commit()?;
        Ok(Transitioned {
            deployment,
            handed_out: wake,
        })
    }
}

/// Rows one statement inserts when a deployment is stored: a wave of 100,000 devices is 200
/// statements each for its assignments and its device locks, not 100,000 round trips to
/// PostgreSQL. Under both databases' limits on parameters (2 per row, and 5 shared).
pub const ROWS_PER_INSERT: usize = 500;

/// The rollout assignments of `devices` (id, the version it runs) in wave `wave`, pending.
fn insert_assignments(
    tx: &Tx<'_>,
    id: i64,
    wave: u32,
    mode: &str,
    firmware_id: i64,
    now: UnixMillis,
    devices: &[(String, String)],
) -> Result<(), StoreError> {
    let mut sql = String::from(
        "INSERT INTO assignments (deployment_id, kind, wave, device_id, mode, firmware_id, from_version, state, updated_at) VALUES ",
    );
    let mut values: Vec<&dyn ToSql> = vec![&id, &wave, &mode, &firmware_id, &now.0];
    for (k, (device, from)) in devices.iter().enumerate() {
        let n = values.len() + 1;
        let comma = if k == 0 { "" } else { ", " };
        sql.push_str(&format!(
            "{comma}(?1, 'rollout', ?2, ?{n}, ?3, ?4, ?{}, 'pending', ?5)",
            n + 1
        ));
        values.push(device);
        values.push(from);
    }
    tx.execute(&sql, &values)?;
    Ok(())
}

/// Locks `devices` for deployment `id`; refused, naming the first in order, when one is in
/// another active deployment.
fn lock_devices(tx: &Tx<'_>, id: i64, devices: &[(String, String)]) -> Result<(), StoreError> {
    let mut sql = String::from("INSERT INTO device_locks (device_id, deployment_id) VALUES ");
    let mut values: Vec<&dyn ToSql> = vec![&id];
    for (k, (device, _)) in devices.iter().enumerate() {
        let comma = if k == 0 { "" } else { ", " };
        sql.push_str(&format!("{comma}(?{}, ?1)", values.len() + 1));
        values.push(device);
    }
    sql.push_str(" ON CONFLICT (device_id) DO NOTHING RETURNING device_id");
    let locked: std::collections::HashSet<String> = tx
        .query_map(&sql, &values, |r| r.get(0))?
        .into_iter()
        .collect();
    for (device, _) in devices {
        if locked.contains(device) {
            continue;
        }
        let other: i64 = tx.query_row(
            "SELECT deployment_id FROM device_locks WHERE device_id = ?1",
            params![device],
            |r| r.get(0),
        )?;
        if other != id {
            return Err(StoreError::Conflict(format!(
                "device `{device}` is in deployment {other}, which is still active: deployments to the same device never overlap"
            )));
        }
    }
    Ok(())
}

pub(crate) fn deployment(conn: &Tx<'_>, id: i64) -> Result<Deployment, StoreError> {
    conn.query_opt(
        &format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM deployments d JOIN firmware f ON f.id = d.firmware_id WHERE d.id = ?1"
        ),
        params![id],
        deployment_from_row,
    )?
    .ok_or_else(|| StoreError::NotFound(format!("no deployment {id}")))
}

pub(crate) fn event(
    conn: &Tx<'_>,
    deployment_id: i64,
    device_id: Option<&str>,
    message: &str,
    now: UnixMillis,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO events (deployment_id, device_id, message, at) VALUES (?1, ?2, ?3, ?4)",
        params![deployment_id, device_id, message, now.seconds().0],
    )?;
    Ok(())
}

pub(crate) fn set_state(
    conn: &Tx<'_>,
    id: i64,
    state: DeploymentState,
    reason: Option<&str>,
    now: UnixMillis,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET state = ?2, reason = COALESCE(?3, reason), updated_at = ?4 WHERE id = ?1",
        params![id, state.as_str(), reason, now.seconds().0],
    )?;
    Ok(())
}

/// Ends a deployment and frees its devices for the next one.
pub(crate) fn finish(
    conn: &Tx<'_>,
    id: i64,
    state: DeploymentState,
    reason: &str,
    now: UnixMillis,
) -> Result<(), StoreError> {
    set_state(conn, id, state, Some(reason), now)?;
    conn.execute(
        "DELETE FROM device_locks WHERE deployment_id = ?1",
        params![id],
    )?;
    event(conn, id, None, &format!("{state}: {reason}"), now)
}
