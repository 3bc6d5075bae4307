//! `/api/v1/device-groups`: named sets of target devices, a fixed list of device ids (static) or a
//! filter evaluated when the group is used (dynamic).

use serde::{Deserialize, Serialize};

use crate::names::{Label, Name};
use crate::time::UnixSeconds;

/// The filter of a dynamic group, and a deployment's `targetFilter`; every field narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// A device tag set at registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `key=value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = Label::schema)]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_version: Option<String>,
}

/// `POST /api/v1/device-groups`: `devices` for a static group or `filter` for a dynamic one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupCreation {
    #[schema(schema_with = Name::schema)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<GroupFilter>,
    /// Deployments to this group's devices wait for an approval.
    #[serde(default)]
    pub requires_approval: bool,
}

/// A stored group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceGroup {
    pub name: String,
    /// The device ids of a static group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<String>>,
    /// The filter of a dynamic group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<GroupFilter>,
    #[serde(default)]
    pub requires_approval: bool,
    pub created_at: UnixSeconds,
}

/// A group with the ids of the devices it stands for now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedGroup {
    #[serde(flatten)]
    pub group: DeviceGroup,
    pub members: Vec<String>,
}
