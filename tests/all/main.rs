//! Cross-crate tests, one binary with a module per topic so it links once.

mod health;
mod hostile;
mod runtime;
mod strategies;

use std::sync::OnceLock;

use hotswap::plugin::{Device, PluginRuntime, RuntimeConfig};

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

/// The generated test fleet, as the host hands it to plugins.
pub fn fleet(n: usize, regions: usize) -> (Vec<hotswap_plan::Device>, Vec<Device>) {
    let native = hotswap_plan::fleet::generate(n, regions);
    let wit = native.iter().map(Device::from).collect();
    (native, wit)
}
