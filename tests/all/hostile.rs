//! Hostile and malformed plugins: each is refused at load or contained at run time with an error
//! that names the problem, and the runtime goes on serving.

use std::time::{Duration, Instant};

use hotswap_plan::PlanViolation;
use hotswap_plugin_host::{Limits, PluginError, PluginRuntime, RuntimeConfig};

use crate::{fixtures, fleet, runtime};

fn runtime_with(limits: Limits) -> PluginRuntime {
    PluginRuntime::new(RuntimeConfig {
        limits,
        ceilings: None,
        cache_dir: None,
        cache_key_file: None,
    })
    .unwrap()
}

fn attack(rt: &PluginRuntime, attack: &str) -> PluginError {
    let (_, devices) = fleet(100, 3);
    let plugin = rt.load_strategy(fixtures::HOSTILE).unwrap();
    match plugin.plan(&format!("{attack:?}"), &devices) {
        Ok(plan) => panic!(
            "attack {attack} was not stopped: plan of {} waves",
            plan.waves.len()
        ),
        Err(e) => e,
    }
}

/// The runtime still plans correctly after whatever happened before.
fn still_serves(rt: &PluginRuntime) {
    let (_, devices) = fleet(100, 3);
    let plan = rt
        .builtin_strategy("canary")
        .unwrap()
        .plan("{}", &devices)
        .unwrap();
    assert_eq!(plan.device_count(), 100);
}

#[test]
fn garbage_bytes_are_not_webassembly() {
    let err = runtime().load(b"#!/bin/sh\nrm -rf /\n").err().unwrap();
    assert!(matches!(err, PluginError::NotWasm), "{err}");
    assert!(err.to_string().contains("not WebAssembly"), "{err}");
}

#[test]
fn a_core_module_is_told_to_become_a_component() {
    let empty_module = b"\0asm\x01\0\0\0";
    let err = runtime().load_strategy(empty_module).err().unwrap();
    assert!(matches!(err, PluginError::CoreModule { .. }), "{err}");
    assert!(err.to_string().contains("found a core module"), "{err}");
}

#[test]
fn a_truncated_component_is_invalid() {
    let bytes = &fixtures::HOSTILE[..fixtures::HOSTILE.len() / 2];
    let err = runtime().load(bytes).err().unwrap();
    assert!(matches!(err, PluginError::Invalid(_)), "{err}");
}

