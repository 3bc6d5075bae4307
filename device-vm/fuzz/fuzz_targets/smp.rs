//! The SMP server fed arbitrary requests, one after another, on a device with no agent: each is
//! answered or ignored, and none panics (an upload's header is read before its signature is
//! checked, so its sizes may be anything).
#![no_main]

use hotswap_device_vm::release::ReleaseKey;
use hotswap_device_vm::sim::SimFlash;
use hotswap_device_vm::smp::Server;
use hotswap_device_vm::{Device, DeviceConfig, Layout};
use libfuzzer_sys::fuzz_target;

const SECTOR: usize = 256;
const SLOT: u32 = 16 * SECTOR as u32;
const CAPACITY: usize = 2 * SECTOR + 2 * SLOT as usize;

fuzz_target!(|data: &[u8]| {
    let layout = Layout::new(SECTOR as u32, SLOT, 4, CAPACITY as u32).unwrap();
    let config = DeviceConfig { keys: vec![ReleaseKey::from_seed([7; 32]).trusted()], allow_downgrade: false };
    let Ok(mut device) = Device::boot(SimFlash::<4, SECTOR>::new(CAPACITY), layout, config) else {
        return;
    };
    let mut server = Server::new();
    // Messages are separated by a 0xff byte, so one input is a conversation.
    for message in data.split(|&b| b == 0xff) {
        let _ = server.handle(&mut device, message, 0);
    }
});
