//! The server's configuration: flags and environment over a TOML file over the defaults.

use std::path::PathBuf;

use anyhow::{Context, Result};
use hotswap_device_vm::slots::TrustedKey;

use crate::api::ServerLimits;
use crate::orchestrator::DEFAULT_TICK;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Database, artifacts and compiled-plugin cache live here.
    pub data_dir: PathBuf,
    pub trusted_keys: Vec<TrustedKey>,
    pub limits: ServerLimits,
    /// How often the orchestrator advances the deployments.
    pub tick: std::time::Duration,
    /// Labels (`key`, `value`) whose devices a deployment reaches only after an approval.
    pub protected_labels: Vec<(String, String)>,
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
/// trusted-keys = ["<ed25519 public key, hex>"]
/// max-body-bytes = 4194304
/// max-firmware-bytes = 1048576
/// orchestrator-tick-ms = 500
/// token-requests-per-second = 100
/// token-burst = 500
/// device-requests-per-second = 20
/// device-burst = 100
/// protected-labels = ["env=production"]
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<std::net::SocketAddr>,
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    pub max_body_bytes: Option<usize>,
    pub max_firmware_bytes: Option<usize>,
    pub orchestrator_tick_ms: Option<u64>,
    pub token_requests_per_second: Option<u32>,
    pub token_burst: Option<u32>,
    pub device_requests_per_second: Option<u32>,
    pub device_burst: Option<u32>,
    #[serde(default)]
    pub protected_labels: Vec<String>,
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
    pub trusted_keys: Vec<String>,
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
        token_rate: crate::auth::Rate {
            per_second: rate(
                "token-requests-per-second",
                file.token_requests_per_second,
                defaults.token_rate.per_second,
            )?,
            burst: rate("token-burst", file.token_burst, defaults.token_rate.burst)?,
        },
        device_rate: crate::auth::Rate {
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
    Ok((
        listen,
        ServerConfig {
            data_dir,
            trusted_keys,
            limits,
            tick,
            protected_labels,
        },
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";

    #[test]
    fn flags_override_the_file_which_overrides_the_defaults() {
        let file = FileConfig::parse(
            &format!("listen = \"0.0.0.0:9000\"\ndata-dir = \"/srv/hs\"\ntrusted-keys = [\"{KEY}\"]\nmax-body-bytes = 1000\n"),
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
