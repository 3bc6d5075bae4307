//! Durable state: SQLite through rusqlite (bundled), in WAL mode with `synchronous = FULL`, so a
//! change is on disk before the request that made it is answered; schema migrations by
//! `PRAGMA user_version`; artifact bytes content-addressed on disk beside the database.

mod blobs;
mod deployments;
mod devices;
mod doorbell;
mod firmware;
mod groups;
mod plugins;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use blobs::BlobStore;
pub use deployments::{
    Assignment, AssignmentMode, CheckIn, Decision, Deployment, DeploymentState, DeploymentStatus,
    DeviceState, Event, Health, HistoryEntry, Inventory, LAST_SEEN_REFRESH_SECONDS, NewDeployment,
    NewWave, Report, ReportAnswer, RetryPolicy, SlotInfo, WaveStatus, WaveView,
};
pub use devices::{DeviceFilter, DeviceRecord, NewDevice, parse_label};
pub use doorbell::{Doorbell, Listener};
pub use firmware::{Firmware, FirmwareFilter, NewFirmware};
pub use groups::{DeviceGroup, GroupFilter};
pub use plugins::StoredPlugin;
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

/// Schema versions, applied in order; the database's `user_version` says how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
    CREATE TABLE firmware (
        id               INTEGER PRIMARY KEY,
        device_model     TEXT NOT NULL,
        version          TEXT NOT NULL,
        sha256           TEXT NOT NULL,
        size             INTEGER NOT NULL,
        key_id           TEXT NOT NULL,
        signature        TEXT NOT NULL,
        security_counter INTEGER NOT NULL,
        release_notes    TEXT NOT NULL,
        deprecated       INTEGER NOT NULL DEFAULT 0,
        created_at       INTEGER NOT NULL,
        UNIQUE (device_model, version)
    );
"#,
    r#"
    CREATE TABLE devices (
        id          INTEGER PRIMARY KEY,
        device_id   TEXT NOT NULL UNIQUE,
        model       TEXT NOT NULL,
        region      TEXT NOT NULL,
        labels      TEXT NOT NULL,
        groups      TEXT NOT NULL,
        version     TEXT NOT NULL,
        status      TEXT NOT NULL,
        last_seen   INTEGER,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX devices_model_region ON devices (model, region);
"#,
    r#"
    CREATE TABLE plugins (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL,
        version       TEXT NOT NULL,
        kind          TEXT NOT NULL,
        sha256        TEXT NOT NULL,
        summary       TEXT NOT NULL,
        params_schema TEXT NOT NULL,
        created_at    INTEGER NOT NULL,
        UNIQUE (name, version)
    );
"#,
    r#"
    CREATE TABLE device_groups (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        members    TEXT,
        filter     TEXT,
        created_at INTEGER NOT NULL,
        CHECK ((members IS NULL) <> (filter IS NULL))
    );
"#,
    r#"
    ALTER TABLE devices ADD COLUMN slots TEXT;
    ALTER TABLE devices ADD COLUMN health TEXT;
    CREATE TABLE deployments (
        id              INTEGER PRIMARY KEY,
        firmware_id     INTEGER NOT NULL REFERENCES firmware (id),
        device_model    TEXT NOT NULL,
        strategy        TEXT NOT NULL,
        strategy_config TEXT NOT NULL,
        health_policy   TEXT NOT NULL,
        health_sha256   TEXT,
        health_config   TEXT NOT NULL,
        device_timeout  INTEGER NOT NULL,
        max_attempts    INTEGER NOT NULL,
        retry_backoff   INTEGER NOT NULL,
        state           TEXT NOT NULL,
        current_wave    INTEGER NOT NULL DEFAULT 0,
        waves           INTEGER NOT NULL,
        reason          TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX deployments_state ON deployments (state);
    CREATE TABLE waves (
        deployment_id INTEGER NOT NULL REFERENCES deployments (id),
        idx           INTEGER NOT NULL,
        name          TEXT NOT NULL,
        mode          TEXT NOT NULL,
        gate          TEXT NOT NULL,
        max_in_flight INTEGER,
        started_at    INTEGER,
        settled_at    INTEGER,
        PRIMARY KEY (deployment_id, idx)
    );
    CREATE TABLE assignments (
        id            INTEGER PRIMARY KEY,
        deployment_id INTEGER NOT NULL REFERENCES deployments (id),
        kind          TEXT NOT NULL,
        wave          INTEGER NOT NULL,
        device_id     TEXT NOT NULL,
        mode          TEXT NOT NULL,
        firmware_id   INTEGER NOT NULL REFERENCES firmware (id),
        from_version  TEXT NOT NULL,
        state         TEXT NOT NULL,
        outcome       TEXT,
        attempts      INTEGER NOT NULL DEFAULT 0,
        not_before    INTEGER,
        deadline      INTEGER,
        reason        TEXT,
        updated_at    INTEGER NOT NULL,
        UNIQUE (deployment_id, kind, wave, device_id)
    );
    CREATE INDEX assignments_device ON assignments (device_id, outcome);
    CREATE INDEX assignments_wave ON assignments (deployment_id, kind, wave, state);
    CREATE TABLE device_locks (
        device_id     TEXT PRIMARY KEY,
        deployment_id INTEGER NOT NULL REFERENCES deployments (id)
    );
    CREATE TABLE decisions (
        id            INTEGER PRIMARY KEY,
        deployment_id INTEGER NOT NULL REFERENCES deployments (id),
        wave          INTEGER NOT NULL,
        policy        TEXT NOT NULL,
        config        TEXT NOT NULL,
        stats         TEXT NOT NULL,
        samples       TEXT NOT NULL,
        verdict       TEXT NOT NULL,
        at            INTEGER NOT NULL
    );
    CREATE INDEX decisions_deployment ON decisions (deployment_id, id);
    CREATE TABLE events (
        id            INTEGER PRIMARY KEY,
        deployment_id INTEGER NOT NULL REFERENCES deployments (id),
        device_id     TEXT,
        message       TEXT NOT NULL,
        at            INTEGER NOT NULL
    );
    CREATE INDEX events_deployment ON events (deployment_id, id);
"#,
];

/// The most memory SQLite's page cache takes.
pub const PAGE_CACHE_BYTES: i64 = 64 << 20;

/// The server's state on disk: `hotswap.db` and `blobs/` under one data directory.
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    blobs: BlobStore,
    dir: PathBuf,
    writer: BatchWriter,
    doorbell: Doorbell,
}

