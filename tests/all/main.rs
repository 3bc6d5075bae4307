//! Cross-crate tests, one binary with a module per topic so it links once.

mod api;
mod crash;
mod e2e;
mod health;
mod hostile;
mod orchestrator;
mod runtime;
mod strategies;

use std::sync::OnceLock;

use hotswap::plugin::{Fleet, PluginRuntime, RuntimeConfig};

/// The fixtures built by `tests/build.rs`: hostile and malformed plugins.
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}

/// One runtime with the default limits, shared by the tests that do not change limits, so each
/// component is compiled once per run.
pub fn runtime() -> &'static PluginRuntime {
    static RUNTIME: OnceLock<PluginRuntime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        PluginRuntime::new(RuntimeConfig::default()).expect("plugin runtime starts")
    })
}

/// The generated test fleet: natively, and as the host hands it to plugins.
pub fn fleet(n: usize, regions: usize) -> (hotswap_plan::Fleet, Fleet) {
    let native = hotswap_plan::fleet::generate(n, regions);
    let wit = Fleet::from(&native);
    (native, wit)
}

/// The region name of device `d` of a fleet.
pub fn region(fleet: &hotswap_plan::Fleet, d: u32) -> &str {
    &fleet.regions[fleet.region[d as usize] as usize]
}
