//! The fleet simulator: N devices on the device VM speaking the device protocol to a server, on
//! tokio, with faults injected into a share of them. `hotswap sim`, the demo and the scale
//! benchmark run it.
//!
//! - [`sim_device`]: one device, [`SimDevice`], a state machine over a [`Transport`].
//! - [`transport`]: the device protocol as a trait; [`HttpTransport`] speaks it through the
//!   typed client.
//! - [`release`]: the example agent tagged per version, and a release's registration.
//! - [`SimulatedFleet`]: N devices on tokio with live [`Progress`] and a [`Summary`] (bricked must be 0).
//!
//! Neither wasmtime nor rusqlite is in its dependency tree: it is a client, and its devices run
//! on the device VM alone.

#![forbid(unsafe_code)]

pub mod release;
pub mod sim_device;
pub mod transport;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hotswap_client::{Client, ClientConfig, ClientError, Device, Retry};
use hotswap_device_vm::device::DeviceConfig;
use hotswap_device_vm::release::Release;
use hotswap_protocol::{
    CheckIn, CheckInAnswer, DeviceBatch, DeviceRegistration, IfRegistered, Report, ReportAnswer,
};
use rand::{Rng, SeedableRng};

pub use release::{registration, tagged};
pub use sim_device::{
    Answer, FactoryError, Faults, Modules, Outcome, SimDevice, UpdateError, reports,
    signed_manifest,
};
pub use transport::{HttpTransport, Transport, TransportError};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    pub server: String,
    /// More addresses of the same service (replicas of the server on one database): the
    /// devices' connections are dealt out over `server` and these in turn.
    pub replicas: Vec<String>,
    pub devices: usize,
    pub regions: Vec<String>,
    pub device_model: String,
    /// Device ids are `<prefix>-<n>`.
    pub prefix: String,
    /// Extra labels, dealt out in turn: device `n` gets `labels[n % len]`.
    pub labels: Vec<(String, String)>,
    /// Between check-ins when there is nothing to do and no long poll; after a check-in that
    /// failed.
    pub poll: Duration,
    /// How long a check-in waits for an assignment (the server's `?wait=`, long poll); zero
    /// polls every `poll` instead.
    pub wait_seconds: u32,
    /// Agent steps between check-ins.
    pub steps_per_poll: u32,
    /// Shares of the devices, in percent, that suffer each fault on their updates.
    pub power_cut_percent: f64,
    pub corrupt_percent: f64,
    pub drop_percent: f64,
    /// Share of the devices whose new agent crashes in its trial (they go back on their own).
    pub failing_trial_percent: f64,
    /// Share of the devices that never come online.
    pub offline_percent: f64,
    pub seed: u64,
    /// Devices working on an assignment at once (downloading, writing, trying); the others
    /// wait their turn. Waiting check-ins do not count.
    pub max_busy: usize,
    /// Speak HTTP/1.1 (for a server behind a proxy without HTTP/2): a connection per device
    /// talking, a waiting check-in included, so a large fleet polls (`wait_seconds` 0) to stay
    /// under the process's open-file limit.
    pub http1: bool,
    /// The operator token that registers the devices (the role needs `manage-devices`).
    pub token: Option<String>,
    /// Devices send the credentials their registration gave them; off only against a server
    /// whose device routes take none (the scale benchmark's run without authentication).
    pub device_credentials: bool,
}

impl FleetConfig {
    pub fn new(server: &str, devices: usize) -> FleetConfig {
        FleetConfig {
            server: server.trim_end_matches('/').to_string(),
            replicas: Vec::new(),
            devices,
            regions: ["eu-west", "us-east", "ap-south"]
                .map(String::from)
                .to_vec(),
            device_model: "sensor-v1".into(),
            prefix: "sim".into(),
            labels: Vec::new(),
            poll: Duration::from_millis(500),
            wait_seconds: 60,
            steps_per_poll: 10,
            power_cut_percent: 0.0,
            corrupt_percent: 0.0,
            drop_percent: 0.0,
            failing_trial_percent: 0.0,
            offline_percent: 0.0,
            seed: 1,
            max_busy: 4096,
            http1: false,
            token: None,
            device_credentials: true,
        }
    }
}

/// Counters the fleet keeps while it runs; read them for a live view.
#[derive(Debug, Default)]
pub struct Progress {
    pub online: AtomicU64,
    /// Check-ins sent, and those answered (a long poll is answered when there is work or its
    /// wait runs out).
    pub check_ins: AtomicU64,
    pub check_ins_answered: AtomicU64,
    pub confirmed: AtomicU64,
    pub reverted: AtomicU64,
    pub rolled_back: AtomicU64,
    pub failed: AtomicU64,
    /// Jobs the server called off before the new version was activated.
    pub called_off: AtomicU64,
    pub power_cuts: AtomicU64,
    pub resumed: AtomicU64,
    pub refetched: AtomicU64,
    pub reports: AtomicU64,
    /// Time from receiving an assignment to its last report, per update, in microseconds.
    latencies: Mutex<Vec<u64>>,
    /// The version each device runs.
    versions: Mutex<BTreeMap<String, String>>,
}

