//! The rollout floor: what the server does, whoever asked. Starting a deployment (its targets,
//! their compatibility, its plugins, its plan, the four-eyes rule), the operator's actions on
//! it, a device's standing in the fleet, and loading a stored plugin under its limits.
//!
//! **Architecture invariant:** nothing here knows HTTP. No axum, no status codes, no extractors:
//! the floor takes the protocol's types and returns them, or a [`RolloutError`] that says what
//! is wrong. `api/` parses a request, calls the floor and maps its answer to HTTP, once
//! (`impl From<RolloutError> for ApiError`); the orchestrator calls the same floor. A second
//! device protocol calls it the same way, without touching a handler. The test
//! `only_api_knows_http` keeps it so.
//!
//! - [`Rollout`]: the floor, over the store, the plugin sandbox, the doorbell, the metrics, the
//!   traces and the credential cache.
//! - [`start`](mod@start): [`Rollout::start`] and [`Rollout::plan`], one way to a deployment.
//! - [`actions`]: the table of the operator's transitions ([`actions::transition`]); approvals.
//! - [`standing`]: accepting, rejecting and decommissioning a device.
//! - [`plugins`]: a strategy or health policy by name, built-in or stored, under its limits.

pub mod actions;
pub mod plugins;
pub mod standing;
pub mod start;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use hotswap_plugin_host::{PluginError, PluginRuntime};
use hotswap_store::{Store, StoreError};

pub use start::{ONLINE_WITHIN_SECONDS, Started};

use crate::credentials::Credentials;
use crate::doorbell::Doorbell;
use crate::metrics::Metrics;
use crate::traces::Traces;

/// What the floor refuses, and why. Each variant is one kind of answer; `api/` maps them to HTTP
/// statuses in one place.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    /// The request asks for something that cannot be (a bad field, a target that does not fit).
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this, whatever its permissions (four eyes).
    #[error("{0}")]
    Forbidden(String),
    /// Not in a state this applies to.
    #[error("{0}")]
    Conflict(String),
    /// The health policy refused its configuration.
    #[error("invalid `healthConfig`: {0}")]
    HealthConfig(PluginError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// What the store holds no longer reads (a stored plugin's limits): the server's fault.
    #[error("{0}")]
    Corrupt(String),
}

/// The floor, shared by the API's handlers and the orchestrator. Cheap to clone.
#[derive(Clone)]
pub struct Rollout {
    pub store: Arc<Store>,
    pub runtime: PluginRuntime,
    /// Rung for the devices a change hands something to.
    pub doorbell: Arc<Doorbell>,
    pub metrics: Arc<Metrics>,
    pub traces: Traces,
    /// Forgotten for a device whose standing changes.
    pub credentials: Arc<Credentials>,
    /// Labels (`key`, `value`) whose devices a deployment reaches only after an approval.
    pub protected_labels: Arc<[(String, String)]>,
}
