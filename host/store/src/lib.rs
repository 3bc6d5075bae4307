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
mod db;
mod decisions;
pub use decisions::DECISIONS_SAMPLES_MAX_BYTES;
mod deployments;
mod devices;
mod firmware;
mod groups;
mod inventory;
mod leases;
mod migrations;
mod notify;
mod plugins;
mod reports;
mod rollout;
pub mod testing;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use hotswap_protocol::{
    Assignment, CheckIn, DeploymentState, DeviceStatus, FirmwareStatus, Report, ReportAnswer,
};
use hotswap_protocol::{Spelling, UnknownValue};
use rusqlite::Connection;

use crate::db::{Postgres, Tx, params};

pub use auth::{
    AUDIT_FIELD_MAX_BYTES, AUDIT_PAGE_MAX_BYTES, MAX_AUDIT_PAGE, NewAudit, NewToken, UserRow,
};
pub use blobs::BlobStore;
pub use clock::{Clock, ManualClock, SystemClock};
pub use db::{Dialect, POOL_SIZE};
pub use deployments::{NewDeployment, NewWave, Progress, Transitioned};
pub use devices::{DeviceFilter, NewDevice, key_fingerprint, parse_label};
pub use firmware::{FirmwareFilter, InstalledVersions, NewFirmware};
pub use inventory::MAX_LINEAGE_STEPS;
pub use leases::{LEASE_MS, Lease};
pub use notify::{
    Announcer, CREDENTIALS_CHANNEL, DOORBELL_CHANNEL, Heard, MAX_NOTIFICATION_BYTES,
    RECONNECT_AFTER,
};
pub use plugins::StoredPlugin;
pub use reports::{LAST_SEEN_REFRESH_SECONDS, REPORT_REASON_MAX_CHARS};
pub use rollout::{Expired, WaveView};
use writer::BatchWriter;
pub use writer::{MAX_BATCH, WRITER_SHARDS};

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database: {}", db::message(.0))]
    Postgres(tokio_postgres::Error),
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
    /// Another server orchestrates this deployment (it holds the deployment's lease).
    #[error("deployment {deployment} is orchestrated by {owner}")]
    NotOwner { deployment: i64, owner: String },
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
pub(crate) fn decode<T: Spelling>(column: usize, s: &str) -> Result<T, StoreError> {
    T::decode(s).map_err(|e: UnknownValue| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// Decodes stored JSON inside a row mapper; JSON that does not decode fails the query.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(
    column: usize,
    s: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// Decodes a stored value of a type that spells itself with serde alone (the plan's `Mode`)
/// inside a row mapper.
pub(crate) fn decode_str<T: serde::de::DeserializeOwned>(
    column: usize,
    s: &str,
) -> Result<T, StoreError> {
    use serde::de::IntoDeserializer;
    T::deserialize(s.into_deserializer())
        .map_err(|e: serde::de::value::Error| StoreError::Corrupt(format!("column {column}: {e}")))
}

/// The most memory SQLite's page cache takes, per connection.
pub const PAGE_CACHE_BYTES: i64 = 64 << 20;

/// The server's state: in SQLite, `hotswap.db` and `blobs/` under one data directory; in
/// PostgreSQL, the database, with `blobs/` under the data directory as this replica's cache of
/// the artifacts the database holds.
pub struct Store {
    backend: Backend,
    /// This server's name as the holder of deployment leases.
    replica: String,
    blobs: BlobStore,
    writer: BatchWriter,
    clock: Arc<dyn Clock>,
}

/// The database the store's statements run on.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite {
        /// The connection every write goes through, shared with the batched writer's thread.
        writes: Arc<Mutex<Connection>>,
        /// Reads only, beside the writes: several, so one slow read (a list filtered by a
        /// label scans the fleet) does not hold every other read behind it.
        reads: Arc<Readers>,
    },
    Postgres(Arc<Postgres>),
}

/// How a PostgreSQL transaction holds the lock that orders the store's writes across
/// replicas ([`WRITES_LOCK`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteLock {
    /// Alone: a transaction that reads before it writes (a wave, a verdict, a deployment).
    Exclusive,
    /// Beside the other devices' writes: a batch of check-ins and reports, each on its own
    /// device's rows. SQLite gives the same order with its one writing connection.
    Shared,
}

/// The key of the PostgreSQL advisory lock ordering writes (`hotswap` in ASCII).
pub const WRITES_LOCK: i64 = 0x0068_6f74_7377_6170;

