//! The README's main command: the whole mission at once. A server on a temporary data directory,
//! agent versions 1.0.0, 2.0.0 and a broken 3.0.0 registered and signed, a simulated fleet on the
//! device VM running 1.0.0, a canary rollout of 2.0.0 to completion, then a rollout of 3.0.0 that
//! the health policy stops and rolls back.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hotswap_client::Client;
use hotswap_device_vm::Version;
use hotswap_device_vm::device::DeviceConfig;
use hotswap_device_vm::release::ReleaseKey;
use hotswap_protocol::{
    DeploymentRequest, DeploymentState, DeploymentStatus, DeviceState, GroupFilter,
};
use hotswap_server::{ServerConfig, ServerLimits, serve, state};
use hotswap_sim::{FleetConfig, SimulatedFleet, Summary, registration, tagged};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

/// What the demo is told over.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub devices: usize,
    /// Where the server keeps its data; a fresh temporary directory when `None`.
    pub data_dir: Option<PathBuf>,
    /// Draw progress bars (on a terminal); plain lines otherwise.
    pub progress_bars: bool,
    /// Soak time of each canary wave, in seconds.
    pub soak_seconds: u32,
    /// Leave the server running once the demo is done, with a user to sign in to its
    /// dashboard as.
    pub keep_serving: bool,
}

/// How the demo ended.
#[derive(Debug)]
pub struct DemoOutcome {
    pub v2: DeploymentStatus,
    pub v3: DeploymentStatus,
    pub fleet: Summary,
    /// The server, still running, with `keep_serving`.
    pub serving: Option<Serving>,
}

/// The demo's server left running: its dashboard's address and sign-in, and what stops it.
#[derive(Debug)]
pub struct Serving {
    pub url: String,
    pub user: String,
    pub password: String,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<()>>,
    /// The temporary data directory, removed when the server stops.
    _data: Option<tempfile::TempDir>,
}

impl Serving {
    /// Stops the server once its requests in flight are answered.
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(());
        self.server.await?
    }
}

/// The user `--keep-serving` makes to sign in to the dashboard as.
pub const DASHBOARD_USER: &str = "demo";

