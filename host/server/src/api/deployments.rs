//! `/api/v1/deployments`: start one (or plan it, `?dryRun=true`), its status, the decision
//! log, and the operator's actions. Each handler parses, calls the [rollout floor](crate::rollout)
//! and answers.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use hotswap_protocol::deployments::MAX_DECISIONS;
use hotswap_protocol::{
    ApprovalRequest, Decision, DecisionsQuery, Deployment, DeploymentAction, DeploymentRequest,
    DeploymentStatus, DryRun, ErrorBody, routes,
};
use serde::Deserialize;
use serde_json::Value;

use super::{ApiError, AppState, Body, blocking};
use crate::credentials::Principal;
use crate::rollout::actions::Approval;

/// `POST /api/v1/deployments`'s query.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DryRunQuery {
    /// Plan the rollout and answer with its waves; start nothing.
    #[serde(default)]
    dry_run: bool,
}

#[utoipa::path(
    post,
    path = routes::DEPLOYMENTS,
    operation_id = "createDeployment",
    tag = "deployments",
    summary = "Start a deployment, or plan one with dryRun=true",
    request_body = DeploymentRequest,
    params(DryRunQuery),
    responses(
        (status = 201, description = "Started", body = DeploymentStatus),
        (status = 200, description = "The plan of a dry run; nothing started", body = DryRun),
        (status = 404, description = "Unknown firmware, group, strategy or policy", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    params: Result<Query<DryRunQuery>, QueryRejection>,
    Body(request): Body<DeploymentRequest>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Query(params) = params.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if params.dry_run {
        let dry_run = blocking(move || Ok(state.rollout.plan(request)?)).await?;
        return Ok((StatusCode::OK, Json(to_json(dry_run)?)));
    }
    // The request's trace becomes the deployment's (taken here: the blocking pool's thread is
    // outside the request's span).
    let trace = state.traces.current();
    let started = blocking(move || Ok(state.rollout.start(request, &by.actor(), trace)?)).await?;
    Ok((StatusCode::CREATED, Json(to_json(started)?)))
}

fn to_json(value: impl serde::Serialize) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

/// `GET /api/v1/deployments`: the newest first.
#[utoipa::path(
    get,
    path = routes::DEPLOYMENTS,
    operation_id = "listDeployments",
    tag = "deployments",
    summary = "The newest deployments first",
    responses(
        (status = 200, description = "The deployments", body = Vec<Deployment>),
    )
)]
pub async fn list(State(state): State<Arc<AppState>>) -> Result<Json<Vec<Deployment>>, ApiError> {
    blocking(move || Ok(Json(state.store.list_deployments(1000)?))).await
}

fn id(raw: &str) -> Result<i64, ApiError> {
    super::path_id("deployment", raw)
}

/// `GET /api/v1/deployments/{id}` and `.../status`: state, waves with their counts by device
/// state, recent events and decisions.
#[utoipa::path(
    get,
    path = routes::DEPLOYMENT,
    operation_id = "getDeployment",
    tag = "deployments",
    summary = "A deployment, wave by wave",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Its status", body = DeploymentStatus),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    let id = id(&raw)?;
    blocking(move || Ok(Json(state.store.deployment_status(id)?))).await
}

/// `GET /api/v1/deployments/{id}/status`: the same as `GET /api/v1/deployments/{id}`.
#[utoipa::path(
    get,
    path = routes::DEPLOYMENT_STATUS,
    operation_id = "getDeploymentStatus",
    tag = "deployments",
    summary = "The same as GET /api/v1/deployments/{id}",
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Its status", body = DeploymentStatus),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub async fn status(
    state: State<Arc<AppState>>,
    raw: Path<String>,
) -> Result<Json<DeploymentStatus>, ApiError> {
    get(state, raw).await
}

/// `GET /api/v1/deployments/{id}/decisions[?limit=N&samples=false]`: the health policy's
/// newest verdicts with what it was shown, oldest first, for replay.
#[utoipa::path(
    get,
    path = routes::DEPLOYMENT_DECISIONS,
    operation_id = "getDecisions",
    tag = "deployments",
    summary = "The health policy's verdicts with what it was shown",
    params(("id" = String, Path, description = "The deployment id (a number)"), DecisionsQuery),
    responses(
        (status = 200, description = "Oldest first", body = Vec<Decision>),
        (status = 404, description = "No such deployment", body = ErrorBody),
    )
)]
pub async fn decisions(
    State(state): State<Arc<AppState>>,
    Path(raw): Path<String>,
    query: Result<Query<DecisionsQuery>, QueryRejection>,
) -> Result<Json<Vec<Decision>>, ApiError> {
    let id = id(&raw)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if !(1..=MAX_DECISIONS).contains(&q.limit) {
        return Err(ApiError::bad_request(format!(
            "`limit` is 1 to {MAX_DECISIONS}, found {}",
            q.limit
        )));
    }
    blocking(move || {
        state.store.deployment(id)?;
        Ok(Json(state.store.decisions(id, q.limit, q.samples)?))
    })
    .await
}

