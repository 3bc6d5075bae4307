//! The fuzz targets' properties (device-vm/fuzz) as property tests, so every test run checks
//! them: metadata parsing never panics and round-trips, a device boots from any flash image
//! without panicking, MCUboot headers parse or are refused, and the SMP server answers any
//! conversation (uploads with any offsets and sizes included) without panicking.

use hotswap_device_vm::image::{HEADER_SIZE, SlotHeader};
use hotswap_device_vm::journal::{RECORD_SIZE, Record};
use hotswap_device_vm::mcuboot;
use hotswap_device_vm::release::ReleaseKey;
use hotswap_device_vm::sim::SimFlash;
use hotswap_device_vm::smp::{Header, Server};
use hotswap_device_vm::{Device, DeviceConfig, Layout};
use proptest::prelude::*;

/// An SMP request the fuzzer shapes: mostly image uploads, with any offsets, lengths and data,
/// and the other commands with any bodies.
fn smp_request() -> impl Strategy<Value = Vec<u8>> {
    let upload = (
        any::<u32>(),
        any::<u32>(),
        prop::collection::vec(any::<u8>(), 0..600),
        any::<bool>(),
    )
        .prop_map(|(off, len, data, first)| {
            let mut body = Vec::new();
            let mut e = minicbor::Encoder::new(&mut body);
            let off = if first { 0 } else { off };
            e.map(if off == 0 { 3 } else { 2 }).unwrap();
            e.str("off").unwrap().u32(off).unwrap();
            e.str("data").unwrap().bytes(&data).unwrap();
            if off == 0 {
                e.str("len").unwrap().u32(len).unwrap();
            }
            Header::request(true, 1, 0, 1, &body)
        });
    let header_first = (any::<u32>(), any::<u32>()).prop_map(|(size, len)| {
        // A header area that parses as far as its sizes: MCUboot's magic and header size, the
        // manifest's tag, and a body size of the fuzzer's choosing.
        let mut h = [0u8; mcuboot::IMAGE_HEADER_SIZE];
        h[0..4].copy_from_slice(&mcuboot::IMAGE_MAGIC.to_le_bytes());
        h[8..10].copy_from_slice(&(mcuboot::IMAGE_HEADER_SIZE as u16).to_le_bytes());
        h[12..16].copy_from_slice(&size.to_le_bytes());
        h[32..36].copy_from_slice(b"HSMF");
        h[42..46].copy_from_slice(&size.to_le_bytes());
        let mut body = Vec::new();
        let mut e = minicbor::Encoder::new(&mut body);
        e.map(3).unwrap();
        e.str("off").unwrap().u8(0).unwrap();
        e.str("data").unwrap().bytes(&h).unwrap();
        e.str("len").unwrap().u32(len).unwrap();
        Header::request(true, 1, 0, 1, &body)
    });
    let other = (
        any::<bool>(),
        0u16..3,
        0u8..8,
        prop::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(write, group, command, body)| Header::request(write, group, 0, command, &body));
    prop_oneof![4 => upload, 2 => header_first, 1 => other, 1 => prop::collection::vec(any::<u8>(), 0..32)]
}

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

proptest! {
    #[test]
    fn mcuboot_headers_parse_or_refuse(bytes in prop::collection::vec(any::<u8>(), 0..400), size in any::<u32>()) {
        let mut bytes = bytes;
        if bytes.len() >= mcuboot::IMAGE_HEADER_SIZE {
            bytes[0..4].copy_from_slice(&mcuboot::IMAGE_MAGIC.to_le_bytes());
            bytes[8..10].copy_from_slice(&(mcuboot::IMAGE_HEADER_SIZE as u16).to_le_bytes());
            bytes[12..16].copy_from_slice(&size.to_le_bytes());
        }
        let _ = mcuboot::parse_header(&bytes);
        let _ = mcuboot::parse(&bytes);
    }

    #[test]
    fn the_smp_server_answers_any_conversation(requests in prop::collection::vec(smp_request(), 1..12)) {
        const BIG_SLOT: u32 = 16 * SECTOR as u32;
        const BIG: usize = 2 * SECTOR + 2 * BIG_SLOT as usize;
        let layout = Layout::new(SECTOR as u32, BIG_SLOT, 4, BIG as u32).unwrap();
        let config = DeviceConfig { keys: vec![ReleaseKey::from_seed([7; 32]).trusted()], allow_downgrade: false };
        let mut device = Device::boot(SimFlash::<4, SECTOR>::new(BIG), layout, config).map_err(|f| f.error).unwrap();
        let mut server = Server::new();
        for r in &requests {
            let _ = server.handle(&mut device, r, 0);
        }
        prop_assert!(device.active().is_none(), "nothing unsigned ever runs");
    }
}
