//! `GET /metrics`: Prometheus text. Requests by method, route template and status (counted by a
//! route layer, so unmatched paths cannot blow up the label space) and the sizes of the
//! registries, read from the store at scrape time.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{ApiError, AppState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    firmware: Gauge,
    devices: Gauge,
    plugins: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("hotswap");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        let (firmware, devices, plugins) = (Gauge::default(), Gauge::default(), Gauge::default());
        registry.register(
            "firmware_versions",
            "Registered firmware versions, deprecated included",
            firmware.clone(),
        );
        registry.register("devices", "Registered devices", devices.clone());
        registry.register(
            "uploaded_plugins",
            "Uploaded plugins (built-ins not counted)",
            plugins.clone(),
        );
        Metrics {
            registry,
            requests,
            firmware,
            devices,
            plugins,
        }
    }
}

/// Counts every answered request of a matched route.
pub async fn track(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(String::new, |p| p.as_str().to_string());
    let response = next.run(req).await;
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    response
}

pub async fn scrape(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let (firmware, devices, plugins) = state.store.counts()?;
    state.metrics.firmware.set(firmware);
    state.metrics.devices.set(devices);
    state.metrics.plugins.set(plugins);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry)
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
