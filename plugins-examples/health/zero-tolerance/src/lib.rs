//! A health policy for fleets that cannot afford a bad agent: one failed device, or one health
//! sample with a trap (or more fuel exhaustions than `maxFuelExhausted`), rolls the deployment
//! back. Otherwise it waits until every device of the wave has finished and at least
//! `minSamples` healthy samples came from it, then proceeds.
//!
//! Written against `wit/plugin` with `wit-bindgen` alone, as anyone outside the project would.

wit_bindgen::generate!({ world: "health-policy", path: "../../../wit/plugin" });

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    /// Healthy samples needed from the wave before it passes; at most the wave's size.
    #[serde(default)]
    min_samples: u32,
    #[serde(default)]
    max_fuel_exhausted: u32,
    /// How long to wait between looks at a running wave.
    #[serde(default = "one")]
    poll_seconds: u32,
}

fn one() -> u32 {
    1
}

struct ZeroTolerance;

impl Guest for ZeroTolerance {
    fn describe() -> Description {
        Description {
            name: "zero-tolerance".to_string(),
            version: "1.0.0".to_string(),
            summary: "rolls back at the first failed device or trapping agent".to_string(),
            params_schema: r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "minSamples": {"type": "integer", "minimum": 0, "default": 0},
    "maxFuelExhausted": {"type": "integer", "minimum": 0, "default": 0},
    "pollSeconds": {"type": "integer", "minimum": 1, "default": 1}
  }
}"#
            .to_string(),
        }
    }

    fn evaluate(
        params: String,
        stats: WaveStats,
        samples: Vec<HealthSample>,
    ) -> Result<Verdict, String> {
        let p: Params =
            serde_json::from_str(&params).map_err(|e| format!("zero-tolerance parameters: {e}"))?;
        if p.poll_seconds == 0 {
            return Err("`pollSeconds` must be at least 1, found 0".to_string());
        }
        let wave = stats.wave + 1;
        if stats.failed > 0 {
            return Ok(Verdict::RollBack(format!(
                "wave {wave}: {} devices failed",
                stats.failed
            )));
        }
        if let Some(s) = samples
            .iter()
            .find(|s| s.traps > 0 || s.fuel_exhausted > p.max_fuel_exhausted || !s.self_test_passed)
        {
            return Ok(Verdict::RollBack(format!(
                "wave {wave}: device {} is unhealthy ({} traps, {} fuel exhaustions)",
                s.device, s.traps, s.fuel_exhausted
            )));
        }
        let healthy = samples.iter().filter(|s| s.healthy).count() as u32;
        if stats.in_progress > 0 || healthy < p.min_samples.min(stats.targeted) {
            return Ok(Verdict::Wait(p.poll_seconds));
        }
        Ok(Verdict::Proceed)
    }
}

export!(ZeroTolerance);
