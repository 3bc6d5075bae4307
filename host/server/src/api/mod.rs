//! The HTTP API (axum on hyper): operators' `/api/v1/...` endpoints, the device protocol,
//! `/metrics`, `/healthz`. Every error is JSON, `{"error": {"status": 400, "message": "..."}}`
//! ([`hotswap_protocol::ErrorBody`]), with a message that says what is wrong; request bodies are
//! capped at [`ServerLimits::max_body_bytes`](crate::config::ServerLimits::max_body_bytes). Every handler that touches SQLite does so on the
//! blocking pool ([`blocking`]) or through the store's batched writer, never on an async worker.

mod artifacts;
mod audit;
pub mod auth;
pub mod dashboard;
mod deployments;
mod devices;
mod enroll;
mod firmware;
mod groups;
mod metrics;
pub mod openapi;
mod plugins;
mod protocol;
mod spans;
mod tokens;
mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Request};
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use axum::{Json, Router};
use hotswap_device_vm::slots::TrustedKey;
use hotswap_plugin_host::{PluginError, PluginRuntime};
use hotswap_protocol::{ErrorBody, ErrorDetail, routes};
use hotswap_store::{Store, StoreError};
use serde::de::DeserializeOwned;

pub use devices::{MAX_BATCH, MAX_PAGE};
pub use protocol::POLL_SECONDS;

use crate::config::ServerLimits;
use crate::credentials::{Credentials, NoRandomness};
use crate::doorbell::Doorbell;
use crate::metrics::Metrics;
use crate::rollout::{Rollout, RolloutError};
use auth::Rule;
use hotswap_protocol::Permission::*;

/// What every handler shares.
pub struct AppState {
    /// The rollout floor the handlers call: deployments, operator actions, device standing.
    pub rollout: Rollout,
    pub store: Arc<Store>,
    /// Devices waiting in long-poll check-ins, woken when the store hands them something.
    pub doorbell: Arc<Doorbell>,
    pub runtime: PluginRuntime,
    /// Release keys whose signatures firmware must carry.
    pub trusted_keys: Vec<TrustedKey>,
    pub limits: ServerLimits,
    pub metrics: Arc<Metrics>,
    /// How often the orchestrator advances the deployments.
    pub tick: std::time::Duration,
    /// Artifacts served from memory.
    pub artifacts: artifacts::Artifacts,
    /// Credentials already checked.
    pub credentials: Arc<Credentials>,
    /// Where the first start wrote the administrator token, when this start made one.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Requests per operator token and per device, and per address without a credential.
    pub rate_limits: crate::credentials::RateLimits,
    /// Each operator's requests in flight, held to `MAX_IN_FLIGHT_PER_OPERATOR`.
    pub in_flight: crate::credentials::InFlight,
    /// Credentials refused to anonymous callers, counted for the audit log.
    pub refusals: crate::refusals::Refusals,
    /// Password hashes checked at once: one per core, so sign-ins cannot take every thread.
    pub password_checks: tokio::sync::Semaphore,
    /// Signs and checks the sessions sign-ins give.
    pub sessions: crate::sessions::Sessions,
    /// How devices may enroll themselves; `None`: they cannot.
    pub enrollment: Option<crate::config::EnrollmentConfig>,
    /// The device routes take no credential (the scale benchmark's figure without
    /// authentication; loopback only).
    pub unchecked_devices: bool,
    /// Where spans go (off unless an OTLP endpoint is configured).
    pub traces: crate::traces::Traces,
}

/// One route of the API and who may call it.
#[derive(Debug, Clone)]
pub struct Route {
    pub method: Method,
    /// axum's template, `/api/v1/devices/{id}`.
    pub path: &'static str,
    pub rule: Rule,
}

/// Declares the routes once: the table of rules ([`ROUTES`]) and the router are made from the
/// same lines, so no route can exist without a rule.
macro_rules! routes {
    ($($method:ident $path:expr => $handler:expr, $rule:expr;)*) => {
        /// Every route of the API with who may call it.
        pub const ROUTES: &[Route] = &[
            $(Route { method: Method::$method, path: $path, rule: $rule },)*
        ];

        fn with_routes(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
            router $(.route($path, on(MethodFilter::$method, $handler)))*
        }
    };
}

