//! `/api/v1/firmware`: agent versions per device model, with their signed manifests.

use serde::{Deserialize, Serialize};

use crate::time::UnixSeconds;

/// `POST /api/v1/firmware`: a version to register. The checksum is checked against the bytes
/// and the signature of the manifest against the server's trusted release keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirmwareRegistration {
    #[schema(schema_with = crate::names::Version::schema)]
    pub version: String,
    #[schema(schema_with = crate::names::Name::schema)]
    pub device_model: String,
    #[serde(default)]
    pub release_notes: String,
    /// `sha256:<hex>` of the binary.
    pub checksum: String,
    /// The binary, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Not served: the server stores what it has checked, so it needs the bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_url: Option<String>,
    /// The Ed25519 signature of the device manifest, hex.
    pub signature: String,
    #[serde(default)]
    pub security_counter: u32,
    /// What it runs on and what it may be installed over; by default, `deviceModel` and any
    /// installed version.
    #[serde(default)]
    pub compatibility: Compatibility,
    /// After this time it can no longer be deployed; devices that run it are then listed as
    /// left behind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset_at: Option<UnixSeconds>,
}

/// What a version runs on, and what it may be installed over.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Compatibility {
    /// The device models it runs on; the registration's `deviceModel` is always one of them.
    #[serde(default)]
    pub device_models: Vec<String>,
    /// The installed versions it may go over, a semver range such as `>=1.4.0, <3.0.0` (for an
    /// agent whose stored state or protocol changed); none: any version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed_versions: Option<String>,
}

/// A registered firmware (agent) version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Firmware {
    pub id: i64,
    pub device_model: String,
    pub version: String,
    /// `sha256:<hex>`.
    pub checksum: String,
    pub size: u64,
    pub key_id: String,
    pub signature: String,
    pub security_counter: u32,
    pub release_notes: String,
    pub deprecated: bool,
    pub created_at: UnixSeconds,
    pub compatibility: Compatibility,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset_at: Option<UnixSeconds>,
}

/// `GET /api/v1/firmware/{id}`: a version, and how many devices came to it from which version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FirmwareDetail {
    #[serde(flatten)]
    pub firmware: Firmware,
    /// Devices that confirmed this version, by the version they ran before, most first.
    pub came_from: Vec<CameFrom>,
}

/// Devices that came to a version from `from_version`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CameFrom {
    pub from_version: String,
    pub devices: u64,
}

/// `POST /api/v1/firmware/{id}/sunset`: when the version stops being deployable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sunset {
    pub at: UnixSeconds,
}

/// `GET /api/v1/firmware`'s query.
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
pub struct FirmwareQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    #[serde(default)]
    pub include_deprecated: bool,
}
