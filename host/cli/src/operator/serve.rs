//! `hotswap serve`: the server on a data directory, configured by flags, environment and a
//! TOML file.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::signals::stopped;

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

pub async fn execute(a: ServeArgs, traces: hotswap_server::Traces) -> Result<()> {
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
