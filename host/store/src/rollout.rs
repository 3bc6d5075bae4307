//! What the orchestrator does to a running deployment, one call per step of its pass: give up
//! on devices past their deadline, start a wave and hand out its devices, gather a wave's health
//! samples, store a health verdict with its inputs and act on it, end a rollback. Each step is
//! one transaction and tells its caller which devices it handed something to.

use crate::db::{Tx, params};
use hotswap_protocol::{
    AssignmentKind, Deployment, DeploymentState, DeviceState, Gate, HealthSample, Mode, UnixMillis,
    Verdict, WaveStats,
};

use crate::decisions::{deflated_json, json};
use crate::deployments::{deployment, event, finish, set_state};
use crate::reports::StoredHealth;
use crate::{Store, StoreError, decode, decode_json, decode_str};

/// A wave's row as the orchestrator reads it.
struct WaveRow {
    mode: Mode,
    gate: Gate,
    max_in_flight: Option<u32>,
    /// Seconds.
    started_at: Option<i64>,
    /// Seconds.
    settled_at: Option<i64>,
}

/// A wave's devices by outcome, and the deployment's.
struct Counts {
    targeted: u32,
    succeeded: u32,
    failed: u32,
    all: u32,
    all_succeeded: u32,
    all_failed: u32,
}

/// What one pass of the orchestrator found for a running deployment's current wave.
pub struct WaveView {
    pub index: u32,
    pub stats: WaveStats,
    /// Empty from [`Store::advance_wave`]; [`Store::wave_samples`] fills it when the wave is
    /// judged.
    pub samples: Vec<HealthSample>,
    /// The devices this pass handed their assignment to, to wake.
    pub handed_out: Vec<String>,
}

/// What [`Store::expire`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// How many assignments timed out.
    pub count: usize,
    /// The devices tried again, each with when its backoff ends: to wake then, should they be
    /// waiting meanwhile.
    pub retried: Vec<(String, UnixMillis)>,
}