/// Runs the demo, writing what happens to `out`.
pub async fn run(config: DemoConfig, out: &mut (impl Write + Send)) -> Result<DemoOutcome> {
    // A temporary data directory is removed when the demo ends, however it ends.
    let (dir, temporary) = match &config.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("hotswap-demo-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let key = ReleaseKey::from_seed(*b"hotswap demo release key, 32 by.");
    let server_config = ServerConfig {
        data_dir: dir.clone(),
        database: hotswap_store::Database::Sqlite,
        trusted_keys: vec![key.trusted()],
        limits: ServerLimits::default(),
        tick: Duration::from_millis(100),
        protected_labels: Vec::new(),
        tls: None,
        enrollment: None,
        unchecked_devices: false,
        plugin_limits: Default::default(),
        plugin_ceilings: Default::default(),
        traces: Default::default(),
    };
    let app = state(&server_config)?;
    // The first start made an administrator token: the demo is its operator.
    let token_file = dir.join(hotswap_server::ADMIN_TOKEN_FILE);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop_server, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async {
        let _ = stopped.await;
    }));
    writeln!(
        out,
        "HotSwap demo: server on {url}, data in {}",
        dir.display()
    )?;

    let token = std::fs::read_to_string(&token_file)?.trim().to_string();
    let client = Client::new(&url)?.with_token(&token);
    let agent = hotswap_agents::THRESHOLD_ALARM;
    let releases = [
        (
            key.release(Version::new(1, 0, 0), &tagged(agent, "1.0.0"), 0),
            "threshold alarm",
        ),
        (
            key.release(Version::new(2, 0, 0), &tagged(agent, "2.0.0"), 0),
            "threshold alarm, faster",
        ),
        (
            key.release(
                Version::new(3, 0, 0),
                &tagged(hotswap_agents::FAILING_SELF_TEST, "3.0.0"),
                0,
            ),
            "broken build: its self-test fails",
        ),
    ];
    for (release, notes) in &releases {
        client
            .register_firmware(&registration(release, "sensor-v1", notes))
            .await
            .context("registering firmware")?;
        writeln!(
            out,
            "registered agent {} ({} bytes, signed): {notes}",
            release.manifest.version,
            release.image.len()
        )?;
    }

    let mut fleet_config = FleetConfig::new(&url, config.devices);
    fleet_config.token = Some(token.clone());
    fleet_config.poll = Duration::from_millis(250);
    let device_config = DeviceConfig {
        keys: vec![key.trusted()],
        allow_downgrade: false,
    };
    let fleet = SimulatedFleet::start(fleet_config, device_config, &releases[0].0).await?;
    writeln!(
        out,
        "started {} simulated devices in 3 regions, each on the device VM running agent 1.0.0",
        config.devices
    )?;
    writeln!(
        out,
        "next: 2.0.0 goes out by canary (10% of the devices, then 50%, then all), each wave judged \
         by the health policy; then the broken 3.0.0 the same way, which the policy must stop\n"
    )?;

    let mut outcomes = Vec::new();
    for (version, title) in [
        ("2.0.0", "canary rollout of 2.0.0"),
        ("3.0.0", "canary rollout of the broken 3.0.0"),
    ] {
        writeln!(out, "== {title}")?;
        let request = DeploymentRequest {
            firmware_version: version.to_string(),
            device_model: "sensor-v1".to_string(),
            target_filter: Some(GroupFilter::default()),
            strategy: "canary".to_string(),
            config: Some(json!({
                "initialPercentage": 10,
                "increments": [50, 100],
                "gate": {"soakSeconds": config.soak_seconds},
            })),
            health_config: Some(json!({"pollSeconds": 1})),
            device_timeout_seconds: Some(60),
            ..DeploymentRequest::default()
        };
        let started = client.create_deployment(&request).await?;
        let id = started.deployment.id;
        let status = follow(&client, id, &config, out).await?;
        for w in &status.wave_status {
            // Every device of a wave accounted for: updated, failed, or called off by a rollback
            // before it activated the new version; a wave the rollout never reached says so.
            let counts = if w.started_at.is_none() {
                "not started".to_string()
            } else {
                let mut counts = format!("{} updated, {} failed", w.succeeded, w.failed);
                match w.states.get(&DeviceState::Cancelled).copied().unwrap_or(0) {
                    0 => {}
                    n => counts.push_str(&format!(", {n} called off by the rollback")),
                }
                counts
            };
            writeln!(
                out,
                "  wave {} ({}): {} devices, {counts}",
                w.index + 1,
                w.name,
                w.devices,
            )?;
        }
        writeln!(
            out,
            "deployment {id}: {} ({})",
            status.deployment.state,
            status.deployment.reason.as_deref().unwrap_or("")
        )?;
        outcomes.push(status);
    }
    // Let every device check in once more, then sum up.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let summary = fleet.stop().await;
    writeln!(out, "\n== the fleet at the end\n{summary}")?;
    let serving = if config.keep_serving {
        let password = hex::encode(rand_bytes()?);
        client
            .create_user(&hotswap_protocol::UserRequest {
                name: DASHBOARD_USER.to_string(),
                role: hotswap_protocol::Role::Admin,
                password: password.clone(),
            })
            .await
            .context("making the dashboard's user")?;
        Some(Serving {
            url,
            user: DASHBOARD_USER.to_string(),
            password,
            stop: stop_server,
            server,
            _data: temporary,
        })
    } else {
        let _ = stop_server.send(());
        server.await??;
        drop(temporary);
        None
    };
    let [v2, v3]: [DeploymentStatus; 2] = outcomes
        .try_into()
        .map_err(|_| anyhow::anyhow!("two deployments were followed"))?;
    Ok(DemoOutcome {
        v2,
        v3,
        fleet: summary,
        serving,
    })
}

/// Twelve random bytes: the dashboard user's password, in hex.
fn rand_bytes() -> Result<[u8; 12]> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    Ok(bytes)
}

