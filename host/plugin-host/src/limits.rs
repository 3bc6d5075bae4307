//! The limits every plugin call runs under, and the store limiter that enforces the memory cap.

use std::time::Duration;

use hotswap_protocol::PluginLimitOverrides;
use serde::{Deserialize, Serialize};

use crate::PluginError;

/// Limits on plugins. Each has a default sized for a 100,000-device canary plan with room to
/// spare; the server's configuration (`[plugin-limits]` in `hotswap.toml`, the keys in
/// kebab-case) may lower or raise them, and `plugin check`, `simulate` and `replay` read the
/// same table with `--server-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Limits {
    /// The largest component accepted, in bytes.
    pub max_component_bytes: usize,
    /// Fuel (about one unit per WebAssembly instruction) for one call.
    pub fuel_per_call: u64,
    /// The most linear memory one plugin instance may have, in bytes.
    pub memory_bytes: usize,
    /// Wall-clock time one call may take.
    #[serde(with = "millis", rename = "deadline-ms")]
    pub deadline: Duration,
    /// The WebAssembly stack one call may use, in bytes.
    pub stack_bytes: usize,
    /// Log lines one call may write; the rest are counted and dropped.
    pub log_lines_per_call: u32,
    /// The longest log line kept, in bytes; longer ones are cut.
    pub log_line_bytes: usize,
    /// Plugin instances alive at once (the size of the instance pool).
    pub pool_instances: u32,
    /// Core instances one component may make: wit-component adds a few shims around a Rust
    /// guest's module; componentize-py's Python makes dozens.
    pub max_core_instances: u32,
    /// Linear memories one component may have.
    pub max_memories: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_component_bytes: 8 << 20,
            fuel_per_call: 2_000_000_000,
            memory_bytes: 128 << 20,
            deadline: Duration::from_secs(5),
            stack_bytes: 512 << 10,
            log_lines_per_call: 100,
            log_line_bytes: 1024,
            pool_instances: 64,
            max_core_instances: 16,
            max_memories: 2,
        }
    }
}

/// How often the runtime's clock advances the engine's epoch; deadlines are counted in ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

impl Limits {
    pub(crate) fn deadline_ticks(&self) -> u64 {
        (self.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }

    /// These limits (a server's `[plugin-limits]`) with those one plugin asked for at upload
    /// over them; each asked-for value must be at least 1 and at most `ceilings` (the server's
    /// `[plugin-ceilings]`).
    pub fn overridden(
        &self,
        asked: &PluginLimitOverrides,
        ceilings: &Limits,
    ) -> Result<Limits, PluginError> {
        let most = ceilings.as_overrides().keys();
        for ((key, value), (_, ceiling)) in asked.keys().into_iter().zip(most) {
            let (Some(value), Some(ceiling)) = (value, ceiling) else {
                continue;
            };
            if value == 0 || value > ceiling {
                return Err(PluginError::AboveCeiling {
                    key,
                    asked: value,
                    ceiling,
                });
            }
        }
        Ok(self.with(asked))
    }

    /// These limits with each key a plugin may ask for held to at most `ceilings`: what a stored
    /// grant runs under after the operator lowered a ceiling.
    pub fn capped(&self, ceilings: &Limits) -> Limits {
        Limits {
            max_component_bytes: self.max_component_bytes.min(ceilings.max_component_bytes),
            max_core_instances: self.max_core_instances.min(ceilings.max_core_instances),
            max_memories: self.max_memories.min(ceilings.max_memories),
            fuel_per_call: self.fuel_per_call.min(ceilings.fuel_per_call),
            memory_bytes: self.memory_bytes.min(ceilings.memory_bytes),
            deadline: self.deadline.min(ceilings.deadline),
            log_lines_per_call: self.log_lines_per_call.min(ceilings.log_lines_per_call),
            ..*self
        }
    }

    /// These limits with the keys `o` gives set to its values, unchecked.
    pub fn with(&self, o: &PluginLimitOverrides) -> Limits {
        let mut out = *self;
        out.max_component_bytes = o
            .max_component_bytes
            .map_or(out.max_component_bytes, |v| v as usize);
        out.max_core_instances = o.max_core_instances.unwrap_or(out.max_core_instances);
        out.max_memories = o.max_memories.unwrap_or(out.max_memories);
        out.fuel_per_call = o.fuel_per_call.unwrap_or(out.fuel_per_call);
        out.memory_bytes = o.memory_bytes.map_or(out.memory_bytes, |v| v as usize);
        out.deadline = o.deadline_ms.map_or(out.deadline, Duration::from_millis);
        out.log_lines_per_call = o.log_lines_per_call.unwrap_or(out.log_lines_per_call);
        out
    }

    /// Every key a plugin may ask for, with its value here.
    pub fn as_overrides(&self) -> PluginLimitOverrides {
        PluginLimitOverrides {
            max_component_bytes: Some(self.max_component_bytes as u64),
            max_core_instances: Some(self.max_core_instances),
            max_memories: Some(self.max_memories),
            fuel_per_call: Some(self.fuel_per_call),
            memory_bytes: Some(self.memory_bytes as u64),
            deadline_ms: Some(self.deadline.as_millis() as u64),
            log_lines_per_call: Some(self.log_lines_per_call),
        }
    }

    /// The first key whose value here is over `ceilings`: these limits do not fit an engine
    /// sized by them.
    pub fn first_above(&self, ceilings: &Limits) -> Option<(&'static str, u64, u64)> {
        let most = ceilings.as_overrides().keys();
        self.as_overrides()
            .keys()
            .into_iter()
            .zip(most)
            .find_map(|((k, v), (_, c))| Some((k, v?, c?)).filter(|(_, v, c)| v > c))
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// The error a store's limiter raises when a plugin grows its memory past the cap; the caller
/// finds it in the call's error to report the sizes.
#[derive(Debug, thiserror::Error)]
#[error("memory growth to {requested} bytes refused, the limit is {limit} bytes")]
pub(crate) struct MemoryCapExceeded {
    pub requested: usize,
    pub limit: usize,
}

/// Enforces the memory cap of one store.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryCapExceeded {
                requested: desired,
                limit: self.memory_bytes,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Rust guests keep small function tables; a table this large is an attack, not a plugin.
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_gets_what_it_asks_for_up_to_the_ceilings() {
        let defaults = Limits::default();
        let ceilings = Limits {
            fuel_per_call: 10_000_000_000,
            deadline: Duration::from_secs(20),
            ..defaults
        };
        let asked = PluginLimitOverrides {
            fuel_per_call: Some(8_000_000_000),
            deadline_ms: Some(1_000),
            ..Default::default()
        };
        let got = defaults.overridden(&asked, &ceilings).unwrap();
        assert_eq!(got.fuel_per_call, 8_000_000_000);
        assert_eq!(got.deadline, Duration::from_secs(1));
        assert_eq!(got.max_core_instances, defaults.max_core_instances);

        let greedy = PluginLimitOverrides {
            max_core_instances: Some(64),
            ..Default::default()
        };
        let err = defaults.overridden(&greedy, &ceilings).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`max-core-instances` 64 asked for this plugin: it must be at least 1 and at most 16, this server's [plugin-ceilings]"
        );
        let zero = PluginLimitOverrides {
            fuel_per_call: Some(0),
            ..Default::default()
        };
        assert!(defaults.overridden(&zero, &ceilings).is_err());
        assert_eq!(defaults.first_above(&ceilings), None);
        assert_eq!(
            ceilings.first_above(&defaults),
            Some(("fuel-per-call", 10_000_000_000, 2_000_000_000))
        );
    }
}
