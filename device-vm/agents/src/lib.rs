//! The example agents of `plugins-examples/agents` as core modules, for the device VM's tests and
//! benchmarks and the fleet simulator.

include!(concat!(env!("OUT_DIR"), "/agents.rs"));
