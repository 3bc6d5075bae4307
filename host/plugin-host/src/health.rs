//! A loaded health-policy plugin. A one-off verdict runs in a fresh instance; a [`HealthSession`]
//! keeps one instance warm for the many verdicts of one deployment, refilling its fuel and
//! deadline before each, and starts a fresh one after a call that failed.

use std::sync::Arc;

use wasmtime::Store;

use super::bindings::health_policy::{HealthPolicy, HealthPolicyPre};
use super::bindings::{Description, HealthSample, WaveStats};
use super::cache::ContentHash;
use super::limits::Limits;
use super::runtime::{PluginRuntime, PluginState};
use super::{PluginError, check_description};

/// What loading a health policy validated; cached by the runtime without a reference back to it.
pub(crate) struct Loaded {
    pre: HealthPolicyPre<PluginState>,
    hash: ContentHash,
    name: Arc<str>,
    description: Description,
}

#[derive(Clone)]
pub struct HealthPolicyPlugin {
    runtime: PluginRuntime,
    loaded: Arc<Loaded>,
    limits: Limits,
}

impl HealthPolicyPlugin {
    /// Checks a linked health policy by calling its `describe`.
    pub(crate) fn load(
        runtime: PluginRuntime,
        pre: HealthPolicyPre<PluginState>,
        hash: ContentHash,
        name: Arc<str>,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let mut plugin = HealthPolicyPlugin {
            runtime,
            limits,
            loaded: Arc::new(Loaded {
                pre,
                hash,
                name,
                description: Description::default(),
            }),
        };
        let description = plugin
            .session()
            .call("describe", |store, instance| instance.call_describe(store))?;
        let name = check_description(&plugin.loaded.name, &description)?;
        let loaded = Arc::get_mut(&mut plugin.loaded)
            .expect("the session that described the plugin is gone");
        loaded.name = name;
        loaded.description = description;
        Ok(plugin)
    }

    pub(crate) fn from_loaded(runtime: PluginRuntime, loaded: Arc<Loaded>, limits: Limits) -> Self {
        HealthPolicyPlugin {
            runtime,
            loaded,
            limits,
        }
    }

    /// What each call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn loaded(&self) -> &Arc<Loaded> {
        &self.loaded
    }

    pub fn description(&self) -> &Description {
        &self.loaded.description
    }

    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    pub fn content_hash(&self) -> String {
        hex::encode(self.loaded.hash)
    }

    /// Judges a wave in a fresh instance.
    pub fn evaluate(
        &self,
        params: &str,
        stats: &WaveStats,
        samples: &[HealthSample],
    ) -> Result<hotswap_plan::health::Verdict, PluginError> {
        self.session().evaluate(params, stats, samples)
    }

    /// A warm instance for repeated verdicts.
    pub fn session(&self) -> HealthSession {
        HealthSession {
            plugin: self.clone(),
            warm: None,
            fuel_used: 0,
        }
    }
}

/// One warm health-policy instance.
pub struct HealthSession {
    plugin: HealthPolicyPlugin,
    warm: Option<(Store<PluginState>, HealthPolicy)>,
    fuel_used: u64,
}

impl HealthSession {
    /// Gives its instance back to the pool; the next call makes a fresh one.
    pub fn release(&mut self) {
        self.warm = None;
    }

    /// Whether it holds an instance of the pool.
    pub fn is_warm(&self) -> bool {
        self.warm.is_some()
    }

    /// The fuel the last call used (a fresh instance's instantiation included).
    pub fn fuel_used(&self) -> u64 {
        self.fuel_used
    }

    pub fn evaluate(
        &mut self,
        params: &str,
        stats: &WaveStats,
        samples: &[HealthSample],
    ) -> Result<hotswap_plan::health::Verdict, PluginError> {
        let verdict = self.call("evaluate", |store, instance| {
            instance.call_evaluate(store, params, *stats, samples)
        })?;
        verdict
            .map(Into::into)
            .map_err(|message| PluginError::Rejected {
                message: crate::bounded(message),
                plugin: self.plugin.loaded.name.to_string(),
            })
    }

    fn call<R>(
        &mut self,
        function: &'static str,
        f: impl FnOnce(&mut Store<PluginState>, &HealthPolicy) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let runtime = &self.plugin.runtime;
        let (store, instance) = match &mut self.warm {
            Some(warm) => {
                runtime.arm(&mut warm.0, &self.plugin.limits);
                warm
            }
            None => {
                let mut store = runtime.store(&self.plugin.loaded.name, &self.plugin.limits);
                let instance = self
                    .plugin
                    .loaded
                    .pre
                    .instantiate(&mut store)
                    .map_err(|e| {
                        runtime.call_error(
                            &self.plugin.loaded.name,
                            function,
                            e,
                            &self.plugin.limits,
                        )
                    })?;
                self.warm.insert((store, instance))
            }
        };
        let result = f(store, instance);
        store.data_mut().reset_log();
        self.fuel_used = self
            .plugin
            .limits
            .fuel_per_call
            .saturating_sub(store.get_fuel().unwrap_or(0));
        // An instance that trapped may be in any state; the next call gets a fresh one.
        result.map_err(|e| {
            self.warm = None;
            runtime.call_error(&self.plugin.loaded.name, function, e, &self.plugin.limits)
        })
    }
}
