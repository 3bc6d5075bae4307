//! `GET /metrics` (the server's [`Metrics`](crate::metrics::Metrics) as OpenMetrics text),
//! `GET /healthz`, and the route layer that counts every answered request.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use hotswap_protocol::routes;

/// Counts every answered request of a matched route.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |p| p.as_str().to_string());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    state.metrics.request_answered(
        method,
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// What `GET /healthz` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok`: an answer at all says the server is up.
    pub status: &'static str,
}

#[utoipa::path(
    get,
    path = routes::HEALTHZ,
    operation_id = "healthz",
    tag = "system",
    summary = "Liveness",
    responses(
        (status = 200, description = "The server is up", body = Liveness),
    )
)]
pub async fn healthz() -> axum::Json<Liveness> {
    axum::Json(Liveness { status: "ok" })
}

#[utoipa::path(
    get,
    path = routes::METRICS,
    operation_id = "metrics",
    tag = "system",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    )
)]
pub async fn scrape(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let reading = state.clone();
    super::blocking(move || Ok(reading.metrics.read_store(&reading.store)?)).await?;
    let text = state.metrics.encode().map_err(ApiError::internal)?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
