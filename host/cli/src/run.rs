//! Parses the command line once and runs the subcommand on one tokio runtime.

use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, Result};
use clap::Parser;
use hotswap_device_vm::device::DeviceConfig;
use hotswap_plugin_host::{Plugin, PluginRuntime, RuntimeConfig, WaveStats};

use crate::args::{
    CheckArgs, Cli, Command, KeysArgs, KeysCommand, PlanArgs, PluginCommand, ServeArgs, SimArgs,
};

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Spans go to an OTLP endpoint from a server only, and only when one is configured.
    let traces = match &cli.command {
        Command::Serve(_) => match hotswap_server::Traces::from_env() {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(crate::ops::USAGE);
            }
        },
        _ => hotswap_server::Traces::off(),
    };
    init_logs(cli.log_format, &traces);
    let result = tokio::runtime::Runtime::new()
        .context("starting the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli.command, traces.clone())));
    // The spans still queued are sent before the process ends.
    traces.shutdown();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// Logs to standard error, filtered by `RUST_LOG` (default `warn`); and, when traces are on,
/// the server's request spans to OpenTelemetry whatever `RUST_LOG` says.
fn init_logs(format: crate::args::LogFormat, traces: &hotswap_server::Traces) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt::layer().with_writer(io::stderr);
    let logs = match format {
        crate::args::LogFormat::Text => logs.boxed(),
        // Whole objects with the current span's fields, one per line.
        crate::args::LogFormat::Json => logs.json().with_current_span(true).boxed(),
    };
    let spans = traces.tracer().map(|tracer| {
        // A span per request at fleet scale: no source location, thread, target or
        // busy/idle timing on each, and no OpenTelemetry context switched on every poll.
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_target("hotswap_server::http", tracing::Level::INFO),
            )
    });
    tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans)
        .init();
}

/// A usage error is 2 ([`crate::ops::USAGE`]), anything else (the server refused, or could not
/// be reached, or the work failed) 1.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.downcast_ref::<crate::ops::UsageError>().is_some())
    {
        crate::ops::USAGE
    } else {
        crate::ops::REFUSED
    }
}

async fn run(command: Command, traces: hotswap_server::Traces) -> Result<ExitCode> {
    let mut out = io::stdout();
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Login(a) => done(crate::login::login(a, &mut out).await),
        Command::Logout(a) => done(crate::login::logout(a, &mut out)),
        Command::Firmware(a) => crate::ops::firmware(a, &mut out).await,
        Command::Devices(a) => crate::ops::devices(a, &mut out).await,
        Command::Groups(a) => crate::ops::groups(a, &mut out).await,
        Command::Plugins(a) => crate::ops::plugins(a, &mut out).await,
        Command::Deployments(a) => crate::ops::deployments(a, &mut out).await,
        Command::Tokens(a) => crate::ops::tokens(a, &mut out).await,
        Command::Users(a) => crate::ops::users(a, &mut out).await,
        Command::Audit(a) => crate::ops::audit(a, &mut out).await,
        Command::Device(a) => done(device(a).await),
        Command::PushBench(a) => done(
            tokio::task::spawn_blocking(move || crate::push_bench::run(a, &mut io::stdout()))
                .await?,
        ),
        Command::Push(a) => {
            tokio::task::spawn_blocking(move || crate::push::run(a, &mut io::stdout())).await?
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hotswap", &mut out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(a) => done(serve(a, traces).await),
        other => done(run_other(other, &mut out).await),
    }
}

async fn run_other(command: Command, out: &mut io::Stdout) -> Result<()> {
    let mut out = out;
    match command {
        Command::Demo(a) => demo(a.into(), &mut out).await,
        Command::Sim(a) => simulate(a).await,
        Command::Scale(a) => crate::scale::run(a.into(), &mut out).await,
        Command::Release(a) => crate::release::run(a.sign, &a.server, false, &mut out).await,
        Command::Keys(KeysArgs {
            command: KeysCommand::Generate { out: file },
        }) => crate::release::generate(&file, &mut out),
        Command::Plans(fleet) => {
            let runtime = PluginRuntime::new(RuntimeConfig::default())?;
            crate::plans::run(&runtime, fleet.devices, fleet.regions, &mut out.lock())
        }
        Command::Plan(a) => plan(a, &mut out.lock()),
        Command::Plugin { command } => match command {
            PluginCommand::Check(a) => check(a, &mut out.lock()),
            PluginCommand::New(a) => crate::kit::new(a, &mut out.lock()),
            PluginCommand::Build(a) => {
                tokio::task::spawn_blocking(move || crate::kit::build(a, &mut io::stdout())).await?
            }
            PluginCommand::Simulate(a) => crate::kit::simulate(a, &mut out.lock()),
            PluginCommand::Replay(a) => crate::kit::replay(a, &mut out.lock()).await,
        },
        Command::Login(_)
        | Command::Logout(_)
        | Command::Firmware(_)
        | Command::Devices(_)
        | Command::Groups(_)
        | Command::Plugins(_)
        | Command::Deployments(_)
        | Command::Tokens(_)
        | Command::Users(_)
        | Command::Audit(_)
        | Command::Device(_)
        | Command::Push(_)
        | Command::PushBench(_)
        | Command::Serve(_)
        | Command::Completions { .. } => unreachable!("run handles the operator commands"),
    }
}

