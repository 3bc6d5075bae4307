//! `{{name}}`: a HotSwap rollout strategy.
//!
//! A strategy is a pure function from the deployment's parameters and its target devices to a
//! plan: waves of devices, each with the gate the health policy judges before the next wave.
//! This one updates `firstPercent` of the fleet first, then the rest. Change `waves` to decide
//! differently; the WIT it implements is in `wit/`, the author's guide in the HotSwap
//! repository's `wit/README.md`.
//!
//! Build: `hotswap plugin build`; check: `hotswap plugin check {{file}}`;
//! try: `hotswap plugin simulate {{file}} --devices 1000`; test: `cargo test`.

wit_bindgen::generate!({ world: "strategy", path: "wit" });

// `Description`, `Fleet` and `Plan` are in scope already: the world uses them.
use hotswap::plugin::log::{Level, log};
use hotswap::plugin::types::{Gate, Mode, Wave};
use serde::Deserialize;

/// The parameters, as the deployment's `strategyConfig` gives them (JSON).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    /// The share of the fleet in the first wave, in percent.
    #[serde(default = "default_first")]
    first_percent: u32,
    /// Seconds to watch each wave after it finished.
    #[serde(default)]
    soak_seconds: u32,
}

fn default_first() -> u32 {
    10
}

const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "firstPercent": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10, "description": "the share of the fleet in the first wave"},
    "soakSeconds": {"type": "integer", "minimum": 0, "default": 0, "description": "seconds to watch each wave after it finished"}
  }
}"#;

/// The waves over `devices` devices, as device indices: the planning itself, kept apart from
/// the WIT types so `cargo test` runs it natively.
fn waves(devices: u32, params: &Params) -> Result<Vec<Vec<u32>>, String> {
    if !(1..=100).contains(&params.first_percent) {
        return Err(format!(
            "firstPercent is {}: it must be 1 to 100",
            params.first_percent
        ));
    }
    let first = (devices * params.first_percent).div_ceil(100).min(devices);
    let waves = [(0..first).collect::<Vec<_>>(), (first..devices).collect()];
    Ok(waves.into_iter().filter(|w| !w.is_empty()).collect())
}

struct Strategy;

impl Guest for Strategy {
    fn describe() -> Description {
        Description {
            name: "{{name}}".into(),
            version: "0.1.0".into(),
            summary: "updates firstPercent of the fleet first, then the rest".into(),
            params_schema: SCHEMA.into(),
        }
    }

    fn plan(params: String, fleet: Fleet) -> Result<Plan, String> {
        let params: Params =
            serde_json::from_str(&params).map_err(|e| format!("{{name}} parameters: {e}"))?;
        let devices = fleet.id_ends.len() as u32;
        let waves = waves(devices, &params)?;
        log(
            Level::Info,
            &format!("{} waves over {devices} devices", waves.len()),
        );
        let gate = Gate {
            soak_seconds: params.soak_seconds,
            min_success_percent: 95,
            failure_budget: 0,
            min_sample: 1,
        };
        let count = waves.len();
        Ok(Plan {
            waves: waves
                .into_iter()
                .enumerate()
                .map(|(i, devices)| Wave {
                    name: if i + 1 == count {
                        "the rest".into()
                    } else {
                        format!("first {}%", params.first_percent)
                    },
                    devices,
                    mode: Mode::Install,
                    gate,
                    max_in_flight: None,
                })
                .collect(),
        })
    }
}

export!(Strategy);

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> Params {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_device_is_planned_once_the_first_wave_first() {
        let waves = waves(1000, &params(r#"{"firstPercent": 10}"#)).unwrap();
        assert_eq!(waves.len(), 2);
        assert_eq!(waves[0].len(), 100);
        let mut all: Vec<u32> = waves.concat();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn a_bad_parameter_is_named() {
        let e = waves(10, &params(r#"{"firstPercent": 0}"#)).unwrap_err();
        assert!(e.contains("firstPercent"), "{e}");
        assert!(serde_json::from_str::<Params>(r#"{"firstPrecent": 5}"#).is_err());
    }
}