routes! {
    GET routes::HEALTHZ => metrics::healthz, Rule::Open;
    GET routes::METRICS => metrics::scrape, Rule::Operator(Read);
    GET routes::OPENAPI => openapi::openapi, Rule::Open;
    POST routes::FIRMWARE => firmware::register, Rule::Operator(Release);
    GET routes::FIRMWARE => firmware::list, Rule::Operator(Read);
    GET routes::FIRMWARE_VERSION => firmware::get, Rule::Operator(Read);
    POST routes::FIRMWARE_DEPRECATE => firmware::deprecate, Rule::Operator(Release);
    POST routes::FIRMWARE_SUNSET => firmware::sunset, Rule::Operator(Release);
    POST routes::DEVICES => devices::register, Rule::Operator(ManageDevices);
    GET routes::FLEET => devices::summary, Rule::Operator(Read);
    GET routes::DEVICES => devices::list, Rule::Operator(Read);
    POST routes::DEVICES_BATCH => devices::register_batch, Rule::Operator(ManageDevices);
    GET routes::DEVICE => devices::get, Rule::Operator(Read);
    GET routes::DEVICE_LINEAGE => devices::lineage, Rule::Operator(Read);
    POST routes::DEVICE_ACCEPT => enroll::accept, Rule::Operator(ManageDevices);
    POST routes::DEVICE_REJECT => enroll::reject, Rule::Operator(ManageDevices);
    POST routes::DEVICE_DECOMMISSION => enroll::decommission, Rule::Operator(ManageDevices);
    POST routes::ENROLL => enroll::enroll, Rule::Enroll;
    POST routes::ENROLL_TOKEN => enroll::claim_token, Rule::Enroll;
    POST routes::GROUPS => groups::create, Rule::Operator(ManageDevices);
    GET routes::GROUPS => groups::list, Rule::Operator(Read);
    GET routes::GROUP => groups::get, Rule::Operator(Read);
    // A component may be larger than other bodies: the upload reads it under the plugin
    // runtime's own `max-component-bytes`.
    POST routes::PLUGINS => axum::handler::Handler::layer(plugins::upload, DefaultBodyLimit::disable()), Rule::Operator(Release);
    GET routes::PLUGINS => plugins::list, Rule::Operator(Read);
    GET routes::PLUGIN_LIMITS => plugins::limits, Rule::Operator(Read);
    DELETE routes::PLUGIN => plugins::delete, Rule::Operator(Release);
    POST routes::DEPLOYMENTS => deployments::create, Rule::Operator(CreateDeployment);
    GET routes::DEPLOYMENTS => deployments::list, Rule::Operator(Read);
    GET routes::DEPLOYMENT => deployments::get, Rule::Operator(Read);
    GET routes::DEPLOYMENT_STATUS => deployments::status, Rule::Operator(Read);
    GET routes::DEPLOYMENT_DECISIONS => deployments::decisions, Rule::Operator(Read);
    POST routes::DEPLOYMENT_APPROVE => deployments::approve, Rule::Operator(ApproveDeployment);
    POST routes::DEPLOYMENT_DENY => deployments::deny, Rule::Operator(ApproveDeployment);
    POST routes::DEPLOYMENT_PAUSE => deployments::pause, Rule::Operator(HandleDeployment);
    POST routes::DEPLOYMENT_RESUME => deployments::resume, Rule::Operator(HandleDeployment);
    POST routes::DEPLOYMENT_CANCEL => deployments::cancel, Rule::Operator(HandleDeployment);
    POST routes::DEPLOYMENT_ROLLBACK => deployments::rollback, Rule::Operator(HandleDeployment);
    POST routes::TOKENS => tokens::create, Rule::Operator(ManageTokens);
    GET routes::TOKENS => tokens::list, Rule::Operator(ManageTokens);
    POST routes::TOKEN_REVOKE => tokens::revoke, Rule::Operator(ManageTokens);
    GET routes::AUDIT => audit::list, Rule::Operator(ReadAudit);
    POST routes::LOGIN => users::login, Rule::Login;
    POST routes::PASSWORD => users::change_password, Rule::Login;
    POST routes::USERS => users::create, Rule::Operator(ManageUsers);
    GET routes::USERS => users::list, Rule::Operator(ManageUsers);
    POST routes::USER_DISABLE => users::disable, Rule::Operator(ManageUsers);
    POST routes::CHECK_IN => protocol::check_in, Rule::Device;
    POST routes::REPORTS => protocol::report, Rule::Device;
    POST routes::REPORTS_BATCH => protocol::report_batch, Rule::Device;
    GET routes::ARTIFACT => artifacts::artifact, Rule::Artifact;
}

pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.limits.max_body_bytes;
    with_routes(Router::new())
        // A later layer wraps the earlier: metrics count every answer, refusals included, and the
        // request's span covers them all.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::check,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            spans::request_span,
        ))
        // After the layers: the dashboard's page and assets take no credential (a span each
        // all the same).
        .merge(
            dashboard::router().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                spans::request_span,
            )),
        )
        .fallback(|method: Method, uri: axum::http::Uri| async move {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!(
                    "no such endpoint: {method} {} (GET /api/v1/openapi.json lists them)",
                    uri.path()
                ),
            )
        })
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

/// An error answer: a status and a message that says what is wrong. A server failure (5xx)
/// carries an id instead of its detail: the detail goes to the log under that id, so no
/// database's or file system's message ever reaches a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    id: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            id: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A failure of the server's own, with `status` (500 or 503): `detail` is logged under a new
    /// error id, and the client is told only `message` and the id.
    pub fn failure(status: StatusCode, message: &str, detail: impl std::fmt::Display) -> Self {
        let mut id = [0u8; 8];
        // An id that cannot be random is still an id: the log line holds the time as well.
        let _ = getrandom::fill(&mut id);
        let id = hex::encode(id);
        tracing::error!(error_id = %id, status = status.as_u16(), error = %detail, "{message}");
        ApiError {
            status,
            message: format!("{message}; the server's log has the detail under error id {id}"),
            id: Some(id),
            retry_after: None,
        }
    }

    /// Too many requests (429); the answer says when to try again (`Retry-After`).
    pub fn too_many(message: String, retry_after_seconds: u64) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message,
            id: None,
            retry_after: Some(retry_after_seconds),
        }
    }

    /// An internal error (500).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        ApiError::failure(StatusCode::INTERNAL_SERVER_ERROR, "internal error", detail)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// What the client is told.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same error, its message led by `prefix` (where in a batch it happened).
    pub fn prefixed(self, prefix: &str) -> Self {
        ApiError {
            message: format!("{prefix}: {}", self.message),
            ..self
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                status: self.status.as_u16(),
                message: self.message,
                id: self.id,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            StoreError::NotOwner { .. } => ApiError::new(StatusCode::CONFLICT, err.to_string()),
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Unavailable(_) => ApiError::failure(
                StatusCode::SERVICE_UNAVAILABLE,
                "the change could not be stored; nothing of it was kept, try again",
                err,
            ),
            StoreError::Sqlite(_)
            | StoreError::Postgres(_)
            | StoreError::Io { .. }
            | StoreError::Corrupt(_) => ApiError::internal(err),
        }
    }
}

/// Every plugin error's status, in one place: what the plugin or its configuration got wrong is
/// the client's to fix (400; a component over the size limit 413), no free instance is a
/// moment's wait (503), and the runtime's own failure is the server's (500).
impl From<PluginError> for ApiError {
    fn from(err: PluginError) -> Self {
        match err {
            PluginError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, err.to_string())
            }
            PluginError::Busy(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
            PluginError::Runtime(_) => ApiError::internal(err),
            PluginError::NotWasm
            | PluginError::CoreModule { .. }
            | PluginError::OverLimit { .. }
            | PluginError::AboveCeiling { .. }
            | PluginError::Invalid(_)
            | PluginError::ForbiddenImport { .. }
            | PluginError::WrongWorld { .. }
            | PluginError::OutOfFuel { .. }
            | PluginError::Deadline { .. }
            | PluginError::MemoryLimit { .. }
            | PluginError::Trap { .. }
            | PluginError::Rejected { .. }
            | PluginError::BadPlan { .. }
            | PluginError::BadDescription { .. } => ApiError::bad_request(err.to_string()),
        }
    }
}

/// Every refusal of the rollout floor's, mapped to HTTP here and nowhere else.
impl From<RolloutError> for ApiError {
    fn from(err: RolloutError) -> Self {
        match err {
            RolloutError::Invalid(m) => ApiError::bad_request(m),
            RolloutError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            RolloutError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
            RolloutError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            // The policy refused the configuration: say which one.
            RolloutError::HealthConfig(e) => match ApiError::from(e) {
                refused if refused.status() == StatusCode::BAD_REQUEST => {
                    refused.prefixed("invalid `healthConfig`")
                }
                other => other,
            },
            RolloutError::Plugin(e) => e.into(),
            RolloutError::Store(e) => e.into(),
            RolloutError::Corrupt(detail) => ApiError::internal(detail),
        }
    }
}

