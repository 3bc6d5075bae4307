//! The `hotswap` command. The binary is thin: [`cli`] parses the command line once and hands
//! each subcommand to the room that runs it. Each room serves one kind of user and holds its
//! commands' arguments beside the code that runs them:
//!
//! - [`operator`]: `serve`, `demo`, `sim`, `release`, `keys`, `login`, and a command for every
//!   action of the API.
//! - [`device`]: `hotswap device`, one device you can run (the device VM on flash in a file),
//!   managed over SMP on a line and over gRPC, checking in with a server.
//! - [`push`]: `hotswap push` and `push-bench`, an agent to one device over SMP or gRPC.
//! - [`kit`]: the plugin author's kit: `plugin new`, `build`, `check`, `simulate`, `replay`;
//!   `plans` and `plan`.
//! - [`bench`]: `hotswap scale` and its OTLP receiver.
//!
//! Below the rooms, what several of them share: [`connection`] (the server a command talks to,
//! remembered in [`contexts`]), [`keys`] (a release key's secret), [`proto`] (the device's gRPC
//! code), [`progress`], [`signals`] and [`usage`] (exit codes).
//!
//! **Architecture invariant:** no room imports another, and nothing below the rooms imports a
//! room; a device never imports its managers' code. The test `rooms_do_not_import_each_other`
//! (in `layering.rs`) keeps it so.

#![forbid(unsafe_code)]

pub mod bench;
pub mod cli;
pub mod connection;
pub mod contexts;
pub mod device;
pub mod keys;
pub mod kit;
pub mod operator;
pub mod progress;
pub mod proto;
pub mod push;
pub mod signals;
pub mod usage;

#[cfg(test)]
mod layering;

pub use cli::main;
pub use signals::stopped;