/// Follows a deployment to its end with a progress bar per wave.
async fn follow(
    client: &Client,
    id: i64,
    config: &DemoConfig,
    out: &mut (impl Write + Send),
) -> Result<DeploymentStatus> {
    let bars = MultiProgress::with_draw_target(if config.progress_bars {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("  {prefix:<22} [{bar:40}] {pos:>5}/{len:<5} {msg}")
        .expect("a valid template")
        .progress_chars("=> ");
    let mut wave_bars: Vec<ProgressBar> = Vec::new();
    let mut seen_events = std::collections::HashSet::new();
    loop {
        let status = client.status(id).await?;
        for (i, w) in status.wave_status.iter().enumerate() {
            if wave_bars.len() <= i {
                let bar = bars.add(ProgressBar::new(u64::from(w.devices)));
                bar.set_style(style.clone());
                bar.set_prefix(format!("wave {} ({})", i + 1, w.name));
                wave_bars.push(bar);
            }
            wave_bars[i].set_position(u64::from(w.succeeded + w.failed));
            wave_bars[i].set_message(format!("{} ok, {} failed", w.succeeded, w.failed));
        }
        // Events as plain lines: wave starts, verdicts, failures (the first few of each kind).
        for e in &status.recent_events {
            if e.device_id.is_none() && seen_events.insert((e.at, e.message.clone())) {
                bars.suspend(|| writeln!(out, "  {}", e.message))?;
            }
        }
        use DeploymentState::*;
        if matches!(
            status.deployment.state,
            Completed | RolledBack | Paused | Cancelled
        ) {
            for b in &wave_bars {
                b.abandon();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Soak time of each canary wave, in seconds.
    #[arg(long, default_value_t = 2)]
    pub soak_seconds: u32,
    /// Keep the server's data here instead of a temporary directory.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Once done, keep the server running and print where its dashboard is and how to sign
    /// in, until Ctrl-C.
    #[arg(long)]
    pub keep_serving: bool,
}

impl From<DemoArgs> for DemoConfig {
    fn from(a: DemoArgs) -> Self {
        DemoConfig {
            devices: a.devices,
            data_dir: a.data_dir,
            progress_bars: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            soak_seconds: a.soak_seconds,
            keep_serving: a.keep_serving,
        }
    }
}

/// Runs the demo and checks it went as it should: 2.0.0 completed, 3.0.0 rolled back, no
/// device bricked.
pub async fn execute(config: DemoConfig, out: &mut (impl Write + Send)) -> Result<()> {
    use hotswap_protocol::DeploymentState;
    // Ctrl-C or SIGTERM stop it as they stop every long-running command: saying so, and how far
    // it got (the lines above). Its server and fleet are dropped with it.
    let outcome = tokio::select! {
        outcome = run(config, &mut *out) => outcome?,
        r = crate::signals::stopped() => {
            r?;
            anyhow::bail!("the demo was stopped by a signal before it finished");
        }
    };
    let mut wrong = Vec::new();
    if outcome.v2.deployment.state != DeploymentState::Completed {
        wrong.push(format!(
            "the rollout of 2.0.0 ended {}",
            outcome.v2.deployment.state
        ));
    }
    if outcome.v3.deployment.state != DeploymentState::RolledBack {
        wrong.push(format!(
            "the rollout of 3.0.0 ended {}",
            outcome.v3.deployment.state
        ));
    }
    if outcome.fleet.bricked > 0 {
        wrong.push(format!("{} devices bricked", outcome.fleet.bricked));
    }
    if !wrong.is_empty() {
        anyhow::bail!("the demo did not go as it should: {}", wrong.join("; "));
    }
    writeln!(
        out,
        "\nok: 2.0.0 went out wave by wave; the broken 3.0.0 was stopped in its canary wave and rolled back; no device bricked"
    )?;
    let Some(serving) = outcome.serving else {
        writeln!(
            out,
            "to see both deployments in the web dashboard, run the demo with --keep-serving"
        )?;
        return Ok(());
    };
    writeln!(
        out,
        "the dashboard: {}/ (user `{}`, password {}); Ctrl-C stops the server",
        serving.url, serving.user, serving.password
    )?;
    out.flush()?;
    crate::signals::stopped().await?;
    serving.stop().await
}
