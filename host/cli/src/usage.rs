//! How a command ends: the exit codes, and the error of a command given wrongly.

/// The exit code of a command the server refused (or could not be reached for).
pub const REFUSED: u8 = 1;
/// The exit code of a command given wrongly (clap's own for a malformed command line).
pub const USAGE: u8 = 2;

/// A command given wrongly: exit code [`USAGE`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A [`UsageError`] as an `anyhow` error.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}
