//! `/api/v1/devices`: the device registry, its paged lists, and one device's inventory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::device_protocol::SlotInfo;
use crate::names::{Label, Name, Version};
use crate::state::{AssignmentKind, AssignmentMode, DeviceState, DeviceStatus};
use crate::time::UnixSeconds;

/// `POST /api/v1/devices`, and each device of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceRegistration {
    #[schema(schema_with = Name::schema)]
    pub device_id: String,
    #[schema(schema_with = Name::schema)]
    pub device_model: String,
    #[serde(default)]
    #[schema(schema_with = Name::optional_schema)]
    pub region: String,
    #[serde(default)]
    #[schema(schema_with = Name::labels_schema)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    #[schema(schema_with = Name::list_schema)]
    pub groups: Vec<String>,
    /// The version it runs from the factory; empty when unknown.
    #[serde(default)]
    #[schema(schema_with = Version::optional_schema)]
    pub firmware_version: String,
}

/// The query of a change of standing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StandingQuery {
    /// Change it only if the device enrolled with the key of this fingerprint (`sha256:...`,
    /// as `keyFingerprint` shows it).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// An operator's change of a device's standing in the fleet, each a route of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandingChange {
    /// A pending (enrolled) device may claim its credential.
    Accept,
    /// A device (pending or not) is refused from now on; its credential stops at once.
    Reject,
    /// The device leaves the fleet; its credential stops at once.
    Decommission,
}

impl StandingChange {
    /// Its route.
    pub fn route(self) -> &'static str {
        match self {
            StandingChange::Accept => crate::routes::DEVICE_ACCEPT,
            StandingChange::Reject => crate::routes::DEVICE_REJECT,
            StandingChange::Decommission => crate::routes::DEVICE_DECOMMISSION,
        }
    }
}

/// What to do with devices of a batch that are registered already.
#[derive(Debug, Deserialize, Serialize, Default, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IfRegistered {
    /// Refuse the whole batch, naming them (the default).
    #[default]
    Fail,
    /// Leave them as they are and register the others.
    Skip,
    /// Leave their records as they are, but give them new credentials (the old ones stop
    /// working): a simulator or a factory line starting over.
    Reissue,
}

/// `POST /api/v1/devices/batch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceBatch {
    pub devices: Vec<DeviceRegistration>,
    #[serde(default)]
    pub if_registered: IfRegistered,
}

/// The answer to a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchAnswer {
    pub created: usize,
    /// Devices left as they were: registered already (`ifRegistered: skip`), or, with
    /// `ifRegistered: reissue`, not in the fleet (pending, rejected or decommissioned devices
    /// are given no credential this way).
    pub skipped: Vec<String>,
    /// The credential of each device created (and, with `ifRegistered: reissue`, of each one
    /// in the fleet registered before), shown this once: the server keeps only its hash.
    pub tokens: Vec<crate::auth::DeviceToken>,
}

/// The answer to `POST /api/v1/devices`: the device and its credential, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisteredDevice {
    #[serde(flatten)]
    pub device: DeviceRecord,
    pub token: String,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRecord {
    pub device_id: String,
    pub device_model: String,
    pub region: String,
    pub labels: BTreeMap<String, String>,
    pub groups: Vec<String>,
    /// The agent version the device runs; empty before its first report.
    pub firmware_version: String,
    pub status: DeviceStatus,
    pub last_seen: Option<UnixSeconds>,
    pub created_at: UnixSeconds,
    /// For a device that enrolled itself: `sha256:` and the SHA-256 of its public key, to
    /// compare with what the device shows before accepting it.
    #[serde(default)]
    pub key_fingerprint: Option<String>,
}

/// `GET /api/v1/devices`'s query; every field narrows the list.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    utoipa::IntoParams,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `key=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = Label::schema)]
    #[param(schema_with = Label::schema)]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeviceStatus>,
    /// Devices whose installed version is `current`, `deprecated` or `sunset` (left behind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_status: Option<crate::FirmwareStatus>,
    /// The last device id of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /api/v1/fleet`: the whole fleet counted, for charts; no device listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetSummary {
    /// Registered devices, decommissioned included.
    pub devices: u64,
    /// Devices by the agent version they run.
    pub by_version: BTreeMap<String, u64>,
    /// Devices by status (`registered`, `online`, `quarantined`, ...).
    pub by_status: BTreeMap<String, u64>,
    pub by_region: BTreeMap<String, u64>,
}

/// One page of devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DevicePage {
    pub devices: Vec<DeviceRecord>,
    /// Pass as `after` for the next page; null on the last page.
    pub next: Option<String>,
}

/// One line of a device's history: what a deployment asked of it and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub deployment_id: i64,
    /// `rollout`, or `rollback` when it was sent back.
    pub kind: AssignmentKind,
    pub mode: AssignmentMode,
    pub version: String,
    pub from_version: String,
    pub state: DeviceState,
    pub attempts: u32,
    pub reason: Option<String>,
    pub updated_at: UnixSeconds,
}

/// `GET /api/v1/devices/{id}/lineage`: the versions a device went through, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    pub device_id: String,
    /// The version it runs now, as it last said.
    pub firmware_version: String,
    pub steps: Vec<LineageStep>,
}

/// One step of a device's lineage: an assignment that ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LineageStep {
    pub deployment_id: i64,
    /// What it ran before.
    pub from_version: String,
    /// The version it was handed.
    pub version: String,
    /// What it ran after: `version` when it took it, `fromVersion` when it did not.
    pub to_version: String,
    pub how: crate::LineageHow,
    /// How the assignment ended: `confirmed`, `rolled-back`, `failed` or `cancelled`.
    pub state: DeviceState,
    pub reason: Option<String>,
    /// When it ended.
    pub at: UnixSeconds,
}

/// What `GET /api/v1/devices/{id}` shows beyond the registry row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// The slots as the device last described them.
    pub slots: Option<Vec<SlotInfo>>,
    /// Its last health report, with the version that sent it.
    pub health: Option<serde_json::Value>,
    /// Newest first, at most 50.
    pub history: Vec<HistoryEntry>,
}

/// `GET /api/v1/devices/{id}`: the registry row and the inventory, side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: DeviceRecord,
    #[serde(flatten)]
    pub inventory: Inventory,
}

/// `POST /api/v1/enroll`: a device that was not registered asks to join, with the fleet's
/// enrollment secret and the Ed25519 public key it will sign with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Enrollment {
    #[serde(flatten)]
    pub device: DeviceRegistration,
    /// Its Ed25519 public key, 64 hex digits.
    pub public_key: String,
    pub enrollment_secret: String,
}

/// `POST /api/v1/enroll/token`: an accepted device proves it holds its key and gets a credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenClaim {
    #[schema(schema_with = Name::schema)]
    pub device_id: String,
    /// Seconds since the Unix epoch, within `ENROLLMENT_CLOCK_SKEW_SECONDS` of the server's.
    pub timestamp: i64,
    /// Ed25519 over [`TokenClaim::signed_bytes`], 128 hex digits.
    pub signature: String,
}

impl TokenClaim {
    /// What the device signs: `hotswap-enroll:<deviceId>:<timestamp>`.
    pub fn signed_bytes(device_id: &str, timestamp: i64) -> Vec<u8> {
        format!("hotswap-enroll:{device_id}:{timestamp}").into_bytes()
    }
}

/// How far a token claim's timestamp may be from the server's clock, in seconds.
pub const ENROLLMENT_CLOCK_SKEW_SECONDS: i64 = 300;
