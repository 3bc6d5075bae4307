//! The device side of the store: check-ins and the report state machine. Runs inside the
//! batched writer's transaction ([`crate::BatchWriter`]).
//!
//! A report never moves an assignment backwards; one the assignment has gone past changes
//! nothing, so devices retry freely.

use std::collections::BTreeMap;

use crate::db::{Tx, params};
use hotswap_protocol::{
    Assignment, AssignmentKind, AssignmentMode, CheckIn, DeploymentState, DeviceState,
    DeviceStatus, Health, Outcome, Report, ReportAnswer, Spelling, UnixMillis,
};
use serde::{Deserialize, Serialize};

use crate::deployments::event;
use crate::rollout::send_back;
use crate::{Store, StoreError, decode};

/// A device's row as a check-in reads it.
struct DeviceRow {
    version: Option<String>,
    slots: Option<String>,
    health: Option<String>,
    /// Seconds.
    last_seen: Option<i64>,
    status: DeviceStatus,
}

/// An assignment as a report reads it, with its deployment and firmware.
struct AssignmentRow {
    deployment_id: i64,
    kind: AssignmentKind,
    mode: AssignmentMode,
    state: DeviceState,
    /// It has an outcome.
    ended: bool,
    deployment_state: DeploymentState,
    timeout_seconds: i64,
    version: String,
    from_version: String,
    wave: u32,
}

impl Store {
    /// A device's check-in: what it runs and how it is, recorded; the work it should do next,
    /// if any. Runs inside the store's batched writer.
    pub(crate) fn check_in_tx(
        tx: &Tx<'_>,
        device_id: &str,
        c: &CheckIn,
        now: UnixMillis,
    ) -> Result<Option<Assignment>, StoreError> {
        let slots = c
            .slots
            .as_ref()
            .map(|s| serde_json::to_string(s).expect("slots serialize"));
        let stored: Option<DeviceRow> = tx.query_opt(
            "SELECT version, slots, health, last_seen, status FROM devices WHERE device_id = ?1",
            params![device_id],
            |r| {
                Ok(DeviceRow {
                    version: r.get(0)?,
                    slots: r.get(1)?,
                    health: r.get(2)?,
                    last_seen: r.get(3)?,
                    status: decode(4, &r.get::<String>(4)?)?,
                })
            },
        )?;
        let Some(DeviceRow {
            version,
            slots: stored_slots,
            health: stored_health,
            last_seen,
            status,
        }) = stored
        else {
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
            || status == DeviceStatus::Registered
            || last_seen.is_none_or(|t| now.seconds().0 - t >= LAST_SEEN_REFRESH_SECONDS);
        if news {
            let health = c
                .health
                .as_ref()
                .map(|h| StoredHealth::json(c.firmware_version.clone(), now, h));
            tx.execute("UPDATE devices SET last_seen = ?2, version = COALESCE(?3, version), slots = COALESCE(?4, slots), health = COALESCE(?5, health),
                 status = CASE WHEN status IN ('quarantined', 'pending', 'rejected', 'decommissioned') THEN status ELSE 'online' END
                 WHERE device_id = ?1", params![
                device_id,
                now.seconds().0,
                c.firmware_version,
                slots,
                health
            ])?;
        }
        Store::assignment_tx(tx, device_id, now)
    }

