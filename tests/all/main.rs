//! Cross-crate tests, one binary with a module per topic so it links once; a big topic is a
//! folder of files, and what topics share lives in [`support`].

#![forbid(unsafe_code)]

mod api;
mod cli;
mod crash;
mod device_tools;
mod docs;
mod e2e;
mod health;
mod hostile;
mod kit;
mod orchestrator;
mod replicas;
mod runtime;
mod strategies;
mod support;
mod traces;

pub use support::{fleet, region, runtime};

/// The fixtures built by `tests/build.rs`: hostile and malformed plugins.
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));
}
