//! The schema, as migrations applied in order, one set per database: SQLite's database says in
//! `user_version` how many ran, PostgreSQL's in `schema_version`. Append-only: add a file and a
//! line here, never edit one that shipped.

use rusqlite::Connection;

use crate::StoreError;
use crate::db::{Postgres, Tx, params};

pub(crate) const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/0001_firmware.sql"),
    include_str!("../migrations/0002_devices.sql"),
    include_str!("../migrations/0003_plugins.sql"),
    include_str!("../migrations/0004_device_groups.sql"),
    include_str!("../migrations/0005_deployments.sql"),
    include_str!("../migrations/0006_assignments_wave_outcome_index.sql"),
    include_str!("../migrations/0007_auth.sql"),
    include_str!("../migrations/0008_approvals.sql"),
    include_str!("../migrations/0009_users.sql"),
    include_str!("../migrations/0010_enrollment.sql"),
    include_str!("../migrations/0011_firmware_lifecycle.sql"),
    include_str!("../migrations/0012_plugin_limits.sql"),
    include_str!("../migrations/0013_deployment_trace.sql"),
    include_str!("../migrations/0014_deployment_leases.sql"),
    include_str!("../migrations/0015_security.sql"),
];

/// PostgreSQL's, begun when the store had SQLite's first 14.
pub(crate) const POSTGRES_MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_schema.sql"),
    include_str!("../migrations/postgres/0002_security.sql"),
];

/// The advisory lock a replica holds while it migrates, so replicas started together migrate
/// once (`hotswap-m` in ASCII).
const MIGRATION_LOCK: i64 = 0x6874_7377_6170_2d6d;

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    newer(applied, MIGRATIONS.len())?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}

pub(crate) fn migrate_postgres(pg: &Postgres) -> Result<(), StoreError> {
    let client = pg.client()?;
    let tx = Tx::postgres(&client).begin(Some(&format!(
        "SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"
    )))?;
    tx.batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")?;
    let applied: Option<usize> =
        tx.query_opt("SELECT version FROM schema_version", params![], |r| {
            r.get(0)
        })?;
    let applied = match applied {
        Some(n) => n,
        None => {
            tx.execute("INSERT INTO schema_version (version) VALUES (0)", params![])?;
            0
        }
    };
    newer(applied, POSTGRES_MIGRATIONS.len())?;
    for (i, sql) in POSTGRES_MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch(sql)?;
        tx.execute("UPDATE schema_version SET version = ?1", params![i + 1])?;
    }
    tx.commit()
}

fn newer(applied: usize, known: usize) -> Result<(), StoreError> {
    if applied > known {
        return Err(StoreError::Corrupt(format!(
            "schema version {applied}: this release knows {known} migrations; the database was written by a newer release"
        )));
    }
    Ok(())
}
