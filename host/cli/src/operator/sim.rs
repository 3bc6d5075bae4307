//! `hotswap sim`: simulated devices on the device VM against a server, until stopped or
//! `--seconds` pass.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use hotswap_device_vm::device::DeviceConfig;

use crate::connection::{Connection, ServerArgs};
use crate::keys::ReleaseKeyArgs;
use crate::signals::stopped;

#[derive(Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// The devices trust this release key's public key and come from the factory with the
    /// example agent signed by it.
    #[command(flatten)]
    pub key: ReleaseKeyArgs,
    /// The version the devices run from the factory.
    #[arg(long, default_value = "1.0.0")]
    pub factory_version: String,
    /// Regions, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "eu-west,us-east,ap-south"
    )]
    pub regions: Vec<String>,
    #[arg(long, default_value = "sensor-v1")]
    pub device_model: String,
    #[arg(long, default_value = "sim")]
    pub prefix: String,
    /// Milliseconds between check-ins when not waiting in a long poll, and after one that
    /// failed.
    #[arg(long, default_value_t = 1000)]
    pub poll_ms: u64,
    /// Seconds a check-in waits for an assignment (long poll, at most 60); 0 polls every
    /// `--poll-ms` instead.
    #[arg(long, default_value_t = 60)]
    pub wait_seconds: u32,
    /// Speak HTTP/1.1 instead of HTTP/2 (a server behind a proxy without HTTP/2): each
    /// device talking holds a connection, a waiting check-in included, so give a large
    /// fleet `--wait-seconds 0`.
    #[arg(long)]
    pub http1: bool,
    /// Percent of devices whose power fails while they write an update.
    #[arg(long, default_value_t = 0.0)]
    pub power_cut_percent: f64,
    /// Percent of devices whose download arrives with a corrupted byte.
    #[arg(long, default_value_t = 0.0)]
    pub corrupt_percent: f64,
    /// Percent of devices whose download connection drops halfway.
    #[arg(long, default_value_t = 0.0)]
    pub drop_percent: f64,
    /// Percent of devices whose new agent crashes in its trial (they revert on their own).
    #[arg(long, default_value_t = 0.0)]
    pub failing_trial_percent: f64,
    /// Percent of devices that never come online.
    #[arg(long, default_value_t = 0.0)]
    pub offline_percent: f64,
    /// Stop after this many seconds (default: at Ctrl-C or SIGTERM).
    #[arg(long)]
    pub seconds: Option<u64>,
}

impl SimArgs {
    /// The fleet's configuration, against the server of `c` with its token.
    pub fn fleet(&self, c: &Connection) -> hotswap_sim::FleetConfig {
        let a = self;
        hotswap_sim::FleetConfig {
            token: Some(c.token.clone()),
            regions: a.regions.clone(),
            device_model: a.device_model.clone(),
            prefix: a.prefix.clone(),
            poll: Duration::from_millis(a.poll_ms),
            wait_seconds: a.wait_seconds,
            http1: a.http1,
            power_cut_percent: a.power_cut_percent,
            corrupt_percent: a.corrupt_percent,
            drop_percent: a.drop_percent,
            failing_trial_percent: a.failing_trial_percent,
            offline_percent: a.offline_percent,
            ..hotswap_sim::FleetConfig::new(&c.url, a.devices)
        }
    }
}

pub async fn execute(a: SimArgs) -> Result<()> {
    let key = a.key.key()?;
    let version = crate::keys::factory_version(&a.factory_version)?;
    let config = a.fleet(&a.server.connection()?);
    let image = hotswap_sim::tagged(hotswap_agents::THRESHOLD_ALARM, &version.to_string());
    let factory = key.release(version, &image, 0);
    let device_config = DeviceConfig {
        keys: vec![key.trusted()],
        allow_downgrade: false,
    };
    eprintln!(
        "hotswap sim: {} devices on {version}, trusting release key {} (the server needs `--trusted-key {}`); Ctrl-C stops",
        config.devices,
        key.trusted().id,
        hex::encode(key.trusted().key.as_bytes())
    );
    let server = config.server.clone();
    let fleet = hotswap_sim::SimulatedFleet::start(config, device_config, &factory)
        .await
        .with_context(|| format!("starting the fleet against {server}"))?;
    let progress = fleet.progress.clone();
    let deadline = a
        .seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut stop = std::pin::pin!(stopped());
    let mut line = crate::progress::Line::stderr();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let versions: Vec<String> = progress
            .versions()
            .iter()
            .map(|(v, n)| format!("{n}×{v}"))
            .collect();
        line.show(&format!(
            "online {} | confirmed {} reverted {} rolled back {} failed {} | {}",
            progress.online.load(Relaxed),
            progress.confirmed.load(Relaxed),
            progress.reverted.load(Relaxed),
            progress.rolled_back.load(Relaxed),
            progress.failed.load(Relaxed),
            versions.join(" ")
        ));
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
    }
    line.done();
    let summary = fleet.stop().await;
    println!("{summary}");
    if summary.bricked > 0 {
        anyhow::bail!("{} devices bricked", summary.bricked);
    }
    Ok(())
}
