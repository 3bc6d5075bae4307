//! A device booting from an arbitrary flash image: it boots (maybe with no agent) or reports a
//! flash error, and never panics.
#![no_main]

use hotswap_device_vm::release::ReleaseKey;
use hotswap_device_vm::sim::SimFlash;
use hotswap_device_vm::{Device, DeviceConfig, Layout};
use libfuzzer_sys::fuzz_target;

const SECTOR: usize = 256;
const SLOT: u32 = 4 * SECTOR as u32;
const CAPACITY: usize = 2 * SECTOR + 2 * SLOT as usize;

fuzz_target!(|data: &[u8]| {
    let mut flash = SimFlash::<4, SECTOR>::new(CAPACITY);
    // Program the image through flips, so the simulator's rules still hold for later writes.
    for (offset, &byte) in data.iter().take(CAPACITY).enumerate() {
        for bit in 0..8 {
            if (0xffu8 ^ byte) & (1 << bit) != 0 {
                flash.flip_bit(offset, bit);
            }
        }
    }
    let layout = Layout::new(SECTOR as u32, SLOT, 4, CAPACITY as u32).unwrap();
    let config = DeviceConfig { keys: vec![ReleaseKey::from_seed([7; 32]).trusted()], allow_downgrade: false };
    let _ = Device::boot(flash, layout, config);
});