/// Declares one handler per operator action, each with its own OpenAPI operation, from one
/// line each: the action, its path, its operation id and its summary.
macro_rules! actions {
    ($($(#[$doc:meta])* $handler:ident: $action:expr, $path:expr, $operation:literal, $summary:literal;)*) => {$(
        $(#[$doc])*
        #[utoipa::path(
            post,
            path = $path,
            operation_id = $operation,
            tag = "deployments",
            summary = $summary,
            params(("id" = String, Path, description = "The deployment id (a number)")),
            responses(
                (status = 200, description = "Done", body = Deployment),
                (status = 404, description = "No such deployment", body = ErrorBody),
                (status = 409, description = "Not in a state this applies to", body = ErrorBody),
            )
        )]
        pub async fn $handler(
            State(state): State<Arc<AppState>>,
            Path(raw): Path<String>,
        ) -> Result<Json<Deployment>, ApiError> {
            let id = id(&raw)?;
            Ok(Json(blocking(move || Ok(state.rollout.act(id, $action)?)).await?))
        }
    )*};
}

actions! {
    /// `POST /api/v1/deployments/{id}/pause`: a running deployment hands out nothing more.
    pause: DeploymentAction::Pause, routes::DEPLOYMENT_PAUSE, "pauseDeployment",
        "Pause a running deployment";
    /// `POST /api/v1/deployments/{id}/resume`.
    resume: DeploymentAction::Resume, routes::DEPLOYMENT_RESUME, "resumeDeployment",
        "Resume a paused deployment";
    /// `POST /api/v1/deployments/{id}/cancel`: devices not yet updated are left as they are.
    cancel: DeploymentAction::Cancel, routes::DEPLOYMENT_CANCEL, "cancelDeployment",
        "Cancel a deployment";
    /// `POST /api/v1/deployments/{id}/rollback`: every device the deployment updated is sent
    /// back.
    rollback: DeploymentAction::Rollback, routes::DEPLOYMENT_ROLLBACK, "rollbackDeployment",
        "Send every updated device back";
}

/// `POST /api/v1/deployments/{id}/approve`: a deployment waiting for an approval starts. Four
/// eyes: never by the credential that created it.
#[utoipa::path(
    post,
    path = routes::DEPLOYMENT_APPROVE,
    operation_id = "approveDeployment",
    tag = "deployments",
    summary = "Approve a deployment (not by its creator)",
    request_body = ApprovalRequest,
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not waiting for an approval", body = ErrorBody),
    )
)]
pub async fn approve(
    state: State<Arc<AppState>>,
    by: Extension<Principal>,
    raw: Path<String>,
    body: Body<ApprovalRequest>,
) -> Result<Json<Deployment>, ApiError> {
    decide(state, by, raw, body, Approval::Approve).await
}

/// `POST /api/v1/deployments/{id}/deny`: a deployment waiting for an approval ends, cancelled.
#[utoipa::path(
    post,
    path = routes::DEPLOYMENT_DENY,
    operation_id = "denyDeployment",
    tag = "deployments",
    summary = "Deny a deployment; it is cancelled",
    request_body = ApprovalRequest,
    params(("id" = String, Path, description = "The deployment id (a number)")),
    responses(
        (status = 200, description = "Done", body = Deployment),
        (status = 404, description = "No such deployment", body = ErrorBody),
        (status = 409, description = "Not waiting for an approval", body = ErrorBody),
    )
)]
pub async fn deny(
    state: State<Arc<AppState>>,
    by: Extension<Principal>,
    raw: Path<String>,
    body: Body<ApprovalRequest>,
) -> Result<Json<Deployment>, ApiError> {
    decide(state, by, raw, body, Approval::Deny).await
}

async fn decide(
    State(state): State<Arc<AppState>>,
    Extension(by): Extension<Principal>,
    Path(raw): Path<String>,
    Body(r): Body<ApprovalRequest>,
    approval: Approval,
) -> Result<Json<Deployment>, ApiError> {
    let id = id(&raw)?;
    let decided = blocking(move || {
        Ok(state
            .rollout
            .decide_approval(id, &by.actor(), approval, &r.remark)?)
    })
    .await?;
    Ok(Json(decided))
}
