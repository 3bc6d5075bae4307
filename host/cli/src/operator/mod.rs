//! The operator's commands: a server run, remembered and talked to.
//!
//! - [`serve`]: `hotswap serve`, the server on a data directory.
//! - [`demo`]: `hotswap demo`, the README's main command: a server, signed releases, a simulated
//!   fleet, a good canary and a broken one rolled back.
//! - [`sim`]: `hotswap sim`, a simulated fleet against a server.
//! - [`release`]: `hotswap release` and `hotswap keys`: sign an agent and register it.
//! - [`login`]: `hotswap login` and `logout`, servers remembered by name.
//! - [`ops`]: a command for every action of the API (`firmware`, `devices`, `groups`,
//!   `plugins`, `deployments`, `tokens`, `users`, `audit`), `--json` on each.

pub mod demo;
pub mod login;
pub mod ops;
pub mod release;
pub mod serve;
pub mod sim;
