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
pub use runtime::{
    ALLOWED_IMPORTS, LOG_IMPORT, LOG_LINES_BURST, LOG_LINES_PER_SECOND, Plugin, PluginRuntime,
    RuntimeConfig,
};
pub use strategy::StrategyPlugin;

/// The most bytes of text a plugin's answer may carry into the store (a verdict's reason, a
/// refusal's message): longer ones are cut at a character boundary and end in `…`, as device
/// report reasons are. Every status read serves them, so a plugin cannot make them large.
pub const MAX_PLUGIN_TEXT_BYTES: usize = 1024;

/// The most bytes of a plugin's `params-schema` (the dashboard draws a form from it).
pub const MAX_PARAMS_SCHEMA_BYTES: usize = 64 * 1024;

/// `text` cut to [`MAX_PLUGIN_TEXT_BYTES`].
pub(crate) fn bounded(text: String) -> String {
    if text.len() <= MAX_PLUGIN_TEXT_BYTES {
        return text;
    }
    hotswap_protocol::names::cut(&text, MAX_PLUGIN_TEXT_BYTES)
}

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
    if d.params_schema.len() > MAX_PARAMS_SCHEMA_BYTES {
        return Err(bad(format!(
            "params-schema is {} bytes, the limit is {MAX_PARAMS_SCHEMA_BYTES}",
            d.params_schema.len()
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

#[cfg(test)]
mod tests {
    use super::*;

    // A health policy's pause reason of any size (100 MiB, say) used to be stored and served on every status
    // read; a refusal's message the same.
    #[test]
    fn texts_a_plugin_returns_are_cut_at_the_bound() {
        let huge = "é".repeat(5 << 20);
        let verdict: hotswap_plan::health::Verdict = Verdict::Pause(huge).into();
        let hotswap_plan::health::Verdict::Pause { reason } = verdict else {
            panic!("a pause");
        };
        assert!(reason.len() <= MAX_PLUGIN_TEXT_BYTES && reason.ends_with('…'));
        assert_eq!(bounded("short".into()), "short");
    }

    // A `params-schema` of any size was accepted at upload and served to every dashboard.
    #[test]
    fn a_params_schema_over_the_bound_is_refused_with_its_size() {
        let description = |schema: String| Description {
            name: "p".into(),
            version: "1.0.0".into(),
            summary: String::new(),
            params_schema: schema,
        };
        let padded = format!(
            r#"{{"description": "{}"}}"#,
            "x".repeat(MAX_PARAMS_SCHEMA_BYTES)
        );
        let err = check_description("p", &description(padded)).unwrap_err();
        assert!(err.to_string().contains("params-schema is"), "{err}");
        check_description("p", &description("{}".into())).unwrap();
    }
}
