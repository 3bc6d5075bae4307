//! The planning logic of HotSwap's built-in rollout strategies and default health policy.
//!
//! This crate is plain Rust with no WebAssembly in it: the built-in strategy components in
//! `strategies/*` are thin wrappers that hand it the devices they were given, and the host links it
//! natively only to measure how much the sandbox costs. Every function here is pure and
//! deterministic: the same parameters and devices give the same plan, whatever order the devices
//! come in.

#![forbid(unsafe_code)]

pub mod blue_green;
pub mod canary;
pub mod direct;
mod error;
pub mod fleet;
pub mod health;
mod params;
mod plan;
pub mod regional;
pub mod rolling;
mod sample;

pub use error::ParamError;
pub use fleet::{Device, Fleet, FleetView};
pub use params::GateParams;
pub use plan::{Gate, Mode, Plan, PlanViolation, Wave};
pub use sample::spread_order;

/// The built-in strategies, by the names operators use.
pub const STRATEGIES: [&str; 5] = ["direct", "regional", "canary", "blue-green", "rolling"];

/// Plans with the built-in strategy called `name`, taking its parameters as a JSON object.
pub fn plan_builtin<F: FleetView + ?Sized>(
    name: &str,
    params: &str,
    fleet: &F,
) -> Result<Plan, ParamError> {
    match name {
        "direct" => direct::plan(params, fleet),
        "regional" => regional::plan(params, fleet),
        "canary" => canary::plan(params, fleet),
        "blue-green" => blue_green::plan(params, fleet),
        "rolling" => rolling::plan(params, fleet),
        other => Err(ParamError::new(format!(
            "unknown strategy `{other}`, expected one of {}",
            STRATEGIES.join(", ")
        ))),
    }
}
