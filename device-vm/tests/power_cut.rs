//! Power cut at every flash operation and after every byte, for an upgrade, a confirm and a
//! revert; then repeated random cuts during recovery. After each cut the device reboots and must
//! run a valid, verified agent: the new one only if its confirmation reached flash, otherwise the
//! old one, whose slot must be untouched.

mod common;

use common::*;
use hotswap_device_vm::journal::State;
use hotswap_device_vm::{Layout, Slot, TrialOutcome, Version};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// One scripted run on a device whose flash may lose power; returns early at the cut.
type Script =
    fn(&mut hotswap_device_vm::Device<Flash>) -> Result<(), hotswap_device_vm::UpdateError>;

struct Scenario {
    name: &'static str,
    /// The device before the run: running `before`.
    start: fn() -> Flash,
    run: Script,
    before: Version,
    /// What runs once the run completes.
    after: Version,
}

fn upgrade_start() -> Flash {
    device_with(&release(v(1), alarm(), 0)).into_flash()
}

fn upgrade(
    device: &mut hotswap_device_vm::Device<Flash>,
) -> Result<(), hotswap_device_vm::UpdateError> {
    let r = release(v(2), &alarm_variant(2), 0);
    download(device, &r, 700)?;
    device.activate()?;
    assert!(matches!(
        device.run_trial(self_test)?,
        TrialOutcome::Confirmed { .. }
    ));
    Ok(())
}

/// A device running 1.0.1 with 1.0.2 staged: the cut falls in the activation or the confirmation.
fn staged_start() -> Flash {
    let mut device = device_with(&release(v(1), alarm(), 0));
    download(&mut device, &release(v(2), &alarm_variant(2), 0), 700).unwrap();
    device.into_flash()
}

fn activate_and_confirm(
    device: &mut hotswap_device_vm::Device<Flash>,
) -> Result<(), hotswap_device_vm::UpdateError> {
    device.activate()?;
    device.confirm()?;
    Ok(())
}

fn revert_start() -> Flash {
    device_with(&release(v(1), alarm(), 0)).into_flash()
}

fn revert(
    device: &mut hotswap_device_vm::Device<Flash>,
) -> Result<(), hotswap_device_vm::UpdateError> {
    let r = release(v(2), broken(), 0);
    download(device, &r, 700)?;
    device.activate()?;
    assert!(matches!(
        device.run_trial(self_test)?,
        TrialOutcome::Reverted { .. }
    ));
    Ok(())
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "upgrade",
        start: upgrade_start,
        run: upgrade,
        before: v(1),
        after: v(2),
    },
    Scenario {
        name: "confirm",
        start: staged_start,
        run: activate_and_confirm,
        before: v(1),
        after: v(2),
    },
    Scenario {
        name: "revert",
        start: revert_start,
        run: revert,
        before: v(1),
        after: v(1),
    },
];

/// The bytes of the slot running `version` before the run, which nothing may touch.
fn slot_bytes(flash: &Flash, layout: &Layout, slot: Slot) -> Vec<u8> {
    let start = layout.slot_start(slot) as usize;
    flash.contents()[start..start + layout.slot_size as usize].to_vec()
}

/// Runs `s` once without faults and returns how many operations and bytes it took, and the
/// counts at which its final journal record had fully reached flash.
fn measure(s: &Scenario) -> (u64, u64) {
    let flash = (s.start)();
    let (ops0, bytes0) = (flash.ops(), flash.bytes());
    let mut device = boot(flash);
    (s.run)(&mut device).unwrap();
    let flash = device.into_flash();
    (flash.ops() - ops0, flash.bytes() - bytes0)
}