    /// The assignment a device is to work on now, if any. One that is yet to start and whose
    /// version may not be installed over the one the device says it runs is refused here,
    /// before the device downloads anything: it fails, with the reason, and the next is looked
    /// for.
    pub(crate) fn assignment_tx(
        tx: &Tx<'_>,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<Option<Assignment>, StoreError> {
        loop {
            let Some((assignment, range)) = Store::next_assignment_tx(tx, device_id, now)? else {
                return Ok(None);
            };
            let Some(range) = range.filter(|_| assignment.state == DeviceState::Assigned) else {
                return Ok(Some(assignment));
            };
            let running: String = tx.query_row(
                "SELECT version FROM devices WHERE device_id = ?1",
                params![device_id],
                |r| r.get(0),
            )?;
            let refused = match crate::InstalledVersions::parse(&range, &assignment.version) {
                Ok(allowed) => allowed.refuses(&running, &assignment.version),
                Err(reason) => Some(reason),
            };
            let Some(why) = refused else {
                return Ok(Some(assignment));
            };
            let reason = format!("refused before download: {why}");
            tx.execute("UPDATE assignments SET state = 'failed', outcome = 'failed', reason = ?2, deadline = NULL, updated_at = ?3
                 WHERE id = ?1", params![assignment.assignment_id, reason, now.0])?;
            event(tx, assignment.deployment_id, Some(device_id), &reason, now)?;
        }
    }

    /// The next open assignment of a device, with the range of installed versions its version
    /// may go over.
    fn next_assignment_tx(
        tx: &Tx<'_>,
        device_id: &str,
        now: UnixMillis,
    ) -> Result<Option<(Assignment, Option<String>)>, StoreError> {
        let found = tx
            .query_opt("SELECT a.id, a.deployment_id, a.mode, f.version, f.size, f.sha256, f.security_counter, f.key_id, f.signature, a.state, a.attempts,
                        CASE WHEN a.kind = 'rollout' THEN f.installed_versions END,
                        d.trace_parent, a.kind, a.wave
                 FROM assignments a JOIN deployments d ON d.id = a.deployment_id JOIN firmware f ON f.id = a.firmware_id
                 WHERE a.device_id = ?1 AND a.outcome IS NULL AND a.state != 'pending'
                   AND (a.not_before IS NULL OR a.not_before <= ?2)
                   AND (d.state = 'running' OR (d.state = 'rolling-back' AND a.kind = 'rollback')
                        OR (d.state = 'paused' AND a.state != 'assigned'))
                 ORDER BY a.id LIMIT 1", params![device_id, now.0], |r| {
                let sha: String = r.get(5)?;
                let range: Option<String> = r.get(11)?;
                let assignment = Assignment {
                    assignment_id: r.get(0)?,
                    deployment_id: r.get(1)?,
                    mode: decode(2, &r.get::<String>(2)?)?,
                    version: r.get(3)?,
                    size: r.get(4)?,
                    url: format!("/api/v1/artifacts/{sha}"),
                    checksum: format!("sha256:{sha}"),
                    security_counter: r.get(6)?,
                    key_id: r.get(7)?,
                    signature: r.get(8)?,
                    state: decode(9, &r.get::<String>(9)?)?,
                    attempt: r.get::<u32>(10)? + 1,
                    traceparent: traceparent_of(
                        r.get::<Option<String>>(12)?,
                        decode(13, &r.get::<String>(13)?)?,
                        r.get(14)?,
                    ),
                };
                Ok((assignment, range))
            })?;
        Ok(found)
    }

