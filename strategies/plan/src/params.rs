//! Parameters shared by every strategy: the gate, and the parsing of a strategy's JSON.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{Gate, ParamError};

/// The JSON Schema of [`GateParams`], for the strategies' parameter schemas.
macro_rules! gate_schema {
    () => {
        r#"{"type": "object", "additionalProperties": false,
      "description": "condition to meet before the next wave; what is left out takes the strategy's defaults",
      "properties": {
        "soakSeconds": {"type": "integer", "minimum": 0, "description": "seconds to watch a finished wave"},
        "minSuccessPercent": {"type": "integer", "minimum": 0, "maximum": 100, "default": 95},
        "failureBudget": {"type": "integer", "minimum": 0,
          "description": "failed devices tolerated; by default what minSuccessPercent leaves room for"},
        "minSample": {"type": "integer", "minimum": 1,
          "description": "finished devices needed before failure rates are judged; default 10 or the wave's size"}}}"#
    };
}
pub(crate) use gate_schema;

/// A wave gate as an operator writes it; what is left out takes the strategy's defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GateParams {
    pub soak_seconds: Option<u32>,
    pub min_success_percent: Option<u8>,
    /// Failed devices a wave tolerates; by default what `minSuccessPercent` leaves room for.
    pub failure_budget: Option<u32>,
    /// Finished devices needed before failure rates are judged; by default 10, or the wave's size
    /// when it is smaller.
    pub min_sample: Option<u32>,
}

/// The soak time and minimum success a strategy uses where the operator says nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GateDefaults {
    pub soak_seconds: u32,
    pub min_success_percent: u8,
}

pub(crate) const DEFAULT_GATE: GateDefaults = GateDefaults {
    soak_seconds: 0,
    min_success_percent: 95,
};
const DEFAULT_MIN_SAMPLE: u32 = 10;

impl GateParams {
    pub(crate) fn check(&self, field: &str) -> Result<(), ParamError> {
        if let Some(p) = self.min_success_percent
            && p > 100
        {
            return Err(ParamError::new(format!(
                "`{field}.minSuccessPercent` must be from 0 to 100, found {p}"
            )));
        }
        Ok(())
    }

    /// The gate for a wave of `wave_size` devices.
    pub(crate) fn resolve(&self, defaults: GateDefaults, wave_size: usize) -> Gate {
        let size = u32::try_from(wave_size).unwrap_or(u32::MAX);
        let min_success_percent = self
            .min_success_percent
            .unwrap_or(defaults.min_success_percent);
        let must_succeed = (u64::from(size) * u64::from(min_success_percent)).div_ceil(100) as u32;
        Gate {
            soak_seconds: self.soak_seconds.unwrap_or(defaults.soak_seconds),
            min_success_percent,
            failure_budget: self.failure_budget.unwrap_or(size - must_succeed),
            min_sample: self.min_sample.unwrap_or(DEFAULT_MIN_SAMPLE.min(size)),
        }
    }
}

/// Checks an optional count that must be at least 1 when given (`maxInFlight`, ...).
pub(crate) fn at_least_one(field: &str, value: Option<u32>) -> Result<(), ParamError> {
    match value {
        Some(0) => Err(ParamError::new(format!(
            "`{field}` must be at least 1, found 0"
        ))),
        _ => Ok(()),
    }
}

/// Decodes a strategy's parameters; an empty string counts as `{}`.
pub(crate) fn parse<T: DeserializeOwned>(what: &str, params: &str) -> Result<T, ParamError> {
    let params = if params.trim().is_empty() {
        "{}"
    } else {
        params
    };
    serde_json::from_str(params).map_err(|e| ParamError::json(what, e))
}

/// Checks a list of cumulative percentages: each in (0, 100], strictly rising, the last 100.
pub(crate) fn check_cumulative(field: &str, steps: &[f64]) -> Result<(), ParamError> {
    let mut previous = 0.0;
    for (i, &p) in steps.iter().enumerate() {
        if !(p > 0.0 && p <= 100.0) {
            return Err(ParamError::new(format!(
                "`{field}` must hold percentages above 0 and at most 100, found {p} at position {i}"
            )));
        }
        if p <= previous {
            return Err(ParamError::new(format!(
                "`{field}` must rise from step to step (they are cumulative), found {p} after {previous}"
            )));
        }
        previous = p;
    }
    match steps.last() {
        Some(100.0) => Ok(()),
        Some(&last) => Err(ParamError::new(format!(
            "`{field}` must end at 100 so every target device is updated, found {last}"
        ))),
        None => Err(ParamError::new(format!("`{field}` must not be empty"))),
    }
}

/// How many of `total` devices a cumulative percentage covers, rounded up so a small non-zero
/// share still names at least one device.
pub(crate) fn share(total: usize, percent: f64) -> usize {
    if percent >= 100.0 {
        return total;
    }
    ((total as f64) * percent / 100.0).ceil().min(total as f64) as usize
}

/// Cuts `order` into waves at the given cumulative percentages, dropping steps that add no device
/// (a 10% canary of five devices and a 30% step both cover one device).
pub(crate) fn cut_cumulative(order: &[u32], percents: &[f64]) -> Vec<(f64, Vec<u32>)> {
    let mut waves = Vec::with_capacity(percents.len());
    let mut start = 0;
    for &p in percents {
        let end = share(order.len(), p);
        if end > start {
            waves.push((p, order[start..end].to_vec()));
            start = end;
        }
    }
    waves
}

/// Formats a percentage without a needless `.0`.
pub(crate) fn percent_label(p: f64) -> String {
    if p.fract() == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p}%")
    }
}
