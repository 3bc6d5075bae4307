//! The author's kit for device agents: `plugin check` and `plugin simulate` on a core module
//! run it in the device VM itself (the wasmi interpreter a device runs, under the same limits),
//! on sensors the author chooses, before it is signed and pushed.

use std::io::Write;

use anyhow::{Context, Result};
use hotswap_device_vm::agent::{Agent, AgentError, AgentLimits, LogLevel, RecordingHost};
use hotswap_device_vm::image::HEADER_SIZE;
use hotswap_device_vm::layout::DEFAULT_SLOT_SIZE;

use crate::usage::UsageError;

/// The largest agent a device's slot holds: the slot less the image header.
pub const MAX_AGENT_BYTES: usize = DEFAULT_SLOT_SIZE as usize - HEADER_SIZE;

/// The sensors an agent is checked on when none are given: what `hotswap device` and
/// `hotswap sim` devices read.
pub const DEFAULT_SENSORS: &str = "temperature=21.5";

/// Whether `bytes` are a core WebAssembly module (an agent) rather than a component (a plugin),
/// by wasmparser's reading of the preamble, as the plugin host tells them apart.
pub fn is_core_module(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_core_wasm(bytes)
}

/// A sensor as the author gives it: `name=value`, or `name=from..to` for a reading that moves
/// in even steps from `from` to `to` over the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    pub name: String,
    pub from: f32,
    pub to: f32,
}

impl std::str::FromStr for Sensor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("{s:?}: a sensor is NAME=VALUE or NAME=FROM..TO, such as temperature=20..40")
        };
        let (name, value) = s.split_once('=').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        let number = |v: &str| v.trim().parse::<f32>().map_err(|_| bad());
        let (from, to) = match value.split_once("..") {
            Some((from, to)) => (number(from)?, number(to)?),
            None => {
                let v = number(value)?;
                (v, v)
            }
        };
        Ok(Sensor {
            name: name.to_string(),
            from,
            to,
        })
    }
}

impl Sensor {
    /// The reading at `step` of `steps` (0-based).
    fn at(&self, step: u32, steps: u32) -> f32 {
        if steps <= 1 {
            return self.from;
        }
        self.from + (self.to - self.from) * step as f32 / (steps - 1) as f32
    }
}

fn host(sensors: &[Sensor]) -> RecordingHost {
    RecordingHost {
        sensors: sensors.iter().map(|s| (s.name.clone(), s.from)).collect(),
        ..Default::default()
    }
}

fn level(l: LogLevel) -> &'static str {
    match l {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error => "error",
    }
}

/// Prints and clears the log lines the agent wrote.
fn drain_log(agent: &mut Agent<RecordingHost>, out: &mut dyn Write) -> Result<()> {
    for (l, line) in agent.host_mut().log.drain(..) {
        writeln!(out, "  log {}: {line}", level(l))?;
    }
    Ok(())
}

/// What a device checks before it tries an agent, then the trial itself: the size against the
/// slot, loading (imports, exports, memory), `init` with `config`, and the self-test under the
/// watchdog budget.
fn trial(bytes: &[u8], config: &str, sensors: &[Sensor]) -> Result<Agent<RecordingHost>> {
    if bytes.len() > MAX_AGENT_BYTES {
        anyhow::bail!(
            "the agent is {} bytes; a device slot holds {MAX_AGENT_BYTES} (DEFAULT_SLOT_SIZE less the image header): build with opt-level \"z\", no std, a small allocator",
            bytes.len()
        );
    }
    let limits = AgentLimits::default();
    let mut agent = Agent::load(bytes, host(sensors), limits)?;
    agent
        .init(config)
        .map_err(|e| anyhow::anyhow!("{e} (config {config})"))?;
    agent.self_test().map_err(|e| match e {
        AgentError::OutOfFuel(_) => anyhow::anyhow!(
            "{e}: the self-test has {} fuel units, the trial watchdog's budget",
            limits.self_test_fuel
        ),
        e => anyhow::anyhow!("{e}: a device would revert to its previous agent"),
    })?;
    Ok(agent)
}

/// `plugin check` on an agent: what a device checks, and the trial on `sensors`.
pub fn check(bytes: &[u8], config: &str, sensors: &[Sensor], out: &mut dyn Write) -> Result<()> {
    let mut agent = trial(bytes, config, sensors)?;
    writeln!(
        out,
        "ok: agent, {} bytes of the {MAX_AGENT_BYTES} a slot holds; {} KiB of memory",
        bytes.len(),
        agent.memory_size() / 1024
    )?;
    writeln!(
        out,
        "sha256 {}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(bytes))
    )?;
    writeln!(out, "init and self-test passed on {}", names(sensors))?;
    drain_log(&mut agent, out)
}

