//! Builds the built-in strategies and the default health policy to components and embeds them.

use hotswap_guest_build::{Guest, GuestBuild};

fn main() {
    GuestBuild::new(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "builtin_plugins.rs",
    )
    .guest(Guest::component("hotswap-strategy-direct", "DIRECT"))
    .guest(Guest::component("hotswap-strategy-regional", "REGIONAL"))
    .guest(Guest::component("hotswap-strategy-canary", "CANARY"))
    .guest(Guest::component(
        "hotswap-strategy-blue-green",
        "BLUE_GREEN",
    ))
    .guest(Guest::component("hotswap-strategy-rolling", "ROLLING"))
    .guest(Guest::component("hotswap-health-default", "HEALTH_DEFAULT"))
    .run();
}
