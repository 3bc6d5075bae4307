//! A loaded strategy plugin: each plan runs in a fresh instance from the pool, so nothing one
//! plan did can leak into the next.

use std::sync::Arc;

use super::bindings::strategy::StrategyPre;
use super::bindings::{Description, Fleet};
use super::cache::ContentHash;
use super::runtime::{PluginRuntime, PluginState};
use super::{PluginError, check_description};

#[derive(Clone)]
pub struct StrategyPlugin {
    runtime: PluginRuntime,
    pre: StrategyPre<PluginState>,
    hash: ContentHash,
    name: Arc<str>,
    description: Arc<Description>,
}

impl StrategyPlugin {
    pub(crate) fn new(
        runtime: PluginRuntime,
        pre: StrategyPre<PluginState>,
        hash: ContentHash,
        name: Arc<str>,
    ) -> Result<Self, PluginError> {
        let mut plugin = StrategyPlugin {
            runtime,
            pre,
            hash,
            name,
            description: Arc::new(Description::default()),
        };
        let description =
            plugin.call("describe", |store, instance| instance.call_describe(store))?;
        plugin.name = check_description(&plugin.name, &description)?;
        plugin.description = Arc::new(description);
        Ok(plugin)
    }

    pub fn description(&self) -> &Description {
        &self.description
    }

    /// `name@version`, as the plugin describes itself.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn content_hash(&self) -> String {
        hex::encode(self.hash)
    }

    /// Plans a rollout over `fleet` with `params` (a JSON object as text). The plan is checked:
    /// every index names a device of the fleet and no device is updated twice.
    pub fn plan(&self, params: &str, fleet: &Fleet) -> Result<hotswap_plan::Plan, PluginError> {
        let result = self.call("plan", |store, instance| {
            instance.call_plan(store, params, fleet)
        })?;
        let plan: hotswap_plan::Plan = result
            .map_err(|message| PluginError::Rejected {
                plugin: self.name.to_string(),
                message,
            })?
            .into();
        plan.check(fleet.id_ends.len())
            .map_err(|violation| PluginError::BadPlan {
                plugin: self.name.to_string(),
                violation,
            })?;
        Ok(plan)
    }

    /// Instantiates the plugin in a fresh store from the pool and drops it: what every `plan`
    /// pays before its call. For benchmarks and readiness checks.
    pub fn instantiate(&self) -> Result<(), PluginError> {
        self.call("instantiate", |_, _| Ok(()))
    }

    fn call<R>(
        &self,
        function: &'static str,
        f: impl FnOnce(
            &mut wasmtime::Store<PluginState>,
            &super::bindings::strategy::Strategy,
        ) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let mut store = self.runtime.store(&self.name);
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|instance| f(&mut store, &instance));
        store.data_mut().reset_log();
        result.map_err(|e| self.runtime.call_error(&self.name, function, e))
    }
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
