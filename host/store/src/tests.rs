//! The store's own tests: migrations, the report state machine batched and one by one,
//! decisions' stored form, retries, the audit log. Each runs on SQLite and on PostgreSQL.

use hotswap_protocol::{DeviceState, Health, Report, RetryPolicy, UnixMillis};
use rusqlite::Connection;
use tempfile::TempDir;

use crate::db::params;
use crate::migrations::{MIGRATIONS, POSTGRES_MIGRATIONS};
use crate::testing::TestDatabase;
use crate::*;

/// Two tests of one case: `sqlite` and `postgres`, each on a database of its own.
macro_rules! on_both {
    ($name:ident, $case:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$case(crate::Dialect::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$case(crate::Dialect::Postgres).await
            }
        }
    };
}

#[test]
fn an_older_database_is_migrated_forward_and_keeps_its_rows() {
    let tmp = TempDir::new().unwrap();
    let dir = tmp.path();
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
    let store = Store::open(dir).unwrap();
    let version: usize = store
        .conn()
        .unwrap()
        .query_row("PRAGMA user_version", params![], |r| r.get(0))
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
    Store::open(dir).unwrap();
}

#[test]
fn a_postgres_database_is_migrated_once_by_replicas_opening_together() {
    let db = TestDatabase::postgres();
    let opened: Vec<Store> = std::thread::scope(|s| {
        let opening: Vec<_> = (0..3)
            .map(|_| s.spawn(|| db.open(Arc::new(SystemClock)).unwrap()))
            .collect();
        opening.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let version: usize = opened[0]
        .conn()
        .unwrap()
        .query_row("SELECT version FROM schema_version", params![], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(version, POSTGRES_MIGRATIONS.len());
    let rows: i64 = opened[0]
        .conn()
        .unwrap()
        .query_row("SELECT COUNT(*) FROM schema_version", params![], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(rows, 1);
    drop(opened);
    db.open(Arc::new(SystemClock)).unwrap();
}

/// A store with 2.0.0 handed out to devices `d-0` .. `d-4` in `mode`, on a clock moved by hand.
fn handed_out(dialect: Dialect, mode: hotswap_plan::Mode) -> (Store, ManualClock, TestDatabase) {
    let db = TestDatabase::new(dialect);
    let clock = ManualClock::new();
    let store = db.open(Arc::new(clock.clone())).unwrap();
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
                other_models: Vec::new(),
                installed_versions: None,
                sunset_at: None,
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
                token_sha256: None,
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
            created_by: "token:test".into(),
            needs_approval: false,
            excluded: Vec::new(),
            traceparent: None,
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
    store.advance_wave(&d, clock.now()).unwrap();
    (store, clock, db)
}

/// Device, state, outcome, reason, whether a deadline is set, the device's version.
type Row = (String, String, Option<String>, Option<String>, bool, String);

/// Each device's assignment and inventory row, as far as reports change them.
fn rows(store: &Store) -> Vec<Row> {
    store
        .conn()
        .unwrap()
        .query_map(
            "SELECT a.device_id, a.state, a.outcome, a.reason, a.deadline IS NOT NULL, d.version
             FROM assignments a JOIN devices d ON d.device_id = a.device_id ORDER BY a.id",
            params![],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap()
}

// A device whose assignment timed out is tried again after the backoff, and the store says
// when, so its caller can wake the device then; until then the device is handed nothing.
on_both!(
    a_retried_device_is_handed_its_assignment_again_when_its_backoff_ends,
    retried_device
);
async fn retried_device(dialect: Dialect) {
    let (store, clock, _db) = handed_out(dialect, hotswap_plan::Mode::Install);
    let d = store.deployment(1).unwrap();
    // Every deadline (600 s) has passed: each device is tried again after 30 s.
    clock.advance_ms(601_000);
    let late = clock.now();
    let expired = store.expire(&d, late).unwrap();
    assert_eq!(expired.count, 5);
    let mut retried = expired.retried.clone();
    retried.sort();
    let expected: Vec<(String, UnixMillis)> = (0..5)
        .map(|i| (format!("d-{i}"), late.plus_ms(30_000)))
        .collect();
    assert_eq!(retried, expected);
    clock.advance_ms(29_000);
    assert_eq!(store.assignment("d-0".into()).await.unwrap(), None);
    clock.advance_ms(1_000);
    let again = store.assignment("d-0".into()).await.unwrap().unwrap();
    assert_eq!(again.attempt, 2);
    assert_eq!(again.state, DeviceState::Assigned);
}

// A decision's samples are stored deflated, and rows stored before (JSON text) still read.
on_both!(
    decision_samples_are_stored_deflated_and_older_rows_still_read,
    deflated_samples
);
async fn deflated_samples(dialect: Dialect) {
    let (store, clock, _db) = handed_out(dialect, hotswap_plan::Mode::Install);
    let d = store.deployment(1).unwrap();
    let mut view = store.advance_wave(&d, clock.now()).unwrap();
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
    store.decide(&d, &view, &verdict, clock.now()).unwrap();
    let stored: Vec<u8> = store
        .conn()
        .unwrap()
        .query_row("SELECT samples FROM decisions", params![], |r| r.get(0))
        .unwrap();
    let text = serde_json::to_string(&view.samples).unwrap();
    assert!(
        stored.len() * 10 < text.len(),
        "{} bytes for {}",
        stored.len(),
        text.len()
    );
    let mut decided = 1;
    if dialect == Dialect::Sqlite {
        // A row as an earlier release stored it: the samples as JSON text.
        store
            .conn()
            .unwrap()
            .execute(
                "INSERT INTO decisions (deployment_id, wave, policy, config, stats, samples, verdict, at)
                 SELECT deployment_id, wave, policy, config, stats, ?1, verdict, at FROM decisions",
                params![text],
            )
            .unwrap();
        decided += 1;
    }
    let decisions = store.decisions(1, 10, true).unwrap();
    assert_eq!(decisions.len(), decided);
    for decision in &decisions {
        assert_eq!(decision.samples.as_ref(), Some(&view.samples));
        assert_eq!(decision.verdict, verdict);
    }
    let summaries = store.decisions(1, 10, false).unwrap();
    assert!(summaries.iter().all(|d| d.samples.is_none()));
    drop(store);
}

// Batched reports answer and store what the same reports sent one by one do, including
// when their runs of progress reports are applied from one read and one write.
on_both!(
    a_batch_of_reports_does_what_the_same_reports_one_by_one_do,
    batched_reports
);
async fn batched_reports(dialect: Dialect) {
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
                traceparent: None,
                took_ms: None,
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
        let (batched, _clock_a, _db_a) = handed_out(dialect, mode);
        let (one_by_one, _clock_b, _db_b) = handed_out(dialect, mode);
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
    }
}

// The audit log only grows: no statement may change or remove an entry.
on_both!(the_audit_log_is_append_only, append_only_audit);
async fn append_only_audit(dialect: Dialect) {
    let db = TestDatabase::new(dialect);
    let store = db.open(Arc::new(SystemClock)).unwrap();
    store
        .append_audit(NewAudit {
            actor: "token:admin".into(),
            token_id: Some(1),
            source: Some("127.0.0.1".into()),
            action: "POST /api/v1/firmware".into(),
            object: Some("/api/v1/firmware".into()),
            status: 201,
            count: 1,
        })
        .await
        .unwrap();
    for sql in ["UPDATE audit SET status = 200", "DELETE FROM audit"] {
        let err = store.conn().unwrap().execute(sql, params![]).unwrap_err();
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    let page = store.audit(&Default::default()).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].status, 201);
}

// Each text of an entry is cut to a bound, and a page ends once its entries hold a bound of
// bytes, whatever its `limit`: a page of a thousand entries of long paths was megabytes.
on_both!(audit_entries_and_pages_are_bounded_in_bytes, bounded_audit);
async fn bounded_audit(dialect: Dialect) {
    let db = TestDatabase::new(dialect);
    let store = db.open(Arc::new(SystemClock)).unwrap();
    // Every text long: a page fills in a few hundred entries.
    for i in 0..400 {
        store
            .append_audit(NewAudit {
                actor: format!("user:{}", "a".repeat(10_000)),
                token_id: None,
                source: Some(format!("{i}{}", "s".repeat(10_000))),
                action: format!("login refused {}", "x".repeat(10_000)),
                object: Some(format!("/api/v1/devices/{}", "é".repeat(60_000))),
                status: 401,
                count: 1,
            })
            .await
            .unwrap();
    }
    let page = store
        .audit(&hotswap_protocol::AuditQuery {
            limit: Some(MAX_AUDIT_PAGE),
            ..Default::default()
        })
        .unwrap();
    let object = page.entries[0].object.as_deref().unwrap();
    assert!(
        object.len() <= AUDIT_FIELD_MAX_BYTES && object.ends_with('…'),
        "{}",
        object.len()
    );
    let bytes: usize = page
        .entries
        .iter()
        .map(|e| {
            e.object.as_ref().map_or(0, String::len)
                + e.source.as_ref().map_or(0, String::len)
                + e.actor.len()
                + e.action.len()
        })
        .sum();
    assert!(bytes <= AUDIT_PAGE_MAX_BYTES, "{bytes} bytes in a page");
    assert!(page.entries.len() < MAX_AUDIT_PAGE);
    assert_eq!(
        page.next,
        page.entries.last().map(|e| e.id),
        "a page cut short says where to go on"
    );
}

// A replica hears the devices another announces, and not its own announcements.
#[test]
fn replicas_hear_each_others_announcements_and_not_their_own() {
    let db = TestDatabase::postgres();
    let a = db.open(Arc::new(SystemClock)).unwrap();
    let b = db.open(Arc::new(SystemClock)).unwrap();
    let heard = |store: &Store| {
        let (tx, rx) = std::sync::mpsc::channel();
        store.listen(move |wake| {
            let _ = tx.send(wake);
        });
        rx
    };
    let (heard_a, heard_b) = (heard(&a), heard(&b));
    let devices: Vec<String> = (0..2000).map(|i| format!("device-{i}")).collect();
    // The listeners connect in the background: a probe until b hears one, then the devices.
    let announcer = a.announcer().expect("PostgreSQL announces");
    let ready = (0..100).any(|_| {
        announcer.announce(vec!["probe".into()]);
        heard_b
            .recv_timeout(std::time::Duration::from_millis(100))
            .is_ok()
    });
    assert!(ready, "b heard nothing in 10 s");
    announcer.announce(devices.clone());
    // Split under the notification limit: several notifications, each heard.
    let mut woken = std::collections::BTreeSet::new();
    while !devices.iter().all(|d| woken.contains(d)) {
        match heard_b.recv_timeout(std::time::Duration::from_secs(10)) {
            Ok(Heard::Devices(ids)) => woken.extend(ids),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    woken.remove("probe");
    let woken: Vec<String> = woken.into_iter().collect();
    let mut expected = devices.clone();
    expected.sort();
    assert_eq!(woken, expected);
    // Changed credentials come on their own channel, told apart from devices.
    announcer.credentials_changed(vec!["device:device-7".into()]);
    let changed = std::iter::from_fn(|| {
        heard_b
            .recv_timeout(std::time::Duration::from_secs(10))
            .ok()
    })
    .find(|h| matches!(h, Heard::Credentials(_)));
    assert_eq!(
        changed,
        Some(Heard::Credentials(vec!["device:device-7".into()]))
    );
    assert!(
        heard_a
            .try_iter()
            .all(|h| matches!(h, Heard::Listening | Heard::Deaf)),
        "a heard itself"
    );
    assert!(
        a.announcer().is_some()
            && TestDatabase::sqlite()
                .open(Arc::new(SystemClock))
                .unwrap()
                .announcer()
                .is_none()
    );
}
