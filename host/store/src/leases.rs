//! Which server orchestrates a deployment. Every step of the orchestrator ([`crate::rollout`])
//! begins by holding the deployment's lease in its own transaction: renewing it when this
//! server holds it, taking it when nobody does or its holder let it run out, and refusing
//! ([`StoreError::NotOwner`]) while another server holds it. The check and the step commit
//! together, under the lock that orders the store's writes, so a server whose lease was taken
//! over cannot act on the deployment again: safety needs no clock. Clocks only decide when a
//! lease has run out, so replicas' clocks should agree (NTP) for takeovers to be prompt.

use hotswap_protocol::UnixMillis;

use crate::db::{Tx, params};
use crate::deployments::event;
use crate::{Store, StoreError};

/// How long a lease lasts unless renewed, in milliseconds: a deployment whose server died is
/// taken over by another within this and one orchestrator tick.
pub const LEASE_MS: i64 = 5_000;

/// Who holds a deployment's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub owner: String,
    pub expires_at: UnixMillis,
}

impl Store {
    /// This server's name as a lease holder: unique to this open store.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Who holds deployment `id`'s lease, if anyone ever did.
    pub fn lease(&self, id: i64) -> Result<Option<Lease>, StoreError> {
        self.reader()?.query_opt(
            "SELECT owner, expires_at FROM deployment_leases WHERE deployment_id = ?1",
            params![id],
            |r| {
                Ok(Lease {
                    owner: r.get(0)?,
                    expires_at: UnixMillis(r.get(1)?),
                })
            },
        )
    }

    /// Devices handed more than one assignment that has not ended: none, ever, however many
    /// replicas hand them out (the replica tests check it throughout a rollout).
    pub fn doubly_assigned(&self) -> Result<Vec<String>, StoreError> {
        self.reader()?.query_map(
            "SELECT device_id FROM assignments WHERE outcome IS NULL AND state != 'pending'
             GROUP BY device_id HAVING COUNT(*) > 1",
            params![],
            |r| r.get(0),
        )
    }

    /// A transaction for a step of deployment `id`'s orchestration, its lease held by this
    /// server until `now` + [`LEASE_MS`].
    pub(crate) fn begin_step(&self, id: i64, now: UnixMillis) -> Result<Tx<'_>, StoreError> {
        // Read first, without the writes lock: a replica that does not orchestrate the
        // deployment would otherwise stop every device write to learn it, every tick.
        if let Some(lease) = self.lease(id)?
            && lease.owner != self.replica
            && lease.expires_at > now
        {
            return Err(StoreError::NotOwner {
                deployment: id,
                owner: lease.owner,
            });
        }
        let tx = self.begin()?;
        hold(&tx, id, &self.replica, now)?;
        Ok(tx)
    }
}

fn hold(tx: &Tx<'_>, id: i64, me: &str, now: UnixMillis) -> Result<(), StoreError> {
    let held = tx.query_opt(
        "SELECT owner, expires_at FROM deployment_leases WHERE deployment_id = ?1",
        params![id],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)),
    )?;
    match &held {
        Some((owner, expires_at)) if owner != me && *expires_at > now.0 => {
            return Err(StoreError::NotOwner {
                deployment: id,
                owner: owner.clone(),
            });
        }
        _ => {}
    }
    tx.execute(
        "INSERT INTO deployment_leases (deployment_id, owner, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (deployment_id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at",
        params![id, me, now.0 + LEASE_MS],
    )?;
    if let Some((owner, expires_at)) = held
        && owner != me
    {
        event(
            tx,
            id,
            None,
            &format!(
                "orchestrated by {me}, taken over from {owner}, whose lease ran out {} ms before",
                now.0 - expires_at
            ),
            now,
        )?;
    }
    Ok(())
}
