//! Regional: one region after the other, in the order given or, by default, smallest region first
//! so the first wave puts the fewest devices at risk.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::params::{self, GateParams, gate_schema};
use crate::{FleetView, Mode, ParamError, Plan, Wave};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    /// Regions in the order to update them; every targeted region must be named.
    #[serde(default)]
    order: Option<Vec<String>>,
    #[serde(default)]
    gate: GateParams,
    #[serde(default)]
    max_in_flight: Option<u32>,
}

pub const SCHEMA: &str = concat!(
    r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "regional",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "order": {"type": "array", "items": {"type": "string"}, "uniqueItems": true,
      "description": "regions in the order to update them; by default smallest region first, then by name"},
    "gate": "#,
    gate_schema!(),
    r#",
    "maxInFlight": {"type": "integer", "minimum": 1, "description": "devices updating at once per wave"}
  }
}"#
);

pub fn plan<F: FleetView + ?Sized>(params: &str, fleet: &F) -> Result<Plan, ParamError> {
    let p: Params = params::parse("regional", params)?;
    p.gate.check("gate")?;
    params::at_least_one("maxInFlight", p.max_in_flight)?;
    // Devices by region name; a region index the fleet does not name counts as no region.
    let mut regions: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for i in 0..fleet.len() {
        regions
            .entry(fleet.region_name(fleet.region(i)))
            .or_default()
            .push(i as u32);
    }
    for members in regions.values_mut() {
        members.sort_unstable_by(|&a, &b| fleet.id(a as usize).cmp(fleet.id(b as usize)));
    }

    let order: Vec<&str> = match &p.order {
        Some(order) => {
            let mut named = HashSet::new();
            for region in order {
                if !named.insert(region.as_str()) {
                    return Err(ParamError::new(format!(
                        "`order` names region `{region}` twice"
                    )));
                }
            }
            let missing: Vec<&str> = regions
                .keys()
                .copied()
                .filter(|r| !named.contains(r))
                .collect();
            if !missing.is_empty() {
                return Err(ParamError::new(format!(
                    "`order` must name every targeted region, missing: {}",
                    missing
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            // Regions named but without targets are allowed: one order can serve many deployments.
            order
                .iter()
                .map(String::as_str)
                .filter(|r| regions.contains_key(r))
                .collect()
        }
        None => {
            let mut order: Vec<&str> = regions.keys().copied().collect();
            order.sort_by_key(|r| (regions[r].len(), *r));
            order
        }
    };

    let waves = order
        .into_iter()
        .map(|region| {
            let devices = regions.remove(region).unwrap_or_default();
            let name = if region.is_empty() {
                "no region".to_string()
            } else {
                format!("region {region}")
            };
            Wave {
                name,
                gate: p.gate.resolve(params::DEFAULT_GATE, devices.len()),
                devices,
                mode: Mode::Install,
                max_in_flight: p.max_in_flight,
            }
        })
        .collect();
    Ok(Plan { waves })
}
