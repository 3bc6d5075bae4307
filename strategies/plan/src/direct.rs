//! Direct: exactly the devices named, in one wave; every target when none are named.

use std::collections::HashMap;

use serde::Deserialize;

use crate::params::{self, GateParams, gate_schema};
use crate::{FleetView, Mode, ParamError, Plan, Wave};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    #[serde(default)]
    device: Option<String>,
    #[serde(default)]
    devices: Option<Vec<String>>,
    #[serde(default)]
    gate: GateParams,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

pub const SCHEMA: &str = concat!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "direct",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "device": {"type": "string", "description": "the one device to update"},
    "devices": {"type": "array", "items": {"type": "string"}, "uniqueItems": true,
      "description": "the devices to update; every target when neither this nor device is given"},
    "gate": "#,
    gate_schema!(),
    r#",
    "maxInFlight": {"type": "integer", "minimum": 1}
  }
}"#
);

pub fn plan<F: FleetView + ?Sized>(params: &str, fleet: &F) -> Result<Plan, ParamError> {
    let p: Params = params::parse("direct", params)?;
    p.gate.check("gate")?;
    params::at_least_one("maxInFlight", p.max_in_flight)?;
    let named: Option<Vec<String>> = match (p.device, p.devices) {
        (Some(_), Some(_)) => {
            return Err(ParamError::new(
                "give either `device` or `devices`, not both",
            ));
        }
        (Some(one), None) => Some(vec![one]),
        (None, Some(list)) if list.is_empty() => {
            return Err(ParamError::new(
                "`devices` is empty: name at least one device, or leave it out",
            ));
        }
        (None, list) => list,
    };
    let chosen: Vec<u32> = match named {
        None => (0..fleet.len() as u32).collect(),
        Some(ids) => {
            let index: HashMap<&str, u32> =
                (0..fleet.len()).map(|i| (fleet.id(i), i as u32)).collect();
            let mut chosen = Vec::with_capacity(ids.len());
            let mut taken = vec![false; fleet.len()];
            for id in &ids {
                let Some(&i) = index.get(id.as_str()) else {
                    return Err(ParamError::new(format!(
                        "device `{id}` is not among the deployment's targets"
                    )));
                };
                if std::mem::replace(&mut taken[i as usize], true) {
                    return Err(ParamError::new(format!("device `{id}` is named twice")));
                }
                chosen.push(i);
            }
            chosen
        }
    };
    if chosen.is_empty() {
        return Ok(Plan::default());
    }
    Ok(Plan {
        waves: vec![Wave {
            name: "direct".to_string(),
            gate: p.gate.resolve(params::DEFAULT_GATE, chosen.len()),
            devices: chosen,
            mode: Mode::Install,
            max_in_flight: p.max_in_flight,
        }],
    })
}
