//! `/api/v1/firmware`: agent versions per device model, with their signed manifests.

use serde::{Deserialize, Serialize};

use crate::time::UnixSeconds;

/// `POST /api/v1/firmware`: a version to register. The checksum is checked against the bytes
/// and the signature of the manifest against the server's trusted release keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirmwareRegistration {
    pub version: String,
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
}

/// A registered firmware (agent) version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// `GET /api/v1/firmware`'s query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FirmwareQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    #[serde(default)]
    pub include_deprecated: bool,
}
