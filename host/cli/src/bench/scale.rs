//! `hotswap scale`: the scale benchmark. The server runs as a process of its own (this same
//! binary, `serve`), the simulated fleet in this one; every device is updated end to end (check-in,
//! Range download, verify, write, trial, confirm, every report durable). Reports devices per
//! minute, time per device, requests, and each process's peak memory and CPU time.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use hotswap_client::Client;
use hotswap_device_vm::Version;
use hotswap_device_vm::device::DeviceConfig;
use hotswap_device_vm::release::ReleaseKey;
use hotswap_protocol::{DeploymentRequest, DeploymentState, DeviceState, GroupFilter};
use hotswap_sim::{FleetConfig, SimulatedFleet, registration, tagged};
use serde_json::json;

#[derive(Args)]
pub struct ScaleArgs {
    #[arg(long, default_value_t = 10_000)]
    pub devices: usize,
    /// Milliseconds between a device's check-ins while it has nothing to do and does not wait
    /// in a long poll.
    #[arg(long, default_value_t = 2000)]
    pub poll_ms: u64,
    /// Seconds a check-in waits for an assignment (long poll, at most 60); 0 polls every
    /// `--poll-ms` instead.
    #[arg(long, default_value_t = 60)]
    pub wait_seconds: u32,
    /// The canary's first wave, in percent of the devices.
    #[arg(long, default_value_t = 1.0)]
    pub canary_percent: f64,
    /// Devices authenticated (`on`), not (`off`), or runs of both to compare (`compare`).
    #[arg(long, value_enum, default_value_t = Authentication::On)]
    pub authentication: Authentication,
    /// The server's traces sent to a receiver in this process (`on`), none (`off`), or runs
    /// of both to compare (`compare`).
    #[arg(long, value_enum, default_value_t = Tracing::Off)]
    pub tracing: Tracing,
    /// Runs of each kind.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Roll the last wave back and time it: by the `health` policy (some devices' new agent
    /// crashes in its trial) or by the `operator` (once most devices confirmed).
    #[arg(long, value_enum)]
    pub rollback: Option<Rollback>,
    /// Where the server keeps its state: `sqlite`, `postgres`, `replicas` (three servers on
    /// one PostgreSQL database), or `compare` (a run of each, side by side).
    #[arg(long, value_enum, default_value_t = Database::Sqlite)]
    pub database: Database,
    /// The PostgreSQL server runs on PostgreSQL make a database of their own on (dropped
    /// after each run).
    #[arg(long, env = "HOTSWAP_BENCH_POSTGRES", default_value = hotswap_store::testing::DEFAULT_TEST_POSTGRES)]
    pub postgres: String,
}

impl From<ScaleArgs> for ScaleConfig {
    fn from(a: ScaleArgs) -> Self {
        ScaleConfig {
            devices: a.devices,
            poll: Duration::from_millis(a.poll_ms),
            wait_seconds: a.wait_seconds,
            canary_percent: a.canary_percent,
            authentication: a.authentication,
            tracing: a.tracing,
            runs: a.runs,
            rollback: a.rollback,
            database: a.database,
            postgres: a.postgres,
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ScaleConfig {
    pub devices: usize,
    /// Between a device's check-ins while it has nothing to do.
    pub poll: Duration,
    /// How long a device's check-in waits for an assignment (long poll); 0: plain polling.
    pub wait_seconds: u32,
    /// The canary's first wave, in percent.
    pub canary_percent: f64,
    /// Whether the devices authenticate, or runs of both kinds to compare.
    pub authentication: Authentication,
    /// Whether the server sends traces (to a receiver in this process), or runs of both kinds
    /// to compare.
    pub tracing: Tracing,
    /// Runs of each kind.
    pub runs: usize,
    /// Roll the last wave back, and time it.
    pub rollback: Option<Rollback>,
    /// Where the server keeps its state, or runs of each to compare.
    pub database: Database,
    /// The PostgreSQL server the runs on PostgreSQL make a database of their own on (a URL
    /// whose database they are created from); each is dropped after its run.
    pub postgres: String,
}

/// Where the servers of a run keep their state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Database {
    /// One server, SQLite in its data directory.
    Sqlite,
    /// One server on PostgreSQL.
    Postgres,
    /// [`REPLICAS`] servers on one PostgreSQL database, the devices' connections dealt out
    /// over them.
    Replicas,
    /// A run of each, one after the other, side by side.
    Compare,
}

/// How many servers a `replicas` run starts.
pub const REPLICAS: usize = 3;

/// The store of one kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Store {
    Sqlite,
    Postgres { replicas: usize },
}

/// Who rolls the last wave back in a rollback run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Rollback {
    /// The health policy: [`FAILING_TRIAL_PERCENT`] of the devices crash in their trial, and
    /// the last wave's failures go over the failure budget (the canary's stay under it): a
    /// [`ROLLBACK_BUDGET_SHARE`] of the failures the last wave expects.
    Health,
    /// The operator, once [`OPERATOR_ROLLBACK_AT_PERCENT`] of the devices confirmed.
    Operator,
}

