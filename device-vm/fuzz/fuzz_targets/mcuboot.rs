//! MCUboot image files, whole or as a header area: parsed or refused, never a panic.
#![no_main]

use hotswap_device_vm::mcuboot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mcuboot::parse_header(data);
    let _ = mcuboot::parse(data);
});
