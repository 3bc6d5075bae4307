//! {{name}}: a HotSwap device agent. It runs the `fan` actuator while the running average of
//! the `temperature` sensor is above a limit (`{"limit": 30}` by default).
//!
//! `no_std`, with talc over a 4 KiB static arena as the allocator and a panic handler that
//! traps: std's panic formatting alone would not fit a 14 KiB slot, and a general allocator
//! takes a second 64 KiB page of RAM on the first allocation.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicU32, Ordering};

wit_bindgen::generate!({ world: "agent", path: "wit" });

#[cfg(target_arch = "wasm32")]
static mut ARENA: [u8; 4096] = [0; 4096];

#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: talc::Talck<talc::locking::AssumeUnlockable, talc::ClaimOnOom> =
    talc::Talc::new(unsafe {
        // SAFETY: the arena is used by the allocator alone; agents run single-threaded.
        talc::ClaimOnOom::new(talc::Span::from_array(
            core::ptr::addr_of!(ARENA).cast_mut(),
        ))
    })
    .lock();

/// A panic traps; the device counts the trap against the agent's health.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

use hotswap::agent::log::Level;
use hotswap::agent::{actuators, log, sensors};

/// How much a new reading moves the average.
const WEIGHT: f32 = 0.25;

/// The limit, as `f32` bits (30.0 until `init` reads the configuration).
static LIMIT: AtomicU32 = AtomicU32::new(0x41f0_0000);
/// The running average, as `f32` bits; NaN before the first reading.
static AVERAGE: AtomicU32 = AtomicU32::new(0x7fc0_0000);

/// The running average after a new reading.
pub fn next_average(average: f32, reading: f32) -> f32 {
    if average.is_nan() {
        reading
    } else {
        average + WEIGHT * (reading - average)
    }
}

/// `"limit": <whole number>` out of the configuration, if it is there. An agent must stay
/// small: a JSON parser would take most of the slot, so this reads digits.
pub fn limit_from(config: &str) -> Result<Option<f32>, String> {
    let Some(at) = config.find("\"limit\"") else {
        return Ok(None);
    };
    let rest = config[at + 7..].trim_start();
    let Some(rest) = rest.strip_prefix(':') else {
        return Err("expected `:` after \"limit\"".to_string());
    };
    let digits = rest.trim_start().bytes().take_while(u8::is_ascii_digit);
    let (mut value, mut count) = (0u32, 0);
    for d in digits {
        value = value.saturating_mul(10).saturating_add(u32::from(d - b'0'));
        count += 1;
    }
    if count == 0 {
        return Err("`limit` must be a whole number".to_string());
    }
    Ok(Some(value as f32))
}

struct Agent;

impl Guest for Agent {
    fn init(config: String) -> Result<(), String> {
        if let Some(limit) = limit_from(&config)? {
            LIMIT.store(limit.to_bits(), Ordering::Relaxed);
        }
        log::log(Level::Info, "{{name}} ready");
        Ok(())
    }

    fn step() -> Result<(), String> {
        let reading = sensors::read("temperature");
        if reading.is_nan() {
            return Err("no temperature reading".to_string());
        }
        let average = next_average(f32::from_bits(AVERAGE.load(Ordering::Relaxed)), reading);
        AVERAGE.store(average.to_bits(), Ordering::Relaxed);
        let on = average > f32::from_bits(LIMIT.load(Ordering::Relaxed));
        actuators::set("fan", if on { 1.0 } else { 0.0 });
        Ok(())
    }

    fn self_test() -> Result<(), String> {
        let reading = sensors::read("temperature");
        if !(-60.0..=150.0).contains(&reading) {
            return Err("self-test: no plausible temperature reading".to_string());
        }
        Ok(())
    }
}

export!(Agent);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_follows_the_readings() {
        assert_eq!(next_average(f32::NAN, 20.0), 20.0);
        assert_eq!(next_average(20.0, 40.0), 25.0);
    }

    #[test]
    fn the_limit_is_read_from_the_configuration() {
        assert_eq!(limit_from("{}"), Ok(None));
        assert_eq!(limit_from(r#"{"limit": 42}"#), Ok(Some(42.0)));
        assert!(limit_from(r#"{"limit": "hot"}"#).is_err());
    }
}
