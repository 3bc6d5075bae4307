//! The plugin runtime: strategies and health policies as sandboxed WebAssembly components.
//!
//! Uploads pass, in order: a size limit; a check that the bytes are a component (not garbage, not
//! a core module); compilation; a check that every import is `hotswap:plugin/log@0.1.0` (or a type-only interface) and the
//! exports make one of the two worlds; linking with the world's types; and a first `describe`
//! call whose answer must be sane. Every call runs under the fuel budget, memory cap and epoch
//! deadline of [`Limits`]; a plugin that loops, grows without end, traps or returns a plan that
//! breaks [`hotswap_plan::Plan::check`] gives a [`PluginError`], and the host goes on.
//!
//! Compiled components are cached by the SHA-256 of their bytes, in memory and optionally on
//! disk; only what this host compiled is ever deserialized (each file carries an HMAC under a
//! key of this install's own).
//!
//! - [`PluginRuntime`]: the engine, the linker and the upload checks (`runtime`).
//! - [`StrategyPlugin`], [`HealthPolicyPlugin`], [`HealthSession`]: loaded plugins.
//! - [`Limits`]: fuel, memory, deadline, log.
//! - [`BUILTINS`]: the built-in strategies and health policy, embedded by the build script.
//! - [`PluginError`]: why an upload was refused or a call failed.

#![deny(unsafe_code)]

mod bindings;
mod builtin;
mod cache;
mod error;
mod health;
mod limits;
mod runtime;
mod strategy;

use std::sync::Arc;

/// The WIT `fleet` record a strategy is handed (`From<&hotswap_plan::Fleet>`), as the
/// sandbox passes it; named apart from the planning logic's own `Fleet`.
pub use bindings::Fleet as FleetRecord;
pub use bindings::{
    Description, Gate, Group, HealthSample, Label, Metric, Mode, Plan, Verdict, Wave, WaveStats,
};
pub use builtin::{BUILTINS, Builtin, builtin};
pub use cache::CACHE_KEY_FILE;
pub use error::PluginError;
pub use health::{HealthPolicyPlugin, HealthSession};
pub use hotswap_protocol::PluginKind;
pub use limits::{EPOCH_TICK, Limits};
pub use runtime::{ALLOWED_IMPORTS, LOG_IMPORT, Plugin, PluginRuntime, RuntimeConfig};
pub use strategy::StrategyPlugin;

impl PluginRuntime {
    /// The built-in strategy called `name` (`canary`, `Canary`, `blue-green`, `BlueGreen`, ...).
    pub fn builtin_strategy(&self, name: &str) -> Result<StrategyPlugin, PluginError> {
        let b = builtin(PluginKind::Strategy, name)
            .ok_or_else(|| unknown_builtin(PluginKind::Strategy, name))?;
        self.load_strategy(b.bytes)
    }

    /// The built-in health policy called `name` (`default`).
    pub fn builtin_health_policy(&self, name: &str) -> Result<HealthPolicyPlugin, PluginError> {
        let b = builtin(PluginKind::HealthPolicy, name)
            .ok_or_else(|| unknown_builtin(PluginKind::HealthPolicy, name))?;
        self.load_health_policy(b.bytes)
    }
}

fn unknown_builtin(kind: PluginKind, name: &str) -> PluginError {
    let known: Vec<&str> = BUILTINS
        .iter()
        .filter(|b| b.kind == kind)
        .map(|b| b.name)
        .collect();
    PluginError::Runtime(format!(
        "no built-in {kind} called `{name}`; the built-ins are {}",
        known.join(", ")
    ))
}

/// Checks what a plugin said of itself; returns the name to use in messages, `name@version`.
fn check_description(fallback: &str, d: &Description) -> Result<Arc<str>, PluginError> {
    let bad = |detail: String| PluginError::BadDescription {
        plugin: fallback.to_string(),
        detail,
    };
    let valid_name = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !valid_name(&d.name) {
        return Err(bad(format!(
            "name must be 1 to 64 letters, digits, `-`, `_` or `.`, found {:?}",
            d.name
        )));
    }
    if !valid_name(&d.version) {
        return Err(bad(format!(
            "version must be a version such as 1.2.0, found {:?}",
            d.version
        )));
    }
    if d.summary.len() > 1024 {
        return Err(bad(format!(
            "summary is {} bytes, the limit is 1024",
            d.summary.len()
        )));
    }
    match serde_json::from_str::<serde_json::Value>(&d.params_schema) {
        Ok(serde_json::Value::Object(_)) => {}
        Ok(other) => {
            return Err(bad(format!(
                "params-schema must be a JSON object, found {other}"
            )));
        }
        Err(e) => return Err(bad(format!("params-schema is not JSON: {e}"))),
    }
    Ok(Arc::from(format!("{}@{}", d.name, d.version)))
}
