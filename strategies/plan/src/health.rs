//! The default health policy: roll back when the failure rate of a wave crosses a threshold once
//! enough devices have finished (AWS IoT Jobs' abort criteria, judged per wave), or when the wave
//! spends more than its failure budget; wait for stragglers and the soak time; pause when the wave
//! ends short of its minimum success.

use serde::{Deserialize, Serialize};

use crate::params;
use crate::{Gate, Mode, ParamError};

/// Counts for the wave being judged, mirroring `health-types.wave-stats` in the WIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WaveStats {
    pub wave: u32,
    pub waves: u32,
    pub mode: Mode,
    pub gate: Gate,
    pub targeted: u32,
    pub succeeded: u32,
    pub failed: u32,
    pub in_progress: u32,
    pub elapsed_seconds: u32,
    pub settled_seconds: Option<u32>,
    pub deployment_targeted: u32,
    pub deployment_succeeded: u32,
    pub deployment_failed: u32,
}

/// One device's latest health report, mirroring `health-types.health-sample`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthSample {
    pub device: String,
    pub healthy: bool,
    pub self_test_passed: bool,
    pub traps: u32,
    pub fuel_exhausted: u32,
    #[serde(default)]
    pub metrics: Vec<(String, f64)>,
}

/// What the orchestrator should do next, mirroring `health-types.verdict`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum Verdict {
    Proceed,
    Wait { seconds: u32 },
    Pause { reason: String },
    RollBack { reason: String },
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Proceed => f.write_str("proceed"),
            Verdict::Wait { seconds } => write!(f, "wait {seconds} s"),
            Verdict::Pause { reason } => write!(f, "pause: {reason}"),
            Verdict::RollBack { reason } => write!(f, "roll back: {reason}"),
        }
    }
}

/// What a health sample says; `healthy` alone is the device's own view.
pub trait SampleView {
    fn healthy(&self) -> bool;
    fn self_test_passed(&self) -> bool;
    fn traps(&self) -> u32;
}

impl SampleView for HealthSample {
    fn healthy(&self) -> bool {
        self.healthy
    }
    fn self_test_passed(&self) -> bool {
        self.self_test_passed
    }
    fn traps(&self) -> u32 {
        self.traps
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Params {
    /// Roll back when this share of finished devices failed, in percent.
    #[serde(default = "default_threshold")]
    failure_threshold_percent: f64,
    /// Finished devices needed before the threshold applies; the wave gate's `minSample` by default.
    #[serde(default)]
    min_sample: Option<u32>,
    /// Roll back when this share of the health samples is unhealthy, in percent; the failure
    /// threshold by default.
    #[serde(default)]
    unhealthy_threshold_percent: Option<f64>,
    /// How long to wait before judging a wave that is still running or soaking, in seconds.
    #[serde(default = "default_poll")]
    poll_seconds: u32,
}

fn default_threshold() -> f64 {
    10.0
}

fn default_poll() -> u32 {
    5
}

pub const SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "default health policy",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "failureThresholdPercent": {"type": "number", "minimum": 0, "maximum": 100, "default": 10,
      "description": "roll back when this share of a wave's finished devices failed"},
    "minSample": {"type": "integer", "minimum": 1,
      "description": "finished devices needed before the threshold applies; the wave gate's minSample by default"},
    "unhealthyThresholdPercent": {"type": "number", "minimum": 0, "maximum": 100,
      "description": "roll back when this share of health samples is unhealthy; failureThresholdPercent by default"},
    "pollSeconds": {"type": "integer", "minimum": 1, "default": 5,
      "description": "how long to wait before judging a wave that is still running or soaking"}
  }
}"#;

/// Judges a wave with the default policy.
pub fn evaluate<S: SampleView>(
    params: &str,
    stats: &WaveStats,
    samples: &[S],
) -> Result<Verdict, ParamError> {
    let p: Params = params::parse("health policy", params)?;
    let threshold = p.failure_threshold_percent;
    if !(0.0..=100.0).contains(&threshold) {
        return Err(ParamError::new(format!(
            "`failureThresholdPercent` must be from 0 to 100, found {threshold}"
        )));
    }
    let unhealthy_threshold = p.unhealthy_threshold_percent.unwrap_or(threshold);
    if !(0.0..=100.0).contains(&unhealthy_threshold) {
        return Err(ParamError::new(format!(
            "`unhealthyThresholdPercent` must be from 0 to 100, found {unhealthy_threshold}"
        )));
    }
    if p.poll_seconds == 0 {
        return Err(ParamError::new("`pollSeconds` must be at least 1, found 0"));
    }
    if p.min_sample == Some(0) {
        return Err(ParamError::new("`minSample` must be at least 1, found 0"));
    }

    let wave = stats.wave + 1;
    let gate = stats.gate;
    if stats.failed > gate.failure_budget {
        return Ok(Verdict::RollBack {
            reason: format!(
                "wave {wave}: {} devices failed, over the failure budget of {}",
                stats.failed, gate.failure_budget
            ),
        });
    }
    let min_sample = p.min_sample.unwrap_or(gate.min_sample).max(1);
    let finished = stats.succeeded + stats.failed;
    if finished >= min_sample && finished > 0 {
        let rate = 100.0 * f64::from(stats.failed) / f64::from(finished);
        if stats.failed > 0 && rate >= threshold {
            return Ok(Verdict::RollBack {
                reason: format!(
                    "wave {wave}: {rate:.1}% of finished devices failed ({} of {finished}), threshold {threshold}%",
                    stats.failed
                ),
            });
        }
    }
    let unhealthy = samples
        .iter()
        .filter(|s| !s.healthy() || !s.self_test_passed() || s.traps() > 0)
        .count();
    if unhealthy > 0 && samples.len() >= min_sample as usize {
        let rate = 100.0 * unhealthy as f64 / samples.len() as f64;
        if rate >= unhealthy_threshold {
            return Ok(Verdict::RollBack {
                reason: format!(
                    "wave {wave}: {rate:.1}% of health samples are unhealthy ({unhealthy} of {}), threshold {unhealthy_threshold}%",
                    samples.len()
                ),
            });
        }
    }
    if stats.in_progress > 0 {
        return Ok(Verdict::Wait {
            seconds: p.poll_seconds,
        });
    }
    match stats.settled_seconds {
        None => {
            return Ok(Verdict::Wait {
                seconds: p.poll_seconds,
            });
        }
        // Soaking: the health samples are looked at again every poll, not only at the end.
        Some(settled) if settled < gate.soak_seconds => {
            return Ok(Verdict::Wait {
                seconds: (gate.soak_seconds - settled).min(p.poll_seconds),
            });
        }
        Some(_) => {}
    }
    let success = if stats.targeted == 0 {
        100.0
    } else {
        100.0 * f64::from(stats.succeeded) / f64::from(stats.targeted)
    };
    if success < f64::from(gate.min_success_percent) {
        return Ok(Verdict::Pause {
            reason: format!(
                "wave {wave}: {success:.1}% of devices succeeded ({} of {}), the gate asks for {}%",
                stats.succeeded, stats.targeted, gate.min_success_percent
            ),
        });
    }
    Ok(Verdict::Proceed)
}
