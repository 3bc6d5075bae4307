//! Every request a span when traces are on: the HTTP side of [`crate::traces`].

use std::sync::Arc;

use hotswap_protocol::TraceParent;

use super::AppState;

/// Every request a span, `METHOD /route` with its status, the child of the `traceparent`
/// header when one came; nothing at all when traces are off.
pub async fn request_span(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    if !state.traces.on() {
        return next.run(req).await;
    }
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("", |p| p.as_str())
        .to_string();
    let span = tracing::info_span!(
        target: "hotswap_server::http",
        "request",
        otel.name = %format_args!("{method} {route}"),
        otel.kind = "server",
        http.request.method = %method,
        http.route = %route,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(parent) = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceParent>().ok())
    {
        let cx = crate::traces::remote(&parent);
        // Without the layer (traces on in a test of the API alone) there is nothing to join.
        let _ = span.set_parent(cx);
    }
    let response = next.run(req).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}
