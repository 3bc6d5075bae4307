//! The schema, as migrations applied in order; the database's `user_version` says how many ran.
//! Append-only: add a file and a line here, never edit one that shipped.

use rusqlite::Connection;

use crate::StoreError;

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
];

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Corrupt(format!(
            "schema version {applied}: this release knows {} migrations; the database was written by a newer release",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
