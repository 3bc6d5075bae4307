//! `hotswap serve`: the store, the plugin runtime and the API on one listener.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use hotswap_device_vm::slots::TrustedKey;
use tokio::net::TcpListener;

use crate::api::{AppState, ServerLimits, router};
use crate::plugin::{PluginRuntime, RuntimeConfig};
use crate::store::Store;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Database, artifacts and compiled-plugin cache live here.
    pub data_dir: PathBuf,
    pub trusted_keys: Vec<TrustedKey>,
    pub limits: ServerLimits,
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

/// Opens the data directory and builds the shared state.
pub fn state(config: &ServerConfig) -> Result<Arc<AppState>> {
    let store = Store::open(&config.data_dir)
        .with_context(|| format!("opening {}", config.data_dir.display()))?;
    let runtime = PluginRuntime::new(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("compiled")),
        ..RuntimeConfig::default()
    })?;
    Ok(Arc::new(AppState {
        store,
        runtime,
        trusted_keys: config.trusted_keys.clone(),
        limits: config.limits,
    }))
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP")
}