impl Progress {
    /// How many devices run each version.
    pub fn versions(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for v in self
            .versions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            *counts.entry(v.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// The p50 and p99 time per update.
    pub fn latency_percentiles(&self) -> Option<(Duration, Duration)> {
        let mut l = self
            .latencies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if l.is_empty() {
            return None;
        }
        l.sort_unstable();
        let at = |p: f64| Duration::from_micros(l[((l.len() - 1) as f64 * p) as usize]);
        Some((at(0.5), at(0.99)))
    }
}

/// The fleet at the end.
#[derive(Debug, Clone)]
pub struct Summary {
    pub devices: usize,
    pub versions: BTreeMap<String, usize>,
    pub confirmed: u64,
    pub reverted: u64,
    pub rolled_back: u64,
    pub failed: u64,
    pub called_off: u64,
    pub power_cuts: u64,
    pub resumed: u64,
    pub refetched: u64,
    /// Devices left without a valid agent: must be 0.
    pub bricked: usize,
    pub check_ins: u64,
    pub reports: u64,
    pub latency: Option<(Duration, Duration)>,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "devices        {}", self.devices)?;
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(v, n)| format!("{n} on {v}"))
            .collect();
        writeln!(f, "running        {}", versions.join(", "))?;
        writeln!(
            f,
            "updates        {} confirmed, {} reverted by the device after a failed trial, {} sent back by a rollback, {} failed, {} called off before activation",
            self.confirmed, self.reverted, self.rolled_back, self.failed, self.called_off
        )?;
        writeln!(
            f,
            "faults         {} power cuts survived, {} downloads resumed, {} fetched again after a failed verification",
            self.power_cuts, self.resumed, self.refetched
        )?;
        writeln!(f, "bricked        {}", self.bricked)?;
        writeln!(
            f,
            "requests       {} check-ins, {} report requests",
            self.check_ins, self.reports
        )?;
        if let Some((p50, p99)) = self.latency {
            writeln!(
                f,
                "time/update    p50 {:.0} ms, p99 {:.0} ms",
                p50.as_secs_f64() * 1000.0,
                p99.as_secs_f64() * 1000.0
            )?;
        }
        let updates = self.confirmed + self.reverted + self.rolled_back + self.failed;
        write!(
            f,
            "ran            {:.1} s: {:.0} updates per minute",
            self.elapsed.as_secs_f64(),
            updates as f64 * 60.0 / self.elapsed.as_secs_f64().max(0.001)
        )
    }
}

/// A transport that counts what it sends in the fleet's [`Progress`].
struct Counted<'p, T> {
    inner: T,
    progress: &'p Progress,
}

