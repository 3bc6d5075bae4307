//! The built-in `direct` strategy as a component; the planning itself is `hotswap_plan::direct`.

hotswap_plugin_sdk::builtin_strategy!(
    "direct",
    "Updates exactly the devices named, in one wave; every target when none are named.",
    hotswap_plan::direct
);
