//! Chaos: corrupted downloads, bad signatures, unknown keys, oversized and truncated images,
//! downgrades, rollbacks of the security counter. Every one is detected, and the device stays on
//! its previous, verified agent.

mod common;

use common::*;
use hotswap_device_vm::slots::SlotError;
use hotswap_device_vm::{TrialOutcome, UpdateError, Version};
use rand::{Rng, SeedableRng, rngs::StdRng};

#[test]
fn ten_thousand_downloads_with_one_percent_corruption_are_all_detected() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    let good = release(v(2), &alarm_variant(2), 0);
    let mut rng = StdRng::seed_from_u64(42);
    let (mut detected, mut total) = (0, 0);
    for i in 0..10_000 {
        let mut image = good.image.clone();
        let corrupt = (image.len() / 100).max(1);
        for _ in 0..corrupt {
            let at = rng.random_range(0..image.len());
            // Never a no-op: XOR with a non-zero byte.
            image[at] ^= rng.random_range(1..=255u8);
        }
        let tampered = Release {
            image,
            ..good.clone()
        };
        total += 1;
        match download(&mut device, &tampered, 1024) {
            Err(UpdateError::Corrupt) => detected += 1,
            other => panic!("update {i}: corruption not detected: {other:?}"),
        }
        assert_eq!(
            device.active().unwrap().1.manifest.version,
            v(1),
            "update {i}: left the previous agent"
        );
        if i % 1000 == 999 {
            // Now and then, a reboot: the previous agent still verifies and runs.
            let flash = device.into_flash();
            device = boot(flash);
            assert_eq!(running(&mut device), v(1));
        }
    }
    assert_eq!(detected, total, "detected {detected} of {total}");
    // The good image still goes through afterwards.
    download(&mut device, &good, 1024).unwrap();
    device.activate().unwrap();
    assert_eq!(
        device.run_trial(self_test).unwrap(),
        TrialOutcome::Confirmed { version: v(2) }
    );
}

#[test]
fn a_bit_flip_in_the_running_slot_is_caught_at_boot_and_the_other_slot_takes_over() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    install(&mut device, &release(v(2), &alarm_variant(2), 0)).unwrap();
    let (slot, _) = device.active().unwrap();
    let offset = device.layout().slot_start(slot) as usize + 1000;
    let mut flash = device.into_flash();
    flash.flip_bit(offset, 3);
    let mut device = boot(flash);
    assert!(
        matches!(
            device.boot_event(),
            hotswap_device_vm::BootEvent::FellBack { .. }
        ),
        "{:?}",
        device.boot_event()
    );
    assert_eq!(running(&mut device), v(1));
}

fn refused(device: &mut hotswap_device_vm::Device<Flash>, r: &Release) -> UpdateError {
    let before = device.active().map(|(s, h)| (s, h.manifest.version));
    let err = download(device, r, 512).expect_err("the update must be refused");
    assert_eq!(
        device.active().map(|(s, h)| (s, h.manifest.version)),
        before,
        "the running agent changed"
    );
    err
}

#[test]
fn a_wrong_signature_is_refused() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    let mut r = release(v(2), &alarm_variant(2), 0);
    r.signature[10] ^= 1;
    let err = refused(&mut device, &r);
    assert!(
        matches!(err, UpdateError::Slot(SlotError::BadSignature(_))),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("signature does not verify against trusted key"),
        "{err}"
    );
}

#[test]
fn a_manifest_changed_after_signing_is_refused() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    let mut r = release(v(2), &alarm_variant(2), 0);
    r.manifest.version = Version::new(9, 9, 9);
    assert!(matches!(
        refused(&mut device, &r),
        UpdateError::Slot(SlotError::BadSignature(_))
    ));
}

#[test]
fn an_unknown_key_is_refused() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    let stranger = hotswap_device_vm::release::ReleaseKey::from_seed([9; 32]);
    let err = refused(&mut device, &stranger.release(v(2), &alarm_variant(2), 0));
    assert!(
        matches!(err, UpdateError::Slot(SlotError::UnknownKey(_))),
        "{err}"
    );
    assert!(
        err.to_string().contains("which the device does not trust"),
        "{err}"
    );
}

#[test]
fn an_oversized_image_is_refused_before_anything_is_erased() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    let big = vec![0u8; 20 * 1024];
    let err = refused(&mut device, &release(v(2), &big, 0));
    assert!(
        matches!(
            err,
            UpdateError::TooLarge {
                size: 20480,
                max: 14080
            }
        ),
        "{err}"
    );
}

