//! `GET /metrics`: Prometheus text. Requests by method, route template and status (counted by a
//! route layer, so unmatched paths cannot blow up the label space) and the sizes of the
//! registries, read from the store at scrape time; deployments by state and devices by status,
//! also read at scrape time; device check-ins and reports by state, counted as they arrive.

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

use hotswap_protocol::Spelling;

use super::{ApiError, AppState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    firmware: Gauge,
    devices: Gauge,
    plugins: Gauge,
    deployments_started: Counter,
    deployments: Family<StateLabel, Gauge>,
    devices_by_status: Family<StateLabel, Gauge>,
    devices_by_firmware: Family<StateLabel, Gauge>,
    check_ins: Counter,
    reports: Family<StateLabel, Counter>,
}

impl Metrics {
    pub fn deployment_started(&self) {
        self.deployments_started.inc();
    }

    pub fn check_in(&self) {
        self.check_ins.inc();
    }

    /// A device report that changed something, by the state it reported.
    pub fn report(&self, state: &str) {
        self.reports
            .get_or_create(&StateLabel {
                state: state.to_string(),
            })
            .inc();
    }
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
        let deployments_started = Counter::default();
        registry.register(
            "deployments_started",
            "Deployments started since the server started",
            deployments_started.clone(),
        );
        let deployments = Family::<StateLabel, Gauge>::default();
        registry.register("deployments", "Deployments by state", deployments.clone());
        let devices_by_status = Family::<StateLabel, Gauge>::default();
        registry.register(
            "devices_by_status",
            "Registered devices by status (registered, online, quarantined)",
            devices_by_status.clone(),
        );
        let devices_by_firmware = Family::<StateLabel, Gauge>::default();
        registry.register(
            "devices_by_firmware_status",
            "Devices by where the version they run stands (current, deprecated, sunset): who is left behind",
            devices_by_firmware.clone(),
        );
        let check_ins = Counter::default();
        registry.register(
            "device_check_ins",
            "Device check-ins answered",
            check_ins.clone(),
        );
        let reports = Family::<StateLabel, Counter>::default();
        registry.register(
            "device_reports",
            "Device reports that changed an assignment, by the state reported",
            reports.clone(),
        );
        Metrics {
            registry,
            requests,
            firmware,
            devices,
            plugins,
            deployments_started,
            deployments,
            devices_by_status,
            devices_by_firmware,
            check_ins,
            reports,
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

/// What `GET /healthz` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok`: an answer at all says the server is up.
    pub status: &'static str,
}

#[utoipa::path(
    get,
    path = "/healthz",
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
    path = "/metrics",
    operation_id = "metrics",
    tag = "system",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "OpenMetrics text", body = String, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8"),
    )
)]
pub async fn scrape(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let reading = state.clone();
    let (counts, by_state) =
        super::blocking(move || Ok((reading.store.counts()?, reading.store.counts_by_state()?)))
            .await?;
    state.metrics.firmware.set(counts.firmware);
    state.metrics.devices.set(counts.devices);
    state.metrics.plugins.set(counts.plugins);
    let deployments = by_state
        .deployments
        .into_iter()
        .map(|(s, n)| (s.as_str(), n));
    let devices = by_state.devices.into_iter().map(|(s, n)| (s.as_str(), n));
    let firmware = by_state
        .devices_by_firmware
        .into_iter()
        .map(|(s, n)| (s.as_str(), n));
    for (family, counts) in [
        (&state.metrics.deployments, deployments.collect::<Vec<_>>()),
        (&state.metrics.devices_by_status, devices.collect()),
        (&state.metrics.devices_by_firmware, firmware.collect()),
    ] {
        family.clear();
        for (s, n) in counts {
            family
                .get_or_create(&StateLabel {
                    state: s.to_string(),
                })
                .set(n);
        }
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry)
        .map_err(ApiError::internal)?;
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