impl Store {
    /// Opens (creating if needed) the store under `dir` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut conn = Connection::open(dir.join("hotswap.db"))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // SQLite's own page cache (2 MiB by default) holds the hot pages of a large fleet's
        // devices and assignments, instead of reading them back from the OS on every query.
        conn.pragma_update(None, "cache_size", -(PAGE_CACHE_BYTES / 1024))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        let conn = Arc::new(Mutex::new(conn));
        Ok(Store {
            writer: BatchWriter::start(conn.clone()),
            conn,
            blobs: BlobStore::open(&dir.join("blobs"))?,
            dir: dir.to_path_buf(),
            doorbell: Doorbell::default(),
        })
    }

    /// Where artifact `sha256` is on disk, for serving it with HTTP Range.
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
        self.writer
            .write(move |tx| Store::check_in_tx(tx, &device_id, &c, now_ms()))
            .await
    }

    /// The assignment a device is to work on now, if any: what a waiting check-in looks up again
    /// when its device is rung. Read in the batched writer's transaction, so it sees every
    /// committed write.
    pub async fn assignment(&self, device_id: String) -> Result<Option<Assignment>, StoreError> {
        self.writer
            .write(move |tx| Store::assignment_tx(tx, &device_id, now_ms()))
            .await
    }

    /// A device's report, through the batched writer.
    pub async fn report(&self, device_id: String, r: Report) -> Result<ReportAnswer, StoreError> {
        self.writer
            .write(move |tx| Store::report_tx(tx, &device_id, &r, now_ms()))
            .await
    }

    /// Several reports of one device, applied in order as one write: all of them or, when one is
    /// refused, none (the error names which).
    pub async fn reports(
        &self,
        device_id: String,
        reports: Vec<Report>,
    ) -> Result<Vec<ReportAnswer>, StoreError> {
        self.writer
            .write(move |tx| {
                let now = now_ms();
                reports
                    .iter()
                    .enumerate()
                    .map(|(i, r)| {
                        Store::report_tx(tx, &device_id, r, now)
                            .map_err(|e| e.prefixed(&format!("report {i}")))
                    })
                    .collect()
            })
            .await
    }

    /// Devices waiting in a long-poll check-in, rung when the store hands them something.
    pub fn doorbell(&self) -> &Doorbell {
        &self.doorbell
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// How many firmware versions, devices and uploaded plugins are registered.
    pub fn counts(&self) -> Result<(i64, i64, i64), StoreError> {
        let conn = self.conn();
        let count = |table: &str| -> rusqlite::Result<i64> {
            conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        };
        Ok((count("firmware")?, count("devices")?, count("plugins")?))
    }

    /// Deployments by state and devices by status.
    #[allow(clippy::type_complexity)]
    pub fn counts_by_state(&self) -> Result<(Vec<(String, i64)>, Vec<(String, i64)>), StoreError> {
        let conn = self.conn();
        let grouped = |sql: &str| -> Result<Vec<(String, i64)>, StoreError> {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok((
            grouped("SELECT state, COUNT(*) FROM deployments GROUP BY state")?,
            grouped("SELECT status, COUNT(*) FROM devices GROUP BY status")?,
        ))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    now_ms() / 1000
}

/// Milliseconds since the Unix epoch: deadlines and backoff are kept in these.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_database_is_migrated_forward_and_keeps_its_rows() {
        let dir = std::env::temp_dir().join(format!("hotswap-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            // A database as the first release left it: only migration 1, one firmware row.
            let conn = Connection::open(dir.join("hotswap.db")).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO firmware (device_model, version, sha256, size, key_id, signature, security_counter, release_notes, created_at)
                 VALUES ('m', '1.0.0', 'ab', 1, 'k', 's', 0, '', 0)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&dir).unwrap();
        let version: usize = store
            .conn()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len());
        assert_eq!(
            store
                .list_firmware(&FirmwareFilter::default())
                .unwrap()
                .len(),
            1
        );
        assert!(store.list_plugins().unwrap().is_empty());
        drop(store);
        // Opening again applies nothing twice.
        Store::open(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
