//! The command line: one `Args` struct per subcommand, parsed once and turned into the
//! configuration the library crates take.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    Serve(ServeArgs),
    /// The whole mission: a server, a simulated fleet on the device VM, a canary rollout of a
    /// good agent, then of a broken one that the health policy rolls back.
    Demo(DemoArgs),
    /// Run simulated devices (the device VM) against a server until stopped or `--seconds` pass.
    Sim(SimArgs),
    /// The scale benchmark: a server process, N simulated devices here, every device updated
    /// end to end; prints devices per minute, time per device, memory and CPU of each process.
    Scale(ScaleArgs),
    /// Plan a rollout over a generated fleet with every built-in strategy, in the sandbox.
    Plans(FleetArgs),
    /// Plan a rollout over a generated fleet with one built-in strategy and print the waves.
    Plan(PlanArgs),
    /// Work with plugin components.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Sign an agent with a release key and register it with a server (`POST /api/v1/firmware`),
    /// print the registration (`--print`), or write an MCUboot image file (`--image-out`).
    Release(ReleaseArgs),
    /// Release signing keys.
    Keys(KeysArgs),
    /// Remember a server and a credential (an API token, or a user's sign-in) for the commands
    /// that follow.
    Login(crate::login::LoginArgs),
    /// Forget a server `login` remembered.
    Logout(crate::login::LogoutArgs),
    /// Firmware versions: register (sign and upload), list, show, deprecate, sunset.
    Firmware(crate::ops::FirmwareArgs),
    /// The fleet: register, import, list, show, lineage, accept, reject, decommission.
    Devices(crate::ops::DevicesArgs),
    /// Static and dynamic device groups.
    Groups(crate::ops::GroupsArgs),
    /// Rollout strategies and health policies: upload, list, show, delete.
    Plugins(crate::ops::PluginsArgs),
    /// Rollouts: create (or --dry-run), list, status, watch, pause, resume, cancel, rollback,
    /// approve, deny, decisions.
    Deployments(crate::ops::DeploymentsArgs),
    /// Operators' API tokens.
    Tokens(crate::ops::TokensArgs),
    /// Users who sign in with a password.
    Users(crate::ops::UsersArgs),
    /// The audit log, newest first.
    Audit(crate::ops::AuditArgs),
    /// One device you can run: the device VM on flash kept in a file, managed over MCUmgr's SMP
    /// on a pseudo-terminal (`smpmgr`, `mcumgr`, `hotswap push`).
    Device(DeviceArgs),
    /// One agent to one device over a serial line (SMP): upload, trial, confirm; `--status`,
    /// `--info`, `--rollback`.
    Push(crate::push::PushArgs),
    /// The push tool's stress and line-fault suites and its timing, against a real device
    /// process over a pty (figures for BENCHMARKS.md).
    PushBench(crate::push_bench::PushBenchArgs),
    /// A shell completion script: `hotswap completions bash > /etc/bash_completion.d/hotswap`.
    Completions { shell: clap_complete::Shell },
}

/// A server to talk to, and the operator credential to show it. Each comes from the first of:
/// the flag, the environment, the context `hotswap login` remembered (`--context`, else the one
/// for `--server`, else the current one), and the defaults of a server started here.
#[derive(Args, Clone, Default)]
pub struct ServerArgs {
    /// The server's URL [default: the context's, else http://127.0.0.1:8080].
    #[arg(long, env = "HOTSWAP_SERVER", global = true)]
    pub server: Option<String>,
    /// A server `hotswap login` remembered, by name [default: the current one].
    #[arg(long, env = "HOTSWAP_CONTEXT", global = true)]
    pub context: Option<String>,
    /// The API token. Prefer `HOTSWAP_TOKEN`, `--token-file` or `hotswap login`: a flag is
    /// seen by `ps` and kept by the shell's history.
    #[arg(long, env = "HOTSWAP_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// A file holding the API token [default: the context's, else
    /// ./hotswap-data/admin.token, which `hotswap serve` writes on its first start].
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
    /// Trust this CA certificate (PEM) for an `https://` server, instead of the system's.
    #[arg(long, env = "HOTSWAP_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// The server to use at the end of [`ServerArgs`]' choices.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Where a command connects, and with what.
#[derive(Debug, Clone)]
pub struct Connection {
    pub url: String,
    pub token: String,
    pub ca_cert: Option<PathBuf>,
}

impl ServerArgs {
    /// The server's URL, as [`ServerArgs`] chooses it.
    pub fn url(&self) -> anyhow::Result<String> {
        let contexts = crate::contexts::Contexts::load(&crate::contexts::path()?)?;
        Ok(self.pick(&contexts)?.0)
    }

