//! The command line ([`Cli`], one variant of [`Command`] per subcommand, each with the `Args` of
//! its own room) parsed once, and each subcommand handed to the room that runs it, on one tokio
//! runtime. Nothing else happens here.

use std::io;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use hotswap_plugin_host::{PluginRuntime, RuntimeConfig};

use crate::{bench, device, kit, operator, push};

#[derive(Parser)]
#[command(
    name = "hotswap",
    version,
    about = "HotSwap: programmable, safe rollouts of WebAssembly agents to IoT fleets"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to standard error: `text` for people, `json` (one object per
    /// line: timestamp, level, target, fields, spans) for a log pipeline. `RUST_LOG` filters
    /// them (default `warn`).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "HOTSWAP_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// The form of the log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server: the HTTP API over a data directory.
    #[command(
        after_help = "Traces: set OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) to send OpenTelemetry spans over OTLP/HTTP; the SDK's other OTEL_* variables apply."
    )]
    Serve(operator::serve::ServeArgs),
    /// The whole mission: a server, a simulated fleet on the device VM, a canary rollout of a
    /// good agent, then of a broken one that the health policy rolls back.
    Demo(operator::demo::DemoArgs),
    /// Run simulated devices (the device VM) against a server until stopped or `--seconds` pass.
    Sim(operator::sim::SimArgs),
    /// The scale benchmark: a server process, N simulated devices here, every device updated
    /// end to end; prints devices per minute, time per device, memory and CPU of each process.
    Scale(bench::scale::ScaleArgs),
    /// The readers benchmark: a server here over SQLite, one viewer's burst of label-filtered
    /// lists, and another operator's read latency meanwhile; before and after pooled readers.
    ReadersBench(bench::readers::ReadersArgs),
    /// Plan a rollout over a generated fleet with every built-in strategy, in the sandbox.
    Plans(kit::plans::FleetArgs),
    /// Plan a rollout over a generated fleet with one built-in strategy and print the waves.
    Plan(kit::plans::PlanArgs),
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: kit::plans::PluginCommand,
    },
    /// Sign an agent with a release key and register it with a server (`POST /api/v1/firmware`),
    /// print the registration (`--print`), or write an MCUboot image file (`--image-out`).
    Release(operator::release::ReleaseArgs),
    /// Release signing keys.
    Keys(operator::release::KeysArgs),
    /// Remember a server and a credential (an API token, or a user's sign-in) for the commands
    /// that follow.
    Login(operator::login::LoginArgs),
    /// Forget a server `login` remembered.
    Logout(operator::login::LogoutArgs),
    /// Firmware versions: register (sign and upload), list, show, deprecate, sunset.
    Firmware(operator::ops::FirmwareArgs),
    /// The fleet: register, import, list, show, lineage, accept, reject, decommission.
    Devices(operator::ops::DevicesArgs),
    /// Static and dynamic device groups.
    Groups(operator::ops::GroupsArgs),
    /// Rollout strategies and health policies: upload, list, show, delete.
    Plugins(operator::ops::PluginsArgs),
    /// Rollouts: create (or --dry-run), list, status, watch, pause, resume, cancel, rollback,
    /// approve, deny, decisions.
    Deployments(operator::ops::DeploymentsArgs),
    /// Operators' API tokens.
    Tokens(operator::ops::TokensArgs),
    /// Users who sign in with a password.
    Users(operator::ops::UsersArgs),
    /// The audit log, newest first.
    Audit(operator::ops::AuditArgs),
    /// One device you can run: the device VM on flash kept in a file, managed over MCUmgr's SMP
    /// on a pseudo-terminal (`smpmgr`, `mcumgr`, `hotswap push`).
    Device(device::DeviceArgs),
    /// One agent to one device over a serial line (SMP): upload, trial, confirm; `--status`,
    /// `--info`, `--rollback`.
    Push(push::PushArgs),
    /// The push tool's stress and line-fault suites and its timing, against a real device
    /// process over a pty (figures for BENCHMARKS.md).
    PushBench(push::bench::PushBenchArgs),
    /// A shell completion script: `hotswap completions bash > /etc/bash_completion.d/hotswap`.
    Completions { shell: clap_complete::Shell },
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Spans go to an OTLP endpoint from a server only, and only when one is configured.
    let traces = match &cli.command {
        Command::Serve(_) => match hotswap_server::Traces::from_env() {
            Ok(traces) => traces,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(crate::usage::USAGE);
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
fn init_logs(format: LogFormat, traces: &hotswap_server::Traces) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let logs = tracing_subscriber::fmt::layer().with_writer(io::stderr);
    let logs = match format {
        LogFormat::Text => logs.boxed(),
        // Whole objects with the current span's fields, one per line.
        LogFormat::Json => logs.json().with_current_span(true).boxed(),
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

/// A usage error is 2 ([`crate::usage::USAGE`]), anything else (the server refused, or could not
/// be reached, or the work failed) 1.
fn exit_code(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.downcast_ref::<crate::usage::UsageError>().is_some())
    {
        crate::usage::USAGE
    } else {
        crate::usage::REFUSED
    }
}

async fn run(command: Command, traces: hotswap_server::Traces) -> Result<ExitCode> {
    use operator::ops;
    let mut out = io::stdout();
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Login(a) => done(operator::login::login(a, &mut out).await),
        Command::Logout(a) => done(operator::login::logout(a, &mut out)),
        Command::Firmware(a) => ops::firmware(a, &mut out).await,
        Command::Devices(a) => ops::devices(a, &mut out).await,
        Command::Groups(a) => ops::groups(a, &mut out).await,
        Command::Plugins(a) => ops::plugins(a, &mut out).await,
        Command::Deployments(a) => ops::deployments(a, &mut out).await,
        Command::Tokens(a) => ops::tokens(a, &mut out).await,
        Command::Users(a) => ops::users(a, &mut out).await,
        Command::Audit(a) => ops::audit(a, &mut out).await,
        Command::Serve(a) => done(operator::serve::execute(a, traces).await),
        Command::Demo(a) => done(operator::demo::execute(a.into(), &mut out).await),
        Command::Sim(a) => done(operator::sim::execute(a).await),
        Command::Release(a) => {
            done(operator::release::run(a.sign, &a.server, false, &mut out).await)
        }
        Command::Keys(operator::release::KeysArgs {
            command: operator::release::KeysCommand::Generate { out: file },
        }) => done(operator::release::generate(&file, &mut out)),
        Command::Device(a) => done(device::execute(a).await),
        Command::Push(a) => {
            tokio::task::spawn_blocking(move || push::run(a, &mut io::stdout())).await?
        }
        Command::PushBench(a) => {
            done(tokio::task::spawn_blocking(move || push::bench::run(a, &mut io::stdout())).await?)
        }
        Command::Scale(a) => done(bench::scale::run(a.into(), &mut out).await),
        Command::ReadersBench(a) => done(bench::readers::run(a, &mut out).await),
        Command::Plans(fleet) => {
            let runtime = PluginRuntime::new(RuntimeConfig::default())?;
            done(kit::plans::run(
                &runtime,
                fleet.devices,
                fleet.regions,
                &mut out.lock(),
            ))
        }
        Command::Plan(a) => done(kit::plans::plan(a, &mut out.lock())),
        Command::Plugin { command } => done(plugin(command, &mut out).await),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "hotswap", &mut out);
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn plugin(command: kit::plans::PluginCommand, out: &mut io::Stdout) -> Result<()> {
    use kit::plans::PluginCommand;
    match command {
        PluginCommand::Check(a) => kit::plans::check(a, &mut out.lock()),
        PluginCommand::New(a) => kit::new(a, &mut out.lock()),
        PluginCommand::Build(a) => {
            tokio::task::spawn_blocking(move || kit::build(a, &mut io::stdout())).await?
        }
        PluginCommand::Simulate(a) => kit::simulate(a, &mut out.lock()),
        PluginCommand::Replay(a) => kit::replay(a, &mut out.lock()).await,
    }
}
