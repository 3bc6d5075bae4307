//! The server's configuration: flags and environment over a TOML file over the defaults.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hotswap_device_vm::slots::TrustedKey;

use crate::orchestrator::DEFAULT_TICK;

/// Limits on what clients may send.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// The largest request body, in bytes (a firmware upload in base64 included).
    pub max_body_bytes: usize,
    /// The largest firmware binary, in bytes.
    pub max_firmware_bytes: usize,
    /// Requests one operator token may make: a rate per second and a burst.
    pub token_rate: crate::credentials::Rate,
    /// Requests one device may make.
    pub device_rate: crate::credentials::Rate,
    /// Requests one client address may make without a good credential (credentials refused,
    /// sign-ins, enrollments).
    pub address_rate: crate::credentials::Rate,
    /// Requests one operator (token or user) may have in flight at once.
    pub operator_in_flight: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_body_bytes: 4 << 20,
            max_firmware_bytes: 1 << 20,
            token_rate: crate::credentials::TOKEN_RATE,
            device_rate: crate::credentials::DEVICE_RATE,
            address_rate: crate::credentials::ADDRESS_RATE,
            operator_in_flight: crate::credentials::MAX_IN_FLIGHT_PER_OPERATOR,
        }
    }
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The SQLite database (unless `database` says PostgreSQL), artifacts and the
    /// compiled-plugin cache live here.
    pub data_dir: PathBuf,
    /// Where the fleet's state is: SQLite under `data_dir` (one server), or a PostgreSQL
    /// database several replicas share.
    pub database: hotswap_store::Database,
    pub trusted_keys: Vec<TrustedKey>,
    pub limits: ServerLimits,
    /// How often the orchestrator advances the deployments.
    pub tick: std::time::Duration,
    /// Labels (`key`, `value`) whose devices a deployment reaches only after an approval.
    pub protected_labels: Vec<(String, String)>,
    /// Serve HTTPS with these; plain HTTP when `None` (loopback only, unless allowed).
    pub tls: Option<TlsFiles>,
    /// Devices may enroll themselves with this secret.
    pub enrollment: Option<EnrollmentConfig>,
    /// For the scale benchmark's figure without authentication only: the device routes take
    /// no credential. Refused on any address but loopback.
    pub unchecked_devices: bool,
    /// What every plugin runs under (`[plugin-limits]`).
    pub plugin_limits: hotswap_plugin_host::Limits,
    /// The most a plugin may ask for at upload (`[plugin-ceilings]`, each key left out at its
    /// `[plugin-limits]` value).
    pub plugin_ceilings: hotswap_plugin_host::Limits,
    /// Where spans go: off unless the `hotswap` command found an OTLP endpoint
    /// ([`crate::traces`]).
    pub traces: crate::traces::Traces,
}

/// How devices enroll themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentConfig {
    pub secret: String,
    /// Accepted at once, without an operator.
    pub auto_accept: bool,
}

/// The listen address when nothing says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The data directory when nothing says otherwise.
pub const DEFAULT_DATA_DIR: &str = "./hotswap-data";

