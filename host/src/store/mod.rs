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
pub use doorbell::{Doorbell, Listener, MAX_WAITING_DEVICES};
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
    // A wave's counts by outcome (read every orchestrator tick) come from the index alone.
    r#"
    DROP INDEX assignments_wave;
    CREATE INDEX assignments_wave ON assignments (deployment_id, kind, wave, state, outcome);
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
            .write(move |tx| Store::reports_tx(tx, &device_id, &reports, now_ms()))
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

    /// A store with 2.0.0 handed out to devices `d-0` .. `d-4` in `mode`.
    fn handed_out(name: &str, mode: hotswap_plan::Mode) -> (Store, PathBuf) {
        let dir = std::env::temp_dir().join(format!("hotswap-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        for version in ["1.0.0", "2.0.0"] {
            store
                .add_firmware(NewFirmware {
                    device_model: "m".into(),
                    version: version.into(),
                    sha256: "00".repeat(32),
                    size: 1,
                    key_id: "k".into(),
                    signature: "s".into(),
                    security_counter: 0,
                    release_notes: String::new(),
                })
                .unwrap();
        }
        let mut devices = Vec::new();
        for i in 0..5 {
            let id = format!("d-{i}");
            store
                .add_device(NewDevice {
                    device_id: id.clone(),
                    device_model: "m".into(),
                    region: "r".into(),
                    labels: Default::default(),
                    groups: vec![],
                    firmware_version: "1.0.0".into(),
                })
                .unwrap();
            devices.push((id, "1.0.0".to_string()));
        }
        let id = store
            .create_deployment(&NewDeployment {
                firmware_id: 2,
                device_model: "m".into(),
                strategy: "direct".into(),
                strategy_config: "{}".into(),
                health_policy: "default".into(),
                health_sha256: None,
                health_config: "{}".into(),
                retry: RetryPolicy {
                    device_timeout_seconds: 600,
                    max_attempts: 3,
                    retry_backoff_seconds: 30,
                },
                waves: vec![NewWave {
                    name: "all".into(),
                    mode,
                    gate: hotswap_plan::Gate {
                        soak_seconds: 0,
                        min_success_percent: 0,
                        failure_budget: 0,
                        min_sample: 1,
                    },
                    max_in_flight: None,
                    devices,
                }],
            })
            .unwrap();
        let d = store.deployment(id).unwrap();
        store.advance_wave(&d, now_ms()).unwrap();
        (store, dir)
    }

    /// Device, state, outcome, reason, whether a deadline is set, the device's version.
    type Row = (String, String, Option<String>, Option<String>, bool, String);

    /// Each device's assignment and inventory row, as far as reports change them.
    fn rows(store: &Store) -> Vec<Row> {
        let conn = store.conn();
        let mut stmt = conn
            .prepare(
                "SELECT a.device_id, a.state, a.outcome, a.reason, a.deadline IS NOT NULL, d.version
                 FROM assignments a JOIN devices d ON d.device_id = a.device_id ORDER BY a.id",
            )
            .unwrap();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// A device whose assignment is tried again after a backoff is rung when the backoff ends,
    /// so a long poll it waits in meanwhile is answered then.
    #[test]
    fn a_retried_device_is_rung_when_its_backoff_ends() {
        let (store, dir) = handed_out("retry-ring", hotswap_plan::Mode::Install);
        let d = store.deployment(1).unwrap();
        let listener = store.doorbell().listen("d-0").unwrap();
        let mut rung = std::pin::pin!(listener.notified());
        rung.as_mut().enable();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // Every deadline (600 s) has passed: each device is tried again after 30 s.
        let late = now_ms() + 601_000;
        assert_eq!(store.expire(&d, late).unwrap(), 5);
        assert_eq!(store.doorbell().scheduled(), 5);
        store.doorbell().ring_due(late + 29_000);
        assert!(rung.as_mut().poll(&mut cx).is_pending());
        store.doorbell().ring_due(late + 30_000);
        assert!(rung.as_mut().poll(&mut cx).is_ready());
        // And the store hands its assignment out again from then.
        let conn = store.conn();
        let not_before: i64 = conn
            .query_row(
                "SELECT not_before FROM assignments WHERE device_id = 'd-0'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(not_before, late + 30_000);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A decision's samples are stored deflated, and rows stored before (JSON text) still read.
    #[test]
    fn decision_samples_are_stored_deflated_and_older_rows_still_read() {
        let (store, dir) = handed_out("decisions", hotswap_plan::Mode::Install);
        let d = store.deployment(1).unwrap();
        let mut view = store.advance_wave(&d, now_ms()).unwrap();
        view.samples = (0..1000)
            .map(|i| hotswap_plan::health::HealthSample {
                device: format!("d-{i}"),
                healthy: i % 7 != 0,
                self_test_passed: true,
                traps: i % 3,
                fuel_exhausted: 0,
                metrics: vec![("temperature".into(), 21.5)],
            })
            .collect();
        let verdict = hotswap_plan::health::Verdict::Wait { seconds: 1 };
        store.decide(&d, &view, &verdict, now_ms()).unwrap();
        let (kind, bytes): (String, usize) = store
            .conn()
            .query_row(
                "SELECT typeof(samples), length(samples) FROM decisions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let text = serde_json::to_string(&view.samples).unwrap();
        assert_eq!(kind, "blob");
        assert!(bytes * 10 < text.len(), "{bytes} bytes for {}", text.len());
        // A row as an earlier release stored it: the samples as JSON text.
        store
            .conn()
            .execute(
                "INSERT INTO decisions (deployment_id, wave, policy, config, stats, samples, verdict, at)
                 SELECT deployment_id, wave, policy, config, stats, ?1, verdict, at FROM decisions",
                [&text],
            )
            .unwrap();
        let decisions = store.decisions(1, 10, true).unwrap();
        assert_eq!(decisions.len(), 2);
        for decision in &decisions {
            assert_eq!(decision.samples.as_ref(), Some(&view.samples));
            assert_eq!(decision.verdict, verdict);
        }
        let summaries = store.decisions(1, 10, false).unwrap();
        assert!(summaries.iter().all(|d| d.samples.is_none()));
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Batched reports answer and store what the same reports sent one by one do, including
    /// when their runs of progress reports are applied from one read and one write.
    #[tokio::test]
    async fn a_batch_of_reports_does_what_the_same_reports_one_by_one_do() {
        use DeviceState::*;
        let health = Health {
            healthy: true,
            self_test_passed: true,
            traps: 0,
            fuel_exhausted: 0,
            metrics: Default::default(),
        };
        let report = |device: usize, state: DeviceState, reason: Option<&str>, ends: bool| {
            (
                format!("d-{device}"),
                Report {
                    assignment_id: device as i64 + 1,
                    state,
                    reason: reason.map(String::from),
                    health: ends.then(|| health.clone()),
                },
            )
        };
        // Batches, in the order sent; devices 0-4 in install mode.
        let batches: Vec<Vec<(String, Report)>> = vec![
            [Downloading, Downloaded, Verifying, Installed]
                .map(|s| report(0, s, None, false))
                .to_vec(),
            vec![
                report(0, Trial, None, false),
                report(0, Confirmed, None, true),
            ],
            // The same again, a retry: nothing applies.
            [Downloading, Downloaded, Verifying, Installed]
                .map(|s| report(0, s, None, false))
                .to_vec(),
            // Out of order: the earlier state after the later one changes nothing.
            [Downloaded, Downloading, Verifying]
                .map(|s| report(1, s, None, false))
                .to_vec(),
            vec![
                report(1, Installed, None, false),
                report(1, Trial, None, false),
                report(1, Failed, Some("self-test failed"), true),
            ],
            vec![
                report(2, Downloading, None, false),
                report(2, Downloaded, None, false),
                report(2, Failed, Some("no space"), false),
            ],
            [Downloading, Downloaded, Verifying, Installed, Trial]
                .map(|s| report(3, s, None, false))
                .to_vec(),
            // A state sent twice in one batch applies once.
            [Downloading, Downloading, Downloaded]
                .map(|s| report(4, s, None, false))
                .to_vec(),
        ];
        for (mode, name) in [
            (hotswap_plan::Mode::Install, "install"),
            (hotswap_plan::Mode::Stage, "stage"),
        ] {
            let (batched, dir_a) = handed_out(&format!("batched-{name}"), mode);
            let (one_by_one, dir_b) = handed_out(&format!("one-by-one-{name}"), mode);
            for batch in &batches {
                let device = batch[0].0.clone();
                let reports: Vec<Report> = batch.iter().map(|(_, r)| r.clone()).collect();
                let together = batched.reports(device.clone(), reports.clone()).await;
                let mut alone = Vec::new();
                for r in reports {
                    alone.push(one_by_one.report(device.clone(), r).await);
                }
                let together: Vec<String> = match together {
                    Ok(answers) => answers.iter().map(|a| format!("{a:?}")).collect(),
                    Err(e) => vec![e.to_string()],
                };
                let alone: Vec<String> = alone
                    .into_iter()
                    .map(|a| a.map_or_else(|e| e.to_string(), |a| format!("{a:?}")))
                    .collect();
                if together.len() == alone.len() {
                    assert_eq!(together, alone, "{name}: {batch:?}");
                } else {
                    // The batch was refused as a whole: one of the one-by-one reports was too.
                    assert!(
                        alone.iter().any(|a| together[0].ends_with(a.as_str())),
                        "{name}: {together:?} vs {alone:?}"
                    );
                }
            }
            assert_eq!(rows(&batched), rows(&one_by_one), "{name}");
            for dir in [dir_a, dir_b] {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}
