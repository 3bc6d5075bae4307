//! A strategy or health policy by the name a deployment gives: a built-in, or an uploaded
//! plugin (`name@version`, or `name` for its newest upload), loaded from its stored component
//! under the limits it was uploaded with, each at most the server's ceilings. Written once: a
//! deployment's start and the orchestrator load plugins only through here.

use hotswap_plugin_host::{
    BUILTINS, HealthPolicyPlugin, Limits, PluginKind, PluginRuntime, StrategyPlugin, builtin,
};
use hotswap_protocol::PluginLimitOverrides;
use hotswap_store::{Store, StoredPlugin};

use super::RolloutError;

/// The limits a stored plugin asked for at upload.
pub fn asked(p: &StoredPlugin) -> Result<PluginLimitOverrides, RolloutError> {
    serde_json::from_str(&p.limits).map_err(|e| {
        RolloutError::Corrupt(format!(
            "stored limits of plugin {}@{}: {e}",
            p.name, p.version
        ))
    })
}

/// What a stored plugin runs under: the server's limits with its own over them, each at most
/// the ceilings (lowered since it was uploaded, a ceiling wins).
pub fn limits_of(runtime: &PluginRuntime, p: &StoredPlugin) -> Result<Limits, RolloutError> {
    Ok(runtime.limits().with(&asked(p)?).capped(runtime.ceilings()))
}

/// The uploaded plugin of `kind` called `name`: `name@version`, or `name` for its newest
/// upload; `None` when `name` is a built-in. Returns the name to record and the stored plugin.
fn uploaded(
    store: &Store,
    kind: PluginKind,
    name: &str,
) -> Result<Option<(String, StoredPlugin)>, RolloutError> {
    if builtin(kind, name).is_some() {
        return Ok(None);
    }
    let uploaded = store.list_plugins()?;
    let found = match name.split_once('@') {
        Some((n, v)) => uploaded.into_iter().find(|p| p.name == n && p.version == v),
        None => uploaded.into_iter().rev().find(|p| p.name == name),
    };
    match found.filter(|p| p.kind == kind) {
        Some(p) => Ok(Some((format!("{}@{}", p.name, p.version), p))),
        None => {
            let builtins: Vec<&str> = BUILTINS
                .iter()
                .filter(|b| b.kind == kind)
                .map(|b| b.name)
                .collect();
            Err(RolloutError::Invalid(format!(
                "unknown {kind} `{name}`: not a built-in ({}) nor an uploaded {kind} plugin",
                builtins.join(", ")
            )))
        }
    }
}

/// A strategy found by name, with the name a deployment records.
pub struct NamedStrategy {
    pub recorded: String,
    pub plugin: StrategyPlugin,
}

/// A health policy found by name, with the name a deployment records and, for an upload, its
/// component's hash (how the orchestrator finds it again).
pub struct NamedHealthPolicy {
    pub recorded: String,
    pub sha256: Option<String>,
    pub plugin: HealthPolicyPlugin,
}

/// The strategy called `name`, built-in or uploaded.
pub fn strategy(
    store: &Store,
    runtime: &PluginRuntime,
    name: &str,
) -> Result<NamedStrategy, RolloutError> {
    match uploaded(store, PluginKind::Strategy, name)? {
        None => {
            let plugin = runtime.builtin_strategy(name)?;
            Ok(NamedStrategy {
                recorded: plugin.name().to_string(),
                plugin,
            })
        }
        Some((recorded, stored)) => {
            let bytes = store.blobs().get(&stored.sha256)?;
            let plugin = runtime.load_strategy_with(&bytes, &limits_of(runtime, &stored)?)?;
            Ok(NamedStrategy { recorded, plugin })
        }
    }
}

/// The health policy called `name`, built-in or uploaded.
pub fn health_policy(
    store: &Store,
    runtime: &PluginRuntime,
    name: &str,
) -> Result<NamedHealthPolicy, RolloutError> {
    match uploaded(store, PluginKind::HealthPolicy, name)? {
        None => {
            let plugin = runtime.builtin_health_policy(name)?;
            Ok(NamedHealthPolicy {
                recorded: plugin.name().to_string(),
                sha256: None,
                plugin,
            })
        }
        Some((recorded, stored)) => {
            let bytes = store.blobs().get(&stored.sha256)?;
            let plugin = runtime.load_health_policy_with(&bytes, &limits_of(runtime, &stored)?)?;
            Ok(NamedHealthPolicy {
                recorded,
                sha256: Some(stored.sha256),
                plugin,
            })
        }
    }
}

/// The health policy a deployment recorded: a built-in by the name it was recorded with
/// (`name@version`), an upload by its component's hash, under the limits it was uploaded with;
/// a plugin deleted since runs under the server's.
pub fn recorded_health_policy(
    store: &Store,
    runtime: &PluginRuntime,
    recorded: &str,
    sha256: Option<&str>,
) -> Result<HealthPolicyPlugin, RolloutError> {
    let Some(sha) = sha256 else {
        let name = recorded.split('@').next().unwrap_or_default();
        return Ok(runtime.builtin_health_policy(name)?);
    };
    let bytes = store.blobs().get(sha)?;
    let limits = match store.plugin_by_sha256(sha)? {
        Some(p) => limits_of(runtime, &p)?,
        None => *runtime.limits(),
    };
    Ok(runtime.load_health_policy_with(&bytes, &limits)?)
}
