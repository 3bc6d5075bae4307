//! The device runtime: two agent slots in NOR flash, a power-fail-safe update state machine, and
//! the agent VM.
//!
//! - [`layout`]: where the state journal and the two slots sit in flash.
//! - [`image`]: the signed manifest of an agent and the slot header that carries it.
//! - [`journal`]: the append-only record of which slot is active, on trial or confirmed.
//! - [`slots`]: reading, writing and verifying slots over any [`embedded_storage::nor_flash::NorFlash`].
//! - [`device`]: the update state machine: receive, verify, stage, activate, trial, confirm or
//!   revert; boot-time recovery.
//! - [`agent`]: agents run in wasmi with fuel, memory and stack limits, and the `agent` world's
//!   imports and canonical ABI done by hand.
//! - [`mcuboot`]: agents as MCUboot image files, with the signed manifest in the header area.
//! - [`smp`]: MCUmgr's Simple Management Protocol and its serial transport, so third-party
//!   tools manage the device.
//! - [`release`] (with `std`): a release key and the signed releases it makes.
//! - [`sim`] (with `std`): simulated flash that enforces NOR rules and injects faults.
//!
//! The core (everything but [`release`] and [`sim`]) is `no_std` with `alloc`, so the same code can run on a
//! microcontroller.

#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod agent;
pub mod device;
pub mod image;
pub mod journal;
pub mod layout;
pub mod mcuboot;
#[cfg(feature = "std")]
pub mod release;
#[cfg(feature = "std")]
pub mod sim;
pub mod slots;
pub mod smp;

pub use device::{
    BootEvent, BootFailure, Device, DeviceConfig, DeviceStatus, TrialOutcome, UpdateError,
};
pub use image::{KeyId, Manifest, SlotHeader, Version};
pub use layout::{Layout, Slot};