/// After a cut: reboot and check the device runs `before` or `after`, and that `before`'s slot is
/// as it was when `after` is not running. Returns the version running.
fn check_after_cut(
    s: &Scenario,
    mut flash: Flash,
    old_slot: Slot,
    old_bytes: &[u8],
    cut: &str,
    retry: bool,
) -> Version {
    flash.power_cycle();
    let mut device = boot(flash);
    let version = running(&mut device);
    assert!(
        version == s.before || version == s.after,
        "{} {cut}: runs {version}",
        s.name
    );
    let state = device.store().scan_journal().unwrap().newest.unwrap().state;
    assert!(
        matches!(state, State::Confirmed { .. }),
        "{} {cut}: boot left {state:?}",
        s.name
    );
    if version == s.before {
        let layout = *device.store().layout();
        assert_eq!(
            device.active().unwrap().0,
            old_slot,
            "{} {cut}: old agent from the wrong slot",
            s.name
        );
        assert_eq!(
            slot_bytes(device.store().flash(), &layout, old_slot),
            old_bytes,
            "{} {cut}: old slot changed",
            s.name
        );
    }
    // A device left on the old agent can always take the update again.
    if retry && version == s.before {
        (s.run)(&mut device)
            .unwrap_or_else(|e| panic!("{} {cut}: the update fails after recovery: {e}", s.name));
        assert_eq!(
            running(&mut device),
            s.after,
            "{} {cut}: after a retry",
            s.name
        );
    }
    version
}

fn old_slot_of(flash: Flash) -> (Slot, Vec<u8>, Flash) {
    let device = boot(flash);
    let slot = device.active().unwrap().0;
    let layout = *device.layout();
    let flash = device.into_flash();
    let bytes = slot_bytes(&flash, &layout, slot);
    (slot, bytes, flash)
}

#[test]
fn a_cut_at_every_flash_operation_never_bricks() {
    for s in &SCENARIOS {
        let (ops, _) = measure(s);
        let mut outcomes = [0usize; 2];
        let (old_slot, old_bytes, start) = old_slot_of((s.start)());
        for k in 0..=ops {
            let mut flash = start.clone();
            flash.faults.cut_before_op = Some(flash.ops() + k);
            let mut device = boot(flash);
            let _ = (s.run)(&mut device);
            let version = check_after_cut(
                s,
                device.into_flash(),
                old_slot,
                &old_bytes,
                &format!("cut before op {k} of {ops}"),
                true,
            );
            outcomes[usize::from(version == s.after)] += 1;
        }
        assert!(
            outcomes[1] >= 1,
            "{}: the cut after the last operation must leave the new state",
            s.name
        );
    }
}

#[test]
fn a_cut_after_every_byte_never_bricks() {
    for s in &SCENARIOS {
        let (_, bytes) = measure(s);
        let (old_slot, old_bytes, start) = old_slot_of((s.start)());
        for b in 0..=bytes {
            let mut flash = start.clone();
            flash.faults.cut_after_bytes = Some(flash.bytes() + b);
            let mut device = boot(flash);
            let _ = (s.run)(&mut device);
            check_after_cut(
                s,
                device.into_flash(),
                old_slot,
                &old_bytes,
                &format!("cut after byte {b} of {bytes}"),
                false,
            );
        }
    }
}

#[test]
fn repeated_random_cuts_during_recovery_never_brick() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let starts: Vec<Flash> = SCENARIOS.iter().map(|s| (s.start)()).collect();
    for round in 0..300 {
        let s = &SCENARIOS[round % SCENARIOS.len()];
        let (ops, _) = measure(s);
        let mut flash = starts[round % SCENARIOS.len()].clone();
        flash.faults.cut_before_op = Some(flash.ops() + rng.random_range(0..=ops));
        let mut device = boot(flash);
        let _ = (s.run)(&mut device);
        let mut flash = device.into_flash();
        // Cut again while the device recovers, a few times over.
        for _ in 0..rng.random_range(1..5) {
            flash.power_cycle();
            flash.faults.cut_before_op = Some(flash.ops() + rng.random_range(0..3));
            flash = match hotswap_device_vm::Device::boot(flash, layout(), config()) {
                Ok(device) => device.into_flash(),
                Err(failure) => failure.flash,
            };
        }
        flash.power_cycle();
        let mut device = boot(flash);
        let version = running(&mut device);
        assert!(
            version == s.before || version == s.after,
            "round {round}: runs {version}"
        );
    }
}
