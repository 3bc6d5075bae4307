//! HotSwap's host: the server and the `hotswap` command.
//!
//! - [`plugin`]: the sandbox that runs strategies and health policies (wasmtime, component model).
//! - [`store`]: durable state, SQLite and content-addressed artifacts.
//! - [`api`]: the HTTP API.
//! - [`orchestrator`]: runs deployments wave by wave, asking the health policy.
//! - [`server`]: `hotswap serve`, putting them together.
//! - [`cli`]: the `hotswap` command line.
//! - [`scale`]: `hotswap scale`, the scale benchmark (server and fleet in two processes).
//! - [`sim`]: the fleet simulator, devices on the device VM speaking the device protocol.
//! - [`story`]: the README's main command, the whole mission at once.
//! - [`demo`]: the built-in demonstration the README's first command runs.

pub mod api;
pub mod cli;
pub mod demo;
pub mod orchestrator;
pub mod plugin;
pub mod scale;
pub mod server;
pub mod sim;
pub mod store;
pub mod story;