/// The optional configuration file (`hotswap serve --config hotswap.toml`). Flags and
/// environment variables override what it says; unknown keys are refused.
///
/// ```toml
/// listen = "0.0.0.0:8080"
/// data-dir = "/var/lib/hotswap"
/// database = "postgres://hotswap@db.internal:5432/hotswap"   # default: SQLite in data-dir
/// trusted-keys = ["<ed25519 public key, hex>"]
/// max-body-bytes = 4194304
/// max-firmware-bytes = 1048576
/// orchestrator-tick-ms = 500
/// token-requests-per-second = 100
/// token-burst = 500
/// device-requests-per-second = 20
/// device-burst = 100
/// address-requests-per-second = 20
/// address-burst = 100
/// operator-requests-in-flight = 16
/// protected-labels = ["env=production"]
/// tls-cert = "/etc/hotswap/cert.pem"
/// tls-key = "/etc/hotswap/key.pem"
/// tls-client-ca = "/etc/hotswap/devices-ca.pem"
/// allow-plain-http = false
/// enrollment-secret-file = "/etc/hotswap/enrollment.secret"
/// auto-accept-enrolled = false
///
/// [plugin-limits]          # hotswap_plugin_host::Limits; what is left out keeps its default
/// max-component-bytes = 33554432
/// fuel-per-call = 10000000000
/// max-core-instances = 64
/// max-memories = 3
///
/// [plugin-ceilings]        # the most one plugin may ask for at upload; left out: as above
/// fuel-per-call = 40000000000
/// deadline-ms = 30000
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` for PostgreSQL, `sqlite` (the default) for SQLite in the data directory.
    pub database: Option<String>,
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    pub max_body_bytes: Option<usize>,
    pub max_firmware_bytes: Option<usize>,
    pub orchestrator_tick_ms: Option<u64>,
    pub token_requests_per_second: Option<u32>,
    pub token_burst: Option<u32>,
    pub device_requests_per_second: Option<u32>,
    pub device_burst: Option<u32>,
    pub address_requests_per_second: Option<u32>,
    pub address_burst: Option<u32>,
    pub operator_requests_in_flight: Option<u32>,
    #[serde(default)]
    pub protected_labels: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Devices may present a client certificate signed by this CA (PEM) instead of a token.
    pub tls_client_ca: Option<PathBuf>,
    #[serde(default)]
    pub allow_plain_http: bool,
    /// A file holding the fleet's enrollment secret; without one, devices cannot enroll
    /// themselves (they are registered by an operator).
    pub enrollment_secret_file: Option<PathBuf>,
    /// Accept every device that enrolls with the secret, without an operator.
    #[serde(default)]
    pub auto_accept_enrolled: bool,
    #[serde(default)]
    pub plugin_limits: hotswap_plugin_host::Limits,
    #[serde(default)]
    pub plugin_ceilings: hotswap_protocol::PluginLimitOverrides,
}

impl FileConfig {
    pub fn parse(text: &str, origin: &str) -> Result<FileConfig> {
        toml::from_str(text).with_context(|| format!("reading the configuration {origin}"))
    }

    pub fn load(path: &std::path::Path) -> Result<FileConfig> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }
}

/// What the command line and environment said (`None`, empty: not said).
#[derive(Debug, Default)]
pub struct Overrides {
    pub listen: Option<std::net::SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub trusted_keys: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub allow_plain_http: bool,
    pub unchecked_devices: bool,
}

/// The server's certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA (PEM) whose client certificates stand for a device's token: one whose subject
    /// common name or a DNS name among its subject alternative names is the device's id.
    /// Clients without a certificate are served as before.
    pub client_ca: Option<PathBuf>,
}

/// Flags and environment over the file over the defaults.
pub fn resolve(
    overrides: Overrides,
    file: FileConfig,
) -> Result<(std::net::SocketAddr, ServerConfig)> {
    let listen = match overrides.listen.or(file.listen) {
        Some(l) => l,
        None => DEFAULT_LISTEN
            .parse()
            .expect("the default listen address parses"),
    };
    let data_dir = overrides
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let database = match overrides.database.or(file.database) {
        None => hotswap_store::Database::Sqlite,
        Some(url) => parse_database(&url)?,
    };
    let keys = if overrides.trusted_keys.is_empty() {
        file.trusted_keys
    } else {
        overrides.trusted_keys
    };
    let trusted_keys = keys
        .iter()
        .map(|k| parse_trusted_key(k))
        .collect::<Result<Vec<_>>>()?;
    let defaults = ServerLimits::default();
    let rate = |field: &str, value: Option<u32>, default: u32| -> Result<u32> {
        match value {
            None => Ok(default),
            Some(n @ 1..) => Ok(n),
            Some(0) => anyhow::bail!("`{field}` must be at least 1, found 0"),
        }
    };
    let limits = ServerLimits {
        max_body_bytes: file.max_body_bytes.unwrap_or(defaults.max_body_bytes),
        max_firmware_bytes: file
            .max_firmware_bytes
            .unwrap_or(defaults.max_firmware_bytes),
        token_rate: crate::credentials::Rate {
            per_second: rate(
                "token-requests-per-second",
                file.token_requests_per_second,
                defaults.token_rate.per_second,
            )?,
            burst: rate("token-burst", file.token_burst, defaults.token_rate.burst)?,
        },
        device_rate: crate::credentials::Rate {
            per_second: rate(
                "device-requests-per-second",
                file.device_requests_per_second,
                defaults.device_rate.per_second,
            )?,
            burst: rate(
                "device-burst",
                file.device_burst,
                defaults.device_rate.burst,
            )?,
        },
        address_rate: crate::credentials::Rate {
            per_second: rate(
                "address-requests-per-second",
                file.address_requests_per_second,
                defaults.address_rate.per_second,
            )?,
            burst: rate(
                "address-burst",
                file.address_burst,
                defaults.address_rate.burst,
            )?,
        },
        operator_in_flight: rate(
            "operator-requests-in-flight",
            file.operator_requests_in_flight,
            defaults.operator_in_flight as u32,
        )? as usize,
    };
    let tick = match file.orchestrator_tick_ms {
        None => DEFAULT_TICK,
        Some(ms @ 10..=60_000) => std::time::Duration::from_millis(ms),
        Some(ms) => anyhow::bail!("`orchestrator-tick-ms` must be from 10 to 60000, found {ms}"),
    };
    let protected_labels = file
        .protected_labels
        .iter()
        .map(|l| {
            hotswap_store::parse_label(l).map_err(|e| anyhow::anyhow!("`protected-labels`: {e}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let client_ca = overrides.tls_client_ca.or(file.tls_client_ca);
    let tls = match (
        overrides.tls_cert.or(file.tls_cert),
        overrides.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert,
            key,
            client_ca,
        }),
        (None, None) if client_ca.is_some() => anyhow::bail!(
            "`tls-client-ca` without TLS: client certificates need `tls-cert` and `tls-key` too"
        ),
        (None, None) => None,
        (Some(_), None) => anyhow::bail!("a TLS certificate without its key: give `tls-key` too"),
        (None, Some(_)) => anyhow::bail!("a TLS key without its certificate: give `tls-cert` too"),
    };
    let allow_plain_http = overrides.allow_plain_http || file.allow_plain_http;
    if tls.is_none() && !listen.ip().is_loopback() && !allow_plain_http {
        anyhow::bail!(
            "refusing to serve plain HTTP on {listen}, which is not a loopback address: tokens would cross the network in the clear. Give --tls-cert and --tls-key, or --allow-plain-http behind a proxy that terminates TLS"
        );
    }
    if overrides.unchecked_devices && !listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve the device routes without credentials on {listen}: that is for benchmarks on a loopback address only"
        );
    }
    let enrollment = match &file.enrollment_secret_file {
        None => None,
        Some(path) => {
            let secret = std::fs::read_to_string(path)
                .with_context(|| format!("reading the enrollment secret {}", path.display()))?
                .trim()
                .to_string();
            if secret.len() < 16 {
                anyhow::bail!(
                    "the enrollment secret in {} is {} characters: it needs at least 16",
                    path.display(),
                    secret.len()
                );
            }
            Some(EnrollmentConfig {
                secret,
                auto_accept: file.auto_accept_enrolled,
            })
        }
    };
    let plugin_ceilings = file.plugin_limits.with(&file.plugin_ceilings);
    if let Some((key, limit, ceiling)) = file.plugin_limits.first_above(&plugin_ceilings) {
        anyhow::bail!(
            "[plugin-ceilings] `{key}` is {ceiling}, below its [plugin-limits] value {limit}: a ceiling is the most a plugin may ask for"
        );
    }
    Ok((
        listen,
        ServerConfig {
            data_dir,
            database,
            trusted_keys,
            limits,
            tick,
            protected_labels,
            tls,
            enrollment,
            unchecked_devices: overrides.unchecked_devices,
            plugin_limits: file.plugin_limits,
            plugin_ceilings,
            traces: Default::default(),
        },
    ))
}

/// A database named in the configuration: `sqlite`, or a PostgreSQL URL.
pub fn parse_database(url: &str) -> Result<hotswap_store::Database> {
    if url == "sqlite" {
        return Ok(hotswap_store::Database::Sqlite);
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(hotswap_store::Database::Postgres(url.to_string()));
    }
    // Never echo the value: it may hold a password.
    anyhow::bail!(
        "the database must be `sqlite` or a `postgres://user@host:port/dbname` URL; the one given starts with {:?}",
        url.chars().take_while(|c| *c != ':').collect::<String>()
    )
}

