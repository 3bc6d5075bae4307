//! Writing HotSwap plugins in Rust.
//!
//! The bindings of the `strategy` and `health-policy` worlds of `wit/plugin` are generated here once;
//! a plugin crate implements the world's `Guest` trait and names its type in `strategy::export_strategy!`
//! or `health_policy::export_health_policy!`. Build it for `wasm32-unknown-unknown` and turn the module into a
//! component (the guest build in `host/guest-build` does both). The conversions below let a
//! plugin hand the generated records to the planning code of `hotswap-plan` without copying them.

/// Bindings of the `strategy` world.
pub mod strategy {
    wit_bindgen::generate!({
        world: "strategy",
        path: "../../wit/plugin",
        default_bindings_module: "hotswap_plugin_sdk::strategy",
        pub_export_macro: true,
        export_macro_name: "export_strategy",
    });

    pub use self::hotswap::plugin::log::{Level, log};
    // `Description`, `Fleet` and `Plan` are already in scope: the world `use`s them.
    pub use self::hotswap::plugin::types::{Gate, Group, Label, Mode, Wave};
}

/// Bindings of the `health-policy` world.
pub mod health_policy {
    wit_bindgen::generate!({
        world: "health-policy",
        path: "../../wit/plugin",
        default_bindings_module: "hotswap_plugin_sdk::health_policy",
        pub_export_macro: true,
        export_macro_name: "export_health_policy",
    });

    // `Description`, `HealthSample`, `Verdict` and `WaveStats` are already in scope: the world
    // `use`s them.
    pub use self::hotswap::plugin::health_types::Metric;
    pub use self::hotswap::plugin::log::{Level, log};
    pub use self::hotswap::plugin::types::{Gate, Mode};
}

hotswap_plan::impl_fleet_view!(strategy::Fleet);

impl From<hotswap_plan::Mode> for strategy::Mode {
    fn from(mode: hotswap_plan::Mode) -> Self {
        match mode {
            hotswap_plan::Mode::Install => strategy::Mode::Install,
            hotswap_plan::Mode::Stage => strategy::Mode::Stage,
            hotswap_plan::Mode::Activate => strategy::Mode::Activate,
        }
    }
}

impl From<hotswap_plan::Plan> for strategy::Plan {
    fn from(plan: hotswap_plan::Plan) -> Self {
        let waves = plan
            .waves
            .into_iter()
            .map(|w| strategy::Wave {
                name: w.name,
                devices: w.devices,
                mode: w.mode.into(),
                gate: strategy::Gate {
                    soak_seconds: w.gate.soak_seconds,
                    min_success_percent: w.gate.min_success_percent,
                    failure_budget: w.gate.failure_budget,
                    min_sample: w.gate.min_sample,
                },
                max_in_flight: w.max_in_flight,
            })
            .collect();
        strategy::Plan { waves }
    }
}

impl hotswap_plan::health::SampleView for health_policy::HealthSample {
    fn healthy(&self) -> bool {
        self.healthy
    }
    fn self_test_passed(&self) -> bool {
        self.self_test_passed
    }
    fn traps(&self) -> u32 {
        self.traps
    }
}

impl From<health_policy::WaveStats> for hotswap_plan::health::WaveStats {
    fn from(s: health_policy::WaveStats) -> Self {
        hotswap_plan::health::WaveStats {
            wave: s.wave,
            waves: s.waves,
            mode: match s.mode {
                health_policy::Mode::Install => hotswap_plan::Mode::Install,
                health_policy::Mode::Stage => hotswap_plan::Mode::Stage,
                health_policy::Mode::Activate => hotswap_plan::Mode::Activate,
            },
            gate: hotswap_plan::Gate {
                soak_seconds: s.gate.soak_seconds,
                min_success_percent: s.gate.min_success_percent,
                failure_budget: s.gate.failure_budget,
                min_sample: s.gate.min_sample,
            },
            targeted: s.targeted,
            succeeded: s.succeeded,
            failed: s.failed,
            in_progress: s.in_progress,
            elapsed_seconds: s.elapsed_seconds,
            settled_seconds: s.settled_seconds,
            deployment_targeted: s.deployment_targeted,
            deployment_succeeded: s.deployment_succeeded,
            deployment_failed: s.deployment_failed,
        }
    }
}

impl From<hotswap_plan::health::Verdict> for health_policy::Verdict {
    fn from(v: hotswap_plan::health::Verdict) -> Self {
        match v {
            hotswap_plan::health::Verdict::Proceed => health_policy::Verdict::Proceed,
            hotswap_plan::health::Verdict::Wait { seconds } => {
                health_policy::Verdict::Wait(seconds)
            }
            hotswap_plan::health::Verdict::Pause { reason } => {
                health_policy::Verdict::Pause(reason)
            }
            hotswap_plan::health::Verdict::RollBack { reason } => {
                health_policy::Verdict::RollBack(reason)
            }
        }
    }
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub use lol_alloc;

/// Defines and exports a built-in strategy component around a planning function of
/// `hotswap-plan`: `builtin_strategy!("canary", "summary", hotswap_plan::canary)`.
///
/// The component allocates with a bump allocator that never frees: the host runs every plan in
/// a fresh instance and throws it away after the call, so freeing would be wasted work (the
/// memory cap still bounds what one plan may use).
#[macro_export]
macro_rules! builtin_strategy {
    ($name:literal, $summary:literal, $module:path) => {
        // SAFETY: a component instance runs on one thread.
        #[cfg(target_arch = "wasm32")]
        #[global_allocator]
        static ALLOCATOR: $crate::lol_alloc::AssumeSingleThreaded<
            $crate::lol_alloc::LeakingAllocator,
        > = unsafe {
            $crate::lol_alloc::AssumeSingleThreaded::new($crate::lol_alloc::LeakingAllocator::new())
        };

        struct Builtin;

        impl $crate::strategy::Guest for Builtin {
            fn describe() -> $crate::strategy::Description {
                use $module as planner;
                $crate::strategy::Description {
                    name: $name.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    summary: $summary.to_string(),
                    params_schema: planner::SCHEMA.to_string(),
                }
            }

            fn plan(
                params: String,
                fleet: $crate::strategy::Fleet,
            ) -> Result<$crate::strategy::Plan, String> {
                use $module as planner;
                let plan = planner::plan(&params, &fleet)
                    .map(Into::into)
                    .map_err(Into::into);
                // Every plan runs in a fresh instance that is thrown away after the call: freeing
                // a fleet's strings one by one would be wasted work.
                core::mem::forget(fleet);
                plan
            }
        }

        $crate::strategy::export_strategy!(Builtin);
    };
}
