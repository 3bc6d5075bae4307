//! `/api/v1/plugins`: strategies and health policies, built in and uploaded.

use serde::{Deserialize, Serialize};

use crate::state::PluginKind;

/// A plugin as operators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub kind: PluginKind,
    pub builtin: bool,
    pub summary: String,
    /// The JSON Schema of its parameters, as the plugin describes them.
    pub params_schema: serde_json::Value,
    /// Of the component's bytes; empty for a built-in.
    pub sha256: String,
}