    fn pick(
        &self,
        contexts: &crate::contexts::Contexts,
    ) -> anyhow::Result<(String, Option<crate::contexts::Remembered>)> {
        let remembered = match (&self.context, &self.server) {
            (Some(name), _) => contexts.chosen(Some(name))?.map(|(_, c)| c.clone()),
            (None, Some(url)) => contexts.for_url(url).cloned(),
            (None, None) => contexts.chosen(None)?.map(|(_, c)| c.clone()),
        };
        let url = match (&self.server, &remembered) {
            (Some(url), _) => url.clone(),
            (None, Some(c)) => c.url.clone(),
            (None, None) => DEFAULT_SERVER.to_string(),
        };
        Ok((url.trim_end_matches('/').to_string(), remembered))
    }

    /// The server, the token and the CA, as [`ServerArgs`] chooses them.
    pub fn connection(&self) -> anyhow::Result<Connection> {
        let contexts = crate::contexts::Contexts::load(&crate::contexts::path()?)?;
        let (url, remembered) = self.pick(&contexts)?;
        let ca_cert = self
            .ca_cert
            .clone()
            .or_else(|| remembered.as_ref().and_then(|c| c.ca_cert.clone()));
        let token = if let Some(token) = self.token.as_deref().filter(|t| !t.trim().is_empty()) {
            token.trim().to_string()
        } else if let Some(path) = &self.token_file {
            read_token(path)?
        } else if let Some(c) = remembered {
            c.token
        } else {
            let path = PathBuf::from(hotswap_server::config::DEFAULT_DATA_DIR)
                .join(hotswap_server::ADMIN_TOKEN_FILE);
            read_token(&path).map_err(|e| {
                anyhow::anyhow!(
                    "no API token for {url}: run `hotswap login`, set HOTSWAP_TOKEN or give --token-file ({e})"
                )
            })?
        };
        Ok(Connection {
            url,
            token,
            ca_cert,
        })
    }

    /// The token alone.
    pub fn token(&self) -> anyhow::Result<String> {
        Ok(self.connection()?.token)
    }

    /// A client of the server with the token.
    pub fn client(&self) -> anyhow::Result<hotswap_client::Client> {
        self.connection()?.client()
    }
}

impl Connection {
    pub fn client(&self) -> anyhow::Result<hotswap_client::Client> {
        Ok(hotswap_client::Client::with_config(
            hotswap_client::ClientConfig {
                token: Some(self.token.clone()),
                ca_certificate: self.ca_cert.clone(),
                ..hotswap_client::ClientConfig::new(&self.url)
            },
        )?)
    }
}

pub(crate) fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        anyhow::bail!("the token file {} is empty", path.display());
    }
    Ok(token.to_string())
}

/// A release signing key's secret: from `HOTSWAP_RELEASE_KEY` (64 hex digits) or a file
/// `hotswap keys generate` wrote, never from the command line.
#[derive(Args)]
pub struct ReleaseKeyArgs {
    /// The file holding the release key's secret.
    #[arg(long)]
    pub release_key_file: Option<PathBuf>,
}

impl ReleaseKeyArgs {
    pub fn key(&self) -> anyhow::Result<hotswap_device_vm::sim::ReleaseKey> {
        let (hex_secret, origin) = match (
            &self.release_key_file,
            std::env::var("HOTSWAP_RELEASE_KEY"),
        ) {
            (Some(path), _) => (
                std::fs::read_to_string(path).map_err(|e| {
                    anyhow::anyhow!("reading the release key {}: {e}", path.display())
                })?,
                path.display().to_string(),
            ),
            (None, Ok(secret)) => (secret, "HOTSWAP_RELEASE_KEY".to_string()),
            (None, Err(_)) => anyhow::bail!(
                "no release key: give --release-key-file (made by `hotswap keys generate`) or set HOTSWAP_RELEASE_KEY"
            ),
        };
        crate::release::parse_release_key(&hex_secret).map_err(|e| anyhow::anyhow!("{origin}: {e}"))
    }
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make a release key pair: the secret to a file only you may read (mode 0600), the public
    /// key printed, for `hotswap serve --trusted-key`.
    Generate {
        /// Where to write the secret; an existing file is not overwritten.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// Where to listen [default: 127.0.0.1:8080].
    #[arg(long, env = "HOTSWAP_LISTEN")]
    pub listen: Option<std::net::SocketAddr>,
    /// Database, artifacts and compiled plugins [default: ./hotswap-data].
    #[arg(long, env = "HOTSWAP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Where the fleet's state is: `sqlite` (in the data directory; one server) or
    /// `postgres://user@host:port/dbname`, shared by every replica [default: sqlite].
    #[arg(long, env = "HOTSWAP_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Ed25519 public keys (hex) whose signatures firmware must carry; comma-separated in the
    /// environment.
    #[arg(
        long = "trusted-key",
        env = "HOTSWAP_TRUSTED_KEYS",
        value_delimiter = ','
    )]
    pub trusted_keys: Vec<String>,
    /// A TOML configuration file; flags and environment override it.
    #[arg(long, env = "HOTSWAP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); with `--tls-key`.
    #[arg(long, env = "HOTSWAP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "HOTSWAP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Accept device client certificates signed by this CA (PEM) in place of device tokens:
    /// the certificate's subject common name or a DNS SAN must be the device's id.
    #[arg(long, env = "HOTSWAP_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback (behind a proxy that terminates TLS).
    #[arg(long)]
    pub allow_plain_http: bool,
    /// The scale benchmark's run without authentication: the device routes take no
    /// credential. Loopback addresses only; not for any real fleet.
    #[arg(long, hide = true)]
    pub benchmark_unchecked_devices: bool,
}

