//! OpenTelemetry traces over OTLP/HTTP (protobuf, the blocking reqwest client on the batch
//! processor's own thread). On when an endpoint is configured through the standard variables
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; the other `OTEL_*`
//! variables, service name, resource, sampler, batch sizes, headers and timeouts, are the SDK's
//! and are honoured as it reads them); off otherwise, and then free: [`Traces::off`] builds no
//! span, and assignments carry no trace context.
//!
//! Every HTTP request is a span (`tracing`'s, exported by tracing-opentelemetry) with its route
//! and status, the child of the `traceparent` header when one came. A deployment is one trace,
//! the trace of the request that started it:
//!
//! - `deployment`, child of that request, from the start to the end;
//!   - `plan`: the strategy's call, with the fuel it used;
//!   - `wave N`, from the wave's start until it passed or the rollback that ended it;
//!     - `health verdict`: each judgement, with the verdict, its reason, its inputs and fuel;
//!     - `device download`, `device verify`, `device trial`, `device outcome`: what each
//!       device did, from its reports (it sends back the `traceparent` its assignment carried);
//!   - `rollback`: from its start until the last device sent back answered, with those devices'
//!     spans below it.
//!
//! Spans that end after they began, on another thread or another server, are recorded whole
//! when they end, with the ids [`TraceParent`] derives, so nothing but the deployment's
//! `traceparent` is stored.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hotswap_protocol::{
    Deployment, DeploymentState, DeviceState, Mode, Report, ReportAnswer, TraceParent, UnixSeconds,
    Verdict, WaveStats, WaveStatus,
};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SdkTracer, SdkTracerProvider};

/// The variables that turn traces on, the first one set wins.
pub const ENDPOINT_VARIABLES: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The longest the server waits at shutdown for the last spans to be sent.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// The tracer, or nothing. Cloning it is cheap.
#[derive(Clone, Default)]
pub struct Traces {
    inner: Option<Arc<Inner>>,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces").field("on", &self.on()).finish()
    }
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

thread_local! {
    /// The id the next span built on this thread takes instead of a random one: how a span
    /// recorded when it ends gets the id its children named as their parent.
    static NEXT_SPAN_ID: Cell<Option<SpanId>> = const { Cell::new(None) };
}

/// Random ids, except where [`NEXT_SPAN_ID`] says which.
#[derive(Debug)]
struct DerivedIds(RandomIdGenerator);

impl IdGenerator for DerivedIds {
    fn new_trace_id(&self) -> TraceId {
        self.0.new_trace_id()
    }

    fn new_span_id(&self) -> SpanId {
        NEXT_SPAN_ID
            .with(Cell::take)
            .unwrap_or_else(|| self.0.new_span_id())
    }
}

/// A span to record whole: where it hangs, what it is, when it ran.
struct Record<'a> {
    parent: Option<&'a TraceParent>,
    /// Its own id, when children already named it; random otherwise.
    id: Option<[u8; 8]>,
    name: String,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

impl Traces {
    /// No traces: every call is a no-op.
    pub fn off() -> Traces {
        Traces::default()
    }

