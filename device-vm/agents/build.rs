//! Builds the example agents to core modules, with the small stack that keeps their memory at
//! one 64 KiB page.

use hotswap_guest_build::{Guest, GuestBuild};

fn main() {
    GuestBuild::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."), "agents.rs")
        .profile("agent")
        .rustflag("-Clink-arg=-zstack-size=8192")
        .guest(Guest::core_module(
            "agent-threshold-alarm",
            "THRESHOLD_ALARM",
        ))
        .guest(Guest::core_module(
            "agent-failing-self-test",
            "FAILING_SELF_TEST",
        ))
        .run();
}