impl From<&ServeArgs> for hotswap_server::Overrides {
    fn from(a: &ServeArgs) -> Self {
        hotswap_server::Overrides {
            listen: a.listen,
            data_dir: a.data_dir.clone(),
            database: a.database.clone(),
            trusted_keys: a.trusted_keys.clone(),
            tls_cert: a.tls_cert.clone(),
            tls_key: a.tls_key.clone(),
            tls_client_ca: a.tls_client_ca.clone(),
            allow_plain_http: a.allow_plain_http,
            unchecked_devices: a.benchmark_unchecked_devices,
        }
    }
}

#[derive(Args)]
pub struct DeviceArgs {
    /// The device's flash, kept in this file; made, with the factory agent, on first start.
    #[arg(long)]
    pub flash: PathBuf,
    /// Serve SMP on a pseudo-terminal and make this path a symlink to it.
    #[arg(long, required_unless_present_any = ["serial", "grpc", "server"], conflicts_with = "serial")]
    pub pty: Option<PathBuf>,
    /// Serve the `hotswap.device.v1` gRPC service on this address (beside a line, or alone).
    #[arg(long)]
    pub grpc: Option<std::net::SocketAddr>,
    /// Serve SMP on a real serial port (`/dev/ttyUSB0`), at `--baud`.
    #[arg(long)]
    pub serial: Option<PathBuf>,
    /// The serial port's speed.
    #[arg(long, default_value_t = 115_200)]
    pub baud: u32,
    /// The release key the device trusts; its factory agent is the example agent signed by it.
    #[command(flatten)]
    pub key: ReleaseKeyArgs,
    /// More release keys the device trusts (Ed25519 public keys, hex; comma-separated).
    #[arg(long = "trusted-key", value_delimiter = ',')]
    pub trusted_keys: Vec<String>,
    /// The version the device runs from the factory.
    #[arg(long, default_value = "1.0.0")]
    pub factory_version: String,
    /// Seconds an update may go without progress, and a trial without a confirm, before the
    /// device gives it up.
    #[arg(long, default_value_t = 30)]
    pub watchdog_seconds: u64,
    /// The device's credential in a file: its `hsw_dev_...` token, as `devices register` gave
    /// it. gRPC callers must present it (`authorization: Bearer`); `--server` check-ins send it.
    #[arg(long)]
    pub credential_file: Option<PathBuf>,
    /// Serve gRPC to any caller that reaches the port, with no credential (loopback only).
    #[arg(long, requires = "grpc", conflicts_with = "credential_file")]
    pub grpc_unauthenticated: bool,
    /// Serve gRPC over TLS with this certificate chain (PEM) and `--grpc-tls-key`; needed on
    /// any address but loopback.
    #[arg(long, requires_all = ["grpc", "grpc_tls_key"])]
    pub grpc_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `--grpc-tls-cert`.
    #[arg(long, requires = "grpc_tls_cert")]
    pub grpc_tls_key: Option<PathBuf>,
    /// Also require of gRPC callers a client certificate that chains to this CA (PEM).
    #[arg(long, requires = "grpc_tls_cert")]
    pub grpc_client_ca: Option<PathBuf>,
    /// Check in with this HotSwap server as a fleet device does, and carry out what it assigns
    /// (through the same SMP handlers as the line and gRPC).
    #[arg(long, requires_all = ["id", "credential_file"])]
    pub server: Option<String>,
    /// The device's id on the server.
    #[arg(long, requires = "server")]
    pub id: Option<String>,
    /// Trust this CA certificate (PEM) for an `https://` server.
    #[arg(long, requires = "server")]
    pub ca_cert: Option<PathBuf>,
    /// Seconds between check-ins; each is a long poll of up to this long.
    #[arg(long, default_value_t = 5, requires = "server")]
    pub poll_seconds: u32,
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
}

