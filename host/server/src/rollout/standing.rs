//! A device's standing in the fleet, changed by an operator: a pending device accepted, a device
//! rejected, a device decommissioned. A change that takes a credential away takes it at the
//! very next request: the credential cache forgets the device here, whoever asked.

use hotswap_protocol::{DeviceRecord, DeviceStatus, StandingChange};

use super::{Rollout, RolloutError};

/// The statuses a change of standing applies to and the status it leads to.
pub fn transition(change: StandingChange) -> (&'static [DeviceStatus], DeviceStatus) {
    use DeviceStatus::*;
    match change {
        StandingChange::Accept => (&[Pending], Registered),
        StandingChange::Reject => (&[Pending, Registered, Online, Quarantined], Rejected),
        StandingChange::Decommission => (&[Registered, Online, Quarantined], Decommissioned),
    }
}

impl Rollout {
    /// Changes device `id`'s standing; a device in a status the change does not apply to is a
    /// [`RolloutError::Conflict`] naming both.
    pub fn set_standing(
        &self,
        id: &str,
        change: StandingChange,
    ) -> Result<DeviceRecord, RolloutError> {
        self.set_standing_of_key(id, change, None)
    }

    /// [`Rollout::set_standing`], only if the device enrolled with the key whose fingerprint is
    /// `fingerprint` (when given): an operator accepting a device names the key it expects, so a
    /// look-alike enrolled under a real device's id with another key is not accepted by mistake.
    pub fn set_standing_of_key(
        &self,
        id: &str,
        change: StandingChange,
        fingerprint: Option<&str>,
    ) -> Result<DeviceRecord, RolloutError> {
        let (from, to) = transition(change);
        let d = self.store.device(id)?;
        if let Some(expected) = fingerprint
            && d.key_fingerprint.as_deref() != Some(expected)
        {
            return Err(RolloutError::Conflict(format!(
                "device `{id}` enrolled with the key {}, not the expected {expected}",
                d.key_fingerprint
                    .as_deref()
                    .unwrap_or("(none: it did not enroll itself)")
            )));
        }
        if !from.contains(&d.status) {
            return Err(RolloutError::Conflict(format!(
                "device `{id}` is {}, so it cannot become {to}",
                d.status
            )));
        }
        let device = self.store.set_device_status(id, to)?;
        self.credentials.forget_device(id);
        Ok(device)
    }
}