/// The TLS configuration of `files`: the ring provider, TLS 1.2 and 1.3, HTTP/2 and HTTP/1.1 by
/// ALPN.
pub fn tls_config(files: &TlsFiles) -> Result<std::sync::Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("reading the certificate {}", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let mut config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(crypto_provider()))
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(client_verifier(files.client_ca.as_deref())?)
            .with_single_cert(certs, key)
            .with_context(|| {
                format!(
                    "the key {} does not go with the certificate {}",
                    files.key.display(),
                    files.cert.display()
                )
            })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(std::sync::Arc::new(config))
}

/// Without a client CA, no client certificate is asked for; with one, a certificate is asked
/// for but not required (operators and token-holding devices have none), and one that is
/// offered must chain to the CA.
fn client_verifier(
    ca: Option<&std::path::Path>,
) -> Result<std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Some(path) = ca else {
        return Ok(rustls::server::WebPkiClientVerifier::no_client_auth());
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading the client CA {}", path.display()))?
    {
        let cert = cert.with_context(|| format!("reading the client CA {}", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("the client CA {}", path.display()))?;
    }
    if roots.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", path.display());
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(crypto_provider()),
    )
    .allow_unauthenticated()
    .build()
    .with_context(|| format!("the client CA {}", path.display()))
}

