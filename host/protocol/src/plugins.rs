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
    /// The most a plugin may ask for at upload, per key (the server's `[plugin-ceilings]`).
    pub ceilings: PluginLimitOverrides,
}

/// The limits one plugin asks for at upload (the query of `POST /api/v1/plugins`), over the
/// server's `[plugin-limits]`, each at most its `[plugin-ceilings]`. The keys are those of the
/// tables; a key left out takes the server's value. Stack size, log line length and the pool
/// are the server's alone.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    utoipa::IntoParams,
)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PluginLimitOverrides {
    /// The largest component, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub max_component_bytes: Option<u64>,
    /// Core instances the component may make.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub max_core_instances: Option<u32>,
    /// Linear memories the component may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub max_memories: Option<u32>,
    /// Fuel for one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub fuel_per_call: Option<u64>,
    /// Linear memory one instance may have, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub memory_bytes: Option<u64>,
    /// Wall-clock time one call may take, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub deadline_ms: Option<u64>,
    /// Log lines one call may write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1)]
    #[schema(minimum = 1)]
    pub log_lines_per_call: Option<u32>,
}

impl PluginLimitOverrides {
    /// Every key with its value if given, in the order of the tables: two of these line up
    /// key by key.
    pub fn keys(&self) -> [(&'static str, Option<u64>); 7] {
        [
            ("max-component-bytes", self.max_component_bytes),
            ("max-core-instances", self.max_core_instances.map(u64::from)),
            ("max-memories", self.max_memories.map(u64::from)),
            ("fuel-per-call", self.fuel_per_call),
            ("memory-bytes", self.memory_bytes),
            ("deadline-ms", self.deadline_ms),
            ("log-lines-per-call", self.log_lines_per_call.map(u64::from)),
        ]
    }

    /// Each key and its value, for those given, in the order of the tables.
    pub fn given(&self) -> Vec<(&'static str, u64)> {
        self.keys()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect()
    }
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
    /// The limits it asked for at upload; none for a built-in.
    #[serde(default)]
    pub limits: PluginLimitOverrides,
}
