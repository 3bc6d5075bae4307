//! A release signing key's secret, as the commands that sign or trust releases take it
//! (`release`, `firmware register`, `sim`, `device`, `push-bench`): from a file or the
//! environment, never from the command line.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use hotswap_device_vm::release::ReleaseKey;

/// Parses a release key's secret given as 64 hex digits.
pub fn parse_release_key(hex_secret: &str) -> Result<ReleaseKey> {
    let seed: [u8; 32] = hex::decode(hex_secret.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .context("a release key's secret is 64 hex digits (the Ed25519 secret key)")?;
    Ok(ReleaseKey::from_seed(seed))
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
    pub fn key(&self) -> Result<ReleaseKey> {
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
        parse_release_key(&hex_secret).map_err(|e| anyhow::anyhow!("{origin}: {e}"))
    }
}

/// `--factory-version`, as `sim` and `device` take it.
pub fn factory_version(v: &str) -> Result<hotswap_device_vm::Version> {
    hotswap_device_vm::Version::parse(v)
        .with_context(|| format!("--factory-version {v:?} is not major.minor.patch"))
}
