//! Canary: a small seeded sample spread across regions first, then growing shares of the fleet.
//!
//! `{"initialPercentage": 10, "increments": [30, 50, 100]}` gives waves covering 10%, 30%, 50% and
//! 100% of the targets, each wave adding the devices between two steps.

use serde::Deserialize;

use crate::params::{self, GateDefaults, GateParams, gate_schema};
use crate::{FleetView, Mode, ParamError, Plan, Wave, spread_order};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    #[serde(default = "default_initial")]
    initial_percentage: f64,
    #[serde(default = "default_increments")]
    increments: Vec<f64>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    gate: GateParams,
    /// The gate of the first (canary) wave, when it should differ from the others.
    #[serde(default)]
    canary_gate: Option<GateParams>,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

fn default_initial() -> f64 {
    10.0
}

fn default_increments() -> Vec<f64> {
    vec![30.0, 50.0, 100.0]
}

/// Canary waves soak a minute by default: long enough for a crash loop to show.
const DEFAULTS: GateDefaults = GateDefaults {
    soak_seconds: 60,
    ..params::DEFAULT_GATE
};

pub const SCHEMA: &str = concat!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "canary",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "initialPercentage": {"type": "number", "exclusiveMinimum": 0, "maximum": 100, "default": 10,
      "description": "share of the targets in the first wave, a seeded sample spread across regions"},
    "increments": {"type": "array", "items": {"type": "number"}, "default": [30, 50, 100],
      "description": "cumulative percentages of the following waves, rising, ending at 100"},
    "seed": {"type": "integer", "minimum": 0, "default": 0, "description": "seed of the sample"},
    "gate": "#,
    gate_schema!(),
    r#",
    "canaryGate": "#,
    gate_schema!(),
    r#",
    "maxInFlight": {"type": "integer", "minimum": 1, "description": "devices updating at once per wave"}
  }
}"#
);

pub fn plan<F: FleetView + ?Sized>(params: &str, fleet: &F) -> Result<Plan, ParamError> {
    let p: Params = params::parse("canary", params)?;
    let mut steps = Vec::with_capacity(p.increments.len() + 1);
    steps.push(p.initial_percentage);
    steps.extend_from_slice(&p.increments);
    if !(p.initial_percentage > 0.0 && p.initial_percentage <= 100.0) {
        return Err(ParamError::new(format!(
            "`initialPercentage` must be above 0 and at most 100, found {}",
            p.initial_percentage
        )));
    }
    if p.initial_percentage < 100.0 && p.increments.is_empty() {
        return Err(ParamError::new(
            "`increments` must not be empty unless `initialPercentage` is 100",
        ));
    }
    params::check_cumulative("increments", &steps)?;
    p.gate.check("gate")?;
    if let Some(g) = &p.canary_gate {
        g.check("canaryGate")?;
    }
    params::at_least_one("maxInFlight", p.max_in_flight)?;

    let order = spread_order(fleet, p.seed);
    let waves = params::cut_cumulative(&order, &steps)
        .into_iter()
        .enumerate()
        .map(|(i, (percent, devices))| {
            let gate = match (&p.canary_gate, i) {
                (Some(g), 0) => g,
                _ => &p.gate,
            };
            let name = if i == 0 {
                format!("canary {}", params::percent_label(percent))
            } else {
                format!("to {}", params::percent_label(percent))
            };
            Wave {
                name,
                gate: gate.resolve(DEFAULTS, devices.len()),
                devices,
                mode: Mode::Install,
                max_in_flight: p.max_in_flight,
            }
        })
        .collect();
    Ok(Plan { waves })
}