/// In a health rollback run, the share of devices whose new agent crashes in its trial.
pub const FAILING_TRIAL_PERCENT: f64 = 1.0;
/// In a health rollback run, the failed devices a wave tolerates, as a share of the failures
/// the last wave expects: at 100,000 devices and a 1% canary, the canary expects 10 failures,
/// the last wave 990, and the budget is 247.
pub const ROLLBACK_BUDGET_SHARE: f64 = 0.25;
/// In an operator rollback run, the share of the fleet confirmed on the new version when the
/// operator rolls back: nearly every device must go back.
pub const OPERATOR_ROLLBACK_AT_PERCENT: u32 = 90;
/// The original design's target for an automated rollback, in seconds.
pub const ROLLBACK_TARGET_SECONDS: f64 = 120.0;

/// Which runs the benchmark makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Authentication {
    /// Every device checks in, reports and downloads with its own token (what a real server
    /// does).
    On,
    /// The server takes no device credential (`serve --benchmark-unchecked-devices`).
    Off,
    /// Runs without and with authentication, one after the other, and what authentication
    /// costs.
    Compare,
}

/// Which runs the benchmark makes, as to traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tracing {
    /// The server sends its spans over OTLP/HTTP to a receiver in the benchmark's process
    /// ([`super::otlp`]), which counts them.
    On,
    /// No endpoint: traces off.
    Off,
    /// Runs without and with traces, one after the other, and what traces cost.
    Compare,
}

/// One kind of run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    authenticated: bool,
    traced: bool,
    store: Store,
}

impl Variant {
    fn name(self) -> String {
        let mut name = String::from(if self.authenticated {
            "authenticated"
        } else {
            "without credentials"
        });
        if self.traced {
            name.push_str(", traced");
        }
        match self.store {
            Store::Sqlite => name.push_str(", SQLite"),
            Store::Postgres { replicas: 1 } => name.push_str(", PostgreSQL"),
            Store::Postgres { replicas } => {
                name.push_str(&format!(", {replicas} replicas on PostgreSQL"));
            }
        }
        name
    }
}

/// What one run measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    elapsed: Duration,
    /// Every server process's.
    server_cpu_per_device: Duration,
    /// PostgreSQL's processes' (zero on SQLite, whose work is in the server's).
    database_cpu_per_device: Duration,
    /// The servers' peaks, added.
    server_peak_rss_bytes: u64,
}

/// Peak resident memory and CPU time of a process, from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub peak_rss_bytes: u64,
    pub cpu: Duration,
}

/// Reads `/proc/<pid>/status` (VmHWM) and `/proc/<pid>/stat` (utime + stime).
pub fn usage(pid: &str) -> Usage {
    usage_with(pid, false)
}

/// The CPU time of every PostgreSQL process on this machine, those the server reaped included
/// (its children's time is counted in its own once they exit).
fn postgres_cpu() -> Duration {
    let mut cpu = Duration::ZERO;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres" {
            cpu += usage_with(&pid, true).cpu;
        }
    }
    cpu
}

