//! A loaded strategy plugin: each plan runs in a fresh instance from the pool, so nothing one
//! plan did can leak into the next.

use std::sync::Arc;

use super::bindings::strategy::{Strategy, StrategyPre};
use super::bindings::{Description, Fleet};
use super::cache::ContentHash;
use super::limits::Limits;
use super::runtime::{PluginRuntime, PluginState};
use super::{PluginError, check_description};

/// What loading a strategy validated. The runtime caches it by content hash; it holds no
/// reference back to the runtime, so the cache makes no cycle.
pub(crate) struct Loaded {
    pre: StrategyPre<PluginState>,
    hash: ContentHash,
    name: Arc<str>,
    description: Description,
}

#[derive(Clone)]
pub struct StrategyPlugin {
    runtime: PluginRuntime,
    loaded: Arc<Loaded>,
    limits: Limits,
}

impl StrategyPlugin {
    /// Checks a linked strategy by calling its `describe`.
    pub(crate) fn load(
        runtime: PluginRuntime,
        pre: StrategyPre<PluginState>,
        hash: ContentHash,
        name: Arc<str>,
        limits: Limits,
    ) -> Result<Self, PluginError> {
        let mut loaded = Loaded {
            pre,
            hash,
            name,
            description: Description::default(),
        };
        let (description, _) = call(&runtime, &loaded, &limits, "describe", |store, instance| {
            instance.call_describe(store)
        })?;
        loaded.name = check_description(&loaded.name, &description)?;
        loaded.description = description;
        Ok(StrategyPlugin {
            runtime,
            loaded: Arc::new(loaded),
            limits,
        })
    }

    pub(crate) fn from_loaded(runtime: PluginRuntime, loaded: Arc<Loaded>, limits: Limits) -> Self {
        StrategyPlugin {
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

    /// `name@version`, as the plugin describes itself.
    pub fn name(&self) -> &str {
        &self.loaded.name
    }

    pub fn content_hash(&self) -> String {
        hex::encode(self.loaded.hash)
    }

    /// Plans a rollout over `fleet` with `params` (a JSON object as text). The plan is checked:
    /// every index names a device of the fleet and no device is updated twice.
    pub fn plan(&self, params: &str, fleet: &Fleet) -> Result<hotswap_plan::Plan, PluginError> {
        self.plan_metered(params, fleet).map(|(plan, _)| plan)
    }

    /// [`plan`](Self::plan), with the fuel the call used (instantiation included): what a
    /// deployment's trace records of its planning.
    pub fn plan_metered(
        &self,
        params: &str,
        fleet: &Fleet,
    ) -> Result<(hotswap_plan::Plan, u64), PluginError> {
        let (result, fuel) = call(
            &self.runtime,
            &self.loaded,
            &self.limits,
            "plan",
            |store, instance| instance.call_plan(store, params, fleet),
        )?;
        let plan: hotswap_plan::Plan = result
            .map_err(|message| PluginError::Rejected {
                message: crate::bounded(message),
                plugin: self.loaded.name.to_string(),
            })?
            .into();
        plan.check(fleet.id_ends.len())
            .map_err(|violation| PluginError::BadPlan {
                plugin: self.loaded.name.to_string(),
                violation,
            })?;
        Ok((plan, fuel))
    }

    /// Instantiates the plugin in a fresh store from the pool and drops it: what every `plan`
    /// pays before its call. For benchmarks and readiness checks.
    pub fn instantiate(&self) -> Result<(), PluginError> {
        self.call("instantiate", |_, _| Ok(()))
    }
    fn call<R>(
        &self,
        function: &'static str,
        f: impl FnOnce(&mut wasmtime::Store<PluginState>, &Strategy) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        call(&self.runtime, &self.loaded, &self.limits, function, f).map(|(r, _)| r)
    }
}

/// One call in a fresh instance from the pool, with the fuel it used.
fn call<R>(
    runtime: &PluginRuntime,
    loaded: &Loaded,
    limits: &Limits,
    function: &'static str,
    f: impl FnOnce(&mut wasmtime::Store<PluginState>, &Strategy) -> wasmtime::Result<R>,
) -> Result<(R, u64), PluginError> {
    let mut store = runtime.store(&loaded.name, limits);
    let result = loaded
        .pre
        .instantiate(&mut store)
        .and_then(|instance| f(&mut store, &instance));
    store.data_mut().reset_log();
    let fuel = limits
        .fuel_per_call
        .saturating_sub(store.get_fuel().unwrap_or(0));
    result
        .map(|r| (r, fuel))
        .map_err(|e| runtime.call_error(&loaded.name, function, e, limits))
}

impl Default for Description {
    fn default() -> Self {
        Description {
            name: String::new(),
            version: String::new(),
            summary: String::new(),
            params_schema: "{}".into(),
        }
    }
}
