//! Rolling: fixed-size batches (N devices or P% of the targets) in id order, each batch updating at
//! most `maxConcurrency` devices at once.

use serde::Deserialize;

use crate::params::{self, GateParams, gate_schema};
use crate::{FleetView, Mode, ParamError, Plan, Wave};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    #[serde(default)]
    batch_size: Option<u32>,
    #[serde(default)]
    batch_percentage: Option<f64>,
    #[serde(default)]
    max_concurrency: Option<u32>,
    #[serde(default)]
    gate: GateParams,
}

pub const SCHEMA: &str = concat!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "rolling",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "batchSize": {"type": "integer", "minimum": 1, "description": "devices per batch"},
    "batchPercentage": {"type": "number", "exclusiveMinimum": 0, "maximum": 100,
      "description": "share of the targets per batch, rounded up; give this or batchSize"},
    "maxConcurrency": {"type": "integer", "minimum": 1, "description": "devices of a batch updating at once"},
    "gate": "#,
    gate_schema!(),
    r#"
  }
}"#
);

pub fn plan<F: FleetView + ?Sized>(params: &str, fleet: &F) -> Result<Plan, ParamError> {
    let p: Params = params::parse("rolling", params)?;
    p.gate.check("gate")?;
    let batch = match (p.batch_size, p.batch_percentage) {
        (Some(_), Some(_)) => {
            return Err(ParamError::new(
                "give either `batchSize` or `batchPercentage`, not both",
            ));
        }
        (None, None) => {
            return Err(ParamError::new(
                "`batchSize` or `batchPercentage` is required",
            ));
        }
        (Some(0), None) => return Err(ParamError::new("`batchSize` must be at least 1, found 0")),
        (Some(n), None) => n as usize,
        (None, Some(pct)) if !(pct > 0.0 && pct <= 100.0) => {
            return Err(ParamError::new(format!(
                "`batchPercentage` must be above 0 and at most 100, found {pct}"
            )));
        }
        (None, Some(pct)) => params::share(fleet.len(), pct).max(1),
    };
    params::at_least_one("maxConcurrency", p.max_concurrency)?;

    let mut order: Vec<u32> = (0..fleet.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| fleet.id(a as usize).cmp(fleet.id(b as usize)));
    let batches = order.len().div_ceil(batch);
    let waves = order
        .chunks(batch)
        .enumerate()
        .map(|(i, chunk)| Wave {
            name: format!("batch {} of {batches}", i + 1),
            devices: chunk.to_vec(),
            mode: Mode::Install,
            gate: p.gate.resolve(params::DEFAULT_GATE, chunk.len()),
            max_in_flight: p.max_concurrency,
        })
        .collect();
    Ok(Plan { waves })
}