/// [`usage`], with the time of the children it waited for when `children`.
fn usage_with(pid: &str, children: bool) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_rss_bytes = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name and state.
    let clock_ticks = 100; // USER_HZ on Linux
    // cutime and cstime follow them.
    let reaped = if children { ticks(13) + ticks(14) } else { 0 };
    let cpu = Duration::from_millis((ticks(11) + ticks(12) + reaped) * 1000 / clock_ticks);
    Usage {
        peak_rss_bytes,
        cpu,
    }
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark and prints its figures.
pub async fn run(config: ScaleConfig, out: &mut impl Write) -> Result<()> {
    let store = match config.database {
        Database::Postgres => Store::Postgres { replicas: 1 },
        Database::Replicas => Store::Postgres { replicas: REPLICAS },
        Database::Sqlite | Database::Compare => Store::Sqlite,
    };
    let one = |authenticated: bool, traced: bool| Variant {
        authenticated,
        traced,
        store,
    };
    let authenticated = config.authentication == Authentication::On;
    let traced = config.tracing == Tracing::On;
    let comparing = [
        config.authentication == Authentication::Compare,
        config.tracing == Tracing::Compare,
        config.database == Database::Compare,
    ];
    if comparing.iter().filter(|c| **c).count() > 1 {
        bail!(crate::usage::UsageError(
            "compare one thing at a time: --authentication, --tracing or --database compare".into()
        ));
    }
    // The kinds alternate, so a slower stretch of a shared machine does not fall on one only.
    let (kinds, compared) = match (config.authentication, config.tracing, config.database) {
        (Authentication::Compare, _, _) => (
            vec![one(false, traced), one(true, traced)],
            "authentication",
        ),
        (_, Tracing::Compare, _) => (
            vec![one(authenticated, false), one(authenticated, true)],
            "tracing",
        ),
        (_, _, Database::Compare) => (
            [
                Store::Sqlite,
                Store::Postgres { replicas: 1 },
                Store::Postgres { replicas: REPLICAS },
            ]
            .map(|store| Variant {
                store,
                ..one(authenticated, traced)
            })
            .to_vec(),
            "",
        ),
        _ => (vec![one(authenticated, traced)], ""),
    };
    let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); kinds.len()];
    for n in 0..config.runs.max(1) {
        for (k, &kind) in kinds.iter().enumerate() {
            writeln!(
                out,
                "== run {} of {}, devices {}",
                n + 1,
                config.runs.max(1),
                kind.name()
            )?;
            runs[k].push(run_once(&config, kind, out).await?);
        }
    }
    if config.database == Database::Compare {
        writeln!(
            out,
            "side by side (medians of {} runs each):",
            config.runs.max(1)
        )?;
        for (kind, figures) in kinds.iter().zip(&runs) {
            let ms =
                |f: &dyn Fn(&Figures) -> Duration| median(figures, &|x| f(x).as_secs_f64() * 1e3);
            let server = ms(&|f| f.server_cpu_per_device);
            let database = ms(&|f| f.database_cpu_per_device);
            writeln!(
                out,
                "  {:<48} {:>6.1} s end to end; CPU per device: servers {server:.3} ms + database {database:.3} ms = {:.3} ms; servers' peak RSS {:.0} MiB",
                kind.name(),
                median(figures, &|f| f.elapsed.as_secs_f64()),
                server + database,
                median(figures, &|f| f.server_peak_rss_bytes as f64
                    / (1 << 20) as f64)
            )?;
        }
    }
    if let [without, with] = &runs[..] {
        let seconds = |f: &Figures| f.elapsed.as_secs_f64();
        let cpu = |f: &Figures| f.server_cpu_per_device.as_secs_f64() * 1e3;
        let rss = |f: &Figures| f.server_peak_rss_bytes as f64 / (1 << 20) as f64;
        let (t0, t1) = (median(without, &seconds), median(with, &seconds));
        let (c0, c1) = (median(without, &cpu), median(with, &cpu));
        writeln!(
            out,
            "{compared} end to end {t1:.1} s against {t0:.1} s without ({:+.1}%, medians of {} runs each)",
            (t1 / t0 - 1.0) * 100.0,
            with.len()
        )?;
        writeln!(
            out,
            "{compared} server CPU {c1:.3} ms per device against {c0:.3} ms ({:+.1}%); peak RSS {:.0} MiB against {:.0} MiB",
            (c1 / c0 - 1.0) * 100.0,
            median(with, &rss),
            median(without, &rss)
        )?;
    }
    Ok(())
}

