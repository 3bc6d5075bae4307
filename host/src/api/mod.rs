//! The HTTP API (axum on hyper): operators' `/api/v1/...` endpoints, `/healthz`. Every error is
//! JSON, `{"error": {"status": 400, "message": "..."}}`, with a message that says what is wrong;
//! request bodies are capped at [`ServerLimits::max_body_bytes`].

mod artifacts;
mod deployments;
mod devices;
mod firmware;
mod groups;
mod metrics;
mod plugins;
mod protocol;

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hotswap_device_vm::slots::TrustedKey;
use serde::de::DeserializeOwned;
use serde_json::json;

pub use metrics::Metrics;

use crate::plugin::PluginRuntime;
use crate::store::{Store, StoreError};

/// Limits on what clients may send.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// The largest request body, in bytes (a firmware upload in base64 included).
    pub max_body_bytes: usize,
    /// The largest firmware binary, in bytes.
    pub max_firmware_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 4 << 20,
            max_firmware_bytes: 1 << 20,
        }
    }
}

/// What every handler shares.
pub struct AppState {
    pub store: Store,
    pub runtime: PluginRuntime,
    /// Release keys whose signatures firmware must carry.
    pub trusted_keys: Vec<TrustedKey>,
    pub limits: ServerLimits,
    pub metrics: Metrics,
    /// How often the orchestrator advances the deployments.
    pub tick: std::time::Duration,
    /// Artifacts served from memory.
    pub artifacts: artifacts::Artifacts,
}

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics::scrape))
        .route(
            "/api/v1/firmware",
            post(firmware::register).get(firmware::list),
        )
        .route("/api/v1/firmware/{id}", get(firmware::get))
        .route("/api/v1/firmware/{id}/deprecate", post(firmware::deprecate))
        .route(
            "/api/v1/devices",
            post(devices::register).get(devices::list),
        )
        .route("/api/v1/devices/batch", post(devices::register_batch))
        .route("/api/v1/devices/{id}", get(devices::get))
        .route(
            "/api/v1/device-groups",
            post(groups::create).get(groups::list),
        )
        .route("/api/v1/device-groups/{name}", get(groups::get))
        .route("/api/v1/plugins", post(plugins::upload).get(plugins::list))
        .route(
            "/api/v1/deployments",
            post(deployments::create).get(deployments::list),
        )
        .route("/api/v1/deployments/{id}", get(deployments::status))
        .route("/api/v1/deployments/{id}/status", get(deployments::status))
        .route(
            "/api/v1/deployments/{id}/decisions",
            get(deployments::decisions),
        )
        .route("/api/v1/deployments/{id}/{action}", post(deployments::act))
        .route("/api/v1/devices/{id}/check-in", post(protocol::check_in))
        .route("/api/v1/devices/{id}/reports", post(protocol::report))
        .route(
            "/api/v1/devices/{id}/reports/batch",
            post(protocol::report_batch),
        )
        .route("/api/v1/artifacts/{sha256}", get(artifacts::artifact))
        .route(
            "/api/v1/plugins/{name}/{version}",
            axum::routing::delete(plugins::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// The same error, its message led by `prefix` (where in a batch it happened).
    pub fn prefixed(self, prefix: &str) -> Self {
        ApiError {
            status: self.status,
            message: format!("{prefix}: {}", self.message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"status": self.status.as_u16(), "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let status = match err {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Unavailable(_) => {
                tracing::error!(error = %err, "store unavailable");
                StatusCode::SERVICE_UNAVAILABLE
            }
            StoreError::Sqlite(_) | StoreError::Io { .. } => {
                tracing::error!(error = %err, "store failure");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError::new(status, err.to_string())
    }
}

/// Runs store work that syncs to disk on the blocking pool, off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// A JSON body whose rejections (malformed JSON, unknown fields, wrong types, too large) are
/// answered as [`ApiError`]s.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(match &rejection {
                JsonRejection::BytesRejection(_) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over the limit: {}", rejection.body_text()),
                ),
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "expected a JSON body (Content-Type: application/json)",
                ),
                _ => ApiError::bad_request(rejection.body_text()),
            }),
        }
    }
}
