//! Slot headers and journal records from arbitrary bytes: parse or refuse, never panic, and a
//! header that parses encodes back to the same bytes.
#![no_main]

use hotswap_device_vm::image::{HEADER_SIZE, SlotHeader};
use hotswap_device_vm::journal::{RECORD_SIZE, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(bytes) = data.get(..HEADER_SIZE) {
        let bytes: &[u8; HEADER_SIZE] = bytes.try_into().unwrap();
        if let Ok(header) = SlotHeader::decode(bytes) {
            assert_eq!(SlotHeader::decode(&header.encode()), Ok(header));
        }
    }
    if let Some(bytes) = data.get(..RECORD_SIZE as usize) {
        let bytes: &[u8; RECORD_SIZE as usize] = bytes.try_into().unwrap();
        if let Some(record) = Record::decode(bytes) {
            assert_eq!(Record::decode(&record.encode()), Some(record));
        }
    }
});
