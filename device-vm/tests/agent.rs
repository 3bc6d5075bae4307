//! The agent VM: the example agents written with wit-bindgen run through the hand-written
//! canonical ABI; hostile agents (endless loop, memory bomb, deep recursion, foreign imports,
//! missing exports, a broken return value) are stopped with an error that says what happened.

mod common;

use common::host;
use hotswap_device_vm::agent::{Agent, AgentError, AgentLimits, LogLevel, RecordingHost};

fn alarm(temperature: f32, config: &str) -> Agent<RecordingHost> {
    let host = RecordingHost {
        sensors: vec![("temperature".into(), temperature)],
        ..RecordingHost::default()
    };
    let mut agent = Agent::load(
        hotswap_agents::THRESHOLD_ALARM,
        host,
        AgentLimits::default(),
    )
    .unwrap();
    agent.init(config).unwrap();
    agent
}

fn actuator(agent: &Agent<RecordingHost>, name: &str) -> Option<f32> {
    agent
        .host()
        .actuators
        .iter()
        .find(|(n, _)| n == name)
        .map(|a| a.1)
}

#[test]
fn the_threshold_alarm_raises_and_clears_its_alarm() {
    let mut agent = alarm(50.0, r#"{"threshold": 42.5}"#);
    agent.self_test().unwrap();
    agent.step().unwrap();
    assert_eq!(actuator(&agent, "alarm"), Some(1.0));
    agent.host_mut().sensors[0].1 = 40.0;
    agent.step().unwrap();
    assert_eq!(actuator(&agent, "alarm"), Some(0.0));
    let log: Vec<&str> = agent.host().log.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(
        log,
        ["threshold alarm ready", "alarm raised", "alarm cleared"]
    );
    assert_eq!(agent.stats().steps, 2);
    // Linked with an 8 KiB stack and a 4 KiB heap arena, the agent runs in one 64 KiB page.
    assert_eq!(agent.memory_size(), 65536);
}

#[test]
fn the_default_threshold_applies_and_a_bad_config_is_refused() {
    let mut agent = alarm(31.0, "{}");
    agent.step().unwrap();
    assert_eq!(actuator(&agent, "alarm"), Some(1.0));
    let mut agent = Agent::load(
        hotswap_agents::THRESHOLD_ALARM,
        host(),
        AgentLimits::default(),
    )
    .unwrap();
    let err = agent.init(r#"{"threshold": "hot"}"#).unwrap_err();
    assert_eq!(
        err,
        AgentError::Failed {
            function: "init",
            message: "`threshold` must be a number".into()
        }
    );
}

#[test]
fn a_missing_sensor_fails_the_self_test_and_counts_step_errors() {
    let mut agent = Agent::load(
        hotswap_agents::THRESHOLD_ALARM,
        RecordingHost::default(),
        AgentLimits::default(),
    )
    .unwrap();
    agent.init("{}").unwrap();
    let err = agent.self_test().unwrap_err();
    assert!(
        err.to_string()
            .contains("the device has no temperature sensor"),
        "{err}"
    );
    assert!(agent.step().is_err());
    assert_eq!(agent.stats().step_errors, 1);
}

#[test]
fn the_failing_agent_fails_its_self_test_with_its_reason() {
    let mut agent = Agent::load(
        hotswap_agents::FAILING_SELF_TEST,
        host(),
        AgentLimits::default(),
    )
    .unwrap();
    agent.init("{}").unwrap();
    assert_eq!(
        agent.self_test().unwrap_err(),
        AgentError::Failed {
            function: "self-test",
            message: "calibration table missing".into()
        }
    );
    assert_eq!(
        agent.host().log,
        [(
            LogLevel::Error,
            "self-test: calibration table missing".to_string()
        )]
    );
}

/// A core module with the agent world's exports around the given `step` body.
fn hostile(step_body: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
            (memory (export "memory") 1)
            (global $ret (mut i32) (i32.const 1024))
            (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 2048)
            (func (export "init") (param i32 i32) (result i32) global.get $ret)
            (func (export "self-test") (result i32) global.get $ret)
            (func (export "step") (result i32) {step_body})
            {extra}
        )"#
    ))
    .unwrap()
}

fn load(bytes: &[u8]) -> Result<Agent<RecordingHost>, AgentError> {
    Agent::load(bytes, host(), AgentLimits::default())
}

#[test]
fn an_endless_loop_runs_out_of_fuel_and_the_agent_stays_usable() {
    let mut agent = load(&hostile("(loop $l (br $l)) i32.const 1024", "")).unwrap();
    agent.init("{}").unwrap();
    assert_eq!(agent.step().unwrap_err(), AgentError::OutOfFuel("step"));
    assert_eq!(agent.step().unwrap_err(), AgentError::OutOfFuel("step"));
    assert_eq!(agent.stats().fuel_exhausted, 2);
    // The self-test still works: each call gets fresh fuel.
    agent.self_test().unwrap();
}

#[test]
fn a_memory_bomb_is_refused_growth_and_traps() {
    let grow = "(block $done (loop $l (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1))) (br $l))) unreachable";
    let mut agent = load(&hostile(grow, "")).unwrap();
    let err = agent.step().unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Trap {
                function: "step",
                ..
            }
        ),
        "{err}"
    );
    assert!(agent.memory_size() <= AgentLimits::default().memory_bytes);
    assert_eq!(agent.stats().traps, 1);
}

#[test]
fn deep_recursion_is_stopped() {
    let mut agent = load(&hostile(
        "call $deep",
        "(func $deep (result i32) call $deep)",
    ))
    .unwrap();
    let err = agent.step().unwrap_err();
    assert!(
        matches!(err, AgentError::Trap { .. } | AgentError::OutOfFuel(_)),
        "{err}"
    );
}

#[test]
fn a_foreign_import_is_refused_by_name() {
    let bytes = wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))))"#).unwrap();
    let err = load(&bytes).err().unwrap();
    assert_eq!(
        err.to_string(),
        "agent imports `wasi_snapshot_preview1#fd_write`, which devices do not provide"
    );
}

#[test]
fn a_missing_export_is_named() {
    let bytes = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "init") (param i32 i32) (result i32) i32.const 0))"#).unwrap();
    assert_eq!(
        load(&bytes).err().unwrap(),
        AgentError::MissingExport("step")
    );
}

#[test]
fn a_broken_return_value_is_an_abi_error_not_a_panic() {
    let mut agent = load(&hostile(
        "i32.const 1024",
        r#"(data (i32.const 1024) "\07")"#,
    ))
    .unwrap();
    let err = agent.step().unwrap_err();
    assert_eq!(
        err,
        AgentError::Abi {
            function: "step",
            message: "result tag 7, expected 0 or 1".into()
        }
    );
    let mut agent = load(&hostile("i32.const 70000", "")).unwrap();
    assert!(matches!(agent.step().unwrap_err(), AgentError::Abi { .. }));
}

#[test]
fn garbage_is_not_an_agent() {
    assert!(matches!(
        load(b"not wasm").err().unwrap(),
        AgentError::Invalid(_)
    ));
}
