//! Benchmarks that report figures for `BENCHMARKS.md`.
//!
//! - [`scale`]: `hotswap scale`, the fleet benchmark: a server process, N simulated devices
//!   here, every device updated end to end.
//! - [`otlp`]: an OTLP/HTTP receiver that counts the spans a server sends (`scale --tracing`),
//!   and that the tests read a deployment's trace from.

pub mod otlp;
pub mod scale;