fn names(sensors: &[Sensor]) -> String {
    if sensors.is_empty() {
        return "no sensors".into();
    }
    sensors
        .iter()
        .map(|s| {
            if s.from == s.to {
                format!("{}={}", s.name, s.from)
            } else {
                format!("{}={}..{}", s.name, s.from, s.to)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `plugin simulate` on an agent: the trial, then `steps` steps with the sensors moving as
/// given; prints what the agent logged and each actuator change, then its health counts.
pub fn simulate(
    bytes: &[u8],
    config: &str,
    sensors: &[Sensor],
    steps: u32,
    out: &mut dyn Write,
) -> Result<()> {
    let mut agent = trial(bytes, config, sensors).context("the trial before the first step")?;
    writeln!(out, "trial passed on {}", names(sensors))?;
    drain_log(&mut agent, out)?;
    let mut shown: Vec<(String, f32)> = Vec::new();
    for step in 0..steps {
        for s in sensors {
            let value = s.at(step, steps);
            if let Some(slot) = agent.host_mut().sensors.iter_mut().find(|x| x.0 == s.name) {
                slot.1 = value;
            }
        }
        let result = agent.step();
        let readings = agent
            .host()
            .sensors
            .iter()
            .map(|(n, v)| format!("{n}={v:.2}"))
            .collect::<Vec<_>>()
            .join(" ");
        let changed: Vec<String> = agent
            .host()
            .actuators
            .iter()
            .filter(|a| !shown.contains(a))
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        let logged = !agent.host().log.is_empty();
        if !changed.is_empty() || logged || result.is_err() {
            writeln!(out, "step {}: {readings}", step + 1)?;
            if !changed.is_empty() {
                writeln!(out, "  set {}", changed.join(" "))?;
            }
            if let Err(e) = result {
                writeln!(out, "  error: {e}")?;
            }
            drain_log(&mut agent, out)?;
            shown = agent.host().actuators.clone();
        }
    }
    let stats = agent.stats();
    writeln!(
        out,
        "{} steps: {} failed, {} traps, {} out of fuel; {} KiB of memory",
        stats.steps,
        stats.step_errors,
        stats.traps,
        stats.fuel_exhausted,
        agent.memory_size() / 1024
    )?;
    if stats.step_errors > 0 {
        anyhow::bail!(
            "{} of {} steps failed: a device counts each against the agent's health",
            stats.step_errors,
            stats.steps
        );
    }
    Ok(())
}

/// Sensors from the command line, or [`DEFAULT_SENSORS`].
pub fn sensors(given: &[String]) -> Result<Vec<Sensor>> {
    let given: Vec<&str> = if given.is_empty() {
        DEFAULT_SENSORS.split(',').collect()
    } else {
        given.iter().map(String::as_str).collect()
    };
    given
        .iter()
        .map(|s| s.parse().map_err(|e: String| UsageError(e).into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensors_parse_as_values_and_ramps() {
        let s: Sensor = "temperature=20..40".parse().unwrap();
        assert_eq!((s.from, s.to), (20.0, 40.0));
        assert_eq!(s.at(0, 3), 20.0);
        assert_eq!(s.at(1, 3), 30.0);
        assert_eq!(s.at(2, 3), 40.0);
        let s: Sensor = "humidity=-1.5".parse().unwrap();
        assert_eq!((s.name.as_str(), s.from, s.to), ("humidity", -1.5, -1.5));
        for bad in ["temperature", "=3", "t=x", "t=1..", "t=..2"] {
            let e = bad.parse::<Sensor>().unwrap_err();
            assert!(e.contains("NAME=VALUE"), "{bad}: {e}");
        }
    }

    #[test]
    fn modules_and_components_are_told_apart() {
        assert!(is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
        assert!(!is_core_module(b"\0asm"));
    }

    #[test]
    fn the_example_agent_passes_and_an_oversized_one_is_refused_by_size() {
        let mut out = Vec::new();
        let sensors = sensors(&[]).unwrap();
        check(hotswap_agents::THRESHOLD_ALARM, "{}", &sensors, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("init and self-test passed on temperature=21.5"),
            "{text}"
        );
        let big = vec![0; MAX_AGENT_BYTES + 1];
        let e = check(&big, "{}", &sensors, &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("a device slot holds"), "{e}");
        let e = check(
            hotswap_agents::FAILING_SELF_TEST,
            "{}",
            &sensors,
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("would revert"), "{e}");
    }

    #[test]
    fn a_simulated_agent_reacts_to_a_rising_sensor() {
        let mut out = Vec::new();
        let sensors = sensors(&["temperature=20..40".into()]).unwrap();
        simulate(
            hotswap_agents::THRESHOLD_ALARM,
            r#"{"threshold": 30}"#,
            &sensors,
            21,
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("set alarm=1"), "{text}");
        assert!(text.contains("log warn: alarm raised"), "{text}");
        assert!(text.contains("21 steps: 0 failed"), "{text}");
    }
}
