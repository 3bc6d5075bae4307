//! Durable state: SQLite through rusqlite (bundled), in WAL mode with `synchronous = FULL`, so a
//! change is on disk before the request that made it is answered; schema migrations as `.sql`
//! files applied in order by `PRAGMA user_version`; artifact bytes content-addressed on disk
//! beside the database.
//!
//! Writes go through one connection: device check-ins and reports through the group-commit
//! writer ([`BatchWriter`]), everything else in a transaction of its own. Reads go through a
//! connection of their own (WAL lets a reader see the last commit while a writer syncs the
//! next), so no read waits behind a synced group commit. Every function blocks on SQLite: call
//! it off the async workers. A value that does not decode is an error, never a default.
//!
//! The store says which devices a change handed something to (a wave's devices, the devices a
//! rollback sends back, those a resume lets start, a retried device and when): waking them is
//! its caller's business. Time comes from a [`Clock`], so tests move it instead of waiting.

#![forbid(unsafe_code)]

mod auth;
mod blobs;
mod clock;
mod decisions;
mod deployments;
mod devices;
mod firmware;
mod groups;
mod inventory;
mod migrations;
mod plugins;
mod reports;
mod rollout;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hotswap_protocol::{
    Assignment, CheckIn, DeploymentState, DeviceStatus, FirmwareStatus, Report, ReportAnswer,
};
use hotswap_protocol::{Spelling, UnknownValue};
use rusqlite::{Connection, OptionalExtension};