/// Completes at Ctrl-C or SIGTERM, as service managers send it.
pub async fn stopped() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

async fn serve(a: ServeArgs, traces: hotswap_server::Traces) -> Result<()> {
    let file = match &a.config {
        Some(path) => hotswap_server::FileConfig::load(path)?,
        None => hotswap_server::FileConfig::default(),
    };
    let (listen, mut config) = hotswap_server::resolve((&a).into(), file)?;
    config.traces = traces;
    if config.trusted_keys.is_empty() {
        tracing::warn!(
            "no trusted release keys: every firmware registration will be refused (pass --trusted-key)"
        );
    }
    if config.unchecked_devices {
        tracing::warn!(
            "the device routes take no credential (--benchmark-unchecked-devices): for benchmarks only"
        );
    }
    let state = hotswap_server::state(&config)?;
    if let Some(path) = &state.admin_token_file {
        eprintln!(
            "hotswap: first start: an administrator API token is in {} (mode 0600); use it to make tokens of your own",
            path.display()
        );
    }
    let tls = config
        .tls
        .as_ref()
        .map(hotswap_server::tls_config)
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    eprintln!(
        "hotswap: serving on {}://{} with data in {}",
        if tls.is_some() { "https" } else { "http" },
        listener.local_addr()?,
        config.data_dir.display()
    );
    // Finish the requests in flight, then stop.
    hotswap_server::serve_on(listener, state, tls, async {
        let _ = stopped().await;
    })
    .await
}

async fn device(a: crate::args::DeviceArgs) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let key = a.key.key()?;
    let version = factory_version(&a.factory_version)?;
    let image = hotswap_sim::tagged(hotswap_agents::THRESHOLD_ALARM, &version.to_string());
    let mut keys = vec![key.trusted()];
    for k in &a.trusted_keys {
        keys.push(hotswap_server::config::parse_trusted_key(k)?);
    }
    if a.watchdog_seconds == 0 {
        anyhow::bail!(crate::ops::UsageError(
            "--watchdog-seconds must be at least 1".into()
        ));
    }
    let config = crate::device::DeviceConfig {
        flash: a.flash,
        line: match (a.pty, a.serial) {
            (Some(link), _) => Some(crate::device::LineConfig::Pty(link)),
            (None, Some(path)) => Some(crate::device::LineConfig::Serial { path, baud: a.baud }),
            // clap asks for --pty, --serial or --grpc: this is the network path alone.
            (None, None) => None,
        },
        keys,
        factory: key.release(version, &image, 0),
        watchdog: std::time::Duration::from_secs(a.watchdog_seconds),
        step: std::time::Duration::from_secs(1),
    };
    let credential = a
        .credential_file
        .as_deref()
        .map(crate::args::read_token)
        .transpose()?;
    let stop = Arc::new(AtomicBool::new(false));
    let (events, inbox) = std::sync::mpsc::channel();
    let link = crate::link::Link::new(events.clone());
    if let Some(addr) = a.grpc {
        let guard = match (&credential, a.grpc_unauthenticated) {
            (Some(token), _) => crate::grpc::Credential::token(token),
            (None, true) if addr.ip().is_loopback() => crate::grpc::Credential::none(),
            (None, true) => anyhow::bail!(crate::ops::UsageError(format!(
                "--grpc-unauthenticated serves loopback only, not {addr}: give the device its --credential-file"
            ))),
            (None, false) => anyhow::bail!(crate::ops::UsageError(
                "--grpc needs --credential-file (callers must present the device's credential), or --grpc-unauthenticated on loopback".into()
            )),
        };
        let mut builder = tonic::transport::Server::builder();
        match (&a.grpc_tls_cert, &a.grpc_tls_key) {
            (Some(cert), Some(key)) => {
                builder = builder.tls_config(crate::grpc::server_tls(
                    cert,
                    key,
                    a.grpc_client_ca.as_deref(),
                )?)?;
            }
            _ if !addr.ip().is_loopback() => anyhow::bail!(crate::ops::UsageError(format!(
                "gRPC on {addr} needs --grpc-tls-cert and --grpc-tls-key: beyond loopback the credential must not cross the network in clear"
            ))),
            _ => {}
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} for gRPC"))?;
        eprintln!(
            "hotswap device: gRPC on {}{}{}",
            listener.local_addr()?,
            if a.grpc_tls_cert.is_some() {
                " over TLS"
            } else {
                ""
            },
            if credential.is_some() {
                ", callers need the device's credential"
            } else {
                ", open to any caller"
            },
        );
        let service = crate::grpc::Service::new(link.clone(), guard);
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = builder
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("hotswap device: the gRPC server stopped: {e}");
            }
        });
    }
    if let (Some(server), Some(id), Some(token)) = (&a.server, &a.id, &credential) {
        let mut config = hotswap_client::ClientConfig::new(server);
        config.ca_certificate = a.ca_cert.clone();
        let once = hotswap_client::Client::with_config(config)?;
        let check_ins = crate::checkin::CheckIns {
            transport: hotswap_sim::HttpTransport {
                retrying: once.clone(),
                once,
            },
            id: id.clone(),
            token: token.clone(),
            poll: std::time::Duration::from_secs(u64::from(a.poll_seconds.max(1))),
        };
        eprintln!("hotswap device: checking in with {server} as {id}");
        tokio::spawn(crate::checkin::run(check_ins, link));
    }
    let mut task = tokio::task::spawn_blocking({
        let stop = stop.clone();
        move || crate::device::run(config, stop, (events, inbox))
    });
    let summary = tokio::select! {
        r = &mut task => r??,
        r = stopped() => {
            r?;
            stop.store(true, Relaxed);
            task.await??
        }
    };
    println!("{summary}");
    Ok(())
}

