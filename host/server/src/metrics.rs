//! The server's Prometheus metrics, kept here so that every floor can count: requests by
//! method, route template and status (counted by the API's route layer, so unmatched paths
//! cannot blow up the label space) and the sizes of the registries, read from the store at
//! scrape time; deployments by state and devices by status, also read at scrape time; device
//! check-ins and reports by state, counted as they arrive. Histograms of request latency by
//! route, of plugin calls by kind and function, and of device updates from assignment to
//! confirmation; each running deployment's devices by state and its wave, read at scrape time.
//! `host/server/grafana/hotswap.json` is a dashboard over them; `GET /metrics` serves them.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use hotswap_protocol::Spelling;
use hotswap_store::{Store, StoreError};

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabels {
    kind: String,
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    deployment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentStateLabels {
    deployment: String,
    state: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request latency: 0.5 ms to about 16 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Plugin calls: 0.1 ms (a warm Rust policy) to about 26 s (past the default deadline).
fn plugin_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Device updates, assignment to confirmation: 1 s to about 9 hours (a slow link, a long soak).
fn update_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// Durations of plugin calls and of device updates, shared with the orchestrator's thread.
#[derive(Clone)]
pub struct Timings(Histograms<PluginCallLabels>, Histogram);

impl Timings {
    /// The devices of a wave that passed confirmed its update `seconds` after the wave began,
    /// each: observed by the orchestrator once per wave, so the device's report pays nothing.
    pub fn updates_confirmed(&self, seconds: &[f64]) {
        for s in seconds {
            self.1.observe(*s);
        }
    }

    /// Runs `call`, a call of `function` (`plan`, `evaluate`) into a plugin of `kind`, and
    /// records how long it took.
    pub fn time<R>(
        &self,
        kind: hotswap_protocol::PluginKind,
        function: &str,
        call: impl FnOnce() -> R,
    ) -> R {
        let started = std::time::Instant::now();
        let result = call();
        self.0
            .get_or_create(&PluginCallLabels {
                kind: kind.to_string(),
                function: function.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
        result
    }
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
    request_seconds: Histograms<RouteLabels>,
    plugin_calls: Timings,
    deployment_devices: Family<DeploymentStateLabels, Gauge>,
    deployment_wave: Family<DeploymentLabels, Gauge>,
    deployment_waves: Family<DeploymentLabels, Gauge>,
}

impl Metrics {
    pub fn deployment_started(&self) {
        self.deployments_started.inc();
    }

    pub fn check_in(&self) {
        self.check_ins.inc();
    }

    pub fn timings(&self) -> Timings {
        self.plugin_calls.clone()
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
        let request_seconds = Histograms::<RouteLabels>::new_with_constructor(request_buckets);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            request_seconds.clone(),
        );
        let plugin_calls = Timings(
            Histograms::new_with_constructor(plugin_buckets),
            update_buckets(),
        );
        registry.register(
            "plugin_call_duration_seconds",
            "Time a plugin call took (instantiation included), by plugin kind and function",
            plugin_calls.0.clone(),
        );
        registry.register(
            "device_update_duration_seconds",
            "Time from a device's assignment (its wave's start) to its confirmation of the new agent, observed when the wave passed",
            plugin_calls.1.clone(),
        );
        let deployment_devices = Family::<DeploymentStateLabels, Gauge>::default();
        registry.register(
            "deployment_devices",
            "Devices of each active deployment by assignment state",
            deployment_devices.clone(),
        );
        let deployment_wave = Family::<DeploymentLabels, Gauge>::default();
        registry.register(
            "deployment_wave",
            "The wave each active deployment is on, counted from 1",
            deployment_wave.clone(),
        );
        let deployment_waves = Family::<DeploymentLabels, Gauge>::default();
        registry.register(
            "deployment_waves",
            "How many waves each active deployment has",
            deployment_waves.clone(),
        );
        Metrics {
            registry,
            request_seconds,
            plugin_calls,
            deployment_devices,
            deployment_wave,
            deployment_waves,
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

impl Metrics {
    /// A request answered with `status` after `seconds`, on the route template `route`.
    pub fn request_answered(&self, method: String, route: String, status: u16, seconds: f64) {
        let route = RouteLabels { method, route };
        self.request_seconds.get_or_create(&route).observe(seconds);
        // The same strings, moved: a request pays for its labels once.
        let labels = RequestLabels {
            method: route.method,
            route: route.route,
            status,
        };
        self.requests.get_or_create(&labels).inc();
    }

    /// Reads what is counted at scrape time from `store`: the registries' sizes, deployments
    /// and devices by state, each running deployment's devices by state and its wave. Reads the
    /// database: call it off the async workers.
    pub fn read_store(&self, store: &Store) -> Result<(), StoreError> {
        let counts = store.counts()?;
        let by_state = store.counts_by_state()?;
        let active = store.active_progress()?;
        self.deployment_devices.clear();
        self.deployment_wave.clear();
        self.deployment_waves.clear();
        for p in active {
            let deployment = p.id.to_string();
            for (s, n) in p.states {
                self.deployment_devices
                    .get_or_create(&DeploymentStateLabels {
                        deployment: deployment.clone(),
                        state: s.as_str().to_string(),
                    })
                    .set(i64::from(n));
            }
            let labels = DeploymentLabels { deployment };
            self.deployment_wave
                .get_or_create(&labels)
                .set(i64::from(p.current_wave) + 1);
            self.deployment_waves
                .get_or_create(&labels)
                .set(i64::from(p.waves));
        }
        self.firmware.set(counts.firmware);
        self.devices.set(counts.devices);
        self.plugins.set(counts.plugins);
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
            (&self.deployments, deployments.collect::<Vec<_>>()),
            (&self.devices_by_status, devices.collect()),
            (&self.devices_by_firmware, firmware.collect()),
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
        Ok(())
    }

    /// Every metric as OpenMetrics text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