/// Parses a release public key given as 64 hex characters.
pub fn parse_trusted_key(hex_key: &str) -> Result<TrustedKey> {
    let bytes: [u8; 32] = hex::decode(hex_key.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .with_context(|| {
            format!(
                "a trusted key must be 32 bytes of Ed25519 public key in hex, found {hex_key:?}"
            )
        })?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .with_context(|| format!("{hex_key} is not an Ed25519 public key"))?;
    Ok(TrustedKey::new(key))
}

/// The TLS crypto provider: *ring*'s. rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange, which aws-lc-rs has; that one needs a C toolchain and CMake in every build, a move
/// of its own to make. Until then *ring* stays, and this is the one place that says so.
#[allow(deprecated)]
pub(crate) fn crypto_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

    #[test]
    fn plain_http_is_served_only_on_loopback_unless_allowed() {
        let on = |listen: &str, allow: bool| {
            resolve(
                Overrides {
                    listen: Some(listen.parse().unwrap()),
                    allow_plain_http: allow,
                    ..Overrides::default()
                },
                FileConfig::default(),
            )
        };
        let refused = on("0.0.0.0:8080", false).unwrap_err().to_string();
        assert!(
            refused.contains("refusing to serve plain HTTP on 0.0.0.0:8080")
                && refused.contains("--tls-cert")
                && refused.contains("--allow-plain-http"),
            "{refused}"
        );
        assert!(on("0.0.0.0:8080", true).is_ok());
        assert!(on("127.0.0.1:8080", false).is_ok());
        assert!(on("[::1]:8080", false).is_ok());
        let half = resolve(
            Overrides {
                tls_cert: Some("/etc/cert.pem".into()),
                ..Overrides::default()
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(half.to_string().contains("give `tls-key` too"), "{half}");
        let ca_alone = resolve(
            Overrides {
                tls_client_ca: Some("/etc/devices-ca.pem".into()),
                ..Overrides::default()
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(
            ca_alone.to_string().contains("`tls-client-ca` without TLS"),
            "{ca_alone}"
        );
    }

    #[test]
    fn device_routes_without_credentials_only_on_loopback() {
        let on = |listen: &str| {
            resolve(
                Overrides {
                    listen: Some(listen.parse().unwrap()),
                    allow_plain_http: true,
                    unchecked_devices: true,
                    ..Overrides::default()
                },
                FileConfig::default(),
            )
        };
        let refused = on("0.0.0.0:8080").unwrap_err().to_string();
        assert!(
            refused.contains("without credentials on 0.0.0.0:8080"),
            "{refused}"
        );
        assert!(on("127.0.0.1:8080").unwrap().1.unchecked_devices);
        let (_, normal) = resolve(Overrides::default(), FileConfig::default()).unwrap();
        assert!(!normal.unchecked_devices);
    }

    #[test]
    fn plugin_limits_come_from_their_table_and_unknown_keys_are_refused() {
        let file = FileConfig::parse(
            "[plugin-limits]\nmax-core-instances = 64\nmax-memories = 3\ndeadline-ms = 9000\n",
            "test",
        )
        .unwrap();
        let (_, config) = resolve(Overrides::default(), file).unwrap();
        let limits = config.plugin_limits;
        assert_eq!((limits.max_core_instances, limits.max_memories), (64, 3));
        assert_eq!(limits.deadline, std::time::Duration::from_secs(9));
        assert_eq!(
            limits.fuel_per_call,
            hotswap_plugin_host::Limits::default().fuel_per_call
        );
        let err = FileConfig::parse("[plugin-limits]\nmax-instances = 64\n", "test").unwrap_err();
        assert!(format!("{err:#}").contains("max-instances"), "{err:#}");
        // The ceilings are the limits unless raised, key by key.
        assert_eq!(config.plugin_ceilings, limits);
        let file = FileConfig::parse(
            "[plugin-limits]\nfuel-per-call = 1000\n[plugin-ceilings]\nfuel-per-call = 5000\ndeadline-ms = 60000\n",
            "test",
        )
        .unwrap();
        let (_, config) = resolve(Overrides::default(), file).unwrap();
        assert_eq!(config.plugin_ceilings.fuel_per_call, 5000);
        assert_eq!(
            config.plugin_ceilings.deadline,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(config.plugin_ceilings.max_core_instances, 16);
        let low = FileConfig::parse("[plugin-ceilings]\nmax-core-instances = 4\n", "test").unwrap();
        let err = resolve(Overrides::default(), low).unwrap_err();
        assert!(
            format!("{err:#}").contains(
                "[plugin-ceilings] `max-core-instances` is 4, below its [plugin-limits] value 16"
            ),
            "{err:#}"
        );
        // Only what one plugin may ask for has a ceiling.
        let err = FileConfig::parse("[plugin-ceilings]\nstack-bytes = 1\n", "test").unwrap_err();
        assert!(format!("{err:#}").contains("stack-bytes"), "{err:#}");
    }

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let file = FileConfig::parse(
            &format!("listen = \"0.0.0.0:9000\"\nallow-plain-http = true\ndata-dir = \"/srv/hs\"\ntrusted-keys = [\"{KEY}\"]\nmax-body-bytes = 1000\n"),
            "test",
        )
        .unwrap();
        let (listen, config) = resolve(
            Overrides {
                data_dir: Some("/tmp/x".into()),
                ..Overrides::default()
            },
            file,
        )
        .unwrap();
        assert_eq!(listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(config.trusted_keys.len(), 1);
        assert_eq!(config.limits.max_body_bytes, 1000);
        assert_eq!(
            config.limits.max_firmware_bytes,
            ServerLimits::default().max_firmware_bytes
        );

        let (listen, config) = resolve(Overrides::default(), FileConfig::default()).unwrap();
        assert_eq!(listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn the_orchestrator_tick_is_bounded() {
        let tick =
            |text: &str| resolve(Overrides::default(), FileConfig::parse(text, "t").unwrap());
        assert_eq!(
            tick("orchestrator-tick-ms = 50\n").unwrap().1.tick,
            std::time::Duration::from_millis(50)
        );
        assert_eq!(tick("").unwrap().1.tick, DEFAULT_TICK);
        for bad in [
            "orchestrator-tick-ms = 5\n",
            "orchestrator-tick-ms = 60001\n",
        ] {
            let err = tick(bad).unwrap_err();
            assert!(
                format!("{err:#}").contains("`orchestrator-tick-ms` must be from 10 to 60000"),
                "{err:#}"
            );
        }
    }

    #[test]
    fn a_bad_file_or_key_is_refused_with_the_reason() {
        let err = FileConfig::parse("listen = \"here\"\nport = 3\n", "hotswap.toml").unwrap_err();
        assert!(format!("{err:#}").contains("hotswap.toml"), "{err:#}");
        let err = FileConfig::parse("port = 3\n", "hotswap.toml").unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `port`"),
            "{err:#}"
        );
        let err = resolve(
            Overrides {
                trusted_keys: vec!["abc".into()],
                ..Overrides::default()
            },
            FileConfig::default(),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("32 bytes of Ed25519 public key in hex"),
            "{err:#}"
        );
    }
}