#[test]
fn an_oversized_upload_is_refused_before_it_is_parsed() {
    let limit = runtime().limits().max_component_bytes;
    let mut bytes = fixtures::HOSTILE.to_vec();
    bytes.resize(limit + 1, 0);
    let err = runtime().load(&bytes).err().unwrap();
    assert!(matches!(err, PluginError::TooLarge { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "plugin is {} bytes, the limit is {limit} bytes: raise `max-component-bytes` (for this plugin at upload, within the server's [plugin-ceilings], or in its [plugin-limits])",
            limit + 1
        )
    );
}

#[test]
fn a_component_of_the_wrong_world_names_the_missing_export() {
    let err = runtime().load(fixtures::DESCRIBE_ONLY).err().unwrap();
    assert!(matches!(err, PluginError::WrongWorld { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("exports `describe`") && msg.contains("`plan`"),
        "{msg}"
    );

    let err = runtime()
        .load_strategy(
            hotswap_plugin_host::builtin(hotswap_plugin_host::PluginKind::HealthPolicy, "default")
                .unwrap()
                .bytes,
        )
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(
        msg.contains("strategy@0.1.0")
            && msg.contains("missing export `plan`")
            && msg.contains("health-policy plugin"),
        "{msg}"
    );

    let err = runtime()
        .load_health_policy(
            hotswap_plugin_host::builtin(hotswap_plugin_host::PluginKind::Strategy, "canary")
                .unwrap()
                .bytes,
        )
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("missing export `evaluate`"),
        "{err}"
    );
}

#[test]
fn a_wasi_import_is_refused_by_name() {
    let err = runtime().load(fixtures::WASI_STRATEGY).err().unwrap();
    assert!(matches!(err, PluginError::ForbiddenImport { .. }), "{err}");
    assert!(
        err.to_string().starts_with(
            "the component imports `wasi:random/random@0.2.0`, but plugins may import only"
        ),
        "{err}"
    );
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let rt = runtime_with(Limits {
        fuel_per_call: 50_000_000,
        ..Limits::default()
    });
    let err = attack(&rt, "loop");
    assert!(
        matches!(
            err,
            PluginError::OutOfFuel {
                fuel: 50_000_000,
                function: "plan",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("ran out of fuel (50000000 units) in `plan`"),
        "{err}"
    );
    still_serves(&rt);
}

#[test]
fn an_endless_loop_with_fuel_to_spare_hits_the_deadline() {
    let rt = runtime_with(Limits {
        fuel_per_call: u64::MAX,
        deadline: Duration::from_millis(200),
        ..Limits::default()
    });
    let started = Instant::now();
    let err = attack(&rt, "loop");
    assert!(
        matches!(
            err,
            PluginError::Deadline {
                deadline_ms: 200,
                ..
            }
        ),
        "{err}"
    );
    // Generous: the point is that it stops at all, not how fast on a shared machine.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the deadline did not stop the plugin"
    );
    still_serves(&rt);
}

#[test]
fn a_memory_bomb_hits_the_memory_cap() {
    let rt = runtime_with(Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    });
    let err = attack(&rt, "memory");
    match &err {
        PluginError::MemoryLimit {
            limit, requested, ..
        } => {
            assert_eq!(*limit, 32 << 20);
            assert!(*requested > 32 << 20);
        }
        other => panic!("expected the memory cap, got {other}"),
    }
    assert!(
        err.to_string().contains("the limit is 33554432 bytes"),
        "{err}"
    );
    still_serves(&rt);
}

#[test]
fn a_trap_is_reported_and_contained() {
    let err = attack(runtime(), "trap");
    assert!(
        matches!(
            err,
            PluginError::Trap {
                function: "plan",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("wasm trap"), "{err}");
    still_serves(runtime());
}

#[test]
fn a_plan_naming_an_unknown_device_is_rejected() {
    let err = attack(runtime(), "unknown-device");
    assert!(
        matches!(
            err,
            PluginError::BadPlan {
                violation: PlanViolation::UnknownDevice {
                    wave: 1,
                    index: 105,
                    devices: 100
                },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("wave 1 names device index 105, but only 100 devices were given"),
        "{err}"
    );
}

#[test]
fn a_plan_updating_a_device_twice_is_rejected() {
    let err = attack(runtime(), "duplicate");
    assert!(
        matches!(
            err,
            PluginError::BadPlan {
                violation: PlanViolation::DeviceInTwoWaves {
                    index: 0,
                    first: 0,
                    second: 1
                },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_oversized_plan_is_rejected() {
    let err = attack(runtime(), "huge-plan");
    assert!(
        matches!(
            err,
            PluginError::BadPlan {
                violation: PlanViolation::TooManyWaves { waves: 20_000, .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_log_flood_is_cut_to_the_per_call_limit() {
    let (_, devices) = fleet(10, 1);
    // A runtime of its own, so the count of dropped lines is this plugin's alone.
    let rt = runtime_with(Limits {
        log_lines_per_call: 5,
        ..Limits::default()
    });
    let plugin = rt.load_strategy(fixtures::HOSTILE).unwrap();
    let plan = plugin.plan("\"log-flood\"", &devices).unwrap();
    assert_eq!(plan.device_count(), 10);
    let dropped = rt.log_lines_dropped();
    assert!(dropped > 0, "lines past the limit of 5 are dropped");
    // And the limit is per call: a second flood drops as many again.
    plugin.plan("\"log-flood\"", &devices).unwrap();
    assert_eq!(rt.log_lines_dropped(), 2 * dropped);
}

// The per-call limit alone let a plugin called many times a second write its allowance each
// time. Across calls, a plugin writes at most its burst, then its rate.
#[test]
fn a_log_flood_across_many_calls_is_held_to_the_plugins_rate() {
    let (_, devices) = fleet(10, 1);
    let rt = runtime_with(Limits::default());
    let plugin = rt.load_strategy(fixtures::HOSTILE).unwrap();
    // The fixture logs this many lines a call.
    let flood_per_call = 10_000u64;
    let calls = 20u64;
    let began = Instant::now();
    for _ in 0..calls {
        plugin.plan("\"log-flood\"", &devices).unwrap();
    }
    let seconds = began.elapsed().as_secs() + 1;
    let written = calls * flood_per_call - rt.log_lines_dropped();
    let most = u64::from(hotswap_plugin_host::LOG_LINES_BURST)
        + seconds * u64::from(hotswap_plugin_host::LOG_LINES_PER_SECOND);
    assert!(
        written <= most,
        "{written} lines written in {seconds} s; the rate allows {most}"
    );
}

#[test]
fn the_runtime_survives_every_attack_in_a_row() {
    let rt = runtime_with(Limits {
        fuel_per_call: 100_000_000,
        memory_bytes: 32 << 20,
        deadline: Duration::from_secs(2),
        ..Limits::default()
    });
    for _ in 0..3 {
        for a in [
            "loop",
            "memory",
            "trap",
            "unknown-device",
            "duplicate",
            "huge-plan",
        ] {
            attack(&rt, a);
        }
    }
    still_serves(&rt);
}

#[test]
fn a_component_past_a_limit_is_refused_naming_the_key_that_raises_it() {
    // A Rust component is its module and a few wit-component shims: more than one core instance.
    let rt = runtime_with(Limits {
        max_core_instances: 1,
        ..Limits::default()
    });
    let err = rt.load(fixtures::HOSTILE).err().unwrap();
    assert!(matches!(err, PluginError::OverLimit { .. }), "{err}");
    let text = err.to_string();
    assert!(text.starts_with("the component has "), "{text}");
    assert!(
        text.contains("core instances, the limit is 1: raise `max-core-instances`"),
        "{text}"
    );
    let rt = runtime_with(Limits {
        max_memories: 0,
        ..Limits::default()
    });
    let err = rt.load(fixtures::HOSTILE).err().unwrap().to_string();
    assert!(
        err.contains("linear memories, the limit is 0: raise `max-memories`"),
        "{err}"
    );
    let rt = runtime_with(Limits {
        max_component_bytes: 1000,
        ..Limits::default()
    });
    let err = rt.load(fixtures::HOSTILE).err().unwrap().to_string();
    assert!(err.contains("raise `max-component-bytes`"), "{err}");
    // Raised, the same component loads and runs.
    let rt = runtime_with(Limits {
        max_core_instances: 64,
        max_memories: 3,
        ..Limits::default()
    });
    still_serves(&rt);
    rt.load(fixtures::HOSTILE).unwrap();
}
