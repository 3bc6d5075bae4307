//! A device's inventory: its slots and last health as it reported them, and its history of
//! assignments, newest first.

use hotswap_protocol::{HistoryEntry, Inventory, UnixMillis};
use rusqlite::OptionalExtension;

use crate::{Store, StoreError, decode};

impl Store {
    pub fn inventory(&self, device_id: &str) -> Result<Inventory, StoreError> {
        let conn = self.reader();
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
                kind: decode(1, &r.get::<_, String>(1)?)?,
                mode: decode(2, &r.get::<_, String>(2)?)?,
                version: r.get(3)?,
                from_version: r.get(4)?,
                state: decode(5, &r.get::<_, String>(5)?)?,
                attempts: r.get(6)?,
                reason: r.get(7)?,
                updated_at: UnixMillis(r.get(8)?).seconds(),
            })
        })?;
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
            history: rows.collect::<Result<_, _>>()?,
        })
    }
}
