//! The device protocol. Devices poll:
//!
//! - `POST /api/v1/devices/{id}/check-in` with what they run, their slots and their health; the
//!   answer carries the assignment to work on (deployment, version, size, checksum, security
//!   counter, signature, download URL, mode) or none, and when to check in again.
//! - `GET /api/v1/artifacts/{sha256}` the bytes, with HTTP Range, so a broken download resumes
//!   where it stopped (`artifacts.rs`).
//! - `POST /api/v1/devices/{id}/reports` each state change of the assignment (downloading,
//!   downloaded, verifying, installed, trial, confirmed, rolled-back, failed with a reason).
//!   Reports are idempotent: one the assignment has already gone past changes nothing.
//!   `POST /api/v1/devices/{id}/reports/batch` takes `{"reports": [...]}` (at most
//!   [`MAX_BATCH_REPORTS`]): state changes that happened together (downloaded, verifying,
//!   installed) in one round trip, applied in order, all or none.
//!
//! Check-ins and reports go through the store's batched writer: each is on disk before it is
//! answered, and concurrent ones share a sync.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::{ApiError, AppState, Body};
use crate::store::{Assignment, CheckIn, Report, ReportAnswer};

/// How long a device waits between check-ins while it has nothing to do, in seconds.
pub const POLL_SECONDS: u32 = 30;

/// The most reports one batch carries.
pub const MAX_BATCH_REPORTS: usize = 16;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    reports: Vec<Report>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckInAnswer {
    assignment: Option<Assignment>,
    poll_seconds: u32,
}

pub async fn check_in(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    Body(c): Body<CheckIn>,
) -> Result<Json<CheckInAnswer>, ApiError> {
    let assignment = state.store.check_in(device_id, c).await?;
    state.metrics.check_in();
    Ok(Json(CheckInAnswer {
        assignment,
        poll_seconds: POLL_SECONDS,
    }))
}

pub async fn report(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    Body(r): Body<Report>,
) -> Result<Json<ReportAnswer>, ApiError> {
    let reported = r.state;
    let answer = state.store.report(device_id, r).await?;
    if answer.applied {
        state.metrics.report(reported.as_str());
    }
    Ok(Json(answer))
}

pub async fn report_batch(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    Body(batch): Body<Batch>,
) -> Result<Json<Vec<ReportAnswer>>, ApiError> {
    if batch.reports.is_empty() || batch.reports.len() > MAX_BATCH_REPORTS {
        return Err(ApiError::bad_request(format!(
            "a batch carries 1 to {MAX_BATCH_REPORTS} reports, found {}",
            batch.reports.len()
        )));
    }
    let states: Vec<&'static str> = batch.reports.iter().map(|r| r.state.as_str()).collect();
    let answers = state.store.reports(device_id, batch.reports).await?;
    for (answer, reported) in answers.iter().zip(states) {
        if answer.applied {
            state.metrics.report(reported);
        }
    }
    Ok(Json(answers))
}
