//! The device protocol: what a device sends when it checks in and reports, and what it is told.
//!
//! - `POST /api/v1/devices/{id}/check-in` ([`CheckIn`], `?wait=S` a long poll, [`CheckInQuery`])
//!   is answered with a [`CheckInAnswer`]: the [`Assignment`] to work on, or none.
//! - `GET /api/v1/artifacts/{sha256}` the bytes, with HTTP Range.
//! - `POST /api/v1/devices/{id}/reports` ([`Report`]) and `.../reports/batch` ([`ReportBatch`],
//!   at most [`MAX_BATCH_REPORTS`]), each answered with [`ReportAnswer`]s.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::state::{AssignmentMode, DeviceState};

/// The longest a check-in may wait for an assignment (`?wait=`), in seconds.
pub const MAX_WAIT_SECONDS: u32 = 60;

/// The most reports one batch carries.
pub const MAX_BATCH_REPORTS: usize = 16;

/// What a device says at check-in.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CheckIn {
    /// The version its active slot runs.
    #[serde(default)]
    pub firmware_version: Option<String>,
    /// Its two slots as the device sees them.
    #[serde(default)]
    pub slots: Option<Vec<SlotInfo>>,
    #[serde(default)]
    pub health: Option<Health>,
}

/// One flash slot as the device sees it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlotInfo {
    pub slot: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub checksum: Option<String>,
    /// `active`, `inactive`, `trial`, `empty`, `invalid`.
    pub state: String,
}

/// A device's health since its last check-in.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    pub healthy: bool,
    #[serde(default = "yes")]
    pub self_test_passed: bool,
    #[serde(default)]
    pub traps: u32,
    #[serde(default)]
    pub fuel_exhausted: u32,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
}

fn yes() -> bool {
    true
}

/// The most metrics a health report keeps; a device sending more keeps the first, by name.
pub const MAX_HEALTH_METRICS: usize = 32;

/// The longest metric name a health report keeps, in bytes.
pub const HEALTH_METRIC_NAME_MAX_BYTES: usize = 64;

impl Health {
    /// The health as the server keeps it: at most [`MAX_HEALTH_METRICS`] metrics, each named
    /// in at most [`HEALTH_METRIC_NAME_MAX_BYTES`] and finite. It is copied into every decision
    /// of its wave, so a device cannot make those large; the rest is dropped, not refused, so
    /// the report it came with is not lost.
    pub fn bounded(mut self) -> Health {
        if self.metrics.len() > MAX_HEALTH_METRICS
            || self
                .metrics
                .iter()
                .any(|(k, v)| k.len() > HEALTH_METRIC_NAME_MAX_BYTES || !v.is_finite())
        {
            self.metrics = std::mem::take(&mut self.metrics)
                .into_iter()
                .filter(|(k, v)| k.len() <= HEALTH_METRIC_NAME_MAX_BYTES && v.is_finite())
                .take(MAX_HEALTH_METRICS)
                .collect();
        }
        self
    }
}

/// The query of a check-in.
#[derive(
    Debug, Clone, Copy, Default, Deserialize, Serialize, utoipa::ToSchema, utoipa::IntoParams,
)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CheckInQuery {
    /// Seconds to hold the check-in open until an assignment comes (long poll, at most
    /// [`MAX_WAIT_SECONDS`]); 0 answers at once.
    #[serde(default)]
    pub wait: u32,
}

/// The answer to a check-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckInAnswer {
    pub assignment: Option<Assignment>,
    /// How long to wait before the next check-in when not long-polling, in seconds.
    pub poll_seconds: u32,
}

/// What a device is asked to do, as its check-in answer carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Assignment {
    pub assignment_id: i64,
    pub deployment_id: i64,
    pub mode: AssignmentMode,
    pub version: String,
    pub size: u64,
    /// `sha256:<hex>`.
    pub checksum: String,
    pub security_counter: u32,
    pub key_id: String,
    pub signature: String,
    /// Where to download the bytes (HTTP Range supported).
    pub url: String,
    /// The state the server holds for this assignment; a device resuming after a restart starts
    /// from what it knows itself.
    pub state: DeviceState,
    pub attempt: u32,
    /// The W3C trace context of the wave this assignment belongs to, when the server records
    /// traces: the device sends it back with its reports, and what it did joins the
    /// deployment's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A state change a device reports.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Report {
    pub assignment_id: i64,
    pub state: DeviceState,
    #[serde(default)]
    pub reason: Option<String>,
    /// How the device is on the version it runs once the assignment ended: carried by a report
    /// that ends it (`confirmed`, `rolled-back`, `failed`), stored as a check-in's health is, so
    /// the device need not check in again just to send it.
    #[serde(default)]
    pub health: Option<Health>,
    /// The assignment's `traceparent`, sent back: the step this report ends becomes a span of
    /// the deployment's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// How long the step this report ends took on the device, in milliseconds: the download
    /// for `downloaded`, the verification for `installed`, the trial for the state a trial
    /// ended in. Measured by the device's own clock, so no clock need agree with the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took_ms: Option<u64>,
}

/// Reports that happened together, applied in order, all or none.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportBatch {
    pub reports: Vec<Report>,
}

/// What a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportAnswer {
    /// False when the report was already known (a retry) or came too late to matter.
    pub applied: bool,
    /// The assignment's state after the report. `cancelled` tells the device its assignment
    /// was called off (the deployment was cancelled or is rolling back): it stops the job and
    /// does not activate what it downloaded.
    pub state: DeviceState,
}