    /// Traces to the OTLP endpoint the environment names, or [`Traces::off`] when it names
    /// none (or says `OTEL_SDK_DISABLED=true`, or `OTEL_TRACES_EXPORTER=none`).
    pub fn from_env() -> Result<Traces, String> {
        let configured = ENDPOINT_VARIABLES
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|e| !e.trim().is_empty()));
        let disabled = std::env::var("OTEL_SDK_DISABLED")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true"))
            || std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.eq_ignore_ascii_case("none"));
        if !configured || disabled {
            return Ok(Traces::off());
        }
        // The exporter's reqwest is built without a TLS provider of its own (as every client
        // here): ring's, as the rest of the server uses, whether the endpoint is https or not.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Another thread may have installed one meanwhile: theirs is as good.
            let _ = crate::config::crypto_provider().install_default();
        }
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| format!("the OTLP trace exporter: {e}"))?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(
                std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "hotswap".to_string()),
            )
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_id_generator(DerivedIds(RandomIdGenerator::default()))
            .with_resource(resource)
            .build();
        Ok(Traces::with_provider(provider))
    }

    /// Traces through `provider` (tests give one with an exporter of their own).
    pub fn with_provider(provider: SdkTracerProvider) -> Traces {
        let tracer = provider.tracer("hotswap");
        Traces {
            inner: Some(Arc::new(Inner { provider, tracer })),
        }
    }

    /// Whether spans are recorded.
    pub fn on(&self) -> bool {
        self.inner.is_some()
    }

    /// The tracer, for tracing-opentelemetry's layer.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.inner.as_ref().map(|i| i.tracer.clone())
    }

    /// Sends what is queued and stops; spans recorded later are dropped.
    pub fn shutdown(&self) {
        if let Some(inner) = &self.inner
            && let Err(e) = inner.provider.shutdown_with_timeout(SHUTDOWN_FLUSH)
        {
            tracing::warn!(error = %e, "the last spans could not all be sent");
        }
    }

    /// The context of the span `tracing` is in (the request's), which starts a deployment's
    /// trace. When it has none (traces on without the layer), a new trace whose deployment
    /// span is its root.
    pub fn current(&self) -> Option<TraceParent> {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        self.inner.as_ref()?;
        let cx = tracing::Span::current().context();
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            return Some(TraceParent {
                trace_id: sc.trace_id().to_bytes(),
                span_id: sc.span_id().to_bytes(),
                flags: sc.trace_flags().to_u8(),
            });
        }
        let ids = RandomIdGenerator::default();
        let mut root = TraceParent {
            trace_id: ids.new_trace_id().to_bytes(),
            span_id: [0; 8],
            flags: TraceFlags::SAMPLED.to_u8(),
        };
        // A parent that is the deployment span itself marks the deployment as the root.
        root.span_id = root.deployment().span_id;
        Some(root)
    }

    /// The strategy's call that planned deployment `trace`'s waves.
    pub fn planned(&self, trace: Option<&TraceParent>, plan: Planned<'_>) {
        let Some(trace) = trace else { return };
        let deployment = trace.deployment();
        self.record(Record {
            parent: Some(&deployment),
            id: None,
            name: "plan".into(),
            start: plan.started,
            end: SystemTime::now(),
            attributes: vec![
                KeyValue::new("hotswap.strategy", plan.strategy.to_string()),
                KeyValue::new("hotswap.devices", plan.devices as i64),
                KeyValue::new("hotswap.waves", plan.waves as i64),
                KeyValue::new("hotswap.plugin.fuel_used", plan.fuel_used as i64),
            ],
            error: None,
        });
    }

    /// A health policy's judgement of wave `wave`.
    pub fn verdict(&self, d: &Deployment, wave: u32, judged: Judgement<'_>) {
        let Some(trace) = self.trace_of(d) else {
            return;
        };
        let (verdict, reason) = match judged.verdict {
            Verdict::Proceed => ("proceed", String::new()),
            Verdict::Wait { seconds } => ("wait", format!("{seconds} s")),
            Verdict::Pause { reason } => ("pause", reason.clone()),
            Verdict::RollBack { reason } => ("roll-back", reason.clone()),
        };
        let s = judged.stats;
        let mut attributes = vec![
            KeyValue::new("hotswap.deployment.id", d.id),
            KeyValue::new("hotswap.wave", i64::from(wave) + 1),
            KeyValue::new("hotswap.verdict", verdict),
            KeyValue::new("hotswap.devices.succeeded", i64::from(s.succeeded)),
            KeyValue::new("hotswap.devices.failed", i64::from(s.failed)),
            KeyValue::new("hotswap.devices.in_progress", i64::from(s.in_progress)),
            KeyValue::new("hotswap.health_policy", d.health_policy.clone()),
        ];
        if let Some(fuel) = judged.fuel_used {
            attributes.push(KeyValue::new("hotswap.plugin.fuel_used", fuel as i64));
        }
        if !reason.is_empty() {
            attributes.push(KeyValue::new("hotswap.reason", reason));
        }
        self.record(Record {
            parent: Some(&trace.wave(wave)),
            id: None,
            name: "health verdict".into(),
            start: judged.started,
            end: SystemTime::now(),
            attributes,
            error: None,
        });
    }

    /// Wave `wave` ended: it passed, or `error` says why it did not.
    pub fn wave_ended(&self, d: &Deployment, wave: u32, w: WaveSummary, error: Option<&str>) {
        let Some(trace) = self.trace_of(d) else {
            return;
        };
        self.record(Record {
            parent: Some(&trace.deployment()),
            id: Some(trace.wave(wave).span_id),
            name: format!("wave {}", wave + 1),
            start: w.started,
            end: SystemTime::now(),
            attributes: vec![
                KeyValue::new("hotswap.deployment.id", d.id),
                KeyValue::new("hotswap.wave", i64::from(wave) + 1),
                KeyValue::new("hotswap.wave.mode", w.mode.to_string()),
                KeyValue::new("hotswap.devices.targeted", i64::from(w.targeted)),
                KeyValue::new("hotswap.devices.succeeded", i64::from(w.succeeded)),
                KeyValue::new("hotswap.devices.failed", i64::from(w.failed)),
            ],
            error: error.map(str::to_string),
        });
    }

    /// A rollback ended: `d` as it was while rolling back (its `updated_at` is when the
    /// rollback began), with why it was rolled back.
    pub fn rollback_ended(&self, d: &Deployment) {
        let Some(trace) = self.trace_of(d) else {
            return;
        };
        self.record(Record {
            parent: Some(&trace.deployment()),
            id: Some(trace.rollback().span_id),
            name: "rollback".into(),
            start: system_time(d.updated_at),
            end: SystemTime::now(),
            attributes: vec![
                KeyValue::new("hotswap.deployment.id", d.id),
                KeyValue::new("hotswap.reason", d.reason.clone().unwrap_or_default()),
            ],
            error: None,
        });
    }

    /// Deployment `d` ended, in the state and with the reason it now has.
    pub fn deployment_ended(&self, d: &Deployment) {
        let Some(trace) = self.trace_of(d) else {
            return;
        };
        let own = trace.deployment();
        // The request that started it, unless the deployment is its trace's root.
        let parent = (trace.span_id != own.span_id).then_some(&trace);
        let reason = d.reason.clone().unwrap_or_default();
        self.record(Record {
            parent,
            id: Some(own.span_id),
            name: "deployment".into(),
            start: system_time(d.created_at),
            end: SystemTime::now(),
            attributes: vec![
                KeyValue::new("hotswap.deployment.id", d.id),
                KeyValue::new("hotswap.deployment.state", d.state.to_string()),
                KeyValue::new("hotswap.firmware.version", d.firmware_version.clone()),
                KeyValue::new("hotswap.device_model", d.device_model.clone()),
                KeyValue::new("hotswap.strategy", d.strategy.clone()),
                KeyValue::new("hotswap.waves", i64::from(d.waves)),
                KeyValue::new("hotswap.reason", reason.clone()),
            ],
            error: (d.state != DeploymentState::Completed).then_some(reason),
        });
    }

    /// What a device did, from its reports and what the store made of them: each report that
    /// carries a trace context and was applied ends a step, laid end to end backwards from now
    /// with the durations the device measured. A `traceparent` that does not parse is ignored,
    /// as W3C trace context says: the report was applied all the same, its step is not traced
    /// (a device's report is never lost over its telemetry).
    pub fn device_reports(&self, device_id: &str, reports: &[Report], answers: &[ReportAnswer]) {
        if self.inner.is_none() {
            return;
        }
        let mut end = SystemTime::now();
        for (r, answer) in reports.iter().zip(answers).rev() {
            let Some(parent) = r.traceparent.as_deref().and_then(|t| t.parse().ok()) else {
                continue;
            };
            if !answer.applied {
                continue;
            }
            let outcome = matches!(
                r.state,
                DeviceState::Confirmed | DeviceState::RolledBack | DeviceState::Failed
            );
            let step = match r.state {
                DeviceState::Downloaded => Some("device download"),
                DeviceState::Installed => Some("device verify"),
                // An outcome that says how long it took ends a trial.
                _ if outcome && r.took_ms.is_some() => Some("device trial"),
                _ => None,
            };
            let attributes = || {
                vec![
                    KeyValue::new("hotswap.device.id", device_id.to_string()),
                    KeyValue::new("hotswap.assignment.id", r.assignment_id),
                    KeyValue::new("hotswap.device.state", r.state.to_string()),
                ]
            };
            if outcome {
                let mut attributes = attributes();
                if let Some(reason) = &r.reason {
                    attributes.push(KeyValue::new("hotswap.reason", reason.clone()));
                }
                self.record(Record {
                    parent: Some(&parent),
                    id: None,
                    name: "device outcome".into(),
                    start: end,
                    end,
                    attributes,
                    error: (r.state == DeviceState::Failed)
                        .then(|| r.reason.clone().unwrap_or_default()),
                });
            }
            if let Some(step) = step {
                let took = Duration::from_millis(r.took_ms.unwrap_or(0));
                let start = end.checked_sub(took).unwrap_or(end);
                self.record(Record {
                    parent: Some(&parent),
                    id: None,
                    name: step.into(),
                    start,
                    end,
                    attributes: attributes(),
                    error: None,
                });
                end = start;
            }
        }
    }

    /// The trace of deployment `d`, when it has one and traces are on.
    fn trace_of(&self, d: &Deployment) -> Option<TraceParent> {
        self.inner.as_ref()?;
        d.traceparent.as_deref()?.parse().ok()
    }

    fn record(&self, r: Record<'_>) {
        let Some(inner) = &self.inner else { return };
        let cx = match r.parent {
            Some(p) => remote(p),
            None => Context::new(),
        };
        let builder = inner
            .tracer
            .span_builder(r.name)
            .with_kind(SpanKind::Internal)
            .with_start_time(r.start)
            .with_attributes(r.attributes);
        NEXT_SPAN_ID.with(|n| n.set(r.id.map(SpanId::from_bytes)));
        let mut span = inner.tracer.build_with_context(builder, &cx);
        // Taken by the build above; cleared in case the sampler dropped the span before.
        NEXT_SPAN_ID.with(|n| n.set(None));
        if let Some(message) = r.error {
            span.set_status(Status::error(message));
        }
        span.end_with_timestamp(r.end);
    }
}

