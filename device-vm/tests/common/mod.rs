//! What the device tests share: a release key, releases, a simulated flash, devices on it.

#![allow(dead_code)]

use hotswap_device_vm::agent::{self, AgentLimits, RecordingHost};
use hotswap_device_vm::layout::DEFAULT_SLOT_SIZE;
use hotswap_device_vm::release::ReleaseKey;
use hotswap_device_vm::sim::SimFlash;
use hotswap_device_vm::{Device, DeviceConfig, Layout, TrialOutcome, Version};

/// 4-byte words, 1 KiB sectors: two journal sectors and two 14 KiB slots.
pub type Flash = SimFlash<4, 1024>;
pub const CAPACITY: usize = 2 * 1024 + 2 * DEFAULT_SLOT_SIZE as usize;

pub fn layout() -> Layout {
    Layout::new(1024, DEFAULT_SLOT_SIZE, 4, CAPACITY as u32).unwrap()
}

pub use hotswap_device_vm::release::Release;

pub fn release_key() -> ReleaseKey {
    ReleaseKey::from_seed([7; 32])
}

pub fn config() -> DeviceConfig {
    DeviceConfig {
        keys: vec![release_key().trusted()],
        allow_downgrade: false,
    }
}

pub fn release(version: Version, image: &[u8], counter: u32) -> Release {
    release_key().release(version, image, counter)
}

pub const fn v(patch: u16) -> Version {
    Version::new(1, 0, patch)
}

/// A host whose temperature sensor works, so the alarm agent passes its self-test.
pub fn host() -> RecordingHost {
    RecordingHost {
        sensors: vec![("temperature".into(), 21.5)],
        ..RecordingHost::default()
    }
}

/// The self-test a device runs on trial: the real agent in the real VM.
pub fn self_test(image: &[u8]) -> Result<(), String> {
    agent::trial(image, host(), AgentLimits::default(), "{}")
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Downloads `r` in chunks of `chunk` bytes and stages it.
pub fn download(
    device: &mut Device<Flash>,
    r: &Release,
    chunk: usize,
) -> Result<(), hotswap_device_vm::UpdateError> {
    device.begin_update(r.manifest, r.key_id, r.signature)?;
    for (i, part) in r.image.chunks(chunk).enumerate() {
        device.write_chunk((i * chunk) as u32, part)?;
    }
    device.finish_download(0)?;
    Ok(())
}

/// The whole update: download, activate, trial, confirm or revert.
pub fn install(
    device: &mut Device<Flash>,
    r: &Release,
) -> Result<TrialOutcome, hotswap_device_vm::UpdateError> {
    download(device, r, 1000)?;
    device.activate()?;
    device.run_trial(self_test)
}

pub fn boot(flash: Flash) -> Device<Flash> {
    match Device::boot(flash, layout(), config()) {
        Ok(device) => device,
        Err(failure) => panic!("boot without faults failed: {}", failure.error),
    }
}

/// A device running `r`, installed the normal way on blank flash.
pub fn device_with(r: &Release) -> Device<Flash> {
    let mut device = boot(Flash::new(CAPACITY));
    assert!(matches!(
        install(&mut device, r).unwrap(),
        TrialOutcome::Confirmed { .. }
    ));
    device
}

pub fn alarm() -> &'static [u8] {
    hotswap_agents::THRESHOLD_ALARM
}

pub fn broken() -> &'static [u8] {
    hotswap_agents::FAILING_SELF_TEST
}

/// The alarm agent with one byte of a custom section changed: a different image of the same
/// behaviour, for a second release.
pub fn alarm_variant(n: u8) -> Vec<u8> {
    let mut image = alarm().to_vec();
    // A trailing custom section that wasm engines ignore: name "v", one byte of payload.
    image.extend_from_slice(&[0, 3, 1, b'v', n]);
    image
}

/// The running agent's version, after checking the device runs a valid, verified agent.
pub fn running(device: &mut Device<Flash>) -> Version {
    let (slot, header) = device.active().expect("the device runs an agent");
    let version = header.manifest.version;
    device
        .store()
        .verify(slot, &config().keys)
        .expect("the running agent verifies");
    let image = device.active_image().unwrap();
    self_test(&image).expect("the running agent works");
    version
}