impl From<DemoArgs> for crate::demo::DemoConfig {
    fn from(a: DemoArgs) -> Self {
        crate::demo::DemoConfig {
            devices: a.devices,
            data_dir: a.data_dir,
            progress_bars: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            soak_seconds: a.soak_seconds,
        }
    }
}

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
    #[arg(long, value_enum, default_value_t = crate::scale::Authentication::On)]
    pub authentication: crate::scale::Authentication,
    /// The server's traces sent to a receiver in this process (`on`), none (`off`), or runs
    /// of both to compare (`compare`).
    #[arg(long, value_enum, default_value_t = crate::scale::Tracing::Off)]
    pub tracing: crate::scale::Tracing,
    /// Runs of each kind.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Roll the last wave back and time it: by the `health` policy (some devices' new agent
    /// crashes in its trial) or by the `operator` (once most devices confirmed).
    #[arg(long, value_enum)]
    pub rollback: Option<crate::scale::Rollback>,
    /// Where the server keeps its state: `sqlite`, `postgres`, `replicas` (three servers on
    /// one PostgreSQL database), or `compare` (a run of each, side by side).
    #[arg(long, value_enum, default_value_t = crate::scale::Database::Sqlite)]
    pub database: crate::scale::Database,
    /// The PostgreSQL server runs on PostgreSQL make a database of their own on (dropped
    /// after each run).
    #[arg(long, env = "HOTSWAP_BENCH_POSTGRES", default_value = hotswap_store::testing::DEFAULT_TEST_POSTGRES)]
    pub postgres: String,
}

impl From<ScaleArgs> for crate::scale::ScaleConfig {
    fn from(a: ScaleArgs) -> Self {
        crate::scale::ScaleConfig {
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

/// A generated fleet to plan over.
#[derive(Args)]
pub struct FleetArgs {
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    #[arg(long, default_value_t = 3)]
    pub regions: usize,
}

#[derive(Args)]
pub struct PlanArgs {
    /// A built-in strategy: direct, regional, canary, blue-green, rolling.
    #[arg(long)]
    pub strategy: String,
    /// The strategy's configuration, a JSON object.
    #[arg(long, default_value = "{}")]
    pub config: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
}

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Make a plugin (or device agent) project that builds and passes its own tests out of the
    /// box.
    New(crate::kit::NewArgs),
    /// Build the project in this folder (or DIR) into a component of its world.
    Build(crate::kit::BuildArgs),
    /// Check a component the way an upload is checked, print its description and parameter
    /// schema, then run it once on a generated fleet; or an agent (a core module) the way a
    /// device checks it, then try it.
    Check(CheckArgs),
    /// Run a strategy over a fleet, a health policy over a scenario of waves, or an agent over
    /// steps of sensor readings.
    Simulate(crate::kit::SimulateArgs),
    /// Run a health policy over every decision a deployment recorded, and show where it would
    /// have decided otherwise.
    Replay(crate::kit::ReplayArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// Parameters to run it with, a JSON object.
    #[arg(long, default_value = "{}")]
    pub config: String,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// An agent: a sensor reading its trial sees, `NAME=VALUE` (repeatable)
    /// [default: temperature=21.5].
    #[arg(long)]
    pub sensor: Vec<String>,
    #[command(flatten)]
    pub limits: crate::kit::LimitsArgs,
}

#[derive(Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub sign: SignArgs,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// An agent to sign as a version, and how.
#[derive(Args)]
pub struct SignArgs {
    /// The agent: a core WebAssembly module file, or `example:threshold-alarm` /
    /// `example:failing-self-test` (the example agents, as `hotswap sim` devices run them).
    pub agent: String,
    /// Its version, major.minor.patch.
    #[arg(long)]
    pub version: String,
    /// The release key to sign with (the server trusts its public key).
    #[command(flatten)]
    pub key: ReleaseKeyArgs,
    #[arg(long, default_value = "sensor-v1")]
    pub device_model: String,
    /// Devices refuse an agent whose counter is below the one they run.
    #[arg(long, default_value_t = 0)]
    pub security_counter: u32,
    #[arg(long, default_value = "")]
    pub notes: String,
    /// Print the registration body (JSON) instead of sending it.
    #[arg(long)]
    pub print: bool,
    /// Write the signed agent as an MCUboot image file (for `hotswap push`, `smpmgr`, `mcumgr`)
    /// instead of registering it.
    #[arg(long, conflicts_with = "print")]
    pub image_out: Option<PathBuf>,
}
