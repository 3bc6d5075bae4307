//! Builds the test fixtures (hostile and malformed plugins) and the example plugins of
//! `plugins-examples/` to components.

use hotswap_guest_build::{Guest, GuestBuild};

fn main() {
    GuestBuild::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."), "fixtures.rs")
        .guest(Guest::component(
            "hotswap-fixture-hostile-strategy",
            "HOSTILE",
        ))
        .guest(Guest::component(
            "hotswap-fixture-describe-only",
            "DESCRIBE_ONLY",
        ))
        .guest(Guest::component(
            "hotswap-fixture-wasi-strategy",
            "WASI_STRATEGY",
        ))
        .guest(Guest::component(
            "hotswap-example-maintenance-window",
            "MAINTENANCE_WINDOW",
        ))
        .guest(Guest::component(
            "hotswap-example-zero-tolerance",
            "ZERO_TOLERANCE",
        ))
        .run();
}
