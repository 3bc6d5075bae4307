//! The `hotswap` command: one clap `Args` struct per subcommand ([`args`]), each turned into the
//! configuration the library crates take and run on one tokio runtime.
//!
//! - `serve`: [`hotswap_server`] on a data directory.
//! - `demo`: [`demo`], the README's main command: server, signed releases, simulated fleet, a
//!   good canary and a broken one rolled back.
//! - `sim`: [`hotswap_sim`]'s fleet against a server.
//! - `scale`: [`scale`], the scale benchmark (server and fleet in two processes); with
//!   `--tracing`, the server's spans sent to [`otlp`], a receiver of OTLP/HTTP that counts them.
//! - `release`: [`release`], sign an agent and register it.
//! - `plans`, `plan`, `plugin check`: [`plans`], plans printed wave by wave.
//! - `device`: [`device`], one device VM on flash in a file, managed over SMP on a pty or a
//!   serial port, and over gRPC ([`grpc`]).
//! - `push`: [`push`], an agent to one device over SMP on a serial line; `push-bench`:
//!   [`push_bench`], its stress and line-fault suites.
//! - `login`, `logout`: [`login`], servers remembered by name ([`contexts`]).
//! - `firmware`, `devices`, `groups`, `plugins`, `deployments`, `tokens`, `users`, `audit`:
//!   [`ops`], a command for every action of the API, `--json` on each.

#![forbid(unsafe_code)]

pub mod agent_kit;
pub mod args;
pub mod checkin;
pub mod contexts;
pub mod demo;
pub mod device;
pub mod grpc;
pub mod kit;
pub mod link;
pub mod login;
pub mod ops;
pub mod otlp;
pub mod plans;
pub mod progress;
pub mod push;
pub mod push_bench;
pub mod release;
mod run;
pub mod scale;

pub use run::{main, stopped};
