//! `hotswap release`: signs an agent as a version with a release key and registers it with a
//! server, or prints the registration.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use hotswap_device_vm::release::ReleaseKey;
use hotswap_sim::{registration, tagged};

use crate::connection::ServerArgs;
use crate::keys::ReleaseKeyArgs;

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

/// Signs the agent and registers it (or prints the registration with `--print`).
pub async fn run(a: SignArgs, server: &ServerArgs, json: bool, out: &mut dyn Write) -> Result<()> {
    let key = a.key.key()?;
    let version = hotswap_device_vm::Version::parse(&a.version)
        .with_context(|| format!("--version {:?} is not major.minor.patch", a.version))?;
    let image = match a.agent.as_str() {
        // The same bytes a simulated device runs for this version.
        "example:threshold-alarm" => tagged(hotswap_agents::THRESHOLD_ALARM, &a.version),
        "example:failing-self-test" => tagged(hotswap_agents::FAILING_SELF_TEST, &a.version),
        path => std::fs::read(path).with_context(|| {
            format!("reading the agent {path} (or name example:threshold-alarm or example:failing-self-test)")
        })?,
    };
    let release = key.release(version, &image, a.security_counter);
    let body = registration(&release, &a.device_model, &a.notes);
    if let Some(path) = &a.image_out {
        let signed = hotswap_device_vm::mcuboot::SignedManifest {
            manifest: release.manifest,
            key_id: release.key_id,
            signature: release.signature,
        };
        let file = hotswap_device_vm::mcuboot::write(&signed, &release.image)
            .map_err(|e| anyhow::anyhow!("--version {}: {e}", a.version))?;
        let (_, _, hash) = hotswap_device_vm::mcuboot::parse(&file)
            .map_err(|e| anyhow::anyhow!("the image file just made does not read back: {e}"))?;
        std::fs::write(path, &file).with_context(|| format!("writing {}", path.display()))?;
        if json {
            let shown = serde_json::json!({
                "file": path,
                "version": a.version,
                "size": file.len(),
                "agentSize": release.image.len(),
                "hash": hex::encode(hash),
                "keyId": release.key_id.to_string(),
            });
            writeln!(out, "{}", serde_json::to_string_pretty(&shown)?)?;
        } else {
            writeln!(
                out,
                "wrote {}: agent {} as an MCUboot image, {} bytes, hash {}, signed by key {}",
                path.display(),
                a.version,
                file.len(),
                hex::encode(hash),
                release.key_id
            )?;
        }
        return Ok(());
    }
    if a.print {
        writeln!(out, "{}", serde_json::to_string_pretty(&body)?)?;
        return Ok(());
    }
    let firmware = server
        .client()?
        .register_firmware(&body)
        .await
        .with_context(|| format!("registering {} for {}", a.version, a.device_model))?;
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&firmware)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "registered {} for {}: firmware {}, {} bytes, signed by key {}",
        a.version,
        a.device_model,
        firmware.id,
        release.image.len(),
        key.trusted().id
    )?;
    Ok(())
}

/// `hotswap keys generate`: a new release key, its secret written to `out` with mode 0600 (never
/// over an existing file), its public key printed.
pub fn generate(out: &std::path::Path, w: &mut impl Write) -> Result<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("randomness: {e}"))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| {
        format!(
            "writing {} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    writeln!(file, "{}", hex::encode(seed))?;
    file.sync_all()?;
    let key = ReleaseKey::from_seed(seed);
    writeln!(
        w,
        "release key {} written to {} (mode 0600)\npublic key (for `hotswap serve --trusted-key`): {}",
        key.trusted().id,
        out.display(),
        hex::encode(key.trusted().key.as_bytes())
    )?;
    Ok(())
}
