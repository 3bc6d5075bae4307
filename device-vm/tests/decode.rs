//! The fuzz targets' properties (device-vm/fuzz) as property tests, so every test run checks
//! them: metadata parsing never panics and round-trips, and a device boots from any flash image
//! without panicking.

use hotswap_device_vm::image::{HEADER_SIZE, SlotHeader};
use hotswap_device_vm::journal::{RECORD_SIZE, Record};
use hotswap_device_vm::release::ReleaseKey;
use hotswap_device_vm::sim::SimFlash;
use hotswap_device_vm::{Device, DeviceConfig, Layout};
use proptest::prelude::*;

const SECTOR: usize = 256;
const SLOT: u32 = 4 * SECTOR as u32;
const CAPACITY: usize = 2 * SECTOR + 2 * SLOT as usize;

proptest! {
    #[test]
    fn headers_parse_or_refuse_and_round_trip(bytes in prop::collection::vec(any::<u8>(), HEADER_SIZE)) {
        let bytes: [u8; HEADER_SIZE] = bytes.try_into().unwrap();
        if let Ok(header) = SlotHeader::decode(&bytes) {
            prop_assert_eq!(SlotHeader::decode(&header.encode()), Ok(header));
        }
    }

    #[test]
    fn records_parse_or_refuse_and_round_trip(bytes in prop::collection::vec(any::<u8>(), RECORD_SIZE as usize)) {
        let bytes: [u8; RECORD_SIZE as usize] = bytes.try_into().unwrap();
        if let Some(record) = Record::decode(&bytes) {
            prop_assert_eq!(Record::decode(&record.encode()), Some(record));
        }
    }

    #[test]
    fn a_device_boots_from_any_flash_image(image in prop::collection::vec(any::<u8>(), CAPACITY), erased in 0usize..CAPACITY) {
        let mut flash = SimFlash::<4, SECTOR>::new(CAPACITY);
        // Leave a random tail erased, as real flash images mostly are.
        for (offset, &byte) in image.iter().take(erased).enumerate() {
            for bit in 0..8 {
                if (0xffu8 ^ byte) & (1 << bit) != 0 {
                    flash.flip_bit(offset, bit);
                }
            }
        }
        let layout = Layout::new(SECTOR as u32, SLOT, 4, CAPACITY as u32).unwrap();
        let config = DeviceConfig { keys: vec![ReleaseKey::from_seed([7; 32]).trusted()], allow_downgrade: false };
        let device = Device::boot(flash, layout, config).map_err(|f| f.error).unwrap();
        // Random bytes never carry a valid signature: no agent, and no panic getting there.
        prop_assert!(device.active().is_none());
    }
}

#[test]
fn a_valid_record_survives_being_embedded_in_garbage() {
    let record = Record {
        sequence: 7,
        state: hotswap_device_vm::journal::State::Confirmed {
            active: hotswap_device_vm::Slot::B,
        },
        security_counter: 3,
    };
    let bytes = record.encode();
    assert_eq!(Record::decode(&bytes), Some(record));
    let mut torn = bytes;
    torn[10] ^= 0x40;
    assert_eq!(Record::decode(&torn), None, "a torn record must not parse");
}