/// `--factory-version`, as `sim` and `device` take it.
fn factory_version(v: &str) -> Result<hotswap_device_vm::Version> {
    hotswap_device_vm::Version::parse(v)
        .with_context(|| format!("--factory-version {v:?} is not major.minor.patch"))
}

async fn simulate(a: SimArgs) -> Result<()> {
    let key = a.key.key()?;
    let version = factory_version(&a.factory_version)?;
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
    let fleet = hotswap_sim::Fleet::start(config, device_config, &factory)
        .await
        .with_context(|| format!("starting the fleet against {server}"))?;
    let progress = fleet.progress.clone();
    let deadline = a
        .seconds
        .map(|s| tokio::time::Instant::now() + std::time::Duration::from_secs(s));
    let mut stop = std::pin::pin!(stopped());
    let mut line = crate::progress::Line::stderr();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
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

async fn demo(config: crate::demo::DemoConfig, out: &mut (impl Write + Send)) -> Result<()> {
    use hotswap_protocol::DeploymentState;
    // Ctrl-C or SIGTERM stop it as they stop every long-running command: saying so, and how far
    // it got (the lines above). Its server and fleet are dropped with it.
    let outcome = tokio::select! {
        outcome = crate::demo::run(config, &mut *out) => outcome?,
        r = stopped() => {
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
    Ok(())
}

fn plan(a: PlanArgs, out: &mut impl Write) -> Result<()> {
    let runtime = PluginRuntime::new(RuntimeConfig::default())?;
    let strategy = runtime.builtin_strategy(&a.strategy)?;
    crate::plans::plan_generated(&strategy, &a.config, a.fleet.devices, a.fleet.regions, out)
}

fn check(a: CheckArgs, out: &mut impl Write) -> Result<()> {
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    // An agent runs in the device VM: no plugin engine is started for it.
    if crate::agent_kit::is_core_module(&bytes) {
        let sensors = crate::agent_kit::sensors(&a.sensor)?;
        return crate::agent_kit::check(&bytes, &a.config, &sensors, out);
    }
    let plugin = a.limits.runtime()?.load(&bytes)?;
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
    // The schema as the plugin wrote it, indented when it is JSON.
    let schema = serde_json::from_str::<serde_json::Value>(&d.params_schema)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| d.params_schema.clone());
    writeln!(out, "parameters (JSON Schema):\n{schema}")?;
    match plugin {
        Plugin::Strategy(s) => {
            crate::plans::plan_generated(&s, &a.config, a.fleet.devices, a.fleet.regions, out)
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
            let verdict = h.evaluate(&a.config, &stats, &[])?;
            writeln!(out, "a wave of 100 with 97 ok and 3 failed -> {verdict}")?;
            Ok(())
        }
    }
}
