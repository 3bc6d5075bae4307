//! `GET /api/v1/audit`: the audit log, newest first, filtered by actor, action, object and
//! time, in pages. No route changes or removes an entry.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use hotswap_protocol::{AuditPage, AuditQuery};

use super::{ApiError, AppState, blocking};
use hotswap_protocol::routes;

#[utoipa::path(
    get,
    path = routes::AUDIT,
    operation_id = "listAudit",
    tag = "audit",
    summary = "The audit log, newest first",
    params(AuditQuery),
    responses(
        (status = 200, description = "One page", body = AuditPage),
    )
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    blocking(move || Ok(Json(state.store.audit(&q)?))).await
}