/// A value that breaks its field's rule is the client's to fix.
impl From<hotswap_protocol::names::Refused> for ApiError {
    fn from(err: hotswap_protocol::names::Refused) -> Self {
        ApiError::bad_request(err.0)
    }
}

impl From<NoRandomness> for ApiError {
    fn from(err: NoRandomness) -> Self {
        ApiError::internal(err)
    }
}

/// A numeric id from the path (`what` names it in the error: `a firmware id is a number`).
pub(crate) fn path_id(what: &str, raw: &str) -> Result<i64, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("a {what} id is a number, found {raw:?}")))
}

/// Runs store work that syncs to disk on the blocking pool, off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)?
}

/// A JSON body whose rejections (malformed JSON, unknown fields, wrong types, too large) are
/// answered as [`ApiError`]s.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .is_some_and(|t| {
                t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"))
            });
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a JSON body (Content-Type: application/json)",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body over the limit: {}", rejection.body_text()),
                )
            })?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                // JSON has one kind of number: `30.0` is the integer 30 as much as `30` is.
                // Tried only once the body failed as sent, so the common case pays nothing.
                if let Some(value) = integral_floats(&bytes)
                    && let Ok(value) = T::deserialize(value)
                {
                    return Ok(Body(value));
                }
                Err(ApiError::bad_request(rejection.body_text()))
            }
        }
    }
}

/// The body with every number written as a float but holding an integer (`30.0`) made an
/// integer; `None` when it is not JSON or has no such number.
fn integral_floats(bytes: &[u8]) -> Option<serde_json::Value> {
    fn walk(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Within ±2^53 a float holds integers exactly.
                if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
                    *v = serde_json::Value::from(f as i64);
                    true
                } else {
                    false
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, i| walk(i) | c),
            serde_json::Value::Object(fields) => {
                fields.values_mut().fold(false, |c, f| walk(f) | c)
            }
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&mut value).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(e: ApiError) -> (u16, ErrorBody) {
        let response = e.into_response();
        let status = response.status().as_u16();
        let body = body_bytes(response);
        (status, serde_json::from_slice(&body).unwrap())
    }

    fn body_bytes(response: Response) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .unwrap()
            .to_vec()
    }

    #[test]
    fn plugin_errors_have_their_status_in_one_place() {
        let plugin = || "p@1".to_string();
        let cases = [
            (PluginError::Busy("pool".into()), 503),
            (PluginError::TooLarge { size: 9, limit: 8 }, 413),
            (PluginError::NotWasm, 400),
            (
                PluginError::OutOfFuel {
                    plugin: plugin(),
                    function: "plan",
                    fuel: 1,
                },
                400,
            ),
            (
                PluginError::Rejected {
                    plugin: plugin(),
                    message: "bad".into(),
                },
                400,
            ),
            (
                PluginError::Runtime("/var/lib/hotswap/compiled: gone".into()),
                500,
            ),
        ];
        for (err, status) in cases {
            let text = err.to_string();
            let (got, body) = answered(ApiError::from(err));
            assert_eq!(got, status, "{text}");
            if status == 500 {
                assert!(!body.error.message.contains("/var/lib"), "{body:?}");
                assert!(body.error.id.is_some(), "{body:?}");
            } else {
                assert_eq!(body.error.message, text);
                assert_eq!(body.error.id, None);
            }
        }
    }

    #[test]
    fn a_store_failure_is_answered_with_an_error_id_and_no_detail() {
        let (status, body) = answered(ApiError::from(StoreError::Corrupt(
            "no such table: devices".into(),
        )));
        assert_eq!(status, 500);
        let id = body.error.id.clone().expect("an error id");
        assert!(body.error.message.contains(&id), "{body:?}");
        assert!(!body.error.message.contains("no such table"), "{body:?}");
        let (status, body) = answered(ApiError::from(StoreError::Unavailable(
            "commit failed: disk I/O error".into(),
        )));
        assert_eq!(status, 503);
        assert!(!body.error.message.contains("disk I/O"), "{body:?}");
        let io = StoreError::Io {
            path: "/var/lib/hotswap/blobs".into(),
            source: std::io::Error::other("read-only file system"),
        };
        let (status, body) = answered(ApiError::from(io));
        assert_eq!(status, 500);
        assert!(!body.error.message.contains("/var/lib"), "{body:?}");
        let (status, body) = answered(ApiError::from(StoreError::NotFound("no device `x`".into())));
        assert_eq!(
            (status, body.error.message.as_str()),
            (404, "no device `x`")
        );
    }
}