/// A strategy's call, for [`Traces::planned`].
pub struct Planned<'a> {
    pub strategy: &'a str,
    pub devices: usize,
    pub waves: usize,
    pub fuel_used: u64,
    pub started: SystemTime,
}

/// A wave as its span records it.
pub struct WaveSummary {
    pub started: SystemTime,
    pub mode: Mode,
    pub targeted: u32,
    pub succeeded: u32,
    pub failed: u32,
}

impl From<&WaveStats> for WaveSummary {
    fn from(s: &WaveStats) -> Self {
        WaveSummary {
            started: SystemTime::now() - Duration::from_secs(u64::from(s.elapsed_seconds)),
            mode: s.mode,
            targeted: s.targeted,
            succeeded: s.succeeded,
            failed: s.failed,
        }
    }
}

impl From<&WaveStatus> for WaveSummary {
    fn from(w: &WaveStatus) -> Self {
        WaveSummary {
            started: w.started_at.map_or_else(SystemTime::now, system_time),
            mode: w.mode,
            targeted: w.devices,
            succeeded: w.succeeded,
            failed: w.failed,
        }
    }
}

/// A health policy's call, for [`Traces::verdict`].
pub struct Judgement<'a> {
    pub verdict: &'a Verdict,
    pub stats: &'a WaveStats,
    pub fuel_used: Option<u64>,
    pub started: SystemTime,
}

