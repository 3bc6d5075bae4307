//! The built-in `canary` strategy as a component; the planning itself is `hotswap_plan::canary`.

hotswap_plugin_sdk::builtin_strategy!(
    "canary",
    "Updates a seeded sample spread across regions first, then growing shares of the fleet.",
    hotswap_plan::canary
);
