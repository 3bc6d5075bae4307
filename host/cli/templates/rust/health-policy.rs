//! `{{name}}`: a HotSwap health policy.
//!
//! After each wave the orchestrator asks the policy what to do: proceed, wait, pause or roll
//! back. A policy is pure: it judges only the wave's counts and the health samples it is given.
//! This one waits until the wave has settled for the gate's soak, rolls back once more than
//! `maxFailurePercent` of the finished devices failed or any device reports traps, and proceeds
//! otherwise. The WIT it implements is in `wit/`.
//!
//! Build: `hotswap plugin build`; check: `hotswap plugin check {{file}}`;
//! try: `hotswap plugin simulate {{file}} --scenario scenario.json`; test: `cargo test`.

wit_bindgen::generate!({ world: "health-policy", path: "wit" });

// `Description`, `HealthSample`, `Verdict` and `WaveStats` are in scope already: the world
// uses them.
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    /// The share of a wave's finished devices that may fail, in percent.
    #[serde(default = "default_max_failure")]
    max_failure_percent: u32,
    /// Seconds between two looks at a wave still in progress.
    #[serde(default = "default_poll")]
    poll_seconds: u32,
}

fn default_max_failure() -> u32 {
    5
}

fn default_poll() -> u32 {
    5
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "maxFailurePercent": {"type": "integer", "minimum": 0, "maximum": 100, "default": 5, "description": "the share of a wave's finished devices that may fail"},
    "pollSeconds": {"type": "integer", "minimum": 1, "default": 5, "description": "seconds between two looks at a wave still in progress"}
  }
}"#;

/// What the policy decides, on plain numbers so `cargo test` runs it natively.
#[derive(Debug, PartialEq)]
enum Decision {
    Proceed,
    Wait(u32),
    RollBack(String),
}

fn decide(params: &Params, stats: &WaveStats, trapping: usize) -> Decision {
    let finished = stats.succeeded + stats.failed;
    if stats.failed * 100 > params.max_failure_percent * finished.max(1) {
        return Decision::RollBack(format!(
            "{} of {finished} devices failed, more than {}%",
            stats.failed, params.max_failure_percent
        ));
    }
    if trapping > 0 {
        return Decision::RollBack(format!("{trapping} devices report traps"));
    }
    match stats.settled_seconds {
        None => Decision::Wait(params.poll_seconds.max(1)),
        Some(s) if s < stats.gate.soak_seconds => Decision::Wait(stats.gate.soak_seconds - s),
        Some(_) => Decision::Proceed,
    }
}

struct Policy;

impl Guest for Policy {
    fn describe() -> Description {
        Description {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            summary:
                "rolls back past maxFailurePercent failures or on any trap, after the soak proceeds"
                    .into(),
            params_schema: SCHEMA.into(),
        }
    }

    fn evaluate(
        params: String,
        stats: WaveStats,
        samples: Vec<HealthSample>,
    ) -> Result<Verdict, String> {
        let params: Params =
            serde_json::from_str(&params).map_err(|e| format!("{{name}} parameters: {e}"))?;
        let trapping = samples.iter().filter(|s| s.traps > 0).count();
        Ok(match decide(&params, &stats, trapping) {
            Decision::Proceed => Verdict::Proceed,
            Decision::Wait(s) => Verdict::Wait(s),
            Decision::RollBack(reason) => Verdict::RollBack(reason),
        })
    }
}

export!(Policy);

#[cfg(test)]
mod tests {
    use super::*;
    use hotswap::plugin::types::{Gate, Mode};

    fn stats(succeeded: u32, failed: u32, settled: Option<u32>) -> WaveStats {
        WaveStats {
            wave: 0,
            waves: 2,
            mode: Mode::Install,
            gate: Gate {
                soak_seconds: 60,
                min_success_percent: 95,
                failure_budget: 0,
                min_sample: 1,
            },
            targeted: succeeded + failed,
            succeeded,
            failed,
            in_progress: 0,
            elapsed_seconds: 120,
            settled_seconds: settled,
            deployment_targeted: 1000,
            deployment_succeeded: succeeded,
            deployment_failed: failed,
        }
    }

    #[test]
    fn waits_for_the_soak_then_proceeds() {
        let p = Params {
            max_failure_percent: 5,
            poll_seconds: 5,
        };
        assert_eq!(decide(&p, &stats(100, 0, None), 0), Decision::Wait(5));
        assert_eq!(decide(&p, &stats(100, 0, Some(20)), 0), Decision::Wait(40));
        assert_eq!(decide(&p, &stats(100, 0, Some(60)), 0), Decision::Proceed);
    }

    #[test]
    fn rolls_back_past_the_failure_share_or_on_a_trap() {
        let p = Params {
            max_failure_percent: 5,
            poll_seconds: 5,
        };
        assert!(matches!(
            decide(&p, &stats(90, 10, Some(60)), 0),
            Decision::RollBack(_)
        ));
        assert!(matches!(
            decide(&p, &stats(100, 0, Some(60)), 1),
            Decision::RollBack(_)
        ));
    }
}