pub use auth::{MAX_AUDIT_PAGE, NewAudit, NewToken, UserRow};
pub use blobs::BlobStore;
pub use clock::{Clock, ManualClock, SystemClock};
pub use deployments::{NewDeployment, NewWave, Progress, Transitioned};
pub use devices::{DeviceFilter, NewDevice, parse_label};
pub use firmware::{FirmwareFilter, InstalledVersions, NewFirmware};
pub use inventory::MAX_LINEAGE_STEPS;
pub use plugins::StoredPlugin;
pub use reports::LAST_SEEN_REFRESH_SECONDS;
pub use rollout::{Expired, WaveView};
pub use writer::{BatchWriter, MAX_BATCH};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("data directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A stored value that does not decode: the database was changed by hand or by a newer
    /// release. Never replaced by a default.
    #[error("stored {0}")]
    Corrupt(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The write could not be made durable; nothing of it is kept.
    #[error("{0}")]
    Unavailable(String),
}

impl StoreError {
    /// The same error with `prefix: ` before its message (store failures are left as they are).
    pub fn prefixed(self, prefix: &str) -> StoreError {
        match self {
            StoreError::Conflict(m) => StoreError::Conflict(format!("{prefix}: {m}")),
            StoreError::NotFound(m) => StoreError::NotFound(format!("{prefix}: {m}")),
            StoreError::Invalid(m) => StoreError::Invalid(format!("{prefix}: {m}")),
            other => other,
        }
    }
}

/// Decodes a stored enum spelling inside a row mapper; an unknown one fails the query.
pub(crate) fn decode<T: Spelling>(column: usize, s: &str) -> rusqlite::Result<T> {
    T::decode(s).map_err(|e: UnknownValue| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Decodes stored JSON inside a row mapper; JSON that does not decode fails the query.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    column: usize,
    s: &str,
) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Decodes a stored value of a type that spells itself with serde alone (the plan's `Mode`)
/// inside a row mapper.
pub(crate) fn decode_str<T: serde::de::DeserializeOwned>(
    column: usize,
    s: &str,
) -> rusqlite::Result<T> {
    use serde::de::IntoDeserializer;
    T::deserialize(s.into_deserializer()).map_err(|e: serde::de::value::Error| {
        rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The most memory SQLite's page cache takes, per connection.
pub const PAGE_CACHE_BYTES: i64 = 64 << 20;

/// The server's state on disk: `hotswap.db` and `blobs/` under one data directory.
pub struct Store {
    /// The connection every write goes through, shared with the batched writer's thread.
    conn: Arc<Mutex<Connection>>,
    /// Reads only, beside the writes.
    reader: Mutex<Connection>,
    blobs: BlobStore,
    dir: PathBuf,
    writer: BatchWriter,
    clock: Arc<dyn Clock>,
}

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // SQLite's own page cache (2 MiB by default) holds the hot pages of a large fleet's
    // devices and assignments, instead of reading them back from the OS on every query.
    conn.pragma_update(None, "cache_size", -(PAGE_CACHE_BYTES / 1024))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

impl Store {
    /// Opens (creating if needed) the store under `dir`, on the wall clock, and brings its
    /// schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_clock(dir, Arc::new(SystemClock))
    }

    /// Opens the store with its time taken from `clock`.
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join("hotswap.db");
        let mut conn = connect(&path)?;
        migrations::migrate(&mut conn)?;
        let reader = connect(&path)?;
        reader.pragma_update(None, "query_only", true)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Store {
            writer: BatchWriter::start(conn.clone()),
            conn,
            reader: Mutex::new(reader),
            blobs: BlobStore::open(&dir.join("blobs"))?,
            dir: dir.to_path_buf(),
            clock,
        })
    }

    /// The store's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Where artifact `sha256` is on disk.
    pub fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        let valid = sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then(|| self.dir.join("blobs").join(sha256))
    }

    /// A device's check-in, through the batched writer.
    pub async fn check_in(
        &self,
        device_id: String,
        c: CheckIn,
    ) -> Result<Option<Assignment>, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(move |tx| Store::check_in_tx(tx, &device_id, &c, now))
            .await
    }

    /// The assignment a device is to work on now, if any: what a waiting check-in looks up again
    /// when its device is woken. Read in the batched writer's transaction, so it sees every
    /// committed write.
    pub async fn assignment(&self, device_id: String) -> Result<Option<Assignment>, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(move |tx| Store::assignment_tx(tx, &device_id, now))
            .await
    }

    /// The SHA-256 of a device's credential, read in the batched writer's transaction: the
    /// device path stays on that one thread, however many devices ask at once.
    pub async fn device_token_async(
        &self,
        device_id: String,
    ) -> Result<Option<String>, StoreError> {
        self.writer
            .write(move |tx| {
                Ok(tx
                    .prepare_cached("SELECT token_sha256 FROM devices WHERE device_id = ?1")?
                    .query_row([&device_id], |r| r.get::<_, Option<String>>(0))
                    .optional()?
                    .flatten())
            })
            .await
    }

    /// A device's standing, `None` when there is no such device; read in the batched writer's
    /// transaction, as a token's look-up is.
    pub async fn device_status_async(
        &self,
        device_id: String,
    ) -> Result<Option<DeviceStatus>, StoreError> {
        self.writer
            .write(move |tx| {
                Ok(tx
                    .prepare_cached("SELECT status FROM devices WHERE device_id = ?1")?
                    .query_row([&device_id], |r| decode(0, &r.get::<_, String>(0)?))
                    .optional()?)
            })
            .await
    }

    /// The device whose credential hashes to `sha256`, and whether an open assignment hands it
    /// the artifact `artifact`; read in the batched writer's transaction.
    pub async fn artifact_owner(
        &self,
        sha256: String,
        known: Option<String>,
        artifact: String,
    ) -> Result<Option<(String, bool)>, StoreError> {
        self.writer
            .write(move |tx| {
                let owner = match known {
                    Some(d) => Some(d),
                    None => tx
                        .prepare_cached("SELECT device_id FROM devices WHERE token_sha256 = ?1")?
                        .query_row([&sha256], |r| r.get::<_, String>(0))
                        .optional()?,
                };
                let Some(owner) = owner else {
                    return Ok(None);
                };
                let assigned = tx
                    .prepare_cached(
                        "SELECT 1 FROM assignments a JOIN firmware f ON f.id = a.firmware_id
                         WHERE a.device_id = ?1 AND a.outcome IS NULL AND a.state != 'pending' AND f.sha256 = ?2
                         LIMIT 1",
                    )?
                    .query_row([&owner, &artifact], |_| Ok(()))
                    .optional()?
                    .is_some();
                Ok(Some((owner, assigned)))
            })
            .await
    }

    /// A device's report, through the batched writer.
    pub async fn report(&self, device_id: String, r: Report) -> Result<ReportAnswer, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(move |tx| Store::report_tx(tx, &device_id, &r, now))
            .await
    }

    /// Several reports of one device, applied in order as one write: all of them or, when one is
    /// refused, none (the error names which).
    pub async fn reports(
        &self,
        device_id: String,
        reports: Vec<Report>,
    ) -> Result<Vec<ReportAnswer>, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(move |tx| Store::reports_tx(tx, &device_id, &reports, now))
            .await
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// How many firmware versions, devices and uploaded plugins are registered.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let conn = self.reader();
        let count = |table: &str| -> rusqlite::Result<i64> {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        };
        Ok(Counts {
            firmware: count("firmware")?,
            devices: count("devices")?,
            plugins: count("plugins")?,
        })
    }

    /// Deployments by state and devices by status.
    pub fn counts_by_state(&self) -> Result<StateCounts, StoreError> {
        let conn = self.reader();
        let mut deployments = Vec::new();
        let mut stmt = conn.prepare("SELECT state, COUNT(*) FROM deployments GROUP BY state")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                decode::<DeploymentState>(0, &r.get::<_, String>(0)?)?,
                r.get(1)?,
            ))
        })?;
        for row in rows {
            deployments.push(row?);
        }
        let mut devices = Vec::new();
        let mut stmt = conn.prepare("SELECT status, COUNT(*) FROM devices GROUP BY status")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                decode::<DeviceStatus>(0, &r.get::<_, String>(0)?)?,
                r.get(1)?,
            ))
        })?;
        for row in rows {
            devices.push(row?);
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT s, COUNT(*) FROM (SELECT {} AS s FROM devices) WHERE s IS NOT NULL GROUP BY s",
            devices::FIRMWARE_STATUS_OF_DEVICE
        ))?;
        let rows = stmt.query_map(
            rusqlite::named_params! {":now": self.clock.now().seconds().0},
            |r| {
                Ok((
                    decode::<FirmwareStatus>(0, &r.get::<_, String>(0)?)?,
                    r.get(1)?,
                ))
            },
        )?;
        let devices_by_firmware = rows.collect::<Result<_, _>>()?;
        Ok(StateCounts {
            deployments,
            devices,
            devices_by_firmware,
        })
    }

    /// The connection writes go through.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection reads go through.
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub firmware: i64,
    pub devices: i64,
    pub plugins: i64,
}

/// Deployments by state and devices by status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCounts {
    pub deployments: Vec<(DeploymentState, i64)>,
    pub devices: Vec<(DeviceStatus, i64)>,
    /// Devices by where the version they run stands; those on unregistered versions left out.
    pub devices_by_firmware: Vec<(FirmwareStatus, i64)>,
}

#[cfg(test)]
mod tests;
