//! The device protocol. Devices poll:
//!
//! - `POST /api/v1/devices/{id}/check-in` with what they run, their slots and their health; the
//!   answer carries the assignment to work on (deployment, version, size, checksum, security
//!   counter, signature, download URL, mode) or none, and when to check in again. With
//!   `?wait=S` it is a long poll: held open until an assignment comes, at most `S` seconds.
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

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use hotswap_protocol::device_protocol::{MAX_BATCH_REPORTS, MAX_WAIT_SECONDS};
use hotswap_protocol::{
    CheckIn, CheckInAnswer, CheckInQuery, Health, Report, ReportAnswer, ReportBatch,
};

use super::{ApiError, AppState, Body};
use hotswap_protocol::ErrorBody;
use hotswap_protocol::routes;

/// How long a device waits between check-ins while it has nothing to do, in seconds.
pub const POLL_SECONDS: u32 = 30;

/// A check-in. With `?wait=S` (at most [`MAX_WAIT_SECONDS`]) and nothing to do, the answer
/// waits until the device is handed an assignment (the store's doorbell rings for it) or `S`
/// seconds pass, so a waiting fleet costs no polls and learns of its wave at once. The check-in
/// itself (what the device runs, its slots and health) is written before the wait.
#[utoipa::path(
    post,
    path = routes::CHECK_IN,
    operation_id = "checkIn",
    tag = "device-protocol",
    summary = "A device checks in; with wait, a long poll",
    request_body = CheckIn,
    params(("id" = String, Path, description = "The device id"), CheckInQuery),
    responses(
        (status = 200, description = "What to do next", body = CheckInAnswer),
        (status = 404, description = "No such device", body = ErrorBody),
    )
)]
pub async fn check_in(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    query: Result<Query<CheckInQuery>, QueryRejection>,
    Body(mut c): Body<CheckIn>,
) -> Result<Json<CheckInAnswer>, ApiError> {
    c.health = c.health.map(Health::bounded);
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if q.wait > MAX_WAIT_SECONDS {
        return Err(ApiError::bad_request(format!(
            "`wait` is at most {MAX_WAIT_SECONDS} seconds, found {}",
            q.wait
        )));
    }
    let store = &state.store;
    let doorbell = &state.doorbell;
    // No wait when the server is shutting down or too many devices wait already: the device is
    // answered at once and polls.
    let listener = if q.wait > 0 {
        doorbell.listen(&device_id)
    } else {
        None
    };
    // Listening before the first look: a ring between the look and the wait is not lost.
    let mut rung = listener.as_ref().map(|l| Box::pin(l.notified()));
    if let Some(r) = rung.as_mut() {
        r.as_mut().enable();
    }
    let mut assignment = store.check_in(device_id.clone(), c).await?;
    state.metrics.check_in();
    if let (Some(listener), Some(mut rung)) = (&listener, rung) {
        let until = tokio::time::Instant::now() + Duration::from_secs(u64::from(q.wait));
        while assignment.is_none() && !doorbell.is_closed() {
            if tokio::time::timeout_at(until, rung.as_mut()).await.is_err() {
                break;
            }
            rung = Box::pin(listener.notified());
            rung.as_mut().enable();
            assignment = store.assignment(device_id.clone()).await?;
        }
    }
    if let Some(a) = &assignment {
        state.credentials.grant(&device_id, a);
    }
    Ok(Json(CheckInAnswer {
        assignment,
        poll_seconds: POLL_SECONDS,
    }))
}

#[utoipa::path(
    post,
    path = routes::REPORTS,
    operation_id = "report",
    tag = "device-protocol",
    summary = "A device reports an assignment's progress",
    request_body = Report,
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "Taken", body = ReportAnswer),
        (status = 404, description = "No such assignment", body = ErrorBody),
        (status = 409, description = "The report does not fit the assignment", body = ErrorBody),
    )
)]
pub async fn report(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    Body(mut r): Body<Report>,
) -> Result<Json<ReportAnswer>, ApiError> {
    r.health = r.health.map(Health::bounded);
    let reported = r.state;
    let traced = (state.traces.on() && r.traceparent.is_some()).then(|| r.clone());
    let answer = state.store.report(device_id.clone(), r).await?;
    if let Some(r) = traced {
        state.traces.device_reports(&device_id, &[r], &[answer]);
    }
    if answer.applied {
        state.metrics.report(reported.into());
    }
    if ended(answer.state) {
        state.credentials.withdraw(&device_id);
    }
    Ok(Json(answer))
}

#[utoipa::path(
    post,
    path = routes::REPORTS_BATCH,
    operation_id = "reportBatch",
    tag = "device-protocol",
    summary = "Several reports in one request, in order",
    request_body = ReportBatch,
    params(("id" = String, Path, description = "The device id")),
    responses(
        (status = 200, description = "Taken", body = Vec<ReportAnswer>),
        (status = 404, description = "No such assignment", body = ErrorBody),
        (status = 409, description = "A report does not fit the assignment", body = ErrorBody),
    )
)]
pub async fn report_batch(
    State(state): State<Arc<AppState>>,
    Path(device_id): Path<String>,
    Body(mut batch): Body<ReportBatch>,
) -> Result<Json<Vec<ReportAnswer>>, ApiError> {
    for r in &mut batch.reports {
        r.health = r.health.take().map(Health::bounded);
    }
    if batch.reports.is_empty() || batch.reports.len() > MAX_BATCH_REPORTS {
        return Err(ApiError::bad_request(format!(
            "a batch carries 1 to {MAX_BATCH_REPORTS} reports, found {}",
            batch.reports.len()
        )));
    }
    let states: Vec<&'static str> = batch.reports.iter().map(|r| r.state.into()).collect();
    let traced = (state.traces.on() && batch.reports.iter().any(|r| r.traceparent.is_some()))
        .then(|| batch.reports.clone());
    let answers = state
        .store
        .reports(device_id.clone(), batch.reports)
        .await?;
    if let Some(reports) = traced {
        state.traces.device_reports(&device_id, &reports, &answers);
    }
    if answers.last().is_some_and(|a| ended(a.state)) {
        state.credentials.withdraw(&device_id);
    }
    for (answer, reported) in answers.iter().zip(states) {
        if answer.applied {
            state.metrics.report(reported);
        }
    }
    Ok(Json(answers))
}

/// Whether an assignment in `state` is over for the device: it downloads nothing more for it.
fn ended(state: hotswap_protocol::DeviceState) -> bool {
    use hotswap_protocol::DeviceState::*;
    matches!(state, Confirmed | RolledBack | Failed | Cancelled)
}
