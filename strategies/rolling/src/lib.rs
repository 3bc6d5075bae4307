//! The built-in `rolling` strategy as a component; the planning itself is `hotswap_plan::rolling`.

hotswap_plugin_sdk::builtin_strategy!(
    "rolling",
    "Updates fixed-size batches of N devices or P% in id order, with a concurrency limit.",
    hotswap_plan::rolling
);