/// The median of `f` over `runs`.
fn median(runs: &[Figures], f: &dyn Fn(&Figures) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Starts `hotswap serve` on `port` with its data in `dir`.
fn start_server(
    dir: &std::path::Path,
    port: u16,
    config_file: &std::path::Path,
    key: &ReleaseKey,
    kind: Variant,
    database: Option<&str>,
    traces: Option<&str>,
) -> Result<Server> {
    let mut command = Command::new(std::env::current_exe()?);
    command.arg("serve");
    for variable in hotswap_server::traces::ENDPOINT_VARIABLES {
        command.env_remove(variable);
    }
    command.env_remove("HOTSWAP_DATABASE_URL");
    if let Some(endpoint) = traces {
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    if !kind.authenticated {
        command.arg("--benchmark-unchecked-devices");
    }
    if let Some(url) = database {
        command.arg("--database").arg(url);
    }
    Ok(Server(
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--config")
            .arg(config_file)
            .arg("--trusted-key")
            .arg(hex::encode(key.trusted().key.as_bytes()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the server process")?,
    ))
}

/// The servers' usage, added.
fn servers_usage(pids: &[String]) -> Usage {
    pids.iter()
        .map(|p| usage(p))
        .fold(Usage::default(), |a, u| Usage {
            peak_rss_bytes: a.peak_rss_bytes + u.peak_rss_bytes,
            cpu: a.cpu + u.cpu,
        })
}

/// The servers of one run, with what they share: their URLs (the first made the administrator
/// token), the operator's token, and the run's PostgreSQL database, dropped after them.
struct Servers {
    processes: Vec<Server>,
    urls: Vec<String>,
    token: String,
    _database: Option<hotswap_store::testing::CreatedDatabase>,
}

impl Servers {
    fn pids(&self) -> Vec<String> {
        self.processes
            .iter()
            .map(|s| s.0.id().to_string())
            .collect()
    }
}

/// What the processes had used, and the devices had been answered, at one moment of a run.
#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    servers: Usage,
    simulator: Usage,
    /// Every PostgreSQL process's CPU (zero on SQLite).
    database_cpu: Duration,
    check_ins: u64,
    reports: u64,
}

impl Reading {
    fn take(servers: &[String], fleet: &SimulatedFleet, database: bool) -> Reading {
        use std::sync::atomic::Ordering::Relaxed;
        Reading {
            at: Instant::now(),
            servers: servers_usage(servers),
            simulator: usage("self"),
            database_cpu: if database {
                postgres_cpu()
            } else {
                Duration::ZERO
            },
            check_ins: fleet.progress.check_ins_answered.load(Relaxed),
            reports: fleet.progress.reports.load(Relaxed),
        }
    }
}

/// How a deployment was followed to its end.
struct Followed {
    status: hotswap_protocol::DeploymentStatus,
    /// From the request to its answer: planned and stored.
    planned: Duration,
    /// From the request to the end.
    elapsed: Duration,
    /// When the last wave was seen started, from the request.
    last_wave_at: Option<Duration>,
    /// When a rollback was decided, with what had been used until then.
    verdict: Option<Reading>,
    /// How long each look at the status took: what a dashboard polling it pays.
    status_reads: Vec<Duration>,
}

async fn run_once(config: &ScaleConfig, kind: Variant, out: &mut impl Write) -> Result<Figures> {
    // The server's spans come here, counted; none when the run is not traced.
    let receiver = match kind.traced {
        true => Some(super::otlp::Receiver::start().await?),
        false => None,
    };
    // Removed when the benchmark ends, however it ends.
    let temporary = tempfile::Builder::new()
        .prefix("hotswap-scale-")
        .tempdir()?;
    let key = ReleaseKey::from_seed(*b"hotswap scale benchmark key, 32.");
    let servers = start_servers(
        config,
        kind,
        temporary.path(),
        &key,
        receiver.as_ref().map(|r| r.endpoint()).as_deref(),
    )
    .await?;
    let client = Client::new(&servers.urls[0])?.with_token(&servers.token);
    let agent = hotswap_agents::THRESHOLD_ALARM;
    let v1 = key.release(Version::new(1, 0, 0), &tagged(agent, "1.0.0"), 0);
    let v2 = key.release(Version::new(2, 0, 0), &tagged(agent, "2.0.0"), 0);
    for r in [&v1, &v2] {
        client
            .register_firmware(&registration(r, "sensor-v1", "scale"))
            .await
            .context("registering firmware")?;
    }
    let fleet = start_fleet(config, kind, &servers, &key, &v1, out).await?;
    let pids = servers.pids();
    let on_postgres = kind.store != Store::Sqlite;
    let before = Reading::take(&pids, &fleet, on_postgres);
    let Some(followed) = follow(config, &client, &fleet, &pids, out).await? else {
        writeln!(out, "{}", fleet.stop().await)?;
        bail!("the scale run was stopped before its rollout ended");
    };
    let after = Reading::take(&pids, &fleet, on_postgres);
    let summary = fleet.stop().await;
    report(config, kind, &followed, &before, &after, &summary, out)?;
    if let Some(receiver) = &receiver {
        // What the server still queues is sent within its batch delay.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let spans = receiver.count();
        let (requests, bytes) = receiver.requests();
        writeln!(
            out,
            "traces         {spans} spans received ({:.1} per device) in {requests} OTLP requests, {:.1} MiB",
            spans as f64 / config.devices as f64,
            bytes as f64 / (1 << 20) as f64
        )?;
    }
    drop(servers);
    drop(temporary);
    let expected = match config.rollback {
        None => DeploymentState::Completed,
        Some(_) => DeploymentState::RolledBack,
    };
    let state = followed.status.deployment.state;
    if summary.bricked > 0 || state != expected {
        bail!("the rollout did not complete cleanly: {state}");
    }
    let devices = config.devices.max(1) as u32;
    Ok(Figures {
        elapsed: followed.elapsed,
        server_cpu_per_device: (after.servers.cpu - before.servers.cpu) / devices,
        database_cpu_per_device: after.database_cpu.saturating_sub(before.database_cpu) / devices,
        server_peak_rss_bytes: after.servers.peak_rss_bytes,
    })
}

/// Starts the run's servers one after the other (the first makes the administrator token), on
/// a database of the run's own when it is on PostgreSQL, each waited for until it answers.
async fn start_servers(
    config: &ScaleConfig,
    kind: Variant,
    dir: &std::path::Path,
    key: &ReleaseKey,
    traces: Option<&str>,
) -> Result<Servers> {
    let config_file = dir.join("hotswap.toml");
    std::fs::write(&config_file, "orchestrator-tick-ms = 200\n")?;
    let database = match kind.store {
        Store::Sqlite => None,
        Store::Postgres { .. } => Some(
            hotswap_store::testing::CreatedDatabase::try_on(&config.postgres)
                .with_context(|| format!("making a database on {}", config.postgres))?,
        ),
    };
    let replicas = match kind.store {
        Store::Sqlite => 1,
        Store::Postgres { replicas } => replicas,
    };
    let mut processes = Vec::new();
    let mut urls = Vec::new();
    for i in 0..replicas {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let data = dir.join(if i == 0 {
            "data".into()
        } else {
            format!("data-{i}")
        });
        processes.push(start_server(
            &data,
            port,
            &config_file,
            key,
            kind,
            database.as_ref().map(|d| d.url.as_str()),
            traces,
        )?);
        Client::new(&url)?
            .wait_until_up(Duration::from_millis(100), Duration::from_secs(30))
            .await
            .context("the server did not start within 30 s")?;
        urls.push(url);
    }
    let token_file = dir.join("data").join(hotswap_server::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("reading {}", token_file.display()))?
        .trim()
        .to_string();
    Ok(Servers {
        processes,
        urls,
        token,
        _database: database,
    })
}

/// Registers and boots the simulated devices on `factory`, dealt out over the servers.
async fn start_fleet(
    config: &ScaleConfig,
    kind: Variant,
    servers: &Servers,
    key: &ReleaseKey,
    factory: &hotswap_device_vm::release::Release,
    out: &mut impl Write,
) -> Result<SimulatedFleet> {
    writeln!(out, "starting {} simulated devices...", config.devices)?;
    let mut fleet_config = FleetConfig::new(&servers.urls[0], config.devices);
    fleet_config.replicas = servers.urls[1..].to_vec();
    fleet_config.poll = config.poll;
    fleet_config.wait_seconds = config.wait_seconds;
    fleet_config.steps_per_poll = 1;
    fleet_config.token = Some(servers.token.clone());
    fleet_config.device_credentials = kind.authenticated;
    if config.rollback == Some(Rollback::Health) {
        fleet_config.failing_trial_percent = FAILING_TRIAL_PERCENT;
    }
    let registering = Instant::now();
    let fleet = SimulatedFleet::start(
        fleet_config,
        DeviceConfig {
            keys: vec![key.trusted()],
            allow_downgrade: false,
        },
        factory,
    )
    .await?;
    writeln!(
        out,
        "registered and booted in {:.1} s",
        registering.elapsed().as_secs_f64()
    )?;
    Ok(fleet)
}

/// The run's deployment: a canary of `canary_percent`, then the rest; with a rollback by the
/// health policy, a failure budget the last wave goes over.
fn deployment(config: &ScaleConfig) -> DeploymentRequest {
    DeploymentRequest {
        firmware_version: "2.0.0".into(),
        device_model: "sensor-v1".into(),
        target_filter: Some(GroupFilter::default()),
        strategy: "canary".into(),
        config: Some(json!({
            "initialPercentage": config.canary_percent,
            "increments": [100],
            "gate": match config.rollback {
                Some(Rollback::Health) => {
                    let last_wave = config.devices as f64 * (1.0 - config.canary_percent / 100.0);
                    let expected = last_wave * FAILING_TRIAL_PERCENT / 100.0;
                    json!({"soakSeconds": 0, "failureBudget": ((expected * ROLLBACK_BUDGET_SHARE) as u32).max(2)})
                }
                _ => json!({"soakSeconds": 0}),
            },
        })),
        health_config: Some(json!({"pollSeconds": 1})),
        ..DeploymentRequest::default()
    }
}

/// Starts the deployment and follows it to its end, reading its status every 250 ms (as the
/// dashboard does); the operator's rollback, when asked for, once most devices confirmed.
/// `None` when a signal stopped it first.
async fn follow(
    config: &ScaleConfig,
    client: &Client,
    fleet: &SimulatedFleet,
    servers: &[String],
    out: &mut impl Write,
) -> Result<Option<Followed>> {
    let mut progress = crate::progress::Line::stderr();
    let started = Instant::now();
    let id = client
        .create_deployment(&deployment(config))
        .await
        .context("starting the deployment")?
        .deployment
        .id;
    let planned = started.elapsed();
    let mut last_wave_at = None;
    let mut verdict = None;
    // Ctrl-C or SIGTERM ends the run early, with what it got to.
    let mut stop = std::pin::pin!(crate::signals::stopped());
    let mut confirmed = 0;
    let mut status_reads: Vec<Duration> = Vec::new();
    let status = loop {
        tokio::select! {
            r = &mut stop => {
                r?;
                progress.done();
                writeln!(
                    out,
                    "stopped after {:.0} s with {confirmed}/{} devices confirmed",
                    started.elapsed().as_secs_f64(),
                    config.devices
                )?;
                return Ok(None);
            }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let asked = Instant::now();
        let status = client.status(id).await?;
        status_reads.push(asked.elapsed());
        confirmed = confirmed_of(&status);
        let d = &status.deployment;
        if last_wave_at.is_none() && d.current_wave + 1 >= d.waves {
            last_wave_at = Some(started.elapsed());
        }
        if verdict.is_none() {
            match config.rollback {
                // A deployment that completed between two looks is rolled back all the same.
                Some(Rollback::Operator)
                    if last_wave_at.is_some()
                        && (d.state == DeploymentState::Completed
                            || u64::from(confirmed) * 100
                                >= config.devices as u64
                                    * u64::from(OPERATOR_ROLLBACK_AT_PERCENT)) =>
                {
                    verdict = Some(Reading::take(servers, fleet, false));
                    client
                        .act(id, hotswap_protocol::DeploymentAction::Rollback)
                        .await
                        .context("rolling back")?;
                    continue;
                }
                Some(_) if d.state == DeploymentState::RollingBack => {
                    verdict = Some(Reading::take(servers, fleet, false));
                }
                _ => {}
            }
        }
        progress.show(&format!(
            "{confirmed}/{} confirmed, {} sent back, {:.0} s",
            config.devices,
            status
                .rollback
                .get(&DeviceState::RolledBack)
                .copied()
                .unwrap_or(0),
            started.elapsed().as_secs_f64()
        ));
        if !matches!(
            d.state,
            DeploymentState::Running | DeploymentState::RollingBack
        ) {
            break status;
        }
    };
    progress.done();
    Ok(Some(Followed {
        status,
        planned,
        elapsed: started.elapsed(),
        last_wave_at,
        verdict,
        status_reads,
    }))
}

/// Prints the run's figures: the rollout, the requests, each process's memory and CPU during
/// it, the rollback, the status reads, where the devices ended.
fn report(
    config: &ScaleConfig,
    kind: Variant,
    followed: &Followed,
    before: &Reading,
    after: &Reading,
    summary: &hotswap_sim::Summary,
    out: &mut impl Write,
) -> Result<()> {
    let status = &followed.status;
    let confirmed = confirmed_of(status);
    let minutes = followed.elapsed.as_secs_f64() / 60.0;
    let per_device = |d: Duration| d.as_secs_f64() * 1e3 / config.devices as f64;
    writeln!(
        out,
        "deployment     {} ({} waves), planned and stored in {:.2} s",
        status.deployment.state,
        status.deployment.waves,
        followed.planned.as_secs_f64()
    )?;
    if let Some(at) = followed.last_wave_at {
        writeln!(
            out,
            "last wave      started {:.1} s after the deployment (seen within 250 ms)",
            at.as_secs_f64()
        )?;
    }
    writeln!(
        out,
        "updated        {confirmed} of {} devices end to end in {:.1} s: {:.0} devices/minute",
        config.devices,
        followed.elapsed.as_secs_f64(),
        confirmed as f64 / minutes
    )?;
    if let Some((p50, p99)) = summary.latency {
        writeln!(
            out,
            "per device     p50 {:.0} ms, p99 {:.0} ms (assignment received to confirmed)",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        )?;
    }
    let check_ins = after.check_ins - before.check_ins;
    writeln!(
        out,
        "requests       {check_ins} check-ins answered and {} report requests during the rollout ({:.1} requests per device, downloads not counted)",
        summary.reports,
        (check_ins + summary.reports) as f64 / config.devices as f64
    )?;
    for (name, b, a) in [
        ("server", before.servers, after.servers),
        ("simulator", before.simulator, after.simulator),
    ] {
        writeln!(
            out,
            "{name:<14} peak RSS {:.0} MiB, CPU {:.1} s during the rollout ({:.2} ms per device)",
            a.peak_rss_bytes as f64 / (1 << 20) as f64,
            (a.cpu - b.cpu).as_secs_f64(),
            per_device(a.cpu - b.cpu)
        )?;
    }
    if kind.store != Store::Sqlite {
        let cpu = after.database_cpu.saturating_sub(before.database_cpu);
        writeln!(
            out,
            "{:<14} CPU {:.1} s during the rollout ({:.2} ms per device), every postgres process",
            "database",
            cpu.as_secs_f64(),
            per_device(cpu)
        )?;
    }
    if let Some(verdict) = &followed.verdict {
        let sent_back: u32 = status.rollback.values().sum();
        let back = status
            .rollback
            .get(&DeviceState::RolledBack)
            .copied()
            .unwrap_or(0);
        writeln!(
            out,
            "rollback       {:?} by the {}: {back} of {sent_back} devices sent back confirmed back on their previous version {:.1} s after the verdict (target: under {ROLLBACK_TARGET_SECONDS:.0} s)",
            status.deployment.state,
            match config.rollback {
                Some(Rollback::Health) => "health policy",
                _ => "operator",
            },
            (after.at - verdict.at).as_secs_f64()
        )?;
        if let Some(reason) = &status.deployment.reason {
            writeln!(out, "               verdict: {reason}")?;
        }
        let requests = (after.check_ins - verdict.check_ins) + (summary.reports - verdict.reports);
        let server_cpu = after.servers.cpu - verdict.servers.cpu;
        writeln!(
            out,
            "               {requests} requests after the verdict ({:.1} per device sent back, downloads not counted); server CPU {:.1} s ({:.2} ms per device sent back)",
            requests as f64 / f64::from(sent_back.max(1)),
            server_cpu.as_secs_f64(),
            server_cpu.as_secs_f64() * 1e3 / f64::from(sent_back.max(1))
        )?;
    }
    let mut reads = followed.status_reads.clone();
    reads.sort();
    if let Some(max) = reads.last() {
        writeln!(
            out,
            "status         {} reads during the rollout: median {:.1} ms, max {:.1} ms; {} bytes of JSON for {} devices",
            reads.len(),
            reads[reads.len() / 2].as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3,
            serde_json::to_vec(status)?.len(),
            config.devices
        )?;
    }
    let versions: Vec<String> = summary
        .versions
        .iter()
        .map(|(v, n)| format!("{n} on {v}"))
        .collect();
    writeln!(out, "versions       {}", versions.join(", "))?;
    writeln!(out, "bricked        {}", summary.bricked)?;
    Ok(())
}

fn confirmed_of(status: &hotswap_protocol::DeploymentStatus) -> u32 {
    status
        .states
        .get(&DeviceState::Confirmed)
        .copied()
        .unwrap_or(0)
}