/// The context of a span another process (or an earlier server) started.
pub(crate) fn remote(p: &TraceParent) -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(p.trace_id),
        SpanId::from_bytes(p.span_id),
        TraceFlags::new(p.flags),
        true,
        TraceState::default(),
    ))
}

fn system_time(at: UnixSeconds) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.0).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use hotswap_protocol::{DeviceState, Report, ReportAnswer, TraceParent};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

    use super::*;

    const WAVE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn traces() -> (Traces, InMemorySpanExporter) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .with_id_generator(DerivedIds(RandomIdGenerator::default()))
            .build();
        (Traces::with_provider(provider), exporter)
    }

    fn report(state: DeviceState, traceparent: &str, took_ms: Option<u64>) -> Report {
        Report {
            assignment_id: 7,
            state,
            reason: None,
            health: None,
            traceparent: Some(traceparent.to_string()),
            took_ms,
        }
    }

    fn applied(n: usize) -> Vec<ReportAnswer> {
        vec![
            ReportAnswer {
                applied: true,
                state: DeviceState::Confirmed,
            };
            n
        ]
    }

    fn by_name<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
        spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no `{name}` span in {spans:#?}"))
    }

    #[test]
    fn a_devices_steps_are_laid_end_to_end_below_the_context_it_sent_back() {
        let (traces, exporter) = traces();
        let reports = [
            report(DeviceState::Downloading, WAVE, None),
            report(DeviceState::Downloaded, WAVE, Some(300)),
            report(DeviceState::Verifying, WAVE, None),
            report(DeviceState::Installed, WAVE, Some(20)),
            report(DeviceState::Trial, WAVE, None),
            report(DeviceState::Confirmed, WAVE, Some(1000)),
        ];
        traces.device_reports("d-1", &reports, &applied(reports.len()));
        let spans = exporter.get_finished_spans().unwrap();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names.len(), 4, "{names:?}");
        let wave: TraceParent = WAVE.parse().unwrap();
        for s in &spans {
            assert_eq!(s.span_context.trace_id().to_bytes(), wave.trace_id);
            assert_eq!(s.parent_span_id.to_bytes(), wave.span_id);
        }
        let (download, verify, trial) = (
            by_name(&spans, "device download"),
            by_name(&spans, "device verify"),
            by_name(&spans, "device trial"),
        );
        // Each step ends where the next begins, with the lengths the device measured.
        assert_eq!(download.end_time, verify.start_time);
        assert_eq!(verify.end_time, trial.start_time);
        let took = |s: &SpanData| s.end_time.duration_since(s.start_time).unwrap();
        assert_eq!(took(download), Duration::from_millis(300));
        assert_eq!(took(verify), Duration::from_millis(20));
        assert_eq!(took(trial), Duration::from_millis(1000));
        assert_eq!(by_name(&spans, "device outcome").start_time, trial.end_time);
    }

    #[test]
    fn a_traceparent_that_is_not_one_or_a_report_not_applied_records_nothing() {
        let (traces, exporter) = traces();
        let reports = [
            report(DeviceState::Downloaded, "00-abc-01", Some(300)),
            report(DeviceState::Installed, WAVE, Some(20)),
        ];
        let mut answers = applied(2);
        answers[1].applied = false;
        traces.device_reports("d-1", &reports, &answers);
        assert!(exporter.get_finished_spans().unwrap().is_empty());
    }

    #[test]
    fn a_wave_recorded_when_it_ends_has_the_id_its_devices_named() {
        let (traces, exporter) = traces();
        let request: TraceParent = WAVE.parse().unwrap();
        let d = Deployment {
            id: 1,
            firmware_id: 1,
            firmware_version: "2.0.0".into(),
            device_model: "m".into(),
            strategy: "canary".into(),
            strategy_config: "{}".into(),
            health_policy: "default".into(),
            health_sha256: None,
            health_config: "{}".into(),
            retry: hotswap_protocol::RetryPolicy {
                device_timeout_seconds: 1,
                max_attempts: 1,
                retry_backoff_seconds: 1,
            },
            state: DeploymentState::Completed,
            current_wave: 1,
            waves: 2,
            reason: Some("every wave passed".into()),
            created_by: String::new(),
            created_at: UnixSeconds(1),
            updated_at: UnixSeconds(2),
            traceparent: Some(request.to_string()),
        };
        let wave = WaveSummary {
            started: SystemTime::now(),
            mode: Mode::Install,
            targeted: 1,
            succeeded: 1,
            failed: 0,
        };
        traces.wave_ended(&d, 1, wave, None);
        traces.deployment_ended(&d);
        let spans = exporter.get_finished_spans().unwrap();
        let wave = by_name(&spans, "wave 2");
        let deployment = by_name(&spans, "deployment");
        assert_eq!(
            wave.span_context.span_id().to_bytes(),
            request.wave(1).span_id
        );
        assert_eq!(wave.parent_span_id, deployment.span_context.span_id());
        assert_eq!(
            deployment.span_context.span_id().to_bytes(),
            request.deployment().span_id
        );
        assert_eq!(deployment.parent_span_id.to_bytes(), request.span_id);
        // Off, nothing at all.
        Traces::off().deployment_ended(&d);
    }
}
