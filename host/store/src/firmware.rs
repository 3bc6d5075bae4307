//! The firmware registry: agent versions per device model, with their signed manifests.

use hotswap_protocol::{Firmware, UnixSeconds};
use rusqlite::{OptionalExtension, Row, params};

use crate::{Store, StoreError};

/// A version to register; its bytes are already in the blob store under `sha256`.
pub struct NewFirmware {
    pub device_model: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub key_id: String,
    pub signature: String,
    pub security_counter: u32,
    pub release_notes: String,
}

/// Which versions to list.
#[derive(Debug, Default)]
pub struct FirmwareFilter {
    pub device_model: Option<String>,
    pub include_deprecated: bool,
}

const COLUMNS: &str = "id, device_model, version, sha256, size, key_id, signature, security_counter, release_notes, deprecated, created_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Firmware> {
    Ok(Firmware {
        id: r.get(0)?,
        device_model: r.get(1)?,
        version: r.get(2)?,
        checksum: format!("sha256:{}", r.get::<_, String>(3)?),
        size: r.get(4)?,
        key_id: r.get(5)?,
        signature: r.get(6)?,
        security_counter: r.get(7)?,
        release_notes: r.get(8)?,
        deprecated: r.get(9)?,
        created_at: UnixSeconds(r.get(10)?),
    })
}

impl Store {
    pub fn add_firmware(&self, f: NewFirmware) -> Result<Firmware, StoreError> {
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO firmware (device_model, version, sha256, size, key_id, signature, security_counter, release_notes, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (device_model, version) DO NOTHING",
            params![f.device_model, f.version, f.sha256, f.size, f.key_id, f.signature, f.security_counter, f.release_notes, self.clock.now().seconds().0],
        )?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "firmware {} for model `{}` is already registered",
                f.version, f.device_model
            )));
        }
        let id = conn.last_insert_rowid();
        drop(conn);
        self.firmware(id)
    }

    pub fn firmware(&self, id: i64) -> Result<Firmware, StoreError> {
        self.reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM firmware WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no firmware with id {id}")))
    }

    pub fn firmware_by_version(
        &self,
        device_model: &str,
        version: &str,
    ) -> Result<Option<Firmware>, StoreError> {
        Ok(self
            .reader()
            .query_row(
                &format!("SELECT {COLUMNS} FROM firmware WHERE device_model = ?1 AND version = ?2"),
                [device_model, version],
                from_row,
            )
            .optional()?)
    }

    pub fn list_firmware(&self, filter: &FirmwareFilter) -> Result<Vec<Firmware>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM firmware
             WHERE (?1 IS NULL OR device_model = ?1) AND (?2 OR deprecated = 0)
             ORDER BY device_model, id"
        ))?;
        let rows = stmt.query_map(
            params![filter.device_model, filter.include_deprecated],
            from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks a version deprecated: it can no longer be deployed.
    pub fn deprecate_firmware(&self, id: i64) -> Result<Firmware, StoreError> {
        let changed = self
            .conn()
            .execute("UPDATE firmware SET deprecated = 1 WHERE id = ?1", [id])?;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("no firmware with id {id}")));
        }
        self.firmware(id)
    }
}
