//! The end of a long-running command: Ctrl-C, or SIGTERM as service managers send it.

use anyhow::Result;

/// Completes at Ctrl-C or SIGTERM, as service managers send it.
pub async fn stopped() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = terminate.recv() => {}
    }
    Ok(())
}