    /// A device's reports, applied in order, as [`Store::report_tx`] applies each in turn (the
    /// same answers, the same stored result). A run of reports of one assignment that only move
    /// it along (no outcome, reason or health: downloading, downloaded, verifying, ...) is read
    /// once and written once, in the state it ends on; when the report right after the run ends
    /// that assignment (`trial` then `confirmed`), its write stands for the run's. An error names
    /// the report (`report 2: ...`).
    pub(crate) fn reports_tx(
        tx: &Tx<'_>,
        device_id: &str,
        reports: &[Report],
        now: UnixMillis,
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
        tx: &Tx<'_>,
        device_id: &str,
        run: &[Report],
        next: Option<&Report>,
        now: UnixMillis,
    ) -> Result<Option<Vec<ReportAnswer>>, StoreError> {
        let row: Option<(DeviceState, Option<String>, AssignmentMode, i64)> = tx.query_opt(
            "SELECT a.state, a.outcome, a.mode, d.device_timeout
                 FROM assignments a JOIN deployments d ON d.id = a.deployment_id
                 WHERE a.id = ?1 AND a.device_id = ?2",
            params![run[0].assignment_id, device_id],
            |r| {
                Ok((
                    decode(0, &r.get::<String>(0)?)?,
                    r.get(1)?,
                    decode(2, &r.get::<String>(2)?)?,
                    r.get(3)?,
                ))
            },
        )?;
        let Some((start, outcome, mode, timeout)) = row else {
            return Ok(None);
        };
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
            tx.execute(
                "UPDATE assignments SET state = ?2, deadline = ?3, updated_at = ?4 WHERE id = ?1",
                params![
                    run[0].assignment_id,
                    current.as_str(),
                    now.0 + timeout * 1000,
                    now.0
                ],
            )?;
        }
        Ok(Some(answers))
    }

    /// Applies a device's report. A report the assignment has already gone past changes nothing,
    /// so a retried report is harmless. Runs inside the store's batched writer.
    pub(crate) fn report_tx(
        tx: &Tx<'_>,
        device_id: &str,
        r: &Report,
        now: UnixMillis,
    ) -> Result<ReportAnswer, StoreError> {
        if !r.state.reportable() {
            return Err(StoreError::Invalid(format!(
                "a device cannot report `{}`; it reports downloading, downloaded, verifying, installed, trial, confirmed, rolled-back or failed",
                r.state.as_str()
            )));
        }
        let row = tx
            .query_opt("SELECT a.deployment_id, a.kind, a.mode, a.state, a.outcome, d.state, d.device_timeout, f.version, a.from_version, a.wave
                 FROM assignments a JOIN deployments d ON d.id = a.deployment_id JOIN firmware f ON f.id = a.firmware_id
                 WHERE a.id = ?1 AND a.device_id = ?2", params![r.assignment_id, device_id], |row| {
                Ok(AssignmentRow {
                    deployment_id: row.get(0)?,
                    kind: decode(1, &row.get::<String>(1)?)?,
                    mode: decode(2, &row.get::<String>(2)?)?,
                    state: decode(3, &row.get::<String>(3)?)?,
                    ended: row.get::<Option<String>>(4)?.is_some(),
                    deployment_state: decode(5, &row.get::<String>(5)?)?,
                    timeout_seconds: row.get(6)?,
                    version: row.get(7)?,
                    from_version: row.get(8)?,
                    wave: row.get(9)?,
                })
            })?;
        let Some(AssignmentRow {
            deployment_id,
            kind,
            mode,
            state: current,
            ended,
            deployment_state,
            timeout_seconds: timeout,
            version,
            from_version: from,
            wave,
        }) = row
        else {
            return Err(StoreError::NotFound(format!(
                "no assignment {} for device `{device_id}`",
                r.assignment_id
            )));
        };
        let unchanged = Ok(ReportAnswer {
            applied: false,
            state: current,
        });
        let rolling_back = deployment_state == DeploymentState::RollingBack;
        if ended {
            // A device that confirmed the new version after its assignment was called off (it
            // did not stop when told) runs it: the inventory says so, and while the deployment
            // is rolling back the device is sent back too.
            if kind == AssignmentKind::Rollout
                && r.state == DeviceState::Confirmed
                && mode != AssignmentMode::Stage
            {
                let changed = tx.execute(
                    "UPDATE devices SET version = ?2 WHERE device_id = ?1 AND version IS DISTINCT FROM ?2",
                    params![device_id, version],
                )?;
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
        let reason = r
            .reason
            .as_deref()
            .map(|s| truncate(s, REPORT_REASON_MAX_CHARS));
        tx.execute("UPDATE assignments SET state = ?2, outcome = ?3, reason = COALESCE(?4, reason), deadline = ?5, updated_at = ?6 WHERE id = ?1", params![
            r.assignment_id,
            r.state.as_str(),
            ends.map(Outcome::as_str),
            reason,
            ends.is_none().then_some(now.0 + timeout * 1000),
            now.0
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
            tx.execute(
                "UPDATE devices SET version = COALESCE(?2, version), health = COALESCE(?3, health),
                 last_seen = CASE WHEN ?3 IS NULL THEN last_seen ELSE ?4 END
                 WHERE device_id = ?1",
                params![device_id, took.then_some(&version), health, now.seconds().0],
            )?;
        }
        match ends {
            // It had installed the new version before the rollback began, and kept it.
            Some(Outcome::Succeeded) if took && kind == AssignmentKind::Rollout && rolling_back => {
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
pub(crate) struct StoredHealth {
    pub(crate) version: Option<String>,
    at: i64,
    pub(crate) healthy: bool,
    #[serde(default = "yes")]
    pub(crate) self_test_passed: bool,
    #[serde(default)]
    pub(crate) traps: u32,
    #[serde(default)]
    pub(crate) fuel_exhausted: u32,
    #[serde(default)]
    pub(crate) metrics: BTreeMap<String, f64>,
}

impl StoredHealth {
    /// The stored form of `health` sent from `version` at `now` (milliseconds).
    fn json(version: Option<String>, now: UnixMillis, health: &Health) -> String {
        serde_json::to_string(&StoredHealth {
            version,
            at: now.seconds().0,
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

/// The most characters of a report's reason the store keeps; longer ones are cut and end in
/// `…` (every status read serves them).
pub const REPORT_REASON_MAX_CHARS: usize = 500;

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

fn yes() -> bool {
    true
}

/// The trace context an assignment carries: its wave's in the deployment's trace, or the
/// rollback's for a device sent back. `None` when the deployment has no trace (traces were off
/// when it started).
fn traceparent_of(deployment: Option<String>, kind: AssignmentKind, wave: u32) -> Option<String> {
    let trace: hotswap_protocol::TraceParent = deployment?.parse().ok()?;
    let span = match kind {
        AssignmentKind::Rollback => trace.rollback(),
        AssignmentKind::Rollout => trace.wave(wave),
    };
    Some(span.to_string())
}