impl Backend {
    /// A transaction on the connection writes go through.
    pub(crate) fn begin(&self, lock: WriteLock) -> Result<Tx<'_>, StoreError> {
        match self {
            Backend::Sqlite { writes, .. } => Tx::held_sqlite(lock_conn(writes)).begin(None),
            Backend::Postgres(pg) => {
                let sql = match lock {
                    WriteLock::Exclusive => format!("SELECT pg_advisory_xact_lock({WRITES_LOCK})"),
                    WriteLock::Shared => {
                        format!("SELECT pg_advisory_xact_lock_shared({WRITES_LOCK})")
                    }
                };
                Tx::held_postgres(pg.client()?).begin(Some(&sql))
            }
        }
    }

    /// The connection writes go through, for a write of one statement.
    pub(crate) fn conn(&self) -> Result<Tx<'_>, StoreError> {
        match self {
            Backend::Sqlite { writes, .. } => Ok(Tx::held_sqlite(lock_conn(writes))),
            Backend::Postgres(pg) => Ok(Tx::held_postgres(pg.client()?)),
        }
    }

    /// A connection for reads.
    pub(crate) fn reader(&self) -> Result<Tx<'_>, StoreError> {
        match self {
            Backend::Sqlite { reads, .. } => Ok(Tx::held_sqlite(reads.any())),
            Backend::Postgres(pg) => Ok(Tx::held_postgres(pg.client()?)),
        }
    }
}

fn lock_conn(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many connections an SQLite store reads through (WAL lets them read at once, beside the
/// writer); [`Store::open_with_readers`] takes another count.
pub const SQLITE_READERS: usize = 4;

/// An SQLite store's read connections.
pub(crate) struct Readers {
    conns: Vec<Mutex<Connection>>,
    next: std::sync::atomic::AtomicUsize,
}

impl Readers {
    /// A free connection, or, when every one is busy, the next in turn once it is free.
    fn any(&self) -> MutexGuard<'_, Connection> {
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = self.conns.len();
        for i in 0..n {
            match self.conns[(start + i) % n].try_lock() {
                Ok(guard) => return guard,
                Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {}
            }
        }
        lock_conn(&self.conns[start % n])
    }
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
    // Every statement the store runs stays prepared (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A name for this open store as a lease holder: the host, the process and a random part (a
/// restarted process is another holder).
fn replica_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    static OPENED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{host}/{}/{nanos:08x}-{n}", std::process::id())
}

/// How many prepared statements a SQLite connection keeps.
const STATEMENT_CACHE: usize = 256;

/// Which database a store is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// `hotswap.db` under the data directory.
    Sqlite,
    /// A PostgreSQL database, by URL (`postgres://user@host:port/dbname`).
    Postgres(String),
}

/// Who asks for an artifact: a device credential, by its SHA-256, or a device a client
/// certificate names (already found in the fleet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactHolder {
    Token(String),
    Device(String),
}

