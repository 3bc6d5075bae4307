//! The state enums, each with one spelling (kebab-case) shared by JSON, SQL and messages:
//! `serde` and `strum` derive both from the same `rename_all`/`serialize_all`, and
//! [`Spelling::decode`] refuses a value it does not know instead of guessing one.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr, VariantArray};

/// A stored or received value that is not one of an enum's spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownValue {
    /// What the value should have been (`deployment state`, `assignment mode`, ...).
    pub what: &'static str,
    pub found: String,
}

impl std::fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown {} {:?}", self.what, self.found)
    }
}

impl std::error::Error for UnknownValue {}

/// An enum with one spelling per variant.
pub trait Spelling: Sized + Copy + std::str::FromStr + Into<&'static str> {
    /// What a value of it is, for error messages.
    const WHAT: &'static str;

    /// The spelling, as JSON and SQL have it.
    fn as_str(self) -> &'static str {
        self.into()
    }

    /// The variant spelled `s`, or an error naming what `s` should have been.
    fn decode(s: &str) -> Result<Self, UnknownValue> {
        s.parse().map_err(|_| UnknownValue {
            what: Self::WHAT,
            found: s.to_string(),
        })
    }
}

/// Derives for a state enum: serde and strum with the same kebab-case spelling.
macro_rules! spelled {
    ($(#[$meta:meta])* pub enum $name:ident as $what:literal { $($body:tt)* }) => {
        $(#[$meta])*
        #[derive(
            Debug,
            Clone,
            Copy,
            PartialEq,
            Eq,
            Hash,
            ::serde::Serialize,
            ::serde::Deserialize,
            ::strum::Display,
            ::strum::EnumString,
            ::strum::IntoStaticStr,
            ::strum::VariantArray,
            ::utoipa::ToSchema,
        )]
        #[serde(rename_all = "kebab-case")]
        #[strum(serialize_all = "kebab-case")]
        pub enum $name { $($body)* }

        impl $crate::state::Spelling for $name {
            const WHAT: &'static str = $what;
        }
    };
}
pub(crate) use spelled;

spelled! {
    /// Where a deployment is.
    pub enum DeploymentState as "deployment state" {
        /// Targets protected devices: nothing is handed out until someone other than its
        /// creator approves it; a denial cancels it.
        WaitingForApproval,
        Running,
        Paused,
        Completed,
        RollingBack,
        RolledBack,
        Cancelled,
    }
}

impl DeploymentState {
    /// Still holding its devices.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            DeploymentState::WaitingForApproval
                | DeploymentState::Running
                | DeploymentState::Paused
                | DeploymentState::RollingBack
        )
    }
}

/// Where one device is in one assignment. Devices report the states from `downloading` on; the
/// order of the first eight is the order an update goes through, and a report never moves an
/// assignment backwards.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Display,
    EnumString,
    IntoStaticStr,
    VariantArray,
    utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum DeviceState {
    /// Planned; its wave has not reached it.
    Pending,
    /// Handed out at the device's next check-in.
    Assigned,
    Downloading,
    Downloaded,
    Verifying,
    /// Written and verified in the inactive slot (the end of a `stage`).
    Installed,
    Trial,
    Confirmed,
    /// The device went back to its previous agent: after a failed trial (a failure of the
    /// rollout), or as asked (the success of a rollback).
    RolledBack,
    Failed,
    Cancelled,
}

impl Spelling for DeviceState {
    const WHAT: &'static str = "device state";
}

impl DeviceState {
    /// What a device may report.
    pub fn reportable(self) -> bool {
        !matches!(
            self,
            DeviceState::Pending | DeviceState::Assigned | DeviceState::Cancelled
        )
    }
}

spelled! {
    /// What an assignment asks of a device.
    pub enum AssignmentMode as "assignment mode" {
        Install,
        Stage,
        Activate,
        /// Go back to `version`: switch to the other slot when it holds it, install it otherwise.
        Rollback,
    }
}

