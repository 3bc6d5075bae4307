//! `hotswap device`: one device you can run, and the paths that reach it.
//!
//! - [`emulated`]: the device VM on flash in a file, its loop, the SMP line.
//! - [`link`]: the loop as async code reaches it, so every path obeys the same rules.
//! - [`grpc`]: the `hotswap.device.v1` service (`--grpc`), over [`link`].
//! - [`checkin`]: check-ins with a HotSwap server (`--server`), over [`link`].
//!
//! **Architecture invariant:** a device never imports its managers' code: nothing here uses
//! [`crate::push`]. Both sides share the SMP codec of `hotswap_device_vm::smp::codec` and the
//! generated [`crate::proto`].

pub mod checkin;
pub mod emulated;
pub mod grpc;
pub mod link;

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;

use anyhow::{Context, Result};
use clap::Args;

use crate::connection::read_token;
use crate::keys::ReleaseKeyArgs;
use crate::signals::stopped;
use crate::usage::UsageError;

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
    /// The device's credential with the server, in a file: its `hsw_dev_...` token, as
    /// `devices register` gave it; `--server` check-ins send it.
    #[arg(long)]
    pub credential_file: Option<PathBuf>,
    /// The token gRPC callers must present (`authorization: Bearer`), in a file: a secret of
    /// the device's gRPC service alone, never its server credential (whoever drives the device
    /// over gRPC could otherwise act as the device on the server).
    #[arg(long, requires = "grpc")]
    pub grpc_token_file: Option<PathBuf>,
    /// Serve gRPC to any caller that reaches the port, with no credential (loopback only).
    #[arg(long, requires = "grpc", conflicts_with = "grpc_token_file")]
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

pub async fn execute(a: DeviceArgs) -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let key = a.key.key()?;
    let version = crate::keys::factory_version(&a.factory_version)?;
    let image = hotswap_sim::tagged(hotswap_agents::THRESHOLD_ALARM, &version.to_string());
    let mut keys = vec![key.trusted()];
    for k in &a.trusted_keys {
        keys.push(hotswap_server::config::parse_trusted_key(k)?);
    }
    if a.watchdog_seconds == 0 {
        anyhow::bail!(UsageError("--watchdog-seconds must be at least 1".into()));
    }
    let config = emulated::DeviceConfig {
        flash: a.flash,
        line: match (a.pty, a.serial) {
            (Some(link), _) => Some(emulated::LineConfig::Pty(link)),
            (None, Some(path)) => Some(emulated::LineConfig::Serial { path, baud: a.baud }),
            // clap asks for --pty, --serial or --grpc: this is the network path alone.
            (None, None) => None,
        },
        keys,
        factory: key.release(version, &image, 0),
        watchdog: std::time::Duration::from_secs(a.watchdog_seconds),
        step: std::time::Duration::from_secs(1),
    };
    let credential = a.credential_file.as_deref().map(read_token).transpose()?;
    let grpc_token = a.grpc_token_file.as_deref().map(read_token).transpose()?;
    if grpc_token.is_some() && grpc_token == credential {
        anyhow::bail!(UsageError(
            "--grpc-token-file holds the device's server credential (--credential-file): give gRPC callers a token of its own, so whoever drives the device cannot act as it on the server".into()
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (events, inbox) = std::sync::mpsc::channel();
    let link = link::Link::new(events.clone());
    if let Some(addr) = a.grpc {
        let guard = match (&grpc_token, a.grpc_unauthenticated) {
            (Some(token), _) => grpc::Credential::token(token),
            (None, true) if addr.ip().is_loopback() => grpc::Credential::none(),
            (None, true) => anyhow::bail!(UsageError(format!(
                "--grpc-unauthenticated serves loopback only, not {addr}: give the device a --grpc-token-file"
            ))),
            (None, false) => anyhow::bail!(UsageError(
                "--grpc needs --grpc-token-file (callers must present the device's gRPC token), or --grpc-unauthenticated on loopback".into()
            )),
        };
        let mut builder = tonic::transport::Server::builder();
        match (&a.grpc_tls_cert, &a.grpc_tls_key) {
            (Some(cert), Some(key)) => {
                builder = builder.tls_config(grpc::server_tls(
                    cert,
                    key,
                    a.grpc_client_ca.as_deref(),
                )?)?;
            }
            _ if !addr.ip().is_loopback() => anyhow::bail!(UsageError(format!(
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
            if grpc_token.is_some() {
                ", callers need the device's gRPC token"
            } else {
                ", open to any caller"
            },
        );
        let service = grpc::Service::new(link.clone(), guard);
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
        let check_ins = checkin::CheckIns {
            transport: hotswap_sim::HttpTransport {
                retrying: once.clone(),
                once,
            },
            id: id.clone(),
            token: token.clone(),
            poll: std::time::Duration::from_secs(u64::from(a.poll_seconds.max(1))),
        };
        eprintln!("hotswap device: checking in with {server} as {id}");
        tokio::spawn(checkin::run(check_ins, link));
    }
    let mut task = tokio::task::spawn_blocking({
        let stop = stop.clone();
        move || emulated::run(config, stop, (events, inbox))
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
