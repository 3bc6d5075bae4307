//! The built-in `regional` strategy as a component; the planning itself is `hotswap_plan::regional`.

hotswap_plugin_sdk::builtin_strategy!(
    "regional",
    "Updates one region after the other, in a given order or smallest region first.",
    hotswap_plan::regional
);