impl Store {
    /// Opens (creating if needed) the store under `dir`, on the wall clock, and brings its
    /// schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        Store::open_with_clock(dir, Arc::new(SystemClock))
    }

    /// Opens the store with its time taken from `clock`.
    pub fn open_with_clock(dir: &Path, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        Store::open_in(&Database::Sqlite, dir, clock)
    }

    /// Opens the store in `database`, with `dir` for SQLite's files or for this replica's cache
    /// of artifacts, and brings the schema up to date.
    pub fn open_in(
        database: &Database,
        dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<Store, StoreError> {
        Store::open_with_readers(database, dir, clock, SQLITE_READERS)
    }

    /// [`Store::open_in`], reading SQLite through `readers` connections (at least one; the
    /// readers benchmark compares counts).
    pub fn open_with_readers(
        database: &Database,
        dir: &Path,
        clock: Arc<dyn Clock>,
        readers: usize,
    ) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let backend = match database {
            Database::Sqlite => {
                let path = dir.join("hotswap.db");
                let mut conn = connect(&path)?;
                migrations::migrate(&mut conn)?;
                let mut conns = Vec::new();
                for _ in 0..readers.max(1) {
                    let reader = connect(&path)?;
                    reader.pragma_update(None, "query_only", true)?;
                    conns.push(Mutex::new(reader));
                }
                Backend::Sqlite {
                    writes: Arc::new(Mutex::new(conn)),
                    reads: Arc::new(Readers {
                        conns,
                        next: Default::default(),
                    }),
                }
            }
            Database::Postgres(url) => {
                let pg = Arc::new(Postgres::connect(url)?);
                migrations::migrate_postgres(&pg)?;
                Backend::Postgres(pg)
            }
        };
        Ok(Store {
            replica: replica_name(),
            writer: BatchWriter::start(backend.clone()),
            blobs: BlobStore::open(&dir.join("blobs"), &backend)?,
            backend,
            clock,
        })
    }

    /// Which SQL the store speaks.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The store's clock.
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// A device's check-in, through the batched writer.
    pub async fn check_in(
        &self,
        device_id: String,
        c: CheckIn,
    ) -> Result<Option<Assignment>, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(writer::key(&device_id), move |tx| {
                Store::check_in_tx(tx, &device_id, &c, now)
            })
            .await
    }

    /// The assignment a device is to work on now, if any: what a waiting check-in looks up again
    /// when its device is woken. Read in the batched writer's transaction, so it sees every
    /// committed write.
    pub async fn assignment(&self, device_id: String) -> Result<Option<Assignment>, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(writer::key(&device_id), move |tx| {
                Store::assignment_tx(tx, &device_id, now)
            })
            .await
    }

    /// The SHA-256 of a device's credential, read in the batched writer's transaction: the
    /// device path stays on that one thread, however many devices ask at once.
    pub async fn device_token_async(
        &self,
        device_id: String,
    ) -> Result<Option<String>, StoreError> {
        self.writer
            .write(writer::key(&device_id), move |tx| {
                Ok(tx
                    .query_opt(
                        "SELECT token_sha256 FROM devices WHERE device_id = ?1",
                        params![device_id],
                        |r| r.get::<Option<String>>(0),
                    )?
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
            .write(writer::key(&device_id), move |tx| {
                tx.query_opt(
                    "SELECT status FROM devices WHERE device_id = ?1",
                    params![device_id],
                    |r| decode(0, &r.get::<String>(0)?),
                )
            })
            .await
    }

    /// The device `holder` stands for, and whether an open assignment hands it the artifact
    /// `artifact`; read in the batched writer's transaction.
    pub async fn artifact_owner(
        &self,
        holder: ArtifactHolder,
        artifact: String,
    ) -> Result<Option<(String, bool)>, StoreError> {
        let key = match &holder {
            ArtifactHolder::Token(sha) | ArtifactHolder::Device(sha) => writer::key(sha),
        };
        self.writer
            .write(key, move |tx| {
                let owner = match holder {
                    // The certificate's device was found in the fleet by the caller.
                    ArtifactHolder::Device(d) => Some(d),
                    // Whatever the caller remembers of this credential, the store says whose
                    // it is now: a credential replaced or taken away belongs to nobody.
                    ArtifactHolder::Token(sha256) => tx.query_opt(
                        "SELECT device_id FROM devices WHERE token_sha256 = ?1",
                        params![sha256],
                        |r| r.get::<String>(0),
                    )?,
                };
                let Some(owner) = owner else {
                    return Ok(None);
                };
                let assigned = tx
                    .query_opt(
                        "SELECT 1 FROM assignments a JOIN firmware f ON f.id = a.firmware_id
                         WHERE a.device_id = ?1 AND a.outcome IS NULL AND a.state != 'pending' AND f.sha256 = ?2
                         LIMIT 1",
                        params![owner, artifact],
                        |_| Ok(()),
                    )?
                    .is_some();
                Ok(Some((owner, assigned)))
            })
            .await
    }

    /// A device's report, through the batched writer.
    pub async fn report(&self, device_id: String, r: Report) -> Result<ReportAnswer, StoreError> {
        let now = self.clock.now();
        self.writer
            .write(writer::key(&device_id), move |tx| {
                Store::report_tx(tx, &device_id, &r, now)
            })
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
            .write(writer::key(&device_id), move |tx| {
                Store::reports_tx(tx, &device_id, &reports, now)
            })
            .await
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// How many firmware versions, devices and uploaded plugins are registered.
    pub fn counts(&self) -> Result<Counts, StoreError> {
        let conn = self.reader()?;
        let count = |table: &str| -> Result<i64, StoreError> {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), params![], |r| {
                r.get(0)
            })
        };
        Ok(Counts {
            firmware: count("firmware")?,
            devices: count("devices")?,
            plugins: count("plugins")?,
        })
    }

    /// Deployments by state and devices by status.
    pub fn counts_by_state(&self) -> Result<StateCounts, StoreError> {
        let conn = self.reader()?;
        let deployments = conn.query_map(
            "SELECT state, COUNT(*) FROM deployments GROUP BY state",
            params![],
            |r| {
                Ok((
                    decode::<DeploymentState>(0, &r.get::<String>(0)?)?,
                    r.get(1)?,
                ))
            },
        )?;
        let devices = conn.query_map(
            "SELECT status, COUNT(*) FROM devices GROUP BY status",
            params![],
            |r| Ok((decode::<DeviceStatus>(0, &r.get::<String>(0)?)?, r.get(1)?)),
        )?;
        let devices_by_firmware = conn.query_map(
            &format!(
                "SELECT s, COUNT(*) FROM (SELECT {} AS s FROM devices) AS d WHERE s IS NOT NULL GROUP BY s",
                devices::firmware_status_of_device("?1")
            ),
            params![self.clock.now().seconds().0],
            |r| {
                Ok((
                    decode::<FirmwareStatus>(0, &r.get::<String>(0)?)?,
                    r.get(1)?,
                ))
            },
        )?;
        Ok(StateCounts {
            deployments,
            devices,
            devices_by_firmware,
        })
    }

    /// A transaction of its own for a write that reads first; rolled back unless committed.
    fn begin(&self) -> Result<Tx<'_>, StoreError> {
        self.backend.begin(WriteLock::Exclusive)
    }

    /// The connection writes go through, for a write of one statement.
    fn conn(&self) -> Result<Tx<'_>, StoreError> {
        self.backend.conn()
    }

    /// A connection for reads.
    fn reader(&self) -> Result<Tx<'_>, StoreError> {
        self.backend.reader()
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
