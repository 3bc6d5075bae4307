//! The limits every plugin call runs under, and the store limiter that enforces the memory cap.

use std::time::Duration;

use serde::{Deserialize, Serialize};

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
