//! The `hotswap` command line; `src/main.rs` only calls [`main`].

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::plugin::{Plugin, PluginRuntime, RuntimeConfig, WaveStats};
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "hotswap",
    version,
    about = "HotSwap: programmable, safe rollouts of WebAssembly agents to IoT fleets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: the HTTP API over a data directory.
    Serve {
        /// Where to listen [default: 127.0.0.1:8080].
        #[arg(long, env = "HOTSWAP_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Database, artifacts and compiled plugins [default: ./hotswap-data].
        #[arg(long, env = "HOTSWAP_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Ed25519 public keys (hex) whose signatures firmware must carry; comma-separated in the
        /// environment.
        #[arg(
            long = "trusted-key",
            env = "HOTSWAP_TRUSTED_KEYS",
            value_delimiter = ','
        )]
        trusted_keys: Vec<String>,
        /// A TOML configuration file; flags and environment override it.
        #[arg(long, env = "HOTSWAP_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The whole mission: a server, a simulated fleet on the device VM, a canary rollout of a
    /// good agent, then of a broken one that the health policy rolls back.
    Demo {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Soak time of each canary wave, in seconds.
        #[arg(long, default_value_t = 2)]
        soak_seconds: u32,
        /// Keep the server's data here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run simulated devices (the device VM) against a server until stopped or `--seconds` pass.
    Sim {
        /// The server's URL.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long, default_value_t = 100)]
        devices: usize,
        /// The release signing key's secret, 64 hex digits: the devices trust its public key and
        /// come from the factory with the example agent signed by it.
        #[arg(long, env = "HOTSWAP_RELEASE_KEY")]
        release_key: String,
        /// The version the devices run from the factory.
        #[arg(long, default_value = "1.0.0")]
        factory_version: String,
        /// Regions, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "eu-west,us-east,ap-south"
        )]
        regions: Vec<String>,
        #[arg(long, default_value = "sensor-v1")]
        device_model: String,
        #[arg(long, default_value = "sim")]
        prefix: String,
        /// Milliseconds between check-ins when not waiting in a long poll, and after one that
        /// failed.
        #[arg(long, default_value_t = 1000)]
        poll_ms: u64,
        /// Seconds a check-in waits for an assignment (long poll, at most 60); 0 polls every
        /// `--poll-ms` instead.
        #[arg(long, default_value_t = 60)]
        wait_seconds: u32,
        /// Speak HTTP/1.1 instead of HTTP/2 (a server behind a proxy without HTTP/2): each
        /// device talking holds a connection, a waiting check-in included, so give a large
        /// fleet `--wait-seconds 0`.
        #[arg(long)]
        http1: bool,
        /// Percent of devices whose power fails while they write an update.
        #[arg(long, default_value_t = 0.0)]
        power_cut_percent: f64,
        /// Percent of devices whose download arrives with a corrupted byte.
        #[arg(long, default_value_t = 0.0)]
        corrupt_percent: f64,
        /// Percent of devices whose download connection drops halfway.
        #[arg(long, default_value_t = 0.0)]
        drop_percent: f64,
        /// Percent of devices that never come online.
        #[arg(long, default_value_t = 0.0)]
        offline_percent: f64,
        /// Stop after this many seconds (default: at Ctrl-C).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// The scale benchmark: a server process, N simulated devices here, every device updated
    /// end to end; prints devices per minute, time per device, memory and CPU of each process.
    Scale {
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        /// Milliseconds between a device's check-ins while it has nothing to do and does not wait
        /// in a long poll.
        #[arg(long, default_value_t = 2000)]
        poll_ms: u64,
        /// Seconds a check-in waits for an assignment (long poll, at most 60); 0 polls every
        /// `--poll-ms` instead.
        #[arg(long, default_value_t = 60)]
        wait_seconds: u32,
        /// The canary's first wave, in percent of the devices.
        #[arg(long, default_value_t = 1.0)]
        canary_percent: f64,
    },
    /// Plan a rollout over a generated fleet with every built-in strategy, in the sandbox.
    Plans {
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 3)]
        regions: usize,
    },
    /// Plan a rollout over a generated fleet with one built-in strategy and print the waves.
    Plan {
        /// A built-in strategy: direct, regional, canary, blue-green, rolling.
        #[arg(long)]
        strategy: String,
        /// The strategy's configuration, a JSON object.
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 3)]
        regions: usize,
    },
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Sign an agent with a release key and register it with a server (`POST /api/v1/firmware`),
    /// or print the registration with `--print`.
    Release {
        /// The agent: a core WebAssembly module file, or `example:threshold-alarm` /
        /// `example:failing-self-test` (the example agents, as `hotswap sim` devices run them).
        agent: String,
        /// Its version, major.minor.patch.
        #[arg(long)]
        version: String,
        /// The release signing key's secret, 64 hex digits (the server trusts its public key).
        #[arg(long, env = "HOTSWAP_RELEASE_KEY", hide_env_values = true)]
        release_key: String,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        #[arg(long, default_value = "sensor-v1")]
        device_model: String,
        /// Devices refuse an agent whose counter is below the one they run.
        #[arg(long, default_value_t = 0)]
        security_counter: u32,
        #[arg(long, default_value = "")]
        notes: String,
        /// Print the registration body (JSON) instead of sending it.
        #[arg(long)]
        print: bool,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Check a component the way an upload is checked, then run it once on a generated fleet.
    Check {
        /// The component (.wasm).
        file: PathBuf,
        /// Parameters to run it with, a JSON object.
        #[arg(long, default_value = "{}")]
        config: String,
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        #[arg(long, default_value_t = 3)]
        regions: usize,
    },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(overrides: crate::server::Overrides, config_file: Option<PathBuf>) -> Result<()> {
    let file = match config_file {
        Some(path) => crate::server::FileConfig::load(&path)?,
        None => crate::server::FileConfig::default(),
    };
    let (listen, config) = crate::server::resolve(overrides, file)?;
    if config.trusted_keys.is_empty() {
        tracing::warn!(
            "no trusted release keys: every firmware registration will be refused (pass --trusted-key)"
        );
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let state = crate::server::state(&config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        eprintln!(
            "hotswap: serving on http://{} with data in {}",
            listener.local_addr()?,
            config.data_dir.display()
        );
        // Ctrl-C, or SIGTERM as service managers send it: finish the requests in flight, then stop.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        crate::server::serve(listener, state, async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await
    })
}

/// Parses a release key's secret given as 64 hex digits.
fn parse_release_key(hex_secret: &str) -> Result<hotswap_device_vm::sim::ReleaseKey> {
    let seed: [u8; 32] = hex::decode(hex_secret.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("--release-key must be 64 hex digits (the Ed25519 secret key)")?;
    Ok(hotswap_device_vm::sim::ReleaseKey::from_seed(seed))
}

/// `hotswap release`: signs `agent` as `version` and registers it with `server` (or prints the
/// registration when there is no server).
fn release(
    agent: &str,
    version: &str,
    hex_secret: &str,
    device_model: &str,
    security_counter: u32,
    notes: &str,
    server: Option<&str>,
) -> Result<()> {
    let key = parse_release_key(hex_secret)?;
    let parsed = hotswap_device_vm::Version::parse(version)
        .with_context(|| format!("--version {version:?} is not major.minor.patch"))?;
    let image = match agent {
        // The same bytes a simulated device runs for this version.
        "example:threshold-alarm" => crate::story::tagged(hotswap_agents::THRESHOLD_ALARM, version),
        "example:failing-self-test" => {
            crate::story::tagged(hotswap_agents::FAILING_SELF_TEST, version)
        }
        path => std::fs::read(path).with_context(|| {
            format!("reading the agent {path} (or name example:threshold-alarm or example:failing-self-test)")
        })?,
    };
    let release = key.release(parsed, &image, security_counter);
    let body = crate::story::registration(&release, device_model, notes);
    let Some(server) = server else {
        writeln!(
            io::stdout().lock(),
            "{}",
            serde_json::to_string_pretty(&body)?
        )?;
        return Ok(());
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let url = format!("{}/api/v1/firmware", server.trim_end_matches('/'));
    let answer = runtime
        .block_on(crate::story::post(&reqwest::Client::new(), url, &body))
        .with_context(|| format!("registering {version} for {device_model}"))?;
    writeln!(
        io::stdout().lock(),
        "registered {version} for {device_model}: firmware {}, {} bytes, signed by key {}",
        answer["id"],
        release.image.len(),
        key.trusted().id
    )?;
    Ok(())
}

fn simulate(
    config: crate::sim::FleetConfig,
    key: hotswap_device_vm::sim::ReleaseKey,
    version: hotswap_device_vm::Version,
    seconds: Option<u64>,
) -> Result<()> {
    use std::sync::atomic::Ordering::Relaxed;
    let image = crate::story::tagged(hotswap_agents::THRESHOLD_ALARM, &version.to_string());
    let factory = key.release(version, &image, 0);
    let device_config = hotswap_device_vm::device::DeviceConfig {
        keys: vec![key.trusted()],
        allow_downgrade: false,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let devices = config.devices;
        let server = config.server.clone();
        eprintln!(
            "hotswap sim: {devices} devices on {version}, trusting release key {} (the server needs `--trusted-key {}`); Ctrl-C stops",
            key.trusted().id,
            hex::encode(key.trusted().key.as_bytes())
        );
        let fleet = crate::sim::Fleet::start(config, device_config, &factory)
            .await
            .with_context(|| format!("starting the fleet against {server}"))?;
        let progress = fleet.progress.clone();
        let deadline =
            seconds.map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs(s));
        loop {
            let tick = tokio::time::sleep(std::time::Duration::from_secs(1));
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tick => {}
            }
            let versions: Vec<String> = progress
                .versions()
                .iter()
                .map(|(v, n)| format!("{n}×{v}"))
                .collect();
            eprintln!(
                "online {} | confirmed {} reverted {} rolled back {} failed {} | {}",
                progress.online.load(Relaxed),
                progress.confirmed.load(Relaxed),
                progress.reverted.load(Relaxed),
                progress.rolled_back.load(Relaxed),
                progress.failed.load(Relaxed),
                versions.join(" ")
            );
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                break;
            }
        }
        let summary = fleet.stop().await;
        println!("{summary}");
        if summary.bricked > 0 {
            anyhow::bail!("{} devices bricked", summary.bricked);
        }
        Ok(())
    })
}

