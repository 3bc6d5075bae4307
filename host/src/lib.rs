//! HotSwap's host: the server and the `hotswap` command.
//!
//! - [`plugin`]: the sandbox that runs strategies and health policies (wasmtime, component model).
//! - [`demo`]: the built-in demonstration the README's first command runs.

pub mod demo;
pub mod plugin;
