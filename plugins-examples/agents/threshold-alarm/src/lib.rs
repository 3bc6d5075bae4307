//! An example agent: raises the `alarm` actuator while the `temperature` sensor reads above a
//! threshold. Written as an outside author would, with wit-bindgen against `wit/agent`.
//!
//! Configuration: `{"threshold": 42.5}` (default 30). The self-test passes when the device has a
//! temperature sensor giving a plausible reading.
//!
//! `no_std`, with talc over a 4 KiB static arena as the allocator (its memory stays one page)
//! and a panic handler that traps: std's panic message formatting alone would push the agent
//! past a 14 KiB slot.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::string::{String, ToString};
use core::sync::atomic::{AtomicU32, Ordering};

wit_bindgen::generate!({ world: "agent", path: "../../../wit/agent" });

/// The heap: a fixed arena inside the first page of linear memory. The agent's allocations are
/// a few short strings, so its memory never grows past one 64 KiB page (a general allocator
/// such as dlmalloc takes a second page on the first allocation): a device's RAM is scarce.
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
use hotswap::agent::{actuators, clock, log, sensors};

struct ThresholdAlarm;

/// The threshold, as `f32` bits.
static THRESHOLD: AtomicU32 = AtomicU32::new(0x41f0_0000); // 30.0
static RAISED: AtomicU32 = AtomicU32::new(0);

/// Reads `"threshold": <number>` out of a small JSON object. An agent must fit in a 14 KiB slot,
/// and a JSON parser, `str::parse::<f32>` or Unicode-aware string searching would not, so this
/// works on bytes and accepts plain decimals such as `-12.5`: plenty for a threshold.
fn threshold_from(config: &str) -> Result<Option<f32>, String> {
    const KEY: &[u8] = b"\"threshold\"";
    let bytes = config.as_bytes();
    let Some(at) = bytes.windows(KEY.len()).position(|w| w == KEY) else {
        return Ok(None);
    };
    let mut rest = bytes[at + KEY.len()..]
        .iter()
        .copied()
        .skip_while(|b| b.is_ascii_whitespace());
    if rest.next() != Some(b':') {
        return Err("expected `:` after \"threshold\"".to_string());
    }
    let mut rest = rest.skip_while(|b| b.is_ascii_whitespace()).peekable();
    let negative = rest.next_if_eq(&b'-').is_some();
    let (mut value, mut scale, mut digits, mut fraction) = (0.0f32, 1.0f32, 0, false);
    for b in rest {
        match b {
            b'0'..=b'9' if fraction => {
                scale /= 10.0;
                value += scale * f32::from(b - b'0');
                digits += 1;
            }
            b'0'..=b'9' => {
                value = value * 10.0 + f32::from(b - b'0');
                digits += 1;
            }
            b'.' if !fraction => fraction = true,
            _ => break,
        }
    }
    if digits == 0 {
        return Err("`threshold` must be a number".to_string());
    }
    Ok(Some(if negative { -value } else { value }))
}

impl Guest for ThresholdAlarm {
    fn init(config: String) -> Result<(), String> {
        if let Some(t) = threshold_from(&config)? {
            THRESHOLD.store(t.to_bits(), Ordering::Relaxed);
        }
        log::log(Level::Info, "threshold alarm ready");
        Ok(())
    }

    fn step() -> Result<(), String> {
        let reading = sensors::read("temperature");
        if reading.is_nan() {
            return Err("no temperature reading".to_string());
        }
        let raised = reading > f32::from_bits(THRESHOLD.load(Ordering::Relaxed));
        if RAISED.swap(u32::from(raised), Ordering::Relaxed) != u32::from(raised) {
            log::log(
                if raised { Level::Warn } else { Level::Info },
                if raised {
                    "alarm raised"
                } else {
                    "alarm cleared"
                },
            );
        }
        actuators::set("alarm", if raised { 1.0 } else { 0.0 });
        Ok(())
    }

    fn self_test() -> Result<(), String> {
        let started = clock::now_ms();
        let reading = sensors::read("temperature");
        if reading.is_nan() {
            return Err("self-test: the device has no temperature sensor".to_string());
        }
        if !(-60.0..=150.0).contains(&reading) {
            return Err("self-test: temperature reading out of range".to_string());
        }
        if clock::now_ms() < started {
            return Err("self-test: the clock went backwards".to_string());
        }
        Ok(())
    }
}

export!(ThresholdAlarm);
