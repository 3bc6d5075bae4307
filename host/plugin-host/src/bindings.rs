//! Host-side bindings of the `strategy` and `health-policy` worlds, generated from `wit/plugin`.
//! Both worlds share the `types` and `log` interfaces, so one linker serves both.

pub mod strategy {
    wasmtime::component::bindgen!({
        world: "strategy",
        path: "../../wit/plugin",
    });
}

pub mod health_policy {
    wasmtime::component::bindgen!({
        world: "health-policy",
        path: "../../wit/plugin",
        with: {
            "hotswap:plugin/types": super::strategy::hotswap::plugin::types,
            "hotswap:plugin/log": super::strategy::hotswap::plugin::log,
        },
    });
}

pub use health_policy::hotswap::plugin::health_types::{HealthSample, Metric, Verdict, WaveStats};
pub use strategy::hotswap::plugin::log::Level;
pub use strategy::hotswap::plugin::types::{
    Description, Fleet, Gate, Group, Label, Mode, Plan, Wave,
};

hotswap_plan::impl_fleet_view!(Fleet);

impl From<Mode> for hotswap_plan::Mode {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Install => hotswap_plan::Mode::Install,
            Mode::Stage => hotswap_plan::Mode::Stage,
            Mode::Activate => hotswap_plan::Mode::Activate,
        }
    }
}

impl From<hotswap_plan::Mode> for Mode {
    fn from(mode: hotswap_plan::Mode) -> Self {
        match mode {
            hotswap_plan::Mode::Install => Mode::Install,
            hotswap_plan::Mode::Stage => Mode::Stage,
            hotswap_plan::Mode::Activate => Mode::Activate,
        }
    }
}

impl From<Gate> for hotswap_plan::Gate {
    fn from(g: Gate) -> Self {
        hotswap_plan::Gate {
            soak_seconds: g.soak_seconds,
            min_success_percent: g.min_success_percent,
            failure_budget: g.failure_budget,
            min_sample: g.min_sample,
        }
    }
}

impl From<hotswap_plan::Gate> for Gate {
    fn from(g: hotswap_plan::Gate) -> Self {
        Gate {
            soak_seconds: g.soak_seconds,
            min_success_percent: g.min_success_percent,
            failure_budget: g.failure_budget,
            min_sample: g.min_sample,
        }
    }
}

impl From<Plan> for hotswap_plan::Plan {
    fn from(plan: Plan) -> Self {
        hotswap_plan::Plan {
            waves: plan
                .waves
                .into_iter()
                .map(|w| hotswap_plan::Wave {
                    name: w.name,
                    devices: w.devices,
                    mode: w.mode.into(),
                    gate: w.gate.into(),
                    max_in_flight: w.max_in_flight,
                })
                .collect(),
        }
    }
}

impl From<&hotswap_plan::Fleet> for Fleet {
    fn from(f: &hotswap_plan::Fleet) -> Self {
        Fleet {
            ids: f.ids.clone(),
            id_ends: f.id_ends.clone(),
            region: f.region.clone(),
            version: f.version.clone(),
            online: f.online.clone(),
            regions: f.regions.clone(),
            versions: f.versions.clone(),
            groups: f
                .groups
                .iter()
                .map(|g| Group {
                    name: g.name.clone(),
                    members: g.members.clone(),
                })
                .collect(),
            labels: f
                .labels
                .iter()
                .map(|l| Label {
                    key: l.key.clone(),
                    value: l.value.clone(),
                    members: l.members.clone(),
                })
                .collect(),
        }
    }
}

impl From<&hotswap_plan::health::WaveStats> for WaveStats {
    fn from(s: &hotswap_plan::health::WaveStats) -> Self {
        WaveStats {
            wave: s.wave,
            waves: s.waves,
            mode: s.mode.into(),
            gate: s.gate.into(),
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

impl From<&hotswap_plan::health::HealthSample> for HealthSample {
    fn from(s: &hotswap_plan::health::HealthSample) -> Self {
        HealthSample {
            device: s.device.clone(),
            healthy: s.healthy,
            self_test_passed: s.self_test_passed,
            traps: s.traps,
            fuel_exhausted: s.fuel_exhausted,
            metrics: s
                .metrics
                .iter()
                .map(|(name, value)| Metric {
                    name: name.clone(),
                    value: *value,
                })
                .collect(),
        }
    }
}

impl From<Verdict> for hotswap_plan::health::Verdict {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Proceed => hotswap_plan::health::Verdict::Proceed,
            Verdict::Wait(seconds) => hotswap_plan::health::Verdict::Wait { seconds },
            Verdict::Pause(reason) => hotswap_plan::health::Verdict::Pause {
                reason: crate::bounded(reason),
            },
            Verdict::RollBack(reason) => hotswap_plan::health::Verdict::RollBack {
                reason: crate::bounded(reason),
            },
        }
    }
}