impl<T: Transport> Transport for Counted<'_, T> {
    async fn check_in(
        &self,
        device: Device<'_>,
        c: &CheckIn,
        wait: u32,
    ) -> Result<CheckInAnswer, TransportError> {
        // Counted when sent: a long poll may wait a while for its answer.
        self.progress.check_ins.fetch_add(1, Ordering::Relaxed);
        let answer = self.inner.check_in(device, c, wait).await;
        if answer.is_ok() {
            self.progress
                .check_ins_answered
                .fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    async fn report(
        &self,
        device: Device<'_>,
        reports: Vec<Report>,
    ) -> Result<Vec<ReportAnswer>, TransportError> {
        let answer = self.inner.report(device, reports).await;
        self.progress.reports.fetch_add(1, Ordering::Relaxed);
        answer
    }

    async fn download(
        &self,
        device: Device<'_>,
        url: &str,
        offset: u64,
    ) -> Result<Vec<u8>, TransportError> {
        self.inner.download(device, url, offset).await
    }
}

/// Why a fleet could not start.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("registering devices {first}..: {source}")]
    Register {
        first: String,
        #[source]
        source: ClientError,
    },
    #[error("connecting to the server: {0}")]
    Connect(#[source] ClientError),
    #[error("device {device}: {source}")]
    Factory {
        device: String,
        #[source]
        source: FactoryError,
    },
}

/// Devices registered per request.
const REGISTRATION_BATCH: usize = 5_000;

/// Devices sharing one HTTP/2 connection to the server. Each has at most one request open (a
/// waiting check-in included), so this stays under the server's 200 streams per connection;
/// 100,000 devices take 782 connections, far below the process's file limit.
pub const DEVICES_PER_CONNECTION: usize = 128;

/// A running fleet.
pub struct SimulatedFleet {
    pub progress: Arc<Progress>,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<Option<SimDevice>>>,
    started: Instant,
    devices: usize,
}

impl SimulatedFleet {
    /// Registers the devices with the server (already registered ones are taken as they are)
    /// and starts them, each with `factory` installed.
    pub async fn start(
        config: FleetConfig,
        device_config: DeviceConfig,
        factory: &Release,
    ) -> Result<SimulatedFleet, FleetError> {
        let client = Client::with_config(ClientConfig {
            token: config.token.clone(),
            ..ClientConfig::new(&config.server)
        })
        .map_err(FleetError::Connect)?;
        // Devices speak HTTP/2 to the server, many to a connection, as behind a gateway: one
        // connection per device would run out of file descriptors and ports long before
        // 100,000 devices, and a waiting check-in holds its stream for up to `wait_seconds`.
        let connections = if config.http1 {
            vec![client.retrying(Retry::ONCE)]
        } else {
            let servers: Vec<&String> = std::iter::once(&config.server)
                .chain(&config.replicas)
                .collect();
            (0..config.devices.div_ceil(DEVICES_PER_CONNECTION))
                .map(|i| {
                    Client::with_config(ClientConfig {
                        http2: true,
                        retry: Retry::ONCE,
                        ..ClientConfig::new(servers[i % servers.len()])
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(FleetError::Connect)?
        };
        let progress = Arc::new(Progress::default());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut rng = rand::rngs::StdRng::seed_from_u64(config.seed);
        let mut tasks = Vec::with_capacity(config.devices);
        let version = factory.manifest.version.to_string();
        let busy = Arc::new(tokio::sync::Semaphore::new(config.max_busy.max(1)));
        let modules = Modules::new(hotswap_device_vm::agent::AgentLimits::default());
        // Registered in batches (one transaction each); devices already registered keep their
        // records and get new credentials, so a fleet can start over against the same server.
        let mut tokens: HashMap<String, String> = HashMap::with_capacity(config.devices);
        let ids: Vec<String> = (0..config.devices)
            .map(|n| format!("{}-{n:06}", config.prefix))
            .collect();
        for (chunk_index, chunk) in ids.chunks(REGISTRATION_BATCH).enumerate() {
            let devices = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let n = chunk_index * REGISTRATION_BATCH + i;
                    let mut labels =
                        BTreeMap::from([("simulated".to_string(), "true".to_string())]);
                    if !config.labels.is_empty() {
                        let (k, v) = &config.labels[n % config.labels.len()];
                        labels.insert(k.clone(), v.clone());
                    }
                    DeviceRegistration {
                        device_id: id.clone(),
                        device_model: config.device_model.clone(),
                        region: config.regions[n % config.regions.len()].clone(),
                        labels,
                        groups: Vec::new(),
                        firmware_version: version.clone(),
                    }
                })
                .collect();
            let answer = client
                .register_devices(&DeviceBatch {
                    devices,
                    if_registered: IfRegistered::Reissue,
                })
                .await
                .map_err(|source| FleetError::Register {
                    first: chunk[0].clone(),
                    source,
                })?;
            tokens.extend(answer.tokens.into_iter().map(|t| (t.device_id, t.token)));
        }
        for (n, id) in ids.into_iter().enumerate() {
            let mut device =
                SimDevice::factory(id.clone(), device_config.clone(), factory, modules.clone())
                    .map_err(|source| FleetError::Factory {
                        device: id.clone(),
                        source,
                    })?;
            let token = tokens.remove(&id).unwrap_or_default();
            if config.device_credentials {
                device.token = token;
            }
            let mut roll = |percent: f64| rng.random_bool((percent / 100.0).clamp(0.0, 1.0));
            device.faults = Faults {
                power_cut: roll(config.power_cut_percent),
                corrupt_download: roll(config.corrupt_percent),
                drop_connection: roll(config.drop_percent),
                failing_trial: roll(config.failing_trial_percent),
            };
            let offline = roll(config.offline_percent);
            progress
                .versions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id, version.clone());
            let start_after =
                Duration::from_micros(rng.random_range(0..config.poll.as_micros() as u64 + 1));
            let once = connections[(n / DEVICES_PER_CONNECTION) % connections.len()].clone();
            let shared = Shared {
                transport: HttpTransport {
                    retrying: once.retrying(Retry::default()),
                    once,
                },
                config: config.clone(),
                progress: progress.clone(),
                stopped: stopped.clone(),
                busy: busy.clone(),
            };
            tasks.push(tokio::spawn(run_device(
                device,
                shared,
                offline,
                start_after,
            )));
        }
        Ok(SimulatedFleet {
            progress,
            stop,
            tasks,
            started: Instant::now(),
            devices: config.devices,
        })
    }

    /// Stops every device and sums up.
    pub async fn stop(self) -> Summary {
        let _ = self.stop.send(true);
        let mut bricked = 0;
        for task in self.tasks {
            match task.await {
                Ok(Some(device)) if !device.version().is_empty() => {}
                Ok(None) => {} // offline all along
                _ => bricked += 1,
            }
        }
        let p = &self.progress;
        Summary {
            devices: self.devices,
            versions: p.versions(),
            confirmed: p.confirmed.load(Ordering::Relaxed),
            reverted: p.reverted.load(Ordering::Relaxed),
            rolled_back: p.rolled_back.load(Ordering::Relaxed),
            failed: p.failed.load(Ordering::Relaxed),
            called_off: p.called_off.load(Ordering::Relaxed),
            power_cuts: p.power_cuts.load(Ordering::Relaxed),
            resumed: p.resumed.load(Ordering::Relaxed),
            refetched: p.refetched.load(Ordering::Relaxed),
            bricked,
            check_ins: p.check_ins.load(Ordering::Relaxed),
            reports: p.reports.load(Ordering::Relaxed),
            latency: p.latency_percentiles(),
            elapsed: self.started.elapsed(),
        }
    }
}

/// What every device of a fleet shares.
struct Shared {
    /// The HTTP/2 connection this device shares.
    transport: HttpTransport,
    config: FleetConfig,
    progress: Arc<Progress>,
    /// Becomes true when the fleet stops.
    stopped: tokio::sync::watch::Receiver<bool>,
    busy: Arc<tokio::sync::Semaphore>,
}

async fn run_device(
    mut device: SimDevice,
    shared: Shared,
    offline: bool,
    start_after: Duration,
) -> Option<SimDevice> {
    let Shared {
        transport,
        config,
        progress,
        mut stopped,
        busy,
    } = shared;
    if offline {
        return None;
    }
    // Sleeps `pause`; false when the fleet stopped meanwhile.
    async fn pause(stopped: &mut tokio::sync::watch::Receiver<bool>, pause: Duration) -> bool {
        let slept = tokio::select! {
            _ = tokio::time::sleep(pause) => true,
            _ = stopped.wait_for(|s| *s) => false,
        };
        slept && !*stopped.borrow()
    }
    if !pause(&mut stopped, start_after).await {
        return Some(device);
    }
    progress.online.fetch_add(1, Ordering::Relaxed);
    let transport = Counted {
        inner: transport,
        progress: &progress,
    };
    while !*stopped.borrow() {
        device.run_agent(config.steps_per_poll);
        let body = device.check_in();
        let credential = Device {
            id: &device.id,
            token: &device.token,
        };
        let asked = transport.check_in(credential, &body, config.wait_seconds);
        // A waiting check-in is given up when the fleet stops.
        let answer = tokio::select! {
            answer = asked => answer.ok(),
            _ = stopped.wait_for(|s| *s) => break,
        };
        let answered = answer.is_some();
        if let Some(a) = answer.and_then(|a| a.assignment) {
            let Ok(turn) = busy.acquire().await else {
                break;
            };
            let started = Instant::now();
            let before = (device.power_cuts, device.resumed, device.refetched);
            let outcome = device.work(&transport, &a).await;
            drop(turn);
            for (counter, now, then) in [
                (&progress.power_cuts, device.power_cuts, before.0),
                (&progress.resumed, device.resumed, before.1),
                (&progress.refetched, device.refetched, before.2),
            ] {
                counter.fetch_add(u64::from(now - then), Ordering::Relaxed);
            }
            let counter = match &outcome {
                Outcome::Confirmed(_) | Outcome::Staged(_) => &progress.confirmed,
                Outcome::Reverted { .. } => &progress.reverted,
                Outcome::RolledBack(_) => &progress.rolled_back,
                Outcome::Failed(_) => &progress.failed,
                Outcome::CalledOff => &progress.called_off,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            progress
                .latencies
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(started.elapsed().as_micros() as u64);
            progress
                .versions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(device.id.clone(), device.version());
            // The report that ended the job carried the device's health: the next check-in
            // comes after the usual pause.
        } else if answered && config.wait_seconds > 0 {
            // The long poll ran out with nothing to do: ask again straight away.
            continue;
        }
        if !pause(&mut stopped, config.poll).await {
            break;
        }
    }
    Some(device)
}

#[cfg(test)]
mod tests;
