//! The HotSwap server: the HTTP API (operators' endpoints and the device protocol), the
//! orchestrator that runs deployments wave by wave, the doorbell that wakes long-polling
//! devices, and the configuration that puts them together.
//!
//! It holds no state of its own that matters: the store is the truth, so a server killed at any
//! instant restarts where it stopped. A 500 answer carries an error id, never a database's or a
//! file system's message; the detail is in the log under that id.
//!
//! - [`api`]: the axum router, [`AppState`], [`ApiError`].
//! - [`orchestrator`]: [`Orchestrator`], given the store, the plugin runtime and the doorbell.
//! - [`auth`]: who is calling and whether they may: the rule of each route, API and device
//!   tokens, the audit log, the first start's administrator token.
//! - [`doorbell`]: [`Doorbell`], per-device wake-ups for long-poll check-ins.
//! - [`config`]: [`ServerConfig`], `hotswap serve`'s flags, environment and file.
//! - [`dashboard`]: the web dashboard at `/`, compiled into the binary.
//! - [`traces`]: [`Traces`], OpenTelemetry spans over OTLP: every request, and each deployment
//!   as one trace down to its devices' steps.
//! - [`serve`](mod@serve): [`state`] and [`serve()`], running it all on one listener.

#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod config;
pub mod dashboard;
pub mod doorbell;
pub mod orchestrator;
pub mod serve;
pub mod sessions;
pub mod traces;

pub use api::{ApiError, AppState, ROUTES, Route, ServerLimits, router};
pub use auth::{ADMIN_TOKEN_FILE, Principal, Rule};
pub use config::{
    EnrollmentConfig, FileConfig, Overrides, ServerConfig, TlsFiles, parse_trusted_key, resolve,
    tls_config,
};
pub use doorbell::{Doorbell, MAX_WAITING_DEVICES};
pub use orchestrator::{DEFAULT_TICK, Orchestrator};
pub use serve::{serve, serve_on, state, state_with_store};
pub use traces::Traces;