fn story(config: crate::story::StoryConfig) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let mut out = io::stdout();
    let outcome = runtime.block_on(crate::story::run(config, &mut out))?;
    let mut wrong = Vec::new();
    if outcome.v2["state"] != "completed" {
        wrong.push(format!(
            "the rollout of 2.0.0 ended {}",
            outcome.v2["state"]
        ));
    }
    if outcome.v3["state"] != "rolled-back" {
        wrong.push(format!(
            "the rollout of 3.0.0 ended {}",
            outcome.v3["state"]
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
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Serve {
        listen,
        data_dir,
        trusted_keys,
        config,
    } = cli.command
    {
        return serve(
            crate::server::Overrides {
                listen,
                data_dir,
                trusted_keys,
            },
            config,
        );
    }
    if let Command::Scale {
        devices,
        poll_ms,
        wait_seconds,
        canary_percent,
    } = cli.command
    {
        let runtime = tokio::runtime::Runtime::new()?;
        return runtime.block_on(crate::scale::run(
            crate::scale::ScaleConfig {
                devices,
                poll: std::time::Duration::from_millis(poll_ms),
                wait_seconds,
                canary_percent,
            },
            &mut io::stdout(),
        ));
    }
    if let Command::Demo {
        devices,
        soak_seconds,
        data_dir,
    } = cli.command
    {
        return story(crate::story::StoryConfig {
            devices,
            data_dir,
            progress_bars: io::IsTerminal::is_terminal(&io::stderr()),
            soak_seconds,
        });
    }
    if let Command::Sim {
        server,
        devices,
        release_key,
        factory_version,
        regions,
        device_model,
        prefix,
        poll_ms,
        wait_seconds,
        http1,
        power_cut_percent,
        corrupt_percent,
        drop_percent,
        offline_percent,
        seconds,
    } = cli.command
    {
        let key = parse_release_key(&release_key)?;
        let version = hotswap_device_vm::Version::parse(&factory_version).with_context(|| {
            format!("--factory-version {factory_version:?} is not major.minor.patch")
        })?;
        let mut config = crate::sim::FleetConfig::new(&server, devices);
        config.regions = regions;
        config.device_model = device_model;
        config.prefix = prefix;
        config.poll = std::time::Duration::from_millis(poll_ms);
        config.wait_seconds = wait_seconds;
        config.http1 = http1;
        config.power_cut_percent = power_cut_percent;
        config.corrupt_percent = corrupt_percent;
        config.drop_percent = drop_percent;
        config.offline_percent = offline_percent;
        return simulate(config, key, version, seconds);
    }
    if let Command::Release {
        agent,
        version,
        release_key,
        server,
        device_model,
        security_counter,
        notes,
        print,
    } = cli.command
    {
        return release(
            &agent,
            &version,
            &release_key,
            &device_model,
            security_counter,
            &notes,
            (!print).then_some(server.as_str()),
        );
    }
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let mut out = io::stdout().lock();
    match cli.command {
        Command::Serve { .. } => unreachable!("handled above"),
        Command::Demo { .. }
        | Command::Sim { .. }
        | Command::Scale { .. }
        | Command::Release { .. } => {
            unreachable!("handled above")
        }
        Command::Plans { devices, regions } => {
            crate::demo::run(&runtime, devices, regions, &mut out)
        }
        Command::Plan {
            strategy,
            config,
            devices,
            regions,
        } => {
            let strategy = runtime.builtin_strategy(&strategy)?;
            crate::demo::plan_generated(&strategy, &config, devices, regions, &mut out)
        }
        Command::Plugin {
            command:
                PluginCommand::Check {
                    file,
                    config,
                    devices,
                    regions,
                },
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let plugin = runtime.load(&bytes)?;
            let d = plugin.description();
            writeln!(
                out,
                "ok: {} plugin `{}` version {}: {}",
                plugin.kind(),
                d.name,
                d.version,
                d.summary
            )?;
            writeln!(out, "sha256 {}", plugin.content_hash())?;
            match plugin {
                Plugin::Strategy(s) => {
                    crate::demo::plan_generated(&s, &config, devices, regions, &mut out)
                }
                Plugin::HealthPolicy(h) => {
                    let stats = WaveStats::from(&hotswap_plan::health::WaveStats {
                        wave: 0,
                        waves: 2,
                        mode: hotswap_plan::Mode::Install,
                        gate: hotswap_plan::Gate {
                            soak_seconds: 0,
                            min_success_percent: 95,
                            failure_budget: 10,
                            min_sample: 10,
                        },
                        targeted: 100,
                        succeeded: 97,
                        failed: 3,
                        in_progress: 0,
                        elapsed_seconds: 60,
                        settled_seconds: Some(30),
                        deployment_targeted: 1000,
                        deployment_succeeded: 97,
                        deployment_failed: 3,
                    });
                    let verdict = h.evaluate(&config, &stats, &[])?;
                    writeln!(out, "a wave of 100 with 97 ok and 3 failed -> {verdict}")?;
                    Ok(())
                }
            }
        }
    }
}
