//! A rollout strategy that only touches devices inside their maintenance window.
//!
//! Devices carry a label `maintenance-window=HH-HH` (UTC hours, start inclusive, end exclusive,
//! wrapping past midnight: `22-04`). A strategy has no clock, so the operator says what hour the
//! deployment starts in (`hourUtc`); the devices whose window is open then are planned in batches
//! of `batchSize`, in id order. Devices whose window is closed, or that carry no window, are left
//! out: a later deployment, in their window, takes them.
//!
//! Written against `wit/plugin` with `wit-bindgen` alone, as anyone outside the project would.
//! Build: `cargo build --target wasm32-unknown-unknown --release`, then
//! `wasm-tools component new`; check: `hotswap plugin check`.

wit_bindgen::generate!({ world: "strategy", path: "../../../wit/plugin" });

use hotswap::plugin::log::{Level, log};
use hotswap::plugin::types::{Gate, Mode, Wave};
use serde::Deserialize;

const LABEL: &str = "maintenance-window";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    /// The hour (UTC, 0 to 23) the deployment starts in.
    hour_utc: u32,
    /// Devices per wave.
    #[serde(default = "default_batch")]
    batch_size: u32,
    /// Seconds to watch each wave after it finished.
    #[serde(default)]
    soak_seconds: u32,
}

fn default_batch() -> u32 {
    50
}

/// `"HH-HH"` as (start, end) hours.
fn window(value: &str) -> Option<(u32, u32)> {
    let (start, end) = value.split_once('-')?;
    let (start, end) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    (start < 24 && end <= 24 && start != end).then_some((start, end))
}

fn open(window: (u32, u32), hour: u32) -> bool {
    let (start, end) = window;
    if start < end {
        (start..end).contains(&hour)
    } else {
        hour >= start || hour < end
    }
}

struct MaintenanceWindow;

impl Guest for MaintenanceWindow {
    fn describe() -> Description {
        Description {
            name: "maintenance-window".to_string(),
            version: "1.0.0".to_string(),
            summary: "rolls out only to devices whose maintenance-window label is open at hourUtc".to_string(),
            params_schema: r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "required": ["hourUtc"],
  "properties": {
    "hourUtc": {"type": "integer", "minimum": 0, "maximum": 23, "description": "the hour (UTC) the deployment starts in"},
    "batchSize": {"type": "integer", "minimum": 1, "default": 50, "description": "devices per wave"},
    "soakSeconds": {"type": "integer", "minimum": 0, "default": 0, "description": "seconds to watch each wave after it finished"}
  }
}"#
            .to_string(),
        }
    }

    fn plan(params: String, fleet: Fleet) -> Result<Plan, String> {
        let p: Params = serde_json::from_str(&params)
            .map_err(|e| format!("maintenance-window parameters: {e}"))?;
        if p.hour_utc > 23 {
            return Err(format!(
                "`hourUtc` must be from 0 to 23, found {}",
                p.hour_utc
            ));
        }
        if p.batch_size == 0 {
            return Err("`batchSize` must be at least 1, found 0".to_string());
        }
        let mut in_window = Vec::new();
        for label in fleet.labels.iter().filter(|l| l.key == LABEL) {
            match window(&label.value) {
                Some(w) if open(w, p.hour_utc) => in_window.extend_from_slice(&label.members),
                Some(_) => {}
                None => log(
                    Level::Warn,
                    &format!(
                        "ignoring {} devices with a malformed window {:?}",
                        label.members.len(),
                        label.value
                    ),
                ),
            }
        }
        if in_window.is_empty() {
            return Err(format!(
                "no target's maintenance window is open at {:02}:00 UTC",
                p.hour_utc
            ));
        }
        let id = |i: u32| {
            let end = fleet.id_ends[i as usize] as usize;
            let start = if i == 0 {
                0
            } else {
                fleet.id_ends[i as usize - 1] as usize
            };
            &fleet.ids[start..end]
        };
        in_window.sort_by(|a, b| id(*a).cmp(id(*b)));
        let left_out = fleet.id_ends.len() - in_window.len();
        log(
            Level::Info,
            &format!(
                "{} devices in their window, {left_out} left for later",
                in_window.len()
            ),
        );
        let waves = in_window
            .chunks(p.batch_size as usize)
            .enumerate()
            .map(|(i, batch)| Wave {
                name: format!("window batch {}", i + 1),
                devices: batch.to_vec(),
                mode: Mode::Install,
                gate: Gate {
                    soak_seconds: p.soak_seconds,
                    min_success_percent: 100,
                    failure_budget: 0,
                    min_sample: 1,
                },
                max_in_flight: None,
            })
            .collect();
        Ok(Plan { waves })
    }
}

export!(MaintenanceWindow);
