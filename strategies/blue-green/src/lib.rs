//! The built-in `blue-green` strategy as a component; the planning itself is `hotswap_plan::blue_green`.

hotswap_plugin_sdk::builtin_strategy!(
    "blue-green",
    "Stages the new agent in every inactive slot, then switches slots at once or in waves.",
    hotswap_plan::blue_green
);
