//! An OTLP/HTTP trace receiver (`POST /v1/traces`, protobuf, decoded with opentelemetry-proto):
//! what `hotswap scale --tracing` points the server at to count what it sends, and what the
//! tests read a deployment's trace from. It keeps every span it is sent, in memory.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// A span as received: ids in hex, attributes as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: BTreeMap<String, String>,
    /// The status said error.
    pub error: bool,
    /// The resource's `service.name`.
    pub service: String,
}

impl ReceivedSpan {
    /// Attribute `key`, or "" when it has none.
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// A receiver listening on loopback until dropped.
pub struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    /// Export requests received, and how many bytes they carried.
    requests: Arc<Mutex<(u64, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct Shared {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
    requests: Arc<Mutex<(u64, u64)>>,
}

impl Receiver {
    /// Listens on a free loopback port.
    pub async fn start() -> Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("the OTLP receiver's port")?;
        let addr = listener.local_addr()?;
        let shared = Shared {
            spans: Default::default(),
            requests: Default::default(),
        };
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(export))
            // An export batch of the SDK's default size is far below this.
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver {
            addr,
            spans: shared.spans,
            requests: shared.requests,
            task,
        })
    }

    /// What to set `OTEL_EXPORTER_OTLP_ENDPOINT` to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many spans were received so far.
    pub fn count(&self) -> usize {
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Export requests received and the bytes they carried.
    pub fn requests(&self) -> (u64, u64) {
        *self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn export(State(shared): State<Shared>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let request = match ExportTraceServiceRequest::decode(body.as_ref()) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string().into_bytes()),
    };
    {
        let mut requests = shared.requests.lock().unwrap_or_else(|e| e.into_inner());
        requests.0 += 1;
        requests.1 += body.len() as u64;
    }
    let mut received = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent_span_id: hex::encode(&span.parent_span_id),
                    name: span.name,
                    start_unix_nanos: span.start_time_unix_nano,
                    end_unix_nanos: span.end_time_unix_nano,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                    // STATUS_CODE_ERROR.
                    error: span.status.is_some_and(|s| s.code == 2),
                    service: service.clone(),
                });
            }
        }
    }
    shared
        .spans
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .extend(received);
    (
        StatusCode::OK,
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
}

/// An attribute's value as text.
fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}
