//! Blue-green on dual-slot devices: stage the new agent into every device's inactive slot (the
//! "green" side) while the running agent stays untouched, then switch slots, all at once or in
//! activation waves over a seeded sample spread across regions.

use serde::Deserialize;

use crate::params::{self, GateDefaults, GateParams, gate_schema};
use crate::{FleetView, Mode, ParamError, Plan, Wave, spread_order};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    /// Cumulative percentages of the activation waves; `[100]` switches every device at once.
    #[serde(default = "all_at_once")]
    activate_increments: Vec<f64>,
    #[serde(default)]
    seed: u64,
    /// The gate of the stage wave.
    #[serde(default)]
    stage_gate: GateParams,
    /// The gate of each activation wave.
    #[serde(default)]
    gate: GateParams,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

fn all_at_once() -> Vec<f64> {
    vec![100.0]
}

/// Every device must hold the green agent before any switches: a failed stage blocks activation.
const STAGE_DEFAULTS: GateDefaults = GateDefaults {
    soak_seconds: 0,
    min_success_percent: 100,
};

pub const SCHEMA: &str = concat!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "blue-green",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "activateIncrements": {"type": "array", "items": {"type": "number"}, "default": [100],
      "description": "cumulative percentages of the activation waves, rising, ending at 100"},
    "seed": {"type": "integer", "minimum": 0, "default": 0},
    "stageGate": "#,
    gate_schema!(),
    r#",
    "gate": "#,
    gate_schema!(),
    r#",
    "maxInFlight": {"type": "integer", "minimum": 1}
  }
}"#
);

pub fn plan<F: FleetView + ?Sized>(params: &str, fleet: &F) -> Result<Plan, ParamError> {
    let p: Params = params::parse("blue-green", params)?;
    params::check_cumulative("activateIncrements", &p.activate_increments)?;
    p.stage_gate.check("stageGate")?;
    p.gate.check("gate")?;
    params::at_least_one("maxInFlight", p.max_in_flight)?;
    if fleet.is_empty() {
        return Ok(Plan::default());
    }
    let order = spread_order(fleet, p.seed);
    let mut waves = vec![Wave {
        name: "stage all".to_string(),
        devices: order.clone(),
        mode: Mode::Stage,
        gate: p.stage_gate.resolve(STAGE_DEFAULTS, order.len()),
        max_in_flight: p.max_in_flight,
    }];
    waves.extend(
        params::cut_cumulative(&order, &p.activate_increments)
            .into_iter()
            .map(|(percent, devices)| Wave {
                name: format!("activate {}", params::percent_label(percent)),
                gate: p.gate.resolve(params::DEFAULT_GATE, devices.len()),
                devices,
                mode: Mode::Activate,
                max_in_flight: p.max_in_flight,
            }),
    );
    Ok(Plan { waves })
}
