//! A device's standing in the fleet, changed by an operator: a pending device accepted, a device
//! rejected, a device decommissioned. A change that takes a credential away takes it at the
//! very next request: the credential cache forgets the device here, whoever asked.

use hotswap_protocol::{DeviceRecord, DeviceStatus};

use super::{Rollout, RolloutError};

/// An operator's change of a device's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A pending device may claim its credential.
    Accept,
    /// A device (pending or not) is refused from now on.
    Reject,
    /// The device leaves the fleet; its credential ends.
    Decommission,
}

impl Standing {
    /// The statuses the change applies to and the status it leads to.
    pub fn transition(self) -> (&'static [DeviceStatus], DeviceStatus) {
        use DeviceStatus::*;
        match self {
            Standing::Accept => (&[Pending], Registered),
            Standing::Reject => (&[Pending, Registered, Online, Quarantined], Rejected),
            Standing::Decommission => (&[Registered, Online, Quarantined], Decommissioned),
        }
    }
}

impl Rollout {
    /// Changes device `id`'s standing; a device in a status the change does not apply to is a
    /// [`RolloutError::Conflict`] naming both.
    pub fn set_standing(&self, id: &str, change: Standing) -> Result<DeviceRecord, RolloutError> {
        let (from, to) = change.transition();
        let d = self.store.device(id)?;
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
