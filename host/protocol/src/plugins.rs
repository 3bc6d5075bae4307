//! `/api/v1/plugins`: strategies and health policies, built in and uploaded.

use serde::{Deserialize, Serialize};

use crate::state::PluginKind;

/// The limits every plugin runs under on this server (its `[plugin-limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimits {
    pub max_component_bytes: u64,
    pub max_core_instances: u32,
    pub max_memories: u32,
    pub fuel_per_call: u64,
    pub memory_bytes: u64,
    pub deadline_ms: u64,
    pub stack_bytes: u64,
    pub log_lines_per_call: u32,
    pub log_line_bytes: u64,
    pub pool_instances: u32,
}

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
