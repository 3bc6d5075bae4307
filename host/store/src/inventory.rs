//! A device's inventory: its slots and last health as it reported them, and its history of
//! assignments, newest first; its lineage, the versions it went through, oldest first.

use hotswap_protocol::{
    AssignmentMode, DeviceState, HistoryEntry, Inventory, Lineage, LineageHow, LineageStep,
    Outcome, UnixMillis,
};

/// The version a device ran before assignment `a`: a rollback's row keeps the version it goes
/// back to, and came from its deployment's version.
pub(crate) const FROM_VERSION: &str = "CASE WHEN a.kind = 'rollback'
    THEN (SELECT fd.version FROM deployments d JOIN firmware fd ON fd.id = d.firmware_id WHERE d.id = a.deployment_id)
    ELSE a.from_version END";

/// The most steps a lineage shows: the newest ones.
pub const MAX_LINEAGE_STEPS: usize = 1000;

use crate::db::params;
use crate::{Store, StoreError, decode};

impl Store {
    pub fn inventory(&self, device_id: &str) -> Result<Inventory, StoreError> {
        let conn = self.reader()?;
        let (slots, health): (Option<String>, Option<String>) = conn
            .query_opt(
                "SELECT slots, health FROM devices WHERE device_id = ?1",
                params![device_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .ok_or_else(|| StoreError::NotFound(format!("no device `{device_id}`")))?;
        let history = conn.query_map(
            "SELECT a.deployment_id, a.kind, a.mode, f.version, a.from_version, a.state, a.attempts, a.reason, a.updated_at
             FROM assignments a JOIN firmware f ON f.id = a.firmware_id
             WHERE a.device_id = ?1 AND a.state != 'pending' ORDER BY a.id DESC LIMIT 50",
            params![device_id],
            |r| {
            Ok(HistoryEntry {
                deployment_id: r.get(0)?,
                kind: decode(1, &r.get::<String>(1)?)?,
                mode: decode(2, &r.get::<String>(2)?)?,
                version: r.get(3)?,
                from_version: r.get(4)?,
                state: decode(5, &r.get::<String>(5)?)?,
                attempts: r.get(6)?,
                reason: r.get(7)?,
                updated_at: UnixMillis(r.get(8)?).seconds(),
            })
            },
        )?;
        let corrupt = |what: &str, e: serde_json::Error| {
            StoreError::Corrupt(format!("{what} of device `{device_id}`: {e}"))
        };
        Ok(Inventory {
            slots: slots
                .map(|s| serde_json::from_str(&s))
                .transpose()
                .map_err(|e| corrupt("slots", e))?,
            health: health
                .map(|h| serde_json::from_str(&h))
                .transpose()
                .map_err(|e| corrupt("health", e))?,
            history,
        })
    }

    /// The versions a device went through, oldest first: every assignment that ended (the
    /// newest [`MAX_LINEAGE_STEPS`]), with how and when.
    pub fn lineage(&self, device_id: &str) -> Result<Lineage, StoreError> {
        let conn = self.reader()?;
        let firmware_version: String = conn
            .query_opt(
                "SELECT version FROM devices WHERE device_id = ?1",
                params![device_id],
                |r| r.get(0),
            )?
            .ok_or_else(|| StoreError::NotFound(format!("no device `{device_id}`")))?;
        let steps = conn.query_map(
            &format!(
                "SELECT * FROM (
                    SELECT a.id, a.deployment_id, a.mode, f.version, {FROM_VERSION}, a.state, a.outcome, a.reason, a.updated_at
                    FROM assignments a JOIN firmware f ON f.id = a.firmware_id
                    WHERE a.device_id = ?1 AND a.outcome IS NOT NULL AND a.state != 'pending'
                    ORDER BY a.id DESC LIMIT ?2) AS newest
                 ORDER BY id"
            ),
            params![device_id, MAX_LINEAGE_STEPS as i64],
            |r| {
                let mode: AssignmentMode = decode(2, &r.get::<String>(2)?)?;
                let version: String = r.get(3)?;
                let from_version: String = r.get(4)?;
                let state: DeviceState = decode(5, &r.get::<String>(5)?)?;
                let outcome: Outcome = decode(6, &r.get::<String>(6)?)?;
                // A rollback's assignment is always in the rollback mode.
                let how = match (mode, state) {
                    (AssignmentMode::Rollback, _) => LineageHow::Rollback,
                    (_, DeviceState::RolledBack) => LineageHow::DeviceRevert,
                    (AssignmentMode::Install, _) => LineageHow::Install,
                    (AssignmentMode::Stage, _) => LineageHow::Stage,
                    (AssignmentMode::Activate, _) => LineageHow::Activate,
                };
                // A staged version is written, not run: the device still runs what it ran.
                let took = outcome == Outcome::Succeeded && mode != AssignmentMode::Stage;
                Ok(LineageStep {
                    deployment_id: r.get(1)?,
                    to_version: if took {
                        version.clone()
                    } else {
                        from_version.clone()
                    },
                    from_version,
                    version,
                    how,
                    state,
                    reason: r.get(7)?,
                    at: UnixMillis(r.get(8)?).seconds(),
                })
            },
        )?;
        Ok(Lineage {
            device_id: device_id.to_string(),
            firmware_version,
            steps,
        })
    }
}