impl AssignmentMode {
    /// The outcome a report of `state` gives an assignment in this mode, if it ends it.
    pub fn outcome(self, state: DeviceState) -> Option<Outcome> {
        match (self, state) {
            (_, DeviceState::Failed) => Some(Outcome::Failed),
            (AssignmentMode::Rollback, DeviceState::RolledBack) => Some(Outcome::Succeeded),
            (_, DeviceState::RolledBack) => Some(Outcome::Failed),
            (_, DeviceState::Confirmed) => Some(Outcome::Succeeded),
            (AssignmentMode::Stage, DeviceState::Installed) => Some(Outcome::Succeeded),
            _ => None,
        }
    }
}

impl From<hotswap_plan::Mode> for AssignmentMode {
    fn from(mode: hotswap_plan::Mode) -> Self {
        match mode {
            hotswap_plan::Mode::Install => AssignmentMode::Install,
            hotswap_plan::Mode::Stage => AssignmentMode::Stage,
            hotswap_plan::Mode::Activate => AssignmentMode::Activate,
        }
    }
}

spelled! {
    /// How an assignment ended.
    pub enum Outcome as "assignment outcome" {
        Succeeded,
        Failed,
        /// Called off by a cancel or a rollback before it ended.
        Cancelled,
    }
}

spelled! {
    /// Why an assignment exists: a wave of the plan, or a device sent back by a rollback.
    pub enum AssignmentKind as "assignment kind" {
        Rollout,
        Rollback,
    }
}

spelled! {
    /// Where a version stands in its life: deployable, deprecated by an operator, or past its
    /// sunset.
    pub enum FirmwareStatus as "firmware status" {
        Current,
        Deprecated,
        Sunset,
    }
}

spelled! {
    /// How a step of a device's lineage came about.
    pub enum LineageHow as "lineage step" {
        /// Written and activated in one go.
        Install,
        /// Written to the inactive slot, to be activated later.
        Stage,
        /// A staged version switched on.
        Activate,
        /// Sent back to its previous version by a rollback.
        Rollback,
        /// Tried the version and went back to the one it ran, on its own.
        DeviceRevert,
    }
}

spelled! {
    /// A registered device's standing.
    pub enum DeviceStatus as "device status" {
        /// Registered, never checked in.
        Registered,
        Online,
        /// Gave no report for the last try of an assignment: what it runs is unknown, and it is
        /// left out of new deployments until an operator looks at it.
        Quarantined,
        /// Enrolled itself with the fleet's enrollment secret and its public key; waits for an
        /// operator to accept or reject it. It has no credential yet.
        Pending,
        /// Refused by an operator: its credential no longer works.
        Rejected,
        /// Taken out of the fleet: its credential no longer works.
        Decommissioned,
    }
}

spelled! {
    /// Which contract a plugin implements.
    pub enum PluginKind as "plugin kind" {
        Strategy,
        HealthPolicy,
    }
}

impl DeviceStatus {
    /// Whether deployments may reach it.
    pub fn deployable(self) -> bool {
        matches!(self, DeviceStatus::Registered | DeviceStatus::Online)
    }
}

impl PluginKind {
    /// The WIT world a component of this kind implements.
    pub fn world(self) -> &'static str {
        match self {
            PluginKind::Strategy => "hotswap:plugin/strategy@0.1.0",
            PluginKind::HealthPolicy => "hotswap:plugin/health-policy@0.1.0",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trips<T: Spelling + VariantArray + Serialize + std::fmt::Debug + PartialEq>() {
        for v in T::VARIANTS {
            let json = serde_json::to_string(v).unwrap();
            assert_eq!(json, format!("\"{}\"", v.as_str()), "{v:?}");
            assert_eq!(T::decode(v.as_str()).as_ref(), Ok(v));
        }
        let err = T::decode("no-such-value").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("unknown {} \"no-such-value\"", T::WHAT)
        );
    }

    #[test]
    fn every_state_has_one_spelling_in_json_and_sql_and_unknown_ones_are_refused() {
        round_trips::<DeploymentState>();
        round_trips::<DeviceState>();
        round_trips::<AssignmentMode>();
        round_trips::<Outcome>();
        round_trips::<AssignmentKind>();
        round_trips::<DeviceStatus>();
        round_trips::<PluginKind>();
        assert_eq!(DeploymentState::RollingBack.as_str(), "rolling-back");
        assert_eq!(PluginKind::HealthPolicy.to_string(), "health-policy");
    }
}
