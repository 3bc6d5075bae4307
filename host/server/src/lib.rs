//! The HotSwap server: the HTTP API (operators' endpoints and the device protocol), the
//! orchestrator that runs deployments wave by wave, the doorbell that wakes long-polling
//! devices, and the configuration that puts them together.
//!
//! It holds no state of its own that matters: the store is the truth, so a server killed at any
//! instant restarts where it stopped. A 500 answer carries an error id, never a database's or a
//! file system's message; the detail is in the log under that id.
//!
//! - [`rollout`]: [`Rollout`], the floor under the API and the orchestrator: starting a
//!   deployment, the operator's actions, a device's standing, loading a stored plugin.
//! - [`orchestrator`]: [`Orchestrator`], over the rollout floor: runs deployments wave by wave.
//! - [`api`]: the axum router, [`AppState`], [`ApiError`]: each handler parses, calls a floor,
//!   answers; the middleware that holds each request to its route's [`Rule`]
//!   ([`api::auth`]); the dashboard's page and assets ([`api::dashboard`]).
//! - [`credentials`]: who a credential names ([`Principal`]), secrets kept as digests, the
//!   cache of credentials looked up, rate limits per caller.
//! - [`refusals`]: credentials refused to anonymous callers, counted for the audit log.
//! - [`metrics`]: [`Metrics`], the Prometheus registry every floor counts into.
//! - [`doorbell`]: [`Doorbell`], per-device wake-ups for long-poll check-ins.
//! - [`traces`]: [`Traces`], OpenTelemetry spans over OTLP: every request, and each deployment
//!   as one trace down to its devices' steps.
//! - [`sessions`]: the dashboard's signed sessions.
//! - [`config`]: [`ServerConfig`] and [`ServerLimits`], `hotswap serve`'s flags, environment
//!   and file.
//! - [`serve`](mod@serve): [`state`] and [`serve()`], running it all on one listener.
//!
//! **Architecture invariant:** only `api/` knows HTTP, and [`serve()`], which runs its router.
//! No other module names axum or a status code, and none imports from `api`; the test
//! `only_api_knows_http` (in `layering.rs`) keeps it so.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod credentials;
pub mod doorbell;
pub mod metrics;
pub mod orchestrator;
pub mod refusals;
pub mod rollout;
pub mod serve;
pub mod sessions;
pub mod traces;

#[cfg(test)]
mod layering;

pub use api::auth::Rule;
pub use api::{ApiError, AppState, ROUTES, Route, router};
pub use config::{
    EnrollmentConfig, FileConfig, Overrides, ServerConfig, ServerLimits, TlsFiles,
    parse_trusted_key, resolve, tls_config,
};
pub use credentials::{ADMIN_TOKEN_FILE, Principal};
pub use doorbell::{Doorbell, MAX_WAITING_DEVICES};
pub use metrics::Metrics;
pub use orchestrator::{DEFAULT_TICK, Orchestrator};
pub use rollout::{Rollout, RolloutError};
pub use serve::{serve, serve_on, state, state_with_store};
pub use traces::Traces;