impl Store {
    /// Gives up on devices past their deadline: another try after a backoff that doubles each
    /// time, or, after the last try, the device fails this deployment and is quarantined.
    pub fn expire(&self, d: &Deployment, now: UnixMillis) -> Result<Expired, StoreError> {
        let tx = self.begin_step(d.id, now)?;
        let expired: Vec<(i64, String, u32, DeviceState, AssignmentKind)> = tx.query_map(
            "SELECT id, device_id, attempts, state, kind FROM assignments
             WHERE deployment_id = ?1 AND outcome IS NULL AND deadline IS NOT NULL AND deadline < ?2",
            params![d.id, now.0],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    decode(3, &r.get::<String>(3)?)?,
                    decode(4, &r.get::<String>(4)?)?,
                ))
            },
        )?;
        let timeout = i64::from(d.retry.device_timeout_seconds) * 1000;
        // Devices tried again after a backoff: rung when it ends, should they wait meanwhile.
        let mut retried = Vec::new();
        for (id, device, attempts, state, kind) in &expired {
            let attempts = attempts + 1;
            // A device still trying the new version when the rollback began is not asked
            // again: what it runs is unknown, so it is quarantined for the operator to look at.
            let abandoned =
                *kind == AssignmentKind::Rollout && d.state == DeploymentState::RollingBack;
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
                    params![id, attempts, reason, now.0],
                )?;
                tx.execute(
                    "UPDATE devices SET status = 'quarantined' WHERE device_id = ?1",
                    params![device],
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
                retried.push((device.clone(), now.plus_ms(backoff)));
                tx.execute(
                    "UPDATE assignments SET state = 'assigned', attempts = ?2, not_before = ?3, deadline = ?4, updated_at = ?5 WHERE id = ?1",
                    params![id, attempts, now.0 + backoff, now.0 + backoff + timeout, now.0],
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
        Ok(Expired {
            count: expired.len(),
            retried,
        })
    }

    /// Starts the deployment's current wave if it has not started, and hands out as many of its
    /// devices as `maxInFlight` allows; then counts the wave for the health policy (its health
    /// samples are read only when it is judged: [`Store::wave_samples`]).
    pub fn advance_wave(&self, d: &Deployment, now: UnixMillis) -> Result<WaveView, StoreError> {
        let tx = self.begin_step(d.id, now)?;
        let wave = d.current_wave;
        let row: WaveRow = tx.query_row(
            "SELECT mode, gate, max_in_flight, started_at, settled_at FROM waves WHERE deployment_id = ?1 AND idx = ?2",
            params![d.id, wave],
            |r| {
                Ok(WaveRow {
                    mode: decode_str(0, &r.get::<String>(0)?)?,
                    gate: decode_json(1, &r.get::<String>(1)?)?,
                    max_in_flight: r.get(2)?,
                    started_at: r.get(3)?,
                    settled_at: r.get(4)?,
                })
            },
        )?;
        let WaveRow {
            mode,
            gate,
            max_in_flight,
            started_at,
            settled_at,
        } = row;
        let started_at = match started_at {
            Some(t) => t,
            None => {
                tx.execute(
                    "UPDATE waves SET started_at = ?3 WHERE deployment_id = ?1 AND idx = ?2",
                    params![d.id, wave, now.seconds().0],
                )?;
                event(&tx, d.id, None, &format!("wave {} started", wave + 1), now)?;
                now.seconds().0
            }
        };
        let timeout = i64::from(d.retry.device_timeout_seconds) * 1000;
        // Devices given their assignment now: rung after the commit.
        let mut handed_out: Vec<String> = Vec::new();
        if d.state == DeploymentState::Running {
            let room = match max_in_flight {
                None => i64::MAX,
                Some(max) => {
                    let in_flight: u32 = tx.query_row(
                        "SELECT COUNT(*) FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout' AND wave = ?2 AND state != 'pending' AND outcome IS NULL",
                        params![d.id, wave],
                        |r| r.get(0),
                    )?;
                    i64::from(max.saturating_sub(in_flight))
                }
            };
            if room > 0 {
                handed_out = tx.query_map(
                    "UPDATE assignments SET state = 'assigned', deadline = ?4, updated_at = ?5
                     WHERE id IN (SELECT id FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout' AND wave = ?2 AND state = 'pending' ORDER BY id LIMIT ?3)
                     RETURNING device_id",
                    params![d.id, wave, room, now.0 + timeout, now.0],
                    |r| r.get::<String>(0),
                )?;
            }
        }
        // The wave's counts and the deployment's, in one pass over the index.
        let Counts {
            targeted,
            succeeded,
            failed,
            all,
            all_succeeded,
            all_failed,
        } = tx.query_row(
            "SELECT COALESCE(SUM(CASE WHEN wave = ?2 THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN wave = ?2 AND outcome = 'succeeded' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN wave = ?2 AND outcome = 'failed' THEN 1 ELSE 0 END), 0),
                    COUNT(*),
                    COALESCE(SUM(CASE WHEN outcome = 'succeeded' THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN outcome = 'failed' THEN 1 ELSE 0 END), 0)
             FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout'",
            params![d.id, wave],
            |r| {
                Ok(Counts {
                    targeted: r.get(0)?,
                    succeeded: r.get(1)?,
                    failed: r.get(2)?,
                    all: r.get(3)?,
                    all_succeeded: r.get(4)?,
                    all_failed: r.get(5)?,
                })
            },
        )?;
        let in_progress = targeted - succeeded - failed;
        let settled_at = match (in_progress, settled_at) {
            (0, None) => {
                tx.execute(
                    "UPDATE waves SET settled_at = ?3 WHERE deployment_id = ?1 AND idx = ?2",
                    params![d.id, wave, now.seconds().0],
                )?;
                Some(now.seconds().0)
            }
            (0, Some(t)) => Some(t),
            _ => None,
        };
        tx.commit()?;
        let seconds =
            |since: i64| u32::try_from((now.seconds().0 - since).max(0)).unwrap_or(u32::MAX);
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
            handed_out,
        })
    }

    /// The health samples the wave's devices sent from the deployment's version: only what the
    /// new version reported says anything about it.
    pub fn wave_samples(&self, d: &Deployment, wave: u32) -> Result<Vec<HealthSample>, StoreError> {
        let rows = self.reader()?.query_map(
            "SELECT dv.device_id, dv.health FROM assignments a JOIN devices dv ON dv.device_id = a.device_id
             WHERE a.deployment_id = ?1 AND a.kind = 'rollout' AND a.wave = ?2 AND dv.health IS NOT NULL",
            params![d.id, wave],
            |r| Ok((r.get::<String>(0)?, r.get::<String>(1)?)),
        )?;
        let mut samples = Vec::new();
        for (device, health) in rows {
            let stored: StoredHealth = serde_json::from_str(&health)
                .map_err(|e| StoreError::Corrupt(format!("health of device `{device}`: {e}")))?;
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
    /// keeps the decision on record and is left as it is. Returns the devices a rollback sends
    /// back, to wake.
    pub fn decide(
        &self,
        d: &Deployment,
        view: &WaveView,
        verdict: &Verdict,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.begin_step(d.id, now)?;
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
                now.seconds().0
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
                        params![d.id, wave, now.seconds().0],
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
        Ok(sent_back)
    }

    /// Ends a rollback once every device sent back has answered. Returns whether it ended.
    pub fn finish_rollback(&self, d: &Deployment, now: UnixMillis) -> Result<bool, StoreError> {
        let tx = self.begin_step(d.id, now)?;
        // Open: devices being sent back, and devices still trying the new version.
        let (open, failed): (u32, u32) = tx.query_row(
            "SELECT COALESCE(SUM(CASE WHEN outcome IS NULL THEN 1 ELSE 0 END), 0),
                    COALESCE(SUM(CASE WHEN kind = 'rollback' AND outcome = 'failed' THEN 1 ELSE 0 END), 0)
             FROM assignments WHERE deployment_id = ?1",
            params![d.id],
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
}
/// Calls the rollout off: devices that have not installed the new version yet are cancelled
/// (a device learns it from the answer to its next report and stops), and every device that
/// took the new version is given its previous version back. Devices that already installed it
/// (`installed`, about to try it, or in `trial`) cannot be stopped: they stay open, and each is
/// sent back when it confirms ([`Store::report_tx`]); the rollback ends only once they are done.
/// Returns the devices sent back, to wake once this is committed.
pub(crate) fn begin_rollback(
    tx: &Tx<'_>,
    d: &Deployment,
    reason: &str,
    now: UnixMillis,
) -> Result<Vec<String>, StoreError> {
    tx.execute(
        "UPDATE assignments SET state = 'cancelled', outcome = 'cancelled', deadline = NULL, updated_at = ?2
         WHERE deployment_id = ?1 AND kind = 'rollout' AND outcome IS NULL AND state NOT IN ('installed', 'trial')",
        params![d.id, now.0],
    )?;
    let trying: u32 = tx.query_row(
        "SELECT COUNT(*) FROM assignments WHERE deployment_id = ?1 AND kind = 'rollout' AND outcome IS NULL",
        params![d.id],
        |r| r.get(0),
    )?;
    let took: Vec<(String, String, u32)> = tx.query_map(
        "SELECT device_id, from_version, wave FROM assignments
         WHERE deployment_id = ?1 AND kind = 'rollout' AND mode != 'stage'
           AND outcome = 'succeeded'",
        params![d.id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    // A completed deployment released its devices: those that still run its version and are in
    // no other deployment are taken back and sent back; the others have moved on and are left.
    let mut moved_on = 0;
    let took = if d.state == DeploymentState::Completed {
        let mut kept = Vec::with_capacity(took.len());
        for t in took {
            let still_runs = tx.query_opt(
                "SELECT 1 FROM devices WHERE device_id = ?1 AND version = ?2
                   AND NOT EXISTS (SELECT 1 FROM device_locks WHERE device_id = ?1)",
                params![t.0, d.firmware_version],
                |_| Ok(()),
            )?;
            if still_runs.is_some() {
                tx.execute(
                    "INSERT INTO device_locks (device_id, deployment_id) VALUES (?1, ?2)",
                    params![t.0, d.id],
                )?;
                kept.push(t);
            } else {
                moved_on += 1;
            }
        }
        kept
    } else {
        took
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
            "rolling back: {reason}; {}{}{}",
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
            },
            match moved_on {
                0 => String::new(),
                n => format!(
                    "; {n} devices no longer run it or are in another deployment, and are left as they are"
                ),
            }
        ),
        now,
    )?;
    Ok(took.into_iter().map(|(device, _, _)| device).collect())
}

/// Assigns a device its previous version back (once per device and wave).
pub(crate) fn send_back(
    tx: &Tx<'_>,
    deployment_id: i64,
    device_id: &str,
    from_version: &str,
    wave: u32,
    now: UnixMillis,
) -> Result<(), StoreError> {
    // Called once per device of a rollback: the statements are prepared once.
    // The device's own model: a version that runs on several models goes back, on each
    // device, to what that device ran.
    let (model, timeout): (String, i64) = tx.query_row(
        "SELECT (SELECT model FROM devices WHERE device_id = ?2), device_timeout FROM deployments WHERE id = ?1",
        params![deployment_id, device_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let previous: Option<i64> = tx.query_opt(
        "SELECT firmware_id FROM firmware_models WHERE device_model = ?1 AND version = ?2",
        params![model, from_version],
        |r| r.get(0),
    )?;
    match previous {
        Some(firmware) => {
            tx.execute(
                "INSERT INTO assignments (deployment_id, kind, wave, device_id, mode, firmware_id, from_version, state, deadline, updated_at)
                 VALUES (?1, 'rollback', ?2, ?3, 'rollback', ?4, ?5, 'assigned', ?6, ?7) ON CONFLICT DO NOTHING",
                params![deployment_id, wave, device_id, firmware, from_version, now.0 + timeout * 1000, now.0],
            )?;
        }
        None => {
            let current: i64 = tx.query_row(
                "SELECT firmware_id FROM deployments WHERE id = ?1",
                params![deployment_id],
                |r| r.get(0),
            )?;
            let reason = format!(
                "its previous version `{from_version}` is not registered for `{model}`, so it cannot be sent back"
            );
            let n = tx.execute(
                "INSERT INTO assignments (deployment_id, kind, wave, device_id, mode, firmware_id, from_version, state, outcome, reason, updated_at)
                 VALUES (?1, 'rollback', ?2, ?3, 'rollback', ?4, ?5, 'failed', 'failed', ?6, ?7) ON CONFLICT DO NOTHING",
                params![deployment_id, wave, device_id, current, from_version, reason, now.0],
            )?;
            if n > 0 {
                event(tx, deployment_id, Some(device_id), &reason, now)?;
            }
        }
    }
    Ok(())
}
