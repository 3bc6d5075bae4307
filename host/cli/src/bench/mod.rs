//! Benchmarks that report figures for `BENCHMARKS.md`.
//!
//! - [`scale`]: `hotswap scale`, the fleet benchmark: a server process, N simulated devices
//!   here, every device updated end to end.
//! - [`readers`]: `hotswap readers-bench`, expensive reads from one operator against the
//!   latency of everyone else's, with one read connection and no cap, and as served.
//! - [`otlp`]: an OTLP/HTTP receiver that counts the spans a server sends (`scale --tracing`),
//!   and that the tests read a deployment's trace from.

pub mod otlp;
pub mod readers;
pub mod scale;
