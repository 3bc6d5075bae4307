//! MCUmgr's Simple Management Protocol (SMP), as MCUboot and Zephyr devices speak it, so the
//! tools device integrators already own (`smpmgr`, `mcumgr`, mcumgr-web) manage a HotSwap
//! device unchanged.
//!
//! - [`codec`]: the bodies a manager sends and the answers it reads, for every client.
//! - [`header`]: the 8-byte header every SMP message starts with (v1 and v2).
//! - [`serial`]: the serial transport: a packet as base64 lines started by `0x06 0x09` and
//!   `0x04 0x14`, each at most [`serial::MAX_LINE`] bytes, with a CRC-16/XMODEM.
//!
//! `no_std` with `alloc`, like the rest of the core: a microcontroller could run it as it is.

pub mod codec;
pub mod header;
pub mod serial;
pub mod server;

pub use header::{Group, Header, Op};
pub use server::{Effect, ResetOutcome, Server, reset};