#[test]
fn a_truncated_image_is_incomplete_and_a_chunk_out_of_order_is_refused() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    let r = release(v(2), &alarm_variant(2), 0);
    device
        .begin_update(r.manifest, r.key_id, r.signature)
        .unwrap();
    device.write_chunk(0, &r.image[..4000]).unwrap();
    let err = device.finish_download(0).unwrap_err();
    assert_eq!(
        err,
        UpdateError::Incomplete {
            written: 4000,
            size: r.manifest.size
        }
    );
    assert_eq!(
        device.write_chunk(5000, &r.image[5000..6000]).unwrap_err(),
        UpdateError::Offset {
            expected: 4000,
            found: 5000
        }
    );
    let len = r.image.len();
    assert!(matches!(
        device.write_chunk(4000, &[0; 20_000][..len]),
        Err(UpdateError::Overflow { .. })
    ));
    // Resuming at the offset the device reports finishes the download.
    let at = device.resume_offset().unwrap() as usize;
    device.write_chunk(at as u32, &r.image[at..]).unwrap();
    device.finish_download(0).unwrap();
    device.activate().unwrap();
    assert_eq!(
        device.run_trial(self_test).unwrap(),
        TrialOutcome::Confirmed { version: v(2) }
    );
}

#[test]
fn a_downgrade_is_refused_unless_allowed() {
    let mut device = device_with(&release(v(5), alarm(), 0));
    let err = refused(&mut device, &release(v(4), &alarm_variant(4), 0));
    assert_eq!(
        err,
        UpdateError::Downgrade {
            running: v(5),
            offered: v(4)
        }
    );
    assert_eq!(
        err.to_string(),
        "version 1.0.4 is older than the running 1.0.5, and downgrades are not allowed"
    );

    let mut permissive = hotswap_device_vm::Device::boot(
        device.into_flash(),
        layout(),
        hotswap_device_vm::DeviceConfig {
            allow_downgrade: true,
            ..config()
        },
    )
    .unwrap_or_else(|f| panic!("{}", f.error));
    assert_eq!(
        install(&mut permissive, &release(v(4), &alarm_variant(4), 0)).unwrap(),
        TrialOutcome::Confirmed { version: v(4) }
    );
}

#[test]
fn the_security_counter_rises_on_confirm_and_blocks_older_images() {
    let mut device = device_with(&release(v(1), alarm(), 1));
    assert_eq!(device.security_counter(), 1);
    install(&mut device, &release(v(2), &alarm_variant(2), 3)).unwrap();
    assert_eq!(device.security_counter(), 3);
    let err = refused(&mut device, &release(v(3), &alarm_variant(3), 2));
    assert_eq!(
        err,
        UpdateError::SecurityCounter {
            offered: 2,
            device: 3
        }
    );
    // Manual rollback to 1.0.1 (counter 1) is refused too.
    assert_eq!(
        device.rollback().unwrap_err(),
        UpdateError::SecurityCounter {
            offered: 1,
            device: 3
        }
    );
}

#[test]
fn a_failing_self_test_reverts_by_itself_and_manual_rollback_works() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    match install(&mut device, &release(v(2), broken(), 0)).unwrap() {
        TrialOutcome::Reverted {
            failed,
            running: Some(back),
            reason,
        } => {
            assert_eq!((failed, back), (v(2), v(1)));
            assert!(reason.contains("calibration table missing"), "{reason}");
        }
        other => panic!("expected a revert, got {other:?}"),
    }
    assert_eq!(running(&mut device), v(1));

    install(&mut device, &release(v(3), &alarm_variant(3), 0)).unwrap();
    assert_eq!(running(&mut device), v(3));
    assert_eq!(device.rollback().unwrap(), v(1));
    assert_eq!(running(&mut device), v(1));
    // And it survives a reboot.
    let mut device = boot(device.into_flash());
    assert_eq!(running(&mut device), v(1));
}

#[test]
fn writes_that_fail_in_the_slot_leave_the_running_agent() {
    let device = device_with(&release(v(1), alarm(), 0));
    let inactive = device.active().unwrap().0.other();
    let start = device.layout().slot_start(inactive);
    let mut flash = device.into_flash();
    flash.faults.fail_writes = Some(start + 2048..start + 4096);
    let mut device = boot(flash);
    let err = download(&mut device, &release(v(2), &alarm_variant(2), 0), 512).unwrap_err();
    assert!(
        matches!(err, UpdateError::Slot(SlotError::Flash(_))),
        "{err}"
    );
    assert_eq!(running(&mut device), v(1));
}

#[test]
fn failed_writes_in_the_state_journal_leave_the_running_agent() {
    let mut device = device_with(&release(v(1), alarm(), 0));
    download(&mut device, &release(v(2), &alarm_variant(2), 0), 512).unwrap();
    let journal = 0..2 * device.layout().sector;
    let mut flash = device.into_flash();
    flash.faults.fail_writes = Some(journal);
    let mut device = boot(flash);
    let err = device.activate().unwrap_err();
    assert!(
        matches!(err, UpdateError::Slot(SlotError::Flash(_))),
        "{err}"
    );
    assert_eq!(running(&mut device), v(1));
    // The staged image survives; once the journal takes writes again it activates.
    let mut flash = device.into_flash();
    flash.faults.fail_writes = None;
    let mut device = boot(flash);
    assert_eq!(running(&mut device), v(1));
    device.activate().unwrap();
    assert_eq!(
        device.run_trial(self_test).unwrap(),
        TrialOutcome::Confirmed { version: v(2) }
    );
    assert_eq!(running(&mut device), v(2));
}
